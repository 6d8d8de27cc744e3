//! The pickers several tabs share: layer and head (arrow keys step them), and the *Show*
//! switch between an attention kind.

use crate::analysis::HeadChoice;
use crate::ui::{symbol_button, AttentionKind, ViewState};

/// Layer picker, and the head picker (with the mean) when `with_heads`; arrow keys step them
/// when no text field has focus.
pub fn layer_head_controls(
    ui: &mut egui::Ui,
    state: &mut ViewState,
    layers: usize,
    heads: usize,
    with_heads: bool,
) {
    ui.horizontal(|ui| {
        ui.label("Layer");
        if symbol_button(ui, "<", "Previous layer", "Previous layer (Up arrow)").clicked() {
            state.layer = state.layer.saturating_sub(1);
        }
        layer_picker(
            ui,
            "layer",
            &mut state.layer,
            layers,
            |layer| format!("{layer}"),
            "Transformer layer, 0-based",
        );
        if symbol_button(ui, ">", "Next layer", "Next layer (Down arrow)").clicked() {
            state.layer = (state.layer + 1).min(layers.saturating_sub(1));
        }
        if !with_heads {
            return;
        }
        ui.separator();
        ui.label("Head");
        let head_label = |head: HeadChoice| match head {
            HeadChoice::Head(head) => format!("{head}"),
            HeadChoice::Mean => "mean".to_owned(),
        };
        egui::ComboBox::from_id_salt("head")
            .selected_text(head_label(state.head))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut state.head, HeadChoice::Mean, "mean of all heads");
                for head in 0..heads {
                    ui.selectable_value(&mut state.head, HeadChoice::Head(head), format!("{head}"));
                }
            })
            .response
            .on_hover_text("Attention head, 0-based (Left and Right arrows step)");
    });

    if !ui.ctx().egui_wants_keyboard_input() {
        let (left, right, up, down) = ui.input(|input| {
            (
                input.key_pressed(egui::Key::ArrowLeft),
                input.key_pressed(egui::Key::ArrowRight),
                input.key_pressed(egui::Key::ArrowUp),
                input.key_pressed(egui::Key::ArrowDown),
            )
        });
        if up {
            state.layer = state.layer.saturating_sub(1);
        }
        if down {
            state.layer = (state.layer + 1).min(layers.saturating_sub(1));
        }
        if with_heads && (left || right) {
            state.head = step_head(state.head, heads, true, right);
        }
    }
}

/// A drop-down of layers `0..layers`, each shown by `label`.
pub fn layer_picker(
    ui: &mut egui::Ui,
    id: &str,
    layer: &mut usize,
    layers: usize,
    label: impl Fn(usize) -> String,
    hover: &str,
) {
    egui::ComboBox::from_id_salt(id)
        .selected_text(label(*layer))
        .show_ui(ui, |ui| {
            for choice in 0..layers {
                ui.selectable_value(layer, choice, label(choice));
            }
        })
        .response
        .on_hover_text(hover);
}

/// The next or previous head, with the mean (when allowed) after the last head.
fn step_head(head: HeadChoice, heads: usize, allow_mean: bool, forward: bool) -> HeadChoice {
    let slots = heads + usize::from(allow_mean);
    let index = match head {
        HeadChoice::Head(head) => head,
        HeadChoice::Mean => heads,
    };
    let next = if forward {
        (index + 1) % slots
    } else {
        (index + slots - 1) % slots
    };
    if next == heads {
        HeadChoice::Mean
    } else {
        HeadChoice::Head(next)
    }
}

/// The *Show* switch between raw attention, rollout and norm-based attention, shared by the
/// heatmap and the lines.
pub fn attention_kind_switch(ui: &mut egui::Ui, kind: &mut AttentionKind, with_flow: bool) {
    ui.label("Show");
    ui.selectable_value(kind, AttentionKind::Raw, "attention")
        .on_hover_text("Each head's attention probabilities, as the model computed them");
    ui.selectable_value(kind, AttentionKind::Rollout, "rollout")
        .on_hover_text(
            "Attention rollout (Abnar & Zuidema 2020): how much each position draws on each input token through every layer up to this one, residual connections included",
        );
    ui.selectable_value(kind, AttentionKind::Norms, "norms")
        .on_hover_text(
            "Norm-based attention (Kobayashi et al. 2020): each weight times the size of the vector the head moves from that key, ‖α·f(x)‖; a heavy weight on a small vector counts for little",
        );
    if with_flow {
        ui.selectable_value(kind, AttentionKind::Flow, "flow")
            .on_hover_text(
                "Attention flow (Abnar & Zuidema 2020): the maximum flow from each input token into the selected tokens through the rollout graph up to this layer (without a selection, into the first token)",
            );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_stepping_wraps_through_the_mean() {
        assert_eq!(
            step_head(HeadChoice::Head(11), 12, true, true),
            HeadChoice::Mean
        );
        assert_eq!(
            step_head(HeadChoice::Mean, 12, true, true),
            HeadChoice::Head(0)
        );
        assert_eq!(
            step_head(HeadChoice::Head(0), 12, true, false),
            HeadChoice::Mean
        );
        assert_eq!(
            step_head(HeadChoice::Head(11), 12, false, true),
            HeadChoice::Head(0)
        );
    }
}
