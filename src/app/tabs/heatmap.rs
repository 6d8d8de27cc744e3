//! The Heatmap tab: one head's attention matrix, or what an attention kind makes of a layer.

use super::{BertscopeApp, Combined, Shown, Tab};
use crate::export::FigureView;
use crate::ui::UiAction;

/// The Heatmap tab.
pub(crate) struct Heatmap;

impl Tab for Heatmap {
    fn label(&self) -> &'static str {
        "Heatmap"
    }

    fn description(&self) -> &'static str {
        "One head's attention: query rows × key columns (arrow keys step layers and heads)"
    }

    fn figure(&self) -> FigureView {
        FigureView::Heatmap
    }

    fn prepare(&self, app: &mut BertscopeApp, _ctx: &egui::Context, words: bool) {
        Combined::prepare(app, words);
    }

    fn pending(&self, app: &BertscopeApp, words: bool) -> bool {
        Combined::pending(app, words)
    }

    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction> {
        let combined = Combined::of(app, shown.words());
        crate::ui::heatmap::heatmap_view(
            ui,
            shown.analysis(),
            combined.as_ref().and_then(Combined::values),
            &mut app.settings.view,
            app.primary.rasters_of(shown.words()),
        )
    }
}
