//! Masked-LM predictions: the candidates at each `[MASK]` with their probabilities; clicking a
//! token masks it and runs again.

use egui::RichText;

use super::UiAction;
use crate::model::Analysis;

/// The masked-LM tab; `has_head` says whether the model has an MLM head at all.
pub fn mlm_view(ui: &mut egui::Ui, analysis: &Analysis, has_head: bool) -> Vec<UiAction> {
    let actions = Vec::new();
    if !has_head {
        ui.add_space(12.0);
        ui.label(RichText::new("This model has no masked-language-model head.").strong());
        ui.label("Its checkpoint carries only the encoder (no cls.predictions.* weights), so it cannot fill in [MASK]. Load a pre-training checkpoint such as bert-base-uncased for predictions.");
        return actions;
    }
    ui.label(
        "Click a token above to replace it with [MASK] and run again, or type [MASK] in the text.",
    );
    ui.add_space(4.0);
    let predictions = analysis.mlm.as_deref().unwrap_or_default();
    if predictions.is_empty() {
        ui.weak("No [MASK] in the input yet.");
        return actions;
    }
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for prediction in predictions {
                ui.add_space(6.0);
                ui.label(
                    RichText::new(format!(
                        "Position {} ({})",
                        prediction.position, analysis.tokens[prediction.position]
                    ))
                    .strong(),
                );
                egui::Grid::new(("mlm", prediction.position))
                    .num_columns(3)
                    .spacing([12.0, 4.0])
                    .show(ui, |ui| {
                        for candidate in &prediction.top_k {
                            ui.monospace(&candidate.token);
                            ui.add(
                                egui::ProgressBar::new(candidate.prob)
                                    .desired_width(220.0)
                                    .text(format!("{:.1}%", candidate.prob * 100.0)),
                            )
                            .on_hover_text(format!(
                                "probability {:.6} (id {})",
                                candidate.prob, candidate.id
                            ));
                            ui.weak(format!("id {}", candidate.id));
                            ui.end_row();
                        }
                    });
            }
        });
    actions
}
