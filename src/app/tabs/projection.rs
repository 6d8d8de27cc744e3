//! The Projection tab: token hidden states in a PCA plane, layer by layer.

use super::{working, BertscopeApp, Shown, Tab};
use crate::export::FigureView;
use crate::ui::UiAction;

/// The Projection tab.
pub(crate) struct Projection;

impl Tab for Projection {
    fn label(&self) -> &'static str {
        "Projection"
    }

    fn description(&self) -> &'static str {
        "Token hidden states projected to 2-D with PCA, layer by layer"
    }

    fn figure(&self) -> FigureView {
        FigureView::Projection
    }

    fn prepare(&self, app: &mut BertscopeApp, _ctx: &egui::Context, words: bool) {
        app.primary.update_projection(words);
    }

    fn pending(&self, app: &BertscopeApp, words: bool) -> bool {
        app.primary.result.is_some() && app.primary.projection(words).is_none()
    }

    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction> {
        match app.primary.projection(shown.words()) {
            Some(Ok(projection)) => crate::ui::projection::projection_view(
                ui,
                shown.analysis(),
                &projection,
                &mut app.settings.view,
            ),
            Some(Err(message)) => {
                ui.colored_label(ui.visuals().error_fg_color, message);
                Vec::new()
            }
            None => working(ui, "Projecting the hidden states (PCA)…"),
        }
    }
}
