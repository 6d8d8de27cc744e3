//! What several family descriptions build alike: encoder layers with separate query, key and
//! value `Linear`s, masked-LM heads (transform, LayerNorm, decoder), two-layer classification
//! heads, and the task heads every encoder family spells the same way. A description names its
//! tensors; these functions read them.

use crate::model::config::{Activation, ModelConfig};
use crate::model::error::Result;
use crate::model::params::{HeadInput, HeadKind, HeadOp, HeadWeights, LayerWeights, Linear};
use crate::model::weights::{Scope, WeightStore};

/// How a family spells one encoder layer's tensors, below `{prefix}.{index}.`.
pub(super) struct EncoderLayerNames {
    /// The layers' common prefix (`encoder.layer`).
    pub prefix: &'static str,
    /// The query, key and value `Linear`s, in that order.
    pub qkv: [&'static str; 3],
    /// The projection of the heads' context vectors.
    pub attention_output: &'static str,
    /// The attention block's LayerNorm.
    pub attention_norm: &'static str,
    /// The feed-forward block's first and second `Linear`.
    pub ffn: [&'static str; 2],
    /// The feed-forward block's LayerNorm.
    pub ffn_norm: &'static str,
}

/// Every layer of an encoder whose query, key and value are separate `Linear`s (stacked here
/// into one matrix), with LayerNorm epsilon `eps`.
pub(super) fn encoder_layers(
    store: &WeightStore,
    config: &ModelConfig,
    names: &EncoderLayerNames,
    eps: f64,
) -> Result<Vec<LayerWeights>> {
    let hidden = config.hidden_size;
    let inner = config.intermediate_size;
    (0..config.num_hidden_layers)
        .map(|index| {
            let name = |part: &str| format!("{}.{index}.{part}", names.prefix);
            let linear = |part: &str, inputs, outputs| {
                store.linear(&name(part), Scope::Base, inputs, outputs)
            };
            let qkv = names
                .qkv
                .iter()
                .map(|part| linear(part, hidden, hidden))
                .collect::<Result<Vec<_>>>()?;
            Ok(LayerWeights {
                qkv: Linear::stack(qkv),
                query_norm: None,
                key_norm: None,
                attention_post_norm: None,
                ffn_post_norm: None,
                attention_output: linear(names.attention_output, hidden, hidden)?,
                attention_norm: store.norm(
                    &name(names.attention_norm),
                    Scope::Base,
                    hidden,
                    eps,
                )?,
                ffn_in: linear(names.ffn[0], hidden, inner)?,
                ffn_out: linear(names.ffn[1], inner, hidden)?,
                ffn_norm: store.norm(&name(names.ffn_norm), Scope::Base, hidden, eps)?,
            })
        })
        .collect()
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

/// How a family spells its masked-LM head: a dense transform, a LayerNorm, and a decoder to the
/// vocabulary whose weight may be tied to the word embeddings.
pub(super) struct MaskedLmNames {
    /// The transform `Linear`.
    pub transform: &'static str,
    /// The LayerNorm after the activation.
    pub norm: &'static str,
    /// The decoder's weight, absent when tied.
    pub decoder: &'static str,
    /// The decoder's bias, under each name checkpoints store it.
    pub biases: &'static [&'static str],
}

/// A masked-LM head: transform, `activation`, LayerNorm (epsilon `eps`), decoder.
pub(super) fn masked_lm(
    store: &WeightStore,
    config: &ModelConfig,
    names: &MaskedLmNames,
    activation: Activation,
    eps: f64,
) -> Result<HeadWeights> {
    let hidden = config.hidden_size;
    let vocab = config.vocab_size;
    let bias_name = names
        .biases
        .iter()
        .find(|name| store.has(name, Scope::Top))
        .unwrap_or(&names.biases[0]);
    let bias = Some(store.tensor(bias_name, Scope::Top, &[vocab])?);
    // transformers writes tied checkpoints without the decoder weight.
    let decoder = if store.has(names.decoder, Scope::Top) {
        HeadOp::Linear(Linear {
            weight: store.tensor(names.decoder, Scope::Top, &[vocab, hidden])?,
            bias,
            inputs: hidden,
            outputs: vocab,
        })
    } else {
        HeadOp::TiedDecoder { bias }
    };
    Ok(head(
        HeadKind::MaskedLm,
        HeadInput::Requested,
        vec![
            HeadOp::Linear(store.linear(names.transform, Scope::Top, hidden, hidden)?),
            HeadOp::Activation(activation),
            HeadOp::Norm(store.norm(names.norm, Scope::Top, hidden, eps)?),
            decoder,
        ],
        vocab,
    ))
}

/// A head of two `Linear`s with an activation between them, reading the first token: BERT's
/// pooler and classifier, DistilBERT's `pre_classifier` and `classifier`, RoBERTa's
/// classification head.
pub(super) fn two_layer_head(
    store: &WeightStore,
    config: &ModelConfig,
    kind: HeadKind,
    (first, first_scope): (&str, Scope),
    activation: Activation,
    second: &str,
    outputs: usize,
) -> Result<HeadWeights> {
    let hidden = config.hidden_size;
    Ok(head(
        kind,
        HeadInput::First,
        vec![
            HeadOp::Linear(store.linear(first, first_scope, hidden, hidden)?),
            HeadOp::Activation(activation),
            HeadOp::Linear(store.linear(second, Scope::Top, hidden, outputs)?),
        ],
        outputs,
    ))
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

/// A token-classification `classifier`: one `Linear` on every token.
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

/// Whether the checkpoint was saved from a transformers class whose name ends with `suffix`
/// (`ForSequenceClassification`, ...).
pub(super) fn saved_as(config: &ModelConfig, suffix: &str) -> bool {
    config
        .model_classes
        .iter()
        .any(|class| class.ends_with(suffix))
}

/// The rows of a stored classifier matrix (its label count), when present.
pub(super) fn label_rows(store: &WeightStore, name: &str) -> Option<usize> {
    store
        .shape(name, Scope::Top)
        .filter(|shape| shape.len() == 2)
        .map(|shape| shape[0])
}
