//! The JSON document `bertscope dump` writes. Other tooling reads it, so its keys and nesting
//! are a contract: `model`, `tokens`, `token_ids`, `segment_ids`, `attentions`
//! `[layer][head][query][key]`, `mlm` (with an MLM head) and `nsp` (for pairs with an NSP head).

use serde::Serialize;

use crate::model::{Analysis, F32Array, MlmPrediction};

/// The dump document, borrowing from an analysis.
#[derive(Serialize)]
pub struct DumpDocument<'a> {
    /// The model's name as given.
    pub model: &'a str,
    /// Token strings.
    pub tokens: &'a [String],
    /// Vocabulary ids.
    pub token_ids: &'a [u32],
    /// Segment ids.
    pub segment_ids: &'a [u32],
    /// Attention probabilities `[layer][head][query][key]`.
    pub attentions: &'a F32Array,
    /// Top-5 predictions at each `[MASK]`, present when the model has an MLM head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlm: Option<&'a [MlmPrediction]>,
    /// Next-sentence probability, present for pairs when the model has an NSP head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nsp: Option<NspResult>,
}

/// `{"is_next": p}`.
#[derive(Serialize)]
pub struct NspResult {
    /// Probability that sentence B follows sentence A.
    pub is_next: f32,
}

impl<'a> DumpDocument<'a> {
    /// Builds the document for one analysis.
    pub fn new(model: &'a str, analysis: &'a Analysis) -> Self {
        Self {
            model,
            tokens: &analysis.tokens,
            token_ids: &analysis.token_ids,
            segment_ids: &analysis.segment_ids,
            attentions: &analysis.attentions,
            mlm: analysis.mlm.as_deref(),
            nsp: analysis.nsp_is_next.map(|is_next| NspResult { is_next }),
        }
    }
}
