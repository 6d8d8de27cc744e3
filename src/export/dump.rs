//! The JSON document `bertscope dump` writes. Other tooling reads it, so its keys and nesting
//! are a contract: `model`, `model_type`, `tokens`, `token_ids`, `segment_ids`, `attentions`
//! `[layer][head][query][key]` (causal models: zeros above the diagonal, as transformers returns
//! them), and each head's key when the model has the head: `mlm`, `nsp` (pairs), `next_token`,
//! `classification`, `qa` (pairs: question and context) and `token_classification`; and the
//! analyses asked for with `--with`: `rollout` `[layer][query][key]` and `head_stats`
//! `[layer][head]{cls, sep, punct, self, prev, next, entropy, label}`.

use std::borrow::Cow;

use serde::Serialize;

use crate::analysis::rollout::rollout;
use crate::analysis::stats::{head_stats, HeadStats};

use crate::model::{
    Analysis, Answer, Classification, F32Array, Family, Result, TokenLabel, TokenPrediction,
};

/// The dump document, borrowing from an analysis.
#[derive(Serialize)]
pub struct DumpDocument<'a> {
    /// The model's name as given.
    pub model: &'a str,
    /// The model family (`bert`, `distilbert`, `roberta`, `xlm-roberta`, `gpt2`).
    pub model_type: Family,
    /// Token strings as the vocabulary spells them.
    pub tokens: &'a [String],
    /// Vocabulary ids.
    pub token_ids: &'a [u32],
    /// Segment ids the model received.
    pub segment_ids: &'a [u32],
    /// Attention probabilities `[layer][head][query][key]`.
    pub attentions: Cow<'a, F32Array>,
    /// Top-5 predictions at each mask token, present when the model has an MLM head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlm: Option<&'a [TokenPrediction]>,
    /// Next-sentence probability, present for pairs when the model has an NSP head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nsp: Option<NspResult>,
    /// Top-5 next tokens after every position, present when the model has a causal LM head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<&'a [TokenPrediction]>,
    /// Every label's probability (or the regression score), highest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<&'a Classification>,
    /// The answer span, present for pairs (question, context) with a question-answering head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qa: Option<&'a Answer>,
    /// The most probable label of every non-special token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_classification: Option<&'a [TokenLabel]>,
    /// Attention rollout after every layer, `[layer][query][key]`, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<F32Array>,
    /// Head statistics `[layer][head]`, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_stats: Option<Vec<Vec<HeadStats>>>,
}

/// An analysis `dump --with` adds to the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Extra {
    /// `"rollout"`: attention rollout after every layer.
    Rollout,
    /// `"head_stats"`: Clark et al.'s statistics of every head.
    HeadStats,
}

/// `{"is_next": p}`.
#[derive(Serialize)]
pub struct NspResult {
    /// Probability that sentence B follows sentence A.
    pub is_next: f32,
}

impl<'a> DumpDocument<'a> {
    /// Builds the document for one analysis, copying the attention maps to the host in one
    /// transfer when they are still on a GPU.
    pub fn new(model: &'a str, analysis: &'a Analysis) -> Result<Self> {
        Ok(Self {
            model,
            model_type: analysis.model_type,
            tokens: &analysis.tokens,
            token_ids: &analysis.token_ids,
            segment_ids: &analysis.segment_ids,
            attentions: analysis.attentions.to_host()?,
            mlm: analysis.mlm.as_deref(),
            nsp: analysis.nsp_is_next.map(|is_next| NspResult { is_next }),
            next_token: analysis.next_token.as_deref(),
            classification: analysis.classification.as_ref(),
            qa: analysis.qa.as_ref(),
            token_classification: analysis.token_classification.as_deref(),
            rollout: None,
            head_stats: None,
        })
    }

    /// Adds the analyses in `extras`, computed from the analysis.
    pub fn with(mut self, analysis: &Analysis, extras: &[Extra]) -> Self {
        if extras.contains(&Extra::Rollout) {
            let tokens = analysis.len();
            let values = rollout(analysis).concat();
            self.rollout = F32Array::new(vec![analysis.layers(), tokens, tokens], values);
        }
        if extras.contains(&Extra::HeadStats) {
            self.head_stats = Some(head_stats(analysis));
        }
        self
    }
}
