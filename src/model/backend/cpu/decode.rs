//! Incremental runs against a key/value cache: the CPU side of [`Incremental::extend`], which
//! generation calls once for the prompt and then once per new token.
//!
//! The layer is the forward's own ([`CpuBackend::layer_forward`]); only the attention differs:
//! the new tokens' queries meet every cached key, in the same `gemm` products as the forward.
//!
//! [`Incremental::extend`]: super::super::Incremental::extend

use rayon::prelude::{IndexedParallelIterator, ParallelIterator, ParallelSliceMut};

use super::kernels::{softmax_rows, softmax_rows_causal, MatMul, Strided};
use super::CpuBackend;
use crate::model::backend::{Extended, ForwardInput, KvCache, LayerKv};
use crate::model::error::{ModelError, Result};
use crate::model::params::LayerWeights;

/// One layer's cached keys and values, token-major `[tokens, hidden]`, and where its new
/// tokens' attention rows go.
struct CachedLayer<'a> {
    keys: &'a mut Vec<f32>,
    values: &'a mut Vec<f32>,
    /// `[heads, keys]`: the last new token's row of each head.
    last_rows: &'a mut [f32],
    ablated: Vec<bool>,
}

impl CpuBackend {
    /// [`super::super::Incremental::extend`] on the CPU kernels.
    pub(super) fn extend_cpu(
        &self,
        cache: &mut KvCache,
        input: &ForwardInput<'_>,
    ) -> Result<Extended> {
        let new = input.ids.len();
        if new == 0 {
            return Err(ModelError::BadInput("no tokens to run".to_owned()));
        }
        let heads = self.config.num_attention_heads;
        let layers = self.weights.layers.len();
        let total = cache.tokens + new;
        if cache.layers.is_empty() {
            cache.layers = (0..layers)
                .map(|_| LayerKv::Host {
                    keys: Vec::new(),
                    values: Vec::new(),
                })
                .collect();
        }
        // Checked before any layer appends, so that a refused cache is left as it was.
        if cache
            .layers
            .iter()
            .any(|kv| !matches!(kv, LayerKv::Host { .. }))
        {
            return Err(ModelError::Compute(
                "the key/value cache belongs to another backend".to_owned(),
            ));
        }
        let mut attention = vec![0f32; layers * heads * total];
        let mut xt = self.embed_t(input);
        for ((index, layer), (kv, last_rows)) in self.weights.layers.iter().enumerate().zip(
            cache
                .layers
                .iter_mut()
                .zip(attention.chunks_mut(heads * total)),
        ) {
            let LayerKv::Host { keys, values } = kv else {
                unreachable!("checked above");
            };
            let cached = CachedLayer {
                keys,
                values,
                last_rows,
                ablated: (0..heads)
                    .map(|head| input.is_ablated(index, head))
                    .collect(),
            };
            xt = self.layer_forward(layer, &xt, new, |x| {
                self.cached_attention(index, layer, x, new, cached)
            });
        }
        if let Some(norm) = &self.weights.final_norm {
            norm.forward_t(&mut xt, None, new);
        }
        cache.tokens = total;
        let last_state = xt.chunks_exact(new).map(|row| row[new - 1]).collect();
        Ok(Extended {
            last_state,
            attention,
        })
    }

    /// Self-attention of `new` tokens (feature-major `xt`) after the cached ones: appends their
    /// keys and values to the cache and returns their context vectors, feature-major
    /// `[hidden, new]`.
    fn cached_attention(
        &self,
        index: usize,
        layer: &LayerWeights,
        xt: &[f32],
        new: usize,
        cached: CachedLayer<'_>,
    ) -> Vec<f32> {
        let hidden = self.config.hidden_size;
        let head_dim = self.config.head_dim();
        let scale = self.config.architecture.attention_scales[index];
        let causal = self.config.architecture.causal;
        let CachedLayer {
            keys,
            values,
            last_rows,
            ablated,
        } = cached;

        // [3·hidden, new]: rows of queries, then keys, then values.
        let qkv = layer.qkv.forward_t(xt, new, None);
        let past = keys.len() / hidden;
        let total = past + new;
        for t in 0..new {
            keys.extend((0..hidden).map(|f| qkv[(hidden + f) * new + t]));
            values.extend((0..hidden).map(|f| qkv[(2 * hidden + f) * new + t]));
        }
        let (keys, values) = (&*keys, &*values);
        let mut context_t = vec![0f32; hidden * new];
        context_t
            .par_chunks_mut(head_dim * new)
            .zip(last_rows.par_chunks_mut(total))
            .enumerate()
            .for_each(|(head, (context, last_row))| {
                let mut probs = vec![0f32; new * total];
                // scores = (q·kᵀ)·scale: queries [head_dim, new] feature-major, keys token-major.
                MatMul {
                    m: new,
                    n: total,
                    k: head_dim,
                    lhs: Strided::transposed(&qkv[head * head_dim * new..], new),
                    rhs: Strided::transposed(&keys[head * head_dim..], hidden),
                }
                .run(&mut probs, total, scale, false, false);
                if ablated[head] {
                    last_row.fill(0.0);
                    return;
                }
                if causal {
                    softmax_rows_causal(&mut probs, total, past);
                } else {
                    softmax_rows(&mut probs, total);
                }
                // contextᵀ = vᵀ·probsᵀ: [head_dim, new] of [head_dim, total].
                MatMul {
                    m: head_dim,
                    n: new,
                    k: total,
                    lhs: Strided::transposed(&values[head * head_dim..], hidden),
                    rhs: Strided::transposed(&probs, total),
                }
                .run(context, new, 1.0, false, false);
                last_row.copy_from_slice(&probs[(new - 1) * total..]);
            });
        context_t
    }
}
