//! bertscope against Hugging Face transformers: the committed references under tests/fixtures/
//! were written by tools/make_fixtures.py. Attention must match to 1e-5, hidden states to 1e-4,
//! tokens exactly, MLM top-5 ids exactly with probabilities to 1e-5, NSP to 1e-5.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bertscope::model::{
    AnalysisRequest, DeviceChoice, F32Array, ForwardPath, LoadedModel, ModelSource,
};
use candle_core::{Device, Tensor};
use serde::Deserialize;

const ATTENTION_TOLERANCE: f32 = 1e-5;
const HIDDEN_TOLERANCE: f32 = 1e-4;
const PROBABILITY_TOLERANCE: f32 = 1e-5;

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    text: String,
    text_b: Option<String>,
    tokens: Vec<String>,
    token_ids: Vec<u32>,
    segment_ids: Vec<u32>,
    dropped_tokens: usize,
    mlm: Option<Vec<ReferenceMlm>>,
    nsp_is_next: Option<f32>,
}

#[derive(Deserialize)]
struct ReferenceMlm {
    position: usize,
    ids: Vec<u32>,
    probs: Vec<f32>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The model on both forward paths: the tuned CPU one and candle's (which GPUs run).
fn load_both(folder: &Path) -> [LoadedModel; 2] {
    [ForwardPath::Auto, ForwardPath::Candle].map(|path| {
        LoadedModel::load_with(
            &ModelSource::Folder(folder.to_owned()),
            DeviceChoice::Cpu,
            path,
            &mut |_| {},
        )
        .unwrap_or_else(|err| panic!("{}: {err}", folder.display()))
    })
}

fn max_abs_diff(ours: &F32Array, reference: &Tensor) -> f32 {
    assert_eq!(ours.shape(), reference.dims(), "shape");
    let expected = reference
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("reference tensor");
    ours.values()
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Runs every case of a reference folder through `model` and compares.
fn check_against_reference(model: &LoadedModel, reference_folder: &Path) {
    let cases: Cases = serde_json::from_str(
        &std::fs::read_to_string(reference_folder.join("cases.json")).expect("cases.json"),
    )
    .expect("cases.json parses");
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(
        reference_folder.join("reference.safetensors"),
        &Device::Cpu,
    )
    .expect("reference.safetensors");
    assert!(!cases.cases.is_empty());
    for case in &cases.cases {
        let label = format!("{}/{}", reference_folder.display(), case.name);
        let request = AnalysisRequest::new(case.text.clone()).with_text_b(case.text_b.clone());
        let analysis = model
            .analyze(&request)
            .unwrap_or_else(|err| panic!("{label}: {err}"));

        assert_eq!(analysis.tokens, case.tokens, "{label}: tokens");
        assert_eq!(analysis.token_ids, case.token_ids, "{label}: ids");
        assert_eq!(
            analysis.segment_ids, case.segment_ids,
            "{label}: segment ids"
        );
        assert_eq!(
            analysis.dropped_tokens, case.dropped_tokens,
            "{label}: dropped tokens"
        );

        let attention = max_abs_diff(
            &analysis.attentions,
            &tensors[&format!("{}.attentions", case.name)],
        );
        assert!(
            attention <= ATTENTION_TOLERANCE,
            "{label}: attention differs by {attention:e}"
        );
        let hidden = max_abs_diff(
            &analysis.hidden_states,
            &tensors[&format!("{}.hidden_states", case.name)],
        );
        assert!(
            hidden <= HIDDEN_TOLERANCE,
            "{label}: hidden states differ by {hidden:e}"
        );

        match (&case.mlm, &analysis.mlm) {
            (None, None) => {}
            (Some(expected), Some(ours)) => {
                assert_eq!(ours.len(), expected.len(), "{label}: MLM positions");
                for (ours, expected) in ours.iter().zip(expected) {
                    assert_eq!(ours.position, expected.position, "{label}: MLM position");
                    let ids: Vec<u32> = ours.top_k.iter().map(|c| c.id).collect();
                    assert_eq!(ids, expected.ids, "{label}: MLM top-5 at {}", ours.position);
                    for (candidate, prob) in ours.top_k.iter().zip(&expected.probs) {
                        assert!(
                            (candidate.prob - prob).abs() <= PROBABILITY_TOLERANCE,
                            "{label}: MLM prob of {} is {} not {prob}",
                            candidate.token,
                            candidate.prob
                        );
                        assert_eq!(
                            model.tokenizer().id_to_token(candidate.id).as_ref(),
                            Some(&candidate.token)
                        );
                    }
                }
            }
            (expected, ours) => panic!(
                "{label}: MLM present in reference {} / ours {}",
                expected.is_some(),
                ours.is_some()
            ),
        }
        match (case.nsp_is_next, analysis.nsp_is_next) {
            (None, None) => {}
            (Some(expected), Some(ours)) => {
                assert!(
                    (expected - ours).abs() <= PROBABILITY_TOLERANCE,
                    "{label}: NSP {ours} vs {expected}"
                )
            }
            (expected, ours) => panic!("{label}: NSP reference {expected:?} ours {ours:?}"),
        }
    }
}

#[test]
fn modern_names_match_transformers() {
    let folder = fixture("tiny-modern");
    for model in load_both(&folder) {
        assert!(!model.has_mlm_head(), "BertModel has no MLM head");
        assert!(!model.has_nsp_head(), "a pooler alone is no NSP head");
        check_against_reference(&model, &folder);
    }
}

#[test]
fn legacy_names_tied_decoder_and_shards_match_transformers() {
    let folder = fixture("tiny-legacy");
    for model in load_both(&folder) {
        assert!(model.has_mlm_head() && model.has_nsp_head());
        check_against_reference(&model, &folder);
    }
}

#[test]
fn vocab_only_tokenizer_and_untied_decoder_match_transformers() {
    let folder = fixture("tiny-vocab-only");
    for model in load_both(&folder) {
        assert!(model.has_mlm_head() && !model.has_nsp_head());
        check_against_reference(&model, &folder);
    }
}

/// The real pretrained checkpoint: `BERTSCOPE_TEST_MODEL`, else `../shared/models/all-MiniLM-L6-v2`.
#[test]
fn real_minilm_checkpoint_matches_transformers() {
    let folder = match std::env::var_os("BERTSCOPE_TEST_MODEL") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/all-MiniLM-L6-v2"),
    };
    if !folder.is_dir() {
        assert!(
            std::env::var_os("BERTSCOPE_TEST_MODEL").is_none(),
            "BERTSCOPE_TEST_MODEL={} is not a folder",
            folder.display()
        );
        eprintln!(
            "skipped: no MiniLM checkpoint at {} (set BERTSCOPE_TEST_MODEL)",
            folder.display()
        );
        return;
    }
    for model in load_both(&folder) {
        assert_eq!(model.config().num_hidden_layers, 6);
        check_against_reference(&model, &fixture("minilm-reference"));
    }
}
