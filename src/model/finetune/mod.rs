//! Fine-tuning a sequence classifier on a person's own labelled data (`bertscope finetune`):
//! the family's own classification head (kept when the checkpoint has one with the same
//! labels, else initialised as transformers does), the Trainer's loss, AdamW, clipping and
//! schedule, and a Hugging Face folder written after every epoch.
//!
//! The forward and backward passes are candle's ([`CandleBackend::trainable`]), on the CPU or a
//! GPU. The weights go back under the names they were read from: the family's description reads
//! the checkpoint a second time with every element replaced by its address
//! ([`WeightStore::read_addresses`]), so no family spells its names twice.

pub mod data;
pub mod optimizer;
mod save;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde_json::{Map, Value};

use self::data::{Columns, Dataset, ExistingHead, Task};
use self::optimizer::{gradient_clip, linear_schedule, AdamW};
use super::backend::candle::{CandleBackend, DropoutRates, Dropouts, TrainBatch};
use super::config::{ModelConfig, Segments};
use super::error::{ModelError, Result};
use super::family::{ClassifierLayout, DropoutKey, HeadWidth};
use super::params::{HeadKind, ModelWeights};
use super::source::{self, ModelSource};
use super::tokenizer::ModelTokenizer;
use super::weights::{Addresses, Scope, WeightStore};
use super::DeviceChoice;

/// What to train on and how; the defaults are transformers' Trainer's.
#[derive(Debug, Clone, PartialEq)]
pub struct FineTuneOptions {
    /// The training data (CSV, TSV or JSON Lines).
    pub train: PathBuf,
    /// Data to evaluate on after each epoch.
    pub eval: Option<PathBuf>,
    /// Which columns hold the text, the second text and the label.
    pub columns: Columns,
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// The peak learning rate.
    pub lr: f64,
    /// AdamW's decoupled weight decay, on every weight but biases and norms.
    pub weight_decay: f64,
    /// Steps over which the learning rate rises from 0.
    pub warmup_steps: usize,
    /// The largest global gradient norm (0: no clipping).
    pub max_grad_norm: f64,
    /// Texts are cut to this many tokens.
    pub max_len: usize,
    /// Seeds the shuffling, the dropout masks and a new head's weights.
    pub seed: u64,
    /// Every dropout probability of the model and its head, instead of the config's.
    pub dropout: Option<f64>,
    /// Shuffle the training examples each epoch.
    pub shuffle: bool,
    /// Train only the head outside the base model (BERT's pooler, part of `bert.`, stays).
    pub freeze_encoder: bool,
    /// The folder to write.
    pub out: PathBuf,
    /// Where to train.
    pub device: DeviceChoice,
    /// Keep the first step's gradients by tensor name ([`Summary::first_gradients`]).
    pub keep_first_gradients: bool,
}

impl FineTuneOptions {
    /// The Trainer's defaults for these files.
    pub fn new(train: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        Self {
            train: train.into(),
            eval: None,
            columns: Columns::default(),
            epochs: 3,
            batch_size: 16,
            lr: 5e-5,
            weight_decay: 0.0,
            warmup_steps: 0,
            max_grad_norm: 1.0,
            max_len: 128,
            seed: 0,
            dropout: None,
            shuffle: true,
            freeze_encoder: false,
            out: out.into(),
            device: DeviceChoice::Cpu,
            keep_first_gradients: false,
        }
    }
}

/// Evaluation metrics of one epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// The mean loss.
    pub loss: f64,
    /// Classification: the share of texts whose labels are all right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Classification: the F1 score averaged over labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<f64>,
    /// Regression: the mean squared error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mse: Option<f64>,
    /// Regression: Pearson's r between scores and labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pearson: Option<f64>,
}

impl Metrics {
    /// The loss and each metric there is, as `name value` to four decimals.
    pub fn parts(&self) -> Vec<String> {
        let named = [
            ("accuracy", self.accuracy),
            ("macro-F1", self.macro_f1),
            ("MSE", self.mse),
            ("Pearson r", self.pearson),
        ];
        std::iter::once(format!("eval loss {:.4}", self.loss))
            .chain(
                named
                    .into_iter()
                    .filter_map(|(name, value)| Some(format!("{name} {:.4}", value?))),
            )
            .collect()
    }
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// The mean training loss of its steps.
    pub train_loss: f64,
    /// Metrics on the evaluation data, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<Metrics>,
}

/// One optimiser step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepReport {
    /// 1-based, over the whole run.
    pub step: usize,
    /// All steps of the run.
    pub steps: usize,
    /// 1-based.
    pub epoch: usize,
    /// The batch's loss before the step.
    pub loss: f64,
    /// The learning rate the step used.
    pub lr: f64,
    /// The gradient norm before clipping.
    pub grad_norm: f64,
    /// Training examples per second, over the run so far.
    pub examples_per_second: f64,
}

/// What the run reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The data is read and the model is ready.
    Prepared(Prepared),
    /// A step finished.
    Step(StepReport),
    /// An epoch finished and was written.
    Epoch(EpochReport),
}

/// The run about to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Training examples.
    pub examples: usize,
    /// Evaluation examples.
    pub eval_examples: usize,
    /// Optimiser steps over all epochs.
    pub steps: usize,
    /// The task the labels describe.
    pub task: Task,
    /// The columns read: text, second text, label.
    pub columns: (String, Option<String>, String),
    /// Whether the head is new (else the checkpoint's head continues).
    pub new_head: bool,
    /// Things a person should know (texts cut to the maximum length).
    pub notes: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Epochs completed and written.
    pub epochs: Vec<EpochReport>,
    /// Every step taken.
    pub steps: Vec<StepReport>,
    /// Whether it was cancelled (the folder holds the last completed epoch).
    pub cancelled: bool,
    /// The first step's gradients (before clipping) by the names the folder stores, when asked.
    pub first_gradients: Option<BTreeMap<String, Vec<f32>>>,
}

/// A run's events so far, as a window or a figure shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingProgress {
    /// The model trained (folder or Hub id).
    pub model: String,
    /// The run as it started.
    pub prepared: Option<Prepared>,
    /// Every step so far.
    pub steps: Vec<StepReport>,
    /// Every finished epoch.
    pub epochs: Vec<EpochReport>,
}

impl TrainingProgress {
    /// The run a folder's `training_log.json` records, as far as it went.
    pub fn from_log(path: &Path) -> Result<Self> {
        save::read_log(path)
    }

    /// Adds an event.
    pub fn record(&mut self, event: &Event) {
        match event {
            Event::Prepared(prepared) => self.prepared = Some(prepared.clone()),
            Event::Step(step) => self.steps.push(*step),
            Event::Epoch(epoch) => self.epochs.push(epoch.clone()),
        }
    }

    /// Steps of the whole run, once it is prepared.
    pub fn total_steps(&self) -> Option<usize> {
        self.prepared.as_ref().map(|prepared| prepared.steps)
    }
}

/// One example, tokenized, with its target.
struct Encoded {
    ids: Vec<u32>,
    segments: Vec<u32>,
    target: Vec<f32>,
}

/// The model being trained and what writing it back needs.
struct Trainee {
    backend: CandleBackend,
    parameters: Vec<Var>,
    decays: Vec<bool>,
    trainable: Vec<bool>,
    /// Whether each array was read from the checkpoint (holds addresses), not computed.
    stored: Vec<bool>,
    /// Each array's addresses in the checkpoint ([`WeightStore::read_addresses`]).
    probe: Vec<Vec<f32>>,
    addresses: Addresses,
    /// Stored name → the name the fine-tuned folder gives it.
    names: BTreeMap<String, String>,
    /// Row masks of gradients for tables with a padding row: (array, mask `[rows, 1]`).
    padding_rows: Vec<(usize, usize, Tensor)>,
}

/// Fine-tunes `source` as `options` say, reporting to `events`; `cancel` stops it after the
/// current step.
pub fn fine_tune(
    source: &ModelSource,
    options: &FineTuneOptions,
    cancel: &AtomicBool,
    events: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    check_options(options)?;
    if !save::can_write_to(&options.out) {
        return Err(ModelError::BadInput(format!(
            "{} exists and is not a folder bertscope fine-tuned into; choose another --out",
            options.out.display()
        )));
    }
    // The data first: a bad file is said before the model loads.
    let train = data::read(&options.train, &options.columns)?;
    let eval = options
        .eval
        .as_ref()
        .map(|path| data::read(path, &options.columns).map(|set| (path, set)))
        .transpose()?;
    let mut checkpoint = Checkpoint::open(source)?;
    let labels: Vec<&str> = train.examples.iter().map(|ex| ex.label.as_str()).collect();
    let (task, continues) =
        data::infer_task(&labels, checkpoint.existing.as_ref(), &options.train)?;
    let Model {
        trainee,
        config,
        config_json,
        config_text,
    } = checkpoint.prepare(&task, continues, options)?;
    let (files, store, tokenizer, layout) = (
        &checkpoint.files,
        &checkpoint.store,
        &checkpoint.tokenizer,
        &checkpoint.layout,
    );

    let mut notes = Vec::new();
    let train_set = encode(
        &train, &task, tokenizer, &config, options, &mut notes, "training",
    )?;
    let eval_set = match &eval {
        Some((path, set)) => {
            let what = format!("evaluation ({})", path.display());
            Some(encode(
                set, &task, tokenizer, &config, options, &mut notes, &what,
            )?)
        }
        None => None,
    };
    let batches_per_epoch = train_set.len().div_ceil(options.batch_size);
    let total_steps = batches_per_epoch * options.epochs;
    events(&Event::Prepared(Prepared {
        examples: train_set.len(),
        eval_examples: eval_set.as_ref().map_or(0, Vec::len),
        steps: total_steps,
        task: task.clone(),
        columns: train.chosen.clone(),
        new_head: !continues,
        notes,
    }));

    // The model's padding token, which GPT-2's head looks for; the tokenizer's otherwise.
    let padding = config
        .pad_token_id
        .or(tokenizer.pad_id())
        .unwrap_or_default();
    let dropouts = Dropouts {
        rates: dropout_rates(&config_json, layout),
        rng: RefCell::new(rand::rngs::StdRng::seed_from_u64(options.seed)),
    };
    let mut order_rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let mut adam = AdamW::new(trainee.parameters.len(), options.weight_decay);
    let mut summary = Summary {
        epochs: Vec::new(),
        steps: Vec::new(),
        cancelled: false,
        first_gradients: None,
    };
    let mut log = save::TrainingLog::new(source, options, &task);
    log.examples = train_set.len();
    log.eval_examples = eval_set.as_ref().map_or(0, Vec::len);
    log.new_head = !continues;
    let started = Instant::now();
    let mut seen = 0usize;
    for epoch in 1..=options.epochs {
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        if options.shuffle {
            order.shuffle(&mut order_rng);
        }
        let mut losses = Vec::new();
        for chunk in order.chunks(options.batch_size) {
            let step = summary.steps.len();
            let batch = Batch::new(&train_set, chunk, padding, &config)?;
            let lr = options.lr * linear_schedule(step, options.warmup_steps, total_steps);
            let keep =
                (step == 0 && options.keep_first_gradients).then_some(&mut summary.first_gradients);
            let (loss_value, grad_norm) = trainee.step(
                &batch,
                &task,
                &dropouts,
                (&mut adam, lr, options.max_grad_norm),
                keep,
            )?;
            seen += chunk.len();
            let report = StepReport {
                step: step + 1,
                steps: total_steps,
                epoch,
                loss: loss_value,
                lr,
                grad_norm,
                examples_per_second: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
            };
            losses.push(loss_value);
            summary.steps.push(report);
            log.steps.push(report);
            events(&Event::Step(report));
            if cancel.load(Ordering::Relaxed) {
                summary.cancelled = true;
                return Ok(summary);
            }
        }
        let eval = eval_set
            .as_ref()
            .map(|set| {
                evaluate(
                    &trainee.backend,
                    set,
                    &task,
                    options.batch_size,
                    padding,
                    &config,
                )
            })
            .transpose()?;
        let report = EpochReport {
            epoch,
            train_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
            eval,
        };
        log.epochs.push(report.clone());
        save::write_folder(&options.out, files, &config_text, &trainee, store, &log)?;
        summary.epochs.push(report.clone());
        events(&Event::Epoch(report));
    }
    Ok(summary)
}

/// A checkpoint opened for fine-tuning: its files, config, classifier layout, tokenizer and
/// weights, and the classification head it already has.
struct Checkpoint {
    files: source::ModelFiles,
    /// `config.json` as written.
    config_text: String,
    original: ModelConfig,
    layout: ClassifierLayout,
    tokenizer: ModelTokenizer,
    store: WeightStore,
    existing: Option<ExistingHead>,
}

/// A model made ready to train: its backend and parameters, and its new `config.json`.
struct Model {
    trainee: Trainee,
    config: ModelConfig,
    config_json: Map<String, Value>,
    config_text: String,
}

impl Checkpoint {
    fn open(source: &ModelSource) -> Result<Self> {
        let files = source::resolve(source, &mut |_| {})?;
        let config_text = std::fs::read_to_string(&files.config).map_err(|err| ModelError::Io {
            path: files.config.clone(),
            reason: format!("cannot read the model config ({err})"),
        })?;
        let original = ModelConfig::from_json(&config_text, &files.config)?;
        let description = original.family.description();
        let layout = description.classifier().ok_or_else(|| {
            ModelError::BadInput(format!(
                "{} has no sequence-classification model to fine-tune (BERT, DistilBERT, RoBERTa, XLM-R, GPT-2 and the Llama kin have)",
                original.family.name()
            ))
        })?;
        let tokenizer = ModelTokenizer::load(
            &files.tokenizer,
            &description.tokenizer(),
            original.family.name(),
            original.max_tokens(),
        )?;
        let mut store = WeightStore::open(&files.weights, &files.folder)?;
        description.load_weights(&mut store, &original)?;
        // The pass above found the base prefix; an existing head is every layout tensor present.
        let existing = existing_head(&store, &original, &layout);
        Ok(Self {
            files,
            config_text,
            original,
            layout,
            tokenizer,
            store,
            existing,
        })
    }

    /// Rewrites the config for `task`, adds a new head unless the checkpoint's continues
    /// (`continues`), and uploads the weights as variables.
    fn prepare(
        &mut self,
        task: &Task,
        continues: bool,
        options: &FineTuneOptions,
    ) -> Result<Model> {
        let files = &self.files;
        let mut config_json: Map<String, Value> =
            serde_json::from_str(&self.config_text).map_err(|err| ModelError::BadConfig {
                path: files.config.clone(),
                reason: format!("not valid JSON ({err})"),
            })?;
        // A regression head that continues keeps its name (`stars`), as its labels do.
        let labels = match task {
            Task::Regression if continues => self
                .existing
                .as_ref()
                .map_or_else(|| task.labels(), |head| head.labels.clone()),
            _ => task.labels(),
        };
        rewrite_config(
            &mut config_json,
            &self.layout,
            task,
            &labels,
            options.dropout,
            &self.original,
        );
        let config_text = serde_json::to_string_pretty(&Value::Object(config_json.clone()))
            .map_err(|err| ModelError::Compute(err.to_string()))?;
        let config = ModelConfig::from_json(&config_text, &files.config)?;
        if !continues {
            add_new_head(
                &mut self.store,
                &config,
                &config_json,
                &self.layout,
                task,
                options.seed,
            );
        }
        let device = options.device.open()?;
        let trainee = Trainee::load(
            &mut self.store,
            &config,
            &self.layout,
            options.freeze_encoder,
            &device,
        )?;
        Ok(Model {
            trainee,
            config,
            config_json,
            config_text,
        })
    }
}

fn check_options(options: &FineTuneOptions) -> Result<()> {
    let bad = |reason: &str| Err(ModelError::BadInput(reason.to_owned()));
    if options.epochs == 0 {
        return bad("--epochs must be at least 1");
    }
    if options.batch_size == 0 {
        return bad("--batch-size must be at least 1");
    }
    if options.max_len < 2 {
        return bad("--max-len must be at least 2 tokens");
    }
    if !(options.lr.is_finite() && options.lr >= 0.0) {
        return bad("--lr must be a number ≥ 0");
    }
    if options.dropout.is_some_and(|p| !(0.0..1.0).contains(&p)) {
        return bad("--dropout must be in [0, 1)");
    }
    Ok(())
}

/// The checkpoint's classification head, when it has every tensor of the family's.
fn existing_head(
    store: &WeightStore,
    config: &ModelConfig,
    layout: &ClassifierLayout,
) -> Option<ExistingHead> {
    if config
        .model_classes
        .iter()
        .any(|class| class.ends_with("ForTokenClassification"))
    {
        return None;
    }
    let mut outputs = None;
    for tensor in layout.tensors {
        let shape = store.shape(tensor.name, tensor.scope)?;
        if tensor.rows == HeadWidth::Labels {
            outputs = shape.first().copied();
        }
    }
    let outputs = outputs?;
    Some(ExistingHead {
        labels: (0..outputs).map(|id| config.label(id)).collect(),
        problem_type: config.problem_type,
    })
}

/// The fine-tuned model's `config.json`: its class, labels, problem type, a padding token for
/// GPT-2, and `--dropout`.
fn rewrite_config(
    json: &mut Map<String, Value>,
    layout: &ClassifierLayout,
    task: &Task,
    labels: &[String],
    dropout: Option<f64>,
    original: &ModelConfig,
) {
    json.insert("architectures".into(), serde_json::json!([layout.class]));
    json.insert(
        "id2label".into(),
        Value::Object(
            labels
                .iter()
                .enumerate()
                .map(|(id, name)| (id.to_string(), Value::from(name.clone())))
                .collect(),
        ),
    );
    json.insert(
        "label2id".into(),
        Value::Object(
            labels
                .iter()
                .enumerate()
                .map(|(id, name)| (name.clone(), Value::from(id)))
                .collect(),
        ),
    );
    json.insert("problem_type".into(), task.problem_type().name().into());
    json.remove("num_labels");
    if original.pad_token_id.is_none() {
        // A decoder's classifier needs a padding token to find each text's last token: its
        // end-of-text token (the first, where the config lists several), GPT-2's if none.
        let eos = match json.get("eos_token_id") {
            Some(Value::Array(ids)) => ids.first().and_then(Value::as_u64),
            Some(id) => id.as_u64(),
            None => None,
        }
        .unwrap_or(50256);
        json.insert("pad_token_id".into(), eos.into());
    }
    // The weights are written in f32 whatever the checkpoint stored.
    json.insert("dtype".into(), "float32".into());
    if json.contains_key("torch_dtype") {
        json.insert("torch_dtype".into(), "float32".into());
    }
    if let Some(p) = dropout {
        let keys = layout.dropouts;
        let all = [keys.embedding, keys.attention, keys.ffn_output]
            .into_iter()
            .chain(keys.attention_output)
            .chain(keys.head.iter().map(|(_, key)| *key));
        for key in all {
            for name in key.keys {
                json.insert((*name).into(), p.into());
            }
        }
    }
}

/// The probability a dropout key gives in `json`.
fn rate(json: &Map<String, Value>, key: DropoutKey) -> f32 {
    key.keys
        .iter()
        .find_map(|name| json.get(*name).and_then(Value::as_f64))
        .unwrap_or(key.default) as f32
}

fn dropout_rates(json: &Map<String, Value>, layout: &ClassifierLayout) -> DropoutRates {
    let keys = layout.dropouts;
    DropoutRates {
        embedding: rate(json, keys.embedding),
        attention: rate(json, keys.attention),
        attention_output: keys.attention_output.map_or(0.0, |key| rate(json, key)),
        ffn_output: rate(json, keys.ffn_output),
        head: keys
            .head
            .iter()
            .map(|&(at, key)| (at, rate(json, key)))
            .collect(),
    }
}

/// Adds the head's missing tensors to the store: weights drawn from N(0, initializer_range²),
/// biases zero, as transformers' `_init_weights` does; a pretrained pooler stays.
fn add_new_head(
    store: &mut WeightStore,
    config: &ModelConfig,
    json: &Map<String, Value>,
    layout: &ClassifierLayout,
    task: &Task,
    seed: u64,
) {
    let std = json
        .get("initializer_range")
        .and_then(Value::as_f64)
        .unwrap_or(0.02);
    let normal = Normal::new(0.0f32, std as f32).unwrap_or_else(|_| {
        Normal::new(0.0, 0.02).unwrap_or_else(|_| unreachable!("0.02 is a valid deviation"))
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let width = |width: HeadWidth| match width {
        HeadWidth::Hidden => config.hidden_size,
        HeadWidth::Labels => task.outputs(),
    };
    for tensor in layout.tensors {
        let pretrained = tensor.scope == Scope::Base && store.has(tensor.name, tensor.scope);
        if pretrained {
            continue;
        }
        let name = match tensor.scope {
            Scope::Base => format!("{}{}", store.base_prefix(), tensor.name),
            Scope::Top => tensor.name.to_owned(),
        };
        let rows = width(tensor.rows);
        let (shape, values) = match tensor.columns {
            Some(columns) => {
                let columns = width(columns);
                let values = (0..rows * columns)
                    .map(|_| normal.sample(&mut rng))
                    .collect();
                (vec![rows, columns], values)
            }
            None => (vec![rows], vec![0.0; rows]),
        };
        store.add(name, shape, values);
    }
}

impl Trainee {
    /// One optimiser step on `batch`: the loss, its gradients (kept by name in `keep` when
    /// given), clipping and AdamW at `lr`. Returns the loss and the gradient norm before
    /// clipping.
    fn step(
        &self,
        batch: &Batch,
        task: &Task,
        dropouts: &Dropouts,
        (adam, lr, max_grad_norm): (&mut AdamW, f64, f64),
        keep: Option<&mut Option<BTreeMap<String, Vec<f32>>>>,
    ) -> Result<(f64, f64)> {
        let logits = self
            .backend
            .classifier_logits(&batch.view(), 0, Some(dropouts))?;
        let loss = task_loss(task, &logits, &batch.targets)?;
        let loss_value = f64::from(loss.to_scalar::<f32>()?);
        let grads = self.gradients(&loss)?;
        if let Some(keep) = keep {
            *keep = Some(self.named_gradients(&grads)?);
        }
        let (grad_norm, grad_scale) = gradient_clip(&grads, max_grad_norm)?;
        adam.step(&self.parameters, &self.decays, &grads, grad_scale, lr)?;
        Ok((loss_value, grad_norm))
    }

    fn load(
        store: &mut WeightStore,
        config: &ModelConfig,
        layout: &ClassifierLayout,
        freeze_encoder: bool,
        device: &Device,
    ) -> Result<Self> {
        let description = config.family.description();
        let classifier_only = |mut weights: ModelWeights| -> Result<ModelWeights> {
            weights
                .heads
                .retain(|head| head.kind == HeadKind::SequenceClassification);
            if weights.heads.len() != 1 {
                return Err(ModelError::BadInput(
                    "the checkpoint's classification head did not load".to_owned(),
                ));
            }
            Ok(weights)
        };
        let mut weights = classifier_only(description.load_weights(store, config)?)?;
        let addresses = store.read_addresses()?;
        let mut probe = classifier_only(description.load_weights(store, config)?)?;
        let read_as = store.read_as();
        let names = read_as
            .clone()
            .into_iter()
            .map(|(stored, (canonical, scope))| {
                let renamed = match scope {
                    Scope::Base => format!("{}{canonical}", layout.base_prefix),
                    Scope::Top => canonical,
                };
                (stored, renamed)
            })
            .collect();
        let end = addresses
            .tensors
            .values()
            .map(|(first, shape)| first + shape.iter().product::<usize>() as u32)
            .max()
            .unwrap_or(1);
        let head_arrays = weights.head_array_count();
        let probe: Vec<Vec<f32>> = probe
            .arrays_mut()
            .into_iter()
            .map(|(_, array)| std::mem::take(array))
            .collect();
        let arrays = weights.arrays_mut();
        let count = arrays.len();
        let mut decays = Vec::with_capacity(count);
        let mut trainable = Vec::with_capacity(count);
        let mut stored_arrays = Vec::with_capacity(count);
        let mut checks = Vec::with_capacity(count);
        for (index, (role, array)) in arrays.into_iter().enumerate() {
            decays.push(role.decays());
            // An array a description computes (DistilBERT's sinusoidal positions) holds no
            // addresses; like transformers, training leaves it as it is.
            let stored = probe[index].iter().all(|value| value.to_bits() < end);
            // "Head only" trains what lies outside the base model, as freezing
            // `model.bert` does: BERT's pooler stays with the encoder.
            let in_base = || {
                probe[index]
                    .iter()
                    .map(|value| value.to_bits())
                    .find(|&address| address != 0)
                    .and_then(|address| addresses.locate(address))
                    .and_then(|(name, _)| read_as.get(name))
                    .is_none_or(|(_, scope)| *scope == Scope::Base)
            };
            let in_head = index >= count - head_arrays && !in_base();
            trainable.push(stored && (in_head || !freeze_encoder));
            stored_arrays.push(stored);
            checks.push((array.len(), array.first().copied(), array.last().copied()));
        }
        let padding_rows = padding_rows(config, layout, &weights, device)?;
        let backend = CandleBackend::trainable(config.clone(), weights, device)?;
        let tensors = backend.parameters();
        let agree = tensors.len() == checks.len()
            && tensors
                .iter()
                .zip(&checks)
                .all(|(tensor, (len, first, last))| {
                    let flat = tensor.flatten_all();
                    tensor.elem_count() == *len
                        && flat.is_ok_and(|flat| {
                            let at = |index: usize| {
                                flat.get(index)
                                    .and_then(|value| value.to_scalar::<f32>())
                                    .ok()
                            };
                            *len == 0 || (at(0) == *first && at(len - 1) == *last)
                        })
                });
        if !agree {
            return Err(ModelError::Compute(
                "the trainable backend's parameters do not follow the weights' order".to_owned(),
            ));
        }
        let parameters = tensors
            .into_iter()
            .map(Var::from_tensor)
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            backend,
            parameters,
            decays,
            trainable,
            stored: stored_arrays,
            probe,
            addresses,
            names,
            padding_rows,
        })
    }

    /// The gradient of each trainable parameter, padding rows zeroed as torch's `padding_idx`.
    fn gradients(&self, loss: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let store = loss.backward()?;
        let mut grads: Vec<Option<Tensor>> = self
            .parameters
            .iter()
            .zip(&self.trainable)
            .map(|(parameter, &trainable)| {
                trainable
                    .then(|| store.get(parameter.as_tensor()).cloned())
                    .flatten()
            })
            .collect();
        for (index, row, mask) in &self.padding_rows {
            if let Some(grad) = &mut grads[*index] {
                optimizer::zero_row(grad, *row, mask)?;
            }
        }
        Ok(grads)
    }

    /// Gradients by the names the folder stores (zeros where a tensor got none).
    fn named_gradients(&self, grads: &[Option<Tensor>]) -> Result<BTreeMap<String, Vec<f32>>> {
        let arrays = grads
            .iter()
            .zip(&self.parameters)
            .map(|(grad, parameter)| match grad {
                Some(grad) => host(grad),
                None => Ok(vec![0.0; parameter.elem_count()]),
            })
            .collect::<Result<Vec<_>>>()?;
        save::scatter(self, &arrays, |name| {
            let shape = &self.addresses.tensors[name].1;
            Ok(vec![0.0; shape.iter().product()])
        })
    }

    /// Every parameter's values, on the host.
    fn values(&self) -> Result<Vec<Vec<f32>>> {
        self.parameters
            .iter()
            .map(|parameter| host(parameter.as_tensor()))
            .collect()
    }
}

fn host(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// The tables whose padding row gets no gradient (torch's `padding_idx`): each parameter's
/// index, the row, and a mask `[rows, 1]` that is 0 there.
fn padding_rows(
    config: &ModelConfig,
    layout: &ClassifierLayout,
    weights: &ModelWeights,
    device: &Device,
) -> Result<Vec<(usize, usize, Tensor)>> {
    let Some(pad) = config.pad_token_id.map(|pad| pad as usize) else {
        return Ok(Vec::new());
    };
    let mask = |rows: usize| -> Result<Option<Tensor>> {
        if pad >= rows {
            return Ok(None);
        }
        let mut mask = vec![1f32; rows];
        mask[pad] = 0.0;
        Ok(Some(Tensor::from_vec(mask, (rows, 1), device)?))
    };
    let hidden = config.hidden_size.max(1);
    let mut out = Vec::new();
    if layout.padded_words {
        out.extend(mask(weights.embeddings.word.len() / hidden)?.map(|mask| (0, pad, mask)));
    }
    if layout.padded_positions {
        if let Some(position) = &weights.embeddings.position {
            out.extend(mask(position.len() / hidden)?.map(|mask| (1, pad, mask)));
        }
    }
    Ok(out)
}

/// Tokenizes a data set, cutting texts to `--max-len` (counted in a note).
fn encode(
    set: &Dataset,
    task: &Task,
    tokenizer: &ModelTokenizer,
    config: &ModelConfig,
    options: &FineTuneOptions,
    notes: &mut Vec<String>,
    what: &str,
) -> Result<Vec<Encoded>> {
    let mut cut = 0;
    let encoded = set
        .examples
        .iter()
        .enumerate()
        .map(|(index, example)| {
            let at = |reason: String| {
                ModelError::BadInput(format!("{what} example {}: {reason}", index + 1))
            };
            let target = task.target(&example.label).map_err(at)?;
            let text = tokenizer
                .encode_within(&example.text_a, example.text_b.as_deref(), options.max_len)
                .map_err(|err| at(err.to_string()))?;
            if text.ids.is_empty() {
                return Err(at("the text is empty".to_owned()));
            }
            cut += usize::from(text.dropped_tokens > 0);
            let segments = match config.architecture.segments {
                Segments::FromTokenizer => {
                    if text
                        .segment_ids
                        .iter()
                        .any(|&segment| segment as usize >= config.type_vocab_size)
                    {
                        return Err(at(format!(
                            "this model has {} segment embedding(s) and cannot take a pair",
                            config.type_vocab_size
                        )));
                    }
                    text.segment_ids
                }
                Segments::Zeros | Segments::Absent => vec![0; text.ids.len()],
            };
            Ok(Encoded {
                ids: text.ids,
                segments,
                target,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if cut > 0 {
        notes.push(format!(
            "{cut} {what} text(s) were longer than --max-len {} tokens and were cut",
            options.max_len
        ));
    }
    Ok(encoded)
}

/// Examples padded to the longest, as `DataCollatorWithPadding` pads them.
struct Batch {
    ids: Vec<u32>,
    positions: Vec<u32>,
    segments: Option<Vec<u32>>,
    real: Vec<u8>,
    rows: Vec<u32>,
    tokens: usize,
    targets: Vec<Vec<f32>>,
}

impl Batch {
    fn new(set: &[Encoded], chosen: &[usize], pad: u32, config: &ModelConfig) -> Result<Self> {
        let tokens = chosen
            .iter()
            .map(|&index| set[index].ids.len())
            .max()
            .unwrap_or(0);
        let mut batch = Batch {
            ids: Vec::with_capacity(chosen.len() * tokens),
            positions: Vec::with_capacity(chosen.len() * tokens),
            segments: (config.architecture.segments != Segments::Absent).then(Vec::new),
            real: Vec::with_capacity(chosen.len() * tokens),
            rows: Vec::with_capacity(chosen.len()),
            tokens,
            targets: Vec::with_capacity(chosen.len()),
        };
        for &index in chosen {
            let example = &set[index];
            let len = example.ids.len();
            let mut ids = example.ids.clone();
            ids.resize(tokens, pad);
            batch.positions.extend(config.position_ids(&ids));
            if let Some(segments) = &mut batch.segments {
                segments.extend(&example.segments);
                segments.resize(segments.len() + tokens - len, 0);
            }
            batch.ids.extend(&ids);
            batch.real.extend((0..tokens).map(|at| u8::from(at < len)));
            batch.rows.push(Self::read_row(config, &ids));
            batch.targets.push(example.target.clone());
        }
        Ok(batch)
    }

    /// The row the classification head reads: the first token, or (GPT-2) the rightmost that
    /// is not padding, as `GPT2ForSequenceClassification` finds it.
    fn read_row(config: &ModelConfig, ids: &[u32]) -> u32 {
        match config.pad_token_id {
            Some(pad) if config.architecture.causal => {
                ids.iter().rposition(|&id| id != pad).unwrap_or(0) as u32
            }
            _ => 0,
        }
    }

    fn view(&self) -> TrainBatch<'_> {
        TrainBatch {
            ids: &self.ids,
            positions: &self.positions,
            segments: self.segments.as_deref(),
            real: &self.real,
            rows: &self.rows,
            tokens: self.tokens,
        }
    }
}

/// The Trainer's loss for the task: cross-entropy, BCE with logits, or MSE, each a mean.
fn task_loss(task: &Task, logits: &Tensor, targets: &[Vec<f32>]) -> Result<Tensor> {
    let device = logits.device();
    let items = targets.len();
    Ok(match task {
        Task::SingleLabel(_) => {
            let classes: Vec<u32> = targets.iter().map(|target| target[0] as u32).collect();
            let classes = Tensor::from_vec(classes, items, device)?;
            candle_nn::loss::cross_entropy(logits, &classes)?
        }
        Task::MultiLabel(names) => {
            let y = Tensor::from_vec(targets.concat(), (items, names.len()), device)?;
            // max(x, 0) − x·y + log(1 + e^−|x|): torch's BCEWithLogitsLoss, stable for any x.
            let softplus = ((logits.abs()?.neg()?.exp()? + 1.0)?).log()?;
            (logits.relu()? - logits.mul(&y)?)?
                .add(&softplus)?
                .mean_all()?
        }
        Task::Regression => {
            let y = Tensor::from_vec(targets.concat(), items, device)?;
            logits.flatten_all()?.sub(&y)?.sqr()?.mean_all()?
        }
    })
}

/// Loss and metrics over an evaluation set, nothing dropped.
fn evaluate(
    backend: &CandleBackend,
    set: &[Encoded],
    task: &Task,
    batch_size: usize,
    pad: u32,
    config: &ModelConfig,
) -> Result<Metrics> {
    let mut loss_sum = 0.0;
    let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(set.len());
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(batch_size) {
        let batch = Batch::new(set, chunk, pad, config)?;
        let logits = backend.classifier_logits(&batch.view(), 0, None)?;
        let loss = task_loss(task, &logits, &batch.targets)?;
        loss_sum += f64::from(loss.to_scalar::<f32>()?) * chunk.len() as f64;
        outputs.extend(logits.to_vec2::<f32>()?);
    }
    let targets: Vec<&[f32]> = set
        .iter()
        .map(|example| example.target.as_slice())
        .collect();
    Ok(metrics(
        task,
        &outputs,
        &targets,
        loss_sum / set.len().max(1) as f64,
    ))
}

/// Accuracy and macro-F1 (classification), or MSE and Pearson's r (regression).
pub fn metrics(task: &Task, outputs: &[Vec<f32>], targets: &[&[f32]], loss: f64) -> Metrics {
    let mut metrics = Metrics {
        loss,
        accuracy: None,
        macro_f1: None,
        mse: None,
        pearson: None,
    };
    let count = outputs.len().max(1) as f64;
    match task {
        Task::SingleLabel(names) => {
            let predicted: Vec<usize> = outputs
                .iter()
                .map(|row| super::prediction_heads::argmax(row))
                .collect();
            let truth: Vec<usize> = targets.iter().map(|target| target[0] as usize).collect();
            let right = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
            metrics.accuracy = Some(right as f64 / count);
            // scikit-learn's macro average: over labels that are true or predicted.
            let f1s: Vec<f64> = (0..names.len())
                .filter(|label| truth.contains(label) || predicted.contains(label))
                .map(|label| {
                    let pairs = predicted.iter().zip(&truth);
                    let hits = pairs.clone().filter(|(p, t)| **p == label && **t == label);
                    let tp = hits.count() as f64;
                    let said = predicted.iter().filter(|p| **p == label).count() as f64;
                    let real = truth.iter().filter(|t| **t == label).count() as f64;
                    f1(tp, said, real)
                })
                .collect();
            metrics.macro_f1 = Some(f1s.iter().sum::<f64>() / f1s.len().max(1) as f64);
        }
        Task::MultiLabel(names) => {
            let predicted: Vec<Vec<bool>> = outputs
                .iter()
                .map(|row| row.iter().map(|&logit| logit > 0.0).collect())
                .collect();
            let truth: Vec<Vec<bool>> = targets
                .iter()
                .map(|target| target.iter().map(|&y| y > 0.5).collect())
                .collect();
            let right = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
            metrics.accuracy = Some(right as f64 / count);
            let f1s: Vec<f64> = (0..names.len())
                .map(|label| {
                    let tp = predicted
                        .iter()
                        .zip(&truth)
                        .filter(|(p, t)| p[label] && t[label])
                        .count() as f64;
                    let said = predicted.iter().filter(|p| p[label]).count() as f64;
                    let real = truth.iter().filter(|t| t[label]).count() as f64;
                    f1(tp, said, real)
                })
                .collect();
            metrics.macro_f1 = Some(f1s.iter().sum::<f64>() / f1s.len().max(1) as f64);
        }
        Task::Regression => {
            let scores: Vec<f64> = outputs.iter().map(|row| f64::from(row[0])).collect();
            let truth: Vec<f64> = targets.iter().map(|target| f64::from(target[0])).collect();
            let mse = scores
                .iter()
                .zip(&truth)
                .map(|(s, t)| (s - t).powi(2))
                .sum::<f64>()
                / count;
            metrics.mse = Some(mse);
            metrics.pearson = Some(pearson(&scores, &truth));
        }
    }
    metrics
}

/// F1 from true positives, predicted positives and actual positives (0 when undefined).
fn f1(tp: f64, said: f64, real: f64) -> f64 {
    if said + real == 0.0 {
        0.0
    } else {
        2.0 * tp / (said + real)
    }
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().max(1) as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    if vx == 0.0 || vy == 0.0 {
        0.0
    } else {
        cov / (vx * vy).sqrt()
    }
}

/// Times fine-tuning `source` as a two-label classifier: `iters` optimiser steps (forward,
/// backward, clipping, AdamW), after two untimed ones, on batches of `batch_size` texts of
/// `seq_len` tokens, with the config's dropout (`bench --train`; `tools/bench_reference.py
/// --train` times transformers the same way). Returns each timed step in milliseconds.
pub fn bench_steps(
    source: &ModelSource,
    seq_len: usize,
    batch_size: usize,
    iters: usize,
    device: DeviceChoice,
) -> Result<Vec<f64>> {
    let mut checkpoint = Checkpoint::open(source)?;
    let task = Task::SingleLabel(vec!["LABEL_0".to_owned(), "LABEL_1".to_owned()]);
    let mut options = FineTuneOptions::new("bench", "bench");
    options.device = device;
    options.max_len = seq_len;
    options.batch_size = batch_size;
    let model = checkpoint.prepare(&task, false, &options)?;
    let text = "the quick brown fox jumps over the lazy dog and runs away ".repeat(seq_len);
    let encoded = checkpoint.tokenizer.encode_within(&text, None, seq_len)?;
    let set: Vec<Encoded> = (0..batch_size)
        .map(|item| Encoded {
            ids: encoded.ids.clone(),
            segments: vec![0; encoded.ids.len()],
            target: vec![(item % 2) as f32],
        })
        .collect();
    let chosen: Vec<usize> = (0..batch_size).collect();
    let pad = model.config.pad_token_id.unwrap_or_default();
    let batch = Batch::new(&set, &chosen, pad, &model.config)?;
    let dropouts = Dropouts {
        rates: dropout_rates(&model.config_json, &checkpoint.layout),
        rng: RefCell::new(rand::rngs::StdRng::seed_from_u64(0)),
    };
    let mut adam = AdamW::new(model.trainee.parameters.len(), 0.0);
    let mut times = Vec::with_capacity(iters);
    for run in 0..iters + 2 {
        let started = Instant::now();
        model
            .trainee
            .step(&batch, &task, &dropouts, (&mut adam, 5e-5, 1.0), None)?;
        if run >= 2 {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}
