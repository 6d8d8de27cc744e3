//! What a tab is: it owns its state, and draws from a narrow [`TabContext`] (the shown run, the
//! settings it may change, what was computed off the UI thread, its images, a place for what it
//! asks the app to do), as rerun's `ViewerContext` hands its views what they may read. A tab's
//! picture is its view's [`Figure`], drawn by [`TabContext::draw`]: the scene export writes.

use std::sync::Arc;

use egui::Sense;

use super::scene::{Rasters, SceneResponse};
use super::{UiAction, ViewState};
use crate::analysis::stats::HeadStats;
use crate::model::finetune::data::Preview;
use crate::model::finetune::TrainingProgress;
use crate::model::Analysis;
use crate::render::matrix::MatrixZoom;
use crate::render::scene::Hit;
use crate::views::Computed;
use crate::views::{Canvas, Figure, Inputs, ModelData};
use crate::worker::generation::GenerationState;
use crate::worker::training::TrainingJob;
use crate::worker::{AnalysisResult, CorpusRun, ExplainRequest, Explanations, ModelInfo};

/// One tab of the main area: the GUI of a view.
pub trait Tab {
    /// The figure of what the tab shows, from its own state and the shared settings (`run` is
    /// what it shows, `other` the second model's run); `None` when it has nothing to draw.
    fn figure(&self, state: &ViewState, run: &Analysis, other: Option<&Analysis>)
        -> Option<Figure>;

    /// Draws the tab: its controls, then its figure (with [`TabContext::draw`]).
    fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>);
}

/// The run a tab draws: the model's newest result, read as words when the tab shows words.
#[derive(Clone)]
pub struct Shown {
    /// The newest result.
    pub result: Arc<AnalysisResult>,
    /// The result read as words, when the tab shows words.
    pub word_level: Option<Arc<Analysis>>,
}

impl Shown {
    /// What the tab draws: the words, or the pieces.
    pub fn analysis(&self) -> &Analysis {
        self.word_level.as_deref().unwrap_or(&self.result.analysis)
    }

    /// Whether the tab shows words.
    pub fn words(&self) -> bool {
        self.word_level.is_some()
    }
}

/// The second model of a comparison, as the Compare tab sees it.
pub struct Comparison<'a> {
    /// Its name.
    pub name: String,
    /// Its newest result.
    pub result: Arc<AnalysisResult>,
    /// Images of its own scenes (its grid of heads).
    pub rasters: &'a mut Rasters,
}

/// What a tab may read and change while it draws.
pub struct TabContext<'a> {
    /// The run the tab shows.
    pub run: &'a Shown,
    /// The model.
    pub info: &'a ModelInfo,
    /// The settings tabs share: the layer, head and kind of attention, the selection, words.
    pub state: &'a mut ViewState,
    /// The figure `computed` is for: the tab's figure when this frame began.
    pub figure: Option<&'a Figure>,
    /// What was computed for `figure`.
    pub computed: &'a Computed,
    /// Images of the tab's scenes.
    pub rasters: &'a mut Rasters,
    /// What the tab asks the app to do.
    pub actions: &'a mut Vec<UiAction>,
    /// The second model, when one is loaded and has run the text.
    pub comparison: Option<Comparison<'a>>,
    /// A corpus run's statistics, when one was run.
    pub corpus: Option<&'a CorpusRun>,
    /// The newest explanation of each kind (attribution, patching, logit attribution).
    pub explained: &'a Explanations,
    /// The Generate tab's generation.
    pub generation: &'a GenerationState,
    /// The Train tab's fine-tuning run, once one was started.
    pub training: Option<&'a TrainingJob>,
    /// The Train tab's data file, read (or why it cannot be), once ready.
    pub training_preview: Option<Result<&'a Preview, &'a str>>,
}

/// The inputs of a tab's figure, from the run and what was computed (a function of the fields,
/// so that a tab can borrow its images mutably beside them).
pub fn inputs_of<'a>(
    run: &'a Shown,
    info: &'a ModelInfo,
    computed: &'a Computed,
    comparison: Option<(&'a str, &'a Analysis)>,
    explained: &'a Explanations,
    generation: &'a GenerationState,
    training: Option<&'a TrainingProgress>,
) -> Inputs<'a> {
    let data = ModelData {
        generation: Some(generation),
        training,
        attribution: explained.attribution(),
        patching: explained.patching(),
        logit_attribution: explained.logit_attribution(),
        lens: run.result.lens.as_deref(),
        embeddings: run.result.embeddings.as_ref(),
        predicting: &info.prediction_heads,
        mask: info.mask_token.as_deref(),
        intact: run.result.intact.as_deref(),
        comparison,
    };
    computed.inputs(&info.name, run.analysis(), &data)
}

impl Comparison<'_> {
    /// Its name and run, as figures take them.
    pub fn named_run(&self) -> (&str, &Analysis) {
        (&self.name, &self.result.analysis)
    }
}

impl TabContext<'_> {
    /// Asks for `request` (the app sends it unless it was the last asked for) and says where it
    /// stands: true once its result is in; otherwise shows its error, or a spinner with
    /// `progress(done, total)` (or `busy` before the first report), and returns false.
    pub fn explanation_ready(
        &mut self,
        ui: &mut egui::Ui,
        request: &ExplainRequest,
        busy: &str,
        progress: &dyn Fn(usize, usize) -> String,
    ) -> bool {
        self.actions.push(UiAction::Explain(request.clone()));
        let state = self
            .explained
            .get(request.kind())
            .filter(|state| &state.request == request);
        match state.and_then(|state| state.result.as_ref()) {
            Some(Ok(_)) => true,
            Some(Err(message)) => {
                ui.colored_label(ui.visuals().error_fg_color, message);
                false
            }
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    match state.and_then(|state| state.progress) {
                        Some((done, total)) => ui.add(
                            egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                                .desired_width(200.0)
                                .text(progress(done, total)),
                        ),
                        None => ui.label(busy),
                    };
                });
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_millis(100));
                false
            }
        }
    }

    /// The analysis the tab shows.
    pub fn analysis(&self) -> &Analysis {
        self.run.analysis()
    }

    /// The inputs of the tab's figure, from the run and what was computed.
    pub fn inputs(&self) -> Inputs<'_> {
        inputs_of(
            self.run,
            self.info,
            self.computed,
            self.comparison.as_ref().map(Comparison::named_run),
            self.explained,
            self.generation,
            self.training.map(|job| &job.progress),
        )
    }

    /// Draws `figure` in the room left in `ui` (at least `min_height` tall), marked with the
    /// selection, the head the heatmap shows and the pointer's hit; the wheel and drags zoom
    /// its zoomable parts into `zoom`. `None` (with the reason shown) when the figure cannot be
    /// drawn.
    pub fn draw(
        &mut self,
        ui: &mut egui::Ui,
        figure: &Figure,
        zoom: Option<&mut MatrixZoom>,
        min_height: f32,
    ) -> Option<SceneResponse> {
        self.draw_with(ui, figure, zoom, min_height, None)
    }

    /// [`TabContext::draw`], with `head_stats` instead of the text's (a corpus's).
    pub fn draw_with(
        &mut self,
        ui: &mut egui::Ui,
        figure: &Figure,
        zoom: Option<&mut MatrixZoom>,
        min_height: f32,
        head_stats: Option<&[Vec<HeadStats>]>,
    ) -> Option<SceneResponse> {
        // A control that changed the figure this frame (a layer, a kind) left `computed` behind:
        // the figure it is for is drawn, and the next frame computes and draws the new one, so
        // that no map is drawn (and its image kept) under another figure's name.
        let figure = match self.figure {
            Some(before) if before.view() == figure.view() && before != figure => {
                ui.ctx().request_repaint();
                before
            }
            _ => figure,
        };
        let mut inputs = inputs_of(
            self.run,
            self.info,
            self.computed,
            self.comparison.as_ref().map(Comparison::named_run),
            self.explained,
            self.generation,
            self.training.map(|job| &job.progress),
        );
        if head_stats.is_some() {
            inputs.head_stats = head_stats;
        }
        let selection = self.state.selection();
        let open = match self.state.head {
            crate::analysis::HeadChoice::Head(head) => Some((self.state.layer, head)),
            crate::analysis::HeadChoice::Mean => None,
        };
        draw(
            ui,
            figure,
            &inputs,
            Marks {
                selection: &selection,
                open,
            },
            self.rasters,
            zoom,
            min_height,
        )
    }
}

/// What a drawn figure is marked with on screen.
pub struct Marks<'s> {
    /// Selected tokens.
    pub selection: &'s [usize],
    /// The head the heatmap shows.
    pub open: Option<(usize, usize)>,
}

/// Draws `figure` in the room left in `ui` (see [`TabContext::draw`]).
pub fn draw(
    ui: &mut egui::Ui,
    figure: &Figure,
    inputs: &Inputs<'_>,
    marks: Marks<'_>,
    rasters: &mut Rasters,
    zoom: Option<&mut MatrixZoom>,
    min_height: f32,
) -> Option<SceneResponse> {
    let (width, height) = (ui.available_width(), ui.available_height().max(min_height));
    let current = zoom.as_deref().copied().unwrap_or_default();
    let zoomable = std::cell::RefCell::new(Vec::new());
    let failure = std::cell::RefCell::new(None);
    let canvas = |hovered: Option<Hit>| Canvas {
        width,
        height,
        selection: marks.selection,
        hovered,
        zoom: current,
        open: marks.open,
    };
    let mut shown =
        super::scene::show_hovered(ui, rasters, Sense::click_and_drag(), |hovered| match figure
            .draw(inputs, &canvas(hovered))
        {
            Ok(drawn) => {
                *zoomable.borrow_mut() = drawn.zoomable;
                drawn.scene
            }
            Err(message) => {
                *failure.borrow_mut() = Some(message);
                crate::render::scene::Scene::new(width, 0.0, "")
            }
        });
    if let Some(message) = failure.into_inner() {
        ui.label(message);
        return None;
    }
    let zoomable = zoomable.into_inner();
    shown.areas = zoomable.iter().map(|part| part.rect).collect();
    if let Some(zoom) = zoom {
        // The part under the pointer (or the first) takes the wheel and the drag: parts share
        // one zoom, so that matrices side by side stay aligned.
        let active = shown
            .pointer
            .and_then(|p| zoomable.iter().find(|part| part.rect.contains(p)))
            .or(zoomable.first());
        if let Some(part) = active {
            super::widgets::matrix::interact_area(ui, &shown, part.rect, part.max_zoom, zoom);
        }
    }
    Some(shown)
}
