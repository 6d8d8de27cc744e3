//! The panels: model picker and text inputs on top, status bar at the bottom, tokens, tabs and
//! the open view in the middle.

use egui::{Color32, RichText};

use super::{BertscopeApp, ModelStatus};
use crate::model::HeadKind;
use crate::ui::tab::{Comparison, Shown, TabContext};
use crate::ui::tokens::{token_chips, ChipClick};
use crate::ui::View;

/// The Sentence A field, which `/` focuses.
const SENTENCE_A_ID: &str = "sentence-a";

impl BertscopeApp {
    /// Draws the whole window.
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        self.keyboard_shortcuts(ui.ctx());
        egui::Panel::top("inputs").show(ui, |ui| {
            ui.add_space(4.0);
            self.model_picker(ui);
            ui.add_space(2.0);
            self.text_inputs(ui);
            ui.add_space(4.0);
        });
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        egui::CentralPanel::default().show(ui, |ui| self.main_area(ui));
        self.shortcuts_overlay(ui.ctx());
    }

    /// The keyboard: tab numbers, `/` to type, Ctrl+E export, Ctrl+O open a folder, F1 or `?`
    /// for the list. Plain keys act only while no text field has the keyboard.
    fn keyboard_shortcuts(&mut self, ctx: &egui::Context) {
        use egui::{Key, KeyboardShortcut, Modifiers};
        let export = KeyboardShortcut::new(Modifiers::COMMAND, Key::E);
        let open = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
        if ctx.input_mut(|input| input.consume_shortcut(&export)) && self.primary.result.is_some() {
            self.apply(vec![crate::ui::UiAction::Export]);
        }
        if ctx.input_mut(|input| input.consume_shortcut(&open)) {
            self.pick_folder();
        }
        if ctx.input_mut(|input| input.consume_key(Modifiers::NONE, Key::F1)) {
            self.show_shortcuts = !self.show_shortcuts;
        }
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        if self.show_shortcuts
            && ctx.input_mut(|input| input.consume_key(Modifiers::NONE, Key::Escape))
        {
            self.show_shortcuts = false;
        }
        if ctx.input_mut(|input| {
            input.consume_key(Modifiers::SHIFT, Key::Questionmark)
                || input.consume_key(Modifiers::NONE, Key::Questionmark)
        }) {
            self.show_shortcuts = !self.show_shortcuts;
        }
        if ctx.input_mut(|input| input.consume_key(Modifiers::NONE, Key::Slash)) {
            ctx.memory_mut(|memory| memory.request_focus(egui::Id::unique(SENTENCE_A_ID)));
        }
        let numbers = [
            Key::Num1,
            Key::Num2,
            Key::Num3,
            Key::Num4,
            Key::Num5,
            Key::Num6,
            Key::Num7,
            Key::Num8,
            Key::Num9,
        ];
        if ctx.input_mut(|input| input.consume_key(Modifiers::NONE, Key::W)) {
            self.settings.view.words = !self.settings.view.words;
        }
        let tabs = self.visible_tabs();
        for (key, view) in numbers.into_iter().zip(tabs) {
            if ctx.input_mut(|input| input.consume_key(Modifiers::NONE, key)) {
                self.settings.view.view = view;
            }
        }
    }

    /// The tabs shown, in order (Compare only with a second model).
    fn visible_tabs(&self) -> Vec<View> {
        let comparing = self.comparison.is_some();
        // Logit attribution takes a next-token logit apart and Generate writes with it: only
        // causal LMs have one.
        let causal = matches!(&self.primary.status, ModelStatus::Ready(info) if info.has(HeadKind::NextToken));
        View::ALL
            .iter()
            .copied()
            .filter(|&view| view != View::Compare || comparing)
            .filter(|&view| !matches!(view, View::LogitAttribution | View::Generate) || causal)
            .collect()
    }

    fn shortcuts_overlay(&mut self, ctx: &egui::Context) {
        let mut open = self.show_shortcuts;
        egui::Window::new("Keyboard shortcuts")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
            .show(ctx, |ui| {
                let tabs: Vec<String> = self
                    .visible_tabs()
                    .iter()
                    .enumerate()
                    .map(|(index, view)| format!("{} {}", index + 1, view.label()))
                    .collect();
                let rows = [
                    (
                        format!("1 … {}", tabs.len()),
                        format!("open a tab ({})", tabs.join(", ")),
                    ),
                    ("/".to_owned(), "type in Sentence A".to_owned()),
                    (
                        "W".to_owned(),
                        "words instead of subword pieces (heatmap, lines, overview, heads, projection)"
                            .to_owned(),
                    ),
                    ("Ctrl+E".to_owned(), "export the open view".to_owned()),
                    ("Ctrl+O".to_owned(), "open a model folder".to_owned()),
                    (
                        "← → ↑ ↓".to_owned(),
                        "heatmap: previous/next head, layer".to_owned(),
                    ),
                    (
                        "+ − 0".to_owned(),
                        "heatmap, compare: zoom in, out, fit (or the wheel; drag pans)".to_owned(),
                    ),
                    ("Tab".to_owned(), "move between controls".to_owned()),
                    ("F1 or ?".to_owned(), "show or hide this list".to_owned()),
                    (
                        "Esc".to_owned(),
                        "close this list, or leave a text field".to_owned(),
                    ),
                ];
                egui::Grid::new("shortcuts")
                    .num_columns(2)
                    .spacing([24.0, 6.0])
                    .show(ui, |ui| {
                        for (keys, what) in rows {
                            ui.monospace(keys);
                            ui.label(what);
                            ui.end_row();
                        }
                    });
            });
        self.show_shortcuts = open && self.show_shortcuts;
    }

    fn model_picker(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let label = ui.label("Model");
            let field = ui.add(
                egui::TextEdit::singleline(&mut self.model_field)
                    .desired_width(360.0)
                    .hint_text("bert-base-uncased or /path/to/model-folder"),
            )
            .labelled_by(label.id)
            .on_hover_text("A Hugging Face Hub id or a local folder with config.json, weights and tokenizer files. Press Enter to load.");
            let enter = field.lost_focus() && ui.input(|input| input.key_pressed(egui::Key::Enter));
            let loading = matches!(self.primary.status, ModelStatus::Loading { .. });
            if ui.add_enabled(!loading, egui::Button::new("Load")).on_hover_text("Load this model").clicked() || (enter && !loading) {
                self.load_model(self.model_field.clone());
            }
            if ui.add_enabled(!loading, egui::Button::new("Open folder…")).on_hover_text("Choose a model folder (or drop one on the window)").clicked() {
                self.pick_folder();
            }
            ui.separator();
            theme_picker(ui);
            if ui
                .selectable_label(self.show_shortcuts, "Shortcuts")
                .on_hover_text("The keyboard shortcuts (F1 or ?)")
                .clicked()
            {
                self.show_shortcuts = !self.show_shortcuts;
            }
            if let ModelStatus::Ready(info) = &self.primary.status {
                ui.separator();
                ui.weak(info.summary())
                    .on_hover_text("Model family · layers × heads per layer · the prediction heads this checkpoint has");
            }
        });
        if let ModelStatus::Ready(info) = &self.primary.status {
            for note in &info.notes {
                ui.colored_label(ui.visuals().warn_fg_color, format!("Note: {note}"));
            }
        }
        if let Some(note) = &self.picker_note {
            ui.weak(note);
        }
        self.comparison_picker(ui);
        if let ModelStatus::Failed { message, .. } = &self.primary.status {
            ui.colored_label(ui.visuals().error_fg_color, message).on_hover_text("Type a Hub id or a folder above, click Open folder…, or drop a model folder on the window.");
        }
    }

    fn comparison_picker(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let label = ui.label("Compare with");
            let field = ui
                .add(egui::TextEdit::singleline(&mut self.compare_field).desired_width(360.0).hint_text("a second model, e.g. bert-large-uncased"))
                .labelled_by(label.id)
                .on_hover_text("Run the same text through a second model and compare them in the Compare tab. Press Enter to load.");
            let enter = field.lost_focus() && ui.input(|input| input.key_pressed(egui::Key::Enter));
            let loading = matches!(self.comparison.as_ref().map(|slot| &slot.status), Some(ModelStatus::Loading { .. }));
            let ctx = ui.ctx().clone();
            if (ui.add_enabled(!loading, egui::Button::new("Compare")).on_hover_text("Load the second model").clicked() || (enter && !loading))
                && !self.compare_field.trim().is_empty()
            {
                self.load_comparison(&ctx, self.compare_field.clone());
                self.settings.view.view = View::Compare;
            }
            if self.comparison.is_some() && ui.button("Close").on_hover_text("Stop comparing and free the second model").clicked() {
                self.close_comparison();
            }
            if let Some(slot) = &self.comparison {
                match &slot.status {
                    ModelStatus::Loading { name, .. } => {
                        ui.weak(format!("loading {name}…"));
                    }
                    ModelStatus::Ready(info) => {
                        ui.weak(format!("{}: {}", info.name, info.summary()));
                    }
                    ModelStatus::Failed { message, .. } => {
                        ui.colored_label(ui.visuals().error_fg_color, message);
                    }
                    ModelStatus::Idle => {}
                }
            }
        });
    }

    fn text_inputs(&mut self, ui: &mut egui::Ui) {
        let info = match &self.primary.status {
            ModelStatus::Ready(info) => Some(info),
            _ => None,
        };
        let answers = info.is_some_and(|info| info.has(HeadKind::QuestionAnswering));
        let takes_pairs = info.is_none_or(|info| info.takes_pairs);
        let hint_a = match info {
            _ if answers => "The question".to_owned(),
            Some(info) => match info.mlm_mask() {
                Some(mask) => {
                    format!("Type a sentence; use {mask} to ask the model to fill in a word")
                }
                None => "Type a sentence".to_owned(),
            },
            None => "Type a sentence".to_owned(),
        };
        let mut changed = false;
        ui.horizontal(|ui| {
            let label = ui.label(if answers { "Question" } else { "Sentence A" });
            changed |= ui
                .add(
                    egui::TextEdit::singleline(&mut self.settings.text_a)
                        .id(egui::Id::unique(SENTENCE_A_ID))
                        .desired_width(ui.available_width())
                        .hint_text(hint_a),
                )
                .labelled_by(label.id)
                .changed();
        });
        ui.horizontal(|ui| {
            let hover = match info {
                Some(info) if !info.takes_pairs => format!(
                    "{} reads one text; it takes no second sentence",
                    info.family.name()
                ),
                _ if answers => {
                    "The context: the passage the question's answer is taken from".to_owned()
                }
                _ => "Add a second sentence (segment B), e.g. for next-sentence prediction"
                    .to_owned(),
            };
            let pair_label = if answers { "Context" } else { "Sentence B" };
            let pair_checkbox = ui
                .add_enabled_ui(takes_pairs, |ui| {
                    let checkbox = ui
                        .checkbox(&mut self.settings.use_pair, pair_label)
                        .on_hover_text(&hover)
                        .on_disabled_hover_text(&hover);
                    changed |= checkbox.changed();
                    checkbox.id
                })
                .inner;
            ui.add_enabled_ui(self.settings.use_pair && takes_pairs, |ui| {
                let response = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.settings.text_b)
                            .desired_width(ui.available_width())
                            .hint_text(if answers {
                                "The passage to find the answer in"
                            } else {
                                "Optional second sentence"
                            }),
                    )
                    .labelled_by(pair_checkbox);
                changed |= response.changed();
            });
        });
        if changed {
            self.text_changed();
        }
    }

    fn status_bar(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            match &self.primary.status {
                ModelStatus::Idle => {
                    ui.weak("No model");
                }
                ModelStatus::Loading { name, progress, .. } => match progress {
                    Some(step) if step.total_bytes > 0 => {
                        let fraction = step.done_bytes as f32 / step.total_bytes as f32;
                        ui.label(format!("Downloading {} of {name}", step.file));
                        ui.add(
                            egui::ProgressBar::new(fraction)
                                .desired_width(160.0)
                                .show_percentage(),
                        );
                    }
                    _ => {
                        ui.label(format!("Loading {name}…"));
                    }
                },
                ModelStatus::Ready(info) => {
                    ui.label(RichText::new(&info.name).strong());
                    ui.separator();
                    ui.label(info.summary()).on_hover_text(format!(
                        "{} · {} layers × {} heads · hidden size {} · up to {} tokens",
                        info.family.name(),
                        info.layers,
                        info.heads,
                        info.hidden,
                        info.max_tokens
                    ));
                    ui.separator();
                    ui.label(info.device.to_string());
                    ui.separator();
                    ui.label(format!("loaded in {:.0} ms", info.load_ms));
                }
                ModelStatus::Failed { name, .. } => {
                    ui.colored_label(
                        ui.visuals().error_fg_color,
                        format!("{name} could not be loaded"),
                    );
                }
            }
            if let Some(result) = &self.primary.result {
                ui.separator();
                let analysis = &result.analysis;
                ui.label(format!("{} tokens", analysis.len()));
                if let Some(Ok(words)) = self.primary.word_level().filter(|_| self.words_shown()) {
                    ui.label(format!("· {} words", words.len()))
                        .on_hover_text("The views show words: subword pieces merged");
                }
                if analysis.dropped_tokens > 0 {
                    ui.colored_label(
                        Color32::from_rgb(230, 150, 30),
                        format!(
                            "({} dropped: input longer than the model's limit)",
                            analysis.dropped_tokens
                        ),
                    );
                }
                ui.separator();
                ui.label(format!("inference {:.1} ms", result.inference_ms))
                    .on_hover_text("Forward pass with every attention map captured");
            }
            // A static note rather than a spinner: an animation repaints every frame, which on
            // software rendering takes CPU from the model.
            if self.is_busy() && matches!(self.primary.status, ModelStatus::Ready(_)) {
                ui.separator();
                ui.weak("running…");
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                ui.weak(format!("frame {:.1} ms", self.last_frame_ms))
                    .on_hover_text("CPU time spent drawing the last frame");
            });
        });
    }

    /// What the main area says before there is a run to show.
    fn nothing_shown(&self, ui: &mut egui::Ui) {
        ui.centered_and_justified(|ui| match &self.primary.status {
            ModelStatus::Loading { name, .. } => {
                ui.label(format!("Loading {name}…"));
            }
            ModelStatus::Failed { .. } => {
                ui.label("Pick a model above: a Hub id, Open folder…, or drop a model folder on the window.");
            }
            _ => {
                ui.label(self.primary.error.clone().unwrap_or_else(|| "Type a sentence above.".to_owned()));
            }
        });
    }

    /// The tab bar: a button per tab, the words switch, and the export controls (with the
    /// running export's progress). Returns whether Export… and Cancel were clicked.
    fn tab_bar(&mut self, ui: &mut egui::Ui) -> (bool, bool) {
        let mut export_clicked = false;
        let mut cancel_export = false;
        ui.horizontal(|ui| {
        // The tabs wrap onto a second line rather than run under the export controls.
        const EXPORT_ROOM: f32 = 330.0;
        let tabs_width = (ui.available_width() - EXPORT_ROOM).max(200.0);
        let wrapping = egui::Layout::left_to_right(egui::Align::Center).with_main_wrap(true);
        ui.allocate_ui_with_layout(egui::vec2(tabs_width, 0.0), wrapping, |ui| {
            for (number, view) in self.visible_tabs().into_iter().enumerate() {
                ui.selectable_value(&mut self.settings.view.view, view, view.label())
                    .on_hover_text(format!("{} (key {})", view.description(), number + 1));
            }
            ui.separator();
            let reads_words = self.settings.view.view.reads_words();
            ui.add_enabled(reads_words, egui::Checkbox::new(&mut self.settings.view.words, "Words"))
                .on_hover_text("Merge subword pieces into words (Clark et al. 2019): attention to a word is the sum over its pieces, from a word the mean, so rows still sum to 1 (W)")
                .on_disabled_hover_text("This tab shows subword pieces: predictions, the lens, embeddings and query·key belong to pieces, and two models split words differently");
        });
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let hover = "Save this view as a PNG or SVG figure, or the attention data as JSON, CSV (this head), .npy or compressed .npz (Ctrl+E)";
            let exporting = self.export_job.as_ref().map(|job| {
                let name = job.path.file_name().unwrap_or_default().to_string_lossy();
                (name.into_owned(), job.started.elapsed().as_secs_f32())
            });
            export_clicked = ui
                .add_enabled(exporting.is_none(), egui::Button::new("Export…"))
                .on_hover_text(hover)
                .on_disabled_hover_text("An export is being written")
                .clicked();
            if let Some((name, seconds)) = exporting {
                if ui.button("Cancel").on_hover_text("Stop the export; nothing is written").clicked() {
                    cancel_export = true;
                }
                ui.label(format!("Exporting {name} · {seconds:.1} s"));
                ui.spinner();
            }
            let scale = &mut self.settings.view.export_scale;
            egui::ComboBox::from_id_salt("export-scale")
                .selected_text(format!("PNG {scale}×"))
                .show_ui(ui, |ui| {
                    for choice in [1.0, 2.0, 4.0] {
                        ui.selectable_value(scale, choice, format!("{choice}×"));
                    }
                })
                .response
                .on_hover_text("Pixel scale of exported PNG figures");
            ui.checkbox(&mut self.settings.view.export_f16, "f16 .npz")
                .on_hover_text("Write .npz attention maps as 16-bit floats: half the size, about 3 significant digits");
            if let Some(note) = &self.export_note {
                ui.weak(note);
            }
        });
    });
        (export_clicked, cancel_export)
    }

    fn main_area(&mut self, ui: &mut egui::Ui) {
        let Some(result) = self.primary.result.clone() else {
            self.nothing_shown(ui);
            return;
        };
        // Views that read words get the input as words, once merged (off the UI thread).
        let words = self.words_shown();
        let word_level = match self.primary.word_level() {
            Some(Ok(word_level)) if words => Some(word_level),
            Some(Err(message)) if words => {
                ui.colored_label(ui.visuals().error_fg_color, message);
                None
            }
            _ => None,
        };
        let pieces = &result.analysis;
        let analysis: &crate::model::Analysis = word_level.as_deref().unwrap_or(pieces);
        if let Some(error) = &self.primary.error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
        let info = match &self.primary.status {
            ModelStatus::Ready(info) => Some(info.clone()),
            _ => None,
        };
        let mask = info
            .as_ref()
            .and_then(|info| info.mlm_mask().map(str::to_owned));
        // In the Predictions tab of a masked-LM model a click masks the token; everywhere else
        // it selects it.
        let click = match &mask {
            Some(mask) if self.settings.view.view == View::Predictions => ChipClick::Mask(mask),
            _ => ChipClick::Select,
        };
        // Long inputs must not push the views off the window.
        let chip_action = egui::ScrollArea::vertical()
            .id_salt("token-chips")
            .max_height(96.0)
            .show(ui, |ui| {
                token_chips(ui, analysis, &self.settings.view.selection(), click)
            })
            .inner;
        if let Some(p) = analysis.nsp_is_next {
            ui.label(format!(
                "Next-sentence prediction: B follows A with probability {:.1}%",
                p * 100.0
            ))
            .on_hover_text(format!("is_next = {p:.6}"));
        }
        ui.separator();
        let (export_clicked, cancel_export) = self.tab_bar(ui);
        ui.separator();
        if cancel_export {
            self.cancel_export();
        }
        let mut actions: Vec<_> = chip_action.into_iter().collect();
        if export_clicked {
            actions.push(crate::ui::UiAction::Export);
        }
        if words && word_level.is_none() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Merging pieces into words…");
            });
            self.apply(actions);
            return;
        }
        let shown = Shown { result, word_level };
        actions.extend(self.show_open_tab(ui, &shown, info.as_ref()));
        self.apply(actions);
        if self.text_waiting() && !self.analysis_in_flight() {
            // Changed text is sent by the next frame's logic: make sure a next frame comes. (With
            // an analysis in flight, its answer wakes the UI.)
            ui.ctx().request_repaint();
        }
    }
}

impl BertscopeApp {
    /// Draws the open tab with its narrow context; returns what it asked for.
    fn show_open_tab(
        &mut self,
        ui: &mut egui::Ui,
        shown: &Shown,
        info: Option<&crate::worker::ModelInfo>,
    ) -> Vec<crate::ui::UiAction> {
        let mut actions = Vec::new();
        let Some(info) = info else {
            return actions;
        };
        let view = self.settings.view.view;
        let other = self
            .comparison
            .as_ref()
            .and_then(|slot| slot.result.clone());
        let figure = self.settings.tabs.tab(view).figure(
            &self.settings.view,
            shown.analysis(),
            other.as_ref().map(|result| &result.analysis),
        );
        let computed = match &figure {
            Some(figure) => self.computed_for(figure, shown),
            None => crate::views::Computed::default(),
        };
        if view == View::Compare {
            // Both results' images: reset when either changes.
            let ids = (
                self.primary.result_id(),
                self.comparison.as_ref().and_then(|slot| slot.result_id()),
            );
            self.compare_textures
                .reset(ids.0.unwrap_or_default() << 32 ^ ids.1.unwrap_or_default());
        }
        let preview_key = self.preview_key();
        let words = shown.words();
        // Resets the images when the result changed.
        self.primary.rasters_of(words);
        let (tabs, state) = (&mut self.settings.tabs, &mut self.settings.view);
        let rasters = match (view, words) {
            (View::Compare, _) => &mut self.compare_textures,
            (_, true) => &mut self.primary.word_rasters,
            (_, false) => &mut self.primary.rasters,
        };
        let comparison = match (other, self.comparison.as_mut()) {
            (Some(result), Some(slot)) => Some(Comparison {
                name: slot.name().unwrap_or("model B").to_owned(),
                result,
                rasters: &mut slot.rasters,
            }),
            _ => None,
        };
        let mut cx = TabContext {
            run: shown,
            info,
            state,
            figure: figure.as_ref(),
            computed: &computed,
            rasters,
            actions: &mut actions,
            comparison,
            corpus: self.primary.corpus.as_ref(),
            explained: &self.primary.explained,
            generation: &self.primary.generation,
            training: self.training.as_ref(),
            training_preview: preview_key
                .as_ref()
                .and_then(|key| self.training_preview.get(key)),
        };
        tabs.tab_mut(view).show(ui, &mut cx);
        actions
    }
}

/// System / dark / light, remembered by egui with the rest of its options.
fn theme_picker(ui: &mut egui::Ui) {
    let mut preference = ui.ctx().options(|options| options.theme_preference);
    let label = |preference: egui::ThemePreference| match preference {
        egui::ThemePreference::System => "System theme",
        egui::ThemePreference::Dark => "Dark",
        egui::ThemePreference::Light => "Light",
    };
    egui::ComboBox::from_id_salt("theme")
        .selected_text(label(preference))
        .show_ui(ui, |ui| {
            for choice in [
                egui::ThemePreference::System,
                egui::ThemePreference::Dark,
                egui::ThemePreference::Light,
            ] {
                ui.selectable_value(&mut preference, choice, label(choice));
            }
        })
        .response
        .on_hover_text("Colour theme: follow the system, or always dark or light");
    ui.ctx().set_theme(preference);
}
