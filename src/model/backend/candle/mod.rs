//! The candle backend: the order of operations a description gives, in candle's tensor ops, so
//! that it runs on GPUs (and on the CPU, where tests compare it with the tuned backend). It keeps
//! what transformers computes and then throws away: every layer's attention probabilities,
//! queries, keys and hidden states.
//!
//! One sequence without padding runs as 2-D `[tokens, hidden]` tensors: with no padding the
//! attention mask adds zeros, so leaving it out is exact.

mod batch;
mod decode;
mod fused;
mod train;

pub(crate) use fused::host_slice;
pub use train::{DropoutRates, Dropouts, TrainBatch};

use candle_core::{DType, Device, IndexOp, Shape, Tensor, Var};

use super::{
    Backend, BatchRun, Captured, EmbeddingRows, Extended, ForwardInput, Gradients, Incremental,
    Interventions, KvCache, Readout, Trace,
};
use crate::model::captured::{CapturedArray, DeviceArray, KeptFloats};
use crate::model::config::{Activation, KeyWindow, ModelConfig, NormPlacement};
use crate::model::error::{ModelError, Result};
use crate::model::params::{self, HeadOp, ModelWeights, NormKind};

/// Makes the backend's parameter tensors on a device: plain tensors, or variables candle's
/// autograd differentiates with respect to (for training).
#[derive(Clone, Copy)]
struct Maker<'a> {
    device: &'a Device,
    trainable: bool,
}

impl Maker<'_> {
    fn tensor(&self, values: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
        Ok(if self.trainable {
            Var::from_vec(values, shape, self.device)?.into_inner()
        } else {
            Tensor::from_vec(values, shape, self.device)?
        })
    }
}

/// A dense layer `y = x·W + b` with `W` read transposed, `[in, out]`: stored so for inference,
/// so every matmul reads both operands row-major; a view of the trainable `[out, in]` weight
/// for training.
struct Dense {
    weight_t: Tensor,
    bias: Option<Tensor>,
    /// The trainable weight `[out, in]`, whose view `weight_t` is.
    weight: Option<Tensor>,
}

impl Dense {
    fn new(linear: params::Linear, maker: Maker<'_>) -> Result<Self> {
        let weight = maker.tensor(linear.weight, (linear.outputs, linear.inputs))?;
        let bias = linear
            .bias
            .map(|bias| maker.tensor(bias, linear.outputs))
            .transpose()?;
        Ok(if maker.trainable {
            Self {
                weight_t: weight.t()?,
                bias,
                weight: Some(weight),
            }
        } else {
            Self {
                weight_t: weight.t()?.contiguous()?,
                bias,
                weight: None,
            }
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(weight) = self.weight.as_ref().filter(|_| fused::on_host(x)) {
            return Ok(fused::linear(x, weight, self.bias.as_ref())?);
        }
        let product = if self.weight.is_some() && x.rank() > 2 {
            // Rows of every item in one product, which reads the transposed view as it is.
            let dims = x.dims();
            let rows = dims[..dims.len() - 1].iter().product::<usize>();
            let outputs = self.weight_t.dim(1)?;
            let mut shape = dims[..dims.len() - 1].to_vec();
            shape.push(outputs);
            x.reshape((rows, dims[dims.len() - 1]))?
                .matmul(&self.weight_t)?
                .reshape(shape)?
        } else {
            x.broadcast_matmul(&self.weight_t)?
        };
        Ok(match &self.bias {
            Some(bias) => product.broadcast_add(bias)?,
            None => product,
        })
    }

    /// The trainable tensors: weight `[out, in]`, then bias.
    fn parameters<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
        out.extend(self.weight.as_ref());
        out.extend(self.bias.as_ref());
    }
}

/// LayerNorm or RMSNorm over the last dimension.
struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f32,
    kind: NormKind,
}

impl LayerNorm {
    fn new(norm: params::Norm, maker: Maker<'_>) -> Result<Self> {
        let width = norm.gamma.len();
        Ok(Self {
            gamma: maker.tensor(norm.gamma, width)?,
            beta: maker.tensor(norm.beta, width)?,
            eps: norm.eps as f32,
            kind: norm.kind,
        })
    }

    /// The trainable tensors, as [`params::ModelWeights::arrays_mut`] lists a norm's arrays.
    fn parameters<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
        match self.kind {
            NormKind::Layer => out.extend([&self.gamma, &self.beta]),
            NormKind::Rms => out.push(&self.gamma),
            NormKind::Identity => {}
        }
    }

    /// The same, in ops candle can differentiate (its fused kernels have no backward pass):
    /// on the host, one fused op with its own backward pass.
    fn forward_differentiable(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.kind {
            NormKind::Layer if fused::on_host(x) => {
                fused::layer_norm(x, &self.gamma, &self.beta, self.eps)?
            }
            NormKind::Layer => {
                candle_nn::ops::layer_norm_slow(x, &self.gamma, &self.beta, self.eps)?
            }
            NormKind::Rms => candle_nn::ops::rms_norm_slow(x, &self.gamma, self.eps)?,
            NormKind::Identity => x.clone(),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self.kind {
            NormKind::Layer => candle_nn::ops::layer_norm(x, &self.gamma, &self.beta, self.eps)?,
            NormKind::Rms => candle_nn::ops::rms_norm(x, &self.gamma, self.eps)?,
            NormKind::Identity => x.clone(),
        })
    }
}

/// The activation of `x`: on the host the tuned kernel, fused with its backward pass.
fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    if fused::on_host(x) {
        return Ok(fused::activate(x, activation)?);
    }
    Ok(match activation {
        Activation::GeluErf => x.gelu_erf()?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Relu => x.relu()?,
        Activation::Tanh => x.tanh()?,
        Activation::Silu => x.silu()?,
    })
}

struct Layer {
    query_key_value: Dense,
    query_norm: Option<LayerNorm>,
    key_norm: Option<LayerNorm>,
    attention_output: Dense,
    attention_norm: LayerNorm,
    ffn_in: Dense,
    ffn_out: Dense,
    ffn_norm: LayerNorm,
    attention_post_norm: Option<LayerNorm>,
    ffn_post_norm: Option<LayerNorm>,
}

enum Op {
    Dense(Dense),
    TiedDecoder(Option<Tensor>),
    Activation(Activation),
    Norm(LayerNorm),
    SoftCap(f32),
    MeanPool,
}

/// Soft-capping, `c·tanh(x/c)`, in transformers' order of operations.
fn soft_cap(x: &Tensor, cap: f32) -> Result<Tensor> {
    let cap = f64::from(cap);
    Ok(((x / cap)?.tanh()? * cap)?)
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
    position: Option<Tensor>,
    segment: Option<Tensor>,
    embedding_norm: Option<LayerNorm>,
    layers: Vec<Layer>,
    final_norm: Option<LayerNorm>,
    heads: Vec<Vec<Op>>,
}

impl CandleBackend {
    /// Uploads the weights to `device`.
    pub fn new(config: ModelConfig, weights: ModelWeights, device: &Device) -> Result<Self> {
        Self::build(
            config,
            weights,
            Maker {
                device,
                trainable: false,
            },
        )
    }

    /// Uploads the weights to `device` as variables, for training; [`CandleBackend::parameters`]
    /// lists them.
    pub fn trainable(config: ModelConfig, weights: ModelWeights, device: &Device) -> Result<Self> {
        Self::build(
            config,
            weights,
            Maker {
                device,
                trainable: true,
            },
        )
    }

    fn build(config: ModelConfig, weights: ModelWeights, maker: Maker<'_>) -> Result<Self> {
        let device = maker.device;
        let hidden = config.hidden_size;
        let table = |values: Vec<f32>| {
            let rows = values.len() / hidden.max(1);
            maker.tensor(values, (rows, hidden))
        };
        let embeddings = weights.embeddings;
        let layers = weights
            .layers
            .into_iter()
            .map(|layer| {
                let norm = |norm: Option<params::Norm>| {
                    norm.map(|norm| LayerNorm::new(norm, maker)).transpose()
                };
                Ok(Layer {
                    query_key_value: Dense::new(layer.qkv, maker)?,
                    query_norm: norm(layer.query_norm)?,
                    key_norm: norm(layer.key_norm)?,
                    attention_output: Dense::new(layer.attention_output, maker)?,
                    attention_norm: LayerNorm::new(layer.attention_norm, maker)?,
                    ffn_in: Dense::new(layer.ffn_in, maker)?,
                    ffn_out: Dense::new(layer.ffn_out, maker)?,
                    ffn_norm: LayerNorm::new(layer.ffn_norm, maker)?,
                    attention_post_norm: norm(layer.attention_post_norm)?,
                    ffn_post_norm: norm(layer.ffn_post_norm)?,
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
                            HeadOp::Linear(linear) => Op::Dense(Dense::new(linear, maker)?),
                            HeadOp::TiedDecoder { bias } => Op::TiedDecoder(
                                bias.map(|bias| {
                                    let len = bias.len();
                                    maker.tensor(bias, len)
                                })
                                .transpose()?,
                            ),
                            HeadOp::Activation(activation) => Op::Activation(activation),
                            HeadOp::Norm(norm) => Op::Norm(LayerNorm::new(norm, maker)?),
                            HeadOp::SoftCap(cap) => Op::SoftCap(cap),
                            HeadOp::MeanPool => Op::MeanPool,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            device: device.clone(),
            word: table(embeddings.word)?,
            position: embeddings.position.map(table).transpose()?,
            segment: embeddings.segment.map(table).transpose()?,
            embedding_norm: embeddings
                .norm
                .map(|norm| LayerNorm::new(norm, maker))
                .transpose()?,
            layers,
            final_norm: weights
                .final_norm
                .map(|norm| LayerNorm::new(norm, maker))
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
                let inner = self.ffn_inner(layer, &attended)?;
                let output = layer
                    .ffn_norm
                    .forward(&layer.ffn_out.forward(&inner)?.add(&attended)?)?;
                Ok((output, capture))
            }
            NormPlacement::Pre => {
                let (context, capture) = attention(&layer.attention_norm.forward(x)?)?;
                let post = |norm: &Option<LayerNorm>, out: Tensor| match norm {
                    Some(norm) => norm.forward(&out),
                    None => Ok(out),
                };
                let attended = post(
                    &layer.attention_post_norm,
                    layer.attention_output.forward(&context)?,
                )?
                .add(x)?;
                let inner = self.ffn_inner(layer, &layer.ffn_norm.forward(&attended)?)?;
                let output =
                    post(&layer.ffn_post_norm, layer.ffn_out.forward(&inner)?)?.add(&attended)?;
                Ok((output, capture))
            }
        }
    }

    /// The feed-forward block's activated middle: `act(W₁·x + b₁)`, or for a gated block
    /// `act(gate) · up`.
    fn ffn_inner(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let stacked = layer.ffn_in.forward(x)?;
        let act = self.config.hidden_act;
        if !self.config.architecture.gated_ffn {
            return activate(&stacked, act);
        }
        let inner = self.config.intermediate_size;
        let last = stacked.rank() - 1;
        Ok(activate(&stacked.narrow(last, 0, inner)?, act)?
            .mul(&stacked.narrow(last, inner, inner)?)?)
    }

    /// Layer `index`'s queries `[…, heads, tokens, head_dim]`, keys and values
    /// `[…, kv_heads, tokens, head_dim]` of `x` `[…, tokens, hidden]` (any leading item
    /// dimension) at `positions`: projected, each query and key head normalised where the family
    /// does, then turned by the rotary embedding where it has one. With `differentiable`, in
    /// the composed ops candle's autograd differentiates instead of its fused kernels.
    fn project_heads(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        positions: &[u32],
        differentiable: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let tokens = positions.len();
        let leading = &x.dims()[..x.rank() - 2];
        let last = x.rank() - 1;
        let (heads, kv_heads) = (
            self.config.num_attention_heads,
            self.config.num_key_value_heads,
        );
        let head_dim = self.config.head_dim();
        let (query_width, kv_width) = (self.config.query_width(), self.config.kv_width());
        let qkv = layer.query_key_value.forward(x)?;
        let split = |start: usize, count: usize| -> Result<Tensor> {
            let shape = [leading, &[tokens, count, head_dim]].concat();
            Ok(qkv
                .narrow(last, start, count * head_dim)?
                .reshape(shape)?
                .transpose(last - 1, last)?
                .contiguous()?)
        };
        let normed = |norm: &LayerNorm, x: &Tensor| {
            if differentiable {
                norm.forward_differentiable(x)
            } else {
                norm.forward(x)
            }
        };
        let mut queries = split(0, heads)?;
        let mut keys = split(query_width, kv_heads)?;
        let values = split(query_width + kv_width, kv_heads)?;
        if let Some(norm) = &layer.query_norm {
            queries = normed(norm, &queries)?;
        }
        if let Some(norm) = &layer.key_norm {
            keys = normed(norm, &keys)?;
        }
        if let Some(rotary) = self.config.architecture.rotary(index) {
            let (cos, sin) = rotary.tables(positions);
            let half = head_dim / 2;
            let cos =
                Tensor::from_vec(cos, (tokens, half), &self.device)?.to_dtype(queries.dtype())?;
            let sin =
                Tensor::from_vec(sin, (tokens, half), &self.device)?.to_dtype(queries.dtype())?;
            // Both ropes take `[items, heads, tokens, head_dim]`.
            let turn = |x: &Tensor| -> Result<Tensor> {
                let batched = if leading.is_empty() {
                    x.unsqueeze(0)?
                } else {
                    x.clone()
                };
                let turned = if differentiable {
                    candle_nn::rotary_emb::rope_slow(&batched, &cos, &sin)?
                } else {
                    candle_nn::rotary_emb::rope(&batched, &cos, &sin)?
                };
                Ok(if leading.is_empty() {
                    turned.squeeze(0)?
                } else {
                    turned
                })
            };
            queries = turn(&queries)?;
            keys = turn(&keys)?;
        }
        Ok((queries, keys, values))
    }

    /// Attention scores soft-capped where the family caps them.
    fn capped(&self, scores: Tensor) -> Result<Tensor> {
        match self.config.architecture.attention_softcap {
            Some(cap) => soft_cap(&scores, cap),
            None => Ok(scores),
        }
    }

    /// Key or value heads `[…, kv_heads, tokens, head_dim]` repeated for the query heads that
    /// read them, `[…, heads, tokens, head_dim]` (itself without grouped-query attention).
    fn per_query_head(&self, kv: &Tensor) -> Result<Tensor> {
        let heads = self.config.num_attention_heads;
        if self.config.num_key_value_heads == heads {
            return Ok(kv.clone());
        }
        let index: Vec<u32> = (0..heads)
            .map(|head| self.config.kv_head(head) as u32)
            .collect();
        let axis = kv.rank() - 3;
        Ok(kv.index_select(&Tensor::new(index.as_slice(), &self.device)?, axis)?)
    }

    /// The keys layer `index` hides from `queries` new queries after `past` earlier tokens
    /// (`[queries, past + queries]`, 1 = masked): those after each query in causal models and
    /// those outside its window; `None` when it hides none.
    fn hidden_keys(&self, index: usize, past: usize, queries: usize) -> Result<Option<Tensor>> {
        self.hidden_key_mask(index, past, queries)
            .map(|mask| Tensor::from_vec(mask, (queries, past + queries), &self.device))
            .transpose()
            .map_err(Into::into)
    }

    /// [`CandleBackend::hidden_keys`] on the host.
    fn hidden_key_mask(&self, index: usize, past: usize, queries: usize) -> Option<Vec<u8>> {
        let total = past + queries;
        let architecture = &self.config.architecture;
        let mut any = false;
        let mask: Vec<u8> = (past..total)
            .flat_map(|query| {
                let seen = architecture.keys_seen(index, query, total);
                any |= seen.len() < total;
                (0..total).map(move |key| u8::from(!seen.contains(&key)))
            })
            .collect();
        any.then_some(mask)
    }

    /// Self-attention over `x` `[tokens, hidden]` at `positions`: the heads' context vectors
    /// `[tokens, heads·head_dim]`, and the capture. `hidden_keys` is the layer's mask
    /// ([`CandleBackend::hidden_keys`]); `input` says which heads are ablated and whether to
    /// compute the value norms.
    fn attention(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        hidden_keys: Option<&Tensor>,
        input: &ForwardInput<'_>,
    ) -> Result<(Tensor, LayerCapture)> {
        let tokens = input.ids.len();
        let hidden = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.head_dim();
        let (queries, keys, values) =
            self.project_heads(index, layer, x, input.positions, false)?;
        let keys = self.per_query_head(&keys)?;
        let values = self.per_query_head(&values)?;

        let scale = f64::from(self.config.architecture.attention_scales[index]);
        let scores = self.capped((queries.matmul(&keys.t()?)? * scale)?)?;
        let probs = self.attention_probs(index, scores, hidden_keys, input)?;
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
            .reshape((tokens, heads * head_dim))?;
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
    /// marked in `future` (`[queries, keys]`, 1 = hidden from the query) get −∞, so the softmax
    /// gives them exactly 0, and the heads `input` ablates are multiplied by zero.
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
        let mut hidden = self.embed(input)?;

        let layers = self.layers.len();
        let mut hidden_states = Vec::with_capacity(layers + 1);
        let mut attentions = Vec::with_capacity(layers);
        let mut queries = Vec::with_capacity(layers);
        let mut keys = Vec::with_capacity(layers);
        let mut value_norms = Vec::with_capacity(layers);
        hidden_states.push(hidden.clone());
        // One mask per kind of window, made once for the layers that share it.
        let mut masks: Vec<(KeyWindow, Option<Tensor>)> = Vec::new();
        for (index, layer) in self.layers.iter().enumerate() {
            let window = self.config.architecture.window(index);
            let mask = match masks.iter().find(|(kind, _)| *kind == window) {
                Some((_, mask)) => mask.clone(),
                None => {
                    let mask = self.hidden_keys(index, 0, input.ids.len())?;
                    masks.push((window, mask.clone()));
                    mask
                }
            };
            let (output, step) = self.layer_forward(layer, &hidden, |x| {
                self.attention(index, layer, x, mask.as_ref(), input)
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

    fn head_logits(&self, last: &Tensor, head: usize, rows: &[usize]) -> Result<KeptFloats> {
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
    ) -> Result<KeptFloats> {
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
        let mut word = gather(&self.word, input.ids)?;
        if let Some(scale) = self.config.architecture.embedding_scale {
            word.iter_mut().for_each(|w| *w *= scale);
        }
        Ok(EmbeddingRows {
            word,
            position: self
                .position
                .as_ref()
                .map(|table| gather(table, input.positions))
                .transpose()?,
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
        if let Some(scale) = self.config.architecture.embedding_scale {
            summed = (summed * f64::from(scale))?;
        }
        if let (Some(table), Some(segments)) = (&self.segment, input.segments) {
            summed = summed.add(&table.index_select(&Tensor::new(segments, device)?, 0)?)?;
        }
        if let Some(table) = &self.position {
            summed = summed.add(&table.index_select(&positions, 0)?)?;
        }
        Ok(match &self.embedding_norm {
            Some(norm) => norm.forward(&summed)?,
            None => summed,
        })
    }

    /// Runs head number `head` on rows `[count, hidden]` (`None`: no rows); returns the logits
    /// row-major.
    fn run_head(&self, x: Option<Tensor>, head: usize) -> Result<KeptFloats> {
        let ops = self
            .heads
            .get(head)
            .ok_or_else(|| ModelError::Compute(format!("the model has no head {head}")))?;
        let Some(mut x) = x else {
            return Ok(KeptFloats::default());
        };
        for op in ops {
            x = self.head_op(op, &x, false)?;
        }
        Ok(KeptFloats::new(
            x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        ))
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
            Op::SoftCap(cap) => soft_cap(x, *cap)?,
            // The rows are the first dimension of a head's input, `[rows, hidden]`.
            Op::MeanPool => x.mean_keepdim(0)?,
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
