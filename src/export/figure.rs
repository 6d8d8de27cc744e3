//! Figures for slides and papers: each is a view's scene (the drawing the app shows, see
//! [`crate::views`]) under a caption naming the model and the text, written as SVG and
//! rasterised from that SVG to PNG ([`crate::render::svg`]).

use crate::analysis::compare::divergence_by_layer;
use crate::analysis::projection::Projection;
use crate::analysis::stats::{HeadStats, Statistic};
use crate::analysis::HeadChoice;
use crate::model::{Analysis, EmbeddingBreakdown, LensPosition};
pub use crate::render::parts::Caption;
use crate::render::scene::{Palette, Scene};

/// A view's scene under its caption: the figure.
fn framed<'a>(scene: Scene<'a>, caption: &Caption) -> Scene<'a> {
    caption.frame(scene)
}

/// The figure as SVG text, on white paper.
pub fn to_svg(figure: &Scene<'_>) -> String {
    crate::render::svg::to_svg(figure, &Palette::PAPER)
}

/// The figure rasterised to PNG bytes at `scale` (1, 2 or 4 for slides and print).
pub fn to_png(figure: &Scene<'_>, scale: f32) -> anyhow::Result<Vec<u8>> {
    crate::render::svg::to_png(figure, &Palette::PAPER, scale)
}

/// A heatmap of one head (or the mean of a layer), or of what an attention kind makes of a
/// layer (`combined`: the rollout or flow map): the Heatmap tab's drawing at its natural size.
/// Fails for norms of a run without value norms.
pub fn heatmap<'a>(
    analysis: &Analysis,
    view: &crate::views::heatmap::Heatmap,
    combined: Option<&[f32]>,
    caption: &Caption,
) -> anyhow::Result<Scene<'a>> {
    use crate::views::heatmap::{natural_size, scene, Marks};
    let values = view
        .values(analysis, combined)
        .ok_or_else(|| anyhow::anyhow!("this run computed no value norms"))?;
    let max = view.max(&values);
    let (width, height) = natural_size(analysis, view, max);
    // The image's pixels are made as the figure is written: the values go with them.
    let (drawn, _) = scene(
        analysis,
        view,
        values.into(),
        max,
        &Marks::default(),
        width,
        height,
    );
    Ok(framed(drawn, caption))
}

/// Token-to-token lines of one layer: queries left, keys right, one colour per head (the
/// heads in `hidden_heads` left out, weights under `threshold` not drawn): the Lines tab's
/// drawing.
pub fn lines(
    analysis: &Analysis,
    layer: usize,
    hidden_heads: &[usize],
    threshold: f32,
    caption: &Caption,
) -> Scene<'static> {
    use crate::views::lines::{natural_height, natural_width, scene, Lines, Marks};
    let view = Lines {
        layer,
        hidden_heads: hidden_heads.to_vec(),
        threshold,
        ..Lines::default()
    };
    let drawn = scene(
        analysis,
        &view,
        None,
        &Marks::default(),
        natural_width(analysis),
        natural_height(analysis),
    )
    .unwrap_or_default();
    framed(drawn, caption)
}

/// Every layer × head as a grid of small maps (raster thumbnails inside the SVG): attention, or
/// norm-based attention when `norms` (an error when the run computed no value norms).
pub fn overview<'a>(
    analysis: &'a Analysis,
    norms: bool,
    caption: &Caption,
) -> anyhow::Result<Scene<'a>> {
    use crate::views::overview;
    let scene = overview::scene(
        analysis,
        overview::Overview { norms },
        &overview::Marks::default(),
        overview::natural_width(analysis.heads()),
    )
    .map_err(anyhow::Error::msg)?;
    Ok(framed(scene, caption))
}

/// Token hidden states of one layer in the PCA plane of every layer, with `selected`'s path:
/// the Projection tab's drawing.
pub fn projection(
    analysis: &Analysis,
    projection: &Projection,
    layer: usize,
    selected: Option<usize>,
    caption: &Caption,
) -> Scene<'static> {
    use crate::views::projection::{scene, ProjectionView, NATURAL_SIZE};
    let view = ProjectionView {
        layer,
        token: selected,
        ..ProjectionView::default()
    };
    let (drawn, _) = scene(analysis, projection, &view, NATURAL_SIZE.0, NATURAL_SIZE.1);
    framed(drawn, caption)
}

/// What the model's heads predict for the input: the Predictions tab's drawing (`selected`: whose
/// next token). Fails when the model has no prediction head.
pub fn predictions(
    analysis: &Analysis,
    selected: Option<usize>,
    caption: &Caption,
) -> anyhow::Result<Scene<'static>> {
    use crate::model::HeadKind;
    let heads: Vec<HeadKind> = [
        (analysis.mlm.is_some(), HeadKind::MaskedLm),
        (analysis.next_token.is_some(), HeadKind::NextToken),
        (analysis.nsp_is_next.is_some(), HeadKind::NextSentence),
        (
            analysis.classification.is_some(),
            HeadKind::SequenceClassification,
        ),
        (analysis.qa.is_some(), HeadKind::QuestionAnswering),
        (
            analysis.token_classification.is_some(),
            HeadKind::TokenClassification,
        ),
    ]
    .into_iter()
    .filter_map(|(present, kind)| present.then_some(kind))
    .collect();
    let view = crate::views::predictions::Predictions {
        heads: &heads,
        token: selected,
        ..Default::default()
    };
    let scene = crate::views::predictions::scene(analysis, &view, 640.0).ok_or_else(|| {
        anyhow::anyhow!("this model has no prediction head (masked LM, next token, classifier, answers or token labels), so there is nothing to draw")
    })?;
    Ok(framed(scene, caption))
}

/// The logit lens at one position: the Lens tab's table under the caption.
pub fn lens(analysis: &Analysis, lens: &LensPosition, caption: &Caption) -> Scene<'static> {
    framed(crate::views::lens::scene(analysis, lens, None), caption)
}

/// The sizes of each token's input embedding and its parts, and the position embeddings'
/// similarity: the Embeddings tab's drawing.
pub fn embeddings<'a>(
    analysis: &Analysis,
    parts: &'a EmbeddingBreakdown,
    caption: &Caption,
) -> Scene<'a> {
    use crate::views::embeddings;
    let (width, height) = embeddings::natural_size(analysis, parts);
    let (scene, _) = embeddings::scene(
        analysis,
        parts,
        &embeddings::Marks::default(),
        width,
        height,
    );
    framed(scene, caption)
}

/// BertViz's neuron view of one head for one query token: the Query·Key tab's drawing.
pub fn query_key<'a>(
    analysis: &'a Analysis,
    layer: usize,
    head: usize,
    token: usize,
    caption: &Caption,
) -> Scene<'a> {
    use crate::views::query_key::{natural_width, scene, QueryKeyView};
    let view = QueryKeyView {
        layer,
        head,
        query: token,
    };
    framed(
        scene(analysis, view, None, natural_width(analysis)),
        caption,
    )
}

/// One side of a comparison figure.
pub struct CompareSide<'a> {
    /// The model's name.
    pub name: &'a str,
    /// Its analysis of the text.
    pub analysis: &'a Analysis,
    /// The layer shown.
    pub layer: usize,
    /// The head (or mean) shown.
    pub head: HeadChoice,
}

/// Two models' maps side by side and, when both tokenize the text alike, their difference
/// `A − B` and the divergence of every layer of A from B's layer at the same relative depth:
/// the Compare tab's drawing.
pub fn compare<'a>(a: &CompareSide<'a>, b: &CompareSide<'a>, caption: &Caption) -> Scene<'a> {
    use crate::views::compare::{natural_size, scene, Marks, Side};
    fn side<'a>(side: &CompareSide<'a>) -> Side<'a> {
        Side {
            name: side.name,
            analysis: side.analysis,
            layer: side.layer,
            head: side.head,
        }
    }
    let (a, b) = (side(a), side(b));
    let divergence = crate::analysis::compare::same_tokens(a.analysis, b.analysis)
        .then(|| divergence_by_layer(a.analysis, b.analysis));
    let (width, height) = natural_size(&a, &b);
    let (drawn, _) = scene(
        &a,
        &b,
        divergence.as_deref(),
        &Marks::default(),
        width,
        height,
    );
    framed(drawn, caption)
}

/// Every head's statistics as a layers × heads grid coloured by `statistic` (viridis from 0 to
/// its largest value), each cell marked with its head's label: the Heads tab's grid.
pub fn heads(stats: &[Vec<HeadStats>], statistic: Statistic, caption: &Caption) -> Scene<'static> {
    let width = crate::views::head_stats::natural_width(stats.first().map_or(0, Vec::len));
    framed(
        crate::views::head_stats::scene(stats, statistic, None, width),
        caption,
    )
}
