//! `bertscope stats`: head statistics over a corpus.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use bertscope::analysis::stats::Statistic;

use super::{load, write_output, ModelArgs};

#[derive(Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A UTF-8 text file: one text per line (a tab splits sentence A from B); blank lines are
    /// skipped.
    #[arg(long)]
    pub corpus: PathBuf,
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
}

/// Runs `stats`.
pub fn run(args: StatsArgs) -> anyhow::Result<()> {
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
    // Lines longer than the model's positions are cut, as dump cuts its input: (line, tokens
    // dropped).
    let mut cut: Vec<(usize, usize)> = Vec::new();
    for (done, (number, request)) in lines.iter().enumerate() {
        let analysis = model.analyze(request).map_err(|err| {
            // The error goes on a line of its own, not after the progress.
            if done > 0 {
                eprintln!();
            }
            anyhow::Error::from(err).context(format!("{} line {number}", args.corpus.display()))
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
