//! Word-level views (Clark et al. 2019): subword pieces merged into words. A word is a piece
//! that starts one (by the tokenizer's marks: no `##`, a leading space `Ġ`, a `▁`) and the
//! pieces that continue it; special tokens, and the first piece after one, start words of their
//! own. Attention *to* a word is the sum over its pieces, attention *from* a word the mean over
//! its pieces, so rows still sum to 1.

use std::ops::Range;

use crate::analysis::HeadChoice;
use crate::model::{Analysis, CapturedArray, F32Array};

/// The words of an input: their text and the pieces each spans.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Words {
    /// Each word's text (special tokens as the vocabulary spells them).
    pub words: Vec<String>,
    /// Each word's pieces, as a range of token indices.
    #[serde(skip)]
    pub spans: Vec<Range<usize>>,
}

impl Words {
    /// Number of words.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The word that token `token` belongs to.
    pub fn word_of(&self, token: usize) -> Option<usize> {
        self.spans.iter().position(|span| span.contains(&token))
    }
}

/// Groups an input's pieces into words.
pub fn words(analysis: &Analysis) -> Words {
    let style = analysis.token_style;
    let mut spans: Vec<Range<usize>> = Vec::new();
    for (index, token) in analysis.tokens.iter().enumerate() {
        let starts = index == 0
            || analysis.is_special(index)
            || analysis.is_special(index - 1)
            || analysis.sentence[index] != analysis.sentence[index - 1]
            || style.starts_word(token);
        match spans.last_mut() {
            Some(span) if !starts => span.end = index + 1,
            _ => spans.push(index..index + 1),
        }
    }
    let words = spans
        .iter()
        .map(|span| {
            if analysis.is_special(span.start) {
                analysis.tokens[span.start].clone()
            } else {
                span.clone()
                    .map(|index| style.bare(&analysis.tokens[index]))
                    .collect()
            }
        })
        .collect();
    Words { words, spans }
}

/// The input read as words: an [`Analysis`] whose "tokens" are `words`, so that every view of
/// attention (heatmap, lines, overview, projection, comparison) and every figure shows words
/// without knowing it. Attention and norm-based maps merge as [`word_map`] does; hidden states,
/// queries and keys are each word's mean over its pieces (a summary for the projection, not
/// what any head computed: the query·key view stays with pieces). Predictions stay those of
/// the pieces. `None` when the run kept its captures on a device that failed to copy them.
pub fn word_analysis(analysis: &Analysis, words: &Words) -> Option<Analysis> {
    let attentions = word_maps(&*analysis.attentions.to_host().ok()?, words);
    let attention_norms = word_norm_maps(analysis, words).map(CapturedArray::from);
    let first = |values: &[u32]| -> Vec<u32> {
        words.spans.iter().map(|span| values[span.start]).collect()
    };
    Some(Analysis {
        tokens: words.words.clone(),
        token_ids: first(&analysis.token_ids),
        segment_ids: first(&analysis.segment_ids),
        char_offsets: words
            .spans
            .iter()
            .map(|span| {
                let start = analysis.char_offsets[span.start]?.0;
                let end = analysis.char_offsets[span.end - 1]?.1;
                Some((start, end))
            })
            .collect(),
        sentence: words
            .spans
            .iter()
            .map(|span| analysis.sentence[span.start])
            .collect(),
        attentions: attentions.into(),
        hidden_states: piece_means(&*analysis.hidden_states.to_host().ok()?, words).into(),
        queries: piece_means(&*analysis.queries.to_host().ok()?, words).into(),
        keys: piece_means(&*analysis.keys.to_host().ok()?, words).into(),
        value_norms: None,
        attention_norms,
        // A window counts tokens, not words: word maps mark no cell outside one.
        windows: Vec::new(),
        ..analysis.clone()
    })
}

/// Attention rollout after every layer over words: the token-level rollout merged as
/// [`word_map`] merges attention (the rollout of word-merged attention would be another
/// quantity, and not the one `dump --words --with rollout` reports).
pub fn word_rollout(analysis: &Analysis, words: &Words) -> Vec<Vec<f32>> {
    crate::analysis::rollout::rollout(analysis)
        .iter()
        .map(|layer| word_map(layer, analysis.len(), words))
        .collect()
}

/// Every head's norm-based map as a word map, `[layer, head, word, word]`, merging one token map
/// at a time (all of them at once would be 400 MB for bert-large at 512 tokens); `None`
/// without value norms.
fn word_norm_maps(analysis: &Analysis, words: &Words) -> Option<F32Array> {
    use rayon::prelude::{IntoParallelIterator, ParallelIterator};
    let (layers, heads, tokens) = (analysis.layers(), analysis.heads(), analysis.len());
    let maps: Option<Vec<Vec<f32>>> = (0..layers * heads)
        .into_par_iter()
        .map(|index| {
            let head = HeadChoice::Head(index % heads);
            let map = crate::analysis::norms::norm_map(analysis, index / heads, head)?;
            Some(word_map(&map, tokens, words))
        })
        .collect();
    F32Array::new(
        vec![layers, heads, words.len(), words.len()],
        maps?.concat(),
    )
}

/// An array `[.., token, dim]` as `[.., word, dim]`: each word's mean over its pieces.
fn piece_means(array: &F32Array, words: &Words) -> F32Array {
    let shape = array.shape();
    let (tokens, dim) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let values: Vec<f32> = array
        .values()
        .chunks_exact((tokens * dim).max(1))
        .flat_map(|block| {
            words.spans.iter().flat_map(move |span| {
                let mut mean = vec![0f32; dim];
                for piece in span.clone() {
                    for (sum, value) in mean.iter_mut().zip(&block[piece * dim..][..dim]) {
                        *sum += value;
                    }
                }
                mean.iter_mut()
                    .for_each(|value| *value /= span.len() as f32);
                mean
            })
        })
        .collect();
    let mut word_shape = shape.to_vec();
    word_shape[shape.len() - 2] = words.len();
    F32Array::new(word_shape, values).expect("one mean per word and dimension")
}

/// A `[query][key]` map over tokens as a map over words: the mean over each word's query
/// pieces of the sum over each word's key pieces.
pub fn word_map(map: &[f32], tokens: usize, words: &Words) -> Vec<f32> {
    let count = words.len();
    let mut out = vec![0f32; count * count];
    for (row, from) in words.spans.iter().enumerate() {
        for (column, to) in words.spans.iter().enumerate() {
            let total: f32 = from
                .clone()
                .map(|query| {
                    map[query * tokens + to.start..query * tokens + to.end]
                        .iter()
                        .sum::<f32>()
                })
                .sum();
            out[row * count + column] = total / from.len() as f32;
        }
    }
    out
}

/// Every `[query][key]` map of an array whose last two dimensions are tokens, as word maps.
pub fn word_maps(array: &F32Array, words: &Words) -> F32Array {
    let shape = array.shape();
    let tokens = shape[shape.len() - 1];
    let count = words.len();
    let values: Vec<f32> = array
        .values()
        .chunks_exact(tokens * tokens)
        .flat_map(|map| word_map(map, tokens, words))
        .collect();
    let mut word_shape = shape[..shape.len() - 2].to_vec();
    word_shape.extend([count, count]);
    F32Array::new(word_shape, values).expect("one word map per token map")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::capture::tests::tiny_analysis;

    #[test]
    fn pieces_merge_and_rows_still_sum_to_one() {
        let mut analysis = tiny_analysis();
        // [CLS] play ##ing [SEP]
        analysis.tokens = ["[CLS]", "play", "##ing", "[SEP]"]
            .map(String::from)
            .to_vec();
        analysis.char_offsets = vec![None, Some((0, 4)), Some((4, 7)), None];
        analysis.sentence = vec![None, Some(0), Some(0), None];
        let words = words(&analysis);
        assert_eq!(words.words, ["[CLS]", "playing", "[SEP]"]);
        assert_eq!(words.spans, [0..1, 1..3, 3..4]);
        assert_eq!(words.word_of(2), Some(1));
        let map = [
            0.1, 0.2, 0.3, 0.4, //
            0.0, 0.5, 0.5, 0.0, //
            0.2, 0.2, 0.2, 0.4, //
            1.0, 0.0, 0.0, 0.0,
        ];
        let merged = word_map(&map, 4, &words);
        assert!((merged[1] - 0.5).abs() < 1e-6, "to a word: summed pieces");
        assert!(
            (merged[3] - 0.1).abs() < 1e-6,
            "from a word: mean of its rows"
        );
        for row in merged.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn a_word_analysis_is_the_merged_maps_over_words() {
        let mut analysis = tiny_analysis();
        analysis.tokens = ["[CLS]", "play", "##ing"].map(String::from).to_vec();
        analysis.char_offsets = vec![None, Some((0, 4)), Some((4, 7))];
        analysis.sentence = vec![None, Some(0), Some(0)];
        analysis.value_norms = Some(
            F32Array::new(vec![1, 2, 3], vec![1.0, 2.0, 0.5, 3.0, 1.0, 2.0])
                .unwrap()
                .into(),
        );
        analysis.hidden_states = F32Array::new(vec![2, 3, 1], vec![1.0, 2.0, 4.0, 0.0, 6.0, 8.0])
            .unwrap()
            .into();
        let words = words(&analysis);
        let merged = word_analysis(&analysis, &words).unwrap();
        assert_eq!(merged.tokens, ["[CLS]", "playing"]);
        assert_eq!(merged.char_offsets, [None, Some((0, 7))]);
        assert_eq!(merged.len(), 2);
        assert_eq!(
            merged.attention(0, 1),
            word_map(analysis.attention(0, 1), 3, &words)
        );
        let norms = crate::analysis::norms::norm_map(&analysis, 0, HeadChoice::Head(1)).unwrap();
        let word_norms = crate::analysis::norms::norm_map(&merged, 0, HeadChoice::Head(1)).unwrap();
        assert_eq!(word_norms, word_map(&norms, 3, &words));
        let weight = crate::analysis::norms::norm_weight(&merged, 0, HeadChoice::Mean, 1, 0);
        let mean = crate::analysis::norms::norm_map(&merged, 0, HeadChoice::Mean).unwrap();
        assert!((weight.unwrap() - mean[2]).abs() < 1e-6);
        assert_eq!(
            merged.hidden_states.to_host().unwrap().values(),
            [1.0, 3.0, 0.0, 7.0]
        );
    }
}
