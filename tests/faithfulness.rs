//! bertscope against Hugging Face transformers: the committed references under tests/fixtures/
//! were written by tools/make_fixtures.py, one tiny checkpoint per family and head. Both backends
//! must match: tokens exactly, attention to 1e-5, hidden states to 1e-4, and every head's
//! probabilities to 1e-5 with identical rankings (MLM and next-token top-5, NSP, label scores,
//! the question-answering span and its per-token probabilities, per-token labels).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bertscope::model::{
    Analysis, AnalysisRequest, CapturedArray, DeviceChoice, ForwardPath, HeadKind, LoadedModel,
    ModelSource, TokenPrediction,
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
    mlm: Option<Vec<ReferenceTopK>>,
    nsp_is_next: Option<f32>,
    next_token: Option<Vec<ReferenceTopK>>,
    classification: Option<ReferenceClassification>,
    qa: Option<ReferenceAnswer>,
    token_classification: Option<Vec<ReferenceTokenLabel>>,
}

#[derive(Deserialize)]
struct ReferenceTopK {
    position: usize,
    ids: Vec<u32>,
    probs: Vec<f32>,
}

#[derive(Deserialize)]
struct ReferenceClassification {
    problem_type: String,
    labels: Vec<ReferenceLabel>,
}

#[derive(Deserialize)]
struct ReferenceLabel {
    label: String,
    id: usize,
    prob: Option<f32>,
    score: Option<f32>,
}

#[derive(Deserialize)]
struct ReferenceAnswer {
    answer: String,
    score: f32,
    start: usize,
    end: usize,
    char_start: usize,
    char_end: usize,
    start_probs: Vec<f32>,
    end_probs: Vec<f32>,
}

#[derive(Deserialize)]
struct ReferenceTokenLabel {
    position: usize,
    label: String,
    prob: f32,
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

fn max_abs_diff(ours: &CapturedArray, reference: &Tensor) -> f32 {
    let ours = ours.to_host().expect("captures copy to the host");
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

        check_top_k(
            &label,
            "MLM",
            model,
            case.mlm.as_deref(),
            analysis.mlm.as_deref(),
        );
        check_top_k(
            &label,
            "next token",
            model,
            case.next_token.as_deref(),
            analysis.next_token.as_deref(),
        );
        check_heads(&label, case, &analysis);
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

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= PROBABILITY_TOLERANCE
}

/// Top-5 predictions over the vocabulary: same positions, same ids in the same order, same
/// probabilities.
fn check_top_k(
    label: &str,
    what: &str,
    model: &LoadedModel,
    expected: Option<&[ReferenceTopK]>,
    ours: Option<&[TokenPrediction]>,
) {
    let (expected, ours) = match (expected, ours) {
        (None, None) => return,
        (Some(expected), Some(ours)) => (expected, ours),
        (expected, ours) => panic!(
            "{label}: {what} present in reference {} / ours {}",
            expected.is_some(),
            ours.is_some()
        ),
    };
    assert_eq!(ours.len(), expected.len(), "{label}: {what} positions");
    for (ours, expected) in ours.iter().zip(expected) {
        assert_eq!(ours.position, expected.position, "{label}: {what} position");
        let ids: Vec<u32> = ours.top_k.iter().map(|c| c.id).collect();
        assert_eq!(
            ids, expected.ids,
            "{label}: {what} top-5 at {}",
            ours.position
        );
        for (candidate, prob) in ours.top_k.iter().zip(&expected.probs) {
            assert!(
                close(candidate.prob, *prob),
                "{label}: {what} prob of {} is {} not {prob}",
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

/// Sequence classification, question answering and token classification.
fn check_heads(label: &str, case: &Case, analysis: &Analysis) {
    match (&case.classification, &analysis.classification) {
        (None, None) => {}
        (Some(expected), Some(ours)) => {
            assert_eq!(ours.problem_type.name(), expected.problem_type, "{label}");
            assert_eq!(ours.labels.len(), expected.labels.len(), "{label}: labels");
            for (ours, expected) in ours.labels.iter().zip(&expected.labels) {
                assert_eq!(
                    (&ours.label, ours.id),
                    (&expected.label, expected.id),
                    "{label}: label order"
                );
                assert_eq!(ours.prob.is_some(), expected.prob.is_some(), "{label}");
                assert!(
                    close(ours.value(), expected.prob.or(expected.score).unwrap()),
                    "{label}: {} is {} not {:?}",
                    ours.label,
                    ours.value(),
                    expected.prob.or(expected.score)
                );
            }
        }
        (expected, ours) => panic!(
            "{label}: classification reference {expected:?} ours {ours:?}",
            expected = expected.is_some(),
            ours = ours.is_some()
        ),
    }
    match (&case.qa, &analysis.qa) {
        (None, None) => {}
        (Some(expected), Some(ours)) => {
            assert_eq!(
                (ours.start, ours.end, ours.char_start, ours.char_end),
                (
                    expected.start,
                    expected.end,
                    expected.char_start,
                    expected.char_end
                ),
                "{label}: answer span"
            );
            assert_eq!(ours.answer, expected.answer, "{label}: answer");
            assert!(close(ours.score, expected.score), "{label}: score");
            for (ours, expected) in [
                (&ours.start_probs, &expected.start_probs),
                (&ours.end_probs, &expected.end_probs),
            ] {
                assert_eq!(ours.len(), expected.len());
                for (a, b) in ours.iter().zip(expected) {
                    assert!(close(*a, *b), "{label}: span probability {a} vs {b}");
                }
            }
        }
        (expected, ours) => panic!(
            "{label}: QA reference {} ours {}",
            expected.is_some(),
            ours.is_some()
        ),
    }
    match (&case.token_classification, &analysis.token_classification) {
        (None, None) => {}
        (Some(expected), Some(ours)) => {
            assert_eq!(ours.len(), expected.len(), "{label}: labelled tokens");
            for (ours, expected) in ours.iter().zip(expected) {
                assert_eq!(
                    (ours.position, &ours.label),
                    (expected.position, &expected.label),
                    "{label}: token label"
                );
                assert!(close(ours.prob, expected.prob), "{label}: token label prob");
            }
        }
        (expected, ours) => panic!(
            "{label}: token labels reference {} ours {}",
            expected.is_some(),
            ours.is_some()
        ),
    }
}

/// Loads a family fixture on both backends, checks which heads were found, and compares.
fn check_family(name: &str, heads: &[HeadKind]) {
    let folder = fixture(name);
    for model in load_both(&folder) {
        let found: Vec<HeadKind> = model.head_kinds().collect();
        assert_eq!(found, heads, "{name}: heads found");
        check_against_reference(&model, &folder);
    }
}

#[test]
fn bert_sequence_classification_matches_transformers() {
    check_family("bert-sentiment", &[HeadKind::SequenceClassification]);
}

#[test]
fn bert_question_answering_matches_the_pipeline_definition() {
    check_family("bert-qa", &[HeadKind::QuestionAnswering]);
}

#[test]
fn bert_token_classification_matches_transformers() {
    check_family("bert-ner", &[HeadKind::TokenClassification]);
}

#[test]
fn distilbert_masked_lm_with_sinusoidal_positions_matches_transformers() {
    check_family("distilbert-mlm", &[HeadKind::MaskedLm]);
}

#[test]
fn distilbert_regression_matches_transformers() {
    check_family("distilbert-regression", &[HeadKind::SequenceClassification]);
}

#[test]
fn roberta_masked_lm_from_vocab_and_merges_matches_transformers() {
    check_family("roberta-mlm", &[HeadKind::MaskedLm]);
}

#[test]
fn roberta_multi_label_classification_matches_transformers() {
    check_family("roberta-multilabel", &[HeadKind::SequenceClassification]);
}

#[test]
fn xlm_roberta_question_answering_matches_the_pipeline_definition() {
    check_family("xlmr-qa", &[HeadKind::QuestionAnswering]);
}

#[test]
fn gpt2_language_model_matches_transformers() {
    check_family("gpt2-lm", &[HeadKind::NextToken]);
}

#[test]
fn gpt2_sequence_classification_matches_transformers() {
    check_family("gpt2-classifier", &[HeadKind::SequenceClassification]);
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

/// The real pretrained checkpoint: `BERTSCOPE_TEST_MODEL`, else `../shared/models/all-MiniLM-L6-v2`;
/// `None` (the test is skipped) only when the variable is unset and the default is absent.
fn minilm_folder() -> Option<PathBuf> {
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
        return None;
    }
    Some(folder)
}

#[test]
fn real_minilm_checkpoint_matches_transformers() {
    let Some(folder) = minilm_folder() else {
        return;
    };
    for model in load_both(&folder) {
        assert_eq!(model.config().num_hidden_layers, 6);
        check_against_reference(&model, &fixture("minilm-reference"));
    }
}

#[derive(Deserialize)]
struct LongCase {
    text: String,
    token_ids: Vec<u32>,
    dropped_tokens: usize,
    heads: Vec<(usize, usize)>,
    rows: Vec<usize>,
}

/// The real checkpoint on a full 512-token input; the committed reference keeps three heads and
/// every 16th query row (and the last hidden state at those rows) to stay small.
#[test]
fn real_minilm_checkpoint_matches_transformers_at_512_tokens() {
    let Some(folder) = minilm_folder() else {
        return;
    };
    let reference = fixture("minilm-reference");
    let case: LongCase = serde_json::from_str(
        &std::fs::read_to_string(reference.join("long.json")).expect("long.json"),
    )
    .expect("long.json parses");
    let tensors = candle_core::safetensors::load(reference.join("long.safetensors"), &Device::Cpu)
        .expect("long.safetensors");
    let attentions = tensors["attentions"].to_vec3::<f32>().unwrap();
    let hidden_rows = tensors["last_hidden_rows"].to_vec2::<f32>().unwrap();
    for model in load_both(&folder) {
        let analysis = model
            .analyze(&AnalysisRequest::new(case.text.clone()))
            .unwrap();
        assert_eq!(analysis.token_ids, case.token_ids);
        assert_eq!(analysis.dropped_tokens, case.dropped_tokens);
        assert_eq!(analysis.len(), 512);
        let mut largest = 0f32;
        for ((layer, head), expected) in case.heads.iter().zip(&attentions) {
            let ours = analysis.attention(*layer, *head);
            for (&row, expected) in case.rows.iter().zip(expected) {
                for (a, b) in ours[row * 512..(row + 1) * 512].iter().zip(expected) {
                    largest = largest.max((a - b).abs());
                }
            }
        }
        assert!(
            largest <= ATTENTION_TOLERANCE,
            "attention differs by {largest:e}"
        );
        eprintln!("MiniLM at 512 tokens: largest attention difference {largest:.1e}");
        let last = analysis.hidden_states.matrix(&[analysis.layers()]);
        let width = analysis.hidden_states.shape()[2];
        for (&row, expected) in case.rows.iter().zip(&hidden_rows) {
            for (a, b) in last[row * width..(row + 1) * width].iter().zip(expected) {
                assert!((a - b).abs() <= HIDDEN_TOLERANCE, "hidden state at {row}");
            }
        }
    }
}

/// The analyses that need a backend's own computation (value norms, ablation, the logit lens,
/// the embedding rows) agree between the tuned CPU path and candle's; `tests/cli.rs` checks the
/// tuned path against transformers.
#[test]
fn both_paths_agree_on_norms_ablation_lens_and_embeddings() {
    for (name, text) in [
        ("tiny-legacy", "The cat sat on the [MASK], didn't it?"),
        ("roberta-mlm", "The cat sat on the <mask>, didn't it?"),
        ("gpt2-lm", "The cat sat on the mat, didn't it?"),
    ] {
        let [tuned, candle] = load_both(&fixture(name));
        let mut request = AnalysisRequest::new(text);
        request.value_norms = true;
        request.ablated_heads = vec![(1, 2), (0, 0)];
        let [a, b] = [&tuned, &candle].map(|model| model.analyze(&request).unwrap());
        assert_eq!(a.ablated_heads, [(0, 0), (1, 2)]);
        assert!(a.attention(0, 0).iter().all(|&w| w == 0.0), "{name}");
        assert!(b.attention(1, 2).iter().all(|&w| w == 0.0), "{name}");
        let (norms_a, norms_b) = (
            a.value_norms.as_ref().unwrap(),
            b.value_norms.as_ref().unwrap(),
        );
        let (norms_a, norms_b) = (norms_a.to_host().unwrap(), norms_b.to_host().unwrap());
        assert_eq!(norms_a.shape(), &[2, 4, a.len()]);
        for (x, y) in norms_a.values().iter().zip(norms_b.values()) {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                "{name}: {x} vs {y}"
            );
        }
        let [lens_a, lens_b] = [(&tuned, &a), (&candle, &b)]
            .map(|(model, analysis)| model.logit_lens(analysis, 5).unwrap());
        assert_eq!(lens_a.len(), 1, "{name}: one mask, or the last token");
        for (x, y) in lens_a[0].layers.iter().zip(&lens_b[0].layers) {
            let ids = |layer: &bertscope::model::LensLayer| -> Vec<u32> {
                layer.top_k.iter().map(|guess| guess.id).collect()
            };
            assert_eq!(ids(x), ids(y), "{name}: lens layer {}", x.layer);
        }
        // Computed with the predictions (one pass over the vocabulary matrix), the lens and
        // the predictions are those computed apart.
        request.lens = true;
        for (model, apart, lens_apart) in [(&tuned, &a, &lens_a), (&candle, &b, &lens_b)] {
            let fused = model.analyze(&request).unwrap();
            let close = |x: &[bertscope::model::TokenProbability],
                         y: &[bertscope::model::TokenProbability]| {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|(x, y)| x.id == y.id && (x.prob - y.prob).abs() <= 1e-5)
            };
            let lens = fused.logit_lens.as_ref().expect("an LM head's lens");
            assert_eq!(lens.len(), lens_apart.len(), "{name}");
            for (x, y) in lens.iter().zip(lens_apart) {
                assert_eq!(x.position, y.position, "{name}");
                for (x, y) in x.layers.iter().zip(&y.layers) {
                    assert!(close(&x.top_k, &y.top_k), "{name}: layer {}", x.layer);
                }
            }
            let own = |analysis: &bertscope::model::Analysis| {
                analysis
                    .mlm
                    .clone()
                    .or(analysis.next_token.clone())
                    .unwrap()
            };
            let (fused_own, apart_own) = (own(&fused), own(apart));
            assert_eq!(fused_own.len(), apart_own.len(), "{name}");
            for (x, y) in fused_own.iter().zip(&apart_own) {
                assert!(
                    close(&x.top_k, &y.top_k),
                    "{name}: the predictions at {}",
                    x.position
                );
            }
            assert_eq!(
                model.logit_lens(&fused, 3).unwrap()[0].layers[0]
                    .top_k
                    .len(),
                3
            );
        }
        let [parts_a, parts_b] = [(&tuned, &a), (&candle, &b)]
            .map(|(model, analysis)| model.embedding_breakdown(analysis).unwrap());
        assert_eq!(parts_a.tokens.len(), a.len());
        for (x, y) in parts_a.tokens.iter().zip(&parts_b.tokens) {
            assert!((x.sum - y.sum).abs() <= 1e-5 && (x.word - y.word).abs() <= 1e-5);
        }
        let similarity = &parts_a.position_similarity;
        assert!((similarity[0] - 1.0).abs() < 1e-5);
    }
}

/// The neuron view's softmax of q·k/√d, from the captured queries and keys, is the captured
/// attention row, on both paths (causal masking included).
#[test]
fn query_key_softmax_is_the_captured_attention() {
    for name in ["tiny-legacy", "roberta-mlm", "gpt2-lm", "distilbert-mlm"] {
        for model in load_both(&fixture(name)) {
            let analysis = model
                .analyze(&AnalysisRequest::new("The cat sat on the mat, didn't it?"))
                .unwrap();
            let tokens = analysis.len();
            for (layer, head, query) in [(0, 0, 0), (1, 3, tokens / 2), (1, 1, tokens - 1)] {
                let view = bertscope::analysis::query_key::query_key(&analysis, layer, head, query);
                let row = &analysis.attention(layer, head)[query * tokens..][..tokens];
                for (ours, captured) in view.softmax.iter().zip(row) {
                    assert!(
                        (ours - captured).abs() <= 1e-5,
                        "{name} {layer}:{head} row {query}: {ours} vs {captured}"
                    );
                }
            }
        }
    }
}
