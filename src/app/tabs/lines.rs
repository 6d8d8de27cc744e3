//! The Lines tab: BertViz-style token-to-token lines.

use super::{BertscopeApp, Combined, Shown, Tab};
use crate::export::FigureView;
use crate::ui::UiAction;

/// The Lines tab.
pub(crate) struct Lines;

impl Tab for Lines {
    fn label(&self) -> &'static str {
        "Lines"
    }

    fn description(&self) -> &'static str {
        "Token-to-token attention lines, one colour per head (BertViz head view)"
    }

    fn figure(&self) -> FigureView {
        FigureView::Lines
    }

    fn prepare(&self, app: &mut BertscopeApp, _ctx: &egui::Context, words: bool) {
        Combined::prepare(app, words);
    }

    fn pending(&self, app: &BertscopeApp, words: bool) -> bool {
        Combined::pending(app, words)
    }

    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction> {
        let combined = Combined::of(app, shown.words());
        crate::ui::lines::lines_view(
            ui,
            shown.analysis(),
            combined.as_ref().and_then(Combined::values),
            &mut app.settings.view,
        )
    }
}
