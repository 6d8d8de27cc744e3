//! The logit lens (nostalgebraist 2020) at a mask or at a causal LM's last token: the model's
//! own prediction head read after the embeddings and after every layer, as a layers × top-k
//! table. A guess that is the model's final answer is marked ◆, so the layer where the answer
//! forms stands out.

use crate::model::{Analysis, LensPosition};
use crate::render::attention_color;
use crate::render::scene::{Align, Baseline, Font, Paint, Point, Rect, Scene, Target, Text};
use crate::render::text::{text_width, widest};

const ROW: f32 = 22.0;
const GAP: f32 = 6.0;
const SIZE: f32 = 12.0;
const HEADER_SIZE: f32 = 12.0;
/// The narrowest a column gets to fit a width.
const MIN_COLUMN: f32 = 100.0;

/// What each row of the table is read after.
fn row_label(layer: usize, last: usize) -> String {
    match layer {
        0 => "after the embeddings".to_owned(),
        l if l == last => format!("after layer {l} (the model's prediction)"),
        l => format!("after layer {l}"),
    }
}

/// The lens at one position as a table: a row per hidden state, a column per rank, each guess
/// shaded by its probability against the most confident guess anywhere in the lens (so the
/// layer where the model commits stands out even when every probability is small). Cells are
/// one region: a hit names (row, rank). Within `width` (when given) columns narrow, down to a
/// minimum, and long guesses are cut.
/// Long because the table's column widths depend on every row's guesses, measured in the same pass
/// that draws them.
pub fn scene(analysis: &Analysis, lens: &LensPosition, width: Option<f32>) -> Scene<'static> {
    let style = analysis.token_style;
    let answer = lens
        .layers
        .last()
        .and_then(|layer| layer.top_k.first())
        .map(|guess| guess.id);
    let strongest = lens
        .layers
        .iter()
        .flat_map(|layer| &layer.top_k)
        .map(|guess| guess.prob)
        .fold(f32::MIN_POSITIVE, f32::max);
    let last = lens.layers.len().saturating_sub(1);
    let cell_text = |guess: &crate::model::TokenProbability| {
        let marker = if Some(guess.id) == answer { "◆ " } else { "" };
        format!("{marker}{}  {:.3}", style.display(&guess.token), guess.prob)
    };
    let labels: Vec<String> = lens
        .layers
        .iter()
        .map(|l| row_label(l.layer, last))
        .collect();
    let label_width = widest(&labels, SIZE, Font::Sans) + 2.0 * GAP;
    let ranks = lens.layers.first().map_or(0, |layer| layer.top_k.len());
    let natural = widest(
        lens.layers.iter().flat_map(|l| &l.top_k).map(cell_text),
        SIZE,
        Font::Mono,
    )
    .max(90.0)
        + 2.0 * GAP;
    let column = match width {
        Some(width) => natural
            .min((width - label_width) / ranks.max(1) as f32)
            .max(MIN_COLUMN),
        None => natural,
    };
    // Text that does not fit its cell loses characters from the token's end.
    let fitted = |text: String| -> String {
        let room = column - 2.0 * GAP;
        if text_width(&text, SIZE, Font::Mono) <= room {
            return text;
        }
        let per_char = text_width("M", SIZE, Font::Mono).max(1.0);
        let keep = (room / per_char) as usize;
        let (token, probability) = text.rsplit_once("  ").unwrap_or((&text, ""));
        let keep_token = keep.saturating_sub(probability.chars().count() + 3).max(1);
        format!(
            "{}…  {probability}",
            token.chars().take(keep_token).collect::<String>()
        )
    };
    let top = ROW;
    let mut scene = Scene::new(
        label_width + column * ranks as f32,
        top + ROW * lens.layers.len() as f32,
        format!(
            "Logit lens at token {} ({})",
            lens.position,
            analysis.display_token(lens.position)
        ),
    );
    for rank in 0..ranks {
        scene.text(
            Text::new(
                Point::new(label_width + column * rank as f32 + GAP, ROW / 2.0),
                format!("#{}", rank + 1),
                HEADER_SIZE,
                Font::Sans,
            )
            .bold(),
        );
    }
    for (row, (layer, label)) in lens.layers.iter().zip(&labels).enumerate() {
        let y = top + ROW * row as f32;
        if row % 2 == 1 {
            scene.fill(
                Rect::from_size(0.0, y, scene.width, ROW),
                Paint::FaintBackground,
            );
        }
        scene.text(
            Text::new(
                Point::new(GAP, y + ROW / 2.0),
                label.clone(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Middle),
        );
        let guesses: Vec<String> = layer.top_k.iter().map(cell_text).collect();
        scene.region(
            Rect::from_size(0.0, y, label_width, ROW),
            Target::Label,
            Some(format!("{label}: {}", guesses.join(", "))),
        );
        for (rank, guess) in layer.top_k.iter().enumerate() {
            let [r, g, b] = attention_color(guess.prob, strongest);
            let cell = Rect::from_size(
                label_width + column * rank as f32 + 2.0,
                y + 2.0,
                column - 4.0,
                ROW - 4.0,
            );
            scene.fill(cell, Paint::Rgb([r, g, b]));
            let luminance = 0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b);
            let ink = if luminance > 140.0 {
                Paint::Rgb([0, 0, 0])
            } else {
                Paint::Rgb([255, 255, 255])
            };
            scene.text(
                Text::new(
                    Point::new(cell.min.x + GAP - 2.0, y + ROW / 2.0),
                    fitted(cell_text(guess)),
                    SIZE,
                    Font::Mono,
                )
                .paint(ink),
            );
        }
    }
    scene.region(
        Rect::from_size(
            label_width,
            top,
            column * ranks as f32,
            ROW * lens.layers.len() as f32,
        ),
        Target::Cells {
            rows: lens.layers.len(),
            columns: ranks,
            first: Point::new(0.0, 0.0),
            cell_width: column,
            cell_height: ROW,
        },
        None,
    );
    scene
}

/// The lens view with its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LensView {
    /// The position read (default: the first the lens has, a mask or a causal LM's last token).
    pub token: Option<usize>,
}

impl LensView {
    fn at<'a>(&self, inputs: &super::Inputs<'a>) -> Result<&'a LensPosition, String> {
        let lens = inputs
            .lens
            .ok_or_else(|| "the logit lens needs a masked-LM or next-token head".to_owned())?;
        crate::model::probes::lens_at(lens, self.token).ok_or_else(|| {
            "the logit lens reads the mask tokens, and the text has none; type one".to_owned()
        })
    }
}

impl super::Draw for LensView {
    const LABEL: &'static str = "Lens";
    const DESCRIPTION: &'static str = "The logit lens: the model's own prediction head read after every layer, at a mask or at GPT-2's last token";
    const READS_WORDS: bool = false;

    fn title(&self, inputs: &super::Inputs<'_>) -> String {
        match self.at(inputs) {
            Ok(at) => format!(
                "logit lens at token {} ({})",
                at.position,
                inputs.analysis.display_token(at.position)
            ),
            Err(_) => "logit lens".to_owned(),
        }
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        self.at(inputs).map_or((100.0, 100.0), |at| {
            let drawn = scene(inputs.analysis, at, None);
            (drawn.width, drawn.height)
        })
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let at = self.at(inputs)?;
        Ok(scene(inputs.analysis, at, Some(canvas.width)).into())
    }
}

#[cfg(feature = "gui")]
pub use tab::LensTab;

/// The Lens tab: which position, then the table; a cell's exact probability on hover.
#[cfg(feature = "gui")]
mod tab {
    use egui::RichText;
    use serde::{Deserialize, Serialize};

    use super::LensView;
    use crate::model::probes::lens_at;
    use crate::model::Analysis;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::{UiAction, ViewState};
    use crate::views::Figure;

    /// The Lens tab (it keeps no state of its own).
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub struct LensTab;

    impl Tab for LensTab {
        fn figure(
            &self,
            state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Lens(LensView {
                token: state.selected_token,
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let Some(lens) = cx.run.result.lens.as_deref() else {
                ui.add_space(12.0);
                ui.label(RichText::new("The logit lens needs a language-model head.").strong());
                ui.label("It applies the model's own masked-LM or next-token head to the hidden state after every layer; this checkpoint has neither. Load a masked or causal language model (bert-base-uncased, roberta-base, gpt2) to see it.");
                return;
            };
            let Some(at) = lens_at(lens, cx.state.selected_token) else {
                ui.add_space(12.0);
                ui.label(RichText::new("Type a mask token to look through the layers.").strong());
                ui.label("The lens reads the model's guess at each mask, after every layer: for example \"The capital of France is [MASK].\"");
                return;
            };
            let analysis = cx.run.analysis();
            ui.horizontal(|ui| {
                ui.label("At");
                for entry in lens {
                    let label =
                        format!("{} · {}", entry.position, analysis.display_token(entry.position));
                    if ui
                        .selectable_label(entry.position == at.position, label)
                        .on_hover_text("Show the lens at this token (clicking it in the token strip works too)")
                        .clicked()
                    {
                        cx.actions.push(UiAction::SelectToken(Some(entry.position)));
                    }
                }
                ui.separator();
                ui.weak("Rows: after the embeddings, then after each layer · the last row is the model's prediction · ◆ marks its final answer");
            });
            let Some(figure) = self.figure(cx.state, analysis, None) else {
                return;
            };
            egui::ScrollArea::both()
                .id_salt("lens")
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    let Some(shown) = cx.draw(ui, &figure, None, 0.0) else {
                        return;
                    };
                    if let Some(Hit::Cell { row, column }) = shown.hovered {
                        if let Some(guess) =
                            at.layers.get(row).and_then(|layer| layer.top_k.get(column))
                        {
                            shown.response.on_hover_text_at_pointer(format!(
                                "{} · id {} · probability {:.5}",
                                analysis.token_style.display(&guess.token),
                                guess.id,
                                guess.prob
                            ));
                        }
                    }
                });
        }
    }
}
