//! The weights of a model as every backend receives them: host arrays in one canonical layout,
//! already found under whatever names the checkpoint uses, so that backends only compute.

use super::config::Activation;

/// A dense layer `y = W·x + b`: `weight` is `[outputs, inputs]` row-major (PyTorch's `Linear`
/// layout; GPT-2's `Conv1D` weights are transposed into it on load).
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// `[outputs, inputs]`, row-major.
    pub weight: Vec<f32>,
    /// `[outputs]`, when the layer has a bias.
    pub bias: Option<Vec<f32>>,
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
}

impl Linear {
    /// Stacks layers that read the same input into one whose outputs follow each other (query,
    /// key and value in one matrix product). All must agree on inputs and on having a bias.
    pub fn stack(parts: Vec<Linear>) -> Linear {
        let inputs = parts.first().map_or(0, |part| part.inputs);
        let outputs = parts.iter().map(|part| part.outputs).sum();
        let has_bias = parts.iter().all(|part| part.bias.is_some());
        let mut weight = Vec::with_capacity(outputs * inputs);
        let mut bias = Vec::with_capacity(outputs);
        for part in parts {
            weight.extend(part.weight);
            bias.extend(part.bias.unwrap_or_default());
        }
        Linear {
            weight,
            bias: has_bias.then_some(bias),
            inputs,
            outputs,
        }
    }
}

/// Which normalisation a [`Norm`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormKind {
    /// LayerNorm: `(x − mean)/√(var + ε)·γ + β`.
    #[default]
    Layer,
    /// RMSNorm: `x/√(mean(x²) + ε)·γ`, no mean and no shift (β is zeros).
    Rms,
    /// No normalisation at all: the input passes unchanged (ModernBERT's first layer has no
    /// attention norm).
    Identity,
}

/// LayerNorm or RMSNorm parameters over the last dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Norm {
    /// Scale (for Gemma's `(1 + w)` RMSNorm, already `1 + w`).
    pub gamma: Vec<f32>,
    /// Shift (zeros for RMSNorm).
    pub beta: Vec<f32>,
    /// Added to the variance (or the mean square).
    pub eps: f64,
    /// LayerNorm or RMSNorm.
    pub kind: NormKind,
}

/// Token, position and (for some families) segment embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingWeights {
    /// `[vocab, hidden]`.
    pub word: Vec<f32>,
    /// `[max_positions, hidden]`, for families with learned or sinusoidal positions (rotary
    /// families have none).
    pub position: Option<Vec<f32>>,
    /// `[segments, hidden]`, when the family has segment embeddings.
    pub segment: Option<Vec<f32>>,
    /// LayerNorm of the sum, when the family has one.
    pub norm: Option<Norm>,
}

/// One transformer layer. The two norms are applied where [`super::config::NormPlacement`]
/// says: after each residual sum, or before each block.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    /// Query, key and value stacked: `[heads·head_dim + 2·kv_heads·head_dim, hidden]`.
    pub qkv: Linear,
    /// Qwen3's RMSNorm of each query head (width `head_dim`), before the rotary embedding.
    pub query_norm: Option<Norm>,
    /// The same for each key head.
    pub key_norm: Option<Norm>,
    /// The projection of the heads' concatenated context vectors.
    pub attention_output: Linear,
    /// The attention block's LayerNorm.
    pub attention_norm: Norm,
    /// The feed-forward block's first layer (gated: the gate's rows, then the up projection's).
    pub ffn_in: Linear,
    /// The feed-forward block's second layer.
    pub ffn_out: Linear,
    /// The feed-forward block's LayerNorm.
    pub ffn_norm: Norm,
    /// Gemma 3's norm of the attention block's output, before the residual sum.
    pub attention_post_norm: Option<Norm>,
    /// Gemma 3's norm of the feed-forward block's output, before the residual sum.
    pub ffn_post_norm: Option<Norm>,
}

/// What a prediction head predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadKind {
    /// The masked-language-model head: a distribution over the vocabulary at a position.
    MaskedLm,
    /// BERT's next-sentence head: does sentence B follow sentence A?
    NextSentence,
    /// A causal language-model head: the next token after each position.
    NextToken,
    /// One set of label scores for the whole input.
    SequenceClassification,
    /// Start and end logits of an answer span in the context.
    QuestionAnswering,
    /// One set of label scores per token (e.g. named entities).
    TokenClassification,
}

impl HeadKind {
    /// A short name for status bars and tooltips.
    pub fn name(self) -> &'static str {
        match self {
            Self::MaskedLm => "masked LM",
            Self::NextSentence => "next sentence",
            Self::NextToken => "next token",
            Self::SequenceClassification => "classification",
            Self::QuestionAnswering => "question answering",
            Self::TokenClassification => "token classification",
        }
    }
}

/// Which rows of the last hidden states a head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadInput {
    /// The positions asked for (every mask token and any requested position).
    Requested,
    /// The first token (`[CLS]`, `<s>`).
    First,
    /// The rightmost token that is not padding (GPT-2's sequence classification); the last
    /// token when the model names no padding token.
    LastNonPadding {
        /// The padding token's id.
        pad: Option<u32>,
    },
    /// Every token.
    Every,
    /// Every token, pooled into one row by the head's [`HeadOp::MeanPool`] (ModernBERT's
    /// `classifier_pooling = "mean"`).
    Mean,
}

/// One step of a head, applied to hidden-state rows in order.
#[derive(Debug, Clone, PartialEq)]
pub enum HeadOp {
    /// A dense layer.
    Linear(Linear),
    /// A decoder to the vocabulary whose weight is the word-embedding matrix, with its own bias.
    TiedDecoder {
        /// `[vocab]`, when the decoder has a bias.
        bias: Option<Vec<f32>>,
    },
    /// An element-wise activation.
    Activation(Activation),
    /// A LayerNorm.
    Norm(Norm),
    /// Soft-capping, `c·tanh(x/c)` (Gemma's `final_logit_softcapping`).
    SoftCap(f32),
    /// The mean of the rows read, one row out (ModernBERT's `classifier_pooling = "mean"`).
    MeanPool,
}

/// A prediction head: what it predicts, what it reads and how it computes its logits.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadWeights {
    /// What the head predicts.
    pub kind: HeadKind,
    /// The rows it reads.
    pub input: HeadInput,
    /// Its computation, from hidden-state rows to logits.
    pub ops: Vec<HeadOp>,
    /// Logits per row.
    pub outputs: usize,
}

/// Everything a backend needs to run a model, found once by the family's description.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelWeights {
    /// The embeddings.
    pub embeddings: EmbeddingWeights,
    /// The layers, first to last.
    pub layers: Vec<LayerWeights>,
    /// The LayerNorm after the last layer, when the family has one.
    pub final_norm: Option<Norm>,
    /// The heads the checkpoint has.
    pub heads: Vec<HeadWeights>,
}

/// What a parameter array is, for the optimiser: weight decay applies to matrices and
/// embedding tables, not to biases and norms (transformers' Trainer's grouping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterRole {
    /// An embedding table.
    Embedding,
    /// A dense layer's weight.
    Weight,
    /// A dense layer's bias.
    Bias,
    /// A norm's scale or shift.
    Norm,
}

impl ParameterRole {
    /// Whether the Trainer's weight decay applies.
    pub fn decays(self) -> bool {
        matches!(self, Self::Embedding | Self::Weight)
    }
}

impl Linear {
    fn arrays_mut<'a>(&'a mut self, out: &mut Vec<(ParameterRole, &'a mut Vec<f32>)>) {
        out.push((ParameterRole::Weight, &mut self.weight));
        if let Some(bias) = &mut self.bias {
            out.push((ParameterRole::Bias, bias));
        }
    }
}

impl Norm {
    fn arrays_mut<'a>(&'a mut self, out: &mut Vec<(ParameterRole, &'a mut Vec<f32>)>) {
        // RMSNorm's shift is zeros it never reads; an identity reads neither.
        match self.kind {
            NormKind::Layer => {
                out.push((ParameterRole::Norm, &mut self.gamma));
                out.push((ParameterRole::Norm, &mut self.beta));
            }
            NormKind::Rms => out.push((ParameterRole::Norm, &mut self.gamma)),
            NormKind::Identity => {}
        }
    }
}

impl ModelWeights {
    /// How many of [`ModelWeights::arrays_mut`]'s arrays, the last ones, belong to the heads.
    pub fn head_array_count(&self) -> usize {
        let count = |norm: &Norm| match norm.kind {
            NormKind::Layer => 2,
            NormKind::Rms => 1,
            NormKind::Identity => 0,
        };
        self.heads
            .iter()
            .flat_map(|head| &head.ops)
            .map(|op| match op {
                HeadOp::Linear(linear) => 1 + usize::from(linear.bias.is_some()),
                HeadOp::TiedDecoder { bias } => usize::from(bias.is_some()),
                HeadOp::Norm(norm) => count(norm),
                HeadOp::Activation(_) | HeadOp::SoftCap(_) | HeadOp::MeanPool => 0,
            })
            .sum()
    }

    /// Every parameter array, in one fixed order: the embeddings (word, position, segment,
    /// norm), each layer (query-key-value, query and key norms, attention output, attention
    /// norm, feed-forward in and out, feed-forward norm, post-norms), the final norm, then each
    /// head's operations. Weights and gradients in this order are what the trainer exchanges
    /// with a backend.
    pub fn arrays_mut(&mut self) -> Vec<(ParameterRole, &mut Vec<f32>)> {
        let mut out = Vec::new();
        let embeddings = &mut self.embeddings;
        out.push((ParameterRole::Embedding, &mut embeddings.word));
        if let Some(position) = &mut embeddings.position {
            out.push((ParameterRole::Embedding, position));
        }
        if let Some(segment) = &mut embeddings.segment {
            out.push((ParameterRole::Embedding, segment));
        }
        if let Some(norm) = &mut embeddings.norm {
            norm.arrays_mut(&mut out);
        }
        for layer in &mut self.layers {
            layer.qkv.arrays_mut(&mut out);
            if let Some(norm) = &mut layer.query_norm {
                norm.arrays_mut(&mut out);
            }
            if let Some(norm) = &mut layer.key_norm {
                norm.arrays_mut(&mut out);
            }
            layer.attention_output.arrays_mut(&mut out);
            layer.attention_norm.arrays_mut(&mut out);
            layer.ffn_in.arrays_mut(&mut out);
            layer.ffn_out.arrays_mut(&mut out);
            layer.ffn_norm.arrays_mut(&mut out);
            if let Some(norm) = &mut layer.attention_post_norm {
                norm.arrays_mut(&mut out);
            }
            if let Some(norm) = &mut layer.ffn_post_norm {
                norm.arrays_mut(&mut out);
            }
        }
        if let Some(norm) = &mut self.final_norm {
            norm.arrays_mut(&mut out);
        }
        for head in &mut self.heads {
            for op in &mut head.ops {
                match op {
                    HeadOp::Linear(linear) => linear.arrays_mut(&mut out),
                    HeadOp::TiedDecoder { bias: Some(bias) } => {
                        out.push((ParameterRole::Bias, bias));
                    }
                    HeadOp::Norm(norm) => norm.arrays_mut(&mut out),
                    HeadOp::TiedDecoder { bias: None }
                    | HeadOp::Activation(_)
                    | HeadOp::SoftCap(_)
                    | HeadOp::MeanPool => {}
                }
            }
        }
        out
    }
}
