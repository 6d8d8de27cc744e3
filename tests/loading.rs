//! Loading real-world checkpoint layouts, and the one-line errors for the broken ones.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use bertscope::model::{AnalysisRequest, DeviceChoice, ForwardPath, LoadedModel, ModelSource};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(folder: &Path) -> Result<LoadedModel, String> {
    LoadedModel::load(
        &ModelSource::Folder(folder.to_owned()),
        DeviceChoice::Cpu,
        &mut |_| {},
    )
    .map_err(|err| err.to_string())
}

/// A writable copy of a fixture folder.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn edit_config(folder: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = folder.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

fn assert_one_line(message: &str) {
    assert!(!message.contains('\n'), "multi-line message: {message}");
}

#[test]
fn pickle_only_folder_explains_why_and_how_to_convert() {
    let dir = copy_of("tiny-modern");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"not loaded").unwrap();
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(err.contains("pytorch_model.bin"), "{err}");
    assert!(
        err.contains("pickle") && err.contains("safe_serialization=True"),
        "{err}"
    );
    assert_one_line(&err);
}

#[test]
fn missing_files_are_named() {
    let dir = copy_of("tiny-modern");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(err.contains("no config.json"), "{err}");

    let dir = copy_of("tiny-modern");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(err.contains("no model.safetensors"), "{err}");

    let dir = copy_of("tiny-modern");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    std::fs::remove_file(dir.path().join("vocab.txt")).unwrap();
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(err.contains("no tokenizer.json"), "{err}");
}

#[test]
fn a_sentencepiece_model_without_tokenizer_json_says_how_to_convert() {
    let dir = copy_of("xlmr-qa");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    std::fs::write(dir.path().join("sentencepiece.bpe.model"), b"protobuf").unwrap();
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        err.contains("sentencepiece.bpe.model") && err.contains("save_pretrained"),
        "{err}"
    );
    assert_one_line(&err);
}

#[test]
fn tokenizer_config_matters_only_without_tokenizer_json() {
    // With tokenizer.json the config only names the mask token: a broken one is ignored.
    let dir = copy_of("tiny-modern");
    std::fs::write(dir.path().join("tokenizer_config.json"), b"{ not json").unwrap();
    assert!(load(dir.path()).is_ok());
    // Built from vocab.txt, its options decide the tokens: a broken one is an error.
    let dir = copy_of("tiny-vocab-only");
    std::fs::write(dir.path().join("tokenizer_config.json"), b"{ not json").unwrap();
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        err.contains("tokenizer_config.json") && err.contains("not valid JSON"),
        "{err}"
    );
    assert_one_line(&err);
}

#[test]
fn vocabulary_files_must_suit_the_family() {
    // A RoBERTa folder with a WordPiece vocabulary instead of its byte-level BPE files.
    let dir = copy_of("roberta-mlm");
    std::fs::remove_file(dir.path().join("vocab.json")).unwrap();
    std::fs::remove_file(dir.path().join("merges.txt")).unwrap();
    std::fs::copy(
        fixture("bert-qa").join("vocab.txt"),
        dir.path().join("vocab.txt"),
    )
    .unwrap();
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        err.contains("a RoBERTa model needs tokenizer.json, or vocab.json with merges.txt"),
        "{err}"
    );
    assert_one_line(&err);
}

#[test]
fn gpt2_refuses_pairs_and_empty_text_clearly() {
    let model = load(&fixture("gpt2-lm")).unwrap();
    let err = model
        .analyze(&AnalysisRequest::new("a").with_text_b(Some("b".into())))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("GPT-2 reads one text"), "{err}");
    let err = model
        .analyze(&AnalysisRequest::new(""))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("the text is empty"), "{err}");
    // Long texts are cut to n_positions, and the cut is counted.
    let analysis = model
        .analyze(&AnalysisRequest::new(
            "the history of the world ".repeat(40),
        ))
        .unwrap();
    assert_eq!(analysis.len(), 64);
    assert!(analysis.dropped_tokens > 0);
    assert!(analysis.causal);
}

#[test]
fn roberta_counts_positions_from_after_padding() {
    let model = load(&fixture("roberta-mlm")).unwrap();
    assert_eq!(model.config().max_tokens(), 64);
    // A typed <pad> keeps position `pad` and does not advance the count, as in transformers.
    assert_eq!(
        model.config().position_ids(&[0, 9, 1, 9, 2]),
        [2, 3, 1, 4, 5]
    );
}

#[test]
fn shape_disagreeing_with_config_is_an_error_naming_the_tensor() {
    let dir = copy_of("tiny-modern");
    edit_config(dir.path(), |config| config["intermediate_size"] = 48.into());
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        err.contains("encoder.layer.0.intermediate.dense.weight"),
        "{err}"
    );
    assert!(
        err.contains("[64, 32]") && err.contains("[48, 32]"),
        "{err}"
    );
    assert_one_line(&err);
}

#[test]
fn other_model_types_are_refused_with_the_file_named() {
    let dir = copy_of("tiny-modern");
    edit_config(dir.path(), |config| config["model_type"] = "t5".into());
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        err.contains("config.json") && err.contains("'t5' is not supported"),
        "{err}"
    );
    assert!(
        err.contains("bert, distilbert, roberta, xlm-roberta, gpt2"),
        "the message lists what is supported: {err}"
    );
}

#[test]
fn missing_tensor_lists_the_spellings_tried() {
    let dir = copy_of("tiny-modern");
    // Keep the file valid safetensors but drop one tensor.
    let path = dir.path().join("model.safetensors");
    let tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let kept: std::collections::HashMap<_, _> = tensors
        .into_iter()
        .filter(|(name, _)| name != "encoder.layer.1.output.LayerNorm.weight")
        .collect();
    candle_core::safetensors::save(&kept, &path).unwrap();
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        err.contains("encoder.layer.1.output.LayerNorm.weight"),
        "{err}"
    );
    assert!(err.contains("LayerNorm.gamma"), "{err}");
}

#[test]
fn corrupt_weights_and_missing_shards_are_reported() {
    let dir = copy_of("tiny-modern");
    std::fs::write(dir.path().join("model.safetensors"), b"garbage").unwrap();
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        err.contains("model.safetensors") && err.contains("not a valid safetensors file"),
        "{err}"
    );

    let dir = copy_of("tiny-legacy");
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = load(dir.path()).map(|_| ()).unwrap_err();
    assert!(
        err.contains("model-00002-of-00002.safetensors") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn devices_not_compiled_in_are_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let err = LoadedModel::load(
        &ModelSource::Folder(fixture("tiny-modern")),
        DeviceChoice::Cuda,
        &mut |_| {},
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no cuda support") && err.contains("--features cuda"),
        "{err}"
    );
}

#[test]
fn masked_lm_runs_at_requested_positions_too() {
    let model = load(&fixture("tiny-legacy")).unwrap();
    let mut request = AnalysisRequest::new("The [MASK] sat on the mat.");
    request.mlm_positions = vec![1, 99];
    let analysis = model.analyze(&request).unwrap();
    let positions: Vec<usize> = analysis
        .mlm
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.position)
        .collect();
    assert_eq!(
        positions,
        vec![1, 2],
        "requested position 1, [MASK] at 2, 99 is out of range"
    );
    for prediction in analysis.mlm.unwrap() {
        assert_eq!(prediction.top_k.len(), 5);
        assert!(prediction.top_k.windows(2).all(|w| w[0].prob >= w[1].prob));
    }
}

#[test]
fn models_without_heads_report_them_unavailable() {
    let model = load(&fixture("tiny-modern")).unwrap();
    let request = AnalysisRequest::new("a [MASK] here").with_text_b(Some("and there".into()));
    let analysis = model.analyze(&request).unwrap();
    assert_eq!(analysis.mlm, None);
    assert_eq!(analysis.nsp_is_next, None);
    assert_eq!(
        analysis.segment_ids.iter().filter(|&&s| s == 1).count(),
        3,
        "b tokens and [SEP]"
    );
}

#[test]
fn character_offsets_point_into_each_sentence() {
    let model = load(&fixture("tiny-modern")).unwrap();
    let text_a = "Crème brûlée, 東京!";
    let text_b = "naïve café";
    let analysis = model
        .analyze(&AnalysisRequest::new(text_a).with_text_b(Some(text_b.into())))
        .unwrap();
    assert_eq!(analysis.char_offsets[0], None, "[CLS]");
    for (index, offsets) in analysis.char_offsets.iter().enumerate() {
        let Some((start, end)) = *offsets else {
            continue;
        };
        let sentence = [text_a, text_b][analysis.sentence[index].unwrap()];
        let piece: String = sentence.chars().skip(start).take(end - start).collect();
        let token = analysis.tokens[index].trim_start_matches("##");
        // Lower-cased, accent-stripped token against the original characters.
        assert!(
            !piece.is_empty()
                && (token == "[UNK]"
                    || piece.to_lowercase().chars().count() == token.chars().count()),
            "token {token:?} ↔ {piece:?}"
        );
    }
    let east = analysis.tokens.iter().position(|t| t == "東").unwrap();
    assert_eq!(analysis.char_offsets[east], Some((14, 15)));
}

/// The captured queries and keys reproduce the captured attention: softmax(q·kᵀ/√d).
#[test]
fn queries_and_keys_reproduce_attention_on_both_paths() {
    for path in [ForwardPath::Auto, ForwardPath::Candle] {
        let model = LoadedModel::load_with(
            &ModelSource::Folder(fixture("tiny-legacy")),
            DeviceChoice::Cpu,
            path,
            &mut |_| {},
        )
        .unwrap();
        let analysis = model
            .analyze(&AnalysisRequest::new("the cat sat on the mat"))
            .unwrap();
        let tokens = analysis.len();
        let head_dim = analysis.queries.shape()[3];
        for (layer, head) in [(0, 0), (1, 3)] {
            let q = analysis.queries.matrix(&[layer, head]);
            let k = analysis.keys.matrix(&[layer, head]);
            let attention = analysis.attention(layer, head);
            for i in 0..tokens {
                let scores: Vec<f32> = (0..tokens)
                    .map(|j| {
                        (0..head_dim)
                            .map(|c| q[i * head_dim + c] * k[j * head_dim + c])
                            .sum::<f32>()
                            / (head_dim as f32).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f32::MIN, f32::max);
                let total: f32 = scores.iter().map(|s| (s - max).exp()).sum();
                for j in 0..tokens {
                    let expected = (scores[j] - max).exp() / total;
                    assert!(
                        (attention[i * tokens + j] - expected).abs() < 1e-5,
                        "{path:?} {layer}/{head} {i},{j}"
                    );
                }
            }
        }
    }
}

#[test]
fn long_inputs_are_truncated_and_counted() {
    let model = load(&fixture("tiny-modern")).unwrap();
    let text = "word ".repeat(200);
    let analysis = model.analyze(&AnalysisRequest::new(text)).unwrap();
    assert_eq!(analysis.len(), 64);
    assert_eq!(analysis.dropped_tokens, 200 + 2 - 64);
    assert_eq!(analysis.tokens.last().map(String::as_str), Some("[SEP]"));
}

#[test]
fn empty_text_still_runs() {
    let model = load(&fixture("tiny-modern")).unwrap();
    let analysis = model.analyze(&AnalysisRequest::new("")).unwrap();
    assert_eq!(analysis.tokens, vec!["[CLS]", "[SEP]"]);
}
