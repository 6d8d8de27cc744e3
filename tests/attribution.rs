//! Attribution, activation patching and logit attribution against torch autograd and Captum
//! (`tools/make_fixtures.py --attribution` writes the references), on both forward paths: the
//! tuned CPU backend's own backward pass and candle's autograd.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fixture, floats, load_fixture as load};

use bertscope::model::attribution::{Attribution, AttributionOptions};
use bertscope::model::target::TargetSpec;
use bertscope::model::{ForwardPath, LoadedModel};
use serde_json::Value;

/// The fixtures that hold an `attribution.json`.
const FIXTURES: [&str; 8] = [
    "bert-sentiment",
    "bert-qa",
    "bert-ner",
    "tiny-legacy",
    "distilbert-mlm",
    "roberta-mlm",
    "gpt2-lm",
    "gpt2-classifier",
];

fn reference(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("attribution.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Runs the reference's case through `model`.
fn attribute(model: &LoadedModel, reference: &Value) -> Attribution {
    let text = reference["text"].as_str().unwrap();
    let text_b = reference["text_b"].as_str();
    let encoded = model.tokenizer().encode(text, text_b).unwrap();
    let ids: Vec<u32> = encoded.ids.clone();
    let expected: Vec<u32> = reference["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, expected, "the tokenizer's ids");
    let target = match reference["target_spec"].as_str() {
        Some(spec) => spec.parse().unwrap(),
        None => TargetSpec::default(),
    };
    let options = AttributionOptions {
        target,
        ig_steps: reference["ig_steps"].as_u64().unwrap() as usize,
        occlusion: true,
    };
    model
        .attribution(&encoded, &options, &mut |_, _| true)
        .unwrap()
}

/// Each list within 1e-4 of the reference's largest magnitude.
fn assert_list(what: &str, ours: &[f32], theirs: &[f32]) {
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let difference = common::max_abs_diff(what, ours, theirs);
    assert!(
        difference <= 1e-4 * f64::from(scale),
        "{what}: off by {difference:e} (largest value {scale})\nours   {ours:?}\ntheirs {theirs:?}"
    );
}

fn check(name: &str, path: ForwardPath) {
    let model = load(name, path);
    let reference = reference(name);
    let ours = attribute(&model, &reference);
    let target = &reference["target"];
    let json = serde_json::to_value(&ours.target).unwrap();
    assert_eq!(json["head"], target["head"], "{name}: head");
    assert_eq!(json["position"], target["position"], "{name}: position");
    assert_eq!(json["id"], target["id"], "{name}: id");
    common::assert_near(
        &format!("{name}: logit"),
        f64::from(ours.target.logit),
        target["logit"].as_f64().unwrap(),
        1e-4,
    );
    common::assert_near(
        &format!("{name}: baseline logit"),
        f64::from(ours.baseline_logit.unwrap()),
        reference["baseline_logit"].as_f64().unwrap(),
        1e-4,
    );
    for (key, ours) in [
        ("grad_x_input", &ours.grad_x_input),
        ("grad_norm", &ours.grad_norm),
        (
            "integrated_gradients",
            ours.integrated_gradients.as_ref().unwrap(),
        ),
        ("occlusion", ours.occlusion.as_ref().unwrap()),
    ] {
        assert_list(
            &format!("{name} ({path:?}): {key}"),
            ours,
            &floats(&reference[key]),
        );
    }
    common::assert_near(
        &format!("{name}: ig_delta"),
        f64::from(ours.ig_delta.unwrap()),
        reference["ig_delta"].as_f64().unwrap(),
        1e-4,
    );
}

#[test]
fn attribution_matches_torch_autograd_and_captum_on_the_cpu_path() {
    for name in FIXTURES {
        check(name, ForwardPath::Auto);
    }
}

#[test]
fn attribution_matches_torch_autograd_and_captum_on_candles_path() {
    for name in FIXTURES {
        check(name, ForwardPath::Candle);
    }
}

fn read_json(name: &str, file: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join(file)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rows(value: &Value) -> Vec<Vec<f32>> {
    value.as_array().unwrap().iter().map(floats).collect()
}

fn check_patching(name: &str, path: ForwardPath) {
    let model = load(name, path);
    let reference = read_json(name, "patching.json");
    let encode = |key: &str| {
        model
            .tokenizer()
            .encode(reference[key].as_str().unwrap(), None)
            .unwrap()
    };
    let ours = model
        .patching(
            &encode("clean"),
            &encode("corrupt"),
            &TargetSpec::default(),
            &mut |_, _| true,
        )
        .unwrap();
    let json = serde_json::to_value(&ours.target).unwrap();
    for key in ["head", "position", "id"] {
        assert_eq!(json[key], reference["target"][key], "{name}: target {key}");
    }
    for (key, ours) in [
        ("clean_logit", ours.clean_logit),
        ("corrupt_logit", ours.corrupt_logit),
    ] {
        common::assert_near(
            &format!("{name}: {key}"),
            f64::from(ours),
            reference[key].as_f64().unwrap(),
            1e-4,
        );
    }
    for (key, ours) in [("resid_pre", &ours.resid_pre), ("head_out", &ours.head_out)] {
        let theirs = rows(&reference[key]);
        let what = format!("{name} ({path:?}): {key}");
        assert_eq!(ours.len(), theirs.len(), "{what}: layers");
        for (layer, (ours, theirs)) in ours.iter().zip(&theirs).enumerate() {
            let difference = common::max_abs_diff(&format!("{what}[{layer}]"), ours, theirs);
            assert!(
                difference <= 1e-3,
                "{what}[{layer}]: off by {difference:e}\nours   {ours:?}\ntheirs {theirs:?}"
            );
        }
    }
}

#[test]
fn patching_matches_hooks_in_transformers_on_both_paths() {
    for name in ["bert-sentiment", "distilbert-mlm", "roberta-mlm", "gpt2-lm"] {
        check_patching(name, ForwardPath::Auto);
        check_patching(name, ForwardPath::Candle);
    }
}

#[test]
fn logit_attribution_matches_the_modules_outputs_and_sums_to_the_logit() {
    let reference = read_json("gpt2-lm", "logit_attribution.json");
    for path in [ForwardPath::Auto, ForwardPath::Candle] {
        let model = load("gpt2-lm", path);
        let encoded = model
            .tokenizer()
            .encode(reference["text"].as_str().unwrap(), None)
            .unwrap();
        let spec: TargetSpec = format!("next:{}", reference["position"]).parse().unwrap();
        let ours = model.logit_attribution(&encoded, &spec).unwrap();
        assert_eq!(u64::from(ours.target.id), reference["id"].as_u64().unwrap());
        let near = |what: &str, ours: f32, key: &Value| {
            common::assert_near(what, f64::from(ours), key.as_f64().unwrap(), 1e-4)
        };
        near("logit", ours.logit, &reference["logit"]);
        near("sum of the parts", ours.total(), &reference["logit"]);
        near("embed", ours.embed, &reference["embed"]);
        near("final_bias", ours.final_bias, &reference["final_bias"]);
        common::assert_close(
            "attn_bias",
            &ours.attn_bias,
            &floats(&reference["attn_bias"]),
            1e-4,
        );
        common::assert_close("mlps", &ours.mlps, &floats(&reference["mlps"]), 1e-4);
        common::assert_close(
            "heads",
            &ours.heads.concat(),
            &rows(&reference["heads"]).concat(),
            1e-4,
        );
    }
}

/// The newer families (written by `tools/make_fixtures.py --modern`): rotary embeddings,
/// grouped queries, windows, RMSNorm and `(1 + w)` norms, gated MLPs, Gemma's post-norms and
/// soft-capped logits, ModernBERT's local layers. Both paths run their batched runs.
const MODERN_FIXTURES: [&str; 5] = [
    "llama-lm",
    "qwen3-lm",
    "mistral-lm",
    "gemma3-lm",
    "modernbert-mlm",
];

#[test]
fn attribution_of_the_newer_families_matches_torch_autograd_and_captum() {
    for name in MODERN_FIXTURES {
        check(name, ForwardPath::Auto);
        check(name, ForwardPath::Candle);
    }
}

#[test]
fn patching_of_the_newer_families_matches_hooks_in_transformers() {
    for name in ["llama-lm", "gemma3-lm"] {
        check_patching(name, ForwardPath::Auto);
        check_patching(name, ForwardPath::Candle);
    }
}

/// Direct logit attribution under a final RMSNorm: per head for Llama; per layer for Gemma 3,
/// whose post-norms keep its attention from splitting into heads, explained before its
/// soft-cap.
#[test]
fn rms_logit_attribution_matches_the_modules_outputs_and_sums_to_the_logit() {
    for (name, path) in ["llama-lm", "gemma3-lm"]
        .into_iter()
        .flat_map(|name| [(name, ForwardPath::Auto), (name, ForwardPath::Candle)])
    {
        let reference = read_json(name, "logit_attribution.json");
        let model = load(name, path);
        let encoded = model
            .tokenizer()
            .encode(reference["text"].as_str().unwrap(), None)
            .unwrap();
        let spec: TargetSpec = format!("next:{}", reference["position"]).parse().unwrap();
        let ours = model.logit_attribution(&encoded, &spec).unwrap();
        assert_eq!(u64::from(ours.target.id), reference["id"].as_u64().unwrap());
        let near = |what: &str, ours: f32, key: &Value| {
            common::assert_near(
                &format!("{name}: {what}"),
                f64::from(ours),
                key.as_f64().unwrap(),
                1e-4,
            )
        };
        near("logit", ours.logit, &reference["logit"]);
        near("sum of the parts", ours.total(), &reference["logit"]);
        near("embed", ours.embed, &reference["embed"]);
        near("final_bias", ours.final_bias, &reference["final_bias"]);
        assert_eq!(
            ours.softcap.map(f64::from),
            reference["softcap"].as_f64(),
            "{name}"
        );
        assert!(!ours.centred);
        for (what, ours, theirs) in [
            (
                "attention",
                &ours.attention,
                floats(&reference["attention"]),
            ),
            ("mlps", &ours.mlps, floats(&reference["mlps"])),
            (
                "heads",
                &ours.heads.concat(),
                rows(&reference["heads"]).concat(),
            ),
        ] {
            if theirs.is_empty() {
                // Gemma 3's attention has no per-head parts.
                assert!(ours.is_empty(), "{name}: {what}");
                continue;
            }
            common::assert_close(&format!("{name}: {what}"), ours, &theirs, 1e-4);
        }
    }
}

#[test]
fn logit_attribution_refuses_post_layernorm_models_in_one_line() {
    let model = load("bert-sentiment", ForwardPath::Auto);
    let encoded = model.tokenizer().encode("a fine day", None).unwrap();
    let err = model
        .logit_attribution(&encoded, &TargetSpec::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("pre-norm") && !err.contains('\n'), "{err}");
}

#[test]
fn targets_a_checkpoint_cannot_give_name_the_heads_it_has() {
    let model = load("bert-sentiment", ForwardPath::Auto);
    let encoded = model.tokenizer().encode("a fine day", None).unwrap();
    let options = AttributionOptions {
        target: "mlm:1".parse().unwrap(),
        ig_steps: 0,
        occlusion: false,
    };
    let err = model
        .attribution(&encoded, &options, &mut |_, _| true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("label") && err.contains("masked LM"), "{err}");
    let bad = "nonsense:1".parse::<TargetSpec>().unwrap_err().to_string();
    assert!(bad.contains("mlm:I"), "{bad}");
}

#[test]
fn patching_refuses_texts_of_different_lengths_and_equal_logits() {
    let model = load("gpt2-lm", ForwardPath::Auto);
    let clean = model
        .tokenizer()
        .encode("The quick brown fox jumps", None)
        .unwrap();
    let longer = model
        .tokenizer()
        .encode("The slow brown fox jumps", None)
        .unwrap();
    let err = model
        .patching(&clean, &longer, &TargetSpec::default(), &mut |_, _| true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("7 tokens") && err.contains("5") && err.contains("token 1"),
        "{err}"
    );
    let err = model
        .patching(&clean, &clean, &TargetSpec::default(), &mut |_, _| true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("almost the same logit"), "{err}");
}
