//! One head's attention as a heatmap (query rows × key columns), or what an attention kind makes
//! of a layer: the mean of its heads, norm-based attention, rollout or flow through the layers.
//! One image of the map, token labels, a colour bar; a causal model's future cells grey.

use serde::{Deserialize, Serialize};

use crate::analysis::{shown_map, HeadChoice};
use crate::model::Analysis;
use crate::render::matrix::{Matrix, MatrixGeometry, MatrixZoom};
use crate::render::parts::ColorScale;
use crate::render::scene::{Pixels, Raster, RasterKey, Scene};
use crate::render::{heatmap_rgba, mask_future, max_value};

/// What a heatmap (and the lines) show of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum MapKind {
    /// A head's attention probabilities, as the model computed them (or their mean).
    #[default]
    Attention,
    /// Attention rollout (Abnar & Zuidema 2020) through the layers up to this one.
    Rollout,
    /// Norm-based attention ‖α·f(x)‖ (Kobayashi et al. 2020).
    Norms,
    /// Attention flow (Abnar & Zuidema 2020) into these tokens through the layers up to this
    /// one.
    Flow(Vec<usize>),
}

impl MapKind {
    /// Whether the kind combines a layer's heads (and the layers below) into one map, which is
    /// computed apart (off the UI thread in the app): rollout and flow.
    pub fn is_combined(&self) -> bool {
        matches!(self, Self::Rollout | Self::Flow(_))
    }
}

/// A heatmap with its parameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Heatmap {
    /// Layer index (for rollout and flow: the last layer they run through).
    pub layer: usize,
    /// One head or the mean (attention and norms).
    pub head: HeadChoice,
    /// What the map shows.
    pub kind: MapKind,
    /// Colour 0 to 1 instead of 0 to the map's largest value (attention and rollout).
    pub fixed_scale: bool,
}

/// What the heatmap marks: the selection, the cell under the pointer, the zoom.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks<'a> {
    /// Selected tokens, outlined.
    pub selection: &'a [usize],
    /// The cell under the pointer.
    pub hovered: Option<(usize, usize)>,
    /// The zoom.
    pub zoom: MatrixZoom,
}

impl Heatmap {
    /// The map's values, `[query][key]`, a causal model's future cells NaN: attention and norms
    /// from the analysis (`None` for norms of a run without value norms); rollout and flow are
    /// `combined`, computed apart.
    pub fn values(&self, analysis: &Analysis, combined: Option<&[f32]>) -> Option<Vec<f32>> {
        match &self.kind {
            MapKind::Attention => Some(shown_map(analysis, self.layer, self.head)),
            MapKind::Norms => {
                let mut values = crate::analysis::norms::norm_map(analysis, self.layer, self.head)?;
                if analysis.causal {
                    mask_future(&mut values, analysis.len());
                }
                Some(values)
            }
            MapKind::Rollout | MapKind::Flow(_) => combined.map(<[f32]>::to_vec),
        }
    }

    /// The value the brightest colour stands for: 1 on the fixed scale, else the map's largest.
    pub fn max(&self, values: &[f32]) -> f32 {
        if self.fixed_scale && self.kind != MapKind::Norms {
            1.0
        } else {
            max_value(values)
        }
    }

    /// What the image's pixels are, for painters to keep them.
    pub fn raster_key(&self) -> RasterKey {
        RasterKey::of((
            "heatmap",
            self.layer,
            self.head,
            &self.kind,
            self.fixed_scale,
        ))
    }

    /// The line under the map: what rows and columns are.
    pub fn note(&self, causal: bool) -> String {
        let masked = if causal {
            " · grey: masked, a causal model sees only earlier tokens"
        } else {
            ""
        };
        match &self.kind {
            MapKind::Attention => {
                format!("Rows: queries · columns: keys · each row sums to 1{masked}")
            }
            MapKind::Rollout => format!(
                "Rollout through layers 0–{}: how much each row draws on each column{masked}",
                self.layer
            ),
            MapKind::Norms => {
                format!("Norm-based attention ‖α·f(x)‖ of each column moved into each row{masked}")
            }
            MapKind::Flow(_) => format!(
                "Flow through layers 0–{} into the selected rows (else the first) from each column · grey rows: not computed",
                self.layer
            ),
        }
    }
}

/// The map in `width × height` (`values` from [`Heatmap::values`], borrowed or owned, coloured
/// from 0 to `max`): the scene and where the matrix lies.
pub fn scene<'a>(
    analysis: &Analysis,
    view: &Heatmap,
    values: std::borrow::Cow<'a, [f32]>,
    max: f32,
    marks: &Marks<'_>,
    width: f32,
    height: f32,
) -> (Scene<'a>, MatrixGeometry) {
    let tokens = analysis.len();
    let labels: Vec<String> = (0..tokens).map(|i| analysis.display_token(i)).collect();
    let matrix = Matrix {
        raster: Raster::new(view.raster_key(), move || Pixels {
            width: tokens,
            height: tokens,
            rgba: heatmap_rgba(&values, max),
        }),
        labels: &labels,
        scale: ColorScale::Sequential { max },
        masked: analysis.causal,
        selection: marks.selection,
        hovered: marks.hovered,
        zoom: marks.zoom,
        note: Some(view.note(analysis.causal)),
        name: format!("Attention matrix, {tokens} × {tokens} tokens"),
    };
    let mut scene = Scene::new(width, height, "Heatmap");
    let geometry = matrix.draw(&mut scene, 0.0, 0.0, width, height);
    (scene, geometry)
}

/// The size a figure gives the map: cells of up to 28 points, about 520 a side.
pub fn natural_size(analysis: &Analysis, view: &Heatmap, max: f32) -> (f32, f32) {
    let tokens = analysis.len();
    let labels: Vec<String> = (0..tokens).map(|i| analysis.display_token(i)).collect();
    Matrix {
        raster: Raster::new(RasterKey(0), || Pixels {
            width: 0,
            height: 0,
            rgba: Vec::new(),
        }),
        labels: &labels,
        scale: ColorScale::Sequential { max },
        masked: analysis.causal,
        selection: &[],
        hovered: None,
        zoom: MatrixZoom::default(),
        note: Some(view.note(analysis.causal)),
        name: String::new(),
    }
    .natural_size()
}
