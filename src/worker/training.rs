//! Fine-tuning on a thread of its own, for the app's Train tab: the run reports each step over
//! a channel, the window stays responsive, Cancel stops it after the current step.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

use crate::model::finetune::{self, Event, FineTuneOptions, Summary, TrainingProgress};
use crate::model::ModelSource;

/// Where a training run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainingState {
    /// Steps are running.
    Running,
    /// Every epoch ran and was written.
    Finished,
    /// Cancelled; the folder holds the last completed epoch (if any).
    Cancelled,
    /// Stopped by an error, in one line.
    Failed(String),
}

enum Message {
    Event(Event),
    Done(Result<Summary, String>),
}

/// A fine-tuning run on its own thread.
pub struct TrainingJob {
    /// The model it started from, as the user gave it (folder or Hub id).
    pub source: String,
    /// The folder it writes.
    pub out: PathBuf,
    /// What it reported so far.
    pub progress: TrainingProgress,
    /// Where it stands.
    pub state: TrainingState,
    cancel: Arc<AtomicBool>,
    receiver: Receiver<Message>,
}

impl TrainingJob {
    /// Starts fine-tuning `model` (a folder or Hub id) as `options` say; `wake` is called from
    /// the thread whenever there is news.
    pub fn start(
        model: String,
        options: FineTuneOptions,
        wake: impl Fn() + Send + 'static,
    ) -> Self {
        let (sender, receiver) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let out = options.out.clone();
        // Named as the folder's training log names it, so that its export draws the same.
        let progress = TrainingProgress {
            model: ModelSource::parse(&model)
                .map_or_else(|_| model.clone(), |source| source.display_name()),
            ..TrainingProgress::default()
        };
        let stop = Arc::clone(&cancel);
        let source = model.clone();
        let spawned = std::thread::Builder::new()
            .name("bertscope-training".to_owned())
            .spawn(move || {
                let result = ModelSource::parse(&model).and_then(|source| {
                    finetune::fine_tune(&source, &options, &stop, &mut |event| {
                        let _ = sender.send(Message::Event(event.clone()));
                        wake();
                    })
                });
                let _ = sender.send(Message::Done(result.map_err(|err| err.to_string())));
                wake();
            });
        let state = match spawned {
            Ok(_) => TrainingState::Running,
            Err(err) => TrainingState::Failed(format!("cannot start a thread ({err})")),
        };
        Self {
            source,
            out,
            progress,
            state,
            cancel,
            receiver,
        }
    }

    /// Takes in what the thread reported since the last call.
    pub fn poll(&mut self) {
        while let Ok(message) = self.receiver.try_recv() {
            match message {
                Message::Event(event) => self.progress.record(&event),
                Message::Done(Ok(summary)) => {
                    self.state = if summary.cancelled {
                        TrainingState::Cancelled
                    } else {
                        TrainingState::Finished
                    };
                }
                Message::Done(Err(message)) => self.state = TrainingState::Failed(message),
            }
        }
    }

    /// Asks the run to stop after the current step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether steps are still running.
    pub fn running(&self) -> bool {
        self.state == TrainingState::Running
    }
}

impl Drop for TrainingJob {
    fn drop(&mut self) {
        // A run nobody watches any more stops at its next step.
        self.cancel();
    }
}
