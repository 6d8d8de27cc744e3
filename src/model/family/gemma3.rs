//! Gemma 3's text decoder (`gemma3_text`: Gemma 3 270M and 1B), as transformers 5.x's
//! `models/gemma3/modeling_gemma3.py` computes it: word embeddings times `√hidden`; pre-norm
//! layers whose attention and MLP outputs are normalised again before each residual sum (four
//! RMSNorms a layer, each scaling by `1 + w`); grouped-query attention scaled by
//! `query_pre_attn_scalar^−½` with an RMSNorm of each query and key head, rotary embeddings of
//! their own θ on local (sliding-window) and global layers, rope scaling on the global ones
//! only; a GeGLU MLP (tanh GELU); `norm` after the last layer; soft-capping of attention scores
//! and of the final logits when the config sets them.
//!
//! Which layers are local: `layer_types` (5.x), else the older `sliding_window_pattern` (every
//! N-th layer global, N = 6 by default). EmbeddingGemma's `use_bidirectional_attention` is
//! refused.

use super::llama::{
    decoder_embeddings, decoder_heads, decoder_products, decoder_tokenizer, layer_windows,
};
use super::{Description, Family};
use crate::model::config::{Architecture, ConfigReader, ModelConfig, NormPlacement, Rotary};
use crate::model::error::Result;
use crate::model::params::{LayerWeights, ModelWeights};
use crate::model::tokenizer::TokenizerConventions;
use crate::model::weights::{Scope, WeightStore};

/// The Gemma 3 text family.
pub(super) struct Gemma3;

/// Gemma's RMSNorm scales by `1 + w`.
const NORM_OFFSET: f32 = 1.0;

impl Description for Gemma3 {
    fn read_config(&self, config: &ConfigReader) -> Result<ModelConfig> {
        if config.optional_bool("use_bidirectional_attention")? == Some(true) {
            return Err(config.bad(
                "use_bidirectional_attention is true (EmbeddingGemma): bidirectional Gemma 3 is not supported"
                    .to_owned(),
            ));
        }
        let hidden_size = config.size(&["hidden_size"])?;
        let num_attention_heads = config.size(&["num_attention_heads"])?;
        let num_hidden_layers = config.size(&["num_hidden_layers"])?;
        let num_key_value_heads = config
            .optional_size(&["num_key_value_heads"])?
            .unwrap_or(num_attention_heads);
        let head_dim = config.optional_size(&["head_dim"])?.unwrap_or(256);
        if head_dim % 2 == 1 {
            return Err(config.bad(format!(
                "head_dim {head_dim} is odd: rotary embeddings turn pairs of dimensions"
            )));
        }
        let types = match config.optional_strings("layer_types")? {
            Some(types) => types.iter().map(|kind| (*kind).to_owned()).collect(),
            None => {
                let pattern = config
                    .optional_size(&["sliding_window_pattern"])?
                    .unwrap_or(6);
                (0..num_hidden_layers)
                    .map(|layer| {
                        if (layer + 1) % pattern == 0 {
                            "full_attention".to_owned()
                        } else {
                            "sliding_attention".to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
            }
        };
        let type_names: Vec<&str> = types.iter().map(String::as_str).collect();
        let window = config.optional_size(&["sliding_window"])?.or(Some(4096));
        let windows = layer_windows(config, &type_names, num_hidden_layers, window)?;
        // 5.x nests `rope_parameters` by layer type; older configs give the global θ as
        // `rope_theta` (with `rope_scaling`) and the local one as `rope_local_base_freq`.
        let nested = config.optional_object("rope_parameters")?.is_some();
        let global = config.rotary(head_dim, Some("full_attention"), &["rope_theta"], 1e6)?;
        let local = if nested {
            config.rotary(head_dim, Some("sliding_attention"), &[], 1e4)?
        } else {
            let theta = config
                .optional_float(&["rope_local_base_freq"])?
                .unwrap_or(1e4);
            Rotary::new(head_dim, theta)
        };
        let rotary = type_names
            .iter()
            .map(|kind| {
                Some(if *kind == "sliding_attention" {
                    local.clone()
                } else {
                    global.clone()
                })
            })
            .collect();
        let query_scalar = config
            .optional_float(&["query_pre_attn_scalar"])?
            .unwrap_or(256.0);
        let mut architecture = Architecture::new(
            NormPlacement::Pre,
            true,
            vec![query_scalar.powf(-0.5) as f32; num_hidden_layers],
        );
        architecture.final_norm = true;
        architecture.gated_ffn = true;
        architecture.windows = windows;
        architecture.rotary = rotary;
        architecture.embedding_scale = Some((hidden_size as f64).sqrt() as f32);
        architecture.block_post_norms = true;
        architecture.attention_softcap = config
            .optional_float(&["attn_logit_softcapping"])?
            .map(|cap| cap as f32);
        architecture.logit_softcap = config
            .optional_float(&["final_logit_softcapping"])?
            .map(|cap| cap as f32);
        Ok(ModelConfig {
            family: Family::Gemma3,
            vocab_size: config.size(&["vocab_size"])?,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            intermediate_size: config.size(&["intermediate_size"])?,
            max_position_embeddings: config
                .optional_size(&["max_position_embeddings"])?
                .unwrap_or(131_072),
            type_vocab_size: 0,
            layer_norm_eps: config.optional_float(&["rms_norm_eps"])?.unwrap_or(1e-6),
            hidden_act: config.activation(&["hidden_activation"], "gelu_pytorch_tanh")?,
            pad_token_id: config.optional_token_id("pad_token_id"),
            model_classes: config.model_classes(),
            labels: config.labels()?,
            problem_type: config.problem_type()?,
            architecture,
        })
    }

    /// [`Description::load_weights`] for Gemma 3.
    fn load_weights(&self, store: &mut WeightStore, config: &ModelConfig) -> Result<ModelWeights> {
        store.detect_base_prefix("model.", "embed_tokens.weight");
        let (hidden, eps) = (config.hidden_size, config.layer_norm_eps);
        let norm =
            |stem: &str, width| store.rms_norm_offset(stem, Scope::Base, width, eps, NORM_OFFSET);
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let name = |part: &str| format!("layers.{index}.{part}");
                let products = decoder_products(store, config, index)?;
                Ok(LayerWeights {
                    qkv: products.qkv,
                    query_norm: Some(norm(&name("self_attn.q_norm"), config.head_dim())?),
                    key_norm: Some(norm(&name("self_attn.k_norm"), config.head_dim())?),
                    attention_output: products.attention_output,
                    attention_norm: norm(&name("input_layernorm"), hidden)?,
                    attention_post_norm: Some(norm(&name("post_attention_layernorm"), hidden)?),
                    ffn_in: products.ffn_in,
                    ffn_out: products.ffn_out,
                    ffn_norm: norm(&name("pre_feedforward_layernorm"), hidden)?,
                    ffn_post_norm: Some(norm(&name("post_feedforward_layernorm"), hidden)?),
                })
            })
            .collect::<Result<_>>()?;
        Ok(ModelWeights {
            embeddings: decoder_embeddings(store, config)?,
            layers,
            final_norm: Some(norm("norm", hidden)?),
            heads: decoder_heads(store, config, config.architecture.logit_softcap)?,
        })
    }

    fn tokenizer(&self) -> TokenizerConventions {
        let mut conventions = decoder_tokenizer(false);
        conventions.specials.cls = "<bos>";
        conventions.specials.sep = "<eos>";
        conventions.specials.pad = "<pad>";
        conventions
    }
}
