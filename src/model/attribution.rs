//! Which input tokens made the model give a logit: gradient × input, the gradient's norm,
//! integrated gradients (Captum's `LayerIntegratedGradients` on the embedding output, with its
//! default Gauss–Legendre rule) and occlusion. Every method reads the embedding output x, what
//! the first layer reads, and a baseline x′: the same for the input with every token that is
//! not special replaced by the padding token, with the real positions and segments.

use serde::Serialize;

use super::backend::{BatchRun, ForwardInput, Interventions, LogitIndex, PathRun};
use super::config::Segments;
use super::error::{ModelError, Result};
use super::target::{Target, TargetSpec};
use super::tokenizer::EncodedText;
use super::LoadedModel;

/// What attribution computes, per token of the input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    /// The logit explained.
    pub target: Target,
    /// The logit on the baseline input (computed with integrated gradients or occlusion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_logit: Option<f32>,
    /// `Σ_d x[i,d]·∂f/∂x[i,d]`.
    pub grad_x_input: Vec<f32>,
    /// `‖∂f/∂x[i]‖₂`.
    pub grad_norm: Vec<f32>,
    /// Integrated gradients summed over the hidden dimension, when computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrated_gradients: Option<Vec<f32>>,
    /// `Σ_i IG[i] − (f(x) − f(x′))`, when integrated gradients were computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ig_delta: Option<f32>,
    /// `f(x) − f(x with token i's embedding replaced by the baseline's)`, 0 for special tokens;
    /// when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occlusion: Option<Vec<f32>>,
}

impl Attribution {
    /// The attribution per word: each list summed over the word's pieces, except the gradient
    /// norm, which is the norm of the pieces' gradients together (√Σ of their squares).
    pub fn per_word(self, words: &crate::analysis::words::Words) -> Self {
        let sum = |values: &[f32]| -> Vec<f32> {
            words
                .spans
                .iter()
                .map(|span| values[span.clone()].iter().sum())
                .collect()
        };
        let norm = |values: &[f32]| -> Vec<f32> {
            words
                .spans
                .iter()
                .map(|span| {
                    values[span.clone()]
                        .iter()
                        .map(|v| v * v)
                        .sum::<f32>()
                        .sqrt()
                })
                .collect()
        };
        Self {
            grad_x_input: sum(&self.grad_x_input),
            grad_norm: norm(&self.grad_norm),
            integrated_gradients: self.integrated_gradients.as_deref().map(sum),
            occlusion: self.occlusion.as_deref().map(sum),
            ..self
        }
    }
}

/// What to attribute and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributionOptions {
    /// The logit explained.
    pub target: TargetSpec,
    /// Integrated-gradients steps; 0 leaves integrated gradients out (the app's live methods).
    pub ig_steps: usize,
    /// Whether to occlude each token (one forward per token, batched).
    pub occlusion: bool,
}

impl Default for AttributionOptions {
    fn default() -> Self {
        Self {
            target: TargetSpec::default(),
            ig_steps: DEFAULT_IG_STEPS,
            occlusion: true,
        }
    }
}

/// Captum's default number of steps.
pub const DEFAULT_IG_STEPS: usize = 50;

/// The most columns (items × tokens) one batched run holds: wide enough that the matrix
/// products run at full speed, narrow enough that a bert-base tape stays near 300 MB
/// (integrated gradients at 128 tokens of bert-base on two AVX-512 cores: 9.6 s with 512
/// columns, 9.4–10.0 s with 1280, 11.1 s with 2560).
pub(crate) const BATCH_COLUMNS: usize = 512;

/// Reports progress (done, total) and says whether to go on.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize) -> bool;

/// An input ready for interventions: its ids, positions and segments as the model receives them.
pub(crate) struct Prepared {
    /// Position ids.
    pub positions: Vec<u32>,
    /// Segment ids, for families that read them.
    pub segments: Option<Vec<u32>>,
}

impl Prepared {
    /// The forward input for `ids` with these positions and segments.
    pub fn input<'a>(&'a self, ids: &'a [u32]) -> ForwardInput<'a> {
        ForwardInput::new(ids, &self.positions, self.segments.as_deref())
    }
}

/// `n`-point Gauss–Legendre nodes and weights mapped to [0, 1], as Captum builds them from
/// numpy's `leggauss` (`α = (1 + x)/2`, `w = w_x/2`), by Newton's method on the Legendre
/// polynomial in f64.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0f64; n];
    let mut weights = vec![0f64; n];
    for i in 0..n {
        // Tricomi's first guess for the i-th root, counted from the right.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let k = k as f64;
                (p0, p1) = (p1, ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k);
            }
            let p = if n == 1 { x } else { p1 };
            let previous = if n == 1 { 1.0 } else { p0 };
            derivative = n as f64 * (x * p - previous) / (x * x - 1.0);
            let step = p / derivative;
            x -= step;
            if step.abs() < 1e-16 {
                break;
            }
        }
        nodes[n - 1 - i] = 0.5 * (1.0 + x);
        weights[n - 1 - i] = 0.5 * 2.0 / ((1.0 - x * x) * derivative * derivative);
    }
    (nodes, weights)
}

/// Items that start from the embedding output and read `logit`.
fn from_embeddings(tokens: usize, states: &[f32], logit: LogitIndex) -> BatchRun<'_> {
    BatchRun {
        tokens,
        start_layer: 0,
        states,
        head_patch: None,
        logit,
    }
}

impl LoadedModel {
    /// Positions and segments for `encoded`, after checking that it can run.
    pub(crate) fn prepare(&self, encoded: &EncodedText) -> Result<Prepared> {
        let segments = self.checked_segments(encoded)?;
        Ok(Prepared {
            positions: self.config.position_ids(&encoded.ids),
            segments: (self.config.architecture.segments != Segments::Absent).then_some(segments),
        })
    }

    /// Whether each token is special (kept in the baseline, never occluded).
    pub(crate) fn special_tokens(&self, encoded: &EncodedText) -> Vec<bool> {
        let specials = self.tokenizer.special_ids();
        encoded.ids.iter().map(|id| specials.contains(id)).collect()
    }

    /// The baseline ids: every token that is not special replaced by the padding token.
    pub(crate) fn baseline_ids(&self, encoded: &EncodedText) -> Result<Vec<u32>> {
        let pad = self.tokenizer.pad_id().ok_or_else(|| {
            ModelError::BadInput(
                "the vocabulary has no padding token to build the attribution baseline from"
                    .to_owned(),
            )
        })?;
        Ok(encoded
            .ids
            .iter()
            .zip(self.special_tokens(encoded))
            .map(|(&id, special)| if special { id } else { pad })
            .collect())
    }

    /// Attributes the target of `options` to the tokens of `encoded`. `progress` hears of
    /// every batch and may cancel (the result is then [`ModelError::Cancelled`]).
    pub fn attribution(
        &self,
        encoded: &EncodedText,
        options: &AttributionOptions,
        progress: Progress<'_>,
    ) -> Result<Attribution> {
        let prepared = self.prepare(encoded)?;
        let input = prepared.input(&encoded.ids);
        // The output is chosen by the gradient's own run when the target leaves it open, so
        // that resolving the target costs no forward pass of its own.
        let plan = self.plan_target(&options.target, encoded, &input, None)?;
        let backend = self.interventions()?;
        let (tokens, hidden) = (encoded.ids.len(), self.config.hidden_size);
        let x = backend.embedding_output(&input)?;
        let baseline_ids = self.baseline_ids(encoded)?;
        let x_base = backend.embedding_output(&prepared.input(&baseline_ids))?;
        let specials = self.special_tokens(encoded);
        let per_batch = (BATCH_COLUMNS / tokens).max(1);
        let occluded: Vec<usize> = (0..tokens)
            .filter(|&i| options.occlusion && !specials[i])
            .collect();
        // The baseline itself, then each occluded input.
        // The baseline's own logit is one more forward pass, needed by integrated gradients'
        // delta and shown beside occlusion; the live gradient methods go without it.
        let with_baseline = options.ig_steps > 0 || options.occlusion;
        let forward_items = usize::from(with_baseline) + occluded.len();
        let total = 1 + forward_items.div_ceil(per_batch) + options.ig_steps.div_ceil(per_batch);
        let mut done = 0;
        let mut step = |done: &mut usize| {
            *done += 1;
            if progress(*done, total) {
                Ok(())
            } else {
                Err(ModelError::Cancelled)
            }
        };

        let at_input = backend.batch_gradients(&from_embeddings(tokens, &x, plan.index))?;
        step(&mut done)?;
        let logit = at_input.logits[0];
        let target = self.finish_target(&plan, at_input.outputs[0], logit);
        let gradient = &at_input.states;
        let per_token = |values: &[f32], f: &dyn Fn(&[f32], &[f32]) -> f32, other: &[f32]| {
            values
                .chunks_exact(hidden)
                .zip(other.chunks_exact(hidden))
                .map(|(a, b)| f(a, b))
                .collect::<Vec<f32>>()
        };
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f32>();
        let grad_x_input = per_token(gradient, &dot, &x);
        let grad_norm = per_token(gradient, &|a, _| dot(a, a).sqrt(), gradient);

        let mut forward_logits = Vec::with_capacity(forward_items);
        let items: Vec<usize> = with_baseline
            .then_some(usize::MAX)
            .into_iter()
            .chain(occluded.iter().copied())
            .collect();
        for chunk in items.chunks(per_batch) {
            let mut states = Vec::with_capacity(chunk.len() * tokens * hidden);
            for &item in chunk {
                if item == usize::MAX {
                    states.extend_from_slice(&x_base);
                } else {
                    let start = states.len();
                    states.extend_from_slice(&x);
                    states[start + item * hidden..][..hidden]
                        .copy_from_slice(&x_base[item * hidden..][..hidden]);
                }
            }
            forward_logits.extend(backend.batch_logits(&from_embeddings(
                tokens,
                &states,
                target.index,
            ))?);
            step(&mut done)?;
        }
        let baseline_logit = with_baseline.then(|| forward_logits[0]);
        let occluded_logits = &forward_logits[usize::from(with_baseline)..];
        let mut occlusion = vec![0f32; tokens];
        for (&i, occluded_logit) in occluded.iter().zip(occluded_logits) {
            occlusion[i] = logit - occluded_logit;
        }

        let (integrated_gradients, ig_delta) = if options.ig_steps == 0 {
            (None, None)
        } else {
            let ig = self.integrated_gradients(
                backend,
                (&x, &x_base),
                options.ig_steps,
                (per_batch, tokens, target.index),
                &mut || step(&mut done),
            )?;
            let delta = ig.iter().sum::<f32>() - (logit - baseline_logit.unwrap_or_default());
            (Some(ig), Some(delta))
        };
        Ok(Attribution {
            target,
            baseline_logit,
            grad_x_input,
            grad_norm,
            integrated_gradients,
            ig_delta,
            occlusion: options.occlusion.then_some(occlusion),
        })
    }

    /// Integrated gradients from `x_base` to `x` with `steps` Gauss–Legendre points, summed
    /// over the hidden dimension, in batches of `per_batch` points.
    fn integrated_gradients(
        &self,
        backend: &dyn Interventions,
        (x, x_base): (&[f32], &[f32]),
        steps: usize,
        (per_batch, tokens, logit): (usize, usize, LogitIndex),
        step: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Vec<f32>> {
        let hidden = self.config.hidden_size;
        let (alphas, weights) = gauss_legendre(steps);
        let points: Vec<(f32, f32)> = alphas
            .iter()
            .zip(&weights)
            .map(|(&alpha, &weight)| (alpha as f32, weight as f32))
            .collect();
        let path = PathRun {
            tokens,
            from: x_base,
            to: x,
            points: &points,
            per_batch,
            logit,
        };
        let summed = backend.path_gradient(&path, step)?;
        Ok(summed
            .chunks_exact(hidden)
            .zip(x.chunks_exact(hidden).zip(x_base.chunks_exact(hidden)))
            .map(|(grad, (x, x_base))| {
                grad.iter()
                    .zip(x.iter().zip(x_base))
                    .map(|(g, (x, b))| g * (x - b))
                    .sum()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use super::gauss_legendre;
    use crate::model::backend::{path_gradient_by_items, LogitIndex, PathRun};
    use crate::model::target::TOP_OUTPUT;
    use crate::model::{DeviceChoice, ForwardPath, LoadedModel, ModelSource};

    /// The CPU backend's path gradient, which folds the points into the first layer of
    /// post-LN families and of ModernBERT, in batches of a few points, against each point's
    /// own gradient in one batch: a post-LN, a pre-LN with an identity first norm, a pre-LN.
    #[test]
    fn folded_path_gradients_match_each_points_own() {
        for name in ["bert-sentiment", "modernbert-mlm", "gpt2-lm"] {
            let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name);
            let source = ModelSource::parse(folder.to_str().unwrap()).unwrap();
            let model =
                LoadedModel::load_with(&source, DeviceChoice::Cpu, ForwardPath::Auto, &mut |_| {})
                    .unwrap();
            let encoded = model
                .tokenizer()
                .encode("the film was a quiet delight", None)
                .unwrap();
            let prepared = model.prepare(&encoded).unwrap();
            let backend = model.interventions().unwrap();
            let to = backend
                .embedding_output(&prepared.input(&encoded.ids))
                .unwrap();
            let baseline = model.baseline_ids(&encoded).unwrap();
            let from = backend
                .embedding_output(&prepared.input(&baseline))
                .unwrap();
            let (alphas, weights) = gauss_legendre(9);
            let points: Vec<(f32, f32)> = alphas
                .iter()
                .zip(&weights)
                .map(|(&a, &w)| (a as f32, w as f32))
                .collect();
            let tokens = encoded.ids.len();
            let path = |per_batch| PathRun {
                tokens,
                from: &from,
                to: &to,
                points: &points,
                per_batch,
                logit: LogitIndex {
                    head: 0,
                    row: tokens - 1,
                    output: TOP_OUTPUT,
                },
            };
            let mut batches = 0;
            let folded = backend
                .path_gradient(&path(4), &mut || {
                    batches += 1;
                    Ok(())
                })
                .unwrap();
            assert_eq!(batches, 3, "{name}: 9 points in batches of 4");
            let each = path_gradient_by_items(backend, &path(9), &mut || Ok(())).unwrap();
            let scale = each.iter().fold(0f32, |m, v| m.max(v.abs()));
            let off = folded
                .iter()
                .zip(&each)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                scale > 0.0 && off <= 1e-5 * scale,
                "{name}: off by {off} of {scale}"
            );
        }
    }

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        for n in [1, 2, 5, 50] {
            let (nodes, weights) = gauss_legendre(n);
            assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(nodes.windows(2).all(|pair| pair[0] < pair[1]));
            // ∫₀¹ x^k dx = 1/(k+1), exact for k < 2n.
            for k in 0..(2 * n).min(20) {
                let integral: f64 = nodes
                    .iter()
                    .zip(&weights)
                    .map(|(x, w)| w * x.powi(k as i32))
                    .sum();
                assert!(
                    (integral - 1.0 / (k as f64 + 1.0)).abs() < 1e-12,
                    "n={n} k={k}"
                );
            }
        }
    }
}
