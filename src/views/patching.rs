//! Activation patching: how much of the gap between a clean and a corrupted run each piece of
//! the clean run restores, as two grids in diverging colours: layer × position (the residual
//! stream a layer reads) and layer × head (one head's context vectors). 1 restores the clean
//! logit, 0 leaves the corrupted one.

use serde::{Deserialize, Serialize};

use crate::model::patching::Patching;
use crate::render::parts::{diverging_grid, grid_labels, notes, notes_width, outline_grid_cell};
use crate::render::scene::{Align, Baseline, Font, Point, Scene, Target, Text};
use crate::render::text::text_width;

const MARGIN: f32 = 8.0;
const CELL: f32 = 22.0;
const PITCH: f32 = 24.0;
const SIZE: f32 = 11.0;

/// The Patching view (it has no parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PatchingView;

fn patching<'a>(inputs: &super::Inputs<'a>) -> Result<&'a Patching, String> {
    let patching = inputs
        .patching
        .ok_or_else(|| "nothing has been patched yet".to_owned())?;
    if patching.resid_pre.first().map(Vec::len) != Some(inputs.analysis.len()) {
        return Err("the patching is of another text; it is being computed again".to_owned());
    }
    Ok(patching)
}

/// The largest magnitude of a grid, at least 1 (a full restoration).
fn scale(rows: &[Vec<f32>]) -> f32 {
    rows.iter()
        .flatten()
        .fold(1f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m })
}

/// Left edge of the grids: room for the layer numbers and the row title.
const LEFT: f32 = MARGIN + 60.0;
/// Room above a grid for its column labels.
fn label_room(labels: &[String]) -> f32 {
    labels
        .iter()
        .map(|label| text_width(label, SIZE, Font::Sans))
        .fold(12f32, f32::max)
        .min(90.0)
        + 8.0
}

impl super::Draw for PatchingView {
    const LABEL: &'static str = "Patching";
    const DESCRIPTION: &'static str = "Activation patching: run a corrupted text with one piece of the clean run put back (the residual stream at a layer and position, or one head's output) and see how much of the clean logit it restores";
    const READS_WORDS: bool = false;

    fn title(&self, _inputs: &super::Inputs<'_>) -> String {
        "activation patching".to_owned()
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        let analysis = inputs.analysis;
        let (layers, heads, tokens) = (analysis.layers(), analysis.heads(), analysis.len());
        let labels: Vec<String> = (0..tokens).map(|i| analysis.display_token(i)).collect();
        (
            LEFT + PITCH * tokens.max(heads) as f32 + 80.0,
            4.0 * 16.0 + label_room(&labels) + 2.0 * PITCH * layers as f32 + 80.0,
        )
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let patching = patching(inputs)?;
        let analysis = inputs.analysis;
        let target = &patching.target;
        let name = target.display_name(analysis.token_style);
        let header = vec![
            format!(
                "{} at {}: clean logit {:.4}, corrupted {:.4}",
                name.map_or_else(|| format!("output {}", target.id), |n| format!("{n:?}")),
                target
                    .position
                    .map_or_else(|| "the sequence".to_owned(), |p| format!("token {p}")),
                patching.clean_logit,
                patching.corrupt_logit
            ),
            "each cell: (patched − corrupted) / (clean − corrupted); red restores the clean logit, blue pushes away from it".to_owned(),
        ];
        let (width, _) = self.natural_size(inputs);
        let width = canvas
            .width
            .max(width)
            .max(notes_width(MARGIN, &header) + MARGIN);
        let mut scene = Scene::new(width, canvas.height, "Activation patching");
        let mut y = notes(&mut scene, MARGIN, MARGIN, &header) + 8.0;

        // Residual stream: layers × positions, the tokens above, turned.
        let labels: Vec<String> = (0..analysis.len())
            .map(|i| analysis.display_token(i))
            .collect();
        let room = label_room(&labels);
        scene.text(
            Text::new(
                Point::new(MARGIN, y),
                "residual stream entering layer".to_owned(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Top)
            .bold(),
        );
        y += 16.0;
        for (index, label) in labels.iter().enumerate() {
            scene.text(
                Text::new(
                    Point::new(LEFT + PITCH * index as f32 + CELL / 2.0, y + room - 4.0),
                    label.clone(),
                    SIZE,
                    Font::Sans,
                )
                .anchor(Align::Start, Baseline::Middle)
                .upright(),
            );
        }
        y += room;
        let resid_scale = scale(&patching.resid_pre);
        diverging_grid(
            &mut scene,
            &patching.resid_pre,
            (LEFT, y),
            (PITCH, CELL),
            resid_scale,
            |layer, position| {
                (
                    Target::Token(position),
                    format!(
                        "layer {layer}, token {position} ({}): {:.4}",
                        labels[position], patching.resid_pre[layer][position]
                    ),
                )
            },
        );
        y += PITCH * patching.resid_pre.len() as f32 + 20.0;

        // Heads: layers × heads.
        scene.text(
            Text::new(
                Point::new(MARGIN, y),
                "head outputs (click to open the head)".to_owned(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Top)
            .bold(),
        );
        y += 30.0;
        grid_labels(
            &mut scene,
            LEFT,
            y,
            PITCH,
            CELL,
            patching.head_out.len(),
            patching.head_out.first().map_or(0, Vec::len),
        );
        let head_scale = scale(&patching.head_out);
        diverging_grid(
            &mut scene,
            &patching.head_out,
            (LEFT, y),
            (PITCH, CELL),
            head_scale,
            |layer, head| {
                (
                    Target::Head { layer, head },
                    format!(
                        "layer {layer}, head {head}: {:.4}",
                        patching.head_out[layer][head]
                    ),
                )
            },
        );
        if let Some(open) = canvas
            .open
            .filter(|&(layer, _)| layer < patching.head_out.len())
        {
            outline_grid_cell(&mut scene, (LEFT, y), (PITCH, CELL), open);
        }
        y += PITCH * patching.head_out.len() as f32;
        let scales = vec![format!(
            "colours span ±{resid_scale:.3} (residual stream) and ±{head_scale:.3} (heads)"
        )];
        let bottom = notes(&mut scene, MARGIN, y + 8.0, &scales);
        scene.height = scene.height.max(bottom + MARGIN);
        Ok(super::Drawn {
            scene,
            zoomable: Vec::new(),
        })
    }
}

#[cfg(feature = "gui")]
pub use tab::PatchingTab;

/// The Patching tab: the corrupted text (the clean text to start from; a click on a token
/// offers its replacement), the target, progress while it runs, and the grids.
#[cfg(feature = "gui")]
mod tab {
    use serde::{Deserialize, Serialize};

    use super::PatchingView;
    use crate::model::target::TargetSpec;
    use crate::model::Analysis;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::{UiAction, ViewState};
    use crate::views::Figure;
    use crate::worker::ExplainRequest;

    /// The Patching tab's own state.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct PatchingTab {
        /// The corrupted sentence A; empty: start from the clean text.
        pub corrupt: String,
        /// The target as `--target` writes it; empty: the model's default.
        pub target: String,
    }

    impl Tab for PatchingTab {
        fn figure(
            &self,
            _state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Patching(PatchingView))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let clean = cx.run.result.request.clone();
            if self.corrupt.is_empty() {
                self.corrupt = clean.text_a.clone();
            }
            let edit_id = ui.make_persistent_id("patching corrupted text");
            ui.horizontal(|ui| {
                ui.label("corrupted:");
                ui.add(
                    egui::TextEdit::singleline(&mut self.corrupt)
                        .id(edit_id)
                        .desired_width((ui.available_width() - 260.0).max(120.0)),
                )
                .on_hover_text("The same text with something changed, tokenizing to as many tokens; the clean text is the one above");
                ui.label("why:");
                ui.add(egui::TextEdit::singleline(&mut self.target).hint_text("default").desired_width(120.0))
                    .on_hover_text("The logit read on every run: mlm:I[:TOKEN], next:I[:TOKEN], label[:NAME], answer-start[:I], answer-end[:I], ner:I[:LABEL]");
            });
            // Clicking a token of the clean text selects it in the corrupted text, to type over.
            let analysis = cx.analysis();
            ui.horizontal_wrapped(|ui| {
                ui.weak("replace:");
                for index in 0..analysis.len() {
                    let (Some(0), Some((start, end))) =
                        (analysis.sentence[index], analysis.char_offsets[index])
                    else {
                        continue;
                    };
                    let clicked = ui
                        .small_button(analysis.display_token(index))
                        .on_hover_text("Start from the clean text with this token selected in the corrupted box: type its replacement")
                        .clicked();
                    if clicked {
                        self.corrupt = clean.text_a.clone();
                        let mut state =
                            egui::TextEdit::load_state(ui.ctx(), edit_id).unwrap_or_default();
                        state.cursor.set_char_range(Some(egui::text::CCursorRange::two(
                            egui::text::CCursor::new(start),
                            egui::text::CCursor::new(end),
                        )));
                        state.store(ui.ctx(), edit_id);
                        ui.ctx().memory_mut(|memory| memory.request_focus(edit_id));
                    }
                }
            });
            let target = match self.target.trim() {
                "" => Ok(TargetSpec::default()),
                spec => spec.parse::<TargetSpec>().map_err(|err| err.to_string()),
            };
            let target = match target {
                Ok(target) => target,
                Err(message) => {
                    ui.colored_label(ui.visuals().error_fg_color, message);
                    return;
                }
            };
            if self.corrupt.trim() == clean.text_a.trim() {
                ui.label("Change the corrupted text (a name, a number, one word) to see which layers and heads carry the difference.");
                return;
            }
            let request = ExplainRequest::Patching {
                clean: (clean.text_a.clone(), clean.text_b.clone()),
                corrupt: (self.corrupt.clone(), clean.text_b.clone()),
                target,
            };
            if !cx.explanation_ready(ui, &request, "patching…", &|done, total| {
                format!("patching · {done}/{total} batches")
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
