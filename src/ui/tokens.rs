//! The tokens of the input as chips: word pieces marked, sentence B tinted, the selection shown.

use egui::{Color32, RichText};

use super::UiAction;
use crate::model::Analysis;

/// What clicking a chip does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChipClick {
    /// Select the token in every view.
    Select,
    /// Replace the token with `[MASK]` and run again.
    Mask,
}

/// Text of a chip: `##ing` is shown as `·ing` so that word pieces read as continuations.
pub fn chip_label(token: &str) -> String {
    match token.strip_prefix("##") {
        Some(rest) => format!("·{rest}"),
        None => token.to_owned(),
    }
}

/// Whether a token is one of the tokenizer's special tokens.
pub fn is_special(analysis: &Analysis, index: usize) -> bool {
    analysis
        .char_offsets
        .get(index)
        .is_some_and(Option::is_none)
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
    selected: Option<usize>,
    click: ChipClick,
) -> Option<UiAction> {
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = egui::vec2(3.0, 4.0);
        for (index, token) in analysis.tokens.iter().enumerate() {
            let special = is_special(analysis, index);
            let mut text = RichText::new(chip_label(token)).monospace();
            if special {
                text = text.weak();
            }
            let mut button = egui::Button::selectable(selected == Some(index), text);
            if analysis.sentence.get(index) == Some(&Some(1)) {
                button = button.fill(sentence_b_tint(ui));
            }
            let tooltip = match click {
                ChipClick::Select => {
                    format!("token {index}: {token} (id {})", analysis.token_ids[index])
                }
                ChipClick::Mask if special => {
                    format!("{token} is a special token and cannot be masked")
                }
                ChipClick::Mask if token == "[MASK]" => "already masked".to_owned(),
                ChipClick::Mask => format!("replace {token} with [MASK] and run again"),
            };
            let response = ui.add(button).on_hover_text(tooltip);
            if response.clicked() {
                action = match click {
                    ChipClick::Select => Some(UiAction::SelectToken(
                        (selected != Some(index)).then_some(index),
                    )),
                    ChipClick::Mask if !special && token != "[MASK]" => {
                        Some(UiAction::MaskToken(index))
                    }
                    ChipClick::Mask => None,
                };
            }
        }
    });
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_pieces_are_marked() {
        assert_eq!(chip_label("##ing"), "·ing");
        assert_eq!(chip_label("play"), "play");
        assert_eq!(chip_label("#"), "#");
    }
}
