//! Raw data for notebooks and spreadsheets: one head as CSV, every head as a NumPy `.npy`, or
//! every head and the tokens as a compressed `.npz` (f32, or f16 at half the size).

use std::io::Write;

use crate::analysis::stats::CorpusReport;
use crate::analysis::{attention_map, HeadChoice};
use crate::model::Analysis;

/// One head (or a layer's mean) as CSV: a header of key tokens, then one row per query token.
pub fn head_csv(
    analysis: &Analysis,
    layer: usize,
    head: HeadChoice,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let tokens = analysis.len();
    let values = attention_map(analysis, layer, head);
    let mut writer = csv::Writer::from_writer(out);
    let mut header = vec!["query \\ key".to_owned()];
    header.extend(analysis.tokens.iter().cloned());
    writer
        .write_record(&header)
        .map_err(std::io::Error::other)?;
    for (query, row) in values.chunks_exact(tokens).enumerate() {
        let mut record = vec![analysis.tokens[query].clone()];
        record.extend(row.iter().map(|v| v.to_string()));
        writer
            .write_record(&record)
            .map_err(std::io::Error::other)?;
    }
    writer.flush()
}

/// Every attention probability as a little-endian f32 `.npy` array `[layer, head, query, key]`.
pub fn attention_npy(analysis: &Analysis, out: &mut dyn Write) -> std::io::Result<()> {
    let attentions = analysis
        .attentions
        .to_host()
        .map_err(std::io::Error::other)?;
    let shape: Vec<u64> = attentions.shape().iter().map(|&d| d as u64).collect();
    use npyz::WriterBuilder as _;
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape)
        .writer(out)
        .begin_nd()?;
    writer.extend(attentions.values().iter().copied())?;
    writer.finish()
}

/// The number type of the attention maps in an `.npz`.
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
pub enum Precision {
    /// 32-bit floats: the probabilities exactly as computed.
    #[default]
    F32,
    /// 16-bit floats: half the size, about 3 significant digits.
    F16,
}

/// Whether deflate shrinks the maps enough to be worth it, judged on their first few values:
/// the noisy floats of an encoder's maps barely shrink (deflated, they would outgrow the `.npy`),
/// the zeros of a causal model's maps halve them.
fn deflate_pays(values: &[f32], precision: Precision) -> bool {
    const SAMPLE_VALUES: usize = 1 << 20;
    let sample = &values[..values.len().min(SAMPLE_VALUES)];
    let bytes: Vec<u8> = match precision {
        Precision::F32 => sample.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Precision::F16 => sample
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
    };
    let mut probe = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    let compressed = probe
        .start_file("probe", options)
        .and_then(|()| probe.write_all(&bytes).map_err(Into::into))
        .and_then(|()| probe.finish())
        .map(|cursor| cursor.into_inner().len());
    // Anything but a clear gain (5 %) is not worth the time: store the maps as they are.
    compressed.is_ok_and(|size| (size as f64) < 0.95 * bytes.len() as f64)
}

/// A named f32 array for an archive: its name (without `.npy`), shape and values.
pub type NamedArray = (String, Vec<u64>, Vec<f32>);

/// A compressed NumPy archive (`numpy.load` reads it): `attentions` `[layer, head, query, key]`
/// in `precision`, `tokens` (unicode strings), `token_ids`, `segment_ids`, and `extra` arrays
/// (an explanation's values) in f32.
/// Long because the `.npz` archive is written by hand (zip entries of `.npy` arrays) to stream maps
/// without holding a second copy.
pub fn attention_npz(
    analysis: &Analysis,
    precision: Precision,
    extra: &[NamedArray],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    use npyz::WriterBuilder as _;
    let attentions = analysis
        .attentions
        .to_host()
        .map_err(std::io::Error::other)?;
    let shape: Vec<u64> = attentions.shape().iter().map(|&d| d as u64).collect();
    let bytes_per_value = match precision {
        Precision::F32 => 4,
        Precision::F16 => 2,
    };
    let options = if deflate_pays(attentions.values(), precision) {
        // Level 1: the zeros of causal maps shrink at any level; noisy floats at none.
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
    } else {
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)
    }
    .large_file(attentions.values().len() * bytes_per_value >= u32::MAX as usize);
    let mut archive = zip::ZipWriter::new_stream(out);
    let zip_error = |err: zip::result::ZipError| std::io::Error::other(err.to_string());

    archive
        .start_file("attentions.npy", options)
        .map_err(zip_error)?;
    let values = attentions.values().iter().copied();
    match precision {
        Precision::F32 => {
            let mut writer = npyz::WriteOptions::<f32>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut archive)
                .begin_nd()?;
            writer.extend(values)?;
            writer.finish()?;
        }
        Precision::F16 => {
            let mut writer = npyz::WriteOptions::<half::f16>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut archive)
                .begin_nd()?;
            writer.extend(values.map(half::f16::from_f32))?;
            writer.finish()?;
        }
    }

    let small = options.large_file(false);
    archive.start_file("tokens.npy", small).map_err(zip_error)?;
    // NumPy's fixed-width unicode: as many code points as the longest token.
    let width = analysis
        .tokens
        .iter()
        .map(|token| token.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let dtype = npyz::DType::Plain(
        format!("<U{width}")
            .parse::<npyz::TypeStr>()
            .map_err(std::io::Error::other)?,
    );
    let mut writer = npyz::WriteOptions::<String>::new()
        .dtype(dtype)
        .shape(&[analysis.len() as u64])
        .writer(&mut archive)
        .begin_nd()?;
    writer.extend(analysis.tokens.iter().cloned())?;
    writer.finish()?;

    for (name, ids) in [
        ("token_ids.npy", &analysis.token_ids),
        ("segment_ids.npy", &analysis.segment_ids),
    ] {
        archive.start_file(name, small).map_err(zip_error)?;
        let mut writer = npyz::WriteOptions::<u32>::new()
            .default_dtype()
            .shape(&[ids.len() as u64])
            .writer(&mut archive)
            .begin_nd()?;
        writer.extend(ids.iter().copied())?;
        writer.finish()?;
    }
    for (name, shape, values) in extra {
        archive
            .start_file(format!("{name}.npy"), small)
            .map_err(zip_error)?;
        let mut writer = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut archive)
            .begin_nd()?;
        writer.extend(values.iter().copied())?;
        writer.finish()?;
    }
    archive.finish().map_err(zip_error)?;
    Ok(())
}

/// A corpus run's head statistics as `bertscope stats` writes them: JSON
/// `{"lines", "tokens", "heads": [layer][head]{cls, sep, …, label}}`, or CSV with a row per head.
pub fn corpus_report(report: &CorpusReport, csv: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if !csv {
        serde_json::to_writer(&mut *out, report)?;
        return out.write_all(b"\n");
    }
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "layer", "head", "cls", "sep", "punct", "self", "prev", "next", "entropy", "label",
    ])?;
    for (layer, row) in report.heads.iter().enumerate() {
        for (head, s) in row.iter().enumerate() {
            writer.write_record([
                layer.to_string(),
                head.to_string(),
                s.cls.to_string(),
                s.sep.to_string(),
                s.punct.to_string(),
                s.self_.to_string(),
                s.prev.to_string(),
                s.next.to_string(),
                s.entropy.to_string(),
                s.label.name().to_owned(),
            ])?;
        }
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Analysis {
        crate::model::capture::tests::tiny_analysis()
    }

    #[test]
    fn csv_quotes_tokens_and_keeps_full_precision() {
        let mut out = Vec::new();
        head_csv(&tiny(), 0, HeadChoice::Head(1), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "query \\ key,[CLS],\"a,b\",[SEP]");
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("[CLS],0.5,0.5555556,"), "{}", lines[1]);
    }

    #[test]
    fn npy_round_trips() {
        let mut out = Vec::new();
        attention_npy(&tiny(), &mut out).unwrap();
        let npy = npyz::NpyFile::new(&out[..]).unwrap();
        assert_eq!(npy.shape(), &[1, 2, 3, 3]);
        let values: Vec<f32> = npy.into_vec().unwrap();
        assert_eq!(values[17], 17.0 / 18.0);
    }

    #[test]
    fn npz_holds_every_map_and_the_tokens_in_either_precision() {
        use std::io::Read as _;
        let analysis = tiny();
        for precision in [Precision::F32, Precision::F16] {
            let mut out = Vec::new();
            attention_npz(&analysis, precision, &[], &mut out).unwrap();
            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(out)).unwrap();
            let mut names: Vec<String> = archive
                .file_names()
                .map(|name| name.unwrap().into_owned())
                .collect();
            names.sort_unstable();
            assert_eq!(
                names,
                [
                    "attentions.npy",
                    "segment_ids.npy",
                    "token_ids.npy",
                    "tokens.npy"
                ]
            );
            let mut bytes = Vec::new();
            archive
                .by_name("attentions.npy")
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
            assert_eq!(npy.shape(), &[1, 2, 3, 3]);
            let values: Vec<f32> = match precision {
                Precision::F32 => npy.into_vec().unwrap(),
                Precision::F16 => npy
                    .into_vec::<half::f16>()
                    .unwrap()
                    .into_iter()
                    .map(f32::from)
                    .collect(),
            };
            let tolerance = match precision {
                Precision::F32 => 0.0,
                Precision::F16 => 1e-3,
            };
            assert!((values[17] - 17.0 / 18.0).abs() <= tolerance, "{values:?}");

            let mut bytes = Vec::new();
            archive
                .by_name("tokens.npy")
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            let tokens: Vec<String> = npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap();
            assert_eq!(tokens, analysis.tokens);
        }
    }
}
