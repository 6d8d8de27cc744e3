//! The last layer's attention at the one row a head reads, without its keys and values.
//!
//! Where a layer's keys and values are plain products of its input (no rotary embedding, no
//! head norm, no soft-capped scores: BERT, DistilBERT, RoBERTa, XLM-R, GPT-2), one query row
//! needs no key or value of any token. Its score against token j is
//! `scale·q·(W_k·x_j + b_k) = scale·(W_kᵀ·q)·x_j + scale·q·b_k`, whose last term is the same
//! for every j and leaves the probabilities unchanged, and its context is
//! `Σ_j p_j·(W_v·x_j + b_v) = W_v·(Σ_j p_j·x_j) + b_v` (the probabilities sum to one). Per head
//! that is a few products with vectors as wide as the layer's input, where the key and value
//! projections were two `[width, hidden] × [hidden, tokens]` products. The backward pass
//! follows the same path. For bert-base at 128 tokens this removes about 2% of a forward and
//! backward pass (the last layer's whole query, key and value product, forward and back), in
//! every batched run: integrated gradients, activation patching and occlusion.

use rayon::prelude::{IndexedParallelIterator, ParallelIterator, ParallelSliceMut};

use super::super::kernels::{axpy, dense, dense_backward, dot, scores_to_probs};
use super::{read_columns, BatchAttention, CpuBackend, LayerTape, Shape};
use crate::model::params::LayerWeights;

/// What the backward pass needs of [`CpuBackend::row_attention`].
pub(super) struct RowTape {
    /// The attention's input `[hidden, columns]`.
    input: Vec<f32>,
    /// Each head's query read through its key head's weights, `W_kᵀ·q`, `[heads, items, hidden]`.
    keys_read: Vec<f32>,
}

/// Where a head's rows lie in a layer's stacked query, key and value product.
#[derive(Clone, Copy)]
struct HeadRows {
    query: usize,
    key: usize,
    value: usize,
}

impl CpuBackend {
    /// Whether layer `index` may compute one query row as [`CpuBackend::row_attention`] does.
    pub(super) fn attends_row_through_weights(&self, index: usize, layer: &LayerWeights) -> bool {
        let architecture = &self.config.architecture;
        architecture.rotary(index).is_none()
            && architecture.attention_softcap.is_none()
            && layer.query_norm.is_none()
            && layer.key_norm.is_none()
    }

    fn head_rows(&self, head: usize) -> HeadRows {
        let head_dim = self.config.head_dim();
        let (query_width, kv_width) = (self.config.query_width(), self.config.kv_width());
        let kv = self.config.kv_head(head) * head_dim;
        HeadRows {
            query: head * head_dim,
            key: query_width + kv,
            value: query_width + kv_width + kv,
        }
    }

    /// Layer `index`'s attention at `row` of each item, from the layer's input `xt`
    /// (`[hidden, columns]`): the contexts `[heads·head_dim, items]` and probabilities
    /// `[heads, items, 1, tokens]` that [`CpuBackend::batch_attention`] gives with that
    /// `read_row`, with what the backward pass needs when `taped`.
    pub(super) fn row_attention(
        &self,
        index: usize,
        layer: &LayerWeights,
        xt: &[f32],
        shape: Shape,
        row: usize,
        taped: bool,
    ) -> BatchAttention {
        let qkv = &layer.qkv;
        let (hidden, head_dim) = (qkv.inputs, self.config.head_dim());
        let query_width = self.config.query_width();
        let heads = self.config.num_attention_heads;
        let (items, tokens, columns) = (shape.items, shape.tokens, shape.columns());
        let architecture = &self.config.architecture;
        let scale = architecture.attention_scales[index];
        let masking = (architecture.causal, architecture.window(index));
        let bias = qkv.bias.as_deref();
        let queries = dense(
            &qkv.weight[..query_width * hidden],
            bias.map(|bias| &bias[..query_width]),
            query_width,
            hidden,
            &read_columns(xt, shape, row),
            items,
            None,
        );
        let mut context = vec![0f32; query_width * items];
        let mut probs = vec![0f32; heads * items * tokens];
        let mut keys_read = vec![0f32; heads * items * hidden];
        context
            .par_chunks_mut(head_dim * items)
            .zip(probs.par_chunks_mut(items * tokens))
            .zip(keys_read.par_chunks_mut(items * hidden))
            .enumerate()
            .for_each(|(head, ((context, probs), keys_read))| {
                let rows = self.head_rows(head);
                let weight_row = |row: usize| &qkv.weight[row * hidden..][..hidden];
                let mut mean_input = vec![0f32; hidden];
                for (item, (map, key_read)) in probs
                    .chunks_exact_mut(tokens)
                    .zip(keys_read.chunks_exact_mut(hidden))
                    .enumerate()
                {
                    let query = |d: usize| queries[(rows.query + d) * items + item];
                    let item_input = |f: usize| &xt[f * columns + item * tokens..][..tokens];
                    // W_kᵀ·q (q·b_k adds the same to every score, which the softmax cancels).
                    key_read.fill(0.0);
                    for d in 0..head_dim {
                        axpy(query(d), weight_row(rows.key + d), key_read);
                    }
                    map.fill(0.0);
                    for (f, &k) in key_read.iter().enumerate() {
                        axpy(k, item_input(f), map);
                    }
                    map.iter_mut().for_each(|s| *s *= scale);
                    scores_to_probs(map, tokens, row, masking, None);
                    // Σ_j p_j·x_j, then W_v of it.
                    for (f, mean) in mean_input.iter_mut().enumerate() {
                        *mean = dot(item_input(f), map);
                    }
                    for d in 0..head_dim {
                        context[d * items + item] = dot(weight_row(rows.value + d), &mean_input)
                            + bias.map_or(0.0, |bias| bias[rows.value + d]);
                    }
                }
            });
        BatchAttention {
            context,
            qkv: Vec::new(),
            head_norms: None,
            probs,
            row: taped.then(|| RowTape {
                input: xt.to_vec(),
                keys_read,
            }),
        }
    }

    /// The gradient with respect to the attention's input, `[hidden, columns]`, from its
    /// contexts' gradient `[heads·head_dim, items]`, for layer `index`, which ran
    /// [`CpuBackend::row_attention`] (`tape`, within `layer_tape`).
    pub(super) fn row_attention_backward(
        &self,
        index: usize,
        layer: &LayerWeights,
        tape: &RowTape,
        layer_tape: &LayerTape,
        d_context: &[f32],
        shape: Shape,
    ) -> Vec<f32> {
        let (probs, row) = (&layer_tape.probs, layer_tape.read_row.unwrap_or_default());
        let qkv = &layer.qkv;
        let (hidden, head_dim) = (qkv.inputs, self.config.head_dim());
        let query_width = self.config.query_width();
        let heads = self.config.num_attention_heads;
        let scale = self.config.architecture.attention_scales[index];
        let (items, tokens, columns) = (shape.items, shape.tokens, shape.columns());
        let input = &tape.input;
        // Per head and item: the gradient of Σ_j p_j·x_j (W_vᵀ·dc), that of each score's
        // product (W_kᵀ·q)·x_j before the scale, and that of the query.
        let mut d_mean_input = vec![0f32; heads * items * hidden];
        let mut d_scores = vec![0f32; heads * items * tokens];
        let mut d_queries = vec![0f32; query_width * items];
        d_mean_input
            .par_chunks_mut(items * hidden)
            .zip(d_scores.par_chunks_mut(items * tokens))
            .zip(d_queries.par_chunks_mut(head_dim * items))
            .enumerate()
            .for_each(|(head, ((d_mean_input, d_scores), d_queries))| {
                let rows = self.head_rows(head);
                let weight_row = |row: usize| &qkv.weight[row * hidden..][..hidden];
                let mut d_key_read = vec![0f32; hidden];
                for (item, (d_mean, d_score)) in d_mean_input
                    .chunks_exact_mut(hidden)
                    .zip(d_scores.chunks_exact_mut(tokens))
                    .enumerate()
                {
                    let map = &probs[(head * items + item) * tokens..][..tokens];
                    let item_input = |f: usize| &input[f * columns + item * tokens..][..tokens];
                    for d in 0..head_dim {
                        let d_c = d_context[(rows.query + d) * items + item];
                        axpy(d_c, weight_row(rows.value + d), d_mean);
                    }
                    // dp_j = (W_vᵀ·dc)·x_j (b_v adds the same to every j, which the softmax's
                    // gradient cancels), then through the softmax and the scale.
                    d_score.fill(0.0);
                    for (f, &g) in d_mean.iter().enumerate() {
                        axpy(g, item_input(f), d_score);
                    }
                    let shared = dot(d_score, map);
                    d_score
                        .iter_mut()
                        .zip(map)
                        .for_each(|(d, &p)| *d = scale * p * (*d - shared));
                    // The scores read W_kᵀ·q: its gradient is Σ_j ds_j·x_j, the query's W_k of
                    // that (q·b_k's share is Σ_j ds_j = 0).
                    for (f, d_key) in d_key_read.iter_mut().enumerate() {
                        *d_key = dot(item_input(f), d_score);
                    }
                    for d in 0..head_dim {
                        d_queries[d * items + item] = dot(weight_row(rows.key + d), &d_key_read);
                    }
                }
            });
        // Every token's input: Σ_h p_hj·W_vᵀ·dc_h + ds_hj·W_kᵀ·q_h; the read row's also
        // W_qᵀ·dq.
        let d_read = dense_backward(
            &qkv.weight[..query_width * hidden],
            query_width,
            hidden,
            &d_queries,
            items,
            None,
        );
        let mut d_input = vec![0f32; hidden * columns];
        d_input
            .par_chunks_mut(columns)
            .enumerate()
            .for_each(|(f, d_feature)| {
                for (item, d_item) in d_feature.chunks_exact_mut(tokens).enumerate() {
                    for head in 0..heads {
                        let at = (head * items + item) * hidden + f;
                        let per_token = (head * items + item) * tokens..;
                        axpy(
                            d_mean_input[at],
                            &probs[per_token.clone()][..tokens],
                            d_item,
                        );
                        axpy(tape.keys_read[at], &d_scores[per_token][..tokens], d_item);
                    }
                    d_item[row] += d_read[f * items + item];
                }
            });
        d_input
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::CpuBackend;
    use crate::model::backend::LogitIndex;
    use crate::model::backend::{BatchRun, Gradients};
    use crate::model::config::ModelConfig;
    use crate::model::params::{ModelWeights, Norm, NormKind};
    use crate::model::source::{ModelFiles, ModelSource};
    use crate::model::target::TOP_OUTPUT;
    use crate::model::weights::WeightStore;

    /// A fixture's config and weights, every query, key and value bias set to small values of
    /// a fixed sequence (the fixtures' are zeros, which would hide the biases' terms).
    fn fixture(name: &str) -> (ModelConfig, ModelWeights) {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let source = ModelSource::parse(folder.to_str().unwrap()).unwrap();
        let files: ModelFiles = crate::model::source::resolve(&source, &mut |_| {}).unwrap();
        let config = ModelConfig::from_file(&files.config).unwrap();
        let mut store = WeightStore::open(&files.weights, &files.folder).unwrap();
        let mut weights = config
            .family
            .description()
            .load_weights(&mut store, &config)
            .unwrap();
        let mut state = 7u32;
        for layer in &mut weights.layers {
            let bias = layer.qkv.bias.as_mut().expect("a fixture with biases");
            for b in bias {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                *b = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            }
        }
        (config, weights)
    }

    /// Items of random states, `[items, tokens, hidden]`.
    fn states(items: usize, tokens: usize, hidden: usize) -> Vec<f32> {
        let mut state = 11u32;
        (0..items * tokens * hidden)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                2.0 * ((state >> 8) as f32 / (1u32 << 24) as f32) - 1.0
            })
            .collect()
    }

    fn largest_difference(a: &[f32], b: &[f32]) -> (f32, f32) {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let off = a.iter().zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        (off, scale)
    }

    /// The read row's attention through the weights against the layer's keys and values: the
    /// same backend with an identity norm on the last layer's queries takes the usual path.
    /// Post-LN and pre-LN, causal, from the first and from the last layer, at the first,
    /// a middle and the last row, logits and gradients.
    #[test]
    fn row_attention_matches_the_keys_and_values_path() {
        for name in ["bert-sentiment", "distilbert-mlm", "gpt2-lm"] {
            let (config, weights) = fixture(name);
            let mut usual = weights.clone();
            usual.layers.last_mut().unwrap().query_norm = Some(Norm {
                gamma: Vec::new(),
                beta: Vec::new(),
                eps: 0.0,
                kind: NormKind::Identity,
            });
            let hidden = config.hidden_size;
            let layers = weights.layers.len();
            let through_weights = CpuBackend::new(config.clone(), weights);
            let usual = CpuBackend::new(config, usual);
            let last = usual.weights.layers.len() - 1;
            assert!(through_weights
                .attends_row_through_weights(last, &through_weights.weights.layers[last]));
            assert!(!usual.attends_row_through_weights(last, &usual.weights.layers[last]));
            let tokens = 7;
            let states = states(3, tokens, hidden);
            for start_layer in [0, layers - 1] {
                for row in [0, 3, tokens - 1] {
                    let run = BatchRun {
                        tokens,
                        start_layer,
                        states: &states,
                        head_patch: None,
                        logit: LogitIndex {
                            head: 0,
                            row,
                            output: TOP_OUTPUT,
                        },
                    };
                    let what = format!("{name} from layer {start_layer} at row {row}");
                    let [got, want]: [Gradients; 2] = [&through_weights, &usual]
                        .map(|backend| backend.batch_gradients_cpu(&run).unwrap());
                    assert_eq!(got.outputs, want.outputs, "{what}");
                    let (off, scale) = largest_difference(&got.logits, &want.logits);
                    assert!(
                        scale > 0.0 && off <= 1e-5 * scale,
                        "{what}: logits off by {off} of {scale}"
                    );
                    let (off, scale) = largest_difference(&got.states, &want.states);
                    assert!(
                        scale > 0.0 && off <= 1e-5 * scale,
                        "{what}: gradients off by {off} of {scale}"
                    );
                    let logits = through_weights.batch_logits_cpu(&run).unwrap();
                    let (off, scale) = largest_difference(&logits, &want.logits);
                    assert!(
                        off <= 1e-5 * scale,
                        "{what}: logits without the tape off by {off}"
                    );
                }
            }
        }
    }
}
