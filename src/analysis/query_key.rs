//! BertViz's neuron view: how one query token's attention in one head comes about, from the
//! captured query and key vectors: each key, its element-wise product with the query, the
//! scaled dot product q·k/√d and its softmax.

use crate::model::Analysis;

/// The pieces of one row of one head's attention.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryKey {
    /// The query token.
    pub query: usize,
    /// Its query vector `[head_dim]` (before scaling).
    pub query_vector: Vec<f32>,
    /// Every token's key vector `[tokens][head_dim]`.
    pub keys: Vec<Vec<f32>>,
    /// q × k_j, element-wise, for every key `[tokens][head_dim]`.
    pub products: Vec<Vec<f32>>,
    /// q·k_j/√d (the model's own scale, soft-capped where it caps); `None` for keys the layer
    /// hides from the query.
    pub scores: Vec<Option<f32>>,
    /// The softmax of the scores over the visible keys.
    pub softmax: Vec<f32>,
}

/// The neuron view of `query` in head `head` of layer `layer`.
pub fn query_key(analysis: &Analysis, layer: usize, head: usize, query: usize) -> QueryKey {
    let head_dim = analysis.queries.shape()[3];
    let queries = analysis.queries.matrix(&[layer, head]);
    let keys_matrix = analysis.keys.matrix(&[layer, head]);
    let query_vector = queries[query * head_dim..][..head_dim].to_vec();
    let keys: Vec<Vec<f32>> = keys_matrix
        .chunks_exact(head_dim)
        .map(<[f32]>::to_vec)
        .collect();
    let products: Vec<Vec<f32>> = keys
        .iter()
        .map(|key| key.iter().zip(&query_vector).map(|(k, q)| k * q).collect())
        .collect();
    let scale = analysis
        .attention_scales
        .get(layer)
        .map_or(1.0 / (head_dim as f64).sqrt(), |&scale| f64::from(scale));
    let cap = analysis.attention_softcap.map(f64::from);
    let scores: Vec<Option<f32>> = products
        .iter()
        .enumerate()
        .map(|(key, product)| {
            (!analysis.is_masked(layer, query, key)).then(|| {
                let score = product.iter().map(|&v| f64::from(v)).sum::<f64>() * scale;
                (match cap {
                    Some(cap) => (score / cap).tanh() * cap,
                    None => score,
                }) as f32
            })
        })
        .collect();
    let max = scores
        .iter()
        .flatten()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = scores
        .iter()
        .map(|score| score.map_or(0.0, |s| f64::from(s - max).exp()))
        .collect();
    let total: f64 = exps.iter().sum();
    QueryKey {
        query,
        query_vector,
        keys,
        products,
        scores,
        softmax: exps.iter().map(|&e| (e / total) as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::F32Array;

    #[test]
    fn scores_are_scaled_dot_products_and_causal_keys_are_masked() {
        let mut analysis = crate::model::capture::tests::tiny_analysis();
        // One layer, two heads, three tokens, head_dim 2.
        let queries: Vec<f32> = (0..12).map(|v| v as f32 * 0.1).collect();
        let keys: Vec<f32> = (0..12).map(|v| 1.0 - v as f32 * 0.05).collect();
        analysis.queries = F32Array::new(vec![1, 2, 3, 2], queries).unwrap().into();
        analysis.keys = F32Array::new(vec![1, 2, 3, 2], keys).unwrap().into();
        let view = query_key(&analysis, 0, 1, 2);
        assert_eq!(view.query_vector, vec![1.0, 1.1]);
        let k0 = &view.keys[0];
        let expected = (1.0 * k0[0] + 1.1 * k0[1]) / 2f32.sqrt();
        assert!((view.scores[0].unwrap() - expected).abs() < 1e-6);
        assert!((view.softmax.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        analysis.causal = true;
        let view = query_key(&analysis, 0, 1, 0);
        assert_eq!(view.scores[1], None);
        assert_eq!(view.softmax, vec![1.0, 0.0, 0.0]);
    }
}
