//! Incremental runs against a key/value cache: the CPU side of [`Incremental::extend`], which
//! generation calls once for the prompt and then once per new token.
//!
//! The layer is the forward's own ([`CpuBackend::layer_forward`]); only the attention differs:
//! the new tokens' queries meet every cached key, in the same `gemm` products as the forward.
//!
//! [`Incremental::extend`]: super::super::Incremental::extend

use rayon::prelude::{IndexedParallelIterator, ParallelIterator, ParallelSliceMut};

use super::kernels::{scores_to_probs, MatMul, Strided};
use super::CpuBackend;
use crate::model::backend::{Extended, ForwardInput, KvCache, LayerKv};
use crate::model::error::{ModelError, Result};
use crate::model::params::LayerWeights;

/// One layer's cached keys and values, token-major `[tokens, kv_heads·head_dim]`, and where its new
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
                self.cached_attention(index, layer, x, input.positions, cached)
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

    /// Self-attention of the tokens at `positions` (feature-major `xt`) after the cached ones:
    /// appends their keys and values to the cache and returns their context vectors,
    /// feature-major `[heads·head_dim, new]`.
    fn cached_attention(
        &self,
        index: usize,
        layer: &LayerWeights,
        xt: &[f32],
        positions: &[u32],
        cached: CachedLayer<'_>,
    ) -> Vec<f32> {
        let new = positions.len();
        let head_dim = self.config.head_dim();
        let scale = self.config.architecture.attention_scales[index];
        let causal = self.config.architecture.causal;
        let window = self.config.architecture.window(index);
        let softcap = self.config.architecture.attention_softcap;
        let query_width = self.config.query_width();
        let kv_width = self.config.kv_width();
        let CachedLayer {
            keys,
            values,
            last_rows,
            ablated,
        } = cached;

        // Rows of queries, then keys, then values.
        let qkv = self.project_heads(index, layer, xt, positions);
        let past = keys.len() / kv_width;
        let total = past + new;
        for t in 0..new {
            keys.extend((0..kv_width).map(|f| qkv[(query_width + f) * new + t]));
            values.extend((0..kv_width).map(|f| qkv[(query_width + kv_width + f) * new + t]));
        }
        let (keys, values) = (&*keys, &*values);
        let mut context_t = vec![0f32; query_width * new];
        context_t
            .par_chunks_mut(head_dim * new)
            .zip(last_rows.par_chunks_mut(total))
            .enumerate()
            .for_each(|(head, (context, last_row))| {
                let kv_column = self.config.kv_head(head) * head_dim;
                let mut probs = vec![0f32; new * total];
                // scores = (q·kᵀ)·scale: queries [head_dim, new] feature-major, keys token-major.
                MatMul {
                    m: new,
                    n: total,
                    k: head_dim,
                    lhs: Strided::transposed(&qkv[head * head_dim * new..], new),
                    rhs: Strided::transposed(&keys[kv_column..], kv_width),
                }
                .run(&mut probs, total, scale, false, false);
                if ablated[head] {
                    last_row.fill(0.0);
                    return;
                }
                scores_to_probs(&mut probs, total, past, (causal, window), softcap);
                // contextᵀ = vᵀ·probsᵀ: [head_dim, new] of [head_dim, total].
                MatMul {
                    m: head_dim,
                    n: new,
                    k: total,
                    lhs: Strided::transposed(&values[kv_column..], kv_width),
                    rhs: Strided::transposed(&probs, total),
                }
                .run(context, new, 1.0, false, false);
                last_row.copy_from_slice(&probs[(new - 1) * total..]);
            });
        context_t
    }
}
