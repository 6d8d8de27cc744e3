//! Figures for slides and papers: a titled heatmap with token labels and a colour bar, the
//! token-to-token lines, the layers × heads overview. Each is drawn once as SVG; PNG exports are
//! that SVG rasterised by resvg at 1×, 2× or 4×, with the fonts egui uses embedded, so both
//! formats look the same on every machine.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use svg::node::element::{
    Circle, Group, Image, Line, LinearGradient, Polyline, Rectangle, Stop, Text as TextElement,
};
use svg::Document;

use crate::analysis::compare::{difference, divergence_by_layer, same_tokens};
use crate::analysis::projection::Projection;
use crate::analysis::stats::{HeadStats, Statistic};
use crate::analysis::{shown_map, HeadChoice};
use crate::model::{Analysis, EmbeddingBreakdown, LensPosition};
use crate::render::{
    attention_color, difference_rgba, head_color, heatmap_rgba, max_value, place_labels,
    tick_label, TokenGroup,
};

const MARGIN: f32 = 24.0;
const TITLE_SIZE: f32 = 18.0;
const SUBTITLE_SIZE: f32 = 12.0;
const SANS: &str = "Ubuntu, 'DejaVu Sans', sans-serif";
const MONO: &str = "Hack, 'DejaVu Sans Mono', monospace";
const INK: &str = "#202020";
const FAINT_INK: &str = "#606060";
/// The selected token's label and path.
const SELECTED_INK: &str = "#c0392b";

/// What a figure says above the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption {
    /// First line, e.g. `bert-base-uncased · layer 5 · head 3`.
    pub title: String,
    /// The input text, shortened to fit.
    pub text: String,
}

impl Caption {
    /// A caption naming the model and what is shown, with the input text below.
    pub fn new(model: &str, what: &str, text_a: &str, text_b: Option<&str>) -> Self {
        let mut text = match text_b {
            Some(b) => format!("A: {text_a}   B: {b}"),
            None => text_a.to_owned(),
        };
        if text.chars().count() > 110 {
            text = text.chars().take(107).collect::<String>() + "...";
        }
        Self {
            title: format!("{model} · {what}"),
            text,
        }
    }
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn text(x: f32, y: f32, size: f32, family: &str, content: &str) -> TextElement {
    TextElement::new(content)
        .set("x", x)
        .set("y", y)
        .set("font-size", size)
        .set("font-family", family)
        .set("fill", INK)
}

/// Token labels as figures show them (`·ing`, `▁the`, `↵`).
fn labels(analysis: &Analysis) -> Vec<String> {
    (0..analysis.len())
        .map(|index| analysis.display_token(index))
        .collect()
}

/// About how wide a line of text is drawn, so that figures make room for their longest line:
/// half the font size per Latin character, the full size for CJK and other wide characters.
fn text_width(content: &str, size: f32) -> f32 {
    content
        .chars()
        .map(|c| {
            if u32::from(c) >= 0x1100 {
                size
            } else {
                size * 0.5
            }
        })
        .sum()
}

/// The width a figure needs for its caption and notes: `drawing`, or wider for long text lines
/// (each given with its left edge and font size).
fn figure_width(drawing: f32, caption: &Caption, lines: &[(f32, &str, f32)]) -> f32 {
    let caption_width = MARGIN
        + text_width(&caption.title, TITLE_SIZE).max(text_width(&caption.text, SUBTITLE_SIZE))
        + MARGIN;
    lines
        .iter()
        .map(|(left, line, size)| left + text_width(line, *size) + MARGIN)
        .fold(drawing.max(caption_width), f32::max)
}

/// Starts a white document with the caption; returns it and the y where the drawing starts.
fn captioned(caption: &Caption) -> (Group, f32) {
    let group = Group::new()
        .add(
            text(
                MARGIN,
                MARGIN + TITLE_SIZE,
                TITLE_SIZE,
                SANS,
                &caption.title,
            )
            .set("font-weight", "bold"),
        )
        .add(
            text(
                MARGIN,
                MARGIN + TITLE_SIZE + 8.0 + SUBTITLE_SIZE,
                SUBTITLE_SIZE,
                SANS,
                &caption.text,
            )
            .set("fill", FAINT_INK),
        );
    (group, MARGIN + TITLE_SIZE + SUBTITLE_SIZE + 28.0)
}

fn document(width: f32, height: f32, content: Group) -> Document {
    Document::new()
        .set("viewBox", (0, 0, width.ceil(), height.ceil()))
        .set("width", width.ceil())
        .set("height", height.ceil())
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        )
        .add(content)
}

/// A vertical viridis colour bar from 0 (bottom) to `max` (top).
fn color_bar(x: f32, y: f32, height: f32, max: f32) -> Group {
    let mut gradient = LinearGradient::new()
        .set("id", "viridis")
        .set("x1", 0)
        .set("y1", 1)
        .set("x2", 0)
        .set("y2", 0);
    for step in 0..=10 {
        let t = step as f32 / 10.0;
        gradient = gradient.add(
            Stop::new()
                .set("offset", t)
                .set("stop-color", hex(attention_color(t, 1.0))),
        );
    }
    let mut group = Group::new().add(gradient).add(
        Rectangle::new()
            .set("x", x)
            .set("y", y)
            .set("width", 14)
            .set("height", height)
            .set("fill", "url(#viridis)"),
    );
    for (fraction, value) in [(0.0, 0.0), (0.5, max / 2.0), (1.0, max)] {
        let ty = y + height * (1.0 - fraction) + 4.0;
        group = group.add(text(x + 20.0, ty, 11.0, SANS, &tick_label(value, max)));
    }
    group
}

/// A heatmap of one head (or the mean of a layer): query rows × key columns, vector cells.
pub fn heatmap(
    analysis: &Analysis,
    layer: usize,
    head: HeadChoice,
    fixed_scale: bool,
    caption: &Caption,
) -> Document {
    matrix(
        analysis,
        shown_map(analysis, layer, head),
        fixed_scale,
        caption,
    )
}

/// A map that combines a layer's heads (rollout or flow through the layers up to some layer,
/// `[query][key]`, NaN where not computed) as a heatmap.
pub fn combined_heatmap(
    analysis: &Analysis,
    rollout: Vec<f32>,
    fixed_scale: bool,
    caption: &Caption,
) -> Document {
    matrix(analysis, rollout, fixed_scale, caption)
}

/// Norm-based attention of one head (or the mean of a layer's) as a heatmap; an error when the
/// run computed no value norms.
pub fn norms_heatmap(
    analysis: &Analysis,
    layer: usize,
    head: HeadChoice,
    caption: &Caption,
) -> anyhow::Result<Document> {
    let mut values = crate::analysis::norms::norm_map(analysis, layer, head)
        .ok_or_else(|| anyhow::anyhow!("this run computed no value norms"))?;
    if analysis.causal {
        crate::render::mask_future(&mut values, analysis.len());
    }
    Ok(matrix(analysis, values, false, caption))
}

/// A labelled `tokens × tokens` matrix of weights with its colour bar.
fn matrix(analysis: &Analysis, values: Vec<f32>, fixed_scale: bool, caption: &Caption) -> Document {
    let tokens = analysis.len();
    let max = if fixed_scale { 1.0 } else { max_value(&values) };
    let cell = (520.0 / tokens as f32).clamp(1.0, 28.0);
    let side = cell * tokens as f32;
    let font = (cell * 0.8).clamp(5.0, 12.0);
    let labels = labels(analysis);
    let every = (7.0 / cell).ceil().max(1.0) as usize;
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f32;
    let label_room = longest * font * 0.62 + 8.0;

    let (mut group, top) = captioned(caption);
    let left = MARGIN + label_room;
    let matrix_top = top + label_room;
    for row in 0..tokens {
        for col in 0..tokens {
            group = group.add(
                Rectangle::new()
                    .set("x", left + col as f32 * cell)
                    .set("y", matrix_top + row as f32 * cell)
                    // A hair wider than the cell so no seams show between neighbours.
                    .set("width", cell + 0.05)
                    .set("height", cell + 0.05)
                    .set(
                        "fill",
                        hex(attention_color(values[row * tokens + col], max)),
                    ),
            );
        }
    }
    for (index, name) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let center = (index as f32 + 0.5) * cell;
        group = group
            .add(
                text(
                    left - 4.0,
                    matrix_top + center + font * 0.35,
                    font,
                    MONO,
                    name,
                )
                .set("text-anchor", "end"),
            )
            .add(text(0.0, 0.0, font, MONO, name).set(
                "transform",
                format!(
                    "translate({:.2},{:.2}) rotate(-90)",
                    left + center + font * 0.35,
                    matrix_top - 4.0
                ),
            ));
    }
    let mut notes = vec!["rows: queries · columns: keys · each row sums to 1"];
    if analysis.causal {
        notes.push("grey: masked, a causal model sees only earlier tokens");
    }
    for (line, note) in notes.iter().enumerate() {
        let y = matrix_top + side + 18.0 + 16.0 * line as f32;
        group = group.add(text(left, y, 11.0, SANS, note).set("fill", FAINT_INK));
    }
    group = group.add(color_bar(
        left + side + 16.0,
        matrix_top,
        side.max(80.0),
        max,
    ));
    let lines: Vec<(f32, &str, f32)> = notes.iter().map(|note| (left, *note, 11.0)).collect();
    let width = figure_width(left + side + 16.0 + 14.0 + 56.0 + MARGIN, caption, &lines);
    let height = matrix_top + side.max(80.0) + 12.0 + 16.0 * notes.len() as f32 + MARGIN;
    document(width, height, group)
}

/// Token-to-token lines of one layer: queries left, keys right, one colour per head.
pub fn lines(
    analysis: &Analysis,
    layer: usize,
    hidden_heads: &[usize],
    threshold: f32,
    caption: &Caption,
) -> Document {
    let tokens = analysis.len();
    let heads = analysis.heads();
    let row = (640.0 / tokens as f32).clamp(6.0, 22.0);
    let font = (row * 0.7).clamp(5.0, 13.0);
    let labels = labels(analysis);
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f32;
    let column = longest * font * 0.62 + 10.0;
    let span = 360.0;

    let (mut group, top) = captioned(caption);
    let top = top + 24.0;
    let left_x = MARGIN + column;
    let right_x = left_x + span;
    let y_of = |index: usize| top + row * (index as f32 + 0.5);
    // Head legend.
    for head in 0..heads {
        let x = MARGIN + head as f32 * 34.0;
        let shown = !hidden_heads.contains(&head);
        group = group
            .add(
                Rectangle::new()
                    .set("x", x)
                    .set("y", top - 22.0)
                    .set("width", 28)
                    .set("height", 14)
                    .set("rx", 3)
                    .set(
                        "fill",
                        if shown {
                            hex(head_color(head, heads))
                        } else {
                            "#e0e0e0".to_owned()
                        },
                    ),
            )
            .add(
                text(x + 14.0, top - 11.0, 10.0, SANS, &head.to_string())
                    .set("text-anchor", "middle"),
            );
    }
    for head in (0..heads).filter(|h| !hidden_heads.contains(h)) {
        let color = hex(head_color(head, heads));
        let map = analysis.attention(layer, head);
        for query in 0..tokens {
            // A causal model's lines only run backwards, to earlier tokens.
            let keys = if analysis.causal { query + 1 } else { tokens };
            for key in 0..keys {
                let weight = map[query * tokens + key];
                if weight < threshold.max(1e-3) {
                    continue;
                }
                group = group.add(
                    Line::new()
                        .set("x1", left_x + 4.0)
                        .set("y1", y_of(query))
                        .set("x2", right_x - 4.0)
                        .set("y2", y_of(key))
                        .set("stroke", color.as_str())
                        .set("stroke-opacity", format!("{:.3}", weight.sqrt() * 0.9))
                        .set("stroke-width", format!("{:.2}", 0.8 + 2.0 * weight)),
                );
            }
        }
    }
    for (index, name) in labels.iter().enumerate() {
        let y = y_of(index) + font * 0.35;
        group = group
            .add(text(left_x - 6.0, y, font, MONO, name).set("text-anchor", "end"))
            .add(text(right_x + 6.0, y, font, MONO, name));
    }
    let width = figure_width(right_x + column + MARGIN, caption, &[]);
    let height = top + row * tokens as f32 + MARGIN;
    document(width, height, group)
}

/// Every layer × head as a grid of small maps (raster thumbnails inside the SVG): attention, or
/// norm-based attention when `norms` (an error when the run computed no value norms).
pub fn overview(analysis: &Analysis, norms: bool, caption: &Caption) -> anyhow::Result<Document> {
    use crate::views::overview;
    let scene = overview::scene(
        analysis,
        overview::Overview { norms },
        &overview::Marks::default(),
        overview::natural_width(analysis.heads()),
    )
    .map_err(anyhow::Error::msg)?;
    Ok(from_scene(scene, caption))
}

/// Token hidden states of one layer in the PCA plane of every layer, coloured by sentence A, B
/// and special tokens, labelled where labels do not overlap (the selected token always, with its
/// path through the layers).
pub fn projection(
    analysis: &Analysis,
    projection: &Projection,
    layer: usize,
    selected: Option<usize>,
    caption: &Caption,
) -> Document {
    const PLOT_WIDTH: f32 = 640.0;
    const PLOT_HEIGHT: f32 = 440.0;
    const LABEL_SIZE: f32 = 11.0;
    let layer = layer.min(projection.layers().saturating_sub(1));
    let points = projection.layer(layer);
    let path = selected
        .filter(|&token| token < points.len())
        .map(|token| projection.trajectory(token))
        .unwrap_or_default();
    // One scale on both axes, as in the app: distances mean the same across and up.
    let (mut low, mut high) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for point in points.iter().chain(&path) {
        for axis in 0..2 {
            low[axis] = low[axis].min(point[axis]);
            high[axis] = high[axis].max(point[axis]);
        }
    }
    let span = |axis: usize| (high[axis] - low[axis]).max(1e-6);
    let scale = (PLOT_WIDTH / span(0)).min(PLOT_HEIGHT / span(1));

    let (mut group, top) = captioned(caption);
    let legend_top = top;
    let plot_top = legend_top + 24.0;
    let (left, room) = (MARGIN + 8.0, 8.0);
    let at = |[x, y]: [f32; 2]| {
        (
            left + room + (x - low[0]) * scale,
            // Up is up, as in the app's plot.
            plot_top + room + (high[1] - y) * scale,
        )
    };
    let plot_width = span(0) * scale + 2.0 * room;
    let plot_height = span(1) * scale + 2.0 * room;
    group = group.add(
        Rectangle::new()
            .set("x", left)
            .set("y", plot_top)
            .set("width", plot_width)
            .set("height", plot_height)
            .set("fill", "none")
            .set("stroke", "#d0d0d0"),
    );

    let mut legend_x = MARGIN;
    for token_group in TokenGroup::ALL {
        if !(0..points.len()).any(|index| TokenGroup::of(analysis, index) == token_group) {
            continue;
        }
        group = group
            .add(
                Circle::new()
                    .set("cx", legend_x + 5.0)
                    .set("cy", legend_top + 6.0)
                    .set("r", 5)
                    .set("fill", hex(token_group.color())),
            )
            .add(text(
                legend_x + 14.0,
                legend_top + 10.0,
                11.0,
                SANS,
                token_group.name(),
            ));
        legend_x += 14.0 + text_width(token_group.name(), 11.0) + 18.0;
    }

    if path.len() > 1 {
        let points: Vec<String> = path
            .iter()
            .map(|&point| {
                let (x, y) = at(point);
                format!("{x:.2},{y:.2}")
            })
            .collect();
        group = group.add(
            Polyline::new()
                .set("points", points.join(" "))
                .set("fill", "none")
                .set("stroke", SELECTED_INK)
                .set("stroke-width", 1.5),
        );
    }
    for (index, &point) in points.iter().enumerate() {
        let (x, y) = at(point);
        group = group.add(
            Circle::new()
                .set("cx", x)
                .set("cy", y)
                .set("r", 4)
                .set("fill", hex(TokenGroup::of(analysis, index).color())),
        );
    }
    // Labels where they overlap no other, the selected one always.
    let texts: Vec<String> = (0..points.len())
        .map(|index| analysis.display_token(index))
        .collect();
    let boxes: Vec<[f32; 4]> = points
        .iter()
        .zip(&texts)
        .map(|(&point, label)| {
            let (x, y) = at(point);
            [
                x + 5.0,
                y - 4.0 - LABEL_SIZE,
                x + 5.0 + text_width(label, LABEL_SIZE),
                y - 4.0,
            ]
        })
        .collect();
    let always: Vec<usize> = selected.into_iter().collect();
    let shown = place_labels(&boxes, &always);
    for (index, label) in texts.iter().enumerate().filter(|&(i, _)| shown[i]) {
        let bounds = boxes[index];
        let mut label_text = text(bounds[0], bounds[3], LABEL_SIZE, MONO, label);
        if Some(index) == selected {
            label_text = label_text
                .set("fill", SELECTED_INK)
                .set("font-weight", "bold");
        }
        group = group.add(label_text);
    }
    let note = format!(
        "layer {layer} of {} (0: embeddings) · PCA over all layers · axes explain {:.0}% and {:.0}% of the variance",
        projection.layers() - 1,
        projection.explained_variance[0] * 100.0,
        projection.explained_variance[1] * 100.0
    );
    let note_y = plot_top + plot_height + 18.0;
    group = group.add(text(left, note_y, 11.0, SANS, &note).set("fill", FAINT_INK));
    let width = figure_width(left + plot_width + MARGIN, caption, &[(left, &note, 11.0)]);
    document(width, note_y + MARGIN, group)
}

/// What the model's heads predict for the input: the Predictions tab's drawing (`selected`: whose
/// next token). Fails when the model has no prediction head.
pub fn predictions(
    analysis: &Analysis,
    selected: Option<usize>,
    caption: &Caption,
) -> anyhow::Result<Document> {
    use crate::model::HeadKind;
    let heads: Vec<HeadKind> = [
        (analysis.mlm.is_some(), HeadKind::MaskedLm),
        (analysis.next_token.is_some(), HeadKind::NextToken),
        (analysis.nsp_is_next.is_some(), HeadKind::NextSentence),
        (
            analysis.classification.is_some(),
            HeadKind::SequenceClassification,
        ),
        (analysis.qa.is_some(), HeadKind::QuestionAnswering),
        (
            analysis.token_classification.is_some(),
            HeadKind::TokenClassification,
        ),
    ]
    .into_iter()
    .filter_map(|(present, kind)| present.then_some(kind))
    .collect();
    let view = crate::views::predictions::Predictions {
        heads: &heads,
        token: selected,
        ..Default::default()
    };
    let scene = crate::views::predictions::scene(analysis, &view, 640.0).ok_or_else(|| {
        anyhow::anyhow!("this model has no prediction head (masked LM, next token, classifier, answers or token labels), so there is nothing to draw")
    })?;
    Ok(from_scene(scene, caption))
}

/// The logit lens at one position: the Lens tab's table under the caption.
pub fn lens(analysis: &Analysis, lens: &LensPosition, caption: &Caption) -> Document {
    from_scene(crate::views::lens::scene(analysis, lens, None), caption)
}

/// A view's scene under the caption, as a document.
fn from_scene(scene: crate::render::scene::Scene<'_>, caption: &Caption) -> Document {
    let caption = crate::render::parts::Caption {
        title: caption.title.clone(),
        text: caption.text.clone(),
    };
    crate::render::svg::to_document(&caption.frame(scene), &crate::render::scene::Palette::PAPER)
}

/// The sizes of each token's input embedding and its parts, and the position embeddings'
/// similarity: the Embeddings tab's drawing.
pub fn embeddings(analysis: &Analysis, parts: &EmbeddingBreakdown, caption: &Caption) -> Document {
    use crate::views::embeddings;
    let (width, height) = embeddings::natural_size(analysis, parts);
    let (scene, _) = embeddings::scene(
        analysis,
        parts,
        &embeddings::Marks::default(),
        width,
        height,
    );
    from_scene(scene, caption)
}

/// BertViz's neuron view of one head for one query token: the Query·Key tab's drawing.
pub fn query_key(
    analysis: &Analysis,
    layer: usize,
    head: usize,
    token: usize,
    caption: &Caption,
) -> Document {
    use crate::views::query_key::{natural_width, scene, QueryKeyView};
    let view = QueryKeyView {
        layer,
        head,
        query: token,
    };
    from_scene(scene(analysis, view, None, natural_width(analysis)), caption)
}

/// One side of a comparison figure.
pub struct CompareSide<'a> {
    /// The model's name.
    pub name: &'a str,
    /// Its analysis of the text.
    pub analysis: &'a Analysis,
    /// The layer shown.
    pub layer: usize,
    /// The head (or mean) shown.
    pub head: HeadChoice,
}

/// Two models' maps side by side and, when both tokenize the text alike, their difference
/// `A − B` and the divergence of every layer of A from B's layer at the same relative depth.
pub fn compare(a: &CompareSide<'_>, b: &CompareSide<'_>, caption: &Caption) -> Document {
    const SIDE: f32 = 300.0;
    const GAP: f32 = 70.0;
    let identical = same_tokens(a.analysis, b.analysis);
    let (mut group, top) = captioned(caption);
    let map_top = top + 22.0;
    let label_room = |analysis: &Analysis| {
        labels(analysis)
            .iter()
            .map(|label| text_width(label, 9.0))
            .fold(0f32, f32::max)
            .min(90.0)
            + 6.0
    };
    let mut left = MARGIN;
    let mut maps: Vec<(String, Vec<u8>, usize, &Analysis, String)> = Vec::new();
    for side in [a, b] {
        let values = shown_map(side.analysis, side.layer, side.head);
        let max = max_value(&values);
        maps.push((
            format!("{} · layer {} · {}", side.name, side.layer, side.head),
            heatmap_rgba(&values, max),
            side.analysis.len(),
            side.analysis,
            format!("0 to {}", tick_label(max, max)),
        ));
    }
    if identical {
        let values = difference(
            &shown_map(a.analysis, a.layer, a.head),
            &shown_map(b.analysis, b.layer, b.head),
        );
        let max_abs = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        maps.push((
            "A − B".to_owned(),
            difference_rgba(&values, max_abs),
            a.analysis.len(),
            a.analysis,
            format!(
                "red: A attends more · blue: B attends more · ±{}",
                tick_label(max_abs, max_abs)
            ),
        ));
    }
    let mut notes: Vec<(f32, String)> = Vec::new();
    for (title, rgba, tokens, analysis, note) in &maps {
        let room = label_room(analysis);
        let matrix_left = left + room;
        group = group
            .add(text(left, map_top - 8.0, 12.0, SANS, title).set("font-weight", "bold"))
            .add(
                Image::new()
                    .set("x", matrix_left)
                    .set("y", map_top)
                    .set("width", SIDE)
                    .set("height", SIDE)
                    .set("preserveAspectRatio", "none")
                    .set("style", "image-rendering:pixelated")
                    .set("href", png_data_uri(rgba, *tokens)),
            );
        let cell = SIDE / *tokens as f32;
        let every = (10.0 / cell).ceil().max(1.0) as usize;
        for (index, label) in labels(analysis).iter().enumerate().step_by(every) {
            group = group.add(
                text(
                    matrix_left - 3.0,
                    map_top + (index as f32 + 0.5) * cell + 3.0,
                    9.0,
                    MONO,
                    label,
                )
                .set("text-anchor", "end"),
            );
        }
        notes.push((matrix_left, note.clone()));
        group = group
            .add(text(matrix_left, map_top + SIDE + 16.0, 10.0, SANS, note).set("fill", FAINT_INK));
        left = matrix_left + SIDE.max(text_width(note, 10.0)) + GAP;
    }
    let mut bottom = map_top + SIDE + 30.0;
    if identical {
        let divergence = divergence_by_layer(a.analysis, b.analysis);
        let chart_top = bottom + 24.0;
        const CHART_HEIGHT: f32 = 120.0;
        // Identical attention gives all zeros: keep a readable scale rather than one of 1e-38.
        let largest = divergence.iter().copied().fold(0f32, f32::max);
        let largest = if largest > 1e-6 { largest } else { 1.0 };
        let bar = (560.0 / divergence.len().max(1) as f32).clamp(6.0, 40.0);
        group = group.add(
            text(
                MARGIN,
                chart_top - 8.0,
                12.0,
                SANS,
                "divergence per layer: Jensen–Shannon of A's layer mean from B's at the same depth",
            )
            .set("font-weight", "bold"),
        );
        for (layer, &value) in divergence.iter().enumerate() {
            let height = value / largest * CHART_HEIGHT;
            let x = MARGIN + 30.0 + layer as f32 * bar;
            group = group
                .add(
                    Rectangle::new()
                        .set("x", x)
                        .set("y", chart_top + CHART_HEIGHT - height)
                        .set("width", bar * 0.8)
                        .set("height", height.max(0.5))
                        .set("fill", hex(attention_color(0.4, 1.0))),
                )
                .add(
                    text(
                        x + bar * 0.4,
                        chart_top + CHART_HEIGHT + 12.0,
                        9.0,
                        SANS,
                        &layer.to_string(),
                    )
                    .set("text-anchor", "middle"),
                );
        }
        group = group
            .add(text(
                MARGIN,
                chart_top + 8.0,
                9.0,
                SANS,
                &tick_label(largest, largest),
            ))
            .add(text(MARGIN, chart_top + CHART_HEIGHT, 9.0, SANS, "0"));
        bottom = chart_top + CHART_HEIGHT + 20.0;
    } else {
        let note = "the two models tokenize this text differently: no difference map or divergence";
        bottom += 14.0;
        group = group.add(text(MARGIN, bottom, 11.0, SANS, note).set("fill", FAINT_INK));
        bottom += 10.0;
    }
    let lines: Vec<(f32, &str, f32)> = notes
        .iter()
        .map(|(x, note)| (*x, note.as_str(), 10.0))
        .collect();
    let width = figure_width(left - GAP + MARGIN, caption, &lines);
    document(width, bottom + MARGIN, group)
}

/// Every head's statistics as a layers × heads grid coloured by `statistic` (viridis from 0 to
/// its largest value), each cell marked with its head's label: the Heads tab's grid.
pub fn heads(stats: &[Vec<HeadStats>], statistic: Statistic, caption: &Caption) -> Document {
    let width = crate::views::heads::natural_width(stats.first().map_or(0, Vec::len));
    from_scene(
        crate::views::heads::scene(stats, statistic, None, width),
        caption,
    )
}

fn png_data_uri(rgba: &[u8], size: usize) -> String {
    let mut bytes = std::io::Cursor::new(Vec::new());
    let encoded = image::RgbaImage::from_raw(size as u32, size as u32, rgba.to_vec())
        .map(|img| img.write_to(&mut bytes, image::ImageFormat::Png).is_ok())
        .unwrap_or(false);
    if !encoded {
        return String::new();
    }
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes.get_ref())
    )
}

/// The fonts figures are drawn with: egui's own, then whatever the system has (for CJK).
fn font_database() -> Arc<resvg::usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut fonts = resvg::usvg::fontdb::Database::new();
            fonts.load_font_data(epaint_default_fonts::UBUNTU_LIGHT.to_vec());
            fonts.load_font_data(epaint_default_fonts::HACK_REGULAR.to_vec());
            fonts.load_system_fonts();
            fonts.set_sans_serif_family("Ubuntu");
            fonts.set_monospace_family("Hack");
            Arc::new(fonts)
        })
        .clone()
}

/// Rasterises a figure to PNG bytes at `scale` (1, 2 or 4 for slides and print).
pub fn to_png(document: &Document, scale: f32) -> anyhow::Result<Vec<u8>> {
    let options = resvg::usvg::Options {
        fontdb: font_database(),
        ..Default::default()
    };
    let tree = resvg::usvg::Tree::from_str(&document.to_string(), &options)
        .map_err(|err| anyhow::anyhow!("cannot draw the figure ({err})"))?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .ok_or_else(|| anyhow::anyhow!("scale {scale} is not usable"))?;
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| {
            anyhow::anyhow!(
                "the figure is too large to draw at {scale}x ({}x{} pixels)",
                size.width(),
                size.height()
            )
        })?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|err| anyhow::anyhow!("cannot encode the PNG ({err})"))
}
