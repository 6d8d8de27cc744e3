//! Attention rollout (Abnar & Zuidema 2020): how much each output position draws on each input
//! token through every layer, residual connections included.

use crate::model::Analysis;

/// Rollout after every layer, `[layer][query * tokens + key]`: with Â_l = ½·mean_heads(A_l) + ½·I,
/// R_1 = Â_1 and R_l = Â_l · R_(l−1). Rows sum to 1.
pub fn rollout(analysis: &Analysis) -> Vec<Vec<f32>> {
    let tokens = analysis.len();
    let mut rolled: Option<nalgebra::DMatrix<f64>> = None;
    (0..analysis.layers())
        .map(|layer| {
            let mean = analysis.attention_mean(layer);
            // Row-major values into nalgebra's column-major matrix.
            let mut with_residual = nalgebra::DMatrix::from_row_iterator(
                tokens,
                tokens,
                mean.iter().map(|&v| 0.5 * f64::from(v)),
            );
            for index in 0..tokens {
                with_residual[(index, index)] += 0.5;
            }
            let next = match rolled.take() {
                Some(previous) => with_residual * previous,
                None => with_residual,
            };
            let values = (0..tokens)
                .flat_map(|query| (0..tokens).map(move |key| (query, key)))
                .map(|(query, key)| next[(query, key)] as f32)
                .collect();
            rolled = Some(next);
            values
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_layer_is_half_attention_half_identity() {
        let analysis = crate::model::capture::tests::tiny_analysis();
        let layers = rollout(&analysis);
        assert_eq!(layers.len(), analysis.layers());
        let tokens = analysis.len();
        let mean = analysis.attention_mean(0);
        for (index, &value) in layers[0].iter().enumerate() {
            let identity = if index / tokens == index % tokens {
                0.5
            } else {
                0.0
            };
            assert!((value - (0.5 * mean[index] + identity)).abs() < 1e-6);
        }
    }
}
