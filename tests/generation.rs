//! Generation against transformers (`tools/make_fixtures.py --generation` writes the
//! references), on both forward paths: greedy ids equal `generate(do_sample=False)`, every
//! warper's distribution equals transformers' own, and each cached step's attention row equals
//! the full forward's last row.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fixture, floats, load_fixture as load};

use bertscope::model::generation::{
    generate, process, Decoding, GenerateOptions, Generator, Sampling, StopReason,
};
use bertscope::model::tokenizer::EncodedText;
use bertscope::model::{ForwardPath, LoadedModel};
use serde_json::Value;

/// The tied and the untied GPT-2 checkpoints, and the Llama kin: grouped-query attention,
/// rotary embeddings, sliding windows (Mistral's on every layer, Qwen2's on its second), which
/// 40 new tokens after a 4–5 token prompt cross.
const FIXTURES: [&str; 7] = [
    "gpt2-lm",
    "gpt2-untied",
    "llama-lm",
    "mistral-lm",
    "qwen2-lm",
    "qwen3-lm",
    "gemma3-lm",
];
const PATHS: [ForwardPath; 2] = [ForwardPath::Auto, ForwardPath::Candle];
/// The project's tolerance for probabilities against transformers (a temperature of 0.7
/// stretches a Llama's logit differences of ~1e-6 past 1e-6 in probability).
const PROBABILITY_TOLERANCE: f32 = 1e-5;

fn reference(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("generation.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn greedy_decoding_gives_transformers_ids_on_both_paths() {
    for name in FIXTURES {
        let reference = reference(name);
        let expected = ids(&reference["greedy_ids"]);
        for path in PATHS {
            let model = load(name, path);
            let options = GenerateOptions {
                max_new_tokens: expected.len(),
                decoding: Decoding::Greedy,
                seed: 0,
                stop: None,
            };
            let mut streamed = String::new();
            let generation = generate(
                &model,
                reference["prompt"].as_str().unwrap(),
                &options,
                &mut |piece| streamed.push_str(piece),
            )
            .unwrap();
            assert_eq!(generation.prompt_ids, ids(&reference["prompt_ids"]));
            assert_eq!(generation.ids, expected, "{name} {path:?}");
            // transformers stops at an end-of-text token too, which may be the last one asked for.
            let ended = expected
                .last()
                .is_some_and(|id| model.generation_defaults().eos_ids.contains(id));
            let stop = if ended {
                StopReason::EndOfText
            } else {
                StopReason::MaxNewTokens
            };
            assert_eq!(generation.stopped, stop, "{name} {path:?}");
            let prompt = model.tokenizer().decode(&generation.prompt_ids).unwrap();
            assert_eq!(format!("{prompt}{streamed}"), generation.text);
            for step in &generation.steps {
                // Greedy: nothing is cut away.
                assert_eq!(step.chosen.prob, step.chosen.prob_after);
                assert_eq!(step.kept, model.config().vocab_size);
                assert_eq!(step.top_k.len(), 10);
                assert_eq!(step.top_k[0].id, step.chosen.id);
            }
        }
    }
}

#[test]
fn warped_distributions_equal_transformers_warpers() {
    for name in FIXTURES {
        let reference = reference(name);
        for path in PATHS {
            let model = load(name, path);
            for case in reference["warpers"].as_array().unwrap() {
                let prefix = ids(&case["prefix"]);
                let mut generator = Generator::new(&model, &prefix, 0).unwrap();
                let logits = generator.next(&model).unwrap().logits.clone();
                let sampling = Sampling {
                    temperature: case["temperature"].as_f64().unwrap(),
                    top_k: case["top_k"].as_u64().unwrap() as usize,
                    top_p: case["top_p"].as_f64().unwrap(),
                };
                let processed = process(&logits, &Decoding::Sample(sampling));
                let kept = ids(&case["kept"]);
                let label = format!("{name} {path:?} {sampling:?} after {} tokens", prefix.len());
                assert_eq!(processed.kept, kept.len(), "{label}");
                for (&id, &expected) in kept.iter().zip(&floats(&case["prob_after"])) {
                    let got = processed.probs_after[id as usize];
                    assert!(
                        (got - expected).abs() <= PROBABILITY_TOLERANCE,
                        "{label}: {id} {got} {expected}"
                    );
                }
                let removed: f32 = (0..logits.len())
                    .filter(|id| !kept.contains(&(*id as u32)))
                    .map(|id| processed.probs_after[id])
                    .sum();
                assert_eq!(removed, 0.0, "{label}");
                for (&id, &expected) in ids(&case["top10"]).iter().zip(&floats(&case["prob"])) {
                    let got = processed.probs[id as usize];
                    assert!(
                        (got - expected).abs() <= PROBABILITY_TOLERANCE,
                        "{label}: {id} {got} {expected}"
                    );
                }
            }
        }
    }
}

/// The model's own encoding of exactly these ids, to run the full forward on them.
fn encoded(model: &LoadedModel, ids: &[u32]) -> EncodedText {
    EncodedText {
        text_a: String::new(),
        text_b: None,
        tokens: ids
            .iter()
            .map(|&id| model.tokenizer().id_to_token(id).unwrap())
            .collect(),
        ids: ids.to_vec(),
        segment_ids: vec![0; ids.len()],
        char_offsets: vec![None; ids.len()],
        sentence: vec![Some(0); ids.len()],
        dropped_tokens: 0,
    }
}

#[test]
fn each_cached_step_equals_the_full_forward_last_row() {
    for name in ["gpt2-lm", "mistral-lm", "qwen2-lm", "gemma3-lm"] {
        for path in PATHS {
            cached_steps_equal_full_forwards(name, path);
        }
    }
}

/// Twelve sampled steps of `name` on `path`, each against a full forward of its prefix.
fn cached_steps_equal_full_forwards(name: &str, path: ForwardPath) {
    let reference = reference(name);
    let prompt = ids(&reference["prompt_ids"]);
    let sampling = Decoding::Sample(Sampling {
        temperature: 1.3,
        top_k: 0,
        top_p: 1.0,
    });
    {
        let model = load(name, path);
        let (layers, heads) = (
            model.config().num_hidden_layers,
            model.config().num_attention_heads,
        );
        let mut generator = Generator::new(&model, &prompt, 7).unwrap();
        for _ in 0..12 {
            let ids = generator.ids().to_vec();
            let full = model.run(encoded(&model, &ids), &[], 10).unwrap();
            let tokens = ids.len();
            let step = generator.step(&model, &sampling).unwrap();
            assert_eq!(step.position, tokens);
            assert_eq!(step.attentions.len(), layers);
            for (layer, rows) in step.attentions.iter().enumerate() {
                assert_eq!(rows.len(), heads);
                for (head, row) in rows.iter().enumerate() {
                    let map = full.attentions.matrix(&[layer, head]);
                    let last = &map[(tokens - 1) * tokens..];
                    assert_eq!(row.len(), tokens);
                    for (a, b) in row.iter().zip(last) {
                        assert!(
                            (a - b).abs() <= 1e-5,
                            "{name} {path:?} {layer}:{head} {a} {b}"
                        );
                    }
                }
            }
            // The full forward's next-token prediction is the step's distribution.
            let predicted = &full.next_token.as_ref().unwrap()[tokens - 1].top_k;
            for (candidate, expected) in step.top_k.iter().zip(predicted) {
                assert_eq!(candidate.id, expected.id);
                assert!((candidate.prob - expected.prob).abs() <= 1e-5);
            }
        }
    }
}

#[test]
fn sampling_repeats_with_its_seed_and_regenerates_from_any_position() {
    let model = load("gpt2-lm", ForwardPath::Auto);
    let options = |seed| GenerateOptions {
        max_new_tokens: 16,
        decoding: Decoding::Sample(Sampling::default()),
        seed,
        stop: None,
    };
    let run = |seed| generate(&model, "The quick brown fox", &options(seed), &mut |_| {}).unwrap();
    let first = run(3);
    assert_eq!(first.ids, run(3).ids);
    assert!((0..8).any(|seed| run(100 + seed).ids != first.ids));
    for step in &first.steps {
        assert!(step.kept <= 50 && step.kept >= 1);
        assert!(step.chosen.prob_after >= step.chosen.prob);
    }

    // Regenerating from a position: the cache is cut there and the draws continue.
    let prompt = first.prompt_ids.clone();
    let mut generator = Generator::new(&model, &prompt, 3).unwrap();
    let decoding = Decoding::Sample(Sampling::default());
    for _ in 0..6 {
        generator.step(&model, &decoding).unwrap();
    }
    let kept = prompt.len() + 2;
    generator.truncate(kept).unwrap();
    assert_eq!(generator.ids().len(), kept);
    let step = generator.step(&model, &Decoding::Greedy).unwrap();
    let mut fresh = Generator::new(&model, &generator.ids()[..kept], 0).unwrap();
    let expected = fresh.step(&model, &Decoding::Greedy).unwrap();
    assert_eq!(step.chosen.id, expected.chosen.id);
    // The same rows, computed in one pass or in two (products grouped differently).
    let flat = |step: &bertscope::model::generation::GenerationStep| -> Vec<f32> {
        step.attentions
            .iter()
            .flatten()
            .flatten()
            .copied()
            .collect()
    };
    for (a, b) in flat(&step).iter().zip(flat(&expected)) {
        assert!((a - b).abs() <= 1e-5, "{a} {b}");
    }
}

#[test]
fn generation_stops_at_the_stop_text_and_at_the_positions() {
    let model = load("gpt2-lm", ForwardPath::Auto);
    let reference = reference("gpt2-lm");
    let greedy = ids(&reference["greedy_ids"]);
    // The text of the greedy continuation's second and third tokens: generation must stop
    // once it has written them, not run on to the token limit.
    let stop = model.tokenizer().decode(&greedy[1..3]).unwrap();
    let options = GenerateOptions {
        max_new_tokens: 40,
        decoding: Decoding::Greedy,
        seed: 0,
        stop: Some(stop.clone()),
    };
    let generation = generate(&model, "The quick brown fox", &options, &mut |_| {}).unwrap();
    assert_eq!(generation.stopped, StopReason::StopText);
    let continuation = model.tokenizer().decode(&generation.ids).unwrap();
    assert!(continuation.ends_with(&stop), "{continuation}");
    assert!(generation.ids.len() <= 3, "{:?}", generation.ids);
    assert_eq!(generation.ids, greedy[..generation.ids.len()]);

    let long = GenerateOptions {
        max_new_tokens: 1000,
        stop: None,
        ..options
    };
    let generation = generate(&model, "The quick brown fox", &long, &mut |_| {}).unwrap();
    let max = model.config().max_tokens();
    assert_eq!(generation.prompt_ids.len() + generation.ids.len(), max);
    assert_eq!(generation.stopped, StopReason::Positions);
    assert!(generation.notes[0].contains("generating at most"));
}

#[test]
fn encoders_and_empty_prompts_are_refused_in_one_line() {
    let bert = load("tiny-legacy", ForwardPath::Auto);
    let options = GenerateOptions {
        max_new_tokens: 4,
        decoding: Decoding::Greedy,
        seed: 0,
        stop: None,
    };
    let err = generate(&bert, "the cat", &options, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoder") && !err.contains('\n'), "{err}");
    let classifier = load("gpt2-classifier", ForwardPath::Auto);
    let err = generate(&classifier, "a day", &options, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("no language-model head"), "{err}");
    let gpt2 = load("gpt2-lm", ForwardPath::Auto);
    let err = generate(&gpt2, "", &options, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
}
