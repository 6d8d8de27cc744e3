//! `bench --attribution`: what explaining a prediction costs: gradient × input (one forward and
//! backward pass), integrated gradients and activation patching.

use std::time::Instant;

use crate::model::attribution::{AttributionOptions, DEFAULT_IG_STEPS};
use crate::model::target::TargetSpec;
use crate::model::tokenizer::EncodedText;
use crate::model::{LoadedModel, Result};

/// Medians and single runs of the attribution benchmarks, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributionTimes {
    /// Gradient × input and the gradient norm (target resolution included), median of runs.
    pub gradient_ms: f64,
    /// Integrated gradients with Captum's default 50 steps (and the gradient at the input).
    pub integrated_gradients_ms: f64,
    /// Activation patching of every layer's positions and heads, or why it could not run.
    pub patching_ms: std::result::Result<f64, String>,
    /// The forwards patching runs: layers × (tokens + heads).
    pub patching_runs: usize,
}

/// Times the attribution methods on `input` (its default target), gradients `iters` times.
pub fn time_attribution(
    model: &LoadedModel,
    input: &EncodedText,
    iters: usize,
) -> Result<AttributionTimes> {
    let gradient_only = AttributionOptions {
        target: TargetSpec::default(),
        ig_steps: 0,
        occlusion: false,
    };
    let mut go_on = |_, _| true;
    model.attribution(input, &gradient_only, &mut go_on)?;
    let mut runs = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let started = Instant::now();
        model.attribution(input, &gradient_only, &mut go_on)?;
        runs.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let started = Instant::now();
    let all = AttributionOptions {
        ig_steps: DEFAULT_IG_STEPS,
        occlusion: false,
        ..AttributionOptions::default()
    };
    model.attribution(input, &all, &mut go_on)?;
    let integrated_gradients_ms = started.elapsed().as_secs_f64() * 1e3;

    let corrupt = corrupted(model, input);
    let started = Instant::now();
    let patching_ms = model
        .patching(input, &corrupt, &TargetSpec::default(), &mut go_on)
        .map(|_| started.elapsed().as_secs_f64() * 1e3)
        .map_err(|err| err.to_string());
    let config = model.config();
    Ok(AttributionTimes {
        gradient_ms: super::median(&runs),
        integrated_gradients_ms,
        patching_ms,
        patching_runs: config.num_hidden_layers * (input.ids.len() + config.num_attention_heads),
    })
}

/// The input with every token but the first and last replaced by another of the vocabulary's:
/// a random-weight model's logits barely move when one token changes.
fn corrupted(model: &LoadedModel, input: &EncodedText) -> EncodedText {
    let mut corrupt = input.clone();
    let vocab = model.config().vocab_size as u32;
    let last = corrupt.ids.len().saturating_sub(1);
    for id in corrupt.ids.iter_mut().take(last).skip(1) {
        *id = (*id + vocab / 2) % vocab;
    }
    corrupt
}
