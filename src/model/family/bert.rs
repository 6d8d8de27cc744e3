//! BERT, as transformers' `models/bert/modeling_bert.py` computes it: word + segment + position
//! embeddings and a LayerNorm, post-LayerNorm layers with bidirectional attention. Heads:
//! `BertForPreTraining`/`BertForMaskedLM` (`cls.predictions`, `cls.seq_relationship`),
//! `BertForSequenceClassification` (pooler + `classifier`), `BertForTokenClassification`
//! (`classifier` on every token) and `BertForQuestionAnswering` (`qa_outputs`).
//!
//! RoBERTa's encoder is BERT's under another prefix, so [`encoder_config`] and [`encoder`] serve
//! both.

use super::parts::{
    encoder_layers, label_rows, masked_lm, question_answering, saved_as, token_classifier,
    two_layer_head, EncoderLayerNames, MaskedLmNames,
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
use crate::model::params::{EmbeddingWeights, HeadKind, LayerWeights, ModelWeights};
use crate::model::tokenizer::{
    Framing, SpecialTokens, TokenStyle, TokenizerConventions, VocabFiles,
};
use crate::model::weights::{Scope, WeightStore};

/// The BERT family.
pub(super) struct Bert;

/// The config keys BERT and RoBERTa share, with transformers' defaults.
pub(super) fn encoder_config(
    config: &ConfigReader,
    family: Family,
    positions: PositionIds,
    segments: Segments,
    default_type_vocab: usize,
) -> Result<ModelConfig> {
    let hidden_size = config.size(&["hidden_size"])?;
    let num_attention_heads = config.size(&["num_attention_heads"])?;
    let num_hidden_layers = config.size(&["num_hidden_layers"])?;
    match config
        .optional_str(&["position_embedding_type"])?
        .unwrap_or("absolute")
    {
        "absolute" => {}
        other => {
            return Err(config.bad(format!(
                "position_embedding_type '{other}' is not supported (only \"absolute\" is)"
            )))
        }
    }
    if config.optional_bool("is_decoder")? == Some(true) {
        return Err(config.bad(format!(
            "is_decoder is true: this {name} checkpoint is a causal decoder, which bertscope does not run; use a {name} encoder checkpoint",
            name = family.name()
        )));
    }
    let head_dim = whole_heads(hidden_size, num_attention_heads);
    Ok(ModelConfig {
        family,
        vocab_size: config.size(&["vocab_size"])?,
        hidden_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads: num_attention_heads,
        head_dim,
        intermediate_size: config.size(&["intermediate_size"])?,
        max_position_embeddings: config.size(&["max_position_embeddings"])?,
        type_vocab_size: config
            .optional_size(&["type_vocab_size"])?
            .unwrap_or(default_type_vocab),
        layer_norm_eps: config.optional_float(&["layer_norm_eps"])?.unwrap_or(1e-12),
        hidden_act: config.activation(&["hidden_act"], "gelu")?,
        pad_token_id: config.optional_token_id("pad_token_id"),
        model_classes: config.model_classes(),
        labels: config.labels()?,
        problem_type: config.problem_type()?,
        architecture: Architecture {
            norm: NormPlacement::Post,
            causal: false,
            embedding_norm: true,
            final_norm: false,
            positions,
            sinusoidal_positions: false,
            segments,
            attention_scales: vec![1.0 / (head_dim as f32).sqrt(); num_hidden_layers],
            takes_pairs: true,
            ..Architecture::new(NormPlacement::Post, false, Vec::new())
        },
    })
}

/// BERT's and RoBERTa's `hidden_dropout_prob`.
const HIDDEN_DROPOUT: DropoutKey = DropoutKey::new(&["hidden_dropout_prob"], 0.1);

/// Their classification heads' dropout: `classifier_dropout`, else `hidden_dropout_prob`.
pub(super) const CLASSIFIER_DROPOUT: DropoutKey =
    DropoutKey::new(&["classifier_dropout", "hidden_dropout_prob"], 0.1);

/// Where BERT and RoBERTa drop out, with a head's dropouts `head`.
pub(super) const fn encoder_dropouts(head: &'static [(usize, DropoutKey)]) -> DropoutKeys {
    DropoutKeys {
        embedding: HIDDEN_DROPOUT,
        attention: DropoutKey::new(&["attention_probs_dropout_prob"], 0.1),
        attention_output: Some(HIDDEN_DROPOUT),
        ffn_output: HIDDEN_DROPOUT,
        head,
    }
}

/// How BERT and RoBERTa spell an encoder layer.
const LAYER_NAMES: EncoderLayerNames = EncoderLayerNames {
    prefix: "encoder.layer",
    qkv: [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
    ],
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    ffn: ["intermediate.dense", "output.dense"],
    ffn_norm: "output.LayerNorm",
};

/// The embeddings and layers BERT and RoBERTa share (`embeddings.*`, `encoder.layer.*`).
pub(super) fn encoder(
    store: &WeightStore,
    config: &ModelConfig,
) -> Result<(EmbeddingWeights, Vec<LayerWeights>)> {
    let hidden = config.hidden_size;
    let eps = config.layer_norm_eps;
    let embeddings = EmbeddingWeights {
        word: store.tensor(
            "embeddings.word_embeddings.weight",
            Scope::Base,
            &[config.vocab_size, hidden],
        )?,
        position: Some(store.tensor(
            "embeddings.position_embeddings.weight",
            Scope::Base,
            &[config.max_position_embeddings, hidden],
        )?),
        segment: Some(store.tensor(
            "embeddings.token_type_embeddings.weight",
            Scope::Base,
            &[config.type_vocab_size, hidden],
        )?),
        norm: Some(store.norm("embeddings.LayerNorm", Scope::Base, hidden, eps)?),
    };
    Ok((
        embeddings,
        encoder_layers(store, config, &LAYER_NAMES, eps)?,
    ))
}

impl Description for Bert {
    fn read_config(&self, config: &ConfigReader) -> Result<ModelConfig> {
        encoder_config(
            config,
            Family::Bert,
            PositionIds::FromZero,
            Segments::FromTokenizer,
            2,
        )
    }

    fn load_weights(&self, store: &mut WeightStore, config: &ModelConfig) -> Result<ModelWeights> {
        store.detect_base_prefix("bert.", "embeddings.word_embeddings.weight");
        let (embeddings, layers) = encoder(store, config)?;
        let mut heads = Vec::new();
        if store.has("cls.predictions.transform.dense.weight", Scope::Top) {
            heads.push(masked_lm(
                store,
                config,
                &MaskedLmNames {
                    transform: "cls.predictions.transform.dense",
                    norm: "cls.predictions.transform.LayerNorm",
                    decoder: "cls.predictions.decoder.weight",
                    biases: &["cls.predictions.bias", "cls.predictions.decoder.bias"],
                },
                config.hidden_act,
                config.layer_norm_eps,
            )?);
        }
        let has_pooler = store.has("pooler.dense.weight", Scope::Base);
        let pooled = |kind, classifier: &str, outputs| {
            two_layer_head(
                store,
                config,
                kind,
                ("pooler.dense", Scope::Base),
                Activation::Tanh,
                classifier,
                outputs,
            )
        };
        if has_pooler && store.has("cls.seq_relationship.weight", Scope::Top) {
            heads.push(pooled(HeadKind::NextSentence, "cls.seq_relationship", 2)?);
        }
        if let Some(labels) = label_rows(store, "classifier.weight") {
            // Both task classes call their layer `classifier`; the class name, else the pooler
            // (which BertForTokenClassification leaves out), tells them apart.
            let per_token = saved_as(config, "ForTokenClassification")
                || (!saved_as(config, "ForSequenceClassification") && !has_pooler);
            heads.push(if per_token {
                token_classifier(store, config, labels)?
            } else {
                pooled(HeadKind::SequenceClassification, "classifier", labels)?
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
            HeadTensor::weight("pooler.dense.weight", Scope::Base, Hidden, Hidden),
            HeadTensor::bias("pooler.dense.bias", Scope::Base, Hidden),
            HeadTensor::weight("classifier.weight", Scope::Top, Labels, Hidden),
            HeadTensor::bias("classifier.bias", Scope::Top, Labels),
        ];
        Some(ClassifierLayout {
            class: "BertForSequenceClassification",
            base_prefix: "bert.",
            tensors: TENSORS,
            // Pooler, tanh, dropout, classifier.
            dropouts: encoder_dropouts(&[(2, CLASSIFIER_DROPOUT)]),
            padded_positions: false,
            padded_words: true,
        })
    }

    fn tokenizer(&self) -> TokenizerConventions {
        TokenizerConventions::wordpiece()
    }
}

impl TokenizerConventions {
    /// BERT's and DistilBERT's: WordPiece from `vocab.txt`, `[CLS] A [SEP] B [SEP]`.
    pub(crate) fn wordpiece() -> Self {
        Self {
            style: TokenStyle::WordPiece,
            specials: SpecialTokens {
                cls: "[CLS]",
                sep: "[SEP]",
                pad: "[PAD]",
                unk: "[UNK]",
                mask: Some("[MASK]"),
            },
            framing: Framing::Bert,
            vocab_files: VocabFiles::WordPiece,
        }
    }
}
