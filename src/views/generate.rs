//! A causal model writing, one step at a time: the distribution a step draws from, before the
//! logits processors (outlined bars) and after them (filled bars; the tokens top-k and top-p
//! cut away greyed), with the chosen token marked, as Transformer Explainer draws GPT-2's.
//! The next step's distribution is processed here, from the logits, so that the tab's sliders
//! redraw it at once; a past step's is the record it kept (its ten most probable tokens).

use crate::model::generation::{process, Decoding, Sampling};
use crate::render::parts::{bar_color, notes, notes_width};
use crate::render::scene::{Align, Baseline, Font, Paint, Point, Rect, Scene, Stroke, Text};
use crate::worker::generation::{GenerationState, UPCOMING_SHOWN};

const MARGIN: f32 = 8.0;
const ROW: f32 = 18.0;
const SIZE: f32 = 12.0;
const LABELS: f32 = 150.0;
const BARS: f32 = 320.0;
const VALUES: f32 = 170.0;

/// The Generate view: the distribution of step `step` (0-based among the generated tokens), or
/// of the next step, processed as `decoding` says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateView {
    /// A generated token's step; `None`: the step to come.
    pub step: Option<usize>,
    /// How the step to come chooses (a past step shows what it was chosen with).
    pub decoding: Decoding,
}

impl Default for GenerateView {
    fn default() -> Self {
        Self {
            step: None,
            decoding: Decoding::Greedy,
        }
    }
}

/// One bar of the figure.
struct Candidate {
    token: String,
    prob: f32,
    prob_after: f32,
    chosen: bool,
}

/// What the figure draws: a title line, the bars, how many tokens were kept of how many.
struct Distribution {
    heading: String,
    rows: Vec<Candidate>,
    kept: usize,
    vocab: usize,
}

/// A short description of a decoding, as the figure's heading and the tab's tooltips say it.
pub fn decoding_name(decoding: &Decoding) -> String {
    match decoding {
        Decoding::Greedy => "greedy".to_owned(),
        Decoding::Sample(Sampling {
            temperature,
            top_k,
            top_p,
        }) => format!(
            "sampling: T = {temperature:.2}, top-k {}, top-p {top_p:.2}",
            if *top_k == 0 {
                "off".to_owned()
            } else {
                top_k.to_string()
            }
        ),
    }
}

impl GenerateView {
    fn distribution(
        &self,
        state: &GenerationState,
        style: crate::model::tokenizer::TokenStyle,
    ) -> Result<Distribution, String> {
        match self.step {
            Some(index) => {
                let step = state
                    .steps
                    .get(index)
                    .ok_or_else(|| format!("there is no generated token {index}"))?;
                let mut rows: Vec<Candidate> = step
                    .top_k
                    .iter()
                    .map(|c| Candidate {
                        token: style.display(&c.token),
                        prob: c.prob,
                        prob_after: c.prob_after,
                        chosen: c.id == step.chosen.id,
                    })
                    .collect();
                if !rows.iter().any(|row| row.chosen) {
                    rows.push(Candidate {
                        token: style.display(&step.chosen.token),
                        prob: step.chosen.prob,
                        prob_after: step.chosen.prob_after,
                        chosen: true,
                    });
                }
                let vocab = step_vocab(state);
                Ok(Distribution {
                    heading: format!(
                        "step {}: {:?} at position {}, p = {:.4} before the processors, {:.4} after",
                        index + 1,
                        style.display(&step.chosen.token),
                        step.position,
                        step.chosen.prob,
                        step.chosen.prob_after
                    ),
                    rows,
                    kept: step.kept,
                    vocab,
                })
            }
            None => {
                let upcoming = state.upcoming.as_ref().ok_or_else(|| match state.ended {
                    Some(reason) => format!("the generation has ended ({})", ended_name(reason)),
                    None => "the next token's distribution is being computed".to_owned(),
                })?;
                let logits = &upcoming.next.logits;
                let processed = process(logits, &self.decoding);
                let rows = upcoming
                    .top
                    .iter()
                    .take(UPCOMING_SHOWN)
                    .map(|(id, token)| Candidate {
                        token: style.display(token),
                        prob: processed.probs[*id as usize],
                        prob_after: processed.probs_after[*id as usize],
                        chosen: false,
                    })
                    .collect();
                Ok(Distribution {
                    heading: format!(
                        "the next token, at position {} ({})",
                        upcoming.position,
                        decoding_name(&self.decoding)
                    ),
                    rows,
                    kept: processed.kept,
                    vocab: logits.len(),
                })
            }
        }
    }
}

/// The vocabulary size, from the distribution the state holds.
fn step_vocab(state: &GenerationState) -> usize {
    state
        .upcoming
        .as_ref()
        .map_or(0, |upcoming| upcoming.next.logits.len())
}

/// Why a generation ended, in words.
pub fn ended_name(reason: crate::model::generation::StopReason) -> &'static str {
    use crate::model::generation::StopReason;
    match reason {
        StopReason::EndOfText => "the model wrote its end-of-text token",
        StopReason::Positions => "the model's positions are used up",
        StopReason::StopText => "the stop text appeared",
        StopReason::MaxNewTokens => "as many tokens as asked for",
    }
}

impl super::Draw for GenerateView {
    const LABEL: &'static str = "Generate";
    const DESCRIPTION: &'static str = "For causal models: let the model write, step by step, and see the distribution each token is drawn from before and after temperature, top-k and top-p";
    const READS_WORDS: bool = false;

    fn title(&self, _inputs: &super::Inputs<'_>) -> String {
        match self.step {
            Some(step) => format!("generation step {}", step + 1),
            None => "the next token".to_owned(),
        }
    }

    fn natural_size(&self, _inputs: &super::Inputs<'_>) -> (f32, f32) {
        (
            2.0 * MARGIN + LABELS + BARS + VALUES,
            2.0 * MARGIN + 3.0 * 16.0 + ROW * (UPCOMING_SHOWN + 1) as f32 + 40.0,
        )
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let state = inputs
            .generation
            .ok_or_else(|| "nothing has been generated yet".to_owned())?;
        let distribution = self.distribution(state, inputs.analysis.token_style)?;
        let header = vec![
            distribution.heading.clone(),
            format!(
                "the processors kept {} of {} tokens; outlined: the probability before them, filled: after (grey: cut away)",
                distribution.kept,
                if distribution.vocab > 0 {
                    distribution.vocab.to_string()
                } else {
                    "the vocabulary's".to_owned()
                }
            ),
        ];
        let (width, _) = self.natural_size(inputs);
        let width = canvas
            .width
            .max(width)
            .max(notes_width(MARGIN, &header) + MARGIN);
        let mut scene = Scene::new(width, canvas.height, "Generate");
        let top = notes(&mut scene, MARGIN, MARGIN, &header) + 8.0;
        let largest = distribution
            .rows
            .iter()
            .map(|row| row.prob.max(row.prob_after))
            .fold(1e-6f32, f32::max);
        let left = MARGIN + LABELS;
        for (index, row) in distribution.rows.iter().enumerate() {
            let y = top + ROW * index as f32;
            let cut = row.prob_after <= 0.0;
            let ink = if row.chosen {
                Paint::Accent
            } else if cut {
                Paint::FaintInk
            } else {
                Paint::Ink
            };
            let mut label = Text::new(
                Point::new(left - 8.0, y + ROW / 2.0),
                row.token.clone(),
                SIZE,
                Font::Mono,
            )
            .anchor(Align::End, Baseline::Middle)
            .paint(ink);
            if row.chosen {
                label = label.bold();
            }
            scene.text(label);
            let after = row.prob_after / largest * BARS;
            scene.fill(
                Rect::from_size(left, y + 3.0, after.max(0.5), ROW - 6.0),
                if cut {
                    Paint::FaintBackground
                } else {
                    bar_color()
                },
            );
            let before = row.prob / largest * BARS;
            scene.outline(
                Rect::from_size(left, y + 2.0, before.max(0.5), ROW - 4.0),
                Stroke::new(
                    1.0,
                    if row.chosen {
                        Paint::Accent
                    } else {
                        Paint::FaintInk
                    },
                ),
            );
            let value = if cut {
                format!("{:.4} → cut", row.prob)
            } else {
                format!("{:.4} → {:.4}", row.prob, row.prob_after)
            };
            let value = if row.chosen {
                format!("{value}  chosen")
            } else {
                value
            };
            scene.text(
                Text::new(
                    Point::new(left + BARS + 8.0, y + ROW / 2.0),
                    value.clone(),
                    11.0,
                    Font::Sans,
                )
                .anchor(Align::Start, Baseline::Middle)
                .paint(ink),
            );
            scene.label(
                Rect::from_size(MARGIN, y, LABELS + BARS + VALUES, ROW),
                format!("{}: {value}", row.token),
                Some(if cut {
                    format!(
                        "{}: p = {:.4}, cut away by top-k or top-p",
                        row.token, row.prob
                    )
                } else {
                    format!(
                        "{}: p = {:.4} before the processors, {:.4} after",
                        row.token, row.prob, row.prob_after
                    )
                }),
            );
        }
        let bottom = top + ROW * distribution.rows.len() as f32;
        scene.line(
            Point::new(left, top),
            Point::new(left, bottom),
            Stroke::new(1.0, Paint::FaintInk),
        );
        let bottom = notes(
            &mut scene,
            MARGIN,
            bottom + 8.0,
            &[format!("bars span 0 to {largest:.3}")],
        );
        scene.height = scene.height.max(bottom + MARGIN);
        Ok(super::Drawn {
            scene,
            zoomable: Vec::new(),
        })
    }
}

#[cfg(feature = "gui")]
pub use tab::{GenerateAction, GenerateTab};

/// The Generate tab: *Step*, *Play* / *Stop*, *Reset*, the sampling controls, the generated
/// tokens (click one to see its step, right-click to regenerate from it), and the figure.
#[cfg(feature = "gui")]
mod tab {
    use serde::{Deserialize, Serialize};

    use super::{decoding_name, ended_name, GenerateView};
    use crate::model::generation::{Decoding, Sampling};
    use crate::model::Analysis;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::{UiAction, ViewState};
    use crate::views::Figure;

    /// What the Generate tab asks the app to do.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum GenerateAction {
        /// Keep the next token's distribution of the text up to date.
        Preview,
        /// Take one step.
        Step,
        /// Take steps until *Stop*, the tab's number of new tokens, or the end.
        Play,
        /// Stop playing.
        Stop,
        /// Forget the generation and put the prompt back.
        Reset,
        /// Draw generated token `index` again (what came after it is dropped).
        RegenerateFrom(usize),
        /// Save the generation as JSON (the app asks where).
        Save,
    }

    /// The Generate tab's own state (its settings are remembered).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct GenerateTab {
        /// Take the most probable token instead of sampling.
        pub greedy: bool,
        /// `TemperatureLogitsWarper`.
        pub temperature: f64,
        /// `TopKLogitsWarper` (0: off).
        pub top_k: usize,
        /// `TopPLogitsWarper` (1: off).
        pub top_p: f64,
        /// The sampler's seed.
        pub seed: u64,
        /// How many tokens *Play* writes.
        pub max_new_tokens: usize,
        /// The generated token whose step is shown; `None`: the next step.
        #[serde(skip)]
        pub selected: Option<usize>,
    }

    impl Default for GenerateTab {
        fn default() -> Self {
            let sampling = Sampling::default();
            Self {
                greedy: true,
                temperature: sampling.temperature,
                top_k: sampling.top_k,
                top_p: sampling.top_p,
                seed: 0,
                max_new_tokens: 20,
                selected: None,
            }
        }
    }

    impl GenerateTab {
        /// How the next step chooses.
        pub fn decoding(&self) -> Decoding {
            if self.greedy {
                Decoding::Greedy
            } else {
                Decoding::Sample(Sampling {
                    temperature: self.temperature.max(0.01),
                    top_k: self.top_k,
                    top_p: self.top_p.clamp(0.01, 1.0),
                })
            }
        }

        fn controls(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let state = cx.generation;
            let busy = state.pending.is_some();
            ui.horizontal_wrapped(|ui| {
                let can_step = state.ended.is_none();
                if ui
                    .add_enabled(can_step && !busy && !state.playing, egui::Button::new("Step"))
                    .on_hover_text("Choose one token and add it to the text")
                    .clicked()
                {
                    cx.actions.push(UiAction::Generate(GenerateAction::Step));
                }
                if state.playing {
                    if ui.button("Stop").on_hover_text("Stop after the step in progress").clicked() {
                        cx.actions.push(UiAction::Generate(GenerateAction::Stop));
                    }
                } else if ui
                    .add_enabled(can_step && !busy, egui::Button::new("Play"))
                    .on_hover_text("Write the number of new tokens below, one step at a time (typing or Stop interrupts)")
                    .clicked()
                {
                    cx.actions.push(UiAction::Generate(GenerateAction::Play));
                }
                if ui
                    .add_enabled(state.started(), egui::Button::new("Reset"))
                    .on_hover_text("Forget what was generated and put the prompt back")
                    .clicked()
                {
                    cx.actions.push(UiAction::Generate(GenerateAction::Reset));
                }
                if ui
                    .add_enabled(!state.steps.is_empty(), egui::Button::new("Save JSON…"))
                    .on_hover_text("Every step as JSON, as `bertscope generate --out` writes it")
                    .clicked()
                {
                    cx.actions.push(UiAction::Generate(GenerateAction::Save));
                }
                ui.separator();
                ui.label("new tokens:");
                ui.add(egui::DragValue::new(&mut self.max_new_tokens).range(1..=1024))
                    .on_hover_text("How many tokens Play writes");
                if busy {
                    ui.spinner();
                }
            });
            ui.horizontal_wrapped(|ui| {
                ui.checkbox(&mut self.greedy, "greedy")
                    .on_hover_text("Take the most probable token (argmax); off: sample after temperature, top-k and top-p, as transformers' warpers do");
                ui.add_enabled_ui(!self.greedy, |ui| {
                    ui.label("temperature");
                    ui.add(egui::Slider::new(&mut self.temperature, 0.05..=2.0).step_by(0.05))
                        .on_hover_text("TemperatureLogitsWarper: the logits are divided by it; below 1 sharpens the distribution, above 1 flattens it");
                    ui.label("top-k");
                    ui.add(egui::Slider::new(&mut self.top_k, 0..=100))
                        .on_hover_text("TopKLogitsWarper: only the K most probable tokens (and those tied with the K-th) survive; 0 turns it off");
                    ui.label("top-p");
                    ui.add(egui::Slider::new(&mut self.top_p, 0.01..=1.0).step_by(0.01))
                        .on_hover_text("TopPLogitsWarper: the least probable tokens holding at most 1 − P of the mass are cut; 1 turns it off");
                    ui.label("seed");
                    ui.add(egui::DragValue::new(&mut self.seed))
                        .on_hover_text("The sampler's seed: the same seed gives the same tokens");
                });
            });
        }

        fn token_strip(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let state = cx.generation;
            if !state.started() {
                ui.weak("Step or Play continues the text above; every token it writes becomes part of the text, so every tab shows it.");
                return;
            }
            let style = cx.run.result.analysis.token_style;
            ui.horizontal_wrapped(|ui| {
                ui.weak(format!("prompt: {} tokens ·", state.prompt_ids.len()));
                for (index, step) in state.steps.iter().enumerate() {
                    let selected = self.selected == Some(index);
                    let chip = ui
                        .selectable_label(selected, egui::RichText::new(style.display(&step.chosen.token)).monospace())
                        .on_hover_text(format!(
                            "step {}: p = {:.4} before the processors, {:.4} after; {} kept. Click to see its distribution; right-click to regenerate from here.",
                            index + 1,
                            step.chosen.prob,
                            step.chosen.prob_after,
                            step.kept
                        ));
                    if chip.clicked() {
                        self.selected = if selected { None } else { Some(index) };
                    }
                    chip.context_menu(|ui| {
                        if ui.button("Regenerate from here").clicked() {
                            cx.actions.push(UiAction::Generate(GenerateAction::RegenerateFrom(index)));
                            ui.close();
                        }
                    });
                }
                if let Some(index) = self.selected.filter(|&i| i < state.steps.len()) {
                    if ui
                        .add_enabled(state.pending.is_none(), egui::Button::new("Regenerate from here"))
                        .on_hover_text("Draw this token again with the current settings; what came after it is dropped")
                        .clicked()
                    {
                        cx.actions.push(UiAction::Generate(GenerateAction::RegenerateFrom(index)));
                        self.selected = None;
                    }
                    if ui.button("Next step").on_hover_text("Show the distribution of the step to come").clicked() {
                        self.selected = None;
                    }
                }
            });
            if let Some(reason) = state.ended {
                ui.weak(format!("The generation has ended: {}.", ended_name(reason)));
            }
        }
    }

    impl Tab for GenerateTab {
        fn figure(
            &self,
            _state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Generate(GenerateView {
                step: self.selected,
                decoding: self.decoding(),
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            if !cx.info.has(crate::model::HeadKind::NextToken) {
                ui.label(
                    "Generation needs a causal model with a language-model head, such as GPT-2.",
                );
                return;
            }
            cx.actions.push(UiAction::Generate(GenerateAction::Preview));
            if self
                .selected
                .is_some_and(|i| i >= cx.generation.steps.len())
            {
                self.selected = None;
            }
            self.controls(ui, cx);
            self.token_strip(ui, cx);
            if let Some(message) = &cx.generation.error {
                ui.colored_label(ui.visuals().error_fg_color, message);
            }
            if !cx.info.generation_not_applied.is_empty() {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!(
                        "Note: generation_config.json asks for {}, which bertscope does not apply.",
                        cx.info.generation_not_applied.join(", ")
                    ),
                );
            }
            ui.weak(format!("next step: {}", decoding_name(&self.decoding())));
            let Some(figure) = self.figure(cx.state, cx.analysis(), None) else {
                return;
            };
            cx.draw(ui, &figure, None, 0.0);
        }
    }
}
