//! `bertscope export`: a figure or data file without opening a window.

use std::path::PathBuf;

use clap::Args;

use bertscope::analysis::stats::Statistic;
use bertscope::analysis::HeadChoice;
use bertscope::export::data::Precision;
use bertscope::export::ExportFormat;
use bertscope::views::View;

use bertscope::model::attribution::{AttributionOptions, DEFAULT_IG_STEPS};
use bertscope::model::generation::Decoding;
use bertscope::model::target::{TargetHead, TargetSpec};
use bertscope::model::LoadedModel;
use bertscope::views::attribution::Method;
use bertscope::worker::generation::{GenerateRequest, GenerationSession, GenerationState};
use bertscope::worker::{ExplainRequest, Explanation};

use super::dump::parse_target;
use super::{input_notes, load, parse_head, parse_layer_head, DecodingArgs, InputArgs, ModelArgs};

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Layer, 0-based (with --view projection, 0 is the embeddings).
    #[arg(long, default_value_t = 0)]
    pub layer: usize,
    /// Head, 0-based, or "mean" for the mean of the layer's heads.
    #[arg(long, default_value = "0", value_parser = parse_head)]
    pub head: HeadChoice,
    /// The picture for .png and .svg.
    #[arg(long, value_enum, default_value_t = View::Heatmap)]
    pub view: View,
    /// The selected token (0-based): its next-token guesses in --view predictions, its path
    /// through the layers in --view projection. Default: the last token, and no path.
    #[arg(long)]
    pub token: Option<usize>,
    /// The second model (folder or Hub id) for --view compare, run on the same device.
    #[arg(long, value_name = "M2")]
    pub compare: Option<String>,
    /// The second model's layer with --view compare; default: the layer at --layer's relative
    /// depth.
    #[arg(long, requires = "compare")]
    pub compare_layer: Option<usize>,
    /// With --view heatmap: attention rollout through the layers up to --layer instead of a head.
    #[arg(long, conflicts_with = "norms")]
    pub rollout: bool,
    /// With --view heatmap: norm-based attention ‖α·f(x)‖ (Kobayashi et al. 2020) of the head;
    /// with --view overview: of every head.
    #[arg(long)]
    pub norms: bool,
    /// With --view heatmap: attention flow (Abnar & Zuidema 2020) into these tokens (0-based,
    /// comma-separated) through the layers up to --layer, instead of a head.
    #[arg(long, value_delimiter = ',', value_name = "I", conflicts_with_all = ["rollout", "norms"])]
    pub flow_to: Vec<usize>,
    /// Heads to ablate, LAYER:HEAD comma-separated (0-based), as in dump.
    #[arg(long, value_delimiter = ',', value_parser = parse_layer_head, value_name = "L:H")]
    pub ablate: Vec<(usize, usize)>,
    /// Words instead of subword pieces (heatmap, lines, overview, heads, projection, attribution
    /// and the data files): attention to a word summed over its pieces, from a word the mean, as
    /// dump --words.
    #[arg(long)]
    pub words: bool,
    /// The statistic that colours --view heads.
    #[arg(long, value_enum, default_value_t = Statistic::Entropy)]
    pub statistic: Statistic,
    /// The second model's head with --view compare, or "mean".
    #[arg(long, default_value = "mean", value_parser = parse_head, requires = "compare")]
    pub compare_head: HeadChoice,
    /// PNG scale: 1, 2 or 4.
    #[arg(long, default_value_t = 2.0)]
    pub scale: f32,
    /// The view's size in points, WIDTHxHEIGHT (e.g. 900x640; the caption comes on top), as a
    /// window that size shows it. Default: the view's natural size.
    #[arg(long, value_parser = parse_size, value_name = "WxH")]
    pub size: Option<(f32, f32)>,
    /// Output file; its extension picks the format (.png .svg .json .csv .npy .npz). With
    /// --all-heads, a folder.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Write a heatmap of every layer and head, and the overview, into the folder --out.
    #[arg(long)]
    pub all_heads: bool,
    /// The number type of the attention maps in a .npz (f16: half the size).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// The figures' format with --all-heads.
    #[arg(long, value_enum, default_value_t = FigureFormat::Png, requires = "all_heads")]
    pub format: FigureFormat,
    /// The attribution method --view attribution shows.
    #[arg(long, value_enum, default_value_t = Method::GradXInput)]
    pub method: Method,
    /// The logit --view attribution, patching and logit-attribution explain (as dump's
    /// --target); logit-attribution takes next:I[:TOKEN] (default: after --token, else the
    /// last token).
    #[arg(long, value_parser = parse_target)]
    pub target: Option<TargetSpec>,
    /// The corrupted text for --view patching.
    #[arg(long)]
    pub corrupt: Option<String>,
    /// The corrupted sentence B, for pairs.
    #[arg(long)]
    pub corrupt_b: Option<String>,
    /// How --view generate processes the next token's distribution.
    #[command(flatten)]
    pub decoding: DecodingArgs,
}

/// The smallest and largest side `--size` takes, in points.
const SIZES: std::ops::RangeInclusive<u32> = 100..=10_000;

/// Parses `WxH`, a figure's size in points.
fn parse_size(text: &str) -> Result<(f32, f32), String> {
    let bad = || {
        format!(
            "'{text}' is not WIDTHxHEIGHT in points, e.g. 900x640 (each {} to {})",
            SIZES.start(),
            SIZES.end()
        )
    };
    let (width, height) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |side: &str| {
        side.trim()
            .parse::<u32>()
            .ok()
            .filter(|side| SIZES.contains(side))
            .ok_or_else(bad)
    };
    Ok((side(width)? as f32, side(height)? as f32))
}

/// Figure file formats.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FigureFormat {
    /// PNG.
    Png,
    /// SVG.
    Svg,
}

impl ExportArgs {
    /// The figure the flags ask for: the view with its parameters, from this model's run
    /// `analysis` (and the second model's `other`, for --view compare).
    pub fn figure(
        &self,
        analysis: &bertscope::model::Analysis,
        other: Option<&bertscope::model::Analysis>,
    ) -> anyhow::Result<bertscope::views::Figure> {
        use bertscope::views::heatmap::{Heatmap, MapKind};
        use bertscope::views::{
            attribution, compare, embeddings, head_stats, lens, lines, logit_attribution, overview,
            patching, predictions, projection, query_key, train, Figure,
        };
        let kind = if self.rollout {
            MapKind::Rollout
        } else if !self.flow_to.is_empty() {
            MapKind::Flow(self.flow_to.clone())
        } else if self.norms {
            MapKind::Norms
        } else {
            MapKind::Attention
        };
        Ok(match self.view {
            View::Heatmap => Figure::Heatmap(Heatmap {
                layer: self.layer,
                head: self.head,
                kind,
                fixed_scale: false,
            }),
            View::Lines => Figure::Lines(lines::Lines {
                layer: self.layer,
                kind,
                ..lines::Lines::default()
            }),
            View::Overview => Figure::Overview(overview::Overview { norms: self.norms }),
            View::Heads => Figure::Heads(head_stats::HeadStatsView {
                statistic: self.statistic,
            }),
            View::Projection => Figure::Projection(projection::ProjectionView {
                layer: self.layer,
                token: self.token,
            }),
            View::Predictions => {
                Figure::Predictions(predictions::PredictionsView { token: self.token })
            }
            View::Lens => Figure::Lens(lens::LensView { token: self.token }),
            View::Embeddings => Figure::Embeddings(embeddings::EmbeddingsView),
            View::QueryKey => {
                let HeadChoice::Head(head) = self.head else {
                    anyhow::bail!("the query·key figure shows one head, not the mean")
                };
                Figure::QueryKey(query_key::QueryKeyView {
                    layer: self.layer,
                    head,
                    query: self.token.unwrap_or(0),
                })
            }
            View::Attribution => Figure::Attribution(attribution::AttributionView {
                method: self.method,
                words: self.words,
            }),
            View::Patching => Figure::Patching(patching::PatchingView),
            View::LogitAttribution => {
                Figure::LogitAttribution(logit_attribution::LogitAttributionView)
            }
            // The decoding comes from the flags and the checkpoint's defaults, in `run`.
            View::Generate => Figure::Generate(Default::default()),
            View::Train => Figure::Train(train::TrainView),
            View::Compare => {
                let other = other.ok_or_else(|| {
                    anyhow::anyhow!("--view compare needs a second model: --compare M2")
                })?;
                Figure::Compare(compare::CompareView {
                    layer: self.layer,
                    head: self.head,
                    other_layer: self.compare_layer.unwrap_or_else(|| {
                        bertscope::analysis::compare::aligned_layer(
                            self.layer,
                            analysis.layers(),
                            other.layers(),
                        )
                    }),
                    other_head: self.compare_head,
                })
            }
        })
    }
}

/// Runs `export`.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    // Fail on a bad path or extension before spending time on the model.
    check_request(&args)?;
    let model = load(&args.model)?;
    let mut request = args.input.request();
    request.ablated_heads = args.ablate.clone();
    request.value_norms = args.norms;
    request.lens = args.view == View::Lens;
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
    let lens = if args.view == View::Lens {
        Some(model.logit_lens(&analysis, 5)?)
    } else {
        None
    };
    let embeddings = if args.view == View::Embeddings {
        Some(model.embedding_breakdown(&analysis)?)
    } else {
        None
    };
    // The predictions of an ablated run show what changed: the same input with every head on.
    let intact = if args.view == View::Predictions && !request.ablated_heads.is_empty() {
        let mut intact = request.clone();
        intact.ablated_heads.clear();
        Some(model.analyze(&intact)?)
    } else {
        None
    };
    let explained = explanation(&args, &model)?;
    let generation = next_token(&args, &model)?;
    let predicting: Vec<bertscope::model::HeadKind> = model.head_kinds().collect();
    // A folder `finetune` wrote keeps its run, which `--view train` draws.
    let training = if args.view == View::Train {
        let log = std::path::Path::new(&args.model.model).join("training_log.json");
        anyhow::ensure!(
            log.is_file(),
            "--view train draws a fine-tuning run: give --model a folder `bertscope finetune` wrote (it has training_log.json)"
        );
        Some(bertscope::model::finetune::TrainingProgress::from_log(
            &log,
        )?)
    } else {
        None
    };
    let data = bertscope::export::ModelData {
        training: training.as_ref(),
        generation: generation.as_ref().map(|(state, _)| state),
        attribution: match &explained {
            Some(Explanation::Attribution(attribution)) => Some(attribution),
            _ => None,
        },
        patching: match &explained {
            Some(Explanation::Patching(patching)) => Some(patching),
            _ => None,
        },
        logit_attribution: match &explained {
            Some(Explanation::LogitAttribution(parts)) => Some(parts),
            _ => None,
        },
        lens: lens.as_deref(),
        embeddings: embeddings.as_ref(),
        predicting: &predicting,
        mask: model.tokenizer().mask_token(),
        intact: intact.as_ref(),
        comparison: comparison
            .as_ref()
            .map(|(other, analysis)| (other.name(), analysis)),
    };
    let mut figure = args.figure(&analysis, comparison.as_ref().map(|(_, analysis)| analysis))?;
    if let (bertscope::views::Figure::Generate(view), Some((_, decoding))) =
        (&mut figure, &generation)
    {
        view.decoding = *decoding;
    }
    let export = bertscope::export::Export {
        figure,
        scale: args.scale,
        precision: args.precision,
        // The attribution figure sums its own values per word; the maps stay pieces.
        words: args.words && args.view != View::Attribution,
        size: args.size,
    };
    let input = &args.input;
    if args.all_heads {
        return write_all_heads(&args, model.name(), &analysis, export);
    }
    bertscope::export::export(
        &args.out,
        (model.name(), &analysis),
        &data,
        (&input.text, input.text_b.as_deref()),
        &export,
    )?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// The next token's distribution after the text that --view generate draws, and how it is
/// processed (the flags, then the checkpoint's defaults); `None` for other views.
fn next_token(
    args: &ExportArgs,
    model: &LoadedModel,
) -> anyhow::Result<Option<(GenerationState, Decoding)>> {
    if args.view != View::Generate {
        return Ok(None);
    }
    let decoding = args
        .decoding
        .request()
        .resolve(model.generation_defaults())?;
    let request = GenerateRequest {
        prompt: args.input.text.clone(),
        keep: usize::MAX,
        step: false,
        decoding,
        seed: args.decoding.seed.unwrap_or(0),
    };
    let update = GenerationSession::answer(&mut None, model, &request)?;
    let state = GenerationState {
        prompt_ids: update.prompt_ids,
        prompt_tokens: update.prompt_tokens,
        text: update.text,
        upcoming: update.upcoming.map(std::sync::Arc::new),
        ended: update.ended,
        ..GenerationState::default()
    };
    Ok(Some((state, decoding)))
}

/// The explanation --view attribution, patching or logit-attribution draws, computed now.
fn explanation(args: &ExportArgs, model: &LoadedModel) -> anyhow::Result<Option<Explanation>> {
    let text = (args.input.text.clone(), args.input.text_b.clone());
    let target = args.target.clone().unwrap_or_default();
    let request = match args.view {
        View::Attribution => ExplainRequest::Attribution {
            text,
            options: AttributionOptions {
                target,
                ig_steps: DEFAULT_IG_STEPS,
                occlusion: true,
            },
        },
        View::Patching => {
            let corrupt = args.corrupt.clone().ok_or_else(|| {
                anyhow::anyhow!("--view patching needs the corrupted text: --corrupt TEXT")
            })?;
            ExplainRequest::Patching {
                clean: text,
                corrupt: (
                    corrupt,
                    args.corrupt_b.clone().or(args.input.text_b.clone()),
                ),
                target,
            }
        }
        View::LogitAttribution => ExplainRequest::LogitAttribution {
            text,
            target: TargetSpec {
                head: Some(TargetHead::NextToken),
                position: target.position.or(args.token),
                ..target
            },
        },
        _ => return Ok(None),
    };
    Ok(Some(request.run(model, &mut |_, _| true)?))
}

/// Checks the output path and the flags that go together, before the model loads.
fn check_request(args: &ExportArgs) -> anyhow::Result<()> {
    if args.all_heads {
        anyhow::ensure!(
            !args.out.is_file(),
            "{}: is a file; --all-heads writes into a folder",
            args.out.display()
        );
    } else {
        let format = ExportFormat::from_path(&args.out)?;
        anyhow::ensure!(
            args.size.is_none() || matches!(format, ExportFormat::Png | ExportFormat::Svg),
            "--size applies to figures (.png, .svg), not to data files"
        );
    }
    anyhow::ensure!(
        args.compare.is_some() || args.view != View::Compare,
        "--view compare needs a second model: --compare M2"
    );
    Ok(())
}

/// `--all-heads`: a heatmap of every layer and head, and the overview, into the folder --out.
fn write_all_heads(
    args: &ExportArgs,
    model: &str,
    analysis: &bertscope::model::Analysis,
    export: bertscope::export::Export,
) -> anyhow::Result<()> {
    let input = &args.input;
    let format = match args.format {
        FigureFormat::Png => ExportFormat::Png,
        FigureFormat::Svg => ExportFormat::Svg,
    };
    let progress = |done: usize, total: usize| {
        eprint!("\rwriting figures: {done}/{total}");
    };
    let word_level = if args.words {
        let words = bertscope::analysis::words::words(analysis);
        Some(
            bertscope::analysis::words::word_analysis(analysis, &words)
                .ok_or_else(|| anyhow::anyhow!("the captured maps could not be copied"))?,
        )
    } else {
        None
    };
    let export = bertscope::export::Export {
        words: false,
        ..export
    };
    let written = bertscope::export::export_all_heads(
        &args.out,
        format,
        (model, word_level.as_ref().unwrap_or(analysis)),
        (&input.text, input.text_b.as_deref()),
        &export,
        &progress,
    );
    eprintln!();
    eprintln!("wrote {} figures into {}", written?, args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_width_by_height_within_bounds() {
        assert_eq!(parse_size("900x640"), Ok((900.0, 640.0)));
        assert_eq!(parse_size(" 1200 X 800 "), Ok((1200.0, 800.0)));
        for bad in [
            "900",
            "900x",
            "x640",
            "0x640",
            "900x99999",
            "wide x tall",
            "-5x10",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains("is not WIDTHxHEIGHT"), "{bad}: {err}");
        }
    }
}
