//! The inference core: find a checkpoint, load it through its family's description, tokenize,
//! and run it on a backend while capturing every attention map. Nothing here knows about the GUI.
//!
//! - [`family`]: one description per model family (config keys, tensor names, order of
//!   operations, heads, tokenizer conventions).
//! - [`backend`]: the tuned CPU kernels and candle's ops, behind one trait.
//! - [`LoadedModel::run`] assembles an [`Analysis`] from any backend, in one place.

pub mod atomic_file;
pub mod attribution;
pub mod backend;
pub mod capture;
pub mod captured;
pub mod config;
pub mod error;
pub mod family;
pub mod family_id;
pub mod finetune;
pub mod generation;
pub mod logit_attribution;
pub mod params;
pub mod patching;
pub mod prediction_heads;
pub mod probes;
pub mod source;
pub mod target;
pub mod tokenizer;
pub mod weights;

use std::str::FromStr;

use rayon::slice::ParallelSlice;
use std::time::Instant;

use candle_core::Device;

pub use capture::{
    Analysis, Answer, Classification, F32Array, LabelScore, TokenLabel, TokenPrediction,
    TokenProbability,
};
pub use captured::CapturedArray;
pub use config::{KeyWindow, ModelConfig, ProblemType, Segments};
pub use error::{ModelError, Result};
pub use family_id::Family;
pub use params::HeadKind;
pub use probes::{EmbeddingBreakdown, LensLayer, LensPosition, TokenEmbedding};
pub use source::{DownloadProgress, ModelSource};

use backend::candle::CandleBackend;
use backend::cpu::CpuBackend;
use backend::{Backend, ForwardInput, Incremental, Interventions};
use params::HeadInput;
use tokenizer::{EncodedText, ModelTokenizer};
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

/// Which backend runs the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardPath {
    /// The tuned CPU backend on the CPU, candle's tensor ops on a GPU.
    #[default]
    Auto,
    /// candle's tensor ops everywhere (the GPU path, selectable on the CPU for comparison).
    Candle,
}

/// The loaded weights on the chosen backend.
// One engine per loaded model, never copied around: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Cpu(CpuBackend),
    Candle(CandleBackend),
}

/// What a head predicts and which rows it reads; its weights live in the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeadSummary {
    kind: HeadKind,
    input: HeadInput,
    outputs: usize,
}

/// A model ready to run: configuration, tokenizer, backend and whichever heads the checkpoint has.
pub struct LoadedModel {
    name: String,
    config: ModelConfig,
    device_choice: DeviceChoice,
    tokenizer: ModelTokenizer,
    engine: Engine,
    heads: Vec<HeadSummary>,
    generation: generation::GenerationDefaults,
}

/// What to run: a text, an optional second text, and extra masked-LM positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalysisRequest {
    /// Sentence A (the question, for question answering).
    pub text_a: String,
    /// Sentence B, making a pair (the context, for question answering).
    pub text_b: Option<String>,
    /// Token positions to predict besides every mask token.
    pub mlm_positions: Vec<usize>,
    /// Predictions per position.
    pub top_k: usize,
    /// Heads `(layer, head)` to ablate, 0-based.
    pub ablated_heads: Vec<(usize, usize)>,
    /// Whether to compute the value norms that norm-based attention needs.
    pub value_norms: bool,
    /// Whether to compute the logit lens with the masked-LM predictions (see
    /// [`RunOptions::lens`]).
    pub lens: bool,
}

impl AnalysisRequest {
    /// A single sentence with the default five candidates per prediction.
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

    /// What to run besides the forward pass.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            mlm_positions: self.mlm_positions.clone(),
            top_k: self.top_k,
            ablated_heads: self.ablated_heads.clone(),
            value_norms: self.value_norms,
            lens: self.lens,
        }
    }
}

/// What a run computes besides the forward pass, and how it alters it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Token positions to predict besides every mask token.
    pub mlm_positions: Vec<usize>,
    /// Predictions per position.
    pub top_k: usize,
    /// Heads `(layer, head)` to ablate, 0-based.
    pub ablated_heads: Vec<(usize, usize)>,
    /// Whether to compute the value norms of norm-based attention.
    pub value_norms: bool,
    /// Whether to compute the logit lens (at the masked-LM positions, or a causal LM's last
    /// token) in the same pass over the vocabulary matrix as the predictions, the matrix being
    /// most of the lens's cost; see [`Analysis::logit_lens`].
    pub lens: bool,
}

/// Rows of the last hidden states a causal LM head reads at once: one pass over the vocabulary
/// matrix serves this many positions, and the logits of a 1024-token input never need a
/// `[1024, vocab]` array.
const NEXT_TOKEN_ROWS_PER_PASS: usize = 256;

impl LoadedModel {
    /// Finds, downloads if needed (reporting to `progress`), and loads a model on a device.
    pub fn load(
        source: &ModelSource,
        device: DeviceChoice,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<Self> {
        Self::load_with(source, device, ForwardPath::Auto, progress)
    }

    /// Like [`LoadedModel::load`], choosing the backend.
    pub fn load_with(
        source: &ModelSource,
        device: DeviceChoice,
        forward: ForwardPath,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<Self> {
        let started = Instant::now();
        let files = source::resolve(source, progress)?;
        let config = ModelConfig::from_file(&files.config)?;
        let description = config.family.description();
        let tokenizer = ModelTokenizer::load(
            &files.tokenizer,
            &description.tokenizer(),
            config.family.name(),
            config.max_tokens(),
        )?;
        let opened = device.open()?;
        let mut store = WeightStore::open(&files.weights, &files.folder)?;
        let weights = description.load_weights(&mut store, &config)?;
        // A broken generation_config.json costs only the decoding defaults, not the model.
        let generation =
            generation::GenerationDefaults::read(&files.config, files.generation_config.as_deref())
                .or_else(|err| {
                    tracing::warn!(%err, "generation_config.json ignored");
                    generation::GenerationDefaults::read(&files.config, None)
                })?;
        let heads = weights
            .heads
            .iter()
            .map(|head| HeadSummary {
                kind: head.kind,
                input: head.input,
                outputs: head.outputs,
            })
            .collect();
        let engine = if device == DeviceChoice::Cpu && forward == ForwardPath::Auto {
            Engine::Cpu(CpuBackend::new(config.clone(), weights))
        } else {
            Engine::Candle(CandleBackend::new(config.clone(), weights, &opened)?)
        };
        let model = Self {
            name: source.display_name(),
            config,
            device_choice: device,
            tokenizer,
            engine,
            heads,
            generation,
        };
        tracing::info!(
            model = %model.name,
            family = %model.config.family,
            heads = ?model.head_kinds().collect::<Vec<_>>(),
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
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The model family.
    pub fn family(&self) -> Family {
        self.config.family
    }

    /// The device it runs on.
    pub fn device(&self) -> DeviceChoice {
        self.device_choice
    }

    /// Which backend runs the forward pass, for reports.
    pub fn backend_name(&self) -> &'static str {
        match &self.engine {
            Engine::Cpu(_) => "tuned CPU kernels",
            Engine::Candle(_) => "candle",
        }
    }

    /// Waits until the device has finished all queued work (GPUs run asynchronously), so that a
    /// timing of [`LoadedModel::run`] covers its computation; immediate on the CPU.
    pub fn synchronize(&self) -> Result<()> {
        match &self.engine {
            Engine::Cpu(_) => Ok(()),
            Engine::Candle(backend) => backend.synchronize(),
        }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ModelTokenizer {
        &self.tokenizer
    }

    /// The heads the checkpoint has, in the order they run.
    pub fn head_kinds(&self) -> impl Iterator<Item = HeadKind> + '_ {
        self.heads.iter().map(|head| head.kind)
    }

    /// Whether the checkpoint has a head of this kind.
    pub fn has_head(&self, kind: HeadKind) -> bool {
        self.head_kinds().any(|k| k == kind)
    }

    /// Whether the checkpoint has a masked-LM head.
    pub fn has_mlm_head(&self) -> bool {
        self.has_head(HeadKind::MaskedLm)
    }

    /// Whether the checkpoint has a next-sentence head.
    pub fn has_nsp_head(&self) -> bool {
        self.has_head(HeadKind::NextSentence)
    }

    /// The label names of a classification head (sequence or token), in id order.
    pub fn labels(&self) -> Vec<String> {
        self.heads
            .iter()
            .find(|head| {
                matches!(
                    head.kind,
                    HeadKind::SequenceClassification | HeadKind::TokenClassification
                )
            })
            .map(|head| (0..head.outputs).map(|id| self.config.label(id)).collect())
            .unwrap_or_default()
    }

    /// What the checkpoint gets wrong that loading let through, one line each: a classifier
    /// whose `id2label` names fewer labels than it has outputs (transformers refuses such a
    /// checkpoint; here the rest are named `LABEL_n`, as transformers names unnamed labels).
    pub fn notes(&self) -> Vec<String> {
        let named = self.config.labels.len();
        self.heads
            .iter()
            .filter(|head| {
                matches!(
                    head.kind,
                    HeadKind::SequenceClassification | HeadKind::TokenClassification
                ) && named > 0
                    && named < head.outputs
            })
            .map(|head| {
                let unnamed = if head.outputs - named == 1 {
                    format!("LABEL_{named}")
                } else {
                    format!("LABEL_{named} to LABEL_{}", head.outputs - 1)
                };
                format!(
                    "config.json's id2label names {named} labels but the classifier has {} outputs; the rest are called {unnamed}",
                    head.outputs
                )
            })
            .collect()
    }

    /// Tokenizes and runs the model, capturing attention, vectors and head outputs.
    pub fn analyze(&self, request: &AnalysisRequest) -> Result<Analysis> {
        if request.text_b.is_some() && !self.config.architecture.takes_pairs {
            return Err(ModelError::BadInput(format!(
                "{} reads one text, not a sentence pair; leave out the second sentence (--text-b)",
                self.config.family.name()
            )));
        }
        let encoded = self
            .tokenizer
            .encode(&request.text_a, request.text_b.as_deref())?;
        self.run_with(encoded, &request.options())
    }

    /// Runs the model on tokens that were already encoded. Masked-LM predictions cover every
    /// mask token and `mlm_positions`; the next-sentence and question-answering heads run when
    /// the input is a pair.
    pub fn run(
        &self,
        encoded: EncodedText,
        mlm_positions: &[usize],
        top_k: usize,
    ) -> Result<Analysis> {
        let options = RunOptions {
            mlm_positions: mlm_positions.to_vec(),
            top_k,
            ..RunOptions::default()
        };
        self.run_with(encoded, &options)
    }

    /// Like [`LoadedModel::run`], with heads ablated and value norms as `options` asks.
    pub fn run_with(&self, encoded: EncodedText, options: &RunOptions) -> Result<Analysis> {
        let (layers, heads) = (
            self.config.num_hidden_layers,
            self.config.num_attention_heads,
        );
        if let Some(&(layer, head)) = options
            .ablated_heads
            .iter()
            .find(|&&(layer, head)| layer >= layers || head >= heads)
        {
            return Err(ModelError::BadInput(format!(
                "there is no head {layer}:{head} to ablate; this model has layers 0 to {} with heads 0 to {}",
                layers - 1,
                heads - 1
            )));
        }
        let segment_ids = self.checked_segments(&encoded)?;
        match &self.engine {
            Engine::Cpu(backend) => self.assemble(backend, encoded, segment_ids, options),
            Engine::Candle(backend) => self.assemble(backend, encoded, segment_ids, options),
        }
    }

    /// Checks that `encoded` can run (not empty, fits the positions, ids in the vocabulary,
    /// segments the model has) and gives the segment ids the model receives.
    pub(crate) fn checked_segments(&self, encoded: &EncodedText) -> Result<Vec<u32>> {
        let tokens = encoded.ids.len();
        let max = self.config.max_tokens();
        if tokens == 0 {
            return Err(ModelError::BadInput(
                "the text is empty; type at least one word".to_owned(),
            ));
        }
        if tokens > max {
            return Err(ModelError::BadInput(format!(
                "{tokens} tokens do not fit the model's 1 to {max} positions"
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
        let segment_ids = match self.config.architecture.segments {
            Segments::FromTokenizer => {
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
                encoded.segment_ids.clone()
            }
            Segments::Zeros | Segments::Absent => vec![0; tokens],
        };
        Ok(segment_ids)
    }

    /// The object-safe interface of the backend, for batched runs and interventions.
    pub(crate) fn interventions(&self) -> Result<&dyn Interventions> {
        Ok(match &self.engine {
            Engine::Cpu(backend) => backend,
            Engine::Candle(backend) => backend,
        })
    }

    /// The object-safe interface of the backend for generation with a key/value cache.
    pub(crate) fn incremental(&self) -> &dyn Incremental {
        match &self.engine {
            Engine::Cpu(backend) => backend,
            Engine::Candle(backend) => backend,
        }
    }

    /// What the checkpoint says about decoding (`generation_config.json`, `eos_token_id`).
    pub fn generation_defaults(&self) -> &generation::GenerationDefaults {
        &self.generation
    }

    /// The language-model head generation reads, or one line saying why this model cannot
    /// generate.
    pub fn generation_head(&self) -> Result<usize> {
        if !self.config.architecture.causal {
            return Err(ModelError::BadInput(format!(
                "{} is an encoder ({}), which predicts masked tokens but cannot write text; load a causal model with a language-model head, such as GPT-2",
                self.name,
                self.config.family.name()
            )));
        }
        self.heads
            .iter()
            .position(|head| head.kind == HeadKind::NextToken)
            .ok_or_else(|| {
                ModelError::BadInput(format!(
                    "{} has no language-model head (it was saved as {}); load a checkpoint saved with one, such as GPT2LMHeadModel",
                    self.name,
                    self.config.model_classes.join(", ")
                ))
            })
    }

    /// Head number `head` on host rows `[count, hidden]`, each first through any final norm
    /// where `final_norm` says: `[count, outputs]`.
    pub(crate) fn row_logits(
        &self,
        rows: &[f32],
        head: usize,
        final_norm: &[bool],
    ) -> Result<captured::KeptFloats> {
        match &self.engine {
            Engine::Cpu(backend) => backend.head_logits_of_rows(rows, head, final_norm),
            Engine::Candle(backend) => backend.head_logits_of_rows(rows, head, final_norm),
        }
    }

    /// Runs a backend and every head, and assembles what they computed.
    /// Long because it is the one place every prediction head's output is read and put into the
    /// `Analysis`; the vocabulary heads, the long cases, are their own functions.
    fn assemble<B: Backend>(
        &self,
        backend: &B,
        encoded: EncodedText,
        segment_ids: Vec<u32>,
        options: &RunOptions,
    ) -> Result<Analysis> {
        let tokens = encoded.ids.len();
        let positions = self.config.position_ids(&encoded.ids);
        let uses_segments = self.config.architecture.segments != Segments::Absent;
        let mut ablated_heads = options.ablated_heads.clone();
        ablated_heads.sort_unstable();
        ablated_heads.dedup();
        let (captured, last) = backend.forward(&ForwardInput {
            ablated: &ablated_heads,
            value_norms: options.value_norms,
            ..ForwardInput::new(
                &encoded.ids,
                &positions,
                uses_segments.then_some(segment_ids.as_slice()),
            )
        })?;
        let is_pair = encoded.sentence.contains(&Some(1));
        let every: Vec<usize> = (0..tokens).collect();

        let mut mlm = None;
        let mut logit_lens = None;
        let mut nsp_is_next = None;
        let mut next_token = None;
        let mut classification = None;
        let mut qa = None;
        let mut token_classification = None;
        for (index, head) in self.heads.iter().enumerate() {
            let logits = |rows: &[usize]| backend.head_logits(&last, index, rows);
            match head.kind {
                HeadKind::MaskedLm => {
                    let (predictions, lens) = self.masked_lm(
                        backend,
                        (&last, index, head),
                        &encoded.ids,
                        &captured.hidden_states,
                        options,
                    )?;
                    mlm = Some(predictions);
                    logit_lens = lens.or(logit_lens);
                }
                HeadKind::NextSentence if is_pair => {
                    nsp_is_next = Some(prediction_heads::softmax(&logits(&[0])?)[0]);
                }
                HeadKind::NextSentence => {}
                HeadKind::NextToken => {
                    let (predictions, lens) = self.next_tokens(
                        backend,
                        (&last, index, head),
                        &captured.hidden_states,
                        options,
                    )?;
                    next_token = Some(predictions);
                    logit_lens = lens.or(logit_lens);
                }
                HeadKind::SequenceClassification => {
                    let row = match head.input {
                        HeadInput::LastNonPadding { pad: Some(pad) } => {
                            encoded.ids.iter().rposition(|&id| id != pad).unwrap_or(0)
                        }
                        HeadInput::LastNonPadding { pad: None } => tokens - 1,
                        _ => 0,
                    };
                    let rows = if head.input == HeadInput::Mean {
                        &every[..]
                    } else {
                        std::slice::from_ref(&row)
                    };
                    classification = Some(prediction_heads::classification(
                        &logits(rows)?,
                        &self.config,
                    ));
                }
                HeadKind::QuestionAnswering if is_pair => {
                    let logits = logits(&every)?;
                    let start: Vec<f32> = logits.iter().step_by(2).copied().collect();
                    let end: Vec<f32> = logits.iter().skip(1).step_by(2).copied().collect();
                    qa = prediction_heads::answer(&prediction_heads::QaInput {
                        start_logits: &start,
                        end_logits: &end,
                        sentence: &encoded.sentence,
                        char_offsets: &encoded.char_offsets,
                        context: encoded.text_b.as_deref().unwrap_or_default(),
                    });
                }
                HeadKind::QuestionAnswering => {}
                HeadKind::TokenClassification => {
                    token_classification = Some(prediction_heads::token_labels(
                        &logits(&every)?,
                        head.outputs,
                        &encoded.char_offsets,
                        &self.config,
                    ));
                }
            }
        }
        Ok(Analysis {
            model_type: self.config.family,
            token_style: self.tokenizer.style(),
            causal: self.config.architecture.causal,
            windows: self.config.architecture.windows.clone(),
            attention_scales: self.config.architecture.attention_scales.clone(),
            attention_softcap: self.config.architecture.attention_softcap,
            tokens: encoded.tokens,
            token_ids: encoded.ids,
            segment_ids,
            char_offsets: encoded.char_offsets,
            sentence: encoded.sentence,
            dropped_tokens: encoded.dropped_tokens,
            attentions: captured.attentions,
            hidden_states: captured.hidden_states,
            queries: captured.queries,
            keys: captured.keys,
            value_norms: captured.value_norms,
            attention_norms: None,
            ablated_heads,
            mlm,
            logit_lens,
            nsp_is_next,
            next_token,
            classification,
            qa,
            token_classification,
        })
    }

    /// The masked-LM head `(last, index, head)`'s predictions at the mask tokens of `ids` and at
    /// the positions asked for, and, when asked for, the logit lens at them (whose last layer is
    /// the prediction: one pass of the head over every layer's states).
    fn masked_lm<B: Backend>(
        &self,
        backend: &B,
        (last, index, head): (&B::Last, usize, &HeadSummary),
        ids: &[u32],
        hidden_states: &CapturedArray,
        options: &RunOptions,
    ) -> Result<(Vec<TokenPrediction>, Option<Vec<LensPosition>>)> {
        let top_k = options.top_k.max(1);
        let mut rows: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| Some(id) == self.tokenizer.mask_id())
            .map(|(position, _)| position)
            .collect();
        rows.extend(options.mlm_positions.iter().filter(|&&p| p < ids.len()));
        rows.sort_unstable();
        rows.dedup();
        if !options.lens || rows.is_empty() {
            let logits = backend.head_logits(last, index, &rows)?;
            let predictions = self.vocabulary_predictions(&rows, &logits, head.outputs, top_k);
            return Ok((predictions, None));
        }
        // Every layer's states at these rows, the last layer's (what the head reads anyway)
        // among them.
        let (lens_rows, final_norm) = self.lens_rows(hidden_states, &rows, head.kind);
        let logits = backend.head_logits_of_rows(&lens_rows, index, &final_norm)?;
        let lens = self.lens_from_logits(&rows, &logits, head.outputs, top_k);
        let predictions = lens
            .iter()
            .map(|at| TokenPrediction {
                position: at.position,
                top_k: at
                    .layers
                    .last()
                    .map(|layer| layer.top_k.clone())
                    .unwrap_or_default(),
            })
            .collect();
        Ok((predictions, Some(lens)))
    }

    /// The causal-LM head `(last, index, head)`'s next-token predictions after every token, in
    /// passes of [`NEXT_TOKEN_ROWS_PER_PASS`] rows, and, when asked for, the logit lens at the
    /// last token.
    fn next_tokens<B: Backend>(
        &self,
        backend: &B,
        (last, index, head): (&B::Last, usize, &HeadSummary),
        states: &CapturedArray,
        options: &RunOptions,
    ) -> Result<(Vec<TokenPrediction>, Option<Vec<LensPosition>>)> {
        let top_k = options.top_k.max(1);
        let tokens = states.shape()[1];
        let every: Vec<usize> = (0..tokens).collect();
        let last_row = tokens - 1;
        let mut predictions = Vec::with_capacity(tokens);
        let mut logit_lens = None;
        for rows in every.chunks(NEXT_TOKEN_ROWS_PER_PASS) {
            if !(options.lens && rows.contains(&last_row)) {
                let logits = backend.head_logits(last, index, rows)?;
                predictions.extend(self.vocabulary_predictions(rows, &logits, head.outputs, top_k));
                continue;
            }
            // The lens at the last token rides along with the pass that covers it: these rows'
            // last states, then every layer's state at the last token (its earlier ones through
            // the final LayerNorm).
            let hidden = self.config.hidden_size;
            let last_state = states.matrix(&[states.shape()[0] - 1]);
            let mut host_rows = Vec::with_capacity((rows.len() + states.shape()[0]) * hidden);
            for &row in rows {
                host_rows.extend_from_slice(&last_state[row * hidden..][..hidden]);
            }
            let (lens_rows, lens_norm) = self.lens_rows(states, &[last_row], head.kind);
            host_rows.extend_from_slice(&lens_rows);
            let mut final_norm = vec![false; rows.len()];
            final_norm.extend(lens_norm);
            let logits = backend.head_logits_of_rows(&host_rows, index, &final_norm)?;
            let (own, lens) = logits.split_at(rows.len() * head.outputs);
            predictions.extend(self.vocabulary_predictions(rows, own, head.outputs, top_k));
            logit_lens = Some(self.lens_from_logits(&[last_row], lens, head.outputs, top_k));
        }
        Ok((predictions, logit_lens))
    }

    /// The `top_k` most probable tokens of each row of vocabulary logits `[rows, vocab]`.
    pub(crate) fn vocabulary_predictions(
        &self,
        rows: &[usize],
        logits: &[f32],
        vocab: usize,
        top_k: usize,
    ) -> Vec<TokenPrediction> {
        use rayon::prelude::{IndexedParallelIterator, IntoParallelRefIterator, ParallelIterator};
        rows.par_iter()
            .zip(logits.par_chunks_exact(vocab.max(1)))
            .map(|(&position, row)| TokenPrediction {
                position,
                top_k: prediction_heads::top_k_softmax(row, top_k)
                    .into_iter()
                    .map(|(id, prob)| TokenProbability {
                        token: self.tokenizer.id_to_token(id).unwrap_or_default(),
                        id,
                        prob,
                    })
                    .collect(),
            })
            .collect()
    }
}
