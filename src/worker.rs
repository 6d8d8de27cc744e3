//! The inference thread: loads models and runs them off the UI thread.
//!
//! The UI sends [`WorkerRequest`]s and drains [`WorkerResponse`]s; after every response the
//! worker calls the waker (the app passes `request_repaint`). Requests carry ids, and when several
//! are waiting the worker runs only the newest model load and the newest analysis: typing faster
//! than the model runs never builds a queue. A corpus run (head statistics over a file) goes a
//! line at a time whenever nothing else waits.

pub mod generation;
pub mod training;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use crate::analysis::stats::{corpus_requests, CorpusReport, CorpusStats};
use crate::model::attribution::{Attribution, AttributionOptions, Progress};
use crate::model::logit_attribution::LogitAttribution;
use crate::model::patching::Patching;
use crate::model::target::TargetSpec;
use crate::model::{
    Analysis, AnalysisRequest, DeviceChoice, DownloadProgress, EmbeddingBreakdown, Family,
    HeadKind, LensPosition, LoadedModel, ModelError, ModelSource, Result,
};

/// What the UI asks of the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerRequest {
    /// Load a model, replacing the current one.
    Load {
        /// Request id; responses carry it back.
        id: u64,
        /// Folder or Hub id.
        source: ModelSource,
        /// Where to run it.
        device: DeviceChoice,
    },
    /// Run the current model on a text.
    Analyze {
        /// Request id; responses carry it back.
        id: u64,
        /// The input.
        request: AnalysisRequest,
    },
    /// Compute head statistics over a corpus file (one text per line, a tab splits a pair)
    /// with the current model. Runs a line at a time between other requests, so that the
    /// text's own analyses never wait for it; loading a model ends it.
    RunCorpus {
        /// Request id; responses carry it back.
        id: u64,
        /// The corpus file.
        path: PathBuf,
        /// Over words (merged pieces) rather than pieces.
        words: bool,
    },
    /// Stop the corpus run with this id.
    CancelCorpus {
        /// The run's request id.
        id: u64,
    },
    /// Explain a prediction of the current model (attribution, patching, logit attribution).
    /// A request that arrives while one runs cancels it.
    Explain {
        /// Request id; responses carry it back.
        id: u64,
        /// What to explain.
        request: ExplainRequest,
    },
    /// Take a generation step with the current model (or only give the next distribution).
    Generate {
        /// Request id; responses carry it back.
        id: u64,
        /// What to generate from, and how.
        request: generation::GenerateRequest,
    },
}

/// What the Attribution, Patching and Logit attribution tabs ask the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExplainRequest {
    /// Attribute a logit to the input tokens.
    Attribution {
        /// The text (sentence A, optional B).
        text: (String, Option<String>),
        /// The target and which methods.
        options: AttributionOptions,
    },
    /// Patch a corrupted run with pieces of the clean one.
    Patching {
        /// The clean text.
        clean: (String, Option<String>),
        /// The corrupted text.
        corrupt: (String, Option<String>),
        /// The logit read.
        target: TargetSpec,
    },
    /// Take a next-token logit apart by layer and head.
    LogitAttribution {
        /// The text.
        text: (String, Option<String>),
        /// The logit.
        target: TargetSpec,
    },
}

/// Which kind of explanation a request or result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExplainKind {
    /// [`ExplainRequest::Attribution`].
    Attribution,
    /// [`ExplainRequest::Patching`].
    Patching,
    /// [`ExplainRequest::LogitAttribution`].
    LogitAttribution,
}

impl ExplainRequest {
    /// Its kind.
    pub fn kind(&self) -> ExplainKind {
        match self {
            Self::Attribution { .. } => ExplainKind::Attribution,
            Self::Patching { .. } => ExplainKind::Patching,
            Self::LogitAttribution { .. } => ExplainKind::LogitAttribution,
        }
    }

    /// Runs it on `model`, reporting batches to `progress`, which may cancel.
    pub fn run(&self, model: &LoadedModel, progress: Progress<'_>) -> Result<Explanation> {
        let encode = |(a, b): &(String, Option<String>)| model.tokenizer().encode(a, b.as_deref());
        Ok(match self {
            Self::Attribution { text, options } => {
                Explanation::Attribution(model.attribution(&encode(text)?, options, progress)?)
            }
            Self::Patching {
                clean,
                corrupt,
                target,
            } => Explanation::Patching(model.patching(
                &encode(clean)?,
                &encode(corrupt)?,
                target,
                progress,
            )?),
            Self::LogitAttribution { text, target } => {
                Explanation::LogitAttribution(model.logit_attribution(&encode(text)?, target)?)
            }
        })
    }
}

/// What explaining a prediction gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Explanation {
    /// Attribution to the input tokens.
    Attribution(Attribution),
    /// Activation patching.
    Patching(Patching),
    /// Direct logit attribution.
    LogitAttribution(LogitAttribution),
}

/// Facts about the loaded model that the UI shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Hub id or folder name.
    pub name: String,
    /// The model family.
    pub family: Family,
    /// Transformer layers.
    pub layers: usize,
    /// Heads per layer.
    pub heads: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Longest input in tokens.
    pub max_tokens: usize,
    /// The device it runs on.
    pub device: DeviceChoice,
    /// The prediction heads the checkpoint has.
    pub prediction_heads: Vec<HeadKind>,
    /// Label names of its classification head, by id.
    pub labels: Vec<String>,
    /// The mask token (`[MASK]`, `<mask>`), for models with a masked-LM head.
    pub mask_token: Option<String>,
    /// Whether the model reads a sentence pair.
    pub takes_pairs: bool,
    /// Time to find and load the model.
    pub load_ms: f64,
    /// What the checkpoint gets wrong that loading let through (see [`LoadedModel::notes`]).
    pub notes: Vec<String>,
    /// The logits processors `generation_config.json` asks for that generation does not apply.
    pub generation_not_applied: Vec<String>,
}

impl ModelInfo {
    /// Whether the checkpoint has a head of this kind.
    pub fn has(&self, kind: HeadKind) -> bool {
        self.prediction_heads.contains(&kind)
    }

    /// The mask token, when the model has a masked-LM head to fill it in.
    pub fn mlm_mask(&self) -> Option<&str> {
        self.mask_token
            .as_deref()
            .filter(|_| self.has(HeadKind::MaskedLm))
    }

    /// The family, shape and heads in a line: `distilbert · 6×12 · classification:
    /// NEGATIVE/POSITIVE`.
    pub fn summary(&self) -> String {
        let mut parts = vec![
            self.family.model_type().to_owned(),
            format!("{}×{}", self.layers, self.heads),
        ];
        if self.prediction_heads.is_empty() {
            parts.push("encoder only".to_owned());
        }
        for kind in &self.prediction_heads {
            let names: Vec<&str> = match kind {
                HeadKind::SequenceClassification => {
                    self.labels.iter().map(String::as_str).collect()
                }
                HeadKind::TokenClassification => {
                    crate::model::prediction_heads::entity_types(&self.labels)
                }
                _ => Vec::new(),
            };
            const SHOWN: usize = 6;
            let mut part = kind.name().to_owned();
            if !names.is_empty() {
                part = format!("{part}: {}", names[..names.len().min(SHOWN)].join("/"));
                if names.len() > SHOWN {
                    part.push_str("/…");
                }
            }
            parts.push(part);
        }
        parts.join(" · ")
    }
}

/// One finished analysis with what the views derive from it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisResult {
    /// The input that was run.
    pub request: AnalysisRequest,
    /// Everything the forward pass captured.
    pub analysis: Analysis,
    /// Time of the forward pass (with capture), in milliseconds.
    pub inference_ms: f64,
    /// The logit lens at each mask (or a causal LM's last token); `None` without an LM head.
    pub lens: Option<Vec<LensPosition>>,
    /// With heads ablated, the same input run intact, so that views can show before → after.
    pub intact: Option<Box<Analysis>>,
    /// The input embeddings taken apart.
    pub embeddings: Option<EmbeddingBreakdown>,
}

/// What the worker reports back.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerResponse {
    /// A download step while loading.
    Downloading {
        /// The load request.
        id: u64,
        /// Progress of the current file.
        progress: DownloadProgress,
    },
    /// The model is ready.
    Loaded {
        /// The load request.
        id: u64,
        /// What was loaded.
        info: ModelInfo,
    },
    /// The model could not be loaded; the previous one (if any) is gone too.
    LoadFailed {
        /// The load request.
        id: u64,
        /// One line for the user.
        message: String,
    },
    /// An analysis finished.
    Analyzed {
        /// The analysis request.
        id: u64,
        /// The result, shared with the views.
        result: Arc<AnalysisResult>,
    },
    /// An analysis failed.
    AnalysisFailed {
        /// The analysis request.
        id: u64,
        /// One line for the user.
        message: String,
    },
    /// A corpus run's statistics so far (a few times a second), or in all.
    Corpus {
        /// The corpus request.
        id: u64,
        /// Where the run stands.
        progress: CorpusProgress,
    },
    /// A corpus run stopped on an error.
    CorpusFailed {
        /// The corpus request.
        id: u64,
        /// One line for the user.
        message: String,
    },
    /// How far an explanation has come (batches done of all).
    ExplainProgress {
        /// The explain request.
        id: u64,
        /// Batches done.
        done: usize,
        /// Batches in all.
        total: usize,
    },
    /// An explanation finished.
    Explained {
        /// The explain request.
        id: u64,
        /// The result.
        result: Arc<Explanation>,
    },
    /// An explanation was cancelled by a newer request; asking for it again runs it again.
    ExplainCancelled {
        /// The explain request.
        id: u64,
    },
    /// An explanation failed.
    ExplainFailed {
        /// The explain request.
        id: u64,
        /// One line for the user.
        message: String,
    },
    /// A generation step (or the next distribution) is ready.
    Generated {
        /// The generate request.
        id: u64,
        /// What it gave.
        update: Arc<generation::GenerationUpdate>,
    },
    /// A generation request failed.
    GenerationFailed {
        /// The generate request.
        id: u64,
        /// One line for the user.
        message: String,
    },
}

/// Where a corpus run stands.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusProgress {
    /// Lines of text in the corpus.
    pub total: usize,
    /// The statistics of the lines done (`report.lines` of `total`).
    pub report: Arc<CorpusReport>,
    /// Seconds since the run started.
    pub seconds: f64,
}

impl CorpusProgress {
    /// Whether every line is done.
    pub fn finished(&self) -> bool {
        self.report.lines == self.total
    }
}

/// A corpus run of head statistics (the Heads tab), as the app holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum CorpusRun {
    /// Running; `progress` is `None` until the first report.
    Running {
        /// The run's request id.
        id: u64,
        /// The corpus file.
        path: PathBuf,
        /// Whether over words rather than pieces.
        words: bool,
        /// The statistics so far.
        progress: Option<CorpusProgress>,
    },
    /// Every line done.
    Finished {
        /// The corpus file.
        path: PathBuf,
        /// Whether over words rather than pieces.
        words: bool,
        /// The statistics of every line.
        progress: CorpusProgress,
    },
    /// Stopped on an error.
    Failed {
        /// One line for the user.
        message: String,
    },
    /// Cancelled by the user.
    Cancelled {
        /// Lines done when it stopped.
        done: usize,
        /// Lines in the corpus (0 when unknown).
        total: usize,
    },
}

impl CorpusRun {
    /// The statistics so far or in all, if any arrived.
    pub fn progress(&self) -> Option<&CorpusProgress> {
        match self {
            Self::Running { progress, .. } => progress.as_ref(),
            Self::Finished { progress, .. } => Some(progress),
            Self::Failed { .. } | Self::Cancelled { .. } => None,
        }
    }
}

/// How often a corpus run reports its statistics so far.
const CORPUS_REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// A corpus run in the worker: the lines, the running sums, and where it is.
struct CorpusJob {
    id: u64,
    path: PathBuf,
    words: bool,
    lines: Vec<(usize, AnalysisRequest)>,
    stats: CorpusStats,
    started: Instant,
    reported: Instant,
}

impl CorpusJob {
    /// Reads the corpus file; the error is a line for the user.
    fn start(id: u64, path: PathBuf, words: bool) -> Result<Self, String> {
        let text = std::fs::read_to_string(&path)
            .map_err(|err| format!("{}: cannot read the corpus ({err})", path.display()))?;
        let lines = corpus_requests(&text);
        if lines.is_empty() {
            return Err(format!("{}: no text in the corpus", path.display()));
        }
        let now = Instant::now();
        Ok(Self {
            id,
            path,
            words,
            lines,
            stats: CorpusStats::default(),
            started: now,
            reported: now,
        })
    }

    /// Runs the next line; returns what to report, if anything, and whether the run is over.
    fn step(&mut self, model: &LoadedModel) -> (Option<WorkerResponse>, bool) {
        let (number, request) = &self.lines[self.stats.lines];
        let added = model
            .analyze(request)
            .map_err(|err| err.to_string())
            .and_then(|analysis| {
                self.stats
                    .add_text(&analysis, self.words)
                    .then_some(())
                    .ok_or_else(|| "the captured maps could not be copied".to_owned())
            });
        if let Err(err) = added {
            let message = format!("{} line {number}: {err}", self.path.display());
            return (
                Some(WorkerResponse::CorpusFailed {
                    id: self.id,
                    message,
                }),
                true,
            );
        }
        let finished = self.stats.lines == self.lines.len();
        if !finished && self.reported.elapsed() < CORPUS_REPORT_EVERY {
            return (None, false);
        }
        self.reported = Instant::now();
        let progress = CorpusProgress {
            total: self.lines.len(),
            report: Arc::new(self.stats.report()),
            seconds: self.started.elapsed().as_secs_f64(),
        };
        (
            Some(WorkerResponse::Corpus {
                id: self.id,
                progress,
            }),
            finished,
        )
    }
}

/// Handle to the inference thread. Dropping it returns at once: the thread finishes the job in
/// hand (a download or a long analysis cannot be interrupted), finds its channel closed and
/// ends, and nobody waits for it.
pub struct Worker {
    requests: Sender<WorkerRequest>,
    responses: Receiver<WorkerResponse>,
}

impl Worker {
    /// Starts the thread; `wake` is called after every response.
    pub fn spawn(wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let (request_tx, request_rx) = mpsc::channel();
        let (response_tx, response_rx) = mpsc::channel();
        // Detached: the handle is never joined, so that dropping the worker cannot block the
        // UI thread.
        std::thread::Builder::new()
            .name("bertscope-worker".to_owned())
            .spawn(move || run(&request_rx, &response_tx, &wake))?;
        Ok(Self {
            requests: request_tx,
            responses: response_rx,
        })
    }

    /// Queues a request. Returns false when the worker has stopped.
    pub fn send(&self, request: WorkerRequest) -> bool {
        self.requests.send(request).is_ok()
    }

    /// The next response, if one is waiting.
    pub fn try_recv(&self) -> Option<WorkerResponse> {
        self.responses.try_recv().ok()
    }
}

/// Keeps only the requests worth running: the newest load, the newest analysis, the newest
/// explanation of each kind and the newest generation request sent after it, and every corpus
/// request (each is cheap to take in,
/// and their order matters).
pub fn coalesce(pending: Vec<WorkerRequest>) -> Vec<WorkerRequest> {
    let last_load = pending
        .iter()
        .rposition(|request| matches!(request, WorkerRequest::Load { .. }));
    let after_load = |index: &usize| last_load.is_none_or(|load| *index > load);
    let last_analyze = pending
        .iter()
        .rposition(|request| matches!(request, WorkerRequest::Analyze { .. }))
        .filter(after_load);
    let newest_explain = |kind: ExplainKind| {
        pending
            .iter()
            .rposition(|request| {
                matches!(request, WorkerRequest::Explain { request, .. } if request.kind() == kind)
            })
            .filter(after_load)
    };
    let explains = [
        newest_explain(ExplainKind::Attribution),
        newest_explain(ExplainKind::Patching),
        newest_explain(ExplainKind::LogitAttribution),
    ];
    let last_generate = pending
        .iter()
        .rposition(|request| matches!(request, WorkerRequest::Generate { .. }))
        .filter(after_load);
    pending
        .into_iter()
        .enumerate()
        .filter(|(index, request)| {
            Some(*index) == last_load
                || Some(*index) == last_analyze
                || explains.contains(&Some(*index))
                || Some(*index) == last_generate
                || matches!(
                    request,
                    WorkerRequest::RunCorpus { .. } | WorkerRequest::CancelCorpus { .. }
                )
        })
        .map(|(_, request)| request)
        .collect()
}

/// `first` and every request waiting behind it; `None` when the app has gone.
fn with_waiting(
    first: WorkerRequest,
    requests: &Receiver<WorkerRequest>,
) -> Option<Vec<WorkerRequest>> {
    let mut pending = vec![first];
    loop {
        match requests.try_recv() {
            Ok(request) => pending.push(request),
            Err(TryRecvError::Empty) => return Some(pending),
            Err(TryRecvError::Disconnected) => return None,
        }
    }
}

/// Loads the model of request `id`, reporting download progress: the model (`None` when it
/// failed, which is reported), and whether the answer was delivered.
fn load(
    id: u64,
    source: &ModelSource,
    device: DeviceChoice,
    send: &dyn Fn(WorkerResponse) -> bool,
) -> (Option<LoadedModel>, bool) {
    let started = Instant::now();
    let mut report = |progress: DownloadProgress| {
        send(WorkerResponse::Downloading { id, progress });
    };
    match LoadedModel::load(source, device, &mut report) {
        Ok(loaded) => {
            let info = ModelInfo::new(&loaded, started.elapsed().as_secs_f64() * 1e3);
            (Some(loaded), send(WorkerResponse::Loaded { id, info }))
        }
        Err(err) => {
            let message = err.to_string();
            (None, send(WorkerResponse::LoadFailed { id, message }))
        }
    }
}

/// The worker thread: answers requests in order (a newer analysis replaces a waiting one) and
/// steps a corpus run a line at a time while none wait.
/// Long because it is the worker's one loop: waiting, corpus steps and each request kind, a few
/// lines each.
fn run(requests: &Receiver<WorkerRequest>, responses: &Sender<WorkerResponse>, wake: &dyn Fn()) {
    let send = |response: WorkerResponse| {
        let delivered = responses.send(response).is_ok();
        wake();
        delivered
    };
    let mut model: Option<LoadedModel> = None;
    let mut corpus: Option<CorpusJob> = None;
    let mut session: Option<generation::GenerationSession> = None;
    // Requests that arrived during an explanation (and cancelled it), taken before new ones.
    let mut stashed: Vec<WorkerRequest> = Vec::new();
    loop {
        // Waiting requests come first; a corpus run goes on a line at a time when there are none.
        let first = if !stashed.is_empty() {
            Some(stashed.remove(0))
        } else if corpus.is_some() {
            match requests.try_recv() {
                Ok(request) => Some(request),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match requests.recv() {
                Ok(request) => Some(request),
                Err(_) => return,
            }
        };
        let Some(first) = first else {
            if let (Some(job), Some(loaded)) = (corpus.as_mut(), model.as_ref()) {
                let (response, over) = job.step(loaded);
                if over {
                    corpus = None;
                }
                if response.is_some_and(|response| !send(response)) {
                    return;
                }
            } else {
                corpus = None;
            }
            continue;
        };
        let Some(mut pending) = with_waiting(first, requests) else {
            return;
        };
        if !stashed.is_empty() {
            // `first` was the oldest stashed request; the rest came before the waiting ones.
            let waiting = pending.split_off(1);
            pending.append(&mut stashed);
            pending.extend(waiting);
        }
        for request in coalesce(pending) {
            let delivered = match request {
                WorkerRequest::Load { id, source, device } => {
                    // The old model's memory is freed before the new one loads.
                    drop(model.take());
                    // Statistics and generations of the old model mean nothing for the new one.
                    corpus = None;
                    session = None;
                    let (loaded, delivered) = load(id, &source, device, &send);
                    model = loaded;
                    delivered
                }
                WorkerRequest::Analyze { id, request } => match &model {
                    None => send(WorkerResponse::AnalysisFailed {
                        id,
                        message: "no model is loaded".to_owned(),
                    }),
                    Some(model) => send(analyze(model, id, request)),
                },
                WorkerRequest::RunCorpus { id, path, words } => {
                    corpus = None;
                    let started = match &model {
                        None => Err("no model is loaded".to_owned()),
                        Some(_) => CorpusJob::start(id, path, words),
                    };
                    match started {
                        Ok(job) => {
                            corpus = Some(job);
                            true
                        }
                        Err(message) => send(WorkerResponse::CorpusFailed { id, message }),
                    }
                }
                WorkerRequest::CancelCorpus { id } => {
                    if corpus.as_ref().is_some_and(|job| job.id == id) {
                        corpus = None;
                    }
                    true
                }
                WorkerRequest::Explain { id, request } => match &model {
                    None => send(WorkerResponse::ExplainFailed {
                        id,
                        message: "no model is loaded".to_owned(),
                    }),
                    Some(model) => explain(model, id, &request, requests, &mut stashed, &send),
                },
                WorkerRequest::Generate { id, request } => match &model {
                    None => send(WorkerResponse::GenerationFailed {
                        id,
                        message: "no model is loaded".to_owned(),
                    }),
                    Some(model) => {
                        match generation::GenerationSession::answer(&mut session, model, &request) {
                            Ok(update) => send(WorkerResponse::Generated {
                                id,
                                update: Arc::new(update),
                            }),
                            Err(err) => send(WorkerResponse::GenerationFailed {
                                id,
                                message: err.to_string(),
                            }),
                        }
                    }
                },
            };
            if !delivered {
                return;
            }
        }
    }
}

/// An explanation the app asked for, and what came of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainState {
    /// Its request id.
    pub id: u64,
    /// What was asked.
    pub request: ExplainRequest,
    /// Batches done of all, while it runs.
    pub progress: Option<(usize, usize)>,
    /// The result, or why there is none; `None` while it runs.
    pub result: Option<Result<Arc<Explanation>, String>>,
}

/// The newest explanation of each kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Explanations {
    states: std::collections::HashMap<ExplainKind, ExplainState>,
}

impl Explanations {
    /// The newest explanation of `kind` asked for.
    pub fn get(&self, kind: ExplainKind) -> Option<&ExplainState> {
        self.states.get(&kind)
    }

    /// The state of request `id`, if it is still the newest of its kind.
    pub fn by_id(&mut self, id: u64) -> Option<&mut ExplainState> {
        self.states.values_mut().find(|state| state.id == id)
    }

    /// Forgets request `id` (cancelled), so that asking for it again runs it.
    pub fn forget(&mut self, id: u64) {
        self.states.retain(|_, state| state.id != id);
    }

    /// Keeps `state` as the newest of its kind.
    pub fn insert(&mut self, state: ExplainState) {
        self.states.insert(state.request.kind(), state);
    }

    /// The newest finished result of `kind`.
    pub fn finished(&self, kind: ExplainKind) -> Option<&Explanation> {
        self.get(kind)
            .and_then(|state| state.result.as_ref()?.as_ref().ok())
            .map(|result| &**result)
    }

    /// The newest finished attribution.
    pub fn attribution(&self) -> Option<&Attribution> {
        match self.finished(ExplainKind::Attribution) {
            Some(Explanation::Attribution(attribution)) => Some(attribution),
            _ => None,
        }
    }

    /// The newest finished activation patching.
    pub fn patching(&self) -> Option<&Patching> {
        match self.finished(ExplainKind::Patching) {
            Some(Explanation::Patching(patching)) => Some(patching),
            _ => None,
        }
    }

    /// The newest finished logit attribution.
    pub fn logit_attribution(&self) -> Option<&LogitAttribution> {
        match self.finished(ExplainKind::LogitAttribution) {
            Some(Explanation::LogitAttribution(parts)) => Some(parts),
            _ => None,
        }
    }

    /// The result of `request`, when it is the one asked for last and has finished.
    pub fn result_of(&self, request: &ExplainRequest) -> Option<&Arc<Explanation>> {
        self.get(request.kind())
            .filter(|state| &state.request == request)
            .and_then(|state| state.result.as_ref()?.as_ref().ok())
    }
}

/// How often an explanation reports its progress.
const EXPLAIN_REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs an explanation, reporting progress; any request that arrives meanwhile cancels it and is
/// kept in `stashed` for the loop. Returns whether the answer (if any) was delivered.
fn explain(
    model: &LoadedModel,
    id: u64,
    request: &ExplainRequest,
    requests: &Receiver<WorkerRequest>,
    stashed: &mut Vec<WorkerRequest>,
    send: &dyn Fn(WorkerResponse) -> bool,
) -> bool {
    let mut reported = Instant::now();
    let mut progress = |done: usize, total: usize| {
        if let Ok(newer) = requests.try_recv() {
            stashed.push(newer);
            return false;
        }
        if reported.elapsed() >= EXPLAIN_REPORT_EVERY {
            reported = Instant::now();
            send(WorkerResponse::ExplainProgress { id, done, total });
        }
        true
    };
    match request.run(model, &mut progress) {
        Ok(result) => send(WorkerResponse::Explained {
            id,
            result: Arc::new(result),
        }),
        // A newer request is waiting; the app may ask for this one again later.
        Err(ModelError::Cancelled) => send(WorkerResponse::ExplainCancelled { id }),
        Err(err) => send(WorkerResponse::ExplainFailed {
            id,
            message: err.to_string(),
        }),
    }
}

impl ModelInfo {
    /// What the UI shows of a loaded model that took `load_ms` to load.
    pub fn new(model: &LoadedModel, load_ms: f64) -> Self {
        let config = model.config();
        Self {
            name: model.name().to_owned(),
            family: model.family(),
            layers: config.num_hidden_layers,
            heads: config.num_attention_heads,
            hidden: config.hidden_size,
            max_tokens: config.max_tokens(),
            device: model.device(),
            prediction_heads: model.head_kinds().collect(),
            labels: model.labels(),
            mask_token: model.tokenizer().mask_token().map(str::to_owned),
            takes_pairs: config.architecture.takes_pairs,
            load_ms,
            notes: model.notes(),
            generation_not_applied: model.generation_defaults().not_applied.clone(),
        }
    }
}

/// Runs one analysis; used by the worker and by tests. The projection of the hidden states is
/// left to the Projection view's own computation, run only when it is open, so it never delays
/// the attention views.
pub fn analyze(model: &LoadedModel, id: u64, request: AnalysisRequest) -> WorkerResponse {
    let started = Instant::now();
    match model.analyze(&request) {
        Ok(analysis) => {
            let inference_ms = started.elapsed().as_secs_f64() * 1e3;
            // Already computed with a masked-LM head's predictions when the request asked;
            // otherwise one pass over the vocabulary matrix, and only with an LM head.
            let lens = model.lens_positions(&analysis).and_then(|_| {
                model
                    .logit_lens(&analysis, 5)
                    .map_err(|err| tracing::warn!(%err, "logit lens failed"))
                    .ok()
            });
            let embeddings = model
                .embedding_breakdown(&analysis)
                .map_err(|err| tracing::warn!(%err, "embedding breakdown failed"))
                .ok();
            let intact = if request.ablated_heads.is_empty() {
                None
            } else {
                let mut intact = request.clone();
                intact.ablated_heads.clear();
                match model.analyze(&intact) {
                    Ok(analysis) => Some(Box::new(analysis)),
                    Err(err) => {
                        return WorkerResponse::AnalysisFailed {
                            id,
                            message: err.to_string(),
                        }
                    }
                }
            };
            WorkerResponse::Analyzed {
                id,
                result: Arc::new(AnalysisResult {
                    request,
                    analysis,
                    inference_ms,
                    lens,
                    intact,
                    embeddings,
                }),
            }
        }
        Err(err) => WorkerResponse::AnalysisFailed {
            id,
            message: err.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyze_request(id: u64) -> WorkerRequest {
        WorkerRequest::Analyze {
            id,
            request: AnalysisRequest::new(format!("text {id}")),
        }
    }

    fn load_request(id: u64) -> WorkerRequest {
        WorkerRequest::Load {
            id,
            source: ModelSource::Hub(format!("model-{id}")),
            device: DeviceChoice::Cpu,
        }
    }

    /// Loads the tiny MLM + NSP fixture checkpoint.
    fn load_fixture_request(id: u64) -> WorkerRequest {
        let folder =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-legacy");
        WorkerRequest::Load {
            id,
            source: ModelSource::Folder(folder),
            device: DeviceChoice::Cpu,
        }
    }

    fn ids(requests: &[WorkerRequest]) -> Vec<u64> {
        requests
            .iter()
            .map(|request| match request {
                WorkerRequest::Load { id, .. }
                | WorkerRequest::Analyze { id, .. }
                | WorkerRequest::RunCorpus { id, .. }
                | WorkerRequest::CancelCorpus { id }
                | WorkerRequest::Explain { id, .. }
                | WorkerRequest::Generate { id, .. } => *id,
            })
            .collect()
    }

    fn generate_request(id: u64) -> WorkerRequest {
        WorkerRequest::Generate {
            id,
            request: generation::GenerateRequest {
                prompt: "The".to_owned(),
                keep: usize::MAX,
                step: true,
                decoding: crate::model::generation::Decoding::Greedy,
                seed: 0,
            },
        }
    }

    #[test]
    fn only_the_newest_generation_request_runs_after_a_load() {
        let pending = vec![
            generate_request(1),
            analyze_request(2),
            generate_request(3),
            load_request(4),
            generate_request(5),
            analyze_request(6),
            generate_request(7),
        ];
        assert_eq!(ids(&coalesce(pending)), [4, 6, 7]);
    }

    #[test]
    fn only_the_newest_load_and_analysis_run() {
        let pending = vec![
            analyze_request(1),
            load_request(2),
            analyze_request(3),
            analyze_request(4),
        ];
        assert_eq!(ids(&coalesce(pending)), vec![2, 4]);
        let pending = vec![analyze_request(1), analyze_request(2), load_request(3)];
        assert_eq!(
            ids(&coalesce(pending)),
            vec![3],
            "analyses for the old model are stale"
        );
        assert_eq!(ids(&coalesce(vec![analyze_request(7)])), vec![7]);
        let corpus = WorkerRequest::RunCorpus {
            id: 5,
            path: PathBuf::from("corpus.txt"),
            words: false,
        };
        let pending = vec![
            corpus,
            analyze_request(6),
            analyze_request(7),
            WorkerRequest::CancelCorpus { id: 5 },
        ];
        assert_eq!(
            ids(&coalesce(pending)),
            vec![5, 7, 5],
            "corpus requests are kept, in order"
        );
    }

    fn explain_request(id: u64, text: &str, patching: bool) -> WorkerRequest {
        let text = (text.to_owned(), None);
        let request = if patching {
            ExplainRequest::Patching {
                clean: text.clone(),
                corrupt: text,
                target: TargetSpec::default(),
            }
        } else {
            ExplainRequest::Attribution {
                text,
                options: AttributionOptions::default(),
            }
        };
        WorkerRequest::Explain { id, request }
    }

    #[test]
    fn only_the_newest_explanation_of_each_kind_runs() {
        let pending = vec![
            explain_request(1, "a", false),
            explain_request(2, "a", true),
            explain_request(3, "ab", false),
            analyze_request(4),
        ];
        assert_eq!(ids(&coalesce(pending)), vec![2, 3, 4]);
        let pending = vec![explain_request(5, "a", false), load_request(6)];
        assert_eq!(
            ids(&coalesce(pending)),
            vec![6],
            "explanations of the old model are stale"
        );
    }

    #[test]
    fn an_explanation_runs_and_a_cancelled_one_can_be_asked_again() {
        let worker = Worker::spawn(|| {}).unwrap();
        assert!(worker.send(load_fixture_request(1)));
        assert!(worker.send(explain_request(2, "the cat sat on the [MASK].", false)));
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let mut explained = None;
        while explained.is_none() && Instant::now() < deadline {
            match worker.try_recv() {
                Some(WorkerResponse::Explained { id: 2, result }) => explained = Some(result),
                Some(WorkerResponse::ExplainFailed { message, .. }) => panic!("{message}"),
                Some(_) => {}
                None => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        let Some(Explanation::Attribution(attribution)) = explained.as_deref() else {
            panic!("no attribution: {explained:?}");
        };
        assert_eq!(
            attribution.target.head,
            crate::model::target::TargetHead::Mlm
        );
        assert!(attribution.integrated_gradients.is_some());
        // The app forgets a cancelled request, so that asking for it again sends it.
        let mut explanations = Explanations::default();
        let WorkerRequest::Explain { request, .. } = explain_request(3, "a", false) else {
            unreachable!()
        };
        explanations.insert(ExplainState {
            id: 3,
            request: request.clone(),
            progress: None,
            result: None,
        });
        explanations.forget(3);
        assert!(explanations.get(request.kind()).is_none());
    }

    #[test]
    fn worker_loads_runs_and_wakes_the_ui() {
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&woken);
        let worker = Worker::spawn(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .unwrap();
        assert!(worker.send(load_fixture_request(1)));
        assert!(worker.send(analyze_request(2)));
        let mut responses = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while responses.len() < 2 && Instant::now() < deadline {
            match worker.try_recv() {
                Some(response) => responses.push(response),
                None => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        assert!(
            matches!(&responses[0], WorkerResponse::Loaded { id: 1, info } if info.layers == 2 && info.has(HeadKind::MaskedLm))
        );
        let WorkerResponse::Analyzed { id: 2, result } = &responses[1] else {
            panic!("expected an analysis, got {:?}", responses[1]);
        };
        let hidden = result.analysis.hidden_states.to_host().unwrap();
        let projection = crate::analysis::projection::Projection::fit(&hidden);
        assert_eq!(projection.layers(), 3, "the embeddings and two layers");
        assert!(woken.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    }

    /// Closing a comparison or quitting drops a worker on the UI thread, possibly in the middle
    /// of a download or a long analysis: that must never wait for the job.
    #[test]
    fn dropping_a_busy_worker_returns_at_once() {
        let (busy_tx, busy_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        // The worker's job stays busy (inside its wake call after the load) until released.
        let worker = Worker::spawn(move || {
            let _ = busy_tx.send(());
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(30));
        })
        .unwrap();
        assert!(worker.send(load_fixture_request(1)));
        busy_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the worker started its job");
        let started = Instant::now();
        drop(worker);
        let waited = started.elapsed();
        let _ = release_tx.send(());
        assert!(
            waited < std::time::Duration::from_millis(100),
            "dropping a busy worker blocked for {waited:?}"
        );
    }
}
