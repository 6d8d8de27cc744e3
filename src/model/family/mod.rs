//! One description per model family: how its `config.json` reads, how its tensors are spelled
//! (with every variant real checkpoints use), its order of operations, its heads and its
//! tokenizer conventions. Backends never see a family; they run what a description found.
//!
//! Adding a family is a file here implementing `Description`, a [`Family`] variant, a fixture
//! and its tests.

mod bert;
mod distilbert;
mod gemma3;
mod gpt2;
mod llama;
mod modernbert;
mod parts;
mod roberta;

use super::config::{ConfigReader, ModelConfig};
use super::error::Result;
use super::params::ModelWeights;
use super::tokenizer::TokenizerConventions;
use super::weights::{Scope, WeightStore};

pub use super::family_id::Family;

impl Family {
    /// The family's description.
    pub(crate) fn description(self) -> &'static dyn Description {
        match self {
            Self::Bert => &bert::Bert,
            Self::DistilBert => &distilbert::DistilBert,
            Self::Roberta => &roberta::Roberta {
                family: Family::Roberta,
            },
            Self::XlmRoberta => &roberta::Roberta {
                family: Family::XlmRoberta,
            },
            Self::Gpt2 => &gpt2::Gpt2,
            Self::Gemma3 => &gemma3::Gemma3,
            Self::ModernBert => &modernbert::ModernBert,
            Self::Llama => &llama::LlamaKin {
                family: Family::Llama,
            },
            Self::Mistral => &llama::LlamaKin {
                family: Family::Mistral,
            },
            Self::Qwen2 => &llama::LlamaKin {
                family: Family::Qwen2,
            },
            Self::Qwen3 => &llama::LlamaKin {
                family: Family::Qwen3,
            },
        }
    }
}

/// What a family description provides.
pub(crate) trait Description: Sync {
    /// Reads and validates the family's `config.json` keys.
    fn read_config(&self, config: &ConfigReader) -> Result<ModelConfig>;

    /// Finds every weight of the encoder and of whichever heads the checkpoint has.
    fn load_weights(&self, store: &mut WeightStore, config: &ModelConfig) -> Result<ModelWeights>;

    /// Special tokens, framing and vocabulary files of the family's tokenizer.
    fn tokenizer(&self) -> TokenizerConventions;

    /// How the family's sequence classifier is spelled and trained, for families that have one
    /// transformers can load.
    fn classifier(&self) -> Option<ClassifierLayout> {
        None
    }
}

/// A family's sequence-classification model as transformers writes it
/// (`BertForSequenceClassification`, ...): its class, where the base model's tensors go, the
/// head's tensors and its dropouts.
#[derive(Debug, Clone, Copy)]
pub struct ClassifierLayout {
    /// The transformers class, written to `architectures`.
    pub class: &'static str,
    /// The prefix the class stores the base model under (`bert.`).
    pub base_prefix: &'static str,
    /// The head's tensors, as the description reads them.
    pub tensors: &'static [HeadTensor],
    /// Where the model and its head drop out while training.
    pub dropouts: DropoutKeys,
    /// Whether the position table has a padding row (`padding_idx`, RoBERTa's), which, like
    /// the word table's padding row, receives no gradient.
    pub padded_positions: bool,
    /// Whether the word table has a padding row at `pad_token_id`.
    pub padded_words: bool,
}

/// One tensor of a classification head: a weight `[rows, columns]` (drawn from a normal
/// distribution with the config's `initializer_range`) or a bias `[rows]` (zeros).
#[derive(Debug, Clone, Copy)]
pub struct HeadTensor {
    /// The name the description reads.
    pub name: &'static str,
    /// Inside the base model (BERT's pooler) or at the top level.
    pub scope: Scope,
    /// The number of rows: the hidden size or the number of labels.
    pub rows: HeadWidth,
    /// The number of columns, for a weight.
    pub columns: Option<HeadWidth>,
}

/// A width of a head tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadWidth {
    /// The model's hidden size.
    Hidden,
    /// The number of labels.
    Labels,
}

/// A dropout probability: the first of `keys` the config sets, else `default`.
#[derive(Debug, Clone, Copy)]
pub struct DropoutKey {
    /// Config keys, in order of precedence (`classifier_dropout`, then `hidden_dropout_prob`).
    pub keys: &'static [&'static str],
    /// transformers' default.
    pub default: f64,
}

/// Where a family drops out while training.
#[derive(Debug, Clone, Copy)]
pub struct DropoutKeys {
    /// The embedding output.
    pub embedding: DropoutKey,
    /// The attention probabilities.
    pub attention: DropoutKey,
    /// The attention block's projected output, before the residual sum (DistilBERT has none).
    pub attention_output: Option<DropoutKey>,
    /// The feed-forward block's output, before the residual sum.
    pub ffn_output: DropoutKey,
    /// Before head operation `i`.
    pub head: &'static [(usize, DropoutKey)],
}

impl DropoutKey {
    /// A dropout read from `keys` with transformers' default `default`.
    pub const fn new(keys: &'static [&'static str], default: f64) -> Self {
        Self { keys, default }
    }
}

impl HeadTensor {
    /// A weight `[rows, columns]`.
    pub const fn weight(
        name: &'static str,
        scope: Scope,
        rows: HeadWidth,
        columns: HeadWidth,
    ) -> Self {
        Self {
            name,
            scope,
            rows,
            columns: Some(columns),
        }
    }

    /// A bias `[rows]`.
    pub const fn bias(name: &'static str, scope: Scope, rows: HeadWidth) -> Self {
        Self {
            name,
            scope,
            rows,
            columns: None,
        }
    }
}

/// Width of one head when `heads` divide `hidden` evenly; 0 (refused by validation) otherwise.
pub(super) fn whole_heads(hidden: usize, heads: usize) -> usize {
    if heads > 0 && hidden.is_multiple_of(heads) {
        hidden / heads
    } else {
        0
    }
}
