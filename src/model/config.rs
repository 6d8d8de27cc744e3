//! `config.json` of a checkpoint, read by its family's description (see [`super::family`]) and
//! validated so that later code can trust it. The result names what every family has in
//! transformers' canonical attribute names (`hidden_size`, `num_hidden_layers`, ...), and the
//! order of operations the family runs in ([`Architecture`]).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::{ModelError, Result};
use super::family_id::Family;

/// An activation function, inside a feed-forward block or a prediction head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact, erf-based GELU (transformers' default for BERT).
    GeluErf,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation (GPT-2's default).
    GeluTanh,
    /// `relu`.
    Relu,
    /// `tanh` (BERT's pooler, RoBERTa's classification head).
    Tanh,
}

impl Activation {
    /// Reads a transformers activation name (`hidden_act`, `activation`, `activation_function`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Self::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Self::GeluTanh,
            "relu" => Self::Relu,
            "tanh" => Self::Tanh,
            _ => return None,
        })
    }
}

/// Where each layer normalises: after the residual sum (BERT) or before each block (GPT-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x = norm(x + attention(x)); x = norm(x + ffn(x))`.
    Post,
    /// `x = x + attention(norm(x)); x = x + ffn(norm(x))`.
    Pre,
}

/// How position ids are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionIds {
    /// `0, 1, 2, ...`.
    FromZero,
    /// RoBERTa's: tokens other than padding count up from `pad + 1`; padding tokens get `pad`.
    AfterPadding {
        /// The padding token's id, which is also the first position number.
        pad: u32,
    },
}

/// What the model's segment (token type) embeddings receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segments {
    /// The tokenizer's segment ids: 0 for sentence A, 1 for sentence B (BERT).
    FromTokenizer,
    /// Always 0: the embedding exists but transformers never passes token types (RoBERTa).
    Zeros,
    /// The family has no segment embedding (DistilBERT, GPT-2).
    Absent,
}

/// The order of operations of a family: everything a backend needs besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    /// Post- or pre-LayerNorm layers.
    pub norm: NormPlacement,
    /// Causal (a token sees only itself and earlier tokens) or bidirectional attention.
    pub causal: bool,
    /// A LayerNorm right after the embedding sum.
    pub embedding_norm: bool,
    /// A LayerNorm after the last layer (GPT-2's `ln_f`), applied to the last hidden state.
    pub final_norm: bool,
    /// How position ids are numbered.
    pub positions: PositionIds,
    /// Whether the position table holds fixed sinusoids (DistilBERT's `sinusoidal_pos_embds`),
    /// computed when a checkpoint does not store them.
    pub sinusoidal_positions: bool,
    /// What the segment embedding receives.
    pub segments: Segments,
    /// The factor applied to `q·k` in each layer (usually `1/√head_dim`).
    pub attention_scales: Vec<f32>,
    /// Whether the model reads a sentence pair.
    pub takes_pairs: bool,
}

/// What a sequence-classification head predicts, and so how its logits become scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// One label of several: softmax.
    SingleLabelClassification,
    /// Any number of labels: a sigmoid per label.
    MultiLabelClassification,
    /// One real number: the raw score.
    Regression,
}

impl ProblemType {
    /// transformers' spelling, as in `config.json` and the dump.
    pub fn name(self) -> &'static str {
        match self {
            Self::SingleLabelClassification => "single_label_classification",
            Self::MultiLabelClassification => "multi_label_classification",
            Self::Regression => "regression",
        }
    }
}

/// The hyper-parameters of a checkpoint, whatever its family.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The model family (`model_type`).
    pub family: Family,
    /// Rows of the word-embedding matrix.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the segment-embedding table (0 when the family has none).
    pub type_vocab_size: usize,
    /// Epsilon of the encoder's LayerNorms.
    pub layer_norm_eps: f64,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// Id of the padding token, when the config names one.
    pub pad_token_id: Option<u32>,
    /// The transformers classes the checkpoint was saved from (`architectures`).
    pub model_classes: Vec<String>,
    /// Label names by id (`id2label`); empty when the config has none.
    pub labels: Vec<String>,
    /// `problem_type`, when the config says.
    pub problem_type: Option<ProblemType>,
    /// The order of operations.
    pub architecture: Architecture,
}

impl ModelConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Longest input in tokens (special tokens included): the position table, less the
    /// positions RoBERTa's numbering skips.
    pub fn max_tokens(&self) -> usize {
        match self.architecture.positions {
            PositionIds::FromZero => self.max_position_embeddings,
            PositionIds::AfterPadding { pad } => self
                .max_position_embeddings
                .saturating_sub(pad as usize + 1),
        }
    }

    /// The position id of every token, as transformers numbers them.
    pub fn position_ids(&self, ids: &[u32]) -> Vec<u32> {
        match self.architecture.positions {
            PositionIds::FromZero => (0..ids.len() as u32).collect(),
            PositionIds::AfterPadding { pad } => {
                let mut counted = 0;
                ids.iter()
                    .map(|&id| {
                        if id == pad {
                            pad
                        } else {
                            counted += 1;
                            pad + counted
                        }
                    })
                    .collect()
            }
        }
    }

    /// The label of class `id`: `id2label`'s name, else transformers' default `LABEL_{id}`.
    pub fn label(&self, id: usize) -> String {
        self.labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{id}"))
    }

    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| ModelError::Io {
            path: path.to_owned(),
            reason: format!("cannot read the model config ({err})"),
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates the text of a `config.json`; `path` only names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|err| ModelError::BadConfig {
            path: path.to_owned(),
            reason: format!("not valid JSON ({err})"),
        })?;
        let Value::Object(keys) = value else {
            return Err(ModelError::BadConfig {
                path: path.to_owned(),
                reason: "not a JSON object".to_owned(),
            });
        };
        let reader = ConfigReader {
            keys,
            path: path.to_owned(),
        };
        let family = reader.detect_family()?;
        let config = family.description().read_config(&reader)?;
        config.validate(&reader)?;
        Ok(config)
    }

    fn validate(&self, reader: &ConfigReader) -> Result<()> {
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(reader.bad(format!(
                "the hidden size {} is not a multiple of the {} attention heads",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.max_tokens() == 0 {
            return Err(reader.bad(format!(
                "{} position embeddings leave no room for tokens",
                self.max_position_embeddings
            )));
        }
        Ok(())
    }
}

/// The keys of a `config.json`, read with messages that name the file and the key.
pub struct ConfigReader {
    keys: Map<String, Value>,
    path: PathBuf,
}

impl ConfigReader {
    /// The family a config describes: its `model_type`, or for very old BERT checkpoints that
    /// predate the key, their architecture list.
    pub fn detect_family(&self) -> Result<Family> {
        match self.model_type() {
            Some(model_type) => Family::ALL
                .into_iter()
                .find(|family| family.model_type() == model_type)
                .ok_or_else(|| ModelError::UnsupportedModelType {
                    path: self.path().to_owned(),
                    model_type: model_type.to_owned(),
                }),
            None if self
                .model_classes()
                .iter()
                .any(|class| class.starts_with("Bert")) =>
            {
                Ok(Family::Bert)
            }
            None => Err(self.bad(format!(
                "missing key 'model_type' (one of {})",
                Family::supported_list()
            ))),
        }
    }

    /// An error about this config file.
    pub fn bad(&self, reason: String) -> ModelError {
        ModelError::BadConfig {
            path: self.path.clone(),
            reason,
        }
    }

    /// The config file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first of `names` that is present (families spell some keys two ways).
    fn find<'a>(&self, names: &[&'a str]) -> Option<(&'a str, &Value)> {
        names
            .iter()
            .find_map(|&name| Some(name).zip(self.keys.get(name)))
            .filter(|(_, value)| !value.is_null())
    }

    /// A positive integer that must be present under one of `names`.
    pub fn size(&self, names: &[&str]) -> Result<usize> {
        self.optional_size(names)?
            .ok_or_else(|| self.bad(format!("missing key '{}'", names[0])))
    }

    /// A positive integer, when present under one of `names`.
    pub fn optional_size(&self, names: &[&str]) -> Result<Option<usize>> {
        let Some((name, value)) = self.find(names) else {
            return Ok(None);
        };
        match value.as_u64() {
            Some(0) => Err(self.bad(format!("key '{name}' must be greater than 0"))),
            Some(v) => usize::try_from(v)
                .map(Some)
                .map_err(|_| self.bad(format!("key '{name}' is too large"))),
            None => Err(self.bad(format!("key '{name}' must be a positive integer"))),
        }
    }

    /// A non-negative integer (may be 0), when present.
    pub fn optional_count(&self, name: &str) -> Result<Option<usize>> {
        match self.find(&[name]) {
            None => Ok(None),
            Some((_, value)) => value
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| self.bad(format!("key '{name}' must be a whole number"))),
        }
    }

    /// A number, when present.
    pub fn optional_float(&self, names: &[&str]) -> Result<Option<f64>> {
        match self.find(names) {
            None => Ok(None),
            Some((name, value)) => value
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(format!("key '{name}' must be a number"))),
        }
    }

    /// A boolean, when present.
    pub fn optional_bool(&self, name: &str) -> Result<Option<bool>> {
        match self.find(&[name]) {
            None => Ok(None),
            Some((_, value)) => value
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(format!("key '{name}' must be true or false"))),
        }
    }

    /// A string, when present.
    pub fn optional_str(&self, names: &[&str]) -> Result<Option<&str>> {
        match self.find(names) {
            None => Ok(None),
            Some((name, value)) => value
                .as_str()
                .map(Some)
                .ok_or_else(|| self.bad(format!("key '{name}' must be a string"))),
        }
    }

    /// A token id, when present (configs write `null` or a list for some families).
    pub fn optional_token_id(&self, name: &str) -> Option<u32> {
        self.find(&[name])
            .and_then(|(_, value)| value.as_u64())
            .and_then(|id| u32::try_from(id).ok())
    }

    /// The activation named by the first present key of `names`, else `default`.
    pub fn activation(&self, names: &[&str], default: &str) -> Result<Activation> {
        let name = self.optional_str(names)?.unwrap_or(default);
        Activation::from_name(name).ok_or_else(|| {
            self.bad(format!(
                "activation '{name}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu and tanh are)"
            ))
        })
    }

    /// `architectures`: the transformers classes the checkpoint was saved from.
    pub fn model_classes(&self) -> Vec<String> {
        self.find(&["architectures"])
            .and_then(|(_, value)| value.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `model_type`, when present.
    pub fn model_type(&self) -> Option<&str> {
        self.find(&["model_type"])
            .and_then(|(_, value)| value.as_str())
    }

    /// `id2label` in id order. Ids must run from 0 without gaps.
    pub fn labels(&self) -> Result<Vec<String>> {
        let Some((_, value)) = self.find(&["id2label"]) else {
            return Ok(Vec::new());
        };
        let Some(map) = value.as_object() else {
            return Err(self.bad("key 'id2label' must map ids to names".to_owned()));
        };
        let mut labels = vec![None; map.len()];
        for (id, name) in map {
            let index = id
                .parse::<usize>()
                .ok()
                .filter(|&index| index < labels.len())
                .ok_or_else(|| {
                    self.bad(format!(
                        "'id2label' has id '{id}'; ids must run from 0 to {}",
                        labels.len().saturating_sub(1)
                    ))
                })?;
            labels[index] = Some(name.as_str().unwrap_or_default().to_owned());
        }
        Ok(labels.into_iter().flatten().collect())
    }

    /// `problem_type`, when present.
    pub fn problem_type(&self) -> Result<Option<ProblemType>> {
        Ok(match self.optional_str(&["problem_type"])? {
            None => None,
            Some("single_label_classification") => Some(ProblemType::SingleLabelClassification),
            Some("multi_label_classification") => Some(ProblemType::MultiLabelClassification),
            Some("regression") => Some(ProblemType::Regression),
            Some(other) => {
                return Err(self.bad(format!(
                    "problem_type '{other}' is not one of single_label_classification, multi_label_classification, regression"
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":2,
        "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":32}"#;

    fn parse(text: &str) -> Result<ModelConfig> {
        ModelConfig::from_json(text, Path::new("config.json"))
    }

    #[test]
    fn defaults_follow_transformers() -> Result<()> {
        let config = parse(MINI)?;
        assert_eq!(config.family, Family::Bert);
        assert_eq!(config.type_vocab_size, 2);
        assert_eq!(config.layer_norm_eps, 1e-12);
        assert_eq!(config.hidden_act, Activation::GeluErf);
        assert_eq!(config.head_dim(), 4);
        assert_eq!(config.max_tokens(), 32);
        assert_eq!(config.label(3), "LABEL_3");
        Ok(())
    }

    #[test]
    fn missing_key_is_named() {
        let text = MINI.replace("\"hidden_size\":8,", "");
        let err = parse(&text).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("missing key 'hidden_size'"), "{err}");
        assert!(err.starts_with("config.json"), "{err}");
    }

    #[test]
    fn unknown_families_are_refused_with_the_supported_list() {
        let text = MINI.replace("\"bert\"", "\"t5\"");
        let err = parse(&text).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("model_type 't5' is not supported"), "{err}");
        assert!(
            err.contains("bert, distilbert, roberta, xlm-roberta, gpt2"),
            "{err}"
        );
    }

    #[test]
    fn heads_must_divide_hidden() {
        let text = MINI.replace("\"num_attention_heads\":2", "\"num_attention_heads\":3");
        let err = parse(&text).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("not a multiple"), "{err}");
    }

    #[test]
    fn invalid_json_is_reported() {
        let err = parse("{").map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn labels_come_in_id_order() -> Result<()> {
        let text = MINI.replace(
            "\"model_type\"",
            r#""id2label":{"1":"POSITIVE","0":"NEGATIVE"},"problem_type":"multi_label_classification","model_type""#,
        );
        let config = parse(&text)?;
        assert_eq!(config.labels, ["NEGATIVE", "POSITIVE"]);
        assert_eq!(
            config.problem_type,
            Some(ProblemType::MultiLabelClassification)
        );
        Ok(())
    }

    #[test]
    fn roberta_positions_start_after_padding() -> Result<()> {
        let text = MINI.replace("\"bert\"", "\"roberta\"").replace(
            "\"max_position_embeddings\":32",
            "\"max_position_embeddings\":34,\"pad_token_id\":1",
        );
        let config = parse(&text)?;
        assert_eq!(config.max_tokens(), 32);
        assert_eq!(config.position_ids(&[0, 5, 1, 7]), vec![2, 3, 1, 4]);
        Ok(())
    }
}
