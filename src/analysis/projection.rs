//! Token hidden states projected to two dimensions with PCA.
//!
//! One basis is fitted to the hidden states of every layer together, so that a token's position
//! can be followed from layer to layer (its trajectory) in the same coordinates.

use nalgebra::{DMatrix, SymmetricEigen};

use crate::model::F32Array;

/// 2-D coordinates of every token at every layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    layers: usize,
    tokens: usize,
    points: Vec<[f32; 2]>,
    /// Share of the total variance along each of the two axes.
    pub explained_variance: [f32; 2],
}

impl Projection {
    /// Fits PCA to hidden states `[layers, tokens, hidden]` and projects every row.
    pub fn fit(hidden_states: &F32Array) -> Self {
        let &[layers, tokens, width] = hidden_states.shape() else {
            return Self::empty();
        };
        let rows = layers * tokens;
        if rows == 0 || width == 0 {
            return Self::empty();
        }
        let values = hidden_states.values();
        let mut mean = vec![0f64; width];
        for row in values.chunks_exact(width) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, &x)| *m += f64::from(x));
        }
        mean.iter_mut().for_each(|m| *m /= rows as f64);
        let centered = DMatrix::from_fn(rows, width, |r, c| {
            f64::from(values[r * width + c]) - mean[c]
        });
        let covariance = centered.tr_mul(&centered) / (rows.max(2) - 1) as f64;
        let total_variance = covariance.trace();
        let eigen = SymmetricEigen::new(covariance);
        let mut order: Vec<usize> = (0..width).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));

        let mut axes = Vec::with_capacity(2);
        let mut explained_variance = [0f32; 2];
        for (slot, &index) in order.iter().take(2).enumerate() {
            let mut axis = eigen.eigenvectors.column(index).into_owned();
            // Eigenvectors have no preferred sign; fix one so pictures do not flip between runs.
            let largest =
                axis.iter()
                    .copied()
                    .fold(0f64, |best, v| if v.abs() > best.abs() { v } else { best });
            if largest < 0.0 {
                axis = -axis;
            }
            if total_variance > 0.0 {
                explained_variance[slot] =
                    (eigen.eigenvalues[index].max(0.0) / total_variance) as f32;
            }
            axes.push(axis);
        }
        let projected = &centered * DMatrix::from_columns(&axes);
        let points = (0..rows)
            .map(|r| {
                let x = projected[(r, 0)] as f32;
                let y = if projected.ncols() > 1 {
                    projected[(r, 1)] as f32
                } else {
                    0.0
                };
                [x, y]
            })
            .collect();
        Self {
            layers,
            tokens,
            points,
            explained_variance,
        }
    }

    fn empty() -> Self {
        Self {
            layers: 0,
            tokens: 0,
            points: Vec::new(),
            explained_variance: [0.0; 2],
        }
    }

    /// Number of layers (the embedding output counts as layer 0).
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// The tokens' points at one layer.
    pub fn layer(&self, layer: usize) -> &[[f32; 2]] {
        &self.points[layer * self.tokens..(layer + 1) * self.tokens]
    }

    /// One token's points from the embeddings to the last layer.
    pub fn trajectory(&self, token: usize) -> Vec<[f32; 2]> {
        (0..self.layers)
            .map(|layer| self.points[layer * self.tokens + token])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_dominant_direction() {
        // Points spread along (1, 1, 0) with a little noise along z: the first axis is that line.
        let mut values = Vec::new();
        for i in 0..10 {
            let t = i as f32 - 4.5;
            values.extend([t, t, 0.01 * (i % 3) as f32]);
        }
        let hidden = F32Array::new(vec![2, 5, 3], values).unwrap();
        let projection = Projection::fit(&hidden);
        assert!(projection.explained_variance[0] > 0.99);
        let first = projection.layer(0)[0][0];
        let last = projection.layer(1)[4][0];
        assert!(
            (last - first - 9.0 * 2f32.sqrt()).abs() < 1e-3,
            "{first} {last}"
        );
        assert_eq!(projection.trajectory(2).len(), 2);
    }
}
