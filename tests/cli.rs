//! The command line as scripts use it: exact JSON shapes, exit codes, one-line errors.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

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
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
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

#[test]
fn errors_are_one_line_with_a_failing_exit_code() {
    let tiny = fixture("tiny-modern");
    let tiny = tiny.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
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
    let output = bertscope(&[
        "bench",
        "--model",
        model.to_str().unwrap(),
        "--seq-len",
        "32",
        "--iters",
        "3",
    ]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let last = stdout.trim_end().lines().last().unwrap();
    let value = last.strip_prefix("median_ms ").unwrap();
    assert!(value.parse::<f64>().unwrap() > 0.0, "{last}");
}
