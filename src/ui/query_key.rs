//! The Query·Key tab (BertViz's neuron view): for the selected query token, one head's query
//! vector, every key vector, their element-wise products, q·k/√d and the softmax, so that a
//! student can see where an attention weight comes from.

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};

use super::widgets::controls::layer_head_controls;
use super::{UiAction, ViewState};
use crate::analysis::query_key::{query_key, QueryKey};
use crate::analysis::HeadChoice;
use crate::model::Analysis;
use crate::render::difference_color;

const ROW: f32 = 16.0;
const LABEL_WIDTH: f32 = 96.0;
const SCORE_WIDTH: f32 = 64.0;
const BAR_WIDTH: f32 = 120.0;
/// The narrowest a vector column gets, so that its heading fits.
const MIN_COLUMN: f32 = 150.0;
/// Room after the bar for its value.
const VALUE_WIDTH: f32 = 50.0;
const GAP: f32 = 14.0;

/// The Query·Key tab.
pub fn query_key_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    state: &mut ViewState,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    layer_head_controls(ui, state, analysis.layers(), analysis.heads(), true);
    let HeadChoice::Head(head) = state.head else {
        ui.label("The neuron view shows one head's query and key vectors: pick a head above.");
        return actions;
    };
    let query = state
        .selected_token
        .filter(|&token| token < analysis.len())
        .unwrap_or(0);
    let view = query_key(analysis, state.layer, head, query);
    ui.weak(format!(
        "Query: token {query} ({}) · click a token above or a row below to choose another · cells are blue (negative) to red (positive)",
        analysis.display_token(query)
    ));
    egui::ScrollArea::both()
        .id_salt("query-key")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            actions.extend(draw(ui, analysis, &view, state.layer, head));
        });
    actions
}

/// Draws the vectors and scores; a click on a key row makes that token the query.
fn draw(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    view: &QueryKey,
    layer: usize,
    head: usize,
) -> Option<UiAction> {
    let tokens = view.keys.len();
    let head_dim = view.query_vector.len().max(1);
    let cell =
        ((ui.available_width() - LABEL_WIDTH - SCORE_WIDTH - BAR_WIDTH - VALUE_WIDTH - 4.0 * GAP)
            / (2 * head_dim) as f32)
            .clamp(2.0, 8.0);
    // At least as wide as the column headings, for small heads.
    let vector_width = (cell * head_dim as f32).max(MIN_COLUMN);
    let size = Vec2::new(
        LABEL_WIDTH + 2.0 * vector_width + SCORE_WIDTH + BAR_WIDTH + VALUE_WIDTH + 4.0 * GAP,
        ROW * (tokens + 3) as f32,
    );
    let (response, painter) = ui.allocate_painter(size, Sense::click());
    response.widget_info(|| {
        egui::WidgetInfo::labeled(
            egui::Role::Image,
            true,
            format!("Query and key vectors of layer {layer}, head {head}"),
        )
    });
    let origin = response.rect.min;
    let text = ui.visuals().text_color();
    let weak = ui.visuals().weak_text_color();
    let font = FontId::monospace(11.0);
    let vectors_left = origin.x + LABEL_WIDTH + GAP;
    let products_left = vectors_left + vector_width + GAP;
    let score_left = products_left + vector_width + GAP;
    let bar_left = score_left + SCORE_WIDTH + GAP;
    let largest =
        |rows: &mut dyn Iterator<Item = &f32>| rows.fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
    let vector_max = largest(&mut view.keys.iter().flatten().chain(&view.query_vector));
    let product_max = largest(&mut view.products.iter().flatten());
    let cells = |values: &[f32], left: f32, top: f32, max: f32| {
        for (index, &value) in values.iter().enumerate() {
            let [r, g, b] = difference_color(value, max);
            painter.rect_filled(
                Rect::from_min_size(
                    Pos2::new(left + index as f32 * cell, top + 2.0),
                    Vec2::new(cell, ROW - 4.0),
                ),
                0.0,
                Color32::from_rgb(r, g, b),
            );
        }
    };
    let heading = |x: f32, label: &str| {
        painter.text(
            Pos2::new(x, origin.y + ROW / 2.0),
            Align2::LEFT_CENTER,
            label,
            FontId::proportional(12.0),
            text,
        );
    };
    heading(vectors_left, "q, then each key k");
    heading(products_left, "q × k, element-wise");
    heading(score_left, "q·k/√d");
    heading(bar_left, "softmax");
    // The query row.
    let query_top = origin.y + ROW;
    painter.text(
        Pos2::new(origin.x + LABEL_WIDTH, query_top + ROW / 2.0),
        Align2::RIGHT_CENTER,
        format!("q {}", analysis.display_token(view.query)),
        font.clone(),
        text,
    );
    cells(&view.query_vector, vectors_left, query_top, vector_max);
    let mut clicked = None;
    let pointer = response.hover_pos();
    for key in 0..tokens {
        let top = origin.y + ROW * (key + 3) as f32;
        let row = Rect::from_min_size(Pos2::new(origin.x, top), Vec2::new(size.x, ROW));
        let colour = if view.scores[key].is_some() {
            text
        } else {
            weak
        };
        painter.text(
            Pos2::new(origin.x + LABEL_WIDTH, top + ROW / 2.0),
            Align2::RIGHT_CENTER,
            analysis.display_token(key),
            font.clone(),
            colour,
        );
        cells(&view.keys[key], vectors_left, top, vector_max);
        cells(&view.products[key], products_left, top, product_max);
        let score = view.scores[key].map_or_else(|| "masked".to_owned(), |s| format!("{s:+.3}"));
        painter.text(
            Pos2::new(score_left, top + ROW / 2.0),
            Align2::LEFT_CENTER,
            score,
            font.clone(),
            colour,
        );
        let probability = view.softmax[key];
        painter.rect_filled(
            Rect::from_min_size(
                Pos2::new(bar_left, top + 3.0),
                Vec2::new(BAR_WIDTH * probability.clamp(0.0, 1.0), ROW - 6.0),
            ),
            1.0,
            ui.visuals().selection.bg_fill,
        );
        painter.text(
            Pos2::new(bar_left + BAR_WIDTH + 4.0, top + ROW / 2.0),
            Align2::LEFT_CENTER,
            format!("{probability:.3}"),
            font.clone(),
            colour,
        );
        if pointer.is_some_and(|pos| row.contains(pos)) {
            painter.rect_stroke(row, 0.0, Stroke::new(1.0, weak), StrokeKind::Inside);
            let captured = analysis.attention(layer, head)[view.query * tokens + key];
            response.clone().on_hover_ui_at_pointer(|ui| {
                ui.label(format!(
                    "{} → {}",
                    analysis.display_token(view.query),
                    analysis.display_token(key)
                ));
                ui.monospace(format!("softmax {probability:.6}"));
                ui.monospace(format!("captured attention {captured:.6}"));
                ui.weak("click to make this token the query");
            });
            if response.clicked() {
                clicked = Some(UiAction::SelectToken(Some(key)));
            }
        }
    }
    clicked
}
