//! The Embeddings tab: what goes into the first layer (the scene of [`crate::views::embeddings`]),
//! with the similarity matrix's zoom.

use std::cell::Cell;

use egui::Sense;

use super::scene::Rasters;
use super::{UiAction, ViewState};
use crate::model::{Analysis, EmbeddingBreakdown};
use crate::render::scene::Hit;
use crate::views::embeddings::{scene, Marks};

/// The Embeddings tab; `breakdown` is `None` when it could not be computed.
pub fn embeddings_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    breakdown: Option<&EmbeddingBreakdown>,
    state: &mut ViewState,
    rasters: &mut Rasters,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let Some(breakdown) = breakdown else {
        ui.label("The embeddings could not be taken apart for this run.");
        return actions;
    };
    super::widgets::matrix::zoom_keys(ui, &mut state.embeddings_zoom);
    let selection = state.selection();
    let (width, height) = (ui.available_width(), ui.available_height());
    let geometry = Cell::new(None);
    let shown = super::scene::show_hovered(ui, rasters, Sense::click_and_drag(), |hovered| {
        let hovered = match hovered {
            Some(Hit::Cell { row, column }) => Some((row, column)),
            _ => None,
        };
        let marks = Marks {
            selection: &selection,
            zoom: state.embeddings_zoom,
            hovered,
        };
        let (scene, matrix) = scene(analysis, breakdown, &marks, width, height);
        geometry.set(Some(matrix));
        scene
    });
    if let Some(geometry) = geometry.get() {
        super::widgets::matrix::interact(ui, &shown, &geometry, &mut state.embeddings_zoom);
    }
    match shown.hovered {
        Some(Hit::Cell { row, column }) => {
            let tokens = analysis.len();
            let similarity = breakdown.position_similarity[row * tokens + column];
            shown.response.clone().on_hover_ui_at_pointer(|ui| {
                ui.label(format!(
                    "{} and {}",
                    analysis.display_token(row),
                    analysis.display_token(column)
                ));
                ui.monospace(format!("cosine similarity {similarity:.6}"));
                ui.weak(format!("tokens {row} and {column}"));
            });
        }
        Some(Hit::Token(token)) => {
            if let Some(parts) = breakdown.tokens.iter().find(|t| t.position == token) {
                shown.response.clone().on_hover_text_at_pointer(format!(
                    "token {token}: word {:.6}, position {:.6}, sum {:.6}",
                    parts.word, parts.position_emb, parts.sum
                ));
            }
        }
        _ => {}
    }
    match shown.clicked {
        Some(Hit::Cell { row, .. }) | Some(Hit::Token(row)) => {
            actions.push(super::token_click(ui, row, &selection));
        }
        _ => {}
    }
    actions
}
