//! The Predictions tab: what the model's heads predict, before → after an ablation.

use super::{BertscopeApp, Shown, Tab};
use crate::app::ModelStatus;
use crate::export::FigureView;
use crate::ui::UiAction;

/// The Predictions tab.
pub(crate) struct Predictions;

impl Tab for Predictions {
    fn label(&self) -> &'static str {
        "Predictions"
    }

    fn description(&self) -> &'static str {
        "What the model's heads predict: masked words, the next token, labels, answers, entities"
    }

    fn figure(&self) -> FigureView {
        FigureView::Predictions
    }

    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction> {
        let ModelStatus::Ready(info) = &app.primary.status else {
            return Vec::new();
        };
        let words = shown.words();
        let info = info.clone();
        crate::ui::predictions::predictions_view(
            ui,
            shown.analysis(),
            shown.result.intact.as_deref(),
            &info,
            &mut app.settings.view,
            app.primary.rasters_of(words),
        )
    }
}
