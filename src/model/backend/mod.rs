//! The backends that run a model: [`cpu`], tuned kernels on host arrays, and [`candle`], candle's
//! tensor ops (the GPU path, also runnable on the CPU for comparison). Both receive the weights a
//! family description found ([`ModelWeights`]) and the order of operations ([`Architecture`]);
//! neither spells a tensor name nor knows a family. What they return is assembled into an
//! [`super::Analysis`] in one place, `LoadedModel::run`.

pub mod candle;
pub mod cpu;

use super::captured::{CapturedArray, KeptFloats};
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
    /// Word (token) embeddings as the model adds them (Gemma's scaled by `√hidden`).
    pub word: Vec<f32>,
    /// Position embeddings, for families that add them (rotary families do not).
    pub position: Option<Vec<f32>>,
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
pub trait Backend: Interventions {
    /// The last hidden states in the backend's own form, kept for the heads.
    type Last;

    /// The hyper-parameters and order of operations it was built for.
    fn config(&self) -> &ModelConfig;

    /// Runs the embeddings and every layer over one sequence, capturing every attention map,
    /// query, key and hidden state.
    fn forward(&self, input: &ForwardInput<'_>) -> Result<(Captured, Self::Last)>;

    /// Runs head number `head` (an index into the weights' heads) on rows `rows` of the last
    /// hidden states; returns the logits row-major, `[rows, outputs]`, in memory that is kept
    /// for the next pass once they are dropped.
    fn head_logits(&self, last: &Self::Last, head: usize, rows: &[usize]) -> Result<KeptFloats>;

    /// Runs head number `head` on host hidden-state rows `[count, hidden]` (a logit lens reads
    /// earlier layers' states this way), each row first through the final LayerNorm where
    /// `final_norm[row]` is set and the family has one; returns the logits `[count, outputs]`.
    /// One call for every row: the head's vocabulary matrix is read once.
    fn head_logits_of_rows(
        &self,
        rows: &[f32],
        head: usize,
        final_norm: &[bool],
    ) -> Result<KeptFloats>;

    /// The embedding-table rows the input reads.
    fn embedding_rows(&self, input: &ForwardInput<'_>) -> Result<EmbeddingRows>;
}

/// What attribution, activation patching and logit attribution ask of a backend: batched runs
/// from any layer, with interventions and gradients. Object-safe, unlike [`Backend`].
pub trait Interventions {
    /// The embedding output `[tokens, hidden]`: what the first layer reads.
    fn embedding_output(&self, input: &ForwardInput<'_>) -> Result<Vec<f32>>;

    /// Runs the items of `run` from its start layer on and reads the logit it names in each.
    fn batch_logits(&self, run: &BatchRun<'_>) -> Result<Vec<f32>>;

    /// Like [`Backend::batch_logits`], with each logit's gradient with respect to the states
    /// the item started from.
    fn batch_gradients(&self, run: &BatchRun<'_>) -> Result<Gradients>;

    /// Integrated gradients' weighted sum of gradients along `path`, `[tokens, hidden]`, in
    /// batches of [`PathRun::per_batch`] points, calling `step` after each batch (which may
    /// stop the run with its error). Each point's item is a batched run from the embedding
    /// output; a backend may share work between the points, which lie on one line.
    fn path_gradient(
        &self,
        path: &PathRun<'_>,
        step: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Vec<f32>> {
        path_gradient_by_items(self, path, step)
    }

    /// One plain run's residual stream and head contexts at every layer.
    fn trace(&self, input: &ForwardInput<'_>) -> Result<Trace>;

    /// What every head of layer `layer` adds to the residual stream at one token whose context
    /// vectors (all heads', `[hidden]`) are `context`: `[heads, hidden]`, and the attention
    /// output's bias (zeros when it has none), `[hidden]`.
    fn head_outputs(&self, layer: usize, context: &[f32]) -> Result<(Vec<f32>, Vec<f32>)>;

    /// How a logit reads the residual stream after the last layer, for heads that are one
    /// vocabulary matrix (a causal LM's); `None` for heads that compute more.
    fn readout(&self, head: usize, output: usize) -> Result<Option<Readout>>;
}

/// One logit of one prediction head: output `output` of head number `head` (an index into the
/// weights' heads) at row `row` of the last hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogitIndex {
    /// The head, an index into the weights' heads.
    pub head: usize,
    /// The token row the head reads.
    pub row: usize,
    /// The head's output; [`crate::model::target::TOP_OUTPUT`]: the row's largest (the lowest
    /// such output), chosen per item by the run.
    pub output: usize,
}

/// Replaces one head's context vectors per item in a batched run's first layer (activation
/// patching).
#[derive(Debug, Clone, Copy)]
pub struct HeadPatch<'a> {
    /// Per item, the head of the start layer whose context vectors are replaced.
    pub heads: &'a [usize],
    /// The replacements: every head's context vectors at that layer, `[tokens, heads·head_dim]`.
    pub contexts: &'a [f32],
}

/// Many runs of one input from a layer on, each from its own states: the points on an
/// integrated-gradients path, occluded inputs, patched runs.
#[derive(Debug, Clone, Copy)]
pub struct BatchRun<'a> {
    /// Tokens per item.
    pub tokens: usize,
    /// The first layer that runs (0: the states are the embedding output).
    pub start_layer: usize,
    /// `[items, tokens, hidden]`: what layer `start_layer` reads, per item.
    pub states: &'a [f32],
    /// Heads whose context vectors are replaced in the start layer.
    pub head_patch: Option<HeadPatch<'a>>,
    /// The logit read from each item.
    pub logit: LogitIndex,
}

impl BatchRun<'_> {
    /// How many items the run holds.
    pub fn items(&self, hidden: usize) -> usize {
        self.states.len() / (self.tokens * hidden).max(1)
    }
}

/// Integrated gradients' straight path from `from` (the baseline's embedding output) to `to`
/// (the input's), both `[tokens, hidden]`: the points `from + α·(to − from)` with their
/// quadrature weights.
#[derive(Debug, Clone, Copy)]
pub struct PathRun<'a> {
    /// Tokens of the input.
    pub tokens: usize,
    /// The path's start, `[tokens, hidden]`.
    pub from: &'a [f32],
    /// The path's end, `[tokens, hidden]`.
    pub to: &'a [f32],
    /// `(α, weight)` of each point.
    pub points: &'a [(f32, f32)],
    /// Points per batched run.
    pub per_batch: usize,
    /// The logit differentiated.
    pub logit: LogitIndex,
}

impl PathRun<'_> {
    /// `from + α·(to − from)` of every point of `points`, item after item.
    pub fn states(&self, points: &[(f32, f32)]) -> Vec<f32> {
        let mut states = Vec::with_capacity(points.len() * self.from.len());
        for &(alpha, _) in points {
            states.extend(
                self.from
                    .iter()
                    .zip(self.to)
                    .map(|(from, to)| from + alpha * (to - from)),
            );
        }
        states
    }
}

/// [`Interventions::path_gradient`] from each point's own gradient: a batched run per
/// [`PathRun::per_batch`] points, each item's gradient weighted and summed.
pub fn path_gradient_by_items<B: Interventions + ?Sized>(
    backend: &B,
    path: &PathRun<'_>,
    step: &mut dyn FnMut() -> Result<()>,
) -> Result<Vec<f32>> {
    let mut summed = vec![0f32; path.to.len()];
    for chunk in path.points.chunks(path.per_batch.max(1)) {
        let states = path.states(chunk);
        let gradients = backend.batch_gradients(&BatchRun {
            tokens: path.tokens,
            start_layer: 0,
            states: &states,
            head_patch: None,
            logit: path.logit,
        })?;
        for (&(_, weight), gradient) in chunk
            .iter()
            .zip(gradients.states.chunks_exact(summed.len()))
        {
            summed
                .iter_mut()
                .zip(gradient)
                .for_each(|(sum, g)| *sum += g * weight);
        }
        step()?;
    }
    Ok(summed)
}

/// What [`Backend::batch_gradients`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    /// The logit of each item.
    pub logits: Vec<f32>,
    /// The output each item's logit is (the one asked for, or the top one).
    pub outputs: Vec<usize>,
    /// `[items, tokens, hidden]`: each logit's gradient with respect to its item's states.
    pub states: Vec<f32>,
}

/// One run's residual stream and head contexts, host arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// `[layers + 1, tokens, hidden]`: what each layer reads, then the last layer's output
    /// before any final LayerNorm.
    pub states: Vec<f32>,
    /// `[layers, tokens, hidden]`: each layer's residual stream after its attention block
    /// (pre-LN families; post-LN ones: after the block's LayerNorm).
    pub attended: Vec<f32>,
    /// `[layers, tokens, heads·head_dim]`: each layer's heads' context vectors, head after
    /// head, as they enter the attention output projection.
    pub contexts: Vec<f32>,
}

/// How a logit reads the residual stream r after the last layer: `norm(r)·direction + bias`,
/// soft-capped afterwards where the head caps its logits.
#[derive(Debug, Clone, PartialEq)]
pub struct Readout {
    /// The final norm's scale, shift and epsilon, when the family has one.
    pub norm: Option<(Vec<f32>, Vec<f32>, f64)>,
    /// Whether that norm subtracts the mean (LayerNorm) or not (RMSNorm, whose shift is 0).
    pub centred: bool,
    /// The logit's row of the vocabulary matrix.
    pub direction: Vec<f32>,
    /// The logit's bias (0 without one).
    pub bias: f32,
    /// The head's soft-cap of its logits (Gemma's `final_logit_softcapping`), after the product.
    pub softcap: Option<f32>,
}

/// Runs a causal model a few tokens at a time, keeping every layer's keys and values so that a
/// generation step runs only its new token. Object-safe, unlike [`Backend`].
pub trait Incremental {
    /// Runs `input`, the tokens after the `cache.tokens()` already run (its positions are theirs
    /// in the whole sequence), appends their keys and values to `cache`, and gives the last new
    /// token's final state and attention rows.
    fn extend(&self, cache: &mut KvCache, input: &ForwardInput<'_>) -> Result<Extended>;
}

/// What [`Incremental::extend`] gives back about the last token it ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Extended {
    /// Its last hidden state, after any final LayerNorm: what the heads read, `[hidden]`.
    pub last_state: Vec<f32>,
    /// Its attention row in every head, `[layers, heads, keys]`, keys covering every token run
    /// so far (itself included).
    pub attention: Vec<f32>,
}

/// One layer's keys and values, in the form its backend keeps them.
pub(crate) enum LayerKv {
    /// Host arrays, token-major `[tokens, hidden]` (heads side by side in each row), so that a
    /// step appends one row.
    Host { keys: Vec<f32>, values: Vec<f32> },
    /// Device tensors `[heads, tokens, head_dim]`.
    Device {
        keys: candle_core::Tensor,
        values: candle_core::Tensor,
    },
}

/// The keys and values of every layer for the tokens run so far. Empty at first; the backend
/// that extends it first decides its form.
#[derive(Default)]
pub struct KvCache {
    pub(crate) tokens: usize,
    pub(crate) layers: Vec<LayerKv>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many tokens it holds.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Forgets every token from `tokens` on (regenerating from an earlier position).
    pub fn truncate(&mut self, tokens: usize) -> Result<()> {
        if tokens >= self.tokens {
            return Ok(());
        }
        if tokens == 0 {
            *self = Self::default();
            return Ok(());
        }
        for layer in &mut self.layers {
            match layer {
                LayerKv::Host { keys, values } => {
                    let width = keys.len() / self.tokens.max(1);
                    keys.truncate(tokens * width);
                    values.truncate(tokens * width);
                }
                LayerKv::Device { keys, values } => {
                    *keys = keys.narrow(1, 0, tokens)?;
                    *values = values.narrow(1, 0, tokens)?;
                }
            }
        }
        self.tokens = tokens;
        Ok(())
    }
}
