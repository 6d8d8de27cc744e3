//! The backends that run a model: [`cpu`], tuned kernels on host arrays, and [`candle`], candle's
//! tensor ops (the GPU path, also runnable on the CPU for comparison). Both receive the weights a
//! family description found ([`ModelWeights`]) and the order of operations ([`Architecture`]);
//! neither spells a tensor name nor knows a family. What they return is assembled into an
//! [`super::Analysis`] in one place, `LoadedModel::run`.

pub mod candle;
pub mod cpu;

use super::captured::CapturedArray;
use super::config::ModelConfig;
use super::error::Result;

#[cfg(doc)]
use super::{config::Architecture, params::ModelWeights};

/// One sequence, ready to run: token ids, their position ids and, when the family has segment
/// embeddings, their segment ids. Lengths agree and every id is in range.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInput<'a> {
    /// Vocabulary ids.
    pub ids: &'a [u32],
    /// Rows of the position table.
    pub positions: &'a [u32],
    /// Rows of the segment table, for families that have one.
    pub segments: Option<&'a [u32]>,
}

/// What a forward pass captures: host arrays from the CPU backend, arrays left on the device
/// from candle's (copied piece by piece as views ask).
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    /// `[1 + layers, tokens, hidden]`: the embedding output, then each layer's output (the last
    /// after the final LayerNorm, for families that have one).
    pub hidden_states: CapturedArray,
    /// `[layers, heads, tokens, tokens]`.
    pub attentions: CapturedArray,
    /// `[layers, heads, tokens, head_dim]`, before scaling.
    pub queries: CapturedArray,
    /// `[layers, heads, tokens, head_dim]`.
    pub keys: CapturedArray,
}

/// A way of running a model.
pub trait Backend {
    /// The last hidden states in the backend's own form, kept for the heads.
    type Last;

    /// The hyper-parameters and order of operations it was built for.
    fn config(&self) -> &ModelConfig;

    /// Runs the embeddings and every layer over one sequence, capturing every attention map,
    /// query, key and hidden state.
    fn forward(&self, input: &ForwardInput<'_>) -> Result<(Captured, Self::Last)>;

    /// Runs head number `head` (an index into the weights' heads) on rows `rows` of the last
    /// hidden states; returns the logits row-major, `[rows, outputs]`.
    fn head_logits(&self, last: &Self::Last, head: usize, rows: &[usize]) -> Result<Vec<f32>>;
}
