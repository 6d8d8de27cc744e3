//! Attention flow (Abnar & Zuidema 2020): how much of one output token's attention can be traced
//! back to each input token, as a maximum flow through the layers.
//!
//! The graph has a node per layer boundary and token, `(l, t)` for `l = 0..=layers`; the edge
//! from `(l−1, k)` to `(l, q)` has capacity `Â_l[q][k]`, with Â_l = ½·mean_heads(A_l) + ½·I as in
//! rollout. The flow into token `i` from input token `j` is the maximum flow from `(0, j)` to
//! `(layers, i)`. Each source is one Dinic max-flow on dense per-layer capacity matrices;
//! sources run in parallel.

use rayon::prelude::{IntoParallelIterator, ParallelIterator};

use crate::model::Analysis;

/// Residual capacity treated as none: capacities are at most 1, and f64 keeps far more digits
/// than the 1e-5 the results are checked to.
const EPSILON: f64 = 1e-12;

/// The maximum flow from every input token into output token `to` at the last layer, indexed by
/// input token. `to` must be a token index.
pub fn flow_into(analysis: &Analysis, to: usize) -> Vec<f32> {
    flow_through(analysis, to, analysis.layers())
}

/// The flow map a heatmap of flow shows, `[to][from]`: the rows of `targets` hold the flow into
/// them through layers `0..=layer` (the layers the model has), every other row NaN (not
/// computed); targets past the input are left out.
pub fn flow_map(analysis: &Analysis, layer: usize, targets: &[usize]) -> Vec<f32> {
    let tokens = analysis.len();
    let through = (layer + 1).min(analysis.layers());
    let mut values = vec![f32::NAN; tokens * tokens];
    for &to in targets.iter().filter(|&&to| to < tokens) {
        values[to * tokens..][..tokens].copy_from_slice(&flow_through(analysis, to, through));
    }
    values
}

/// The maximum flow from every input token into token `to` after the first `layers` layers
/// (the graph cut off there), indexed by input token.
pub fn flow_through(analysis: &Analysis, to: usize, layers: usize) -> Vec<f32> {
    let tokens = analysis.len();
    assert!(to < tokens, "token {to} is out of range");
    assert!(
        layers <= analysis.layers(),
        "{layers} layers are more than the model has"
    );
    let capacities: Vec<Vec<f64>> = (0..layers)
        .map(|layer| {
            let mut with_residual: Vec<f64> = analysis
                .attention_mean(layer)
                .iter()
                .map(|&v| 0.5 * f64::from(v))
                .collect();
            for index in 0..tokens {
                with_residual[index * tokens + index] += 0.5;
            }
            with_residual
        })
        .collect();
    (0..tokens)
        .into_par_iter()
        .map(|from| LayeredFlow::new(&capacities, tokens).max_flow(from, to) as f32)
        .collect()
}

/// One max-flow problem on the layered graph: capacities `[layer][q * tokens + k]` for the edge
/// from `(layer, k)` to `(layer + 1, q)`, and the flow pushed so far, the same shape.
struct LayeredFlow<'a> {
    capacities: &'a [Vec<f64>],
    flow: Vec<Vec<f64>>,
    tokens: usize,
    /// Boundaries: layers + 1.
    levels: usize,
    /// BFS distance of each node `(boundary, token)` from the source, `usize::MAX` if unreached.
    distance: Vec<usize>,
    /// Dinic's current arc of each node: neighbours `0..tokens` are forward (next boundary),
    /// `tokens..2·tokens` backward (previous boundary).
    next_arc: Vec<usize>,
}

impl<'a> LayeredFlow<'a> {
    fn new(capacities: &'a [Vec<f64>], tokens: usize) -> Self {
        let levels = capacities.len() + 1;
        Self {
            capacities,
            flow: vec![vec![0.0; tokens * tokens]; capacities.len()],
            tokens,
            levels,
            distance: vec![usize::MAX; levels * tokens],
            next_arc: vec![0; levels * tokens],
        }
    }

    /// The residual capacity from node `(boundary, token)` to its `arc`-th neighbour, with that
    /// neighbour; `None` when the neighbour does not exist.
    fn residual(&self, boundary: usize, token: usize, arc: usize) -> Option<(f64, usize, usize)> {
        let tokens = self.tokens;
        if arc < tokens {
            if boundary + 1 >= self.levels {
                return None;
            }
            let edge = arc * tokens + token;
            let left = self.capacities[boundary][edge] - self.flow[boundary][edge];
            Some((left, boundary + 1, arc))
        } else {
            let other = arc - tokens;
            if boundary == 0 {
                return None;
            }
            let edge = token * tokens + other;
            Some((self.flow[boundary - 1][edge], boundary - 1, other))
        }
    }

    /// Adds `amount` along the `arc`-th edge out of `(boundary, token)` (cancelling flow when
    /// the arc is backward).
    fn push(&mut self, boundary: usize, token: usize, arc: usize, amount: f64) {
        let tokens = self.tokens;
        if arc < tokens {
            self.flow[boundary][arc * tokens + token] += amount;
        } else {
            self.flow[boundary - 1][token * tokens + (arc - tokens)] -= amount;
        }
    }

    fn max_flow(mut self, from: usize, to: usize) -> f64 {
        let (source, sink) = ((0, from), (self.levels - 1, to));
        let mut total = 0.0;
        while self.levels_from(source, sink) {
            self.next_arc.fill(0);
            loop {
                let pushed = self.augment(source, sink, f64::INFINITY);
                if pushed <= EPSILON {
                    break;
                }
                total += pushed;
            }
        }
        total
    }

    /// Breadth-first distances from `source` over edges with residual capacity; whether the
    /// sink is reachable.
    fn levels_from(&mut self, source: (usize, usize), sink: (usize, usize)) -> bool {
        let tokens = self.tokens;
        self.distance.fill(usize::MAX);
        self.distance[source.0 * tokens + source.1] = 0;
        let mut queue = std::collections::VecDeque::from([source]);
        while let Some((boundary, token)) = queue.pop_front() {
            let here = self.distance[boundary * tokens + token];
            for arc in 0..2 * tokens {
                let Some((left, next_boundary, next_token)) = self.residual(boundary, token, arc)
                else {
                    continue;
                };
                let node = next_boundary * tokens + next_token;
                if left > EPSILON && self.distance[node] == usize::MAX {
                    self.distance[node] = here + 1;
                    queue.push_back((next_boundary, next_token));
                }
            }
        }
        self.distance[sink.0 * tokens + sink.1] != usize::MAX
    }

    /// Pushes up to `limit` from `node` to the sink along level-increasing residual edges;
    /// returns how much went through.
    fn augment(&mut self, node: (usize, usize), sink: (usize, usize), limit: f64) -> f64 {
        if node == sink {
            return limit;
        }
        let tokens = self.tokens;
        let index = node.0 * tokens + node.1;
        while self.next_arc[index] < 2 * tokens {
            let arc = self.next_arc[index];
            if let Some((left, boundary, token)) = self.residual(node.0, node.1, arc) {
                let next = boundary * tokens + token;
                if left > EPSILON
                    && self.distance[next] == self.distance[index] + 1
                    && self.distance[next] <= self.distance[sink.0 * tokens + sink.1]
                {
                    let pushed = self.augment((boundary, token), sink, limit.min(left));
                    if pushed > EPSILON {
                        self.push(node.0, node.1, arc, pushed);
                        return pushed;
                    }
                }
            }
            self.next_arc[index] += 1;
        }
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::capture::tests::tiny_analysis;

    #[test]
    fn one_layer_flow_is_the_edge_capacity() {
        // With one layer the only path from (0, j) to (1, i) is the edge itself.
        let analysis = tiny_analysis();
        let mean = analysis.attention_mean(0);
        for to in 0..3 {
            let flow = flow_into(&analysis, to);
            assert_eq!(flow, flow_through(&analysis, to, 1), "all layers");
            for (from, value) in flow.iter().enumerate() {
                let identity = if from == to { 0.5 } else { 0.0 };
                let expected = 0.5 * mean[to * 3 + from] + identity;
                assert!((value - expected).abs() < 1e-6, "{from} → {to}");
            }
        }
    }

    #[test]
    fn flow_follows_only_existing_edges() {
        let capacities = vec![vec![1.0, 1.0, 0.0, 1.0], vec![0.0, 1.0, 1.0, 0.0]];
        // Boundary 0 → 1: (0,0)→(1,0) 1, (0,1)→(1,0) 1, (0,1)→(1,1) 1.
        // Boundary 1 → 2: (1,1)→(2,0) 1, (1,0)→(2,1) 1.
        let flow = LayeredFlow::new(&capacities, 2);
        assert!((flow.max_flow(1, 0) - 1.0).abs() < 1e-12);
        let flow = LayeredFlow::new(&capacities, 2);
        assert!(
            (flow.max_flow(0, 0)).abs() < 1e-12,
            "(0,0) reaches only (2,1)"
        );
    }
}
