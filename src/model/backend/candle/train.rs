//! Training runs in candle's ops: a batch of padded sequences through the embeddings, every
//! layer and a classification head, with dropout where the family drops out, for candle's
//! autograd to differentiate with respect to the weights of a [`CandleBackend::trainable`]
//! backend. The layers are the batched runs' (`batch_layer`), so a trained model computes what
//! attribution differentiates.

use std::cell::RefCell;

use candle_core::{DType, Tensor};
use rand::rngs::{SmallRng, StdRng};
use rand::{Rng, RngCore, SeedableRng};
use rayon::prelude::{IndexedParallelIterator, ParallelIterator, ParallelSliceMut};

use super::{CandleBackend, Op};
use crate::model::error::{ModelError, Result};

/// A batch of sequences padded to one length, item after item.
#[derive(Debug, Clone, Copy)]
pub struct TrainBatch<'a> {
    /// Vocabulary ids, `[items, tokens]`.
    pub ids: &'a [u32],
    /// Rows of the position table, `[items, tokens]`.
    pub positions: &'a [u32],
    /// Rows of the segment table, `[items, tokens]`, for families that have one.
    pub segments: Option<&'a [u32]>,
    /// 1 for a token of the text, 0 for padding, `[items, tokens]`.
    pub real: &'a [u8],
    /// The row of each item its classification head reads.
    pub rows: &'a [u32],
    /// Tokens per item.
    pub tokens: usize,
}

/// Dropout probabilities of a training run, where the family drops out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DropoutRates {
    /// The embedding output.
    pub embedding: f32,
    /// The attention probabilities.
    pub attention: f32,
    /// The attention block's projected output.
    pub attention_output: f32,
    /// The feed-forward block's output.
    pub ffn_output: f32,
    /// Before head operation `i`.
    pub head: Vec<(usize, f32)>,
}

/// Dropout while training: its rates and the seeded generator that draws its masks, so that a
/// run repeats.
pub struct Dropouts {
    /// The probabilities.
    pub rates: DropoutRates,
    /// Draws the masks.
    pub rng: RefCell<StdRng>,
}

/// What a training run adds to a batched layer: the padding mask and dropout.
pub(super) struct Training<'a> {
    /// `[items, 1, 1, tokens]`, 1 where a key is padding; `None` without padding.
    pub(super) padding: Option<Tensor>,
    /// The same on the host, `[items, tokens]`, for the fused attention softmax.
    pub(super) padding_keys: Option<Vec<u8>>,
    pub(super) rates: &'a DropoutRates,
    /// `None` when evaluating, which drops nothing.
    rng: Option<&'a RefCell<StdRng>>,
}

/// Mask elements each parallel task draws, from its own generator.
const MASK_CHUNK: usize = 1 << 16;

impl Training<'_> {
    /// A dropout mask over `count` elements (1 = kept, each dropped with probability `rate`)
    /// and the scale of what it keeps, `1 / (1 − rate)`; `None` when nothing drops. The run's
    /// generator gives one seed per mask; chunks of the mask are drawn in parallel from fast
    /// generators seeded from it and their index, so that a run repeats on any thread count.
    pub(super) fn dropout_mask(&self, count: usize, rate: f32) -> Option<(Vec<u8>, f32)> {
        let rng = self.rng.filter(|_| rate > 0.0)?;
        if rate >= 1.0 {
            return Some((vec![0; count], 0.0));
        }
        let seed: u64 = rng.borrow_mut().random();
        // Dropped when a uniform 32-bit draw is below rate·2³².
        let threshold = (f64::from(rate) * 4_294_967_296.0) as u64;
        let mut keep = vec![0u8; count];
        keep.par_chunks_mut(MASK_CHUNK)
            .enumerate()
            .for_each(|(index, chunk)| {
                let mut rng = SmallRng::seed_from_u64(
                    seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                for pair in chunk.chunks_mut(2) {
                    let bits = rng.next_u64();
                    pair[0] = u8::from(bits & 0xFFFF_FFFF >= threshold);
                    if let Some(second) = pair.get_mut(1) {
                        *second = u8::from(bits >> 32 >= threshold);
                    }
                }
            });
        Some((keep, 1.0 / (1.0 - rate)))
    }

    /// `x` with each element zeroed with probability `rate` and the rest scaled by
    /// `1 / (1 − rate)`, as `torch.nn.Dropout` does in training.
    pub(super) fn dropped(&self, x: &Tensor, rate: f32) -> Result<Tensor> {
        let Some((keep, scale)) = self.dropout_mask(x.elem_count(), rate) else {
            return Ok(x.clone());
        };
        if super::fused::on_host(x) {
            return Ok(super::fused::dropout(x, keep, scale)?);
        }
        let mask: Vec<f32> = keep
            .into_iter()
            .map(|keep| if keep != 0 { scale } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok(x.mul(&mask)?)
    }
}

impl CandleBackend {
    /// Every trainable tensor, in the order of [`crate::model::params::ModelWeights::arrays_mut`]:
    /// the trainer pairs them with the weights it writes back.
    pub fn parameters(&self) -> Vec<&Tensor> {
        let mut out = vec![&self.word];
        out.extend(self.position.as_ref());
        out.extend(self.segment.as_ref());
        if let Some(norm) = &self.embedding_norm {
            norm.parameters(&mut out);
        }
        for layer in &self.layers {
            layer.query_key_value.parameters(&mut out);
            if let Some(norm) = &layer.query_norm {
                norm.parameters(&mut out);
            }
            if let Some(norm) = &layer.key_norm {
                norm.parameters(&mut out);
            }
            layer.attention_output.parameters(&mut out);
            layer.attention_norm.parameters(&mut out);
            layer.ffn_in.parameters(&mut out);
            layer.ffn_out.parameters(&mut out);
            layer.ffn_norm.parameters(&mut out);
            if let Some(norm) = &layer.attention_post_norm {
                norm.parameters(&mut out);
            }
            if let Some(norm) = &layer.ffn_post_norm {
                norm.parameters(&mut out);
            }
        }
        if let Some(norm) = &self.final_norm {
            norm.parameters(&mut out);
        }
        for ops in &self.heads {
            for op in ops {
                match op {
                    Op::Dense(dense) => dense.parameters(&mut out),
                    Op::TiedDecoder(Some(bias)) => out.push(bias),
                    Op::Norm(norm) => norm.parameters(&mut out),
                    Op::TiedDecoder(None) | Op::Activation(_) | Op::SoftCap(_) | Op::MeanPool => {}
                }
            }
        }
        out
    }

    /// The logits of head `head` for every item of `batch`, `[items, outputs]`, in ops candle's
    /// autograd differentiates. With `dropouts` the run is a training run; without, an
    /// evaluation (nothing dropped).
    pub fn classifier_logits(
        &self,
        batch: &TrainBatch<'_>,
        head: usize,
        dropouts: Option<&Dropouts>,
    ) -> Result<Tensor> {
        let hidden = self.config.hidden_size;
        let (items, tokens) = (batch.rows.len(), batch.tokens);
        let cells = items * tokens;
        if items == 0
            || tokens == 0
            || batch.ids.len() != cells
            || batch.positions.len() != cells
            || batch.real.len() != cells
            || batch
                .segments
                .is_some_and(|segments| segments.len() != cells)
            || batch.rows.iter().any(|&row| row as usize >= tokens)
        {
            return Err(ModelError::Compute(
                "a training batch whose parts do not agree".to_owned(),
            ));
        }
        let device = &self.device;
        let rows = |ids: &[u32], table: &Tensor| -> Result<Tensor> {
            Ok(table.index_select(&Tensor::from_slice(ids, cells, device)?, 0)?)
        };
        // transformers adds word + segment first, then positions, as `embed` does.
        let mut x = rows(batch.ids, &self.word)?;
        if let Some(scale) = self.config.architecture.embedding_scale {
            x = (x * f64::from(scale))?;
        }
        if let (Some(table), Some(segments)) = (&self.segment, batch.segments) {
            x = x.add(&rows(segments, table)?)?;
        }
        if let Some(table) = &self.position {
            x = x.add(&rows(batch.positions, table)?)?;
        }
        let mut x = x.reshape((items, tokens, hidden))?;
        if let Some(norm) = &self.embedding_norm {
            x = norm.forward_differentiable(&x)?;
        }
        let padding_keys = (!batch.real.iter().all(|&real| real == 1)).then(|| {
            batch
                .real
                .iter()
                .map(|&real| u8::from(real == 0))
                .collect::<Vec<u8>>()
        });
        let padding = padding_keys
            .as_ref()
            .map(|keys| Tensor::from_slice(keys, (items, 1, 1, tokens), device))
            .transpose()?;
        let no_dropout = DropoutRates::default();
        let training = Training {
            padding,
            padding_keys,
            rates: dropouts.map_or(&no_dropout, |dropouts| &dropouts.rates),
            rng: dropouts.map(|dropouts| &dropouts.rng),
        };
        x = training.dropped(&x, training.rates.embedding)?;
        for (index, layer) in self.layers.iter().enumerate() {
            x = self.batch_layer(index, layer, &x, None, Some(&training))?.0;
        }
        if let Some(norm) = &self.final_norm {
            x = norm.forward_differentiable(&x)?;
        }
        let picks: Vec<u32> = batch
            .rows
            .iter()
            .enumerate()
            .map(|(item, &row)| (item * tokens) as u32 + row)
            .collect();
        let mut x = x
            .reshape((cells, hidden))?
            .index_select(&Tensor::new(picks.as_slice(), device)?, 0)?;
        let ops = self
            .heads
            .get(head)
            .ok_or_else(|| ModelError::Compute(format!("the model has no head {head}")))?;
        for (index, op) in ops.iter().enumerate() {
            if matches!(op, Op::MeanPool) {
                return Err(ModelError::BadInput(
                    "a mean-pooled classifier is not trained yet".to_owned(),
                ));
            }
            for &(_, rate) in training.rates.head.iter().filter(|(at, _)| *at == index) {
                x = training.dropped(&x, rate)?;
            }
            x = self.head_op(op, &x, true)?;
        }
        Ok(x.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masks(seed: u64, count: usize, rate: f32) -> (Vec<u8>, Vec<u8>) {
        let rng = RefCell::new(StdRng::seed_from_u64(seed));
        let rates = DropoutRates::default();
        let training = Training {
            padding: None,
            padding_keys: None,
            rates: &rates,
            rng: Some(&rng),
        };
        let first = training.dropout_mask(count, rate).unwrap();
        let second = training.dropout_mask(count, rate).unwrap();
        assert!((first.1 - 1.0 / (1.0 - rate)).abs() < 1e-6);
        (first.0, second.0)
    }

    #[test]
    fn dropout_masks_drop_at_their_rate_and_repeat_from_a_seed() {
        let count = 3 * MASK_CHUNK + 7;
        let (first, second) = masks(5, count, 0.25);
        let dropped = first.iter().filter(|&&keep| keep == 0).count() as f64 / count as f64;
        assert!((dropped - 0.25).abs() < 0.01, "{dropped}");
        assert_ne!(first, second, "each mask is drawn afresh");
        assert_eq!(
            masks(5, count, 0.25),
            (first, second),
            "the same seed, the same masks"
        );
        assert_ne!(masks(6, count, 0.25).0, masks(5, count, 0.25).0);
    }

    #[test]
    fn nothing_drops_when_evaluating_or_at_rate_zero() {
        let rates = DropoutRates::default();
        let evaluating = Training {
            padding: None,
            padding_keys: None,
            rates: &rates,
            rng: None,
        };
        assert!(evaluating.dropout_mask(10, 0.5).is_none());
        let rng = RefCell::new(StdRng::seed_from_u64(0));
        let training = Training {
            rng: Some(&rng),
            ..evaluating
        };
        assert!(training.dropout_mask(10, 0.0).is_none());
        assert_eq!(training.dropout_mask(3, 1.0), Some((vec![0; 3], 0.0)));
    }
}
