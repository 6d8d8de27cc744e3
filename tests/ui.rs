//! The app's views, headless: a snapshot per view from a fixed analysis of the tiny legacy
//! checkpoint, and interaction tests that drive the whole app through its accessibility tree.
//! Snapshots render with wgpu on Mesa lavapipe; `UPDATE_SNAPSHOTS=1` rewrites them.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "gui")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bertscope::analysis::HeadChoice;
use bertscope::app::{BertscopeApp, LaunchOptions, ModelStatus, Settings};
use bertscope::model::{AnalysisRequest, DeviceChoice, LoadedModel, ModelSource};
use bertscope::ui::scene::Rasters;
use bertscope::ui::tab::{Shown, TabContext};
use bertscope::ui::{UiAction, View, ViewState};
use bertscope::views::generate::GenerateAction;
use bertscope::views::{Computed, Tabs};
use bertscope::worker::{self, AnalysisResult, ModelInfo, WorkerResponse};
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fixed analysis: the MLM + NSP checkpoint on a sentence pair with a [MASK].
fn fixed() -> (Arc<AnalysisResult>, ModelInfo) {
    fixture_result(
        "tiny-legacy",
        "The cat sat on the [MASK].",
        Some("It was warm there."),
    )
}

/// The fixed analysis's result.
fn fixed_result() -> Arc<AnalysisResult> {
    fixed().0
}

/// A fixture checkpoint's analysis of a text, and what the app knows of the model.
fn fixture_result(
    name: &str,
    text: &str,
    text_b: Option<&str>,
) -> (Arc<AnalysisResult>, ModelInfo) {
    let model = LoadedModel::load(
        &ModelSource::Folder(fixture(name)),
        DeviceChoice::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let request = AnalysisRequest::new(text).with_text_b(text_b.map(str::to_owned));
    let info = ModelInfo::new(&model, 0.0);
    match worker::analyze(&model, 1, request) {
        WorkerResponse::Analyzed { result, .. } => (result, info),
        other => panic!("{other:?}"),
    }
}

/// A tab as the app holds it: the settings tabs share, every tab's own state, the run it shows
/// and what it asked for. What its figure needs computed is computed before each frame, as
/// export computes it (the app computes the same off its UI thread).
struct TabState {
    view: ViewState,
    tabs: Tabs,
    rasters: Rasters,
    run: Shown,
    info: ModelInfo,
    corpus: Option<worker::CorpusRun>,
    /// The model, when the tab explains predictions: its explanations run as the worker runs
    /// them, before the next frame.
    model: Option<Arc<LoadedModel>>,
    /// The explanations the tab asked for.
    explained: worker::Explanations,
    /// What the tab asked for that the harness does not apply (selections and opening a head
    /// are applied, as the app applies them).
    actions: Vec<UiAction>,
}

impl TabState {
    fn new((result, info): (Arc<AnalysisResult>, ModelInfo)) -> Self {
        Self {
            view: ViewState::default(),
            tabs: Tabs::default(),
            rasters: Rasters::default(),
            run: Shown {
                result,
                word_level: None,
            },
            info,
            corpus: None,
            model: None,
            explained: worker::Explanations::default(),
            actions: Vec::new(),
        }
    }

    /// A tab of a fixture checkpoint's run of a text, with the model to explain it.
    fn explaining(name: &str, text: &str) -> Self {
        let model = LoadedModel::load(
            &ModelSource::Folder(fixture(name)),
            DeviceChoice::Cpu,
            &mut |_| {},
        )
        .unwrap();
        let mut state = Self::new(fixture_result(name, text, None));
        state.model = Some(Arc::new(model));
        state
    }

    /// Draws the tab of `view`, then applies what it asked for that concerns the settings.
    fn show(&mut self, ui: &mut egui::Ui, view: View) {
        let analysis = &self.run.result.analysis;
        let figure = self.tabs.tab(view).figure(&self.view, analysis, None);
        let computed = figure
            .as_ref()
            .map(|figure| Computed::of(figure, analysis, None, None))
            .unwrap_or_default();
        let mut actions = Vec::new();
        let mut cx = TabContext {
            run: &self.run,
            info: &self.info,
            state: &mut self.view,
            figure: figure.as_ref(),
            computed: &computed,
            rasters: &mut self.rasters,
            actions: &mut actions,
            comparison: None,
            corpus: self.corpus.as_ref(),
            explained: &self.explained,
            generation: &Default::default(),
            training: None,
            training_preview: None,
        };
        self.tabs.tab_mut(view).show(ui, &mut cx);
        for action in actions {
            match action {
                UiAction::SelectToken(token) => self.view.select(token),
                UiAction::ToggleInSelection(token) => self.view.toggle_in_selection(token),
                UiAction::OpenInHeatmap { layer, head } => {
                    self.view.layer = layer;
                    self.view.head = HeadChoice::Head(head);
                    self.view.view = View::Heatmap;
                }
                UiAction::Explain(request) => self.explain(request),
                other => self.actions.push(other),
            }
        }
    }
}

impl TabState {
    /// Runs an explanation the tab asked for, unless it is the one already there.
    fn explain(&mut self, request: worker::ExplainRequest) {
        let Some(model) = &self.model else {
            self.actions.push(UiAction::Explain(request));
            return;
        };
        if self
            .explained
            .get(request.kind())
            .is_some_and(|state| state.request == request)
        {
            return;
        }
        let result = request
            .run(model, &mut |_, _| true)
            .map(Arc::new)
            .map_err(|err| err.to_string());
        self.explained.insert(worker::ExplainState {
            id: 0,
            request,
            progress: None,
            result: Some(result),
        });
    }
}

/// The tab of `view` in a 900 × 640 harness.
fn tab_harness<'a>(view: View, state: TabState) -> Harness<'a, TabState> {
    tab_harness_with(builder().with_size([900.0, 640.0]), view, state)
}

/// The tab of `view` in a harness `builder` makes.
fn tab_harness_with<'a>(
    builder: egui_kittest::HarnessBuilder<TabState>,
    view: View,
    state: TabState,
) -> Harness<'a, TabState> {
    builder.build_ui_state(move |ui, state: &mut TabState| state.show(ui, view), state)
}

/// A harness builder with the app's fonts (Hack after Ubuntu for symbols such as ‖ and →).
fn builder<State>() -> egui_kittest::HarnessBuilder<State> {
    Harness::builder().with_context_setup(bertscope::ui::install_fonts)
}

#[test]
fn heatmap_snapshot() {
    let mut state = TabState::new(fixed());
    state.view.layer = 1;
    state.view.head = HeadChoice::Head(2);
    state.view.selected_token = Some(2);
    let mut harness = tab_harness(View::Heatmap, state);
    harness.run();
    harness.snapshot("heatmap");
}

#[test]
fn heatmap_mean_snapshot_light_theme() {
    let mut state = TabState::new(fixed());
    state.view.head = HeadChoice::Mean;
    let builder = builder()
        .with_size([900.0, 640.0])
        .with_theme(egui::Theme::Light);
    let mut harness = tab_harness_with(builder, View::Heatmap, state);
    harness.run();
    harness.snapshot("heatmap_mean_light");
}

#[test]
fn lines_snapshot() {
    let mut harness = tab_harness(View::Lines, TabState::new(fixed()));
    harness.run();
    harness.snapshot("lines");
}

#[test]
fn overview_snapshot() {
    let mut harness = tab_harness(View::Overview, TabState::new(fixed()));
    harness.run();
    harness.snapshot("overview");
}

#[test]
fn projection_snapshot() {
    let mut state = TabState::new(fixed());
    state.tabs.projection.layer = 2;
    state.view.selected_token = Some(2);
    let mut harness = tab_harness(View::Projection, state);
    harness.run();
    harness.snapshot("projection");
}

#[test]
fn clicking_among_crowded_projection_points_selects_the_nearest_token() {
    let result = fixed_result();
    let mut state = TabState::new(fixed());
    state.tabs.projection.layer = 2;
    let mut harness = tab_harness(View::Projection, state);
    harness.run();
    assert_eq!(harness.state().view.selected_token, None);
    // The plot's middle, where the points crowd: the click picks one token.
    harness.get_by_label_contains("projection").click();
    harness.run();
    let selected = harness.state().view.selected_token;
    assert!(
        selected.is_some_and(|token| token < result.analysis.len()),
        "{selected:?}"
    );
}

#[test]
fn heads_snapshot_and_a_click_opens_the_head() {
    let mut harness = tab_harness(View::Heads, TabState::new(fixed()));
    harness.run();
    harness.snapshot("heads");
    harness.get_by_label("sep").click();
    harness.run();
    assert_eq!(
        harness.state().tabs.head_stats.statistic,
        bertscope::analysis::stats::Statistic::Sep
    );
    harness.get_by_label_contains("layer 1, head 3:").click();
    harness.run();
    let view = &harness.state().view;
    assert_eq!(
        (view.view, view.layer, view.head),
        (View::Heatmap, 1, HeadChoice::Head(3))
    );
}

/// The Heads tab over a finished corpus run: the file, its counts, Save, and the corpus's grid.
#[test]
fn heads_of_a_corpus_snapshot() {
    use bertscope::analysis::stats::{corpus_requests, CorpusStats};
    let model = LoadedModel::load(
        &ModelSource::Folder(fixture("tiny-legacy")),
        DeviceChoice::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let mut stats = CorpusStats::default();
    for (_, request) in corpus_requests("The cat sat on the mat.\nIt was warm\tand dry, too.\n") {
        stats.add(&model.analyze(&request).unwrap());
    }
    let mut state = TabState::new(fixed());
    state.corpus = Some(worker::CorpusRun::Finished {
        path: PathBuf::from("/data/corpus.txt"),
        words: false,
        progress: worker::CorpusProgress {
            total: 2,
            report: Arc::new(stats.report()),
            seconds: 0.25,
        },
    });
    state.tabs.head_stats.source = bertscope::views::head_stats::HeadSource::Corpus;
    state.tabs.head_stats.corpus_path = "/data/corpus.txt".to_owned();
    let mut harness = tab_harness(View::Heads, state);
    harness.run();
    harness.snapshot("heads_corpus");
    harness.get_by_label_contains("corpus.txt: 2 lines");
    harness.get_by_label("Save…");
}

/// The lines share the heatmap's Show switch: in the app, rollout is computed off the UI thread
/// and drawn as one set of lines; norms draw each head's ‖α·f(x)‖.
#[test]
fn lines_switch_between_attention_rollout_and_norms() {
    let mut harness = app_harness("the cat sat on the mat");
    harness.get_by_label("Lines").click();
    harness.run_ok();
    harness.get_by_label("rollout").click();
    wait_until(&mut harness, |app| {
        app.settings().view.attention_kind == bertscope::ui::AttentionKind::Rollout
    });
    harness.run_ok();
    harness.get_by_label_contains("Rollout through layers 0–0");
    assert!(harness
        .query_by_label_contains("Rolling attention out")
        .is_none());
    harness.get_by_label("norms").click();
    harness.run_ok();
    harness.get_by_label_contains("norm-based attention ‖α·f(x)‖");
    assert!(
        harness.query_by_label_contains("no weight here").is_none(),
        "lines are drawn"
    );
    // Flow into the first token, then into a selection of two, computed off the UI thread.
    harness.get_by_label("flow").click();
    wait_until(&mut harness, |app| {
        app.settings().view.attention_kind == bertscope::ui::AttentionKind::Flow
    });
    harness.get_by_label_contains("Flow through layers 0–0");
    assert!(
        harness.query_by_label_contains("no weight here").is_none(),
        "flow lines are drawn"
    );
    harness.get_by_label("sat").click();
    harness.run_ok();
    harness
        .get_by_label("[SEP]")
        .click_modifiers(egui::Modifiers::COMMAND);
    wait_until(&mut harness, |app| {
        app.settings().view.selection().len() == 2
    });
    harness.get_by_label("Heatmap").click();
    wait_until(&mut harness, |_| true);
    harness.get_by_label_contains("Selected: sat + [SEP]");
    assert!(harness
        .query_by_label_contains("Finding the maximum flow")
        .is_none());
}

#[test]
fn heatmap_switches_to_rollout_which_has_no_head_picker() {
    let mut state = TabState::new(fixed());
    state.view.layer = 1;
    let mut harness = tab_harness(View::Heatmap, state);
    harness.run();
    assert!(harness.query_by_label("Head").is_some());
    harness.get_by_label("rollout").click();
    harness.run();
    assert_eq!(
        harness.state().view.attention_kind,
        bertscope::ui::AttentionKind::Rollout
    );
    assert!(
        harness.query_by_label("Head").is_none(),
        "rollout mixes every head"
    );
    assert!(harness
        .query_by_label_contains("Rollout through layers 0–1")
        .is_some());
    harness.snapshot("heatmap_rollout");
}

/// The Predictions tab of a fixture on a text, as a snapshot.
fn predictions_snapshot(name: &str, text: &str, text_b: Option<&str>, snapshot: &str) {
    let state = TabState::new(fixture_result(name, text, text_b));
    // Random weights predict any token, CJK included, which the test fonts cannot draw.
    let builder = builder().with_size([900.0, 640.0]).allow_missing_glyphs();
    let mut harness = tab_harness_with(builder, View::Predictions, state);
    harness.run();
    harness.snapshot(snapshot);
}

/// The Lens tab of a fixture's text at its first lens position; the last row must be the
/// model's own prediction.
fn lens_snapshot(name: &str, text: &str, snapshot: &str) {
    let (result, info) = fixture_result(name, text, None);
    let lens = result.lens.clone().unwrap();
    let own = result
        .analysis
        .mlm
        .iter()
        .chain(&result.analysis.next_token)
        .flatten()
        .find(|prediction| prediction.position == lens[0].position)
        .unwrap();
    let last = lens[0].layers.last().unwrap();
    assert_eq!(last.top_k[0].id, own.top_k[0].id, "{name}");
    let builder = builder().with_size([900.0, 320.0]).allow_missing_glyphs();
    let mut harness = tab_harness_with(builder, View::Lens, TabState::new((result, info)));
    harness.run();
    harness.get_by_label_contains("after layer 2 (the model's prediction)");
    harness.snapshot(snapshot);
}

/// The Embeddings tab: every token's sizes, and the position similarity with 1 on its diagonal.
#[test]
fn embeddings_snapshot() {
    let (result, info) = fixed();
    let breakdown = result.embeddings.as_ref().unwrap();
    let tokens = result.analysis.len();
    assert_eq!(breakdown.tokens.len(), tokens);
    for index in 0..tokens {
        let diagonal = breakdown.position_similarity[index * tokens + index];
        assert!((diagonal - 1.0).abs() < 1e-5);
    }
    let mut harness = tab_harness(View::Embeddings, TabState::new((result, info)));
    harness.run();
    harness.get_by_label_contains("Similarity matrix");
    harness.get_by_label("after norm");
    harness.snapshot("embeddings");
}

/// The Query·Key tab for the fixed analysis's [MASK] in layer 1, head 2.
#[test]
fn query_key_snapshot() {
    let mut state = TabState::new(fixed());
    let mask = state
        .run
        .result
        .analysis
        .tokens
        .iter()
        .position(|token| token == "[MASK]")
        .unwrap();
    state.view.layer = 1;
    state.view.head = HeadChoice::Head(2);
    state.view.selected_token = Some(mask);
    let mut harness = tab_harness(View::QueryKey, state);
    harness.run();
    harness.get_by_label("Query and key vectors of layer 1, head 2");
    harness.snapshot("query_key");
}

#[test]
fn lens_at_a_mask_snapshot() {
    lens_snapshot("tiny-legacy", "The cat sat on the [MASK].", "lens_mlm");
}

#[test]
fn lens_at_gpt2s_last_token_snapshot() {
    lens_snapshot("gpt2-lm", "The cat sat on the mat", "lens_gpt2");
}

#[test]
fn masked_lm_and_next_sentence_snapshot() {
    predictions_snapshot(
        "tiny-legacy",
        "The cat sat on the [MASK].",
        Some("It was warm there."),
        "predictions_mlm",
    );
}

#[test]
fn question_answering_snapshot() {
    predictions_snapshot(
        "bert-qa",
        "Where does the teacher live?",
        Some("She lives near the old school in Paris, next to the station."),
        "predictions_qa",
    );
}

#[test]
fn token_classification_snapshot() {
    predictions_snapshot(
        "bert-ner",
        "John Smith flew from Paris to New York on Monday.",
        None,
        "predictions_ner",
    );
}

#[test]
fn multi_label_classification_snapshot() {
    predictions_snapshot(
        "roberta-multilabel",
        "The teacher explained how attention works.",
        None,
        "predictions_multilabel",
    );
}

#[test]
fn next_token_snapshot() {
    predictions_snapshot(
        "gpt2-lm",
        "The quick brown fox jumps over the lazy dog.",
        None,
        "predictions_next_token",
    );
}

#[test]
fn causal_heatmap_draws_the_masked_triangle_snapshot() {
    let (result, info) = fixture_result(
        "gpt2-lm",
        "The quick brown fox jumps over the lazy dog.",
        None,
    );
    assert!(result.analysis.is_masked(0, 0, 1) && !result.analysis.is_masked(0, 1, 0));
    let mut state = TabState::new((result, info));
    state.view.layer = 1;
    let mut harness = tab_harness(View::Heatmap, state);
    harness.run();
    harness.snapshot("heatmap_causal");
}

#[test]
fn heatmap_arrow_keys_step_layers_and_heads() {
    let mut harness = tab_harness(View::Heatmap, TabState::new(fixed()));
    harness.run();
    harness.key_press(egui::Key::ArrowDown);
    harness.run();
    harness.key_press(egui::Key::ArrowRight);
    harness.run();
    assert_eq!(harness.state().view.layer, 1);
    assert_eq!(harness.state().view.head, HeadChoice::Head(1));
    harness.key_press(egui::Key::ArrowLeft);
    harness.run();
    harness.key_press(egui::Key::ArrowLeft);
    harness.run();
    assert_eq!(
        harness.state().view.head,
        HeadChoice::Mean,
        "stepping back from head 0 reaches the mean"
    );
}

// ---- the whole app, with its worker thread, on the tiny checkpoint ----

/// The whole app on `launch`, stepped until `settled` holds.
fn launched_app<'a>(
    launch: LaunchOptions,
    size: [f32; 2],
    settled: impl Fn(&BertscopeApp) -> bool,
) -> Harness<'a, BertscopeApp> {
    launched_app_with(Settings::default(), launch, size, settled)
}

/// [`launched_app`], starting from remembered `settings`.
fn launched_app_with<'a>(
    settings: Settings,
    launch: LaunchOptions,
    size: [f32; 2],
    settled: impl Fn(&BertscopeApp) -> bool,
) -> Harness<'a, BertscopeApp> {
    // Random weights predict any token, CJK included, which the test fonts cannot draw.
    let mut harness = builder()
        .with_size(size)
        .allow_missing_glyphs()
        .build_eframe(move |cc| {
            BertscopeApp::new(&cc.egui_ctx, settings, launch, Default::default())
        });
    wait_until(&mut harness, settled);
    harness
}

fn app_harness<'a>(text: &str) -> Harness<'a, BertscopeApp> {
    let launch = LaunchOptions {
        model: Some(fixture("tiny-legacy").display().to_string()),
        text: Some(text.to_owned()),
        ..LaunchOptions::default()
    };
    launched_app(launch, [1200.0, 800.0], |app| app.result().is_some())
}

/// Steps the app until the worker has answered everything asked of it.
fn wait_until_idle(harness: &mut Harness<'_, BertscopeApp>) {
    wait_until(harness, |app| app.result().is_some());
}

/// Whether the Attribution tab's explanation has come back (a result or an error).
fn attributed(app: &BertscopeApp) -> bool {
    app.explained()
        .get(worker::ExplainKind::Attribution)
        .is_some_and(|state| state.result.is_some())
}

/// Steps the app until nothing is pending and `settled` holds.
fn wait_until(harness: &mut Harness<'_, BertscopeApp>, settled: impl Fn(&BertscopeApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        harness.step();
        let app = harness.state();
        if !app.is_busy() && settled(app) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not settle: {:?}",
            app.model_status()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    harness.run_ok();
}

/// Steps the app until `reached` holds, busy or not.
fn step_until(harness: &mut Harness<'_, BertscopeApp>, reached: impl Fn(&BertscopeApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reached(harness.state()) {
        assert!(Instant::now() < deadline, "the app did not get there");
        harness.step();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Replaces the text of the field labelled `label`, as a person would: select all, type.
fn replace_field_text(harness: &mut Harness<'_, BertscopeApp>, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.step();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.step();
    harness.get_by_label(label).type_text(text);
    harness.step();
}

#[test]
fn app_loads_runs_and_switches_tabs() {
    let mut harness = app_harness("the cat sat on the mat");
    assert!(
        matches!(harness.state().model_status(), ModelStatus::Ready(info) if info.layers == 2 && info.heads == 4)
    );
    let tokens = &harness.state().result().unwrap().analysis.tokens;
    assert_eq!(tokens.first().map(String::as_str), Some("[CLS]"));
    for view in [
        View::Lines,
        View::Overview,
        View::Projection,
        View::Predictions,
        View::Heatmap,
    ] {
        harness.get_by_label(view.label()).click();
        harness.run_ok();
        assert_eq!(harness.state().settings().view.view, view);
    }
}

#[test]
fn clicking_an_overview_head_opens_it_in_the_heatmap() {
    let mut harness = app_harness("the cat sat on the mat");
    harness.get_by_label("Overview").click();
    harness.run_ok();
    harness.get_by_label("layer 1, head 3").click();
    harness.run_ok();
    let view = &harness.state().settings().view;
    assert_eq!(view.view, View::Heatmap);
    assert_eq!((view.layer, view.head), (1, HeadChoice::Head(3)));
}

#[test]
fn clicking_a_token_in_the_predictions_view_masks_it_and_runs_again() {
    let mut harness = app_harness("the cat sat on the mat");
    harness.get_by_label(View::Predictions.label()).click();
    harness.run_ok();
    harness.get_by_label("sat").click();
    harness.step();
    assert_eq!(
        harness.state().settings().text_a,
        "the cat [MASK] on the mat"
    );
    assert!(harness.state().is_busy(), "a request was sent");
    wait_until_idle(&mut harness);
    let analysis = &harness.state().result().unwrap().analysis;
    let masked = analysis.tokens.iter().position(|t| t == "[MASK]").unwrap();
    assert_eq!(
        analysis.tokens[masked - 1],
        "##t",
        "after c ##a ##t of the tiny vocabulary"
    );
    let predictions = analysis.mlm.as_ref().unwrap();
    assert_eq!(predictions.len(), 1);
    assert_eq!(predictions[0].position, masked);
}

#[test]
fn typing_runs_at_once_and_the_newest_text_wins() {
    let mut harness = app_harness("first");
    let first_id = harness.state().result().map(|r| r.request.text_a.clone());
    assert_eq!(first_id.as_deref(), Some("first"));
    harness.get_by_label("Sentence A").focus();
    harness.step();
    for piece in [" a", " b", " c"] {
        harness.get_by_label("Sentence A").type_text(piece);
        // No debounce: the frame after the keystroke sends it, unless an analysis is in
        // flight, after which the newest text runs as soon as it returns.
        harness.step();
        harness.step();
        let app = harness.state();
        assert!(
            !app.text_waiting() || app.analysis_in_flight(),
            "a keystroke waited for nothing"
        );
    }
    wait_until_idle(&mut harness);
    assert!(!harness.state().text_waiting());
    assert_eq!(
        harness.state().result().unwrap().request.text_a,
        "first a b c"
    );
}

/// A corpus runs in the Heads tab on the worker, between the text's analyses: its statistics
/// are the reference's (`tools/make_analysis_reference.py`: numpy over transformers' maps), a
/// run can be cancelled, a bad path is a line, and `--corpus` runs one at launch.
#[test]
fn a_corpus_runs_in_the_heads_tab_with_progress_and_cancel() {
    use bertscope::worker::CorpusRun;
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-legacy").join("analyses.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    let text = reference["corpus"]["text"].as_str().unwrap();
    std::fs::write(&corpus, text).unwrap();
    let finished =
        |app: &BertscopeApp| matches!(app.corpus_run(), Some(CorpusRun::Finished { .. }));

    let mut harness = app_harness("the cat sat");
    harness.get_by_label("Heads").click();
    harness.run_ok();
    harness.get_by_label("a corpus").click();
    harness.run_ok();
    replace_field_text(&mut harness, "Corpus file", corpus.to_str().unwrap());
    harness.get_by_label("Run").click();
    wait_until(&mut harness, finished);
    let Some(CorpusRun::Finished {
        progress, words, ..
    }) = harness.state().corpus_run()
    else {
        unreachable!()
    };
    assert!(!words);
    let ours = serde_json::to_value(&*progress.report).unwrap();
    let expected = &reference["corpus"]["pieces"];
    assert_eq!(
        (&ours["lines"], &ours["tokens"]),
        (&expected["lines"], &expected["tokens"])
    );
    let layers = expected["heads"].as_array().unwrap();
    for (layer, heads) in
        common::pairs("layers", ours["heads"].as_array().unwrap(), layers).enumerate()
    {
        let (ours, theirs) = (heads.0.as_array().unwrap(), heads.1.as_array().unwrap());
        for (head, (ours, theirs)) in common::pairs("heads", ours, theirs).enumerate() {
            for key in ["cls", "sep", "punct", "self", "prev", "next", "entropy"] {
                let what = format!("corpus run {layer}:{head} {key}");
                let (a, b) = (ours[key].as_f64().unwrap(), theirs[key].as_f64().unwrap());
                common::assert_near(&what, a, b, 1e-5);
            }
            assert_eq!(ours["label"], theirs["label"], "{layer}:{head}");
        }
    }
    harness.get_by_label_contains("corpus.txt: 2 lines");
    // Save… writes what `bertscope stats --out` does, or a figure of the grid.
    let report = Arc::clone(&progress.report);
    let (json, svg) = (dir.path().join("stats.json"), dir.path().join("stats.svg"));
    for path in [&json, &svg] {
        harness
            .state()
            .save_corpus_to(path, "corpus.txt", &report)
            .unwrap();
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(saved["lines"], 2);
    assert_eq!(saved["heads"].as_array().unwrap().len(), 2);
    let figure = std::fs::read_to_string(&svg).unwrap();
    assert!(figure.contains("corpus.txt: 2 lines"), "{figure:.300}");
    let bad = harness
        .state()
        .save_corpus_to(&dir.path().join("stats.txt"), "corpus.txt", &report)
        .unwrap_err();
    assert!(bad
        .to_string()
        .contains("use a .json, .csv, .png or .svg file"));

    // A long corpus: the text still runs while it goes, and Cancel stops it.
    let long = dir.path().join("long.txt");
    std::fs::write(
        &long,
        "The cat sat on the mat, and it was warm.\n".repeat(20_000),
    )
    .unwrap();
    replace_field_text(&mut harness, "Corpus file", long.to_str().unwrap());
    harness.get_by_label("Run").click();
    step_until(&mut harness, |app| {
        matches!(
            app.corpus_run(),
            Some(CorpusRun::Running {
                progress: Some(_),
                ..
            })
        )
    });
    harness.get_by_label("Sentence A").focus();
    harness.step();
    harness.get_by_label("Sentence A").type_text(" down");
    step_until(&mut harness, |app| {
        !app.text_waiting()
            && app
                .result()
                .is_some_and(|result| result.request.text_a.ends_with("down"))
    });
    assert!(
        matches!(
            harness.state().corpus_run(),
            Some(CorpusRun::Running { .. })
        ),
        "the text ran before the corpus was done"
    );
    harness.get_by_label("Cancel").click();
    harness.run_ok();
    let cancelled = |app: &BertscopeApp| matches!(app.corpus_run(), Some(CorpusRun::Cancelled { done, total: 20_000 }) if *done > 0);
    assert!(
        cancelled(harness.state()),
        "{:?}",
        harness.state().corpus_run()
    );
    harness.get_by_label_contains("Cancelled after");
    std::thread::sleep(Duration::from_millis(300));
    harness.run_ok();
    assert!(
        cancelled(harness.state()),
        "a cancelled run reports nothing more"
    );

    // A path that is not there.
    replace_field_text(&mut harness, "Corpus file", "/no/such/corpus.txt");
    harness.get_by_label("Run").click();
    wait_until(&mut harness, |app| {
        matches!(app.corpus_run(), Some(CorpusRun::Failed { .. }))
    });
    harness.get_by_label_contains("cannot read the corpus");

    // `bertscope --corpus FILE` opens the tab and runs it once the model is loaded.
    let launch = LaunchOptions {
        model: Some(fixture("tiny-legacy").display().to_string()),
        corpus: Some(corpus),
        ..LaunchOptions::default()
    };
    let harness = launched_app(launch, [1200.0, 800.0], finished);
    assert_eq!(harness.state().settings().view.view, View::Heads);
}

#[test]
fn a_bad_model_folder_keeps_the_window_usable_with_a_message() {
    let launch = LaunchOptions {
        model: Some("/no/such/model/folder".to_owned()),
        ..LaunchOptions::default()
    };
    let harness = launched_app(launch, [1000.0, 600.0], |_| true);
    assert!(
        matches!(harness.state().model_status(), ModelStatus::Failed { message, .. } if message.contains("no such folder"))
    );
    harness.get_by_label("Open folder…");
    harness.get_by_label_contains("no such folder");
}

#[test]
fn ablating_heads_in_the_overview_reruns_and_shows_before_and_after() {
    let mut harness = app_harness("the cat sat on the [MASK].");
    harness.get_by_label("Overview").click();
    harness.run_ok();
    harness.get_by_label("Ablate heads").click();
    harness.run_ok();
    harness.get_by_label("layer 0, head 1").click();
    harness.run_ok();
    harness.get_by_label("layer 1, head 3").click();
    wait_until(&mut harness, |app| {
        app.result()
            .is_some_and(|result| result.analysis.ablated_heads.len() == 2)
    });
    let result = harness.state().result().unwrap().clone();
    assert_eq!(result.analysis.ablated_heads, [(0, 1), (1, 3)]);
    assert!(result.analysis.attention(0, 1).iter().all(|&w| w == 0.0));
    let intact = result.intact.as_deref().unwrap();
    assert!(intact.ablated_heads.is_empty());
    assert!(intact.attention(0, 1).iter().any(|&w| w > 0.0));
    assert_eq!(
        harness.state().settings().view.view,
        View::Overview,
        "in ablation mode a click switches, not opens"
    );
    harness.get_by_label("layer 0, head 1 (switched off)");
    harness.get_by_label_contains("Switched off (layer:head): 0:1, 1:3");

    harness.get_by_label("Predictions").click();
    harness.run_ok();
    harness.get_by_label("Ablation: before → after");
    harness.get_by_label_contains("mask at token");

    // Switching one back on runs again with the other.
    harness.get_by_label("Overview").click();
    harness.run_ok();
    harness
        .get_by_label("layer 0, head 1 (switched off)")
        .click();
    wait_until(&mut harness, |app| {
        app.result()
            .is_some_and(|result| result.analysis.ablated_heads == [(1, 3)])
    });
    harness.get_by_label("Restore all").click();
    wait_until(&mut harness, |app| {
        app.result().is_some_and(|result| {
            result.analysis.ablated_heads.is_empty() && result.intact.is_none()
        })
    });
}

#[test]
fn export_writes_the_open_view_with_its_layer_and_head() {
    let mut harness = app_harness("the cat sat on the mat");
    harness.get_by_label("Overview").click();
    harness.run_ok();
    harness.get_by_label("layer 1, head 2").click();
    harness.run_ok();
    assert!(!harness
        .get_by_label("Export…")
        .accesskit_node()
        .is_disabled());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("figure.svg");
    let app = harness.state();
    app.export_to(&path, Some(View::Heatmap), app.result().unwrap())
        .unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(
        svg.contains("layer 1 · head 2"),
        "the figure shows what the heatmap shows"
    );
    // Every tab draws a figure: the projection's names its layer.
    let projection = dir.path().join("projection.svg");
    app.export_to(&projection, Some(View::Projection), app.result().unwrap())
        .unwrap();
    let svg = std::fs::read_to_string(&projection).unwrap();
    assert!(svg.contains("hidden states, layer 0"), "{svg:.300}");
    assert!(svg.contains("<circle"), "a point per token");
    // Data files come from any tab; a figure needs to know which picture.
    // The CSV is the open head's map (layer 1, head 2), every weight.
    let csv = dir.path().join("head.csv");
    let analysis = &app.result().unwrap().analysis;
    app.export_to(&csv, None, app.result().unwrap()).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("query \\ key,[CLS]"));
    let weights: Vec<f32> = csv::Reader::from_reader(text.as_bytes())
        .records()
        .flat_map(|record| {
            let record = record.unwrap();
            let row: Vec<f32> = record.iter().skip(1).map(|v| v.parse().unwrap()).collect();
            assert_eq!(row.len(), analysis.len());
            row
        })
        .collect();
    assert_eq!(weights, analysis.attention(1, 2));
    let err = app
        .export_to(&dir.path().join("x.png"), None, app.result().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("this tab has no figure"), "{err}");
}

fn compare_harness<'a>(compare: &str) -> Harness<'a, BertscopeApp> {
    compare_harness_on(compare, "the cat sat on the mat")
}

/// The tiny checkpoint beside the fixture `compare`, both on `text`, in the Compare tab.
fn compare_harness_on<'a>(compare: &str, text: &str) -> Harness<'a, BertscopeApp> {
    let launch = LaunchOptions {
        // Relative paths (tests run in the package root) keep the snapshot free of this checkout's path.
        model: Some("tests/fixtures/tiny-legacy".to_owned()),
        compare: Some(format!("tests/fixtures/{compare}")),
        text: Some(text.to_owned()),
        view: Some(View::Compare),
        ..LaunchOptions::default()
    };
    launched_app(launch, [1400.0, 900.0], |app| {
        app.comparison().is_some_and(|slot| slot.result.is_some())
    })
}

#[test]
fn comparing_two_models_aligns_layers_and_shows_their_difference() {
    let mut harness = compare_harness("tiny-modern");
    let app = harness.state();
    assert_eq!(app.settings().view.view, View::Compare);
    let divergence = app.compare_divergence().unwrap();
    assert_eq!(divergence.len(), 2, "one value per layer of A");
    assert!(
        divergence
            .iter()
            .all(|d| (0.0..=1.0).contains(d) && *d > 0.0),
        "{divergence:?}"
    );
    harness.get_by_label("A − B");
    // New text: both models run again and the summary follows their newest results.
    let before = divergence.to_vec();
    harness.get_by_label("Sentence A").focus();
    harness.step();
    harness
        .get_by_label("Sentence A")
        .type_text(" again and again");
    wait_until(&mut harness, |app| {
        app.comparison()
            .and_then(|slot| slot.result.as_ref())
            .is_some_and(|r| r.request.text_a.ends_with("again"))
    });
    let after = harness.state().compare_divergence().unwrap();
    assert_ne!(after, before.as_slice());
    harness.get_by_label("all heads").click();
    harness.run_ok();
    assert!(harness.state().settings().tabs.compare.overviews);
    harness.get_by_label("Close").click();
    harness.run_ok();
    assert!(harness.state().comparison().is_none());
    assert_eq!(harness.state().settings().view.view, View::Heatmap);
}

/// Every registered tab, drawn by the whole app (two models loaded, so that Compare shows):
/// a tab added to the registry fails here until its snapshot is looked at and added.
#[test]
fn every_registered_tab_snapshot() {
    let mut harness = compare_harness("tiny-vocab-only");
    // Logit attribution's and Generate's tabs are there for causal models only
    // (`generate_tab_snapshot_and_its_export` draws Generate's).
    for &view in View::ALL
        .iter()
        .filter(|&&v| !matches!(v, View::LogitAttribution | View::Generate))
    {
        harness
            .get(egui_kittest::kittest::by().predicate(|node| {
                node.label().as_deref() == Some(view.label()) && node.toggled().is_some()
            }))
            .click();
        // No pointer over the tab bar: its highlight and tooltip depend on timing.
        harness.event(egui::Event::PointerGone);
        wait_until(&mut harness, |app| {
            app.settings().view.view == view && (view != View::Attribution || attributed(app))
        });
        // The status bar shows load, inference and frame times, which differ on every run.
        harness.mask(egui::Rect::from_min_max(
            egui::pos2(0.0, 872.0),
            egui::pos2(1400.0, 900.0),
        ));
        let name = format!("tab_{view:?}").to_lowercase();
        harness.snapshot(&name);
    }
}

/// What the screen shows is what export writes: for every registered view, the open tab's
/// figure drawn from the app's state and what the app computed for it equals `export --view`
/// with the same parameters at the same size, with no pointer: the same SVG, shape for shape,
/// text for text, image for image.
#[test]
fn every_tab_draws_the_scene_its_export_writes() {
    const TEXT: &str = "the cat sat on the [MASK].";
    let mut harness = compare_harness_on("tiny-vocab-only", TEXT);
    let dir = tempfile::tempdir().unwrap();
    for &view in View::ALL {
        // Patching needs a corrupted text and logit attribution a pre-LayerNorm model: their
        // tabs and exports are compared in `explanation_tabs_draw_the_scene_their_export_writes`.
        // Generate needs a causal model: `generate_tab_snapshot_and_its_export` compares it.
        // Train draws a fine-tuning run: `the_train_tab_fine_tunes_draws_its_export_and_compares`.
        if matches!(
            view,
            View::Patching | View::LogitAttribution | View::Generate | View::Train
        ) {
            continue;
        }
        harness
            .get(egui_kittest::kittest::by().predicate(|node| {
                node.label().as_deref() == Some(view.label()) && node.toggled().is_some()
            }))
            .click();
        harness.event(egui::Event::PointerGone);
        wait_until(&mut harness, |app| {
            app.settings().view.view == view
                && (view != View::Attribution || app.explained().attribution().is_some())
        });
        let shown = harness.state_mut().open_tab_svg((900.0, 640.0)).unwrap();
        let out = dir.path().join(format!("{}.svg", view.name()));
        let mut args = vec![
            "export",
            "--model",
            "tests/fixtures/tiny-legacy",
            "--text",
            TEXT,
            "--view",
            &view.name(),
            "--size",
            "900x640",
            "--out",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        args.push(out.display().to_string());
        if view == View::Compare {
            // The Compare tab shows the mean of each model's heads until a head is picked.
            args.extend(
                [
                    "--compare",
                    "tests/fixtures/tiny-vocab-only",
                    "--head",
                    "mean",
                ]
                .map(str::to_owned),
            );
        }
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_bertscope"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{view:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let exported = std::fs::read_to_string(&out).unwrap();
        assert!(exported.len() > 1000, "{view:?} draws something");
        if shown != exported {
            let (ours, theirs): (Vec<_>, Vec<_>) =
                (shown.lines().collect(), exported.lines().collect());
            let first = ours
                .iter()
                .zip(&theirs)
                .position(|(a, b)| a != b)
                .unwrap_or(ours.len().min(theirs.len()));
            panic!(
                "{view:?}: the tab's scene and the export differ from line {first} ({} against {} lines):\n  tab:    {:.300}\n  export: {:.300}",
                ours.len(),
                theirs.len(),
                ours.get(first).unwrap_or(&""),
                theirs.get(first).unwrap_or(&""),
            );
        }
    }
}

/// The model summary appears in the model picker and in the status bar.
fn assert_summary_shown(harness: &Harness<'_, BertscopeApp>, summary: &str) {
    assert_eq!(
        harness.get_all_by_label_contains(summary).count(),
        2,
        "{summary}"
    );
}

/// The whole app on a family fixture, opened on the Predictions tab.
fn family_app<'a>(name: &str, text: &str, text_b: Option<&str>) -> Harness<'a, BertscopeApp> {
    let launch = LaunchOptions {
        model: Some(fixture(name).display().to_string()),
        text: Some(text.to_owned()),
        text_b: text_b.map(str::to_owned),
        view: Some(View::Predictions),
        ..LaunchOptions::default()
    };
    launched_app(launch, [1200.0, 800.0], |app| app.result().is_some())
}

#[test]
fn gpt2_predicts_after_the_selected_token_and_reads_one_text() {
    let mut harness = family_app("gpt2-lm", "The quick brown fox", None);
    assert_summary_shown(&harness, "gpt2 · 2×4 · next token");
    harness.get_by_label_contains("After “▁fox” (position 3)");
    assert!(
        harness
            .get_by_label("Sentence B")
            .accesskit_node()
            .is_disabled(),
        "GPT-2 takes no sentence pair"
    );
    harness.get_by_label("▁quick").click();
    harness.run_ok();
    assert_eq!(harness.state().settings().view.selected_token, Some(1));
    harness.get_by_label_contains("After “▁quick” (position 1)");
}

#[test]
fn roberta_masks_a_clicked_token_with_its_own_mask_token() {
    let mut harness = family_app("roberta-mlm", "The cat sat on the mat.", None);
    assert_summary_shown(&harness, "roberta · 2×4 · masked LM");
    harness.get_by_label("▁sat").click();
    harness.step();
    assert_eq!(
        harness.state().settings().text_a,
        "The cat <mask> on the mat."
    );
    wait_until_idle(&mut harness);
    let analysis = &harness.state().result().unwrap().analysis;
    let predictions = analysis.mlm.as_ref().unwrap();
    assert_eq!(predictions.len(), 1);
    assert_eq!(analysis.tokens[predictions[0].position], "<mask>");
}

#[test]
fn question_answering_asks_for_a_context_then_answers_from_it() {
    let mut harness = family_app("bert-qa", "Where does the teacher live?", None);
    harness.get_by_label("Question");
    harness.get_by_label("Add a context (sentence B)").click();
    harness.run_ok();
    assert!(harness.state().settings().use_pair);

    let mut harness = family_app(
        "bert-qa",
        "Where does the teacher live?",
        Some("She lives near the old school in Paris."),
    );
    let answer = harness
        .state()
        .result()
        .unwrap()
        .analysis
        .qa
        .clone()
        .unwrap();
    harness.get_by_label(&answer.answer);
    assert!("She lives near the old school in Paris.".contains(&answer.answer));
    harness.run_ok();
}

#[test]
fn token_labels_and_classifier_summary_are_shown() {
    let harness = family_app("bert-ner", "John Smith flew to Paris.", None);
    assert_summary_shown(&harness, "token classification: PER/LOC/MISC");
    let labels = harness
        .state()
        .result()
        .unwrap()
        .analysis
        .token_classification
        .clone()
        .unwrap();
    assert_eq!(
        labels.len(),
        harness.state().result().unwrap().analysis.len() - 2
    );

    let harness = family_app("distilbert-regression", "The movie was fine.", None);
    assert_summary_shown(&harness, "distilbert · 2×4 · classification: stars");
}

#[test]
fn comparing_across_families_works_when_tokens_match_and_says_when_not() {
    let launch = |compare: &str| LaunchOptions {
        model: Some("tests/fixtures/bert-sentiment".to_owned()),
        compare: Some(format!("tests/fixtures/{compare}")),
        text: Some("the cat sat on the mat".to_owned()),
        view: Some(View::Compare),
        ..LaunchOptions::default()
    };
    let both = |app: &BertscopeApp| app.comparison().is_some_and(|slot| slot.result.is_some());
    // BERT and DistilBERT with the same WordPiece vocabulary split the text alike.
    let harness = launched_app(launch("distilbert-regression"), [1400.0, 900.0], both);
    assert_eq!(
        harness.state().compare_divergence().map(<[f32]>::len),
        Some(2)
    );
    harness.get_by_label("A − B");
    // RoBERTa's byte-level BPE does not.
    let harness = launched_app(launch("roberta-multilabel"), [1400.0, 900.0], both);
    assert!(harness.state().compare_divergence().is_none());
    harness.get_by_label_contains("BERT and RoBERTa split this text into different tokens");
}

#[test]
fn exports_run_in_the_background_and_report_the_file_size() {
    let mut harness = app_harness("the cat sat on the mat");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.npy");
    harness.state_mut().export_in_background(path.clone(), None);
    assert!(harness.state().exporting());
    let deadline = Instant::now() + Duration::from_secs(60);
    while harness.state().exporting() {
        harness.step();
        assert!(Instant::now() < deadline, "the export never finished");
        std::thread::sleep(Duration::from_millis(2));
    }
    // tiny-legacy: 2 layers × 4 heads × tokens² of f32, after a 128-byte .npy header.
    let tokens = harness.state().result().unwrap().analysis.len() as u64;
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(size, 2 * 4 * tokens * tokens * 4 + 128);
    let note = harness.state().export_note().unwrap().to_owned();
    let shown = format!("{:.1} KB", size as f64 / 1e3);
    assert_eq!(note, format!("Saved {} ({shown})", path.display()));
    harness.run_ok();
    harness.get_by_label(&note);
}

#[test]
fn keyboard_shortcuts_switch_tabs_focus_the_text_and_list_themselves() {
    let mut harness = app_harness("the cat sat on the mat");
    harness.key_press(egui::Key::Num2);
    harness.run_ok();
    assert_eq!(harness.state().settings().view.view, View::Lines);
    harness.key_press(egui::Key::Num3);
    harness.run_ok();
    assert_eq!(harness.state().settings().view.view, View::Overview);

    harness.key_press(egui::Key::F1);
    harness.run_ok();
    assert!(harness.state().shortcuts_shown());
    harness.get_by_label("Keyboard shortcuts");
    harness.get_by_label("export the open view");
    harness.key_press(egui::Key::Escape);
    harness.run_ok();
    assert!(!harness.state().shortcuts_shown());

    // `/` puts the cursor in Sentence A; from then on digits are text, not tabs.
    harness.key_press(egui::Key::Slash);
    harness.run_ok();
    let sentence_a = egui::Id::unique("sentence-a");
    assert_eq!(
        harness.ctx.memory(|memory| memory.focused()),
        Some(sentence_a)
    );
    harness.key_press(egui::Key::Num1);
    harness.run_ok();
    assert_eq!(harness.state().settings().view.view, View::Overview);
}

#[test]
fn heatmap_wheel_zooms_at_the_pointer_drag_pans_and_keys_fit() {
    let mut harness = tab_harness(View::Heatmap, TabState::new(fixed()));
    harness.run_steps(8);
    let matrix = harness.get_by_label_contains("Attention matrix").rect();
    let inside = egui::pos2(
        (matrix.left() + matrix.right()) / 2.0,
        (matrix.top() + matrix.bottom()) / 2.0,
    );
    harness.hover_at(inside);
    harness.run_steps(8);
    harness.event(egui::Event::MouseWheel {
        unit: egui::MouseWheelUnit::Point,
        delta: egui::vec2(0.0, 400.0),
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
        modifiers: egui::Modifiers::NONE,
    });
    harness.run_steps(8);
    let zoomed = harness.state().tabs.heatmap.zoom;
    assert!(zoomed.zoom > 1.5, "the wheel zooms in: {zoomed:?}");
    assert!(zoomed.left > 0.0 && zoomed.top > 0.0, "{zoomed:?}");

    // Dragging right and down shows what lies left and up.
    harness.drag_at(inside);
    harness.run_steps(8);
    for step in 1..=4 {
        harness.hover_at(inside + egui::vec2(10.0, 10.0) * step as f32);
        harness.run_steps(8);
    }
    harness.drop_at(inside + egui::vec2(40.0, 40.0));
    harness.run_steps(8);
    let panned = harness.state().tabs.heatmap.zoom;
    assert_eq!(panned.zoom, zoomed.zoom);
    assert!(
        panned.left < zoomed.left && panned.top < zoomed.top,
        "{zoomed:?} → {panned:?}"
    );

    harness.key_press(egui::Key::Num0);
    harness.run_steps(8);
    assert!(harness.state().tabs.heatmap.zoom.is_fit());
    harness.key_press(egui::Key::Equals);
    harness.run_steps(8);
    assert!(harness.state().tabs.heatmap.zoom.zoom > 1.0);
    harness.get_by_label("Fit").click();
    harness.run_steps(8);
    assert!(harness.state().tabs.heatmap.zoom.is_fit());
}

#[test]
fn every_control_on_every_tab_has_an_accessible_label() {
    use egui::accesskit::Role;
    let mut harness = compare_harness("tiny-vocab-only");
    let mut unlabelled = Vec::new();
    // Logit attribution's and Generate's tabs are there for causal models only (Generate's
    // controls are checked in `generate_tab_snapshot_and_its_export`).
    for &view in View::ALL
        .iter()
        .filter(|&&v| !matches!(v, View::LogitAttribution | View::Generate))
    {
        // The tab, not the Compare button beside the second model's field.
        harness
            .get(egui_kittest::kittest::by().predicate(|node| {
                node.label().as_deref() == Some(view.label()) && node.toggled().is_some()
            }))
            .click();
        harness.run_ok();
        assert_eq!(harness.state().settings().view.view, view);
        let controls = harness.query_all(egui_kittest::kittest::by().predicate(|node| {
            matches!(
                node.role(),
                Role::Button
                    | Role::CheckBox
                    | Role::ComboBox
                    | Role::TextInput
                    | Role::MultilineTextInput
                    | Role::Slider
                    | Role::SpinButton
                    | Role::RadioButton
            )
        }));
        for control in controls {
            let node = control.accesskit_node();
            let label = node.label().unwrap_or_default();
            // A lone symbol ("<", "+") says nothing to a screen reader.
            if !label.chars().any(char::is_alphanumeric) {
                unlabelled.push(format!("{}: {:?} {label:?}", view.label(), node.role()));
            }
        }
    }
    unlabelled.sort();
    unlabelled.dedup();
    assert!(unlabelled.is_empty(), "{unlabelled:#?}");
}

#[test]
fn words_switch_merges_pieces_and_shift_click_selects_several() {
    // The tiny vocabulary splits "cat" into c ##a ##t.
    let mut harness = app_harness("the cat sat");
    let pieces = harness.state().result().unwrap().analysis.len();
    harness.get_by_label("Words").click();
    wait_until(&mut harness, |app| app.settings().view.words);
    // The chips are words now, and the status bar counts them.
    harness.get_by_label("cat").click();
    harness.run_ok();
    harness
        .get_by_label("the")
        .click_modifiers(egui::Modifiers::SHIFT);
    harness.run_ok();
    let view = &harness.state().settings().view;
    assert_eq!(view.selection(), vec![1, 2], "the and cat, as words");
    assert_eq!(view.selected_token, Some(1), "the last added is the focus");
    harness.get_by_label_contains("Selected: the + cat");
    harness.get_by_label_contains("words");
    assert!(
        harness
            .query_by_label_contains(&format!("{pieces} tokens"))
            .is_some(),
        "the pieces are still counted"
    );
    // Back to pieces: the selection moves to each word's first piece.
    harness.get_by_label("Words").click();
    harness.run_ok();
    harness.run_ok();
    let view = &harness.state().settings().view;
    assert!(!view.words);
    assert_eq!(view.selection(), vec![1, 2], "the, and c of c ##a ##t");
    // A plain click selects one token alone.
    harness.get_by_label("the").click();
    harness.run_ok();
    assert_eq!(harness.state().settings().view.selection(), vec![1]);
}

#[test]
fn attribution_tab_snapshot_and_methods() {
    let mut state = TabState::explaining("bert-sentiment", "the movie was great fun");
    state.tabs.attribution.method = bertscope::views::attribution::Method::IntegratedGradients;
    let mut harness = tab_harness(View::Attribution, state);
    harness.run();
    harness.snapshot("attribution");
    let attribution = harness.state().explained.attribution().unwrap().clone();
    assert_eq!(attribution.target.name.as_deref(), Some("POSITIVE"));
    assert!(attribution.integrated_gradients.is_some());
    // The live methods ask for no integrated gradients.
    harness.get_by_label("gradient × input").click();
    harness.run();
    let live = harness.state().explained.attribution().unwrap().clone();
    assert!(live.integrated_gradients.is_none());
    assert_eq!(live.grad_x_input, attribution.grad_x_input);
    // A target the model cannot give is one line in the tab.
    harness.state_mut().tabs.attribution.target = "mlm:2".to_owned();
    harness.run();
    assert!(harness
        .query_by_label_contains("its targets: label")
        .is_some());
}

#[test]
fn patching_tab_snapshot() {
    let mut state = TabState::explaining("gpt2-lm", "The quick brown fox jumps");
    state.tabs.patching.corrupt = "The quick brown cat jumps".to_owned();
    let mut harness = tab_harness(View::Patching, state);
    harness.run();
    harness.snapshot("patching");
    let patching = harness.state().explained.patching().unwrap();
    assert_eq!(patching.resid_pre.len(), 2);
    let label = format!("layer 1, head 1: {:.4}", patching.head_out[1][1]);
    // A click on a head opens it in the heatmap.
    harness.get_by_label(&label).click();
    harness.run();
    assert_eq!(harness.state().view.view, View::Heatmap);
}

#[test]
fn logit_attribution_tab_snapshot() {
    let mut state = TabState::explaining("gpt2-lm", "The quick brown fox jumps");
    state.view.selected_token = Some(3);
    let mut harness = tab_harness(View::LogitAttribution, state);
    harness.run();
    harness.snapshot("logit_attribution");
    let parts = harness.state().explained.logit_attribution().unwrap();
    assert_eq!(parts.target.position, Some(3));
    assert!((parts.total() - parts.logit).abs() < 1e-4);
}

#[test]
fn why_in_the_predictions_tab_opens_the_attribution_of_that_prediction() {
    let mut harness = app_harness("the cat sat on the [MASK].");
    harness
        .get(egui_kittest::kittest::by().predicate(|node| {
            node.label().as_deref() == Some(View::Predictions.label()) && node.toggled().is_some()
        }))
        .click();
    wait_until(&mut harness, |app| {
        app.settings().view.view == View::Predictions
    });
    let button = harness
        .query_all(
            egui_kittest::kittest::by()
                .predicate(|node| node.label().is_some_and(|label| label.starts_with("why "))),
        )
        .next()
        .expect("a why? button for the mask's top prediction");
    button.click();
    wait_until(&mut harness, |app| {
        app.settings().view.view == View::Attribution && attributed(app)
    });
    let prediction = &harness
        .state()
        .result()
        .unwrap()
        .analysis
        .mlm
        .as_ref()
        .unwrap()[0];
    let (position, top) = (prediction.position, prediction.top_k[0].clone());
    let settings = harness.state().settings();
    assert_eq!(
        settings.tabs.attribution.target,
        format!("mlm:{position}:{}", top.token)
    );
    let attribution = harness.state().explained().attribution().unwrap();
    assert_eq!(attribution.target.position, Some(position));
    assert_eq!(attribution.target.id, top.id);
}

/// The greedy ids transformers' `generate` gave for the gpt2-lm fixture's prompt.
fn greedy_reference() -> (String, Vec<u32>) {
    let text = std::fs::read_to_string(fixture("gpt2-lm").join("generation.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = json["greedy_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap() as u32)
        .collect();
    (json["prompt"].as_str().unwrap().to_owned(), ids)
}

#[test]
fn generate_steps_plays_regenerates_resets_and_yields_to_typing() {
    let (prompt, expected) = greedy_reference();
    let launch = LaunchOptions {
        model: Some(fixture("gpt2-lm").display().to_string()),
        text: Some(prompt.clone()),
        view: Some(View::Generate),
        ..LaunchOptions::default()
    };
    let mut harness = launched_app(launch, [1200.0, 800.0], |app| {
        app.result().is_some() && app.generation().upcoming.is_some()
    });
    let ids = |app: &BertscopeApp| -> Vec<u32> {
        app.generation().steps.iter().map(|s| s.chosen.id).collect()
    };

    // A step: transformers' greedy token joins the text, and every tab runs on the new text.
    harness.get_by_label("Step").click();
    wait_until(&mut harness, |app| app.generation().steps.len() == 1);
    let app = harness.state();
    assert_eq!(ids(app), expected[..1]);
    assert_eq!(app.settings().text_a, app.generation().text);
    assert_eq!(app.result().unwrap().request.text_a, app.generation().text);
    assert!(app.settings().text_a.starts_with(&prompt));

    // Play writes the tab's number of new tokens, each as transformers' greedy generate does.
    harness.get_by_label("Play").click();
    wait_until(&mut harness, |app| {
        !app.generation().playing && app.generation().steps.len() > 1
    });
    let played = 1 + harness.state().settings().tabs.generate.max_new_tokens;
    assert_eq!(ids(harness.state()), expected[..played]);
    let analysis = &harness.state().result().unwrap().analysis;
    assert!(
        analysis.len() > 4 + played / 2,
        "the heatmap grows a row per step"
    );

    // Regenerating from a token keeps what came before it and draws it again.
    harness
        .state_mut()
        .apply(vec![UiAction::Generate(GenerateAction::RegenerateFrom(3))]);
    wait_until(&mut harness, |app| app.generation().steps.len() == 4);
    assert_eq!(ids(harness.state()), expected[..4]);

    // Reset puts the prompt back.
    harness.get_by_label("Reset").click();
    wait_until(&mut harness, |app| !app.generation().started());
    assert_eq!(harness.state().settings().text_a, prompt);

    // Typing ends a generation: the text is the person's, and the next step starts from it.
    harness.get_by_label("Step").click();
    wait_until(&mut harness, |app| app.generation().steps.len() == 1);
    replace_field_text(&mut harness, "Sentence A", "A different start");
    wait_until(&mut harness, |app| app.generation().upcoming.is_some());
    assert!(!harness.state().generation().started());
    assert_eq!(harness.state().settings().text_a, "A different start");
}

/// The Generate tab: its figure is the one `export --view generate` writes with the same
/// settings, every control has a name, and after a sampled step it looks as recorded.
#[test]
fn generate_tab_snapshot_and_its_export() {
    use egui::accesskit::Role;
    let (prompt, _) = greedy_reference();
    let mut settings = Settings::default();
    settings.tabs.generate = bertscope::views::generate::GenerateTab {
        greedy: false,
        temperature: 0.7,
        top_k: 5,
        top_p: 0.9,
        ..Default::default()
    };
    let launch = LaunchOptions {
        // A relative path keeps the snapshot free of this checkout's path.
        model: Some("tests/fixtures/gpt2-lm".to_owned()),
        text: Some(prompt.clone()),
        view: Some(View::Generate),
        ..LaunchOptions::default()
    };
    let mut harness = launched_app_with(settings, launch, [1400.0, 900.0], |app| {
        app.result().is_some() && app.generation().upcoming.is_some()
    });
    let shown = harness.state_mut().open_tab_svg((900.0, 640.0)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("generate.svg");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_bertscope"))
        .args([
            "export",
            "--model",
            fixture("gpt2-lm").to_str().unwrap(),
            "--text",
            &prompt,
            "--view",
            "generate",
            "--temperature",
            "0.7",
            "--top-k",
            "5",
            "--top-p",
            "0.9",
            "--size",
            "900x640",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(shown, std::fs::read_to_string(&out).unwrap());

    let unlabelled: Vec<String> = harness
        .query_all(egui_kittest::kittest::by().predicate(|node| {
            matches!(
                node.role(),
                Role::Button | Role::CheckBox | Role::Slider | Role::SpinButton
            ) && !node
                .label()
                .unwrap_or_default()
                .chars()
                .any(char::is_alphanumeric)
        }))
        .map(|control| format!("{:?}", control.accesskit_node().role()))
        .collect();
    assert!(unlabelled.is_empty(), "unlabelled: {unlabelled:?}");

    harness.get_by_label("Step").click();
    wait_until(&mut harness, |app| app.generation().steps.len() == 1);
    harness.event(egui::Event::PointerGone);
    harness.run_ok();
    harness.mask(egui::Rect::from_min_max(
        egui::pos2(0.0, 872.0),
        egui::pos2(1400.0, 900.0),
    ));
    harness.snapshot("tab_generate");
}

/// The Train tab fine-tunes the loaded model off the UI thread, draws the run as `export --view
/// train` draws the folder it wrote, and opens the fine-tuned model beside the original.
#[test]
fn the_train_tab_fine_tunes_draws_its_export_and_compares() {
    const TEXT: &str = "a great film";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("reviews.csv");
    std::fs::write(
        &data,
        "text,label\nGreat film!,POSITIVE\nDull.,NEGATIVE\nLovely.,POSITIVE\nAwful plot.,NEGATIVE\n",
    )
    .unwrap();
    // Named as the model, which the figures' captions name.
    let out = dir.path().join("bert-sentiment");
    let mut settings = Settings::default();
    let train = &mut settings.tabs.train;
    train.data = data.display().to_string();
    train.eval = data.display().to_string();
    train.out = out.display().to_string();
    train.epochs = 2;
    train.batch_size = 2;
    let launch = LaunchOptions {
        model: Some("tests/fixtures/bert-sentiment".to_owned()),
        text: Some(TEXT.to_owned()),
        view: Some(View::Train),
        ..LaunchOptions::default()
    };
    let mut harness = launched_app_with(settings, launch, [1400.0, 900.0], |app| {
        app.result().is_some()
    });
    // The data is read off the UI thread; Train is enabled once its preview is in.
    let train_button = || {
        egui_kittest::kittest::by()
            .predicate(|node| node.label().as_deref() == Some("Train") && node.toggled().is_none())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while harness.get(train_button()).accesskit_node().is_disabled() {
        assert!(Instant::now() < deadline, "the data file was never read");
        harness.step();
    }
    harness.get(train_button()).click();
    wait_until(&mut harness, |app| {
        app.training().is_some_and(|job| !job.running())
    });
    let job = harness.state().training().unwrap();
    assert_eq!(
        job.state,
        worker::training::TrainingState::Finished,
        "{:?}",
        job.state
    );
    assert_eq!(job.progress.steps.len(), 4);
    assert_eq!(job.progress.epochs.len(), 2);
    assert!(job.progress.epochs[1]
        .eval
        .as_ref()
        .unwrap()
        .accuracy
        .is_some());
    harness.run_ok();
    let shown = harness.state_mut().open_tab_svg((900.0, 640.0)).unwrap();
    let exported = dir.path().join("train.svg");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_bertscope"))
        .args([
            "export",
            "--model",
            out.to_str().unwrap(),
            "--text",
            TEXT,
            "--view",
            "train",
        ])
        .args(["--size", "900x640", "--out", exported.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(shown, std::fs::read_to_string(&exported).unwrap());

    harness.get_by_label("Compare with the original").click();
    wait_until(&mut harness, |app| {
        app.comparison().is_some_and(|slot| slot.result.is_some())
    });
    let app = harness.state();
    assert_eq!(app.settings().view.view, View::Compare);
    assert_eq!(app.settings().model, out.display().to_string());
    assert_eq!(
        app.comparison().unwrap().requested(),
        Some("tests/fixtures/bert-sentiment")
    );
}
