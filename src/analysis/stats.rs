//! Head statistics after Clark et al. (2019), "What does BERT look at?": where each head puts
//! its weight, averaged over query rows, and a label from the paper's thresholds.

use serde::Serialize;

use crate::model::{Analysis, AnalysisRequest};

/// One head's statistics, each a mean over query rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeadStats {
    /// Weight on the first token (`[CLS]`, `<s>`, GPT-2's first token).
    pub cls: f32,
    /// Summed weight on every separator (`[SEP]`, `</s>`).
    pub sep: f32,
    /// Summed weight on tokens made only of punctuation ([`is_punctuation`]).
    pub punct: f32,
    /// Weight of a token on itself, `α[i][i]`.
    #[serde(rename = "self")]
    pub self_: f32,
    /// Weight on the previous token, `α[i][i−1]`, over rows i ≥ 1.
    pub prev: f32,
    /// Weight on the next token, `α[i][i+1]`, over rows i ≤ T−2.
    pub next: f32,
    /// Entropy −Σ α ln α of a row, in nats.
    pub entropy: f32,
    /// Clark's kind of head: `previous` (prev > 0.5), `next` (next > 0.5), `special`
    /// (cls + sep > 0.6), `broad` (entropy > 3.8), else `mixed`; the first that holds.
    pub label: HeadLabel,
}

/// One of the statistics, to colour or sort heads by.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    /// Weight on the first token.
    Cls,
    /// Weight on separators.
    Sep,
    /// Weight on punctuation.
    Punct,
    /// Weight on the token itself.
    #[serde(rename = "self")]
    #[value(name = "self")]
    SelfToken,
    /// Weight on the previous token.
    Prev,
    /// Weight on the next token.
    Next,
    /// Entropy of the rows, in nats.
    #[default]
    Entropy,
}

impl Statistic {
    /// Every statistic, in the table's order.
    pub const ALL: [Statistic; 7] = [
        Self::Cls,
        Self::Sep,
        Self::Punct,
        Self::SelfToken,
        Self::Prev,
        Self::Next,
        Self::Entropy,
    ];

    /// The short name, as JSON keys and column headers spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::Sep => "sep",
            Self::Punct => "punct",
            Self::SelfToken => "self",
            Self::Prev => "prev",
            Self::Next => "next",
            Self::Entropy => "entropy",
        }
    }

    /// What it measures, for tooltips and figure notes.
    pub fn description(self) -> &'static str {
        match self {
            Self::Cls => "mean weight on the first token ([CLS], <s>)",
            Self::Sep => "mean summed weight on separators ([SEP], </s>)",
            Self::Punct => "mean summed weight on punctuation tokens",
            Self::SelfToken => "mean weight of each token on itself",
            Self::Prev => "mean weight on the previous token",
            Self::Next => "mean weight on the next token",
            Self::Entropy => "mean entropy of the attention rows, in nats (high: broad)",
        }
    }

    /// This statistic of a head.
    pub fn of(self, stats: &HeadStats) -> f32 {
        match self {
            Self::Cls => stats.cls,
            Self::Sep => stats.sep,
            Self::Punct => stats.punct,
            Self::SelfToken => stats.self_,
            Self::Prev => stats.prev,
            Self::Next => stats.next,
            Self::Entropy => stats.entropy,
        }
    }
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
    /// A one-letter mark for grids: P, N, S, B, and nothing for mixed heads.
    pub fn mark(self) -> &'static str {
        match self {
            Self::Previous => "P",
            Self::Next => "N",
            Self::Special => "S",
            Self::Broad => "B",
            Self::Mixed => "",
        }
    }

    /// The label as JSON and CSV spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Previous => "previous",
            Self::Next => "next",
            Self::Special => "special",
            Self::Broad => "broad",
            Self::Mixed => "mixed",
        }
    }

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

/// Running sums of one head's statistics over query rows, of one map or of a whole corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct HeadSums {
    cls: f64,
    sep: f64,
    punct: f64,
    self_: f64,
    entropy: f64,
    rows: f64,
    prev: f64,
    /// Rows with a previous token (and, alike, rows with a next one).
    shifted_rows: f64,
    next: f64,
}

impl HeadSums {
    /// Adds every query row of a `tokens × tokens` map, given which keys are separators and
    /// which are punctuation.
    pub fn add_map(&mut self, map: &[f32], separators: &[bool], punctuation: &[bool]) {
        let tokens = separators.len();
        let indices = |marks: &[bool]| -> Vec<usize> {
            marks
                .iter()
                .enumerate()
                .filter_map(|(index, &marked)| marked.then_some(index))
                .collect()
        };
        let (separators, punctuation) = (indices(separators), indices(punctuation));
        for (query, row) in map.chunks_exact(tokens).enumerate() {
            self.cls += f64::from(row[0]);
            self.self_ += f64::from(row[query]);
            if query >= 1 {
                self.prev += f64::from(row[query - 1]);
            }
            if query + 1 < tokens {
                self.next += f64::from(row[query + 1]);
            }
            // Separators and punctuation are a few keys: sum them by index.
            self.sep += separators
                .iter()
                .map(|&key| f64::from(row[key]))
                .sum::<f64>();
            self.punct += punctuation
                .iter()
                .map(|&key| f64::from(row[key]))
                .sum::<f64>();
            // The logarithm and a row's sum in f32 (the weights are f32), rows summed in f64:
            // in f64 it would cost as much as a small model's forward over a corpus.
            let row_entropy: f32 = row.iter().filter(|&&w| w > 0.0).map(|&w| -w * w.ln()).sum();
            let row_entropy = f64::from(row_entropy);
            self.entropy += row_entropy;
        }
        self.rows += tokens as f64;
        self.shifted_rows += tokens.saturating_sub(1) as f64;
    }

    /// Adds another run's sums (a shard of the same corpus).
    pub fn merge(&mut self, other: &HeadSums) {
        self.cls += other.cls;
        self.sep += other.sep;
        self.punct += other.punct;
        self.self_ += other.self_;
        self.entropy += other.entropy;
        self.rows += other.rows;
        self.prev += other.prev;
        self.shifted_rows += other.shifted_rows;
        self.next += other.next;
    }

    /// The means over every row added, and the label they give.
    pub fn finish(&self) -> HeadStats {
        let rows = self.rows.max(1.0);
        let shifted = self.shifted_rows.max(1.0);
        let (cls, sep, entropy) = (self.cls / rows, self.sep / rows, self.entropy / rows);
        let (prev, next) = (self.prev / shifted, self.next / shifted);
        HeadStats {
            cls: cls as f32,
            sep: sep as f32,
            punct: (self.punct / rows) as f32,
            self_: (self.self_ / rows) as f32,
            prev: prev as f32,
            next: next as f32,
            entropy: entropy as f32,
            label: HeadLabel::of(prev, next, cls, sep, entropy),
        }
    }
}

/// The statistics of one `tokens × tokens` attention map, given which keys are separators and
/// which are punctuation.
pub fn map_stats(map: &[f32], separators: &[bool], punctuation: &[bool]) -> HeadStats {
    let mut sums = HeadSums::default();
    sums.add_map(map, separators, punctuation);
    sums.finish()
}

/// Which keys of an analysis are separators, and which punctuation.
fn key_kinds(analysis: &Analysis) -> (Vec<bool>, Vec<bool>) {
    let tokens = analysis.len();
    let separators = (0..tokens).map(|i| is_separator(analysis, i)).collect();
    let punctuation = (0..tokens)
        .map(|i| is_punctuation_token(analysis, i))
        .collect();
    (separators, punctuation)
}

/// Every head's statistics, `[layer][head]`.
pub fn head_stats(analysis: &Analysis) -> Vec<Vec<HeadStats>> {
    use rayon::prelude::{IntoParallelIterator, ParallelIterator};
    let (separators, punctuation) = key_kinds(analysis);
    let heads = analysis.heads();
    let flat: Vec<HeadStats> = (0..analysis.layers() * heads)
        .into_par_iter()
        .map(|index| {
            let map = analysis.attention(index / heads, index % heads);
            map_stats(map, &separators, &punctuation)
        })
        .collect();
    flat.chunks(heads.max(1))
        .map(<[HeadStats]>::to_vec)
        .collect()
}

/// Head statistics over a corpus: every statistic averaged over all query rows of all texts.
#[derive(Debug, Clone, Default)]
pub struct CorpusStats {
    /// Texts added.
    pub lines: usize,
    /// Tokens (query rows) added.
    pub tokens: usize,
    sums: Vec<Vec<HeadSums>>,
}

impl CorpusStats {
    /// Adds one text's analysis; every analysis must come from the same model.
    pub fn add(&mut self, analysis: &Analysis) {
        let (separators, punctuation) = key_kinds(analysis);
        if self.sums.is_empty() {
            self.sums = vec![vec![HeadSums::default(); analysis.heads()]; analysis.layers()];
        }
        use rayon::prelude::*;
        self.sums
            .par_iter_mut()
            .enumerate()
            .flat_map(|(layer, heads)| {
                heads
                    .par_iter_mut()
                    .enumerate()
                    .map(move |(head, sums)| (layer, head, sums))
            })
            .for_each(|(layer, head, sums)| {
                sums.add_map(analysis.attention(layer, head), &separators, &punctuation);
            });
        self.lines += 1;
        self.tokens += analysis.len();
    }

    /// Adds one text's analysis, read as words (merged pieces, Clark et al.) when `words`;
    /// `false` when its maps could not be merged.
    pub fn add_text(&mut self, analysis: &Analysis, words: bool) -> bool {
        if !words {
            self.add(analysis);
            return true;
        }
        let merged = crate::analysis::words::word_analysis(
            analysis,
            &crate::analysis::words::words(analysis),
        );
        merged.is_some_and(|merged| {
            self.add(&merged);
            true
        })
    }

    /// The statistics so far, `[layer][head]`.
    pub fn heads(&self) -> Vec<Vec<HeadStats>> {
        self.sums
            .iter()
            .map(|heads| heads.iter().map(HeadSums::finish).collect())
            .collect()
    }
}

/// One shard of a corpus: lines i (0-based, blank lines counted) with i mod `count` =
/// `index` − 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Shard {
    /// K, 1-based.
    pub index: usize,
    /// N.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// Parses `K/N` with 1 ≤ K ≤ N.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not a shard K/N with 1 ≤ K ≤ N, e.g. 3/8");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = index.trim().parse().map_err(|_| bad())?;
        let count: usize = count.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Whether 1-based line `number` belongs to it.
    pub fn holds(self, number: usize) -> bool {
        (number - 1) % self.count == self.index - 1
    }
}

/// What `stats --shard` writes: the sums and counts of one shard (not the means), and what they
/// are of, so that only parts of one corpus, model and setting are merged.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PartialReport {
    /// Always true: this is a part, not a report.
    pub partial: bool,
    /// Which shard.
    pub shard: Shard,
    /// The model's name, for the merged report's figure.
    pub model: String,
    /// The corpus file's name, likewise.
    pub corpus: String,
    /// SHA-256 of the corpus file.
    pub corpus_sha256: String,
    /// SHA-256 of the model's config.json and weight files.
    pub model_sha256: String,
    /// Whether words (merged pieces) were counted, or pieces.
    pub words: bool,
    /// Texts added.
    pub lines: usize,
    /// Tokens (query rows) added.
    pub tokens: usize,
    /// Every head's sums, `[layer][head]` (empty when the shard held no text).
    pub sums: Vec<Vec<HeadSums>>,
}

impl CorpusStats {
    /// The part of shard `shard` of a corpus and model with these fingerprints.
    pub fn partial(
        &self,
        shard: Shard,
        (model, corpus): (&str, &str),
        (corpus_sha256, model_sha256): (String, String),
        words: bool,
    ) -> PartialReport {
        PartialReport {
            partial: true,
            shard,
            model: model.to_owned(),
            corpus: corpus.to_owned(),
            corpus_sha256,
            model_sha256,
            words,
            lines: self.lines,
            tokens: self.tokens,
            sums: self.sums.clone(),
        }
    }

    /// The statistics of every part together, exactly as one run over the whole corpus gives
    /// them (sums added in another order: within 1e-9); one line saying why when the parts are
    /// of different corpora, models or settings, or a shard is missing or repeated.
    pub fn merge(parts: &[PartialReport]) -> Result<Self, String> {
        let first = parts.first().ok_or("no parts to merge")?;
        let count = first.shard.count;
        let mut seen = vec![false; count];
        let mut merged = Self::default();
        for part in parts {
            if !part.partial {
                return Err("a part is a finished report, not a partial one from --shard".into());
            }
            if part.corpus_sha256 != first.corpus_sha256 {
                return Err(format!(
                    "shards {}/{} and {}/{} are of different corpus files",
                    first.shard.index, count, part.shard.index, part.shard.count
                ));
            }
            if part.model_sha256 != first.model_sha256 {
                return Err(format!(
                    "shards {}/{} and {}/{} are of different models",
                    first.shard.index, count, part.shard.index, part.shard.count
                ));
            }
            if part.words != first.words {
                return Err("some parts counted words and others pieces (--words)".into());
            }
            if part.shard.count != count {
                return Err(format!(
                    "parts of {count} and of {} shards cannot be merged",
                    part.shard.count
                ));
            }
            let index = part.shard.index;
            if index == 0 || index > count {
                return Err(format!("shard {index}/{count} does not exist"));
            }
            if std::mem::replace(&mut seen[index - 1], true) {
                return Err(format!("shard {index}/{count} is given twice"));
            }
            if part.sums.is_empty() {
                continue;
            }
            if merged.sums.is_empty() {
                merged.sums = part.sums.clone();
            } else if merged.sums.len() != part.sums.len()
                || merged
                    .sums
                    .iter()
                    .zip(&part.sums)
                    .any(|(a, b)| a.len() != b.len())
            {
                return Err(format!("shard {index}/{count} has another number of heads"));
            } else {
                for (row, other) in merged.sums.iter_mut().zip(&part.sums) {
                    for (sums, other) in row.iter_mut().zip(other) {
                        sums.merge(other);
                    }
                }
            }
            merged.lines += part.lines;
            merged.tokens += part.tokens;
        }
        if let Some(missing) = seen.iter().position(|&seen| !seen) {
            return Err(format!("shard {}/{count} is missing", missing + 1));
        }
        Ok(merged)
    }
}

/// The inputs of a corpus file's text: one per non-blank line, with its 1-based line number; a
/// tab splits a line into sentence A and sentence B.
pub fn corpus_requests(text: &str) -> Vec<(usize, AnalysisRequest)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let request = match line.split_once('\t') {
                Some((a, b)) => AnalysisRequest::new(a).with_text_b(Some(b.to_owned())),
                None => AnalysisRequest::new(line),
            };
            (index + 1, request)
        })
        .collect()
}

/// What a corpus run found, so far or in all: what `bertscope stats` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorpusReport {
    /// Texts added.
    pub lines: usize,
    /// Tokens (query rows) added.
    pub tokens: usize,
    /// Every head's statistics over them, `[layer][head]`.
    pub heads: Vec<Vec<HeadStats>>,
}

impl CorpusStats {
    /// The report of the texts added so far.
    pub fn report(&self) -> CorpusReport {
        CorpusReport {
            lines: self.lines,
            tokens: self.tokens,
            heads: self.heads(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_every_line_once() {
        let shards: Vec<Shard> = ["1/3", "2/3", "3/3"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        for number in 1..=10 {
            assert_eq!(shards.iter().filter(|s| s.holds(number)).count(), 1);
        }
        assert!(shards[0].holds(1) && shards[1].holds(2) && shards[0].holds(4));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

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
    fn corpus_lines_skip_blanks_and_split_pairs_at_a_tab() {
        let requests = corpus_requests("The cat sat.\n\n  \nIs it?\tYes it is.\r\nlast");
        let lines: Vec<(usize, &str, Option<&str>)> = requests
            .iter()
            .map(|(line, r)| (*line, r.text_a.as_str(), r.text_b.as_deref()))
            .collect();
        assert_eq!(
            lines,
            [
                (1, "The cat sat.", None),
                (4, "Is it?", Some("Yes it is.")),
                (5, "last", None)
            ]
        );
    }

    #[test]
    fn punctuation_is_ascii_and_unicode_punctuation_only() {
        assert!(".,;:!?\"'()-…—“”「」¿".chars().all(is_punctuation));
        assert!(!"a1 é漢".chars().any(is_punctuation));
    }
}
