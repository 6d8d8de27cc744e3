//! Every benchmark of `bertscope bench`: the full forward with every attention map captured
//! (here), what the analyses add ([`analyses`]), and, with the app, the overview's frames
//! ([`overview`]) and the keystroke latency ([`keystroke`]).

pub mod analyses;
pub mod attribution;
pub mod generate;
#[cfg(feature = "gui")]
pub mod keystroke;
#[cfg(feature = "gui")]
pub mod overview;

use std::time::Instant;

use crate::model::tokenizer::EncodedText;
use crate::model::{LoadedModel, ModelError, Result};

/// Ordinary English that tokenizes into many different WordPiece tokens.
const FILLER: &str = "The quick brown fox jumps over the lazy dog while teachers explain how \
attention heads in transformer models relate every word of a sentence to every other word. ";

/// An input of exactly `seq_len` tokens of real text, framed by the model's special tokens
/// (`[CLS]` … `[SEP]`, `<s>` … `</s>`, none for GPT-2).
pub fn synthetic_input(model: &LoadedModel, seq_len: usize) -> Result<EncodedText> {
    let max = model.config().max_tokens();
    if !(2..=max).contains(&seq_len) {
        return Err(ModelError::BadInput(format!(
            "--seq-len {seq_len} is out of range; this model takes 2 to {max} tokens"
        )));
    }
    let text = FILLER.repeat(seq_len / 8 + 1);
    let mut encoded = model.tokenizer().encode(&text, None)?;
    encoded.shorten_keeping_last(seq_len);
    Ok(encoded)
}

/// Wall-clock times of repeated runs, each split into computing (everything captured, on the
/// device) and copying every attention map to the host, as `dump` and exports need them.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchTimings {
    /// Milliseconds per run (compute + transfer), in the order they ran.
    pub runs_ms: Vec<f64>,
    /// Milliseconds of each run until the device finished computing.
    pub compute_ms: Vec<f64>,
    /// Milliseconds of each run copying the attention maps to the host (0 where they are there).
    pub transfer_ms: Vec<f64>,
}

/// The median of some times in milliseconds (NaN for none).
pub fn median(times: &[f64]) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

impl BenchTimings {
    /// The median run time in milliseconds.
    pub fn median_ms(&self) -> f64 {
        median(&self.runs_ms)
    }
}

/// Runs the forward (capturing everything) and copies every attention map to the host,
/// `warmup + iters` times; times the last `iters`.
pub fn time_forward(
    model: &LoadedModel,
    input: &EncodedText,
    warmup: usize,
    iters: usize,
) -> Result<BenchTimings> {
    let run_once = || -> Result<(f64, f64)> {
        let started = Instant::now();
        let analysis = model.run(input.clone(), &[], 5)?;
        model.synchronize()?;
        let computed = started.elapsed();
        let attentions = analysis.attentions.to_host()?;
        std::hint::black_box(attentions.values().first());
        let done = started.elapsed();
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Ok((ms(computed), ms(done - computed)))
    };
    for _ in 0..warmup {
        run_once()?;
    }
    let mut timings = BenchTimings {
        runs_ms: Vec::with_capacity(iters),
        compute_ms: Vec::with_capacity(iters),
        transfer_ms: Vec::with_capacity(iters),
    };
    for _ in 0..iters {
        let (compute, transfer) = run_once()?;
        timings.runs_ms.push(compute + transfer);
        timings.compute_ms.push(compute);
        timings.transfer_ms.push(transfer);
    }
    Ok(timings)
}
