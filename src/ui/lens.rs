//! The Lens tab: the logit lens (nostalgebraist 2020) at a mask or at a causal LM's last token,
//! the model's own prediction head read after the embeddings and after every layer, as a
//! layers × top-k table. A guess that matches the model's final answer is marked, so you can see
//! the layer where the answer forms.

use egui::RichText;

use super::scene::Rasters;
use super::{UiAction, ViewState};
use crate::model::probes::lens_at;
use crate::model::{Analysis, LensPosition};
use crate::render::scene::Hit;

/// The Lens tab. `lens` is `None` when the model has no masked-LM or next-token head.
pub fn lens_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    lens: Option<&[LensPosition]>,
    state: &mut ViewState,
    rasters: &mut Rasters,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let Some(lens) = lens else {
        ui.add_space(12.0);
        ui.label(RichText::new("The logit lens needs a language-model head.").strong());
        ui.label("It applies the model's own masked-LM or next-token head to the hidden state after every layer; this checkpoint has neither. Load a masked or causal language model (bert-base-uncased, roberta-base, gpt2) to see it.");
        return actions;
    };
    let Some(at) = lens_at(lens, state.selected_token) else {
        ui.add_space(12.0);
        ui.label(RichText::new("Type a mask token to look through the layers.").strong());
        ui.label("The lens reads the model's guess at each mask, after every layer: for example \"The capital of France is [MASK].\"");
        return actions;
    };
    ui.horizontal(|ui| {
        ui.label("At");
        for entry in lens {
            let label = format!("{} · {}", entry.position, analysis.display_token(entry.position));
            if ui
                .selectable_label(entry.position == at.position, label)
                .on_hover_text("Show the lens at this token (clicking it in the token strip works too)")
                .clicked()
            {
                actions.push(UiAction::SelectToken(Some(entry.position)));
            }
        }
        ui.separator();
        ui.weak("Rows: after the embeddings, then after each layer · the last row is the model's prediction · ◆ marks its final answer");
    });
    let scene = crate::views::lens::scene(analysis, at, Some(ui.available_width()));
    egui::ScrollArea::both()
        .id_salt("lens")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let shown = super::scene::show(ui, &scene, rasters, egui::Sense::hover());
            if let Some(Hit::Cell { row, column }) = shown.hovered {
                if let Some(guess) = at.layers.get(row).and_then(|layer| layer.top_k.get(column)) {
                    shown.response.on_hover_text_at_pointer(format!(
                        "{} · id {} · probability {:.5}",
                        analysis.token_style.display(&guess.token),
                        guess.id,
                        guess.prob
                    ));
                }
            }
        });
    actions
}
