//! `bertscope dump`: everything a run captured, as JSON.

use std::path::PathBuf;

use clap::Args;

use bertscope::export::dump::{DumpDocument, Extra, Extras};
use bertscope::model::attribution::DEFAULT_IG_STEPS;
use bertscope::model::target::TargetSpec;

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
    /// prediction head after every layer, at each mask or a causal LM's last token), embeddings (the
    /// sizes of the input embeddings' parts), head-stats (Clark et al.'s statistics of every
    /// head), attribution (which tokens made the target logit: gradient × input, gradient
    /// norm, integrated gradients, occlusion), patching (activation patching from --corrupt),
    /// logit-attribution (the target logit by layer and head, for pre-norm causal LMs).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub with: Vec<Extra>,
    /// The logit that attribution, patching and logit-attribution explain: mlm:I[:TOKEN],
    /// next:I[:TOKEN], label[:NAME], answer-start[:I], answer-end[:I] or ner:I[:LABEL]
    /// (positions are 0-based tokens; left out, the defaults: the first mask, the last token,
    /// the top prediction). Default: the first head the model has of label, answer-start, mlm,
    /// ner, next.
    #[arg(long, value_parser = parse_target)]
    pub target: Option<TargetSpec>,
    /// Integrated-gradients steps (Gauss–Legendre, as Captum's default).
    #[arg(long, default_value_t = DEFAULT_IG_STEPS, value_parser = parse_steps)]
    pub ig_steps: usize,
    /// The corrupted text for --with patching; it must tokenize to as many tokens as --text.
    #[arg(long)]
    pub corrupt: Option<String>,
    /// The corrupted sentence B, for pairs.
    #[arg(long)]
    pub corrupt_b: Option<String>,
    /// The output token (0-based) that --with flow measures the flow into.
    #[arg(long, default_value_t = 0)]
    pub flow_to: usize,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Parses `--target`.
pub fn parse_target(text: &str) -> Result<TargetSpec, String> {
    text.parse().map_err(|err: bertscope::model::ModelError| {
        err.to_string()
            .split_once(": ")
            .map_or(err.to_string(), |(_, why)| why.to_owned())
    })
}

/// Parses `--ig-steps`: 1 to 1000.
fn parse_steps(text: &str) -> Result<usize, String> {
    text.parse()
        .ok()
        .filter(|steps| (1..=1000).contains(steps))
        .ok_or_else(|| format!("'{text}' is not a number of steps from 1 to 1000"))
}

/// Runs `dump`.
pub fn run(args: DumpArgs) -> anyhow::Result<()> {
    let model = load(&args.model)?;
    let extras = Extras {
        with: args.with.clone(),
        flow_to: args.flow_to,
        words: args.run.words,
        texts: (args.input.text.clone(), args.input.text_b.clone()),
        target: args.target.clone().unwrap_or_default(),
        ig_steps: args.ig_steps,
        corrupt: args.corrupt.clone().map(|text| {
            (
                text,
                args.corrupt_b.clone().or_else(|| args.input.text_b.clone()),
            )
        }),
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
