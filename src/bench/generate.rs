//! `bench --generate N`: generation with the key/value cache, greedy, as
//! `tools/bench_reference.py --generate` times transformers' `generate(use_cache=True,
//! output_attentions=True)`: the first token (the prompt's run) and every token after it.

use std::time::Instant;

use crate::model::generation::{Decoding, Generator};
use crate::model::tokenizer::EncodedText;
use crate::model::{LoadedModel, Result};

/// What generating costs, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateTimes {
    /// The first token: the whole prompt through the model and the head, median of runs.
    pub first_ms: f64,
    /// Each later token (one token through the model against the cache, and the head), the
    /// median over every step of every run.
    pub per_token_ms: f64,
    /// New tokens per run.
    pub new_tokens: usize,
}

/// Generates `new_tokens` greedy tokens after `prompt`, `iters` times after one warm-up run.
pub fn time_generation(
    model: &LoadedModel,
    prompt: &EncodedText,
    new_tokens: usize,
    iters: usize,
) -> Result<GenerateTimes> {
    let new_tokens = new_tokens.clamp(
        1,
        model
            .config()
            .max_tokens()
            .saturating_sub(prompt.ids.len())
            .max(1),
    );
    let mut firsts = Vec::new();
    let mut later = Vec::new();
    for run in 0..=iters.max(1) {
        let mut generator = Generator::new(model, &prompt.ids, 0)?;
        let mut steps = Vec::with_capacity(new_tokens);
        for _ in 0..new_tokens {
            let started = Instant::now();
            generator.step(model, &Decoding::Greedy)?;
            steps.push(started.elapsed().as_secs_f64() * 1e3);
        }
        if run > 0 {
            firsts.push(steps[0]);
            later.extend_from_slice(&steps[1..]);
        }
    }
    Ok(GenerateTimes {
        first_ms: median(&mut firsts),
        per_token_ms: median(&mut later),
        new_tokens,
    })
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
