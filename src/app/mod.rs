//! The desktop app: `mod.rs` holds the state and the eframe glue, `logic` everything that is
//! not drawing (worker responses, re-runs, actions, background values), `ui` the panels.

mod background;
mod generation;
mod logic;
mod slot;
mod ui;

use background::Background;
pub use slot::ModelSlot;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::model::{DeviceChoice, DownloadProgress};
use crate::ui::{View, ViewState};
use crate::worker::{AnalysisResult, ModelInfo};

/// The model used when neither `--model` nor a remembered one is given.
pub const DEFAULT_MODEL: &str = "bert-base-uncased";
/// Text shown on first start.
pub const DEFAULT_TEXT: &str = "The cat sat on the mat because it was tired.";

/// What the command line asks of the app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchOptions {
    /// Folder or Hub id; else the remembered model, else [`DEFAULT_MODEL`].
    pub model: Option<String>,
    /// Sentence A.
    pub text: Option<String>,
    /// Sentence B.
    pub text_b: Option<String>,
    /// Where the model runs.
    pub device: DeviceChoice,
    /// The tab to open.
    pub view: Option<View>,
    /// Save a PNG of the window here once results are drawn, then exit.
    pub screenshot: Option<PathBuf>,
    /// A second model to compare with (folder or Hub id).
    pub compare: Option<String>,
    /// Heads `(layer, head)` of the model to switch off from the start.
    pub ablate: Vec<(usize, usize)>,
    /// Open with words instead of subword pieces (otherwise as remembered).
    pub words: bool,
    /// What the heatmap, lines and overview show (otherwise as remembered).
    pub show: Option<crate::ui::AttentionKind>,
    /// A corpus file to run head statistics over once the model is loaded (opens the Heads
    /// tab on it).
    pub corpus: Option<PathBuf>,
}

/// Settings remembered between runs (eframe storage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The last model asked for.
    pub model: String,
    /// Sentence A.
    pub text_a: String,
    /// Sentence B (used when `use_pair`).
    pub text_b: String,
    /// Whether sentence B is part of the input.
    pub use_pair: bool,
    /// The open tab, the shared layer, head and kind of attention, selections, export options.
    pub view: ViewState,
    /// Each tab's own state.
    pub tabs: crate::views::Tabs,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: String::new(),
            text_a: DEFAULT_TEXT.to_owned(),
            text_b: String::new(),
            use_pair: false,
            view: ViewState::default(),
            tabs: crate::views::Tabs::default(),
        }
    }
}

/// Where the model stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatus {
    /// Nothing asked for yet.
    Idle,
    /// Being found, downloaded or loaded.
    Loading {
        /// The load request.
        id: u64,
        /// What is being loaded, as the user gave it (folder or Hub id).
        name: String,
        /// The latest download step, if downloading.
        progress: Option<DownloadProgress>,
    },
    /// Ready to run.
    Ready(ModelInfo),
    /// Loading failed.
    Failed {
        /// What was asked for.
        name: String,
        /// Why, in one line.
        message: String,
    },
}

/// The outcome of `--screenshot`, read by `main` after the window closes.
pub type ScreenshotOutcome = Arc<Mutex<Option<Result<PathBuf, String>>>>;

/// A pending `--screenshot`.
struct ScreenshotJob {
    path: PathBuf,
    started: Instant,
    /// Frames drawn since the result arrived; textures need a frame to reach the GPU.
    frames_with_result: u32,
    requested: bool,
    outcome: ScreenshotOutcome,
}

/// An export running on a thread of its own, so that rendering and writing a large figure or
/// data file never stalls the window.
struct ExportJob {
    path: PathBuf,
    started: Instant,
    cancel: Arc<std::sync::atomic::AtomicBool>,
    receiver: std::sync::mpsc::Receiver<anyhow::Result<()>>,
}

/// The app.
pub struct BertscopeApp {
    settings: Settings,
    device: DeviceChoice,
    next_request_id: u64,
    /// The model every view shows.
    primary: ModelSlot,
    /// The second model of the Compare tab, once one was asked for.
    comparison: Option<ModelSlot>,
    /// When the text last changed and has not been run since.
    text_changed_at: Option<Instant>,
    /// Difference maps of the Compare tab (they depend on both results).
    compare_textures: crate::ui::scene::Rasters,
    /// What the open tab's figure computes itself ([`crate::views::Draw::compute`]: the
    /// projection, head statistics, the Compare tab's divergence), off the UI thread, for the
    /// results, words and parameters it depends on.
    figure_values: Background<logic::FigureValuesKey, crate::views::Computed>,
    /// The text of the model picker.
    model_field: String,
    /// The text of the comparison model picker.
    compare_field: String,
    /// A message from the model picker (e.g. no file dialog available).
    picker_note: Option<String>,
    /// What the last export did.
    export_note: Option<String>,
    /// The export being written, on a thread of its own.
    export_job: Option<ExportJob>,
    /// Wakes the UI from other threads.
    waker: egui::Context,
    screenshot: Option<ScreenshotJob>,
    /// CPU time of the last frame's drawing, in milliseconds.
    last_frame_ms: f64,
    /// Whether the keyboard-shortcuts overlay is open.
    show_shortcuts: bool,
    /// Whether the selected token is a word (as the open view shows words) or a piece.
    selection_in_words: bool,
    /// `--corpus`, run once the model is loaded.
    launch_corpus: Option<PathBuf>,
    /// The Train tab's fine-tuning run, once one was started.
    training: Option<crate::worker::training::TrainingJob>,
    /// The Train tab's data file, read off the UI thread for its preview.
    training_preview: Background<logic::PreviewKey, crate::model::finetune::data::Preview>,
}

impl BertscopeApp {
    /// Builds the app on an egui context, restoring `settings` and applying `launch`.
    pub fn new(
        ctx: &egui::Context,
        mut settings: Settings,
        launch: LaunchOptions,
        outcome: ScreenshotOutcome,
    ) -> Self {
        crate::ui::install_fonts(ctx);
        if let Some(text) = launch.text {
            settings.text_a = text;
        }
        if let Some(text_b) = launch.text_b {
            settings.use_pair = !text_b.is_empty();
            settings.text_b = text_b;
        }
        if let Some(view) = launch.view {
            settings.view.view = view;
        }
        settings.view.words |= launch.words;
        if let Some(kind) = launch.show {
            settings.view.attention_kind = kind;
        }
        let model = launch
            .model
            .or_else(|| Some(settings.model.clone()).filter(|model| !model.trim().is_empty()))
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        let mut app = Self {
            settings,
            device: launch.device,
            next_request_id: 1,
            primary: ModelSlot::new(ctx),
            comparison: None,
            text_changed_at: None,
            compare_textures: crate::ui::scene::Rasters::default(),
            figure_values: Background::default(),
            model_field: model.clone(),
            compare_field: launch.compare.clone().unwrap_or_default(),
            picker_note: None,
            export_note: None,
            export_job: None,
            waker: ctx.clone(),
            screenshot: launch.screenshot.map(|path| ScreenshotJob {
                path,
                started: Instant::now(),
                frames_with_result: 0,
                requested: false,
                outcome,
            }),
            last_frame_ms: 0.0,
            show_shortcuts: false,
            selection_in_words: false,
            launch_corpus: launch.corpus.clone(),
            training: None,
            training_preview: Background::default(),
        };
        if launch.corpus.is_some() {
            app.settings.view.view = View::Heads;
            app.settings.tabs.head_stats.source = crate::views::head_stats::HeadSource::Corpus;
        }
        app.load_model(model);
        app.settings.view.ablated_heads = launch.ablate;
        if let Some(compare) = launch.compare {
            app.load_comparison(ctx, compare);
        }
        app
    }

    /// The Train tab's fine-tuning run, once one was started.
    pub fn training(&self) -> Option<&crate::worker::training::TrainingJob> {
        self.training.as_ref()
    }

    /// The newest explanation of each kind the tabs asked for.
    pub fn explained(&self) -> &crate::worker::Explanations {
        &self.primary.explained
    }

    /// The Generate tab's generation.
    pub fn generation(&self) -> &crate::worker::generation::GenerationState {
        &self.primary.generation
    }

    /// The current settings (what would be saved).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Where the model stands.
    pub fn model_status(&self) -> &ModelStatus {
        &self.primary.status
    }

    /// Whether changed text is waiting to run (for the analysis in flight to return).
    pub fn text_waiting(&self) -> bool {
        self.text_changed_at.is_some()
    }

    /// The Heads tab's corpus run, if one was started.
    pub fn corpus_run(&self) -> Option<&crate::worker::CorpusRun> {
        self.primary.corpus.as_ref()
    }

    /// Whether the main model is loading or running an analysis.
    pub fn analysis_in_flight(&self) -> bool {
        self.primary.is_busy()
    }

    /// Whether an export is being written.
    pub fn exporting(&self) -> bool {
        self.export_job.is_some()
    }

    /// What the last export did (saved where, failed why, cancelled).
    pub fn export_note(&self) -> Option<&str> {
        self.export_note.as_deref()
    }

    /// Whether the keyboard-shortcuts overlay is open.
    pub fn shortcuts_shown(&self) -> bool {
        self.show_shortcuts
    }

    /// Replaces sentence A, as typing does.
    pub fn set_text(&mut self, text: String) {
        self.settings.text_a = text;
        self.text_changed();
    }

    /// The newest analysis error of the main model, if its last run failed.
    pub fn analysis_error(&self) -> Option<&str> {
        self.primary.error.as_deref()
    }

    /// The result on screen, if any.
    pub fn result(&self) -> Option<&Arc<AnalysisResult>> {
        self.primary.result.as_ref()
    }

    /// Mean JS divergence per layer between the two models, when both tokenize the text alike
    /// and it has been computed.
    pub fn compare_divergence(&self) -> Option<&[f32]> {
        let result = self.primary.result.as_ref()?;
        let figure = self.figure_of(View::Compare, result)?;
        let key = self.figure_values_key(&figure, false)?;
        self.figure_values.get(&key)?.ok()?.divergence.as_deref()
    }

    /// The comparison model, once one was asked for.
    pub fn comparison(&self) -> Option<&ModelSlot> {
        self.comparison.as_ref()
    }

    /// Whether a model is loading, an analysis is running or waiting for one to finish, or the
    /// open tab waits for a value computed in the background.
    pub fn is_busy(&self) -> bool {
        self.text_changed_at.is_some()
            || self.primary.is_busy()
            || self.comparison.as_ref().is_some_and(ModelSlot::is_busy)
            || self.background_pending()
            || self.primary.generation.pending.is_some()
            || self.primary.generation.playing
    }
}

impl eframe::App for BertscopeApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.update_logic(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = Instant::now();
        self.draw(ui);
        self.last_frame_ms = started.elapsed().as_secs_f64() * 1e3;
        self.after_frame(ui.ctx());
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}

/// The app icon (`assets/icon.png`, 256 × 256), built into the binary.
fn window_icon() -> Arc<egui::IconData> {
    let icon = eframe::icon_data::from_png_bytes(include_bytes!("../../assets/icon.png"))
        .unwrap_or_else(|err| {
            tracing::warn!("the built-in icon does not decode: {err}");
            egui::IconData::default()
        });
    Arc::new(icon)
}

/// Opens the window and runs until it closes. With `--screenshot`, fails when no PNG was saved.
pub fn run(launch: LaunchOptions) -> anyhow::Result<()> {
    let screenshot = launch.screenshot.is_some();
    let outcome: ScreenshotOutcome = Arc::new(Mutex::new(None));
    let app_outcome = Arc::clone(&outcome);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("bertscope")
            // Matches assets/bertscope.desktop, so launchers group the window under its entry.
            .with_app_id("bertscope")
            .with_icon(window_icon())
            .with_inner_size([1400.0, 900.0])
            .with_min_inner_size([720.0, 480.0])
            .with_drag_and_drop(true),
        // A screenshot must not depend on, or change, what the user's last session left behind.
        persist_window: !screenshot,
        ..Default::default()
    };
    eframe::run_native(
        "bertscope",
        options,
        Box::new(move |cc| {
            let settings = match cc.storage {
                Some(storage) if !screenshot => {
                    eframe::get_value(storage, eframe::APP_KEY).unwrap_or_default()
                }
                _ => Settings::default(),
            };
            Ok(Box::new(BertscopeApp::new(
                &cc.egui_ctx,
                settings,
                launch,
                app_outcome,
            )))
        }),
    )
    .map_err(|err| {
        anyhow::anyhow!(
            "cannot open the window: {}",
            crate::model::error::first_line(&err.to_string())
        )
    })?;
    if screenshot {
        let result = outcome.lock().map(|guard| guard.clone()).unwrap_or(None);
        match result {
            Some(Ok(path)) => eprintln!("saved {}", path.display()),
            Some(Err(message)) => anyhow::bail!("{message}"),
            None => anyhow::bail!("the window closed before the screenshot was taken"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::HeadChoice;

    #[test]
    fn the_window_icon_decodes_and_the_desktop_entry_names_it() {
        let icon = window_icon();
        assert_eq!((icon.width, icon.height), (256, 256));
        assert_eq!(icon.rgba.len(), 256 * 256 * 4);
        let entry = include_str!("../../assets/bertscope.desktop");
        for line in [
            "Exec=bertscope",
            "Icon=bertscope",
            "StartupWMClass=bertscope",
        ] {
            assert!(entry.lines().any(|l| l == line), "{line}");
        }
    }

    #[test]
    fn settings_survive_a_restart_and_tolerate_old_files() {
        let mut settings = Settings {
            model: "/models/bert".to_owned(),
            ..Settings::default()
        };
        settings.view.view = View::Overview;
        settings.view.head = HeadChoice::Mean;
        settings.view.selected_token = Some(3);
        let saved = ron::to_string(&settings).unwrap();
        let restored: Settings = ron::from_str(&saved).unwrap();
        assert_eq!(restored.model, "/models/bert");
        assert_eq!(restored.view.view, View::Overview);
        assert_eq!(restored.view.head, HeadChoice::Mean);
        assert_eq!(
            restored.view.selected_token, None,
            "selections belong to one input"
        );
        // A file from an older version, missing fields, still loads.
        let old: Settings = ron::from_str("(model: \"x\")").unwrap();
        assert_eq!(old.text_a, DEFAULT_TEXT);
        // The Masked LM tab of earlier versions opens as Predictions.
        let old: Settings = ron::from_str("(view: (view: Mlm))").unwrap();
        assert_eq!(old.view.view, View::Predictions);
    }
}
