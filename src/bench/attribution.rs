//! `bench --attribution`: what explaining a prediction costs: gradient × input (one forward and
//! backward pass), integrated gradients and activation patching.

use std::time::Instant;

use crate::model::attribution::{AttributionOptions, DEFAULT_IG_STEPS};
use crate::model::target::TargetSpec;
use crate::model::tokenizer::EncodedText;
use crate::model::{LoadedModel, Result};

/// Gradient × input and the gradient norm (target resolution included): the median of `iters`
/// runs after one untimed run, in milliseconds.
pub fn time_gradient(model: &LoadedModel, input: &EncodedText, iters: usize) -> Result<f64> {
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
    Ok(super::median(&runs))
}

/// Integrated gradients with Captum's default 50 steps (and the gradient at the input): one
/// run, in milliseconds.
pub fn time_integrated_gradients(model: &LoadedModel, input: &EncodedText) -> Result<f64> {
    let all = AttributionOptions {
        ig_steps: DEFAULT_IG_STEPS,
        occlusion: false,
        ..AttributionOptions::default()
    };
    let started = Instant::now();
    model.attribution(input, &all, &mut |_, _| true)?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// Activation patching of every layer's positions and heads against the input with its inner
/// tokens changed: one run, in milliseconds, or why it could not run; and the patched
/// forwards it ran (layers × (tokens + heads)).
pub fn time_patching(
    model: &LoadedModel,
    input: &EncodedText,
) -> (std::result::Result<f64, String>, usize) {
    let corrupt = corrupted(model, input);
    let started = Instant::now();
    let patching_ms = model
        .patching(input, &corrupt, &TargetSpec::default(), &mut |_, _| true)
        .map(|_| started.elapsed().as_secs_f64() * 1e3)
        .map_err(|err| err.to_string());
    let config = model.config();
    let runs = config.num_hidden_layers * (input.ids.len() + config.num_attention_heads);
    (patching_ms, runs)
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
