//! The Query·Key tab (BertViz's neuron view): for the selected query token, one head's query
//! vector, every key vector, their element-wise products, q·k/√d and the softmax, so that a
//! student can see where an attention weight comes from.

use egui::Sense;

use super::scene::Rasters;
use super::widgets::controls::layer_head_controls;
use super::{UiAction, ViewState};
use crate::analysis::query_key::query_key;
use crate::analysis::HeadChoice;
use crate::model::Analysis;
use crate::render::scene::Hit;
use crate::views::query_key::QueryKeyView;

/// The Query·Key tab.
pub fn query_key_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    state: &mut ViewState,
    rasters: &mut Rasters,
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
    ui.weak(format!(
        "Query: token {query} ({}) · click a token above or a row below to choose another · cells are blue (negative) to red (positive)",
        analysis.display_token(query)
    ));
    egui::ScrollArea::both()
        .id_salt("query-key")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let (layer, width) = (state.layer, ui.available_width());
            let view = QueryKeyView { layer, head, query };
            let shown = super::scene::show_hovered(ui, rasters, Sense::click(), |hovered| {
                let hovered = match hovered {
                    Some(Hit::Token(token)) => Some(token),
                    _ => None,
                };
                crate::views::query_key::scene(analysis, view, hovered, width)
            });
            if let Some(Hit::Token(key)) = shown.hovered {
                let tokens = analysis.len();
                let parts = query_key(analysis, layer, head, query);
                let probability = parts.softmax[key];
                let captured = analysis.attention(layer, head)[query * tokens + key];
                shown.response.clone().on_hover_ui_at_pointer(|ui| {
                    ui.label(format!(
                        "{} → {}",
                        analysis.display_token(query),
                        analysis.display_token(key)
                    ));
                    ui.monospace(format!("softmax {probability:.6}"));
                    ui.monospace(format!("captured attention {captured:.6}"));
                    ui.weak("click to make this token the query");
                });
            }
            if let Some(Hit::Token(key)) = shown.clicked {
                actions.push(UiAction::SelectToken(Some(key)));
            }
        });
    actions
}
