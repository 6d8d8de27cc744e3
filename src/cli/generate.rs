//! `bertscope generate`: a causal model writes, one token at a time, with transformers' logits
//! processors; the text streams to standard output and `--out` keeps every step as JSON.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use bertscope::export::write_atomically;
use bertscope::model::generation::{generate, GenerateOptions};

use super::{load, DecodingArgs, ModelArgs};

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt to continue.
    #[arg(long, short)]
    pub text: String,
    /// How many tokens to generate at most (cut to the model's positions, with a note).
    #[arg(long, default_value_t = 20)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    /// Stop once the generated text contains this.
    #[arg(long)]
    pub stop: Option<String>,
    /// Also write every step as JSON here (.json): tokens, probabilities before and after the
    /// processors, the ten most probable tokens and each step's attention rows.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// Runs `generate`.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.out {
        anyhow::ensure!(
            path.extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("json")),
            "{}: generate writes JSON; give a path ending in .json",
            path.display()
        );
    }
    anyhow::ensure!(
        !args.text.is_empty(),
        "the prompt is empty; give --text with at least one word to continue"
    );
    anyhow::ensure!(
        args.max_new_tokens > 0,
        "--max-new-tokens is 0; ask for at least one token"
    );
    let request = args.decoding.request();
    // Options that contradict each other are refused before the model loads.
    request.resolve(&Default::default())?;
    let model = load(&args.model)?;
    model.generation_head()?;
    let defaults = model.generation_defaults();
    let decoding = request.resolve(defaults)?;
    if !defaults.not_applied.is_empty() {
        eprintln!(
            "note: generation_config.json asks for {}, which bertscope does not apply",
            defaults.not_applied.join(", ")
        );
    }
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        decoding,
        seed: args.decoding.seed.unwrap_or(0),
        stop: args.stop.clone(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // A reader that stopped early (`| head`) ends the printing, not the generation.
    let mut printing = write!(out, "{}", args.text)
        .and_then(|()| out.flush())
        .is_ok();
    let generation = generate(&model, &args.text, &options, &mut |piece| {
        printing = printing && write!(out, "{piece}").and_then(|()| out.flush()).is_ok();
    })?;
    if printing {
        let _ = writeln!(out);
    }
    for note in &generation.notes {
        eprintln!("note: {note}");
    }
    if let Some(path) = &args.out {
        write_atomically(path, |writer| {
            serde_json::to_writer(&mut *writer, &generation).map_err(std::io::Error::other)?;
            writeln!(writer)
        })
        .with_context(|| format!("{}: cannot write the generation", path.display()))?;
    }
    Ok(())
}
