//! `bertscope dump`: everything a run captured, as JSON.

use std::path::PathBuf;

use clap::Args;

use bertscope::export::dump::{DumpDocument, Extra, Extras};

use super::{input_notes, load, write_output, InputArgs, ModelArgs, RunArgs};

#[derive(Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Write the JSON here instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Analyses to add, comma-separated: rollout (attention rollout after every layer), flow
    /// (attention flow into --flow-to), norms (norm-based attention), logit-lens (the
    /// prediction head after every layer, at each mask or GPT-2's last token), embeddings (the
    /// sizes of the input embeddings' parts), head-stats (Clark et al.'s statistics of every
    /// head).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub with: Vec<Extra>,
    /// The output token (0-based) that --with flow measures the flow into.
    #[arg(long, default_value_t = 0)]
    pub flow_to: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs `dump`.
pub fn run(args: DumpArgs) -> anyhow::Result<()> {
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
