//! The Projection tab: the scene of [`crate::views::projection`] with a layer slider; the wheel
//! zooms at the pointer, dragging pans, a click selects the nearest token (its path shows).

use std::cell::Cell;

use egui::Sense;

use super::scene::Rasters;
use super::{UiAction, ViewState};
use crate::analysis::projection::Projection;
use crate::model::Analysis;
use crate::render::scene::Hit;
use crate::views::projection::{scene, ProjectionView, HOVER_RADIUS};

/// The projection tab.
pub fn projection_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    projection: &Projection,
    state: &mut ViewState,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let last = projection.layers().saturating_sub(1);
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(&mut state.projection_layer, 0..=last).text("layer"))
            .on_hover_text("0 is the embedding output; the last is the final layer");
        ui.separator();
        super::widgets::matrix::zoom_controls(ui, &mut state.projection_zoom);
        ui.weak("select a token to see its path");
    });
    let (width, height) = (ui.available_width(), ui.available_height());
    let plot = Cell::new(None);
    let view = |hovered: Option<Hit>| ProjectionView {
        layer: state.projection_layer.min(last),
        token: state.selected_token,
        hovered: match hovered {
            Some(Hit::Point { token, distance }) if distance <= HOVER_RADIUS => Some(token),
            _ => None,
        },
        zoom: state.projection_zoom,
    };
    let shown = super::scene::show_hovered(
        ui,
        &mut Rasters::default(),
        Sense::click_and_drag(),
        |hovered| {
            let (drawn, rect) = scene(analysis, projection, &view(hovered), width, height);
            plot.set(Some(rect));
            drawn
        },
    );
    if let Some(rect) = plot.get() {
        super::widgets::matrix::interact_area(ui, &shown, rect, 20.0, &mut state.projection_zoom);
    }
    if let Some(Hit::Point { token, .. }) = shown.clicked {
        actions.push(UiAction::SelectToken(Some(token)));
    }
    actions
}
