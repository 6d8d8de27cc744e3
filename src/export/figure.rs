//! Figures for slides and papers: a titled heatmap with token labels and a colour bar, the
//! token-to-token lines, the layers × heads overview. Each is drawn once as SVG; PNG exports are
//! that SVG rasterised by resvg at 1×, 2× or 4×, with the fonts egui uses embedded, so both
//! formats look the same on every machine.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use svg::node::element::{
    Group, Image, Line, LinearGradient, Rectangle, Stop, Text as TextElement,
};
use svg::Document;

use crate::analysis::{shown_map, HeadChoice};
use crate::model::Analysis;
use crate::render::{attention_color, head_color, heatmap_rgba, max_value, tick_label};

const MARGIN: f32 = 24.0;
const TITLE_SIZE: f32 = 18.0;
const SUBTITLE_SIZE: f32 = 12.0;
const SANS: &str = "Ubuntu, 'DejaVu Sans', sans-serif";
const MONO: &str = "Hack, 'DejaVu Sans Mono', monospace";
const INK: &str = "#202020";
const FAINT_INK: &str = "#606060";

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
    let tokens = analysis.len();
    let values = shown_map(analysis, layer, head);
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

/// Every layer × head as a grid of small maps (raster thumbnails inside the SVG).
pub fn overview(analysis: &Analysis, caption: &Caption) -> Document {
    let (layers, heads) = (analysis.layers(), analysis.heads());
    let thumb = (960.0 / heads as f32 - 4.0).clamp(24.0, 72.0);
    let pitch = thumb + 4.0;
    let (mut group, top) = captioned(caption);
    let left = MARGIN + 28.0;
    let grid_top = top + 18.0;
    for head in 0..heads {
        group = group.add(
            text(
                left + pitch * head as f32 + thumb / 2.0,
                grid_top - 6.0,
                11.0,
                SANS,
                &head.to_string(),
            )
            .set("text-anchor", "middle"),
        );
    }
    for layer in 0..layers {
        let y = grid_top + pitch * layer as f32;
        group = group.add(
            text(
                left - 8.0,
                y + thumb / 2.0 + 4.0,
                11.0,
                SANS,
                &layer.to_string(),
            )
            .set("text-anchor", "end"),
        );
        for head in 0..heads {
            let (values, size) = analysis.attention_thumbnail(layer, head, 96);
            let rgba = heatmap_rgba(&values, max_value(&values));
            group = group.add(
                Image::new()
                    .set("x", left + pitch * head as f32)
                    .set("y", y)
                    .set("width", thumb)
                    .set("height", thumb)
                    .set("preserveAspectRatio", "none")
                    .set("style", "image-rendering:pixelated")
                    .set("href", png_data_uri(&rgba, size)),
            );
        }
    }
    let note = if analysis.causal {
        "rows: layers · columns: heads · each map coloured from 0 to its own largest weight · grey: masked"
    } else {
        "rows: layers · columns: heads · each map coloured from 0 to its own largest weight"
    };
    group = group.add(text(MARGIN, grid_top - 22.0, 11.0, SANS, note).set("fill", FAINT_INK));
    let width = figure_width(
        left + pitch * heads as f32 + MARGIN,
        caption,
        &[(MARGIN, note, 11.0)],
    );
    let height = grid_top + pitch * layers as f32 + MARGIN;
    document(width, height, group)
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
