//! The tokens of the input as chips: pieces shown readably (`·ing`, `▁the`, `↵`), sentence B
//! tinted, the selection shown.

use egui::{Color32, RichText};

use super::UiAction;
use crate::model::Analysis;

/// What clicking a chip does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChipClick<'a> {
    /// Select the token in every view.
    Select,
    /// Replace the token with the model's mask token (given) and run again.
    Mask(&'a str),
}

/// Tint of sentence B's tokens, readable on dark and light themes.
pub fn sentence_b_tint(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(70, 55, 20)
    } else {
        Color32::from_rgb(255, 236, 190)
    }
}

/// Draws the chips, wrapping lines; returns what a click asked for.
pub fn token_chips(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    selected: &[usize],
    click: ChipClick,
) -> Option<UiAction> {
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = egui::vec2(3.0, 4.0);
        for (index, token) in analysis.tokens.iter().enumerate() {
            let special = analysis.is_special(index);
            let shown = analysis.display_token(index);
            let mut text = RichText::new(&shown).monospace();
            if special {
                text = text.weak();
            }
            let mut button = egui::Button::selectable(selected.contains(&index), text);
            if analysis.sentence.get(index) == Some(&Some(1)) {
                button = button.fill(sentence_b_tint(ui));
            }
            let tooltip = match click {
                ChipClick::Select => {
                    format!(
                        "token {index}: {token} (id {}) · shift- or ctrl-click to select several",
                        analysis.token_ids[index]
                    )
                }
                ChipClick::Mask(mask) if token == mask => "already masked".to_owned(),
                ChipClick::Mask(_) if special => {
                    format!("{shown} is a special token and cannot be masked")
                }
                ChipClick::Mask(mask) => format!("replace {shown} with {mask} and run again"),
            };
            let response = ui.add(button).on_hover_text(tooltip);
            if response.clicked() {
                action = match click {
                    ChipClick::Select => Some(super::token_click(ui, index, selected)),
                    ChipClick::Mask(mask) if !special && token != mask => {
                        Some(UiAction::MaskToken(index))
                    }
                    ChipClick::Mask(_) => None,
                };
            }
        }
    });
    action
}
