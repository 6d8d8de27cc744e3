//! What the model's heads predict, a section per head: masked-LM candidates at each mask, a
//! causal LM's next token after the chosen position, label probabilities of a classifier, the
//! answer a question-answering head finds in the context (with every context token's start and
//! end probability), the label of every token, and the next-sentence probability; with heads
//! ablated, what changed first.

use crate::model::prediction_heads::{entity_type, entity_types};
use crate::model::{Analysis, Classification, HeadKind, ProblemType, TokenPrediction};
use crate::render::head_color;
use crate::render::parts::{bar_color, BarRow};
use crate::render::scene::{
    Align, Baseline, Font, Paint, Point, Rect, Scene, Stroke, Target, Text,
};
use crate::render::text::{text_width, widest};

const HEADING: f32 = 16.0;
const SUBHEADING: f32 = 13.0;
const NOTE: f32 = 11.0;
const LABEL: f32 = 12.0;
const ROW: f32 = 22.0;
/// The colours of the start and end probabilities under the context tokens.
const START_COLOR: [u8; 3] = [60, 170, 90];
const END_COLOR: [u8; 3] = [230, 140, 40];

/// What the predictions view draws from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Predictions<'a> {
    /// The heads the checkpoint has, a section each, in order.
    pub heads: &'a [HeadKind],
    /// The token whose next token a causal LM shows (default: the last).
    pub token: Option<usize>,
    /// The selected tokens (a token label's chip is outlined).
    pub selection: &'a [usize],
    /// The model's mask token, named in the masked-LM section.
    pub mask: Option<&'a str>,
    /// The same input with every head on, when heads were switched off: the view opens with
    /// what changed.
    pub intact: Option<&'a Analysis>,
}

/// A column of text and drawings, laid out top to bottom within a width.
struct Column<'a> {
    scene: Scene<'a>,
    y: f32,
    width: f32,
}

impl<'a> Column<'a> {
    /// Adds `text`, wrapped to the width, and names it for screen readers.
    fn text(&mut self, text: &str, size: f32, font: Font, paint: Paint, bold: bool) {
        let top = self.y;
        for line in wrap(text, size, font, self.width) {
            let mut shape = Text::new(Point::new(0.0, self.y), line, size, font)
                .anchor(Align::Start, Baseline::Top)
                .paint(paint);
            if bold {
                shape = shape.bold();
            }
            self.scene.text(shape);
            self.y += size * 1.35;
        }
        let width = text_width(text, size, font).min(self.width);
        self.scene
            .label(Rect::from_size(0.0, top, width, self.y - top), text, None);
    }

    fn heading(&mut self, text: &str) {
        self.y += 8.0;
        self.text(text, HEADING, Font::Sans, Paint::Ink, true);
        self.y += 4.0;
    }

    fn subheading(&mut self, text: &str) {
        self.y += 4.0;
        self.text(text, SUBHEADING, Font::Sans, Paint::Ink, true);
        self.y += 2.0;
    }

    fn note(&mut self, text: &str) {
        self.text(text, NOTE, Font::Sans, Paint::FaintInk, false);
        self.y += 2.0;
    }

    /// Labelled bars, as long as the width allows.
    fn bars(&mut self, rows: &[BarRow]) {
        let label_width = widest(rows.iter().map(|r| &r.label), LABEL, Font::Mono).min(320.0);
        let value_width = widest(rows.iter().map(|r| &r.value), NOTE, Font::Sans);
        let left = label_width + 10.0;
        let length = (self.width - left - 8.0 - value_width).clamp(80.0, 480.0);
        for row in rows {
            let middle = self.y + ROW / 2.0;
            let paint = if row.marked {
                Paint::Accent
            } else {
                Paint::Ink
            };
            self.scene.text(
                Text::new(
                    Point::new(left - 10.0, middle),
                    row.label.clone(),
                    LABEL,
                    Font::Mono,
                )
                .anchor(Align::End, Baseline::Middle)
                .paint(paint),
            );
            let bar = row.length.clamp(0.0, 1.0) * length;
            self.scene.fill(
                Rect::from_size(left, self.y + 3.0, length, ROW - 6.0),
                Paint::FaintBackground,
            );
            self.scene.fill(
                Rect::from_size(left, self.y + 3.0, bar.max(0.5), ROW - 6.0),
                bar_color(),
            );
            self.scene.text(
                Text::new(
                    Point::new(left + bar.max(0.5) + 6.0, middle),
                    row.value.clone(),
                    NOTE,
                    Font::Sans,
                )
                .anchor(Align::Start, Baseline::Middle),
            );
            self.scene.regions.push(crate::render::scene::Region {
                rect: Rect::from_size(0.0, self.y, left + length, ROW),
                target: row.token.map_or(Target::Label, Target::Token),
                name: Some(format!("{}: {}", row.label, row.value)),
                tooltip: Some(format!("{} {:.6}", row.label, row.length)),
            });
            self.y += ROW;
        }
    }
}

/// `text` broken at spaces into lines no wider than `width` (a word wider than the width gets a
/// line of its own).
pub fn wrap(text: &str, size: f32, font: Font, width: f32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if !line.is_empty() && text_width(&candidate, size, font) > width {
            lines.push(std::mem::replace(&mut line, word.to_owned()));
        } else {
            line = candidate;
        }
    }
    lines.push(line);
    lines
}

/// The title of a head's section.
pub fn section_title(kind: HeadKind) -> &'static str {
    match kind {
        HeadKind::MaskedLm => "Masked language model",
        HeadKind::NextSentence => "Next sentence",
        HeadKind::NextToken => "Next token",
        HeadKind::SequenceClassification => "Classification",
        HeadKind::QuestionAnswering => "Question answering",
        HeadKind::TokenClassification => "Token classification",
    }
}

fn candidates(analysis: &Analysis, prediction: &TokenPrediction) -> Vec<BarRow> {
    prediction
        .top_k
        .iter()
        .map(|candidate| {
            BarRow::new(
                analysis.token_style.display(&candidate.token),
                candidate.prob,
                format!("{:.1}%", candidate.prob * 100.0),
            )
        })
        .collect()
}

/// The view in `width` points. Tokens (answer context, token labels) are regions a hit names.
/// `None` when the model has no prediction head.
pub fn scene<'a>(analysis: &Analysis, view: &Predictions<'_>, width: f32) -> Option<Scene<'a>> {
    if view.heads.is_empty() {
        return None;
    }
    let mut column = Column {
        scene: Scene::new(width, 0.0, "Predictions"),
        y: 0.0,
        width,
    };
    if let Some(intact) = view.intact {
        ablation(&mut column, intact, analysis, view.token);
    }
    for &kind in view.heads {
        column.heading(section_title(kind));
        match kind {
            HeadKind::SequenceClassification => {
                if let Some(classification) = &analysis.classification {
                    classification_section(&mut column, classification);
                }
            }
            HeadKind::QuestionAnswering => answer_section(&mut column, analysis),
            HeadKind::TokenClassification => token_labels(&mut column, analysis, view.selection),
            HeadKind::MaskedLm => {
                let mask = view.mask.unwrap_or("[MASK]");
                let predictions = analysis.mlm.as_deref().unwrap_or_default();
                if predictions.is_empty() {
                    column.note(&format!("No {mask} in the input yet."));
                }
                for prediction in predictions {
                    column.subheading(&format!(
                        "masked LM at token {} ({})",
                        prediction.position,
                        analysis.display_token(prediction.position)
                    ));
                    column.bars(&candidates(analysis, prediction));
                }
            }
            HeadKind::NextToken => next_token_section(&mut column, analysis, view.token),
            HeadKind::NextSentence => match analysis.nsp_is_next {
                Some(p) => {
                    column.bars(&[BarRow::new("B follows A", p, format!("{:.1}%", p * 100.0))])
                }
                None => column.note("With a sentence B, the head judges whether B follows A."),
            },
        }
        column.y += 6.0;
    }
    let mut scene = column.scene;
    scene.height = column.y;
    Some(scene)
}

/// Before → after: each head's top answer with every head on, and with the ablated heads off;
/// changed answers in the alert colour.
/// Long because the before → after table is one layout: its rows, the arrows and the changed ranks
/// line up on columns measured once.
fn ablation(column: &mut Column<'_>, before: &Analysis, after: &Analysis, token: Option<usize>) {
    let off: Vec<String> = after
        .ablated_heads
        .iter()
        .map(|(layer, head)| format!("{layer}:{head}"))
        .collect();
    column.heading("Ablation: before → after");
    column.note(&format!(
        "With heads {} (layer:head) switched off: their attention is multiplied by zero.",
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
        let position = token
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
    let what_width = widest(rows.iter().map(|r| &r.0), LABEL, Font::Sans) + 16.0;
    let was_width = widest(
        rows.iter()
            .map(|r| &r.1)
            .chain(["every head on".to_owned()].iter()),
        LABEL,
        Font::Mono,
    ) + 16.0;
    let header = column.y;
    for (x, text) in [
        (what_width, "every head on"),
        (what_width + was_width, "heads off"),
    ] {
        column.scene.text(
            Text::new(Point::new(x, header), text, LABEL, Font::Sans)
                .anchor(Align::Start, Baseline::Top)
                .bold(),
        );
    }
    column.y += ROW;
    for (what, was, now, changed) in rows {
        let name = format!("{what}: {was} → {now}");
        let middle = column.y + ROW / 2.0;
        column.scene.text(
            Text::new(Point::new(0.0, middle), what, LABEL, Font::Sans)
                .anchor(Align::Start, Baseline::Middle),
        );
        column.scene.text(
            Text::new(Point::new(what_width, middle), was, LABEL, Font::Mono)
                .anchor(Align::Start, Baseline::Middle),
        );
        let mut now = Text::new(
            Point::new(what_width + was_width, middle),
            now,
            LABEL,
            Font::Mono,
        )
        .anchor(Align::Start, Baseline::Middle);
        if changed {
            now = now.paint(Paint::Alert).bold();
        }
        column.scene.text(now);
        let tooltip = changed.then(|| "The top answer changed".to_owned());
        column.scene.label(
            Rect::from_size(0.0, column.y, column.width, ROW),
            name,
            tooltip,
        );
        column.y += ROW;
    }
}

fn classification_section(column: &mut Column<'_>, classification: &Classification) {
    column.note(match classification.problem_type {
        ProblemType::SingleLabelClassification => {
            "Softmax over the labels: the probabilities sum to 1."
        }
        ProblemType::MultiLabelClassification => {
            "Multi-label: each label's own probability (a sigmoid), independent of the others."
        }
        ProblemType::Regression => "Regression: the head outputs one number.",
    });
    let mut rows = Vec::new();
    for label in &classification.labels {
        match (label.prob, label.score) {
            (Some(prob), _) => rows.push(BarRow::new(
                label.label.clone(),
                prob,
                format!("{:.1}%", prob * 100.0),
            )),
            (None, Some(score)) => {
                column.scene.text(
                    Text::new(
                        Point::new(0.0, column.y),
                        label.label.clone(),
                        LABEL,
                        Font::Mono,
                    )
                    .anchor(Align::Start, Baseline::Top),
                );
                let left = text_width(&label.label, LABEL, Font::Mono) + 12.0;
                column.scene.text(
                    Text::new(
                        Point::new(left, column.y - 3.0),
                        format!("{score:.4}"),
                        18.0,
                        Font::Sans,
                    )
                    .anchor(Align::Start, Baseline::Top)
                    .bold(),
                );
                column.y += 26.0;
            }
            (None, None) => {}
        }
    }
    column.bars(&rows);
}

/// The answer: its span highlighted in the wrapped context, and the start and end probabilities.
/// Long because the answer is wrapped in its context with the span highlighted, and the start/end
/// bars share that layout's width.
fn answer_section(column: &mut Column<'_>, analysis: &Analysis) {
    let Some(answer) = &analysis.qa else {
        column.note(if analysis.sentence.contains(&Some(1)) {
            "The context (sentence B) was cut away entirely; shorten the question."
        } else {
            "Sentence A is the question; the context, the passage the model takes the answer from, is sentence B."
        });
        return;
    };
    let top = column.y;
    column.scene.text(
        Text::new(Point::new(0.0, top), "Answer:", 13.0, Font::Sans)
            .anchor(Align::Start, Baseline::Top),
    );
    let left = text_width("Answer:", 13.0, Font::Sans) + 8.0;
    for line in wrap(&answer.answer, 16.0, Font::Sans, column.width - left) {
        column.scene.text(
            Text::new(Point::new(left, column.y - 2.0), line, 16.0, Font::Sans)
                .anchor(Align::Start, Baseline::Top)
                .bold(),
        );
        column.y += 22.0;
    }
    column.scene.label(
        Rect::from_size(left, top, column.width - left, column.y - top),
        answer.answer.clone(),
        Some(format!(
            "the answer, tokens {}–{}",
            answer.start, answer.end
        )),
    );
    column.note(&format!(
        "score {:.4} = p_start · p_end, tokens {}–{}",
        answer.score, answer.start, answer.end
    ));
    let largest = |probs: &[f32]| {
        probs
            .iter()
            .skip(1)
            .copied()
            .fold(f32::MIN_POSITIVE, f32::max)
    };
    let (start_max, end_max) = (largest(&answer.start_probs), largest(&answer.end_probs));
    column.note(&format!(
        "Under each context token: its probability of starting (green, tallest {:.1}%) and ending (orange, tallest {:.1}%) the answer. The first token, which stands for no answer, has start {:.1}%, end {:.1}%.",
        start_max * 100.0,
        end_max * 100.0,
        answer.start_probs[0] * 100.0,
        answer.end_probs[0] * 100.0
    ));
    column.y += 4.0;
    // The context tokens in wrapped rows, the answer highlighted, two bars under each token
    // scaled to the largest start and end probability.
    const BAR_HEIGHT: f32 = 36.0;
    const TOKEN_HEIGHT: f32 = 20.0;
    const SIZE: f32 = 13.0;
    let row_height = TOKEN_HEIGHT + BAR_HEIGHT + 12.0;
    let mut x = 0.0;
    for index in (0..analysis.len()).filter(|&i| analysis.sentence[i] == Some(1)) {
        let label = analysis.display_token(index);
        let width = text_width(&label, SIZE, Font::Mono).max(18.0) + 6.0;
        if x > 0.0 && x + width > column.width {
            x = 0.0;
            column.y += row_height;
        }
        let text_rect = Rect::from_size(x, column.y, width, TOKEN_HEIGHT);
        if (answer.start..=answer.end).contains(&index) {
            column.scene.add(crate::render::scene::Shape::Rect {
                rect: text_rect,
                fill: Some(Paint::Highlight),
                stroke: None,
                rounding: 3.0,
            });
        }
        column.scene.text(
            Text::new(text_rect.center(), label, SIZE, Font::Mono)
                .anchor(Align::Center, Baseline::Middle),
        );
        let half = (width - 4.0) / 2.0;
        let bottom = column.y + TOKEN_HEIGHT + BAR_HEIGHT + 2.0;
        for (slot, (p, rgb)) in [
            (answer.start_probs[index] / start_max, START_COLOR),
            (answer.end_probs[index] / end_max, END_COLOR),
        ]
        .into_iter()
        .enumerate()
        {
            let height = BAR_HEIGHT * p.clamp(0.0, 1.0);
            column.scene.fill(
                Rect::from_size(
                    x + 2.0 + slot as f32 * half,
                    bottom - height,
                    half - 1.0,
                    height,
                ),
                Paint::Rgb(rgb),
            );
        }
        column.scene.line(
            Point::new(x, bottom + 0.5),
            Point::new(x + width, bottom + 0.5),
            Stroke::new(1.0, Paint::FaintInk),
        );
        column.scene.region(
            Rect::from_size(x, column.y, width, TOKEN_HEIGHT + BAR_HEIGHT + 4.0),
            Target::Token(index),
            None,
        );
        x += width + 4.0;
    }
    column.y += row_height;
}

/// Pastel tints of distinct hues, one per entity type: black text stays readable on them.
fn entity_color(types: &[&str], label: &str) -> Option<[u8; 3]> {
    let kind = entity_type(label)?;
    let index = types.iter().position(|&t| t == kind).unwrap_or(types.len());
    let [r, g, b] = head_color(index, types.len().max(1));
    let pastel = |c: u8| ((u16::from(c) + 2 * 255) / 3) as u8;
    Some([pastel(r), pastel(g), pastel(b)])
}

/// The token-classification section: a chip per token, coloured by its label, the selection outlined.
/// Long because the chips wrap across lines and each needs its label, colour and hover text in the
/// same layout pass.
fn token_labels(column: &mut Column<'_>, analysis: &Analysis, selection: &[usize]) {
    let Some(labels) = &analysis.token_classification else {
        return;
    };
    let names: Vec<String> = labels.iter().map(|l| l.label.clone()).collect();
    let types = entity_types(&names);
    const SIZE: f32 = 12.0;
    const CHIP: f32 = 20.0;
    // The key: each entity type in its colour.
    let mut x = 0.0;
    column.scene.text(
        Text::new(
            Point::new(0.0, column.y + CHIP / 2.0),
            "Labels:",
            NOTE,
            Font::Sans,
        )
        .anchor(Align::Start, Baseline::Middle)
        .paint(Paint::FaintInk),
    );
    x += text_width("Labels:", NOTE, Font::Sans) + 6.0;
    for kind in &types {
        let width = text_width(kind, SIZE, Font::Mono) + 8.0;
        if let Some(rgb) = entity_color(&types, &format!("B-{kind}")) {
            column.scene.fill(
                Rect::from_size(x, column.y + 2.0, width, CHIP - 4.0),
                Paint::Rgb(rgb),
            );
        }
        column.scene.text(
            Text::new(
                Point::new(x + 4.0, column.y + CHIP / 2.0),
                *kind,
                SIZE,
                Font::Mono,
            )
            .anchor(Align::Start, Baseline::Middle)
            .paint(Paint::Rgb([0, 0, 0])),
        );
        x += width + 6.0;
    }
    column.scene.text(
        Text::new(
            Point::new(x, column.y + CHIP / 2.0),
            "(O: none; I- continues the entity B- starts)",
            NOTE,
            Font::Sans,
        )
        .anchor(Align::Start, Baseline::Middle)
        .paint(Paint::FaintInk),
    );
    column.y += CHIP + 6.0;
    // The tokens as chips coloured by their entity type.
    let mut x = 0.0;
    for token_label in labels {
        let index = token_label.position;
        let label = analysis.display_token(index);
        let width = text_width(&label, SIZE, Font::Mono) + 10.0;
        if x > 0.0 && x + width > column.width {
            x = 0.0;
            column.y += CHIP + 4.0;
        }
        let chip = Rect::from_size(x, column.y, width, CHIP);
        let (fill, ink) = match entity_color(&types, &token_label.label) {
            Some(rgb) => (Paint::Rgb(rgb), Paint::Rgb([0, 0, 0])),
            None => (Paint::FaintBackground, Paint::Ink),
        };
        column.scene.add(crate::render::scene::Shape::Rect {
            rect: chip,
            fill: Some(fill),
            stroke: selection
                .contains(&index)
                .then_some(Stroke::new(2.0, Paint::Accent)),
            rounding: 3.0,
        });
        column.scene.text(
            Text::new(chip.center(), label.clone(), SIZE, Font::Mono)
                .anchor(Align::Center, Baseline::Middle)
                .paint(ink),
        );
        column.scene.region(
            chip,
            Target::Token(index),
            Some(format!(
                "{label}: {} {:.1}%",
                token_label.label,
                token_label.prob * 100.0
            )),
        );
        x += width + 4.0;
    }
    column.y += CHIP + 4.0;
}

fn next_token_section(column: &mut Column<'_>, analysis: &Analysis, token: Option<usize>) {
    let Some(predictions) = analysis.next_token.as_deref() else {
        return;
    };
    let position = token
        .filter(|&p| p < predictions.len())
        .unwrap_or(predictions.len().saturating_sub(1));
    let Some(prediction) = predictions.get(position) else {
        return;
    };
    column.subheading(&format!(
        "After “{}” (position {position}), the model expects:",
        analysis.display_token(position)
    ));
    column.bars(&candidates(analysis, prediction));
    if let Some(actual) = analysis.tokens.get(position + 1) {
        let rank = prediction.top_k.iter().position(|c| &c.token == actual);
        column.note(&match rank {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_at_spaces_within_the_width() {
        let lines = wrap(
            "the cat sat on the mat and then it slept",
            12.0,
            Font::Sans,
            80.0,
        );
        assert!(lines.len() > 2, "{lines:?}");
        assert!(lines
            .iter()
            .all(|line| text_width(line, 12.0, Font::Sans) <= 80.0 || !line.contains(' ')));
        assert_eq!(lines.join(" "), "the cat sat on the mat and then it slept");
    }
}

/// The predictions view with its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PredictionsView {
    /// The token whose next token a causal LM shows (default: the last).
    pub token: Option<usize>,
}

/// The prediction heads a run shows output of, in the order figures list them: what the
/// view draws when it is not told which heads the checkpoint has.
fn heads_of(analysis: &Analysis) -> Vec<HeadKind> {
    [
        (analysis.mlm.is_some(), HeadKind::MaskedLm),
        (analysis.next_token.is_some(), HeadKind::NextToken),
        (analysis.nsp_is_next.is_some(), HeadKind::NextSentence),
        (
            analysis.classification.is_some(),
            HeadKind::SequenceClassification,
        ),
        (analysis.qa.is_some(), HeadKind::QuestionAnswering),
        (
            analysis.token_classification.is_some(),
            HeadKind::TokenClassification,
        ),
    ]
    .into_iter()
    .filter_map(|(present, kind)| present.then_some(kind))
    .collect()
}

/// The width a figure gives the view.
const NATURAL_WIDTH: f32 = 640.0;

impl super::Draw for PredictionsView {
    const LABEL: &'static str = "Predictions";
    const DESCRIPTION: &'static str =
        "What the model's heads predict: masked words, the next token, labels, answers, entities";
    const READS_WORDS: bool = false;

    fn title(&self, _inputs: &super::Inputs<'_>) -> String {
        "predictions".to_owned()
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        let height = self
            .draw(inputs, &super::Canvas::plain(NATURAL_WIDTH, 0.0))
            .map_or(100.0, |drawn| drawn.scene.height);
        (NATURAL_WIDTH, height)
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let analysis = inputs.analysis;
        if let Some(token) = self.token {
            super::check_token(analysis, token, "token")?;
        }
        let found;
        let heads = if inputs.predicting.is_empty() {
            found = heads_of(analysis);
            &found[..]
        } else {
            inputs.predicting
        };
        let predicting = Predictions {
            heads,
            token: self.token,
            selection: canvas.selection,
            mask: inputs.mask,
            intact: inputs.intact,
        };
        scene(analysis, &predicting, canvas.width)
            .map(super::Drawn::from)
            .ok_or_else(|| "this model has no prediction head (masked LM, next token, classifier, answers or token labels), so there is nothing to draw".to_owned())
    }
}

#[cfg(feature = "gui")]
pub use tab::PredictionsTab;

/// The Predictions tab: the drawing, with the controls and hints only the window has (how to
/// mask a token or pick a position, adding a context, restoring ablated heads).
#[cfg(feature = "gui")]
mod tab {
    use egui::RichText;
    use serde::{Deserialize, Serialize};

    use super::PredictionsView;
    use crate::model::{Analysis, HeadKind};
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::{UiAction, ViewState};
    use crate::views::Figure;

    /// The Predictions tab (it keeps no state of its own).
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub struct PredictionsTab;

    impl Tab for PredictionsTab {
        fn figure(
            &self,
            state: &ViewState,
            run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Predictions(PredictionsView {
                token: state.selected_token.filter(|&token| token < run.len()),
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let info = cx.info;
            if info.prediction_heads.is_empty() {
                ui.add_space(12.0);
                ui.label(RichText::new("This checkpoint has no prediction head.").strong());
                ui.label(format!(
                    "It carries only the {} encoder, so it predicts nothing by itself; every other tab still shows what it computes. Load a checkpoint saved with a head (a masked or causal language model, a classifier, a question-answering or token-classification model) to see its predictions here.",
                    info.family.name()
                ));
                return;
            }
            hints(ui, cx);
            let Some(figure) = self.figure(cx.state, cx.analysis(), None) else {
                return;
            };
            egui::ScrollArea::vertical()
                .id_salt("predictions")
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    let Some(shown) = cx.draw(ui, &figure, None, 0.0) else {
                        return;
                    };
                    let analysis = cx.run.analysis();
                    if let Some(Hit::Token(index)) = shown.hovered {
                        token_tooltip(&shown.response, analysis, index);
                    }
                    if let Some(Hit::Token(index)) = shown.clicked {
                        cx.actions.push(UiAction::SelectToken(
                            (cx.state.selected_token != Some(index)).then_some(index),
                        ));
                    }
                });
        }
    }

    /// "Why?" buttons: each shown top prediction, explained in the Attribution tab.
    fn why_buttons(ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
        let analysis = cx.run.analysis();
        let selected = cx.state.selected_token.filter(|&t| t < analysis.len());
        let mut targets: Vec<(String, String)> = Vec::new();
        for prediction in analysis.mlm.iter().flatten() {
            if let Some(top) = prediction.top_k.first() {
                targets.push((
                    format!(
                        "why {:?} at {}?",
                        analysis.token_style.display(&top.token),
                        prediction.position
                    ),
                    format!("mlm:{}:{}", prediction.position, top.token),
                ));
            }
        }
        if let Some(predictions) = &analysis.next_token {
            let at = selected.unwrap_or(analysis.len().saturating_sub(1));
            if let Some(top) = predictions
                .iter()
                .find(|p| p.position == at)
                .and_then(|p| p.top_k.first())
            {
                targets.push((
                    format!(
                        "why {:?} after {at}?",
                        analysis.token_style.display(&top.token)
                    ),
                    format!("next:{at}:{}", top.token),
                ));
            }
        }
        if let Some(top) = analysis
            .classification
            .as_ref()
            .and_then(|c| c.labels.first())
        {
            targets.push((
                format!("why {}?", top.label),
                format!("label:{}", top.label),
            ));
        }
        if let Some(answer) = &analysis.qa {
            targets.push((
                format!("why {:?}?", answer.answer),
                "answer-start".to_owned(),
            ));
        }
        if let Some(labels) = &analysis.token_classification {
            let label = match selected {
                Some(at) => labels.iter().find(|l| l.position == at),
                None => labels.first(),
            };
            if let Some(label) = label {
                targets.push((
                    format!("why {} at {}?", label.label, label.position),
                    format!("ner:{}:{}", label.position, label.label),
                ));
            }
        }
        if targets.is_empty() {
            return;
        }
        ui.horizontal_wrapped(|ui| {
            for (text, target) in targets {
                if ui
                    .button(text)
                    .on_hover_text(format!("Which input tokens made the model give this: the Attribution tab, target {target}"))
                    .clicked()
                {
                    cx.actions.push(UiAction::Why(target));
                }
            }
        });
    }

    /// What only the window can do, above the drawing.
    fn hints(ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
        why_buttons(ui, cx);
        let analysis = cx.run.analysis();
        if cx.run.result.intact.is_some()
            && ui
                .button("Restore all")
                .on_hover_text("Switch every head back on and run again (heads are switched off in the Overview tab)")
                .clicked()
        {
            cx.actions.push(UiAction::ClearAblation);
        }
        for kind in &cx.info.prediction_heads {
            match kind {
                HeadKind::MaskedLm => {
                    let mask = cx.info.mask_token.as_deref().unwrap_or("[MASK]");
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
                    cx.actions.push(UiAction::UsePair);
                }
                HeadKind::TokenClassification => {
                    ui.weak("Click a token to select it in every view.");
                }
                _ => {}
            }
        }
    }

    /// A context token's start and end probability, or a token's label.
    fn token_tooltip(response: &egui::Response, analysis: &Analysis, index: usize) {
        if let Some(answer) = &analysis.qa {
            if analysis.sentence.get(index) == Some(&Some(1)) {
                response.clone().on_hover_text_at_pointer(format!(
                    "{}: start {:.4}, end {:.4}",
                    analysis.tokens[index], answer.start_probs[index], answer.end_probs[index]
                ));
            }
        }
        if let Some(label) = analysis
            .token_classification
            .iter()
            .flatten()
            .find(|label| label.position == index)
        {
            response.clone().on_hover_text_at_pointer(format!(
                "{} · {:.1}% · click to select it",
                label.label,
                label.prob * 100.0
            ));
        }
    }
}
