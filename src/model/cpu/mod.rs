//! The CPU forward: the same computation as [`super::bert`], tuned for a desktop CPU.
//!
//! Activations are kept feature-major (`[features, tokens]`), so every dense layer is
//! `Yᵀ = W·Xᵀ + b` with the weight exactly as stored (`[out, in]`) and every operand row-major:
//! the layout in which the `gemm` crate's AVX-512 kernels run fastest for BERT's shapes (measured
//! on bert-base at 128 tokens: ~215 GFLOP/s on two cores, against ~150 with token-major rows).
//! Each attention head is one task on the rayon pool, writing its probabilities straight into the
//! captured array; biases, residuals, GELU and LayerNorm are fused passes over the data. candle
//! still loads the weights; only the arithmetic is ours.

mod kernels;

use rayon::prelude::{IndexedParallelIterator, ParallelIterator, ParallelSliceMut};

use kernels::{activate, dense, layer_norm_columns, softmax_rows, transpose_into, MatMul, Strided};

use super::config::BertConfig;
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
            weight.extend(store.get_host(
                &format!("{name}.weight"),
                in_encoder,
                &[outputs, inputs],
            )?);
            bias.extend(store.get_host(&format!("{name}.bias"), in_encoder, &[outputs])?);
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
            gamma: store.get_host(&format!("{name}.weight"), in_encoder, &[width])?,
            beta: store.get_host(&format!("{name}.bias"), in_encoder, &[width])?,
            eps,
        })
    }

    /// Normalises each column of feature-major `xt` (`[features, columns]`) in place, after
    /// adding `residual` (same shape) when given.
    fn forward_columns(&self, xt: &mut [f32], residual: Option<&[f32]>, columns: usize) {
        layer_norm_columns(xt, residual, &self.gamma, &self.beta, self.eps, columns);
    }
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
        let heads = store.head_layout();
        let vocab = config.vocab_size;
        let mlm = match heads.mlm {
            Some(layout) => Some(MlmHead {
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
                decoder_weight: if layout.decoder_weight_stored {
                    Some(store.get_host(
                        "cls.predictions.decoder.weight",
                        false,
                        &[vocab, hidden],
                    )?)
                } else {
                    None
                },
                decoder_bias: store.get_host(layout.decoder_bias, false, &[vocab])?,
            }),
            None => None,
        };
        let nsp = if heads.nsp {
            Some(NspHead {
                pooler: Dense::load(store, "pooler.dense", true, hidden, hidden)?,
                classifier: Dense::load(store, "cls.seq_relationship", false, hidden, 2)?,
            })
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            word: store.get_host(
                "embeddings.word_embeddings.weight",
                true,
                &[config.vocab_size, hidden],
            )?,
            position: store.get_host(
                "embeddings.position_embeddings.weight",
                true,
                &[config.max_position_embeddings, hidden],
            )?,
            segment: store.get_host(
                "embeddings.token_type_embeddings.weight",
                true,
                &[config.type_vocab_size, hidden],
            )?,
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
