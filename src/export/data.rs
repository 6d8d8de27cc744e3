//! Raw data for notebooks and spreadsheets: one head as CSV, every head as a NumPy `.npy`.

use std::io::Write;

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
}
