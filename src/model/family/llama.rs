//! Llama-style decoders, as transformers 5.x's `models/{llama,mistral,qwen2,qwen3}/modeling_*.py`
//! compute them: token embeddings only (positions enter as rotary embeddings of each query and
//! key), pre-RMSNorm layers (`input_layernorm` before attention, `post_attention_layernorm`
//! before the MLP) with causal grouped-query attention scaled by `1/√head_dim`, a SwiGLU MLP
//! (`down(act(gate(x)) · up(x))`), and `norm` after the last layer. The four differ in little:
//!
//! - `llama` (SmolLM2, TinyLlama, Llama 3): optional biases (`attention_bias`, `mlp_bias`);
//!   rope scaling of type `linear` or `llama3`.
//! - `mistral`: a sliding window of `sliding_window` keys on every layer.
//! - `qwen2`: biases on q, k and v; a sliding window only when `use_sliding_window`, and then
//!   only on layers from `max_window_layers` on (5.x writes this out as `layer_types`).
//! - `qwen3`: an RMSNorm of each query and key head before the rotary embedding; windows as
//!   Qwen2's.
//!
//! Biases are read wherever the checkpoint stores them, which is where the config's flags put
//! them. Heads: `*ForCausalLM`'s `lm_head` (tied to `embed_tokens` when absent),
//! `*ForSequenceClassification`'s `score` on the last token that is not padding, and
//! `*ForTokenClassification`'s `score` on every token.

use super::parts::{head, label_rows, saved_as};
use super::{whole_heads, Description, Family};
use super::{
    ClassifierLayout, DropoutKey, DropoutKeys, HeadTensor,
    HeadWidth::{Hidden, Labels},
};
use crate::model::config::{
    Architecture, ConfigReader, KeyWindow, ModelConfig, NormPlacement, Rotary,
};
use crate::model::error::Result;
use crate::model::params::{
    EmbeddingWeights, HeadInput, HeadKind, HeadOp, HeadWeights, LayerWeights, Linear, ModelWeights,
};
use crate::model::tokenizer::{
    Framing, SpecialTokens, TokenStyle, TokenizerConventions, VocabFiles,
};
use crate::model::weights::{Scope, WeightStore};

/// One of the Llama-style families.
pub(super) struct LlamaKin {
    /// Which of `llama`, `mistral`, `qwen2` and `qwen3`.
    pub(super) family: Family,
}

impl LlamaKin {
    /// Each layer's key window, by the family's keys.
    fn windows(&self, config: &ConfigReader, layers: usize) -> Result<Vec<KeyWindow>> {
        let window = config.optional_size(&["sliding_window"])?;
        match self.family {
            Family::Mistral => Ok(match window {
                Some(size) => vec![KeyWindow::Sliding(size); layers],
                None => Vec::new(),
            }),
            Family::Qwen2 | Family::Qwen3 => {
                // transformers forgets the window unless `use_sliding_window` is set.
                let enabled = config.optional_bool("use_sliding_window")?.unwrap_or(false);
                let window = window.filter(|_| enabled);
                if let Some(types) = config.optional_strings("layer_types")? {
                    return layer_windows(config, &types, layers, window);
                }
                let first = config.optional_count("max_window_layers")?.unwrap_or(28);
                Ok(match window {
                    Some(size) => (0..layers)
                        .map(|layer| {
                            if layer >= first {
                                KeyWindow::Sliding(size)
                            } else {
                                KeyWindow::Whole
                            }
                        })
                        .collect(),
                    None => Vec::new(),
                })
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// Windows from 5.x's `layer_types`: `sliding_attention` layers see `window` keys (every key
/// when the config has none, as transformers does), `full_attention` layers every key.
pub(super) fn layer_windows(
    config: &ConfigReader,
    types: &[&str],
    layers: usize,
    window: Option<usize>,
) -> Result<Vec<KeyWindow>> {
    if types.len() != layers {
        return Err(config.bad(format!(
            "layer_types names {} layers, the model has {layers}",
            types.len()
        )));
    }
    types
        .iter()
        .map(|&kind| match kind {
            "full_attention" => Ok(KeyWindow::Whole),
            "sliding_attention" => Ok(window.map_or(KeyWindow::Whole, KeyWindow::Sliding)),
            other => Err(config.bad(format!(
                "layer_types entry '{other}' is not supported (full_attention and sliding_attention are)"
            ))),
        })
        .collect()
}

impl Description for LlamaKin {
    fn read_config(&self, config: &ConfigReader) -> Result<ModelConfig> {
        let hidden_size = config.size(&["hidden_size"])?;
        let num_attention_heads = config.size(&["num_attention_heads"])?;
        let num_hidden_layers = config.size(&["num_hidden_layers"])?;
        let num_key_value_heads = config
            .optional_size(&["num_key_value_heads"])?
            .unwrap_or(num_attention_heads);
        let head_dim = match config.optional_size(&["head_dim"])? {
            Some(size) => size,
            None => whole_heads(hidden_size, num_attention_heads),
        };
        if head_dim % 2 == 1 {
            return Err(config.bad(format!(
                "head_dim {head_dim} is odd: rotary embeddings turn pairs of dimensions"
            )));
        }
        let rotary: Rotary = config.rotary(head_dim, None, &["rope_theta"], 10_000.0)?;
        let default_positions = match self.family {
            Family::Llama => 2048,
            Family::Mistral => 4096 * 32,
            _ => 32_768,
        };
        let mut architecture = Architecture::new(
            NormPlacement::Pre,
            true,
            vec![1.0 / (head_dim as f32).sqrt(); num_hidden_layers],
        );
        architecture.final_norm = true;
        architecture.gated_ffn = true;
        architecture.windows = self.windows(config, num_hidden_layers)?;
        architecture.rotary = vec![Some(rotary); num_hidden_layers];
        Ok(ModelConfig {
            family: self.family,
            vocab_size: config.size(&["vocab_size"])?,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            intermediate_size: config.size(&["intermediate_size"])?,
            max_position_embeddings: config
                .optional_size(&["max_position_embeddings"])?
                .unwrap_or(default_positions),
            type_vocab_size: 0,
            layer_norm_eps: config.optional_float(&["rms_norm_eps"])?.unwrap_or(1e-6),
            hidden_act: config.activation(&["hidden_act"], "silu")?,
            pad_token_id: config.optional_token_id("pad_token_id"),
            model_classes: config.model_classes(),
            labels: config.labels()?,
            problem_type: config.problem_type()?,
            architecture,
        })
    }

    /// [`Description::load_weights`] for the Llama kin.
    fn load_weights(&self, store: &mut WeightStore, config: &ModelConfig) -> Result<ModelWeights> {
        store.detect_base_prefix("model.", "embed_tokens.weight");
        let (hidden, eps) = (config.hidden_size, config.layer_norm_eps);
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let name = |part: &str| format!("layers.{index}.{part}");
                let norm = |part: &str, width| store.rms_norm(&name(part), Scope::Base, width, eps);
                let head_norm = |part: &str| {
                    (self.family == Family::Qwen3)
                        .then(|| norm(part, config.head_dim()))
                        .transpose()
                };
                let products = decoder_products(store, config, index)?;
                Ok(LayerWeights {
                    qkv: products.qkv,
                    query_norm: head_norm("self_attn.q_norm")?,
                    key_norm: head_norm("self_attn.k_norm")?,
                    attention_output: products.attention_output,
                    attention_norm: norm("input_layernorm", hidden)?,
                    attention_post_norm: None,
                    ffn_in: products.ffn_in,
                    ffn_out: products.ffn_out,
                    ffn_norm: norm("post_attention_layernorm", hidden)?,
                    ffn_post_norm: None,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ModelWeights {
            embeddings: decoder_embeddings(store, config)?,
            layers,
            final_norm: Some(store.rms_norm("norm", Scope::Base, hidden, eps)?),
            heads: decoder_heads(store, config, None)?,
        })
    }

    fn tokenizer(&self) -> TokenizerConventions {
        decoder_tokenizer(matches!(self.family, Family::Qwen2 | Family::Qwen3))
    }

    fn classifier(&self) -> Option<ClassifierLayout> {
        // `score`, without a bias, on the last token that is not padding.
        const TENSORS: &[HeadTensor] = &[HeadTensor::weight(
            "score.weight",
            Scope::Top,
            Labels,
            Hidden,
        )];
        // The attention probabilities are all these models drop out.
        const NONE: DropoutKey = DropoutKey::new(&[], 0.0);
        Some(ClassifierLayout {
            class: match self.family {
                Family::Mistral => "MistralForSequenceClassification",
                Family::Qwen2 => "Qwen2ForSequenceClassification",
                Family::Qwen3 => "Qwen3ForSequenceClassification",
                _ => "LlamaForSequenceClassification",
            },
            base_prefix: "model.",
            tensors: TENSORS,
            dropouts: DropoutKeys {
                embedding: NONE,
                attention: DropoutKey::new(&["attention_dropout"], 0.0),
                attention_output: None,
                ffn_output: NONE,
                head: &[],
            },
            padded_positions: false,
            // `embed_tokens` is built with `padding_idx = pad_token_id`.
            padded_words: true,
        })
    }
}

/// A decoder layer's four products, as the Llama kin and Gemma 3 spell them.
pub(super) struct DecoderProducts {
    /// `q_proj`, `k_proj` and `v_proj`, stacked.
    pub qkv: Linear,
    /// `o_proj`.
    pub attention_output: Linear,
    /// `gate_proj` and `up_proj`, stacked.
    pub ffn_in: Linear,
    /// `down_proj`.
    pub ffn_out: Linear,
}

/// Layer `index`'s products under `layers.{index}.`, with biases wherever they are stored.
pub(super) fn decoder_products(
    store: &WeightStore,
    config: &ModelConfig,
    index: usize,
) -> Result<DecoderProducts> {
    let (hidden, inner) = (config.hidden_size, config.intermediate_size);
    let linear = |part: &str, inputs, outputs| {
        store.linear_optional_bias(
            &format!("layers.{index}.{part}"),
            Scope::Base,
            inputs,
            outputs,
        )
    };
    let stacked = |parts: &[(&str, usize)]| -> Result<Linear> {
        Ok(Linear::stack(
            parts
                .iter()
                .map(|&(part, outputs)| linear(part, hidden, outputs))
                .collect::<Result<_>>()?,
        ))
    };
    Ok(DecoderProducts {
        qkv: stacked(&[
            ("self_attn.q_proj", config.query_width()),
            ("self_attn.k_proj", config.kv_width()),
            ("self_attn.v_proj", config.kv_width()),
        ])?,
        attention_output: linear("self_attn.o_proj", config.query_width(), hidden)?,
        ffn_in: stacked(&[("mlp.gate_proj", inner), ("mlp.up_proj", inner)])?,
        ffn_out: linear("mlp.down_proj", inner, hidden)?,
    })
}

/// A decoder's token embeddings (`embed_tokens`); its positions are rotary.
pub(super) fn decoder_embeddings(
    store: &WeightStore,
    config: &ModelConfig,
) -> Result<EmbeddingWeights> {
    Ok(EmbeddingWeights {
        word: store.tensor(
            "embed_tokens.weight",
            Scope::Base,
            &[config.vocab_size, config.hidden_size],
        )?,
        position: None,
        segment: None,
        norm: None,
    })
}

/// A decoder's heads: `*ForCausalLM`'s `lm_head` (tied to the word embeddings when absent,
/// soft-capped when `softcap` says), `*ForSequenceClassification`'s `score` on the last token
/// that is not padding, `*ForTokenClassification`'s `score` on every token.
pub(super) fn decoder_heads(
    store: &WeightStore,
    config: &ModelConfig,
    softcap: Option<f32>,
) -> Result<Vec<HeadWeights>> {
    let hidden = config.hidden_size;
    let mut heads = Vec::new();
    let score = label_rows(store, "score.weight");
    if store.has("lm_head.weight", Scope::Top) || score.is_none() {
        let decoder = if store.has("lm_head.weight", Scope::Top) {
            HeadOp::Linear(store.linear_without_bias(
                "lm_head",
                Scope::Top,
                hidden,
                config.vocab_size,
            )?)
        } else {
            HeadOp::TiedDecoder { bias: None }
        };
        let mut ops = vec![decoder];
        ops.extend(softcap.map(HeadOp::SoftCap));
        heads.push(head(
            HeadKind::NextToken,
            HeadInput::Every,
            ops,
            config.vocab_size,
        ));
    }
    if let Some(labels) = score {
        let score = store.linear_optional_bias("score", Scope::Top, hidden, labels)?;
        let (kind, input) = if saved_as(config, "ForTokenClassification") {
            (HeadKind::TokenClassification, HeadInput::Every)
        } else {
            (
                HeadKind::SequenceClassification,
                HeadInput::LastNonPadding {
                    pad: config.pad_token_id,
                },
            )
        };
        heads.push(head(kind, input, vec![HeadOp::Linear(score)], labels));
    }
    Ok(heads)
}

/// A decoder's tokenizer conventions: Qwen's `<|endoftext|>` or Llama's `<s>`/`</s>` as the
/// default special tokens (`tokenizer_config.json` names the real ones); tokenizer.json frames.
pub(super) fn decoder_tokenizer(qwen: bool) -> TokenizerConventions {
    let specials = if qwen {
        SpecialTokens {
            cls: "<|endoftext|>",
            sep: "<|endoftext|>",
            pad: "<|endoftext|>",
            unk: "<|endoftext|>",
            mask: None,
        }
    } else {
        SpecialTokens {
            cls: "<s>",
            sep: "</s>",
            pad: "</s>",
            unk: "<unk>",
            mask: None,
        }
    };
    TokenizerConventions {
        style: TokenStyle::ByteLevel,
        specials,
        // tokenizer.json's post-processor adds Llama's `<s>` where the checkpoint wants it.
        framing: Framing::None,
        vocab_files: VocabFiles::None,
    }
}
