//! One head's attention as a heatmap: query rows × key columns, drawn as a single texture with
//! token labels, a colour bar and an exact-value tooltip.

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, TextureHandle, Vec2};

use super::textures::TextureCache;
use super::{UiAction, ViewState};
use crate::analysis::{attention_weight, HeadChoice};
use crate::model::Analysis;
use crate::render::{attention_color, difference_color, tick_label, MASKED_COLOR};

/// Largest cell side in points; small inputs should not turn into a wall of colour.
const MAX_CELL: f32 = 32.0;
/// Smallest cell side in points: below a point the texture is sampled down by the GPU, so 512
/// tokens still fit a narrow column.
const MIN_CELL: f32 = 0.25;
/// Cells at least this big get a label on every row and column.
const LABEL_EVERY_CELL: f32 = 9.0;
const COLOR_BAR_WIDTH: f32 = 16.0;
/// Between the matrix and its colour bar.
const BAR_GAP: f32 = 12.0;
/// Between the colour bar and its labels.
const BAR_LABEL_GAP: f32 = 4.0;
/// The colour bar's labels.
const BAR_FONT_SIZE: f32 = 11.0;
/// The key under the colour bar of causal models.
const MASKED_LABEL: &str = "masked";

/// Layer picker, and the head picker (with the mean) when `with_heads`; arrow keys step them
/// when no text field has focus.
pub fn layer_head_controls(
    ui: &mut egui::Ui,
    state: &mut ViewState,
    layers: usize,
    heads: usize,
    with_heads: bool,
) {
    ui.horizontal(|ui| {
        ui.label("Layer");
        if ui
            .small_button("<")
            .on_hover_text("Previous layer (Up arrow)")
            .clicked()
        {
            state.layer = state.layer.saturating_sub(1);
        }
        layer_picker(
            ui,
            "layer",
            &mut state.layer,
            layers,
            |layer| format!("{layer}"),
            "Transformer layer, 0-based",
        );
        if ui
            .small_button(">")
            .on_hover_text("Next layer (Down arrow)")
            .clicked()
        {
            state.layer = (state.layer + 1).min(layers.saturating_sub(1));
        }
        if !with_heads {
            return;
        }
        ui.separator();
        ui.label("Head");
        let head_label = |head: HeadChoice| match head {
            HeadChoice::Head(head) => format!("{head}"),
            HeadChoice::Mean => "mean".to_owned(),
        };
        egui::ComboBox::from_id_salt("head")
            .selected_text(head_label(state.head))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut state.head, HeadChoice::Mean, "mean of all heads");
                for head in 0..heads {
                    ui.selectable_value(&mut state.head, HeadChoice::Head(head), format!("{head}"));
                }
            })
            .response
            .on_hover_text("Attention head, 0-based (Left and Right arrows step)");
    });

    if !ui.ctx().egui_wants_keyboard_input() {
        let (left, right, up, down) = ui.input(|input| {
            (
                input.key_pressed(egui::Key::ArrowLeft),
                input.key_pressed(egui::Key::ArrowRight),
                input.key_pressed(egui::Key::ArrowUp),
                input.key_pressed(egui::Key::ArrowDown),
            )
        });
        if up {
            state.layer = state.layer.saturating_sub(1);
        }
        if down {
            state.layer = (state.layer + 1).min(layers.saturating_sub(1));
        }
        if with_heads && (left || right) {
            state.head = step_head(state.head, heads, true, right);
        }
    }
}

/// A drop-down of layers `0..layers`, each shown by `label`.
pub fn layer_picker(
    ui: &mut egui::Ui,
    id: &str,
    layer: &mut usize,
    layers: usize,
    label: impl Fn(usize) -> String,
    hover: &str,
) {
    egui::ComboBox::from_id_salt(id)
        .selected_text(label(*layer))
        .show_ui(ui, |ui| {
            for choice in 0..layers {
                ui.selectable_value(layer, choice, label(choice));
            }
        })
        .response
        .on_hover_text(hover);
}

/// The next or previous head, with the mean (when allowed) after the last head.
fn step_head(head: HeadChoice, heads: usize, allow_mean: bool, forward: bool) -> HeadChoice {
    let slots = heads + usize::from(allow_mean);
    let index = match head {
        HeadChoice::Head(head) => head,
        HeadChoice::Mean => heads,
    };
    let next = if forward {
        (index + 1) % slots
    } else {
        (index + slots - 1) % slots
    };
    if next == heads {
        HeadChoice::Mean
    } else {
        HeadChoice::Head(next)
    }
}

/// The heatmap tab.
pub fn heatmap_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    state: &mut ViewState,
    textures: &mut TextureCache,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    layer_head_controls(ui, state, analysis.layers(), analysis.heads(), true);
    ui.horizontal(|ui| {
        ui.checkbox(&mut state.fixed_scale, "Fixed 0–1 scale")
            .on_hover_text(
                "Colour 0 to 1 for every head, instead of 0 to this head's largest weight",
            );
        ui.weak(format!(
            "Layer {} · {} · rows attend to columns",
            state.layer, state.head
        ));
    });
    let (texture, max) = textures.full(
        ui.ctx(),
        analysis,
        state.layer,
        state.head,
        state.fixed_scale,
    );
    let (layer, head) = (state.layer, state.head);
    let weight = |query, key| attention_weight(analysis, layer, head, query, key);
    if let Some(action) = draw_matrix(
        ui,
        analysis,
        &weight,
        &texture,
        ColorScale::Sequential { max },
        state.selected_token,
    ) {
        actions.push(action);
    }
    actions
}

/// Draws the labelled matrix with its colour bar; returns a selection when a cell is clicked.
pub fn draw_matrix(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    weight: &dyn Fn(usize, usize) -> f32,
    texture: &TextureHandle,
    scale: ColorScale,
    selected: Option<usize>,
) -> Option<UiAction> {
    let tokens = analysis.len();
    let available = ui.available_size();
    let labels: Vec<String> = (0..tokens).map(|i| analysis.display_token(i)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f32;

    // Labels get room only when cells can carry them.
    let guess_cell =
        ((available.x.min(available.y) - 120.0) / tokens as f32).clamp(MIN_CELL, MAX_CELL);
    let font_size = (guess_cell * 0.8).clamp(8.0, 13.0);
    let label_room = if guess_cell >= 4.0 {
        (longest * font_size * 0.62 + 8.0).min(110.0)
    } else {
        0.0
    };
    // Room for the colour bar: its gap, the bar, and its widest label (the "masked" key too),
    // measured, so that no label is ever cut at the window's edge.
    let label_width = |text: String| {
        ui.painter()
            .layout_no_wrap(text, FontId::proportional(BAR_FONT_SIZE), Color32::WHITE)
            .size()
            .x
    };
    let widest_tick = color_bar_ticks(scale)
        .into_iter()
        .map(|(_, text)| label_width(text))
        .fold(0.0, f32::max);
    let widest = if analysis.causal {
        widest_tick.max(label_width(MASKED_LABEL.to_owned()))
    } else {
        widest_tick
    };
    let bar_room = BAR_GAP + COLOR_BAR_WIDTH + BAR_LABEL_GAP + widest + 4.0;
    let cell = ((available.x - label_room - bar_room).min(available.y - label_room)
        / tokens as f32)
        .clamp(MIN_CELL, MAX_CELL);
    let side = cell * tokens as f32;
    // The colour bar's end labels reach half a line past the matrix: above it, the column
    // labels' room covers that, or when there are none this much.
    let top_room = label_room.max(BAR_FONT_SIZE);
    let (response, painter) = ui.allocate_painter(
        Vec2::new(
            label_room + side + bar_room,
            top_room + side.max(60.0) + if analysis.causal { 44.0 } else { 8.0 },
        ),
        Sense::click(),
    );
    let origin = response.rect.min + Vec2::new(label_room, top_room);
    let matrix = Rect::from_min_size(origin, Vec2::splat(side));

    painter.image(
        texture.id(),
        matrix,
        Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
        Color32::WHITE,
    );

    let text_color = ui.visuals().text_color();
    let font = FontId::monospace(font_size);
    if label_room > 0.0 {
        let every = (LABEL_EVERY_CELL / cell).ceil().max(1.0) as usize;
        for (index, label) in labels
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0 || Some(*i) == selected)
        {
            let center = cell * (index as f32 + 0.5);
            let color = if Some(index) == selected {
                ui.visuals().selection.stroke.color
            } else {
                text_color
            };
            painter.text(
                Pos2::new(matrix.left() - 4.0, matrix.top() + center),
                Align2::RIGHT_CENTER,
                label,
                font.clone(),
                color,
            );
            let galley = painter.layout_no_wrap(label.clone(), font.clone(), color);
            let anchor = Pos2::new(
                matrix.left() + center - galley.size().y / 2.0,
                matrix.top() - 4.0,
            );
            painter.add(
                egui::epaint::TextShape::new(anchor, galley, color)
                    .with_angle(-std::f32::consts::FRAC_PI_2),
            );
        }
    }
    if let Some(token) = selected.filter(|&t| t < tokens) {
        let stroke = Stroke::new(1.5, ui.visuals().selection.stroke.color);
        let row = Rect::from_min_size(
            Pos2::new(matrix.left(), matrix.top() + cell * token as f32),
            Vec2::new(side, cell),
        );
        let column = Rect::from_min_size(
            Pos2::new(matrix.left() + cell * token as f32, matrix.top()),
            Vec2::new(cell, side),
        );
        painter.rect_stroke(row, 0.0, stroke, StrokeKind::Outside);
        painter.rect_stroke(column, 0.0, stroke, StrokeKind::Outside);
    }
    let bar = Rect::from_min_size(
        Pos2::new(matrix.right() + BAR_GAP, matrix.top()),
        Vec2::new(COLOR_BAR_WIDTH, side.max(60.0)),
    );
    draw_color_bar(&painter, bar, scale, text_color);
    if analysis.causal {
        draw_masked_key(&painter, bar, text_color);
    }

    let hovered_cell = response
        .hover_pos()
        .filter(|pos| matrix.contains(*pos))
        .map(|pos| {
            let row = (((pos.y - matrix.top()) / cell) as usize).min(tokens - 1);
            let col = (((pos.x - matrix.left()) / cell) as usize).min(tokens - 1);
            (row, col)
        });
    if let Some((row, col)) = hovered_cell {
        let weight = weight(row, col);
        let (query, key) = (&labels[row], &labels[col]);
        response.clone().on_hover_ui_at_pointer(|ui| {
            if analysis.is_masked(row, col) {
                ui.label(format!("{query} cannot attend to {key}"));
                ui.weak("masked: a causal model only sees earlier tokens");
                ui.weak(format!("query {row}, key {col}"));
                return;
            }
            ui.label(format!("{query} attends to {key}"));
            let what = match scale {
                ColorScale::Sequential { .. } => "weight",
                ColorScale::Diverging { .. } => "difference A − B",
            };
            ui.monospace(format!("{what} {weight:.6}"));
            ui.weak(format!("query {row}, key {col}"));
        });
        if response.clicked() {
            return Some(UiAction::SelectToken(Some(row)));
        }
    }
    None
}

/// How matrix values map to colours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColorScale {
    /// Viridis from 0 to `max` (attention weights).
    Sequential {
        /// The value of the brightest colour.
        max: f32,
    },
    /// Red–white–blue from `-max_abs` to `max_abs` (differences).
    Diverging {
        /// The value of the strongest colours.
        max_abs: f32,
    },
}

impl ColorScale {
    /// The values of the lowest and the highest colour.
    fn range(self) -> (f32, f32) {
        match self {
            ColorScale::Sequential { max } => (0.0, max),
            ColorScale::Diverging { max_abs } => (-max_abs, max_abs),
        }
    }
}

/// Below the colour bar: the grey of masked cells, named, for causal models.
fn draw_masked_key(painter: &egui::Painter, bar: Rect, text_color: Color32) {
    let [r, g, b] = MASKED_COLOR;
    let swatch = Rect::from_min_size(
        Pos2::new(bar.left(), bar.bottom() + 14.0),
        Vec2::splat(COLOR_BAR_WIDTH),
    );
    painter.rect_filled(swatch, 0.0, Color32::from_rgb(r, g, b));
    painter.text(
        Pos2::new(swatch.right() + BAR_LABEL_GAP, swatch.center().y),
        Align2::LEFT_CENTER,
        MASKED_LABEL,
        FontId::proportional(BAR_FONT_SIZE),
        text_color,
    );
}

/// A vertical bar of the scale's colours from its low (bottom) to its high end, with three ticks.
fn draw_color_bar(painter: &egui::Painter, rect: Rect, scale: ColorScale, text_color: Color32) {
    const STEPS: usize = 64;
    let step_height = rect.height() / STEPS as f32;
    for step in 0..STEPS {
        let t = step as f32 / (STEPS - 1) as f32;
        let [r, g, b] = match scale {
            ColorScale::Sequential { .. } => attention_color(t, 1.0),
            ColorScale::Diverging { .. } => difference_color(2.0 * t - 1.0, 1.0),
        };
        let top = rect.bottom() - step_height * (step + 1) as f32;
        painter.rect_filled(
            Rect::from_min_size(
                Pos2::new(rect.left(), top),
                Vec2::new(rect.width(), step_height + 0.5),
            ),
            0.0,
            Color32::from_rgb(r, g, b),
        );
    }
    for (fraction, label) in color_bar_ticks(scale) {
        let y = rect.bottom() - rect.height() * fraction;
        painter.text(
            Pos2::new(rect.right() + BAR_LABEL_GAP, y),
            Align2::LEFT_CENTER,
            label,
            FontId::proportional(BAR_FONT_SIZE),
            text_color,
        );
    }
}

/// The colour bar's ticks: bottom, middle and top, as a fraction of its height and a label.
fn color_bar_ticks(scale: ColorScale) -> [(f32, String); 3] {
    let (low, high) = scale.range();
    [(0.0, low), (0.5, (low + high) / 2.0), (1.0, high)]
        .map(|(fraction, value)| (fraction, tick_label(value, high - low)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_stepping_wraps_through_the_mean() {
        assert_eq!(
            step_head(HeadChoice::Head(11), 12, true, true),
            HeadChoice::Mean
        );
        assert_eq!(
            step_head(HeadChoice::Mean, 12, true, true),
            HeadChoice::Head(0)
        );
        assert_eq!(
            step_head(HeadChoice::Head(0), 12, true, false),
            HeadChoice::Mean
        );
        assert_eq!(
            step_head(HeadChoice::Head(11), 12, false, true),
            HeadChoice::Head(0)
        );
    }
}
