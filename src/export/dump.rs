//! The JSON document `bertscope dump` writes. Other tooling reads it, so its keys and nesting
//! are a contract: `model`, `model_type`, `tokens`, `token_ids`, `segment_ids`, `attentions`
//! `[layer][head][query][key]` (causal models: zeros above the diagonal, as transformers returns
//! them), and each head's key when the model has the head: `mlm`, `nsp` (pairs), `next_token`,
//! `classification`, `qa` (pairs: question and context) and `token_classification`; and the
//! analyses asked for with `--with`: `rollout` `[layer][query][key]`, `flow` `{to, values}`,
//! `attention_norms` `[layer][head][query][key]`, `logit_lens`
//! `[{position, layers: [{layer, top_k}]}]`, `embeddings` `[{position, word, position_emb,
//! segment, sum, after_norm}]` and `head_stats` `[layer][head]{cls, sep, punct, self, prev,
//! next, entropy, label}`; `attribution`, `patching` and `logit_attribution` as
//! [`Attribution`], [`Patching`] and [`LogitAttribution`] serialise. With `--words`, `words` lists the words and `attentions`,
//! `head_stats`, `rollout`, `flow` (`--flow-to` counts words) and `attention_norms` are
//! word-level.

use std::borrow::Cow;

use serde::Serialize;

use crate::analysis::flow::flow_into;
use crate::analysis::norms::attention_norms;
use crate::analysis::rollout::rollout;
use crate::analysis::stats::{head_stats, HeadStats};
use crate::analysis::words::{word_analysis, word_maps, words, Words};

use crate::model::attribution::{Attribution, AttributionOptions};
use crate::model::logit_attribution::LogitAttribution;
use crate::model::patching::Patching;
use crate::model::target::TargetSpec;
use crate::model::{
    Analysis, Answer, Classification, F32Array, Family, LensPosition, LoadedModel, ModelError,
    Result, TokenEmbedding, TokenLabel, TokenPrediction,
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
    /// Attention flow from every input token into one output token, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<Flow>,
    /// Norm-based attention `[layer][head][query][key]`, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention_norms: Option<F32Array>,
    /// The logit lens at each mask (or the last position of a causal LM), when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logit_lens: Option<Vec<LensPosition>>,
    /// The sizes of each token's input embedding and its parts, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<Vec<TokenEmbedding>>,
    /// Head statistics `[layer][head]`, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_stats: Option<Vec<Vec<HeadStats>>>,
    /// Attribution of the target logit to the input tokens, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    /// Activation patching from the corrupted text, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patching: Option<Patching>,
    /// Direct logit attribution, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logit_attribution: Option<LogitAttribution>,
    /// The words, when the maps are word-level (`--words`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<String>>,
}

/// `{"to": i, "values": [key]}`: max-flow from every input token into output token `to`.
#[derive(Serialize)]
pub struct Flow {
    /// The output token.
    pub to: usize,
    /// Per input token.
    pub values: Vec<f32>,
}

/// What `dump --with` and its companions ask for.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// The analyses to add.
    pub with: Vec<Extra>,
    /// The output token that attention flow goes into.
    pub flow_to: usize,
    /// Word-level maps.
    pub words: bool,
    /// The texts the analysis ran (attribution and patching run them again).
    pub texts: (String, Option<String>),
    /// The logit attribution, patching and logit attribution explain.
    pub target: TargetSpec,
    /// Integrated-gradients steps.
    pub ig_steps: usize,
    /// The corrupted texts of activation patching.
    pub corrupt: Option<(String, Option<String>)>,
}

impl Extras {
    /// Whether the run must compute value norms.
    pub fn needs_value_norms(&self) -> bool {
        self.with.contains(&Extra::Norms)
    }
}

/// An analysis `dump --with` adds to the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Extra {
    /// `"rollout"`: attention rollout after every layer.
    Rollout,
    /// `"flow"`: attention flow into the token `--flow-to`.
    Flow,
    /// `"attention_norms"`: norm-based attention of every head.
    Norms,
    /// `"logit_lens"`: the prediction head applied after every layer.
    LogitLens,
    /// `"embeddings"`: the sizes of the input embeddings' parts.
    Embeddings,
    /// `"head_stats"`: Clark et al.'s statistics of every head.
    HeadStats,
    /// `"attribution"`: the target logit attributed to the input tokens.
    Attribution,
    /// `"patching"`: activation patching from `--corrupt`.
    Patching,
    /// `"logit_attribution"`: the target logit taken apart by layer and head.
    LogitAttribution,
}

impl DumpDocument<'_> {
    /// Attribution, patching and logit attribution, as `extras` asks; attribution per word
    /// when `words` are given.
    fn interventions(
        &mut self,
        model: &LoadedModel,
        extras: &Extras,
        words: Option<&Words>,
    ) -> Result<()> {
        let asked = |extra| extras.with.contains(&extra);
        let encode = |(a, b): &(String, Option<String>)| model.tokenizer().encode(a, b.as_deref());
        let encoded = encode(&extras.texts)?;
        if asked(Extra::Attribution) {
            let options = AttributionOptions {
                target: extras.target.clone(),
                ig_steps: extras.ig_steps.max(1),
                occlusion: true,
            };
            let attribution = model.attribution(&encoded, &options, &mut |_, _| true)?;
            self.attribution = Some(match words {
                Some(words) => attribution.per_word(words),
                None => attribution,
            });
        }
        if asked(Extra::Patching) {
            let corrupt = extras.corrupt.as_ref().ok_or_else(|| {
                ModelError::BadInput(
                    "--with patching needs the corrupted text: --corrupt TEXT".to_owned(),
                )
            })?;
            self.patching = Some(model.patching(
                &encoded,
                &encode(corrupt)?,
                &extras.target,
                &mut |_, _| true,
            )?);
        }
        if asked(Extra::LogitAttribution) {
            self.logit_attribution = Some(model.logit_attribution(&encoded, &extras.target)?);
        }
        Ok(())
    }
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
            flow: None,
            attention_norms: None,
            logit_lens: None,
            embeddings: None,
            head_stats: None,
            attribution: None,
            patching: None,
            logit_attribution: None,
            words: None,
        })
    }

    /// Adds the analyses `extras` asks for, computed from the analysis (and, for the lens and
    /// the embeddings, the model's weights); with `extras.words`, makes the maps word-level.
    pub fn with(
        mut self,
        model: &LoadedModel,
        analysis: &Analysis,
        extras: &Extras,
    ) -> Result<Self> {
        let asked = |extra| extras.with.contains(&extra);
        let tokens = analysis.len();
        if asked(Extra::Rollout) {
            let values = rollout(analysis).concat();
            self.rollout = F32Array::new(vec![analysis.layers(), tokens, tokens], values);
        }
        if asked(Extra::Norms) {
            self.attention_norms = Some(attention_norms(analysis).ok_or_else(|| {
                ModelError::Compute("the run computed no value norms".to_owned())
            })?);
        }
        if asked(Extra::LogitLens) {
            self.logit_lens = Some(model.logit_lens(analysis, 5)?);
        }
        if asked(Extra::Embeddings) {
            self.embeddings = Some(model.embedding_breakdown(analysis)?.tokens);
        }
        // Flow and head statistics of words come from the words' own maps, as the app shows
        // them with words on: the flow runs through the merged graph, and the first word, the
        // separators and punctuation are words.
        let words = extras.words.then(|| words(analysis));
        let merged = match &words {
            Some(words) if asked(Extra::Flow) || asked(Extra::HeadStats) => {
                Some(word_analysis(analysis, words).ok_or_else(|| {
                    ModelError::Compute("the captured maps could not be copied".to_owned())
                })?)
            }
            _ => None,
        };
        let over = merged.as_ref().unwrap_or(analysis);
        if asked(Extra::Flow) {
            let (count, unit) = (over.len(), if words.is_some() { "words" } else { "tokens" });
            if extras.flow_to >= count {
                return Err(ModelError::BadInput(format!(
                    "--flow-to {} is beyond the input's {count} {unit} (0 to {})",
                    extras.flow_to,
                    count - 1
                )));
            }
            self.flow = Some(Flow {
                to: extras.flow_to,
                values: flow_into(over, extras.flow_to),
            });
        }
        if asked(Extra::HeadStats) {
            self.head_stats = Some(head_stats(over));
        }
        self.interventions(model, extras, words.as_ref())?;
        if let Some(words) = words {
            self.attentions = std::borrow::Cow::Owned(word_maps(&self.attentions, &words));
            self.rollout = self.rollout.map(|maps| word_maps(&maps, &words));
            self.attention_norms = self.attention_norms.map(|maps| word_maps(&maps, &words));
            self.words = Some(words.words);
        }
        Ok(self)
    }
}
