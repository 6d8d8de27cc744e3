//! Fine-tuning: the training loss of every step and the evaluation loss of every epoch as a
//! curve, with each epoch's metrics below it. The tab picks a labelled file, shows its first
//! rows and label counts, trains the loaded model on it off the UI thread ([`crate::worker::
//! training`]) and then compares the fine-tuned model with the original.

use serde::{Deserialize, Serialize};

use crate::model::finetune::{EpochReport, Metrics, TrainingProgress};
use crate::render::parts::{bar_color, notes};
use crate::render::scene::{Align, Baseline, Font, Paint, Point, Rect, Scene, Shape, Stroke, Text};

const MARGIN: f32 = 8.0;
const SIZE: f32 = 11.0;
const LINE: f32 = 16.0;
/// Room left of the chart for the loss axis.
const AXIS: f32 = 56.0;

/// The Train view (it has no parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrainView;

/// One epoch's line of the table.
pub fn epoch_line(epoch: &EpochReport) -> String {
    let mut parts = vec![
        format!("epoch {}", epoch.epoch),
        format!("train loss {:.4}", epoch.train_loss),
    ];
    parts.extend(epoch.eval.iter().flat_map(Metrics::parts));
    parts.join(" · ")
}

fn training<'a>(inputs: &super::Inputs<'a>) -> Result<&'a TrainingProgress, String> {
    inputs.training.ok_or_else(|| {
        "no fine-tuning yet: choose a labelled data file in the Train tab (or run `bertscope finetune`)"
            .to_owned()
    })
}

/// A round tick value near `value`.
fn tick_label(value: f64) -> String {
    if value == 0.0 {
        "0".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

impl super::Draw for TrainView {
    const LABEL: &'static str = "Train";
    const DESCRIPTION: &'static str = "Fine-tune the loaded model as a classifier on your own labelled file (CSV, TSV or JSON Lines): the loss of every step, each epoch's evaluation, then compare the fine-tuned model with the original";
    const READS_WORDS: bool = false;

    fn title(&self, inputs: &super::Inputs<'_>) -> String {
        match inputs
            .training
            .and_then(|progress| progress.prepared.as_ref())
        {
            Some(prepared) => format!("fine-tuning on {} examples", prepared.examples),
            None => "fine-tuning".to_owned(),
        }
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        let epochs = inputs.training.map_or(0, |progress| progress.epochs.len());
        (640.0, 360.0 + LINE * epochs as f32)
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let progress = training(inputs)?;
        let (natural_width, natural_height) = self.natural_size(inputs);
        let width = canvas.width.max(natural_width.min(480.0));
        let height = canvas.height.max(natural_height.min(320.0));
        let mut scene = Scene::new(width, height, "Fine-tuning");
        let mut header = Vec::new();
        if let Some(prepared) = &progress.prepared {
            header.push(format!(
                "{}: {} training and {} evaluation examples; {}; {} head; {} steps",
                progress.model,
                prepared.examples,
                prepared.eval_examples,
                prepared.task.describe(),
                if prepared.new_head {
                    "a new"
                } else {
                    "the checkpoint's"
                },
                prepared.steps
            ));
        } else {
            header.push(format!(
                "{}: reading the data and loading the model…",
                progress.model
            ));
        }
        if let Some(last) = progress.steps.last() {
            // No speed here: a figure is the same whenever it is drawn.
            header.push(format!(
                "step {}/{} (epoch {}) · loss {:.4} · learning rate {:.2e}",
                last.step, last.steps, last.epoch, last.loss, last.lr
            ));
        }
        let top = notes(&mut scene, MARGIN, MARGIN, &header) + 10.0;
        let table_height = LINE * progress.epochs.len() as f32 + LINE;
        let chart = Rect::from_size(
            MARGIN + AXIS,
            top + LINE,
            (width - 2.0 * MARGIN - AXIS - 8.0).max(40.0),
            (height - top - LINE - 28.0 - table_height).max(60.0),
        );
        let total = progress
            .total_steps()
            .unwrap_or(progress.steps.len())
            .max(1);
        let eval: Vec<(usize, f64)> = progress
            .epochs
            .iter()
            .filter_map(|epoch| {
                let step = progress
                    .steps
                    .iter()
                    .filter(|step| step.epoch == epoch.epoch)
                    .map(|step| step.step)
                    .max()?;
                Some((step, epoch.eval.as_ref()?.loss))
            })
            .collect();
        let highest = progress
            .steps
            .iter()
            .map(|step| step.loss)
            .chain(eval.iter().map(|(_, loss)| *loss))
            .filter(|loss| loss.is_finite())
            .fold(0f64, f64::max)
            .max(1e-6)
            * 1.05;
        let x = |step: usize| chart.min.x + chart.width() * step as f32 / total as f32;
        let y = |loss: f64| chart.max.y - chart.height() * (loss / highest).clamp(0.0, 1.0) as f32;
        let axis = Stroke::new(1.0, Paint::FaintInk);
        scene.line(Point::new(chart.min.x, chart.max.y), chart.max, axis);
        scene.line(chart.min, Point::new(chart.min.x, chart.max.y), axis);
        for fraction in [0.0, 0.5, 1.0] {
            let value = highest / 1.05 * fraction;
            let at = y(value);
            scene.line(
                Point::new(chart.min.x - 4.0, at),
                Point::new(chart.min.x, at),
                axis,
            );
            scene.text(
                Text::new(
                    Point::new(chart.min.x - 6.0, at),
                    tick_label(value),
                    SIZE,
                    Font::Sans,
                )
                .anchor(Align::End, Baseline::Middle)
                .paint(Paint::FaintInk),
            );
        }
        for (step, anchor) in [(0, Align::Start), (total, Align::End)] {
            scene.text(
                Text::new(
                    Point::new(x(step), chart.max.y + 4.0),
                    format!("step {step}"),
                    SIZE,
                    Font::Sans,
                )
                .anchor(anchor, Baseline::Top)
                .paint(Paint::FaintInk),
            );
        }
        scene.text(
            Text::new(
                Point::new(chart.min.x, chart.min.y - 4.0),
                "loss".to_owned(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Bottom)
            .paint(Paint::FaintInk),
        );
        // Epoch ends, where each evaluation sits.
        for (step, _) in &eval {
            scene.line(
                Point::new(x(*step), chart.min.y),
                Point::new(x(*step), chart.max.y),
                Stroke::new(1.0, Paint::FaintBackground),
            );
        }
        let points: Vec<Point> = progress
            .steps
            .iter()
            .filter(|step| step.loss.is_finite())
            .map(|step| Point::new(x(step.step), y(step.loss)))
            .collect();
        let train_paint = bar_color();
        match points.as_slice() {
            [] => {}
            [only] => scene.add(Shape::Circle {
                center: *only,
                radius: 2.5,
                fill: train_paint,
            }),
            _ => scene.add(Shape::Path {
                points,
                stroke: Stroke::new(1.5, train_paint),
            }),
        }
        for (step, loss) in &eval {
            scene.add(Shape::Circle {
                center: Point::new(x(*step), y(*loss)),
                radius: 4.0,
                fill: Paint::Accent,
            });
        }
        // The key, top right inside the chart.
        let key_x = chart.max.x - 200.0;
        for (row, (paint, label)) in [
            (train_paint, "training loss, per step"),
            (Paint::Accent, "evaluation loss, per epoch"),
        ]
        .into_iter()
        .enumerate()
        {
            let at = chart.min.y + 6.0 + LINE * row as f32;
            scene.add(Shape::Circle {
                center: Point::new(key_x, at),
                radius: 4.0,
                fill: paint,
            });
            scene.text(
                Text::new(
                    Point::new(key_x + 10.0, at),
                    label.to_owned(),
                    SIZE,
                    Font::Sans,
                )
                .anchor(Align::Start, Baseline::Middle),
            );
        }
        let lines: Vec<String> = progress.epochs.iter().map(epoch_line).collect();
        notes(&mut scene, MARGIN, chart.max.y + 24.0, &lines);
        Ok(scene.into())
    }
}

#[cfg(feature = "gui")]
pub use tab::TrainTab;

/// The Train tab: the data file and its columns, the first rows and the label counts, the
/// options, Train and Cancel, the curve, and the comparison once it is done.
#[cfg(feature = "gui")]
mod tab {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Serialize};

    use super::TrainView;
    use crate::model::finetune::data::Columns;
    use crate::model::finetune::FineTuneOptions;
    use crate::model::Analysis;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::{UiAction, ViewState};
    use crate::views::Figure;
    use crate::worker::training::TrainingState;

    /// The Train tab's own state (remembered).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct TrainTab {
        /// The training file, as typed, chosen or dropped.
        pub data: String,
        /// An evaluation file (empty: none).
        pub eval: String,
        /// The text column (empty: the usual name).
        pub text_column: String,
        /// The second text column (empty: none).
        pub text_b_column: String,
        /// The label column (empty: the usual name).
        pub label_column: String,
        /// Passes over the data.
        pub epochs: usize,
        /// Examples per step.
        pub batch_size: usize,
        /// Peak learning rate.
        pub lr: f64,
        /// Texts are cut to this many tokens.
        pub max_len: usize,
        /// Train only the head.
        pub freeze_encoder: bool,
        /// The folder to write (empty: beside the data file).
        pub out: String,
    }

    impl Default for TrainTab {
        fn default() -> Self {
            Self {
                data: String::new(),
                eval: String::new(),
                text_column: String::new(),
                text_b_column: String::new(),
                label_column: String::new(),
                epochs: 3,
                batch_size: 16,
                lr: 5e-5,
                max_len: 128,
                freeze_encoder: false,
                out: String::new(),
            }
        }
    }

    impl TrainTab {
        /// The columns as the tab chose them.
        pub fn columns(&self) -> Columns {
            let chosen = |name: &str| Some(name.trim().to_owned()).filter(|name| !name.is_empty());
            Columns {
                text: chosen(&self.text_column),
                text_b: chosen(&self.text_b_column),
                label: chosen(&self.label_column),
            }
        }

        /// The folder the run writes: as typed, else `<data>-finetuned` beside the data.
        pub fn out_folder(&self) -> PathBuf {
            if !self.out.trim().is_empty() {
                return PathBuf::from(self.out.trim());
            }
            let data = Path::new(self.data.trim());
            let stem = data
                .file_stem()
                .map_or_else(|| "data".into(), |stem| stem.to_string_lossy());
            data.with_file_name(format!("{stem}-finetuned"))
        }

        /// The run the tab asks for.
        pub fn options(&self) -> FineTuneOptions {
            let mut options = FineTuneOptions::new(self.data.trim(), self.out_folder());
            options.eval = Some(self.eval.trim())
                .filter(|eval| !eval.is_empty())
                .map(PathBuf::from);
            options.columns = self.columns();
            options.epochs = self.epochs;
            options.batch_size = self.batch_size;
            options.lr = self.lr;
            options.max_len = self.max_len;
            options.freeze_encoder = self.freeze_encoder;
            options
        }

        fn column_picker(
            ui: &mut egui::Ui,
            label: &str,
            value: &mut String,
            columns: &[String],
            none: &str,
            hover: &str,
        ) {
            let name = ui.label(label);
            egui::ComboBox::from_id_salt(label)
                .selected_text(if value.is_empty() {
                    none
                } else {
                    value.as_str()
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(value, String::new(), none);
                    for column in columns {
                        ui.selectable_value(value, column.clone(), column);
                    }
                })
                .response
                .labelled_by(name.id)
                .on_hover_text(hover);
        }
    }

    impl Tab for TrainTab {
        fn figure(
            &self,
            _state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Train(TrainView))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            // A data file dropped on the window is the training file.
            let dropped = ui.ctx().input(|input| {
                input
                    .raw
                    .dropped_files
                    .iter()
                    .map(|file| file.path().to_owned())
                    .find(|path| !path.as_os_str().is_empty())
            });
            if let Some(path) = dropped {
                self.data = path.display().to_string();
            }
            let running = cx.training.is_some_and(|job| job.running());
            ui.add_enabled_ui(!running, |ui| {
                ui.horizontal(|ui| {
                    let label = ui.label("data:");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.data)
                            .hint_text("a CSV, TSV or JSON Lines file with a header: text, label")
                            .desired_width((ui.available_width() - 380.0).max(160.0)),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("Labelled examples: strings are classes, integers class ids, floats a regression, a|b several labels. Drop a file on the window to choose it.");
                    if ui.button("Browse…").on_hover_text("Choose the training file").clicked() {
                        cx.actions.push(UiAction::PickTrainingData);
                    }
                    let label = ui.label("eval:");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.eval)
                            .hint_text("optional")
                            .desired_width(160.0),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("Examples scored after each epoch (loss, accuracy, macro-F1; regression: MSE and Pearson r)");
                });
                let preview = cx.training_preview;
                if let Some(Ok(preview)) = preview {
                    ui.horizontal(|ui| {
                        let columns = &preview.dataset.columns;
                        Self::column_picker(ui, "text", &mut self.text_column, columns, "auto", "The column holding the text");
                        Self::column_picker(ui, "second text", &mut self.text_b_column, columns, "none", "A column of second texts, making pairs");
                        Self::column_picker(ui, "label", &mut self.label_column, columns, "auto", "The column holding the label");
                    });
                }
                ui.horizontal(|ui| {
                    let label = ui.label("epochs");
                    ui.add(egui::DragValue::new(&mut self.epochs).range(1..=100))
                        .labelled_by(label.id)
                        .on_hover_text("Passes over the training data; the folder is written after each");
                    let label = ui.label("batch");
                    ui.add(egui::DragValue::new(&mut self.batch_size).range(1..=512))
                        .labelled_by(label.id)
                        .on_hover_text("Examples per step");
                    let label = ui.label("learning rate");
                    ui.add(
                        egui::DragValue::new(&mut self.lr)
                            .range(1e-7..=1e-2)
                            .speed(1e-6)
                            .custom_formatter(|value, _| format!("{value:.1e}")),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("AdamW's peak learning rate; it falls linearly to 0 over the run");
                    let label = ui.label("max tokens");
                    ui.add(egui::DragValue::new(&mut self.max_len).range(2..=8192))
                        .labelled_by(label.id)
                        .on_hover_text("Longer texts are cut to this many tokens");
                    ui.checkbox(&mut self.freeze_encoder, "head only")
                        .on_hover_text("Train only the classification head; the encoder stays as it is");
                    let label = ui.label("save to:");
                    let default = self.out_folder().display().to_string();
                    ui.add(
                        egui::TextEdit::singleline(&mut self.out)
                            .hint_text(default)
                            .desired_width(200.0),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("The folder the fine-tuned model is written to after every epoch (a Hugging Face folder)");
                });
            });
            match cx.training_preview {
                Some(Ok(preview)) => {
                    let (text, text_b, label) = &preview.dataset.chosen;
                    ui.label(format!(
                        "{} examples · text: {text}{} · label: {label} · {}",
                        preview.dataset.examples.len(),
                        text_b
                            .as_ref()
                            .map(|b| format!(" · second text: {b}"))
                            .unwrap_or_default(),
                        preview.task.describe()
                    ));
                    ui.horizontal_wrapped(|ui| {
                        ui.weak("labels:");
                        for (name, count) in &preview.counts {
                            ui.label(format!("{name} {count}"));
                        }
                    });
                    egui::Grid::new("training rows")
                        .striped(true)
                        .show(ui, |ui| {
                            for example in preview.dataset.examples.iter().take(5) {
                                let mut text = example.text_a.clone();
                                if let Some(b) = &example.text_b {
                                    text = format!("{text} ‖ {b}");
                                }
                                if text.chars().count() > 90 {
                                    text = text.chars().take(89).collect::<String>() + "…";
                                }
                                ui.label(text);
                                ui.strong(&example.label);
                                ui.end_row();
                            }
                        });
                }
                Some(Err(message)) => {
                    ui.colored_label(ui.visuals().error_fg_color, message);
                }
                None if !self.data.trim().is_empty() => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("reading the data…");
                    });
                }
                None => {
                    ui.label("Choose or drop a labelled file to fine-tune the loaded model on it.");
                }
            }
            ui.horizontal(|ui| {
                let ready = matches!(cx.training_preview, Some(Ok(_)));
                if running {
                    if ui.button("Cancel").on_hover_text("Stop after the current step; the folder keeps the last finished epoch").clicked() {
                        cx.actions.push(UiAction::CancelTraining);
                    }
                } else if ui
                    .add_enabled(ready, egui::Button::new("Train"))
                    .on_hover_text(format!("Fine-tune {} on the file, writing {}", cx.info.name, self.out_folder().display()))
                    .clicked()
                {
                    cx.actions.push(UiAction::StartTraining(Box::new(self.options())));
                }
                if let Some(job) = cx.training {
                    if let (Some(done), Some(total)) = (job.progress.steps.last(), job.progress.total_steps()) {
                        ui.add(
                            egui::ProgressBar::new(done.step as f32 / total.max(1) as f32)
                                .desired_width(260.0)
                                .text(format!(
                                    "step {}/{total} · {:.1} examples/s",
                                    done.step, done.examples_per_second
                                )),
                        );
                    } else if running {
                        ui.spinner();
                    }
                    match &job.state {
                        TrainingState::Running => {}
                        TrainingState::Finished | TrainingState::Cancelled => {
                            let written = !job.progress.epochs.is_empty();
                            ui.label(match (&job.state, written) {
                                (TrainingState::Finished, _) => format!("wrote {}", job.out.display()),
                                (_, true) => format!("stopped; {} holds the last finished epoch", job.out.display()),
                                _ => "stopped before the first epoch ended; nothing was written".to_owned(),
                            });
                            if written
                                && ui
                                    .button("Compare with the original")
                                    .on_hover_text("Open the fine-tuned model, with the original beside it in the Compare tab")
                                    .clicked()
                            {
                                cx.actions.push(UiAction::CompareFineTuned(job.out.clone()));
                            }
                        }
                        TrainingState::Failed(message) => {
                            ui.colored_label(ui.visuals().error_fg_color, message);
                        }
                    }
                }
            });
            // The curve once the run has started stepping (a run that failed first has none).
            if cx
                .training
                .is_none_or(|job| job.progress.prepared.is_none())
            {
                return;
            }
            if running {
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_millis(250));
            }
            let Some(figure) = self.figure(cx.state, cx.analysis(), None) else {
                return;
            };
            cx.draw(ui, &figure, None, 0.0);
        }
    }
}
