//! bertscope against Hugging Face transformers: the committed references under tests/fixtures/
//! were written by tools/make_fixtures.py, one tiny checkpoint per family and head. Both backends
//! must match: tokens exactly, attention to 1e-5, hidden states to 1e-4, and every head's
//! probabilities to 1e-5 with identical rankings (MLM and next-token top-5, NSP, label scores,
//! the question-answering span and its per-token probabilities, per-token labels).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bertscope::model::{
    Analysis, AnalysisRequest, CapturedArray, DeviceChoice, ForwardPath, HeadKind, LoadedModel,
    ModelSource, TokenPrediction, TokenProbability,
};
use candle_core::{Device, Tensor};
use common::{assert_close, assert_near, minilm_folder, pairs};
use serde::Deserialize;

const ATTENTION_TOLERANCE: f64 = 1e-5;
const HIDDEN_TOLERANCE: f64 = 1e-4;
const PROBABILITY_TOLERANCE: f64 = 1e-5;

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

/// The largest difference between a capture and a reference tensor of the same shape; a value
/// that is not finite fails (`common::max_abs_diff`).
fn max_abs_diff(what: &str, ours: &CapturedArray, reference: &Tensor) -> f64 {
    let ours = ours.to_host().expect("captures copy to the host");
    assert_eq!(ours.shape(), reference.dims(), "{what}: shape");
    let expected = reference
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("reference tensor");
    common::max_abs_diff(what, ours.values(), &expected)
}

/// A reference folder's cases and tensors.
fn load_reference(reference_folder: &Path) -> (Vec<Case>, HashMap<String, Tensor>) {
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
    (cases.cases, tensors)
}

/// Runs every case of a reference folder through `model` and compares.
fn check_against_reference(model: &LoadedModel, reference_folder: &Path) {
    let (cases, tensors) = load_reference(reference_folder);
    for case in &cases {
        let label = format!("{}/{}", reference_folder.display(), case.name);
        let request = AnalysisRequest::new(case.text.clone()).with_text_b(case.text_b.clone());
        let analysis = model
            .analyze(&request)
            .unwrap_or_else(|err| panic!("{label}: {err}"));
        check_case(&label, model, case, &tensors, &analysis);
    }
}

/// One case's analysis against the reference: tokens, every map, hidden state and head.
fn check_case(
    label: &str,
    model: &LoadedModel,
    case: &Case,
    tensors: &HashMap<String, Tensor>,
    analysis: &Analysis,
) {
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
        &format!("{label}: attention"),
        &analysis.attentions,
        &tensors[&format!("{}.attentions", case.name)],
    );
    assert!(
        attention <= ATTENTION_TOLERANCE,
        "{label}: attention differs by {attention:e}"
    );
    let hidden = max_abs_diff(
        &format!("{label}: hidden states"),
        &analysis.hidden_states,
        &tensors[&format!("{}.hidden_states", case.name)],
    );
    assert!(
        hidden <= HIDDEN_TOLERANCE,
        "{label}: hidden states differ by {hidden:e}"
    );

    check_top_k(
        label,
        "MLM",
        model,
        case.mlm.as_deref(),
        analysis.mlm.as_deref(),
    );
    check_top_k(
        label,
        "next token",
        model,
        case.next_token.as_deref(),
        analysis.next_token.as_deref(),
    );
    check_heads(label, case, analysis);
    match (case.nsp_is_next, analysis.nsp_is_next) {
        (None, None) => {}
        (Some(expected), Some(ours)) => assert_near(
            &format!("{label}: NSP"),
            ours.into(),
            expected.into(),
            PROBABILITY_TOLERANCE,
        ),
        (expected, ours) => panic!("{label}: NSP reference {expected:?} ours {ours:?}"),
    }
}

/// Asserts two probabilities agree to [`PROBABILITY_TOLERANCE`], both finite.
fn assert_probability(what: &str, ours: f32, theirs: f32) {
    assert_near(what, ours.into(), theirs.into(), PROBABILITY_TOLERANCE);
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
    for (ours, expected) in pairs(&format!("{label}: {what} positions"), ours, expected) {
        assert_eq!(ours.position, expected.position, "{label}: {what} position");
        let ids: Vec<u32> = ours.top_k.iter().map(|c| c.id).collect();
        assert_eq!(
            ids, expected.ids,
            "{label}: {what} top-5 at {}",
            ours.position
        );
        let at = format!("{label}: {what} probabilities at {}", ours.position);
        for (candidate, prob) in pairs(&at, &ours.top_k, &expected.probs) {
            assert_probability(&at, candidate.prob, *prob);
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
            for (ours, expected) in pairs(label, &ours.labels, &expected.labels) {
                assert_eq!(
                    (&ours.label, ours.id),
                    (&expected.label, expected.id),
                    "{label}: label order"
                );
                assert_eq!(ours.prob.is_some(), expected.prob.is_some(), "{label}");
                assert_probability(
                    &format!("{label}: {}", ours.label),
                    ours.value(),
                    expected.prob.or(expected.score).unwrap(),
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
            assert_probability(&format!("{label}: score"), ours.score, expected.score);
            for (what, ours, expected) in [
                ("start", &ours.start_probs, &expected.start_probs),
                ("end", &ours.end_probs, &expected.end_probs),
            ] {
                let what = format!("{label}: {what} probabilities");
                assert_close(&what, ours, expected, PROBABILITY_TOLERANCE);
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
            for (ours, expected) in pairs(&format!("{label}: labelled tokens"), ours, expected) {
                assert_eq!(
                    (ours.position, &ours.label),
                    (expected.position, &expected.label),
                    "{label}: token label"
                );
                assert_probability(&format!("{label}: token label"), ours.prob, expected.prob);
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
fn llama_with_grouped_queries_llama3_rope_and_tied_embeddings_matches_transformers() {
    check_family("llama-lm", &[HeadKind::NextToken]);
}

#[test]
fn llama_sequence_classification_matches_transformers() {
    check_family("llama-classifier", &[HeadKind::SequenceClassification]);
}

#[test]
fn mistral_sliding_window_and_sentencepiece_match_transformers() {
    check_family("mistral-lm", &[HeadKind::NextToken]);
}

#[test]
fn qwen2_biases_layer_types_and_linear_rope_match_transformers() {
    check_family("qwen2-lm", &[HeadKind::NextToken]);
}

#[test]
fn qwen3_head_norms_wide_heads_and_bf16_weights_match_transformers() {
    check_family("qwen3-lm", &[HeadKind::NextToken]);
}

#[test]
fn gemma3_local_and_global_layers_norms_and_soft_caps_match_transformers() {
    check_family("gemma3-lm", &[HeadKind::NextToken]);
}

#[test]
fn modernbert_masked_lm_with_local_layers_matches_transformers() {
    check_family("modernbert-mlm", &[HeadKind::MaskedLm]);
}

#[test]
fn modernbert_mean_pooled_classification_matches_transformers() {
    check_family("modernbert-classifier", &[HeadKind::SequenceClassification]);
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
        let mut largest = 0f64;
        for ((layer, head), expected) in pairs("heads", &case.heads, &attentions) {
            let ours = analysis.attention(*layer, *head);
            for (&row, expected) in pairs("rows", &case.rows, expected) {
                let what = format!("attention {layer}:{head} row {row}");
                let row = &ours[row * 512..(row + 1) * 512];
                largest = largest.max(common::max_abs_diff(&what, row, expected));
            }
        }
        assert!(
            largest <= ATTENTION_TOLERANCE,
            "attention differs by {largest:e}"
        );
        eprintln!("MiniLM at 512 tokens: largest attention difference {largest:.1e}");
        let last = analysis.hidden_states.matrix(&[analysis.layers()]);
        let width = analysis.hidden_states.shape()[2];
        for (&row, expected) in pairs("hidden rows", &case.rows, &hidden_rows) {
            let what = format!("hidden state at {row}");
            let row = &last[row * width..(row + 1) * width];
            assert!(common::max_abs_diff(&what, row, expected) <= HIDDEN_TOLERANCE);
        }
    }
}

/// A run whose captured arrays reuse an earlier run's memory (kept once a capture is dropped,
/// and for a model without masking not cleared first) gives exactly the run on fresh memory:
/// every element of the maps is written. The earlier run is longer, so what it left sits
/// across the later run's heads and rows, where any element left unwritten would show.
#[test]
fn a_run_on_kept_capture_memory_equals_a_run_on_fresh_memory() {
    let Some(folder) = minilm_folder() else {
        return;
    };
    let case: LongCase = serde_json::from_str(
        &std::fs::read_to_string(fixture("minilm-reference").join("long.json")).expect("long.json"),
    )
    .expect("long.json parses");
    let [model, _] = load_both(&folder);
    // About 400 tokens: a kept buffer is reused for an array of at least half its size.
    let words: Vec<&str> = case.text.split_whitespace().collect();
    let shorter = (1..words.len())
        .map(|count| words[..count].join(" "))
        .find(|text| model.tokenizer().encode(text, None).unwrap().ids.len() >= 400)
        .expect("the long text has 400 tokens");
    let maps = |analysis: &Analysis| -> Vec<f32> {
        (0..analysis.layers())
            .flat_map(|layer| (0..analysis.heads()).map(move |head| (layer, head)))
            .flat_map(|(layer, head)| analysis.attention(layer, head).to_vec())
            .collect()
    };
    // The first run stays alive, so that its own memory is not the one the last run reuses.
    let first = model
        .analyze(&AnalysisRequest::new(shorter.clone()))
        .unwrap();
    let longer = model.analyze(&AnalysisRequest::new(case.text)).unwrap();
    assert_eq!(longer.len(), 512);
    drop(longer);
    let again = model.analyze(&AnalysisRequest::new(shorter)).unwrap();
    assert!(maps(&first) == maps(&again), "the attention maps differ");
}

/// The same top-k predictions: positions, ids in order, and probabilities to 1e-5.
fn assert_same_predictions(what: &str, ours: &[TokenPrediction], theirs: &[TokenPrediction]) {
    for (x, y) in pairs(what, ours, theirs) {
        assert_eq!(x.position, y.position, "{what}");
        assert_same_guesses(&format!("{what} at {}", x.position), &x.top_k, &y.top_k);
    }
}

/// The same guesses: ids in order, probabilities to 1e-5.
fn assert_same_guesses(what: &str, ours: &[TokenProbability], theirs: &[TokenProbability]) {
    let ids = |guesses: &[TokenProbability]| -> Vec<u32> { guesses.iter().map(|g| g.id).collect() };
    assert_eq!(ids(ours), ids(theirs), "{what}");
    let probs =
        |guesses: &[TokenProbability]| -> Vec<f32> { guesses.iter().map(|g| g.prob).collect() };
    assert_close(what, &probs(ours), &probs(theirs), PROBABILITY_TOLERANCE);
}

/// Two runs of the same input agree: every attention map (ablated or not) to 1e-5, hidden
/// states to 1e-4, and every prediction head's output.
fn assert_same_runs(what: &str, a: &Analysis, b: &Analysis) {
    assert_eq!(a.tokens, b.tokens, "{what}");
    assert_eq!(a.ablated_heads, b.ablated_heads, "{what}");
    for (name, x, y, tolerance) in [
        (
            "attention",
            &a.attentions,
            &b.attentions,
            ATTENTION_TOLERANCE,
        ),
        (
            "hidden states",
            &a.hidden_states,
            &b.hidden_states,
            HIDDEN_TOLERANCE,
        ),
    ] {
        let (x, y) = (x.to_host().unwrap(), y.to_host().unwrap());
        assert_eq!(x.shape(), y.shape(), "{what}: {name}");
        let largest = common::max_abs_diff(&format!("{what}: {name}"), x.values(), y.values());
        assert!(
            largest <= tolerance,
            "{what}: {name} differs by {largest:e}"
        );
    }
    for (head, x, y) in [
        ("MLM", &a.mlm, &b.mlm),
        ("next token", &a.next_token, &b.next_token),
    ] {
        assert_eq!(x.is_some(), y.is_some(), "{what}: {head}");
        if let (Some(x), Some(y)) = (x, y) {
            assert_same_predictions(&format!("{what}: {head}"), x, y);
        }
    }
    assert_eq!(
        a.nsp_is_next.is_some(),
        b.nsp_is_next.is_some(),
        "{what}: NSP"
    );
    if let (Some(x), Some(y)) = (a.nsp_is_next, b.nsp_is_next) {
        assert_probability(&format!("{what}: NSP"), x, y);
    }
}

/// The analyses that need a backend's own computation (value norms, ablation, the logit lens,
/// the embedding rows) agree between the tuned CPU path and candle's, to the tolerances of the
/// reference checks; `tests/cli.rs` checks the tuned path against transformers.
#[test]
fn both_paths_agree_on_norms_ablation_lens_and_embeddings() {
    for (name, text) in [
        ("tiny-legacy", "The cat sat on the [MASK], didn't it?"),
        ("roberta-mlm", "The cat sat on the <mask>, didn't it?"),
        ("gpt2-lm", "The cat sat on the mat, didn't it?"),
        // Grouped queries (value norms through each query head's key/value head), a window,
        // rotary positions (no position embeddings), Gemma's scaled embeddings and soft-cap.
        ("llama-lm", "The cat sat on the mat, didn't it?"),
        ("mistral-lm", "The cat sat on the mat, didn't it?"),
        ("gemma3-lm", "The cat sat on the mat, didn't it?"),
    ] {
        let [tuned, candle] = load_both(&fixture(name));
        let mut request = AnalysisRequest::new(text);
        request.value_norms = true;
        request.ablated_heads = vec![(1, 2), (0, 0)];
        let [a, b] = [&tuned, &candle].map(|model| model.analyze(&request).unwrap());
        assert_eq!(a.ablated_heads, [(0, 0), (1, 2)]);
        for (path, run) in [("tuned", &a), ("candle", &b)] {
            for (layer, head) in [(0, 0), (1, 2)] {
                let map = run.attention(layer, head);
                assert!(
                    map.iter().all(|&w| w == 0.0),
                    "{name} {path}: {layer}:{head}"
                );
            }
        }
        // Every map, ablated or not, and every prediction after the ablation.
        assert_same_runs(&format!("{name}, ablated"), &a, &b);
        let (norms_a, norms_b) = (
            a.value_norms.as_ref().unwrap(),
            b.value_norms.as_ref().unwrap(),
        );
        let (norms_a, norms_b) = (norms_a.to_host().unwrap(), norms_b.to_host().unwrap());
        assert_eq!(norms_a.shape(), &[2, 4, a.len()]);
        assert_eq!(norms_a.shape(), norms_b.shape());
        let what = format!("{name}: value norms");
        assert_close(&what, norms_a.values(), norms_b.values(), 1e-5);

        let [lens_a, lens_b] = [(&tuned, &a), (&candle, &b)]
            .map(|(model, analysis)| model.logit_lens(analysis, 5).unwrap());
        assert_eq!(lens_a.len(), 1, "{name}: one mask, or the last token");
        for (x, y) in pairs(&format!("{name}: lens positions"), &lens_a, &lens_b) {
            assert_eq!(x.position, y.position, "{name}");
            for (x, y) in pairs(&format!("{name}: lens layers"), &x.layers, &y.layers) {
                assert_eq!(x.layer, y.layer, "{name}");
                let what = format!("{name}: lens layer {}", x.layer);
                assert_same_guesses(&what, &x.top_k, &y.top_k);
            }
        }
        // Computed with the predictions (one pass over the vocabulary matrix), the lens and
        // the predictions are those computed apart.
        request.lens = true;
        for (model, apart, lens_apart) in [(&tuned, &a, &lens_a), (&candle, &b, &lens_b)] {
            let fused = model.analyze(&request).unwrap();
            let lens = fused.logit_lens.as_ref().expect("an LM head's lens");
            for (x, y) in pairs(&format!("{name}: fused lens"), lens, lens_apart) {
                assert_eq!(x.position, y.position, "{name}");
                for (x, y) in pairs(&format!("{name}: fused lens layers"), &x.layers, &y.layers) {
                    let what = format!("{name}: fused lens layer {}", x.layer);
                    assert_same_guesses(&what, &x.top_k, &y.top_k);
                }
            }
            assert_same_runs(&format!("{name}, with the lens"), &fused, apart);
            assert_eq!(
                model.logit_lens(&fused, 3).unwrap()[0].layers[0]
                    .top_k
                    .len(),
                3
            );
        }

        // The whole embedding breakdown.
        let [parts_a, parts_b] = [(&tuned, &a), (&candle, &b)]
            .map(|(model, analysis)| model.embedding_breakdown(analysis).unwrap());
        assert_eq!(parts_a.tokens.len(), a.len());
        for (x, y) in pairs(
            &format!("{name}: embeddings"),
            &parts_a.tokens,
            &parts_b.tokens,
        ) {
            let what = format!("{name}: embeddings of token {}", x.position);
            assert_eq!(x.position, y.position, "{what}");
            assert_eq!(x.segment.is_some(), y.segment.is_some(), "{what}: segment");
            assert_eq!(
                x.after_norm.is_some(),
                y.after_norm.is_some(),
                "{what}: norm"
            );
            let fields = |t: &bertscope::model::TokenEmbedding| -> Vec<f32> {
                [
                    Some(t.word),
                    t.position_emb,
                    t.segment,
                    Some(t.sum),
                    t.after_norm,
                ]
                .into_iter()
                .flatten()
                .collect()
            };
            assert_close(&what, &fields(x), &fields(y), 1e-5);
        }
        let similarity = &parts_a.position_similarity;
        if tuned.config().architecture.rotary(0).is_some() {
            assert!(similarity.is_empty() && parts_b.position_similarity.is_empty());
            continue;
        }
        assert_eq!(similarity.len(), a.len() * a.len(), "{name}");
        assert_close(
            &format!("{name}: position similarity"),
            similarity,
            &parts_b.position_similarity,
            1e-5,
        );
        assert!((similarity[0] - 1.0).abs() < 1e-5);
    }
}

/// The neuron view's softmax of q·k/√d, from the captured queries and keys, is the captured
/// attention row, on both paths (causal masking included).
#[test]
fn query_key_softmax_is_the_captured_attention() {
    for name in [
        "tiny-legacy",
        "roberta-mlm",
        "gpt2-lm",
        "distilbert-mlm",
        "llama-lm",
        "mistral-lm",
        "qwen3-lm",
        "gemma3-lm",
        "modernbert-mlm",
    ] {
        for model in load_both(&fixture(name)) {
            let analysis = model
                .analyze(&AnalysisRequest::new("The cat sat on the mat, didn't it?"))
                .unwrap();
            let tokens = analysis.len();
            for (layer, head, query) in [(0, 0, 0), (1, 3, tokens / 2), (1, 1, tokens - 1)] {
                let view = bertscope::analysis::query_key::query_key(&analysis, layer, head, query);
                let row = &analysis.attention(layer, head)[query * tokens..][..tokens];
                let what = format!("{name} {layer}:{head} row {query}");
                assert_close(&what, &view.softmax, row, ATTENTION_TOLERANCE);
            }
        }
    }
}

/// A NaN or an infinity fails every comparison, on either side, where `f32::max` would have
/// folded it into a difference of 0; so does a length mismatch, where a zip would have stopped
/// early. Through the whole check: a run whose attention holds one NaN fails against its own
/// reference.
#[test]
fn a_nan_or_a_length_mismatch_fails_the_comparisons() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let fails = |what: &str, check: &dyn Fn()| {
        let result = catch_unwind(AssertUnwindSafe(check));
        assert!(result.is_err(), "{what} passed");
    };
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let (good, poisoned) = ([0.25f32, 0.5, 0.25], [0.25f32, bad, 0.25]);
        fails("max_abs_diff, ours", &|| {
            common::max_abs_diff("x", &poisoned, &good);
        });
        fails("max_abs_diff, theirs", &|| {
            common::max_abs_diff("x", &good, &poisoned);
        });
        fails("assert_close", &|| assert_close("x", &poisoned, &good, 1.0));
        fails("assert_near", &|| assert_near("x", bad.into(), 0.5, 1.0));
    }
    fails("a shorter side", &|| {
        common::max_abs_diff("x", &[0.5f32], &[0.5, 0.5]);
    });
    fails("an empty side", &|| {
        common::max_abs_diff("x", &[], &[0.5f32]);
    });
    fails("pairs", &|| {
        pairs("x", &[1], &[1, 2]).for_each(drop);
    });
    assert_eq!(
        common::max_abs_diff("x", &[0.5f32, 1.0], &[0.25, 1.0]),
        0.25
    );

    let folder = fixture("tiny-modern");
    let (cases, tensors) = load_reference(&folder);
    let model = &load_both(&folder)[0];
    let case = &cases[0];
    let request = AnalysisRequest::new(case.text.clone()).with_text_b(case.text_b.clone());
    let mut analysis = model.analyze(&request).unwrap();
    check_case("intact", model, case, &tensors, &analysis);
    let attentions = analysis.attentions.to_host().unwrap().into_owned();
    let mut values = attentions.values().to_vec();
    values[7] = f32::NAN;
    analysis.attentions = bertscope::model::F32Array::new(attentions.shape().to_vec(), values)
        .unwrap()
        .into();
    fails("a NaN attention map", &|| {
        check_case("poisoned", model, case, &tensors, &analysis)
    });
}

#[derive(Deserialize)]
struct LabelCase {
    name: String,
    map: Vec<Vec<f64>>,
    separators: Vec<bool>,
    punctuation: Vec<bool>,
    stats: serde_json::Value,
}

/// Clark's kinds of head, as the reference states them (`tools/make_analysis_reference.py`,
/// `HEAD_KINDS`), on maps made to fall on each side of every threshold: the fixtures' random
/// heads are all "mixed".
#[test]
fn head_labels_follow_the_thresholds_as_the_reference_states_them() {
    let cases: Vec<LabelCase> = serde_json::from_str(
        &std::fs::read_to_string(fixture("head_labels.json")).expect("head_labels.json"),
    )
    .unwrap();
    let mut kinds: Vec<&str> = Vec::new();
    for case in &cases {
        let map: Vec<f32> = case.map.iter().flatten().map(|&v| v as f32).collect();
        let ours = bertscope::analysis::stats::map_stats(&map, &case.separators, &case.punctuation);
        let ours = serde_json::to_value(ours).unwrap();
        for key in ["cls", "sep", "punct", "self", "prev", "next", "entropy"] {
            let what = format!("{}: {key}", case.name);
            let (a, b) = (
                ours[key].as_f64().unwrap(),
                case.stats[key].as_f64().unwrap(),
            );
            assert_near(&what, a, b, 1e-5);
        }
        assert_eq!(ours["label"], case.stats["label"], "{}", case.name);
        kinds.push(case.stats["label"].as_str().unwrap());
    }
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds, ["broad", "mixed", "next", "previous", "special"]);
}
