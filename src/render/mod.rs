//! Drawing without a window: colours and pixel images made from captured data, and the
//! [`scene`]s every view draws once, which the app paints with egui and export writes as SVG
//! ([`svg`]) and PNG. [`text`] measures text for both; [`parts`] and [`matrix`] are pieces
//! several views share.

pub mod matrix;
pub mod parts;
pub mod scene;
pub mod svg;
pub mod text;

/// The colour of attention a causal model cannot pay (a key after its query): neither viridis
/// nor red–blue, so "not attended" never reads as a small weight.
pub const MASKED_COLOR: [u8; 3] = [150, 150, 150];

pub use crate::analysis::mask_future;

/// One head's small map for an overview grid, max-pooled down to about `target` cells a side:
/// its norm-based attention when `norms` (`None` when the run computed no value norms), else
/// its attention weights; a causal model's future keys are NaN.
pub fn head_thumbnail(
    analysis: &crate::model::Analysis,
    layer: usize,
    head: usize,
    norms: bool,
    target: usize,
) -> Option<(Vec<f32>, usize)> {
    use crate::model::captured::{max_pool, pool_factor};
    if !norms {
        return Some(analysis.attention_thumbnail(layer, head, target));
    }
    let mut values =
        crate::analysis::norms::norm_map(analysis, layer, crate::analysis::HeadChoice::Head(head))?;
    let tokens = analysis.len();
    crate::analysis::mask_unseen(analysis, layer, &mut values);
    Some(max_pool(
        &values,
        tokens,
        tokens,
        pool_factor(tokens, target),
    ))
}

/// The colour of an attention weight: viridis (perceptually uniform, readable in grey and by
/// colour-blind viewers) over `[0, max]`; NaN (masked) is [`MASKED_COLOR`].
pub fn attention_color(value: f32, max: f32) -> [u8; 3] {
    if value.is_nan() {
        return MASKED_COLOR;
    }
    let t = if max > 0.0 {
        (value / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let color = colorous::VIRIDIS.eval_continuous(f64::from(t));
    [color.r, color.g, color.b]
}

/// The colour of a difference `A − B`: red where A attends more, blue where B does, white where
/// they agree; symmetric over `[-max_abs, max_abs]`. NaN (masked) is [`MASKED_COLOR`].
pub fn difference_color(value: f32, max_abs: f32) -> [u8; 3] {
    if value.is_nan() {
        return MASKED_COLOR;
    }
    let t = if max_abs > 0.0 {
        (0.5 - 0.5 * value / max_abs).clamp(0.0, 1.0)
    } else {
        0.5
    };
    let color = colorous::RED_BLUE.eval_continuous(f64::from(t));
    [color.r, color.g, color.b]
}

/// RGBA pixels of a difference matrix coloured by [`difference_color`].
pub fn difference_rgba(values: &[f32], max_abs: f32) -> Vec<u8> {
    rgba(values, |v| difference_color(v, max_abs))
}

/// Opaque RGBA pixels of values coloured by `color`.
fn rgba(values: &[f32], color: impl Fn(f32) -> [u8; 3]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| {
            let [r, g, b] = color(v);
            [r, g, b, 255]
        })
        .collect()
}

/// A distinct colour per head, evenly spaced around the hue circle.
pub fn head_color(head: usize, heads: usize) -> [u8; 3] {
    let color = colorous::SINEBOW.eval_rational(head, heads.max(1));
    [color.r, color.g, color.b]
}

/// RGBA pixels of a row-major `rows × cols` matrix coloured by [`attention_color`].
pub fn heatmap_rgba(values: &[f32], max: f32) -> Vec<u8> {
    rgba(values, |v| attention_color(v, max))
}

/// A colour-bar tick: two decimals, or scientific notation for the tiny weights of long inputs.
pub fn tick_label(value: f32, range: f32) -> String {
    if range.abs() >= 0.01 || value == 0.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1e}")
    }
}

/// Which labels to draw so that none overlaps another: `boxes` are their `[left, top, right,
/// bottom]` extents, `always` the ones drawn whatever they cover (the selected and hovered
/// token). Those come first, then the rest in order, each only if it overlaps none placed.
pub fn place_labels(boxes: &[[f32; 4]], always: &[usize]) -> Vec<bool> {
    let overlaps =
        |a: &[f32; 4], b: &[f32; 4]| a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
    let mut shown = vec![false; boxes.len()];
    let mut placed: Vec<[f32; 4]> = Vec::new();
    for &index in always.iter().filter(|&&index| index < boxes.len()) {
        shown[index] = true;
        placed.push(boxes[index]);
    }
    for (index, bounds) in boxes.iter().enumerate() {
        if !shown[index] && !placed.iter().any(|other| overlaps(bounds, other)) {
            shown[index] = true;
            placed.push(*bounds);
        }
    }
    shown
}

/// Where a token comes from, for colouring points and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenGroup {
    /// A piece of sentence A (or the only text).
    SentenceA,
    /// A piece of sentence B.
    SentenceB,
    /// Added by the tokenizer: `[CLS]`, `[SEP]`, `<s>`, …
    Special,
}

impl TokenGroup {
    /// Every group, in legend order.
    pub const ALL: [TokenGroup; 3] = [Self::SentenceA, Self::SentenceB, Self::Special];

    /// The group of token `index`.
    pub fn of(analysis: &crate::model::Analysis, index: usize) -> Self {
        match analysis.sentence.get(index).copied().flatten() {
            _ if analysis.is_special(index) => Self::Special,
            Some(1) => Self::SentenceB,
            _ => Self::SentenceA,
        }
    }

    /// The legend's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::SentenceA => "sentence A",
            Self::SentenceB => "sentence B",
            Self::Special => "special tokens",
        }
    }

    /// Okabe–Ito blue and orange (told apart by colour-blind viewers), and grey.
    pub fn color(self) -> [u8; 3] {
        match self {
            Self::SentenceA => [86, 180, 233],
            Self::SentenceB => [230, 159, 0],
            Self::Special => [140, 140, 140],
        }
    }
}

/// The largest value, or 0 for an empty slice; masked (NaN) cells are ignored.
pub fn max_value(values: &[f32]) -> f32 {
    values.iter().copied().fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_span_the_map() {
        assert_eq!(
            attention_color(0.0, 1.0),
            [68, 1, 84],
            "viridis starts dark purple"
        );
        assert_eq!(
            attention_color(2.0, 1.0),
            attention_color(1.0, 1.0),
            "clamped"
        );
        assert_ne!(head_color(0, 12), head_color(6, 12));
        assert_eq!(tick_label(0.5, 1.0), "0.50");
        assert_eq!(tick_label(0.002, 0.004), "2.0e-3");
    }

    #[test]
    fn masked_cells_stay_grey_and_never_count_as_weights() {
        let mut values = vec![0.5; 16];
        mask_future(&mut values, 4);
        assert!(values[1].is_nan() && !values[4].is_nan() && values[15] == 0.5);
        assert_eq!(attention_color(values[1], 1.0), MASKED_COLOR);
        assert_eq!(max_value(&values), 0.5);
    }

    #[test]
    fn labels_never_overlap_but_the_selected_one_always_shows() {
        // Three labels on one spot and one apart.
        let boxes = [
            [0.0, 0.0, 10.0, 5.0],
            [2.0, 1.0, 12.0, 6.0],
            [4.0, 2.0, 14.0, 7.0],
            [20.0, 0.0, 30.0, 5.0],
        ];
        assert_eq!(place_labels(&boxes, &[]), [true, false, false, true]);
        assert_eq!(place_labels(&boxes, &[2]), [false, false, true, true]);
        assert_eq!(place_labels(&boxes, &[1, 2]), [false, true, true, true]);
    }
}
