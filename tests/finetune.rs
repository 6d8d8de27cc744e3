//! Fine-tuning against transformers (`tools/make_finetune_reference.py`): from fixtures that
//! already have a classification head, with dropout 0, no shuffling, weight decay and warmup on,
//! each step's loss, the first step's gradients and every parameter's change over the run match
//! torch's AdamW, clipping and schedule over the same batches. And fine-tuning MiniLM on the
//! shipped example data actually learns.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use bertscope::model::finetune::{fine_tune, FineTuneOptions, Summary};
use bertscope::model::ModelSource;
use common::fixture;

fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .into_iter()
        .map(|(name, tensor)| {
            let values = tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (name, values)
        })
        .collect()
}

fn norm(values: impl Iterator<Item = f64>) -> f64 {
    values.map(|v| v * v).sum::<f64>().sqrt()
}

fn train(folder: &Path, out: &Path) -> Summary {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("finetune.json")).unwrap())
            .unwrap();
    let opts = &reference["options"];
    let mut options = FineTuneOptions::new(folder.join("finetune.csv"), out);
    options.epochs = opts["epochs"].as_u64().unwrap() as usize;
    options.batch_size = opts["batch_size"].as_u64().unwrap() as usize;
    options.lr = opts["lr"].as_f64().unwrap();
    options.weight_decay = opts["weight_decay"].as_f64().unwrap();
    options.warmup_steps = opts["warmup_steps"].as_u64().unwrap() as usize;
    options.max_grad_norm = opts["max_grad_norm"].as_f64().unwrap();
    options.max_len = opts["max_len"].as_u64().unwrap() as usize;
    options.dropout = Some(0.0);
    options.shuffle = false;
    options.keep_first_gradients = true;
    let source = ModelSource::parse(folder.to_str().unwrap()).unwrap();
    fine_tune(&source, &options, &AtomicBool::new(false), &mut |_| {})
        .unwrap_or_else(|err| panic!("{}: {err}", folder.display()))
}

fn matches_transformers(name: &str) {
    let folder = fixture(name);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned");
    let summary = train(&folder, &out);
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("finetune.json")).unwrap())
            .unwrap();
    let losses: Vec<f64> = reference["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|loss| loss.as_f64().unwrap())
        .collect();
    assert_eq!(summary.steps.len(), losses.len(), "{name}: steps");
    for (step, (ours, theirs)) in summary.steps.iter().zip(&losses).enumerate() {
        let relative = (ours.loss - theirs).abs() / theirs.abs().max(1e-12);
        assert!(
            relative <= 1e-5,
            "{name}: step {} loss {} vs transformers {theirs}",
            step + 1,
            ours.loss
        );
    }
    let expected = tensors(&folder.join("finetune.safetensors"));
    let gradients = summary.first_gradients.expect("first gradients kept");
    let original = tensors(&folder.join("model.safetensors"));
    let tuned = tensors(&out.join("model.safetensors"));
    // A gradient below this is float rounding of an exact zero: the key bias's, for one (the
    // softmax ignores a shift common to all of a query's scores), which Adam's first steps
    // magnify into a move of ±lr either way. Such gradients agree to this level, and such
    // elements' changes are not compared.
    let largest_gradient = expected
        .iter()
        .filter(|(key, _)| key.starts_with("grad."))
        .flat_map(|(_, values)| values.iter())
        .fold(0f32, |m, v| m.max(v.abs()));
    let zero = 1e-6 * largest_gradient;
    let mut checked = 0;
    for (key, theirs) in &expected {
        if let Some(tensor) = key.strip_prefix("grad.") {
            let ours = gradients
                .get(tensor)
                .unwrap_or_else(|| panic!("{name}: no gradient for {tensor}"));
            let largest = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = ours
                .iter()
                .zip(theirs)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            // A tensor whose gradient is all rounding (the key bias) is held to that level.
            assert!(
                worst <= (1e-4 * largest).max(zero),
                "{name}: gradient of {tensor} off by {worst} (largest {largest})"
            );
            checked += 1;
        } else if let Some(tensor) = key.strip_prefix("delta.") {
            let (before, after) = (
                original
                    .get(tensor)
                    .unwrap_or_else(|| panic!("{name}: {tensor} not in the fixture")),
                tuned
                    .get(tensor)
                    .unwrap_or_else(|| panic!("{name}: {tensor} not written")),
            );
            let (their_grad, our_grad) = (&expected[&format!("grad.{tensor}")], &gradients[tensor]);
            let compared: Vec<(f64, f64)> = after
                .iter()
                .zip(before)
                .zip(theirs)
                .enumerate()
                .filter(|&(at, _)| their_grad[at].abs() > zero || our_grad[at].abs() > zero)
                .map(|(_, ((a, b), theirs))| (f64::from(a - b), f64::from(*theirs)))
                .collect();
            let off = norm(compared.iter().map(|(ours, theirs)| ours - theirs));
            let size = norm(compared.iter().map(|(_, theirs)| *theirs));
            assert!(
                off <= 1e-2 * size + 1e-7,
                "{name}: change of {tensor} off by {off} (its size {size})"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "{name}: only {checked} tensors compared");
    // Everything transformers trains is written, under the same names, and nothing else.
    let trained: Vec<&str> = expected
        .keys()
        .filter_map(|key| key.strip_prefix("delta."))
        .collect();
    let written: Vec<&str> = tuned.keys().map(String::as_str).collect();
    assert_eq!(written, trained, "{name}: tensors written");
}

#[test]
fn bert_fine_tuning_matches_transformers() {
    matches_transformers("bert-sentiment");
}

#[test]
fn distilbert_regression_fine_tuning_matches_transformers() {
    matches_transformers("distilbert-regression");
}

#[test]
fn roberta_multi_label_fine_tuning_matches_transformers() {
    matches_transformers("roberta-multilabel");
}

#[test]
fn gpt2_fine_tuning_matches_transformers() {
    matches_transformers("gpt2-classifier");
}

/// Grouped-query attention, rotary embeddings, RMSNorm and the gated MLP run candle's composed
/// ops where the fused host ops do not reach; the Trainer leaves the RMSNorms undecayed.
#[test]
fn llama_fine_tuning_matches_transformers() {
    matches_transformers("llama-classifier");
}

#[test]
fn a_new_head_starts_as_transformers_initialises_it() {
    // New labels: RoBERTa's classifier is drawn anew; with a learning rate of 0 it is written
    // as drawn.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("topics.csv");
    let rows: String = (0..8)
        .map(|i| format!("text number {i},{}\n", ["sport", "music", "food"][i % 3]))
        .collect();
    std::fs::write(&data, format!("text,label\n{rows}")).unwrap();
    let out = dir.path().join("tuned");
    let mut options = FineTuneOptions::new(&data, &out);
    options.epochs = 1;
    options.lr = 0.0;
    options.seed = 3;
    let folder = fixture("roberta-multilabel");
    let source = ModelSource::parse(folder.to_str().unwrap()).unwrap();
    fine_tune(&source, &options, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let tuned = tensors(&out.join("model.safetensors"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let std = config["initializer_range"].as_f64().unwrap();
    assert_eq!(config["id2label"]["0"], "food");
    assert_eq!(config["problem_type"], "single_label_classification");
    let weights: Vec<f64> = ["classifier.dense.weight", "classifier.out_proj.weight"]
        .iter()
        .flat_map(|name| tuned[*name].iter().map(|&v| f64::from(v)))
        .collect();
    assert_eq!(weights.len(), 16 * 16 + 3 * 16);
    let n = weights.len() as f64;
    let mean = weights.iter().sum::<f64>() / n;
    let sd = (weights.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(mean.abs() < 4.0 * std / n.sqrt(), "mean {mean}, std {std}");
    assert!((sd / std - 1.0).abs() < 0.15, "sd {sd} vs {std}");
    for bias in ["classifier.dense.bias", "classifier.out_proj.bias"] {
        assert!(tuned[bias].iter().all(|&v| v == 0.0), "{bias}");
    }
    // The encoder is the checkpoint's, untouched at a learning rate of 0.
    let original = tensors(&folder.join("model.safetensors"));
    let key = "roberta.encoder.layer.1.output.dense.weight";
    assert_eq!(tuned[key], original[key]);
}

#[test]
fn fine_tuning_minilm_on_the_example_reviews_learns_them() {
    let Some(minilm) = common::minilm_folder() else {
        return;
    };
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sentiment");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sentiment");
    let mut options = FineTuneOptions::new(examples.join("train.csv"), &out);
    options.eval = Some(examples.join("test.csv"));
    options.epochs = 1;
    options.lr = 1e-4;
    let source = ModelSource::parse(minilm.to_str().unwrap()).unwrap();
    let summary = fine_tune(&source, &options, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let eval = summary.epochs[0].eval.as_ref().unwrap();
    let accuracy = eval.accuracy.unwrap();
    assert!(accuracy >= 0.9, "held-out accuracy {accuracy}");
    // The folder loads in bertscope with the new labels and tells the reviews apart.
    let model = bertscope::model::LoadedModel::load(
        &ModelSource::parse(out.to_str().unwrap()).unwrap(),
        bertscope::model::DeviceChoice::Cpu,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(model.labels(), ["negative", "positive"]);
}

#[test]
fn a_frozen_encoder_stays_as_it_was_while_the_head_learns() {
    let folder = fixture("bert-sentiment");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("head-only");
    let mut options = FineTuneOptions::new(folder.join("finetune.csv"), &out);
    options.epochs = 1;
    options.lr = 1e-2;
    options.weight_decay = 0.1;
    options.freeze_encoder = true;
    let source = ModelSource::parse(folder.to_str().unwrap()).unwrap();
    fine_tune(&source, &options, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let (before, after) = (
        tensors(&folder.join("model.safetensors")),
        tensors(&out.join("model.safetensors")),
    );
    for (name, values) in &after {
        let moved = values != &before[name];
        let head = name.starts_with("classifier.");
        assert_eq!(moved, head, "{name}: moved {moved}");
    }
}
