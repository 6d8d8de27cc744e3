//! BERT, as transformers' `models/bert/modeling_bert.py` computes it: word + segment + position
//! embeddings and a LayerNorm, post-LayerNorm layers with bidirectional attention. Heads:
//! `BertForPreTraining`/`BertForMaskedLM` (`cls.predictions`, `cls.seq_relationship`),
//! `BertForSequenceClassification` (pooler + `classifier`), `BertForTokenClassification`
//! (`classifier` on every token) and `BertForQuestionAnswering` (`qa_outputs`).
//!
//! RoBERTa's encoder is BERT's under another prefix, so [`encoder_config`] and [`encoder`] serve
//! both.

use super::{label_rows, saved_as, Description, Family};
use crate::model::config::{
    Activation, Architecture, ConfigReader, ModelConfig, NormPlacement, PositionIds, Segments,
};
use crate::model::error::Result;
use crate::model::params::{
    EmbeddingWeights, HeadInput, HeadKind, HeadOp, HeadWeights, LayerWeights, Linear, ModelWeights,
};
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
    let head_dim = hidden_size / num_attention_heads.max(1);
    Ok(ModelConfig {
        family,
        vocab_size: config.size(&["vocab_size"])?,
        hidden_size,
        num_hidden_layers,
        num_attention_heads,
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
        },
    })
}

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
        position: store.tensor(
            "embeddings.position_embeddings.weight",
            Scope::Base,
            &[config.max_position_embeddings, hidden],
        )?,
        segment: Some(store.tensor(
            "embeddings.token_type_embeddings.weight",
            Scope::Base,
            &[config.type_vocab_size, hidden],
        )?),
        norm: Some(store.norm("embeddings.LayerNorm", Scope::Base, hidden, eps)?),
    };
    let layers = (0..config.num_hidden_layers)
        .map(|index| {
            let name = |part: &str| format!("encoder.layer.{index}.{part}");
            let qkv = ["query", "key", "value"]
                .iter()
                .map(|part| {
                    store.linear(
                        &name(&format!("attention.self.{part}")),
                        Scope::Base,
                        hidden,
                        hidden,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(LayerWeights {
                qkv: Linear::stack(qkv),
                attention_output: store.linear(
                    &name("attention.output.dense"),
                    Scope::Base,
                    hidden,
                    hidden,
                )?,
                attention_norm: store.norm(
                    &name("attention.output.LayerNorm"),
                    Scope::Base,
                    hidden,
                    eps,
                )?,
                ffn_in: store.linear(
                    &name("intermediate.dense"),
                    Scope::Base,
                    hidden,
                    config.intermediate_size,
                )?,
                ffn_out: store.linear(
                    &name("output.dense"),
                    Scope::Base,
                    config.intermediate_size,
                    hidden,
                )?,
                ffn_norm: store.norm(&name("output.LayerNorm"), Scope::Base, hidden, eps)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok((embeddings, layers))
}

/// A decoder to the vocabulary: its own weight when stored, else the word embeddings it is tied
/// to (transformers writes tied checkpoints without it); the bias under whichever of `biases`
/// is stored.
pub(super) fn vocabulary_decoder(
    store: &WeightStore,
    config: &ModelConfig,
    weight: &str,
    biases: &[&str],
) -> Result<HeadOp> {
    let (vocab, hidden) = (config.vocab_size, config.hidden_size);
    let bias_name = biases
        .iter()
        .find(|name| store.has(name, Scope::Top))
        .unwrap_or(&biases[0]);
    let bias = store.tensor(bias_name, Scope::Top, &[vocab])?;
    if !store.has(weight, Scope::Top) {
        return Ok(HeadOp::TiedDecoder { bias: Some(bias) });
    }
    Ok(HeadOp::Linear(Linear {
        weight: store.tensor(weight, Scope::Top, &[vocab, hidden])?,
        bias: Some(bias),
        inputs: hidden,
        outputs: vocab,
    }))
}

/// A head that reads hidden-state rows through `ops` into `outputs` logits each.
pub(super) fn head(
    kind: HeadKind,
    input: HeadInput,
    ops: Vec<HeadOp>,
    outputs: usize,
) -> HeadWeights {
    HeadWeights {
        kind,
        input,
        ops,
        outputs,
    }
}

/// The `qa_outputs` head every encoder family spells the same way, when present.
pub(super) fn question_answering(
    store: &WeightStore,
    config: &ModelConfig,
) -> Result<Option<HeadWeights>> {
    if !store.has("qa_outputs.weight", Scope::Top) {
        return Ok(None);
    }
    let linear = store.linear("qa_outputs", Scope::Top, config.hidden_size, 2)?;
    Ok(Some(head(
        HeadKind::QuestionAnswering,
        HeadInput::Every,
        vec![HeadOp::Linear(linear)],
        2,
    )))
}

/// A token-classification `classifier` (one linear layer on every token).
pub(super) fn token_classifier(
    store: &WeightStore,
    config: &ModelConfig,
    labels: usize,
) -> Result<HeadWeights> {
    let linear = store.linear("classifier", Scope::Top, config.hidden_size, labels)?;
    Ok(head(
        HeadKind::TokenClassification,
        HeadInput::Every,
        vec![HeadOp::Linear(linear)],
        labels,
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
        let hidden = config.hidden_size;
        let mut heads = Vec::new();

        if store.has("cls.predictions.transform.dense.weight", Scope::Top) {
            heads.push(head(
                HeadKind::MaskedLm,
                HeadInput::Requested,
                vec![
                    HeadOp::Linear(store.linear(
                        "cls.predictions.transform.dense",
                        Scope::Top,
                        hidden,
                        hidden,
                    )?),
                    HeadOp::Activation(config.hidden_act),
                    HeadOp::Norm(store.norm(
                        "cls.predictions.transform.LayerNorm",
                        Scope::Top,
                        hidden,
                        config.layer_norm_eps,
                    )?),
                    vocabulary_decoder(
                        store,
                        config,
                        "cls.predictions.decoder.weight",
                        &["cls.predictions.bias", "cls.predictions.decoder.bias"],
                    )?,
                ],
                config.vocab_size,
            ));
        }
        let has_pooler = store.has("pooler.dense.weight", Scope::Base);
        let pooler = || -> Result<Vec<HeadOp>> {
            Ok(vec![
                HeadOp::Linear(store.linear("pooler.dense", Scope::Base, hidden, hidden)?),
                HeadOp::Activation(Activation::Tanh),
            ])
        };
        if has_pooler && store.has("cls.seq_relationship.weight", Scope::Top) {
            let mut ops = pooler()?;
            ops.push(HeadOp::Linear(store.linear(
                "cls.seq_relationship",
                Scope::Top,
                hidden,
                2,
            )?));
            heads.push(head(HeadKind::NextSentence, HeadInput::First, ops, 2));
        }
        if let Some(labels) = label_rows(store, "classifier.weight") {
            // Both task classes call their layer `classifier`; the class name, else the pooler
            // (which BertForTokenClassification leaves out), tells them apart.
            let per_token = saved_as(config, "ForTokenClassification")
                || (!saved_as(config, "ForSequenceClassification") && !has_pooler);
            if per_token {
                heads.push(token_classifier(store, config, labels)?);
            } else {
                let mut ops = pooler()?;
                ops.push(HeadOp::Linear(store.linear(
                    "classifier",
                    Scope::Top,
                    hidden,
                    labels,
                )?));
                heads.push(head(
                    HeadKind::SequenceClassification,
                    HeadInput::First,
                    ops,
                    labels,
                ));
            }
        }
        heads.extend(question_answering(store, config)?);
        Ok(ModelWeights {
            embeddings,
            layers,
            final_norm: None,
            heads,
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
