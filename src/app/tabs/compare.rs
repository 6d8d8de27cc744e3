//! The Compare tab: the same text through two models, side by side.

use super::{BertscopeApp, Shown, Tab};
use crate::app::ModelStatus;
use crate::export::FigureView;
use crate::ui::{compare, UiAction};

/// The Compare tab, shown once a second model was asked for.
pub(crate) struct Compare;

impl Tab for Compare {
    fn label(&self) -> &'static str {
        "Compare"
    }

    fn description(&self) -> &'static str {
        "The same text through two models: aligned layers, difference map, divergence per layer"
    }

    fn figure(&self) -> FigureView {
        FigureView::Compare
    }

    fn prepare(&self, app: &mut BertscopeApp, ctx: &egui::Context, _words: bool) {
        app.update_divergence(ctx);
    }

    fn pending(&self, app: &BertscopeApp, _words: bool) -> bool {
        app.divergence_key()
            .is_some_and(|key| app.divergence.get(&key).is_none())
    }

    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction> {
        // A few floats, copied so that the slots can be borrowed below.
        let divergence = app.compare_divergence().map(<[f32]>::to_vec);
        let a_name = app.primary.name().unwrap_or_default().to_owned();
        let comparison = app.comparison.as_mut().and_then(|slot| {
            let result = slot.result.clone()?;
            Some((result, slot))
        });
        match comparison {
            Some((b_result, slot)) => {
                let b_name = slot.name().unwrap_or_default().to_owned();
                compare::compare_view(
                    ui,
                    compare::Side {
                        name: &a_name,
                        analysis: shown.analysis(),
                        rasters: &mut app.primary.rasters,
                    },
                    compare::Side {
                        name: &b_name,
                        analysis: &b_result.analysis,
                        rasters: &mut slot.rasters,
                    },
                    &mut app.compare_textures,
                    divergence.as_deref(),
                    &mut app.settings.view,
                )
            }
            None => {
                let note = match app.comparison.as_ref().map(|slot| &slot.status) {
                    Some(ModelStatus::Loading { name, .. }) => format!("Loading {name}…"),
                    Some(ModelStatus::Failed { message, .. }) => message.clone(),
                    Some(_) => "Running the text through the second model…".to_owned(),
                    None => "Load a second model with Compare with… above.".to_owned(),
                };
                ui.label(note);
                Vec::new()
            }
        }
    }
}
