//! Incremental runs against a key/value cache in candle's ops: the GPU side of
//! [`Incremental::extend`]. The cache stays on the device, `[heads, tokens, head_dim]` per
//! layer, and grows by concatenation.
//!
//! [`Incremental::extend`]: super::super::Incremental::extend

use candle_core::{DType, IndexOp, Tensor};

use super::{CandleBackend, Layer};
use crate::model::backend::{Extended, ForwardInput, KvCache, LayerKv};
use crate::model::error::{ModelError, Result};

impl CandleBackend {
    /// [`super::super::Incremental::extend`] in candle's ops.
    pub(super) fn extend_candle(
        &self,
        cache: &mut KvCache,
        input: &ForwardInput<'_>,
    ) -> Result<Extended> {
        let new = input.ids.len();
        if new == 0 {
            return Err(ModelError::BadInput("no tokens to run".to_owned()));
        }
        let past = cache.tokens;
        let mut updated = Vec::with_capacity(self.layers.len());
        let mut rows = Vec::with_capacity(self.layers.len());
        let mut hidden = self.embed(input)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let cached = match cache.layers.get(index) {
                Some(LayerKv::Device { keys, values }) => Some((keys, values)),
                Some(LayerKv::Host { .. }) => {
                    return Err(ModelError::Compute(
                        "the key/value cache belongs to another backend".to_owned(),
                    ))
                }
                None => None,
            };
            let (output, (kv, last_rows)) = self.layer_forward(layer, &hidden, |x| {
                self.cached_attention(index, layer, x, past, cached, input)
            })?;
            hidden = output;
            updated.push(kv);
            rows.push(last_rows);
        }
        if let Some(norm) = &self.final_norm {
            hidden = norm.forward(&hidden)?;
        }
        cache.layers = updated;
        cache.tokens = past + new;
        let last_state = hidden.i(new - 1)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let attention = Tensor::stack(&rows, 0)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Extended {
            last_state,
            attention,
        })
    }

    /// Self-attention of the tokens `x` (`[new, hidden]`) after `past` cached ones: their
    /// context vectors `[new, heads·head_dim]`, the layer's keys and values with theirs appended
    /// (`[kv_heads, tokens, head_dim]`), and the last new token's row of each head,
    /// `[heads, keys]`.
    fn cached_attention(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        past: usize,
        cached: Option<(&Tensor, &Tensor)>,
        input: &ForwardInput<'_>,
    ) -> Result<(Tensor, (LayerKv, Tensor))> {
        let new = input.ids.len();
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.head_dim();
        let (queries, new_keys, new_values) =
            self.project_heads(index, layer, x, input.positions, false)?;
        let (keys, values) = match cached {
            Some((keys, values)) => (
                Tensor::cat(&[keys, &new_keys], 1)?,
                Tensor::cat(&[values, &new_values], 1)?,
            ),
            None => (new_keys, new_values),
        };
        let scale = f64::from(self.config.architecture.attention_scales[index]);
        let scores = self
            .capped((queries.matmul(&self.per_query_head(&keys)?.t()?.contiguous()?)? * scale)?)?;
        let hidden_keys = self.hidden_keys(index, past, new)?;
        let probs = self.attention_probs(index, scores, hidden_keys.as_ref(), input)?;
        let context = probs
            .matmul(&self.per_query_head(&values)?)?
            .transpose(0, 1)?
            .reshape((new, heads * head_dim))?;
        let last_rows = probs.i((.., new - 1, ..))?.contiguous()?;
        Ok((context, (LayerKv::Device { keys, values }, last_rows)))
    }
}
