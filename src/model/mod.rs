//! The inference core: find a checkpoint, load it, tokenize, and run BERT while capturing every
//! attention map. Nothing here knows about the GUI.

pub mod bert;
pub mod capture;
pub mod config;
pub mod cpu;
pub mod error;
pub mod source;
pub mod tokenizer;
pub mod weights;

use std::str::FromStr;
use std::time::Instant;

use candle_core::{Device, Tensor};

pub use capture::{Analysis, F32Array, MlmPrediction, TokenProbability};
pub use config::BertConfig;
pub use error::{ModelError, Result};
pub use source::{DownloadProgress, ModelSource};

use bert::{BertEncoder, EncoderCapture, MlmHead, NspHead};
use cpu::CpuBert;
use tokenizer::{BertTokenizer, EncodedText};
use weights::WeightStore;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU (always available).
    #[default]
    Cpu,
    /// The first CUDA GPU; needs the `cuda` cargo feature.
    Cuda,
    /// The Apple GPU; needs the `metal` cargo feature.
    Metal,
}

impl FromStr for DeviceChoice {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "metal" => Ok(Self::Metal),
            other => Err(ModelError::Device(format!(
                "unknown device '{other}'; use cpu, cuda or metal"
            ))),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
        })
    }
}

impl DeviceChoice {
    /// Opens the device, or says why it cannot be had in this build or on this machine.
    pub fn open(self) -> Result<Device> {
        let unavailable = |err: candle_core::Error| {
            ModelError::Device(format!(
                "cannot open the {self} device: {}",
                error::first_line(&err.to_string())
            ))
        };
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda if cfg!(feature = "cuda") => Device::new_cuda(0).map_err(unavailable),
            Self::Metal if cfg!(feature = "metal") => Device::new_metal(0).map_err(unavailable),
            Self::Cuda | Self::Metal => Err(ModelError::Device(format!(
                "this build of bertscope has no {self} support; rebuild with `cargo build --release --features {self}` or use --device cpu"
            ))),
        }
    }
}

/// A model ready to run: tokenizer, encoder and whichever heads the checkpoint has.
pub struct LoadedModel {
    name: String,
    config: BertConfig,
    device: Device,
    device_choice: DeviceChoice,
    tokenizer: BertTokenizer,
    engine: Engine,
}

/// Which implementation of the forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardPath {
    /// The tuned CPU forward on the CPU, candle's tensor ops on a GPU.
    #[default]
    Auto,
    /// candle's tensor ops everywhere (the GPU path, selectable on the CPU for comparison).
    Candle,
}

/// The loaded weights, in the form the chosen forward path needs.
// One engine per loaded model, never copied around: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Cpu(CpuBert),
    Candle {
        encoder: BertEncoder,
        mlm: Option<MlmHead>,
        nsp: Option<NspHead>,
    },
}

/// What to run: a sentence, an optional second sentence, and extra MLM positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalysisRequest {
    /// Sentence A.
    pub text_a: String,
    /// Sentence B, making a pair.
    pub text_b: Option<String>,
    /// Token positions to predict besides every `[MASK]`.
    pub mlm_positions: Vec<usize>,
    /// Predictions per position.
    pub top_k: usize,
}

impl AnalysisRequest {
    /// A single sentence with the default five MLM candidates.
    pub fn new(text_a: impl Into<String>) -> Self {
        Self {
            text_a: text_a.into(),
            top_k: 5,
            ..Self::default()
        }
    }

    /// Adds sentence B.
    pub fn with_text_b(mut self, text_b: Option<String>) -> Self {
        self.text_b = text_b;
        self
    }
}

impl LoadedModel {
    /// Finds, downloads if needed (reporting to `progress`), and loads a model on a device.
    pub fn load(
        source: &ModelSource,
        device: DeviceChoice,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<Self> {
        Self::load_with(source, device, ForwardPath::Auto, progress)
    }

    /// Like [`LoadedModel::load`], choosing the forward implementation.
    pub fn load_with(
        source: &ModelSource,
        device: DeviceChoice,
        forward: ForwardPath,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<Self> {
        let started = Instant::now();
        let files = source::resolve(source, progress)?;
        let config = BertConfig::from_file(&files.config)?;
        let tokenizer = BertTokenizer::load(&files.tokenizer, config.max_position_embeddings)?;
        let opened = device.open()?;
        let store = WeightStore::open(&files.weights, &files.folder, &opened)?;
        let engine = if device == DeviceChoice::Cpu && forward == ForwardPath::Auto {
            Engine::Cpu(CpuBert::load(&store, &config)?)
        } else {
            let encoder = BertEncoder::load(&store, &config)?;
            Engine::Candle {
                mlm: MlmHead::load(&store, &config, encoder.word_embeddings())?,
                nsp: NspHead::load(&store, &config)?,
                encoder,
            }
        };
        let model = Self {
            name: source.display_name(),
            config,
            device: opened,
            device_choice: device,
            tokenizer,
            engine,
        };
        tracing::info!(
            model = %model.name,
            mlm = model.has_mlm_head(),
            nsp = model.has_nsp_head(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "model loaded"
        );
        Ok(model)
    }

    /// The model's short name (Hub id or folder name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The device it runs on.
    pub fn device(&self) -> DeviceChoice {
        self.device_choice
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// Whether the checkpoint has a masked-LM head.
    pub fn has_mlm_head(&self) -> bool {
        match &self.engine {
            Engine::Cpu(bert) => bert.has_mlm_head(),
            Engine::Candle { mlm, .. } => mlm.is_some(),
        }
    }

    /// Whether the checkpoint has a next-sentence head.
    pub fn has_nsp_head(&self) -> bool {
        match &self.engine {
            Engine::Cpu(bert) => bert.has_nsp_head(),
            Engine::Candle { nsp, .. } => nsp.is_some(),
        }
    }

    /// Tokenizes and runs the model, capturing attention, vectors and head outputs.
    pub fn analyze(&self, request: &AnalysisRequest) -> Result<Analysis> {
        let encoded = self
            .tokenizer
            .encode(&request.text_a, request.text_b.as_deref())?;
        self.run(encoded, &request.mlm_positions, request.top_k)
    }

    /// Runs the model on tokens that were already encoded; MLM predictions cover every `[MASK]`
    /// and `mlm_positions`, NSP runs when the input is a pair.
    pub fn run(
        &self,
        encoded: EncodedText,
        mlm_positions: &[usize],
        top_k: usize,
    ) -> Result<Analysis> {
        if encoded
            .segment_ids
            .iter()
            .any(|&s| s as usize >= self.config.type_vocab_size)
        {
            return Err(ModelError::BadInput(format!(
                "this model has {} segment embedding(s) and cannot take a sentence pair",
                self.config.type_vocab_size
            )));
        }
        if let Some(&id) = encoded
            .ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(ModelError::BadInput(format!(
                "the tokenizer produced id {id}, beyond the model's vocabulary of {}; tokenizer and weights do not belong together",
                self.config.vocab_size
            )));
        }
        let mut positions: Vec<usize> = encoded
            .ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| Some(id) == self.tokenizer.mask_id())
            .map(|(position, _)| position)
            .collect();
        positions.extend(mlm_positions.iter().filter(|&&p| p < encoded.ids.len()));
        positions.sort_unstable();
        positions.dedup();
        let is_pair = encoded.sentence.contains(&Some(1));

        let (captured, mlm_probs, nsp_is_next) = match &self.engine {
            Engine::Cpu(bert) => {
                let capture = bert.forward(&encoded.ids, &encoded.segment_ids)?;
                let mlm_probs = bert.mlm_probabilities(&capture, &positions);
                let nsp = if is_pair {
                    bert.nsp_is_next(&capture)
                } else {
                    None
                };
                let arrays = [
                    capture.hidden_states,
                    capture.attentions,
                    capture.queries,
                    capture.keys,
                ];
                (arrays, mlm_probs, nsp)
            }
            Engine::Candle { encoder, mlm, nsp } => {
                let EncoderCapture {
                    hidden_states,
                    attentions,
                    queries,
                    keys,
                } = encoder.forward(&encoded.ids, &encoded.segment_ids, &self.device)?;
                let last_hidden = hidden_states
                    .last()
                    .ok_or_else(|| ModelError::Compute("the model has no layers".to_owned()))?;
                let mlm_probs = match mlm {
                    Some(head) if !positions.is_empty() => {
                        let index: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
                        let rows = last_hidden
                            .index_select(&Tensor::new(index.as_slice(), &self.device)?, 0)?;
                        Some(head.probabilities(&rows)?.to_vec2::<f32>()?)
                    }
                    Some(_) => Some(Vec::new()),
                    None => None,
                };
                let nsp = match nsp {
                    Some(head) if is_pair => Some(head.is_next_probability(last_hidden)?),
                    _ => None,
                };
                let arrays = [
                    stack(&hidden_states)?,
                    stack(&attentions)?,
                    stack(&queries)?,
                    stack(&keys)?,
                ];
                (arrays, mlm_probs, nsp)
            }
        };
        let [hidden_states, attentions, queries, keys] = captured;
        let mlm = mlm_probs.map(|rows| {
            positions
                .iter()
                .zip(rows)
                .map(|(&position, row)| MlmPrediction {
                    position,
                    top_k: bert::top_k(&row, top_k.max(1))
                        .into_iter()
                        .map(|(id, prob)| TokenProbability {
                            token: self.tokenizer.id_to_token(id).unwrap_or_default(),
                            id,
                            prob,
                        })
                        .collect(),
                })
                .collect()
        });
        Ok(Analysis {
            tokens: encoded.tokens,
            token_ids: encoded.ids,
            segment_ids: encoded.segment_ids,
            char_offsets: encoded.char_offsets,
            sentence: encoded.sentence,
            dropped_tokens: encoded.dropped_tokens,
            attentions,
            hidden_states,
            queries,
            keys,
            mlm,
            nsp_is_next,
        })
    }
}

/// Copies per-layer tensors of equal shape into one host array with a leading layer dimension.
fn stack(tensors: &[Tensor]) -> Result<F32Array> {
    let Some(first) = tensors.first() else {
        return Err(ModelError::Compute("nothing was captured".to_owned()));
    };
    let mut shape = vec![tensors.len()];
    shape.extend_from_slice(first.dims());
    let mut values = Vec::with_capacity(shape.iter().product());
    for tensor in tensors {
        values.extend(tensor.flatten_all()?.to_vec1::<f32>()?);
    }
    F32Array::new(shape, values)
        .ok_or_else(|| ModelError::Compute("captured tensors differ in shape".to_owned()))
}
