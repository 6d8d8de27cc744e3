//! What the model's heads predict, updated as you type: masked-LM candidates at each mask,
//! a causal LM's next token after the selected position, label probabilities of a classifier,
//! the answer a question-answering head finds in the context (with every context token's start
//! and end probability), the label of every token, and the next-sentence probability.

use egui::{Color32, FontId, Pos2, Rect, RichText, Sense, Stroke, Vec2};

use super::{UiAction, ViewState};
use crate::model::heads::{entity_type, entity_types};
use crate::model::{Analysis, Answer, Classification, HeadKind, ProblemType, TokenPrediction};
use crate::render::head_color;
use crate::worker::ModelInfo;

const BAR_WIDTH: f32 = 240.0;
const LABEL_WIDTH: f32 = 160.0;

/// The Predictions tab. `intact` is the same input without ablation, when heads were switched
/// off: the tab then opens with what changed.
pub fn predictions_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    intact: Option<&Analysis>,
    info: &ModelInfo,
    state: &mut ViewState,
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
    egui::ScrollArea::vertical()
        .id_salt("predictions")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            if let Some(intact) = intact {
                ablation_section(ui, intact, analysis, state, &mut actions);
                ui.separator();
            }
            for kind in &info.prediction_heads {
                ui.add_space(6.0);
                ui.heading(section_title(*kind));
                match kind {
                    HeadKind::SequenceClassification => {
                        if let Some(classification) = &analysis.classification {
                            classification_section(ui, classification);
                        }
                    }
                    HeadKind::QuestionAnswering => {
                        actions.extend(answer_section(ui, analysis));
                    }
                    HeadKind::TokenClassification => {
                        actions.extend(token_label_section(ui, analysis, info, state));
                    }
                    HeadKind::MaskedLm => masked_lm_section(ui, analysis, info),
                    HeadKind::NextToken => next_token_section(ui, analysis, state),
                    HeadKind::NextSentence => match analysis.nsp_is_next {
                        Some(p) => {
                            probability_row(ui, "B follows A", p, "is_next");
                        }
                        None => {
                            ui.weak("Add sentence B above: the head judges whether B follows A.");
                        }
                    },
                }
                ui.add_space(4.0);
                ui.separator();
            }
        });
    actions
}

/// Before → after: each head's top answer with every head on, and with the ablated heads off.
fn ablation_section(
    ui: &mut egui::Ui,
    before: &Analysis,
    after: &Analysis,
    state: &ViewState,
    actions: &mut Vec<UiAction>,
) {
    let off: Vec<String> = after
        .ablated_heads
        .iter()
        .map(|(layer, head)| format!("{layer}:{head}"))
        .collect();
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        ui.heading("Ablation: before → after");
        if ui
            .button("Restore all")
            .on_hover_text("Switch every head back on and run again")
            .clicked()
        {
            actions.push(UiAction::ClearAblation);
        }
    });
    ui.weak(format!(
        "With heads {} (layer:head) switched off: their attention is multiplied by zero. Switch heads in the Overview tab.",
        off.join(", ")
    ));
    let style = before.token_style;
    let top = |prediction: Option<&TokenPrediction>| -> (String, Option<u32>) {
        prediction
            .and_then(|p| p.top_k.first())
            .map(|c| {
                let text = format!("{} {:.1}%", style.display(&c.token), c.prob * 100.0);
                (text, Some(c.id))
            })
            .unwrap_or_default()
    };
    // (what, with every head, with heads off, whether the answer changed)
    let mut rows: Vec<(String, String, String, bool)> = Vec::new();
    let mut guesses = |what: String, a: Option<&TokenPrediction>, b: Option<&TokenPrediction>| {
        let ((was, was_id), (now, now_id)) = (top(a), top(b));
        rows.push((what, was, now, was_id != now_id));
    };
    for (a, b) in before.mlm.iter().flatten().zip(after.mlm.iter().flatten()) {
        guesses(format!("mask at token {}", a.position), Some(a), Some(b));
    }
    if let (Some(a), Some(b)) = (&before.next_token, &after.next_token) {
        let position = state
            .selected_token
            .filter(|&t| t < before.len())
            .unwrap_or(before.len().saturating_sub(1));
        let find = |all: &[TokenPrediction]| all.iter().find(|p| p.position == position).cloned();
        guesses(
            format!("next token after {position}"),
            find(a).as_ref(),
            find(b).as_ref(),
        );
    }
    if let (Some(a), Some(b)) = (before.nsp_is_next, after.nsp_is_next) {
        rows.push((
            "B follows A".to_owned(),
            format!("{:.1}%", a * 100.0),
            format!("{:.1}%", b * 100.0),
            (a > 0.5) != (b > 0.5),
        ));
    }
    if let (Some(a), Some(b)) = (&before.classification, &after.classification) {
        let first = |c: &Classification| {
            c.labels
                .first()
                .map(|l| (format!("{} {:.3}", l.label, l.value()), l.id))
                .unwrap_or_default()
        };
        let ((was, was_id), (now, now_id)) = (first(a), first(b));
        rows.push(("label".to_owned(), was, now, was_id != now_id));
    }
    if let (Some(a), Some(b)) = (&before.qa, &after.qa) {
        let changed = (a.start, a.end) != (b.start, b.end);
        rows.push((
            "answer".to_owned(),
            a.answer.clone(),
            b.answer.clone(),
            changed,
        ));
    }
    if let (Some(a), Some(b)) = (&before.token_classification, &after.token_classification) {
        let changed = a.iter().zip(b).filter(|(x, y)| x.id != y.id).count();
        rows.push((
            "token labels".to_owned(),
            format!("{} tokens", a.len()),
            format!("{changed} changed"),
            changed > 0,
        ));
    }
    egui::Grid::new("ablation")
        .striped(true)
        .spacing([16.0, 4.0])
        .show(ui, |ui| {
            ui.strong("");
            ui.strong("every head on");
            ui.strong("heads off");
            ui.end_row();
            for (what, was, now, changed) in rows {
                ui.label(what);
                ui.label(RichText::new(was).monospace());
                let now = RichText::new(now).monospace();
                if changed {
                    ui.label(now.color(ui.visuals().warn_fg_color).strong())
                        .on_hover_text("The top answer changed");
                } else {
                    ui.label(now);
                }
                ui.end_row();
            }
        });
}

fn section_title(kind: HeadKind) -> &'static str {
    match kind {
        HeadKind::MaskedLm => "Masked language model",
        HeadKind::NextSentence => "Next sentence",
        HeadKind::NextToken => "Next token",
        HeadKind::SequenceClassification => "Classification",
        HeadKind::QuestionAnswering => "Question answering",
        HeadKind::TokenClassification => "Token classification",
    }
}

/// A label, a bar of its probability and the exact value on hover.
fn probability_row(ui: &mut egui::Ui, label: &str, prob: f32, what: &str) -> egui::Response {
    ui.horizontal(|ui| {
        ui.allocate_ui_with_layout(
            Vec2::new(LABEL_WIDTH, 18.0),
            egui::Layout::left_to_right(egui::Align::Center),
            |ui| {
                ui.set_min_width(LABEL_WIDTH);
                ui.add(egui::Label::new(RichText::new(label).monospace()).truncate());
            },
        );
        ui.add(
            egui::ProgressBar::new(prob.clamp(0.0, 1.0))
                .desired_width(BAR_WIDTH)
                .text(format!("{:.1}%", prob * 100.0)),
        )
        .on_hover_text(format!("{what} {prob:.6}"))
    })
    .inner
}

fn classification_section(ui: &mut egui::Ui, classification: &Classification) {
    match classification.problem_type {
        ProblemType::SingleLabelClassification => {
            ui.weak("Softmax over the labels: the probabilities sum to 1.");
        }
        ProblemType::MultiLabelClassification => {
            ui.weak(
                "Multi-label: each label's own probability (a sigmoid), independent of the others.",
            );
        }
        ProblemType::Regression => {
            ui.weak("Regression: the head outputs one number.");
        }
    }
    for label in &classification.labels {
        match (label.prob, label.score) {
            (Some(prob), _) => {
                probability_row(
                    ui,
                    &label.label,
                    prob,
                    &format!("id {} · probability", label.id),
                );
            }
            (None, Some(score)) => {
                ui.horizontal(|ui| {
                    ui.label(RichText::new(&label.label).monospace());
                    ui.label(RichText::new(format!("{score:.4}")).strong().size(18.0))
                        .on_hover_text(format!("score {score:.6}"));
                });
            }
            (None, None) => {}
        }
    }
}

fn answer_section(ui: &mut egui::Ui, analysis: &Analysis) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let Some(answer) = &analysis.qa else {
        if analysis.sentence.contains(&Some(1)) {
            ui.weak("The context (sentence B) was cut away entirely; shorten the question.");
        } else {
            ui.label("Sentence A is the question; type the context, the passage the model takes the answer from, as sentence B.");
            if ui
                .button("Add a context (sentence B)")
                .on_hover_text("Turn on sentence B and type the passage the answer comes from")
                .clicked()
            {
                actions.push(UiAction::UsePair);
            }
        }
        return actions;
    };
    ui.horizontal_wrapped(|ui| {
        ui.label("Answer:");
        ui.label(RichText::new(&answer.answer).strong().size(16.0));
        ui.weak(format!(
            "score {:.4} = p_start · p_end, tokens {}–{}",
            answer.score, answer.start, answer.end
        ));
    });
    let largest = |probs: &[f32]| probs.iter().skip(1).copied().fold(0.0, f32::max) * 100.0;
    ui.weak(format!(
        "Below each context token: its probability of starting (green, tallest {:.1}%) and ending (orange, tallest {:.1}%) the answer. The first token, which stands for no answer, has start {:.1}%, end {:.1}%.",
        largest(&answer.start_probs),
        largest(&answer.end_probs),
        answer.start_probs[0] * 100.0,
        answer.end_probs[0] * 100.0
    ));
    ui.add_space(4.0);
    span_probabilities(ui, analysis, answer);
    actions
}

/// The context tokens in a wrapping row, the answer highlighted, with two bars under each token
/// scaled to the largest start and end probability.
fn span_probabilities(ui: &mut egui::Ui, analysis: &Analysis, answer: &Answer) {
    const BAR_HEIGHT: f32 = 36.0;
    let largest = |probs: &[f32]| {
        probs
            .iter()
            .skip(1)
            .copied()
            .fold(f32::MIN_POSITIVE, f32::max)
    };
    let (start_max, end_max) = (largest(&answer.start_probs), largest(&answer.end_probs));
    let start_color = Color32::from_rgb(60, 170, 90);
    let end_color = Color32::from_rgb(230, 140, 40);
    let font = FontId::monospace(13.0);
    let text_color = ui.visuals().text_color();
    let highlight = ui.visuals().selection.bg_fill;
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = egui::vec2(4.0, 8.0);
        for index in (0..analysis.len()).filter(|&i| analysis.sentence[i] == Some(1)) {
            let label = analysis.display_token(index);
            let galley = ui.painter().layout_no_wrap(label, font.clone(), text_color);
            let width = galley.size().x.max(18.0) + 6.0;
            let (rect, response) =
                ui.allocate_exact_size(Vec2::new(width, 20.0 + BAR_HEIGHT + 4.0), Sense::hover());
            let painter = ui.painter_at(rect);
            let text_rect = Rect::from_min_size(rect.min, Vec2::new(width, 20.0));
            if (answer.start..=answer.end).contains(&index) {
                painter.rect_filled(text_rect, 3.0, highlight);
            }
            painter.galley(
                Pos2::new(
                    text_rect.center().x - galley.size().x / 2.0,
                    text_rect.center().y - galley.size().y / 2.0,
                ),
                galley,
                text_color,
            );
            let half = (width - 4.0) / 2.0;
            for (column, (p, color)) in [
                (answer.start_probs[index] / start_max, start_color),
                (answer.end_probs[index] / end_max, end_color),
            ]
            .into_iter()
            .enumerate()
            {
                let height = BAR_HEIGHT * p.clamp(0.0, 1.0);
                let left = rect.left() + 2.0 + column as f32 * half;
                let bottom = rect.bottom() - 2.0;
                painter.rect_filled(
                    Rect::from_min_max(
                        Pos2::new(left, bottom - height),
                        Pos2::new(left + half - 1.0, bottom),
                    ),
                    0.0,
                    color,
                );
            }
            painter.line_segment(
                [
                    Pos2::new(rect.left(), rect.bottom() - 1.5),
                    Pos2::new(rect.right(), rect.bottom() - 1.5),
                ],
                Stroke::new(1.0, ui.visuals().weak_text_color()),
            );
            response.on_hover_text(format!(
                "{}: start {:.4}, end {:.4}",
                analysis.tokens[index], answer.start_probs[index], answer.end_probs[index]
            ));
        }
    });
}

fn token_label_section(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    info: &ModelInfo,
    state: &ViewState,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let Some(labels) = &analysis.token_classification else {
        return actions;
    };
    let types = entity_types(&info.labels);
    // Pastel tints of distinct hues: black text stays readable on them in both themes.
    let color = |label: &str| {
        let kind = entity_type(label)?;
        let index = types.iter().position(|&t| t == kind).unwrap_or(types.len());
        let [r, g, b] = head_color(index, types.len().max(1));
        let pastel = |c: u8| ((u16::from(c) + 2 * 255) / 3) as u8;
        Some(Color32::from_rgb(pastel(r), pastel(g), pastel(b)))
    };
    ui.horizontal_wrapped(|ui| {
        ui.weak("Labels:");
        for kind in &types {
            let fill = color(&format!("B-{kind}")).unwrap_or_default();
            ui.label(
                RichText::new(format!(" {kind} "))
                    .monospace()
                    .color(Color32::BLACK)
                    .background_color(fill),
            );
        }
        ui.weak("(O: none; I- continues the entity B- starts)");
    });
    ui.add_space(4.0);
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = egui::vec2(3.0, 4.0);
        for token_label in labels {
            let index = token_label.position;
            let mut text = RichText::new(analysis.display_token(index)).monospace();
            let mut button =
                egui::Button::selectable(state.selected_token == Some(index), text.clone());
            if let Some(fill) = color(&token_label.label) {
                text = text.color(Color32::BLACK);
                button =
                    egui::Button::selectable(state.selected_token == Some(index), text).fill(fill);
            }
            let response = ui.add(button).on_hover_text(format!(
                "{} · {:.1}%",
                token_label.label,
                token_label.prob * 100.0
            ));
            if response.clicked() {
                actions.push(UiAction::SelectToken(
                    (state.selected_token != Some(index)).then_some(index),
                ));
            }
        }
    });
    actions
}

fn candidates(ui: &mut egui::Ui, analysis: &Analysis, prediction: &TokenPrediction) {
    for candidate in &prediction.top_k {
        let shown = analysis.token_style.display(&candidate.token);
        probability_row(
            ui,
            &shown,
            candidate.prob,
            &format!("id {} · probability", candidate.id),
        );
    }
}

fn masked_lm_section(ui: &mut egui::Ui, analysis: &Analysis, info: &ModelInfo) {
    let mask = info.mask_token.as_deref().unwrap_or("[MASK]");
    ui.weak(format!(
        "Click a token above to replace it with {mask} and run again, or type {mask} in the text."
    ));
    let predictions = analysis.mlm.as_deref().unwrap_or_default();
    if predictions.is_empty() {
        ui.weak(format!("No {mask} in the input yet."));
    }
    for prediction in predictions {
        ui.add_space(4.0);
        ui.label(
            RichText::new(format!(
                "Position {} ({})",
                prediction.position,
                analysis.display_token(prediction.position)
            ))
            .strong(),
        );
        candidates(ui, analysis, prediction);
    }
}

fn next_token_section(ui: &mut egui::Ui, analysis: &Analysis, state: &ViewState) {
    let Some(predictions) = analysis.next_token.as_deref() else {
        return;
    };
    let position = state
        .selected_token
        .filter(|&p| p < predictions.len())
        .unwrap_or(predictions.len().saturating_sub(1));
    let Some(prediction) = predictions.get(position) else {
        return;
    };
    ui.weak(
        "Click a token above to see what the model expects after it; by default, after the last.",
    );
    ui.label(
        RichText::new(format!(
            "After “{}” (position {position}), the model expects:",
            analysis.display_token(position)
        ))
        .strong(),
    );
    candidates(ui, analysis, prediction);
    if let Some(actual) = analysis.tokens.get(position + 1) {
        let rank = prediction.top_k.iter().position(|c| &c.token == actual);
        ui.weak(match rank {
            Some(rank) => format!(
                "The text continues with {} (candidate {}).",
                analysis.token_style.display(actual),
                rank + 1
            ),
            None => format!(
                "The text continues with {}, not among these candidates.",
                analysis.token_style.display(actual)
            ),
        });
    }
}
