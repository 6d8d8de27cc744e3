//! Direct logit attribution for pre-norm causal models (GPT-2, the Llama kin, Gemma 3): the
//! residual stream r that enters the final norm at a position is a sum of parts (the embedding,
//! every head's output, every layer's attention output bias and MLP output), and with the
//! stream's own σ fixed, the logit is the sum of each part's `((c − mean c)/σ)·γ·W_U[t]` plus
//! `β·W_U[t]` and any bias of the LM head. Under a final LayerNorm σ = √(var(r) + ε); under a
//! final RMSNorm there is no mean and no β, and σ = √(mean(r²) + ε), the RMS of the whole
//! stream. Gemma 3 normalises each block's whole output before adding it, so its attention
//! does not split into heads: it gets one part per layer. A soft-capped head's logit is
//! explained before the cap (`c·tanh(x/c)` is not a sum).

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
    /// The logit, which the parts sum to (before any final soft-cap).
    pub logit: f32,
    /// The head's soft-cap, when it caps its logits: the prediction is `c·tanh(logit/c)`.
    pub softcap: Option<f32>,
    /// Whether the final norm subtracts the mean (LayerNorm) or not (RMSNorm).
    pub centred: bool,
    /// The embedding's part (`wte + wpe`).
    pub embed: f32,
    /// `[layer][head]`: each head's part (empty where the attention does not split into heads:
    /// Gemma 3's post-norms).
    pub heads: Vec<Vec<f32>>,
    /// `[layer]`: each attention output bias's part.
    pub attn_bias: Vec<f32>,
    /// `[layer]`: each attention block's whole part (its heads and bias together).
    pub attention: Vec<f32>,
    /// `[layer]`: each MLP's part.
    pub mlps: Vec<f32>,
    /// The final LayerNorm's shift (and the LM head's bias) read by the logit.
    pub final_bias: f32,
}

impl LogitAttribution {
    /// The sum of every part: the logit, up to rounding.
    pub fn total(&self) -> f32 {
        self.embed
            + self.attention.iter().sum::<f32>()
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
                "logit attribution needs a pre-norm model such as GPT-2: {} normalises the residual stream after every layer, so the logit is not a sum of what the layers wrote",
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
        let backend = self.interventions()?;
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
                let mean = if readout.centred {
                    stream.iter().sum::<f64>() / hidden as f64
                } else {
                    0.0
                };
                let variance =
                    stream.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / hidden as f64;
                let sigma = (variance + eps).sqrt();
                let scale = gamma
                    .iter()
                    .zip(&readout.direction)
                    .map(|(&g, &w)| f64::from(g) * f64::from(w) / sigma)
                    .collect();
                (scale, readout.centred)
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
        let width = self.config.query_width();
        let split_heads = !self.config.architecture.block_post_norms;
        let mut heads = Vec::with_capacity(layers);
        let mut attn_bias = Vec::with_capacity(layers);
        let mut attention = Vec::with_capacity(layers);
        let mut mlps = Vec::with_capacity(layers);
        for layer in 0..layers {
            let before = at(&trace.states, layer);
            let attended = at(&trace.attended, layer);
            let after = at(&trace.states, layer + 1);
            let difference = |a: &[f64], b: &[f64]| -> Vec<f64> {
                a.iter().zip(b).map(|(a, b)| a - b).collect()
            };
            if split_heads {
                let context: Vec<f32> =
                    trace.contexts[(layer * tokens + row) * width..][..width].to_vec();
                let (outputs, bias) = backend.head_outputs(layer, &context)?;
                let outputs: Vec<Vec<f64>> = outputs
                    .chunks_exact(hidden)
                    .map(|part| part.iter().map(|&v| f64::from(v)).collect())
                    .collect();
                let bias: Vec<f64> = bias.iter().map(|&v| f64::from(v)).collect();
                let parts: Vec<f32> = outputs.iter().map(|o| part(o)).collect();
                attn_bias.push(part(&bias));
                attention.push(parts.iter().sum::<f32>() + part(&bias));
                heads.push(parts);
            } else {
                heads.push(Vec::new());
                attn_bias.push(0.0);
                attention.push(part(&difference(&attended, &before)));
            }
            // The MLP's output is what the layer added after its attention block.
            mlps.push(part(&difference(&after, &attended)));
        }
        let final_bias = match &readout.norm {
            Some((_, beta, _)) => beta
                .iter()
                .zip(&readout.direction)
                .map(|(&b, &w)| f64::from(b) * f64::from(w))
                .sum::<f64>() as f32,
            None => 0.0,
        } + readout.bias;
        // A soft-capped logit is explained before its cap.
        let logit = match readout.softcap {
            Some(cap) => (target.logit / cap).clamp(-1.0, 1.0).atanh() * cap,
            None => target.logit,
        };
        Ok(LogitAttribution {
            logit,
            softcap: readout.softcap,
            centred: readout.centred,
            target,
            embed: part(&embed),
            heads,
            attn_bias,
            attention,
            mlps,
            final_bias,
        })
    }
}
