//! DistilBERT, as transformers' `models/distilbert/modeling_distilbert.py` computes it: word +
//! position embeddings (learned, or the fixed sinusoids of `sinusoidal_pos_embds`) and a
//! LayerNorm, no segment embeddings, post-LayerNorm layers (`sa_layer_norm`,
//! `output_layer_norm`), every LayerNorm with eps 1e-12. Heads: `DistilBertForMaskedLM`
//! (`vocab_transform`, `vocab_layer_norm`, `vocab_projector`),
//! `DistilBertForSequenceClassification` (`pre_classifier`, ReLU, `classifier` on the first
//! token), `DistilBertForTokenClassification` and `DistilBertForQuestionAnswering`.

use super::parts::{
    encoder_layers, label_rows, masked_lm, question_answering, token_classifier, two_layer_head,
    EncoderLayerNames, MaskedLmNames,
};
use super::{whole_heads, Description, Family};
use super::{
    ClassifierLayout, DropoutKey, DropoutKeys, HeadTensor,
    HeadWidth::{Hidden, Labels},
};
use crate::model::config::{
    Activation, Architecture, ConfigReader, ModelConfig, NormPlacement, PositionIds, Segments,
};
use crate::model::error::Result;
use crate::model::params::{EmbeddingWeights, HeadKind, ModelWeights};
use crate::model::tokenizer::TokenizerConventions;
use crate::model::weights::{Scope, WeightStore};

/// The DistilBERT family.
pub(super) struct DistilBert;

/// DistilBERT hard-codes its LayerNorm epsilon.
const EPS: f64 = 1e-12;

const LAYER_NAMES: EncoderLayerNames = EncoderLayerNames {
    prefix: "transformer.layer",
    qkv: ["attention.q_lin", "attention.k_lin", "attention.v_lin"],
    attention_output: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    ffn: ["ffn.lin1", "ffn.lin2"],
    ffn_norm: "output_layer_norm",
};

/// transformers' `create_sinusoidal_embeddings`: `sin(pos / 10000^(2⌊j/2⌋/dim))` in even
/// columns, `cos` in odd ones, computed in f64 and stored as f32.
pub fn sinusoidal_positions(positions: usize, dim: usize) -> Vec<f32> {
    let mut table = vec![0f32; positions * dim];
    for (position, row) in table.chunks_exact_mut(dim).enumerate() {
        for (j, value) in row.iter_mut().enumerate() {
            let angle = position as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
            *value = if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    table
}

impl Description for DistilBert {
    fn read_config(&self, config: &ConfigReader) -> Result<ModelConfig> {
        let hidden_size = config.size(&["dim", "hidden_size"])?;
        let num_attention_heads = config.size(&["n_heads", "num_attention_heads"])?;
        let num_hidden_layers = config.size(&["n_layers", "num_hidden_layers"])?;
        let head_dim = whole_heads(hidden_size, num_attention_heads);
        Ok(ModelConfig {
            family: Family::DistilBert,
            vocab_size: config.size(&["vocab_size"])?,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: num_attention_heads,
            head_dim,
            intermediate_size: config.size(&["hidden_dim"])?,
            max_position_embeddings: config
                .optional_size(&["max_position_embeddings"])?
                .unwrap_or(512),
            type_vocab_size: 0,
            layer_norm_eps: EPS,
            hidden_act: config.activation(&["activation"], "gelu")?,
            pad_token_id: config.optional_token_id("pad_token_id"),
            model_classes: config.model_classes(),
            labels: config.labels()?,
            problem_type: config.problem_type()?,
            architecture: Architecture {
                norm: NormPlacement::Post,
                causal: false,
                embedding_norm: true,
                final_norm: false,
                positions: PositionIds::FromZero,
                sinusoidal_positions: config
                    .optional_bool("sinusoidal_pos_embds")?
                    .unwrap_or(false),
                segments: Segments::Absent,
                attention_scales: vec![1.0 / (head_dim as f32).sqrt(); num_hidden_layers],
                takes_pairs: true,
                ..Architecture::new(NormPlacement::Post, false, Vec::new())
            },
        })
    }

    fn load_weights(&self, store: &mut WeightStore, config: &ModelConfig) -> Result<ModelWeights> {
        store.detect_base_prefix("distilbert.", "embeddings.word_embeddings.weight");
        let hidden = config.hidden_size;
        let positions = config.max_position_embeddings;
        // With `sinusoidal_pos_embds` checkpoints still store the (fixed) table; transformers
        // computes it only when it is missing.
        let position = match store.tensor_optional(
            "embeddings.position_embeddings.weight",
            Scope::Base,
            &[positions, hidden],
        )? {
            Some(table) => table,
            None if config.architecture.sinusoidal_positions => {
                sinusoidal_positions(positions, hidden)
            }
            None => store.tensor(
                "embeddings.position_embeddings.weight",
                Scope::Base,
                &[positions, hidden],
            )?,
        };
        let embeddings = EmbeddingWeights {
            word: store.tensor(
                "embeddings.word_embeddings.weight",
                Scope::Base,
                &[config.vocab_size, hidden],
            )?,
            position: Some(position),
            segment: None,
            norm: Some(store.norm("embeddings.LayerNorm", Scope::Base, hidden, EPS)?),
        };
        let layers = encoder_layers(store, config, &LAYER_NAMES, EPS)?;
        let mut heads = Vec::new();
        if store.has("vocab_transform.weight", Scope::Top) {
            heads.push(masked_lm(
                store,
                config,
                &MaskedLmNames {
                    transform: "vocab_transform",
                    norm: "vocab_layer_norm",
                    decoder: "vocab_projector.weight",
                    biases: &["vocab_projector.bias"],
                },
                config.hidden_act,
                EPS,
            )?);
        }
        if let Some(labels) = label_rows(store, "classifier.weight") {
            heads.push(if store.has("pre_classifier.weight", Scope::Top) {
                two_layer_head(
                    store,
                    config,
                    HeadKind::SequenceClassification,
                    ("pre_classifier", Scope::Top),
                    Activation::Relu,
                    "classifier",
                    labels,
                )?
            } else {
                token_classifier(store, config, labels)?
            });
        }
        heads.extend(question_answering(store, config)?);
        Ok(ModelWeights {
            embeddings,
            layers,
            final_norm: None,
            heads,
        })
    }

    fn classifier(&self) -> Option<ClassifierLayout> {
        const TENSORS: &[HeadTensor] = &[
            HeadTensor::weight("pre_classifier.weight", Scope::Top, Hidden, Hidden),
            HeadTensor::bias("pre_classifier.bias", Scope::Top, Hidden),
            HeadTensor::weight("classifier.weight", Scope::Top, Labels, Hidden),
            HeadTensor::bias("classifier.bias", Scope::Top, Labels),
        ];
        const HEAD_DROPOUT: &[(usize, DropoutKey)] =
            &[(2, DropoutKey::new(&["seq_classif_dropout"], 0.2))];
        const DROPOUT: DropoutKey = DropoutKey::new(&["dropout"], 0.1);
        Some(ClassifierLayout {
            class: "DistilBertForSequenceClassification",
            base_prefix: "distilbert.",
            tensors: TENSORS,
            dropouts: DropoutKeys {
                embedding: DROPOUT,
                attention: DropoutKey::new(&["attention_dropout"], 0.1),
                // DistilBERT's attention output goes straight into the residual sum.
                attention_output: None,
                ffn_output: DROPOUT,
                // pre_classifier, ReLU, dropout, classifier.
                head: HEAD_DROPOUT,
            },
            padded_positions: false,
            padded_words: true,
        })
    }

    fn tokenizer(&self) -> TokenizerConventions {
        TokenizerConventions::wordpiece()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoids_follow_transformers() {
        let table = sinusoidal_positions(3, 4);
        // Position 0: sin 0 = 0, cos 0 = 1.
        assert_eq!(&table[..4], &[0.0, 1.0, 0.0, 1.0]);
        // Position 2, column 2: sin(2 / 10000^(2/4)) = sin(0.02).
        assert!((table[8 + 2] - 0.02f64.sin() as f32).abs() < 1e-7);
        assert!((table[8 + 3] - 0.02f64.cos() as f32).abs() < 1e-7);
    }
}
