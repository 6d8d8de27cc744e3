//! The Overview tab: every layer × head as thumbnails, and head ablation.

use super::{BertscopeApp, Shown, Tab};
use crate::export::FigureView;
use crate::ui::{overview, UiAction};

/// The Overview tab.
pub(crate) struct Overview;

impl Tab for Overview {
    fn label(&self) -> &'static str {
        "Overview"
    }

    fn description(&self) -> &'static str {
        "Every layer and head at a glance; click one to open it in the heatmap"
    }

    fn figure(&self) -> FigureView {
        FigureView::Overview
    }

    fn pending(&self, app: &BertscopeApp, _words: bool) -> bool {
        app.primary.rasters.pending() || app.primary.word_rasters.pending()
    }

    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction> {
        let state = &mut app.settings.view;
        overview::kind_switch(ui, state);
        let mut actions = overview::ablation_bar(ui, state);
        let ablation = overview::Ablation {
            heads: &state.ablated_heads,
            clicks_toggle: state.ablation_mode,
        };
        actions.extend(overview::overview_view(
            ui,
            shown.analysis(),
            state,
            ablation,
            app.primary.rasters_of(shown.words()),
        ));
        actions
    }
}
