//! Batched runs from a layer on, with a backward pass: the CPU side of
//! [`Backend::batch_logits`], [`Backend::batch_gradients`] and [`Backend::trace`].
//!
//! Items of one input are laid side by side as columns (`[features, items·tokens]`, item-major
//! within), so that every dense layer of every item is one matrix product over all columns and
//! only attention works per item and head. The forward keeps what the backward needs (a tape);
//! the backward is written out per operation, the transposes of the forward's products (with
//! each layer's weights transposed once, so that `Wᵀ·G` reads them row-major), and runs only
//! with respect to the activations: no weight gradient is computed for an attribution.
//!
//! [`Backend::batch_logits`]: super::super::Backend::batch_logits
//! [`Backend::batch_gradients`]: super::super::Backend::batch_gradients
//! [`Backend::trace`]: super::super::Backend::trace

mod row_attention;

use std::borrow::Cow;

use rayon::prelude::{
    IndexedParallelIterator, IntoParallelRefIterator, ParallelIterator, ParallelSlice,
    ParallelSliceMut,
};

use super::kernels::{
    activated, activation_backward, dense_backward, gate, gate_backward,
    layer_norm_backward_columns, layer_norm_columns_taped, rms_norm_backward_columns,
    rms_norm_columns_taped, rotate_columns, scores_to_probs, transpose_into, MatMul, NormTape,
    Strided,
};
use super::CpuBackend;
use crate::model::backend::{
    path_gradient_by_items, BatchRun, Gradients, LogitIndex, PathRun, Trace,
};
use crate::model::config::NormPlacement;
use crate::model::error::{ModelError, Result};
use crate::model::params::{HeadOp, LayerWeights, Linear, Norm, NormKind};
use crate::model::prediction_heads;
use crate::model::target::TOP_OUTPUT;
use row_attention::RowTape;

/// The shape of a batch: items of `tokens` columns each.
#[derive(Debug, Clone, Copy)]
struct Shape {
    items: usize,
    tokens: usize,
}

impl Shape {
    fn columns(self) -> usize {
        self.items * self.tokens
    }

    /// The columns a layer's output has: every column, or one per item when the layer
    /// computes only the row `read_row` of each item.
    fn out_columns(self, read_row: Option<usize>) -> usize {
        read_row.map_or(self.columns(), |_| self.items)
    }
}

/// The columns of `xt` (`[features, items·tokens]`) at `row` of each item, `[features, items]`.
fn read_columns(xt: &[f32], shape: Shape, row: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(xt.len() / shape.tokens);
    for feature in xt.chunks_exact(shape.columns()) {
        out.extend((0..shape.items).map(|item| feature[item * shape.tokens + row]));
    }
    out
}

/// [`read_columns`] backwards: `[features, items]` at `row` of each item, zero elsewhere.
fn spread_columns(read: &[f32], shape: Shape, row: usize) -> Vec<f32> {
    let columns = shape.columns();
    let mut out = vec![0f32; read.len() * shape.tokens];
    for (feature, values) in out
        .chunks_exact_mut(columns)
        .zip(read.chunks_exact(shape.items))
    {
        for (item, &value) in values.iter().enumerate() {
            feature[item * shape.tokens + row] = value;
        }
    }
    out
}

/// `xt`, or its columns at `read_row` of each item when the layer computes only those.
fn read_or_all(xt: &[f32], shape: Shape, read_row: Option<usize>) -> Cow<'_, [f32]> {
    match read_row {
        Some(row) => Cow::Owned(read_columns(xt, shape, row)),
        None => Cow::Borrowed(xt),
    }
}

/// What a batched run replaces in the layer it starts from.
#[derive(Default)]
struct Replaced<'a> {
    /// Activation patching: per item, the head whose context vectors are replaced, and every
    /// head's replacements `[tokens, heads·head_dim]`.
    head: Option<(&'a [usize], &'a [f32])>,
    /// The query, key and value product's output `[width, columns]`, computed by the caller.
    qkv: Option<Vec<f32>>,
}

/// Integrated gradients' points folded into the first layer, where it reads the embedding
/// output through its query, key and value product alone (see
/// [`CpuBackend::path_gradient_cpu`]).
struct PathFold<'a> {
    /// `(α, weight)` of each item.
    points: &'a [(f32, f32)],
    /// The product's output at the path's start, `[width, tokens]`.
    from_qkv: &'a [f32],
    /// Its output at the end minus that at the start, `[width, tokens]`.
    delta_qkv: &'a [f32],
}

impl PathFold<'_> {
    /// The product's output at every item's point, `from + α·delta`, `[width, items·tokens]`.
    fn interpolated(&self, tokens: usize) -> Vec<f32> {
        let columns = self.points.len() * tokens;
        let mut out = vec![0f32; self.from_qkv.len() * self.points.len()];
        out.par_chunks_mut(columns)
            .zip(self.from_qkv.par_chunks(tokens))
            .zip(self.delta_qkv.par_chunks(tokens))
            .for_each(|((out, from), delta)| {
                for (out, &(alpha, _)) in out.chunks_exact_mut(tokens).zip(self.points) {
                    for ((out, from), delta) in out.iter_mut().zip(from).zip(delta) {
                        *out = from + alpha * delta;
                    }
                }
            });
        out
    }

    /// `Σ_i weight_i · values[:, item i]`: `[rows, items·tokens]` to `[rows, tokens]`.
    fn weighted_sum(&self, values: &[f32], tokens: usize) -> Vec<f32> {
        let columns = self.points.len() * tokens;
        let mut out = vec![0f32; values.len() / self.points.len()];
        out.par_chunks_mut(tokens)
            .zip(values.par_chunks(columns))
            .for_each(|(out, row)| {
                for (item, &(_, weight)) in row.chunks_exact(tokens).zip(self.points) {
                    out.iter_mut()
                        .zip(item)
                        .for_each(|(out, value)| *out += weight * value);
                }
            });
        out
    }
}

/// What one layer's backward pass needs of its forward.
struct LayerTape {
    /// The row of each item the layer computed its output at, when it computed only that
    /// (the last layer, read by a head): every tensor after the attention then has one column
    /// per item, and the probabilities one query row.
    read_row: Option<usize>,
    /// Post-LN: the norm of the attention block's sum; pre-LN: the norm of the layer input.
    attention_norm: NormTape,
    /// The queries, keys and values the attention read (after any head norm and rotary
    /// embedding), `[heads·head_dim + 2·kv_heads·head_dim, columns]`.
    qkv: Vec<f32>,
    /// The head norms' tapes, when the family normalises each query and key head.
    head_norms: Option<HeadNormTapes>,
    /// `[heads, items, query rows, tokens]`.
    probs: Vec<f32>,
    /// When the attention ran at the read row without keys and values
    /// ([`CpuBackend::row_attention`]; `qkv` is then empty).
    row: Option<RowTape>,
    /// Gemma 3's norm of the attention block's output.
    attention_post_norm: Option<NormTape>,
    /// Post-LN: the norm of the feed-forward block's sum; pre-LN: the norm before it.
    ffn_norm: NormTape,
    /// The feed-forward block's first-layer output, before the activation (gated: the gate's
    /// rows, then the up projection's), `[inner or 2·inner, columns]`.
    inner_pre: Vec<f32>,
    /// Gemma 3's norm of the feed-forward block's output.
    ffn_post_norm: Option<NormTape>,
}

/// Each query head's and key head's norm tape (Qwen3's and Gemma 3's head norms).
pub(super) struct HeadNormTapes {
    /// Per query head, when the queries are normalised.
    queries: Option<Vec<NormTape>>,
    /// Per key head, when the keys are normalised.
    keys: Option<Vec<NormTape>>,
}

/// One layer's output, and what it kept.
struct LayerStep {
    output: Vec<f32>,
    /// The residual stream after the attention block (pre-LN; post-LN: after its norm).
    attended: Vec<f32>,
    context: Vec<f32>,
    tape: Option<LayerTape>,
}

/// What [`CpuBackend::batch_attention`] gives.
struct BatchAttention {
    context: Vec<f32>,
    qkv: Vec<f32>,
    head_norms: Option<HeadNormTapes>,
    probs: Vec<f32>,
    /// What the backward pass needs where the attention ran at one row without keys and
    /// values (kept only when taped).
    row: Option<RowTape>,
}

/// `W·x + b` normalised where the family does (Gemma 3's post-norms), plus `residual`; and
/// the post-norm's tape.
fn post_normed_sum(
    linear: &Linear,
    post_norm: Option<&Norm>,
    xt: &[f32],
    residual: &[f32],
    columns: usize,
) -> (Vec<f32>, Option<NormTape>) {
    match post_norm {
        None => (linear.forward_columns(xt, columns, Some(residual)), None),
        Some(norm) => {
            let mut out = linear.forward_columns(xt, columns, None);
            let tape = norm.forward_taped(&mut out, None, columns);
            out.iter_mut().zip(residual).for_each(|(x, r)| *x += r);
            (out, Some(tape))
        }
    }
}

/// A forward pass's output columns and, when asked for, its tape.
struct Forward {
    /// The last hidden states (after any final norm), `[hidden, columns]`.
    last: Vec<f32>,
    layers: Vec<LayerTape>,
    final_norm: Option<NormTape>,
}

/// A layer's matrices transposed, for the backward pass: qkv, attention output, ffn in, ffn out.
pub(super) struct Transposed([Vec<f32>; 4]);

impl Transposed {
    fn of(layer: &LayerWeights) -> Self {
        let transpose = |linear: &Linear| {
            let mut out = vec![0f32; linear.weight.len()];
            transpose_into(&linear.weight, linear.outputs, linear.inputs, &mut out);
            out
        };
        Self([
            transpose(&layer.qkv),
            transpose(&layer.attention_output),
            transpose(&layer.ffn_in),
            transpose(&layer.ffn_out),
        ])
    }
}

/// `Wᵀ·G (+ residual)` for a layer's `linear` from its transposed weight `wt`.
fn backward_with(
    linear: &Linear,
    wt: &[f32],
    grad: &[f32],
    columns: usize,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    super::kernels::dense(
        wt,
        None,
        linear.inputs,
        linear.outputs,
        grad,
        columns,
        residual,
    )
}

impl Linear {
    fn forward_columns(&self, xt: &[f32], columns: usize, residual: Option<&[f32]>) -> Vec<f32> {
        super::kernels::dense(
            &self.weight,
            self.bias.as_deref(),
            self.outputs,
            self.inputs,
            xt,
            columns,
            residual,
        )
    }

    fn backward_columns(&self, grad: &[f32], columns: usize, residual: Option<&[f32]>) -> Vec<f32> {
        dense_backward(
            &self.weight,
            self.outputs,
            self.inputs,
            grad,
            columns,
            residual,
        )
    }
}

impl Norm {
    fn forward_taped(&self, xt: &mut [f32], residual: Option<&[f32]>, columns: usize) -> NormTape {
        match self.kind {
            NormKind::Layer => {
                layer_norm_columns_taped(xt, residual, &self.gamma, &self.beta, self.eps, columns)
            }
            NormKind::Rms => rms_norm_columns_taped(xt, residual, &self.gamma, self.eps, columns),
            NormKind::Identity => {
                if let Some(residual) = residual {
                    xt.iter_mut().zip(residual).for_each(|(x, r)| *x += r);
                }
                NormTape::default()
            }
        }
    }

    /// The gradient with respect to the norm's input from its output's gradient.
    fn backward(&self, tape: &NormTape, grad: &[f32], columns: usize) -> Vec<f32> {
        match self.kind {
            NormKind::Layer => layer_norm_backward_columns(tape, &self.gamma, grad, columns),
            NormKind::Rms => rms_norm_backward_columns(tape, &self.gamma, grad, columns),
            NormKind::Identity => grad.to_vec(),
        }
    }
}

/// Every column's position in its item: `0..tokens`, once per item.
fn item_positions(shape: Shape) -> Vec<u32> {
    (0..shape.columns())
        .map(|column| (column % shape.tokens) as u32)
        .collect()
}

impl CpuBackend {
    /// Checks a batch against the model and gives its shape.
    fn batch_shape(&self, run: &BatchRun<'_>) -> Result<Shape> {
        let hidden = self.config.hidden_size;
        let layers = self.weights.layers.len();
        let bad = |what: String| Err(ModelError::Compute(what));
        if run.tokens == 0 || !run.states.len().is_multiple_of(run.tokens * hidden) {
            return bad(format!(
                "a batch of {} values is not whole items of {} tokens",
                run.states.len(),
                run.tokens
            ));
        }
        if run.start_layer > layers {
            return bad(format!("there is no layer {}", run.start_layer));
        }
        if run.logit.row >= run.tokens {
            return bad(format!("there is no token {}", run.logit.row));
        }
        if self
            .weights
            .heads
            .get(run.logit.head)
            .is_none_or(|head| run.logit.output >= head.outputs && run.logit.output != TOP_OUTPUT)
        {
            return bad(format!(
                "head {} has no output {}",
                run.logit.head, run.logit.output
            ));
        }
        let shape = Shape {
            items: run.items(hidden),
            tokens: run.tokens,
        };
        if let Some(patch) = run.head_patch {
            if patch.heads.len() != shape.items
                || patch.contexts.len() != run.tokens * self.config.query_width()
                || patch
                    .heads
                    .iter()
                    .any(|&head| head >= self.config.num_attention_heads)
            {
                return bad("a head patch does not fit its batch".to_owned());
            }
        }
        Ok(shape)
    }

    /// Runs every layer from the batch's start layer, keeping the tape when `taped`. With
    /// `read_row`, the last layer computes only that row of each item, all a head reads: its
    /// queries, attention output and feed-forward block then run on one column per item,
    /// and the last hidden states are `[hidden, items]`.
    fn batch_forward(
        &self,
        run: &BatchRun<'_>,
        shape: Shape,
        taped: bool,
        read_row: Option<usize>,
        fold: Option<&PathFold<'_>>,
    ) -> Forward {
        let hidden = self.config.hidden_size;
        let mut xt = vec![0f32; hidden * shape.columns()];
        transpose_into(run.states, shape.columns(), hidden, &mut xt);
        let mut tapes = Vec::new();
        let last = self.weights.layers.len().saturating_sub(1);
        let mut out_columns = shape.columns();
        let mut first_qkv = fold.map(|fold| fold.interpolated(shape.tokens));
        for (index, layer) in self.weights.layers.iter().enumerate().skip(run.start_layer) {
            let replaced = if index == run.start_layer {
                Replaced {
                    head: run.head_patch.map(|patch| (patch.heads, patch.contexts)),
                    qkv: first_qkv.take(),
                }
            } else {
                Replaced::default()
            };
            let read_row = read_row.filter(|_| index == last);
            let step = self.batch_layer(index, layer, &xt, shape, replaced, taped, read_row);
            xt = step.output;
            out_columns = shape.out_columns(read_row);
            tapes.extend(step.tape);
        }
        let final_norm = self
            .weights
            .final_norm
            .as_ref()
            .map(|norm| norm.forward_taped(&mut xt, None, out_columns));
        Forward {
            last: xt,
            layers: tapes,
            final_norm,
        }
    }

    /// One layer over a batch's columns, with what `replaced` gives in place of its own. With
    /// `read_row`, the output (and everything after the keys and values) is only that row of
    /// each item.
    /// Long because it is the layer in order (norms, attention, output, residual sums, the
    /// feed-forward block), each step kept on the tape when `taped`.
    #[allow(clippy::too_many_arguments)]
    fn batch_layer(
        &self,
        index: usize,
        layer: &LayerWeights,
        xt: &[f32],
        shape: Shape,
        replaced: Replaced<'_>,
        taped: bool,
        read_row: Option<usize>,
    ) -> LayerStep {
        let columns = shape.columns();
        let out_columns = shape.out_columns(read_row);
        let ffn = |x: &[f32]| {
            let inner_pre = layer.ffn_in.forward_columns(x, out_columns, None);
            let inner = self.activated(&inner_pre);
            (inner_pre, inner)
        };
        let (output, attended, context, tape) = match self.config.architecture.norm {
            NormPlacement::Post => {
                let attention =
                    self.batch_attention(index, layer, xt, shape, replaced, taped, read_row);
                let mut attended =
                    layer
                        .attention_output
                        .forward_columns(&attention.context, out_columns, None);
                let residual = read_or_all(xt, shape, read_row);
                let attention_norm =
                    layer
                        .attention_norm
                        .forward_taped(&mut attended, Some(&residual), out_columns);
                let (inner_pre, inner) = ffn(&attended);
                let mut output = layer.ffn_out.forward_columns(&inner, out_columns, None);
                let ffn_norm =
                    layer
                        .ffn_norm
                        .forward_taped(&mut output, Some(&attended), out_columns);
                let tape = LayerTape {
                    read_row,
                    attention_norm,
                    qkv: attention.qkv,
                    head_norms: attention.head_norms,
                    probs: attention.probs,
                    row: attention.row,
                    attention_post_norm: None,
                    ffn_norm,
                    inner_pre,
                    ffn_post_norm: None,
                };
                (output, attended, attention.context, tape)
            }
            NormPlacement::Pre => {
                let mut normed = xt.to_vec();
                let attention_norm = layer
                    .attention_norm
                    .forward_taped(&mut normed, None, columns);
                let attention =
                    self.batch_attention(index, layer, &normed, shape, replaced, taped, read_row);
                let (attended, attention_post_norm) = post_normed_sum(
                    &layer.attention_output,
                    layer.attention_post_norm.as_ref(),
                    &attention.context,
                    &read_or_all(xt, shape, read_row),
                    out_columns,
                );
                let mut normed = attended.clone();
                let ffn_norm = layer.ffn_norm.forward_taped(&mut normed, None, out_columns);
                let (inner_pre, inner) = ffn(&normed);
                let (output, ffn_post_norm) = post_normed_sum(
                    &layer.ffn_out,
                    layer.ffn_post_norm.as_ref(),
                    &inner,
                    &attended,
                    out_columns,
                );
                let tape = LayerTape {
                    read_row,
                    attention_norm,
                    qkv: attention.qkv,
                    head_norms: attention.head_norms,
                    probs: attention.probs,
                    row: attention.row,
                    attention_post_norm,
                    ffn_norm,
                    inner_pre,
                    ffn_post_norm,
                };
                (output, attended, attention.context, tape)
            }
        };
        LayerStep {
            output,
            attended,
            context,
            tape: taped.then_some(tape),
        }
    }

    /// The feed-forward block's activated middle from its first layer's output.
    fn activated(&self, inner_pre: &[f32]) -> Vec<f32> {
        if self.config.architecture.gated_ffn {
            gate(inner_pre, self.config.hidden_act)
        } else {
            activated(inner_pre, self.config.hidden_act)
        }
    }

    /// Layer `index`'s queries, keys and values of feature-major `xt` at `positions`, as
    /// [`CpuBackend::project_heads`] computes them; with `taped`, the head norms' tapes too.
    /// `product` is the projection's output where the caller has it.
    pub(super) fn project_heads_taped(
        &self,
        index: usize,
        layer: &LayerWeights,
        xt: &[f32],
        positions: &[u32],
        taped: bool,
        product: Option<Vec<f32>>,
    ) -> (Vec<f32>, Option<HeadNormTapes>) {
        let columns = positions.len();
        let head_block = self.config.head_dim() * columns;
        let query_rows = self.config.query_width() * columns;
        let key_rows = self.config.kv_width() * columns;
        let mut qkv = product.unwrap_or_else(|| layer.qkv.forward_t(xt, columns, None));
        let (queries, rest) = qkv.split_at_mut(query_rows);
        let keys = &mut rest[..key_rows];
        let normalise = |heads: &mut [f32], norm: &Option<Norm>| -> Option<Vec<NormTape>> {
            let norm = norm.as_ref()?;
            if taped {
                return Some(
                    heads
                        .par_chunks_mut(head_block)
                        .map(|head| norm.forward_taped(head, None, columns))
                        .collect(),
                );
            }
            heads
                .par_chunks_mut(head_block)
                .for_each(|head| norm.forward_t(head, None, columns));
            None
        };
        let head_norms = HeadNormTapes {
            queries: normalise(queries, &layer.query_norm),
            keys: normalise(keys, &layer.key_norm),
        };
        if let Some(rotary) = self.config.architecture.rotary(index) {
            let (cos, sin) = rotary.tables(positions);
            queries
                .par_chunks_mut(head_block)
                .chain(keys.par_chunks_mut(head_block))
                .for_each(|head| rotate_columns(head, columns, &cos, &sin));
        }
        let taped_any = head_norms.queries.is_some() || head_norms.keys.is_some();
        (qkv, taped_any.then_some(head_norms))
    }

    /// Self-attention of every item and head: the context vectors `[heads·head_dim, columns]`,
    /// the queries, keys and values it read, their head norms' tapes (when `taped`) and the
    /// probabilities `[heads, items, tokens, tokens]`; with `read_row`, only that query row of
    /// each item (contexts `[heads·head_dim, items]`, probabilities `[heads, items, 1, tokens]`).
    /// Long because scores, soft-cap, mask, softmax, patch and context run per item and head.
    #[allow(clippy::too_many_arguments)]
    fn batch_attention(
        &self,
        index: usize,
        layer: &LayerWeights,
        xt: &[f32],
        shape: Shape,
        replaced: Replaced<'_>,
        taped: bool,
        read_row: Option<usize>,
    ) -> BatchAttention {
        let head_dim = self.config.head_dim();
        let query_width = self.config.query_width();
        let kv_width = self.config.kv_width();
        let architecture = &self.config.architecture;
        let scale = architecture.attention_scales[index];
        let causal = architecture.causal;
        let window = architecture.window(index);
        let softcap = architecture.attention_softcap;
        let (tokens, columns) = (shape.tokens, shape.columns());
        let Replaced {
            head: patch,
            qkv: product,
        } = replaced;
        if let Some(row) = read_row.filter(|_| {
            patch.is_none() && product.is_none() && self.attends_row_through_weights(index, layer)
        }) {
            return self.row_attention(index, layer, xt, shape, row, taped);
        }
        let (qkv, head_norms) =
            self.project_heads_taped(index, layer, xt, &item_positions(shape), taped, product);
        // Query rows per item, the first one's position, and the contexts' columns.
        let (queries, first_query) = read_row.map_or((tokens, 0), |row| (1, row));
        let out_columns = shape.out_columns(read_row);
        let mut context = vec![0f32; query_width * out_columns];
        let mut probs =
            vec![0f32; self.config.num_attention_heads * shape.items * queries * tokens];
        context
            .par_chunks_mut(head_dim * out_columns)
            .zip(probs.par_chunks_mut(shape.items * queries * tokens))
            .enumerate()
            .for_each(|(head, (context, probs))| {
                let kv = self.config.kv_head(head) * head_dim;
                let q = &qkv[head * head_dim * columns..];
                let k = &qkv[(query_width + kv) * columns..];
                let v = &qkv[(query_width + kv_width + kv) * columns..];
                for (item, map) in probs.chunks_exact_mut(queries * tokens).enumerate() {
                    let first = item * tokens;
                    let out_first = item * queries;
                    MatMul {
                        m: queries,
                        n: tokens,
                        k: head_dim,
                        lhs: Strided::transposed(&q[first + first_query..], columns),
                        rhs: Strided::row_major(&k[first..], columns),
                    }
                    .run(map, tokens, scale, false, false);
                    scores_to_probs(map, tokens, first_query, (causal, window), softcap);
                    if let Some((heads, clean)) = patch.filter(|(heads, _)| heads[item] == head) {
                        debug_assert_eq!(heads.len(), shape.items);
                        for (d, row) in context.chunks_exact_mut(out_columns).enumerate() {
                            let row = &mut row[out_first..out_first + queries];
                            for (t, value) in (first_query..).zip(row) {
                                *value = clean[t * query_width + head * head_dim + d];
                            }
                        }
                        continue;
                    }
                    // contextᵀ[:, item] = vᵀ·mapᵀ.
                    MatMul {
                        m: head_dim,
                        n: queries,
                        k: tokens,
                        lhs: Strided::row_major(&v[first..], columns),
                        rhs: Strided::transposed(map, tokens),
                    }
                    .run(
                        &mut context[out_first..],
                        out_columns,
                        1.0,
                        false,
                        false,
                    );
                }
            });
        BatchAttention {
            context,
            qkv,
            head_norms,
            probs,
            row: None,
        }
    }

    /// Runs the logit's head on one column of the last hidden states; returns the logit and,
    /// when `backward`, its gradient with respect to the column.
    fn head_logit(
        &self,
        logit: LogitIndex,
        column: Vec<f32>,
        backward: bool,
    ) -> Result<(f32, usize, Option<Vec<f32>>)> {
        let head =
            self.weights.heads.get(logit.head).ok_or_else(|| {
                ModelError::Compute(format!("the model has no head {}", logit.head))
            })?;
        // A final soft-cap (Gemma's) is applied to the product's one output below.
        let (ops, cap) = match head.ops.split_last() {
            Some((HeadOp::SoftCap(cap), ops)) => (ops, Some(*cap)),
            _ => (head.ops.as_slice(), None),
        };
        let Some((last, before)) = ops.split_last() else {
            return Err(ModelError::Compute("a head without operations".to_owned()));
        };
        // Every op but the last runs whole; the last, a product into the outputs, gives only
        // the one output asked for.
        let mut inputs = Vec::with_capacity(before.len());
        let mut x = column;
        for op in before {
            let y = self.head_op(op, x.clone(), 1);
            inputs.push(x);
            x = y;
        }
        let output = if logit.output == TOP_OUTPUT {
            // The first of equal maxima, as the predictions rank them.
            prediction_heads::argmax(&self.head_op(last, x.clone(), 1))
        } else {
            logit.output
        };
        let (row, bias) = match last {
            HeadOp::Linear(linear) => (
                linear.weight[output * linear.inputs..][..linear.inputs].to_vec(),
                linear.bias.as_ref().map_or(0.0, |bias| bias[output]),
            ),
            HeadOp::TiedDecoder { bias } => {
                let hidden = self.config.hidden_size;
                (
                    self.weights.embeddings.word[output * hidden..][..hidden].to_vec(),
                    bias.as_ref().map_or(0.0, |bias| bias[output]),
                )
            }
            HeadOp::Activation(_) | HeadOp::Norm(_) | HeadOp::SoftCap(_) | HeadOp::MeanPool => {
                return Err(ModelError::Compute(
                    "a head that does not end in a product".to_owned(),
                ))
            }
        };
        let value = row.iter().zip(&x).map(|(w, x)| w * x).sum::<f32>() + bias;
        let (value, slope) = match cap {
            Some(cap) => {
                let t = (value / cap).tanh();
                (t * cap, 1.0 - t * t)
            }
            None => (value, 1.0),
        };
        if !backward {
            return Ok((value, output, None));
        }
        let mut grad: Vec<f32> = row.iter().map(|w| w * slope).collect();
        for (op, input) in before.iter().zip(&inputs).rev() {
            grad = match op {
                HeadOp::Linear(linear) => linear.backward_columns(&grad, 1, None),
                HeadOp::TiedDecoder { .. } => dense_backward(
                    &self.weights.embeddings.word,
                    self.config.vocab_size,
                    self.config.hidden_size,
                    &grad,
                    1,
                    None,
                ),
                HeadOp::Activation(activation) => {
                    activation_backward(&mut grad, input, *activation);
                    grad
                }
                HeadOp::Norm(norm) => {
                    let mut copy = input.clone();
                    let tape = norm.forward_taped(&mut copy, None, 1);
                    norm.backward(&tape, &grad, 1)
                }
                HeadOp::SoftCap(cap) => {
                    grad.iter_mut().zip(input).for_each(|(g, &x)| {
                        let t = (x / cap).tanh();
                        *g *= 1.0 - t * t;
                    });
                    grad
                }
                // A mean-pooled head reads every column, not the one a batched run reads.
                HeadOp::MeanPool => return Err(ModelError::BadInput(
                    "a mean-pooled classifier is not attributed yet: its logit reads every token"
                        .to_owned(),
                )),
            };
        }
        Ok((value, output, Some(grad)))
    }

    /// The logit of every item, and with `backward` the gradients with respect to the states;
    /// with `fold`, the first layer's product interpolated and the gradients' weighted sum,
    /// one item's states.
    fn run_batch(
        &self,
        run: &BatchRun<'_>,
        backward: bool,
        fold: Option<&PathFold<'_>>,
    ) -> Result<Gradients> {
        let shape = self.batch_shape(run)?;
        let hidden = self.config.hidden_size;
        // The head reads one row of each item, so the last layer computes only that row; a
        // mean-pooled head would read every row.
        let reads_one_row = self
            .weights
            .heads
            .get(run.logit.head)
            .is_some_and(|head| !head.ops.iter().any(|op| matches!(op, HeadOp::MeanPool)));
        let read_row = reads_one_row.then_some(run.logit.row);
        let forward = self.batch_forward(run, shape, backward, read_row, fold);
        // The last states' columns: one per item when the last layer ran, every column when
        // the run starts past it (and holds only the states it was given).
        let columns = forward.last.len() / hidden;
        let mut logits = Vec::with_capacity(shape.items);
        let mut outputs = Vec::with_capacity(shape.items);
        let mut grad = backward.then(|| vec![0f32; hidden * columns]);
        for item in 0..shape.items {
            let at = if columns == shape.columns() {
                item * shape.tokens + run.logit.row
            } else {
                item
            };
            let column: Vec<f32> = (0..hidden)
                .map(|f| forward.last[f * columns + at])
                .collect();
            let (value, output, column_grad) = self.head_logit(run.logit, column, backward)?;
            logits.push(value);
            outputs.push(output);
            if let (Some(grad), Some(column_grad)) = (grad.as_mut(), column_grad) {
                for (f, g) in column_grad.into_iter().enumerate() {
                    grad[f * columns + at] = g;
                }
            }
        }
        let Some(mut grad) = grad else {
            return Ok(Gradients {
                logits,
                outputs,
                states: Vec::new(),
            });
        };
        if let (Some(norm), Some(tape)) = (&self.weights.final_norm, &forward.final_norm) {
            grad = norm.backward(tape, &grad, columns);
        }
        for (index, tape) in (run.start_layer..self.weights.layers.len())
            .zip(&forward.layers)
            .rev()
        {
            let fold = fold.filter(|_| index == 0);
            grad = self.layer_backward(index, tape, grad, shape, fold);
        }
        let mut states = vec![0f32; grad.len()];
        transpose_into(&grad, hidden, grad.len() / hidden, &mut states);
        Ok(Gradients {
            logits,
            outputs,
            states,
        })
    }

    /// The gradient with respect to a layer's input from its output's gradient; with `fold`
    /// (the first layer of a path), its weighted sum over the items, `[hidden, tokens]`.
    /// Long because it is the layer's forward backwards, step by step.
    fn layer_backward(
        &self,
        index: usize,
        tape: &LayerTape,
        grad: Vec<f32>,
        shape: Shape,
        fold: Option<&PathFold<'_>>,
    ) -> Vec<f32> {
        let layer = &self.weights.layers[index];
        let columns = shape.columns();
        // Everything after the keys and values has these columns (see `LayerTape::read_row`).
        let out_columns = shape.out_columns(tape.read_row);
        let spread = |grad: Vec<f32>| match tape.read_row {
            Some(row) => spread_columns(&grad, shape, row),
            None => grad,
        };
        let activation = self.config.hidden_act;
        let gated = self.config.architecture.gated_ffn;
        let Transposed([qkv_t, output_t, ffn_in_t, ffn_out_t]) =
            self.transposed[index].get_or_init(|| Transposed::of(layer));
        // From the feed-forward block's output to its first layer's input.
        let ffn_backward = |grad: &[f32]| {
            let inner = backward_with(&layer.ffn_out, ffn_out_t, grad, out_columns, None);
            let inner_pre = if gated {
                gate_backward(&inner, &tape.inner_pre, activation)
            } else {
                let mut inner = inner;
                activation_backward(&mut inner, &tape.inner_pre, activation);
                inner
            };
            backward_with(&layer.ffn_in, ffn_in_t, &inner_pre, out_columns, None)
        };
        // Through a post-norm, when the block has one.
        let through =
            |norm: &Option<Norm>, tape: &Option<NormTape>, grad: &[f32]| match (norm, tape) {
                (Some(norm), Some(tape)) => norm.backward(tape, grad, out_columns),
                _ => grad.to_vec(),
            };
        match self.config.architecture.norm {
            NormPlacement::Post => {
                let d_sum = layer.ffn_norm.backward(&tape.ffn_norm, &grad, out_columns);
                let mut d_attended = ffn_backward(&d_sum);
                d_attended.iter_mut().zip(&d_sum).for_each(|(d, g)| *d += g);
                let d_sum =
                    layer
                        .attention_norm
                        .backward(&tape.attention_norm, &d_attended, out_columns);
                let d_context =
                    backward_with(&layer.attention_output, output_t, &d_sum, out_columns, None);
                let d_sum = spread(d_sum);
                if let Some(row_tape) = &tape.row {
                    let mut d_input = self
                        .row_attention_backward(index, layer, row_tape, tape, &d_context, shape);
                    d_input.iter_mut().zip(&d_sum).for_each(|(d, g)| *d += g);
                    return d_input;
                }
                let d_qkv = self.attention_backward(index, tape, &d_context, shape);
                match fold {
                    Some(fold) => backward_with(
                        &layer.qkv,
                        qkv_t,
                        &fold.weighted_sum(&d_qkv, shape.tokens),
                        shape.tokens,
                        Some(&fold.weighted_sum(&d_sum, shape.tokens)),
                    ),
                    None => backward_with(&layer.qkv, qkv_t, &d_qkv, columns, Some(&d_sum)),
                }
            }
            NormPlacement::Pre => {
                let d_out = through(&layer.ffn_post_norm, &tape.ffn_post_norm, &grad);
                let d_normed = ffn_backward(&d_out);
                let mut d_attended =
                    layer
                        .ffn_norm
                        .backward(&tape.ffn_norm, &d_normed, out_columns);
                d_attended.iter_mut().zip(&grad).for_each(|(d, g)| *d += g);
                let d_out = through(
                    &layer.attention_post_norm,
                    &tape.attention_post_norm,
                    &d_attended,
                );
                let d_context =
                    backward_with(&layer.attention_output, output_t, &d_out, out_columns, None);
                let d_attended = spread(d_attended);
                let (d_normed, d_attended, columns) = match (&tape.row, fold) {
                    (Some(row_tape), _) => (
                        self.row_attention_backward(
                            index, layer, row_tape, tape, &d_context, shape,
                        ),
                        d_attended,
                        columns,
                    ),
                    // Folded only where the attention norm is an identity (see
                    // `path_gradient_cpu`), so that the sum may come before it.
                    (None, Some(fold)) => {
                        let d_qkv = self.attention_backward(index, tape, &d_context, shape);
                        (
                            backward_with(
                                &layer.qkv,
                                qkv_t,
                                &fold.weighted_sum(&d_qkv, shape.tokens),
                                shape.tokens,
                                None,
                            ),
                            fold.weighted_sum(&d_attended, shape.tokens),
                            shape.tokens,
                        )
                    }
                    (None, None) => {
                        let d_qkv = self.attention_backward(index, tape, &d_context, shape);
                        (
                            backward_with(&layer.qkv, qkv_t, &d_qkv, columns, None),
                            d_attended,
                            columns,
                        )
                    }
                };
                let mut d_input =
                    layer
                        .attention_norm
                        .backward(&tape.attention_norm, &d_normed, columns);
                d_input
                    .iter_mut()
                    .zip(&d_attended)
                    .for_each(|(d, g)| *d += g);
                d_input
            }
        }
    }

    /// The gradient with respect to the query, key and value projections' output
    /// (`[heads·head_dim + 2·kv_heads·head_dim, columns]`) from the context vectors' gradient
    /// `[heads·head_dim, columns]`: through the attention, then back through the rotary
    /// embedding and the head norms where the family has them.
    /// Long because the softmax, soft-cap, score and grouped key/value gradients run per item
    /// and head, in one pass over each head's blocks.
    fn attention_backward(
        &self,
        index: usize,
        tape: &LayerTape,
        d_context: &[f32],
        shape: Shape,
    ) -> Vec<f32> {
        let head_dim = self.config.head_dim();
        let heads = self.config.num_attention_heads;
        let query_width = self.config.query_width();
        let kv_width = self.config.kv_width();
        let scale = self.config.architecture.attention_scales[index];
        let softcap = self.config.architecture.attention_softcap;
        let (tokens, columns) = (shape.tokens, shape.columns());
        let block = head_dim * columns;
        // The query rows the forward computed (see `LayerTape::read_row`).
        let (queries, first_query) = tape.read_row.map_or((tokens, 0), |row| (1, row));
        let out_columns = shape.out_columns(tape.read_row);
        let mut d_qkv = vec![0f32; (query_width + 2 * kv_width) * columns];
        let (d_queries, d_kv) = d_qkv.split_at_mut(query_width * columns);
        // Without grouping each head writes its key and value gradients in place; grouped,
        // each query head's share of its key/value head's gradients is summed below.
        let grouped = kv_width != query_width;
        let mut shares = vec![0f32; if grouped { 2 * heads * block } else { 0 }];
        let (d_keys, d_values) = if grouped {
            shares.split_at_mut(heads * block)
        } else {
            d_kv.split_at_mut(kv_width * columns)
        };
        let qkv = &tape.qkv;
        d_queries
            .par_chunks_mut(block)
            .zip(d_keys.par_chunks_mut(block))
            .zip(d_values.par_chunks_mut(block))
            .enumerate()
            .for_each(|(head, ((d_q, d_k), d_v))| {
                let kv = self.config.kv_head(head) * head_dim;
                let q = &qkv[head * block..];
                let k = &qkv[(query_width + kv) * columns..];
                let v = &qkv[(query_width + kv_width + kv) * columns..];
                let d_c = &d_context[head * head_dim * out_columns..][..head_dim * out_columns];
                let map_len = queries * tokens;
                let maps = &tape.probs[head * shape.items * map_len..];
                let mut d_scores = vec![0f32; map_len];
                let mut capped = vec![0f32; if softcap.is_some() { map_len } else { 0 }];
                for item in 0..shape.items {
                    let first = item * tokens;
                    let (q_first, out_first) = (first + first_query, item * queries);
                    let map = &maps[item * map_len..][..map_len];
                    // dP = dCᵀ·V (C = V·Pᵀ per head, feature-major).
                    MatMul {
                        m: queries,
                        n: tokens,
                        k: head_dim,
                        lhs: Strided::transposed(&d_c[out_first..], out_columns),
                        rhs: Strided::row_major(&v[first..], columns),
                    }
                    .run(&mut d_scores, tokens, 1.0, false, false);
                    // dV = dC·P.
                    MatMul {
                        m: head_dim,
                        n: tokens,
                        k: queries,
                        lhs: Strided::row_major(&d_c[out_first..], out_columns),
                        rhs: Strided::row_major(map, tokens),
                    }
                    .run(&mut d_v[first..], columns, 1.0, false, false);
                    // Through the softmax: dS = P ⊙ (dP − Σ_j dP·P), row by row.
                    for (d_row, p_row) in d_scores
                        .chunks_exact_mut(tokens)
                        .zip(map.chunks_exact(tokens))
                    {
                        let dot: f32 = d_row.iter().zip(p_row).map(|(d, p)| d * p).sum();
                        d_row
                            .iter_mut()
                            .zip(p_row)
                            .for_each(|(d, &p)| *d = p * (*d - dot));
                    }
                    if let Some(cap) = softcap {
                        // Through c·tanh(s/c), recomputing the scores: d/ds = 1 − tanh²(s/c).
                        MatMul {
                            m: queries,
                            n: tokens,
                            k: head_dim,
                            lhs: Strided::transposed(&q[q_first..], columns),
                            rhs: Strided::row_major(&k[first..], columns),
                        }
                        .run(&mut capped, tokens, scale, false, false);
                        d_scores.iter_mut().zip(&capped).for_each(|(d, &s)| {
                            let t = (s / cap).tanh();
                            *d *= 1.0 - t * t;
                        });
                    }
                    // S = scale·Qᵀ·K: dQ = scale·K·dSᵀ, dK = scale·Q·dS.
                    MatMul {
                        m: head_dim,
                        n: queries,
                        k: tokens,
                        lhs: Strided::row_major(&k[first..], columns),
                        rhs: Strided::transposed(&d_scores, tokens),
                    }
                    .run(&mut d_q[q_first..], columns, scale, false, false);
                    MatMul {
                        m: head_dim,
                        n: tokens,
                        k: queries,
                        lhs: Strided::row_major(&q[q_first..], columns),
                        rhs: Strided::row_major(&d_scores, tokens),
                    }
                    .run(&mut d_k[first..], columns, scale, false, false);
                }
            });
        if grouped {
            // A key/value head's gradient is the sum of its query heads' shares.
            let (d_keys, d_values) = shares.split_at(heads * block);
            d_kv.par_chunks_mut(block)
                .enumerate()
                .for_each(|(slot, d_head)| {
                    let kv_heads = kv_width / head_dim;
                    let (shares, kv) = if slot < kv_heads {
                        (d_keys, slot)
                    } else {
                        (d_values, slot - kv_heads)
                    };
                    for (head, share) in shares.chunks_exact(block).enumerate() {
                        if self.config.kv_head(head) == kv {
                            d_head.iter_mut().zip(share).for_each(|(d, s)| *d += s);
                        }
                    }
                });
        }
        self.unproject_heads(index, tape, &mut d_qkv, shape);
        d_qkv
    }

    /// Takes the gradient with respect to the rotated, normalised queries and keys back to the
    /// projection's output: the rotary embedding's transpose (a turn by −θ), then each head
    /// norm's backward pass.
    fn unproject_heads(&self, index: usize, tape: &LayerTape, d_qkv: &mut [f32], shape: Shape) {
        let columns = shape.columns();
        let block = self.config.head_dim() * columns;
        let (d_queries, rest) = d_qkv.split_at_mut(self.config.query_width() * columns);
        let d_keys = &mut rest[..self.config.kv_width() * columns];
        if let Some(rotary) = self.config.architecture.rotary(index) {
            let (cos, sin) = rotary.tables(&item_positions(shape));
            let back: Vec<f32> = sin.iter().map(|s| -s).collect();
            d_queries
                .par_chunks_mut(block)
                .chain(d_keys.par_chunks_mut(block))
                .for_each(|head| rotate_columns(head, columns, &cos, &back));
        }
        let layer = &self.weights.layers[index];
        if let Some(tapes) = &tape.head_norms {
            for (grads, tapes, norm) in [
                (d_queries, &tapes.queries, &layer.query_norm),
                (d_keys, &tapes.keys, &layer.key_norm),
            ] {
                let (Some(tapes), Some(norm)) = (tapes, norm) else {
                    continue;
                };
                grads
                    .par_chunks_mut(block)
                    .zip(tapes.par_iter())
                    .for_each(|(grad, tape)| {
                        let back = norm.backward(tape, grad, columns);
                        grad.copy_from_slice(&back);
                    });
            }
        }
    }

    /// [`Backend::batch_logits`] on the CPU.
    ///
    /// [`Backend::batch_logits`]: super::super::Backend::batch_logits
    pub(super) fn batch_logits_cpu(&self, run: &BatchRun<'_>) -> Result<Vec<f32>> {
        Ok(self.run_batch(run, false, None)?.logits)
    }

    /// [`Backend::batch_gradients`] on the CPU.
    ///
    /// [`Backend::batch_gradients`]: super::super::Backend::batch_gradients
    pub(super) fn batch_gradients_cpu(&self, run: &BatchRun<'_>) -> Result<Gradients> {
        if run.head_patch.is_some() {
            return Err(ModelError::Compute(
                "gradients of patched runs are not computed".to_owned(),
            ));
        }
        self.run_batch(run, true, None)
    }

    /// [`Interventions::path_gradient`] on the CPU. Where the first layer reads the embedding
    /// output through its query, key and value product alone (post-LN families; ModernBERT,
    /// whose first attention norm is an identity), the product is linear along the path:
    /// its output at every point is interpolated from its outputs at the two ends, and the
    /// gradient that flows back through it is summed over the batch's points, weighted,
    /// before one product with its transpose. For bert-base that saves about 2% of
    /// integrated gradients' work; other families run each point whole.
    ///
    /// [`Interventions::path_gradient`]: crate::model::backend::Interventions::path_gradient
    pub(super) fn path_gradient_cpu(
        &self,
        path: &PathRun<'_>,
        step: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Vec<f32>> {
        let Some(first) = self.weights.layers.first().filter(|layer| {
            self.config.architecture.norm == NormPlacement::Post
                || layer.attention_norm.kind == NormKind::Identity
        }) else {
            return path_gradient_by_items(self, path, step);
        };
        let (hidden, tokens) = (self.config.hidden_size, path.tokens);
        let product = |rows: &[f32]| {
            let mut xt = vec![0f32; rows.len()];
            transpose_into(rows, tokens, hidden, &mut xt);
            first.qkv.forward_t(&xt, tokens, None)
        };
        let from_qkv = product(path.from);
        let delta_qkv: Vec<f32> = product(path.to)
            .iter()
            .zip(&from_qkv)
            .map(|(to, from)| to - from)
            .collect();
        let mut summed = vec![0f32; path.to.len()];
        for points in path.points.chunks(path.per_batch.max(1)) {
            let states = path.states(points);
            let run = BatchRun {
                tokens,
                start_layer: 0,
                states: &states,
                head_patch: None,
                logit: path.logit,
            };
            let fold = PathFold {
                points,
                from_qkv: &from_qkv,
                delta_qkv: &delta_qkv,
            };
            let gradients = self.run_batch(&run, true, Some(&fold))?;
            summed
                .iter_mut()
                .zip(&gradients.states)
                .for_each(|(sum, g)| *sum += g);
            step()?;
        }
        Ok(summed)
    }

    /// [`Backend::trace`] on the CPU, from the embedding output `xt` (feature-major).
    pub(super) fn trace_cpu(&self, mut xt: Vec<f32>, tokens: usize) -> Trace {
        let hidden = self.config.hidden_size;
        let width = self.config.query_width();
        let shape = Shape { items: 1, tokens };
        let layers = self.weights.layers.len();
        let mut states = Vec::with_capacity((layers + 1) * tokens * hidden);
        let mut attended = Vec::with_capacity(layers * tokens * hidden);
        let mut contexts = Vec::with_capacity(layers * tokens * width);
        let mut rows = vec![0f32; tokens * hidden];
        let mut context_rows = vec![0f32; tokens * width];
        for (index, layer) in self.weights.layers.iter().enumerate() {
            transpose_into(&xt, hidden, tokens, &mut rows);
            states.extend_from_slice(&rows);
            let step = self.batch_layer(index, layer, &xt, shape, Replaced::default(), false, None);
            transpose_into(&step.context, width, tokens, &mut context_rows);
            contexts.extend_from_slice(&context_rows);
            transpose_into(&step.attended, hidden, tokens, &mut rows);
            attended.extend_from_slice(&rows);
            xt = step.output;
        }
        transpose_into(&xt, hidden, tokens, &mut rows);
        states.extend_from_slice(&rows);
        Trace {
            states,
            attended,
            contexts,
        }
    }

    /// [`Backend::head_outputs`] on the CPU.
    ///
    /// [`Backend::head_outputs`]: super::super::Backend::head_outputs
    pub(super) fn head_outputs_cpu(
        &self,
        layer: usize,
        context: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let layer = self
            .weights
            .layers
            .get(layer)
            .ok_or_else(|| ModelError::Compute(format!("there is no layer {layer}")))?;
        let output = &layer.attention_output;
        let (hidden, heads) = (self.config.hidden_size, self.config.num_attention_heads);
        let head_dim = self.config.head_dim();
        if context.len() != output.inputs {
            return Err(ModelError::Compute(
                "a context row of the wrong width".to_owned(),
            ));
        }
        let mut parts = vec![0f32; heads * hidden];
        for (head, part) in parts.chunks_exact_mut(hidden).enumerate() {
            let slice = head * head_dim..(head + 1) * head_dim;
            for (out, row) in part
                .iter_mut()
                .zip(output.weight.chunks_exact(output.inputs))
            {
                *out = row[slice.clone()]
                    .iter()
                    .zip(&context[slice.clone()])
                    .map(|(w, c)| w * c)
                    .sum();
            }
        }
        let bias = output.bias.clone().unwrap_or_else(|| vec![0.0; hidden]);
        Ok((parts, bias))
    }

    /// [`Backend::readout`] on the CPU.
    ///
    /// [`Backend::readout`]: super::super::Backend::readout
    pub(super) fn readout_cpu(
        &self,
        head: usize,
        output: usize,
    ) -> Result<Option<crate::model::backend::Readout>> {
        let hidden = self.config.hidden_size;
        let head = self
            .weights
            .heads
            .get(head)
            .ok_or_else(|| ModelError::Compute(format!("the model has no head {head}")))?;
        let (ops, softcap) = match head.ops.split_last() {
            Some((HeadOp::SoftCap(cap), ops)) => (ops, Some(*cap)),
            _ => (head.ops.as_slice(), None),
        };
        let (direction, bias) = match ops {
            [HeadOp::TiedDecoder { bias }] => (
                self.weights.embeddings.word[output * hidden..][..hidden].to_vec(),
                bias.as_ref().map_or(0.0, |bias| bias[output]),
            ),
            [HeadOp::Linear(linear)] => (
                linear.weight[output * linear.inputs..][..linear.inputs].to_vec(),
                linear.bias.as_ref().map_or(0.0, |bias| bias[output]),
            ),
            _ => return Ok(None),
        };
        let norm = self.weights.final_norm.as_ref();
        Ok(Some(crate::model::backend::Readout {
            norm: norm.map(|norm| (norm.gamma.clone(), norm.beta.clone(), norm.eps)),
            centred: norm.is_none_or(|norm| norm.kind == NormKind::Layer),
            direction,
            bias,
            softcap,
        }))
    }
}
