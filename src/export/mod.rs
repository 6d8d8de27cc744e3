//! Files made from captured data, written so that a failure never leaves a partial file behind:
//! figures (PNG, SVG), raw data (JSON, CSV, `.npy`, `.npz`) and the `dump` document.

pub mod data;
pub mod dump;
pub mod figure;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;

use crate::analysis::{compare, words, HeadChoice};
use crate::model::Analysis;

/// Which picture a figure export draws.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
pub enum FigureView {
    /// One head (or the mean of a layer) as a heatmap.
    #[default]
    Heatmap,
    /// Token-to-token lines of one layer.
    Lines,
    /// Every layer × head.
    Overview,
    /// Every head's statistics (Clark et al.), coloured by `statistic`.
    Heads,
    /// Token hidden states of one layer (`layer`; 0 = embeddings) in 2-D.
    Projection,
    /// What the model's heads predict.
    Predictions,
    /// The logit lens at the selected position (`--token`; default: the first mask, or a causal
    /// LM's last token).
    Lens,
    /// The sizes of each token's input embedding and its parts.
    Embeddings,
    /// The query and key vectors behind one attention row (`--token`, default 0), of `--layer`
    /// and `--head`.
    #[value(name = "query-key")]
    QueryKey,
    /// Two models side by side (needs a second model).
    Compare,
}

/// What to export, beyond the analysis itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// The picture, for PNG and SVG.
    pub view: FigureView,
    /// Layer (0-based).
    pub layer: usize,
    /// Head (0-based) or the layer's mean.
    pub head: HeadChoice,
    /// PNG scale: 1, 2 or 4.
    pub scale: f32,
    /// Heads left out of the lines figure.
    pub hidden_heads: Vec<usize>,
    /// Lines figure: weights below this are not drawn.
    pub line_threshold: f32,
    /// Heatmap colours over 0–1 instead of 0–max.
    pub fixed_scale: bool,
    /// The number type of `.npz` attention maps.
    pub precision: data::Precision,
    /// Predictions figure: the token whose next token is shown (default: the last).
    pub selected_token: Option<usize>,
    /// Compare figure: the second model's layer (`None`: the layer at `layer`'s relative depth).
    pub compare_layer: Option<usize>,
    /// Compare figure: the second model's head (or mean).
    pub compare_head: HeadChoice,
    /// Heads figure: the statistic that colours the grid.
    pub statistic: crate::analysis::stats::Statistic,
    /// Heatmap figure: attention rollout through the layers up to `layer` instead of one head.
    pub rollout: bool,
    /// Heatmap figure: norm-based attention of the head instead of its weights.
    pub norms: bool,
    /// Heatmap figure: attention flow into these tokens through the layers up to `layer`
    /// instead of one head (rows of other tokens are left empty).
    pub flow_into: Vec<usize>,
    /// Lens figure: the logit lens of the run, at every position it read.
    pub lens: Option<Vec<crate::model::LensPosition>>,
    /// Embeddings figure: the run's embedding breakdown.
    pub embeddings: Option<crate::model::EmbeddingBreakdown>,
    /// Words instead of subword pieces (Clark et al.: attention to a word summed over its
    /// pieces, from a word the mean), in the figures and data of attention.
    pub words: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            view: FigureView::Heatmap,
            layer: 0,
            head: HeadChoice::Head(0),
            scale: 2.0,
            hidden_heads: Vec::new(),
            line_threshold: 0.1,
            fixed_scale: false,
            precision: data::Precision::F32,
            selected_token: None,
            compare_layer: None,
            compare_head: HeadChoice::Mean,
            statistic: crate::analysis::stats::Statistic::default(),
            rollout: false,
            norms: false,
            flow_into: Vec::new(),
            lens: None,
            embeddings: None,
            words: false,
        }
    }
}

impl FigureView {
    /// The name `--view` takes.
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default()
    }

    /// Whether the figure can show words instead of pieces: the figures of attention and of
    /// hidden states of one model. Predictions, the lens, embeddings and query·key belong to
    /// pieces, and two models split a text into different words.
    pub fn reads_words(self) -> bool {
        matches!(
            self,
            Self::Heatmap | Self::Lines | Self::Overview | Self::Heads | Self::Projection
        )
    }
}

/// The file formats, chosen by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A raster figure.
    Png,
    /// A vector figure.
    Svg,
    /// Every attention map and the tokens (the `dump` document).
    Json,
    /// One head's matrix.
    Csv,
    /// Every attention map as a NumPy array.
    Npy,
    /// Every attention map and the tokens as a compressed NumPy archive.
    Npz,
}

impl ExportFormat {
    /// The format a path's extension asks for.
    pub fn from_path(path: &Path) -> anyhow::Result<Self> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        Ok(match extension.as_str() {
            "png" => Self::Png,
            "svg" => Self::Svg,
            "json" => Self::Json,
            "csv" => Self::Csv,
            "npy" => Self::Npy,
            "npz" => Self::Npz,
            _ => anyhow::bail!(
                "{}: unknown file type; use .png or .svg for a figure, .json, .csv, .npy or .npz for data",
                path.display()
            ),
        })
    }
}

/// Checks a PNG figure's scale: 1, 2 or 4.
pub fn check_scale(scale: f32) -> anyhow::Result<()> {
    anyhow::ensure!(
        [1.0, 2.0, 4.0].contains(&scale),
        "scale {scale} is not offered; use 1, 2 or 4"
    );
    Ok(())
}

/// The format of a corpus report file, as [`export_corpus_report`] writes it: JSON, CSV, or a
/// PNG or SVG figure.
pub fn corpus_report_format(path: &Path) -> anyhow::Result<ExportFormat> {
    match ExportFormat::from_path(path) {
        Ok(
            format @ (ExportFormat::Json
            | ExportFormat::Csv
            | ExportFormat::Png
            | ExportFormat::Svg),
        ) => Ok(format),
        _ => anyhow::bail!("{}: use a .json, .csv, .png or .svg file", path.display()),
    }
}

/// Checks layer and head against the model's shape, with a message naming the valid range.
pub fn check_layer_head(analysis: &Analysis, layer: usize, head: HeadChoice) -> anyhow::Result<()> {
    let (layers, heads) = (analysis.layers(), analysis.heads());
    anyhow::ensure!(
        layer < layers,
        "layer {layer} is out of range; this model has {layers} layers (0 to {})",
        layers - 1
    );
    if let HeadChoice::Head(head) = head {
        anyhow::ensure!(
            head < heads,
            "head {head} is out of range; this model has {heads} heads per layer (0 to {})",
            heads - 1
        );
    }
    Ok(())
}

/// Writes one export of an analysis to `path` (atomically); the extension picks the format.
/// `model` and the texts go into figure titles and the JSON document.
pub fn export(
    path: &Path,
    model: &str,
    analysis: &Analysis,
    text_a: &str,
    text_b: Option<&str>,
    options: &ExportOptions,
) -> anyhow::Result<()> {
    let never = AtomicBool::new(false);
    export_cancellable(
        path,
        (model, analysis),
        None,
        (text_a, text_b),
        options,
        &never,
    )
}

/// [`export`], abandoned when `cancel` is set: the file is then left as it was (a half-written
/// temporary file is removed) and the error says it was cancelled. `comparison` (the second
/// model's name and analysis) is what the Compare figure sets beside `(model, analysis)`.
pub fn export_cancellable(
    path: &Path,
    (model, analysis): (&str, &Analysis),
    comparison: Option<(&str, &Analysis)>,
    (text_a, text_b): (&str, Option<&str>),
    options: &ExportOptions,
    cancel: &AtomicBool,
) -> anyhow::Result<()> {
    let write_atomically =
        |path: &Path, write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>| {
            write_atomically(path, |out| {
                let mut guarded = CancellableWriter { out, cancel };
                write(&mut guarded)?;
                guarded.check()
            })
        };
    let format = ExportFormat::from_path(path)?;
    let is_figure = matches!(format, ExportFormat::Png | ExportFormat::Svg);
    let words = options.words.then(|| words::words(analysis));
    if words.is_some() && is_figure {
        anyhow::ensure!(
            options.view.reads_words(),
            "the {} figure shows pieces, not words; --words applies to heatmap, lines, overview, heads and projection",
            options.view.name()
        );
    }
    let word_analysis = words
        .as_ref()
        .map(|words| {
            words::word_analysis(analysis, words)
                .ok_or_else(|| anyhow::anyhow!("the captured maps could not be copied"))
        })
        .transpose()?;
    let pieces = analysis;
    let analysis = word_analysis.as_ref().unwrap_or(analysis);
    if is_figure && options.view == FigureView::Projection {
        // Layer 0 is the embeddings, so the last layer's number is the layer count.
        anyhow::ensure!(
            options.layer <= analysis.layers(),
            "layer {} is out of range; the projection has layers 0 (embeddings) to {}",
            options.layer,
            analysis.layers()
        );
    } else {
        check_layer_head(analysis, options.layer, options.head)?;
    }
    for &token in &options.flow_into {
        anyhow::ensure!(
            token < analysis.len(),
            "--flow-to {token} is out of range; the input has {} {} (0 to {})",
            analysis.len(),
            if words.is_some() { "words" } else { "tokens" },
            analysis.len().saturating_sub(1)
        );
    }
    if let Some(token) = options.selected_token {
        anyhow::ensure!(
            token < analysis.len(),
            "token {token} is out of range; the input has {} tokens (0 to {})",
            analysis.len(),
            analysis.len().saturating_sub(1)
        );
    }
    let comparison = if is_figure && options.view == FigureView::Compare {
        let Some((name, other)) = comparison else {
            anyhow::bail!("the compare figure needs a second model (--compare)");
        };
        let layer = options.compare_layer.unwrap_or_else(|| {
            compare::aligned_layer(options.layer, analysis.layers(), other.layers())
        });
        check_layer_head(other, layer, options.compare_head)
            .with_context(|| format!("the second model, {name}"))?;
        Some(figure::CompareSide {
            name,
            analysis: other,
            layer,
            head: options.compare_head,
        })
    } else {
        None
    };
    if format == ExportFormat::Png {
        check_scale(options.scale)?;
    }
    let figure = || {
        let what = match options.view {
            FigureView::Heatmap if options.rollout => {
                format!("attention rollout through layer {}", options.layer)
            }
            FigureView::Heatmap if !options.flow_into.is_empty() => {
                let into: Vec<String> = options
                    .flow_into
                    .iter()
                    .map(|&token| analysis.display_token(token))
                    .collect();
                format!(
                    "attention flow through layer {} into {}",
                    options.layer,
                    into.join(", ")
                )
            }
            FigureView::Heatmap if options.norms => format!(
                "layer {} · {} · norm-based attention ‖α·f(x)‖",
                options.layer, options.head
            ),
            FigureView::Heatmap => format!("layer {} · {}", options.layer, options.head),
            FigureView::Lines => format!("layer {} · attention lines", options.layer),
            FigureView::Overview if options.norms => format!(
                "{} layers × {} heads · norm-based attention ‖α·f(x)‖",
                analysis.layers(),
                analysis.heads()
            ),
            FigureView::Overview => {
                format!("{} layers × {} heads", analysis.layers(), analysis.heads())
            }
            FigureView::Heads => format!("head statistics · {}", options.statistic.name()),
            FigureView::Projection => format!("hidden states, layer {}", options.layer),
            FigureView::Predictions => "predictions".to_owned(),
            FigureView::Lens => "logit lens".to_owned(),
            FigureView::Embeddings => "input embeddings (L2 norms)".to_owned(),
            FigureView::QueryKey => format!(
                "layer {} · {} · query·key of token {}",
                options.layer,
                options.head,
                options.selected_token.unwrap_or(0)
            ),
            FigureView::Compare => "compared".to_owned(),
        };
        let title = match &comparison {
            Some(other) => format!("{model} vs {}", other.name),
            None => model.to_owned(),
        };
        let caption = figure::Caption::new(&title, &what, text_a, text_b);
        anyhow::Ok(match options.view {
            FigureView::Heatmap => {
                use crate::views::heatmap::{Heatmap, MapKind};
                let kind = if options.rollout {
                    MapKind::Rollout
                } else if !options.flow_into.is_empty() {
                    MapKind::Flow(options.flow_into.clone())
                } else if options.norms {
                    MapKind::Norms
                } else {
                    MapKind::Attention
                };
                let combined = match &kind {
                    MapKind::Rollout => {
                        let layers = match &words {
                            Some(words) => words::word_rollout(pieces, words),
                            None => crate::analysis::rollout::rollout(pieces),
                        };
                        Some(layers.into_iter().nth(options.layer).unwrap_or_default())
                    }
                    MapKind::Flow(targets) => {
                        let tokens = analysis.len();
                        let mut values = vec![f32::NAN; tokens * tokens];
                        for &to in targets {
                            let flow = crate::analysis::flow::flow_through(
                                analysis,
                                to,
                                options.layer + 1,
                            );
                            values[to * tokens..][..tokens].copy_from_slice(&flow);
                        }
                        Some(values)
                    }
                    _ => None,
                };
                let view = Heatmap {
                    layer: options.layer,
                    head: options.head,
                    kind,
                    fixed_scale: options.fixed_scale,
                };
                figure::heatmap(analysis, &view, combined.as_deref(), &caption)?
            }
            FigureView::Lines => figure::lines(
                analysis,
                options.layer,
                &options.hidden_heads,
                options.line_threshold,
                &caption,
            ),
            FigureView::Overview => figure::overview(analysis, options.norms, &caption)?,
            FigureView::Heads => figure::heads(
                &crate::analysis::stats::head_stats(analysis),
                options.statistic,
                &caption,
            ),
            FigureView::Projection => {
                let hidden = analysis.hidden_states.to_host()?;
                let projection = crate::analysis::projection::Projection::fit(&hidden);
                figure::projection(
                    analysis,
                    &projection,
                    options.layer,
                    options.selected_token,
                    &caption,
                )
            }
            FigureView::Predictions => {
                figure::predictions(analysis, options.selected_token, &caption)?
            }
            FigureView::Lens => {
                let lens = options.lens.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("the logit lens needs a masked-LM or next-token head")
                })?;
                let at = crate::model::probes::lens_at(lens, options.selected_token).ok_or_else(
                    || {
                        anyhow::anyhow!(
                            "the logit lens reads the mask tokens, and the text has none; type one"
                        )
                    },
                )?;
                let caption = figure::Caption::new(
                    &title,
                    &format!(
                        "logit lens at token {} ({})",
                        at.position,
                        analysis.display_token(at.position)
                    ),
                    text_a,
                    text_b,
                );
                figure::lens(analysis, at, &caption)
            }
            FigureView::QueryKey => {
                let head = match options.head {
                    HeadChoice::Head(head) => head,
                    HeadChoice::Mean => {
                        anyhow::bail!("the query·key figure shows one head, not the mean")
                    }
                };
                let token = options.selected_token.unwrap_or(0);
                anyhow::ensure!(
                    token < analysis.len()
                        && options.layer < analysis.layers()
                        && head < analysis.heads(),
                    "--token, --layer or --head is out of range for this input and model"
                );
                figure::query_key(analysis, options.layer, head, token, &caption)
            }
            FigureView::Embeddings => {
                let parts = options
                    .embeddings
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("the embeddings were not taken apart"))?;
                figure::embeddings(analysis, parts, &caption)
            }
            FigureView::Compare => {
                let this = figure::CompareSide {
                    name: model,
                    analysis,
                    layer: options.layer,
                    head: options.head,
                };
                // Checked above: a compare figure always has its second model.
                let other = comparison
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("no second model"))?;
                figure::compare(&this, other, &caption)
            }
        })
    };
    match format {
        ExportFormat::Png => {
            let png = figure::to_png(&figure()?, options.scale)?;
            write_atomically(path, &mut |out| out.write_all(&png))
        }
        ExportFormat::Svg => {
            let svg = figure::to_svg(&figure()?);
            write_atomically(path, &mut |out| out.write_all(svg.as_bytes()))
        }
        ExportFormat::Json => {
            let document = dump::DumpDocument::new(model, analysis)?;
            write_atomically(path, &mut |out| {
                serde_json::to_writer(&mut *out, &document)?;
                out.write_all(b"\n")
            })
        }
        ExportFormat::Csv => write_atomically(path, &mut |out| {
            data::head_csv(analysis, options.layer, options.head, out)
        }),
        ExportFormat::Npy => write_atomically(path, &mut |out| data::attention_npy(analysis, out)),
        ExportFormat::Npz => write_atomically(path, &mut |out| {
            data::attention_npz(analysis, options.precision, out)
        }),
    }
}

/// A writer that fails once `cancel` is set, so that a cancelled export stops writing and its
/// temporary file is removed.
struct CancellableWriter<'a> {
    out: &'a mut dyn Write,
    cancel: &'a AtomicBool,
}

impl CancellableWriter<'_> {
    fn check(&self) -> std::io::Result<()> {
        if self.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            Err(std::io::Error::other("cancelled"))
        } else {
            Ok(())
        }
    }
}

impl Write for CancellableWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.check()?;
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.check()?;
        self.out.flush()
    }
}

/// Writes one figure per layer and head, `layer{L}-head{H}.{png|svg}` (zero-padded), and the
/// overview, `overview.{png|svg}`, into `folder` (created when missing), in parallel; each file
/// is written atomically. `progress(done, total)` is called after every file. Returns how many
/// files were written.
pub fn export_all_heads(
    folder: &Path,
    format: ExportFormat,
    model: &str,
    analysis: &Analysis,
    (text_a, text_b): (&str, Option<&str>),
    options: &ExportOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> anyhow::Result<usize> {
    use rayon::prelude::{IntoParallelIterator, ParallelIterator};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let extension = match format {
        ExportFormat::Png => "png",
        ExportFormat::Svg => "svg",
        _ => anyhow::bail!("--all-heads writes figures; choose png or svg"),
    };
    anyhow::ensure!(
        !folder.is_file(),
        "{}: is a file; --all-heads needs a folder to write into",
        folder.display()
    );
    std::fs::create_dir_all(folder)
        .with_context(|| format!("{}: cannot create the folder", folder.display()))?;
    let (layers, heads) = (analysis.layers(), analysis.heads());
    let digits = |count: usize| count.saturating_sub(1).to_string().len();
    let mut jobs: Vec<(std::path::PathBuf, ExportOptions)> = vec![(
        folder.join(format!("overview.{extension}")),
        ExportOptions {
            view: FigureView::Overview,
            ..options.clone()
        },
    )];
    for layer in 0..layers {
        for head in 0..heads {
            let name = format!(
                "layer{layer:0lw$}-head{head:0hw$}.{extension}",
                lw = digits(layers),
                hw = digits(heads)
            );
            let head_options = ExportOptions {
                view: FigureView::Heatmap,
                layer,
                head: HeadChoice::Head(head),
                ..options.clone()
            };
            jobs.push((folder.join(name), head_options));
        }
    }
    let total = jobs.len();
    let done = AtomicUsize::new(0);
    jobs.into_par_iter().try_for_each(|(path, options)| {
        export(&path, model, analysis, text_a, text_b, &options)?;
        progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
        anyhow::Ok(())
    })?;
    Ok(total)
}

/// Writes a corpus run's head statistics to `path`, by its extension: the JSON or CSV that
/// `bertscope stats` writes, or a PNG (at `scale`) or SVG figure of the grid coloured by
/// `statistic`; `model` and `corpus` name them in the figure's caption.
pub fn export_corpus_report(
    path: &Path,
    (model, corpus): (&str, &str),
    report: &crate::analysis::stats::CorpusReport,
    statistic: crate::analysis::stats::Statistic,
    scale: f32,
) -> anyhow::Result<()> {
    let format = corpus_report_format(path)?;
    let figure = || {
        let caption = figure::Caption {
            title: format!("{model} · head statistics · {}", statistic.name()),
            text: format!("{corpus}: {} lines, {} tokens", report.lines, report.tokens),
        };
        figure::heads(&report.heads, statistic, &caption)
    };
    match format {
        ExportFormat::Csv => write_atomically(path, |out| data::corpus_report(report, true, out)),
        ExportFormat::Svg => {
            let svg = figure::to_svg(&figure());
            write_atomically(path, |out| out.write_all(svg.as_bytes()))
        }
        ExportFormat::Png => {
            check_scale(scale)?;
            let png = figure::to_png(&figure(), scale)?;
            write_atomically(path, |out| out.write_all(&png))
        }
        // JSON (the formats of attention data are refused above).
        _ => write_atomically(path, |out| data::corpus_report(report, false, out)),
    }
}

/// Writes a file atomically: the content goes to a temporary file beside the target, which is
/// renamed over it only once everything was written and flushed. On any error the temporary
/// file is removed and the target is left as it was.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // The OS's words without the temporary file's name, which means nothing to the user.
    let fail = |what: &str, err: std::io::Error| {
        let reason = match err.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
            None => err.to_string(),
        };
        anyhow::anyhow!("{}: cannot {what} ({reason})", path.display())
    };
    if !folder.is_dir() {
        anyhow::bail!(
            "{}: the folder {} does not exist",
            path.display(),
            folder.display()
        );
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix(".bertscope-").suffix(".part");
    // Temporary files are private (0600); the finished file is an ordinary one.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut file = builder
        .tempfile_in(folder)
        .map_err(|err| fail("create a file in that folder", err))?;
    let mut buffered = std::io::BufWriter::new(file.as_file_mut());
    write(&mut buffered)
        .and_then(|()| buffered.flush())
        .map_err(|err| fail("write it", err))?;
    drop(buffered);
    file.as_file()
        .sync_all()
        .map_err(|err| fail("write it", err))?;
    file.persist(path)
        .map_err(|err| fail("replace it", err.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_export_leaves_the_old_file() {
        let analysis = crate::model::capture::tests::tiny_analysis();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("head.csv");
        std::fs::write(&target, "old").unwrap();
        let export = |cancel: &AtomicBool| {
            let options = ExportOptions::default();
            export_cancellable(
                &target,
                ("tiny", &analysis),
                None,
                ("a,b", None),
                &options,
                cancel,
            )
        };
        let err = export(&AtomicBool::new(true)).unwrap_err().to_string();
        assert!(err.contains("cancelled"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        export(&AtomicBool::new(false)).unwrap();
        assert!(std::fs::read_to_string(&target)
            .unwrap()
            .starts_with("query"));
    }

    #[test]
    fn failed_writes_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.json");
        std::fs::write(&target, "old").unwrap();
        let err = write_atomically(&target, |w: &mut dyn Write| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("out.json: cannot write it (disk full)"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );

        write_atomically(&target, |w: &mut dyn Write| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644, "readable like any other file");
        }
    }
}
