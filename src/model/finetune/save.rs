//! Writing the fine-tuned model as a Hugging Face folder: `config.json`, `model.safetensors`
//! (f32, under the class's names), the tokenizer's files and `training_log.json`. Every file is
//! written to a temporary file beside it and renamed into place, so the folder never holds a
//! half-written file.

use std::collections::BTreeMap;
use std::path::Path;

use super::data::Task;
use super::{EpochReport, FineTuneOptions, Prepared, StepReport, Trainee, TrainingProgress};
use crate::model::atomic_file::write_atomically;
use crate::model::error::{ModelError, Result};
use crate::model::source::ModelFiles;
use crate::model::source::ModelSource;
use crate::model::weights::WeightStore;

/// Tokenizer files copied when the model has them.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
];

/// `training_log.json`: the model and options, the data, each step and each epoch.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct TrainingLog {
    model: String,
    options: serde_json::Value,
    problem_type: String,
    labels: Vec<String>,
    pub(super) examples: usize,
    pub(super) eval_examples: usize,
    pub(super) new_head: bool,
    pub(super) epochs: Vec<EpochReport>,
    pub(super) steps: Vec<StepReport>,
}

/// Reads a `training_log.json` back as the run's progress.
pub(super) fn read_log(path: &Path) -> Result<TrainingProgress> {
    let bad = |reason: String| ModelError::BadInput(format!("{}: {reason}", path.display()));
    let text = std::fs::read_to_string(path)
        .map_err(|err| bad(format!("cannot read the training log ({err})")))?;
    let log: TrainingLog = serde_json::from_str(&text)
        .map_err(|err| bad(format!("not a training log bertscope wrote ({err})")))?;
    let task = match log.problem_type.as_str() {
        "regression" => Task::Regression,
        "multi_label_classification" => Task::MultiLabel(log.labels.clone()),
        _ => Task::SingleLabel(log.labels.clone()),
    };
    let steps = log.steps.last().map_or(0, |step| step.steps);
    Ok(TrainingProgress {
        model: log.model,
        prepared: Some(Prepared {
            examples: log.examples,
            eval_examples: log.eval_examples,
            steps,
            task,
            columns: (String::new(), None, String::new()),
            new_head: log.new_head,
            notes: Vec::new(),
        }),
        steps: log.steps,
        epochs: log.epochs,
    })
}

impl TrainingLog {
    pub(super) fn new(source: &ModelSource, options: &FineTuneOptions, task: &Task) -> Self {
        let path = |path: &Path| path.display().to_string();
        Self {
            model: source.display_name(),
            examples: 0,
            eval_examples: 0,
            new_head: false,
            options: serde_json::json!({
                "train": path(&options.train),
                "eval": options.eval.as_deref().map(path),
                "epochs": options.epochs,
                "batch_size": options.batch_size,
                "lr": options.lr,
                "weight_decay": options.weight_decay,
                "warmup_steps": options.warmup_steps,
                "max_grad_norm": options.max_grad_norm,
                "max_len": options.max_len,
                "seed": options.seed,
                "dropout": options.dropout,
                "shuffle": options.shuffle,
                "freeze_encoder": options.freeze_encoder,
                "device": options.device.to_string(),
            }),
            problem_type: task.problem_type().name().to_owned(),
            labels: task.labels(),
            epochs: Vec::new(),
            steps: Vec::new(),
        }
    }
}

/// Whether `path` is absent, an empty folder, or a folder fine-tuning wrote before.
pub(super) fn can_write_to(path: &Path) -> bool {
    if !path.exists() {
        return true;
    }
    if !path.is_dir() {
        return false;
    }
    let empty = std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none());
    empty || path.join("training_log.json").is_file()
}

/// Each array's values under the names the folder stores them by: every element goes where its
/// address says; a tensor's elements no array holds come from `base`.
pub(super) fn scatter(
    trainee: &Trainee,
    arrays: &[Vec<f32>],
    mut base: impl FnMut(&str) -> Result<Vec<f32>>,
) -> Result<BTreeMap<String, Vec<f32>>> {
    let mut ranges: Vec<(u32, u32, &str)> = trainee
        .addresses
        .tensors
        .iter()
        .map(|(name, (first, shape))| {
            (
                *first,
                first + shape.iter().product::<usize>() as u32,
                name.as_str(),
            )
        })
        .collect();
    ranges.sort_unstable();
    // The stored tensors met so far, by name, and their values: looked up when an array's
    // elements move on to another tensor, not once per element.
    let mut stored: BTreeMap<&str, usize> = BTreeMap::new();
    let mut buffers: Vec<Vec<f32>> = Vec::new();
    for (index, values) in arrays.iter().enumerate() {
        if !trainee.stored[index] {
            continue;
        }
        let mut current: Option<((u32, u32, &str), usize)> = None;
        for (address, &value) in trainee.probe[index].iter().zip(values) {
            let address = address.to_bits();
            if address == 0 {
                continue;
            }
            let (range, buffer) = match current {
                Some((range, buffer)) if address >= range.0 && address < range.1 => (range, buffer),
                _ => {
                    let at = ranges.partition_point(|range| range.1 <= address);
                    let range = match ranges.get(at) {
                        Some(&range) if address >= range.0 => range,
                        _ => continue,
                    };
                    let buffer = match stored.get(range.2) {
                        Some(&buffer) => buffer,
                        None => {
                            buffers.push(base(range.2)?);
                            stored.insert(range.2, buffers.len() - 1);
                            buffers.len() - 1
                        }
                    };
                    (range, buffer)
                }
            };
            current = Some((range, buffer));
            buffers[buffer][(address - range.0) as usize] = value;
        }
    }
    let mut buffers: Vec<Option<Vec<f32>>> = buffers.into_iter().map(Some).collect();
    let mut named = BTreeMap::new();
    for (stored_name, buffer) in stored {
        let values = buffers[buffer].take().unwrap_or_default();
        let name = trainee
            .names
            .get(stored_name)
            .cloned()
            .unwrap_or_else(|| stored_name.to_owned());
        named.insert(name, values);
    }
    Ok(named)
}

/// Writes the folder: weights under the class's names, the config, the tokenizer, the log.
pub(super) fn write_folder(
    out: &Path,
    files: &ModelFiles,
    config_text: &str,
    trainee: &Trainee,
    store: &WeightStore,
    log: &TrainingLog,
) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|err| ModelError::Io {
        path: out.to_owned(),
        reason: format!("cannot create the folder ({err})"),
    })?;
    let values = trainee.values()?;
    let named = scatter(trainee, &values, |name| store.stored_values(name))?;
    let shapes: BTreeMap<&str, Vec<usize>> = trainee
        .addresses
        .tensors
        .iter()
        .filter_map(|(stored, (_, shape))| {
            trainee
                .names
                .get(stored)
                .map(|name| (name.as_str(), shape.clone()))
        })
        .collect();
    let bytes: Vec<(&str, Vec<u8>, Vec<usize>)> = named
        .iter()
        .map(|(name, values)| {
            let shape = shapes
                .get(name.as_str())
                .cloned()
                .unwrap_or_else(|| vec![values.len()]);
            let mut data = vec![0u8; 4 * values.len()];
            for (bytes, value) in data.chunks_exact_mut(4).zip(values) {
                bytes.copy_from_slice(&value.to_le_bytes());
            }
            (name.as_str(), data, shape)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, data, shape)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|view| (*name, view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| ModelError::Compute(format!("cannot lay out the weights ({err})")))?;
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_owned(),
        "pt".to_owned(),
    )]));
    let serialized = safetensors::tensor::serialize(views, metadata)
        .map_err(|err| ModelError::Compute(format!("cannot lay out the weights ({err})")))?;
    let write = |name: &str, content: &[u8]| {
        write_atomically(&out.join(name), |file| file.write_all(content))
    };
    write("model.safetensors", &serialized)?;
    write("config.json", config_text.as_bytes())?;
    for name in TOKENIZER_FILES {
        let source = files.folder.join(name);
        if source.is_file() {
            let content = std::fs::read(&source).map_err(|err| ModelError::Io {
                path: source.clone(),
                reason: format!("cannot read the tokenizer file ({err})"),
            })?;
            write(name, &content)?;
        }
    }
    let log_text = serde_json::to_vec_pretty(log)
        .map_err(|err| ModelError::Compute(format!("cannot write the training log ({err})")))?;
    write("training_log.json", &log_text)
}
