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
use super::weights::WeightStore;

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
}

/// Width of one head when `heads` divide `hidden` evenly; 0 (refused by validation) otherwise.
pub(super) fn whole_heads(hidden: usize, heads: usize) -> usize {
    if heads > 0 && hidden.is_multiple_of(heads) {
        hidden / heads
    } else {
        0
    }
}
