//! The command line as scripts use it: exact JSON shapes, exit codes, one-line errors.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn bertscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bertscope"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("bertscope runs")
}

fn stderr_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line on stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    stderr
}

#[test]
fn dump_writes_the_documented_shape() {
    let model = fixture("tiny-legacy");
    let output = bertscope(&[
        "dump",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "The [MASK] sat down.",
        "--text-b",
        "It was tired.",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        keys(&json),
        [
            "attentions",
            "mlm",
            "model",
            "model_type",
            "nsp",
            "segment_ids",
            "token_ids",
            "tokens"
        ]
    );
    assert_eq!(json["model_type"], "bert");
    let tokens = json["tokens"].as_array().unwrap().len();
    assert_eq!(json["token_ids"].as_array().unwrap().len(), tokens);
    assert_eq!(json["segment_ids"].as_array().unwrap().len(), tokens);
    // [layer][head][query][key], each query row a distribution over keys.
    let attentions = json["attentions"].as_array().unwrap();
    assert_eq!(attentions.len(), 2);
    assert_eq!(attentions[0].as_array().unwrap().len(), 4);
    let row = attentions[1][3][0].as_array().unwrap();
    assert_eq!(row.len(), tokens);
    let sum: f64 = row.iter().map(|p| p.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5);
    let mlm = json["mlm"].as_array().unwrap();
    assert_eq!(mlm.len(), 1);
    assert_eq!(mlm[0]["position"], 2);
    let top = mlm[0]["top_k"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    for candidate in top {
        assert!(
            candidate["token"].is_string()
                && candidate["id"].is_u64()
                && candidate["prob"].is_f64()
        );
    }
    let p = json["nsp"]["is_next"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
}

#[test]
fn dump_leaves_out_heads_the_model_lacks() {
    let model = fixture("tiny-modern");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump.json");
    let output = bertscope(&[
        "dump",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "a [MASK]",
        "--text-b",
        "b",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    assert!(output.stdout.is_empty());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(json.get("mlm").is_none() && json.get("nsp").is_none());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

/// `dump` of a fixture as JSON, with stderr.
fn dump_json(model: &str, args: &[&str]) -> (serde_json::Value, String) {
    let model = fixture(model);
    let mut all = vec!["dump", "--model", model.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = bertscope(&all);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

fn keys(json: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

const COMMON_KEYS: [&str; 6] = [
    "attentions",
    "model",
    "model_type",
    "segment_ids",
    "token_ids",
    "tokens",
];

/// The common keys plus `extra`, sorted.
fn with_keys(extra: &[&'static str]) -> Vec<&'static str> {
    let mut all: Vec<&str> = COMMON_KEYS.iter().chain(extra).copied().collect();
    all.sort_unstable();
    all
}

#[test]
fn dump_of_gpt2_has_next_tokens_everywhere_and_a_causal_triangle() {
    let (json, _) = dump_json("gpt2-lm", &["--text", "Hello world, how are you?"]);
    assert_eq!(keys(&json), with_keys(&["next_token"]));
    assert_eq!(json["model_type"], "gpt2");
    let tokens = json["tokens"].as_array().unwrap().len();
    assert_eq!(json["tokens"][0], "Hello", "no special tokens are added");
    let next = json["next_token"].as_array().unwrap();
    assert_eq!(next.len(), tokens, "a prediction after every position");
    assert_eq!(next[tokens - 1]["position"], tokens - 1);
    assert_eq!(next[0]["top_k"].as_array().unwrap().len(), 5);
    let map = &json["attentions"][1][2];
    for query in 0..tokens {
        let row: Vec<f64> = map[query]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert!(
            row[query + 1..].iter().all(|&p| p == 0.0),
            "zeros above the diagonal"
        );
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn dump_of_fine_tuned_heads_has_their_keys() {
    let (json, _) = dump_json("bert-sentiment", &["--text", "What a film!"]);
    assert_eq!(keys(&json), with_keys(&["classification"]));
    let classification = &json["classification"];
    assert_eq!(
        classification["problem_type"],
        "single_label_classification"
    );
    let labels = classification["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 2);
    assert!(
        labels[0]["prob"].as_f64() >= labels[1]["prob"].as_f64(),
        "highest first"
    );
    for label in labels {
        assert_eq!(keys(label), ["id", "label", "prob"]);
    }

    let (json, _) = dump_json("distilbert-regression", &["--text", "Fine."]);
    assert_eq!(json["classification"]["problem_type"], "regression");
    assert_eq!(
        keys(&json["classification"]["labels"][0]),
        ["id", "label", "score"]
    );
    assert!(json["segment_ids"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s == 0));

    let context = "She lives near the old school.";
    let (json, _) = dump_json(
        "bert-qa",
        &["--text", "Where does she live?", "--text-b", context],
    );
    assert_eq!(keys(&json), with_keys(&["qa"]));
    let qa = &json["qa"];
    assert_eq!(
        keys(qa),
        ["answer", "char_end", "char_start", "end", "score", "start"]
    );
    let (from, to) = (
        qa["char_start"].as_u64().unwrap() as usize,
        qa["char_end"].as_u64().unwrap() as usize,
    );
    let sliced: String = context.chars().skip(from).take(to - from).collect();
    assert_eq!(qa["answer"], sliced.as_str());
    assert!(qa["start"].as_u64() <= qa["end"].as_u64());

    let (json, stderr) = dump_json("bert-qa", &["--text", "Where does she live?"]);
    assert!(json.get("qa").is_none());
    assert!(
        stderr.contains("--text-b"),
        "a question needs a context: {stderr}"
    );

    let (json, _) = dump_json("bert-ner", &["--text", "John flew to Paris."]);
    assert_eq!(keys(&json), with_keys(&["token_classification"]));
    let labels = json["token_classification"].as_array().unwrap();
    let tokens = json["tokens"].as_array().unwrap().len();
    assert_eq!(labels.len(), tokens - 2, "every token but [CLS] and [SEP]");
    assert_eq!(keys(&labels[0]), ["label", "position", "prob"]);
    assert_eq!(labels[0]["position"], 1);
}

#[test]
fn dump_of_roberta_finds_its_mask_token_and_reports_truncation() {
    let (json, _) = dump_json("roberta-mlm", &["--text", "The <mask> sat."]);
    assert_eq!(keys(&json), with_keys(&["mlm"]));
    assert_eq!(json["model_type"], "roberta");
    assert_eq!(json["tokens"][0], "<s>");
    let mask = json["mlm"][0]["position"].as_u64().unwrap() as usize;
    assert_eq!(json["tokens"][mask], "<mask>");

    let long = "and then the story went on ".repeat(20);
    let (json, stderr) = dump_json("roberta-mlm", &["--text", &long]);
    assert_eq!(
        json["tokens"].as_array().unwrap().len(),
        64,
        "66 positions less pad + 1"
    );
    assert!(stderr.contains("cut to the model's 64 tokens"), "{stderr}");
}

#[test]
fn export_and_bench_work_for_every_family() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "gpt2-lm",
        "gpt2-classifier",
        "roberta-multilabel",
        "xlmr-qa",
        "distilbert-mlm",
        "bert-ner",
    ] {
        let model = fixture(name);
        let model = model.to_str().unwrap();
        let out = dir.path().join(format!("{name}.svg"));
        let output = bertscope(&[
            "export",
            "--model",
            model,
            "--text",
            "Hello world.",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let svg = std::fs::read_to_string(&out).unwrap();
        // The heatmap of layer 0, head 0: a cell per weight, every token labelled twice.
        let (dump, _) = dump_json(name, &["--text", "Hello world."]);
        let tokens = dump["tokens"].as_array().unwrap().len();
        assert!(tokens >= 3, "{name}");
        assert!(
            svg.contains(&format!("{name} · layer 0 · head 0")),
            "{name}: {svg:.300}"
        );
        assert!(svg.matches("<rect").count() >= tokens * tokens, "{name}");
        assert!(svg.matches("<text").count() >= 2 * tokens, "{name}");
        if name.starts_with("gpt2") {
            assert!(
                svg.contains("masked"),
                "{name}: the causal mask is explained"
            );
            assert!(
                svg.contains("▁world"),
                "{name}: byte-level pieces read as text"
            );
        }
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("config.json")).unwrap(),
        )
        .unwrap();
        // Each family spells the shape its own way (BERT, GPT-2, DistilBERT).
        let first = |keys: [&str; 3]| keys.iter().find_map(|key| config[key].as_u64()).unwrap();
        let layers = first(["num_hidden_layers", "n_layer", "n_layers"]);
        let heads = first(["num_attention_heads", "n_head", "n_heads"]);
        let shape = format!("{layers} layers x {heads} heads");
        check_bench(name, model, 16, 2, &shape);
    }
}

/// Runs `bench` and checks what it prints: the model's shape, the input asked for, one time per
/// iteration, and medians that agree with those times (`compute_ms` ≤ `median_ms`, the median
/// of the runs; `transfer_ms` ≥ 0), `median_ms` last.
fn check_bench(name: &str, model: &str, seq_len: usize, iters: usize, shape: &str) {
    let (seq_arg, iters_arg) = (seq_len.to_string(), iters.to_string());
    let output = bertscope(&[
        "bench",
        "--model",
        model,
        "--seq-len",
        &seq_arg,
        "--iters",
        &iters_arg,
    ]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{name}: {stdout}");
    let lines: Vec<&str> = stdout.trim_end().lines().collect();
    assert!(lines[0].starts_with("isa "), "{name}: {}", lines[0]);
    assert!(
        lines[1].starts_with("model ") && lines[1].contains(shape),
        "{name}: {}",
        lines[1]
    );
    let number = |text: &str| -> f64 {
        let value: f64 = text.trim().parse().unwrap();
        assert!(value.is_finite() && value >= 0.0, "{name}: {text}");
        value
    };
    let runs_line = lines
        .iter()
        .find(|line| line.starts_with("seq_len "))
        .unwrap();
    let prefix = format!("seq_len {seq_len} iters {iters} runs_ms [");
    let runs: Vec<f64> = runs_line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or_else(|| panic!("{name}: {runs_line}"))
        .split(", ")
        .map(number)
        .collect();
    assert_eq!(runs.len(), iters, "{name}: {runs_line}");
    let (before_last, last) = (lines[lines.len() - 2], lines[lines.len() - 1]);
    let (compute, transfer) = before_last
        .strip_prefix("compute_ms ")
        .and_then(|rest| rest.split_once(" transfer_ms "))
        .unwrap_or_else(|| panic!("{name}: {before_last}"));
    let (compute, transfer) = (number(compute), number(transfer));
    let median = number(last.strip_prefix("median_ms ").unwrap());
    assert!(median > 0.0 && compute > 0.0, "{name}: {stdout}");
    assert!(
        compute <= median + 1e-3,
        "{name}: compute {compute} > median {median}"
    );
    // The runs are printed to 0.1 ms.
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let middle = (sorted[(iters - 1) / 2] + sorted[iters / 2]) / 2.0;
    assert!(
        (median - middle).abs() <= 0.05 + 1e-9,
        "{name}: median {median} of {runs:?}"
    );
    assert!(transfer <= median + 1e-3, "{name}: {stdout}");
}

#[test]
fn errors_are_one_line_with_a_failing_exit_code() {
    let tiny = fixture("tiny-modern");
    let tiny = tiny.to_str().unwrap();
    let gpt2 = fixture("gpt2-lm");
    let gpt2 = gpt2.to_str().unwrap();
    let cases: [(&[&str], &str); 11] = [
        (
            &["dump", "--model", gpt2, "--text", "x", "--text-b", "y"],
            "GPT-2 reads one text, not a sentence pair",
        ),
        (
            &["dump", "--model", "/no/such/model", "--text", "x"],
            "no such folder",
        ),
        (
            &["dump", "--model", "not-cached/anywhere", "--text", "x"],
            "not in the Hugging Face cache",
        ),
        (
            &["dump", "--model", tiny, "--text", "x", "--device", "cuda"],
            "cuda",
        ),
        (
            &[
                "dump",
                "--model",
                tiny,
                "--text",
                "x",
                "--out",
                "/no/such/dir/out.json",
            ],
            "does not exist",
        ),
        (
            &["bench", "--model", tiny, "--seq-len", "4096"],
            "out of range",
        ),
        (&["dump", "--text", "x"], "--model"),
        (
            &[
                "export", "--model", tiny, "--text", "x", "--view", "compare", "--out", "c.png",
            ],
            "needs a second model",
        ),
        (
            &[
                "export",
                "--model",
                tiny,
                "--text",
                "x",
                "--token",
                "99",
                "--view",
                "predictions",
                "--out",
                "p.png",
            ],
            "token 99 is out of range",
        ),
        (
            &["export", "--model", tiny, "--text", "x", "--out", "x.npq"],
            ".npz",
        ),
        (
            &["stats", "--model", tiny, "--corpus", "/no/such/corpus.txt"],
            "cannot read the corpus",
        ),
    ];
    for (args, expected) in cases {
        let output = bertscope(args);
        assert!(!output.status.success(), "{args:?} should fail");
        let line = stderr_line(&output);
        assert!(line.contains(expected), "{args:?}: {line}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn bench_ends_with_the_median() {
    let model = fixture("tiny-modern");
    check_bench(
        "tiny-modern",
        model.to_str().unwrap(),
        32,
        3,
        "2 layers x 4 heads",
    );
}

#[test]
fn export_all_heads_writes_a_figure_per_head_and_the_overview() {
    let model = fixture("tiny-legacy");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("figures");
    let out_arg = out.to_str().unwrap();
    let args = [
        "export",
        "--model",
        model,
        "--text",
        "the cat sat on the mat",
    ];
    let output = bertscope(
        &[
            &args[..],
            &["--all-heads", "--format", "svg", "--out", out_arg],
        ]
        .concat(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("writing figures: 9/9"), "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // tiny-legacy: 2 layers × 4 heads.
    assert_eq!(names.len(), 9, "{names:?}");
    assert_eq!(names[0], "layer0-head0.svg");
    assert_eq!(names[7], "layer1-head3.svg");
    assert_eq!(names[8], "overview.svg");
    let svg = std::fs::read_to_string(out.join("layer1-head2.svg")).unwrap();
    assert!(
        svg.contains("layer 1 · head 2"),
        "the figure names its head"
    );

    // A file where the folder should be is a one-line error.
    let file = dir.path().join("taken.png");
    std::fs::write(&file, b"x").unwrap();
    let output =
        bertscope(&[&args[..], &["--all-heads", "--out", file.to_str().unwrap()]].concat());
    assert!(!output.status.success());
    assert!(stderr_line(&output).contains("is a file"));
}

#[test]
fn export_draws_projection_predictions_and_compare_figures_and_writes_npz() {
    let legacy = fixture("tiny-legacy");
    let legacy = legacy.to_str().unwrap();
    let roberta = fixture("roberta-mlm");
    let roberta = roberta.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let text = [
        "--text",
        "The cat sat on the [MASK].",
        "--text-b",
        "It was warm.",
    ];
    let runs: [(Vec<&str>, String, &str); 6] = [
        (
            vec!["--view", "heatmap", "--rollout", "--layer", "1"],
            out("rollout.svg"),
            "attention rollout through layer 1",
        ),
        (
            vec!["--view", "heads", "--statistic", "prev"],
            out("heads.svg"),
            "head statistics · prev",
        ),
        (
            vec!["--view", "projection", "--layer", "2", "--token", "3"],
            out("projection.svg"),
            "hidden states, layer 2",
        ),
        (
            vec!["--view", "predictions"],
            out("predictions.svg"),
            "masked LM at token",
        ),
        (
            vec!["--view", "compare", "--compare", legacy, "--head", "1"],
            out("same.svg"),
            "divergence per layer",
        ),
        (
            vec![
                "--view",
                "compare",
                "--compare",
                roberta,
                "--compare-layer",
                "0",
            ],
            out("different.svg"),
            "tokenize this text differently",
        ),
    ];
    for (extra, path, expected) in &runs {
        let mut args = vec!["export", "--model", legacy];
        args.extend(text);
        args.extend(extra.iter().copied());
        args.extend(["--out", path.as_str()]);
        let output = bertscope(&args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let svg = std::fs::read_to_string(path).unwrap();
        assert!(svg.contains(expected), "{args:?}");
    }

    let mut sizes = Vec::new();
    for precision in ["f32", "f16"] {
        let path = out(&format!("maps-{precision}.npz"));
        let mut args = vec!["export", "--model", legacy];
        args.extend(text);
        args.extend(["--precision", precision, "--out", path.as_str()]);
        let output = bertscope(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"PK"), "a zip archive");
        sizes.push(bytes.len());
        check_npz(&bytes, precision, &text);
    }
    assert!(sizes[1] < sizes[0], "f16 is smaller: {sizes:?}");
}

/// An `.npz` export read back: its maps are `dump`'s for the same text (exactly in f32, to
/// f16's precision in f16), with the tokens and ids.
fn check_npz(bytes: &[u8], precision: &str, text: &[&str]) {
    use std::io::Read as _;
    let (dump, _) = dump_json("tiny-legacy", text);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut member = |name: &str| -> npyz::NpyFile<std::io::Cursor<Vec<u8>>> {
        let mut data = Vec::new();
        archive
            .by_name(name)
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        npyz::NpyFile::new(std::io::Cursor::new(data)).unwrap()
    };
    let maps = member("attentions.npy");
    let shape: Vec<usize> = maps.shape().iter().map(|&d| d as usize).collect();
    // JSON holds the shortest decimal that reads back to each f32.
    let expected: Vec<f64> = flat(&dump["attentions"])
        .into_iter()
        .map(|v| f64::from(v as f32))
        .collect();
    let tokens = dump["tokens"].as_array().unwrap().len();
    assert_eq!(shape, [2, 4, tokens, tokens]);
    let values: Vec<f64> = if precision == "f16" {
        let values: Vec<half::f16> = maps.into_vec().unwrap();
        values.into_iter().map(f64::from).collect()
    } else {
        let values: Vec<f32> = maps.into_vec().unwrap();
        values.into_iter().map(f64::from).collect()
    };
    let tolerance = if precision == "f16" { 5e-4 } else { 0.0 };
    let largest = common::max_abs_diff("npz attentions", &values, &expected);
    assert!(largest <= tolerance, "{precision}: {largest:e}");
    let read: Vec<String> = member("tokens.npy").into_vec().unwrap();
    assert_eq!(serde_json::json!(read), dump["tokens"]);
    for name in ["token_ids", "segment_ids"] {
        let read: Vec<u32> = member(&format!("{name}.npy")).into_vec().unwrap();
        assert_eq!(serde_json::json!(read), dump[name], "{name}");
    }
}

/// `tools/make_analysis_reference.py`'s reference for one fixture.
fn analyses_reference(name: &str) -> serde_json::Value {
    let path = fixture(name).join("analyses.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The reference of `tools/make_analysis_reference.py` for one fixture, and a dump of the same
/// text with `extra` arguments.
fn dump_against_reference(name: &str, extra: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let folder = fixture(name);
    let reference = analyses_reference(name);
    let mut args = vec![
        "dump",
        "--model",
        folder.to_str().unwrap(),
        "--text",
        reference["text"].as_str().unwrap(),
    ];
    if let Some(text_b) = reference["text_b"].as_str() {
        args.extend(["--text-b", text_b]);
    }
    args.extend(extra);
    let output = bertscope(&args);
    assert!(
        output.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(dump["tokens"], reference["tokens"], "{name}");
    (dump, reference)
}

/// Every number of a nested JSON array, in order.
fn flat(value: &serde_json::Value) -> Vec<f64> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Array(items) => stack.extend(items.iter().rev()),
            other => out.push(other.as_f64().unwrap()),
        }
    }
    out
}

/// The length of every array in a nested JSON array, depth first: two arrays of the same shape
/// give the same list.
fn shape(value: &serde_json::Value) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        if let serde_json::Value::Array(items) = value {
            out.push(items.len());
            stack.extend(items.iter().rev());
        }
    }
    out
}

/// Asserts two nested arrays have the same shape and agree to 1e-5 (relative above 1), every
/// value finite.
fn assert_close(ours: &serde_json::Value, theirs: &serde_json::Value, what: &str) {
    assert_eq!(shape(ours), shape(theirs), "{what}: shapes differ");
    common::assert_close(what, &flat(ours), &flat(theirs), 1e-5);
}

/// The seven statistics of Clark et al. that every head has.
const HEAD_STATISTICS: [&str; 7] = ["cls", "sep", "punct", "self", "prev", "next", "entropy"];

/// Asserts two `[layer][head]{statistics, label}` tables agree: every statistic to 1e-5 and
/// every label.
fn assert_same_head_stats(ours: &serde_json::Value, theirs: &serde_json::Value, what: &str) {
    let layers = theirs.as_array().unwrap();
    assert!(!layers.is_empty(), "{what}: no layers");
    for (layer, (ours, theirs)) in common::pairs(what, ours.as_array().unwrap(), layers).enumerate()
    {
        let heads = (ours.as_array().unwrap(), theirs.as_array().unwrap());
        for (head, (got, expected)) in common::pairs(what, heads.0, heads.1).enumerate() {
            for key in HEAD_STATISTICS {
                let at = format!("{what} {layer}:{head} {key}");
                let (a, b) = (got[key].as_f64(), expected[key].as_f64());
                common::assert_near(&at, a.unwrap(), b.unwrap(), 1e-5);
            }
            assert_eq!(got["label"], expected["label"], "{what} {layer}:{head}");
        }
    }
}

/// Top-k lists agree: the same ids in the same order, probabilities to 1e-5.
fn assert_same_guesses(ours: &serde_json::Value, theirs: &serde_json::Value, what: &str) {
    let ids = |value: &serde_json::Value| -> Vec<u64> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|guess| guess["id"].as_u64().unwrap())
            .collect()
    };
    let probs = |value: &serde_json::Value| -> serde_json::Value {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|guess| guess["prob"].clone())
            .collect()
    };
    assert_eq!(ids(ours), ids(theirs), "{what}");
    assert_close(&probs(ours), &probs(theirs), what);
}

/// `dump --with ...` against numpy's rollout, networkx's max-flow, norm-based attention, the
/// logit lens and the embedding breakdown over transformers' weights and outputs, and Clark
/// et al.'s head statistics (`tools/make_analysis_reference.py`).
#[test]
fn analyses_match_an_independent_reference() {
    for name in ["tiny-legacy", "roberta-mlm", "gpt2-lm"] {
        let (dump, reference) = dump_against_reference(
            name,
            &[
                "--with",
                "rollout,flow,norms,logit-lens,embeddings,head-stats",
                "--flow-to",
                "2",
            ],
        );
        assert_close(&dump["rollout"], &reference["rollout"], name);
        assert_eq!(dump["flow"]["to"], reference["flow_to"]);
        assert_close(&dump["flow"]["values"], &reference["flow"], name);
        assert_close(
            &dump["attention_norms"],
            &reference["attention_norms"],
            name,
        );

        let lens = reference["logit_lens"].as_array().unwrap();
        assert!(!lens.is_empty(), "{name}: a mask or a last token");
        let ours = dump["logit_lens"].as_array().unwrap();
        for (ours, theirs) in common::pairs(&format!("{name} lens"), ours, lens) {
            assert_eq!(ours["position"], theirs["position"], "{name}");
            let layers = theirs["layers"].as_array().unwrap();
            assert_eq!(ours["layers"].as_array().unwrap().len(), layers.len());
            for (layer, expected) in layers.iter().enumerate() {
                assert_eq!(ours["layers"][layer]["layer"], expected["layer"]);
                assert_same_guesses(
                    &ours["layers"][layer]["top_k"],
                    &expected["top_k"],
                    &format!("{name} lens layer {layer}"),
                );
            }
            // The last layer of the lens is the model's own prediction.
            let own = dump["mlm"]
                .as_array()
                .or(dump["next_token"].as_array())
                .unwrap()
                .iter()
                .find(|prediction| prediction["position"] == ours["position"])
                .unwrap();
            assert_same_guesses(
                &ours["layers"][layers.len() - 1]["top_k"],
                &own["top_k"],
                &format!("{name}: the lens's last layer is the model's prediction"),
            );
        }

        let embeddings = reference["embeddings"].as_array().unwrap();
        let ours = dump["embeddings"].as_array().unwrap();
        for (ours, theirs) in common::pairs(&format!("{name} embeddings"), ours, embeddings) {
            for key in ["word", "position_emb", "segment", "sum", "after_norm"] {
                if theirs[key].is_null() {
                    assert!(ours[key].is_null(), "{name} {key}");
                } else {
                    let value = serde_json::json!([ours[key], theirs[key]]);
                    assert_close(&value[0], &value[1], &format!("{name} embeddings {key}"));
                }
            }
        }

        assert_same_head_stats(&dump["head_stats"], &reference["head_stats"], name);
    }
}

/// `dump --ablate` against transformers with 4.x's head_mask patched into its eager attention:
/// the ablated heads' maps are zero, and every other map and the predictions follow.
#[test]
fn ablated_heads_match_transformers_head_mask() {
    for name in ["tiny-legacy", "roberta-mlm", "gpt2-lm"] {
        let (dump, reference) = dump_against_reference(name, &["--ablate", "0:1,1:3"]);
        assert_eq!(reference["ablate"], serde_json::json!([[0, 1], [1, 3]]));
        assert_close(&dump["attentions"], &reference["ablated_attentions"], name);
        assert!(flat(&dump["attentions"][0][1]).iter().all(|&v| v == 0.0));
        let own = dump["mlm"]
            .as_array()
            .or(dump["next_token"].as_array())
            .unwrap();
        for expected in reference["ablated_predictions"].as_array().unwrap() {
            let ours = own
                .iter()
                .find(|prediction| prediction["position"] == expected["position"])
                .unwrap();
            assert_same_guesses(&ours["top_k"], &expected["top_k"], name);
        }
    }
    let output = bertscope(&[
        "dump",
        "--model",
        fixture("tiny-legacy").to_str().unwrap(),
        "--text",
        "hi",
        "--ablate",
        "2:0",
    ]);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("no head 2:0"), "{message}");
}

/// `export --view lens` and `--view embeddings` draw figures from the CLI; `--norms` a
/// norm-based heatmap.
#[test]
fn lens_embeddings_and_norms_figures_export() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tiny-legacy");
    for (view, extra, expected) in [
        ("lens", None, "after layer 2 (the model's prediction)"),
        ("embeddings", None, "‖position embedding‖"),
        ("heatmap", Some("--norms"), "norm-based attention"),
        ("overview", Some("--norms"), "largest ‖α·f(x)‖"),
        ("query-key", Some("--token=3"), "q·k/√d"),
    ] {
        let out = dir.path().join(format!("{view}.svg"));
        let mut args = vec![
            "export",
            "--model",
            model.to_str().unwrap(),
            "--text",
            "The cat sat on the [MASK].",
            "--view",
            view,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let output = bertscope(&args);
        assert!(
            output.status.success(),
            "{view}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains(expected), "{view}: {svg:.400}");
    }
    let output = bertscope(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "no mask here",
        "--view",
        "lens",
        "--out",
        dir.path().join("none.svg").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("has none"));
}

/// `dump --words` merges pieces into words as the reference does: to a word summed, from a
/// word averaged, for attention and rollout.
#[test]
fn word_level_maps_match_the_reference() {
    for name in ["tiny-legacy", "roberta-mlm", "gpt2-lm"] {
        let (dump, reference) = dump_against_reference(name, &["--words", "--with", "rollout"]);
        assert_eq!(dump["words"], reference["words"], "{name}");
        assert_close(&dump["attentions"], &reference["word_attentions"], name);
        assert_close(&dump["rollout"], &reference["word_rollout"], name);
        // Flow runs through the words' graph, and --flow-to counts words; norm-based maps
        // merge as attention does; head statistics are the word maps' own, with separator and
        // punctuation words.
        let flow_to = reference["word_flow_to"].to_string();
        let (words, _) = dump_against_reference(
            name,
            &[
                "--words",
                "--with",
                "flow,norms,head-stats",
                "--flow-to",
                &flow_to,
            ],
        );
        assert_eq!(words["flow"]["to"], reference["word_flow_to"]);
        let what = format!("{name} word flow");
        assert_close(&words["flow"]["values"], &reference["word_flow"], &what);
        let (ours, theirs) = (
            &words["attention_norms"],
            &reference["word_attention_norms"],
        );
        assert_close(ours, theirs, &format!("{name} word norms"));
        let (ours, theirs) = (&words["head_stats"], &reference["word_head_stats"]);
        assert_same_head_stats(ours, theirs, &format!("{name} word statistics"));

        // `export --words` writes the same maps, with the words as its tokens; a figure of
        // pieces refuses words in one line.
        let dir = tempfile::tempdir().unwrap();
        let folder = fixture(name);
        let export = |view: &str, out: &Path, extra: &[&str]| {
            let mut args = vec![
                "export",
                "--model",
                folder.to_str().unwrap(),
                "--text",
                reference["text"].as_str().unwrap(),
                "--words",
                "--view",
                view,
                "--out",
                out.to_str().unwrap(),
            ];
            if let Some(text_b) = reference["text_b"].as_str() {
                args.extend(["--text-b", text_b]);
            }
            args.extend(extra);
            bertscope(&args)
        };
        let json = dir.path().join("words.json");
        let output = export("heatmap", &json, &[]);
        assert!(output.status.success(), "{}", stderr_line(&output));
        let exported: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(exported["tokens"], reference["words"], "{name}");
        assert_close(&exported["attentions"], &reference["word_attentions"], name);
        let svg = dir.path().join("rollout.svg");
        let output = export("heatmap", &svg, &["--rollout", "--layer", "1"]);
        assert!(output.status.success(), "{}", stderr_line(&output));
        let figure = std::fs::read_to_string(&svg).unwrap();
        let last_word = reference["words"].as_array().unwrap()[2].as_str().unwrap();
        assert!(figure.contains(last_word), "{name}: {last_word}");
        let output = export("lens", &svg, &[]);
        assert!(!output.status.success());
        assert!(stderr_line(&output).contains("shows pieces, not words"));
    }
}

/// `stats --corpus` (and `--words`) against the reference's corpus statistics: numpy over
/// transformers' maps of every line, every statistic a mean over all query rows of all lines.
#[test]
fn corpus_statistics_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny-legacy", "roberta-mlm", "gpt2-lm"] {
        let folder = fixture(name);
        let reference = analyses_reference(name);
        let corpus = dir.path().join(format!("{name}.txt"));
        std::fs::write(&corpus, reference["corpus"]["text"].as_str().unwrap()).unwrap();
        for (over, extra) in [("pieces", None), ("words", Some("--words"))] {
            let mut args = vec![
                "stats",
                "--model",
                folder.to_str().unwrap(),
                "--corpus",
                corpus.to_str().unwrap(),
            ];
            args.extend(extra);
            let output = bertscope(&args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{stderr}");
            assert!(stderr.contains("2/2 lines"), "{stderr}");
            assert!(!stderr.contains("cut"), "no line is cut: {stderr}");
            let ours: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            let theirs = &reference["corpus"][over];
            let what = format!("{name} corpus over {over}");
            assert_eq!(ours["lines"], theirs["lines"], "{what}");
            assert_eq!(ours["tokens"], theirs["tokens"], "{what}");
            assert_same_head_stats(&ours["heads"], &theirs["heads"], &what);
        }
    }

    let legacy = fixture("tiny-legacy");
    let legacy = legacy.to_str().unwrap();
    let corpus = dir.path().join("tiny-legacy.txt");
    let csv = dir.path().join("heads.csv");
    let output = bertscope(&[
        "stats",
        "--model",
        legacy,
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    // The CSV holds the same numbers as the JSON: a row per head, every statistic and label.
    let expected = &analyses_reference("tiny-legacy")["corpus"]["pieces"]["heads"];
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let header = reader.headers().unwrap().clone();
    let mut columns = vec!["layer", "head"];
    columns.extend(HEAD_STATISTICS);
    columns.push("label");
    assert_eq!(header.iter().collect::<Vec<_>>(), columns);
    let mut rows = 0;
    for record in reader.records() {
        let record = record.unwrap();
        let (layer, head): (usize, usize) =
            (record[0].parse().unwrap(), record[1].parse().unwrap());
        let expected = &expected[layer][head];
        for (column, key) in HEAD_STATISTICS.iter().enumerate() {
            let value: f64 = record[column + 2].parse().unwrap();
            let what = format!("CSV {layer}:{head} {key}");
            common::assert_near(&what, value, expected[*key].as_f64().unwrap(), 1e-5);
        }
        assert_eq!(&record[9], expected["label"].as_str().unwrap());
        rows += 1;
    }
    assert_eq!(rows, 2 * 4);

    // A figure of the grid, coloured by a chosen statistic.
    let png = dir.path().join("heads.png");
    let output = bertscope(&[
        "stats",
        "--model",
        legacy,
        "--corpus",
        corpus.to_str().unwrap(),
        "--statistic",
        "prev",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr_line(&output));
    common::assert_png_drawn(&png, 8);
    let output = bertscope(&[
        "stats",
        "--model",
        legacy,
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        dir.path().join("heads.txt").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(stderr_line(&output).contains("use a .json, .csv, .png or .svg file"));
}

/// What a checkpoint or an input gets wrong that a command goes on with is said on stderr: a
/// corpus line cut to the model's positions (as dump says of its input), and a classifier whose
/// id2label names fewer labels than its outputs.
#[test]
fn stats_says_which_lines_were_cut_and_loading_says_when_labels_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = fixture("tiny-legacy");
    // The tiny checkpoint reads 64 positions: the second line is cut, the others fit.
    let corpus = dir.path().join("corpus.txt");
    let long = vec!["word"; 80].join(" ");
    std::fs::write(&corpus, format!("The cat sat.\n{long}\nIt was warm.\n")).unwrap();
    let output = bertscope(&[
        "stats",
        "--model",
        legacy.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("note: 1 corpus line was cut to the model's 64 tokens (line 2)"),
        "{stderr}"
    );

    // A multi-label classifier with three outputs whose config names two.
    let model = dir.path().join("two-names");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(fixture("roberta-multilabel")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, model.join(path.file_name().unwrap())).unwrap();
    }
    let config_path = model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["id2label"] = serde_json::json!({"0": "joy", "1": "anger"});
    config["label2id"] = serde_json::json!({"joy": 0, "anger": 1});
    std::fs::write(&config_path, config.to_string()).unwrap();
    let (json, stderr) = dump_json(model.to_str().unwrap(), &["--text", "Fine."]);
    assert!(
        stderr.contains(
            "note: config.json's id2label names 2 labels but the classifier has 3 outputs; the rest are called LABEL_2"
        ),
        "{stderr}"
    );
    let labels: Vec<&str> = json["classification"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|label| label["label"].as_str().unwrap())
        .collect();
    assert!(labels.contains(&"LABEL_2"), "{labels:?}");
}

#[test]
fn dump_with_attribution_patching_and_logit_attribution_writes_the_references() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("roberta-mlm").join("attribution.json")).unwrap(),
    )
    .unwrap();
    let text = reference["text"].as_str().unwrap();
    let (json, _) = dump_json("roberta-mlm", &["--text", text, "--with", "attribution"]);
    let attribution = &json["attribution"];
    assert_eq!(attribution["target"]["head"], "mlm");
    assert_eq!(attribution["target"]["id"], reference["target"]["id"]);
    let list = |value: &serde_json::Value| -> Vec<f64> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    for key in [
        "grad_x_input",
        "grad_norm",
        "integrated_gradients",
        "occlusion",
    ] {
        common::assert_close(key, &list(&attribution[key]), &list(&reference[key]), 1e-4);
    }
    // Per word: lists summed over the pieces, the gradient norm as the norm of all of them.
    let (words, _) = dump_json(
        "roberta-mlm",
        &[
            "--text",
            text,
            "--with",
            "attribution",
            "--words",
            "--ig-steps",
            "5",
        ],
    );
    let count = words["words"].as_array().unwrap().len();
    let per_word = &words["attribution"];
    assert_eq!(list(&per_word["occlusion"]).len(), count);
    let pieces = list(&attribution["grad_norm"]);
    let word_norms = list(&per_word["grad_norm"]);
    let total = |values: &[f64]| values.iter().map(|v| v * v).sum::<f64>();
    common::assert_near("Σ grad_norm²", total(&word_norms), total(&pieces), 1e-5);
    let sum = |values: Vec<f64>| values.iter().sum::<f64>();
    common::assert_near(
        "Σ occlusion",
        sum(list(&per_word["occlusion"])),
        sum(list(&attribution["occlusion"])),
        1e-5,
    );

    let patching: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("gpt2-lm").join("patching.json")).unwrap(),
    )
    .unwrap();
    let (json, _) = dump_json(
        "gpt2-lm",
        &[
            "--text",
            patching["clean"].as_str().unwrap(),
            "--corrupt",
            patching["corrupt"].as_str().unwrap(),
            "--with",
            "patching,logit-attribution",
        ],
    );
    let rows = |value: &serde_json::Value| -> Vec<f64> {
        value.as_array().unwrap().iter().flat_map(&list).collect()
    };
    for key in ["resid_pre", "head_out"] {
        let difference =
            common::max_abs_diff(key, &rows(&json["patching"][key]), &rows(&patching[key]));
        assert!(difference <= 1e-3, "{key}: off by {difference}");
    }
    let parts = &json["logit_attribution"];
    let total = parts["embed"].as_f64().unwrap()
        + rows(&parts["heads"]).iter().sum::<f64>()
        + list(&parts["attn_bias"]).iter().sum::<f64>()
        + list(&parts["mlps"]).iter().sum::<f64>()
        + parts["final_bias"].as_f64().unwrap();
    common::assert_near(
        "the parts' sum",
        total,
        parts["logit"].as_f64().unwrap(),
        1e-4,
    );
}

#[test]
fn attribution_errors_are_one_line() {
    let model = fixture("bert-sentiment");
    let model = model.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["--with", "attribution", "--target", "mlm:3"],
            "its targets: label",
        ),
        (
            vec!["--with", "attribution", "--target", "what"],
            "unknown head",
        ),
        (
            vec!["--with", "attribution", "--ig-steps", "0"],
            "from 1 to 1000",
        ),
        (vec!["--with", "patching"], "--corrupt"),
        (
            vec![
                "--with",
                "patching",
                "--corrupt",
                "a much longer text than that",
            ],
            "tokens",
        ),
        (vec!["--with", "logit-attribution"], "pre-norm"),
    ] {
        let mut all = vec!["dump", "--model", model, "--text", "a fine day"];
        all.extend(args);
        let output = bertscope(&all);
        assert!(!output.status.success());
        let line = stderr_line(&output);
        assert!(line.contains(expected), "{all:?}: {line}");
    }
}

#[test]
fn export_of_an_attribution_writes_its_values_to_csv_and_npz() {
    use std::io::Read as _;
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("bert-sentiment").join("attribution.json")).unwrap(),
    )
    .unwrap();
    let text = reference["text"].as_str().unwrap();
    let list = |value: &serde_json::Value| -> Vec<f32> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("bert-sentiment");
    let (npz, csv) = (dir.path().join("a.npz"), dir.path().join("a.csv"));
    for out in [&npz, &csv] {
        let output = bertscope(&[
            "export",
            "--model",
            model.to_str().unwrap(),
            "--text",
            text,
            "--view",
            "attribution",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(std::fs::read(&npz).unwrap())).unwrap();
    for key in [
        "grad_x_input",
        "grad_norm",
        "integrated_gradients",
        "occlusion",
    ] {
        let mut data = Vec::new();
        archive
            .by_name(&format!("{key}.npy"))
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        let values: Vec<f32> = npyz::NpyFile::new(std::io::Cursor::new(data))
            .unwrap()
            .into_vec()
            .unwrap();
        let theirs = list(&reference[key]);
        let largest = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let difference = common::max_abs_diff(key, &values, &theirs);
        assert!(
            difference <= 1e-4 * f64::from(largest),
            "{key}: {difference:e}"
        );
    }
    // The CSV: a header and a row per token, every method's column filled.
    let table = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        rows[0],
        "index,token,integrated_gradients,grad_x_input,grad_norm,occlusion"
    );
    assert_eq!(rows.len(), 1 + list(&reference["grad_norm"]).len());
    let second: Vec<&str> = rows[2].split(',').collect();
    let ig: f32 = second[2].parse().unwrap();
    common::assert_near(
        "the second token's integrated gradients",
        f64::from(ig),
        f64::from(list(&reference["integrated_gradients"])[1]),
        1e-4,
    );
}

#[test]
fn generate_streams_the_text_and_writes_every_step() {
    let model = fixture("gpt2-lm");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("generation.json");
    let output = bertscope(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "The quick brown fox",
        "--max-new-tokens",
        "6",
        "--temperature",
        "0.7",
        "--top-k",
        "5",
        "--top-p",
        "0.9",
        "--seed",
        "11",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        keys(&json),
        [
            "ids",
            "prompt_ids",
            "prompt_tokens",
            "steps",
            "stopped",
            "text",
            "tokens"
        ]
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.trim_end_matches('\n'),
        json["text"].as_str().unwrap()
    );
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), json["ids"].as_array().unwrap().len());
    let prompt = json["prompt_ids"].as_array().unwrap().len();
    for (index, step) in steps.iter().enumerate() {
        assert_eq!(
            keys(step),
            ["attentions", "chosen", "kept", "position", "top_k"]
        );
        assert_eq!(step["position"], prompt + index);
        assert_eq!(keys(&step["chosen"]), ["id", "prob", "prob_after", "token"]);
        assert_eq!(
            keys(&step["top_k"][0]),
            ["id", "logit", "prob", "prob_after", "token"]
        );
        assert_eq!(step["top_k"].as_array().unwrap().len(), 10);
        assert!(step["kept"].as_u64().unwrap() <= 5);
        // [layer][head][key]: the keys are the prompt and what was generated before.
        let attentions = step["attentions"].as_array().unwrap();
        assert_eq!(attentions.len(), 2);
        assert_eq!(attentions[0].as_array().unwrap().len(), 4);
        assert_eq!(attentions[0][0].as_array().unwrap().len(), prompt + index);
    }
    // The same seed, the same text.
    let again = bertscope(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "The quick brown fox",
        "--max-new-tokens",
        "6",
        "--temperature",
        "0.7",
        "--top-k",
        "5",
        "--top-p",
        "0.9",
        "--seed",
        "11",
    ]);
    assert_eq!(again.stdout, output.stdout);
}

#[test]
fn generate_refuses_bad_input_in_one_line_and_writes_nothing() {
    let gpt2 = fixture("gpt2-lm");
    let bert = fixture("tiny-legacy");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.json");
    let cases: [(&Path, &str, &[&str], &str); 8] = [
        (&gpt2, "", &[], "prompt is empty"),
        (
            &gpt2,
            "hi",
            &["--max-new-tokens", "0"],
            "--max-new-tokens is 0",
        ),
        (&gpt2, "hi", &["--temperature", "0"], "temperature"),
        (&gpt2, "hi", &["--temperature", "-1"], "temperature"),
        (&gpt2, "hi", &["--top-k", "-3"], "--top-k"),
        (&gpt2, "hi", &["--top-p", "1.2"], "top-p"),
        (&gpt2, "hi", &["--greedy", "--top-k", "5"], "--greedy"),
        (&bert, "the cat", &[], "encoder"),
    ];
    for (model, text, extra, expected) in cases {
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--text",
            text,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let output = bertscope(&args);
        assert!(!output.status.success(), "{extra:?}");
        let line = stderr_line(&output);
        assert!(line.contains(expected), "{extra:?}: {line}");
        assert!(!out.exists(), "{extra:?} wrote a file");
    }
}

#[test]
fn sharded_statistics_merge_into_the_unsharded_report_and_refuse_mismatched_parts() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(
        &corpus,
        "the cat sat on the mat.\n\nthe dog barked.\tit ran away.\nparis is in france.\na b c d\n\nhello, world!\nthe end.\n",
    )
    .unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let legacy = fixture("tiny-legacy").display().to_string();
    let modern = fixture("tiny-modern").display().to_string();
    let stats = |model: &str, extra: &[&str]| {
        let mut args = vec![
            "stats",
            "--model",
            model,
            "--corpus",
            corpus.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let output = bertscope(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    for words in [false, true] {
        let flag: &[&str] = if words { &["--words"] } else { &[] };
        let mut parts = Vec::new();
        for k in 1..=3 {
            let part = path(&format!("part-{k}-{words}.json"));
            let shard = format!("{k}/3");
            stats(
                &legacy,
                &[&["--shard", &shard, "--out", &part], flag].concat(),
            );
            parts.push(part);
        }
        let part: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&parts[0]).unwrap()).unwrap();
        assert_eq!(part["partial"], true);
        assert_eq!(part["shard"]["index"], 1);
        assert_eq!(part["words"], words);
        assert_eq!(part["corpus_sha256"].as_str().unwrap().len(), 64);
        let mut args = vec!["stats", "merge"];
        args.extend(parts.iter().map(String::as_str));
        let merged = bertscope(&args);
        assert!(
            merged.status.success(),
            "{}",
            String::from_utf8_lossy(&merged.stderr)
        );
        let merged: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
        let whole: serde_json::Value =
            serde_json::from_slice(&stats(&legacy, flag).stdout).unwrap();
        assert_eq!(merged["lines"], whole["lines"]);
        assert_eq!(merged["tokens"], whole["tokens"]);
        for (a, b) in merged["heads"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap())
            .zip(
                whole["heads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|row| row.as_array().unwrap()),
            )
        {
            assert_eq!(a["label"], b["label"]);
            for key in ["cls", "sep", "punct", "self", "prev", "next", "entropy"] {
                let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
                assert!((x - y).abs() <= 1e-9, "{key}: {x} {y}");
            }
        }
    }

    // Parts of another model, of the other --words setting, and a missing or repeated shard are
    // refused in one line.
    let other = path("other-2.json");
    stats(&modern, &["--shard", "2/3", "--out", &other]);
    let [p1, p2, p3] = [1, 2, 3].map(|k| path(&format!("part-{k}-false.json")));
    let words2 = path("part-2-true.json");
    for (parts, expected) in [
        (vec![&p1, &other, &p3], "different models"),
        (vec![&p1, &words2, &p3], "--words"),
        (vec![&p1, &p3], "shard 2/3 is missing"),
        (vec![&p1, &p2, &p2, &p3], "shard 2/3 is given twice"),
    ] {
        let mut args = vec!["stats", "merge"];
        args.extend(parts.iter().map(|p| p.as_str()));
        let output = bertscope(&args);
        assert!(!output.status.success());
        let line = stderr_line(&output);
        assert!(line.contains(expected), "{line}");
    }
}

/// `BERTSCOPE_ISA` caps the kernels' level, which `bench` prints; a name that is no level is
/// said in one line and changes nothing.
#[test]
fn bertscope_isa_caps_the_level_bench_runs_at() {
    let model = fixture("tiny-legacy");
    let run = |isa: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_bertscope"))
            .args(["bench", "--model", model.to_str().unwrap(), "--gemm"])
            .args(["--seq-len", "8", "--iters", "1"])
            .env("HF_HUB_OFFLINE", "1")
            .env("BERTSCOPE_ISA", isa)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let first = stdout.lines().next().unwrap().to_owned();
        // Every product still runs and prints.
        assert_eq!(stdout.lines().filter(|l| l.starts_with("gemm ")).count(), 6);
        (first, stderr)
    };
    let (first, stderr) = run("baseline");
    assert!(first.starts_with("isa baseline (this CPU runs "), "{first}");
    assert!(stderr.is_empty(), "{stderr}");
    let (first, stderr) = run("neon");
    assert!(!first.starts_with("isa baseline"), "{first}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line on stderr: {stderr}"
    );
    assert!(stderr.contains("BERTSCOPE_ISA=neon is not avx512, avx2 or baseline"));
}

#[test]
fn bench_gemm_prints_the_dense_shapes_in_gflops() {
    let model = fixture("tiny-legacy");
    let output = bertscope(&[
        "bench",
        "--model",
        model.to_str().unwrap(),
        "--gemm",
        "--seq-len",
        "8",
        "--iters",
        "1",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("gemm ")).collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|row| row.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "cube",
            "qkv",
            "attention_output",
            "ffn_in",
            "ffn_out",
            "vocabulary"
        ]
    );
    // tiny-legacy: hidden 32 (queries, keys and values: 96 outputs), inner 64, 8 tokens.
    assert!(rows[1].contains(" 96x8x32 "), "{}", rows[1]);
    assert!(rows[4].contains(" 32x8x64 "), "{}", rows[4]);
    for row in rows {
        let gflops: f64 = row
            .split_whitespace()
            .rev()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(gflops > 0.0, "{row}");
    }
}

/// A newer family end to end on the command line: a Gemma 3 dump with the lens, attribution
/// and logit attribution, its generation, a ModernBERT figure of a local layer with its window
/// keyed, and a config naming an unsupported rope type refused in one line.
#[test]
fn newer_families_run_end_to_end_and_bad_configs_are_one_line() {
    let gemma = fixture("gemma3-lm");
    let gemma = gemma.to_str().unwrap();
    let output = bertscope(&[
        "dump",
        "--model",
        gemma,
        "--text",
        "Where does the teacher live?",
        "--with",
        "logit-lens,attribution,logit-attribution",
    ]);
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["model_type"], "gemma3_text");
    assert_eq!(json["tokens"][0], "<s>");
    for key in ["logit_lens", "attribution", "logit_attribution"] {
        assert!(!json[key].is_null(), "{key}");
    }
    assert_eq!(json["logit_attribution"]["softcap"], 3.0);

    let output = bertscope(&[
        "generate",
        "--model",
        gemma,
        "--text",
        "The quick brown fox",
        "--max-new-tokens",
        "6",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert!(!output.stdout.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("local.svg");
    let modernbert = fixture("modernbert-mlm");
    let output = bertscope(&[
        "export",
        "--model",
        modernbert.to_str().unwrap(),
        "--text",
        "The teacher lives in [MASK] near the old school in Paris.",
        "--view",
        "heatmap",
        "--layer",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(
        svg.contains("outside the window"),
        "the local layer keys its grey"
    );
    assert!(
        svg.contains("local window of ±4 tokens"),
        "and names its window"
    );

    for name in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture("llama-lm").join(name), dir.path().join(name)).unwrap();
    }
    let config = std::fs::read_to_string(fixture("llama-lm").join("config.json"))
        .unwrap()
        .replace("\"llama3\"", "\"yarn\"");
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let output = bertscope(&[
        "dump",
        "--model",
        dir.path().to_str().unwrap(),
        "--text",
        "hello",
    ]);
    assert!(!output.status.success());
    let line = stderr_line(&output);
    assert!(
        line.contains("rope_parameters.rope_type 'yarn' is not supported"),
        "{line}"
    );
}

/// Ctrl-C stops a run after its step, with status 130, and the folder holds the last whole
/// epoch.
#[cfg(target_os = "linux")]
#[test]
fn finetune_stops_on_ctrl_c_with_the_last_epoch_written() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("reviews.csv");
    let mut rows = String::from("text,label\n");
    for index in 0..400 {
        let label = if index % 2 == 0 {
            "POSITIVE"
        } else {
            "NEGATIVE"
        };
        rows.push_str(&format!("review number {index},{label}\n"));
    }
    std::fs::write(&data, rows).unwrap();
    let out = dir.path().join("tuned");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bertscope"))
        .args([
            "finetune",
            "--model",
            fixture("bert-sentiment").to_str().unwrap(),
            "--train",
            data.to_str().unwrap(),
            "--epochs",
            "1000",
            "--batch-size",
            "4",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("HF_HUB_OFFLINE", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let reader = {
        let stderr = Arc::clone(&stderr);
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = pipe.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                stderr
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        })
    };
    let started = std::time::Instant::now();
    while !stderr.lock().unwrap().contains("epoch 1: train loss") {
        assert!(
            started.elapsed().as_secs() < 120,
            "no epoch ended: {}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: a plain signal to the child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stderr = stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped: "), "{stderr}");
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training_log.json")).unwrap())
            .unwrap();
    let epochs = log["epochs"].as_array().unwrap().len();
    assert!((1..1000).contains(&epochs), "{epochs}");
    assert!(
        stderr.contains(&format!("holds epoch {epochs}")),
        "{stderr}"
    );
    // Nothing half-written beside the folder's files.
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!name.starts_with('.') && !name.ends_with(".part"), "{name}");
    }
}

#[test]
fn finetune_trains_writes_a_folder_and_refuses_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("bert-sentiment");
    let model = model.to_str().unwrap();
    let data = dir.path().join("reviews.csv");
    std::fs::write(
        &data,
        "review,stars,label\nGreat film!,5,POSITIVE\nDull.,1,NEGATIVE\nLovely.,4,POSITIVE\n",
    )
    .unwrap();
    let data = data.to_str().unwrap();
    let out = dir.path().join("tuned");
    let out_arg = out.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "finetune", "--model", model, "--out", out_arg, "--epochs", "2",
        ];
        args.extend_from_slice(extra);
        bertscope(&args)
    };
    let output = run(&["--train", data, "--eval", data, "--batch-size", "2"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("epoch 2: train loss"), "{stderr}");
    assert!(stderr.contains("accuracy"), "{stderr}");
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training_log.json")).unwrap())
            .unwrap();
    assert_eq!(log["steps"].as_array().unwrap().len(), 4);
    assert_eq!(log["epochs"].as_array().unwrap().len(), 2);
    // The folder is a model bertscope runs, with the labels it learned.
    let (json, _) = dump_json(out_arg, &["--text", "Great film!"]);
    assert_eq!(
        json["classification"]["labels"].as_array().unwrap().len(),
        2
    );

    let missing = dir.path().join("absent.csv");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--train", missing.to_str().unwrap()],
            "cannot read the data file",
        ),
        (
            vec!["--train", data, "--label-column", "sentiment"],
            "no label column 'sentiment'; the columns are review, stars, label",
        ),
        (
            vec!["--train", data, "--text-column", "label"],
            "the label column 'label' is also a text column",
        ),
        (
            vec!["--train", data, "--batch-size", "0"],
            "--batch-size must be at least 1",
        ),
    ];
    for (args, message) in cases {
        let output = run(&args);
        assert!(!output.status.success(), "{args:?}");
        let line = stderr_line(&output);
        assert!(line.contains(message), "{args:?}: {line}");
    }
    let one_label = dir.path().join("one.csv");
    std::fs::write(&one_label, "text,label\na,x\nb,x\n").unwrap();
    let output = run(&["--train", one_label.to_str().unwrap()]);
    assert!(stderr_line(&output).contains("every example has the label 'x'"));
    // A folder someone else owns is never written into.
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), "mine").unwrap();
    let output = bertscope(&[
        "finetune",
        "--model",
        model,
        "--train",
        data,
        "--out",
        taken.to_str().unwrap(),
    ]);
    assert!(stderr_line(&output).contains("is not a folder bertscope fine-tuned into"));
    // A family without a classification model says so.
    let gemma = fixture("gemma3-lm");
    let output = bertscope(&[
        "finetune",
        "--model",
        gemma.to_str().unwrap(),
        "--train",
        data,
        "--out",
        dir.path().join("g").to_str().unwrap(),
    ]);
    assert!(stderr_line(&output).contains("has no sequence-classification model"));
    assert!(!dir.path().join("g").exists());
}
