//! Pure functions over captured data: projections and summaries the views draw.

pub mod compare;
pub mod flow;
pub mod norms;
pub mod projection;
pub mod query_key;
pub mod rollout;
pub mod stats;
pub mod words;

use crate::model::Analysis;

/// Which attention map of a layer to show: one head, or the mean over all heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HeadChoice {
    /// A single head (0-based).
    Head(usize),
    /// The element-wise mean over the layer's heads.
    Mean,
}

impl Default for HeadChoice {
    fn default() -> Self {
        Self::Head(0)
    }
}

impl std::fmt::Display for HeadChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Head(head) => write!(f, "head {head}"),
            Self::Mean => f.write_str("mean of heads"),
        }
    }
}

/// The `[query][key]` attention matrix of one head, or the mean over a layer's heads.
pub fn attention_map(analysis: &Analysis, layer: usize, head: HeadChoice) -> Vec<f32> {
    match head {
        HeadChoice::Head(head) => analysis.attention(layer, head).to_vec(),
        HeadChoice::Mean => analysis.attention_mean(layer),
    }
}

/// One weight of [`attention_map`] (query row, key column), without building the map: what a
/// hover tooltip reads every frame.
pub fn attention_weight(
    analysis: &Analysis,
    layer: usize,
    head: HeadChoice,
    query: usize,
    key: usize,
) -> f32 {
    let index = query * analysis.len() + key;
    match head {
        HeadChoice::Head(head) => analysis.attention(layer, head)[index],
        HeadChoice::Mean => {
            let heads = analysis.heads();
            let sum: f32 = (0..heads)
                .map(|head| analysis.attention(layer, head)[index])
                .sum();
            sum / heads as f32
        }
    }
}

/// Marks the cells of a `size × size` map above the diagonal as masked (NaN), as a causal model
/// sees them; the colour functions draw NaN as masked
/// (`crate::render::MASKED_COLOR`).
pub fn mask_future(values: &mut [f32], size: usize) {
    for (query, row) in values.chunks_exact_mut(size).enumerate() {
        row.iter_mut().skip(query + 1).for_each(|v| *v = f32::NAN);
    }
}

/// Marks the cells of layer `layer`'s `tokens × tokens` map that its queries cannot see (a
/// causal model's later keys, keys outside a window) as masked (NaN).
pub fn mask_unseen(analysis: &Analysis, layer: usize, values: &mut [f32]) {
    let tokens = analysis.len();
    if analysis.window(layer) == crate::model::KeyWindow::Whole {
        if analysis.causal {
            mask_future(values, tokens);
        }
        return;
    }
    for (query, row) in values.chunks_exact_mut(tokens).enumerate() {
        let seen = analysis.keys_seen(layer, query);
        row[..seen.start].fill(f32::NAN);
        row[seen.end..].fill(f32::NAN);
    }
}

/// The map as views and figures colour it: [`attention_map`], with the cells the layer's
/// queries cannot see (keys after the query in a causal model, keys outside a window) marked
/// NaN, which the colour functions draw as masked.
pub fn shown_map(analysis: &Analysis, layer: usize, head: HeadChoice) -> Vec<f32> {
    let mut values = attention_map(analysis, layer, head);
    mask_unseen(analysis, layer, &mut values);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_weights_agree_with_the_whole_map() {
        let analysis = crate::model::capture::tests::tiny_analysis();
        for head in [HeadChoice::Head(1), HeadChoice::Mean] {
            let map = attention_map(&analysis, 0, head);
            for query in 0..3 {
                for key in 0..3 {
                    let weight = attention_weight(&analysis, 0, head, query, key);
                    assert!((weight - map[query * 3 + key]).abs() < 1e-7, "{head}");
                }
            }
        }
    }
}
