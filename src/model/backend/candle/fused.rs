//! Fused host ops with their own backward passes, for the runs candle's autograd differentiates
//! on the CPU (fine-tuning above all): the dense layer (with the feed-forward activation folded
//! into the second one), the attention of plain multi-head layers, the attention softmax with
//! its scale and masks, LayerNorm (alone, or after a post-norm block's dropout and residual
//! sum), the activations and dropout. Composed of candle's element-wise ops, each of these is
//! five to ten passes over memory forward and as many backward, and every intermediate stays
//! alive on the tape until the backward pass ends; fused, each is one pass each way and keeps
//! only its input or output. On other devices (and other dtypes) the callers keep the composed
//! ops, which candle runs there.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::model::backend::cpu::kernels;
use crate::model::config::Activation;

/// Rows each parallel task of a row-wise op takes.
const ROWS_PER_TASK: usize = 16;

/// True when the fused ops compute `x`: f32 in host memory.
pub(super) fn on_host(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The f32 elements a contiguous host tensor's layout covers.
pub(crate) fn host_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("a fused op needs contiguous input".into()))?;
    Ok(&storage.as_slice::<f32>()?[start..end])
}

fn f32_storage(values: Vec<f32>) -> CpuStorage {
    CpuStorage::F32(values)
}

/// The feed-forward (or head) activation of `x`, differentiable.
pub(super) fn activate(x: &Tensor, activation: Activation) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Activate(activation))
}

struct Activate(Activation);

impl CustomOp1 for Activate {
    fn name(&self) -> &'static str {
        "bertscope-activation"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = host_slice(storage, layout)?;
        Ok((
            f32_storage(kernels::activated(x, self.0)),
            layout.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2_no_bwd(
            &x.contiguous()?,
            &ActivationGrad(self.0),
        )?))
    }
}

/// `(grad, pre-activation) → grad · act'(pre)`.
struct ActivationGrad(Activation);

impl CustomOp2 for ActivationGrad {
    fn name(&self) -> &'static str {
        "bertscope-activation-grad"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_layout: &Layout,
        pre: &CpuStorage,
        pre_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let mut out = host_slice(grad, grad_layout)?.to_vec();
        let pre = host_slice(pre, pre_layout)?;
        if out.len() != pre.len() {
            candle_core::bail!("an activation's gradient and input differ in size");
        }
        kernels::activation_backward(&mut out, pre, self.0);
        Ok((f32_storage(out), grad_layout.shape().clone()))
    }
}

/// LayerNorm over the last dimension of `x`, differentiable with respect to `x`, `gamma` and
/// `beta`; the statistics in f64, as the tuned CPU backend takes them.
pub(super) fn layer_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        LayerNormOp {
            eps: f64::from(eps),
        },
    )
}

struct LayerNormOp {
    eps: f64,
}

/// A row's mean and `1/σ`.
fn row_statistics(row: &[f32], eps: f64) -> (f64, f64) {
    let width = row.len() as f64;
    let mean = row.iter().map(|&x| f64::from(x)).sum::<f64>() / width;
    let variance = row
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / width;
    (mean, 1.0 / (variance + eps).sqrt())
}

/// LayerNorm of one row `x` into `out`: `(x − mean)/σ·γ + β`, the statistics in f64.
fn normalize_row(x: &[f32], out: &mut [f32], (gamma, beta): (&[f32], &[f32]), eps: f64) {
    let (mean, inv_std) = row_statistics(x, eps);
    for (((o, &x), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
        *o = ((f64::from(x) - mean) * inv_std * f64::from(g) + f64::from(b)) as f32;
    }
}

/// One row's LayerNorm backward pass: with `ĝ = grad·γ` and `x̂` the normalised input,
/// `dx = (1/σ)·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))` into `dx`, `grad·x̂` added to `d_gamma` and `grad`
/// to `d_beta`; `hat` is scratch as wide as the row.
fn layer_norm_row_backward(
    (x, grad, gamma): (&[f32], &[f32], &[f32]),
    eps: f64,
    hat: &mut [f64],
    (d_gamma, d_beta): (&mut [f64], &mut [f64]),
    dx: &mut [f32],
) {
    let (mean, inv_std) = row_statistics(x, eps);
    let (mut sum_g, mut sum_gx) = (0f64, 0f64);
    for ((((h, &x), &d), &g), (dg, db)) in hat
        .iter_mut()
        .zip(x)
        .zip(grad)
        .zip(gamma)
        .zip(d_gamma.iter_mut().zip(d_beta.iter_mut()))
    {
        *h = (f64::from(x) - mean) * inv_std;
        let scaled = f64::from(d) * f64::from(g);
        sum_g += scaled;
        sum_gx += scaled * *h;
        *dg += f64::from(d) * *h;
        *db += f64::from(d);
    }
    let width = x.len() as f64;
    let (mean_g, mean_gx) = (sum_g / width, sum_gx / width);
    for (((o, &h), &d), &g) in dx.iter_mut().zip(&*hat).zip(grad).zip(gamma) {
        *o = ((f64::from(d) * f64::from(g) - mean_g - h * mean_gx) * inv_std) as f32;
    }
}

/// Sums the parallel tasks' parts of dγ and dβ into `d_gamma` and `d_beta`.
fn add_parameter_parts(d_gamma: &mut [f32], d_beta: &mut [f32], parts: Vec<(Vec<f64>, Vec<f64>)>) {
    for (part_gamma, part_beta) in parts {
        d_gamma
            .iter_mut()
            .zip(part_gamma)
            .for_each(|(d, p)| *d = (f64::from(*d) + p) as f32);
        d_beta
            .iter_mut()
            .zip(part_beta)
            .for_each(|(d, p)| *d = (f64::from(*d) + p) as f32);
    }
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "bertscope-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        beta: &CpuStorage,
        beta_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = host_slice(x, x_layout)?;
        let gamma = host_slice(gamma, gamma_layout)?;
        let beta = host_slice(beta, beta_layout)?;
        let width = gamma.len();
        if width == 0 || beta.len() != width || !x.len().is_multiple_of(width) {
            candle_core::bail!("a LayerNorm's input and parameters differ in width");
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(width * ROWS_PER_TASK)
            .zip(x.par_chunks(width * ROWS_PER_TASK))
            .for_each(|(out, x)| {
                for (out, x) in out.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
                    normalize_row(x, out, (gamma, beta), self.eps);
                }
            });
        Ok((f32_storage(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let width = gamma.elem_count();
        let rows = x.elem_count() / width;
        // One pass gives all three: `[rows, width]` of dx, then dγ and dβ.
        let stacked = x.contiguous()?.apply_op3_no_bwd(
            &gamma.contiguous()?,
            &grad.contiguous()?,
            &LayerNormGrad { eps: self.eps },
        )?;
        Ok((
            Some(stacked.narrow(0, 0, rows)?.reshape(x.shape())?),
            Some(stacked.get(rows)?),
            Some(stacked.get(rows + 1)?),
        ))
    }
}

/// `(x, γ, grad) → [dx rows…, dγ, dβ]`, `[rows + 2, width]`: with `ĝ = grad·γ` and `x̂` the
/// normalised input, `dx = (1/σ)·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))` per row, `dγ = Σ grad·x̂`,
/// `dβ = Σ grad` over rows.
struct LayerNormGrad {
    eps: f64,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "bertscope-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = host_slice(x, x_layout)?;
        let gamma = host_slice(gamma, gamma_layout)?;
        let grad = host_slice(grad, grad_layout)?;
        let width = gamma.len();
        if width == 0 || x.len() != grad.len() || !x.len().is_multiple_of(width) {
            candle_core::bail!("a LayerNorm's gradient and input differ in size");
        }
        let rows = x.len() / width;
        let mut out = vec![0f32; x.len() + 2 * width];
        let (dx, _) = out.split_at_mut(x.len());
        // Each task's rows give their dx and their part of dγ and dβ, summed after.
        let parts: Vec<(Vec<f64>, Vec<f64>)> = dx
            .par_chunks_mut(width * ROWS_PER_TASK)
            .zip(x.par_chunks(width * ROWS_PER_TASK))
            .zip(grad.par_chunks(width * ROWS_PER_TASK))
            .map(|((dx, x), grad)| {
                let mut d_gamma = vec![0f64; width];
                let mut d_beta = vec![0f64; width];
                let mut hat = vec![0f64; width];
                for ((dx, x), grad) in dx
                    .chunks_exact_mut(width)
                    .zip(x.chunks_exact(width))
                    .zip(grad.chunks_exact(width))
                {
                    layer_norm_row_backward(
                        (x, grad, gamma),
                        self.eps,
                        &mut hat,
                        (&mut d_gamma, &mut d_beta),
                        dx,
                    );
                }
                (d_gamma, d_beta)
            })
            .collect();
        let (d_gamma, d_beta) = out[x.len()..].split_at_mut(width);
        add_parameter_parts(d_gamma, d_beta, parts);
        Ok((f32_storage(out), Shape::from((rows + 2, width))))
    }
}

/// A dense layer `x·Wᵀ + b` over the last dimension of `x` (`[…, in]`), for `weight`
/// `[out, in]` and `bias` `[out]` (zeros without one), differentiable with respect to all
/// three: one op each way instead of candle's reshape, matmul and broadcast add, whose backward
/// passes sum the bias gradient in a strided single-threaded reduction.
pub(super) fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    linear_of(x, weight, bias, None)
}

/// [`linear`] of `activation(x)`: the feed-forward block's second layer over its first's
/// output. The activated values (as wide as the block) are made in the forward pass and again
/// in the backward, never kept between: the tape keeps one `[tokens, intermediate]` tensor
/// per layer instead of two.
pub(super) fn activated_linear(
    x: &Tensor,
    activation: Activation,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    linear_of(x, weight, bias, Some(activation))
}

fn linear_of(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    input_activation: Option<Activation>,
) -> candle_core::Result<Tensor> {
    let bias = match bias {
        Some(bias) => bias.contiguous()?,
        None => Tensor::zeros(weight.dim(0)?, DType::F32, x.device())?,
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias, Linear { input_activation })
}

/// A dense layer, of its input activated by `input_activation` when given.
#[derive(Clone, Copy)]
struct Linear {
    input_activation: Option<Activation>,
}

impl Linear {
    /// The layer's input: `x`, or its activation.
    fn input<'a>(&self, x: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        match self.input_activation {
            Some(activation) => std::borrow::Cow::Owned(kernels::activated(x, activation)),
            None => std::borrow::Cow::Borrowed(x),
        }
    }
}

/// Rows of `[rows, columns]` per thread: one band each, each band one single-threaded product
/// (the tuned forward's `dense` splits its products the same way).
fn band(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "bertscope-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (outputs, inputs) = weight_layout.shape().dims2()?;
        let (x, weight) = (host_slice(x, x_layout)?, host_slice(weight, weight_layout)?);
        let bias = host_slice(bias, bias_layout)?;
        let dims = x_layout.shape().dims();
        if inputs == 0 || dims.last() != Some(&inputs) || bias.len() != outputs {
            candle_core::bail!("a dense layer's input, weight and bias do not fit");
        }
        let rows = x.len() / inputs;
        let band = band(rows);
        let x = self.input(x);
        let out = kernels::filled_in_parallel(rows * outputs, band * outputs, |index, dst| {
            dst.chunks_exact_mut(outputs)
                .for_each(|row| row.copy_from_slice(bias));
            kernels::MatMul {
                m: dst.len() / outputs,
                n: outputs,
                k: inputs,
                lhs: kernels::Strided::row_major(&x[index * band * inputs..], inputs),
                rhs: kernels::Strided::transposed(weight, inputs),
            }
            .run(dst, outputs, 1.0, true, false);
        });
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = outputs;
        Ok((f32_storage(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (outputs, inputs) = weight.dims2()?;
        let x_count = x.elem_count();
        let stacked = x.contiguous()?.apply_op3_no_bwd(
            &weight.contiguous()?,
            &grad.contiguous()?,
            &LinearGrad(*self),
        )?;
        Ok((
            Some(stacked.narrow(0, 0, x_count)?.reshape(x.shape())?),
            Some(
                stacked
                    .narrow(0, x_count, outputs * inputs)?
                    .reshape((outputs, inputs))?,
            ),
            Some(stacked.narrow(0, x_count + outputs * inputs, outputs)?),
        ))
    }
}

/// `(x, W, G) → [dx = G·W, dW = Gᵀ·x, db = Σ_rows G]`, flattened one after another; with an
/// input activation `a`, `dW = Gᵀ·a(x)` and `dx = (G·W)·a'(x)`.
struct LinearGrad(Linear);

impl CustomOp3 for LinearGrad {
    fn name(&self) -> &'static str {
        "bertscope-linear-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (outputs, inputs) = weight_layout.shape().dims2()?;
        let (x, weight) = (host_slice(x, x_layout)?, host_slice(weight, weight_layout)?);
        let grad = host_slice(grad, grad_layout)?;
        let rows = x.len() / inputs.max(1);
        if inputs == 0 || outputs == 0 || x.len() != rows * inputs || grad.len() != rows * outputs {
            candle_core::bail!("a dense layer's gradient does not fit its input");
        }
        let input = self.0.input(x);
        let mut out = vec![0f32; rows * inputs + outputs * inputs + outputs];
        let (d_x, rest) = out.split_at_mut(rows * inputs);
        let (d_weight, d_bias) = rest.split_at_mut(outputs * inputs);
        let rows_band = band(rows);
        d_x.par_chunks_mut(rows_band * inputs)
            .enumerate()
            .for_each(|(index, dst)| {
                kernels::MatMul {
                    m: dst.len() / inputs,
                    n: inputs,
                    k: outputs,
                    lhs: kernels::Strided::row_major(&grad[index * rows_band * outputs..], outputs),
                    rhs: kernels::Strided::row_major(weight, inputs),
                }
                .run(dst, inputs, 1.0, false, false);
            });
        if let Some(activation) = self.0.input_activation {
            kernels::activation_backward(d_x, x, activation);
        }
        let outputs_band = band(outputs);
        d_weight
            .par_chunks_mut(outputs_band * inputs)
            .enumerate()
            .for_each(|(index, dst)| {
                kernels::MatMul {
                    m: dst.len() / inputs,
                    n: inputs,
                    k: rows,
                    lhs: kernels::Strided::transposed(&grad[index * outputs_band..], outputs),
                    rhs: kernels::Strided::row_major(&input, inputs),
                }
                .run(dst, inputs, 1.0, false, false);
            });
        let sums = grad
            .par_chunks(outputs * ROWS_PER_TASK)
            .map(|rows| {
                let mut sums = vec![0f64; outputs];
                for row in rows.chunks_exact(outputs) {
                    sums.iter_mut()
                        .zip(row)
                        .for_each(|(sum, &g)| *sum += f64::from(g));
                }
                sums
            })
            .reduce(
                || vec![0f64; outputs],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        d_bias
            .iter_mut()
            .zip(sums)
            .for_each(|(d, sum)| *d = sum as f32);
        let total = out.len();
        Ok((f32_storage(out), Shape::from(total)))
    }
}

/// `LayerNorm(dropout(a) + residual)` over the last dimension, as a post-norm block ends:
/// differentiable with respect to `a`, `residual`, `gamma` and `beta`. `dropout` is a keep mask
/// over `a` and its scale. The dropped values and the sum are made again in the backward pass
/// instead of being kept: the tape keeps the block's output alone.
pub(super) fn residual_layer_norm(
    a: &Tensor,
    residual: &Tensor,
    (gamma, beta, eps): (&Tensor, &Tensor, f32),
    dropout: Option<(Vec<u8>, f32)>,
) -> candle_core::Result<Tensor> {
    if a.shape() != residual.shape()
        || dropout
            .as_ref()
            .is_some_and(|(keep, _)| keep.len() != a.elem_count())
    {
        candle_core::bail!("a residual sum whose parts do not fit");
    }
    // γ and β ride as one `[2, width]` argument: a custom op takes at most three.
    let gamma_beta = Tensor::stack(&[gamma, beta], 0)?;
    a.contiguous()?.apply_op3(
        &residual.contiguous()?,
        &gamma_beta,
        ResidualLayerNorm {
            eps: f64::from(eps),
            dropout: dropout.map(|(keep, scale)| (Arc::new(keep), scale)),
        },
    )
}

struct ResidualLayerNorm {
    eps: f64,
    dropout: Option<(Arc<Vec<u8>>, f32)>,
}

impl ResidualLayerNorm {
    /// Row `row` of `dropout(a) + residual` into `sum`.
    fn sum_row(&self, row: usize, a: &[f32], residual: &[f32], sum: &mut [f32]) {
        let width = sum.len();
        match &self.dropout {
            Some((keep, scale)) => {
                let keep = &keep[row * width..][..width];
                for (((s, &a), &r), &k) in sum.iter_mut().zip(a).zip(residual).zip(keep) {
                    *s = if k != 0 { a * scale + r } else { r };
                }
            }
            None => {
                for ((s, &a), &r) in sum.iter_mut().zip(a).zip(residual) {
                    *s = a + r;
                }
            }
        }
    }
}

impl CustomOp3 for ResidualLayerNorm {
    fn name(&self) -> &'static str {
        "bertscope-residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        a_layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
        gamma_beta: &CpuStorage,
        gamma_beta_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, residual) = (
            host_slice(a, a_layout)?,
            host_slice(residual, residual_layout)?,
        );
        let gamma_beta = host_slice(gamma_beta, gamma_beta_layout)?;
        let width = gamma_beta.len() / 2;
        let (gamma, beta) = gamma_beta.split_at(width);
        if width == 0 || !a.len().is_multiple_of(width) || a.len() != residual.len() {
            candle_core::bail!("a LayerNorm's input and parameters differ in width");
        }
        let mut out = vec![0f32; a.len()];
        out.par_chunks_mut(width * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, out)| {
                let mut sum = vec![0f32; width];
                for (offset, out) in out.chunks_exact_mut(width).enumerate() {
                    let row = task * ROWS_PER_TASK + offset;
                    let span = row * width..(row + 1) * width;
                    self.sum_row(row, &a[span.clone()], &residual[span], &mut sum);
                    normalize_row(&sum, out, (gamma, beta), self.eps);
                }
            });
        Ok((f32_storage(out), a_layout.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        residual: &Tensor,
        gamma_beta: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let count = a.elem_count();
        let width = gamma_beta.elem_count() / 2;
        let (a_values, residual, grad, gamma_beta) = (
            a.contiguous()?,
            residual.contiguous()?,
            grad.contiguous()?,
            gamma_beta.contiguous()?,
        );
        let out = with_host_slices(&[&a_values, &residual, &grad, &gamma_beta], |slices| {
            let [a, residual, grad, gamma_beta] = slices else {
                candle_core::bail!("four slices asked for");
            };
            self.gradients(a, residual, grad, &gamma_beta[..width])
        })?;
        let stacked = Tensor::from_vec(out, 2 * count + 2 * width, a.device())?;
        Ok((
            Some(stacked.narrow(0, 0, count)?.reshape(a.shape())?),
            Some(stacked.narrow(0, count, count)?.reshape(a.shape())?),
            Some(
                stacked
                    .narrow(0, 2 * count, 2 * width)?
                    .reshape((2, width))?,
            ),
        ))
    }
}

/// `f` over the elements of contiguous host f32 tensors, read in place.
fn with_host_slices<R>(
    tensors: &[&Tensor],
    f: impl FnOnce(&[&[f32]]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let slices = guards
        .iter()
        .map(|(storage, layout)| match &**storage {
            candle_core::Storage::Cpu(storage) => host_slice(storage, layout),
            _ => candle_core::bail!("a fused op's tensor is not in host memory"),
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    f(&slices)
}

impl ResidualLayerNorm {
    /// `[da, d residual, dγ, dβ]` from the output's gradient: [`LayerNormGrad`]'s arithmetic on
    /// the sum, whose gradient passes to the residual as it is and to `a` through the mask.
    fn gradients(
        &self,
        a: &[f32],
        residual: &[f32],
        grad: &[f32],
        gamma: &[f32],
    ) -> candle_core::Result<Vec<f32>> {
        let count = a.len();
        let width = gamma.len();
        if width == 0
            || !count.is_multiple_of(width)
            || residual.len() != count
            || grad.len() != count
        {
            candle_core::bail!("a LayerNorm's gradient and input differ in size");
        }
        let mut out = vec![0f32; 2 * count + 2 * width];
        let (d_a, rest) = out.split_at_mut(count);
        let (d_residual, d_parameters) = rest.split_at_mut(count);
        let parts: Vec<(Vec<f64>, Vec<f64>)> = d_a
            .par_chunks_mut(width * ROWS_PER_TASK)
            .zip(d_residual.par_chunks_mut(width * ROWS_PER_TASK))
            .enumerate()
            .map(|(task, (d_a, d_residual))| {
                let mut d_gamma = vec![0f64; width];
                let mut d_beta = vec![0f64; width];
                let mut sum = vec![0f32; width];
                let mut hat = vec![0f64; width];
                for (offset, (d_a, d_residual)) in d_a
                    .chunks_exact_mut(width)
                    .zip(d_residual.chunks_exact_mut(width))
                    .enumerate()
                {
                    let row = task * ROWS_PER_TASK + offset;
                    let span = row * width..(row + 1) * width;
                    self.sum_row(row, &a[span.clone()], &residual[span.clone()], &mut sum);
                    layer_norm_row_backward(
                        (&sum, &grad[span], gamma),
                        self.eps,
                        &mut hat,
                        (&mut d_gamma, &mut d_beta),
                        d_residual,
                    );
                    match &self.dropout {
                        Some((keep, scale)) => {
                            let keep = &keep[row * width..][..width];
                            for ((o, &d), &k) in d_a.iter_mut().zip(&*d_residual).zip(keep) {
                                *o = if k != 0 { d * scale } else { 0.0 };
                            }
                        }
                        None => d_a.copy_from_slice(d_residual),
                    }
                }
                (d_gamma, d_beta)
            })
            .collect();
        let (d_gamma, d_beta) = d_parameters.split_at_mut(width);
        add_parameter_parts(d_gamma, d_beta, parts);
        Ok(out)
    }
}

/// Which keys each query of each item may not see, on the host: `[items, queries, keys]`, 1 =
/// hidden.
#[derive(Clone)]
pub(super) struct HiddenKeys {
    pub(super) queries: usize,
    pub(super) keys: usize,
    pub(super) hidden: Arc<Vec<u8>>,
}

/// The attention probabilities of raw scores `[items, heads, queries, keys]`: each score times
/// `scale`, the keys `hidden` hides left out (probability exactly 0), a softmax over each row;
/// differentiable with respect to the scores.
pub(super) fn attention_softmax(
    scores: &Tensor,
    scale: f32,
    hidden: Option<HiddenKeys>,
) -> candle_core::Result<Tensor> {
    let (items, heads, queries, keys) = scores.dims4()?;
    if let Some(hidden) = &hidden {
        if hidden.queries != queries
            || hidden.keys != keys
            || hidden.hidden.len() != items * queries * keys
        {
            candle_core::bail!("an attention mask that does not fit its scores");
        }
    }
    scores.contiguous()?.apply_op1(AttentionSoftmax {
        scale,
        hidden,
        heads,
    })
}

struct AttentionSoftmax {
    scale: f32,
    hidden: Option<HiddenKeys>,
    heads: usize,
}

impl CustomOp1 for AttentionSoftmax {
    fn name(&self) -> &'static str {
        "bertscope-attention-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let scores = host_slice(storage, layout)?;
        let keys = *layout.shape().dims().last().unwrap_or(&1);
        let queries = layout
            .shape()
            .dims()
            .iter()
            .rev()
            .nth(1)
            .copied()
            .unwrap_or(1);
        let mut out = scores.to_vec();
        out.par_chunks_mut(keys * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, rows)| {
                for (offset, row) in rows.chunks_exact_mut(keys).enumerate() {
                    let index = task * ROWS_PER_TASK + offset;
                    row.iter_mut().for_each(|x| *x *= self.scale);
                    let hidden = self.hidden.as_ref().map(|hidden| {
                        let item = index / (self.heads * queries);
                        let query = index % queries;
                        &hidden.hidden[(item * queries + query) * keys..][..keys]
                    });
                    softmax_without(row, hidden);
                }
            });
        Ok((f32_storage(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _: &Tensor,
        probs: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2_no_bwd(
            &probs.contiguous()?,
            &SoftmaxGrad { scale: self.scale },
        )?))
    }
}

/// `(grad, P) → scale · P·(grad − Σ grad·P)` per row: the gradient of scaled scores through a
/// softmax (hidden keys have P = 0 and get 0).
struct SoftmaxGrad {
    scale: f32,
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "bertscope-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_layout: &Layout,
        probs: &CpuStorage,
        probs_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let mut out = host_slice(grad, grad_layout)?.to_vec();
        let probs = host_slice(probs, probs_layout)?;
        let keys = *grad_layout.shape().dims().last().unwrap_or(&1);
        if out.len() != probs.len() {
            candle_core::bail!("a softmax's gradient and output differ in size");
        }
        out.par_chunks_mut(keys * ROWS_PER_TASK)
            .zip(probs.par_chunks(keys * ROWS_PER_TASK))
            .for_each(|(grad, probs)| {
                for (grad, probs) in grad.chunks_exact_mut(keys).zip(probs.chunks_exact(keys)) {
                    let dot: f32 = grad.iter().zip(probs).map(|(g, p)| g * p).sum();
                    grad.iter_mut()
                        .zip(probs)
                        .for_each(|(g, &p)| *g = self.scale * p * (*g - dot));
                }
            });
        Ok((f32_storage(out), grad_layout.shape().clone()))
    }
}

/// Self-attention of every item from its stacked projections `qkv` `[items, tokens,
/// 3·heads·head_dim]` (queries, then keys, then values; a head's columns together): the context
/// vectors `[items, tokens, heads·head_dim]`, differentiable with respect to `qkv`. Each
/// head's scores are scaled, the `hidden` keys left out, a softmax taken, `dropout` (a keep
/// mask over `[items, heads, tokens, tokens]` and its scale) applied, and the values mixed,
/// without the split heads, the scores or the dropped probabilities ever being tensors: the op
/// keeps only the probabilities (and the mask) for its backward pass.
pub(super) fn attention(
    qkv: &Tensor,
    heads: usize,
    scale: f32,
    hidden: Option<HiddenKeys>,
    dropout: Option<(Vec<u8>, f32)>,
) -> candle_core::Result<Tensor> {
    let (items, tokens, width) = qkv.dims3()?;
    if heads == 0 || !width.is_multiple_of(3 * heads) {
        candle_core::bail!("stacked projections that are not three times the heads");
    }
    if hidden.as_ref().is_some_and(|hidden| {
        hidden.queries != tokens
            || hidden.keys != tokens
            || hidden.hidden.len() != items * tokens * tokens
    }) || dropout
        .as_ref()
        .is_some_and(|(keep, _)| keep.len() != items * heads * tokens * tokens)
    {
        candle_core::bail!("an attention mask that does not fit its scores");
    }
    qkv.contiguous()?.apply_op1(Attention {
        shape: AttentionShape {
            items,
            tokens,
            heads,
            head_dim: width / (3 * heads),
        },
        scale,
        hidden,
        dropout: dropout.map(|(keep, scale)| (Arc::new(keep), scale)),
        probs: std::sync::OnceLock::new(),
    })
}

#[derive(Clone, Copy)]
struct AttentionShape {
    items: usize,
    tokens: usize,
    heads: usize,
    head_dim: usize,
}

impl AttentionShape {
    /// Columns of a row of the stacked projections.
    fn stacked(&self) -> usize {
        3 * self.heads * self.head_dim
    }

    /// Columns of a row of the context vectors.
    fn context(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Elements of one head's `[tokens, tokens]` map.
    fn map(&self) -> usize {
        self.tokens * self.tokens
    }

    /// Whether each item's product splits its work across the threads itself (fewer items
    /// than threads) instead of the items being spread over them.
    fn parallel_products(&self) -> bool {
        self.items < rayon::current_num_threads()
    }
}

struct Attention {
    shape: AttentionShape,
    scale: f32,
    hidden: Option<HiddenKeys>,
    dropout: Option<(Arc<Vec<u8>>, f32)>,
    /// The probabilities `[items, heads, tokens, tokens]`, written by the forward pass.
    probs: std::sync::OnceLock<Vec<f32>>,
}

impl Attention {
    /// Item `item`, head `head`'s keep mask, if any.
    fn keep(&self, item: usize, head: usize) -> Option<(&[u8], f32)> {
        let shape = &self.shape;
        self.dropout.as_ref().map(|(keep, scale)| {
            (
                &keep[(item * shape.heads + head) * shape.map()..][..shape.map()],
                *scale,
            )
        })
    }

    /// Item `item`, head `head`'s probabilities as they mix the values: `probs` itself, or
    /// with its dropout applied, written into `dropped`.
    fn mixed<'a>(
        &self,
        (item, head): (usize, usize),
        probs: &'a [f32],
        dropped: &'a mut [f32],
    ) -> &'a [f32] {
        match self.keep(item, head) {
            Some((keep, scale)) => {
                dropped
                    .iter_mut()
                    .zip(probs)
                    .zip(keep)
                    .for_each(|((d, &p), &keep)| *d = if keep != 0 { p * scale } else { 0.0 });
                dropped
            }
            None => probs,
        }
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "bertscope-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = host_slice(storage, layout)?;
        let shape = self.shape;
        let (tokens, head_dim) = (shape.tokens, shape.head_dim);
        let (stacked, context) = (shape.stacked(), shape.context());
        let parallel = shape.parallel_products();
        let mut probs = vec![0f32; shape.items * shape.heads * shape.map()];
        let mut out = vec![0f32; shape.items * tokens * context];
        out.par_chunks_mut(tokens * context)
            .zip(probs.par_chunks_mut(shape.heads * shape.map()))
            .enumerate()
            .for_each(|(item, (out, probs))| {
                let qkv = &qkv[item * tokens * stacked..][..tokens * stacked];
                let mut dropped = vec![0f32; shape.map()];
                for (head, probs) in probs.chunks_exact_mut(shape.map()).enumerate() {
                    let (query, key, value) = (
                        head * head_dim,
                        context + head * head_dim,
                        2 * context + head * head_dim,
                    );
                    kernels::MatMul {
                        m: tokens,
                        n: tokens,
                        k: head_dim,
                        lhs: kernels::Strided::row_major(&qkv[query..], stacked),
                        rhs: kernels::Strided::transposed(&qkv[key..], stacked),
                    }
                    .run(probs, tokens, self.scale, false, parallel);
                    for (query, row) in probs.chunks_exact_mut(tokens).enumerate() {
                        let hidden = self.hidden.as_ref().map(|hidden| {
                            &hidden.hidden[(item * tokens + query) * tokens..][..tokens]
                        });
                        softmax_without(row, hidden);
                    }
                    let mixed = self.mixed((item, head), probs, &mut dropped);
                    kernels::MatMul {
                        m: tokens,
                        n: head_dim,
                        k: tokens,
                        lhs: kernels::Strided::row_major(mixed, tokens),
                        rhs: kernels::Strided::row_major(&qkv[value..], stacked),
                    }
                    .run(
                        &mut out[head * head_dim..],
                        context,
                        1.0,
                        false,
                        parallel,
                    );
                }
            });
        if self.probs.set(probs).is_err() {
            candle_core::bail!("an attention op ran twice");
        }
        Ok((
            f32_storage(out),
            Shape::from((shape.items, tokens, context)),
        ))
    }

    fn bwd(&self, qkv: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(qkv.contiguous()?.apply_op2_no_bwd(
            &grad.contiguous()?,
            &AttentionGrad(self),
        )?))
    }
}

/// A softmax of `row` in place over the keys `hidden` does not hide (1 = hidden), which get
/// exactly 0.
fn softmax_without(row: &mut [f32], hidden: Option<&[u8]>) {
    let Some(hidden) = hidden else {
        kernels::softmax(row);
        return;
    };
    row.iter_mut()
        .zip(hidden)
        .filter(|(_, &hidden)| hidden != 0)
        .for_each(|(x, _)| *x = f32::NEG_INFINITY);
    kernels::softmax(row);
    row.iter_mut()
        .zip(hidden)
        .filter(|(_, &hidden)| hidden != 0)
        .for_each(|(x, _)| *x = 0.0);
}

/// `(qkv, d context) → d qkv` of an [`Attention`]: per head, with `P` its probabilities, `P'`
/// them dropped out and `dC` the context's gradient: `dV = P'ᵀ·dC`, `dP = (dC·Vᵀ)` masked and
/// scaled as the dropout was, `dS = scale·P·(dP − Σ dP·P)`, `dQ = dS·K`, `dK = dSᵀ·Q`.
struct AttentionGrad<'a>(&'a Attention);

impl CustomOp2 for AttentionGrad<'_> {
    fn name(&self) -> &'static str {
        "bertscope-attention-grad"
    }

    fn cpu_fwd(
        &self,
        qkv: &CpuStorage,
        qkv_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.0;
        let shape = op.shape;
        let (qkv, grad) = (host_slice(qkv, qkv_layout)?, host_slice(grad, grad_layout)?);
        let probs = op.probs.get().ok_or_else(|| {
            candle_core::Error::Msg("an attention op's backward before its forward".into())
        })?;
        let (tokens, head_dim) = (shape.tokens, shape.head_dim);
        let (stacked, context) = (shape.stacked(), shape.context());
        if grad.len() != shape.items * tokens * context
            || qkv.len() != shape.items * tokens * stacked
        {
            candle_core::bail!("an attention op's gradient does not fit it");
        }
        let parallel = shape.parallel_products();
        let mut out = vec![0f32; qkv.len()];
        out.par_chunks_mut(tokens * stacked)
            .enumerate()
            .for_each(|(item, d_qkv)| {
                let qkv = &qkv[item * tokens * stacked..][..tokens * stacked];
                let grad = &grad[item * tokens * context..][..tokens * context];
                let mut d_probs = vec![0f32; shape.map()];
                let mut dropped = vec![0f32; shape.map()];
                for head in 0..shape.heads {
                    let probs = &probs[(item * shape.heads + head) * shape.map()..][..shape.map()];
                    let (query, key, value) = (
                        head * head_dim,
                        context + head * head_dim,
                        2 * context + head * head_dim,
                    );
                    let d_context = kernels::Strided::row_major(&grad[head * head_dim..], context);
                    let keep = op.keep(item, head);
                    let mixed = op.mixed((item, head), probs, &mut dropped);
                    // dV = P'ᵀ·dC
                    kernels::MatMul {
                        m: tokens,
                        n: head_dim,
                        k: tokens,
                        lhs: kernels::Strided::transposed(mixed, tokens),
                        rhs: d_context,
                    }
                    .run(&mut d_qkv[value..], stacked, 1.0, false, parallel);
                    // dP' = dC·Vᵀ
                    kernels::MatMul {
                        m: tokens,
                        n: tokens,
                        k: head_dim,
                        lhs: d_context,
                        rhs: kernels::Strided::transposed(&qkv[value..], stacked),
                    }
                    .run(&mut d_probs, tokens, 1.0, false, parallel);
                    if let Some((keep, scale)) = keep {
                        d_probs
                            .iter_mut()
                            .zip(keep)
                            .for_each(|(d, &keep)| *d = if keep != 0 { *d * scale } else { 0.0 });
                    }
                    for (d, p) in d_probs
                        .chunks_exact_mut(tokens)
                        .zip(probs.chunks_exact(tokens))
                    {
                        let dot: f32 = d.iter().zip(p).map(|(d, p)| d * p).sum();
                        d.iter_mut()
                            .zip(p)
                            .for_each(|(d, &p)| *d = op.scale * p * (*d - dot));
                    }
                    // dQ = dS·K
                    kernels::MatMul {
                        m: tokens,
                        n: head_dim,
                        k: tokens,
                        lhs: kernels::Strided::row_major(&d_probs, tokens),
                        rhs: kernels::Strided::row_major(&qkv[key..], stacked),
                    }
                    .run(&mut d_qkv[query..], stacked, 1.0, false, parallel);
                    // dK = dSᵀ·Q
                    kernels::MatMul {
                        m: tokens,
                        n: head_dim,
                        k: tokens,
                        lhs: kernels::Strided::transposed(&d_probs, tokens),
                        rhs: kernels::Strided::row_major(&qkv[query..], stacked),
                    }
                    .run(&mut d_qkv[key..], stacked, 1.0, false, parallel);
                }
            });
        Ok((f32_storage(out), qkv_layout.shape().clone()))
    }
}

/// `x` times a dropout mask: `keep[i]` 1 keeps element `i`, scaled by `scale`, 0 drops it.
/// The mask is kept as bytes for the backward pass, which applies the same mask to the gradient.
pub(super) fn dropout(x: &Tensor, keep: Vec<u8>, scale: f32) -> candle_core::Result<Tensor> {
    if keep.len() != x.elem_count() {
        candle_core::bail!("a dropout mask that does not fit its input");
    }
    x.contiguous()?.apply_op1(Dropout {
        keep: Arc::new(keep),
        scale,
    })
}

struct Dropout {
    keep: Arc<Vec<u8>>,
    scale: f32,
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "bertscope-dropout"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = host_slice(storage, layout)?;
        if x.len() != self.keep.len() {
            candle_core::bail!("a dropout mask that does not fit its input");
        }
        let out = x
            .par_iter()
            .zip(self.keep.par_iter())
            .map(|(&x, &keep)| if keep != 0 { x * self.scale } else { 0.0 })
            .collect();
        Ok((f32_storage(out), layout.shape().clone()))
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // The same mask and scale: dropout is linear in its input.
        let again = Dropout {
            keep: Arc::clone(&self.keep),
            scale: self.scale,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&again)?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// The largest difference between two tensors' elements.
    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    fn random(shape: &[usize], seed: u64) -> Var {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let count = shape.iter().product();
        let values: Vec<f32> = (0..count).map(|_| rng.random_range(-2.0..2.0)).collect();
        Var::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// Gradients of `Σ f(inputs)·weights` with respect to each input.
    fn gradients(output: &Tensor, inputs: &[&Var], weights: &Tensor) -> Vec<Tensor> {
        let grads = output
            .mul(weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        inputs
            .iter()
            .map(|var| grads.get(var.as_tensor()).unwrap().clone())
            .collect()
    }

    #[test]
    fn layer_norm_matches_candles_composed_ops_and_their_gradients() {
        let (x, gamma, beta) = (random(&[3, 5, 24], 1), random(&[24], 2), random(&[24], 3));
        let weights = random(&[3, 5, 24], 4).as_tensor().detach();
        let fused = layer_norm(&x, &gamma, &beta, 1e-5).unwrap();
        let composed = candle_nn::ops::layer_norm_slow(&x, &gamma, &beta, 1e-5).unwrap();
        assert!(max_difference(&fused, &composed) < 1e-5);
        let inputs = [&x, &gamma, &beta];
        for (a, b) in gradients(&fused, &inputs, &weights)
            .iter()
            .zip(gradients(&composed, &inputs, &weights))
        {
            assert!(max_difference(a, &b) < 1e-4, "{}", max_difference(a, &b));
        }
    }

    #[test]
    fn activations_match_candles_and_their_gradients() {
        let x = random(&[4, 40], 5);
        let weights = random(&[4, 40], 6).as_tensor().detach();
        for (activation, composed) in [
            (Activation::GeluErf, x.gelu_erf().unwrap()),
            (Activation::Relu, x.relu().unwrap()),
            (Activation::Tanh, x.tanh().unwrap()),
            (Activation::Silu, x.silu().unwrap()),
        ] {
            let fused = activate(&x, activation).unwrap();
            assert!(max_difference(&fused, &composed) < 1e-5, "{activation:?}");
            let (a, b) = (
                &gradients(&fused, &[&x], &weights)[0],
                &gradients(&composed, &[&x], &weights)[0],
            );
            assert!(max_difference(a, b) < 1e-4, "{activation:?}");
        }
    }

    #[test]
    fn attention_softmax_scales_masks_and_differentiates() {
        let scores = random(&[2, 3, 4, 4], 7);
        let weights = random(&[2, 3, 4, 4], 8).as_tensor().detach();
        // Item 1's last key is padding; every query is causal.
        let hidden: Vec<u8> = (0..2 * 4 * 4)
            .map(|i| {
                let (item, query, key) = (i / 16, (i / 4) % 4, i % 4);
                u8::from(key > query || (item == 1 && key == 3))
            })
            .collect();
        let mask = Tensor::from_vec(hidden.clone(), (2, 1, 4, 4), &Device::Cpu).unwrap();
        let fused = attention_softmax(
            &scores,
            0.5,
            Some(HiddenKeys {
                queries: 4,
                keys: 4,
                hidden: Arc::new(hidden),
            }),
        )
        .unwrap();
        let blocked = Tensor::new(f32::NEG_INFINITY, &Device::Cpu)
            .unwrap()
            .broadcast_as((2, 3, 4, 4))
            .unwrap();
        let scaled = (scores.as_tensor() * 0.5).unwrap();
        let masked = mask
            .broadcast_as((2, 3, 4, 4))
            .unwrap()
            .where_cond(&blocked, &scaled)
            .unwrap();
        let composed = candle_nn::ops::softmax(&masked, 3).unwrap();
        assert!(max_difference(&fused, &composed) < 1e-6);
        let (a, b) = (
            &gradients(&fused, &[&scores], &weights)[0],
            &gradients(&composed, &[&scores], &weights)[0],
        );
        assert!(max_difference(a, b) < 1e-5);
    }

    #[test]
    fn dropout_drops_and_scales_the_gradient_alike() {
        let x = random(&[2, 6], 9);
        let keep: Vec<u8> = (0..12).map(|i| u8::from(i % 3 != 0)).collect();
        let dropped = dropout(&x, keep.clone(), 1.5).unwrap();
        let grads = dropped.sum_all().unwrap().backward().unwrap();
        let grad = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap();
        let values = x
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let out = dropped.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for ((i, &keep), grad) in keep.iter().enumerate().zip(grad.to_vec1::<f32>().unwrap()) {
            let factor = if keep == 1 { 1.5 } else { 0.0 };
            assert_eq!(out[i], values[i] * factor);
            assert_eq!(grad, factor);
        }
    }

    #[test]
    fn linear_matches_candles_product_and_its_gradients() {
        let (x, weight, bias) = (
            random(&[2, 7, 12], 10),
            random(&[5, 12], 11),
            random(&[5], 12),
        );
        let weights = random(&[2, 7, 5], 13).as_tensor().detach();
        let fused = linear(&x, &weight, Some(&bias)).unwrap();
        let composed = x
            .broadcast_matmul(&weight.t().unwrap())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        assert!(max_difference(&fused, &composed) < 1e-5);
        let inputs = [&x, &weight, &bias];
        for (a, b) in gradients(&fused, &inputs, &weights)
            .iter()
            .zip(gradients(&composed, &inputs, &weights))
        {
            assert_eq!(a.dims(), b.dims());
            assert!(max_difference(a, &b) < 1e-4, "{}", max_difference(a, &b));
        }
    }

    #[test]
    fn fused_attention_matches_the_composed_heads_and_their_gradients() {
        let (items, tokens, heads, head_dim) = (2, 5, 3, 4);
        let width = heads * head_dim;
        let qkv = random(&[items, tokens, 3 * width], 14);
        let weights = random(&[items, tokens, width], 15).as_tensor().detach();
        let hidden: Vec<u8> = (0..items * tokens * tokens)
            .map(|i| u8::from(i / (tokens * tokens) == 1 && i % tokens == tokens - 1))
            .collect();
        let keep: Vec<u8> = (0..items * heads * tokens * tokens)
            .map(|i| u8::from(i % 7 != 3))
            .collect();
        let mask = HiddenKeys {
            queries: tokens,
            keys: tokens,
            hidden: Arc::new(hidden),
        };
        let fused = attention(
            &qkv,
            heads,
            0.5,
            Some(mask.clone()),
            Some((keep.clone(), 1.25)),
        )
        .unwrap();
        let split = |start: usize| {
            qkv.narrow(2, start, width)
                .unwrap()
                .reshape((items, tokens, heads, head_dim))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (split(0), split(width), split(2 * width));
        let scores = q.matmul(&k.t().unwrap()).unwrap();
        let probs = attention_softmax(&scores, 0.5, Some(mask)).unwrap();
        let composed = dropout(&probs, keep, 1.25)
            .unwrap()
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((items, tokens, width))
            .unwrap();
        assert!(max_difference(&fused, &composed) < 1e-5);
        let (a, b) = (
            &gradients(&fused, &[&qkv], &weights)[0],
            &gradients(&composed, &[&qkv], &weights)[0],
        );
        assert!(max_difference(a, b) < 1e-5, "{}", max_difference(a, b));
    }

    #[test]
    fn the_activated_linear_matches_an_activation_then_a_product() {
        let (x, weight, bias) = (
            random(&[3, 4, 10], 16),
            random(&[6, 10], 17),
            random(&[6], 18),
        );
        let weights = random(&[3, 4, 6], 19).as_tensor().detach();
        let fused = activated_linear(&x, Activation::GeluErf, &weight, Some(&bias)).unwrap();
        let composed = linear(
            &activate(&x, Activation::GeluErf).unwrap(),
            &weight,
            Some(&bias),
        )
        .unwrap();
        assert!(max_difference(&fused, &composed) < 1e-6);
        let inputs = [&x, &weight, &bias];
        for (a, b) in gradients(&fused, &inputs, &weights)
            .iter()
            .zip(gradients(&composed, &inputs, &weights))
        {
            assert!(max_difference(a, &b) < 1e-5, "{}", max_difference(a, &b));
        }
    }

    #[test]
    fn the_residual_layer_norm_matches_dropout_a_sum_and_a_layer_norm() {
        let (a, residual) = (random(&[2, 3, 16], 20), random(&[2, 3, 16], 21));
        let (gamma, beta) = (random(&[16], 22), random(&[16], 23));
        let weights = random(&[2, 3, 16], 24).as_tensor().detach();
        let keep: Vec<u8> = (0..96).map(|i| u8::from(i % 5 != 2)).collect();
        let fused = residual_layer_norm(
            &a,
            &residual,
            (&gamma, &beta, 1e-12),
            Some((keep.clone(), 1.25)),
        )
        .unwrap();
        let summed = dropout(&a, keep, 1.25).unwrap().add(&residual).unwrap();
        let composed = candle_nn::ops::layer_norm_slow(&summed, &gamma, &beta, 1e-12).unwrap();
        assert!(max_difference(&fused, &composed) < 1e-5);
        let inputs = [&a, &residual, &gamma, &beta];
        for (a, b) in gradients(&fused, &inputs, &weights)
            .iter()
            .zip(gradients(&composed, &inputs, &weights))
        {
            assert!(max_difference(a, &b) < 1e-4, "{}", max_difference(a, &b));
        }
    }
}
