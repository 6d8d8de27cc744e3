//! ModernBERT, as transformers 5.x's `models/modernbert/modeling_modernbert.py` computes it: token
//! embeddings and a LayerNorm (no positions: rotary embeddings of each query and key instead);
//! pre-norm encoder layers, the first without an attention norm; one `Wqkv` product; global
//! layers (θ 160,000) and local ones (θ 10,000) that see only keys within `local_attention / 2`
//! tokens on either side; a GeGLU MLP (`Wi` gives the activated half, then the gate);
//! `final_norm` after the last layer. LayerNorms and linears have biases only where the config
//! asks (`norm_bias`, `attention_bias`, `mlp_bias`), which is where the checkpoint stores them.
//!
//! Which layers are local: `layer_types` (5.x), else the older `global_attn_every_n_layers`
//! (layer i is global when i is a multiple of it; 3 by default). Heads: `ModernBertForMaskedLM`'s
//! `head` (dense, activation, norm) and `decoder` (tied to the embeddings when absent), and
//! `ModernBertForSequenceClassification`'s and `…TokenClassification`'s `head` and
//! `classifier`, the sequence head pooling the first token (`cls`) or the mean of all
//! (`mean`).

use super::llama::layer_windows;
use super::parts::{head, label_rows, question_answering, saved_as};
use super::{whole_heads, Description, Family};
use crate::model::config::{
    Architecture, ConfigReader, KeyWindow, ModelConfig, NormPlacement, Rotary, Segments,
};
use crate::model::error::Result;
use crate::model::params::{
    EmbeddingWeights, HeadInput, HeadKind, HeadOp, LayerWeights, ModelWeights, Norm, NormKind,
};
use crate::model::tokenizer::{TokenStyle, TokenizerConventions, VocabFiles};
use crate::model::weights::{Scope, WeightStore};

/// The ModernBERT family.
pub(super) struct ModernBert;

impl Description for ModernBert {
    fn read_config(&self, config: &ConfigReader) -> Result<ModelConfig> {
        let hidden_size = config.size(&["hidden_size"])?;
        let num_attention_heads = config.size(&["num_attention_heads"])?;
        let num_hidden_layers = config.size(&["num_hidden_layers"])?;
        let head_dim = whole_heads(hidden_size, num_attention_heads);
        if head_dim % 2 == 1 {
            return Err(config.bad(format!(
                "head_dim {head_dim} is odd: rotary embeddings turn pairs of dimensions"
            )));
        }
        let types: Vec<String> = match config.optional_strings("layer_types")? {
            Some(types) => types.iter().map(|kind| (*kind).to_owned()).collect(),
            None => {
                let every = config
                    .optional_size(&["global_attn_every_n_layers"])?
                    .unwrap_or(3);
                (0..num_hidden_layers)
                    .map(|layer| {
                        if layer % every == 0 {
                            "full_attention".to_owned()
                        } else {
                            "sliding_attention".to_owned()
                        }
                    })
                    .collect()
            }
        };
        let type_names: Vec<&str> = types.iter().map(String::as_str).collect();
        let half = config.optional_size(&["local_attention"])?.unwrap_or(128) / 2;
        // Read as a causal window of any size, then made the local one ModernBERT's layers have.
        let windows = layer_windows(config, &type_names, num_hidden_layers, Some(1))?
            .into_iter()
            .map(|window| match window {
                KeyWindow::Sliding(_) => KeyWindow::Local(half),
                other => other,
            })
            .collect();
        let nested = config.optional_object("rope_parameters")?.is_some();
        let global = config.rotary(
            head_dim,
            Some("full_attention"),
            &["global_rope_theta"],
            160_000.0,
        )?;
        let local = if nested {
            config.rotary(head_dim, Some("sliding_attention"), &[], 10_000.0)?
        } else {
            let theta = config.optional_float(&["local_rope_theta"])?;
            match theta {
                Some(theta) => Rotary::new(head_dim, theta),
                None => config.rotary(head_dim, None, &[], 10_000.0)?,
            }
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
        let pooling = config
            .optional_str(&["classifier_pooling"])?
            .unwrap_or("cls");
        if !matches!(pooling, "cls" | "mean") {
            return Err(config.bad(format!(
                "classifier_pooling '{pooling}' is not supported (cls and mean are)"
            )));
        }
        let mut architecture = Architecture::new(
            NormPlacement::Pre,
            false,
            vec![1.0 / (head_dim as f32).sqrt(); num_hidden_layers],
        );
        architecture.embedding_norm = true;
        architecture.final_norm = true;
        architecture.gated_ffn = true;
        architecture.windows = windows;
        architecture.rotary = rotary;
        architecture.segments = Segments::Absent;
        architecture.takes_pairs = true;
        architecture.head_activation = Some(config.activation(&["classifier_activation"], "gelu")?);
        architecture.mean_pooling = pooling == "mean";
        Ok(ModelConfig {
            family: Family::ModernBert,
            vocab_size: config.size(&["vocab_size"])?,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: num_attention_heads,
            head_dim,
            intermediate_size: config.size(&["intermediate_size"])?,
            max_position_embeddings: config
                .optional_size(&["max_position_embeddings"])?
                .unwrap_or(8192),
            type_vocab_size: 0,
            layer_norm_eps: config.optional_float(&["norm_eps"])?.unwrap_or(1e-5),
            hidden_act: config.activation(&["hidden_activation"], "gelu")?,
            pad_token_id: config.optional_token_id("pad_token_id"),
            model_classes: config.model_classes(),
            labels: config.labels()?,
            problem_type: config.problem_type()?,
            architecture,
        })
    }

    /// [`Description::load_weights`] for ModernBERT.
    fn load_weights(&self, store: &mut WeightStore, config: &ModelConfig) -> Result<ModelWeights> {
        store.detect_base_prefix("model.", "embeddings.tok_embeddings.weight");
        let hidden = config.hidden_size;
        let inner = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let linear = |stem: &str, scope, inputs, outputs| {
            store.linear_optional_bias(stem, scope, inputs, outputs)
        };
        let norm = |stem: &str, scope| store.norm_optional_bias(stem, scope, hidden, eps);
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let name = |part: &str| format!("layers.{index}.{part}");
                // The first layer's attention norm is an `nn.Identity`.
                let attention_norm = if store.has(&name("attn_norm.weight"), Scope::Base) {
                    norm(&name("attn_norm"), Scope::Base)?
                } else {
                    Norm {
                        gamma: Vec::new(),
                        beta: Vec::new(),
                        eps,
                        kind: NormKind::Identity,
                    }
                };
                Ok(LayerWeights {
                    qkv: linear(&name("attn.Wqkv"), Scope::Base, hidden, 3 * hidden)?,
                    query_norm: None,
                    key_norm: None,
                    attention_output: linear(&name("attn.Wo"), Scope::Base, hidden, hidden)?,
                    attention_norm,
                    attention_post_norm: None,
                    ffn_in: linear(&name("mlp.Wi"), Scope::Base, hidden, 2 * inner)?,
                    ffn_out: linear(&name("mlp.Wo"), Scope::Base, inner, hidden)?,
                    ffn_norm: norm(&name("mlp_norm"), Scope::Base)?,
                    ffn_post_norm: None,
                })
            })
            .collect::<Result<_>>()?;
        let embeddings = EmbeddingWeights {
            word: store.tensor(
                "embeddings.tok_embeddings.weight",
                Scope::Base,
                &[config.vocab_size, hidden],
            )?,
            position: None,
            segment: None,
            norm: Some(norm("embeddings.norm", Scope::Base)?),
        };
        let final_norm = Some(norm("final_norm", Scope::Base)?);

        let activation = config
            .architecture
            .head_activation
            .unwrap_or(config.hidden_act);
        let prediction_head = || -> Result<Vec<HeadOp>> {
            Ok(vec![
                HeadOp::Linear(linear("head.dense", Scope::Top, hidden, hidden)?),
                HeadOp::Activation(activation),
                HeadOp::Norm(norm("head.norm", Scope::Top)?),
            ])
        };
        let mut heads = Vec::new();
        let labels = label_rows(store, "classifier.weight");
        if store.has("decoder.bias", Scope::Top) || store.has("decoder.weight", Scope::Top) {
            let bias = store.tensor_optional("decoder.bias", Scope::Top, &[config.vocab_size])?;
            let decoder = if store.has("decoder.weight", Scope::Top) {
                let mut decoder =
                    store.linear_without_bias("decoder", Scope::Top, hidden, config.vocab_size)?;
                decoder.bias = bias;
                HeadOp::Linear(decoder)
            } else {
                HeadOp::TiedDecoder { bias }
            };
            let mut ops = prediction_head()?;
            ops.push(decoder);
            heads.push(head(
                HeadKind::MaskedLm,
                HeadInput::Requested,
                ops,
                config.vocab_size,
            ));
        }
        if let Some(labels) = labels {
            let mut ops = prediction_head()?;
            ops.push(HeadOp::Linear(linear(
                "classifier",
                Scope::Top,
                hidden,
                labels,
            )?));
            if saved_as(config, "ForTokenClassification") {
                heads.push(head(
                    HeadKind::TokenClassification,
                    HeadInput::Every,
                    ops,
                    labels,
                ));
            } else {
                let input = if config.architecture.mean_pooling {
                    ops.insert(0, HeadOp::MeanPool);
                    HeadInput::Mean
                } else {
                    HeadInput::First
                };
                heads.push(head(HeadKind::SequenceClassification, input, ops, labels));
            }
        }
        heads.extend(question_answering(store, config)?);
        Ok(ModelWeights {
            embeddings,
            layers,
            final_norm,
            heads,
        })
    }

    /// BERT's special tokens and framing, spelled by a byte-level BPE tokenizer.json.
    fn tokenizer(&self) -> TokenizerConventions {
        TokenizerConventions {
            style: TokenStyle::ByteLevel,
            vocab_files: VocabFiles::None,
            ..TokenizerConventions::wordpiece()
        }
    }
}
