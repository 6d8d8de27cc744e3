//! Our BERT forward on candle, module by module as in transformers'
//! `models/bert/modeling_bert.py`, keeping what transformers computes and then throws away:
//! every layer's attention probabilities, query and key vectors, and hidden states.
//!
//! One sequence without padding runs as 2-D `[tokens, hidden]` tensors: with no padding the
//! attention mask adds zeros, so leaving it out is exact.

use candle_core::{Device, Tensor};

use super::config::{Activation, BertConfig};
use super::error::Result;
use super::weights::WeightStore;

/// A dense layer `y = x·W + b` with `W` stored transposed, `[in, out]`, so every matmul reads
/// both operands row-major.
struct Dense {
    weight_t: Tensor,
    bias: Tensor,
}

impl Dense {
    /// Loads `{name}.weight` `[out, in]` and `{name}.bias` `[out]`.
    fn load(
        store: &WeightStore,
        name: &str,
        in_encoder: bool,
        inputs: usize,
        outputs: usize,
    ) -> Result<Self> {
        let weight = store.get(&format!("{name}.weight"), in_encoder, &[outputs, inputs])?;
        let bias = store.get(&format!("{name}.bias"), in_encoder, &[outputs])?;
        Self::from_parts(&[weight], &[bias])
    }

    /// Stacks several `[out_i, in]` weights into one layer whose outputs are concatenated, so
    /// that query, key and value come out of one matmul.
    fn from_parts(weights: &[Tensor], biases: &[Tensor]) -> Result<Self> {
        let weight_t = Tensor::cat(weights, 0)?.t()?.contiguous()?;
        let bias = Tensor::cat(biases, 0)?;
        Ok(Self { weight_t, bias })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight_t)?.broadcast_add(&self.bias)?)
    }
}

/// LayerNorm over the last dimension.
struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn load(
        store: &WeightStore,
        name: &str,
        in_encoder: bool,
        width: usize,
        eps: f64,
    ) -> Result<Self> {
        Ok(Self {
            gamma: store.get(&format!("{name}.weight"), in_encoder, &[width])?,
            beta: store.get(&format!("{name}.bias"), in_encoder, &[width])?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            x,
            &self.gamma,
            &self.beta,
            self.eps,
        )?)
    }
}

fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    Ok(match activation {
        Activation::GeluErf => x.gelu_erf()?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Relu => x.relu()?,
    })
}

/// `BertEmbeddings`: word + segment + absolute position, then LayerNorm.
struct Embeddings {
    word: Tensor,
    position: Tensor,
    segment: Tensor,
    norm: LayerNorm,
}

/// `BertLayer`: self-attention with residual and LayerNorm, then the feed-forward block.
struct Layer {
    query_key_value: Dense,
    attention_output: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

/// What one layer hands back besides its output.
struct LayerCapture {
    output: Tensor,
    /// `[heads, tokens, tokens]`.
    probs: Tensor,
    /// `[heads, tokens, head_dim]`.
    queries: Tensor,
    /// `[heads, tokens, head_dim]`.
    keys: Tensor,
}

/// Everything the encoder captured, still as tensors on the device.
pub struct EncoderCapture {
    /// `[tokens, hidden]` after the embeddings and after each layer.
    pub hidden_states: Vec<Tensor>,
    /// `[heads, tokens, tokens]` per layer.
    pub attentions: Vec<Tensor>,
    /// `[heads, tokens, head_dim]` per layer.
    pub queries: Vec<Tensor>,
    /// `[heads, tokens, head_dim]` per layer.
    pub keys: Vec<Tensor>,
}

/// The BERT encoder (embeddings and layers), without heads.
pub struct BertEncoder {
    config: BertConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl BertEncoder {
    /// Loads the encoder's weights, checking every shape against the config.
    pub fn load(store: &WeightStore, config: &BertConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        let embeddings = Embeddings {
            word: store.get(
                "embeddings.word_embeddings.weight",
                true,
                &[config.vocab_size, hidden],
            )?,
            position: store.get(
                "embeddings.position_embeddings.weight",
                true,
                &[config.max_position_embeddings, hidden],
            )?,
            segment: store.get(
                "embeddings.token_type_embeddings.weight",
                true,
                &[config.type_vocab_size, hidden],
            )?,
            norm: LayerNorm::load(store, "embeddings.LayerNorm", true, hidden, eps)?,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let name = |part: &str| format!("encoder.layer.{index}.{part}");
                let qkv: Vec<(Tensor, Tensor)> = ["query", "key", "value"]
                    .iter()
                    .map(|part| -> Result<(Tensor, Tensor)> {
                        let base = name(&format!("attention.self.{part}"));
                        Ok((
                            store.get(&format!("{base}.weight"), true, &[hidden, hidden])?,
                            store.get(&format!("{base}.bias"), true, &[hidden])?,
                        ))
                    })
                    .collect::<Result<_>>()?;
                let (weights, biases): (Vec<Tensor>, Vec<Tensor>) = qkv.into_iter().unzip();
                Ok(Layer {
                    query_key_value: Dense::from_parts(&weights, &biases)?,
                    attention_output: Dense::load(
                        store,
                        &name("attention.output.dense"),
                        true,
                        hidden,
                        hidden,
                    )?,
                    attention_norm: LayerNorm::load(
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
                    output_norm: LayerNorm::load(
                        store,
                        &name("output.LayerNorm"),
                        true,
                        hidden,
                        eps,
                    )?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config: config.clone(),
            embeddings,
            layers,
        })
    }

    /// The word-embedding matrix `[vocab, hidden]`, which tied MLM decoders reuse.
    pub fn word_embeddings(&self) -> &Tensor {
        &self.embeddings.word
    }

    /// Runs the encoder over one sequence, capturing every intermediate the views need.
    pub fn forward(
        &self,
        ids: &[u32],
        segment_ids: &[u32],
        device: &Device,
    ) -> Result<EncoderCapture> {
        let tokens = ids.len();
        let ids = Tensor::new(ids, device)?;
        let segments = Tensor::new(segment_ids, device)?;
        let e = &self.embeddings;
        // transformers adds word + segment first, then positions; the order matters in f32.
        let summed = e
            .word
            .index_select(&ids, 0)?
            .add(&e.segment.index_select(&segments, 0)?)?
            .add(&e.position.narrow(0, 0, tokens)?)?;
        let mut hidden = e.norm.forward(&summed)?;

        let mut capture = EncoderCapture {
            hidden_states: Vec::with_capacity(self.layers.len() + 1),
            attentions: Vec::with_capacity(self.layers.len()),
            queries: Vec::with_capacity(self.layers.len()),
            keys: Vec::with_capacity(self.layers.len()),
        };
        capture.hidden_states.push(hidden.clone());
        for layer in &self.layers {
            let step = self.layer_forward(layer, &hidden)?;
            hidden = step.output;
            capture.hidden_states.push(hidden.clone());
            capture.attentions.push(step.probs);
            capture.queries.push(step.queries);
            capture.keys.push(step.keys);
        }
        Ok(capture)
    }

    fn layer_forward(&self, layer: &Layer, x: &Tensor) -> Result<LayerCapture> {
        let (tokens, hidden) = x.dims2()?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.head_dim();

        // [tokens, 3·hidden] → [3, heads, tokens, head_dim]
        let qkv = layer
            .query_key_value
            .forward(x)?
            .reshape((tokens, 3, heads, head_dim))?
            .permute((1, 2, 0, 3))?
            .contiguous()?;
        let queries = qkv.get(0)?;
        let keys = qkv.get(1)?;
        let values = qkv.get(2)?;

        let scale = 1.0 / (head_dim as f64).sqrt();
        let scores = (queries.matmul(&keys.t()?)? * scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&values)?
            .transpose(0, 1)?
            .reshape((tokens, hidden))?;

        let attended = layer
            .attention_norm
            .forward(&layer.attention_output.forward(&context)?.add(x)?)?;
        let inner = activate(
            &layer.intermediate.forward(&attended)?,
            self.config.hidden_act,
        )?;
        let output = layer
            .output_norm
            .forward(&layer.output.forward(&inner)?.add(&attended)?)?;
        Ok(LayerCapture {
            output,
            probs,
            queries,
            keys,
        })
    }
}

/// `BertOnlyMLMHead`: transform (dense, activation, LayerNorm), then the decoder to the vocabulary.
pub struct MlmHead {
    transform: Dense,
    activation: Activation,
    norm: LayerNorm,
    decoder: Dense,
}

impl MlmHead {
    /// Loads the head, or `Ok(None)` when the checkpoint has none. The decoder weight is tied to
    /// the word embeddings when absent; its bias is `cls.predictions.bias` or
    /// `cls.predictions.decoder.bias`.
    pub fn load(
        store: &WeightStore,
        config: &BertConfig,
        word_embeddings: &Tensor,
    ) -> Result<Option<Self>> {
        let hidden = config.hidden_size;
        let vocab = config.vocab_size;
        let Some(layout) = store.head_layout().mlm else {
            return Ok(None);
        };
        let decoder_weight = if layout.decoder_weight_stored {
            store.get("cls.predictions.decoder.weight", false, &[vocab, hidden])?
        } else {
            word_embeddings.clone()
        };
        let decoder_bias = store.get(layout.decoder_bias, false, &[vocab])?;
        Ok(Some(Self {
            transform: Dense::load(
                store,
                "cls.predictions.transform.dense",
                false,
                hidden,
                hidden,
            )?,
            activation: config.hidden_act,
            norm: LayerNorm::load(
                store,
                "cls.predictions.transform.LayerNorm",
                false,
                hidden,
                config.layer_norm_eps,
            )?,
            decoder: Dense::from_parts(&[decoder_weight], &[decoder_bias])?,
        }))
    }

    /// Vocabulary probabilities `[rows, vocab]` for the given rows of hidden states.
    pub fn probabilities(&self, hidden_rows: &Tensor) -> Result<Tensor> {
        let transformed = self.norm.forward(&activate(
            &self.transform.forward(hidden_rows)?,
            self.activation,
        )?)?;
        let logits = self.decoder.forward(&transformed)?;
        Ok(candle_nn::ops::softmax_last_dim(&logits)?)
    }
}

/// `BertPooler` + `BertOnlyNSPHead`: tanh(dense([CLS])) → two logits (is next, is random).
pub struct NspHead {
    pooler: Dense,
    classifier: Dense,
}

impl NspHead {
    /// Loads the pooler and the next-sentence classifier, or `Ok(None)` when either is absent.
    pub fn load(store: &WeightStore, config: &BertConfig) -> Result<Option<Self>> {
        let hidden = config.hidden_size;
        if !store.head_layout().nsp {
            return Ok(None);
        }
        Ok(Some(Self {
            pooler: Dense::load(store, "pooler.dense", true, hidden, hidden)?,
            classifier: Dense::load(store, "cls.seq_relationship", false, hidden, 2)?,
        }))
    }

    /// Probability that sentence B follows sentence A, from the last hidden states `[tokens, hidden]`.
    pub fn is_next_probability(&self, last_hidden: &Tensor) -> Result<f32> {
        let pooled = self.pooler.forward(&last_hidden.narrow(0, 0, 1)?)?.tanh()?;
        let probs = candle_nn::ops::softmax_last_dim(&self.classifier.forward(&pooled)?)?;
        Ok(probs.squeeze(0)?.get(0)?.to_scalar::<f32>()?)
    }
}

/// The `k` largest entries of a probability row, largest first (ties keep the lower id, as
/// `torch.topk` does on CPU in practice).
pub fn top_k(probs: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut order: Vec<u32> = (0..probs.len() as u32).collect();
    let k = k.min(order.len());
    let by_prob_desc = |a: &u32, b: &u32| {
        probs[*b as usize]
            .total_cmp(&probs[*a as usize])
            .then(a.cmp(b))
    };
    if k < order.len() && k > 0 {
        order.select_nth_unstable_by(k - 1, by_prob_desc);
    }
    order.truncate(k);
    order.sort_by(by_prob_desc);
    order
        .into_iter()
        .map(|id| (id, probs[id as usize]))
        .collect()
}
