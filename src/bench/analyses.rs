//! `bench --analyses`: what the analyses add to the forward. The value norms and the logit lens
//! are computed inside it (runs with and without them, alternated); rollout, head statistics
//! and norm maps after it; and attention flow into one token.

use std::time::Instant;

use crate::model::{LoadedModel, Result};

/// Medians of the analyses' times, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct AnalysesTimes {
    /// The forward without value norms and the lens.
    pub forward_ms: f64,
    /// The forward with them.
    pub forward_with_ms: f64,
    /// Whether the run computed the lens with its predictions.
    pub lens_in_forward: bool,
    /// Rollout of every layer.
    pub rollout_ms: f64,
    /// Every head's statistics.
    pub head_stats_ms: f64,
    /// Every head's norm-based map.
    pub norm_maps_ms: f64,
    /// The lens computed after the forward (`None` without a language-model head).
    pub lens_apart_ms: Option<f64>,
    /// Attention flow into token 0 from every token.
    pub flow_ms: f64,
}

impl AnalysesTimes {
    /// What the value norms and the lens add inside the forward.
    pub fn in_forward_ms(&self) -> f64 {
        (self.forward_with_ms - self.forward_ms).max(0.0)
    }

    /// What the analyses after the forward take.
    pub fn after_ms(&self) -> f64 {
        self.rollout_ms + self.head_stats_ms + self.norm_maps_ms
    }

    /// Both, as a share of the forward, in percent.
    pub fn share_percent(&self) -> f64 {
        (self.in_forward_ms() + self.after_ms()) / self.forward_ms * 100.0
    }
}

/// Times the analyses on `input`, `iters` times each (flow at most three times).
pub fn time_analyses(
    model: &LoadedModel,
    input: &crate::model::tokenizer::EncodedText,
    iters: usize,
) -> Result<AnalysesTimes> {
    use super::median;
    use crate::analysis;
    let ms = |started: Instant| started.elapsed().as_secs_f64() * 1e3;
    let plain_options = crate::model::RunOptions {
        mlm_positions: vec![input.ids.len() / 2],
        top_k: 5,
        ..Default::default()
    };
    let options = crate::model::RunOptions {
        value_norms: true,
        lens: true,
        ..plain_options.clone()
    };
    let (mut plain, mut with_extras) = (Vec::new(), Vec::new());
    for _ in 0..iters {
        let started = Instant::now();
        std::hint::black_box(model.run_with(input.clone(), &plain_options)?);
        plain.push(ms(started));
        let started = Instant::now();
        std::hint::black_box(model.run_with(input.clone(), &options)?);
        with_extras.push(ms(started));
    }
    let analysis = model.run_with(input.clone(), &options)?;
    let lens = model.lens_positions(&analysis).is_some();
    // Per iteration: rollout, head statistics, norm maps, and the lens alone (apart from the
    // predictions, as for a model whose head does not compute it with them).
    let apart = crate::model::Analysis {
        logit_lens: None,
        ..analysis.clone()
    };
    let mut parts: [Vec<f64>; 4] = Default::default();
    for _ in 0..iters {
        let started = Instant::now();
        std::hint::black_box(analysis::rollout::rollout(&analysis));
        parts[0].push(ms(started));
        let started = Instant::now();
        std::hint::black_box(analysis::stats::head_stats(&analysis));
        parts[1].push(ms(started));
        let started = Instant::now();
        std::hint::black_box(analysis::norms::attention_norms(&analysis));
        parts[2].push(ms(started));
        let started = Instant::now();
        if lens {
            std::hint::black_box(model.logit_lens(&apart, 5)?);
        }
        parts[3].push(ms(started));
    }
    let [rollout_ms, head_stats_ms, norm_maps_ms, lens_apart] = parts.map(|times| median(&times));
    let flow: Vec<f64> = (0..iters.min(3))
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(analysis::flow::flow_into(&analysis, 0));
            ms(started)
        })
        .collect();
    Ok(AnalysesTimes {
        forward_ms: median(&plain),
        forward_with_ms: median(&with_extras),
        lens_in_forward: analysis.logit_lens.is_some(),
        rollout_ms,
        head_stats_ms,
        norm_maps_ms,
        lens_apart_ms: lens.then_some(lens_apart),
        flow_ms: median(&flow),
    })
}
