//! What one run of a model captures, as plain data that views, analyses and exports can read
//! without knowing anything about tensors or devices.

use super::captured::CapturedArray;
pub use super::captured::F32Array;
use super::config::{KeyWindow, ProblemType};
use super::family_id::Family;
use super::tokenizer::TokenStyle;

/// One candidate token of a prediction over the vocabulary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenProbability {
    /// The vocabulary spelling.
    pub token: String,
    /// The vocabulary id.
    pub id: u32,
    /// Softmax probability over the whole vocabulary.
    pub prob: f32,
}

/// A head's best guesses over the vocabulary at one position: the masked-LM head's at a mask,
/// or a causal LM's for the token after the position.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenPrediction {
    /// Token index in the input.
    pub position: usize,
    /// Candidates, most probable first.
    pub top_k: Vec<TokenProbability>,
}

/// One label of a classification, with its probability or (regression) its score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelScore {
    /// The label's name (`id2label`).
    pub label: String,
    /// The label's id.
    pub id: usize,
    /// Softmax (single-label) or sigmoid (multi-label) probability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prob: Option<f32>,
    /// The raw output of a regression head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

impl LabelScore {
    /// The probability, or the regression score.
    pub fn value(&self) -> f32 {
        self.prob.or(self.score).unwrap_or(0.0)
    }
}

/// A sequence classification of the whole input.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Classification {
    /// How the logits became scores.
    pub problem_type: ProblemType,
    /// Every label, highest first.
    pub labels: Vec<LabelScore>,
}

/// An extractive answer: the span of the context (sentence B) that the question-answering head
/// finds most likely, decoded as transformers 4.x's question-answering pipeline did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Answer {
    /// The answer, sliced from the context.
    pub answer: String,
    /// `p_start[start] · p_end[end]`.
    pub score: f32,
    /// The first token of the span.
    pub start: usize,
    /// The last token of the span (inclusive).
    pub end: usize,
    /// The answer's first character in the context.
    pub char_start: usize,
    /// One past the answer's last character in the context.
    pub char_end: usize,
    /// Every token's start probability (0 outside the first token and the context).
    #[serde(skip)]
    pub start_probs: Vec<f32>,
    /// Every token's end probability (0 outside the first token and the context).
    #[serde(skip)]
    pub end_probs: Vec<f32>,
}

/// The most probable label of one token.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenLabel {
    /// Token index in the input.
    pub position: usize,
    /// The label's name (`id2label`), e.g. `B-PER`.
    pub label: String,
    /// Its softmax probability.
    pub prob: f32,
    /// The label's id.
    #[serde(skip)]
    pub id: usize,
}

/// Everything one forward pass captured for one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// The model family.
    pub model_type: Family,
    /// How the tokenizer spells pieces (for showing them).
    pub token_style: TokenStyle,
    /// Whether attention is causal: weights above the diagonal are masked, not merely zero.
    pub causal: bool,
    /// Per layer, which keys a query sees besides causality (sliding and local windows); empty
    /// when every layer sees every key.
    pub windows: Vec<KeyWindow>,
    /// Per layer, the factor on `q·k` (usually `1/√head_dim`); empty: `1/√head_dim`.
    pub attention_scales: Vec<f32>,
    /// The soft-cap of attention scores, when the model caps them.
    pub attention_softcap: Option<f32>,
    /// Token strings, special tokens included.
    pub tokens: Vec<String>,
    /// Vocabulary ids.
    pub token_ids: Vec<u32>,
    /// Segment ids the model received: 0 for sentence A, 1 for sentence B (all 0 for families
    /// without segment embeddings, or that never pass token types).
    pub segment_ids: Vec<u32>,
    /// `[start, end)` character offsets into each token's sentence; `None` for special tokens.
    pub char_offsets: Vec<Option<(usize, usize)>>,
    /// Which sentence each token comes from (0 = A, 1 = B); `None` for special tokens.
    pub sentence: Vec<Option<usize>>,
    /// Tokens cut because the input exceeded the model's maximum length.
    pub dropped_tokens: usize,
    /// Attention probabilities `[layer, head, query, key]`.
    pub attentions: CapturedArray,
    /// Hidden states `[1 + layer, token, hidden]`: index 0 is the embedding output.
    pub hidden_states: CapturedArray,
    /// Per-head query vectors `[layer, head, token, head_dim]`, before scaling.
    pub queries: CapturedArray,
    /// Per-head key vectors `[layer, head, token, head_dim]`.
    pub keys: CapturedArray,
    /// ‖f_h(x_j)‖ `[layer, head, token]`, the size of what head h adds per unit of attention on
    /// token j (see [`crate::model::backend::Captured::value_norms`]); `None` unless asked for.
    pub value_norms: Option<CapturedArray>,
    /// Norm-based attention maps `[layer, head, query, key]` computed ahead, for analyses whose
    /// maps are not α·‖f(x)‖ of any captured values (word-level ones); when present they take
    /// the place of `value_norms`. `None` for a model's own run.
    pub attention_norms: Option<CapturedArray>,
    /// Heads `(layer, head)` that ran ablated, sorted: their attention is zero.
    pub ablated_heads: Vec<(usize, usize)>,
    /// Masked-LM predictions at each mask token and each requested position; `None` when the
    /// model has no MLM head.
    pub mlm: Option<Vec<TokenPrediction>>,
    /// The logit lens at the masked-LM positions (or a causal LM's last token), computed with
    /// the predictions when the run asked for it ([`crate::model::RunOptions::lens`]); `None`
    /// otherwise.
    pub logit_lens: Option<Vec<crate::model::LensPosition>>,
    /// Next-sentence probability that B follows A; `None` without a pair or without the head.
    pub nsp_is_next: Option<f32>,
    /// The next token after every position; `None` without a causal LM head.
    pub next_token: Option<Vec<TokenPrediction>>,
    /// The sequence classification; `None` without the head.
    pub classification: Option<Classification>,
    /// The answer to the question (sentence A) in the context (sentence B); `None` without the
    /// head or without a context.
    pub qa: Option<Answer>,
    /// The label of every non-special token; `None` without the head.
    pub token_classification: Option<Vec<TokenLabel>>,
}

impl Analysis {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens (never true for a real run).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of layers.
    pub fn layers(&self) -> usize {
        self.attentions.shape()[0]
    }

    /// Attention heads per layer.
    pub fn heads(&self) -> usize {
        self.attentions.shape()[1]
    }

    /// One head's `[query][key]` attention matrix, row-major (copied from the device the first
    /// time it is asked for).
    pub fn attention(&self, layer: usize, head: usize) -> &[f32] {
        self.attentions.matrix(&[layer, head])
    }

    /// The element-wise mean of a layer's heads, computed where the captures live.
    pub fn attention_mean(&self, layer: usize) -> Vec<f32> {
        self.attentions.mean_matrix(&[layer])
    }

    /// One head's map max-pooled to at most `target × target` for a thumbnail; returns the values
    /// and their side. For causal models a block wholly after the diagonal is NaN (masked), as
    /// the full map draws it. On a GPU every head is pooled there at once and copied once.
    pub fn attention_thumbnail(
        &self,
        layer: usize,
        head: usize,
        target: usize,
    ) -> (Vec<f32>, usize) {
        let (mut values, side) = self.attentions.max_pooled(&[layer, head], target);
        if self.window(layer) != KeyWindow::Whole {
            // A block is masked when none of its cells is seen.
            let tokens = self.len();
            let factor = super::captured::pool_factor(tokens, target);
            for row in 0..side {
                for col in 0..side {
                    let keys = col * factor..((col + 1) * factor).min(tokens);
                    let seen = (row * factor..((row + 1) * factor).min(tokens)).any(|query| {
                        let seen = self.keys_seen(layer, query);
                        seen.start < keys.end && keys.start < seen.end
                    });
                    if !seen {
                        values[row * side + col] = f32::NAN;
                    }
                }
            }
        } else if self.causal {
            // Block (row, col) holds only keys after its queries exactly when col > row, for
            // any pooling factor.
            for row in 0..side {
                values[row * side + row + 1..(row + 1) * side].fill(f32::NAN);
            }
        }
        (values, side)
    }

    /// Whether a token is one the tokenizer added or one of its special tokens.
    pub fn is_special(&self, index: usize) -> bool {
        self.char_offsets.get(index).is_some_and(Option::is_none)
    }

    /// A token as people read it (`·ing`, `▁the`, `↵`).
    pub fn display_token(&self, index: usize) -> String {
        self.tokens
            .get(index)
            .map(|token| self.token_style.display(token))
            .unwrap_or_default()
    }

    /// Layer `layer`'s key window.
    pub fn window(&self, layer: usize) -> KeyWindow {
        self.windows.get(layer).copied().unwrap_or_default()
    }

    /// The keys query `query` sees in layer `layer`.
    pub fn keys_seen(&self, layer: usize, query: usize) -> std::ops::Range<usize> {
        self.window(layer).keys_seen(self.causal, query, self.len())
    }

    /// Whether layer `layer` could not see key `key` from query `query` (a causal model's key
    /// after the query, a key outside the query's window): such weights are masked rather than
    /// merely zero.
    pub fn is_masked(&self, layer: usize, query: usize, key: usize) -> bool {
        !self.keys_seen(layer, query).contains(&key)
    }

    /// Whether a masked key is hidden by layer `layer`'s window rather than by causality.
    pub fn is_outside_window(&self, layer: usize, query: usize, key: usize) -> bool {
        self.is_masked(layer, query, key) && !(self.causal && key > query)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Three tokens, one layer of two heads, attention counting up from 0 in steps of 1/18.
    pub(crate) fn tiny_analysis() -> Analysis {
        let tokens = vec!["[CLS]".to_owned(), "a,b".to_owned(), "[SEP]".to_owned()];
        let attention: Vec<f32> = (0..18).map(|v| v as f32 / 18.0).collect();
        Analysis {
            model_type: Family::Bert,
            token_style: TokenStyle::WordPiece,
            causal: false,
            windows: Vec::new(),
            attention_scales: Vec::new(),
            attention_softcap: None,
            token_ids: vec![1, 2, 3],
            segment_ids: vec![0; 3],
            char_offsets: vec![None, Some((0, 3)), None],
            sentence: vec![None, Some(0), None],
            dropped_tokens: 0,
            attentions: F32Array::new(vec![1, 2, 3, 3], attention).unwrap().into(),
            hidden_states: F32Array::new(vec![2, 3, 1], vec![0.0; 6]).unwrap().into(),
            queries: F32Array::new(vec![1, 2, 3, 1], vec![0.0; 6])
                .unwrap()
                .into(),
            keys: F32Array::new(vec![1, 2, 3, 1], vec![0.0; 6])
                .unwrap()
                .into(),
            value_norms: None,
            attention_norms: None,
            ablated_heads: Vec::new(),
            mlm: None,
            logit_lens: None,
            nsp_is_next: None,
            next_token: None,
            classification: None,
            qa: None,
            token_classification: None,
            tokens,
        }
    }

    #[test]
    fn causal_thumbnails_mask_blocks_wholly_after_the_diagonal() {
        let mut analysis = tiny_analysis();
        assert_eq!(analysis.attention_thumbnail(0, 1, 2).1, 2);
        analysis.causal = true;
        let (full, side) = analysis.attention_thumbnail(0, 1, 8);
        assert_eq!(side, 3);
        let masked: Vec<bool> = full.iter().map(|v| v.is_nan()).collect();
        let expected: Vec<bool> = (0..9).map(|i| i % 3 > i / 3).collect();
        assert_eq!(masked, expected, "factor 1: every key after its query");
        let (pooled, side) = analysis.attention_thumbnail(0, 1, 2);
        assert_eq!(side, 2);
        assert!(pooled[1].is_nan());
        assert_eq!(
            pooled[0],
            13.0 / 18.0,
            "the diagonal block keeps its weights"
        );
        assert_eq!(analysis.attention_mean(0)[0], 4.5 / 18.0);
    }

    #[test]
    fn blocks_and_nesting_follow_the_shape() {
        let array = F32Array::new(vec![2, 2, 3], (0..12).map(|v| v as f32).collect()).unwrap();
        assert_eq!(array.block(&[1]), &[6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(array.block(&[1, 0]), &[6.0, 7.0, 8.0]);
        assert_eq!(array.get(&[0, 1, 2]), 5.0);
        let json = serde_json::to_string(&array).unwrap();
        assert_eq!(
            json,
            "[[[0.0,1.0,2.0],[3.0,4.0,5.0]],[[6.0,7.0,8.0],[9.0,10.0,11.0]]]"
        );
        assert!(F32Array::new(vec![2, 2], vec![0.0; 3]).is_none());
    }
}
