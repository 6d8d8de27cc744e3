//! The Embeddings tab: what goes into the first layer.

use super::{BertscopeApp, Shown, Tab};
use crate::export::FigureView;
use crate::ui::UiAction;

/// The Embeddings tab.
pub(crate) struct Embeddings;

impl Tab for Embeddings {
    fn label(&self) -> &'static str {
        "Embeddings"
    }

    fn description(&self) -> &'static str {
        "What goes into the first layer: the size of each token's word, position and segment embeddings, their sum and its LayerNorm, and how alike the positions are"
    }

    fn figure(&self) -> FigureView {
        FigureView::Embeddings
    }

    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction> {
        crate::ui::embeddings::embeddings_view(
            ui,
            shown.analysis(),
            shown.result.embeddings.as_ref(),
            &mut app.settings.view,
            app.primary.rasters_of(false),
        )
    }
}
