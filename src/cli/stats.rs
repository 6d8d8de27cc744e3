//! `bertscope stats`: head statistics over a corpus, or a shard of it (`--shard K/N`), and
//! `stats merge`, which adds the shards' parts into one report.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use bertscope::analysis::stats::{CorpusStats, PartialReport, Shard, Statistic};

use super::{load, write_output, ModelArgs};

/// `stats`, or `stats merge`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct StatsCommandLine {
    #[command(subcommand)]
    pub merge: Option<StatsSubcommand>,
    #[command(flatten)]
    pub run: StatsArgs,
}

/// What `stats` does besides running a corpus.
#[derive(clap::Subcommand)]
pub enum StatsSubcommand {
    /// Combine the parts `stats --shard K/N` wrote into the report one run over the whole corpus
    /// gives.
    Merge(MergeArgs),
}

#[derive(Args)]
pub struct MergeArgs {
    /// The parts, one per shard (part-*.json).
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// Write here instead of JSON on standard output: .json, .csv, or a .png or .svg figure.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// The statistic that colours a figure.
    #[arg(long, value_enum, default_value_t = Statistic::Entropy)]
    pub statistic: Statistic,
    /// PNG figure scale: 1, 2 or 4.
    #[arg(long, default_value_t = 2.0)]
    pub scale: f32,
}

/// `stats` over a corpus. The model's options are spelled here rather than flattened from
/// [`ModelArgs`], so that `stats merge` can go without them.
#[derive(Args)]
pub struct StatsArgs {
    /// A local model folder (Hugging Face layout) or a Hub id such as bert-base-uncased.
    #[arg(long, short, required = true)]
    pub model: Option<String>,
    /// cpu, cuda or metal (GPU back-ends need the matching cargo feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Run candle's tensor ops (the GPU path) even on the CPU.
    #[arg(long)]
    pub candle: bool,
    /// A UTF-8 text file: one text per line (a tab splits sentence A from B); blank lines are
    /// skipped.
    #[arg(long, required = true)]
    pub corpus: Option<PathBuf>,
    /// Write here instead of JSON on standard output: .json, .csv (a row per head), or a .png
    /// or .svg figure of the layers × heads grid.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Statistics of words (merged subword pieces), as the app's Words switch shows them.
    #[arg(long)]
    pub words: bool,
    /// The statistic that colours a figure.
    #[arg(long, value_enum, default_value_t = Statistic::Entropy)]
    pub statistic: Statistic,
    /// PNG figure scale: 1, 2 or 4.
    #[arg(long, default_value_t = 2.0)]
    pub scale: f32,
    /// Run only shard K of N (lines i, 0-based and blank lines counted, with i mod N = K − 1)
    /// and write a partial report of sums to --out (.json), for `stats merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
}

/// Runs `stats` or `stats merge`.
pub fn run(args: StatsCommandLine) -> anyhow::Result<()> {
    let StatsArgs {
        model,
        device,
        candle,
        corpus,
        ..
    } = &args.run;
    match (args.merge, model, corpus) {
        (Some(StatsSubcommand::Merge(merge)), _, _) => run_merge(merge),
        (None, Some(model), Some(corpus)) => {
            let model = ModelArgs {
                model: model.clone(),
                device: device.clone(),
                candle: *candle,
            };
            let corpus = corpus.clone();
            run_corpus(&args.run, &model, &corpus)
        }
        _ => anyhow::bail!("stats needs --model M --corpus FILE, or: stats merge PARTS"),
    }
}

/// Runs `stats merge`.
fn run_merge(args: MergeArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.out {
        bertscope::export::corpus_report_format(path)?;
        bertscope::export::check_scale(args.scale)?;
    }
    let parts = args
        .parts
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read the part", path.display()))?;
            serde_json::from_str::<PartialReport>(&text).map_err(|err| {
                anyhow::anyhow!(
                    "{}: not a part written by stats --shard ({})",
                    path.display(),
                    err.to_string().lines().next().unwrap_or_default()
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stats = CorpusStats::merge(&parts).map_err(anyhow::Error::msg)?;
    let first = &parts[0];
    write_report(
        &stats.report(),
        args.out.as_deref(),
        (&first.model, &first.corpus),
        (args.statistic, args.scale),
    )
}

/// Writes a report to `out` (its extension picks the format) or as JSON to standard output.
fn write_report(
    report: &bertscope::analysis::stats::CorpusReport,
    out: Option<&std::path::Path>,
    (model, corpus): (&str, &str),
    (statistic, scale): (Statistic, f32),
) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            bertscope::export::export_corpus_report(
                path,
                (model, corpus),
                report,
                statistic,
                scale,
            )?;
            eprintln!("wrote {}", path.display());
            Ok(())
        }
        None => write_output(None, |out: &mut dyn Write| {
            bertscope::export::data::corpus_report(report, false, out)
        }),
    }
}

/// SHA-256 of files, in order, as hex.
fn sha256_of(paths: &[&std::path::Path]) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for path in paths {
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot read it to fingerprint it", path.display()))?;
        std::io::copy(&mut file, &mut hasher)
            .with_context(|| format!("{}: cannot read it to fingerprint it", path.display()))?;
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// SHA-256 of a model's config.json and weight files.
fn model_sha256(model: &ModelArgs) -> anyhow::Result<String> {
    use bertscope::model::source::{resolve, WeightFiles};
    let files = resolve(
        &bertscope::model::ModelSource::parse(&model.model)?,
        &mut |_| {},
    )?;
    let mut paths = vec![files.config.as_path()];
    match &files.weights {
        WeightFiles::Single(path) => paths.push(path),
        WeightFiles::Sharded { shards, .. } => paths.extend(shards.iter().map(PathBuf::as_path)),
    }
    sha256_of(&paths)
}

/// Runs `stats` over a corpus (or one shard of it).
fn run_corpus(
    args: &StatsArgs,
    model_args: &ModelArgs,
    corpus: &std::path::Path,
) -> anyhow::Result<()> {
    // Fail on a bad extension before spending time on the corpus.
    if let Some(path) = &args.out {
        if args.shard.is_some() {
            anyhow::ensure!(
                path.extension()
                    .is_some_and(|ext| ext.eq_ignore_ascii_case("json")),
                "{}: a shard's part is JSON; give a path ending in .json",
                path.display()
            );
        } else {
            bertscope::export::corpus_report_format(path)?;
            bertscope::export::check_scale(args.scale)?;
        }
    }
    let text = std::fs::read_to_string(corpus)
        .with_context(|| format!("{}: cannot read the corpus", corpus.display()))?;
    let mut lines = bertscope::analysis::stats::corpus_requests(&text);
    if let Some(shard) = args.shard {
        lines.retain(|(number, _)| shard.holds(*number));
    } else {
        anyhow::ensure!(
            !lines.is_empty(),
            "{}: no text in the corpus",
            corpus.display()
        );
    }
    let model = load(model_args)?;
    let mut stats = CorpusStats::default();
    let started = Instant::now();
    let mut statistics = Duration::ZERO;
    let mut reported = started;
    // Lines longer than the model's positions are cut, as dump cuts its input: (line, tokens
    // dropped).
    let mut cut: Vec<(usize, usize)> = Vec::new();
    for (done, (number, request)) in lines.iter().enumerate() {
        let analysis = model.analyze(request).map_err(|err| {
            // The error goes on a line of its own, not after the progress.
            if done > 0 {
                eprintln!();
            }
            anyhow::Error::from(err).context(format!("{} line {number}", corpus.display()))
        })?;
        if analysis.dropped_tokens > 0 {
            cut.push((*number, analysis.dropped_tokens));
        }
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
    if !cut.is_empty() {
        eprintln!("{}", cut_note(&cut, model.config().max_tokens()));
    }
    let corpus_name = corpus
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    if let Some(shard) = args.shard {
        let fingerprints = (sha256_of(&[corpus])?, model_sha256(model_args)?);
        let part = stats.partial(
            shard,
            (model.name(), &corpus_name),
            fingerprints,
            args.words,
        );
        return write_output(args.out.as_deref(), |out: &mut dyn Write| {
            serde_json::to_writer(&mut *out, &part).map_err(std::io::Error::other)?;
            out.write_all(b"\n")
        });
    }
    write_report(
        &stats.report(),
        args.out.as_deref(),
        (model.name(), &corpus_name),
        (args.statistic, args.scale),
    )
}

/// How many lines to name in the note on cut lines.
const CUT_LINES_NAMED: usize = 5;

/// The note on corpus lines cut to the model's `max_tokens`: how many, which (the first few),
/// and how many tokens their statistics leave out.
fn cut_note(cut: &[(usize, usize)], max_tokens: usize) -> String {
    let mut named: Vec<String> = cut
        .iter()
        .take(CUT_LINES_NAMED)
        .map(|(line, _)| line.to_string())
        .collect();
    if cut.len() > CUT_LINES_NAMED {
        named.push("…".to_owned());
    }
    let dropped: usize = cut.iter().map(|(_, dropped)| dropped).sum();
    let lines = if cut.len() == 1 {
        "line was"
    } else {
        "lines were"
    };
    format!(
        "note: {} corpus {lines} cut to the model's {max_tokens} tokens (line {}); their statistics leave out {dropped} token(s)",
        cut.len(),
        named.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_note_names_the_first_lines_and_counts_every_token() {
        assert_eq!(
            cut_note(&[(3, 7)], 512),
            "note: 1 corpus line was cut to the model's 512 tokens (line 3); their statistics leave out 7 token(s)"
        );
        let many: Vec<(usize, usize)> = (1..=7).map(|line| (line * 2, 1)).collect();
        let note = cut_note(&many, 64);
        assert!(note.starts_with("note: 7 corpus lines were cut"), "{note}");
        assert!(note.contains("(line 2, 4, 6, 8, 10, …)"), "{note}");
        assert!(note.ends_with("leave out 7 token(s)"), "{note}");
    }
}
