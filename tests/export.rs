//! Figures and data files: formats, scales, titles, labels, errors, and no partial files.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bertscope::analysis::HeadChoice;
use bertscope::export::{export, Export, ModelData};
use bertscope::model::{Analysis, AnalysisRequest, DeviceChoice, LoadedModel, ModelSource};
use bertscope::views::heatmap::Heatmap;
use bertscope::views::lines::Lines;
use bertscope::views::overview::Overview;
use bertscope::views::Figure;

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

/// Exports `analysis` of [`TEXT`] (and `text_b`) from the model "tiny" to `path`.
fn write(
    path: &Path,
    analysis: &Analysis,
    text_b: Option<&str>,
    options: &Export,
) -> anyhow::Result<()> {
    export(
        path,
        ("tiny", analysis),
        &ModelData::default(),
        (TEXT, text_b),
        options,
    )
}

/// An export of a heatmap of `layer` and `head`.
fn heatmap(layer: usize, head: HeadChoice) -> Export {
    Export::of(Figure::Heatmap(Heatmap {
        layer,
        head,
        ..Heatmap::default()
    }))
}

fn png_size(path: &Path) -> (u32, u32) {
    let image = image::open(path).unwrap();
    (image.width(), image.height())
}

/// The `width` and `height` of an SVG figure's root element.
fn svg_size(svg: &str) -> (f32, f32) {
    let root = &svg[svg.find("<svg").unwrap()..];
    let root = &root[..root.find('>').unwrap()];
    let attribute = |name: &str| -> f32 {
        let start = root.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        root[start..][..root[start..].find('"').unwrap()]
            .parse()
            .unwrap()
    };
    (attribute("width"), attribute("height"))
}

/// Asserts that a PNG figure is `expected` pixels large and drawn (see
/// [`common::assert_png_drawn`]).
fn assert_drawn(path: &Path, expected: (u32, u32), colours: usize) {
    assert_eq!(png_size(path), expected, "{}", path.display());
    common::assert_png_drawn(path, colours);
}

/// The PNG size `to_png` gives an SVG figure at `scale`.
fn png_size_of(svg: &Path, scale: f32) -> (u32, u32) {
    let (width, height) = svg_size(&std::fs::read_to_string(svg).unwrap());
    (
        (width * scale).round() as u32,
        (height * scale).round() as u32,
    )
}

#[test]
fn heatmap_png_scales_and_svg_is_vector_with_labels() {
    let analysis = analysis();
    let dir = tempfile::tempdir().unwrap();
    let mut options = Export {
        scale: 1.0,
        ..heatmap(1, HeadChoice::Head(2))
    };
    let one = dir.path().join("one.png");
    write(&one, &analysis, None, &options).unwrap();
    options.scale = 2.0;
    let two = dir.path().join("two.png");
    write(&two, &analysis, None, &options).unwrap();
    let (w1, h1) = png_size(&one);
    assert_eq!(png_size(&two), (w1 * 2, h1 * 2));
    assert!(w1 > 300 && h1 > 300);

    let svg_path = dir.path().join("figure.svg");
    write(&svg_path, &analysis, None, &options).unwrap();
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
    for (figure, name) in [
        (Figure::Lines(Lines::default()), "lines"),
        (Figure::Overview(Overview::default()), "overview"),
        (heatmap(0, HeadChoice::Mean).figure, "mean"),
    ] {
        let lines = matches!(figure, Figure::Lines(_));
        let options = Export::of(figure);
        for format in ["svg", "png"] {
            let path = dir.path().join(format!("{name}.{format}"));
            write(&path, &analysis, Some("second"), &options).unwrap();
        }
        // The PNG is the SVG drawn at the scale asked for, and not blank: the overview's
        // thumbnails and the mean map are many shades of viridis.
        let svg = dir.path().join(format!("{name}.svg"));
        let colours = if lines { 4 } else { 32 };
        assert_drawn(
            &dir.path().join(format!("{name}.png")),
            png_size_of(&svg, options.scale),
            colours,
        );
    }
    // One line for every weight of every head at or above the threshold.
    let svg = std::fs::read_to_string(dir.path().join("lines.svg")).unwrap();
    let tokens = analysis.len();
    let threshold = Lines::default().threshold.max(1e-3);
    let expected: usize = (0..analysis.heads())
        .map(|head| {
            analysis
                .attention(0, head)
                .iter()
                .filter(|&&weight| weight >= threshold)
                .count()
        })
        .sum();
    assert!(expected > tokens, "the test draws some lines");
    assert_eq!(svg.matches("<line").count(), expected, "attention lines");
    // The overview draws every layer × head, the mean map a cell per weight.
    let overview = std::fs::read_to_string(dir.path().join("overview.svg")).unwrap();
    assert_eq!(
        overview.matches("<image").count(),
        analysis.layers() * analysis.heads(),
        "a thumbnail per head"
    );
    let mean = std::fs::read_to_string(dir.path().join("mean.svg")).unwrap();
    assert!(mean.contains("layer 0 · mean of heads"), "{mean:.400}");
    assert!(mean.matches("<rect").count() >= tokens * tokens);
}

#[test]
fn data_exports_hold_every_value() {
    let analysis = analysis();
    let dir = tempfile::tempdir().unwrap();
    let options = Export::default();
    let json = dir.path().join("all.json");
    write(&json, &analysis, None, &options).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["tokens"], serde_json::json!(analysis.tokens));
    assert_eq!(doc["token_ids"], serde_json::json!(analysis.token_ids));
    assert_eq!(doc["segment_ids"], serde_json::json!(analysis.segment_ids));
    // Every probability, read back, is the analysis's own f32 (JSON keeps the shortest decimal
    // that reads back to the same f32).
    let tokens = analysis.len();
    let layers = doc["attentions"].as_array().unwrap();
    assert_eq!(layers.len(), analysis.layers());
    for (layer, heads) in layers.iter().enumerate() {
        let heads = heads.as_array().unwrap();
        assert_eq!(heads.len(), analysis.heads());
        for (head, rows) in heads.iter().enumerate() {
            let read: Vec<f32> = rows
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| {
                    let row = row.as_array().unwrap();
                    assert_eq!(row.len(), tokens);
                    row.iter().map(|v| v.as_f64().unwrap() as f32)
                })
                .collect();
            assert_eq!(read, analysis.attention(layer, head), "{layer}:{head}");
        }
    }
    let nsp = doc["nsp"]["is_next"].as_f64().map(|p| p as f32);
    assert_eq!(nsp, analysis.nsp_is_next);

    let npy = dir.path().join("all.npy");
    write(&npy, &analysis, None, &options).unwrap();
    let file = npyz::NpyFile::new(std::fs::File::open(&npy).unwrap()).unwrap();
    let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    assert_eq!(shape, analysis.attentions.shape());
    let values: Vec<f32> = file.into_vec().unwrap();
    assert_eq!(values, analysis.attentions.to_host().unwrap().values());

    // The CSV of one head (layer 1, head 2): keys across, a query per row, every weight.
    let csv = dir.path().join("head.csv");
    let options = heatmap(1, HeadChoice::Head(2));
    write(&csv, &analysis, None, &options).unwrap();
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header[0], "query \\ key");
    assert_eq!(header[1..], analysis.tokens);
    let map = analysis.attention(1, 2);
    let mut rows = 0;
    for (query, record) in reader.records().enumerate() {
        let record = record.unwrap();
        assert_eq!(&record[0], analysis.tokens[query]);
        let read: Vec<f32> = record.iter().skip(1).map(|v| v.parse().unwrap()).collect();
        assert_eq!(
            read,
            map[query * tokens..(query + 1) * tokens],
            "row {query}"
        );
        rows += 1;
    }
    assert_eq!(rows, tokens);
}

#[test]
fn bad_requests_fail_clearly_and_leave_nothing() {
    let analysis = analysis();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("x.gif", Export::default(), "unknown file type"),
        (
            "x.png",
            heatmap(7, HeadChoice::Head(0)),
            "layer 7 is out of range",
        ),
        (
            "x.png",
            heatmap(0, HeadChoice::Head(9)),
            "head 9 is out of range",
        ),
        (
            "x.png",
            Export {
                scale: 3.0,
                ..Export::default()
            },
            "scale 3 is not offered",
        ),
    ];
    for (name, options, expected) in cases {
        let err = write(&dir.path().join(name), &analysis, None, &options)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
    let err = write(
        &dir.path().join("missing/x.png"),
        &analysis,
        None,
        &Export::default(),
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
    // The overview at scale 1 is the size of the same command's SVG, and drawn.
    let svg = dir.path().join("overview.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_bertscope"))
        .args([
            "export",
            "--model",
            fixture("tiny-legacy").to_str().unwrap(),
            "--text",
            TEXT,
            "--view",
            "overview",
            "--out",
            svg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let expected = png_size_of(&svg, 1.0);
    assert!(expected.0 > 100 && expected.1 > 100, "{expected:?}");
    assert_drawn(&out, expected, 32);
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
