//! Direct logit attribution for pre-LayerNorm causal models (GPT-2): the residual stream r that
//! enters the final LayerNorm at a position is a sum of parts (the embedding, every head's
//! output, every layer's attention output bias and MLP output), and with the stream's own
//! σ = √(var(r) + ε) fixed, the logit is the sum of each part's `((c − mean c)/σ)·γ·W_U[t]`
//! plus `β·W_U[t]` and any bias of the LM head.

use serde::Serialize;

use super::config::NormPlacement;
use super::error::{ModelError, Result};
use super::target::{Target, TargetHead, TargetSpec};
use super::tokenizer::EncodedText;
use super::LoadedModel;

/// A logit taken apart into what each part of the model wrote into the residual stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogitAttribution {
    /// The next-token logit explained.
    pub target: Target,
    /// The logit, which the parts sum to.
    pub logit: f32,
    /// The embedding's part (`wte + wpe`).
    pub embed: f32,
    /// `[layer][head]`: each head's part.
    pub heads: Vec<Vec<f32>>,
    /// `[layer]`: each attention output bias's part.
    pub attn_bias: Vec<f32>,
    /// `[layer]`: each MLP's part.
    pub mlps: Vec<f32>,
    /// The final LayerNorm's shift (and the LM head's bias) read by the logit.
    pub final_bias: f32,
}

impl LogitAttribution {
    /// The sum of every part: the logit, up to rounding.
    pub fn total(&self) -> f32 {
        self.embed
            + self.heads.iter().flatten().sum::<f32>()
            + self.attn_bias.iter().sum::<f32>()
            + self.mlps.iter().sum::<f32>()
            + self.final_bias
    }
}

impl LoadedModel {
    /// Takes the next-token logit `spec` (default: the top token after the last position) of
    /// `encoded` apart.
    pub fn logit_attribution(
        &self,
        encoded: &EncodedText,
        spec: &TargetSpec,
    ) -> Result<LogitAttribution> {
        if self.config.architecture.norm != NormPlacement::Pre {
            return Err(ModelError::BadInput(format!(
                "logit attribution needs a pre-LayerNorm model such as GPT-2: {} normalises the residual stream after every layer, so the logit is not a sum of what the layers wrote",
                self.config.family.name()
            )));
        }
        let spec = match spec.head {
            None => TargetSpec {
                head: Some(TargetHead::NextToken),
                ..spec.clone()
            },
            Some(TargetHead::NextToken) => spec.clone(),
            Some(head) => {
                return Err(ModelError::BadInput(format!(
                    "logit attribution explains next-token logits (--target next:I[:TOKEN]), not --target {}",
                    head.spelling()
                )))
            }
        };
        let prepared = self.prepare(encoded)?;
        let input = prepared.input(&encoded.ids);
        let backend = self.interventions();
        let trace = backend.trace(&input)?;
        let target = self.resolve_target(&spec, encoded, &input, &trace)?;
        let readout = backend
            .readout(target.index.head, target.index.output)?
            .ok_or_else(|| {
                ModelError::BadInput(
                    "this LM head computes more than one product, so its logit does not split into parts".to_owned(),
                )
            })?;
        let (tokens, hidden) = (encoded.ids.len(), self.config.hidden_size);
        let layers = self.config.num_hidden_layers;
        let row = target.index.row;
        let at = |values: &[f32], layer: usize| -> Vec<f64> {
            values[(layer * tokens + row) * hidden..][..hidden]
                .iter()
                .map(|&v| f64::from(v))
                .collect()
        };
        let stream = at(&trace.states, layers);
        let (scale, mean_of): (Vec<f64>, bool) = match &readout.norm {
            Some((gamma, _, eps)) => {
                let mean = stream.iter().sum::<f64>() / hidden as f64;
                let variance =
                    stream.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / hidden as f64;
                let sigma = (variance + eps).sqrt();
                let scale = gamma
                    .iter()
                    .zip(&readout.direction)
                    .map(|(&g, &w)| f64::from(g) * f64::from(w) / sigma)
                    .collect();
                (scale, true)
            }
            None => (
                readout.direction.iter().map(|&w| f64::from(w)).collect(),
                false,
            ),
        };
        // ((c − mean c)/σ)·γ·W_U[t] = Σ_d (c_d − mean c)·scale_d.
        let part = |c: &[f64]| -> f32 {
            let mean = if mean_of {
                c.iter().sum::<f64>() / hidden as f64
            } else {
                0.0
            };
            c.iter()
                .zip(&scale)
                .map(|(c, s)| (c - mean) * s)
                .sum::<f64>() as f32
        };
        let embed = at(&trace.states, 0);
        let mut heads = Vec::with_capacity(layers);
        let mut attn_bias = Vec::with_capacity(layers);
        let mut mlps = Vec::with_capacity(layers);
        for layer in 0..layers {
            let context: Vec<f32> =
                trace.contexts[(layer * tokens + row) * hidden..][..hidden].to_vec();
            let (outputs, bias) = backend.head_outputs(layer, &context)?;
            let outputs: Vec<Vec<f64>> = outputs
                .chunks_exact(hidden)
                .map(|part| part.iter().map(|&v| f64::from(v)).collect())
                .collect();
            let bias: Vec<f64> = bias.iter().map(|&v| f64::from(v)).collect();
            // The MLP's output is what the layer added beyond its attention.
            let before = at(&trace.states, layer);
            let after = at(&trace.states, layer + 1);
            let mlp: Vec<f64> = (0..hidden)
                .map(|d| after[d] - before[d] - bias[d] - outputs.iter().map(|o| o[d]).sum::<f64>())
                .collect();
            heads.push(outputs.iter().map(|o| part(o)).collect());
            attn_bias.push(part(&bias));
            mlps.push(part(&mlp));
        }
        let final_bias = match &readout.norm {
            Some((_, beta, _)) => beta
                .iter()
                .zip(&readout.direction)
                .map(|(&b, &w)| f64::from(b) * f64::from(w))
                .sum::<f64>() as f32,
            None => 0.0,
        } + readout.bias;
        Ok(LogitAttribution {
            logit: target.logit,
            target,
            embed: part(&embed),
            heads,
            attn_bias,
            mlps,
            final_bias,
        })
    }
}
