//! Comparing two models' attention on the same text: layers aligned by relative depth,
//! difference maps, and how far apart the two models' attention distributions are.

use super::{attention_map, HeadChoice};
use crate::model::Analysis;

/// The layer of a `to_layers`-deep model at the same relative depth as `layer` of a
/// `from_layers`-deep one (layer 5 of 12 ↔ layer 11 of 24: both end half-way).
pub fn aligned_layer(layer: usize, from_layers: usize, to_layers: usize) -> usize {
    if from_layers == 0 || to_layers == 0 {
        return 0;
    }
    let end = ((layer + 1) * to_layers) as f64 / from_layers as f64;
    (end.round() as usize).clamp(1, to_layers) - 1
}

/// Whether two analyses can be compared token by token.
pub fn same_tokens(a: &Analysis, b: &Analysis) -> bool {
    a.tokens == b.tokens
}

/// `A − B`, element by element, of two maps of the same shape.
pub fn difference(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// Jensen–Shannon divergence of two distributions, in bits (0 = identical, 1 = disjoint).
pub fn js_divergence(p: &[f32], q: &[f32]) -> f32 {
    let kl_to_mean = |x: &[f32]| -> f64 {
        x.iter()
            .zip(p.iter().zip(q))
            .filter(|(&xi, _)| xi > 0.0)
            .map(|(&xi, (&pi, &qi))| {
                let mean = 0.5 * (f64::from(pi) + f64::from(qi));
                f64::from(xi) * (f64::from(xi) / mean).log2()
            })
            .sum()
    };
    (0.5 * kl_to_mean(p) + 0.5 * kl_to_mean(q)).max(0.0) as f32
}

/// Mean over query tokens of the JS divergence between the two layers' head-averaged attention.
pub fn layer_divergence(a: &Analysis, a_layer: usize, b: &Analysis, b_layer: usize) -> f32 {
    let tokens = a.len();
    let map_a = attention_map(a, a_layer, HeadChoice::Mean);
    let map_b = attention_map(b, b_layer, HeadChoice::Mean);
    let total: f32 = map_a
        .chunks_exact(tokens)
        .zip(map_b.chunks_exact(tokens))
        .map(|(p, q)| js_divergence(p, q))
        .sum();
    total / tokens as f32
}

/// For every layer of `a`, the divergence from the aligned layer of `b`.
pub fn divergence_by_layer(a: &Analysis, b: &Analysis) -> Vec<f32> {
    (0..a.layers())
        .map(|layer| layer_divergence(a, layer, b, aligned_layer(layer, a.layers(), b.layers())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_align_by_relative_depth() {
        assert_eq!(aligned_layer(5, 12, 24), 11);
        assert_eq!(aligned_layer(11, 12, 24), 23);
        assert_eq!(aligned_layer(0, 12, 24), 1);
        assert_eq!(aligned_layer(23, 24, 12), 11);
        assert_eq!(aligned_layer(0, 24, 12), 0);
        assert_eq!(aligned_layer(3, 6, 6), 3);
    }

    #[test]
    fn js_divergence_is_bounded_and_symmetric() {
        let p = [0.5, 0.5, 0.0];
        let q = [0.0, 0.0, 1.0];
        assert!((js_divergence(&p, &q) - 1.0).abs() < 1e-6);
        assert_eq!(js_divergence(&p, &p), 0.0);
        let r = [0.2, 0.3, 0.5];
        assert!((js_divergence(&p, &r) - js_divergence(&r, &p)).abs() < 1e-7);
        assert_eq!(difference(&[0.5, 0.25], &[0.25, 0.5]), vec![0.25, -0.25]);
    }
}
