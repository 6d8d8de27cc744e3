//! `bertscope finetune`: trains a sequence classifier on a CSV, TSV or JSON Lines file and
//! writes a Hugging Face folder after every epoch, with a progress bar on stderr. Ctrl-C stops
//! after the current step; the folder then holds the last completed epoch.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use bertscope::model::finetune::data::Columns;
use bertscope::model::finetune::{fine_tune, Event, FineTuneOptions, Metrics};
use bertscope::model::{DeviceChoice, ModelSource};

#[derive(Args)]
pub struct FinetuneArgs {
    /// The checkpoint to start from: a local folder (Hugging Face layout) or a Hub id.
    #[arg(long, short)]
    pub model: String,
    /// Training data: CSV or TSV with a header, or JSON Lines.
    #[arg(long)]
    pub train: PathBuf,
    /// Evaluation data, scored after every epoch (loss, accuracy, macro-F1; regression: MSE and
    /// Pearson r).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// The text column (default: text, sentence, ... else the first column).
    #[arg(long)]
    pub text_column: Option<String>,
    /// A second text column, making pairs.
    #[arg(long)]
    pub text_b_column: Option<String>,
    /// The label column (default: label, labels, ... else the last column). Strings are
    /// classes, integers class ids, floats a regression, `a|b` several labels.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Passes over the training data.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Peak learning rate (AdamW, β 0.9/0.999, ε 1e-8).
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    /// Weight decay on every weight except biases and LayerNorm weights.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Steps over which the learning rate rises linearly from 0; it then falls linearly to 0.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    /// Gradients are clipped to this global norm (0: not clipped).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Texts are cut to this many tokens.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Seeds shuffling, dropout and a new head's weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Set every dropout probability of the model and its head to P (default: the config's).
    #[arg(long, value_name = "P")]
    pub dropout: Option<f64>,
    /// Keep the file's order instead of shuffling each epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Train only the classification head; the base model (BERT's pooler included) stays as it
    /// is, as freezing `model.bert` does.
    #[arg(long)]
    pub freeze_encoder: bool,
    /// The folder to write (absent, empty, or an earlier fine-tuning's).
    #[arg(long)]
    pub out: PathBuf,
    /// cpu, cuda or metal (GPU back-ends need the matching cargo feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Runs `finetune`.
pub fn run(args: FinetuneArgs) -> anyhow::Result<()> {
    let source = ModelSource::parse(&args.model)?;
    let device: DeviceChoice = args.device.parse()?;
    let options = FineTuneOptions {
        train: args.train,
        eval: args.eval,
        columns: Columns {
            text: args.text_column,
            text_b: args.text_b_column,
            label: args.label_column,
        },
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        weight_decay: args.weight_decay,
        warmup_steps: args.warmup_steps,
        max_grad_norm: args.max_grad_norm,
        max_len: args.max_len,
        seed: args.seed,
        dropout: args.dropout,
        shuffle: !args.no_shuffle,
        freeze_encoder: args.freeze_encoder,
        out: args.out,
        device,
        keep_first_gradients: false,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = Arc::clone(&cancel);
        // A second Ctrl-C is the default one: it ends the process at once.
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        });
    }
    let started = Instant::now();
    let mut progress = Progress::default();
    let summary = fine_tune(&source, &options, &cancel, &mut |event| {
        progress.show(event, started)
    })?;
    progress.end_line();
    if summary.cancelled {
        match summary.epochs.last() {
            Some(last) => eprintln!(
                "stopped: {} holds epoch {}",
                options.out.display(),
                last.epoch
            ),
            None => eprintln!("stopped before the first epoch ended; nothing was written"),
        }
        // A script can tell an interrupted run from a finished one, as the shell tells SIGINT.
        std::process::exit(130);
    } else {
        eprintln!("wrote {}", options.out.display());
    }
    Ok(())
}

/// The progress line on stderr.
#[derive(Default)]
struct Progress {
    open_line: bool,
}

impl Progress {
    fn end_line(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
        }
    }

    fn show(&mut self, event: &Event, started: Instant) {
        match event {
            Event::Prepared(prepared) => {
                let (text, text_b, label) = &prepared.columns;
                let kind = prepared.task.describe();
                eprintln!(
                    "{} training and {} evaluation examples; text: {text}{}, label: {label}; {kind}; {} head; {} steps",
                    prepared.examples,
                    prepared.eval_examples,
                    text_b.as_ref().map(|b| format!(", second text: {b}")).unwrap_or_default(),
                    if prepared.new_head { "a new" } else { "the checkpoint's" },
                    prepared.steps
                );
                for note in &prepared.notes {
                    eprintln!("note: {note}");
                }
            }
            Event::Step(step) => {
                const WIDTH: usize = 24;
                let done = step.step * WIDTH / step.steps.max(1);
                let elapsed = started.elapsed().as_secs_f64();
                let eta = elapsed / step.step as f64 * (step.steps - step.step) as f64;
                eprint!(
                    "\r[{}{}] step {}/{} epoch {} loss {:.4} {:.1} ex/s ETA {}   ",
                    "#".repeat(done),
                    "-".repeat(WIDTH - done),
                    step.step,
                    step.steps,
                    step.epoch,
                    step.loss,
                    step.examples_per_second,
                    clock(eta)
                );
                let _ = std::io::stderr().flush();
                self.open_line = true;
            }
            Event::Epoch(epoch) => {
                self.end_line();
                let eval: String = epoch
                    .eval
                    .iter()
                    .flat_map(Metrics::parts)
                    .map(|part| format!(", {part}"))
                    .collect();
                eprintln!(
                    "epoch {}: train loss {:.4}{eval}",
                    epoch.epoch, epoch.train_loss
                );
            }
        }
    }
}

fn clock(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", seconds / 60, seconds % 60)
}
