//! Head statistics after Clark et al. (2019), "What does BERT look at?": where each head puts
//! its weight, averaged over query rows, and a label from the paper's thresholds.

use serde::Serialize;

use crate::model::Analysis;

/// One head's statistics, each a mean over query rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeadStats {
    /// Weight on the first token (`[CLS]`, `<s>`, GPT-2's first token).
    pub cls: f32,
    /// Summed weight on every separator (`[SEP]`, `</s>`).
    pub sep: f32,
    /// Summed weight on tokens made only of punctuation ([`is_punctuation`]).
    pub punct: f32,
    /// Weight of a token on itself, α[i][i].
    #[serde(rename = "self")]
    pub self_: f32,
    /// Weight on the previous token, α[i][i−1], over rows i ≥ 1.
    pub prev: f32,
    /// Weight on the next token, α[i][i+1], over rows i ≤ T−2.
    pub next: f32,
    /// Entropy −Σ α ln α of a row, in nats.
    pub entropy: f32,
    /// Clark's kind of head: `previous` (prev > 0.5), `next` (next > 0.5), `special`
    /// (cls + sep > 0.6), `broad` (entropy > 3.8), else `mixed`; the first that holds.
    pub label: HeadLabel,
}

/// What a head mostly does, by Clark et al.'s thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadLabel {
    /// Attends to the previous token (prev > 0.5).
    Previous,
    /// Attends to the next token (next > 0.5).
    Next,
    /// Attends to `[CLS]` and `[SEP]` (cls + sep > 0.6).
    Special,
    /// Spreads its weight (entropy > 3.8 nats).
    Broad,
    /// None of these.
    Mixed,
}

impl HeadLabel {
    fn of(prev: f64, next: f64, cls: f64, sep: f64, entropy: f64) -> Self {
        if prev > 0.5 {
            Self::Previous
        } else if next > 0.5 {
            Self::Next
        } else if cls + sep > 0.6 {
            Self::Special
        } else if entropy > 3.8 {
            Self::Broad
        } else {
            Self::Mixed
        }
    }
}

/// Whether a character is punctuation for [`HeadStats::punct`]: ASCII punctuation, the General
/// Punctuation block (U+2000–U+206F: dashes, curly quotes, …), CJK Symbols and Punctuation
/// (U+3000–U+303F), and `¡ « » ¿`.
pub fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || ('\u{2000}'..='\u{206F}').contains(&c)
        || ('\u{3000}'..='\u{303F}').contains(&c)
        || matches!(c, '¡' | '«' | '»' | '¿')
}

/// Whether token `index` is a separator: `[SEP]` or `</s>`.
pub fn is_separator(analysis: &Analysis, index: usize) -> bool {
    analysis.is_special(index) && matches!(analysis.tokens[index].as_str(), "[SEP]" | "</s>")
}

/// Whether token `index` is made only of punctuation (special tokens never are).
pub fn is_punctuation_token(analysis: &Analysis, index: usize) -> bool {
    if analysis.is_special(index) {
        return false;
    }
    let bare = analysis.token_style.bare(&analysis.tokens[index]);
    !bare.is_empty() && bare.chars().all(is_punctuation)
}

/// The statistics of one `tokens × tokens` attention map, given which keys are separators and
/// which are punctuation.
pub fn map_stats(map: &[f32], separators: &[bool], punctuation: &[bool]) -> HeadStats {
    let tokens = separators.len();
    let (mut cls, mut sep, mut punct, mut self_, mut entropy) = (0f64, 0f64, 0f64, 0f64, 0f64);
    let (mut prev, mut next) = (0f64, 0f64);
    for (query, row) in map.chunks_exact(tokens).enumerate() {
        cls += f64::from(row[0]);
        self_ += f64::from(row[query]);
        if query >= 1 {
            prev += f64::from(row[query - 1]);
        }
        if query + 1 < tokens {
            next += f64::from(row[query + 1]);
        }
        for (key, &weight) in row.iter().enumerate() {
            let weight = f64::from(weight);
            if separators[key] {
                sep += weight;
            }
            if punctuation[key] {
                punct += weight;
            }
            if weight > 0.0 {
                entropy -= weight * weight.ln();
            }
        }
    }
    let rows = tokens as f64;
    let shifted = tokens.saturating_sub(1).max(1) as f64;
    let (cls, sep, entropy) = (cls / rows, sep / rows, entropy / rows);
    let (prev, next) = (prev / shifted, next / shifted);
    HeadStats {
        cls: cls as f32,
        sep: sep as f32,
        punct: (punct / rows) as f32,
        self_: (self_ / rows) as f32,
        prev: prev as f32,
        next: next as f32,
        entropy: entropy as f32,
        label: HeadLabel::of(prev, next, cls, sep, entropy),
    }
}

/// Every head's statistics, `[layer][head]`.
pub fn head_stats(analysis: &Analysis) -> Vec<Vec<HeadStats>> {
    let tokens = analysis.len();
    let separators: Vec<bool> = (0..tokens).map(|i| is_separator(analysis, i)).collect();
    let punctuation: Vec<bool> = (0..tokens)
        .map(|i| is_punctuation_token(analysis, i))
        .collect();
    (0..analysis.layers())
        .map(|layer| {
            (0..analysis.heads())
                .map(|head| map_stats(analysis.attention(layer, head), &separators, &punctuation))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_a_previous_token_head() {
        // Three tokens: [CLS] , [SEP]; every row but the first looks at the previous token.
        let map = [1.0, 0.0, 0.0, 0.9, 0.1, 0.0, 0.0, 0.8, 0.2];
        let stats = map_stats(&map, &[false, false, true], &[false, true, false]);
        assert!((stats.cls - (1.0 + 0.9) / 3.0).abs() < 1e-6);
        assert!((stats.sep - 0.2 / 3.0).abs() < 1e-6);
        assert!((stats.punct - 0.9 / 3.0).abs() < 1e-6);
        assert!((stats.self_ - 1.3 / 3.0).abs() < 1e-6);
        assert!((stats.prev - 1.7 / 2.0).abs() < 1e-6);
        assert!((stats.next - 0.0).abs() < 1e-6);
        let row_entropy =
            |row: &[f64]| -> f64 { row.iter().filter(|&&p| p > 0.0).map(|&p| -p * p.ln()).sum() };
        let entropy = (row_entropy(&[0.9, 0.1]) + row_entropy(&[0.8, 0.2])) / 3.0;
        assert!((f64::from(stats.entropy) - entropy).abs() < 1e-6);
        assert_eq!(stats.label, HeadLabel::Previous);
    }

    #[test]
    fn punctuation_is_ascii_and_unicode_punctuation_only() {
        assert!(".,;:!?\"'()-…—“”「」¿".chars().all(is_punctuation));
        assert!(!"a1 é漢".chars().any(is_punctuation));
    }
}
