//! Word-level views (Clark et al. 2019): subword pieces merged into words. A word is a piece
//! that starts one (by the tokenizer's marks: no `##`, a leading space `Ġ`, a `▁`) and the
//! pieces that continue it; special tokens, and the first piece after one, start words of their
//! own. Attention *to* a word is the sum over its pieces, attention *from* a word the mean over
//! its pieces, so rows still sum to 1.

use std::ops::Range;

use crate::model::{Analysis, F32Array};

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
}
