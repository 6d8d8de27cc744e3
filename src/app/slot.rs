//! One model in the app with its own inference thread, so that in a comparison a slow model
//! never holds up the other's views.

use std::sync::Arc;

use super::background::Background;
use super::ModelStatus;
use crate::analysis::flow::flow_map;
use crate::analysis::rollout::rollout;
use crate::analysis::words;
use crate::model::{Analysis, AnalysisRequest, DeviceChoice, ModelSource};
use crate::ui::scene::Rasters;
use crate::ui::tab::Shown;
use crate::worker::generation::{GenerateRequest, GenerationState};
use crate::worker::{
    AnalysisResult, CorpusRun, ExplainRequest, ExplainState, Explanations, Worker, WorkerRequest,
    WorkerResponse,
};

/// Attention rollout through each layer, `[query][key]` per layer.
pub type RolloutLayers = Arc<Vec<Arc<Vec<f32>>>>;

/// Which flow: analysis id, whether over words, the last layer, and the tokens flowed into.
type FlowKey = (u64, bool, usize, Vec<usize>);

/// What draining a slot's responses brought.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// A model finished loading: the text should run on it.
    pub loaded: bool,
    /// A new result arrived.
    pub new_result: bool,
    /// A generation step or distribution arrived.
    pub generated: bool,
}

/// A model, its worker, and its newest result.
pub struct ModelSlot {
    worker: Option<Worker>,
    /// Where the model stands.
    pub status: ModelStatus,
    latest_analysis_id: Option<u64>,
    answered_analysis_id: Option<u64>,
    /// The newest result (stale ones are dropped).
    pub result: Option<Arc<AnalysisResult>>,
    /// The newest analysis error, cleared by the next result.
    pub error: Option<String>,
    /// Images of the scenes drawn from `result`.
    pub rasters: Rasters,
    /// Images of the scenes drawn from the word-level analysis.
    pub word_rasters: Rasters,
    /// Attention rollout of `result` (by analysis id, and whether of words), computed off the
    /// UI thread.
    rollout: Background<(u64, bool), RolloutLayers>,
    /// Attention flow into some tokens after some layer (by analysis id, words, layer and the
    /// tokens), `[query][key]` with NaN in the rows of other tokens, computed off the UI thread.
    flow: Background<FlowKey, Arc<Vec<f32>>>,
    /// `result` read as words (by analysis id), computed off the UI thread while words are on.
    word_level: Background<u64, Arc<Analysis>>,
    /// Head statistics over a corpus file (of this model), if one was run.
    pub corpus: Option<CorpusRun>,
    /// The newest explanation of each kind asked for, and what came of it.
    pub explained: Explanations,
    /// The generation of the Generate tab.
    pub generation: GenerationState,
    /// Wakes the UI when a background value (projection, rollout, statistics) is ready.
    waker: egui::Context,
    /// The model as the user gave it (a folder's whole path, or a Hub id), last asked for.
    requested: Option<String>,
}

impl ModelSlot {
    /// Starts a worker that wakes the UI through `ctx`.
    pub fn new(ctx: &egui::Context) -> Self {
        let waker = ctx.clone();
        let (worker, status) = match Worker::spawn(move || waker.request_repaint()) {
            Ok(worker) => (Some(worker), ModelStatus::Idle),
            Err(err) => (
                None,
                ModelStatus::Failed {
                    name: String::new(),
                    message: format!("cannot start the inference thread ({err})"),
                },
            ),
        };
        Self {
            worker,
            status,
            latest_analysis_id: None,
            answered_analysis_id: None,
            result: None,
            error: None,
            rasters: Rasters::default(),
            word_rasters: Rasters::default(),
            rollout: Background::default(),
            word_level: Background::default(),
            flow: Background::default(),
            corpus: None,
            explained: Explanations::default(),
            generation: GenerationState::default(),
            waker: ctx.clone(),
            requested: None,
        }
    }

    /// Starts or collects the current result read as words (logic, every frame while words
    /// are on in a view that reads them).
    pub fn update_word_level(&mut self) {
        if let (Some(result), Some(id)) = (self.result.clone(), self.result_id()) {
            self.word_level.request(id, &self.waker, move || {
                let words = words::words(&result.analysis);
                words::word_analysis(&result.analysis, &words)
                    .map(Arc::new)
                    .ok_or_else(|| "the captured maps could not be copied".to_owned())
            });
        }
    }

    /// The current result read as words, once computed (or why it could not be); `None` while
    /// it is being computed or was not asked for.
    pub fn word_level(&self) -> Option<Result<Arc<Analysis>, String>> {
        let id = self.result_id()?;
        self.word_level
            .get(&id)
            .map(|value| value.map(Arc::clone).map_err(str::to_owned))
    }

    /// The images of what the views show: the result's, or its words'.
    pub fn rasters_of(&mut self, words: bool) -> &mut Rasters {
        let id = self.result_id().unwrap_or_default();
        let rasters = if words {
            &mut self.word_rasters
        } else {
            &mut self.rasters
        };
        rasters.reset(id);
        rasters
    }

    /// Starts or collects the attention rollout of the current result, over pieces or words
    /// (logic, every frame while a view shows rollout).
    pub fn update_rollout(&mut self, words: bool) {
        if let (Some(result), Some(id)) = (self.result.clone(), self.result_id()) {
            self.rollout.request((id, words), &self.waker, move || {
                let analysis = &result.analysis;
                let layers = if words {
                    words::word_rollout(analysis, &words::words(analysis))
                } else {
                    rollout(analysis)
                };
                // A map per layer, each shared with the views as it is (never copied per frame).
                Ok(Arc::new(layers.into_iter().map(Arc::new).collect()))
            });
        }
    }

    /// The attention rollout of the current result, once computed.
    pub fn rollout(&self, words: bool) -> Option<RolloutLayers> {
        let id = self.result_id()?;
        self.rollout
            .get(&(id, words))
            .and_then(|value| value.ok())
            .map(Arc::clone)
    }

    /// Starts or collects the attention flow into `targets` through layers `0..=layer`, over
    /// pieces or words (logic, every frame while a view shows flow).
    pub fn update_flow(&mut self, words: bool, layer: usize, targets: Vec<usize>) {
        let Some(id) = self.result_id() else {
            return;
        };
        let key = (id, words, layer, targets.clone());
        let Some(shown) = self.shown(words) else {
            return;
        };
        self.flow.request(key, &self.waker, move || {
            Ok(Arc::new(flow_map(shown.analysis(), layer, &targets)))
        });
    }

    /// The attention flow of [`ModelSlot::update_flow`], once computed.
    pub fn flow(&self, words: bool, layer: usize, targets: Vec<usize>) -> Option<Arc<Vec<f32>>> {
        let id = self.result_id()?;
        self.flow
            .get(&(id, words, layer, targets))
            .and_then(|value| value.ok())
            .map(Arc::clone)
    }

    /// The current result as views read it, pieces or words once merged: two `Arc`s, cheap to
    /// hand to a background thread every frame (the analysis itself is never copied).
    pub(super) fn shown(&self, words: bool) -> Option<Shown> {
        let result = self.result.clone()?;
        let word_level = if words {
            Some(self.word_level()?.ok()?)
        } else {
            None
        };
        Some(Shown { result, word_level })
    }

    fn send(&mut self, request: WorkerRequest, name: &str) {
        let delivered = self
            .worker
            .as_ref()
            .is_some_and(|worker| worker.send(request));
        if !delivered {
            self.status = ModelStatus::Failed {
                name: name.to_owned(),
                message: "the inference thread stopped; restart bertscope".to_owned(),
            };
        }
    }

    /// Loads `name` (a folder or Hub id) under request `id`.
    pub fn load(&mut self, id: u64, name: String, device: DeviceChoice) {
        self.requested = Some(name.clone());
        let source = match ModelSource::parse(&name) {
            Ok(source) => source,
            Err(err) => {
                self.status = ModelStatus::Failed {
                    name,
                    message: err.to_string(),
                };
                return;
            }
        };
        self.status = ModelStatus::Loading {
            id,
            name: name.clone(),
            progress: None,
        };
        // The worker drops a corpus run when it loads another model.
        self.corpus = None;
        self.send(WorkerRequest::Load { id, source, device }, &name);
    }

    /// Runs the model on a request, if it is ready.
    pub fn analyze(&mut self, id: u64, request: AnalysisRequest) {
        if self.is_ready() {
            self.latest_analysis_id = Some(id);
            self.send(WorkerRequest::Analyze { id, request }, "");
        }
    }

    /// Starts head statistics over the corpus file at `path` (over words or pieces) under
    /// request `id`, replacing any run before it.
    pub fn run_corpus(&mut self, id: u64, path: std::path::PathBuf, words: bool) {
        if !self.is_ready() {
            self.corpus = Some(CorpusRun::Failed {
                message: "no model is loaded yet".to_owned(),
            });
            return;
        }
        self.cancel_corpus();
        self.corpus = Some(CorpusRun::Running {
            id,
            path: path.clone(),
            words,
            progress: None,
        });
        self.send(WorkerRequest::RunCorpus { id, path, words }, "");
    }

    /// Stops the running corpus run; its statistics so far are dropped.
    pub fn cancel_corpus(&mut self) {
        if let Some(CorpusRun::Running { id, progress, .. }) = &self.corpus {
            let id = *id;
            let (done, total) = progress
                .as_ref()
                .map_or((0, 0), |progress| (progress.report.lines, progress.total));
            self.corpus = Some(CorpusRun::Cancelled { done, total });
            self.send(WorkerRequest::CancelCorpus { id }, "");
        }
    }

    /// Asks for an explanation under request `id`, unless the same one was asked for last;
    /// returns whether it was sent.
    pub fn explain(&mut self, id: u64, request: ExplainRequest) -> bool {
        if !self.is_ready()
            || self
                .explained
                .get(request.kind())
                .is_some_and(|s| s.request == request)
        {
            return false;
        }
        self.explained.insert(ExplainState {
            id,
            request: request.clone(),
            progress: None,
            result: None,
        });
        self.send(WorkerRequest::Explain { id, request }, "");
        true
    }

    /// Asks for a generation step (or the next distribution) under request `id`, dropping the
    /// answer to any request before it.
    pub fn generate(&mut self, id: u64, request: GenerateRequest) {
        if !self.is_ready() {
            return;
        }
        self.generation.pending = Some(id);
        self.send(WorkerRequest::Generate { id, request }, "");
    }

    /// Whether the model is loaded.
    pub fn is_ready(&self) -> bool {
        matches!(self.status, ModelStatus::Ready(_))
    }

    /// The id of the analysis whose result is shown.
    pub fn result_id(&self) -> Option<u64> {
        self.result.as_ref().and(self.answered_analysis_id)
    }

    /// Whether the model is loading or an analysis is on its way.
    pub fn is_busy(&self) -> bool {
        matches!(self.status, ModelStatus::Loading { .. })
            || self.latest_analysis_id != self.answered_analysis_id
    }

    /// The model as the user asked for it: a folder's whole path or a Hub id, what loads it
    /// again (where [`ModelSlot::name`] of a folder is its last component).
    pub fn requested(&self) -> Option<&str> {
        self.requested.as_deref()
    }

    /// The name the user gave for the model being loaded or shown.
    pub fn name(&self) -> Option<&str> {
        match &self.status {
            ModelStatus::Idle => None,
            ModelStatus::Loading { name, .. } | ModelStatus::Failed { name, .. } => Some(name),
            ModelStatus::Ready(info) => Some(&info.name),
        }
    }

    /// Handles every waiting response, stopping at `deadline`.
    pub fn drain(&mut self, deadline: std::time::Instant) -> Drained {
        let mut drained = Drained::default();
        while std::time::Instant::now() < deadline {
            let Some(response) = self.worker.as_ref().and_then(Worker::try_recv) else {
                break;
            };
            self.handle(response, &mut drained);
        }
        drained
    }

    fn handle(&mut self, response: WorkerResponse, drained: &mut Drained) {
        let loading_id = match &self.status {
            ModelStatus::Loading { id, .. } => Some(*id),
            _ => None,
        };
        match response {
            WorkerResponse::Downloading { id, progress } => {
                if let ModelStatus::Loading {
                    progress: shown, ..
                } = &mut self.status
                {
                    if loading_id == Some(id) {
                        *shown = Some(progress);
                    }
                }
            }
            WorkerResponse::Loaded { id, info } if loading_id == Some(id) => {
                self.status = ModelStatus::Ready(info);
                // The old result belongs to the old model.
                self.result = None;
                self.explained = Explanations::default();
                self.generation = GenerationState::default();
                drained.loaded = true;
            }
            WorkerResponse::LoadFailed { id, message } if loading_id == Some(id) => {
                let name = self.name().unwrap_or_default().to_owned();
                self.status = ModelStatus::Failed { name, message };
                self.result = None;
            }
            WorkerResponse::Analyzed { id, result } if Some(id) == self.latest_analysis_id => {
                self.answered_analysis_id = Some(id);
                self.error = None;
                self.rasters.reset(id);
                self.word_rasters.reset(id);
                self.result = Some(result);
                drained.new_result = true;
            }
            WorkerResponse::AnalysisFailed { id, message }
                if Some(id) == self.latest_analysis_id =>
            {
                self.answered_analysis_id = Some(id);
                self.error = Some(message);
            }
            WorkerResponse::Corpus { id, progress } => {
                if let Some(CorpusRun::Running {
                    id: running,
                    path,
                    words,
                    progress: shown,
                }) = &mut self.corpus
                {
                    if *running == id {
                        if progress.finished() {
                            let (path, words) = (std::mem::take(path), *words);
                            self.corpus = Some(CorpusRun::Finished {
                                path,
                                words,
                                progress,
                            });
                        } else {
                            *shown = Some(progress);
                        }
                    }
                }
            }
            WorkerResponse::CorpusFailed { id, message } => {
                if matches!(self.corpus, Some(CorpusRun::Running { id: running, .. }) if running == id)
                {
                    self.corpus = Some(CorpusRun::Failed { message });
                }
            }
            WorkerResponse::ExplainProgress { id, done, total } => {
                if let Some(state) = self.explained.by_id(id) {
                    state.progress = Some((done, total));
                }
            }
            WorkerResponse::Explained { id, result } => {
                if let Some(state) = self.explained.by_id(id) {
                    state.result = Some(Ok(result));
                }
            }
            WorkerResponse::ExplainCancelled { id } => self.explained.forget(id),
            WorkerResponse::ExplainFailed { id, message } => {
                if let Some(state) = self.explained.by_id(id) {
                    state.result = Some(Err(message));
                }
            }
            WorkerResponse::Generated { id, update } => {
                drained.generated |= self.generation.apply(id, &update);
            }
            WorkerResponse::GenerationFailed { id, message } => self.generation.fail(id, message),
            // Answers to requests that were superseded.
            _ => {}
        }
    }
}
