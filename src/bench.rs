//! Timing of the full forward with every attention map captured, for `bertscope bench`.

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

/// Wall-clock times of repeated runs.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchTimings {
    /// Milliseconds per run, in the order they ran.
    pub runs_ms: Vec<f64>,
}

impl BenchTimings {
    /// The median run time in milliseconds.
    pub fn median_ms(&self) -> f64 {
        let mut sorted = self.runs_ms.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }
}

/// Runs the forward (capturing everything) `warmup + iters` times and times the last `iters`.
pub fn time_forward(
    model: &LoadedModel,
    input: &EncodedText,
    warmup: usize,
    iters: usize,
) -> Result<BenchTimings> {
    for _ in 0..warmup {
        model.run(input.clone(), &[], 5)?;
    }
    let mut runs_ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        let input = input.clone();
        let started = Instant::now();
        let analysis = model.run(input, &[], 5)?;
        runs_ms.push(started.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(analysis);
    }
    Ok(BenchTimings { runs_ms })
}
