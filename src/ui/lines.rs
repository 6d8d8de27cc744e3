//! The Lines tab: the controls of [`crate::views::lines`] (heads, threshold, top-k, sentence
//! pairs) and its scene; the pointer on a token shows only its lines.

use egui::{Color32, Sense};

use super::scene::Rasters;
use super::widgets::controls::attention_kind_switch;
use super::{AttentionKind, PairFilter, UiAction, ViewState};
use crate::model::Analysis;
use crate::render::head_color;
use crate::render::scene::Hit;
use crate::views::lines::{Lines, Marks};

/// The lines tab. `combined` is the map of a kind that combines heads (rollout or flow, see
/// [`AttentionKind::is_combined`]), once the app has computed it off the UI thread.
pub fn lines_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    combined: Option<&[f32]>,
    state: &mut ViewState,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let heads = analysis.heads();
    super::widgets::controls::layer_head_controls(ui, state, analysis.layers(), heads, false);
    ui.horizontal(|ui| {
        attention_kind_switch(ui, &mut state.attention_kind, true);
    });
    let is_rollout = state.attention_kind.is_combined();
    ui.add_enabled_ui(!is_rollout, |ui| {
        ui.horizontal_wrapped(|ui| {
            ui.label("Heads");
            for head in 0..heads {
                let [r, g, b] = head_color(head, heads);
                let shown = !state.hidden_heads.contains(&head);
                let text = egui::RichText::new(format!("{head}")).color(if shown {
                    Color32::BLACK
                } else {
                    ui.visuals().weak_text_color()
                });
                let button = egui::Button::new(text).fill(if shown {
                    Color32::from_rgb(r, g, b)
                } else {
                    Color32::TRANSPARENT
                });
                if ui
                    .add(button)
                    .on_hover_text(format!("show or hide head {head}"))
                    .clicked()
                {
                    if shown {
                        state.hidden_heads.push(head);
                    } else {
                        state.hidden_heads.retain(|&h| h != head);
                    }
                }
            }
            if ui.small_button("all").clicked() {
                state.hidden_heads.clear();
            }
            if ui.small_button("none").clicked() {
                state.hidden_heads = (0..heads).collect();
            }
        })
    });
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(&mut state.line_threshold, 0.0..=0.5).text("hide weights below"))
            .on_hover_text("Lines for weights under this are not drawn");
        ui.separator();
        let top_k = ui.add(
            egui::DragValue::new(&mut state.line_top_k)
                .range(0..=analysis.len())
                .custom_formatter(|k, _| if k == 0.0 { "all".to_owned() } else { format!("{k}") })
                .prefix("top "),
        );
        let label = ui.label("keys per token");
        top_k.labelled_by(label.id).on_hover_text(
            "Draw only each token's strongest lines per head (0 or all: every line above the threshold); clearer at hundreds of tokens",
        );
        let is_pair = analysis.sentence.contains(&Some(1));
        if is_pair {
            ui.separator();
            for filter in PairFilter::ALL {
                ui.selectable_value(&mut state.pair_filter, filter, filter.label())
                    .on_hover_text("Which sentence's queries attend to which sentence's keys");
            }
        } else {
            state.pair_filter = PairFilter::All;
        }
    });
    ui.weak(match state.attention_kind {
        AttentionKind::Raw => format!(
            "Layer {}: hover a token to see only its lines; click to select it, shift-click to select several (bars: their summed weight on each key)",
            state.layer
        ),
        AttentionKind::Norms => format!(
            "Layer {}: norm-based attention ‖α·f(x)‖ over the layer's largest; hover a token to see only its lines",
            state.layer
        ),
        AttentionKind::Rollout => format!(
            "Rollout through layers 0–{}: how much each token draws on each input token; hover a token to see only its lines",
            state.layer
        ),
        AttentionKind::Flow => format!(
            "Flow through layers 0–{} into the selected tokens (else the first) from each input token; shift-click to add tokens",
            state.layer
        ),
    });
    if state.attention_kind.is_combined() && combined.is_none() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(if state.attention_kind == AttentionKind::Flow {
                "Finding the maximum flow into the selected tokens…"
            } else {
                "Rolling attention out through the layers…"
            });
        });
        return actions;
    }
    let lines = lines_of(state);
    let selection = state.selection();
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let (width, height) = (ui.available_width(), ui.available_height());
            let shown = super::scene::show_hovered(
                ui,
                &mut Rasters::default(),
                Sense::click(),
                |hovered| {
                    let marks = Marks {
                        selection: &selection,
                        query: match hovered {
                            Some(Hit::Query(token)) => Some(token),
                            _ => None,
                        },
                        key: match hovered {
                            Some(Hit::Key(token)) => Some(token),
                            _ => None,
                        },
                    };
                    crate::views::lines::scene(analysis, &lines, combined, &marks, width, height)
                        .unwrap_or_default()
                },
            );
            if shown.response.clicked() || shown.clicked.is_some() {
                match shown.clicked {
                    Some(Hit::Query(index) | Hit::Key(index)) => {
                        actions.push(super::token_click(ui, index, &selection));
                    }
                    _ => actions.push(UiAction::SelectToken(None)),
                }
            }
        });
    actions
}

/// The lines of the view state: its layer, kind, heads, threshold, top-k and pair filter.
pub fn lines_of(state: &ViewState) -> Lines {
    Lines {
        layer: state.layer,
        kind: super::heatmap::heatmap_of(state).kind,
        hidden_heads: state.hidden_heads.clone(),
        threshold: state.line_threshold,
        top_k: state.line_top_k,
        pairs: state.pair_filter,
    }
}
