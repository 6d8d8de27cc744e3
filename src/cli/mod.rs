//! The `bertscope` command line (clap): the app by default, and one file per subcommand:
//! `dump` writes everything a run captured as JSON, `export` writes figures and data files,
//! `stats` head statistics over a corpus, `generate` lets a causal model write, `finetune`
//! trains a classifier on a person's data, `bench` times the forward pass.

mod app;
mod bench;
mod dump;
mod export;
mod finetune;
mod generate;
mod stats;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use bertscope::analysis::HeadChoice;
use bertscope::export::write_atomically;
use bertscope::model::{
    AnalysisRequest, DeviceChoice, DownloadProgress, ForwardPath, HeadKind, LoadedModel,
    ModelSource,
};

/// See inside BERT, RoBERTa, GPT-2, Llama-style decoders, Gemma 3 and ModernBERT: every layer
/// and head, locally. Without a subcommand, opens the app.
#[derive(Parser)]
#[command(
    name = "bertscope",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    app: app::AppArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on a text and write tokens, attention maps and head outputs as JSON.
    Dump(dump::DumpArgs),
    /// Time the full forward pass with every attention map captured.
    Bench(bench::BenchArgs),
    /// Write a figure (.png, .svg) or data (.json, .csv, .npy, .npz) without opening a window.
    Export(export::ExportArgs),
    /// Head statistics (Clark et al. 2019) over a corpus: one text per line, a tab splits a pair.
    Stats(stats::StatsCommandLine),
    /// Let a causal model (GPT-2, Llama, Qwen, Gemma) continue a prompt, token by token, greedy or sampled.
    Generate(generate::GenerateArgs),
    /// Fine-tune a sequence classifier on your own labelled data (CSV, TSV or JSON Lines) and write a Hugging Face folder.
    Finetune(finetune::FinetuneArgs),
}

/// The text to run.
#[derive(Args)]
pub struct InputArgs {
    /// Sentence A (the question, for question-answering models).
    #[arg(long, short)]
    pub text: String,
    /// Sentence B, making a pair: segment ids 1 for BERT, NSP when the model has the head, the
    /// context for question-answering models. Causal models read one text.
    #[arg(long)]
    pub text_b: Option<String>,
}

impl InputArgs {
    fn request(&self) -> AnalysisRequest {
        AnalysisRequest::new(self.text.clone()).with_text_b(self.text_b.clone())
    }
}

/// Which model, and where it runs.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// A local model folder (Hugging Face layout) or a Hub id such as bert-base-uncased.
    #[arg(long, short)]
    pub model: String,
    /// cpu, cuda or metal (GPU back-ends need the matching cargo feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Run candle's tensor ops (the GPU path) even on the CPU, where the tuned kernels run by
    /// default: to compare the two, or to try the GPU path's lazy copies without a GPU.
    #[arg(long)]
    pub candle: bool,
}

/// How a causal model chooses its next token (`generate`, and `export --view generate`).
#[derive(Args, Clone, Default)]
pub struct DecodingArgs {
    /// Take the most probable token at every step (no sampling options then).
    #[arg(long)]
    pub greedy: bool,
    /// Sample, dividing the logits by T (> 0); default: generation_config.json's, else 1.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Sample from the K most probable tokens and those tied with the K-th (0: all); default:
    /// generation_config.json's, else 50.
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub top_k: Option<i64>,
    /// Sample from the most probable tokens holding mass P, in (0, 1]; default:
    /// generation_config.json's, else 1 (off).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// Seed of the sampler: the same seed gives the same text on the same machine and path
    /// (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl DecodingArgs {
    /// What the flags ask for, before the checkpoint's defaults fill the gaps.
    pub fn request(&self) -> bertscope::model::generation::DecodingRequest {
        bertscope::model::generation::DecodingRequest {
            greedy: self.greedy,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
        }
    }
}

/// How `dump` runs the model (ablation) and shapes its maps (words).
#[derive(Args, Clone)]
pub struct RunArgs {
    /// Heads to ablate, LAYER:HEAD comma-separated (0-based): their attention probabilities are
    /// multiplied by zero, as transformers 4.x's head_mask did, and every output reflects it.
    #[arg(long, value_delimiter = ',', value_parser = parse_layer_head, value_name = "L:H")]
    pub ablate: Vec<(usize, usize)>,
    /// Merge subword pieces into words: word-level attention (to a word: summed over its pieces;
    /// from a word: their mean), rollout and norms.
    #[arg(long)]
    pub words: bool,
}

/// Parses `--head`: a number or "mean".
pub fn parse_head(text: &str) -> Result<HeadChoice, String> {
    if text.eq_ignore_ascii_case("mean") {
        return Ok(HeadChoice::Mean);
    }
    text.parse()
        .map(HeadChoice::Head)
        .map_err(|_| format!("'{text}' is neither a head number nor \"mean\""))
}

/// Parses `L:H`, a layer and a head.
pub fn parse_layer_head(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("'{text}' is not LAYER:HEAD, e.g. 3:7 (both 0-based)");
    let (layer, head) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        layer.trim().parse().map_err(|_| bad())?,
        head.trim().parse().map_err(|_| bad())?,
    ))
}

/// Lets glibc's allocator keep large freed blocks for reuse instead of handing them back at once:
/// a batched backward pass allocates its tape (hundreds of megabytes at bert-base's size) anew
/// for every batch, and fresh pages from the kernel cost a fault and a clearing each — about a
/// tenth of integrated gradients' time when every block of 128 KiB or more was returned.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; it is called before any other thread
    // exists, and a refusal (return 0) leaves the defaults.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Runs the command line: parses it, runs the subcommand (or opens the app) and turns an
/// error into one line on stderr.
pub fn main() -> ExitCode {
    keep_freed_memory();
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error ({info}); please report it");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if err.use_stderr() => {
            // clap spreads one error over several lines; keep it to one, without the usage.
            let message = err.to_string();
            let lines: Vec<&str> = message
                .lines()
                .map(str::trim)
                .take_while(|line| !line.starts_with("Usage:"))
                .filter(|line| !line.is_empty())
                .collect();
            eprintln!("{}", lines.join(" "));
            return ExitCode::from(2);
        }
        Err(err) => {
            // --help and --version go to stdout and succeed.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    let outcome = match cli.command {
        Some(Command::Dump(args)) => dump::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Export(args)) => export::run(args),
        Some(Command::Stats(args)) => stats::run(args),
        Some(Command::Generate(args)) => generate::run(args),
        Some(Command::Finetune(args)) => finetune::run(args),
        None => app::run(cli.app),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", format!("{err:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Loads a model, printing download progress on stderr.
pub fn load(args: &ModelArgs) -> anyhow::Result<LoadedModel> {
    let device: DeviceChoice = args.device.parse()?;
    let source = ModelSource::parse(&args.model)?;
    let mut last_percent = None;
    let mut report = |step: DownloadProgress| {
        let percent = (step.done_bytes * 100)
            .checked_div(step.total_bytes)
            .unwrap_or(0);
        if last_percent != Some(percent) && percent.is_multiple_of(10) {
            eprintln!("downloading {}: {percent}%", step.file);
            last_percent = Some(percent);
        }
    };
    let forward = if args.candle {
        ForwardPath::Candle
    } else {
        ForwardPath::Auto
    };
    let model = LoadedModel::load_with(&source, device, forward, &mut report)?;
    for note in model.notes() {
        eprintln!("note: {note}");
    }
    Ok(model)
}

/// Notes on stderr about what the output leaves out or shortened.
pub fn input_notes(
    model: &LoadedModel,
    analysis: &bertscope::model::Analysis,
    request: &AnalysisRequest,
) {
    if analysis.dropped_tokens > 0 {
        eprintln!(
            "note: the input was cut to the model's {} tokens; {} token(s) were dropped",
            model.config().max_tokens(),
            analysis.dropped_tokens
        );
    }
    if model.has_head(HeadKind::QuestionAnswering) && request.text_b.is_none() {
        eprintln!(
            "note: this is a question-answering model: give the question with --text and the context with --text-b"
        );
    }
}

/// Writes a command's output atomically into `out`, or to standard output without one.
pub fn write_output(
    out: Option<&std::path::Path>,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    match out {
        Some(path) => write_atomically(path, write),
        None => {
            let stdout = std::io::stdout();
            let mut writer = std::io::BufWriter::new(stdout.lock());
            match write(&mut writer).and_then(|()| writer.flush()) {
                // A reader that stopped early (`| head`) is not an error.
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                result => result.context("cannot write to standard output"),
            }
        }
    }
}
