//! RoBERTa and XLM-RoBERTa, as transformers' `models/roberta/modeling_roberta.py` computes them:
//! BERT's encoder under the `roberta.` prefix, with position ids counting from
//! `pad_token_id + 1` and token types always 0. Pairs are `<s> A </s></s> B </s>`. Heads:
//! `*ForMaskedLM` (`lm_head`, always the erf GELU), `*ForSequenceClassification`
//! (`classifier.dense`, tanh, `classifier.out_proj` on `<s>`), `*ForTokenClassification` and
//! `*ForQuestionAnswering`. XLM-RoBERTa differs only in its SentencePiece tokenizer, which comes
//! from `tokenizer.json`.

use super::bert::{encoder, encoder_config};
use super::bert::{encoder_dropouts, CLASSIFIER_DROPOUT};
use super::parts::{
    label_rows, masked_lm, question_answering, token_classifier, two_layer_head, MaskedLmNames,
};
use super::{
    ClassifierLayout, HeadTensor,
    HeadWidth::{Hidden, Labels},
};
use super::{Description, Family};
use crate::model::config::{Activation, ConfigReader, ModelConfig, PositionIds, Segments};
use crate::model::error::Result;
use crate::model::params::{HeadKind, ModelWeights};
use crate::model::tokenizer::{
    Framing, SpecialTokens, TokenStyle, TokenizerConventions, VocabFiles,
};
use crate::model::weights::{Scope, WeightStore};

/// RoBERTa, or XLM-RoBERTa when `family` says so.
pub(super) struct Roberta {
    pub(super) family: Family,
}

impl Description for Roberta {
    fn read_config(&self, config: &ConfigReader) -> Result<ModelConfig> {
        let pad = config.optional_token_id("pad_token_id").unwrap_or(1);
        let mut read = encoder_config(
            config,
            self.family,
            PositionIds::AfterPadding { pad },
            Segments::Zeros,
            2,
        )?;
        read.pad_token_id = Some(pad);
        Ok(read)
    }

    fn load_weights(&self, store: &mut WeightStore, config: &ModelConfig) -> Result<ModelWeights> {
        store.detect_base_prefix("roberta.", "embeddings.word_embeddings.weight");
        let (embeddings, layers) = encoder(store, config)?;
        let mut heads = Vec::new();
        if store.has("lm_head.dense.weight", Scope::Top) {
            heads.push(masked_lm(
                store,
                config,
                &MaskedLmNames {
                    transform: "lm_head.dense",
                    norm: "lm_head.layer_norm",
                    decoder: "lm_head.decoder.weight",
                    biases: &["lm_head.bias", "lm_head.decoder.bias"],
                },
                // RobertaLMHead calls `gelu` itself, whatever `hidden_act` says.
                Activation::GeluErf,
                config.layer_norm_eps,
            )?);
        }
        if let Some(labels) = label_rows(store, "classifier.out_proj.weight") {
            heads.push(two_layer_head(
                store,
                config,
                HeadKind::SequenceClassification,
                ("classifier.dense", Scope::Top),
                Activation::Tanh,
                "classifier.out_proj",
                labels,
            )?);
        } else if let Some(labels) = label_rows(store, "classifier.weight") {
            heads.push(token_classifier(store, config, labels)?);
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
            HeadTensor::weight("classifier.dense.weight", Scope::Top, Hidden, Hidden),
            HeadTensor::bias("classifier.dense.bias", Scope::Top, Hidden),
            HeadTensor::weight("classifier.out_proj.weight", Scope::Top, Labels, Hidden),
            HeadTensor::bias("classifier.out_proj.bias", Scope::Top, Labels),
        ];
        Some(ClassifierLayout {
            class: if self.family == Family::XlmRoberta {
                "XLMRobertaForSequenceClassification"
            } else {
                "RobertaForSequenceClassification"
            },
            base_prefix: "roberta.",
            tensors: TENSORS,
            // Dropout, dense, tanh, dropout, out_proj.
            dropouts: encoder_dropouts(&[(0, CLASSIFIER_DROPOUT), (2, CLASSIFIER_DROPOUT)]),
            padded_positions: true,
            padded_words: true,
        })
    }

    fn tokenizer(&self) -> TokenizerConventions {
        TokenizerConventions {
            style: if self.family == Family::XlmRoberta {
                TokenStyle::SentencePiece
            } else {
                TokenStyle::ByteLevel
            },
            specials: SpecialTokens {
                cls: "<s>",
                sep: "</s>",
                pad: "<pad>",
                unk: "<unk>",
                mask: Some("<mask>"),
            },
            framing: Framing::Roberta,
            vocab_files: if self.family == Family::XlmRoberta {
                VocabFiles::None
            } else {
                VocabFiles::ByteLevelBpe
            },
        }
    }
}
