//! Opening the desktop app (no subcommand).

use std::path::PathBuf;

use clap::Args;

#[cfg(feature = "gui")]
use bertscope::model::DeviceChoice;
#[cfg(feature = "gui")]
use bertscope::views::View;

use super::parse_layer_head;

/// Options of the desktop app.
#[derive(Args)]
pub struct AppArgs {
    /// A local model folder or a Hub id; default: the last model used, else bert-base-uncased.
    #[arg(long, short)]
    pub model: Option<String>,
    /// Sentence A.
    #[arg(long, short)]
    pub text: Option<String>,
    /// Sentence B, making a pair.
    #[arg(long)]
    pub text_b: Option<String>,
    /// cpu, cuda or metal (GPU back-ends need the matching cargo feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The tab to open.
    #[cfg(feature = "gui")]
    #[arg(long, value_enum)]
    pub view: Option<View>,
    /// Save a PNG of the window once results are drawn, then exit.
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,
    /// A second model (folder or Hub id) to compare with, side by side.
    #[arg(long, value_name = "M2")]
    pub compare: Option<String>,
    /// Heads to switch off from the start, LAYER:HEAD comma-separated (0-based); the Overview
    /// tab switches them too.
    #[arg(long, value_delimiter = ',', value_parser = parse_layer_head, value_name = "L:H")]
    pub ablate: Vec<(usize, usize)>,
    /// Open with words instead of subword pieces (the W key switches).
    #[arg(long)]
    pub words: bool,
    /// What the heatmap, lines and overview show: raw attention, rollout, norms or flow.
    #[cfg(feature = "gui")]
    #[arg(long, value_enum, value_name = "KIND")]
    pub show: Option<bertscope::ui::AttentionKind>,
    /// Open the Heads tab on head statistics over this corpus file (one text per line, a tab
    /// splits a pair), run once the model is loaded.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<PathBuf>,
}

/// Opens the app with the command line's options.
#[cfg(feature = "gui")]
pub fn run(args: AppArgs) -> anyhow::Result<()> {
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
pub fn run(_args: AppArgs) -> anyhow::Result<()> {
    anyhow::bail!("this build has no desktop app (built without the \"gui\" feature); use the dump or bench subcommands")
}
