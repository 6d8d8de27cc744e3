//! `config.json` of a BERT-architecture checkpoint, validated so that later code can trust it.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::error::{ModelError, Result};

/// The activation inside each layer's feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact, erf-based GELU (transformers' default for BERT).
    GeluErf,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

/// The hyper-parameters of a BERT encoder, as read from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
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
    /// Longest input the model accepts, in tokens (special tokens included).
    pub max_position_embeddings: usize,
    /// Number of segment (token type) embeddings.
    pub type_vocab_size: usize,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: f64,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// Id of the padding token, when the config names one.
    pub pad_token_id: Option<u32>,
}

impl BertConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
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
        let bad = |reason: String| ModelError::BadConfig {
            path: path.to_owned(),
            reason,
        };
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|err| bad(format!("not valid JSON ({err})")))?;

        match raw.model_type.as_deref() {
            Some("bert") => {}
            Some(other) => {
                return Err(ModelError::UnsupportedModelType {
                    path: path.to_owned(),
                    model_type: other.to_owned(),
                })
            }
            // Very old checkpoints predate `model_type`; their architecture list still says BERT.
            None if raw
                .architectures
                .iter()
                .any(|arch| arch.starts_with("Bert")) => {}
            None => {
                return Err(bad(
                    "missing key 'model_type' (expected \"bert\")".to_owned()
                ))
            }
        }

        let required = |value: Option<usize>, key: &str| -> Result<usize> {
            match value {
                Some(0) => Err(bad(format!("key '{key}' must be greater than 0"))),
                Some(v) => Ok(v),
                None => Err(bad(format!("missing key '{key}'"))),
            }
        };
        let vocab_size = required(raw.vocab_size, "vocab_size")?;
        let hidden_size = required(raw.hidden_size, "hidden_size")?;
        let num_hidden_layers = required(raw.num_hidden_layers, "num_hidden_layers")?;
        let num_attention_heads = required(raw.num_attention_heads, "num_attention_heads")?;
        let intermediate_size = required(raw.intermediate_size, "intermediate_size")?;
        let max_position_embeddings =
            required(raw.max_position_embeddings, "max_position_embeddings")?;
        // transformers' BertConfig defaults, used when a key is absent.
        let type_vocab_size = required(Some(raw.type_vocab_size.unwrap_or(2)), "type_vocab_size")?;
        let layer_norm_eps = raw.layer_norm_eps.unwrap_or(1e-12);

        if hidden_size % num_attention_heads != 0 {
            return Err(bad(format!(
                "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"
            )));
        }
        let hidden_act = match raw.hidden_act.as_deref().unwrap_or("gelu") {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(bad(format!("hidden_act '{other}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu are)"))),
        };
        match raw.position_embedding_type.as_deref().unwrap_or("absolute") {
            "absolute" => {}
            other => {
                return Err(bad(format!(
                    "position_embedding_type '{other}' is not supported (only \"absolute\" is)"
                )))
            }
        }
        let pad_token_id = match raw.pad_token_id {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        };

        Ok(Self {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            max_position_embeddings,
            type_vocab_size,
            layer_norm_eps,
            hidden_act,
            pad_token_id,
        })
    }
}

/// The keys we read, all optional so that a missing one gets a message naming it.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
    pad_token_id: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":2,
        "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":32}"#;

    fn parse(text: &str) -> Result<BertConfig> {
        BertConfig::from_json(text, Path::new("config.json"))
    }

    #[test]
    fn defaults_follow_transformers() -> Result<()> {
        let config = parse(MINI)?;
        assert_eq!(config.type_vocab_size, 2);
        assert_eq!(config.layer_norm_eps, 1e-12);
        assert_eq!(config.hidden_act, Activation::GeluErf);
        assert_eq!(config.head_dim(), 4);
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
    fn other_architectures_are_refused() {
        let text = MINI.replace("\"bert\"", "\"gpt2\"");
        let err = parse(&text).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("model_type 'gpt2' is not supported"), "{err}");
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
}
