//! The Lens tab: the logit lens (nostalgebraist 2020) at a mask or at a causal LM's last token,
//! the model's own prediction head read after the embeddings and after every layer, as a
//! layers × top-k table. A guess that matches the model's final answer is marked, so you can see
//! the layer where the answer forms.

use egui::{Color32, RichText};

use super::{UiAction, ViewState};
use crate::model::probes::lens_at;
use crate::model::{Analysis, LensPosition};
use crate::render::attention_color;

/// The Lens tab. `lens` is `None` when the model has no masked-LM or next-token head.
pub fn lens_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    lens: Option<&[LensPosition]>,
    state: &mut ViewState,
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
        ui.weak("Rows: after the embeddings, then after each layer · the last row is the model's prediction · ★ = its final answer");
    });
    let answer = at
        .layers
        .last()
        .and_then(|layer| layer.top_k.first())
        .map(|guess| guess.id);
    let style = analysis.token_style;
    let top_k = at.layers.first().map_or(0, |layer| layer.top_k.len());
    // Shaded against the most confident guess anywhere in the lens, so the layer where the
    // model commits stands out even when every probability is small.
    let strongest = at
        .layers
        .iter()
        .flat_map(|layer| &layer.top_k)
        .map(|guess| guess.prob)
        .fold(f32::MIN_POSITIVE, f32::max);
    egui::ScrollArea::both()
        .id_salt("lens")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("lens-grid")
                .striped(true)
                .min_col_width(120.0)
                .spacing([10.0, 4.0])
                .show(ui, |ui| {
                    ui.strong("after");
                    for rank in 1..=top_k {
                        ui.strong(format!("#{rank}"));
                    }
                    ui.end_row();
                    let last = at.layers.len().saturating_sub(1);
                    for layer in &at.layers {
                        ui.label(match layer.layer {
                            0 => "embeddings".to_owned(),
                            l if l == last => format!("layer {l} (output)"),
                            l => format!("layer {l}"),
                        });
                        for guess in &layer.top_k {
                            let [r, g, b] = attention_color(guess.prob, strongest);
                            let fill = Color32::from_rgb(r, g, b);
                            let luminance =
                                0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b);
                            let text_colour = if luminance > 140.0 {
                                Color32::BLACK
                            } else {
                                Color32::WHITE
                            };
                            let marker = if Some(guess.id) == answer { "★ " } else { "" };
                            let text = RichText::new(format!(
                                "{marker}{}  {:.3}",
                                style.display(&guess.token),
                                guess.prob
                            ))
                            .monospace()
                            .color(text_colour)
                            .background_color(fill);
                            ui.label(text).on_hover_text(format!(
                                "id {} · probability {:.5}",
                                guess.id, guess.prob
                            ));
                        }
                        ui.end_row();
                    }
                });
        });
    actions
}
