//! Token-to-token attention lines (BertViz's head view): queries on the left, keys on the right,
//! one colour per head, line opacity following the weight.

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, Vec2};

use super::tokens::sentence_b_tint;
use super::widgets::controls::attention_kind_switch;
use super::{AttentionKind, PairFilter, UiAction, ViewState};
use crate::analysis::norms::norm_map;
use crate::analysis::HeadChoice;
use crate::model::Analysis;
use crate::render::head_color;

const COLUMN_WIDTH: f32 = 140.0;
/// Horizontal room for the lines, between the token columns.
const LINE_SPAN: std::ops::RangeInclusive<f32> = 220.0..=520.0;

/// Which side of the view the pointer is on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Focus {
    Query(usize),
    Key(usize),
}

/// The maps the lines draw for one layer, each with the head whose colour it takes, weights
/// scaled to 0–1: every shown head's attention; every shown head's norm-based attention over
/// the layer's largest norm; or the rollout through the layer, in one colour. `None` while the
/// rollout is still being computed.
fn layer_maps<'a>(
    analysis: &'a Analysis,
    combined: Option<&'a [f32]>,
    state: &ViewState,
) -> Option<Vec<(usize, std::borrow::Cow<'a, [f32]>)>> {
    let layer = state.layer;
    let shown = (0..analysis.heads()).filter(|head| !state.hidden_heads.contains(head));
    Some(match state.attention_kind {
        AttentionKind::Raw => shown
            .map(|head| (head, analysis.attention(layer, head).into()))
            .collect(),
        AttentionKind::Norms => {
            let maps: Vec<(usize, Vec<f32>)> = shown
                .filter_map(|head| Some((head, norm_map(analysis, layer, HeadChoice::Head(head))?)))
                .collect();
            let largest = maps
                .iter()
                .flat_map(|(_, map)| map.iter().copied())
                .fold(f32::MIN_POSITIVE, f32::max);
            maps.into_iter()
                .map(|(head, map)| (head, map.iter().map(|v| v / largest).collect()))
                .collect()
        }
        AttentionKind::Rollout | AttentionKind::Flow => vec![(0, combined?.into())],
    })
}

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
    let Some(maps) = layer_maps(analysis, combined, state) else {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(if state.attention_kind == AttentionKind::Flow {
                "Finding the maximum flow into the selected tokens…"
            } else {
                "Rolling attention out through the layers…"
            });
        });
        return actions;
    };

    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let tokens = analysis.len();
            let row = (ui.available_height() / tokens as f32).clamp(12.0, 24.0);
            let span = (ui.available_width() - 2.0 * COLUMN_WIDTH)
                .clamp(*LINE_SPAN.start(), *LINE_SPAN.end());
            let size = Vec2::new(COLUMN_WIDTH * 2.0 + span, row * tokens as f32 + 4.0);
            let (response, painter) = ui.allocate_painter(size, Sense::click());
            let top = response.rect.top() + 2.0;
            let left_x = response.rect.left() + COLUMN_WIDTH;
            let right_x = left_x + span;
            let y_of = |index: usize| top + row * (index as f32 + 0.5);

            let focus = response.hover_pos().and_then(|pos| {
                let index = ((pos.y - top) / row).floor();
                if index < 0.0 || index as usize >= tokens {
                    return None;
                }
                let index = index as usize;
                if pos.x < left_x + 8.0 {
                    Some(Focus::Query(index))
                } else if pos.x > right_x - 8.0 {
                    Some(Focus::Key(index))
                } else {
                    None
                }
            });
            // Without a token under the pointer, the selection's lines show.
            let selection = state.selection();
            let hovering = focus.is_some();
            // Per key, the weight from the selected queries, summed over them and averaged over
            // the drawn maps: the bars beside the keys.
            let mut from_selection = vec![0f32; tokens];

            let mut drawn = 0usize;
            for (head, map) in &maps {
                let [r, g, b] = if is_rollout {
                    head_color(0, 1)
                } else {
                    head_color(*head, heads)
                };
                for query in 0..tokens {
                    // A causal model's lines only run backwards, to earlier tokens.
                    let keys = if analysis.causal { query + 1 } else { tokens };
                    let row = &map[query * tokens..][..keys];
                    if row.first().is_some_and(|weight| weight.is_nan()) {
                        // A flow row not computed (not a selected token).
                        continue;
                    }
                    if selection.contains(&query) {
                        for (sum, &weight) in from_selection.iter_mut().zip(row) {
                            *sum += weight / maps.len() as f32;
                        }
                    }
                    for_each_key_to_draw(row, state.line_top_k, |key| {
                        let weight = row[key];
                        if weight < state.line_threshold.max(1e-3) {
                            return;
                        }
                        let shown = match focus {
                            Some(Focus::Query(q)) => q == query,
                            Some(Focus::Key(k)) => k == key,
                            None => selection.is_empty() || selection.contains(&query),
                        };
                        if !shown
                            || !state
                                .pair_filter
                                .allows(analysis.sentence[query], analysis.sentence[key])
                        {
                            return;
                        }
                        drawn += 1;
                        let alpha = (weight.sqrt() * 230.0) as u8;
                        painter.line_segment(
                            [
                                Pos2::new(left_x + 4.0, y_of(query)),
                                Pos2::new(right_x - 4.0, y_of(key)),
                            ],
                            Stroke::new(
                                1.0 + 2.0 * weight,
                                Color32::from_rgba_unmultiplied(r, g, b, alpha),
                            ),
                        );
                    });
                }
            }

            if drawn == 0 {
                painter.text(
                    Pos2::new((left_x + right_x) / 2.0, top + 8.0),
                    Align2::CENTER_TOP,
                    format!(
                        "no weight here reaches {:.3}:\nlower the threshold",
                        state.line_threshold
                    ),
                    FontId::proportional(12.0),
                    ui.visuals().weak_text_color(),
                );
            }
            let font = FontId::monospace((row * 0.7).clamp(9.0, 13.0));
            let text_color = ui.visuals().text_color();
            for index in 0..tokens {
                let label = analysis.display_token(index);
                let highlighted = focus == Some(Focus::Query(index))
                    || focus == Some(Focus::Key(index))
                    || selection.contains(&index);
                let color = if highlighted {
                    ui.visuals().selection.stroke.color
                } else {
                    text_color
                };
                for (x, align) in [
                    (left_x - 4.0, Align2::RIGHT_CENTER),
                    (right_x + 4.0, Align2::LEFT_CENTER),
                ] {
                    let rect = painter.text(
                        Pos2::new(x, y_of(index)),
                        align,
                        &label,
                        font.clone(),
                        color,
                    );
                    let is_key_side = align == Align2::LEFT_CENTER;
                    if is_key_side && !selection.is_empty() && !hovering {
                        let largest = from_selection
                            .iter()
                            .copied()
                            .fold(f32::MIN_POSITIVE, f32::max);
                        let bar = Rect::from_min_size(
                            Pos2::new(rect.right() + 4.0, y_of(index) - 3.0),
                            Vec2::new(40.0 * from_selection[index] / largest, 6.0),
                        );
                        painter.rect_filled(
                            bar,
                            1.0,
                            ui.visuals().selection.stroke.color.gamma_multiply(0.7),
                        );
                    }
                    if analysis.sentence[index] == Some(1) {
                        painter.rect_filled(
                            rect.expand(1.0),
                            2.0,
                            sentence_b_tint(ui).gamma_multiply(0.6),
                        );
                        painter.text(
                            Pos2::new(x, y_of(index)),
                            align,
                            &label,
                            font.clone(),
                            color,
                        );
                    }
                }
            }
            if response.clicked() {
                match focus {
                    Some(Focus::Query(index) | Focus::Key(index)) => {
                        actions.push(super::token_click(ui, index, &selection));
                    }
                    None => actions.push(UiAction::SelectToken(None)),
                }
            }
        });
    actions
}

/// Calls `draw` with each key whose line a query row may draw: every key, or only its `top_k`
/// strongest (0 = every key). Every key costs no allocation: this runs per row, per head, per
/// frame.
fn for_each_key_to_draw(row: &[f32], top_k: usize, draw: impl FnMut(usize)) {
    match top_k {
        0 => (0..row.len()).for_each(draw),
        k => crate::model::heads::top_k(row, k)
            .into_iter()
            .map(|(key, _)| key as usize)
            .for_each(draw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_each_rows_strongest_keys() {
        let row = [0.1, 0.5, 0.05, 0.35];
        let keys = |top_k| {
            let mut keys = Vec::new();
            for_each_key_to_draw(&row, top_k, |key| keys.push(key));
            keys
        };
        assert_eq!(keys(0), vec![0, 1, 2, 3]);
        assert_eq!(keys(2), vec![1, 3]);
        assert_eq!(keys(9).len(), 4);
    }
}
