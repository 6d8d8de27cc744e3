//! GPT-2, as transformers' `models/gpt2/modeling_gpt2.py` computes it: token + position
//! embeddings (no LayerNorm, no segments), pre-LayerNorm layers (`ln_1` before attention, `ln_2`
//! before the MLP) with causal attention, and `ln_f` after the last layer; the last hidden state
//! transformers returns is after `ln_f`. Weights are `Conv1D`s stored `[in, out]`. No special
//! tokens are added and there are no sentence pairs. Heads: `GPT2LMHeadModel`'s `lm_head` (tied
//! to `wte` when absent), `GPT2ForSequenceClassification`'s `score` (on the last token that is
//! not padding) and `GPT2ForTokenClassification`'s `classifier`.

use super::parts::{head, label_rows, token_classifier};
use super::{whole_heads, Description, Family};
use super::{
    ClassifierLayout, DropoutKey, DropoutKeys, HeadTensor,
    HeadWidth::{Hidden, Labels},
};
use crate::model::config::{
    Architecture, ConfigReader, ModelConfig, NormPlacement, PositionIds, Segments,
};
use crate::model::error::Result;
use crate::model::params::{
    EmbeddingWeights, HeadInput, HeadKind, HeadOp, LayerWeights, ModelWeights,
};
use crate::model::tokenizer::{
    Framing, SpecialTokens, TokenStyle, TokenizerConventions, VocabFiles,
};
use crate::model::weights::{Scope, WeightStore};

/// The GPT-2 family.
pub(super) struct Gpt2;

impl Description for Gpt2 {
    fn read_config(&self, config: &ConfigReader) -> Result<ModelConfig> {
        let hidden_size = config.size(&["n_embd", "hidden_size"])?;
        let num_attention_heads = config.size(&["n_head", "num_attention_heads"])?;
        let num_hidden_layers = config.size(&["n_layer", "num_hidden_layers"])?;
        if config.optional_bool("add_cross_attention")? == Some(true) {
            return Err(config.bad(
                "add_cross_attention is true: encoder-decoder GPT-2 models are not supported"
                    .to_owned(),
            ));
        }
        let head_dim = whole_heads(hidden_size, num_attention_heads);
        let scale_by_head = config.optional_bool("scale_attn_weights")?.unwrap_or(true);
        let scale_by_layer = config
            .optional_bool("scale_attn_by_inverse_layer_idx")?
            .unwrap_or(false);
        let attention_scales = (0..num_hidden_layers)
            .map(|layer| {
                let head_scale = if scale_by_head {
                    1.0 / (head_dim as f32).sqrt()
                } else {
                    1.0
                };
                if scale_by_layer {
                    head_scale / (layer + 1) as f32
                } else {
                    head_scale
                }
            })
            .collect();
        Ok(ModelConfig {
            family: Family::Gpt2,
            vocab_size: config.size(&["vocab_size"])?,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: num_attention_heads,
            head_dim,
            intermediate_size: config
                .optional_size(&["n_inner"])?
                .unwrap_or(4 * hidden_size),
            max_position_embeddings: config
                .optional_size(&["n_positions", "max_position_embeddings"])?
                .unwrap_or(1024),
            type_vocab_size: 0,
            layer_norm_eps: config
                .optional_float(&["layer_norm_epsilon"])?
                .unwrap_or(1e-5),
            hidden_act: config.activation(&["activation_function"], "gelu_new")?,
            pad_token_id: config.optional_token_id("pad_token_id"),
            model_classes: config.model_classes(),
            labels: config.labels()?,
            problem_type: config.problem_type()?,
            architecture: Architecture {
                norm: NormPlacement::Pre,
                causal: true,
                embedding_norm: false,
                final_norm: true,
                positions: PositionIds::FromZero,
                sinusoidal_positions: false,
                segments: Segments::Absent,
                attention_scales,
                takes_pairs: false,
                ..Architecture::new(NormPlacement::Pre, true, Vec::new())
            },
        })
    }

    /// [`Description::load_weights`] for GPT-2.
    /// Long because it names every GPT-2 tensor once, in the checkpoint's order; the family's
    /// description is this list.
    fn load_weights(&self, store: &mut WeightStore, config: &ModelConfig) -> Result<ModelWeights> {
        store.detect_base_prefix("transformer.", "wte.weight");
        let hidden = config.hidden_size;
        let inner = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let embeddings = EmbeddingWeights {
            word: store.tensor("wte.weight", Scope::Base, &[config.vocab_size, hidden])?,
            position: Some(store.tensor(
                "wpe.weight",
                Scope::Base,
                &[config.max_position_embeddings, hidden],
            )?),
            segment: None,
            norm: None,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let name = |part: &str| format!("h.{index}.{part}");
                Ok(LayerWeights {
                    qkv: store.conv1d(&name("attn.c_attn"), Scope::Base, hidden, 3 * hidden)?,
                    query_norm: None,
                    key_norm: None,
                    attention_post_norm: None,
                    ffn_post_norm: None,
                    attention_output: store.conv1d(
                        &name("attn.c_proj"),
                        Scope::Base,
                        hidden,
                        hidden,
                    )?,
                    attention_norm: store.norm(&name("ln_1"), Scope::Base, hidden, eps)?,
                    ffn_in: store.conv1d(&name("mlp.c_fc"), Scope::Base, hidden, inner)?,
                    ffn_out: store.conv1d(&name("mlp.c_proj"), Scope::Base, inner, hidden)?,
                    ffn_norm: store.norm(&name("ln_2"), Scope::Base, hidden, eps)?,
                })
            })
            .collect::<Result<_>>()?;
        let final_norm = Some(store.norm("ln_f", Scope::Base, hidden, eps)?);

        let mut heads = Vec::new();
        let score = label_rows(store, "score.weight");
        let token_labels = label_rows(store, "classifier.weight");
        // The LM head has no weights of its own when tied, so a checkpoint has it unless it was
        // saved from a task class, whose `wte` was fine-tuned for something else.
        let task_checkpoint =
            score.is_some() || token_labels.is_some() || store.has("qa_outputs.weight", Scope::Top);
        if store.has("lm_head.weight", Scope::Top) || !task_checkpoint {
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
            heads.push(head(
                HeadKind::NextToken,
                HeadInput::Every,
                vec![decoder],
                config.vocab_size,
            ));
        }
        if let Some(labels) = score {
            heads.push(head(
                HeadKind::SequenceClassification,
                HeadInput::LastNonPadding {
                    pad: config.pad_token_id,
                },
                vec![HeadOp::Linear(store.linear_without_bias(
                    "score",
                    Scope::Top,
                    hidden,
                    labels,
                )?)],
                labels,
            ));
        }
        if let Some(labels) = token_labels {
            heads.push(token_classifier(store, config, labels)?);
        }
        Ok(ModelWeights {
            embeddings,
            layers,
            final_norm,
            heads,
        })
    }

    fn classifier(&self) -> Option<ClassifierLayout> {
        const TENSORS: &[HeadTensor] = &[HeadTensor::weight(
            "score.weight",
            Scope::Top,
            Labels,
            Hidden,
        )];
        const RESIDUAL: DropoutKey = DropoutKey::new(&["resid_pdrop"], 0.1);
        Some(ClassifierLayout {
            class: "GPT2ForSequenceClassification",
            base_prefix: "transformer.",
            tensors: TENSORS,
            dropouts: DropoutKeys {
                embedding: DropoutKey::new(&["embd_pdrop"], 0.1),
                attention: DropoutKey::new(&["attn_pdrop"], 0.1),
                attention_output: Some(RESIDUAL),
                ffn_output: RESIDUAL,
                head: &[],
            },
            padded_positions: false,
            padded_words: false,
        })
    }

    fn tokenizer(&self) -> TokenizerConventions {
        TokenizerConventions {
            style: TokenStyle::ByteLevel,
            specials: SpecialTokens {
                cls: "<|endoftext|>",
                sep: "<|endoftext|>",
                pad: "<|endoftext|>",
                unk: "<|endoftext|>",
                mask: None,
            },
            framing: Framing::None,
            vocab_files: VocabFiles::ByteLevelBpe,
        }
    }
}
