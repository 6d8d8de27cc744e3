//! Two models side by side on the same text: a layer pair as heatmaps, their difference `A − B`
//! when both tokenize alike, and the divergence of every layer of A from B's layer at the same
//! relative depth; when they tokenize differently, both token lists.

use std::rc::Rc;

use crate::analysis::compare::{difference, same_tokens};
use crate::analysis::{shown_map, HeadChoice};
use crate::model::Analysis;
use crate::render::matrix::{Matrix, MatrixGeometry, MatrixZoom};
use crate::render::parts::{bar_chart, ColorScale};
use crate::render::scene::{
    Align, Baseline, Font, Paint, Pixels, Point, Raster, RasterKey, Scene, Text,
};
use crate::render::{difference_rgba, heatmap_rgba, max_value};

const TITLE: f32 = 12.0;
const GAP: f32 = 24.0;
const CHART_HEIGHT: f32 = 140.0;
/// A figure's matrices: about 300 points a side.
const FIGURE_SIDE: f32 = 300.0;

/// One side of the comparison: a model's name, its run of the text, and the map shown.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    /// The model's name.
    pub name: &'a str,
    /// Its analysis of the text.
    pub analysis: &'a Analysis,
    /// The layer shown.
    pub layer: usize,
    /// The head (or mean) shown.
    pub head: HeadChoice,
}

/// What the comparison marks: the selection, the cell under the pointer, the shared zoom.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks<'a> {
    /// Selected tokens (when both tokenize alike).
    pub selection: &'a [usize],
    /// The cell under the pointer, in every matrix.
    pub hovered: Option<(usize, usize)>,
    /// One zoom for every matrix, so that they stay aligned.
    pub zoom: MatrixZoom,
}

/// The maps' values, `[query][key]`, a causal model's future cells NaN.
fn map(side: &Side<'_>) -> Vec<f32> {
    shown_map(side.analysis, side.layer, side.head)
}

/// The size a figure gives the comparison: matrices of about 300 points, the chart under them.
pub fn natural_size(a: &Side<'_>, b: &Side<'_>) -> (f32, f32) {
    let columns = if same_tokens(a.analysis, b.analysis) {
        3.0
    } else {
        2.0
    };
    let block = FIGURE_SIDE + 200.0;
    (
        columns * block + (columns - 1.0) * GAP,
        block + CHART_HEIGHT + 60.0,
    )
}

/// The comparison in `width × height`; `divergence` (per layer of A) is drawn when both tokenize
/// alike and it has been computed. Returns the scene and where each matrix lies (A, B, then the
/// difference).
pub fn scene<'a>(
    a: &Side<'a>,
    b: &Side<'a>,
    divergence: Option<&[f32]>,
    marks: &Marks<'_>,
    width: f32,
    height: f32,
) -> (Scene<'a>, Vec<MatrixGeometry>) {
    let identical = same_tokens(a.analysis, b.analysis);
    let columns = if identical { 3 } else { 2 };
    let block_width = (width - GAP * (columns - 1) as f32) / columns as f32;
    let below = if identical { CHART_HEIGHT + 40.0 } else { 80.0 };
    let block_height = (height - below).max(160.0);
    let mut scene = Scene::new(width, height, "Comparison of two models");
    let mut geometries = Vec::new();
    let selection: &[usize] = if identical { marks.selection } else { &[] };
    let hovered = if identical { marks.hovered } else { None };
    let mut draw = |scene: &mut Scene<'a>,
                    column: usize,
                    title: String,
                    labels: &[String],
                    raster: Raster<'a>,
                    scale: ColorScale,
                    masked: bool| {
        let left = (block_width + GAP) * column as f32;
        scene.text(
            Text::new(Point::new(left, 0.0), title.clone(), TITLE, Font::Sans)
                .anchor(Align::Start, Baseline::Top)
                .bold(),
        );
        let title_width = crate::render::text::text_width(&title, TITLE, Font::Sans);
        scene.label(
            crate::render::scene::Rect::from_size(left, 0.0, title_width, TITLE * 1.4),
            title.clone(),
            None,
        );
        let tokens = labels.len();
        let matrix = Matrix {
            raster,
            labels,
            scale,
            masked,
            selection,
            hovered,
            zoom: marks.zoom,
            note: None,
            name: format!("{title}, {tokens} × {tokens} tokens"),
        };
        geometries.push(matrix.draw(scene, left, 20.0, block_width, block_height - 20.0));
    };
    let mut maps = Vec::new();
    for (slot, side) in [a, b].into_iter().enumerate() {
        let values = Rc::new(map(side));
        let max = max_value(&values);
        let tokens = side.analysis.len();
        let labels: Vec<String> = (0..tokens)
            .map(|i| side.analysis.display_token(i))
            .collect();
        let shown = Rc::clone(&values);
        let raster = Raster::new(
            RasterKey::of(("compare", slot, side.layer, side.head)),
            move || Pixels {
                width: tokens,
                height: tokens,
                rgba: heatmap_rgba(&shown, max),
            },
        );
        draw(
            &mut scene,
            slot,
            format!("{} · layer {} · {}", side.name, side.layer, side.head),
            &labels,
            raster,
            ColorScale::Sequential { max },
            side.analysis.causal,
        );
        maps.push(values);
    }
    if identical {
        let values = difference(&maps[0], &maps[1]);
        let max_abs = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        let tokens = a.analysis.len();
        let labels: Vec<String> = (0..tokens).map(|i| a.analysis.display_token(i)).collect();
        let raster = Raster::new(
            RasterKey::of(("difference", a.layer, a.head, b.layer, b.head)),
            move || Pixels {
                width: tokens,
                height: tokens,
                rgba: difference_rgba(&values, max_abs),
            },
        );
        draw(
            &mut scene,
            2,
            "A − B".to_owned(),
            &labels,
            raster,
            ColorScale::Diverging { max_abs },
            a.analysis.causal,
        );
    }
    let top = block_height + 12.0;
    if identical {
        let title = "divergence per layer: Jensen–Shannon of A's layer mean from B's at the same depth (0 = identical, 1 = disjoint)";
        scene.text(
            Text::new(Point::new(0.0, top), title, TITLE, Font::Sans)
                .anchor(Align::Start, Baseline::Top)
                .bold(),
        );
        match divergence {
            Some(divergence) => {
                let chart = bar_chart(
                    divergence,
                    (width * 0.6).clamp(200.0, 720.0),
                    CHART_HEIGHT,
                    |layer| layer.to_string(),
                    |layer| format!("layer {layer} of A: divergence {:.4}", divergence[layer]),
                );
                scene.append(chart, 0.0, top + 22.0);
            }
            None => scene.text(
                Text::new(
                    Point::new(0.0, top + 22.0),
                    "Computing how differently the two models attend, layer by layer…",
                    11.0,
                    Font::Sans,
                )
                .anchor(Align::Start, Baseline::Top)
                .paint(Paint::FaintInk),
            ),
        }
    } else {
        let (family_a, family_b) = (a.analysis.model_type, b.analysis.model_type);
        let why = if family_a == family_b {
            "The two models split this text into different tokens".to_owned()
        } else {
            format!(
                "{} and {} split this text into different tokens (their tokenizers differ)",
                family_a.name(),
                family_b.name()
            )
        };
        let mut y = top;
        for (line, font, paint) in [
            (why, Font::Sans, Paint::Alert),
            (
                "They tokenize this text differently, so their maps are not compared cell by cell: no difference map or divergence.".to_owned(),
                Font::Sans,
                Paint::FaintInk,
            ),
            (format!("A: {}", tokens_of(a.analysis)), Font::Mono, Paint::FaintInk),
            (format!("B: {}", tokens_of(b.analysis)), Font::Mono, Paint::FaintInk),
        ] {
            let start = y;
            for wrapped in super::predictions::wrap(&line, 11.0, font, width) {
                scene.text(
                    Text::new(Point::new(0.0, y), wrapped, 11.0, font)
                        .anchor(Align::Start, Baseline::Top)
                        .paint(paint),
                );
                y += 15.0;
            }
            scene.label(
                crate::render::scene::Rect::from_size(0.0, start, width, y - start),
                line,
                None,
            );
        }
        scene.height = scene.height.max(y);
    }
    (scene, geometries)
}

fn tokens_of(analysis: &Analysis) -> String {
    (0..analysis.len())
        .map(|index| analysis.display_token(index))
        .collect::<Vec<_>>()
        .join(" ")
}
