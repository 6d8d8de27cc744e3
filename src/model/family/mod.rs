//! One description per model family: how its `config.json` reads, how its tensors are spelled
//! (with every variant real checkpoints use), its order of operations, its heads and its
//! tokenizer conventions. Backends never see a family; they run what a description found.
//!
//! Adding a family is a file here implementing [`Description`], a [`Family`] variant, a fixture
//! and its tests.

mod bert;
mod distilbert;
mod gpt2;
mod parts;
mod roberta;

use super::config::{ConfigReader, ModelConfig};
use super::error::{ModelError, Result};
use super::params::ModelWeights;
use super::tokenizer::TokenizerConventions;
use super::weights::WeightStore;

/// The model families bertscope runs, by `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `bert`: BERT and its fine-tuned heads.
    Bert,
    /// `distilbert`: DistilBERT.
    DistilBert,
    /// `roberta`: RoBERTa.
    Roberta,
    /// `xlm-roberta`: XLM-RoBERTa (RoBERTa's architecture, a SentencePiece tokenizer).
    XlmRoberta,
    /// `gpt2`: GPT-2, causal.
    Gpt2,
}

impl Family {
    /// Every family, in the order messages list them.
    pub const ALL: [Family; 5] = [
        Self::Bert,
        Self::DistilBert,
        Self::Roberta,
        Self::XlmRoberta,
        Self::Gpt2,
    ];

    /// The `model_type` of `config.json`, also the name the dump and the app show.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::DistilBert => "distilbert",
            Self::Roberta => "roberta",
            Self::XlmRoberta => "xlm-roberta",
            Self::Gpt2 => "gpt2",
        }
    }

    /// The family's name as people write it, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bert => "BERT",
            Self::DistilBert => "DistilBERT",
            Self::Roberta => "RoBERTa",
            Self::XlmRoberta => "XLM-RoBERTa",
            Self::Gpt2 => "GPT-2",
        }
    }

    /// Every supported `model_type`, comma-separated, for messages.
    pub fn supported_list() -> String {
        Self::ALL.map(Self::model_type).join(", ")
    }

    /// The family a config describes: its `model_type`, or for very old BERT checkpoints that
    /// predate the key, their architecture list.
    pub fn detect(config: &ConfigReader) -> Result<Self> {
        match config.model_type() {
            Some(model_type) => Self::ALL
                .into_iter()
                .find(|family| family.model_type() == model_type)
                .ok_or_else(|| ModelError::UnsupportedModelType {
                    path: config.path().to_owned(),
                    model_type: model_type.to_owned(),
                }),
            None if config
                .model_classes()
                .iter()
                .any(|class| class.starts_with("Bert")) =>
            {
                Ok(Self::Bert)
            }
            None => Err(config.bad(format!(
                "missing key 'model_type' (one of {})",
                Self::supported_list()
            ))),
        }
    }

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
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

impl serde::Serialize for Family {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.model_type())
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
