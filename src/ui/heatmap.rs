//! One head's attention as a heatmap: query rows × key columns, drawn as a single texture with
//! token labels, a colour bar and an exact-value tooltip.

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, TextureHandle, Vec2};

use super::textures::TextureCache;
use super::widgets::controls::{attention_kind_switch, layer_head_controls};
use super::widgets::matrix::{zoom_controls, zoom_keys};
use super::{AttentionKind, UiAction, ViewState};
use crate::analysis::attention_weight;
use crate::model::Analysis;
pub use crate::render::matrix::MatrixZoom;
use crate::render::{attention_color, difference_color, tick_label, MASKED_COLOR};

const COLOR_BAR_WIDTH: f32 = 16.0;
/// Between the matrix and its colour bar.
const BAR_GAP: f32 = 12.0;
/// Between the colour bar and its labels.
const BAR_LABEL_GAP: f32 = 4.0;
/// The colour bar's labels.
const BAR_FONT_SIZE: f32 = 11.0;
/// The key under the colour bar of causal models.
const MASKED_LABEL: &str = "masked";

/// The heatmap tab. `combined` is the map of a kind that combines heads (rollout through the
/// layer, or flow into the selected tokens: see [`AttentionKind::is_combined`]), once the app
/// has computed it off the UI thread.
pub fn heatmap_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    combined: Option<&[f32]>,
    state: &mut ViewState,
    textures: &mut TextureCache,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let kind = state.attention_kind;
    let is_combined = kind.is_combined();
    let is_norms = kind == AttentionKind::Norms;
    layer_head_controls(ui, state, analysis.layers(), analysis.heads(), !is_combined);
    ui.horizontal(|ui| {
        attention_kind_switch(ui, &mut state.attention_kind, true);
        ui.separator();
        ui.add_enabled_ui(!is_norms, |ui| {
            ui.checkbox(&mut state.fixed_scale, "Fixed 0–1 scale")
                .on_hover_text(
                    "Colour 0 to 1 for every head, instead of 0 to this head's largest weight",
                )
                .on_disabled_hover_text(
                    "Norms are not probabilities: they colour 0 to their largest value",
                );
        });
        ui.weak(if kind == AttentionKind::Rollout {
            format!(
                "Rollout through layers 0–{} · rows draw on columns",
                state.layer
            )
        } else if kind == AttentionKind::Flow {
            format!(
                "Flow through layers 0–{} into the selected rows (else the first) from each column · shift-click rows to add them",
                state.layer
            )
        } else if is_norms {
            format!(
                "Layer {} · {} · ‖α·f(x)‖ of columns moved into rows",
                state.layer, state.head
            )
        } else {
            format!(
                "Layer {} · {} · rows attend to columns",
                state.layer, state.head
            )
        });
        ui.separator();
        zoom_controls(ui, &mut state.heatmap_zoom);
    });
    zoom_keys(ui, &mut state.heatmap_zoom);
    let tokens = analysis.len();
    let layer = state.layer;
    // The map, the value of its brightest colour, and each cell's weight for the tooltip.
    let head = state.head;
    let (texture, max, weight): (_, _, Box<dyn Fn(usize, usize) -> f32 + '_>) = if is_combined {
        let Some(values) = combined else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(if kind == AttentionKind::Flow {
                    "Finding the maximum flow into the selected tokens…"
                } else {
                    "Rolling attention out through the layers…"
                });
            });
            return actions;
        };
        let (texture, max) =
            textures.combined(ui.ctx(), values, tokens, (kind, layer), state.fixed_scale);
        (
            texture,
            max,
            Box::new(move |query, key| values[query * tokens + key]),
        )
    } else if is_norms {
        let Some((texture, max)) = textures.norms(ui.ctx(), analysis, layer, head) else {
            ui.label("This run computed no value norms; change the text to run it again.");
            return actions;
        };
        let weight = move |query, key| {
            crate::analysis::norms::norm_weight(analysis, layer, head, query, key).unwrap_or(0.0)
        };
        (texture, max, Box::new(weight))
    } else {
        let (texture, max) = textures.full(ui.ctx(), analysis, layer, head, state.fixed_scale);
        let weight = move |query, key| attention_weight(analysis, layer, head, query, key);
        (texture, max, Box::new(weight))
    };
    let selection = state.selection();
    selection_summary(ui, analysis, &*weight, &selection);
    let action = draw_matrix(
        ui,
        analysis,
        &*weight,
        &texture,
        ColorScale::Sequential { max },
        &selection,
        &mut state.heatmap_zoom,
    );
    actions.extend(action);
    actions
}

/// How many tokens the selection summary names on each side.
const SUMMARY_TOKENS: usize = 4;

/// One line on the selected tokens of a map: the keys the selection draws on most, and the
/// queries that draw most on the selection, each weight summed over the selected tokens.
fn selection_summary(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    weight: &dyn Fn(usize, usize) -> f32,
    selection: &[usize],
) {
    if selection.is_empty() {
        return;
    }
    let tokens = analysis.len();
    let strongest = |sums: Vec<f32>| -> String {
        crate::model::heads::top_k(&sums, SUMMARY_TOKENS)
            .into_iter()
            .map(|(index, sum)| format!("{} {sum:.2}", analysis.display_token(index as usize)))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let from: Vec<f32> = (0..tokens)
        .map(|key| selection.iter().map(|&query| weight(query, key)).sum())
        .collect();
    let to: Vec<f32> = (0..tokens)
        .map(|query| selection.iter().map(|&key| weight(query, key)).sum())
        .collect();
    let names: Vec<String> = selection
        .iter()
        .map(|&token| analysis.display_token(token))
        .collect();
    ui.horizontal_wrapped(|ui| {
        ui.strong(format!("Selected: {}", names.join(" + ")))
            .on_hover_text("Shift- or ctrl-click tokens (chips, rows) to select several; click one to select it alone");
        ui.label(format!("draws most on {}", strongest(from)))
            .on_hover_text("Keys by their weight summed over the selected query rows");
        ui.label(format!("· drawn on most by {}", strongest(to)))
            .on_hover_text("Query rows by their weight summed over the selected key columns");
    });
}

/// Where a matrix of `tokens` rows lies on screen, zoomed: which tokens are in view and how big
/// their cells and labels are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatrixGeometry {
    /// The screen square the shown part fills.
    pub viewport: Rect,
    /// Rows (and columns) of the matrix.
    pub tokens: usize,
    /// A cell's side in points.
    pub cell: f32,
    /// The first shown row and column, in tokens (fractional while panning).
    pub first: Vec2,
    /// Token labels' font size.
    pub font_size: f32,
    /// Every this many rows (and columns) carries a label: 1 once labels fit.
    pub label_every: usize,
}

impl MatrixGeometry {
    /// The geometry of `zoom` applied to a matrix of `tokens` drawn in `viewport`.
    pub fn new(viewport: Rect, tokens: usize, zoom: &MatrixZoom) -> Self {
        let cell = viewport.width() / tokens as f32 * zoom.zoom;
        let font_size = (cell * 0.8).clamp(MIN_LABEL_FONT, MAX_LABEL_FONT);
        let label_every = ((font_size + 2.0) / cell).ceil().max(1.0) as usize;
        Self {
            viewport,
            tokens,
            cell,
            first: Vec2::new(zoom.left, zoom.top) * tokens as f32,
            font_size,
            label_every,
        }
    }

    /// The largest zoom worth having: cells of [`MAX_ZOOMED_CELL`] points.
    pub fn max_zoom(viewport: Rect, tokens: usize) -> f32 {
        (MAX_ZOOMED_CELL * tokens as f32 / viewport.width()).max(1.0)
    }

    /// Rows (or columns) at least partly in view, along one axis (0 = columns, 1 = rows).
    pub fn visible(&self, axis: usize) -> std::ops::Range<usize> {
        let first = self.first[axis];
        let shown = self.viewport.width() / self.cell;
        let start = first.floor().max(0.0) as usize;
        let end = ((first + shown).ceil() as usize).min(self.tokens);
        start..end
    }

    /// The screen x of column `column`'s left edge.
    fn cell_x(&self, column: usize) -> f32 {
        self.viewport.left() + (column as f32 - self.first.x) * self.cell
    }

    /// The screen y of row `row`'s top edge.
    fn cell_y(&self, row: usize) -> f32 {
        self.viewport.top() + (row as f32 - self.first.y) * self.cell
    }

    /// The whole row `row`, clipped to the viewport.
    fn row_rect(&self, row: usize) -> Rect {
        let top = self.cell_y(row);
        Rect::from_x_y_ranges(self.viewport.x_range(), top..=top + self.cell)
            .intersect(self.viewport)
    }

    /// The whole column `column`, clipped to the viewport.
    fn column_rect(&self, column: usize) -> Rect {
        let left = self.cell_x(column);
        Rect::from_x_y_ranges(left..=left + self.cell, self.viewport.y_range())
            .intersect(self.viewport)
    }

    /// The (row, column) under a screen position, if it is in view.
    pub fn cell_at(&self, pos: Pos2) -> Option<(usize, usize)> {
        if !self.viewport.contains(pos) {
            return None;
        }
        let row = self.first.y + (pos.y - self.viewport.top()) / self.cell;
        let column = self.first.x + (pos.x - self.viewport.left()) / self.cell;
        let last = self.tokens.checked_sub(1)?;
        Some(((row as usize).min(last), (column as usize).min(last)))
    }

    /// The texture coordinates of the shown part.
    fn uv(&self) -> Rect {
        let shown = self.viewport.width() / self.cell / self.tokens as f32;
        let min = (self.first / self.tokens as f32).to_pos2();
        Rect::from_min_size(min, Vec2::splat(shown))
    }
}

/// The largest cell when the whole matrix is shown: a few tokens should not become a wall of
/// colour.
const MAX_FIT_CELL: f32 = 64.0;
/// Zooming stops at cells this big.
const MAX_ZOOMED_CELL: f32 = 48.0;
const MIN_LABEL_FONT: f32 = 8.0;
const MAX_LABEL_FONT: f32 = 12.0;

/// Draws the labelled matrix with its colour bar, filling the room it has; the mouse wheel
/// zooms at the pointer, dragging pans, double-click fits. Returns a selection when a cell is
/// clicked.
pub fn draw_matrix(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    weight: &dyn Fn(usize, usize) -> f32,
    texture: &TextureHandle,
    scale: ColorScale,
    selected: &[usize],
    zoom: &mut MatrixZoom,
) -> Option<UiAction> {
    let tokens = analysis.len();
    if tokens == 0 {
        return None;
    }
    let available = ui.available_size();
    let labels: Vec<String> = (0..tokens).map(|i| analysis.display_token(i)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f32;

    // Labels always have room: zooming in makes them appear on any input length.
    let label_room = (longest * MAX_LABEL_FONT * 0.62 + 8.0).min(110.0);
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
    let masks = analysis.causal && scale != ColorScale::Similarity;
    let widest = if masks {
        widest_tick.max(label_width(MASKED_LABEL.to_owned()))
    } else {
        widest_tick
    };
    let bar_room = BAR_GAP + COLOR_BAR_WIDTH + BAR_LABEL_GAP + widest + 4.0;
    let bottom_room = if masks { 44.0 } else { 8.0 };
    let side = (available.x - label_room - bar_room)
        .min(available.y - label_room - bottom_room)
        .min(MAX_FIT_CELL * tokens as f32)
        .max(60.0);
    let (response, painter) = ui.allocate_painter(
        Vec2::new(
            label_room + side + bar_room,
            label_room + side + bottom_room,
        ),
        Sense::click_and_drag(),
    );
    let viewport = Rect::from_min_size(
        response.rect.min + Vec2::splat(label_room),
        Vec2::splat(side),
    );
    response.widget_info(|| {
        egui::WidgetInfo::labeled(
            egui::Role::Image,
            true,
            if scale == ColorScale::Similarity {
                format!("Similarity matrix, {tokens} × {tokens} tokens")
            } else {
                format!("Attention matrix, {tokens} × {tokens} tokens")
            },
        )
    });

    // Input first, so that this frame already draws the new zoom.
    let max_zoom = MatrixGeometry::max_zoom(viewport, tokens);
    let pointer = response.hover_pos().filter(|pos| viewport.contains(*pos));
    if let Some(pos) = pointer {
        let (scroll, pinch) = ui.input(|input| (input.smooth_scroll_delta(), input.zoom_delta()));
        let factor = pinch * (scroll.y * WHEEL_ZOOM_PER_POINT).exp();
        if factor != 1.0 {
            let anchor = (pos - viewport.min) / side;
            zoom.zoom_at(factor, (anchor.x, anchor.y), max_zoom);
            ui.input_mut(|input| input.smooth_scroll_delta = Vec2::ZERO);
        }
    }
    if response.dragged() && !zoom.is_fit() {
        let delta = -response.drag_delta() / (side * zoom.zoom);
        zoom.pan(delta.x, delta.y);
    }
    if response.double_clicked() {
        *zoom = MatrixZoom::default();
    }
    // Buttons and keys zoom without knowing the viewport: hold them to its largest zoom here.
    if zoom.zoom > max_zoom {
        zoom.zoom_at(max_zoom / zoom.zoom, (0.5, 0.5), max_zoom);
    }
    if !zoom.is_fit() && pointer.is_some() {
        ui.ctx().set_cursor_icon(if response.dragged() {
            egui::CursorIcon::Grabbing
        } else {
            egui::CursorIcon::Grab
        });
    }
    let geometry = MatrixGeometry::new(viewport, tokens, zoom);
    let hovered = response.hover_pos().and_then(|pos| geometry.cell_at(pos));

    painter.image(texture.id(), viewport, geometry.uv(), Color32::WHITE);

    let text_color = ui.visuals().text_color();
    let highlight = ui.visuals().selection.stroke.color;
    for &token in selected.iter().filter(|&&t| t < tokens) {
        let stroke = Stroke::new(1.5, highlight);
        painter.rect_stroke(geometry.row_rect(token), 0.0, stroke, StrokeKind::Outside);
        painter.rect_stroke(
            geometry.column_rect(token),
            0.0,
            stroke,
            StrokeKind::Outside,
        );
    }
    if let Some((row, column)) = hovered {
        // A crosshair: the hovered row and column, outlined in a colour that shows on every
        // part of the scale.
        let stroke = Stroke::new(1.0, text_color.gamma_multiply(0.8));
        painter.rect_stroke(geometry.row_rect(row), 0.0, stroke, StrokeKind::Inside);
        painter.rect_stroke(
            geometry.column_rect(column),
            0.0,
            stroke,
            StrokeKind::Inside,
        );
    }
    draw_token_labels(
        &painter,
        &geometry,
        &labels,
        label_room,
        selected,
        hovered,
        &LabelColors {
            plain: text_color,
            hovered: ui.visuals().strong_text_color(),
            selected: highlight,
            background: ui.visuals().panel_fill,
        },
    );

    let bar = Rect::from_min_size(
        Pos2::new(viewport.right() + BAR_GAP, viewport.top()),
        Vec2::new(COLOR_BAR_WIDTH, side),
    );
    draw_color_bar(&painter, bar, scale, text_color);
    if masks {
        draw_masked_key(&painter, bar, text_color);
    }

    if let Some((row, col)) = hovered {
        let weight = weight(row, col);
        let (query, key) = (&labels[row], &labels[col]);
        response.clone().on_hover_ui_at_pointer(|ui| {
            if scale == ColorScale::Similarity {
                ui.label(format!("{query} and {key}"));
                ui.monospace(format!("cosine similarity {weight:.6}"));
                ui.weak(format!("tokens {row} and {col}"));
                return;
            }
            if analysis.is_masked(row, col) {
                ui.label(format!("{query} cannot attend to {key}"));
                ui.weak("masked: a causal model only sees earlier tokens");
                ui.weak(format!("query {row}, key {col}"));
                return;
            }
            if weight.is_nan() {
                ui.label(format!("No flow into {query} computed"));
                ui.weak("shift-click its row to add it to the selection");
                return;
            }
            ui.label(format!("{query} attends to {key}"));
            let what = match scale {
                ColorScale::Sequential { .. } => "weight",
                ColorScale::Diverging { .. } => "difference A − B",
                ColorScale::Similarity => "cosine similarity",
            };
            ui.monospace(format!("{what} {weight:.6}"));
            ui.weak(format!("query {row}, key {col}"));
        });
        if response.clicked() {
            return Some(super::token_click(ui, row, selected));
        }
    }
    None
}

/// Zoom per point of mouse-wheel scroll: a wheel notch (about 50 points) zooms by about 1.1×.
const WHEEL_ZOOM_PER_POINT: f32 = 0.002;

/// Colours of token labels: plain, hovered (the crosshair's) and selected.
struct LabelColors {
    plain: Color32,
    hovered: Color32,
    selected: Color32,
    /// Behind the hovered and selected labels, hiding the neighbours they overlap.
    background: Color32,
}

/// Row labels left of the matrix and column labels above it, for every `label_every`-th token
/// in view, plus the selected and hovered ones (highlighted), clipped to their strips.
fn draw_token_labels(
    painter: &egui::Painter,
    geometry: &MatrixGeometry,
    labels: &[String],
    label_room: f32,
    selected: &[usize],
    hovered: Option<(usize, usize)>,
    colors: &LabelColors,
) {
    let viewport = geometry.viewport;
    let font = FontId::monospace(geometry.font_size);
    let row_strip = Rect::from_min_max(
        Pos2::new(viewport.left() - label_room, viewport.top()),
        Pos2::new(viewport.left(), viewport.bottom()),
    );
    let column_strip = Rect::from_min_max(
        Pos2::new(viewport.left(), viewport.top() - label_room),
        Pos2::new(viewport.right(), viewport.top()),
    );
    // Half a line of slack, so that the first and last label in view are not cut in half.
    let rows = painter.with_clip_rect(row_strip.expand2(Vec2::new(0.0, geometry.font_size)));
    let columns = painter.with_clip_rect(column_strip.expand2(Vec2::new(geometry.font_size, 0.0)));

    // (index, colour) of every label to draw along one axis; the hovered and selected ones are
    // drawn last, over any neighbour.
    let to_draw = |axis: usize, hovered: Option<usize>| {
        let every = geometry.label_every;
        let mut drawn: Vec<(usize, Color32)> = geometry
            .visible(axis)
            .filter(|&index| {
                index % every == 0 && !selected.contains(&index) && Some(index) != hovered
            })
            .map(|index| (index, colors.plain))
            .collect();
        drawn.extend(
            hovered
                .filter(|h| !selected.contains(h))
                .map(|h| (h, colors.hovered)),
        );
        drawn.extend(
            selected
                .iter()
                .filter(|&&s| s < labels.len())
                .map(|&s| (s, colors.selected)),
        );
        drawn
    };
    for (index, color) in to_draw(1, hovered.map(|(row, _)| row)) {
        let y = geometry.cell_y(index) + geometry.cell / 2.0;
        if viewport.y_range().contains(y) {
            let galley = rows.layout_no_wrap(labels[index].clone(), font.clone(), color);
            let rect = Align2::RIGHT_CENTER
                .anchor_size(Pos2::new(viewport.left() - 4.0, y), galley.size());
            if color != colors.plain {
                rows.rect_filled(rect.expand(1.0), 2.0, colors.background);
            }
            rows.galley(rect.min, galley, color);
        }
    }
    for (index, color) in to_draw(0, hovered.map(|(_, column)| column)) {
        let x = geometry.cell_x(index) + geometry.cell / 2.0;
        if viewport.x_range().contains(x) {
            let galley = columns.layout_no_wrap(labels[index].clone(), font.clone(), color);
            let anchor = Pos2::new(x - galley.size().y / 2.0, viewport.top() - 4.0);
            if color != colors.plain {
                // The rotated galley's extent: its width runs up from the anchor.
                let rect = Rect::from_min_max(
                    Pos2::new(anchor.x, anchor.y - galley.size().x),
                    Pos2::new(anchor.x + galley.size().y, anchor.y),
                );
                columns.rect_filled(rect.expand(1.0), 2.0, colors.background);
            }
            columns.add(
                egui::epaint::TextShape::new(anchor, galley, color)
                    .with_angle(-std::f32::consts::FRAC_PI_2),
            );
        }
    }
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
    /// Red–white–blue from −1 to 1: the cosine similarity of two tokens' vectors, not
    /// attention (no causal mask applies).
    Similarity,
}

impl ColorScale {
    /// The values of the lowest and the highest colour.
    fn range(self) -> (f32, f32) {
        match self {
            ColorScale::Sequential { max } => (0.0, max),
            ColorScale::Diverging { max_abs } => (-max_abs, max_abs),
            ColorScale::Similarity => (-1.0, 1.0),
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
            ColorScale::Diverging { .. } | ColorScale::Similarity => {
                difference_color(2.0 * t - 1.0, 1.0)
            }
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
    fn labels_thin_out_when_cells_are_small_and_all_show_once_zoomed() {
        let viewport = Rect::from_min_size(Pos2::new(100.0, 50.0), Vec2::splat(700.0));
        let fit = MatrixGeometry::new(viewport, 1024, &MatrixZoom::default());
        assert!(fit.label_every > 10, "{fit:?}");
        assert_eq!(fit.visible(0), 0..1024);

        let mut zoom = MatrixZoom::default();
        zoom.zoom_at(
            MatrixGeometry::max_zoom(viewport, 1024),
            (0.5, 0.5),
            f32::INFINITY,
        );
        let zoomed = MatrixGeometry::new(viewport, 1024, &zoom);
        assert_eq!(zoomed.label_every, 1);
        assert_eq!(zoomed.cell, MAX_ZOOMED_CELL);
        let rows = zoomed.visible(1);
        assert!(rows.len() <= 16 && rows.contains(&512), "{rows:?}");
        // The centre of the viewport is still the centre of the matrix.
        assert_eq!(zoomed.cell_at(viewport.center()), Some((512, 512)));
        assert_eq!(zoomed.cell_at(Pos2::ZERO), None);
    }
}
