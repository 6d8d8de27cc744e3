//! Norm-based attention (Kobayashi et al. 2020): ‖α_ij · f_h(x_j)‖₂, the size of what head h
//! actually moves from token j into token i, rather than the weight alone. Since α_ij is a
//! scalar this is α_ij · ‖f_h(x_j)‖₂, from the captured value norms.

use crate::analysis::HeadChoice;
use crate::model::{Analysis, F32Array};

/// One head's norm-based map `[query][key]`, or the mean of a layer's heads' maps; `None` when
/// the run did not compute value norms.
pub fn norm_map(analysis: &Analysis, layer: usize, head: HeadChoice) -> Option<Vec<f32>> {
    let tokens = analysis.len();
    let one = |head: usize| -> Vec<f32> {
        if let Some(maps) = &analysis.attention_norms {
            return maps.matrix(&[layer, head]).to_vec();
        }
        let Some(norms) = &analysis.value_norms else {
            return Vec::new();
        };
        let sizes = norms.matrix(&[layer, head]);
        analysis
            .attention(layer, head)
            .chunks_exact(tokens)
            .flat_map(|row| row.iter().zip(sizes).map(|(&weight, &size)| weight * size))
            .collect()
    };
    if analysis.value_norms.is_none() && analysis.attention_norms.is_none() {
        return None;
    }
    Some(match head {
        HeadChoice::Head(head) => one(head),
        HeadChoice::Mean => {
            let heads = analysis.heads();
            let mut mean = vec![0f32; tokens * tokens];
            for head in 0..heads {
                for (sum, value) in mean.iter_mut().zip(one(head)) {
                    *sum += value;
                }
            }
            mean.iter_mut().for_each(|value| *value /= heads as f32);
            mean
        }
    })
}

/// One weight of [`norm_map`] (query row, key column), without building the map: what a hover
/// tooltip reads every frame; `None` without value norms.
pub fn norm_weight(
    analysis: &Analysis,
    layer: usize,
    head: HeadChoice,
    query: usize,
    key: usize,
) -> Option<f32> {
    let tokens = analysis.len();
    let one: Box<dyn Fn(usize) -> f32> = match (&analysis.attention_norms, &analysis.value_norms) {
        (Some(maps), _) => Box::new(move |head| maps.matrix(&[layer, head])[query * tokens + key]),
        (None, Some(norms)) => Box::new(move |head| {
            analysis.attention(layer, head)[query * tokens + key]
                * norms.matrix(&[layer, head])[key]
        }),
        (None, None) => return None,
    };
    Some(match head {
        HeadChoice::Head(head) => one(head),
        HeadChoice::Mean => (0..analysis.heads()).map(one).sum::<f32>() / analysis.heads() as f32,
    })
}

/// Every head's norm-based map, `[layer, head, query, key]`; `None` without value norms.
pub fn attention_norms(analysis: &Analysis) -> Option<F32Array> {
    use rayon::prelude::{IntoParallelIterator, ParallelIterator};
    let tokens = analysis.len();
    let heads = analysis.heads();
    let maps: Option<Vec<Vec<f32>>> = (0..analysis.layers() * heads)
        .into_par_iter()
        .map(|index| norm_map(analysis, index / heads, HeadChoice::Head(index % heads)))
        .collect();
    F32Array::new(
        vec![analysis.layers(), heads, tokens, tokens],
        maps?.concat(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_scale_each_key_column_by_its_value_size() {
        let mut analysis = crate::model::capture::tests::tiny_analysis();
        assert!(norm_map(&analysis, 0, HeadChoice::Head(0)).is_none());
        analysis.value_norms = Some(
            F32Array::new(vec![1, 2, 3], vec![1.0, 2.0, 0.0, 3.0, 3.0, 3.0])
                .unwrap()
                .into(),
        );
        let map = norm_map(&analysis, 0, HeadChoice::Head(0)).unwrap();
        let attention = analysis.attention(0, 0);
        assert_eq!(map[4], attention[4] * 2.0);
        assert_eq!(map[5], 0.0);
        let mean = norm_map(&analysis, 0, HeadChoice::Mean).unwrap();
        let other = analysis.attention(0, 1)[1] * 3.0;
        assert!((mean[1] - (attention[1] * 2.0 + other) / 2.0).abs() < 1e-6);
        assert_eq!(attention_norms(&analysis).unwrap().shape(), &[1, 2, 3, 3]);
    }
}
