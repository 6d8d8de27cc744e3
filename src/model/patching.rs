//! Activation patching: which positions and heads carry what separates a clean run from a
//! corrupted one. The corrupted run is repeated with one piece of the clean run's activations put
//! back (the residual stream that a layer reads at one position, or one head's context vectors),
//! and each value is how much of the logit's difference that piece restores:
//! `(f_patched − f_corrupt) / (f_clean − f_corrupt)`.

use serde::Serialize;

use super::attribution::{Progress, BATCH_COLUMNS};
use super::backend::{BatchRun, HeadPatch, Trace};
use super::error::{ModelError, Result};
use super::target::{Target, TargetSpec};
use super::tokenizer::EncodedText;
use super::LoadedModel;

/// What activation patching measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Patching {
    /// The logit, chosen on the clean run and read on every run.
    pub target: Target,
    /// The logit on the clean run.
    pub clean_logit: f32,
    /// The logit on the corrupted run.
    pub corrupt_logit: f32,
    /// `[layer][position]`: the share restored by the clean residual stream that layer l reads
    /// at position p (layer 0 reads the embedding output).
    pub resid_pre: Vec<Vec<f32>>,
    /// `[layer][head]`: the share restored by the clean context vectors of one head.
    pub head_out: Vec<Vec<f32>>,
}

impl LoadedModel {
    /// Patches the run of `corrupt` with pieces of the run of `clean`, reading the target
    /// `spec` chosen on the clean run. `progress` hears of every batch and may cancel.
    pub fn patching(
        &self,
        clean: &EncodedText,
        corrupt: &EncodedText,
        spec: &TargetSpec,
        progress: Progress<'_>,
    ) -> Result<Patching> {
        check_same_length(clean, corrupt)?;
        let clean_prepared = self.prepare(clean)?;
        let corrupt_prepared = self.prepare(corrupt)?;
        let clean_input = clean_prepared.input(&clean.ids);
        let backend = self.interventions()?;
        let clean_trace = backend.trace(&clean_input)?;
        let target = self.resolve_target(spec, clean, &clean_input, &clean_trace)?;
        let corrupt_trace = backend.trace(&corrupt_prepared.input(&corrupt.ids))?;
        let (layers, heads) = (
            self.config.num_hidden_layers,
            self.config.num_attention_heads,
        );
        let (tokens, hidden) = (clean.ids.len(), self.config.hidden_size);
        let size = tokens * hidden;

        let ends = [&clean_trace, &corrupt_trace]
            .iter()
            .map(|trace| {
                backend.batch_logits(&BatchRun {
                    tokens,
                    start_layer: 0,
                    states: layer_states(trace, 0, size),
                    head_patch: None,
                    logit: target.index,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (clean_logit, corrupt_logit) = (ends[0][0], ends[1][0]);
        let difference = clean_logit - corrupt_logit;
        if difference.abs() < 1e-3 * clean_logit.abs().max(1.0) {
            return Err(ModelError::BadInput(format!(
                "the clean and corrupted runs give almost the same logit ({clean_logit:.4} and {corrupt_logit:.4}), so the patching ratios would be noise; choose another target (--target) or corrupt the text differently"
            )));
        }
        let share = |logit: f32| (logit - corrupt_logit) / difference;

        let per_batch = (BATCH_COLUMNS / tokens).max(1);
        let total = layers * (tokens.div_ceil(per_batch) + heads.div_ceil(per_batch));
        let mut done = 0;
        let mut step = || {
            done += 1;
            if progress(done, total) {
                Ok(())
            } else {
                Err(ModelError::Cancelled)
            }
        };
        let mut resid_pre = Vec::with_capacity(layers);
        let mut head_out = Vec::with_capacity(layers);
        for layer in 0..layers {
            let clean_states = layer_states(&clean_trace, layer, size);
            let corrupt_states = layer_states(&corrupt_trace, layer, size);
            let run = |states: &[f32], head_patch| -> Result<Vec<f32>> {
                backend.batch_logits(&BatchRun {
                    tokens,
                    start_layer: layer,
                    states,
                    head_patch,
                    logit: target.index,
                })
            };
            let mut row = Vec::with_capacity(tokens);
            for positions in (0..tokens).collect::<Vec<_>>().chunks(per_batch) {
                let mut states = Vec::with_capacity(positions.len() * size);
                for &position in positions {
                    let start = states.len();
                    states.extend_from_slice(corrupt_states);
                    states[start + position * hidden..][..hidden]
                        .copy_from_slice(&clean_states[position * hidden..][..hidden]);
                }
                row.extend(run(&states, None)?.into_iter().map(share));
                step()?;
            }
            resid_pre.push(row);
            let width = tokens * self.config.query_width();
            let contexts = &clean_trace.contexts[layer * width..][..width];
            let mut row = Vec::with_capacity(heads);
            for chosen in (0..heads).collect::<Vec<_>>().chunks(per_batch) {
                let states = corrupt_states.repeat(chosen.len());
                let patch = HeadPatch {
                    heads: chosen,
                    contexts,
                };
                row.extend(run(&states, Some(patch))?.into_iter().map(share));
                step()?;
            }
            head_out.push(row);
        }
        Ok(Patching {
            target,
            clean_logit,
            corrupt_logit,
            resid_pre,
            head_out,
        })
    }
}

/// What layer `layer` reads, `[tokens, hidden]` (`size` values).
fn layer_states(trace: &Trace, layer: usize, size: usize) -> &[f32] {
    &trace.states[layer * size..][..size]
}

/// A one-line error when the corrupted text does not tokenize to as many tokens as the clean.
fn check_same_length(clean: &EncodedText, corrupt: &EncodedText) -> Result<()> {
    if clean.ids.len() == corrupt.ids.len() {
        return Ok(());
    }
    let first = clean
        .tokens
        .iter()
        .zip(&corrupt.tokens)
        .position(|(a, b)| a != b)
        .unwrap_or(clean.tokens.len().min(corrupt.tokens.len()));
    let token = |tokens: &[String]| {
        tokens
            .get(first)
            .map_or_else(|| "the end".to_owned(), |token| format!("{token:?}"))
    };
    Err(ModelError::BadInput(format!(
        "the corrupted text has {} tokens and the clean text {}; patching needs as many (they first differ at token {first}: {} against {})",
        corrupt.ids.len(),
        clean.ids.len(),
        token(&corrupt.tokens),
        token(&clean.tokens)
    )))
}
