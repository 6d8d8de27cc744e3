//! Everything the app does that is not drawing: worker responses, re-runs as the text changes,
//! the actions views return, dropped folders and `--screenshot`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::slot::Drained;
use super::{BertscopeApp, ExportJob, ModelSlot, ModelStatus};
use crate::analysis::HeadChoice;
use crate::model::AnalysisRequest;
use crate::ui::{UiAction, View};

/// Draining responses stops after this long so a burst never stalls a frame.
const DRAIN_BUDGET: Duration = Duration::from_millis(10);
/// `--screenshot` gives up after this long without a result.
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(300);

/// What a figure's own computed values depend on: the primary result's id, the second
/// model's, whether the run is read as words, and the figure's view and key.
pub(super) type FigureValuesKey = (u64, Option<u64>, bool, (View, String));

/// What the Train tab's preview depends on: its data file and the columns chosen.
/// The Train tab's preview key: its data file, its columns and the file's modification time
/// and size (so that a file edited on disk is read again).
pub(super) type PreviewKey = (
    std::path::PathBuf,
    crate::model::finetune::data::Columns,
    Option<(Option<std::time::SystemTime>, u64)>,
);

impl BertscopeApp {
    pub(super) fn next_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// Asks for a model; the text runs again once it is loaded.
    pub fn load_model(&mut self, name: String) {
        let name = name.trim().to_owned();
        self.picker_note = None;
        self.model_field = name.clone();
        // Head numbers mean nothing in another model.
        self.settings.view.ablated_heads.clear();
        let id = self.next_id();
        self.primary.load(id, name, self.device);
    }

    /// Asks for a second model to compare with, on its own inference thread.
    pub fn load_comparison(&mut self, ctx: &egui::Context, name: String) {
        let name = name.trim().to_owned();
        self.compare_field = name.clone();
        let id = self.next_id();
        let device = self.device;
        self.comparison
            .get_or_insert_with(|| ModelSlot::new(ctx))
            .load(id, name, device);
    }

    /// Drops the comparison model (its thread stops).
    pub fn close_comparison(&mut self) {
        self.comparison = None;
        self.figure_values.clear();
        if self.settings.view.view == View::Compare {
            self.settings.view.view = View::Heatmap;
        }
    }

    /// What the values `figure` computes itself depend on: the shown results, words, and the
    /// figure's key (`None` before a result).
    pub(super) fn figure_values_key(
        &self,
        figure: &crate::views::Figure,
        words: bool,
    ) -> Option<FigureValuesKey> {
        let other = self.comparison.as_ref().and_then(ModelSlot::result_id);
        Some((
            self.primary.result_id()?,
            other,
            words,
            figure.compute_key(),
        ))
    }

    /// Starts or collects what `figure` computes itself from the shown run (and the second
    /// model's), on a thread of its own.
    fn update_figure_values(&mut self, ctx: &egui::Context, figure: &crate::views::Figure) {
        let words = self.words_shown();
        let (Some(key), Some(shown)) = (
            self.figure_values_key(figure, words),
            self.primary.shown(words),
        ) else {
            return;
        };
        let other = self
            .comparison
            .as_ref()
            .and_then(|slot| slot.result.clone());
        let figure = figure.clone();
        self.figure_values.request(key, ctx, move || {
            let pieces = &shown.result.analysis;
            let words = shown
                .word_level
                .as_deref()
                .map(|merged| (crate::analysis::words::words(pieces), merged));
            Ok(figure.compute(&crate::views::Runs {
                pieces,
                words: words.as_ref().map(|(words, merged)| (words, *merged)),
                other: other.as_ref().map(|result| &result.analysis),
            }))
        });
    }

    /// What `figure` computed itself, once ready.
    fn figure_values(&self, figure: &crate::views::Figure) -> Option<&crate::views::Computed> {
        let key = self.figure_values_key(figure, self.words_shown())?;
        self.figure_values.get(&key)?.ok()
    }

    /// Whether the open tab waits for a value computed in the background (a map, the
    /// projection, the statistics, the divergence, the words) or for images still to be made.
    pub(super) fn background_pending(&self) -> bool {
        let Some(result) = self.primary.result.clone() else {
            return false;
        };
        let words = self.words_shown();
        if words && self.primary.word_level().is_none() {
            return true;
        }
        if self.primary.rasters.pending() || self.primary.word_rasters.pending() {
            return true;
        }
        let Some(figure) = self.figure_of(self.settings.view.view, &result) else {
            return false;
        };
        use crate::views::Figure;
        match &figure {
            Figure::Heatmap(view) if view.kind.is_combined() => {
                self.combined_map(words, &view.kind, view.layer).is_none()
            }
            Figure::Lines(view) if view.kind.is_combined() => {
                self.combined_map(words, &view.kind, view.layer).is_none()
            }
            Figure::Heatmap(_) | Figure::Lines(_) => false,
            figure => figure.computes() && self.figure_values(figure).is_none(),
        }
    }

    /// Starts what the open tab's figure needs computed off the UI thread (logic, every frame;
    /// each value is computed once per result).
    fn prepare_open_tab(&mut self, ctx: &egui::Context) {
        use crate::views::heatmap::MapKind;
        use crate::views::Figure;
        let Some(result) = self.primary.result.clone() else {
            return;
        };
        let words = self.words_shown();
        let Some(figure) = self.figure_of(self.settings.view.view, &result) else {
            return;
        };
        let mut map = |kind: &MapKind, layer: usize| match kind {
            MapKind::Rollout => self.primary.update_rollout(words),
            MapKind::Flow(targets) => self.primary.update_flow(words, layer, targets.clone()),
            MapKind::Attention | MapKind::Norms => {}
        };
        match &figure {
            Figure::Heatmap(view) => map(&view.kind, view.layer),
            Figure::Lines(view) => map(&view.kind, view.layer),
            figure if figure.computes() => self.update_figure_values(ctx, figure),
            _ => {}
        }
    }

    /// A rollout or flow map of the run (of its words, or pieces), once computed.
    fn combined_map(
        &self,
        words: bool,
        kind: &crate::views::heatmap::MapKind,
        layer: usize,
    ) -> Option<Arc<Vec<f32>>> {
        use crate::views::heatmap::MapKind;
        match kind {
            MapKind::Rollout => {
                let layers = self.primary.rollout(words)?;
                layers.get(layer).map(Arc::clone)
            }
            MapKind::Flow(targets) => self.primary.flow(words, layer, targets.clone()),
            MapKind::Attention | MapKind::Norms => None,
        }
    }

    /// What was computed for `figure` of the run as it is `shown` (its words once merged, else
    /// its pieces): maps, the projection, the statistics, the divergence (a heatmap's own map
    /// is made here once and kept).
    pub(super) fn computed_for(
        &mut self,
        figure: &crate::views::Figure,
        shown: &crate::ui::tab::Shown,
    ) -> crate::views::Computed {
        use crate::views::Figure;
        // What is shown, not what the settings ask for: words are pieces until merged.
        let (words, analysis) = (shown.words(), shown.analysis());
        let mut computed = crate::views::Computed::default();
        match figure {
            Figure::Heatmap(view) if view.kind.is_combined() => {
                computed.map = self.combined_map(words, &view.kind, view.layer);
            }
            Figure::Heatmap(view) => {
                let rasters = self.primary.rasters_of(words);
                computed.map = rasters.values(view.raster_key(), || view.values(analysis, None));
            }
            Figure::Lines(view) => computed.map = self.combined_map(words, &view.kind, view.layer),
            // Everything else a figure computes itself, in the background.
            figure => {
                if let Some(values) = self.figure_values(figure) {
                    computed = values.clone();
                }
            }
        }
        computed
    }

    /// Whether the open view shows words instead of pieces.
    pub(super) fn words_shown(&self) -> bool {
        self.settings.view.words && self.settings.view.view.reads_words()
    }

    /// A selection is a piece or a word, as the views showed it: when the open view switches
    /// between them (the words switch, or a tab of pieces), the selection moves to the word of
    /// its piece, or to the first piece of its word.
    fn keep_selection_in(&mut self, words: bool) {
        if words == self.selection_in_words {
            return;
        }
        let Some(result) = &self.primary.result else {
            self.selection_in_words = words;
            return;
        };
        let spans = crate::analysis::words::words(&result.analysis);
        let view = &mut self.settings.view;
        let moved = |index: usize| {
            if words {
                spans.word_of(index)
            } else {
                spans.spans.get(index).map(|span| span.start)
            }
        };
        view.selected_token = view.selected_token.and_then(moved);
        view.also_selected = view
            .also_selected
            .iter()
            .filter_map(|&i| moved(i))
            .collect();
        view.also_selected.dedup();
        self.selection_in_words = words;
    }

    /// Marks the text as changed: it runs at once when the model is idle, otherwise as soon as
    /// the analysis in flight comes back (keystrokes in between coalesce into one run).
    pub fn text_changed(&mut self) {
        self.text_changed_at = Some(Instant::now());
    }

    fn current_request(&self) -> AnalysisRequest {
        // A model that reads one text (GPT-2) ignores a sentence B left on from another model.
        let takes_pairs = match &self.primary.status {
            ModelStatus::Ready(info) => info.takes_pairs,
            _ => true,
        };
        let pair = self.settings.use_pair && takes_pairs;
        let mut request = AnalysisRequest::new(self.settings.text_a.clone())
            .with_text_b(pair.then(|| self.settings.text_b.clone()));
        // Norm-based attention is a switch in the heatmap and the lines: its value norms come
        // with every run (under 1% of the forward, through each head's W_O Gram matrix) so that
        // switching is instant.
        request.value_norms = true;
        // The Lens tab reads it; with a masked-LM head it comes from the predictions' own pass
        // over the vocabulary matrix, about 3 ms at bert-base.
        request.lens = true;
        request
    }

    /// Runs the text on every loaded model.
    fn request_analysis(&mut self) {
        self.text_changed_at = None;
        let request = self.current_request();
        let id = self.next_id();
        // Ablation is of the primary model's heads; the comparison runs intact.
        let mut ablated = request.clone();
        ablated.ablated_heads = self.settings.view.ablated_heads.clone();
        self.primary.analyze(id, ablated);
        if let Some(comparison) = &mut self.comparison {
            comparison.analyze(id, request);
        }
    }

    /// One logic step: drain the workers, run debounced text, handle dropped folders.
    pub fn update_logic(&mut self, ctx: &egui::Context) {
        let deadline = Instant::now() + DRAIN_BUDGET;
        let primary = self.primary.drain(deadline);
        if primary.loaded {
            // What loads it again: a folder's whole path, not its display name.
            self.settings.model = self
                .primary
                .requested()
                .or(self.primary.name())
                .unwrap_or_default()
                .to_owned();
            self.request_analysis();
            if let Some(path) = self.launch_corpus.take() {
                self.settings.tabs.head_stats.corpus_path = path.display().to_string();
                self.run_corpus();
            }
        }
        if primary.new_result {
            if let Some(result) = &self.primary.result {
                let analysis = &result.analysis;
                self.settings
                    .view
                    .clamp_to(analysis.layers(), analysis.heads(), analysis.len());
            }
        }
        let comparison = match &mut self.comparison {
            Some(slot) => slot.drain(deadline),
            None => Drained::default(),
        };
        if comparison.loaded {
            let id = self.next_id();
            let request = self.current_request();
            if let Some(slot) = &mut self.comparison {
                slot.analyze(id, request);
            }
        }
        self.generation_logic(primary.generated);
        if primary.new_result || comparison.new_result {
            // Difference maps depend on both results, which arrive separately.
            self.compare_textures.clear();
        }
        if Instant::now() >= deadline {
            ctx.request_repaint();
        }

        // What only one tab shows is computed, off the UI thread, only while it is open.
        let words = self.words_shown();
        if words {
            self.primary.update_word_level();
        }
        self.keep_selection_in(words);
        self.prepare_open_tab(ctx);

        // No fixed debounce: a fast model follows every keystroke, and a slow one runs the newest
        // text each time it finishes, so the views update at the model's own pace.
        if self.text_changed_at.is_some() && self.primary.is_ready() && !self.primary.is_busy() {
            self.request_analysis();
        }

        let dropped = ctx.input(|input| {
            input
                .raw
                .dropped_files
                .iter()
                .map(|file| file.path().to_owned())
                .next()
        });
        if let Some(path) = dropped {
            let folder = if path.is_dir() {
                path
            } else {
                path.parent().map(ToOwned::to_owned).unwrap_or(path)
            };
            self.load_model(folder.display().to_string());
        }

        self.poll_export(ctx);
        self.training_logic();
        self.screenshot_logic(ctx);
    }

    /// Applies what the views asked for.
    pub fn apply(&mut self, actions: Vec<UiAction>) {
        for action in actions {
            match action {
                UiAction::SelectToken(token) => self.settings.view.select(token),
                UiAction::ToggleInSelection(token) => {
                    self.settings.view.toggle_in_selection(token);
                }
                UiAction::OpenInHeatmap { layer, head } => {
                    let view = &mut self.settings.view;
                    view.layer = layer;
                    view.head = HeadChoice::Head(head);
                    view.view = View::Heatmap;
                }
                UiAction::MaskToken(index) => self.mask_token(index),
                UiAction::UsePair => {
                    self.settings.use_pair = true;
                    self.text_changed();
                }
                UiAction::Why(target) => {
                    self.settings.tabs.attribution.target = target;
                    self.settings.view.view = crate::views::View::Attribution;
                }
                UiAction::Export => self.export_view(),
                UiAction::ToggleAblation { layer, head } => {
                    let heads = &mut self.settings.view.ablated_heads;
                    match heads.iter().position(|&pair| pair == (layer, head)) {
                        Some(index) => {
                            heads.remove(index);
                        }
                        None => heads.push((layer, head)),
                    }
                    self.request_analysis();
                }
                UiAction::ClearAblation => {
                    self.settings.view.ablated_heads.clear();
                    self.request_analysis();
                }
                UiAction::PickCorpus => self.pick_corpus(),
                UiAction::RunCorpus => self.run_corpus(),
                UiAction::CancelCorpus => self.primary.cancel_corpus(),
                UiAction::SaveCorpus => self.save_corpus(),
                UiAction::Explain(request) => {
                    let id = self.next_id();
                    self.primary.explain(id, request);
                }
                UiAction::Generate(action) => self.generate_action(action),
                UiAction::PickTrainingData => self.pick_training_data(),
                UiAction::StartTraining(options) => self.start_training(*options),
                UiAction::CancelTraining => {
                    if let Some(job) = &self.training {
                        job.cancel();
                    }
                }
                UiAction::CompareFineTuned(folder) => self.compare_fine_tuned(&folder),
            }
        }
    }

    /// The Train tab's preview key (`None` without a file).
    pub(super) fn preview_key(&self) -> Option<PreviewKey> {
        let tab = &self.settings.tabs.train;
        let path = tab.data.trim();
        if path.is_empty() {
            return None;
        }
        let path = std::path::PathBuf::from(path);
        let stamp = std::fs::metadata(&path)
            .ok()
            .map(|metadata| (metadata.modified().ok(), metadata.len()));
        Some((path, tab.columns(), stamp))
    }

    /// Takes in the fine-tuning run's news, and reads the Train tab's data file for its preview
    /// while the tab is open (logic, every frame).
    fn training_logic(&mut self) {
        if let Some(job) = &mut self.training {
            job.poll();
        }
        if self.settings.view.view != View::Train {
            return;
        }
        if let Some(key) = self.preview_key() {
            let (path, columns, _) = key.clone();
            self.training_preview.request(key, &self.waker, move || {
                crate::model::finetune::data::preview(&path, &columns)
                    .map_err(|err| err.to_string())
            });
        }
    }

    /// Fine-tunes the loaded model as the Train tab asks, on a thread of its own.
    fn start_training(&mut self, mut options: crate::model::finetune::FineTuneOptions) {
        if self.training.as_ref().is_some_and(|job| job.running()) {
            return;
        }
        let Some(model) = self.primary.requested().map(str::to_owned) else {
            return;
        };
        options.device = self.device;
        let waker = self.waker.clone();
        self.training = Some(crate::worker::training::TrainingJob::start(
            model,
            options,
            move || waker.request_repaint(),
        ));
    }

    /// Opens a fine-tuned folder as the model, with the model it came from as the second one,
    /// and shows the Compare tab.
    fn compare_fine_tuned(&mut self, folder: &std::path::Path) {
        let Some(original) = self.training.as_ref().map(|job| job.source.clone()) else {
            return;
        };
        self.load_model(folder.display().to_string());
        let ctx = self.waker.clone();
        self.load_comparison(&ctx, original);
        self.settings.view.view = View::Compare;
    }

    /// Asks for the Train tab's data file (native dialog).
    fn pick_training_data(&mut self) {
        let dialog = rfd::FileDialog::new()
            .set_title("Choose labelled data: CSV, TSV or JSON Lines with a header")
            .add_filter("Data", &["csv", "tsv", "jsonl", "json"])
            .add_filter("All files", &["*"]);
        match dialog.pick_file() {
            Some(path) => self.settings.tabs.train.data = path.display().to_string(),
            None => {
                self.export_note = Some(
                    "No file chosen. If no dialog appeared, type the data file's path.".to_owned(),
                );
            }
        }
    }

    /// Runs head statistics over the corpus file of the Heads tab, over words when the tab
    /// shows words.
    pub fn run_corpus(&mut self) {
        let path = std::path::PathBuf::from(self.settings.tabs.head_stats.corpus_path.trim());
        let id = self.next_id();
        self.settings.tabs.head_stats.source = crate::views::head_stats::HeadSource::Corpus;
        self.primary.run_corpus(id, path, self.settings.view.words);
    }

    /// Asks for a corpus file (native dialog) and runs it.
    fn pick_corpus(&mut self) {
        let dialog = rfd::FileDialog::new()
            .set_title("Choose a corpus: one text per line")
            .add_filter("Text", &["txt", "tsv", "text"])
            .add_filter("All files", &["*"]);
        match dialog.pick_file() {
            Some(path) => {
                self.settings.tabs.head_stats.corpus_path = path.display().to_string();
                self.run_corpus();
            }
            None => {
                self.export_note = Some(
                    "No file chosen. If no dialog appeared, type the corpus file's path."
                        .to_owned(),
                );
            }
        }
    }

    /// Asks where to save the corpus run's statistics and writes them.
    fn save_corpus(&mut self) {
        let Some(crate::worker::CorpusRun::Finished { path, progress, .. }) = &self.primary.corpus
        else {
            return;
        };
        let stem = path
            .file_stem()
            .map_or_else(|| "corpus".into(), |stem| stem.to_string_lossy());
        let corpus = path
            .file_name()
            .map_or_else(|| "corpus".into(), |name| name.to_string_lossy())
            .into_owned();
        let report = Arc::clone(&progress.report);
        let dialog = rfd::FileDialog::new()
            .set_title("Save the corpus statistics")
            .set_file_name(format!("{stem}-head-stats.json"))
            .add_filter("JSON", &["json"])
            .add_filter("CSV", &["csv"])
            .add_filter("PNG figure", &["png"])
            .add_filter("SVG figure", &["svg"]);
        let Some(target) = dialog.save_file() else {
            self.export_note = Some(
                "Not saved. If no dialog appeared, use `bertscope stats --corpus … --out …`."
                    .to_owned(),
            );
            return;
        };
        self.export_note = Some(match self.save_corpus_to(&target, &corpus, &report) {
            Ok(()) => format!("Saved {}", target.display()),
            Err(err) => format!("{err:#}"),
        });
    }

    /// Writes a corpus run's statistics to `path` (JSON, CSV, or a PNG or SVG figure coloured
    /// by the Heads tab's statistic): a few kilobytes, or one small figure, so on the spot.
    pub fn save_corpus_to(
        &self,
        path: &std::path::Path,
        corpus: &str,
        report: &crate::analysis::stats::CorpusReport,
    ) -> anyhow::Result<()> {
        let model = match &self.primary.status {
            ModelStatus::Ready(info) => info.name.as_str(),
            _ => "model",
        };
        crate::export::export_corpus_report(
            path,
            (model, corpus),
            report,
            self.settings.tabs.head_stats.statistic,
            self.settings.view.export_scale,
        )
    }

    /// Replaces a token's characters in the input with the model's mask token and runs at once.
    fn mask_token(&mut self, index: usize) {
        let Some(result) = &self.primary.result else {
            return;
        };
        let ModelStatus::Ready(info) = &self.primary.status else {
            return;
        };
        let Some(mask) = info.mlm_mask().map(str::to_owned) else {
            return;
        };
        let analysis = &result.analysis;
        let (Some(Some((start, end))), Some(Some(sentence))) = (
            analysis.char_offsets.get(index),
            analysis.sentence.get(index),
        ) else {
            return;
        };
        let text = if *sentence == 0 {
            &mut self.settings.text_a
        } else {
            &mut self.settings.text_b
        };
        *text = replace_chars(text, *start, *end, &mask);
        self.settings.view.select(None);
        self.request_analysis();
    }

    /// Asks where to save the open view (native dialog) and writes it.
    fn export_view(&mut self) {
        if self.export_job.is_some() {
            return;
        }
        let view = self.settings.view.view;
        if view == View::Heads
            && self.settings.tabs.head_stats.source == crate::views::head_stats::HeadSource::Corpus
        {
            self.save_corpus();
            return;
        }
        if self.primary.result.is_none() {
            return;
        }
        let name = format!(
            "bertscope-{}-layer{}.png",
            view.label().to_lowercase().replace(' ', "-"),
            self.settings.view.layer
        );
        let dialog = rfd::FileDialog::new()
            .set_title("Export")
            .set_file_name(name)
            .add_filter("PNG figure", &["png"])
            .add_filter("SVG figure", &["svg"])
            .add_filter("All attention maps (JSON)", &["json"])
            .add_filter("This head (CSV)", &["csv"])
            .add_filter("All attention maps and tokens (NumPy .npz)", &["npz"])
            .add_filter("All attention maps (NumPy .npy)", &["npy"]);
        let Some(path) = dialog.save_file() else {
            self.export_note = Some(
                "Not saved. If no dialog appeared, use `bertscope export` from a terminal."
                    .to_owned(),
            );
            return;
        };
        self.export_in_background(path, Some(view));
    }

    /// Starts writing the open view's figure (or the data) to `path` on a thread of its own, as
    /// `Export…` does after its dialog; the tab bar shows its progress and a Cancel button.
    pub fn export_in_background(&mut self, path: std::path::PathBuf, view: Option<View>) {
        let Some(result) = &self.primary.result else {
            return;
        };
        let work = match self.export_work(&path, view, &Arc::clone(result)) {
            Ok(work) => work,
            Err(err) => {
                self.export_note = Some(format!("{err:#}"));
                return;
            }
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = std::sync::mpsc::channel();
        let (flag, waker) = (Arc::clone(&cancel), self.waker.clone());
        let spawned = std::thread::Builder::new()
            .name("bertscope-export".to_owned())
            .spawn(move || {
                let _ = sender.send(work(&flag));
                waker.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.export_note = None;
                self.export_job = Some(ExportJob {
                    path,
                    started: Instant::now(),
                    cancel,
                    receiver,
                });
            }
            Err(err) => self.export_note = Some(format!("cannot start the export ({err})")),
        }
    }

    /// Collects a finished export's outcome (logic, every frame while one runs).
    fn poll_export(&mut self, ctx: &egui::Context) {
        let Some(job) = &self.export_job else {
            return;
        };
        let outcome = match job.receiver.try_recv() {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                // The elapsed time on screen moves on.
                ctx.request_repaint_after(Duration::from_millis(100));
                return;
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err(anyhow::anyhow!("the export stopped unexpectedly"))
            }
        };
        self.export_note = Some(match outcome {
            Ok(()) => {
                let size = std::fs::metadata(&job.path).map_or(0, |meta| meta.len());
                format!("Saved {} ({})", job.path.display(), file_size(size))
            }
            Err(err) => format!("{err:#}"),
        });
        self.export_job = None;
    }

    /// Stops the running export: nothing is written (a file already there stays as it was).
    pub fn cancel_export(&mut self) {
        if let Some(job) = self.export_job.take() {
            job.cancel.store(true, Ordering::Relaxed);
            self.export_note = Some(format!("Cancelled; {} was not written", job.path.display()));
        }
    }

    /// Writes a tab's figure (or the data) to `path`, as `Export…` does after the dialog, on the
    /// calling thread: `view` is the tab whose figure a PNG or SVG draws (its own state and the
    /// shared settings decide the figure); without one, only data files can be written.
    pub fn export_to(
        &self,
        path: &std::path::Path,
        view: Option<View>,
        result: &Arc<crate::worker::AnalysisResult>,
    ) -> anyhow::Result<()> {
        self.export_work(path, view, result)?(&AtomicBool::new(false))
    }

    /// The open tab's figure as the tab draws it, from the app's state and what the app
    /// computed for it, on a plain canvas of `size` (no selection, pointer or zoom) under its
    /// caption, as SVG: what `export --view … --size` writes for the same parameters.
    pub fn open_tab_svg(&mut self, size: (f32, f32)) -> anyhow::Result<String> {
        use anyhow::Context as _;
        let result = self.primary.result.clone().context("nothing has run yet")?;
        let info = match &self.primary.status {
            ModelStatus::Ready(info) => info.clone(),
            _ => anyhow::bail!("no model is loaded"),
        };
        let word_level = if self.words_shown() {
            let merged = self
                .primary
                .word_level()
                .context("the words are being merged")?;
            Some(merged.map_err(anyhow::Error::msg)?)
        } else {
            None
        };
        let shown = crate::ui::tab::Shown { result, word_level };
        let view = self.settings.view.view;
        let figure = self
            .figure_of(view, &shown.result)
            .with_context(|| format!("the {} tab draws nothing now", view.label()))?;
        let computed = self.computed_for(&figure, &shown);
        let other = self.comparison.as_ref().and_then(|slot| {
            let result = slot.result.clone()?;
            Some((slot.name().unwrap_or("model B").to_owned(), result))
        });
        let inputs = crate::ui::tab::inputs_of(
            &shown,
            &info,
            &computed,
            other
                .as_ref()
                .map(|(name, result)| (name.as_str(), &result.analysis)),
            &self.primary.explained,
            &self.primary.generation,
            self.training.as_ref().map(|job| &job.progress),
        );
        let request = &shown.result.request;
        let scene = figure
            .figure(
                &inputs,
                &request.text_a,
                request.text_b.as_deref(),
                Some(size),
            )
            .map_err(anyhow::Error::msg)?;
        Ok(crate::render::svg::to_svg(
            &scene,
            &crate::render::scene::Palette::PAPER,
        ))
    }

    /// The figure the tab of `view` shows now (for `result`), as its export draws it.
    pub fn figure_of(
        &self,
        view: View,
        result: &crate::worker::AnalysisResult,
    ) -> Option<crate::views::Figure> {
        let other = self
            .comparison
            .as_ref()
            .and_then(|slot| slot.result.as_ref())
            .map(|result| &result.analysis);
        let words = self.settings.view.words && view.reads_words();
        let word_level = match self.primary.word_level() {
            Some(Ok(word_level)) if words => Some(word_level),
            _ => None,
        };
        let analysis = word_level.as_deref().unwrap_or(&result.analysis);
        self.settings
            .tabs
            .tab(view)
            .figure(&self.settings.view, analysis, other)
    }

    /// Checks an export of a tab (cheap, on the UI thread) and returns the work that renders
    /// and writes it, to run anywhere; the work stops when its flag is set.
    /// Long because it gathers, on the UI thread, everything the export needs to own before it
    /// leaves for the background (figure, comparison, model data).
    #[allow(clippy::type_complexity)]
    fn export_work(
        &self,
        path: &std::path::Path,
        view: Option<View>,
        result: &Arc<crate::worker::AnalysisResult>,
    ) -> anyhow::Result<Box<dyn FnOnce(&AtomicBool) -> anyhow::Result<()> + Send>> {
        use crate::export::{Export, ExportFormat, ModelData};
        use crate::views::heatmap::{Heatmap, MapKind};
        use crate::views::Figure;
        let format = ExportFormat::from_path(path)?;
        let state = &self.settings.view;
        // Data files are the same from every tab; a figure needs to know which picture.
        let figure = match format {
            ExportFormat::Png | ExportFormat::Svg => {
                let view = view
                    .ok_or_else(|| anyhow::anyhow!("{}: this tab has no figure", path.display()))?;
                self.figure_of(view, result).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: the {} tab draws nothing now",
                        path.display(),
                        view.label()
                    )
                })?
            }
            _ => Figure::Heatmap(Heatmap {
                layer: state.layer,
                head: state.head,
                kind: MapKind::Attention,
                fixed_scale: false,
            }),
        };
        let comparison = match figure {
            Figure::Compare(_) => {
                let slot = self
                    .comparison
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("load a second model to compare first"))?;
                let result = slot.result.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("the second model has not analysed the text yet")
                })?;
                Some((
                    slot.name().unwrap_or("model B").to_owned(),
                    Arc::clone(result),
                ))
            }
            _ => None,
        };
        let words = state.words && figure.view().reads_words();
        let export = Export {
            figure,
            scale: state.export_scale,
            precision: if state.export_f16 {
                crate::export::data::Precision::F16
            } else {
                crate::export::data::Precision::F32
            },
            words,
            size: None,
        };
        let (predicting, mask) = match &self.primary.status {
            ModelStatus::Ready(info) => (info.prediction_heads.clone(), info.mask_token.clone()),
            _ => (Vec::new(), None),
        };
        let model = self
            .primary
            .name()
            .unwrap_or(&self.settings.model)
            .to_owned();
        let (path, result) = (path.to_owned(), Arc::clone(result));
        let explained = self.primary.explained.clone();
        let generation = (view == Some(View::Generate)).then(|| self.primary.generation.clone());
        let training = self.training.as_ref().map(|job| job.progress.clone());
        Ok(Box::new(move |cancel: &AtomicBool| {
            let request = &result.request;
            let data = ModelData {
                generation: generation.as_ref(),
                training: training.as_ref(),
                attribution: explained.attribution(),
                patching: explained.patching(),
                logit_attribution: explained.logit_attribution(),
                lens: result.lens.as_deref(),
                embeddings: result.embeddings.as_ref(),
                predicting: &predicting,
                mask: mask.as_deref(),
                intact: result.intact.as_deref(),
                comparison: comparison
                    .as_ref()
                    .map(|(name, other)| (name.as_str(), &other.analysis)),
            };
            crate::export::export_cancellable(
                &path,
                (&model, &result.analysis),
                &data,
                (&request.text_a, request.text_b.as_deref()),
                &export,
                cancel,
            )
        }))
    }

    /// The open file dialog, run from the UI (it blocks while open, as native dialogs do).
    pub fn pick_folder(&mut self) {
        match rfd::FileDialog::new()
            .set_title("Open a model folder")
            .pick_folder()
        {
            Some(folder) => self.load_model(folder.display().to_string()),
            // Without a desktop portal or zenity, rfd returns at once with nothing.
            None => {
                self.picker_note = Some("No folder chosen. If no dialog appeared, type the folder's path or drop the folder on the window.".to_owned());
            }
        }
    }

    fn screenshot_logic(&mut self, ctx: &egui::Context) {
        let background_pending = self.background_pending();
        let Some(job) = &mut self.screenshot else {
            return;
        };
        if job.requested {
            return;
        }
        let slots = std::iter::once(&self.primary).chain(self.comparison.as_ref());
        let failure = slots
            .filter_map(|slot| match &slot.status {
                ModelStatus::Failed { message, .. } => Some(message.clone()),
                _ => slot.error.clone(),
            })
            .next()
            .or_else(|| {
                (job.started.elapsed() > SCREENSHOT_TIMEOUT)
                    .then(|| "no result to draw within 5 minutes".to_owned())
            });
        if let Some(message) = failure {
            if let Ok(mut outcome) = job.outcome.lock() {
                *outcome = Some(Err(format!("cannot take the screenshot: {message}")));
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        let waiting_for_comparison = self
            .comparison
            .as_ref()
            .is_some_and(|slot| slot.result.is_none());
        let busy = self.text_changed_at.is_some()
            || self.primary.is_busy()
            || self.comparison.as_ref().is_some_and(ModelSlot::is_busy);
        let ready = self.primary.result.is_some()
            && !busy
            && !waiting_for_comparison
            && !background_pending;
        if !ready {
            job.frames_with_result = 0;
            return;
        }
        // Two frames after the result: textures are uploaded and layout has settled.
        if job.frames_with_result < 3 {
            ctx.request_repaint();
            return;
        }
        job.requested = true;
        let path = job.path.clone();
        let outcome = Arc::clone(&job.outcome);
        let closer = ctx.clone();
        ctx.request_screenshot(move |image| {
            let saved = save_png(&path, &image).map(|()| path.clone());
            if let Ok(mut slot) = outcome.lock() {
                *slot = Some(saved.map_err(|err| format!("{err:#}")));
            }
            closer.send_viewport_cmd(egui::ViewportCommand::Close);
        });
    }

    /// Bookkeeping after a frame was drawn.
    pub fn after_frame(&mut self, ctx: &egui::Context) {
        if let Some(job) = &mut self.screenshot {
            if self.primary.result.is_some() {
                job.frames_with_result += 1;
                ctx.request_repaint();
            }
        }
    }
}

/// A file size for people: `812 B`, `4.2 KB`, `151.0 MB`, `1.2 GB` (powers of 1000).
pub fn file_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} KB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.1} GB", bytes as f64 / 1e9),
    }
}

/// Replaces characters `[start, end)` (counted in chars, not bytes) of `text`.
pub fn replace_chars(text: &str, start: usize, end: usize, replacement: &str) -> String {
    let before: String = text.chars().take(start).collect();
    let after: String = text.chars().skip(end).collect();
    format!("{before}{replacement}{after}")
}

fn save_png(path: &std::path::Path, image: &egui::ColorImage) -> anyhow::Result<()> {
    let [width, height] = image.size;
    let pixels: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|pixel| pixel.to_srgba_unmultiplied())
        .collect();
    let buffer = image::RgbaImage::from_raw(width as u32, height as u32, pixels)
        .ok_or_else(|| anyhow::anyhow!("the screenshot had an unexpected size"))?;
    crate::export::write_atomically(path, |writer| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        buffer
            .write_to(&mut bytes, image::ImageFormat::Png)
            .map_err(std::io::Error::other)?;
        writer.write_all(bytes.get_ref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sizes_read_as_people_write_them() {
        assert_eq!(file_size(812), "812 B");
        assert_eq!(file_size(4_200), "4.2 KB");
        assert_eq!(file_size(151_000_000), "151.0 MB");
        assert_eq!(file_size(1_234_000_000), "1.2 GB");
    }

    #[test]
    fn masking_counts_characters_not_bytes() {
        assert_eq!(replace_chars("naïve café", 6, 10, "[MASK]"), "naïve [MASK]");
        assert_eq!(
            replace_chars("東京 is big", 0, 1, "[MASK]"),
            "[MASK]京 is big"
        );
    }
}
