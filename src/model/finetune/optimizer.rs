//! The optimiser of transformers' Trainer, on candle tensors: `torch.optim.AdamW`, gradient
//! clipping by global norm (`torch.nn.utils.clip_grad_norm_`) and the linear schedule with
//! warmup (`get_linear_schedule_with_warmup`), each in torch's order of operations.

use candle_core::{Device, Tensor, Var};
use rayon::prelude::{IndexedParallelIterator, ParallelIterator, ParallelSlice, ParallelSliceMut};

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
    host_moments: Vec<Option<(Vec<f32>, Vec<f32>)>>,
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

    /// One step at learning rate `lr`: parameter `i` moves by its gradient `grads[i]` (none:
    /// it stays, as torch skips parameters without a gradient) and decays when `decays[i]`.
    pub fn step(
        &mut self,
        parameters: &[Var],
        decays: &[bool],
        grads: &[Option<Tensor>],
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
            if matches!(parameter.device(), Device::Cpu) {
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
                };
                self.step_on_host(index, parameter, grad, update)?;
                continue;
            }
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

/// One step's constants.
#[derive(Clone, Copy)]
struct Update {
    lr: f64,
    decay: f64,
    step_size: f64,
    bias_correction2_sqrt: f64,
}

/// Parameters per thread's share of a host update.
const CHUNK: usize = 1 << 14;

impl AdamW {
    /// [`AdamW::step`] of one parameter on the CPU: one pass over its values, moments and
    /// gradient, on every thread, where candle's ops would make a dozen single-threaded passes.
    fn step_on_host(
        &mut self,
        index: usize,
        parameter: &Var,
        grad: &Tensor,
        update: Update,
    ) -> Result<()> {
        let shape = parameter.shape().clone();
        let mut values = parameter.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let grad = grad.flatten_all()?.to_vec1::<f32>()?;
        let len = values.len();
        let (first, second) =
            self.host_moments[index].get_or_insert_with(|| (vec![0.0; len], vec![0.0; len]));
        let (beta1, beta2, eps) = (self.beta1 as f32, self.beta2 as f32, self.eps as f32);
        let shrink = (1.0 - update.lr * update.decay) as f32;
        let (step_size, correction) =
            (update.step_size as f32, update.bias_correction2_sqrt as f32);
        values
            .par_chunks_mut(CHUNK)
            .zip(first.par_chunks_mut(CHUNK))
            .zip(second.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(((values, first), second), grad)| {
                for (((p, m), v), &g) in values.iter_mut().zip(first).zip(second).zip(grad) {
                    if update.decay != 0.0 {
                        *p *= shrink;
                    }
                    *m += (g - *m) * (1.0 - beta1);
                    *v = *v * beta2 + g * g * (1.0 - beta2);
                    let denominator = v.sqrt() / correction + eps;
                    *p -= step_size * *m / denominator;
                }
            });
        parameter.set(&Tensor::from_vec(values, shape, &Device::Cpu)?)?;
        Ok(())
    }
}

/// Scales the gradients so their global L2 norm is at most `max_norm`, as
/// `clip_grad_norm_` does (`max_norm / (norm + 1e-6)`, capped at 1); returns the norm before.
pub fn clip_gradients(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut squares = 0f64;
    for grad in grads.iter().flatten() {
        let norm = f64::from(grad.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt());
        squares += norm * norm;
    }
    let norm = squares.sqrt();
    if max_norm > 0.0 {
        let scale = (max_norm / (norm + 1e-6)).min(1.0);
        for grad in grads.iter_mut().flatten() {
            *grad = (&*grad * scale)?;
        }
    }
    Ok(norm)
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
        let mut grads = vec![
            Some(Tensor::from_vec(vec![3.0f32], 1, &device).unwrap()),
            None,
            Some(Tensor::from_vec(vec![4.0f32], 1, &device).unwrap()),
        ];
        let norm = clip_gradients(&mut grads, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let first = grads[0].as_ref().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((first - 0.6).abs() < 1e-6);
    }
}
