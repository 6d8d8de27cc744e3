//! The `bertscope` command line: `dump` writes everything a run captured as JSON, `export` writes
//! figures and data files, `bench` times the forward pass.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use bertscope::analysis::stats::Statistic;
use bertscope::analysis::HeadChoice;
use bertscope::bench;
use bertscope::export::data::Precision;
use bertscope::export::dump::{DumpDocument, Extra, Extras};
use bertscope::export::{write_atomically, ExportFormat, ExportOptions, FigureView};
use bertscope::model::{
    AnalysisRequest, DeviceChoice, DownloadProgress, ForwardPath, HeadKind, LoadedModel,
    ModelSource,
};
#[cfg(feature = "gui")]
use bertscope::ui::View;

/// See inside BERT, DistilBERT, RoBERTa and GPT-2: every layer and head, locally. Without a
/// subcommand, opens the app.
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
    app: AppArgs,
}

/// Options of the desktop app.
#[derive(Args)]
struct AppArgs {
    /// A local model folder or a Hub id; default: the last model used, else bert-base-uncased.
    #[arg(long, short)]
    model: Option<String>,
    /// Sentence A.
    #[arg(long, short)]
    text: Option<String>,
    /// Sentence B, making a pair.
    #[arg(long)]
    text_b: Option<String>,
    /// cpu, cuda or metal (GPU back-ends need the matching cargo feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The tab to open.
    #[cfg(feature = "gui")]
    #[arg(long, value_enum)]
    view: Option<View>,
    /// Save a PNG of the window once results are drawn, then exit.
    #[arg(long, value_name = "PATH")]
    screenshot: Option<PathBuf>,
    /// A second model (folder or Hub id) to compare with, side by side.
    #[arg(long, value_name = "M2")]
    compare: Option<String>,
    /// Heads to switch off from the start, LAYER:HEAD comma-separated (0-based); the Overview
    /// tab switches them too.
    #[arg(long, value_delimiter = ',', value_parser = parse_layer_head, value_name = "L:H")]
    ablate: Vec<(usize, usize)>,
    /// Open with words instead of subword pieces (the W key switches).
    #[arg(long)]
    words: bool,
    /// What the heatmap, lines and overview show: raw attention, rollout, norms or flow.
    #[cfg(feature = "gui")]
    #[arg(long, value_enum, value_name = "KIND")]
    show: Option<bertscope::ui::AttentionKind>,
    /// Open the Heads tab on head statistics over this corpus file (one text per line, a tab
    /// splits a pair), run once the model is loaded.
    #[arg(long, value_name = "FILE")]
    corpus: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on a text and write tokens, attention maps and head outputs as JSON.
    Dump(DumpArgs),
    /// Time the full forward pass with every attention map captured.
    Bench(BenchArgs),
    /// Write a figure (.png, .svg) or data (.json, .csv, .npy, .npz) without opening a window.
    Export(ExportArgs),
    /// Head statistics (Clark et al. 2019) over a corpus: one text per line, a tab splits a pair.
    Stats(StatsArgs),
}

#[derive(Args)]
struct StatsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A UTF-8 text file: one text per line (a tab splits sentence A from B); blank lines are
    /// skipped.
    #[arg(long)]
    corpus: PathBuf,
    /// Write here instead of JSON on standard output: .json, .csv (a row per head), or a .png
    /// or .svg figure of the layers × heads grid.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Statistics of words (merged subword pieces), as the app's Words switch shows them.
    #[arg(long)]
    words: bool,
    /// The statistic that colours a figure.
    #[arg(long, value_enum, default_value_t = Statistic::Entropy)]
    statistic: Statistic,
    /// PNG figure scale: 1, 2 or 4.
    #[arg(long, default_value_t = 2.0)]
    scale: f32,
}

/// The text to run.
#[derive(Args)]
struct InputArgs {
    /// Sentence A (the question, for question-answering models).
    #[arg(long, short)]
    text: String,
    /// Sentence B, making a pair: segment ids 1 for BERT, NSP when the model has the head, the
    /// context for question-answering models. GPT-2 reads one text.
    #[arg(long)]
    text_b: Option<String>,
}

impl InputArgs {
    fn request(&self) -> AnalysisRequest {
        AnalysisRequest::new(self.text.clone()).with_text_b(self.text_b.clone())
    }
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    /// Layer, 0-based (with --view projection, 0 is the embeddings).
    #[arg(long, default_value_t = 0)]
    layer: usize,
    /// Head, 0-based, or "mean" for the mean of the layer's heads.
    #[arg(long, default_value = "0", value_parser = parse_head)]
    head: HeadChoice,
    /// The picture for .png and .svg.
    #[arg(long, value_enum, default_value_t = FigureView::Heatmap)]
    view: FigureView,
    /// The selected token (0-based): its next-token guesses in --view predictions, its path
    /// through the layers in --view projection. Default: the last token, and no path.
    #[arg(long)]
    token: Option<usize>,
    /// The second model (folder or Hub id) for --view compare, run on the same device.
    #[arg(long, value_name = "M2")]
    compare: Option<String>,
    /// The second model's layer with --view compare; default: the layer at --layer's relative
    /// depth.
    #[arg(long, requires = "compare")]
    compare_layer: Option<usize>,
    /// With --view heatmap: attention rollout through the layers up to --layer instead of a head.
    #[arg(long, conflicts_with = "norms")]
    rollout: bool,
    /// With --view heatmap: norm-based attention ‖α·f(x)‖ (Kobayashi et al. 2020) of the head;
    /// with --view overview: of every head.
    #[arg(long)]
    norms: bool,
    /// With --view heatmap: attention flow (Abnar & Zuidema 2020) into these tokens (0-based,
    /// comma-separated) through the layers up to --layer, instead of a head.
    #[arg(long, value_delimiter = ',', value_name = "I", conflicts_with_all = ["rollout", "norms"])]
    flow_to: Vec<usize>,
    /// Heads to ablate, LAYER:HEAD comma-separated (0-based), as in dump.
    #[arg(long, value_delimiter = ',', value_parser = parse_layer_head, value_name = "L:H")]
    ablate: Vec<(usize, usize)>,
    /// Words instead of subword pieces (heatmap, lines, overview, heads, projection and the data
    /// files): attention to a word summed over its pieces, from a word the mean, as dump --words.
    #[arg(long)]
    words: bool,
    /// The statistic that colours --view heads.
    #[arg(long, value_enum, default_value_t = Statistic::Entropy)]
    statistic: Statistic,
    /// The second model's head with --view compare, or "mean".
    #[arg(long, default_value = "mean", value_parser = parse_head, requires = "compare")]
    compare_head: HeadChoice,
    /// PNG scale: 1, 2 or 4.
    #[arg(long, default_value_t = 2.0)]
    scale: f32,
    /// Output file; its extension picks the format (.png .svg .json .csv .npy .npz). With
    /// --all-heads, a folder.
    #[arg(long, short)]
    out: PathBuf,
    /// Write a heatmap of every layer and head, and the overview, into the folder --out.
    #[arg(long)]
    all_heads: bool,
    /// The number type of the attention maps in a .npz (f16: half the size).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    /// The figures' format with --all-heads.
    #[arg(long, value_enum, default_value_t = FigureFormat::Png, requires = "all_heads")]
    format: FigureFormat,
}

/// Figure file formats.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FigureFormat {
    Png,
    Svg,
}

fn parse_head(text: &str) -> Result<HeadChoice, String> {
    if text.eq_ignore_ascii_case("mean") {
        return Ok(HeadChoice::Mean);
    }
    text.parse()
        .map(HeadChoice::Head)
        .map_err(|_| format!("'{text}' is neither a head number nor \"mean\""))
}

/// Which model, and where it runs.
#[derive(Args, Clone)]
struct ModelArgs {
    /// A local model folder (Hugging Face layout) or a Hub id such as bert-base-uncased.
    #[arg(long, short)]
    model: String,
    /// cpu, cuda or metal (GPU back-ends need the matching cargo feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run candle's tensor ops (the GPU path) even on the CPU, where the tuned kernels run by
    /// default: to compare the two, or to try the GPU path's lazy copies without a GPU.
    #[arg(long)]
    candle: bool,
}

#[derive(Args)]
struct DumpArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    /// Write the JSON here instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Analyses to add, comma-separated: rollout (attention rollout after every layer), flow
    /// (attention flow into --flow-to), norms (norm-based attention), logit-lens (the
    /// prediction head after every layer, at each mask or GPT-2's last token), embeddings (the
    /// sizes of the input embeddings' parts), head-stats (Clark et al.'s statistics of every
    /// head).
    #[arg(long, value_enum, value_delimiter = ',')]
    with: Vec<Extra>,
    /// The output token (0-based) that --with flow measures the flow into.
    #[arg(long, default_value_t = 0)]
    flow_to: usize,
    #[command(flatten)]
    run: RunArgs,
}

/// How `dump` runs the model (ablation) and shapes its maps (words).
#[derive(Args, Clone)]
struct RunArgs {
    /// Heads to ablate, LAYER:HEAD comma-separated (0-based): their attention probabilities are
    /// multiplied by zero, as transformers 4.x's head_mask did, and every output reflects it.
    #[arg(long, value_delimiter = ',', value_parser = parse_layer_head, value_name = "L:H")]
    ablate: Vec<(usize, usize)>,
    /// Merge subword pieces into words: word-level attention (to a word: summed over its pieces;
    /// from a word: their mean), rollout and norms.
    #[arg(long)]
    words: bool,
}

fn parse_layer_head(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("'{text}' is not LAYER:HEAD, e.g. 3:7 (both 0-based)");
    let (layer, head) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        layer.trim().parse().map_err(|_| bad())?,
        head.trim().parse().map_err(|_| bad())?,
    ))
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Tokens per input, [CLS] and [SEP] included.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Timed runs, after two untimed warm-up runs.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Also time the analyses: the value norms inside the forward (value_norms_ms), rollout,
    /// head statistics, norm maps and the logit lens after it (analyses_ms), their share of
    /// the forward, and attention flow into one token (flow_ms); medians of --iters runs.
    #[arg(long)]
    analyses: bool,
    /// Also time this many frames of the app's overview (every layer × head), headless.
    #[cfg(feature = "gui")]
    #[arg(long, value_name = "FRAMES")]
    overview_frames: Option<usize>,
    /// Also type this many characters into the app, headless, timing each from keystroke to
    /// the frame that draws its result (prints keystroke_ms, the median).
    #[cfg(feature = "gui")]
    #[arg(long, value_name = "KEYS")]
    keystroke: Option<usize>,
}

fn main() -> ExitCode {
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
        Some(Command::Dump(args)) => dump(args),
        Some(Command::Bench(args)) => run_bench(args),
        Some(Command::Export(args)) => export(args),
        Some(Command::Stats(args)) => corpus_stats(args),
        None => open_app(cli.app),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", format!("{err:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "gui")]
fn open_app(args: AppArgs) -> anyhow::Result<()> {
    let device: DeviceChoice = args.device.parse()?;
    bertscope::app::run(bertscope::app::LaunchOptions {
        model: args.model,
        text: args.text,
        text_b: args.text_b,
        device,
        view: args.view,
        screenshot: args.screenshot,
        compare: args.compare,
        ablate: args.ablate,
        words: args.words,
        show: args.show,
        corpus: args.corpus,
    })
}

#[cfg(not(feature = "gui"))]
fn open_app(_args: AppArgs) -> anyhow::Result<()> {
    anyhow::bail!("this build has no desktop app (built without the \"gui\" feature); use the dump or bench subcommands")
}

/// Loads a model, printing download progress on stderr.
fn load(args: &ModelArgs) -> anyhow::Result<LoadedModel> {
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
    Ok(LoadedModel::load_with(
        &source,
        device,
        forward,
        &mut report,
    )?)
}

/// Notes on stderr about what the output leaves out or shortened.
fn input_notes(
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

fn dump(args: DumpArgs) -> anyhow::Result<()> {
    let model = load(&args.model)?;
    let extras = Extras {
        with: args.with.clone(),
        flow_to: args.flow_to,
        words: args.run.words,
    };
    let mut request = args.input.request();
    request.ablated_heads = args.run.ablate.clone();
    request.value_norms = extras.needs_value_norms();
    request.lens = extras.with.contains(&Extra::LogitLens);
    let analysis = model.analyze(&request)?;
    input_notes(&model, &analysis, &request);
    if extras.with.contains(&Extra::LogitLens)
        && model
            .lens_positions(&analysis)
            .is_some_and(|p| p.is_empty())
    {
        eprintln!("note: the logit lens reads the mask tokens, and the text has none");
    }
    let document =
        DumpDocument::new(&args.model.model, &analysis)?.with(&model, &analysis, &extras)?;
    write_output(args.out.as_deref(), |writer| {
        serde_json::to_writer(&mut *writer, &document)?;
        writer.write_all(b"\n")
    })
}

/// Writes a command's output atomically into `out`, or to standard output without one.
fn write_output(
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

fn corpus_stats(args: StatsArgs) -> anyhow::Result<()> {
    use bertscope::analysis::stats::CorpusStats;
    // Fail on a bad extension before spending time on the corpus.
    if let Some(path) = &args.out {
        bertscope::export::corpus_report_format(path)?;
        bertscope::export::check_scale(args.scale)?;
    }
    let text = std::fs::read_to_string(&args.corpus)
        .with_context(|| format!("{}: cannot read the corpus", args.corpus.display()))?;
    let lines = bertscope::analysis::stats::corpus_requests(&text);
    anyhow::ensure!(
        !lines.is_empty(),
        "{}: no text in the corpus",
        args.corpus.display()
    );
    let model = load(&args.model)?;
    let mut stats = CorpusStats::default();
    let started = Instant::now();
    let mut statistics = Duration::ZERO;
    let mut reported = started;
    for (done, (number, request)) in lines.iter().enumerate() {
        let analysis = model.analyze(request).map_err(|err| {
            // The error goes on a line of its own, not after the progress.
            if done > 0 {
                eprintln!();
            }
            anyhow::Error::from(err).context(format!("{} line {number}", args.corpus.display()))
        })?;
        let adding = Instant::now();
        anyhow::ensure!(
            stats.add_text(&analysis, args.words),
            "the captured maps could not be copied"
        );
        statistics += adding.elapsed();
        // A few times a second: every line would flood a log that stderr goes to.
        if done + 1 == lines.len() || reported.elapsed() >= Duration::from_millis(200) {
            reported = Instant::now();
            eprint!("\rhead statistics: {}/{} lines", done + 1, lines.len());
        }
    }
    eprintln!(
        " ({} tokens, {:.1} s, of which statistics {:.2} s)",
        stats.tokens,
        started.elapsed().as_secs_f64(),
        statistics.as_secs_f64()
    );
    let report = stats.report();
    match &args.out {
        Some(path) => {
            let corpus = args
                .corpus
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            bertscope::export::export_corpus_report(
                path,
                (model.name(), &corpus),
                &report,
                args.statistic,
                args.scale,
            )?;
            eprintln!("wrote {}", path.display());
        }
        None => write_output(None, |out: &mut dyn Write| {
            bertscope::export::data::corpus_report(&report, false, out)
        })?,
    }
    Ok(())
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    // Fail on a bad path or extension before spending time on the model.
    if args.all_heads {
        anyhow::ensure!(
            !args.out.is_file(),
            "{}: is a file; --all-heads writes into a folder",
            args.out.display()
        );
    } else {
        ExportFormat::from_path(&args.out)?;
    }
    anyhow::ensure!(
        args.compare.is_some() || args.view != FigureView::Compare,
        "--view compare needs a second model: --compare M2"
    );
    let model = load(&args.model)?;
    let mut request = args.input.request();
    request.ablated_heads = args.ablate.clone();
    request.value_norms = args.norms;
    request.lens = args.view == FigureView::Lens;
    let analysis = model.analyze(&request)?;
    input_notes(&model, &analysis, &request);
    let comparison = match &args.compare {
        Some(other) => {
            let other = load(&ModelArgs {
                model: other.clone(),
                ..args.model.clone()
            })?;
            let analysis = other.analyze(&request)?;
            Some((other, analysis))
        }
        None => None,
    };
    let lens = if args.view == FigureView::Lens {
        Some(model.logit_lens(&analysis, 5)?)
    } else {
        None
    };
    let embeddings = if args.view == FigureView::Embeddings {
        Some(model.embedding_breakdown(&analysis)?)
    } else {
        None
    };
    let options = ExportOptions {
        view: args.view,
        lens,
        embeddings,
        layer: args.layer,
        head: args.head,
        scale: args.scale,
        precision: args.precision,
        selected_token: args.token,
        compare_layer: args.compare_layer,
        compare_head: args.compare_head,
        statistic: args.statistic,
        rollout: args.rollout,
        norms: args.norms,
        flow_into: args.flow_to.clone(),
        words: args.words,
        ..ExportOptions::default()
    };
    let input = &args.input;
    if args.all_heads {
        let format = match args.format {
            FigureFormat::Png => ExportFormat::Png,
            FigureFormat::Svg => ExportFormat::Svg,
        };
        let progress = |done: usize, total: usize| {
            eprint!("\rwriting figures: {done}/{total}");
        };
        let word_level = if args.words {
            let words = bertscope::analysis::words::words(&analysis);
            Some(
                bertscope::analysis::words::word_analysis(&analysis, &words)
                    .ok_or_else(|| anyhow::anyhow!("the captured maps could not be copied"))?,
            )
        } else {
            None
        };
        let written = bertscope::export::export_all_heads(
            &args.out,
            format,
            model.name(),
            word_level.as_ref().unwrap_or(&analysis),
            (&input.text, input.text_b.as_deref()),
            &options,
            &progress,
        );
        eprintln!();
        eprintln!("wrote {} figures into {}", written?, args.out.display());
        return Ok(());
    }
    bertscope::export::export_cancellable(
        &args.out,
        (model.name(), &analysis),
        comparison
            .as_ref()
            .map(|(other, analysis)| (other.name(), analysis)),
        (&input.text, input.text_b.as_deref()),
        &options,
        &std::sync::atomic::AtomicBool::new(false),
    )?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// `bench --analyses`: what the analyses add to the forward. The value norms and the logit
/// lens are computed inside it (runs with and without them, alternated); rollout, head
/// statistics and norm maps after it; and attention flow into one token.
fn bench_analyses(
    model: &LoadedModel,
    input: &bertscope::model::tokenizer::EncodedText,
    iters: usize,
) -> anyhow::Result<()> {
    use bertscope::analysis;
    let ms = |started: Instant| started.elapsed().as_secs_f64() * 1e3;
    let plain_options = bertscope::model::RunOptions {
        mlm_positions: vec![input.ids.len() / 2],
        top_k: 5,
        ..Default::default()
    };
    let options = bertscope::model::RunOptions {
        value_norms: true,
        lens: true,
        ..plain_options.clone()
    };
    let (mut plain, mut with_extras) = (Vec::new(), Vec::new());
    for _ in 0..iters {
        let started = Instant::now();
        std::hint::black_box(model.run_with(input.clone(), &plain_options)?);
        plain.push(ms(started));
        let started = Instant::now();
        std::hint::black_box(model.run_with(input.clone(), &options)?);
        with_extras.push(ms(started));
    }
    let analysis = model.run_with(input.clone(), &options)?;
    let lens = model.lens_positions(&analysis).is_some();
    // Per iteration: rollout, head statistics, norm maps, and the lens alone (apart from the
    // predictions, as for a model whose head does not compute it with them).
    let apart = bertscope::model::Analysis {
        logit_lens: None,
        ..analysis.clone()
    };
    let mut parts: [Vec<f64>; 4] = Default::default();
    for _ in 0..iters {
        let started = Instant::now();
        std::hint::black_box(analysis::rollout::rollout(&analysis));
        parts[0].push(ms(started));
        let started = Instant::now();
        std::hint::black_box(analysis::stats::head_stats(&analysis));
        parts[1].push(ms(started));
        let started = Instant::now();
        std::hint::black_box(analysis::norms::attention_norms(&analysis));
        parts[2].push(ms(started));
        let started = Instant::now();
        if lens {
            std::hint::black_box(model.logit_lens(&apart, 5)?);
        }
        parts[3].push(ms(started));
    }
    let [rollout, stats, norm_maps, lens_apart] = parts.map(|times| bench::median(&times));
    let after = rollout + stats + norm_maps;
    let flow: Vec<f64> = (0..iters.min(3))
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(analysis::flow::flow_into(&analysis, 0));
            ms(started)
        })
        .collect();
    let (plain, with_extras) = (bench::median(&plain), bench::median(&with_extras));
    let inside = (with_extras - plain).max(0.0);
    println!(
        "in_forward_ms {inside:.3} (value norms{}: forward {with_extras:.1} ms with them, {plain:.1} ms without, alternated)",
        if analysis.logit_lens.is_some() {
            " and the logit lens at one position"
        } else {
            ""
        }
    );
    println!(
        "analyses_ms {after:.3} (rollout {rollout:.1}, head statistics {stats:.1}, norm maps {norm_maps:.1})"
    );
    if lens {
        println!("lens_apart_ms {lens_apart:.3} (the lens computed after the forward instead)");
    }
    println!(
        "analyses_share {:.1}% of the forward",
        (inside + after) / plain * 100.0
    );
    println!(
        "flow_ms {:.3} (into token 0 from every token)",
        bench::median(&flow)
    );
    Ok(())
}

/// What `bench --keystroke` starts from before typing: a sentence of about 16 tokens.
#[cfg(feature = "gui")]
const KEYSTROKE_TEXT: &str = "The teacher explained how attention heads relate words";

fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.iters > 0, "--iters must be at least 1");
    let started = Instant::now();
    let model = load(&args.model)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let input = bench::synthetic_input(&model, args.seq_len)?;
    let config = model.config();
    println!(
        "model {} ({}, {} layers x {} heads, hidden {}), device {} ({}), {} threads",
        model.name(),
        model.family(),
        config.num_hidden_layers,
        config.num_attention_heads,
        config.hidden_size,
        model.device(),
        model.backend_name(),
        rayon::current_num_threads()
    );
    println!("load_ms {load_ms:.1}");
    let timings = bench::time_forward(&model, &input, 2, args.iters)?;
    let runs: Vec<String> = timings
        .runs_ms
        .iter()
        .map(|ms| format!("{ms:.1}"))
        .collect();
    println!(
        "seq_len {} iters {} runs_ms [{}]",
        args.seq_len,
        args.iters,
        runs.join(", ")
    );
    if args.analyses {
        bench_analyses(&model, &input, args.iters)?;
    }
    #[cfg(feature = "gui")]
    if let Some(frames) = args.overview_frames {
        let analysis = model.run(input.clone(), &[], 5)?;
        let times = bertscope::ui::overview::measure_frame_ms(&analysis, frames);
        println!(
            "overview_frame_ms {:.3} filling {} frames, slowest {:.1} ms ({} layers x {} heads, {} tokens, 1400x900, thumbnails at most {} MB)",
            times.frame_ms,
            times.filling_frames,
            times.slowest_filling_ms,
            analysis.layers(),
            analysis.heads(),
            analysis.len(),
            analysis.layers()
                * analysis.heads()
                * bertscope::views::overview::THUMBNAIL_CELLS.min(analysis.len()).pow(2)
                * 4
                / 1_000_000
        );
    }
    #[cfg(feature = "gui")]
    if let Some(keys) = args.keystroke {
        let launch = bertscope::app::LaunchOptions {
            model: Some(args.model.model.clone()),
            text: Some(KEYSTROKE_TEXT.to_owned()),
            device: args.model.device.parse()?,
            ..Default::default()
        };
        let times = bertscope::app::keystroke::measure_keystroke_ms(launch, keys.max(1))?;
        let runs: Vec<String> = times.iter().map(|ms| format!("{ms:.1}")).collect();
        println!("keystrokes {} runs_ms [{}]", times.len(), runs.join(", "));
        println!("keystroke_ms {:.3}", bench::median(&times));
    }
    println!(
        "compute_ms {:.3} transfer_ms {:.3}",
        bench::median(&timings.compute_ms),
        bench::median(&timings.transfer_ms)
    );
    println!("median_ms {:.3}", timings.median_ms());
    Ok(())
}
