//! The Heatmap tab: one head's attention (or what an attention kind makes of a layer) as the
//! scene of [`crate::views::heatmap`], filling the room it has; the wheel zooms at the pointer,
//! dragging pans, the pointer draws a crosshair and names the cell.

use std::cell::Cell;

use egui::Sense;

use super::scene::Rasters;
use super::widgets::controls::{attention_kind_switch, layer_head_controls};
use super::widgets::matrix::{zoom_controls, zoom_keys};
use super::{AttentionKind, UiAction, ViewState};
use crate::model::Analysis;
use crate::render::scene::Hit;
use crate::views::heatmap::{Heatmap, MapKind, Marks};

/// The heatmap (and lines) of the view state: its layer, head and kind (flow into the
/// selection, else the first token).
pub fn heatmap_of(state: &ViewState) -> Heatmap {
    Heatmap {
        layer: state.layer,
        head: state.head,
        kind: match state.attention_kind {
            AttentionKind::Raw => MapKind::Attention,
            AttentionKind::Rollout => MapKind::Rollout,
            AttentionKind::Norms => MapKind::Norms,
            AttentionKind::Flow => MapKind::Flow(state.flow_targets()),
        },
        fixed_scale: state.fixed_scale,
    }
}

/// The heatmap tab. `combined` is the map of a kind that combines heads (rollout through the
/// layer, or flow into the selected tokens: see [`AttentionKind::is_combined`]), once the app
/// has computed it off the UI thread.
pub fn heatmap_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    combined: Option<&[f32]>,
    state: &mut ViewState,
    rasters: &mut Rasters,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let kind = state.attention_kind;
    let is_norms = kind == AttentionKind::Norms;
    layer_head_controls(
        ui,
        state,
        analysis.layers(),
        analysis.heads(),
        !kind.is_combined(),
    );
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
        if kind == AttentionKind::Flow {
            ui.weak("shift-click rows to add them");
        }
        ui.separator();
        zoom_controls(ui, &mut state.heatmap_zoom);
    });
    zoom_keys(ui, &mut state.heatmap_zoom);
    let view = heatmap_of(state);
    let memo;
    let values: Option<&[f32]> = if view.kind.is_combined() {
        match combined {
            Some(values) => Some(values),
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(if kind == AttentionKind::Flow {
                        "Finding the maximum flow into the selected tokens…"
                    } else {
                        "Rolling attention out through the layers…"
                    });
                });
                return actions;
            }
        }
    } else {
        memo = rasters.values(view.raster_key(), || view.values(analysis, None));
        memo.as_deref().map(Vec::as_slice)
    };
    let Some(values) = values else {
        ui.label("This run computed no value norms; change the text to run it again.");
        return actions;
    };
    let max = view.max(values);
    let selection = state.selection();
    selection_summary(ui, analysis, values, &selection);
    let (width, height) = (ui.available_width(), ui.available_height());
    let geometry = Cell::new(None);
    let zoom = state.heatmap_zoom;
    let shown = super::scene::show_hovered(ui, rasters, Sense::click_and_drag(), |hovered| {
        let marks = Marks {
            selection: &selection,
            hovered: match hovered {
                Some(Hit::Cell { row, column }) => Some((row, column)),
                _ => None,
            },
            zoom,
        };
        let (scene, matrix) = crate::views::heatmap::scene(
            analysis,
            &view,
            values.into(),
            max,
            &marks,
            width,
            height,
        );
        geometry.set(Some(matrix));
        scene
    });
    if let Some(geometry) = geometry.get() {
        super::widgets::matrix::interact(ui, &shown, &geometry, &mut state.heatmap_zoom);
    }
    if let Some(Hit::Cell { row, column }) = shown.hovered {
        cell_tooltip(&shown.response, analysis, values, row, column, "weight");
    }
    match shown.clicked {
        Some(Hit::Cell { row, .. }) | Some(Hit::Token(row)) => {
            actions.push(super::token_click(ui, row, &selection));
        }
        _ => {}
    }
    actions
}

/// The tooltip of a map's cell: who attends to whom, and the exact `what` (weight, difference).
pub fn cell_tooltip(
    response: &egui::Response,
    analysis: &Analysis,
    values: &[f32],
    row: usize,
    column: usize,
    what: &str,
) {
    let tokens = analysis.len();
    let Some(&weight) = values.get(row * tokens + column) else {
        return;
    };
    let (query, key) = (analysis.display_token(row), analysis.display_token(column));
    response.clone().on_hover_ui_at_pointer(|ui| {
        if analysis.is_masked(row, column) {
            ui.label(format!("{query} cannot attend to {key}"));
            ui.weak("masked: a causal model only sees earlier tokens");
            ui.weak(format!("query {row}, key {column}"));
            return;
        }
        if weight.is_nan() {
            ui.label(format!("No flow into {query} computed"));
            ui.weak("shift-click its row to add it to the selection");
            return;
        }
        ui.label(format!("{query} attends to {key}"));
        ui.monospace(format!("{what} {weight:.6}"));
        ui.weak(format!("query {row}, key {column}"));
    });
}

/// How many tokens the selection summary names on each side.
const SUMMARY_TOKENS: usize = 4;

/// One line on the selected tokens of a map: the keys the selection draws on most, and the
/// queries that draw most on the selection, each weight summed over the selected tokens.
fn selection_summary(ui: &mut egui::Ui, analysis: &Analysis, values: &[f32], selection: &[usize]) {
    if selection.is_empty() {
        return;
    }
    let tokens = analysis.len();
    let weight = |query: usize, key: usize| {
        let value = values[query * tokens + key];
        if value.is_nan() {
            0.0
        } else {
            value
        }
    };
    let strongest = |sums: Vec<f32>| -> String {
        crate::model::prediction_heads::top_k(&sums, SUMMARY_TOKENS)
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
