//! Files made from captured data, written so that a failure never leaves a partial file behind:
//! figures (PNG, SVG), raw data (JSON, CSV, `.npy`, `.npz`) and the `dump` document.

pub mod data;
pub mod dump;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;

use crate::analysis::{words, HeadChoice};
use crate::model::Analysis;
use crate::render::scene::Palette;
pub use crate::views::ModelData;
use crate::views::{Computed, Figure, View};

/// An export's settings beyond the analysis: the view a figure draws (with its parameters), the
/// PNG scale, the number type of `.npz` maps, and whether attention reads as words.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// The picture, for PNG and SVG; its layer and head also pick the CSV's map.
    pub figure: Figure,
    /// PNG scale: 1, 2 or 4.
    pub scale: f32,
    /// The number type of `.npz` attention maps.
    pub precision: data::Precision,
    /// Words instead of subword pieces (Clark et al.: attention to a word summed over its
    /// pieces, from a word the mean), in the figures and data of attention.
    pub words: bool,
    /// The view's canvas in points, width and height (the caption comes on top); `None`: the
    /// view's natural size.
    pub size: Option<(f32, f32)>,
}

impl Default for Export {
    fn default() -> Self {
        Self {
            figure: Figure::Heatmap(crate::views::heatmap::Heatmap::default()),
            scale: 2.0,
            precision: data::Precision::F32,
            words: false,
            size: None,
        }
    }
}

impl Export {
    /// An export of `figure` with the default scale and precision.
    pub fn of(figure: Figure) -> Self {
        Self {
            figure,
            ..Self::default()
        }
    }
}

/// The layer and head a data file of one map (CSV) takes from the figure: the view's own, else
/// layer 0, head 0.
fn map_of(figure: &Figure) -> (usize, HeadChoice) {
    match figure {
        Figure::Heatmap(view) => (view.layer, view.head),
        Figure::Lines(view) => (view.layer, HeadChoice::Head(0)),
        Figure::QueryKey(view) => (view.layer, HeadChoice::Head(view.head)),
        Figure::Compare(view) => (view.layer, view.head),
        _ => (0, HeadChoice::Head(0)),
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
    crate::views::check_layer_head(analysis, layer, head).map_err(anyhow::Error::msg)
}

/// Writes one export of an analysis to `path` (atomically); the extension picks the format.
/// `model` and the texts go into figure titles and the JSON document.
pub fn export(
    path: &Path,
    (model, analysis): (&str, &Analysis),
    data: &ModelData<'_>,
    (text_a, text_b): (&str, Option<&str>),
    export: &Export,
) -> anyhow::Result<()> {
    let never = AtomicBool::new(false);
    export_cancellable(
        path,
        (model, analysis),
        data,
        (text_a, text_b),
        export,
        &never,
    )
}

/// [`export`], abandoned when `cancel` is set: the file is then left as it was (a half-written
/// temporary file is removed) and the error says it was cancelled.
pub fn export_cancellable(
    path: &Path,
    (model, analysis): (&str, &Analysis),
    data: &ModelData<'_>,
    (text_a, text_b): (&str, Option<&str>),
    export: &Export,
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
    let view = export.figure.view();
    if export.words && is_figure {
        anyhow::ensure!(
            view.reads_words(),
            "the {} figure shows pieces, not words; --words applies to heatmap, lines, overview, heads and projection",
            view.name()
        );
    }
    let words = export.words.then(|| words::words(analysis));
    let word_analysis = words
        .as_ref()
        .map(|words| {
            words::word_analysis(analysis, words)
                .ok_or_else(|| anyhow::anyhow!("the captured maps could not be copied"))
        })
        .transpose()?;
    let shown = word_analysis.as_ref().unwrap_or(analysis);
    if !is_figure {
        let (layer, head) = map_of(&export.figure);
        check_layer_head(shown, layer, head)?;
    }
    match format {
        ExportFormat::Png | ExportFormat::Svg => {
            if format == ExportFormat::Png {
                check_scale(export.scale)?;
            }
            let merged = words.as_ref().zip(word_analysis.as_ref());
            let other = data.comparison.map(|(_, other)| other);
            let computed = Computed::of(&export.figure, analysis, merged, other);
            if let Some(Err(message)) = &computed.projection {
                anyhow::bail!("the projection could not be fitted: {message}");
            }
            let inputs = computed.inputs(model, shown, data);
            let figure = export
                .figure
                .figure(&inputs, text_a, text_b, export.size)
                .map_err(anyhow::Error::msg)?;
            if format == ExportFormat::Png {
                let png = crate::render::svg::to_png(&figure, &Palette::PAPER, export.scale)?;
                write_atomically(path, &mut |out| out.write_all(&png))
            } else {
                let svg = crate::render::svg::to_svg(&figure, &Palette::PAPER);
                write_atomically(path, &mut |out| out.write_all(svg.as_bytes()))
            }
        }
        ExportFormat::Json => {
            let mut document = dump::DumpDocument::new(model, shown)?;
            // The explanation the figure draws goes with the maps.
            match view {
                View::Attribution => document.attribution = data.attribution.cloned(),
                View::Patching => document.patching = data.patching.cloned(),
                View::LogitAttribution => {
                    document.logit_attribution = data.logit_attribution.cloned()
                }
                _ => {}
            }
            write_atomically(path, &mut |out| {
                serde_json::to_writer(&mut *out, &document)?;
                out.write_all(b"\n")
            })
        }
        ExportFormat::Csv => match explanation_csv(view, data, shown)? {
            Some(table) => write_atomically(path, &mut |out| out.write_all(table.as_bytes())),
            None => {
                let (layer, head) = map_of(&export.figure);
                write_atomically(path, &mut |out| data::head_csv(shown, layer, head, out))
            }
        },
        ExportFormat::Npy => write_atomically(path, &mut |out| data::attention_npy(shown, out)),
        ExportFormat::Npz => {
            let extra = explanation_arrays(view, data);
            write_atomically(path, &mut |out| {
                data::attention_npz(shown, export.precision, &extra, out)
            })
        }
    }
}

/// The arrays of an explanation view for a `.npz`: attribution's methods `[tokens]`, patching's
/// `resid_pre` `[layer, token]` and `head_out` `[layer, head]`, logit attribution's parts; none
/// for other views.
fn explanation_arrays(view: View, data: &ModelData<'_>) -> Vec<data::NamedArray> {
    let list =
        |name: &str, values: &[f32]| (name.to_owned(), vec![values.len() as u64], values.to_vec());
    let grid = |name: &str, rows: &[Vec<f32>]| {
        let columns = rows.first().map_or(0, Vec::len);
        (
            name.to_owned(),
            vec![rows.len() as u64, columns as u64],
            rows.concat(),
        )
    };
    match view {
        View::Attribution => data.attribution.map_or_else(Vec::new, |a| {
            let mut arrays = vec![
                list("grad_x_input", &a.grad_x_input),
                list("grad_norm", &a.grad_norm),
            ];
            arrays.extend(
                a.integrated_gradients
                    .as_deref()
                    .map(|ig| list("integrated_gradients", ig)),
            );
            arrays.extend(a.occlusion.as_deref().map(|o| list("occlusion", o)));
            arrays
        }),
        View::Patching => data.patching.map_or_else(Vec::new, |p| {
            vec![
                grid("resid_pre", &p.resid_pre),
                grid("head_out", &p.head_out),
            ]
        }),
        View::LogitAttribution => data.logit_attribution.map_or_else(Vec::new, |p| {
            vec![
                grid("heads", &p.heads),
                list("attn_bias", &p.attn_bias),
                list("mlps", &p.mlps),
                list("embed", &[p.embed]),
                list("final_bias", &[p.final_bias]),
            ]
        }),
        _ => Vec::new(),
    }
}

/// The CSV of an explanation view: attribution per token (every method), patching's
/// layer × position and layer × head values, logit attribution's parts; `None` for other views.
fn explanation_csv(
    view: View,
    data: &ModelData<'_>,
    analysis: &Analysis,
) -> anyhow::Result<Option<String>> {
    let missing = || anyhow::anyhow!("the {} view has nothing computed to write", view.name());
    let quoted = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    let mut csv = String::new();
    match view {
        View::Attribution => {
            let attribution = data.attribution.ok_or_else(missing)?;
            csv.push_str("index,token,integrated_gradients,grad_x_input,grad_norm,occlusion\n");
            // Methods that were not computed leave their column empty.
            let cell = |values: &Option<Vec<f32>>, index: usize| {
                values
                    .as_ref()
                    .map_or(String::new(), |values| values[index].to_string())
            };
            for index in 0..attribution.grad_norm.len() {
                let ig = cell(&attribution.integrated_gradients, index);
                let occlusion = cell(&attribution.occlusion, index);
                csv.push_str(&format!(
                    "{index},{},{ig},{},{},{occlusion}\n",
                    quoted(&analysis.display_token(index)),
                    attribution.grad_x_input[index],
                    attribution.grad_norm[index],
                ));
            }
        }
        View::Patching => {
            let patching = data.patching.ok_or_else(missing)?;
            csv.push_str("part,layer,index,value\n");
            for (part, rows) in [
                ("resid_pre", &patching.resid_pre),
                ("head_out", &patching.head_out),
            ] {
                for (layer, row) in rows.iter().enumerate() {
                    for (index, value) in row.iter().enumerate() {
                        csv.push_str(&format!("{part},{layer},{index},{value}\n"));
                    }
                }
            }
        }
        View::LogitAttribution => {
            let parts = data.logit_attribution.ok_or_else(missing)?;
            csv.push_str("part,layer,head,value\n");
            csv.push_str(&format!("embed,,,{}\n", parts.embed));
            for (layer, row) in parts.heads.iter().enumerate() {
                for (head, value) in row.iter().enumerate() {
                    csv.push_str(&format!("head,{layer},{head},{value}\n"));
                }
                csv.push_str(&format!("attn_bias,{layer},,{}\n", parts.attn_bias[layer]));
                csv.push_str(&format!("mlp,{layer},,{}\n", parts.mlps[layer]));
            }
            csv.push_str(&format!("final_bias,,,{}\n", parts.final_bias));
        }
        _ => return Ok(None),
    }
    Ok(Some(csv))
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
    (model, analysis): (&str, &Analysis),
    (text_a, text_b): (&str, Option<&str>),
    export: &Export,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> anyhow::Result<usize> {
    use crate::views::heatmap::Heatmap;
    use crate::views::overview::Overview;
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
    let norms = match &export.figure {
        Figure::Heatmap(view) => view.kind == crate::views::heatmap::MapKind::Norms,
        Figure::Overview(view) => view.norms,
        _ => false,
    };
    let mut jobs: Vec<(std::path::PathBuf, Figure)> = vec![(
        folder.join(format!("overview.{extension}")),
        Figure::Overview(Overview { norms }),
    )];
    for layer in 0..layers {
        for head in 0..heads {
            let name = format!(
                "layer{layer:0lw$}-head{head:0hw$}.{extension}",
                lw = digits(layers),
                hw = digits(heads)
            );
            let figure = match &export.figure {
                Figure::Heatmap(view) => Heatmap {
                    layer,
                    head: HeadChoice::Head(head),
                    ..view.clone()
                },
                _ => Heatmap {
                    layer,
                    head: HeadChoice::Head(head),
                    ..Heatmap::default()
                },
            };
            jobs.push((folder.join(name), Figure::Heatmap(figure)));
        }
    }
    let total = jobs.len();
    let done = AtomicUsize::new(0);
    jobs.into_par_iter().try_for_each(|(path, figure)| {
        let one = Export {
            figure,
            ..export.clone()
        };
        self::export(
            &path,
            (model, analysis),
            &ModelData::default(),
            (text_a, text_b),
            &one,
        )?;
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
        let caption = crate::render::parts::Caption {
            title: format!("{model} · head statistics · {}", statistic.name()),
            text: format!("{corpus}: {} lines, {} tokens", report.lines, report.tokens),
        };
        let width =
            crate::views::head_stats::natural_width(report.heads.first().map_or(0, Vec::len));
        caption.frame(crate::views::head_stats::scene(
            &report.heads,
            statistic,
            None,
            width,
        ))
    };
    match format {
        ExportFormat::Csv => write_atomically(path, |out| data::corpus_report(report, true, out)),
        ExportFormat::Svg => {
            let svg = crate::render::svg::to_svg(&figure(), &Palette::PAPER);
            write_atomically(path, |out| out.write_all(svg.as_bytes()))
        }
        ExportFormat::Png => {
            check_scale(scale)?;
            let png = crate::render::svg::to_png(&figure(), &Palette::PAPER, scale)?;
            write_atomically(path, |out| out.write_all(&png))
        }
        // JSON (the formats of attention data are refused above).
        _ => write_atomically(path, |out| data::corpus_report(report, false, out)),
    }
}

/// Writes a file atomically ([`crate::model::atomic_file::write_atomically`]): the target is
/// left as it was on any error.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    Ok(crate::model::atomic_file::write_atomically(path, write)?)
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
            export_cancellable(
                &target,
                ("tiny", &analysis),
                &ModelData::default(),
                ("a,b", None),
                &Export::default(),
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
