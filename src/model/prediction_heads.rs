//! From a head's logits to what people read: vocabulary top-k, label probabilities, the answer
//! span of question answering and the label of every token. Pure functions, shared by every
//! backend and family.

use super::capture::{Answer, Classification, LabelScore, TokenLabel};
use super::config::{ModelConfig, ProblemType};

/// Softmax of a row of logits, as torch computes it in f32.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|x| x / sum).collect()
}

/// The logistic function.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The `k` largest entries of a row, largest first (ties keep the lower id, as `torch.topk` does
/// on CPU in practice). One pass with a small sorted buffer: `k` is a handful, rows are as long as
/// a vocabulary.
pub fn top_k(values: &[f32], k: usize) -> Vec<(u32, f32)> {
    /// Values screened at once: a vocabulary's logits rarely beat the k-th best kept, so most
    /// chunks are passed over on one vectorised maximum instead of a branch per value.
    const CHUNK: usize = 64;
    let k = k.min(values.len());
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    for (index, chunk) in values.chunks(CHUNK).enumerate() {
        if best.len() == k && chunk_max_key(chunk) <= total_order_key(best[k - 1].1) {
            continue;
        }
        for (offset, &value) in chunk.iter().enumerate() {
            let full = best.len() == k;
            // Strictly greater: on a tie the earlier (lower) id keeps its place.
            if full && best[k - 1].1.total_cmp(&value).is_ge() {
                continue;
            }
            let at = best.partition_point(|&(_, kept)| kept.total_cmp(&value).is_ge());
            best.insert(at, ((index * CHUNK + offset) as u32, value));
            best.truncate(k);
        }
    }
    best
}

/// An integer that orders as `f32::total_cmp` orders the floats (its own definition).
#[inline(always)]
fn total_order_key(value: f32) -> i32 {
    let bits = value.to_bits() as i32;
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

crate::model::backend::cpu::isa::dispatched! {
    /// The largest [`total_order_key`] of a chunk.
    fn chunk_max_key(chunk: &[f32]) -> i32 {
        chunk
            .iter()
            .map(|&value| total_order_key(value))
            .fold(i32::MIN, i32::max)
    }
}

/// The `k` most probable entries of `softmax(logits)`, most probable first, without
/// materialising the whole distribution.
pub fn top_k_softmax(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let best = top_k(logits, k.max(1));
    let max = best.first().map_or(0.0, |&(_, logit)| logit);
    let sum = super::backend::cpu::sum_exp(logits, max);
    best.into_iter()
        .take(k)
        .map(|(id, logit)| (id, (logit - max).exp() / sum))
        .collect()
}

/// The index of the largest value (the first, on ties, as `argmax` does).
pub(crate) fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (index, &value)| {
            if value > best.1 {
                (index, value)
            } else {
                best
            }
        })
        .0
}

/// What a sequence-classification head's logits mean: `problem_type` when the config says, else
/// regression for a single output and single-label classification otherwise (transformers'
/// rule).
pub fn problem_type(config: &ModelConfig, outputs: usize) -> ProblemType {
    config.problem_type.unwrap_or(if outputs == 1 {
        ProblemType::Regression
    } else {
        ProblemType::SingleLabelClassification
    })
}

/// Every label with its probability (softmax, or a sigmoid each for multi-label) or, for
/// regression, its raw score; highest first.
pub fn classification(logits: &[f32], config: &ModelConfig) -> Classification {
    let problem_type = problem_type(config, logits.len());
    let values = match problem_type {
        ProblemType::SingleLabelClassification => softmax(logits),
        ProblemType::MultiLabelClassification => logits.iter().map(|&x| sigmoid(x)).collect(),
        ProblemType::Regression => logits.to_vec(),
    };
    let mut labels: Vec<LabelScore> = values
        .iter()
        .enumerate()
        .map(|(id, &value)| {
            let regression = problem_type == ProblemType::Regression;
            LabelScore {
                label: config.label(id),
                id,
                prob: (!regression).then_some(value),
                score: regression.then_some(value),
            }
        })
        .collect();
    labels.sort_by(|a, b| b.value().total_cmp(&a.value()).then(a.id.cmp(&b.id)));
    Classification {
        problem_type,
        labels,
    }
}

/// The longest answer, in tokens, that transformers 4.x's question-answering pipeline returned
/// by default (`max_answer_len`).
pub const MAX_ANSWER_TOKENS: usize = 15;

/// The tokens a question-answering decode sees.
pub struct QaInput<'a> {
    /// Per-token start logits.
    pub start_logits: &'a [f32],
    /// Per-token end logits.
    pub end_logits: &'a [f32],
    /// Which sentence each token comes from; the context is sentence 1 (B).
    pub sentence: &'a [Option<usize>],
    /// Each token's character offsets in its sentence.
    pub char_offsets: &'a [Option<(usize, usize)>],
    /// The context text.
    pub context: &'a str,
}

/// The best answer span, as transformers 4.x's question-answering pipeline computed it with its
/// defaults: start and end probabilities are softmaxes over the first token and the context
/// tokens only; the answer is the context span `s ≤ e < s + 15` with the largest
/// `p_start[s]·p_end[e]` (the first such span in (start, end) order). `None` when the context
/// has no tokens.
pub fn answer(input: &QaInput<'_>) -> Option<Answer> {
    let tokens = input.start_logits.len();
    let context: Vec<usize> = (0..tokens)
        .filter(|&index| input.sentence[index] == Some(1))
        .collect();
    if context.is_empty() {
        return None;
    }
    let allowed: Vec<usize> = std::iter::once(0)
        .chain(context.iter().copied().filter(|&index| index != 0))
        .collect();
    let spread = |logits: &[f32]| {
        let chosen: Vec<f32> = allowed.iter().map(|&index| logits[index]).collect();
        let mut probs = vec![0f32; tokens];
        for (&index, p) in allowed.iter().zip(softmax(&chosen)) {
            probs[index] = p;
        }
        probs
    };
    let start_probs = spread(input.start_logits);
    let end_probs = spread(input.end_logits);
    let mut best: Option<(usize, usize, f32)> = None;
    for &start in &context {
        for &end in context
            .iter()
            .filter(|&&end| end >= start && end < start + MAX_ANSWER_TOKENS)
        {
            let score = start_probs[start] * end_probs[end];
            if best.is_none_or(|(_, _, top)| score > top) {
                best = Some((start, end, score));
            }
        }
    }
    let (start, end, score) = best?;
    let char_start = input.char_offsets[start].map_or(0, |(from, _)| from);
    let char_end = input.char_offsets[end].map_or(char_start, |(_, to)| to);
    Some(Answer {
        answer: input
            .context
            .chars()
            .skip(char_start)
            .take(char_end.saturating_sub(char_start))
            .collect(),
        score,
        start,
        end,
        char_start,
        char_end,
        start_probs,
        end_probs,
    })
}

/// The entity type of a BIO label (`B-PER` and `I-PER` → `PER`); `None` for the outside label
/// `O`. Labels without a BIO prefix are their own type.
pub fn entity_type(label: &str) -> Option<&str> {
    if label == "O" {
        return None;
    }
    Some(
        label
            .strip_prefix("B-")
            .or_else(|| label.strip_prefix("I-"))
            .unwrap_or(label),
    )
}

/// The entity types of a label set, each once, in label order.
pub fn entity_types(labels: &[String]) -> Vec<&str> {
    let mut types: Vec<&str> = Vec::new();
    for kind in labels.iter().filter_map(|label| entity_type(label)) {
        if !types.contains(&kind) {
            types.push(kind);
        }
    }
    types
}

/// The most probable label of every token that is not a special token (special tokens have no
/// `char_offsets`), from logits `[tokens, labels]`.
pub fn token_labels(
    logits: &[f32],
    labels: usize,
    char_offsets: &[Option<(usize, usize)>],
    config: &ModelConfig,
) -> Vec<TokenLabel> {
    logits
        .chunks_exact(labels.max(1))
        .enumerate()
        .filter(|(position, _)| char_offsets[*position].is_some())
        .map(|(position, row)| {
            let probs = softmax(row);
            let id = argmax(&probs);
            TokenLabel {
                position,
                label: config.label(id),
                prob: probs[id],
                id,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bio_labels_group_by_entity_type() {
        assert_eq!(entity_type("B-PER"), Some("PER"));
        assert_eq!(entity_type("I-PER"), Some("PER"));
        assert_eq!(entity_type("O"), None);
        assert_eq!(entity_type("LABEL_3"), Some("LABEL_3"));
        let labels: Vec<String> = ["O", "B-PER", "I-PER", "B-LOC"].map(String::from).to_vec();
        assert_eq!(entity_types(&labels), ["PER", "LOC"]);
    }

    #[test]
    fn top_k_orders_and_breaks_ties_by_id() {
        assert_eq!(
            top_k(&[0.1, 0.4, 0.4, 0.1], 3),
            vec![(1, 0.4), (2, 0.4), (0, 0.1)]
        );
        assert_eq!(top_k(&[1.0], 5).len(), 1);
        assert_eq!(
            top_k(&[3.0, 1.0, 2.0, 5.0, 4.0], 2),
            vec![(3, 5.0), (4, 4.0)]
        );
        assert_eq!(top_k(&[1.0, 1.0, 1.0], 2), vec![(0, 1.0), (1, 1.0)]);
        // Past one screened chunk: what a plain sort (stable, total order) keeps.
        let values: Vec<f32> = (0..1000)
            .map(|i| match i {
                500 => -0.0,
                700 => f32::NAN,
                _ => ((i * 37) % 101) as f32 * 0.01 - 0.5,
            })
            .collect();
        let mut sorted: Vec<(u32, f32)> = values
            .iter()
            .enumerate()
            .map(|(id, &value)| (id as u32, value))
            .collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
        for k in [1, 5, 40] {
            let got = top_k(&values, k);
            let expected = &sorted[..k];
            assert!(
                got.iter()
                    .zip(expected)
                    .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()),
                "k={k}: {got:?} vs {expected:?}"
            );
        }
        let probs = top_k_softmax(&[0.0, 2.0_f32.ln(), 0.0], 2);
        assert_eq!(probs[0].0, 1);
        assert!((probs[0].1 - 0.5).abs() < 1e-6 && (probs[1].1 - 0.25).abs() < 1e-6);
    }

    #[test]
    fn answers_come_from_the_context_within_fifteen_tokens() {
        // [CLS] q ? [SEP] c0 c1 c2 [SEP]; the question token has the highest logits but cannot
        // be part of an answer.
        let sentence = [
            None,
            Some(0),
            Some(0),
            None,
            Some(1),
            Some(1),
            Some(1),
            None,
        ];
        let offsets = [
            None,
            Some((0, 1)),
            Some((1, 2)),
            None,
            Some((0, 3)),
            Some((4, 7)),
            Some((8, 11)),
            None,
        ];
        let start = [0.0, 9.0, 0.0, 0.0, 1.0, 3.0, 0.0, 5.0];
        let end = [0.0, 9.0, 0.0, 0.0, 4.0, 1.0, 2.5, 5.0];
        let answer = answer(&QaInput {
            start_logits: &start,
            end_logits: &end,
            sentence: &sentence,
            char_offsets: &offsets,
            context: "one two six",
        })
        .unwrap();
        // c1 starts best; c0 ends best but precedes it, so the span is c1..c2.
        assert_eq!((answer.start, answer.end), (5, 6));
        assert_eq!(answer.answer, "two six");
        assert_eq!((answer.char_start, answer.char_end), (4, 11));
        let total: f32 = answer.start_probs.iter().sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(answer.start_probs[1], 0.0, "question tokens are left out");
        assert!(
            answer.start_probs[0] > 0.0,
            "the first token is in the softmax"
        );
        let expected = answer.start_probs[5] * answer.end_probs[6];
        assert_eq!(answer.score, expected);
    }
}
