//! The optimiser of transformers' Trainer, on candle tensors: `torch.optim.AdamW`, gradient
//! clipping by global norm (`torch.nn.utils.clip_grad_norm_`) and the linear schedule with
//! warmup (`get_linear_schedule_with_warmup`), each in torch's order of operations.

use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::{IndexedParallelIterator, ParallelIterator, ParallelSlice, ParallelSliceMut};

use crate::model::backend::candle::host_slice;
use crate::model::backend::cpu::isa::dispatched;
use crate::model::backend::cpu::zeroed_huge;
use crate::model::error::Result;

/// `torch.optim.AdamW` with per-parameter weight decay.
pub struct AdamW {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// The decoupled weight decay of parameters that decay.
    pub weight_decay: f64,
    steps: i32,
    moments: Vec<Option<(Tensor, Tensor)>>,
    /// The moments of parameters on the host, updated in place.
    host_moments: Vec<Option<HostMoments>>,
}

impl AdamW {
    /// The Trainer's defaults (β 0.9/0.999, ε 1e-8) for `parameters` parameters.
    pub fn new(parameters: usize, weight_decay: f64) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            steps: 0,
            moments: vec![None; parameters],
            host_moments: vec![None; parameters],
        }
    }

    /// One step at learning rate `lr`: parameter `i` moves by its gradient `grads[i]` times
    /// `grad_scale` (the clipping factor, [`gradient_clip`]; none: it stays, as torch skips
    /// parameters without a gradient) and decays when `decays[i]`.
    pub fn step(
        &mut self,
        parameters: &[Var],
        decays: &[bool],
        grads: &[Option<Tensor>],
        grad_scale: f64,
        lr: f64,
    ) -> Result<()> {
        self.steps += 1;
        let bias_correction1 = 1.0 - self.beta1.powi(self.steps);
        let bias_correction2_sqrt = (1.0 - self.beta2.powi(self.steps)).sqrt();
        let step_size = lr / bias_correction1;
        for (index, (parameter, grad)) in parameters.iter().zip(grads).enumerate() {
            let Some(grad) = grad else {
                continue;
            };
            if on_host(parameter.as_tensor()) && on_host(grad) {
                let decay = if decays[index] {
                    self.weight_decay
                } else {
                    0.0
                };
                let update = Update {
                    lr,
                    decay,
                    step_size,
                    bias_correction2_sqrt,
                    grad_scale,
                };
                self.step_on_host(index, parameter, grad, update)?;
                continue;
            }
            // torch scales the gradients in place before the step: `g.mul_(clip_coef)`.
            let grad = if grad_scale == 1.0 {
                grad.clone()
            } else {
                (grad * grad_scale)?
            };
            let grad = &grad;
            let (first, second) = match self.moments[index].take() {
                Some(moments) => moments,
                None => (grad.zeros_like()?, grad.zeros_like()?),
            };
            let mut value = parameter.as_tensor().clone();
            if decays[index] && self.weight_decay != 0.0 {
                value = (value * (1.0 - lr * self.weight_decay))?;
            }
            // exp_avg.lerp_(grad, 1 − β₁); exp_avg_sq.mul_(β₂).addcmul_(grad, grad, 1 − β₂).
            let first = (&first + ((grad - &first)? * (1.0 - self.beta1))?)?;
            let second = ((&second * self.beta2)? + (grad.sqr()? * (1.0 - self.beta2))?)?;
            let denominator = ((second.sqrt()? / bias_correction2_sqrt)? + self.eps)?;
            let value = (value - (first.div(&denominator)? * step_size)?)?;
            parameter.set(&value)?;
            self.moments[index] = Some((first, second));
        }
        Ok(())
    }
}

/// True for a contiguous f32 tensor in host memory, which the host passes read in place.
fn on_host(tensor: &Tensor) -> bool {
    tensor.device().is_cpu() && tensor.dtype() == DType::F32 && tensor.is_contiguous()
}

/// One step's constants.
#[derive(Clone, Copy)]
struct Update {
    lr: f64,
    decay: f64,
    step_size: f64,
    bias_correction2_sqrt: f64,
    grad_scale: f64,
}

/// Parameters per thread's share of a host update.
const CHUNK: usize = 1 << 14;

/// Parameters per block whose update is skipped while it has never had a gradient.
const BLOCK: usize = 1 << 10;

/// A host parameter's moments, and which blocks of them have ever been moved.
#[derive(Clone)]
struct HostMoments {
    first: Vec<f32>,
    second: Vec<f32>,
    /// Per [`BLOCK`]: whether any gradient in it has ever been non-zero. A block that has not,
    /// with a zero gradient now and no decay, would be left exactly as it is by the update
    /// (`m = v = 0`, a move of `0/ε`): the rows of an embedding table the data never reads
    /// are most of it, and skipping them is most of the update's time.
    moved: Vec<bool>,
}

impl HostMoments {
    fn new(len: usize) -> Self {
        Self {
            first: zeroed_huge(len),
            second: zeroed_huge(len),
            moved: vec![false; len.div_ceil(BLOCK)],
        }
    }
}

dispatched! {
    /// AdamW's update of one chunk of a parameter, in f32 as torch's: the decay factor `shrink`
    /// (exactly 1 without decay), then the moments, then the move.
    fn adam_chunk(
        values: &mut [f32],
        first: &mut [f32],
        second: &mut [f32],
        grad: &[f32],
        constants: [f32; 7],
    ) {
        let [grad_scale, shrink, beta1, beta2, eps, step_size, correction] = constants;
        for (((p, m), v), &g) in values.iter_mut().zip(first).zip(second).zip(grad) {
            let g = if grad_scale == 1.0 { g } else { g * grad_scale };
            *p *= shrink;
            *m += (g - *m) * (1.0 - beta1);
            *v = *v * beta2 + g * g * (1.0 - beta2);
            let denominator = v.sqrt() / correction + eps;
            *p -= step_size * *m / denominator;
        }
    }
}

/// [`AdamW::step`] of one host parameter, in place: one pass over its values, moments and
/// gradient on every thread, without copying the parameter or the gradient out of candle.
struct HostUpdate<'a> {
    moments: std::cell::RefCell<&'a mut HostMoments>,
    constants: [f32; 7],
}

impl InplaceOp2 for HostUpdate<'_> {
    fn name(&self) -> &'static str {
        "bertscope-adamw"
    }

    fn cpu_fwd(
        &self,
        values: &mut CpuStorage,
        values_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<()> {
        let grad = host_slice(grad, grad_layout)?;
        let (start, end) = values_layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("a parameter that is not contiguous".into()))?;
        let CpuStorage::F32(values) = values else {
            candle_core::bail!("a parameter that is not f32");
        };
        let values = &mut values[start..end];
        let constants = self.constants;
        let decays = constants[1] != 1.0;
        let mut moments = self.moments.borrow_mut();
        let HostMoments {
            first,
            second,
            moved,
        } = &mut **moments;
        if grad.len() != values.len() || first.len() != values.len() {
            candle_core::bail!("a gradient that does not fit its parameter");
        }
        values
            .par_chunks_mut(CHUNK)
            .zip(first.par_chunks_mut(CHUNK))
            .zip(second.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .zip(moved.par_chunks_mut(CHUNK / BLOCK))
            .for_each(|((((values, first), second), grad), moved)| {
                for ((((values, first), second), grad), moved) in values
                    .chunks_mut(BLOCK)
                    .zip(first.chunks_mut(BLOCK))
                    .zip(second.chunks_mut(BLOCK))
                    .zip(grad.chunks(BLOCK))
                    .zip(moved)
                {
                    if !*moved && !decays && grad.iter().all(|&g| g == 0.0) {
                        continue;
                    }
                    *moved = true;
                    adam_chunk(values, first, second, grad, constants);
                }
            });
        Ok(())
    }
}

impl AdamW {
    fn step_on_host(
        &mut self,
        index: usize,
        parameter: &Var,
        grad: &Tensor,
        update: Update,
    ) -> Result<()> {
        let len = parameter.elem_count();
        let moments = self.host_moments[index].get_or_insert_with(|| HostMoments::new(len));
        let constants = [
            update.grad_scale as f32,
            (1.0 - update.lr * update.decay) as f32,
            self.beta1 as f32,
            self.beta2 as f32,
            self.eps as f32,
            update.step_size as f32,
            update.bias_correction2_sqrt as f32,
        ];
        parameter.as_tensor().inplace_op2(
            grad,
            &HostUpdate {
                moments: std::cell::RefCell::new(moments),
                constants,
            },
        )?;
        Ok(())
    }
}

/// Zeroes row `row` of `grad` (`[rows, width]`), as torch leaves a table's `padding_idx` row
/// without gradient: in place on the host, else through `mask` (`[rows, 1]`, 0 at that row).
pub fn zero_row(grad: &mut Tensor, row: usize, mask: &Tensor) -> Result<()> {
    if on_host(grad) && grad.rank() == 2 {
        return Ok(grad.inplace_op1(&ZeroRow(row))?);
    }
    *grad = grad.broadcast_mul(mask)?;
    Ok(())
}

struct ZeroRow(usize);

impl InplaceOp1 for ZeroRow {
    fn name(&self) -> &'static str {
        "bertscope-zero-row"
    }

    fn cpu_fwd(&self, values: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (rows, width) = layout.shape().dims2()?;
        let start = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("a gradient that is not contiguous".into()))?
            .0;
        let CpuStorage::F32(values) = values else {
            candle_core::bail!("a gradient that is not f32");
        };
        if self.0 < rows {
            values[start + self.0 * width..][..width].fill(0.0);
        }
        Ok(())
    }
}

/// The global L2 norm of the gradients and the factor `clip_grad_norm_` scales them by to
/// bring it to at most `max_norm` (`max_norm / (norm + 1e-6)`, capped at 1; 1 when `max_norm`
/// is not positive), for [`AdamW::step`].
pub fn gradient_clip(grads: &[Option<Tensor>], max_norm: f64) -> Result<(f64, f64)> {
    let mut squares = 0f64;
    for grad in grads.iter().flatten() {
        squares += sum_of_squares(grad)?;
    }
    let norm = squares.sqrt();
    let scale = if max_norm > 0.0 {
        (max_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    };
    Ok((norm, scale))
}

/// `Σ x²` over a gradient: on the host one parallel pass in place.
fn sum_of_squares(grad: &Tensor) -> Result<f64> {
    if on_host(grad) {
        let (storage, layout) = grad.storage_and_layout();
        if let candle_core::Storage::Cpu(storage) = &*storage {
            return Ok(host_slice(storage, layout)?
                .par_chunks(CHUNK)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|&x| f64::from(x) * f64::from(x))
                        .sum::<f64>()
                })
                .sum());
        }
    }
    let norm = f64::from(grad.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt());
    Ok(norm * norm)
}

/// `get_linear_schedule_with_warmup`'s factor of the learning rate at step `step` (0-based):
/// rising from 0 over `warmup` steps, then falling to 0 at `total`.
pub fn linear_schedule(step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    (total.saturating_sub(step) as f64 / total.saturating_sub(warmup).max(1) as f64).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_then_falls_to_zero() {
        assert_eq!(linear_schedule(0, 2, 10), 0.0);
        assert_eq!(linear_schedule(1, 2, 10), 0.5);
        assert_eq!(linear_schedule(2, 2, 10), 1.0);
        assert_eq!(linear_schedule(6, 2, 10), 0.5);
        assert_eq!(linear_schedule(10, 2, 10), 0.0);
        assert_eq!(linear_schedule(0, 0, 4), 1.0);
    }

    #[test]
    fn adamw_moves_by_the_learning_rate_on_its_first_step() {
        // First step: m̂ = g, v̂ = g², so the move is lr·g/(|g| + ε) ≈ lr·sign(g), after decay.
        let device = candle_core::Device::Cpu;
        let parameter = Var::from_vec(vec![1.0f32, -2.0], 2, &device).unwrap();
        let grad = Tensor::from_vec(vec![0.5f32, -3.0], 2, &device).unwrap();
        let mut adam = AdamW::new(1, 0.1);
        adam.step(
            std::slice::from_ref(&parameter),
            &[true],
            &[Some(grad)],
            1.0,
            0.01,
        )
        .unwrap();
        let moved = parameter.as_tensor().to_vec1::<f32>().unwrap();
        let expected = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) + 0.01];
        for (got, want) in moved.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{moved:?}");
        }
    }

    #[test]
    fn clipping_scales_to_the_maximum_norm() {
        let device = candle_core::Device::Cpu;
        let grads = vec![
            Some(Tensor::from_vec(vec![3.0f32], 1, &device).unwrap()),
            None,
            Some(Tensor::from_vec(vec![4.0f32], 1, &device).unwrap()),
        ];
        let (norm, scale) = gradient_clip(&grads, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        assert!((scale - 0.2).abs() < 1e-6);
        assert_eq!(gradient_clip(&grads, 10.0).unwrap().1, 1.0);
    }

    #[test]
    fn blocks_that_never_had_a_gradient_stay_and_the_rest_move() {
        let device = candle_core::Device::Cpu;
        let len = 3 * BLOCK;
        let parameter = Var::from_vec(vec![1.0f32; len], len, &device).unwrap();
        // Only the middle block gets a gradient, on the first step alone.
        let mut sparse = vec![0f32; len];
        sparse[BLOCK + 5] = 0.5;
        let grads = [
            Tensor::from_vec(sparse, len, &device).unwrap(),
            Tensor::zeros(len, DType::F32, &device).unwrap(),
        ];
        let mut adam = AdamW::new(1, 0.0);
        for grad in grads {
            adam.step(
                std::slice::from_ref(&parameter),
                &[true],
                &[Some(grad)],
                1.0,
                0.1,
            )
            .unwrap();
        }
        let values = parameter.as_tensor().to_vec1::<f32>().unwrap();
        assert!(values[..BLOCK]
            .iter()
            .chain(&values[2 * BLOCK..])
            .all(|&v| v == 1.0));
        // The moved element keeps moving on its first moment after its gradient is gone.
        assert!(values[BLOCK + 5] < 1.0 - 0.15, "{}", values[BLOCK + 5]);
        // With decay every block moves.
        let mut decaying = AdamW::new(1, 0.5);
        decaying
            .step(
                std::slice::from_ref(&parameter),
                &[true],
                &[Some(Tensor::zeros(len, DType::F32, &device).unwrap())],
                1.0,
                0.1,
            )
            .unwrap();
        assert!(parameter.as_tensor().to_vec1::<f32>().unwrap()[0] < 1.0);
    }

    #[test]
    fn the_host_step_and_the_tensor_step_agree() {
        // The host pass runs on the CPU; the tensor ops are what other devices run.
        let device = candle_core::Device::Cpu;
        let values: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        let grads: Vec<f32> = (0..40).map(|i| (i as f32 * 0.91).cos()).collect();
        let on_host = Var::from_vec(values.clone(), 40, &device).unwrap();
        let composed = Var::from_vec(values, 40, &device).unwrap();
        let grad = Tensor::from_vec(grads, 40, &device).unwrap();
        let (mut host_adam, mut tensor_adam) = (AdamW::new(1, 0.01), AdamW::new(1, 0.01));
        for _ in 0..3 {
            host_adam
                .step(
                    std::slice::from_ref(&on_host),
                    &[true],
                    &[Some(grad.clone())],
                    0.5,
                    0.1,
                )
                .unwrap();
            // Through the tensor ops: the same step with the moments kept as tensors.
            tensor_adam.steps += 1;
            let (c1, c2) = (
                1.0 - tensor_adam.beta1.powi(tensor_adam.steps),
                (1.0 - tensor_adam.beta2.powi(tensor_adam.steps)).sqrt(),
            );
            let g = (&grad * 0.5).unwrap();
            let (m, v) = tensor_adam.moments[0]
                .take()
                .unwrap_or_else(|| (g.zeros_like().unwrap(), g.zeros_like().unwrap()));
            let m = (&m + ((&g - &m).unwrap() * 0.1).unwrap()).unwrap();
            let v = ((&v * 0.999).unwrap() + (g.sqr().unwrap() * 0.001).unwrap()).unwrap();
            let value = (composed.as_tensor() * (1.0 - 0.1 * 0.01)).unwrap();
            let denominator = ((v.sqrt().unwrap() / c2).unwrap() + 1e-8).unwrap();
            let moved = (value - (m.div(&denominator).unwrap() * (0.1 / c1)).unwrap()).unwrap();
            composed.set(&moved).unwrap();
            tensor_adam.moments[0] = Some((m, v));
        }
        let (a, b) = (
            on_host.as_tensor().to_vec1::<f32>().unwrap(),
            composed.as_tensor().to_vec1::<f32>().unwrap(),
        );
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() < 1e-5, "{a} {b}");
        }
    }
}
