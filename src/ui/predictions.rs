//! The Predictions tab: what the model's heads predict, updated as you type (the scene of
//! [`crate::views::predictions`]), with the controls and hints that only the window has: how to
//! mask a token or pick a position, adding a context for question answering, restoring ablated
//! heads.

use egui::RichText;

use super::scene::Rasters;
use super::{UiAction, ViewState};
use crate::model::{Analysis, HeadKind};
use crate::render::scene::Hit;
use crate::views::predictions::Predictions;
use crate::worker::ModelInfo;

/// The Predictions tab. `intact` is the same input without ablation, when heads were switched
/// off: the tab then opens with what changed.
pub fn predictions_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    intact: Option<&Analysis>,
    info: &ModelInfo,
    state: &mut ViewState,
    rasters: &mut Rasters,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    if info.prediction_heads.is_empty() {
        ui.add_space(12.0);
        ui.label(RichText::new("This checkpoint has no prediction head.").strong());
        ui.label(format!(
            "It carries only the {} encoder, so it predicts nothing by itself; every other tab still shows what it computes. Load a checkpoint saved with a head (a masked or causal language model, a classifier, a question-answering or token-classification model) to see its predictions here.",
            info.family.name()
        ));
        return actions;
    }
    // What only the window can do, above the drawing.
    if intact.is_some()
        && ui
            .button("Restore all")
            .on_hover_text("Switch every head back on and run again (heads are switched off in the Overview tab)")
            .clicked()
    {
        actions.push(UiAction::ClearAblation);
    }
    for kind in &info.prediction_heads {
        match kind {
            HeadKind::MaskedLm => {
                let mask = info.mask_token.as_deref().unwrap_or("[MASK]");
                ui.weak(format!(
                    "Click a token above to replace it with {mask} and run again, or type {mask} in the text."
                ));
            }
            HeadKind::NextToken => {
                ui.weak("Click a token above to see what the model expects after it; by default, after the last.");
            }
            HeadKind::QuestionAnswering
                if analysis.qa.is_none()
                    && !analysis.sentence.contains(&Some(1))
                    && ui
                        .button("Add a context (sentence B)")
                        .on_hover_text(
                            "Turn on sentence B and type the passage the answer comes from",
                        )
                        .clicked() =>
            {
                actions.push(UiAction::UsePair);
            }
            HeadKind::TokenClassification => {
                ui.weak("Click a token to select it in every view.");
            }
            _ => {}
        }
    }
    let selection = state.selection();
    let view = Predictions {
        heads: &info.prediction_heads,
        token: state.selected_token,
        selection: &selection,
        mask: info.mask_token.as_deref(),
        intact,
    };
    egui::ScrollArea::vertical()
        .id_salt("predictions")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let width = (ui.available_width() - 8.0).max(200.0);
            let Some(scene) = crate::views::predictions::scene(analysis, &view, width) else {
                return;
            };
            let shown = super::scene::show(ui, &scene, rasters, egui::Sense::hover());
            if let Some(Hit::Token(index)) = shown.hovered {
                if let Some(answer) = &analysis.qa {
                    if analysis.sentence.get(index) == Some(&Some(1)) {
                        shown.response.clone().on_hover_text_at_pointer(format!(
                            "{}: start {:.4}, end {:.4}",
                            analysis.tokens[index],
                            answer.start_probs[index],
                            answer.end_probs[index]
                        ));
                    }
                }
                if let Some(label) = analysis
                    .token_classification
                    .iter()
                    .flatten()
                    .find(|label| label.position == index)
                {
                    shown.response.clone().on_hover_text_at_pointer(format!(
                        "{} · {:.1}% · click to select it",
                        label.label,
                        label.prob * 100.0
                    ));
                }
            }
            if let Some(Hit::Token(index)) = shown.clicked {
                actions.push(UiAction::SelectToken(
                    (state.selected_token != Some(index)).then_some(index),
                ));
            }
        });
    actions
}
