//! Head statistics (Clark et al. 2019) as a layers × heads grid coloured by one statistic
//! (viridis from 0 to its largest value), each cell marked with its head's kind, with a colour
//! bar and a key.

use crate::analysis::stats::{HeadStats, Statistic};
use crate::render::attention_color;
use crate::render::parts::{color_bar, grid_labels, notes, notes_width, ColorScale, BAR_GAP};
use crate::render::scene::{Align, Baseline, Font, Paint, Rect, Scene, Stroke, Target, Text};

/// Left of and above the grid: the layer and head numbers.
const LABEL_ROOM: f32 = 30.0;
const GAP: f32 = 2.0;
/// The smallest and largest cells, in points.
const CELL: std::ops::RangeInclusive<f32> = 14.0..=44.0;
/// Right of the grid: the colour bar and its labels.
const BAR_ROOM: f32 = BAR_GAP + 16.0 + 4.0 + 48.0;

/// The width a figure gives the grid: cells of up to 44 points, about 720 in all.
pub fn natural_width(heads: usize) -> f32 {
    let cell = (720.0 / heads.max(1) as f32 - GAP).clamp(*CELL.start(), *CELL.end());
    LABEL_ROOM + (cell + GAP) * heads as f32 + BAR_ROOM
}

/// The grid of `stats` coloured by `statistic` in `width` points, with a named region per head
/// ("layer 1, head 3: entropy 2.104, mixed"); `hovered` is outlined.
pub fn scene(
    stats: &[Vec<HeadStats>],
    statistic: Statistic,
    hovered: Option<(usize, usize)>,
    width: f32,
) -> Scene<'static> {
    let heads = stats.first().map_or(0, Vec::len);
    let layers = stats.len();
    let cell = ((width - LABEL_ROOM - BAR_ROOM) / heads.max(1) as f32 - GAP)
        .clamp(*CELL.start(), *CELL.end());
    let pitch = cell + GAP;
    let max = stats
        .iter()
        .flatten()
        .map(|s| statistic.of(s))
        .fold(0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    let grid_bottom = LABEL_ROOM + pitch * layers as f32;
    let key = [
        format!(
            "rows: layers · columns: heads · colour: {}",
            statistic.description()
        ),
        "P previous-token, N next-token, S [CLS]/[SEP], B broad heads (Clark et al. 2019)"
            .to_owned(),
    ];
    let mut scene = Scene::new(
        (LABEL_ROOM + pitch * heads as f32 + BAR_ROOM).max(notes_width(0.0, &key)),
        grid_bottom + 12.0 + 16.0 * key.len() as f32,
        format!(
            "Head statistics, {layers} layers × {heads} heads, coloured by {}",
            statistic.name()
        ),
    );
    grid_labels(
        &mut scene, LABEL_ROOM, LABEL_ROOM, pitch, cell, layers, heads,
    );
    for (layer, row) in stats.iter().enumerate() {
        for (head, head_stats) in row.iter().enumerate() {
            let rect = Rect::from_size(
                LABEL_ROOM + pitch * head as f32,
                LABEL_ROOM + pitch * layer as f32,
                cell,
                cell,
            );
            let value = statistic.of(head_stats);
            scene.fill(rect, Paint::Rgb(attention_color(value, max)));
            let mark = head_stats.label.mark();
            if !mark.is_empty() {
                // Light marks on dark cells, dark on light (viridis brightens with the value).
                let ink = if value / max > 0.6 {
                    Paint::Rgb([0, 0, 0])
                } else {
                    Paint::Rgb([255, 255, 255])
                };
                scene.text(
                    Text::new(rect.center(), mark, (cell * 0.5).min(13.0), Font::Sans)
                        .anchor(Align::Center, Baseline::Middle)
                        .paint(ink),
                );
            }
            if hovered == Some((layer, head)) {
                scene.outline(rect.expand(1.5), Stroke::new(1.5, Paint::Ink));
            }
            scene.region(
                rect,
                Target::Head { layer, head },
                Some(format!(
                    "layer {layer}, head {head}: {} {value:.3}, {}",
                    statistic.name(),
                    head_stats.label.name()
                )),
            );
        }
    }
    color_bar(
        &mut scene,
        Rect::from_size(
            LABEL_ROOM + pitch * heads as f32 + BAR_GAP,
            LABEL_ROOM,
            16.0,
            (pitch * layers as f32 - GAP).max(40.0),
        ),
        ColorScale::Sequential { max },
        false,
    );
    notes(&mut scene, 0.0, grid_bottom + 8.0, &key);
    scene.height = scene.height.max(LABEL_ROOM + 40.0 + 8.0);
    scene
}
