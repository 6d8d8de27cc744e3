//! The Lens tab: the logit lens at a mask or at GPT-2's last token.

use super::{BertscopeApp, Shown, Tab};
use crate::export::FigureView;
use crate::ui::UiAction;

/// The Lens tab.
pub(crate) struct Lens;

impl Tab for Lens {
    fn label(&self) -> &'static str {
        "Lens"
    }

    fn description(&self) -> &'static str {
        "The logit lens: the model's own prediction head read after every layer, at a mask or at GPT-2's last token"
    }

    fn figure(&self) -> FigureView {
        FigureView::Lens
    }

    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction> {
        crate::ui::lens::lens_view(
            ui,
            shown.analysis(),
            shown.result.lens.as_deref(),
            &mut app.settings.view,
            app.primary.rasters_of(shown.words()),
        )
    }
}
