//! Every layer × head as a grid of thumbnails (BertViz's model view): each head's attention, or
//! its norm-based attention, max-pooled to at most 96 cells a side and coloured from 0 to its
//! own largest value.

use crate::model::Analysis;
use crate::render::parts::{grid_labels, notes};
use crate::render::scene::{
    Image, Paint, Pixels, Point, Raster, RasterKey, Rect, Scene, Shape, Stroke, Target,
};
use crate::render::{head_thumbnail, heatmap_rgba, max_value};

/// Largest side of a thumbnail, in cells.
pub const THUMBNAIL_CELLS: usize = 96;
/// Left of and above the grid: the layer and head numbers.
const LABEL_ROOM: f32 = 30.0;
const GAP: f32 = 3.0;
/// The smallest and largest thumbnails, in points.
const THUMB: std::ops::RangeInclusive<f32> = 24.0..=96.0;

/// What the overview shows of each head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overview {
    /// Norm-based attention ‖α·f(x)‖ instead of attention weights.
    pub norms: bool,
}

/// What the overview marks on its grid: heads switched off, the head open in the heatmap, the
/// head under the pointer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks<'a> {
    /// Heads `(layer, head)` switched off: crossed out.
    pub ablated: &'a [(usize, usize)],
    /// The head the heatmap shows: outlined.
    pub open: Option<(usize, usize)>,
    /// The head under the pointer: outlined faintly.
    pub hovered: Option<(usize, usize)>,
}

/// The width a figure gives the grid: thumbnails of up to 72 points, about 960 in all.
pub fn natural_width(heads: usize) -> f32 {
    let thumb = (960.0 / heads.max(1) as f32 - 4.0).clamp(*THUMB.start(), 72.0);
    LABEL_ROOM + (thumb + GAP) * heads as f32
}

/// The note under the grid.
fn note(overview: Overview, causal: bool) -> String {
    let what = if overview.norms {
        "‖α·f(x)‖"
    } else {
        "weight"
    };
    let masked = if causal { " · grey: masked" } else { "" };
    format!("rows: layers · columns: heads · each map coloured from 0 to its own largest {what}{masked}")
}

/// The grid in `width` points (thumbnails as large as fit, within 24 to 96 points): a named
/// region per head ("layer 1, head 2"). Fails when norm-based attention is asked of a run that
/// computed no value norms.
pub fn scene<'a>(
    analysis: &'a Analysis,
    overview: Overview,
    marks: &Marks<'_>,
    width: f32,
) -> Result<Scene<'a>, String> {
    if overview.norms && analysis.value_norms.is_none() {
        return Err("this run computed no value norms".to_owned());
    }
    let (layers, heads) = (analysis.layers(), analysis.heads());
    let thumb =
        ((width - LABEL_ROOM) / heads.max(1) as f32 - GAP).clamp(*THUMB.start(), *THUMB.end());
    let pitch = thumb + GAP;
    let grid_height = pitch * layers as f32;
    let mut scene = Scene::new(
        LABEL_ROOM + pitch * heads as f32,
        LABEL_ROOM + grid_height + 22.0,
        format!("{layers} layers × {heads} heads"),
    );
    grid_labels(
        &mut scene, LABEL_ROOM, LABEL_ROOM, pitch, thumb, layers, heads,
    );
    for layer in 0..layers {
        for head in 0..heads {
            let rect = Rect::from_size(
                LABEL_ROOM + pitch * head as f32,
                LABEL_ROOM + pitch * layer as f32,
                thumb,
                thumb,
            );
            let norms = overview.norms;
            scene.add(Shape::Image(Image {
                rect,
                uv: Rect::UNIT,
                raster: Raster::new(
                    RasterKey::of(("thumbnail", layer, head, norms)),
                    move || {
                        // Checked above: with norms asked for, the run has them.
                        let (values, size) =
                            head_thumbnail(analysis, layer, head, norms, THUMBNAIL_CELLS)
                                .unwrap_or_else(|| {
                                    analysis.attention_thumbnail(layer, head, THUMBNAIL_CELLS)
                                });
                        Pixels {
                            width: size,
                            height: size,
                            rgba: heatmap_rgba(&values, max_value(&values)),
                        }
                    },
                ),
                vector_cells: false,
            }));
            if marks.ablated.contains(&(layer, head)) {
                scene.fill(rect, Paint::Rgba([0, 0, 0, 150]));
                let stroke = Stroke::new(2.0, Paint::Alert);
                scene.line(rect.min, rect.max, stroke);
                scene.line(
                    Point::new(rect.max.x, rect.min.y),
                    Point::new(rect.min.x, rect.max.y),
                    stroke,
                );
                scene.outline(rect, stroke);
            }
            if marks.open == Some((layer, head)) {
                scene.outline(rect.expand(2.0), Stroke::new(2.0, Paint::Accent));
            }
            if marks.hovered == Some((layer, head)) {
                scene.outline(rect.expand(1.0), Stroke::new(1.0, Paint::Ink));
            }
            let off = if marks.ablated.contains(&(layer, head)) {
                " (switched off)"
            } else {
                ""
            };
            scene.region(
                rect,
                Target::Head { layer, head },
                Some(format!("layer {layer}, head {head}{off}")),
            );
        }
    }
    notes(
        &mut scene,
        0.0,
        LABEL_ROOM + grid_height + 4.0,
        &[note(overview, analysis.causal)],
    );
    scene.width = scene.width.max(crate::render::parts::notes_width(
        0.0,
        &[note(overview, analysis.causal)],
    ));
    Ok(scene)
}
