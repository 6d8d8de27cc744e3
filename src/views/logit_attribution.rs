//! Direct logit attribution (pre-LayerNorm causal models): what each head, each layer's MLP
//! and attention bias, and the embedding wrote into the residual stream toward one next-token
//! logit, as a layers × heads grid in diverging colours and a bar per other part.

use serde::{Deserialize, Serialize};

use crate::model::logit_attribution::LogitAttribution;
use crate::render::parts::{
    diverging_bar, diverging_grid, grid_labels, notes, notes_width, outline_grid_cell,
};
use crate::render::scene::{
    Align, Baseline, Font, Paint, Point, Rect, Scene, Stroke, Target, Text,
};

const MARGIN: f32 = 8.0;
const PITCH: f32 = 24.0;
const CELL: f32 = 22.0;
const ROW: f32 = 18.0;
const SIZE: f32 = 11.0;
const LEFT: f32 = MARGIN + 60.0;
const LABELS: f32 = 90.0;
const BARS: f32 = 300.0;

/// The Logit attribution view (it has no parameter: the position is the tab's target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogitAttributionView;

fn parts<'a>(inputs: &super::Inputs<'a>) -> Result<&'a LogitAttribution, String> {
    let parts = inputs
        .logit_attribution
        .ok_or_else(|| "no logit has been taken apart yet".to_owned())?;
    if parts
        .target
        .position
        .is_none_or(|position| position >= inputs.analysis.len())
    {
        return Err(
            "the logit attribution is of another text; it is being computed again".to_owned(),
        );
    }
    Ok(parts)
}

/// The parts beside the heads, as bars: (label, value).
fn other_parts(parts: &LogitAttribution) -> Vec<(String, f32)> {
    let mut rows = vec![("embedding".to_owned(), parts.embed)];
    for (layer, (&bias, &mlp)) in parts.attn_bias.iter().zip(&parts.mlps).enumerate() {
        rows.push((format!("layer {layer} MLP"), mlp));
        if parts.heads.get(layer).is_some_and(Vec::is_empty) {
            // Attention that does not split into heads is one part.
            rows.push((format!("layer {layer} attention"), parts.attention[layer]));
        } else {
            rows.push((format!("layer {layer} attn bias"), bias));
        }
    }
    rows.push(("final norm bias".to_owned(), parts.final_bias));
    rows
}

impl super::Draw for LogitAttributionView {
    const LABEL: &'static str = "Logit attribution";
    const DESCRIPTION: &'static str = "For causal models: the next-token logit taken apart into what each head, MLP and the embedding wrote into the residual stream (direct logit attribution)";
    const READS_WORDS: bool = false;

    fn title(&self, inputs: &super::Inputs<'_>) -> String {
        let style = inputs.analysis.token_style;
        match inputs
            .logit_attribution
            .and_then(|p| p.target.display_name(style))
        {
            Some(name) => format!("logit attribution of {name:?}"),
            None => "logit attribution".to_owned(),
        }
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        let analysis = inputs.analysis;
        let grid_width = LEFT + PITCH * analysis.heads() as f32;
        let bars = (2 + 2 * analysis.layers()) as f32 * ROW;
        (
            (grid_width + 40.0).max(LABELS + BARS + 100.0),
            3.0 * 16.0 + 30.0 + PITCH * analysis.layers() as f32 + 30.0 + bars + 30.0,
        )
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let parts = parts(inputs)?;
        let target = &parts.target;
        let style = inputs.analysis.token_style;
        let mut header = vec![
            format!(
                "the logit of {} after token {}: {:.4} = the sum of every part below ({:.4})",
                target
                    .display_name(style)
                    .map_or_else(|| format!("id {}", target.id), |n| format!("{n:?}")),
                target.position.unwrap_or_default(),
                parts.logit,
                parts.total()
            ),
            if parts.centred {
                "each part: ((c − mean c)/σ)·γ·W_U[token], σ of the whole stream entering the final LayerNorm; red raises the logit".to_owned()
            } else {
                "each part: (c/σ)·γ·W_U[token], σ the RMS of the whole stream entering the final RMSNorm (no mean, no shift); red raises the logit".to_owned()
            },
        ];
        if let Some(cap) = parts.softcap {
            header.push(format!(
                "explained before the head's soft-cap: the prediction is {cap}·tanh(logit/{cap}) = {:.4}",
                parts.target.logit
            ));
        }
        if parts.heads.iter().all(Vec::is_empty) {
            header.push(
                "attention is one part per layer: each block's whole output is normalised before it is added, so it does not split into heads"
                    .to_owned(),
            );
        }
        let (width, _) = self.natural_size(inputs);
        let width = canvas
            .width
            .max(width)
            .max(notes_width(MARGIN, &header) + MARGIN);
        let mut scene = Scene::new(width, canvas.height, "Logit attribution");
        let mut y = notes(&mut scene, MARGIN, MARGIN, &header) + 8.0;
        scene.text(
            Text::new(
                Point::new(MARGIN, y),
                "heads (click to open the head)".to_owned(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Top)
            .bold(),
        );
        y += 30.0;
        let heads = parts.heads.first().map_or(0, Vec::len);
        grid_labels(&mut scene, LEFT, y, PITCH, CELL, parts.heads.len(), heads);
        let others = other_parts(parts);
        let scale = parts
            .heads
            .iter()
            .flatten()
            .chain(others.iter().map(|(_, v)| v))
            .fold(1e-6f32, |m, v| m.max(v.abs()));
        diverging_grid(
            &mut scene,
            &parts.heads,
            (LEFT, y),
            (PITCH, CELL),
            scale,
            |layer, head| {
                (
                    Target::Head { layer, head },
                    format!(
                        "layer {layer}, head {head}: {:+.4}",
                        parts.heads[layer][head]
                    ),
                )
            },
        );
        if let Some(open) = canvas.open.filter(|&(layer, _)| layer < parts.heads.len()) {
            outline_grid_cell(&mut scene, (LEFT, y), (PITCH, CELL), open);
        }
        y += PITCH * parts.heads.len() as f32 + 20.0;
        let centre = MARGIN + LABELS + BARS / 2.0;
        for (index, (label, value)) in others.iter().enumerate() {
            let top = y + ROW * index as f32;
            scene.text(
                Text::new(
                    Point::new(centre - BARS / 2.0 - 8.0, top + ROW / 2.0),
                    label.clone(),
                    SIZE,
                    Font::Sans,
                )
                .anchor(Align::End, Baseline::Middle),
            );
            diverging_bar(&mut scene, (centre, BARS / 2.0), (top, ROW), *value, scale);
            scene.label(
                Rect::from_size(MARGIN, top, LABELS + BARS + 60.0, ROW),
                format!("{label}: {value:+.4}"),
                None,
            );
        }
        let bottom = y + ROW * others.len() as f32;
        scene.line(
            Point::new(centre, y),
            Point::new(centre, bottom),
            Stroke::new(1.0, Paint::FaintInk),
        );
        let bottom = notes(
            &mut scene,
            MARGIN,
            bottom + 8.0,
            &[format!("colours and bars span ±{scale:.3}")],
        );
        scene.height = scene.height.max(bottom + MARGIN);
        Ok(super::Drawn {
            scene,
            zoomable: Vec::new(),
        })
    }
}

#[cfg(feature = "gui")]
pub use tab::LogitAttributionTab;

/// The Logit attribution tab: the next token after the selected position (or the last), and
/// the grid and bars; for post-LayerNorm models it says why there is nothing to show.
#[cfg(feature = "gui")]
mod tab {
    use serde::{Deserialize, Serialize};

    use super::LogitAttributionView;
    use crate::model::target::{TargetHead, TargetSpec};
    use crate::model::Analysis;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::{UiAction, ViewState};
    use crate::views::Figure;
    use crate::worker::ExplainRequest;

    /// The Logit attribution tab's own state.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct LogitAttributionTab {
        /// The token whose logit is taken apart (vocabulary spelling); empty: the top one.
        pub token: String,
    }

    impl Tab for LogitAttributionTab {
        fn figure(
            &self,
            _state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::LogitAttribution(LogitAttributionView))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let analysis = cx.run.analysis();
            let position = cx
                .state
                .selection()
                .first()
                .copied()
                .filter(|&p| p < analysis.len())
                .unwrap_or(analysis.len().saturating_sub(1));
            ui.horizontal(|ui| {
                ui.label(format!(
                    "the next token after token {position} ({}) — select a token to move;",
                    analysis.display_token(position)
                ));
                ui.label("token:");
                ui.add(egui::TextEdit::singleline(&mut self.token).hint_text("top prediction").desired_width(120.0))
                    .on_hover_text("The vocabulary token whose logit is taken apart (with or without its leading Ġ); empty: the model's top prediction");
            });
            let request = ExplainRequest::LogitAttribution {
                text: (
                    cx.run.result.request.text_a.clone(),
                    cx.run.result.request.text_b.clone(),
                ),
                target: TargetSpec {
                    head: Some(TargetHead::NextToken),
                    position: Some(position),
                    output: Some(self.token.trim().to_owned()).filter(|t| !t.is_empty()),
                },
            };
            if !cx.explanation_ready(ui, &request, "taking the logit apart…", &|done, total| {
                format!("taking the logit apart · {done}/{total}")
            }) {
                return;
            }
            let Some(figure) = self.figure(cx.state, cx.analysis(), None) else {
                return;
            };
            let Some(shown) = cx.draw(ui, &figure, None, 0.0) else {
                return;
            };
            if let Some(Hit::Head { layer, head }) = shown.clicked {
                cx.actions.push(UiAction::OpenInHeatmap { layer, head });
            }
        }
    }
}
