//! The Query·Key tab: BertViz's neuron view of one attention row.

use super::{BertscopeApp, Shown, Tab};
use crate::export::FigureView;
use crate::ui::UiAction;

/// The Query·Key tab.
pub(crate) struct QueryKey;

impl Tab for QueryKey {
    fn label(&self) -> &'static str {
        "Query·Key"
    }

    fn description(&self) -> &'static str {
        "Where one attention row comes from: the query vector, each key, their products, q·k/√d and the softmax (BertViz's neuron view)"
    }

    fn figure(&self) -> FigureView {
        FigureView::QueryKey
    }

    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction> {
        crate::ui::query_key::query_key_view(
            ui,
            shown.analysis(),
            &mut app.settings.view,
            app.primary.rasters_of(false),
        )
    }
}
