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
    /// Heads `(layer, head)` whose attention probabilities are multiplied by zero, as
    /// transformers 4.x's `head_mask` did: their context vectors are zero and their captured
    /// maps too.
    pub ablated: &'a [(usize, usize)],
    /// Whether to compute [`Captured::value_norms`].
    pub value_norms: bool,
}

impl<'a> ForwardInput<'a> {
    /// A plain run: nothing ablated, no value norms.
    pub fn new(ids: &'a [u32], positions: &'a [u32], segments: Option<&'a [u32]>) -> Self {
        Self {
            ids,
            positions,
            segments,
            ablated: &[],
            value_norms: false,
        }
    }

    /// Whether head `head` of layer `layer` is ablated.
    pub fn is_ablated(&self, layer: usize, head: usize) -> bool {
        self.ablated.contains(&(layer, head))
    }
}

/// The embedding-table rows one input reads, host arrays `[tokens, hidden]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRows {
    /// Word (token) embeddings.
    pub word: Vec<f32>,
    /// Position embeddings.
    pub position: Vec<f32>,
    /// Segment embeddings, for families that have them.
    pub segment: Option<Vec<f32>>,
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
    /// `[layers, heads, tokens]`: ‖f_h(x_j)‖₂ with f_h(x) = (x·W_V^h + b_V^h)·W_O^h, the vector
    /// head h adds to the residual stream per unit of attention on token j (Kobayashi et al.
    /// 2020; x is what the attention reads: the layer input, or its LayerNorm in pre-LN
    /// families). Computed when [`ForwardInput::value_norms`] asks.
    pub value_norms: Option<CapturedArray>,
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

    /// Runs head number `head` on host hidden-state rows `[count, hidden]` (a logit lens reads
    /// earlier layers' states this way), each row first through the final LayerNorm where
    /// `final_norm[row]` is set and the family has one; returns the logits `[count, outputs]`.
    /// One call for every row: the head's vocabulary matrix is read once.
    fn head_logits_of_rows(
        &self,
        rows: &[f32],
        head: usize,
        final_norm: &[bool],
    ) -> Result<Vec<f32>>;

    /// The embedding-table rows the input reads.
    fn embedding_rows(&self, input: &ForwardInput<'_>) -> Result<EmbeddingRows>;
}
