//! The CPU backend: the order of operations a description gives, tuned for a desktop CPU.
//!
//! Activations are kept feature-major (`[features, tokens]`), so every dense layer is
//! `Yᵀ = W·Xᵀ + b` with the weight as checkpoints store it (`[out, in]`) and every operand
//! row-major: the layout in which the `gemm` crate's kernels run fastest for these shapes
//! (measured on bert-base at 128 tokens: ~215 GFLOP/s on two AVX-512 cores, against ~150 with
//! token-major rows). Each attention head is one task on the rayon pool, writing its
//! probabilities straight into the captured array; biases, residuals, activations and LayerNorm
//! are fused passes over the data.

mod batch;
mod decode;
pub mod isa;
pub(in crate::model::backend) mod kernels;

pub(crate) use kernels::zeroed_huge;

use rayon::prelude::{IndexedParallelIterator, ParallelIterator, ParallelSlice, ParallelSliceMut};

pub(crate) use kernels::sum_exp;

/// Times the dense-layer product `W·Xᵀ` (`[m, k]` by `[k, n]`, the kernel every CPU forward's
/// dense layers run) on random-ish values: the median of `iters` runs after one warm-up, in
/// milliseconds. For `bench --gemm`.
pub fn time_dense_product(m: usize, n: usize, k: usize, iters: usize) -> f64 {
    time_product(m, n, k, iters, |w, xt| dense(w, None, m, k, xt, n, None))
}

/// Times a vocabulary head's product, logits row-major `[n, m]` for a `[m, k]` matrix and `n`
/// columns (the kernel a next-token head runs), as [`time_dense_product`] does.
pub fn time_vocabulary_product(m: usize, n: usize, k: usize, iters: usize) -> f64 {
    time_product(m, n, k, iters, |w, xt| dense_rows(w, None, m, k, xt, n))
}

/// The median of `iters` runs of `product` on a `[m, k]` matrix and `[k, n]` columns of
/// random-ish values, after one warm-up, in milliseconds.
fn time_product(
    m: usize,
    n: usize,
    k: usize,
    iters: usize,
    product: impl Fn(&[f32], &[f32]) -> Vec<f32>,
) -> f64 {
    let w: Vec<f32> = (0..m * k)
        .map(|i| ((i % 97) as f32 - 48.0) * 1e-3)
        .collect();
    let xt: Vec<f32> = (0..k * n)
        .map(|i| ((i % 89) as f32 - 44.0) * 1e-3)
        .collect();
    let mut runs: Vec<f64> = (0..=iters.max(1))
        .map(|_| {
            let started = std::time::Instant::now();
            std::hint::black_box(product(&w, &xt));
            started.elapsed().as_secs_f64() * 1e3
        })
        .skip(1)
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}
use kernels::{
    activate, capture_buffer, dense, dense_rows, gate, layer_norm_columns, rms_norm_columns,
    scores_to_probs, soft_cap, transpose_into, MatMul, Strided,
};

use super::{
    Backend, BatchRun, Captured, EmbeddingRows, Extended, ForwardInput, Gradients, Incremental,
    Interventions, KvCache, PathRun, Readout, Trace,
};
use crate::model::captured::KeptFloats;
use crate::model::config::{ModelConfig, NormPlacement};
use crate::model::error::{ModelError, Result};
use crate::model::params::{HeadOp, LayerWeights, Linear, ModelWeights, Norm, NormKind};
use crate::model::{CapturedArray, F32Array};

/// A model on the CPU: its configuration and its weights as found by the description.
pub struct CpuBackend {
    config: ModelConfig,
    weights: ModelWeights,
    /// Per layer, each head's G_h = W_O^hᵀ·W_O^h (`[heads, head_dim, head_dim]`), made the
    /// first time value norms are asked for: ‖v·W_O^h‖² = vᵀ·G_h·v.
    output_grams: Vec<std::sync::OnceLock<Vec<f32>>>,
    /// Per layer, its four matrices transposed (`[inputs, outputs]`), made the first time a
    /// gradient is asked for: the backward pass's `Wᵀ·G` then reads its weight row-major, as
    /// the forward does (reading `W` transposed in place ran 1.5–2.7× slower).
    transposed: Vec<std::sync::OnceLock<batch::Transposed>>,
}

/// The last hidden states, feature-major `[hidden, tokens]`.
pub struct CpuLast {
    columns_t: Vec<f32>,
    tokens: usize,
}

impl Linear {
    /// `Yᵀ = W·Xᵀ + b (+ residual)` for feature-major `xt` (`[inputs, columns]`).
    fn forward_t(&self, xt: &[f32], columns: usize, residual: Option<&[f32]>) -> Vec<f32> {
        dense(
            &self.weight,
            self.bias.as_deref(),
            self.outputs,
            self.inputs,
            xt,
            columns,
            residual,
        )
    }
}

impl Norm {
    /// Normalises each column of feature-major `xt` in place, after adding `residual` when given.
    fn forward_t(&self, xt: &mut [f32], residual: Option<&[f32]>, columns: usize) {
        match self.kind {
            NormKind::Layer => {
                layer_norm_columns(xt, residual, &self.gamma, &self.beta, self.eps, columns);
            }
            NormKind::Rms => rms_norm_columns(xt, residual, &self.gamma, self.eps, columns),
            NormKind::Identity => {
                if let Some(residual) = residual {
                    xt.iter_mut().zip(residual).for_each(|(x, r)| *x += r);
                }
            }
        }
    }
}

impl CpuBackend {
    /// A backend for a model; the weights move in without copies.
    pub fn new(config: ModelConfig, weights: ModelWeights) -> Self {
        let output_grams = weights.layers.iter().map(|_| Default::default()).collect();
        let transposed = weights.layers.iter().map(|_| Default::default()).collect();
        Self {
            config,
            weights,
            output_grams,
            transposed,
        }
    }

    /// Each head's G_h = W_O^hᵀ·W_O^h for one layer, `[heads, head_dim, head_dim]`, summed in
    /// f64 so that the quadratic form loses nothing to the hidden-size sum.
    fn output_gram(&self, layer: &LayerWeights) -> Vec<f32> {
        let head_dim = self.config.head_dim();
        let heads = self.config.num_attention_heads;
        let output = &layer.attention_output;
        let mut grams = vec![0f32; heads * head_dim * head_dim];
        grams
            .par_chunks_mut(head_dim * head_dim)
            .enumerate()
            .for_each(|(head, gram)| {
                let mut sums = vec![0f64; head_dim * head_dim];
                for row in output.weight.chunks_exact(output.inputs) {
                    let part = &row[head * head_dim..][..head_dim];
                    for (a, &x) in part.iter().enumerate() {
                        let x = f64::from(x);
                        for (sum, &y) in sums[a * head_dim..][..head_dim].iter_mut().zip(part) {
                            *sum += x * f64::from(y);
                        }
                    }
                }
                for (out, sum) in gram.iter_mut().zip(sums) {
                    *out = sum as f32;
                }
            });
        grams
    }

    /// One layer on feature-major input, its self-attention computed by `attention` (the
    /// captured full square, or one step against a cache) from what the attention reads;
    /// returns the feature-major output.
    fn layer_forward(
        &self,
        layer: &LayerWeights,
        xt: &[f32],
        tokens: usize,
        attention: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> Vec<f32> {
        match self.config.architecture.norm {
            NormPlacement::Post => {
                let context = attention(xt);
                let mut attended = layer.attention_output.forward_t(&context, tokens, None);
                layer
                    .attention_norm
                    .forward_t(&mut attended, Some(xt), tokens);
                let inner = self.ffn_inner(layer, &attended, tokens);
                let mut output = layer.ffn_out.forward_t(&inner, tokens, None);
                layer
                    .ffn_norm
                    .forward_t(&mut output, Some(&attended), tokens);
                output
            }
            NormPlacement::Pre => {
                let mut normed = xt.to_vec();
                layer.attention_norm.forward_t(&mut normed, None, tokens);
                let context = attention(&normed);
                let attended = block_output(
                    &layer.attention_output,
                    layer.attention_post_norm.as_ref(),
                    &context,
                    xt,
                    tokens,
                );
                let mut normed = attended.clone();
                layer.ffn_norm.forward_t(&mut normed, None, tokens);
                let inner = self.ffn_inner(layer, &normed, tokens);
                block_output(
                    &layer.ffn_out,
                    layer.ffn_post_norm.as_ref(),
                    &inner,
                    &attended,
                    tokens,
                )
            }
        }
    }

    /// The feed-forward block's activated middle over feature-major `xt`: `act(W₁·x + b₁)`, or
    /// for a gated block `act(gate) · up`.
    fn ffn_inner(&self, layer: &LayerWeights, xt: &[f32], tokens: usize) -> Vec<f32> {
        let mut inner = layer.ffn_in.forward_t(xt, tokens, None);
        if self.config.architecture.gated_ffn {
            gate(&inner, self.config.hidden_act)
        } else {
            activate(&mut inner, self.config.hidden_act);
            inner
        }
    }

    /// Layer `index`'s queries, keys and values of feature-major `xt` at `positions`,
    /// feature-major `[heads·head_dim + 2·kv_heads·head_dim, tokens]`: projected, each head's
    /// query and key normalised where the family does (Qwen3), then turned by the rotary
    /// embedding where the family has one.
    fn project_heads(
        &self,
        index: usize,
        layer: &LayerWeights,
        xt: &[f32],
        positions: &[u32],
    ) -> Vec<f32> {
        self.project_heads_taped(index, layer, xt, positions, false, None)
            .0
    }

    /// Multi-head self-attention of a layer over feature-major `xt` at `positions`; returns the
    /// heads' context vectors, feature-major `[heads·head_dim, tokens]`.
    /// Long because the scores, the mask, the softmax, ablation and the value norms are computed in
    /// one pass over a head's blocks for speed.
    fn attention(
        &self,
        index: usize,
        layer: &LayerWeights,
        xt: &[f32],
        positions: &[u32],
        capture: LayerCapture<'_>,
    ) -> Vec<f32> {
        let tokens = positions.len();
        let head_dim = self.config.head_dim();
        let scale = self.config.architecture.attention_scales[index];
        let causal = self.config.architecture.causal;
        let window = self.config.architecture.window(index);
        let softcap = self.config.architecture.attention_softcap;
        let query_width = self.config.query_width();
        let kv_width = self.config.kv_width();

        // Rows of queries, then keys, then values.
        let qkv = self.project_heads(index, layer, xt, positions);
        let key_of = |head: usize| (query_width + self.config.kv_head(head) * head_dim) * tokens;
        let value_of = |head: usize| key_of(head) + kv_width * tokens;
        let mut context_t = vec![0f32; query_width * tokens];
        let head_block = head_dim * tokens;
        capture
            .attention
            .par_chunks_mut(tokens * tokens)
            .zip(context_t.par_chunks_mut(head_block))
            .zip(capture.queries.par_chunks_mut(head_block))
            .zip(capture.keys.par_chunks_mut(head_block))
            .enumerate()
            .for_each(|(head, (((probs, context), query_out), key_out))| {
                let q = &qkv[head * head_block..][..head_block];
                let k = &qkv[key_of(head)..][..head_block];
                let v = &qkv[value_of(head)..][..head_block];
                // The values token-major (`[tokens, head_dim]`), so that the context product
                // reads each block of probabilities where it lies: multiplying by the block
                // transposed made the gemm crate pack every block (5% of SmolLM2's forward at
                // 512 tokens).
                let mut v_rows = vec![0f32; head_block];
                transpose_into(v, head_dim, tokens, &mut v_rows);
                let mut block_context = vec![0f32; QUERY_BLOCK.min(tokens) * head_dim];
                // A block of query rows at a time, so that its scores stay in cache from the
                // product through the softmax to the context: one pass over the captured map
                // instead of three.
                for first in (0..tokens).step_by(QUERY_BLOCK) {
                    let rows = QUERY_BLOCK.min(tokens - first);
                    let block = &mut probs[first * tokens..(first + rows) * tokens];
                    // Only the keys some row of the block sees: a causal block stops at its last
                    // query, a windowed one spans its windows. The rest of the captured block
                    // is set to 0 here, as the softmax would leave it (the capture is not
                    // cleared beforehand: at 512 tokens of SmolLM2 that was 283 MB of `memset`
                    // per forward, half of it then overwritten).
                    let seen = window.keys_seen(causal, first, tokens).start
                        ..window.keys_seen(causal, first + rows - 1, tokens).end;
                    if seen.start > 0 || seen.end < tokens {
                        for row in block.chunks_exact_mut(tokens) {
                            row[..seen.start].fill(0.0);
                            row[seen.end..].fill(0.0);
                        }
                    }
                    // scores = (q·kᵀ)·scale, with q and k stored [head_dim, tokens].
                    MatMul {
                        m: rows,
                        n: seen.len(),
                        k: head_dim,
                        lhs: Strided::transposed(&q[first..], tokens),
                        rhs: Strided::row_major(&k[seen.start..], tokens),
                    }
                    .run(&mut block[seen.start..], tokens, scale, false, false);
                    if capture.ablated[head] {
                        block.fill(0.0);
                        continue;
                    }
                    scores_to_probs(block, tokens, first, (causal, window), softcap);
                    // The block's context rows = block·v over the keys seen, `[rows, head_dim]`,
                    // then written into contextᵀ's columns `first..first + rows`.
                    let block_context = &mut block_context[..rows * head_dim];
                    MatMul {
                        m: rows,
                        n: head_dim,
                        k: seen.len(),
                        lhs: Strided::row_major(&block[seen.start..], tokens),
                        rhs: Strided::row_major(&v_rows[seen.start * head_dim..], head_dim),
                    }
                    .run(block_context, head_dim, 1.0, false, false);
                    for (row, values) in block_context.chunks_exact(head_dim).enumerate() {
                        for (feature, &value) in values.iter().enumerate() {
                            context[feature * tokens + first + row] = value;
                        }
                    }
                }
                transpose_into(q, head_dim, tokens, query_out);
                transpose_into(k, head_dim, tokens, key_out);
            });
        if let Some(norms) = capture.value_norms {
            let grams = self.output_grams[index].get_or_init(|| self.output_gram(layer));
            norms
                .par_chunks_mut(tokens)
                .zip(grams.par_chunks(head_dim * head_dim))
                .enumerate()
                .for_each(|(head, (norms, gram))| {
                    let v = &qkv[value_of(head)..][..head_block];
                    // ‖W_O^h·v‖² = vᵀ·G_h·v: [head_dim, tokens] through a head_dim² matrix
                    // instead of a [hidden, tokens] product.
                    let mut gv = vec![0f32; head_block];
                    MatMul {
                        m: head_dim,
                        n: tokens,
                        k: head_dim,
                        lhs: Strided::row_major(gram, head_dim),
                        rhs: Strided::row_major(v, tokens),
                    }
                    .run(&mut gv, tokens, 1.0, false, false);
                    norms.fill(0.0);
                    for (v_row, gv_row) in v.chunks_exact(tokens).zip(gv.chunks_exact(tokens)) {
                        for ((norm, &a), &b) in norms.iter_mut().zip(v_row).zip(gv_row) {
                            *norm += a * b;
                        }
                    }
                    norms
                        .iter_mut()
                        .for_each(|norm| *norm = norm.max(0.0).sqrt());
                });
        }
        context_t
    }
}

/// A pre-norm block's output added to its residual stream `residual`: `W·x + b`, normalised
/// first where the family does (Gemma 3's post-norms).
fn block_output(
    output: &Linear,
    post_norm: Option<&Norm>,
    xt: &[f32],
    residual: &[f32],
    tokens: usize,
) -> Vec<f32> {
    match post_norm {
        None => output.forward_t(xt, tokens, Some(residual)),
        Some(norm) => {
            let mut out = output.forward_t(xt, tokens, None);
            norm.forward_t(&mut out, None, tokens);
            out.iter_mut().zip(residual).for_each(|(x, r)| *x += r);
            out
        }
    }
}

/// Query rows whose scores are computed, normalised and applied together: 64 rows of 512 keys
/// are 128 KiB, which stay in a core's L2 cache beside that head's keys and values.
const QUERY_BLOCK: usize = 64;

/// One layer's slices of the captured arrays, and which of its heads are ablated.
struct LayerCapture<'a> {
    attention: &'a mut [f32],
    queries: &'a mut [f32],
    keys: &'a mut [f32],
    value_norms: Option<&'a mut [f32]>,
    ablated: Vec<bool>,
}

impl Backend for CpuBackend {
    type Last = CpuLast;

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// [`Backend::forward`] on the CPU kernels.
    /// Long because it is the transformer layer loop in order (embeddings, attention, residuals,
    /// norms, MLP), captured as it goes; each step is a kernel call.
    fn forward(&self, input: &ForwardInput<'_>) -> Result<(Captured, CpuLast)> {
        let config = &self.config;
        let tokens = input.ids.len();
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        let head_dim = config.head_dim();
        let layers = self.weights.layers.len();

        // Every element of these is written below (the keys a query does not see, of causal or
        // windowed attention, as zeros by `attention`), so none is cleared first.
        let mut hidden_states = capture_buffer((layers + 1) * tokens * hidden, false);
        let mut attentions = capture_buffer(layers * heads * tokens * tokens, false);
        let mut queries = capture_buffer(layers * heads * tokens * head_dim, false);
        let mut keys = capture_buffer(layers * heads * tokens * head_dim, false);
        let mut value_norms = input
            .value_norms
            .then(|| vec![0f32; layers * heads * tokens]);

        let mut xt = self.embed_t(input);
        transpose_into(&xt, hidden, tokens, &mut hidden_states[..tokens * hidden]);

        let per_layer_attention = heads * tokens * tokens;
        let per_layer_vectors = heads * tokens * head_dim;
        for (index, layer) in self.weights.layers.iter().enumerate() {
            let capture = LayerCapture {
                attention: &mut attentions[index * per_layer_attention..][..per_layer_attention],
                queries: &mut queries[index * per_layer_vectors..][..per_layer_vectors],
                keys: &mut keys[index * per_layer_vectors..][..per_layer_vectors],
                value_norms: value_norms
                    .as_mut()
                    .map(|norms| &mut norms[index * heads * tokens..][..heads * tokens]),
                ablated: (0..heads)
                    .map(|head| input.is_ablated(index, head))
                    .collect(),
            };
            xt = self.layer_forward(layer, &xt, tokens, |x| {
                self.attention(index, layer, x, input.positions, capture)
            });
            if index + 1 == layers {
                if let Some(norm) = &self.weights.final_norm {
                    norm.forward_t(&mut xt, None, tokens);
                }
            }
            transpose_into(
                &xt,
                hidden,
                tokens,
                &mut hidden_states[(index + 1) * tokens * hidden..][..tokens * hidden],
            );
        }

        let array = |shape: Vec<usize>, values| {
            F32Array::new(shape, values)
                .map(CapturedArray::host)
                .ok_or_else(|| ModelError::Compute("captured array has the wrong size".to_owned()))
        };
        let captured = Captured {
            hidden_states: array(vec![layers + 1, tokens, hidden], hidden_states)?,
            attentions: array(vec![layers, heads, tokens, tokens], attentions)?,
            queries: array(vec![layers, heads, tokens, head_dim], queries)?,
            keys: array(vec![layers, heads, tokens, head_dim], keys)?,
            value_norms: value_norms
                .map(|norms| array(vec![layers, heads, tokens], norms))
                .transpose()?,
        };
        Ok((
            captured,
            CpuLast {
                columns_t: xt,
                tokens,
            },
        ))
    }

    fn head_logits(&self, last: &CpuLast, head: usize, rows: &[usize]) -> Result<KeptFloats> {
        // The chosen tokens' columns, feature-major [hidden, rows].
        let xt: Vec<f32> = last
            .columns_t
            .chunks_exact(last.tokens)
            .flat_map(|row| rows.iter().map(move |&r| row[r]))
            .collect();
        self.head_logits_t(xt, rows.len(), head)
    }

    fn head_logits_of_rows(
        &self,
        rows: &[f32],
        head: usize,
        final_norm: &[bool],
    ) -> Result<KeptFloats> {
        let hidden = self.config.hidden_size;
        let count = rows.len() / hidden.max(1);
        let mut rows = rows.to_vec();
        if let Some(norm) = &self.weights.final_norm {
            for (row, _) in rows
                .chunks_exact_mut(hidden)
                .zip(final_norm)
                .filter(|(_, &normed)| normed)
            {
                // One row is also one feature-major column.
                norm.forward_t(row, None, 1);
            }
        }
        let mut xt = vec![0f32; rows.len()];
        transpose_into(&rows, count, hidden, &mut xt);
        self.head_logits_t(xt, count, head)
    }

    fn embedding_rows(&self, input: &ForwardInput<'_>) -> Result<EmbeddingRows> {
        let hidden = self.config.hidden_size;
        let embeddings = &self.weights.embeddings;
        let gather = |table: &[f32], ids: &[u32]| -> Vec<f32> {
            ids.iter()
                .flat_map(|&id| &table[id as usize * hidden..][..hidden])
                .copied()
                .collect()
        };
        let mut word = gather(&embeddings.word, input.ids);
        if let Some(scale) = self.config.architecture.embedding_scale {
            word.iter_mut().for_each(|w| *w *= scale);
        }
        Ok(EmbeddingRows {
            word,
            position: embeddings
                .position
                .as_deref()
                .map(|table| gather(table, input.positions)),
            segment: match (&embeddings.segment, input.segments) {
                (Some(table), Some(segments)) => Some(gather(table, segments)),
                _ => None,
            },
        })
    }
}
impl CpuBackend {
    /// The embedding output, feature-major `[hidden, tokens]`: column t is word (+ segment) +
    /// position, summed in transformers' order, then normalised where the family does.
    fn embed_t(&self, input: &ForwardInput<'_>) -> Vec<f32> {
        let hidden = self.config.hidden_size;
        let tokens = input.ids.len();
        let scale = self.config.architecture.embedding_scale;
        let embeddings = &self.weights.embeddings;
        let mut xt = vec![0f32; hidden * tokens];
        for t in 0..tokens {
            let word = &embeddings.word[input.ids[t] as usize * hidden..][..hidden];
            let position = embeddings
                .position
                .as_deref()
                .map(|table| &table[input.positions[t] as usize * hidden..][..hidden]);
            let segment = match (&embeddings.segment, input.segments) {
                (Some(table), Some(segments)) => {
                    Some(&table[segments[t] as usize * hidden..][..hidden])
                }
                _ => None,
            };
            for f in 0..hidden {
                let word = match scale {
                    Some(scale) => word[f] * scale,
                    None => word[f],
                };
                let summed = match segment {
                    Some(segment) => word + segment[f],
                    None => word,
                };
                xt[f * tokens + t] = match position {
                    Some(position) => summed + position[f],
                    None => summed,
                };
            }
        }
        if let Some(norm) = &embeddings.norm {
            norm.forward_t(&mut xt, None, tokens);
        }
        xt
    }

    /// One step of a head on feature-major columns `xt` (`[width, count]`).
    fn head_op(&self, op: &HeadOp, mut xt: Vec<f32>, count: usize) -> Vec<f32> {
        match op {
            HeadOp::Linear(linear) => linear.forward_t(&xt, count, None),
            HeadOp::TiedDecoder { bias } => dense(
                &self.weights.embeddings.word,
                bias.as_deref(),
                self.config.vocab_size,
                self.config.hidden_size,
                &xt,
                count,
                None,
            ),
            HeadOp::Activation(activation) => {
                activate(&mut xt, *activation);
                xt
            }
            HeadOp::Norm(norm) => {
                norm.forward_t(&mut xt, None, count);
                xt
            }
            HeadOp::SoftCap(cap) => {
                soft_cap(&mut xt, *cap);
                xt
            }
            HeadOp::MeanPool => xt
                .chunks_exact(count)
                .map(|row| row.iter().sum::<f32>() / count as f32)
                .collect(),
        }
    }

    /// Runs head number `head` on feature-major columns `xt` (`[hidden, count]`); returns the
    /// logits row-major, `[count, outputs]`.
    fn head_logits_t(&self, mut xt: Vec<f32>, mut count: usize, head: usize) -> Result<KeptFloats> {
        let head = self
            .weights
            .heads
            .get(head)
            .ok_or_else(|| ModelError::Compute(format!("the model has no head {head}")))?;
        if count == 0 {
            return Ok(KeptFloats::default());
        }
        // Soft-capping after the last product works on row-major logits as well.
        let caps = head
            .ops
            .iter()
            .rev()
            .take_while(|op| matches!(op, HeadOp::SoftCap(_)))
            .count();
        let (ops, caps) = head.ops.split_at(head.ops.len() - caps);
        let Some((last, before)) = ops.split_last() else {
            return Err(ModelError::Compute("the head has no operations".to_owned()));
        };
        for op in before {
            xt = self.head_op(op, xt, count);
            if matches!(op, HeadOp::MeanPool) {
                count = 1;
            }
        }
        // The last product writes the logits row-major at once: for a vocabulary head they are
        // the largest array of the run, and transposing them cost as much as a tenth of it.
        let hidden = xt.len() / count;
        let mut logits = match last {
            HeadOp::Linear(linear) => dense_rows(
                &linear.weight,
                linear.bias.as_deref(),
                linear.outputs,
                linear.inputs,
                &xt,
                count,
            ),
            HeadOp::TiedDecoder { bias } => dense_rows(
                &self.weights.embeddings.word,
                bias.as_deref(),
                self.config.vocab_size,
                hidden,
                &xt,
                count,
            ),
            op => {
                let xt = self.head_op(op, xt, count);
                let count = if matches!(op, HeadOp::MeanPool) {
                    1
                } else {
                    count
                };
                let outputs = xt.len() / count;
                let mut logits = vec![0f32; xt.len()];
                transpose_into(&xt, outputs, count, &mut logits);
                logits
            }
        };
        for cap in caps {
            if let HeadOp::SoftCap(cap) = cap {
                soft_cap(&mut logits, *cap);
            }
        }
        Ok(KeptFloats::new(logits))
    }
}

impl Interventions for CpuBackend {
    fn embedding_output(&self, input: &ForwardInput<'_>) -> Result<Vec<f32>> {
        let xt = self.embed_t(input);
        let mut rows = vec![0f32; xt.len()];
        transpose_into(&xt, self.config.hidden_size, input.ids.len(), &mut rows);
        Ok(rows)
    }

    fn batch_logits(&self, run: &BatchRun<'_>) -> Result<Vec<f32>> {
        self.batch_logits_cpu(run)
    }

    fn batch_gradients(&self, run: &BatchRun<'_>) -> Result<Gradients> {
        self.batch_gradients_cpu(run)
    }

    fn path_gradient(
        &self,
        path: &PathRun<'_>,
        step: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Vec<f32>> {
        self.path_gradient_cpu(path, step)
    }

    fn trace(&self, input: &ForwardInput<'_>) -> Result<Trace> {
        Ok(self.trace_cpu(self.embed_t(input), input.ids.len()))
    }

    fn head_outputs(&self, layer: usize, context: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        self.head_outputs_cpu(layer, context)
    }

    fn readout(&self, head: usize, output: usize) -> Result<Option<Readout>> {
        self.readout_cpu(head, output)
    }
}

impl Incremental for CpuBackend {
    fn extend(&self, cache: &mut KvCache, input: &ForwardInput<'_>) -> Result<Extended> {
        self.extend_cpu(cache, input)
    }
}
