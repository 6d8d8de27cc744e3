//! Readings of a run that need the model's weights besides what the forward captured: the
//! logit lens (the model's own prediction head applied to every layer's hidden states) and the
//! breakdown of the input embeddings. Each backend computes its part; this assembles them.

use serde::Serialize;

use super::backend::{Backend, EmbeddingRows, ForwardInput};
use super::capture::{Analysis, TokenProbability};
use super::config::Segments;
use super::error::{ModelError, Result};
use super::params::HeadKind;
use super::{Engine, LoadedModel};

/// The lens's guesses after one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LensLayer {
    /// 0 = after the embeddings, l = after layer l (1-based).
    pub layer: usize,
    /// Most probable first.
    pub top_k: Vec<TokenProbability>,
}

/// The lens at one position: a prediction after the embeddings and after every layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LensPosition {
    /// Token index in the input.
    pub position: usize,
    /// One entry per hidden state, the embeddings first; the last is the model's own prediction.
    pub layers: Vec<LensLayer>,
}

/// The sizes of one token's input embedding and its parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenEmbedding {
    /// Token index in the input.
    pub position: usize,
    /// ‖word embedding‖₂.
    pub word: f32,
    /// ‖position embedding‖₂.
    pub position_emb: Option<f32>,
    /// ‖segment embedding‖₂, for families that add one.
    pub segment: Option<f32>,
    /// ‖word + segment + position‖₂.
    pub sum: f32,
    /// ‖LayerNorm(sum)‖₂, for families that normalise the sum.
    pub after_norm: Option<f32>,
}

/// The input embeddings of one run, taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingBreakdown {
    /// Per token.
    pub tokens: Vec<TokenEmbedding>,
    /// Cosine similarity of the tokens' position embeddings, `[token][token]` row-major; empty
    /// for families without position embeddings (rotary ones).
    pub position_similarity: Vec<f32>,
}

impl LoadedModel {
    /// The positions a logit lens reads: every masked-LM prediction's position (each mask token
    /// and any requested position), or the last token for a causal LM. `None` when the model
    /// has neither head.
    pub fn lens_positions(&self, analysis: &Analysis) -> Option<Vec<usize>> {
        if self.has_mlm_head() {
            Some(
                analysis
                    .mlm
                    .iter()
                    .flatten()
                    .map(|prediction| prediction.position)
                    .collect(),
            )
        } else if self.has_head(HeadKind::NextToken) {
            Some(vec![analysis.len().saturating_sub(1)])
        } else {
            None
        }
    }

    /// The logit lens: the model's masked-LM head (or causal LM head, through the final
    /// LayerNorm) applied to the hidden state after the embeddings and after every layer, at
    /// each of [`LoadedModel::lens_positions`], `top_k` guesses each. The last hidden state is
    /// the one the model's own head reads, so the last entry is the model's prediction.
    pub fn logit_lens(&self, analysis: &Analysis, top_k: usize) -> Result<Vec<LensPosition>> {
        let (head, kind) = self
            .heads
            .iter()
            .enumerate()
            .find(|(_, head)| matches!(head.kind, HeadKind::MaskedLm | HeadKind::NextToken))
            .map(|(index, head)| (index, head.kind))
            .ok_or_else(|| {
                ModelError::BadInput(format!(
                    "the logit lens needs a masked-LM or next-token head, and {} has neither",
                    self.name
                ))
            })?;
        let positions = self.lens_positions(analysis).unwrap_or_default();
        if let Some(lens) = &analysis.logit_lens {
            // Computed with the predictions, when it has as many guesses as asked for.
            let enough = |layer: &LensLayer| layer.top_k.len() >= top_k.min(self.config.vocab_size);
            if lens.iter().flat_map(|p| &p.layers).all(enough) {
                let mut lens = lens.clone();
                for layer in lens.iter_mut().flat_map(|p| &mut p.layers) {
                    layer.top_k.truncate(top_k);
                }
                return Ok(lens);
            }
        }
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let (rows, final_norm) = self.lens_rows(&analysis.hidden_states, &positions, kind);
        let logits = match &self.engine {
            Engine::Cpu(backend) => backend.head_logits_of_rows(&rows, head, &final_norm)?,
            Engine::Candle(backend) => backend.head_logits_of_rows(&rows, head, &final_norm)?,
        };
        Ok(self.lens_from_logits(&positions, &logits, self.config.vocab_size, top_k))
    }

    /// Every layer's hidden states at `positions`, layer-major, so that the head's vocabulary
    /// matrix (the bulk of the work) is read once rather than once per layer; and which rows
    /// go through the final LayerNorm (a causal LM's, but not its last state, which already
    /// did).
    pub(crate) fn lens_rows(
        &self,
        hidden_states: &super::CapturedArray,
        positions: &[usize],
        kind: HeadKind,
    ) -> (Vec<f32>, Vec<bool>) {
        let hidden = self.config.hidden_size;
        let states = hidden_states.shape()[0];
        let mut rows = Vec::with_capacity(states * positions.len() * hidden);
        let mut final_norm = Vec::with_capacity(states * positions.len());
        for layer in 0..states {
            let state = hidden_states.matrix(&[layer]);
            for &position in positions {
                rows.extend_from_slice(&state[position * hidden..][..hidden]);
                final_norm.push(kind == HeadKind::NextToken && layer + 1 < states);
            }
        }
        (rows, final_norm)
    }

    /// The lens at `positions` from the head's logits of [`LoadedModel::lens_rows`].
    pub(crate) fn lens_from_logits(
        &self,
        positions: &[usize],
        logits: &[f32],
        vocab: usize,
        top_k: usize,
    ) -> Vec<LensPosition> {
        let states = logits.len() / (vocab * positions.len()).max(1);
        let row_positions: Vec<usize> = (0..states)
            .flat_map(|_| positions.iter().copied())
            .collect();
        let predictions = self.vocabulary_predictions(&row_positions, logits, vocab, top_k);
        let mut lens: Vec<LensPosition> = positions
            .iter()
            .map(|&position| LensPosition {
                position,
                layers: Vec::with_capacity(states),
            })
            .collect();
        for (row, prediction) in predictions.into_iter().enumerate() {
            lens[row % positions.len()].layers.push(LensLayer {
                layer: row / positions.len(),
                top_k: prediction.top_k,
            });
        }
        lens
    }

    /// The norms of each token's word, position and segment embeddings, of their sum and of
    /// the normalised sum (the embedding output the layers read), and the cosine similarity of
    /// the position embeddings.
    pub fn embedding_breakdown(&self, analysis: &Analysis) -> Result<EmbeddingBreakdown> {
        let positions = self.config.position_ids(&analysis.token_ids);
        let uses_segments = self.config.architecture.segments != Segments::Absent;
        let input = ForwardInput::new(
            &analysis.token_ids,
            &positions,
            uses_segments.then_some(analysis.segment_ids.as_slice()),
        );
        let rows: EmbeddingRows = match &self.engine {
            Engine::Cpu(backend) => backend.embedding_rows(&input)?,
            Engine::Candle(backend) => backend.embedding_rows(&input)?,
        };
        let hidden = self.config.hidden_size;
        let norm = |values: &[f32]| values.iter().map(|v| v * v).sum::<f32>().sqrt();
        let normalised = self
            .config
            .architecture
            .embedding_norm
            .then(|| analysis.hidden_states.matrix(&[0]));
        let tokens = (0..analysis.len())
            .map(|t| {
                let row = |values: &[f32]| values[t * hidden..][..hidden].to_vec();
                let word = row(&rows.word);
                let position = rows.position.as_deref().map(row);
                let segment = rows.segment.as_deref().map(row);
                // transformers' order: (word + segment) + position.
                let sum: Vec<f32> = (0..hidden)
                    .map(|f| {
                        word[f]
                            + segment.as_ref().map_or(0.0, |s| s[f])
                            + position.as_ref().map_or(0.0, |p| p[f])
                    })
                    .collect();
                TokenEmbedding {
                    position: t,
                    word: norm(&word),
                    position_emb: position.as_deref().map(norm),
                    segment: segment.as_deref().map(norm),
                    sum: norm(&sum),
                    after_norm: normalised.map(|state| norm(&state[t * hidden..][..hidden])),
                }
            })
            .collect();
        Ok(EmbeddingBreakdown {
            tokens,
            position_similarity: rows
                .position
                .as_deref()
                .map(|table| cosine_similarities(table, hidden))
                .unwrap_or_default(),
        })
    }
}

/// The lens entry at `position` when the lens read it, else the first (the first mask, or a
/// causal LM's last token); `None` when the lens read no position.
pub fn lens_at(lens: &[LensPosition], position: Option<usize>) -> Option<&LensPosition> {
    position
        .and_then(|position| lens.iter().find(|entry| entry.position == position))
        .or_else(|| lens.first())
}

/// The cosine similarity of every pair of rows of `[rows, width]`, row-major `[rows][rows]`:
/// rows normalised in f64, then one f32 matrix product (a 512-token input is 0.2 GFLOP).
fn cosine_similarities(values: &[f32], width: usize) -> Vec<f32> {
    let rows = values.len() / width.max(1);
    let unit: Vec<f32> = values
        .chunks_exact(width.max(1))
        .flat_map(|row| {
            let norm = row
                .iter()
                .map(|&v| f64::from(v).powi(2))
                .sum::<f64>()
                .sqrt();
            let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            row.iter().map(move |&v| (f64::from(v) * scale) as f32)
        })
        .collect();
    // Row-major [rows, width] read as nalgebra's column-major [width, rows]: columns are rows.
    let columns = nalgebra::DMatrix::from_column_slice(width, rows, &unit);
    let gram = columns.transpose() * &columns;
    // Symmetric, so column-major storage is also row-major.
    gram.as_slice().iter().map(|v| v.clamp(-1.0, 1.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_similarity_is_one_on_the_diagonal_and_signed() {
        let similarity = cosine_similarities(&[1.0, 0.0, 0.0, 2.0, -3.0, 0.0], 2);
        assert_eq!(similarity.len(), 9);
        assert!((similarity[0] - 1.0).abs() < 1e-6 && (similarity[4] - 1.0).abs() < 1e-6);
        assert!(similarity[1].abs() < 1e-6);
        assert!((similarity[2] + 1.0).abs() < 1e-6, "opposite rows");
    }
}
