//! The candle backend: the order of operations a description gives, in candle's tensor ops, so
//! that it runs on GPUs (and on the CPU, where tests compare it with the tuned backend). It keeps
//! what transformers computes and then throws away: every layer's attention probabilities,
//! queries, keys and hidden states.
//!
//! One sequence without padding runs as 2-D `[tokens, hidden]` tensors: with no padding the
//! attention mask adds zeros, so leaving it out is exact.

mod batch;
mod decode;

use candle_core::{DType, Device, IndexOp, Tensor};

use super::{
    Backend, BatchRun, Captured, EmbeddingRows, Extended, ForwardInput, Gradients, Incremental,
    Interventions, KvCache, Readout, Trace,
};
use crate::model::captured::{CapturedArray, DeviceArray};
use crate::model::config::{Activation, ModelConfig, NormPlacement};
use crate::model::error::{ModelError, Result};
use crate::model::params::{self, HeadOp, ModelWeights};

/// A dense layer `y = x·W + b` with `W` stored transposed, `[in, out]`, so every matmul reads
/// both operands row-major.
struct Dense {
    weight_t: Tensor,
    bias: Option<Tensor>,
}

impl Dense {
    fn new(linear: params::Linear, device: &Device) -> Result<Self> {
        let weight = Tensor::from_vec(linear.weight, (linear.outputs, linear.inputs), device)?;
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias: linear
                .bias
                .map(|bias| Tensor::from_vec(bias, linear.outputs, device))
                .transpose()?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let product = x.broadcast_matmul(&self.weight_t)?;
        Ok(match &self.bias {
            Some(bias) => product.broadcast_add(bias)?,
            None => product,
        })
    }
}

/// LayerNorm over the last dimension.
struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn new(norm: params::Norm, device: &Device) -> Result<Self> {
        let width = norm.gamma.len();
        Ok(Self {
            gamma: Tensor::from_vec(norm.gamma, width, device)?,
            beta: Tensor::from_vec(norm.beta, width, device)?,
            eps: norm.eps as f32,
        })
    }

    /// The same, in ops candle can differentiate (its fused kernel has no backward pass).
    fn forward_differentiable(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm_slow(
            x,
            &self.gamma,
            &self.beta,
            self.eps,
        )?)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            x,
            &self.gamma,
            &self.beta,
            self.eps,
        )?)
    }
}

fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    Ok(match activation {
        Activation::GeluErf => x.gelu_erf()?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Relu => x.relu()?,
        Activation::Tanh => x.tanh()?,
    })
}

struct Layer {
    query_key_value: Dense,
    attention_output: Dense,
    attention_norm: LayerNorm,
    ffn_in: Dense,
    ffn_out: Dense,
    ffn_norm: LayerNorm,
}

enum Op {
    Dense(Dense),
    TiedDecoder(Option<Tensor>),
    Activation(Activation),
    Norm(LayerNorm),
}

/// What one layer's attention captures.
struct LayerCapture {
    /// `[heads, tokens, tokens]`.
    probs: Tensor,
    /// `[heads, tokens, head_dim]`.
    queries: Tensor,
    /// `[heads, tokens, head_dim]`.
    keys: Tensor,
    /// `[heads, tokens]`, when asked for.
    value_norms: Option<Tensor>,
}

/// A model as candle tensors on a device.
pub struct CandleBackend {
    config: ModelConfig,
    device: Device,
    word: Tensor,
    position: Tensor,
    segment: Option<Tensor>,
    embedding_norm: Option<LayerNorm>,
    layers: Vec<Layer>,
    final_norm: Option<LayerNorm>,
    heads: Vec<Vec<Op>>,
}

impl CandleBackend {
    /// Uploads the weights to `device`.
    pub fn new(config: ModelConfig, weights: ModelWeights, device: &Device) -> Result<Self> {
        let hidden = config.hidden_size;
        let table = |values: Vec<f32>| {
            let rows = values.len() / hidden.max(1);
            Tensor::from_vec(values, (rows, hidden), device)
        };
        let embeddings = weights.embeddings;
        let layers = weights
            .layers
            .into_iter()
            .map(|layer| {
                Ok(Layer {
                    query_key_value: Dense::new(layer.qkv, device)?,
                    attention_output: Dense::new(layer.attention_output, device)?,
                    attention_norm: LayerNorm::new(layer.attention_norm, device)?,
                    ffn_in: Dense::new(layer.ffn_in, device)?,
                    ffn_out: Dense::new(layer.ffn_out, device)?,
                    ffn_norm: LayerNorm::new(layer.ffn_norm, device)?,
                })
            })
            .collect::<Result<_>>()?;
        let heads = weights
            .heads
            .into_iter()
            .map(|head| {
                head.ops
                    .into_iter()
                    .map(|op| {
                        Ok(match op {
                            HeadOp::Linear(linear) => Op::Dense(Dense::new(linear, device)?),
                            HeadOp::TiedDecoder { bias } => Op::TiedDecoder(
                                bias.map(|bias| {
                                    let len = bias.len();
                                    Tensor::from_vec(bias, len, device)
                                })
                                .transpose()?,
                            ),
                            HeadOp::Activation(activation) => Op::Activation(activation),
                            HeadOp::Norm(norm) => Op::Norm(LayerNorm::new(norm, device)?),
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            device: device.clone(),
            word: table(embeddings.word)?,
            position: table(embeddings.position)?,
            segment: embeddings.segment.map(table).transpose()?,
            embedding_norm: embeddings
                .norm
                .map(|norm| LayerNorm::new(norm, device))
                .transpose()?,
            layers,
            final_norm: weights
                .final_norm
                .map(|norm| LayerNorm::new(norm, device))
                .transpose()?,
            heads,
            config,
        })
    }

    /// Waits for the device's queued work.
    pub fn synchronize(&self) -> Result<()> {
        Ok(self.device.synchronize()?)
    }

    /// One layer over `x` `[tokens, hidden]`, its self-attention computed by `attention` (the
    /// captured full square, or one step against a cache) from what the attention reads, which
    /// also hands back what it captured.
    fn layer_forward<C>(
        &self,
        layer: &Layer,
        x: &Tensor,
        attention: impl FnOnce(&Tensor) -> Result<(Tensor, C)>,
    ) -> Result<(Tensor, C)> {
        match self.config.architecture.norm {
            NormPlacement::Post => {
                let (context, capture) = attention(x)?;
                let attended = layer
                    .attention_norm
                    .forward(&layer.attention_output.forward(&context)?.add(x)?)?;
                let inner = activate(&layer.ffn_in.forward(&attended)?, self.config.hidden_act)?;
                let output = layer
                    .ffn_norm
                    .forward(&layer.ffn_out.forward(&inner)?.add(&attended)?)?;
                Ok((output, capture))
            }
            NormPlacement::Pre => {
                let (context, capture) = attention(&layer.attention_norm.forward(x)?)?;
                let attended = layer.attention_output.forward(&context)?.add(x)?;
                let inner = activate(
                    &layer.ffn_in.forward(&layer.ffn_norm.forward(&attended)?)?,
                    self.config.hidden_act,
                )?;
                let output = layer.ffn_out.forward(&inner)?.add(&attended)?;
                Ok((output, capture))
            }
        }
    }

    /// Self-attention over `x` `[tokens, hidden]`: the heads' context vectors `[tokens, hidden]`,
    /// and the capture. `future` marks the keys after each query (`[tokens, tokens]`, 1 =
    /// masked) for causal models; `input` says which heads are ablated and whether to compute
    /// the value norms.
    fn attention(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        future: Option<&Tensor>,
        input: &ForwardInput<'_>,
    ) -> Result<(Tensor, LayerCapture)> {
        let (tokens, hidden) = x.dims2()?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.head_dim();

        // [tokens, 3·hidden] → [3, heads, tokens, head_dim]
        let qkv = layer
            .query_key_value
            .forward(x)?
            .reshape((tokens, 3, heads, head_dim))?
            .permute((1, 2, 0, 3))?
            .contiguous()?;
        let queries = qkv.get(0)?;
        let keys = qkv.get(1)?;
        let values = qkv.get(2)?;

        let scale = f64::from(self.config.architecture.attention_scales[index]);
        let scores = (queries.matmul(&keys.t()?)? * scale)?;
        let probs = self.attention_probs(index, scores, future, input)?;
        let value_norms = if input.value_norms {
            // f_h = v_h · W_O[head's inputs, :]: [heads, tokens, hidden].
            let w = layer
                .attention_output
                .weight_t
                .reshape((heads, head_dim, hidden))?;
            Some(values.matmul(&w)?.sqr()?.sum(2)?.sqrt()?)
        } else {
            None
        };
        let context = probs
            .matmul(&values)?
            .transpose(0, 1)?
            .reshape((tokens, hidden))?;
        Ok((
            context,
            LayerCapture {
                probs,
                queries,
                keys,
                value_norms,
            },
        ))
    }
}

impl CandleBackend {
    /// Layer `index`'s attention probabilities from its scores `[heads, queries, keys]`: keys
    /// marked in `future` (`[queries, keys]`, 1 = after the query) get −∞, so the softmax gives
    /// them exactly 0, and the heads `input` ablates are multiplied by zero.
    fn attention_probs(
        &self,
        index: usize,
        mut scores: Tensor,
        future: Option<&Tensor>,
        input: &ForwardInput<'_>,
    ) -> Result<Tensor> {
        let heads = self.config.num_attention_heads;
        if let Some(future) = future {
            let blocked =
                Tensor::new(f32::NEG_INFINITY, &self.device)?.broadcast_as(scores.shape())?;
            scores = future
                .broadcast_as(scores.shape())?
                .where_cond(&blocked, &scores)?;
        }
        let mut probs = candle_nn::ops::softmax_last_dim(&scores)?;
        if (0..heads).any(|head| input.is_ablated(index, head)) {
            let kept: Vec<f32> = (0..heads)
                .map(|head| f32::from(u8::from(!input.is_ablated(index, head))))
                .collect();
            let kept =
                Tensor::from_vec(kept, (heads, 1, 1), &self.device)?.to_dtype(probs.dtype())?;
            probs = probs.broadcast_mul(&kept)?;
        }
        Ok(probs)
    }
}

impl Backend for CandleBackend {
    type Last = Tensor;

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn forward(&self, input: &ForwardInput<'_>) -> Result<(Captured, Tensor)> {
        let device = &self.device;
        let mut hidden = self.embed(input)?;

        let layers = self.layers.len();
        let mut hidden_states = Vec::with_capacity(layers + 1);
        let mut attentions = Vec::with_capacity(layers);
        let mut queries = Vec::with_capacity(layers);
        let mut keys = Vec::with_capacity(layers);
        let mut value_norms = Vec::with_capacity(layers);
        let tokens = input.ids.len();
        let future = if self.config.architecture.causal {
            let mask: Vec<u8> = (0..tokens)
                .flat_map(|query| (0..tokens).map(move |key| u8::from(key > query)))
                .collect();
            Some(Tensor::from_vec(mask, (tokens, tokens), device)?)
        } else {
            None
        };
        hidden_states.push(hidden.clone());
        for (index, layer) in self.layers.iter().enumerate() {
            let (output, step) = self.layer_forward(layer, &hidden, |x| {
                self.attention(index, layer, x, future.as_ref(), input)
            })?;
            hidden = output;
            if index + 1 == layers {
                if let Some(norm) = &self.final_norm {
                    hidden = norm.forward(&hidden)?;
                }
            }
            hidden_states.push(hidden.clone());
            attentions.push(step.probs);
            queries.push(step.queries);
            keys.push(step.keys);
            value_norms.extend(step.value_norms);
        }
        let captured = Captured {
            hidden_states: stack(&hidden_states)?,
            attentions: stack(&attentions)?,
            queries: stack(&queries)?,
            keys: stack(&keys)?,
            value_norms: if input.value_norms {
                Some(stack(&value_norms)?)
            } else {
                None
            },
        };
        Ok((captured, hidden))
    }

    fn head_logits(&self, last: &Tensor, head: usize, rows: &[usize]) -> Result<Vec<f32>> {
        if rows.is_empty() {
            return self.run_head(None, head);
        }
        let index: Vec<u32> = rows.iter().map(|&row| row as u32).collect();
        let x = last.index_select(&Tensor::new(index.as_slice(), &self.device)?, 0)?;
        self.run_head(Some(x), head)
    }

    fn head_logits_of_rows(
        &self,
        rows: &[f32],
        head: usize,
        final_norm: &[bool],
    ) -> Result<Vec<f32>> {
        let hidden = self.config.hidden_size;
        if rows.is_empty() {
            return self.run_head(None, head);
        }
        let count = rows.len() / hidden.max(1);
        let mut x = Tensor::from_slice(rows, (count, hidden), &self.device)?;
        if let Some(norm) = &self.final_norm {
            let flags: Vec<u8> = (0..count)
                .map(|row| u8::from(final_norm.get(row).copied().unwrap_or(false)))
                .collect();
            let flags =
                Tensor::from_vec(flags, (count, 1), &self.device)?.broadcast_as((count, hidden))?;
            x = flags.where_cond(&norm.forward(&x)?, &x)?;
        }
        self.run_head(Some(x), head)
    }

    fn embedding_rows(&self, input: &ForwardInput<'_>) -> Result<EmbeddingRows> {
        let gather = |table: &Tensor, ids: &[u32]| -> Result<Vec<f32>> {
            let rows = table.index_select(&Tensor::new(ids, &self.device)?, 0)?;
            Ok(rows.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        Ok(EmbeddingRows {
            word: gather(&self.word, input.ids)?,
            position: gather(&self.position, input.positions)?,
            segment: match (&self.segment, input.segments) {
                (Some(table), Some(segments)) => Some(gather(table, segments)?),
                _ => None,
            },
        })
    }
}
impl CandleBackend {
    /// The embedding output `[tokens, hidden]`.
    fn embed(&self, input: &ForwardInput<'_>) -> Result<Tensor> {
        let device = &self.device;
        let ids = Tensor::new(input.ids, device)?;
        let positions = Tensor::new(input.positions, device)?;
        // transformers adds word + segment first, then positions; the order matters in f32.
        let mut summed = self.word.index_select(&ids, 0)?;
        if let (Some(table), Some(segments)) = (&self.segment, input.segments) {
            summed = summed.add(&table.index_select(&Tensor::new(segments, device)?, 0)?)?;
        }
        summed = summed.add(&self.position.index_select(&positions, 0)?)?;
        Ok(match &self.embedding_norm {
            Some(norm) => norm.forward(&summed)?,
            None => summed,
        })
    }

    /// Runs head number `head` on rows `[count, hidden]` (`None`: no rows); returns the logits
    /// row-major.
    fn run_head(&self, x: Option<Tensor>, head: usize) -> Result<Vec<f32>> {
        let ops = self
            .heads
            .get(head)
            .ok_or_else(|| ModelError::Compute(format!("the model has no head {head}")))?;
        let Some(mut x) = x else {
            return Ok(Vec::new());
        };
        for op in ops {
            x = self.head_op(op, &x, false)?;
        }
        Ok(x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// One step of a head on rows `x`; `differentiable` uses the LayerNorm candle's autograd
    /// can differentiate.
    fn head_op(&self, op: &Op, x: &Tensor, differentiable: bool) -> Result<Tensor> {
        Ok(match op {
            Op::Dense(dense) => dense.forward(x)?,
            Op::TiedDecoder(bias) => {
                let logits = x.matmul(&self.word.t()?)?;
                match bias {
                    Some(bias) => logits.broadcast_add(bias)?,
                    None => logits,
                }
            }
            Op::Activation(activation) => activate(x, *activation)?,
            Op::Norm(norm) if differentiable => norm.forward_differentiable(x)?,
            Op::Norm(norm) => norm.forward(x)?,
        })
    }
}

/// Stacks per-layer tensors of equal shape, on their device, into one array with a leading
/// layer dimension, left there until a view asks for a piece.
fn stack(tensors: &[Tensor]) -> Result<CapturedArray> {
    if tensors.is_empty() {
        return Err(ModelError::Compute("nothing was captured".to_owned()));
    }
    let stacked = Tensor::stack(tensors, 0)?.to_dtype(DType::F32)?;
    Ok(CapturedArray::device(
        stacked.dims().to_vec(),
        Box::new(DeviceTensor(stacked)),
    ))
}

/// A captured tensor on the device that computed it (the host too, for candle's CPU path).
struct DeviceTensor(Tensor);

impl DeviceTensor {
    fn select(&self, leading: &[usize]) -> Result<Tensor> {
        let mut tensor = self.0.clone();
        for &index in leading {
            tensor = tensor.i(index)?;
        }
        Ok(tensor)
    }
}

impl DeviceArray for DeviceTensor {
    fn device(&self) -> String {
        format!("{:?}", self.0.device().location())
    }

    fn matrix(&self, leading: &[usize]) -> Result<Vec<f32>> {
        Ok(self.select(leading)?.flatten_all()?.to_vec1()?)
    }

    fn mean_matrix(&self, leading: &[usize]) -> Result<Vec<f32>> {
        Ok(self.select(leading)?.mean(0)?.flatten_all()?.to_vec1()?)
    }

    fn max_pooled(&self, factor: usize) -> Result<Vec<f32>> {
        let dims = self.0.dims();
        let [leading @ .., rows, cols] = dims else {
            return Err(ModelError::Compute("pooling needs a matrix".to_owned()));
        };
        let count = leading.iter().product::<usize>();
        // Zero padding never wins the maximum: every value pooled here is a probability.
        let padded = self
            .0
            .reshape((count, 1, *rows, *cols))?
            .pad_with_zeros(2, 0, rows.div_ceil(factor) * factor - rows)?
            .pad_with_zeros(3, 0, cols.div_ceil(factor) * factor - cols)?;
        Ok(padded
            .max_pool2d_with_stride(factor, factor)?
            .flatten_all()?
            .to_vec1()?)
    }

    fn to_host(&self) -> Result<Vec<f32>> {
        Ok(self.0.flatten_all()?.to_vec1()?)
    }
}

impl Interventions for CandleBackend {
    fn embedding_output(&self, input: &ForwardInput<'_>) -> Result<Vec<f32>> {
        Ok(self
            .embed(input)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    fn batch_logits(&self, run: &BatchRun<'_>) -> Result<Vec<f32>> {
        Ok(self.run_batch(run, false)?.logits)
    }

    fn batch_gradients(&self, run: &BatchRun<'_>) -> Result<Gradients> {
        if run.head_patch.is_some() {
            return Err(ModelError::Compute(
                "gradients of patched runs are not computed".to_owned(),
            ));
        }
        self.run_batch(run, true)
    }

    fn trace(&self, input: &ForwardInput<'_>) -> Result<Trace> {
        self.trace_candle(input)
    }

    fn head_outputs(&self, layer: usize, context: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        self.head_outputs_candle(layer, context)
    }

    fn readout(&self, head: usize, output: usize) -> Result<Option<Readout>> {
        self.readout_candle(head, output)
    }
}

impl Incremental for CandleBackend {
    fn extend(&self, cache: &mut KvCache, input: &ForwardInput<'_>) -> Result<Extended> {
        self.extend_candle(cache, input)
    }
}
