//! The CPU forward: the same computation as [`super::bert`], tuned for a desktop CPU.
//!
//! Activations are kept feature-major (`[features, tokens]`), so every dense layer is
//! `Yᵀ = W·Xᵀ + b` with the weight exactly as stored (`[out, in]`) and every operand row-major:
//! the layout in which the `gemm` crate's AVX-512 kernels run fastest for BERT's shapes (measured
//! on bert-base at 128 tokens: ~215 GFLOP/s on two cores, against ~150 with token-major rows).
//! Each attention head is one task on the rayon pool, writing its probabilities straight into the
//! captured array; biases, residuals, GELU and LayerNorm are fused passes over the data. candle
//! still loads the weights; only the arithmetic is ours.

use rayon::prelude::{IndexedParallelIterator, ParallelIterator, ParallelSliceMut};

use super::config::{Activation, BertConfig};
use super::error::{ModelError, Result};
use super::weights::WeightStore;
use super::F32Array;

/// A dense layer: weight `[out, in]` row-major as stored in checkpoints, bias `[out]`.
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    fn load(
        store: &WeightStore,
        name: &str,
        in_encoder: bool,
        inputs: usize,
        outputs: usize,
    ) -> Result<Self> {
        Self::stacked(store, &[name], in_encoder, inputs, outputs)
    }

    /// Several layers with the same input stacked into one, outputs concatenated in order.
    fn stacked(
        store: &WeightStore,
        names: &[&str],
        in_encoder: bool,
        inputs: usize,
        outputs: usize,
    ) -> Result<Self> {
        let mut weight = Vec::with_capacity(names.len() * outputs * inputs);
        let mut bias = Vec::with_capacity(names.len() * outputs);
        for name in names {
            weight.extend(host(&store.get(
                &format!("{name}.weight"),
                in_encoder,
                &[outputs, inputs],
            )?)?);
            bias.extend(host(&store.get(
                &format!("{name}.bias"),
                in_encoder,
                &[outputs],
            )?)?);
        }
        Ok(Self {
            weight,
            bias,
            inputs,
            outputs: names.len() * outputs,
        })
    }

    /// `Yᵀ = W·Xᵀ + b` for feature-major `xt` (`[inputs, columns]`); returns `[outputs, columns]`.
    fn forward(&self, xt: &[f32], columns: usize) -> Vec<f32> {
        dense(
            &self.weight,
            &self.bias,
            self.outputs,
            self.inputs,
            xt,
            columns,
        )
    }
}

/// `W·Xᵀ + b` with `w` `[outputs, inputs]` and `xt` `[inputs, columns]`, both row-major.
fn dense(
    w: &[f32],
    bias: &[f32],
    outputs: usize,
    inputs: usize,
    xt: &[f32],
    columns: usize,
) -> Vec<f32> {
    assert_eq!(w.len(), outputs * inputs);
    assert_eq!(bias.len(), outputs);
    assert_eq!(xt.len(), inputs * columns);
    let mut out = Vec::with_capacity(outputs * columns);
    for &b in bias {
        out.extend(std::iter::repeat_n(b, columns));
    }
    let operands = MatMul {
        m: outputs,
        n: columns,
        k: inputs,
        lhs: Strided::row_major(w, inputs),
        rhs: Strided::row_major(xt, columns),
    };
    operands.run(&mut out, columns, 1.0, true, true);
    out
}

/// A matrix operand: element `(r, c)` is at `r·row_stride + c·col_stride`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Strided<'a> {
    fn row_major(data: &'a [f32], columns: usize) -> Self {
        Self {
            data,
            row_stride: columns,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `columns` columns.
    fn transposed(data: &'a [f32], columns: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: columns,
        }
    }

    /// Index of the last element of a `rows × cols` view, which must lie inside `data`.
    fn check(&self, rows: usize, cols: usize) {
        let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
        assert!(last < self.data.len(), "matrix view out of bounds");
    }
}

/// `dst (m×n, row-major with row stride dst_row_stride) (+)= scale · lhs (m×k) · rhs (k×n)`.
struct MatMul<'a> {
    m: usize,
    n: usize,
    k: usize,
    lhs: Strided<'a>,
    rhs: Strided<'a>,
}

impl MatMul<'_> {
    fn run(
        &self,
        dst: &mut [f32],
        dst_row_stride: usize,
        scale: f32,
        accumulate: bool,
        parallel: bool,
    ) {
        if self.m == 0 || self.n == 0 {
            return;
        }
        self.lhs.check(self.m, self.k.max(1));
        self.rhs.check(self.k.max(1), self.n);
        assert!(
            (self.m - 1) * dst_row_stride + self.n <= dst.len(),
            "destination out of bounds"
        );
        assert!(self.n <= dst_row_stride);
        let parallelism = if parallel && rayon::current_num_threads() > 1 {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the asserts above keep every element gemm touches inside the three slices,
        // and `dst` is borrowed mutably, so it cannot alias the operands.
        unsafe {
            gemm::gemm(
                self.m,
                self.n,
                self.k,
                dst.as_mut_ptr(),
                1,
                dst_row_stride as isize,
                accumulate,
                self.lhs.data.as_ptr(),
                self.lhs.col_stride as isize,
                self.lhs.row_stride as isize,
                self.rhs.data.as_ptr(),
                self.rhs.col_stride as isize,
                self.rhs.row_stride as isize,
                1.0,
                scale,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

/// LayerNorm parameters.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f64,
}

impl Norm {
    fn load(
        store: &WeightStore,
        name: &str,
        in_encoder: bool,
        width: usize,
        eps: f64,
    ) -> Result<Self> {
        Ok(Self {
            gamma: host(&store.get(&format!("{name}.weight"), in_encoder, &[width])?)?,
            beta: host(&store.get(&format!("{name}.bias"), in_encoder, &[width])?)?,
            eps,
        })
    }

    /// Normalises each column of feature-major `xt` (`[features, columns]`) in place, after
    /// adding `residual` (same shape) when given.
    fn forward_columns(&self, xt: &mut [f32], residual: Option<&[f32]>, columns: usize) {
        let features = self.gamma.len();
        if let Some(residual) = residual {
            xt.iter_mut().zip(residual).for_each(|(x, r)| *x += r);
        }
        // Statistics in f64: cheap at these sizes and no less exact than transformers' f32.
        let mut mean = vec![0f64; columns];
        for row in xt.chunks_exact(columns) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, &x)| *m += f64::from(x));
        }
        mean.iter_mut().for_each(|m| *m /= features as f64);
        let mut variance = vec![0f64; columns];
        for row in xt.chunks_exact(columns) {
            variance
                .iter_mut()
                .zip(row)
                .zip(&mean)
                .for_each(|((v, &x), m)| *v += (f64::from(x) - m).powi(2));
        }
        let inv_std: Vec<f64> = variance
            .iter()
            .map(|v| 1.0 / (v / features as f64 + self.eps).sqrt())
            .collect();
        for (feature, row) in xt.chunks_exact_mut(columns).enumerate() {
            let (gamma, beta) = (
                f64::from(self.gamma[feature]),
                f64::from(self.beta[feature]),
            );
            for ((x, m), s) in row.iter_mut().zip(&mean).zip(&inv_std) {
                *x = ((f64::from(*x) - m) * s * gamma + beta) as f32;
            }
        }
    }
}

fn activate(values: &mut [f32], activation: Activation) {
    let apply: fn(f32) -> f32 = match activation {
        // transformers' `gelu`: x·Φ(x) with the exact error function.
        Activation::GeluErf => {
            |x| 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
        }
        // `gelu_new` / `gelu_pytorch_tanh`.
        Activation::GeluTanh => |x| {
            let inner = (2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + inner.tanh())
        },
        Activation::Relu => |x| x.max(0.0),
    };
    values
        .par_chunks_mut(4096)
        .for_each(|chunk| chunk.iter_mut().for_each(|x| *x = apply(*x)));
}

/// Softmax of each row, in place.
fn softmax_rows(values: &mut [f32], width: usize) {
    for row in values.chunks_exact_mut(width) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        row.iter_mut().for_each(|x| *x /= sum);
    }
}

/// Transposes a row-major `rows × cols` block into `dst` (`cols × rows`).
fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for (r, row) in src.chunks_exact(cols).take(rows).enumerate() {
        for (c, &value) in row.iter().enumerate() {
            dst[c * rows + r] = value;
        }
    }
}

fn host(tensor: &candle_core::Tensor) -> Result<Vec<f32>> {
    Ok(tensor.flatten_all()?.to_vec1::<f32>()?)
}

struct Layer {
    query_key_value: Dense,
    attention_output: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// What the encoder captured, already as host arrays.
pub struct CpuCapture {
    /// `[1 + layers, tokens, hidden]`.
    pub hidden_states: F32Array,
    /// `[layers, heads, tokens, tokens]`.
    pub attentions: F32Array,
    /// `[layers, heads, tokens, head_dim]`.
    pub queries: F32Array,
    /// `[layers, heads, tokens, head_dim]`.
    pub keys: F32Array,
    /// The last layer's output, feature-major `[hidden, tokens]`, for the heads.
    last_hidden_t: Vec<f32>,
}

/// BERT on the CPU: encoder and whichever heads the checkpoint has.
pub struct CpuBert {
    config: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    segment: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    mlm: Option<MlmHead>,
    nsp: Option<NspHead>,
}

struct MlmHead {
    transform: Dense,
    norm: Norm,
    /// `None` when tied to the word embeddings.
    decoder_weight: Option<Vec<f32>>,
    decoder_bias: Vec<f32>,
}

struct NspHead {
    pooler: Dense,
    classifier: Dense,
}

impl CpuBert {
    /// Loads every weight from the store into host memory.
    pub fn load(store: &WeightStore, config: &BertConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let name = |part: &str| format!("encoder.layer.{index}.{part}");
                let qkv: Vec<String> = ["query", "key", "value"]
                    .iter()
                    .map(|part| name(&format!("attention.self.{part}")))
                    .collect();
                let qkv: Vec<&str> = qkv.iter().map(String::as_str).collect();
                Ok(Layer {
                    query_key_value: Dense::stacked(store, &qkv, true, hidden, hidden)?,
                    attention_output: Dense::load(
                        store,
                        &name("attention.output.dense"),
                        true,
                        hidden,
                        hidden,
                    )?,
                    attention_norm: Norm::load(
                        store,
                        &name("attention.output.LayerNorm"),
                        true,
                        hidden,
                        eps,
                    )?,
                    intermediate: Dense::load(
                        store,
                        &name("intermediate.dense"),
                        true,
                        hidden,
                        config.intermediate_size,
                    )?,
                    output: Dense::load(
                        store,
                        &name("output.dense"),
                        true,
                        config.intermediate_size,
                        hidden,
                    )?,
                    output_norm: Norm::load(store, &name("output.LayerNorm"), true, hidden, eps)?,
                })
            })
            .collect::<Result<_>>()?;
        let mlm = if store.contains("cls.predictions.transform.dense.weight", false) {
            let vocab = config.vocab_size;
            let decoder_bias = match store.get_optional("cls.predictions.bias", false, &[vocab])? {
                Some(bias) => bias,
                None => store.get("cls.predictions.decoder.bias", false, &[vocab])?,
            };
            Some(MlmHead {
                transform: Dense::load(
                    store,
                    "cls.predictions.transform.dense",
                    false,
                    hidden,
                    hidden,
                )?,
                norm: Norm::load(
                    store,
                    "cls.predictions.transform.LayerNorm",
                    false,
                    hidden,
                    eps,
                )?,
                decoder_weight: store
                    .get_optional("cls.predictions.decoder.weight", false, &[vocab, hidden])?
                    .map(|weight| host(&weight))
                    .transpose()?,
                decoder_bias: host(&decoder_bias)?,
            })
        } else {
            None
        };
        let nsp = if store.contains("pooler.dense.weight", true)
            && store.contains("cls.seq_relationship.weight", false)
        {
            Some(NspHead {
                pooler: Dense::load(store, "pooler.dense", true, hidden, hidden)?,
                classifier: Dense::load(store, "cls.seq_relationship", false, hidden, 2)?,
            })
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            word: host(&store.get(
                "embeddings.word_embeddings.weight",
                true,
                &[config.vocab_size, hidden],
            )?)?,
            position: host(&store.get(
                "embeddings.position_embeddings.weight",
                true,
                &[config.max_position_embeddings, hidden],
            )?)?,
            segment: host(&store.get(
                "embeddings.token_type_embeddings.weight",
                true,
                &[config.type_vocab_size, hidden],
            )?)?,
            embedding_norm: Norm::load(store, "embeddings.LayerNorm", true, hidden, eps)?,
            layers,
            mlm,
            nsp,
        })
    }

    /// Whether the checkpoint has a masked-LM head.
    pub fn has_mlm_head(&self) -> bool {
        self.mlm.is_some()
    }

    /// Whether the checkpoint has a next-sentence head.
    pub fn has_nsp_head(&self) -> bool {
        self.nsp.is_some()
    }

    /// Runs the encoder over one sequence (ids already checked against the vocabulary).
    pub fn forward(&self, ids: &[u32], segment_ids: &[u32]) -> Result<CpuCapture> {
        let config = &self.config;
        let tokens = ids.len();
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        let head_dim = config.head_dim();
        let layers = self.layers.len();
        if tokens == 0 || tokens > config.max_position_embeddings {
            return Err(ModelError::BadInput(format!(
                "{tokens} tokens do not fit the model's 1 to {} positions",
                config.max_position_embeddings
            )));
        }

        let mut hidden_states = vec![0f32; (layers + 1) * tokens * hidden];
        let mut attentions = vec![0f32; layers * heads * tokens * tokens];
        let mut queries = vec![0f32; layers * heads * tokens * head_dim];
        let mut keys = vec![0f32; layers * heads * tokens * head_dim];

        // Embeddings, feature-major: column t is word + segment + position, summed in
        // transformers' order.
        let mut xt = vec![0f32; hidden * tokens];
        for (t, (&id, &segment)) in ids.iter().zip(segment_ids).enumerate() {
            let word = &self.word[id as usize * hidden..][..hidden];
            let segment = &self.segment[segment as usize * hidden..][..hidden];
            let position = &self.position[t * hidden..][..hidden];
            for f in 0..hidden {
                xt[f * tokens + t] = word[f] + segment[f] + position[f];
            }
        }
        self.embedding_norm.forward_columns(&mut xt, None, tokens);
        transpose_into(&xt, hidden, tokens, &mut hidden_states[..tokens * hidden]);

        let per_layer_attention = heads * tokens * tokens;
        let per_layer_vectors = heads * tokens * head_dim;
        for (index, layer) in self.layers.iter().enumerate() {
            xt = self.layer_forward(
                layer,
                &xt,
                tokens,
                &mut attentions[index * per_layer_attention..][..per_layer_attention],
                &mut queries[index * per_layer_vectors..][..per_layer_vectors],
                &mut keys[index * per_layer_vectors..][..per_layer_vectors],
            );
            transpose_into(
                &xt,
                hidden,
                tokens,
                &mut hidden_states[(index + 1) * tokens * hidden..][..tokens * hidden],
            );
        }

        let array = |shape: Vec<usize>, values| {
            F32Array::new(shape, values)
                .ok_or_else(|| ModelError::Compute("captured array has the wrong size".to_owned()))
        };
        Ok(CpuCapture {
            hidden_states: array(vec![layers + 1, tokens, hidden], hidden_states)?,
            attentions: array(vec![layers, heads, tokens, tokens], attentions)?,
            queries: array(vec![layers, heads, tokens, head_dim], queries)?,
            keys: array(vec![layers, heads, tokens, head_dim], keys)?,
            last_hidden_t: xt,
        })
    }

    /// One `BertLayer` on feature-major input; fills this layer's captured probabilities,
    /// queries and keys, and returns the feature-major output.
    fn layer_forward(
        &self,
        layer: &Layer,
        xt: &[f32],
        tokens: usize,
        attention: &mut [f32],
        queries: &mut [f32],
        keys: &mut [f32],
    ) -> Vec<f32> {
        let hidden = self.config.hidden_size;
        let head_dim = self.config.head_dim();
        let scale = 1.0 / (head_dim as f32).sqrt();

        // [3·hidden, tokens]: rows of queries, then keys, then values.
        let qkv = layer.query_key_value.forward(xt, tokens);
        let mut context_t = vec![0f32; hidden * tokens];
        let head_block = head_dim * tokens;
        attention
            .par_chunks_mut(tokens * tokens)
            .zip(context_t.par_chunks_mut(head_block))
            .zip(queries.par_chunks_mut(head_block))
            .zip(keys.par_chunks_mut(head_block))
            .enumerate()
            .for_each(|(head, (((probs, context), query_out), key_out))| {
                let q = &qkv[head * head_block..][..head_block];
                let k = &qkv[(hidden + head * head_dim) * tokens..][..head_block];
                let v = &qkv[(2 * hidden + head * head_dim) * tokens..][..head_block];
                // scores = (q·kᵀ)·scale, with q and k stored [head_dim, tokens].
                MatMul {
                    m: tokens,
                    n: tokens,
                    k: head_dim,
                    lhs: Strided::transposed(q, tokens),
                    rhs: Strided::row_major(k, tokens),
                }
                .run(probs, tokens, scale, false, false);
                softmax_rows(probs, tokens);
                // contextᵀ = vᵀ·probsᵀ: [head_dim, tokens].
                MatMul {
                    m: head_dim,
                    n: tokens,
                    k: tokens,
                    lhs: Strided::row_major(v, tokens),
                    rhs: Strided::transposed(probs, tokens),
                }
                .run(context, tokens, 1.0, false, false);
                transpose_into(q, head_dim, tokens, query_out);
                transpose_into(k, head_dim, tokens, key_out);
            });

        let mut attended = layer.attention_output.forward(&context_t, tokens);
        layer
            .attention_norm
            .forward_columns(&mut attended, Some(xt), tokens);
        let mut inner = layer.intermediate.forward(&attended, tokens);
        activate(&mut inner, self.config.hidden_act);
        let mut output = layer.output.forward(&inner, tokens);
        layer
            .output_norm
            .forward_columns(&mut output, Some(&attended), tokens);
        output
    }

    /// Vocabulary probabilities `[positions, vocab]` at the given token positions.
    pub fn mlm_probabilities(
        &self,
        capture: &CpuCapture,
        positions: &[usize],
    ) -> Option<Vec<Vec<f32>>> {
        let head = self.mlm.as_ref()?;
        if positions.is_empty() {
            return Some(Vec::new());
        }
        let columns = self.columns(capture, positions);
        let count = positions.len();
        let mut transformed = head.transform.forward(&columns, count);
        activate(&mut transformed, self.config.hidden_act);
        head.norm.forward_columns(&mut transformed, None, count);
        let decoder = head.decoder_weight.as_deref().unwrap_or(&self.word);
        let vocab = self.config.vocab_size;
        let logits_t = dense(
            decoder,
            &head.decoder_bias,
            vocab,
            self.config.hidden_size,
            &transformed,
            count,
        );
        let mut logits = vec![0f32; count * vocab];
        transpose_into(&logits_t, vocab, count, &mut logits);
        softmax_rows(&mut logits, vocab);
        Some(logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }

    /// Probability that sentence B follows sentence A.
    pub fn nsp_is_next(&self, capture: &CpuCapture) -> Option<f32> {
        let head = self.nsp.as_ref()?;
        let mut pooled = head.pooler.forward(&self.columns(capture, &[0]), 1);
        pooled.iter_mut().for_each(|x| *x = x.tanh());
        let mut logits = head.classifier.forward(&pooled, 1);
        softmax_rows(&mut logits, 2);
        Some(logits[0])
    }

    /// The last hidden states of some tokens, feature-major `[hidden, positions]`.
    fn columns(&self, capture: &CpuCapture, positions: &[usize]) -> Vec<f32> {
        let tokens = capture.last_hidden_t.len() / self.config.hidden_size;
        capture
            .last_hidden_t
            .chunks_exact(tokens)
            .flat_map(|row| positions.iter().map(move |&p| row[p]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_matches_naive_product() {
        let (outputs, inputs, columns) = (3, 4, 5);
        let w: Vec<f32> = (0..outputs * inputs)
            .map(|v| v as f32 * 0.5 - 2.0)
            .collect();
        let b = vec![1.0, -1.0, 0.5];
        let xt: Vec<f32> = (0..inputs * columns).map(|v| (v as f32).sin()).collect();
        let out = dense(&w, &b, outputs, inputs, &xt, columns);
        for o in 0..outputs {
            for c in 0..columns {
                let expected: f32 = b[o]
                    + (0..inputs)
                        .map(|i| w[o * inputs + i] * xt[i * columns + c])
                        .sum::<f32>();
                assert!((out[o * columns + c] - expected).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let mut values = vec![1.0, 2.0, 3.0, -1000.0, 0.0, 1000.0];
        softmax_rows(&mut values, 3);
        assert!((values[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(values[5], 1.0);
        assert!(values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn transpose_round_trips() {
        let src: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let mut t = vec![0.0; 6];
        transpose_into(&src, 2, 3, &mut t);
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }
}
