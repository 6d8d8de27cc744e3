//! Figures and data files: formats, scales, titles, labels, errors, and no partial files.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bertscope::analysis::HeadChoice;
use bertscope::export::{export, ExportOptions, FigureView};
use bertscope::model::{Analysis, AnalysisRequest, DeviceChoice, LoadedModel, ModelSource};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const TEXT: &str = "The cat sat on the mat & <rested>.";

fn analysis() -> Analysis {
    let model = LoadedModel::load(
        &ModelSource::Folder(fixture("tiny-legacy")),
        DeviceChoice::Cpu,
        &mut |_| {},
    )
    .unwrap();
    model.analyze(&AnalysisRequest::new(TEXT)).unwrap()
}

fn png_size(path: &Path) -> (u32, u32) {
    let image = image::open(path).unwrap();
    (image.width(), image.height())
}

#[test]
fn heatmap_png_scales_and_svg_is_vector_with_labels() {
    let analysis = analysis();
    let dir = tempfile::tempdir().unwrap();
    let mut options = ExportOptions {
        layer: 1,
        head: HeadChoice::Head(2),
        scale: 1.0,
        ..ExportOptions::default()
    };
    let one = dir.path().join("one.png");
    export(&one, "tiny", &analysis, TEXT, None, &options).unwrap();
    options.scale = 2.0;
    let two = dir.path().join("two.png");
    export(&two, "tiny", &analysis, TEXT, None, &options).unwrap();
    let (w1, h1) = png_size(&one);
    assert_eq!(png_size(&two), (w1 * 2, h1 * 2));
    assert!(w1 > 300 && h1 > 300);

    let svg_path = dir.path().join("figure.svg");
    export(&svg_path, "tiny", &analysis, TEXT, None, &options).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let tokens = analysis.len();
    assert!(
        svg.matches("<rect").count() >= tokens * tokens,
        "one vector cell per weight"
    );
    assert!(svg.contains("tiny · layer 1 · head 2"), "title");
    assert!(
        svg.contains("&amp;") && svg.contains("&lt;"),
        "text is escaped"
    );
    assert!(
        svg.contains("[CLS]") && svg.matches("<text").count() >= 2 * tokens,
        "token labels are text"
    );
    assert!(svg.contains("url(#viridis)"), "colour bar");
}

#[test]
fn lines_and_overview_figures_and_mean_heads() {
    let analysis = analysis();
    let dir = tempfile::tempdir().unwrap();
    for (view, name) in [
        (FigureView::Lines, "lines.svg"),
        (FigureView::Overview, "overview.png"),
        (FigureView::Heatmap, "mean.png"),
    ] {
        let options = ExportOptions {
            view,
            head: HeadChoice::Mean,
            ..ExportOptions::default()
        };
        let path = dir.path().join(name);
        export(&path, "tiny", &analysis, TEXT, Some("second"), &options).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 1000, "{name}");
    }
    let svg = std::fs::read_to_string(dir.path().join("lines.svg")).unwrap();
    assert!(svg.contains("<line"), "attention lines");
}

#[test]
fn data_exports_hold_every_value() {
    let analysis = analysis();
    let dir = tempfile::tempdir().unwrap();
    let options = ExportOptions::default();
    let json = dir.path().join("all.json");
    export(&json, "tiny", &analysis, TEXT, None, &options).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        doc["attentions"].as_array().unwrap().len(),
        analysis.layers()
    );
    assert_eq!(doc["tokens"].as_array().unwrap().len(), analysis.len());

    let npy = dir.path().join("all.npy");
    export(&npy, "tiny", &analysis, TEXT, None, &options).unwrap();
    let file = npyz::NpyFile::new(std::fs::File::open(&npy).unwrap()).unwrap();
    let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    assert_eq!(shape, analysis.attentions.shape());
    let values: Vec<f32> = file.into_vec().unwrap();
    assert_eq!(values, analysis.attentions.to_host().unwrap().values());

    let csv = dir.path().join("head.csv");
    export(&csv, "tiny", &analysis, TEXT, None, &options).unwrap();
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap().lines().count(),
        analysis.len() + 1
    );
}

#[test]
fn bad_requests_fail_clearly_and_leave_nothing() {
    let analysis = analysis();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("x.gif", ExportOptions::default(), "unknown file type"),
        (
            "x.png",
            ExportOptions {
                layer: 7,
                ..ExportOptions::default()
            },
            "layer 7 is out of range",
        ),
        (
            "x.png",
            ExportOptions {
                head: HeadChoice::Head(9),
                ..ExportOptions::default()
            },
            "head 9 is out of range",
        ),
        (
            "x.png",
            ExportOptions {
                scale: 3.0,
                ..ExportOptions::default()
            },
            "scale 3 is not offered",
        ),
    ];
    for (name, options, expected) in cases {
        let err = export(
            &dir.path().join(name),
            "tiny",
            &analysis,
            TEXT,
            None,
            &options,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(expected), "{err}");
    }
    let err = export(
        &dir.path().join("missing/x.png"),
        "tiny",
        &analysis,
        TEXT,
        None,
        &ExportOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn cli_export_writes_a_figure_without_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("overview.png");
    let output = Command::new(env!("CARGO_BIN_EXE_bertscope"))
        .args([
            "export",
            "--model",
            fixture("tiny-legacy").to_str().unwrap(),
            "--text",
            TEXT,
            "--view",
            "overview",
            "--scale",
            "1",
            "--out",
            out.to_str().unwrap(),
        ])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(png_size(&out).0 > 100);
    let output = Command::new(env!("CARGO_BIN_EXE_bertscope"))
        .args([
            "export",
            "--model",
            fixture("tiny-legacy").to_str().unwrap(),
            "--text",
            TEXT,
            "--head",
            "mean",
            "--layer",
            "5",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("layer 5 is out of range"), "{stderr}");
}
