//! Batched runs from a layer on, in candle's ops, differentiated by candle's autograd: the
//! GPU side of [`Backend::batch_logits`], [`Backend::batch_gradients`] and [`Backend::trace`].
//! Items are a leading batch dimension (`[items, tokens, hidden]`). The norms, softmaxes and
//! rotary embeddings are candle's composed ops, which its autograd differentiates, instead of
//! its fused kernels, which it cannot; in host memory the dense layers, plain attention,
//! softmaxes, LayerNorms and dropout are this backend's own fused ops (`fused.rs`) instead.
//!
//! [`Backend::batch_logits`]: super::super::Backend::batch_logits
//! [`Backend::batch_gradients`]: super::super::Backend::batch_gradients
//! [`Backend::trace`]: super::super::Backend::trace

use candle_core::{DType, IndexOp, Tensor, Var, D};

use super::fused;
use super::train::Training;
use super::{soft_cap, CandleBackend, Layer, LayerNorm, Op};
use crate::model::backend::{BatchRun, ForwardInput, Gradients, LogitIndex, Readout, Trace};
use crate::model::config::NormPlacement;
use crate::model::error::{ModelError, Result};
use crate::model::params::NormKind;
use crate::model::prediction_heads;
use crate::model::target::TOP_OUTPUT;

/// `norm(dropout(a) + residual)`, how a post-norm block ends, with dropout at the rate `rate`
/// gives when training: on the host one fused op that keeps only its output on the tape.
fn residual_norm(
    norm: &LayerNorm,
    a: &Tensor,
    residual: &Tensor,
    training: Option<&Training<'_>>,
    rate: fn(&Training<'_>) -> f32,
) -> Result<Tensor> {
    if fused::on_host(a) && norm.kind == NormKind::Layer {
        let dropout =
            training.and_then(|training| training.dropout_mask(a.elem_count(), rate(training)));
        return Ok(fused::residual_layer_norm(
            a,
            residual,
            (&norm.gamma, &norm.beta, norm.eps),
            dropout,
        )?);
    }
    let dropped = match training {
        Some(training) => training.dropped(a, rate(training))?,
        None => a.clone(),
    };
    norm.forward_differentiable(&dropped.add(residual)?)
}

/// A head patch on the device: which (item, head) pairs are replaced, `[items, heads, 1, 1]`,
/// and the replacements, `[heads, tokens, head_dim]`.
pub(super) struct DevicePatch {
    chosen: Tensor,
    contexts: Tensor,
}

impl CandleBackend {
    /// One layer over `x` `[items, tokens, hidden]`: its output, the residual stream after its
    /// attention block and the heads' context vectors `[items, tokens, heads·head_dim]`, in the
    /// order of the forward's `layer_forward` with differentiable norms. A training run also
    /// masks padding and drops out where the family does.
    pub(super) fn batch_layer(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        patch: Option<&DevicePatch>,
        training: Option<&Training<'_>>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let dropped = |x: Tensor, rate: fn(&Training<'_>) -> f32| match training {
            Some(training) => training.dropped(&x, rate(training)),
            None => Ok(x),
        };
        let attention_rate = |training: &Training<'_>| training.rates.attention_output;
        let ffn_rate = |training: &Training<'_>| training.rates.ffn_output;
        match self.config.architecture.norm {
            NormPlacement::Post => {
                let context = self.batch_attention(index, layer, x, patch, training)?;
                let attended = residual_norm(
                    &layer.attention_norm,
                    &layer.attention_output.forward(&context)?,
                    x,
                    training,
                    attention_rate,
                )?;
                let output = residual_norm(
                    &layer.ffn_norm,
                    &self.ffn_block(layer, &attended)?,
                    &attended,
                    training,
                    ffn_rate,
                )?;
                Ok((output, attended, context))
            }
            NormPlacement::Pre => {
                let normed = layer.attention_norm.forward_differentiable(x)?;
                let context = self.batch_attention(index, layer, &normed, patch, training)?;
                let post = |norm: &Option<LayerNorm>, out: Tensor| match norm {
                    Some(norm) => norm.forward_differentiable(&out),
                    None => Ok(out),
                };
                let attended = post(
                    &layer.attention_post_norm,
                    dropped(layer.attention_output.forward(&context)?, attention_rate)?,
                )?
                .add(x)?;
                let normed = layer.ffn_norm.forward_differentiable(&attended)?;
                let output = post(
                    &layer.ffn_post_norm,
                    dropped(self.ffn_block(layer, &normed)?, ffn_rate)?,
                )?
                .add(&attended)?;
                Ok((output, attended, context))
            }
        }
    }

    /// The feed-forward block's output before dropout. On the host with trainable weights the
    /// activation is fused into the second layer, so its output is never kept on the tape.
    fn ffn_block(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let second = &layer.ffn_out;
        match &second.weight {
            Some(weight) if fused::on_host(x) && !self.config.architecture.gated_ffn => {
                Ok(fused::activated_linear(
                    &layer.ffn_in.forward(x)?,
                    self.config.hidden_act,
                    weight,
                    second.bias.as_ref(),
                )?)
            }
            _ => second.forward(&self.ffn_inner(layer, x)?),
        }
    }

    /// Self-attention of every item: the context vectors `[items, tokens, heads·head_dim]`.
    fn batch_attention(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        patch: Option<&DevicePatch>,
        training: Option<&Training<'_>>,
    ) -> Result<Tensor> {
        let (items, tokens, _) = x.dims3()?;
        let scale = f64::from(self.config.architecture.attention_scales[index]);
        let padding_keys = training.and_then(|training| training.padding_keys.as_deref());
        if self.fuses_attention(index, layer, x) && patch.is_none() {
            let heads = self.config.num_attention_heads;
            let hidden = self.host_hidden_keys(index, items, tokens, padding_keys);
            let dropout = training.and_then(|training| {
                training.dropout_mask(items * heads * tokens * tokens, training.rates.attention)
            });
            let qkv = layer.query_key_value.forward(x)?;
            return Ok(fused::attention(
                &qkv,
                heads,
                scale as f32,
                hidden,
                dropout,
            )?);
        }
        let positions: Vec<u32> = (0..tokens as u32).collect();
        let (queries, keys, values) = self.project_heads(index, layer, x, &positions, true)?;
        let (keys, values) = (self.per_query_head(&keys)?, self.per_query_head(&values)?);
        let mut probs =
            if fused::on_host(&queries) && self.config.architecture.attention_softcap.is_none() {
                let hidden = self.host_hidden_keys(index, items, tokens, padding_keys);
                fused::attention_softmax(&queries.matmul(&keys.t()?)?, scale as f32, hidden)?
            } else {
                self.composed_attention_probs(index, &queries, &keys, scale, training)?
            };
        if let Some(training) = training {
            probs = training.dropped(&probs, training.rates.attention)?;
        }
        let mut context = probs.matmul(&values)?;
        if let Some(patch) = patch {
            let kept = patch.chosen.affine(-1.0, 1.0)?;
            context = context
                .broadcast_mul(&kept)?
                .add(&patch.contexts.broadcast_mul(&patch.chosen)?)?;
        }
        Ok(context
            .transpose(1, 2)?
            .reshape((items, tokens, self.config.query_width()))?)
    }

    /// Whether layer `index`'s attention over `x` runs as one fused host op: plain multi-head
    /// attention (no query or key norms, rotary embedding, soft-capping or shared key heads).
    fn fuses_attention(&self, index: usize, layer: &Layer, x: &Tensor) -> bool {
        let architecture = &self.config.architecture;
        fused::on_host(x)
            && layer.query_norm.is_none()
            && layer.key_norm.is_none()
            && architecture.rotary(index).is_none()
            && architecture.attention_softcap.is_none()
            && self.config.num_key_value_heads == self.config.num_attention_heads
            && self.config.query_width() == self.config.kv_width()
    }

    /// The keys each query of each item may not see, `[items, tokens, tokens]` on the host: the
    /// layer's own mask (causality, windows) and padding (`[items, tokens]`, 1 = padding).
    fn host_hidden_keys(
        &self,
        index: usize,
        items: usize,
        tokens: usize,
        padding_keys: Option<&[u8]>,
    ) -> Option<fused::HiddenKeys> {
        let layer_mask = self.hidden_key_mask(index, 0, tokens);
        if layer_mask.is_none() && padding_keys.is_none() {
            return None;
        }
        let hidden: Vec<u8> = (0..items * tokens * tokens)
            .map(|at| {
                let (item, query, key) =
                    (at / (tokens * tokens), (at / tokens) % tokens, at % tokens);
                let by_layer = layer_mask
                    .as_ref()
                    .is_some_and(|mask| mask[query * tokens + key] != 0);
                let by_padding =
                    padding_keys.is_some_and(|padding| padding[item * tokens + key] != 0);
                u8::from(by_layer || by_padding)
            })
            .collect();
        Some(fused::HiddenKeys {
            queries: tokens,
            keys: tokens,
            hidden: std::sync::Arc::new(hidden),
        })
    }

    /// The attention probabilities in candle's composed ops, which run on every device.
    fn composed_attention_probs(
        &self,
        index: usize,
        queries: &Tensor,
        keys: &Tensor,
        scale: f64,
        training: Option<&Training<'_>>,
    ) -> Result<Tensor> {
        let tokens = queries.dim(D::Minus2)?;
        let mut scores = self.capped((queries.matmul(&keys.t()?)? * scale)?)?;
        if let Some(hidden) = self.hidden_keys(index, 0, tokens)? {
            let blocked =
                Tensor::new(f32::NEG_INFINITY, &self.device)?.broadcast_as(scores.shape())?;
            scores = hidden
                .broadcast_as(scores.shape())?
                .where_cond(&blocked, &scores)?;
        }
        if let Some(padding) = training.and_then(|training| training.padding.as_ref()) {
            let blocked =
                Tensor::new(f32::NEG_INFINITY, &self.device)?.broadcast_as(scores.shape())?;
            scores = padding
                .broadcast_as(scores.shape())?
                .where_cond(&blocked, &scores)?;
        }
        Ok(candle_nn::ops::softmax(&scores, D::Minus1)?)
    }

    /// The head patch of a run, on the device.
    fn device_patch(&self, run: &BatchRun<'_>, items: usize) -> Result<Option<DevicePatch>> {
        let Some(patch) = run.head_patch else {
            return Ok(None);
        };
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.head_dim();
        if patch.heads.len() != items || patch.heads.iter().any(|&head| head >= heads) {
            return Err(ModelError::Compute(
                "a head patch does not fit its batch".to_owned(),
            ));
        }
        let chosen: Vec<f32> = patch
            .heads
            .iter()
            .flat_map(|&chosen| (0..heads).map(move |head| f32::from(u8::from(head == chosen))))
            .collect();
        let contexts =
            Tensor::from_slice(patch.contexts, (run.tokens, heads, head_dim), &self.device)?
                .transpose(0, 1)?
                .contiguous()?;
        Ok(Some(DevicePatch {
            chosen: Tensor::from_vec(chosen, (items, heads, 1, 1), &self.device)?,
            contexts,
        }))
    }

    /// The logit of every item and, with `backward`, the gradients with respect to the states.
    pub(super) fn run_batch(&self, run: &BatchRun<'_>, backward: bool) -> Result<Gradients> {
        let hidden = self.config.hidden_size;
        let items = run.items(hidden);
        if run.tokens == 0 || items * run.tokens * hidden != run.states.len() {
            return Err(ModelError::Compute(
                "a batch that is not whole items".to_owned(),
            ));
        }
        if run.logit.row >= run.tokens || run.start_layer > self.layers.len() {
            return Err(ModelError::Compute(
                "a batch reads a row or starts at a layer the model lacks".to_owned(),
            ));
        }
        let states = Tensor::from_slice(run.states, (items, run.tokens, hidden), &self.device)?;
        let var = backward.then(|| Var::from_tensor(&states)).transpose()?;
        let mut x = var.as_ref().map_or(states, |var| var.as_tensor().clone());
        let patch = self.device_patch(run, items)?;
        for (index, layer) in self.layers.iter().enumerate().skip(run.start_layer) {
            let patch = patch.as_ref().filter(|_| index == run.start_layer);
            x = self.batch_layer(index, layer, &x, patch, None)?.0;
        }
        if let Some(norm) = &self.final_norm {
            x = norm.forward_differentiable(&x)?;
        }
        let (logits, outputs) = self.batch_head_logit(&x.i((.., run.logit.row, ..))?, run.logit)?;
        let values = logits.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let Some(var) = var else {
            return Ok(Gradients {
                logits: values,
                outputs,
                states: Vec::new(),
            });
        };
        let grads = logits.sum_all()?.backward()?;
        let grad = grads.get(var.as_tensor()).ok_or_else(|| {
            ModelError::Compute("the logit does not depend on the states".to_owned())
        })?;
        Ok(Gradients {
            logits: values,
            outputs,
            states: grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        })
    }

    /// One logit of a head over rows `[items, hidden]`: `[items]`, and which output each is.
    /// The head's last product computes only the one output asked for, or every output when
    /// the top one is asked for.
    fn batch_head_logit(&self, rows: &Tensor, logit: LogitIndex) -> Result<(Tensor, Vec<usize>)> {
        let ops = self
            .heads
            .get(logit.head)
            .ok_or_else(|| ModelError::Compute(format!("the model has no head {}", logit.head)))?;
        // A final soft-cap (Gemma's) is applied to the product's one output below.
        let (ops, cap) = match ops.split_last() {
            Some((Op::SoftCap(cap), ops)) => (ops, Some(*cap)),
            _ => (ops.as_slice(), None),
        };
        let Some((last, before)) = ops.split_last() else {
            return Err(ModelError::Compute("a head without operations".to_owned()));
        };
        if before.iter().any(|op| matches!(op, Op::MeanPool)) {
            // The batch hands the head one row of each item; a mean-pooled head reads them all.
            return Err(ModelError::BadInput(
                "a mean-pooled classifier is not attributed yet: its logit reads every token"
                    .to_owned(),
            ));
        }
        let mut x = rows.clone();
        for op in before {
            x = self.head_op(op, &x, true)?;
        }
        let capped = |logits: Tensor| match cap {
            Some(cap) => soft_cap(&logits, cap),
            None => Ok(logits),
        };
        let items = rows.dim(0)?;
        if logit.output == TOP_OUTPUT {
            if matches!(last, Op::Activation(_) | Op::Norm(_)) {
                return Err(ModelError::Compute(
                    "a head that does not end in a product".to_owned(),
                ));
            }
            let all = self.head_op(last, &x, true)?;
            let host = all.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            // The first of equal maxima, as the predictions rank them.
            let outputs: Vec<usize> = host
                .iter()
                .map(|row| prediction_heads::argmax(row))
                .collect();
            let index: Vec<u32> = outputs.iter().map(|&o| o as u32).collect();
            let index = Tensor::from_vec(index, (items, 1), &self.device)?;
            return Ok((capped(all.gather(&index, 1)?.squeeze(1)?)?, outputs));
        }
        let (column, bias) = match last {
            Op::Dense(dense) => (
                dense.weight_t.narrow(1, logit.output, 1)?,
                dense
                    .bias
                    .as_ref()
                    .map(|bias| bias.narrow(0, logit.output, 1))
                    .transpose()?,
            ),
            Op::TiedDecoder(bias) => (
                self.word.narrow(0, logit.output, 1)?.t()?,
                bias.as_ref()
                    .map(|bias| bias.narrow(0, logit.output, 1))
                    .transpose()?,
            ),
            Op::Activation(_) | Op::Norm(_) | Op::SoftCap(_) | Op::MeanPool => {
                return Err(ModelError::Compute(
                    "a head that does not end in a product".to_owned(),
                ))
            }
        };
        let product = x.matmul(&column.contiguous()?)?;
        let product = match bias {
            Some(bias) => product.broadcast_add(&bias)?,
            None => product,
        };
        Ok((capped(product.squeeze(1)?)?, vec![logit.output; items]))
    }

    /// [`Backend::trace`] in candle's ops.
    ///
    /// [`Backend::trace`]: super::super::Backend::trace
    pub(super) fn trace_candle(&self, input: &ForwardInput<'_>) -> Result<Trace> {
        let mut x = self.embed(input)?.unsqueeze(0)?;
        let mut states = Vec::new();
        let mut attended = Vec::new();
        let mut contexts = Vec::new();
        let host = |tensor: &Tensor| -> Result<Vec<f32>> {
            Ok(tensor
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        for (index, layer) in self.layers.iter().enumerate() {
            states.extend(host(&x)?);
            let (output, after_attention, context) =
                self.batch_layer(index, layer, &x, None, None)?;
            contexts.extend(host(&context)?);
            attended.extend(host(&after_attention)?);
            x = output;
        }
        states.extend(host(&x)?);
        Ok(Trace {
            states,
            attended,
            contexts,
        })
    }

    /// [`Backend::head_outputs`] in candle's ops.
    ///
    /// [`Backend::head_outputs`]: super::super::Backend::head_outputs
    pub(super) fn head_outputs_candle(
        &self,
        layer: usize,
        context: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let layer = self
            .layers
            .get(layer)
            .ok_or_else(|| ModelError::Compute(format!("there is no layer {layer}")))?;
        let (hidden, heads) = (self.config.hidden_size, self.config.num_attention_heads);
        let head_dim = self.config.head_dim();
        if context.len() != self.config.query_width() {
            return Err(ModelError::Compute(
                "a context row of the wrong width".to_owned(),
            ));
        }
        let output = &layer.attention_output;
        let context = Tensor::from_slice(context, (heads, 1, head_dim), &self.device)?;
        let weight = output.weight_t.reshape((heads, head_dim, hidden))?;
        let parts = context.matmul(&weight)?;
        let bias = match &output.bias {
            Some(bias) => bias.to_dtype(DType::F32)?.to_vec1::<f32>()?,
            None => vec![0.0; hidden],
        };
        Ok((
            parts
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
            bias,
        ))
    }

    /// [`Backend::readout`] in candle's ops.
    ///
    /// [`Backend::readout`]: super::super::Backend::readout
    pub(super) fn readout_candle(&self, head: usize, output: usize) -> Result<Option<Readout>> {
        let ops = self
            .heads
            .get(head)
            .ok_or_else(|| ModelError::Compute(format!("the model has no head {head}")))?;
        let vector = |tensor: &Tensor| -> Result<Vec<f32>> {
            Ok(tensor
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let scalar = |bias: &Option<Tensor>| -> Result<f32> {
            Ok(match bias {
                Some(bias) => bias.i(output)?.to_dtype(DType::F32)?.to_scalar::<f32>()?,
                None => 0.0,
            })
        };
        let (ops, softcap) = match ops.split_last() {
            Some((Op::SoftCap(cap), ops)) => (ops, Some(*cap)),
            _ => (ops.as_slice(), None),
        };
        let (direction, bias) = match ops {
            [Op::TiedDecoder(bias)] => (vector(&self.word.i(output)?)?, scalar(bias)?),
            [Op::Dense(dense)] => (
                vector(&dense.weight_t.i((.., output))?)?,
                scalar(&dense.bias)?,
            ),
            _ => return Ok(None),
        };
        let norm = match &self.final_norm {
            Some(norm) => Some((
                vector(&norm.gamma)?,
                vector(&norm.beta)?,
                f64::from(norm.eps),
            )),
            None => None,
        };
        Ok(Some(Readout {
            norm,
            centred: self
                .final_norm
                .as_ref()
                .is_none_or(|norm| norm.kind == NormKind::Layer),
            direction,
            bias,
            softcap,
        }))
    }
}
