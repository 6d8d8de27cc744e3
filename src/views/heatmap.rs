//! One head's attention as a heatmap (query rows × key columns), or what an attention kind makes
//! of a layer: the mean of its heads, norm-based attention, rollout or flow through the layers.
//! One image of the map, token labels, a colour bar; a causal model's future cells grey.

use serde::{Deserialize, Serialize};

use crate::analysis::{shown_map, HeadChoice};
use crate::model::Analysis;
use crate::render::matrix::{Matrix, MatrixGeometry, MatrixZoom};
use crate::render::parts::ColorScale;
use crate::render::parts::MaskKey;
use crate::render::scene::{Pixels, Raster, RasterKey, Scene};
use crate::render::{heatmap_rgba, max_value};

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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
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
                crate::analysis::mask_unseen(analysis, self.layer, &mut values);
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

    /// Which grey cells the map has: a layer's own masks for its attention and norms, a causal
    /// model's later keys for rollout (which composes layers, windows and all), none for flow.
    pub fn mask_key(&self, analysis: &Analysis) -> MaskKey {
        match self.kind {
            MapKind::Attention | MapKind::Norms => MaskKey::of(analysis, self.layer),
            MapKind::Rollout => MaskKey::causal(analysis.causal),
            MapKind::Flow(_) => MaskKey::NONE,
        }
    }

    /// The line under the map: what rows and columns are, and what its grey cells are.
    pub fn note(&self, analysis: &Analysis) -> String {
        let masked = self.mask_key(analysis).note(analysis.window(self.layer));
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
        masked: view.mask_key(analysis),
        selection: marks.selection,
        hovered: marks.hovered,
        zoom: marks.zoom,
        note: Some(view.note(analysis)),
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
        masked: view.mask_key(analysis),
        selection: &[],
        hovered: None,
        zoom: MatrixZoom::default(),
        note: Some(view.note(analysis)),
        name: String::new(),
    }
    .natural_size()
}

impl MapKind {
    /// The map of a kind that combines heads and layers (rollout, flow) through `layer`,
    /// computed from `runs`; `None` for attention and norms, which views read from the run.
    pub fn combined(&self, runs: &super::Runs<'_>, layer: usize) -> Option<Vec<f32>> {
        use crate::analysis::words;
        match self {
            MapKind::Rollout => {
                let layers = match runs.words {
                    Some((words, _)) => words::word_rollout(runs.pieces, words),
                    None => crate::analysis::rollout::rollout(runs.pieces),
                };
                layers.into_iter().nth(layer)
            }
            MapKind::Flow(targets) => Some(crate::analysis::flow::flow_map(
                runs.shown(),
                layer,
                targets,
            )),
            MapKind::Attention | MapKind::Norms => None,
        }
    }
}

impl super::Draw for Heatmap {
    const LABEL: &'static str = "Heatmap";
    const DESCRIPTION: &'static str =
        "One head's attention: query rows × key columns (arrow keys step layers and heads)";
    const READS_WORDS: bool = true;

    fn title(&self, inputs: &super::Inputs<'_>) -> String {
        match &self.kind {
            MapKind::Rollout => format!("attention rollout through layer {}", self.layer),
            MapKind::Flow(into) => {
                let into: Vec<String> = into
                    .iter()
                    .map(|&token| inputs.analysis.display_token(token))
                    .collect();
                format!(
                    "attention flow through layer {} into {}",
                    self.layer,
                    into.join(", ")
                )
            }
            MapKind::Norms => format!(
                "layer {} · {} · norm-based attention ‖α·f(x)‖",
                self.layer, self.head
            ),
            MapKind::Attention => format!("layer {} · {}", self.layer, self.head),
        }
    }

    const COMPUTES: bool = true;

    fn compute(&self, runs: &super::Runs<'_>) -> super::Computed {
        let shown = runs.shown();
        // A layer or head the model lacks leaves nothing computed: drawing says why.
        if super::check_layer_head(shown, self.layer, self.head).is_err() {
            return super::Computed::default();
        }
        let combined = self.kind.combined(runs, self.layer);
        super::Computed {
            map: self
                .values(shown, combined.as_deref())
                .map(std::sync::Arc::new),
            ..super::Computed::default()
        }
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        if super::check_layer_head(inputs.analysis, self.layer, self.head).is_err() {
            // Drawing says why; the size does not matter.
            return (400.0, 300.0);
        }
        let values = inputs
            .map
            .map(<[f32]>::to_vec)
            .or_else(|| self.values(inputs.analysis, None))
            .unwrap_or_default();
        natural_size(inputs.analysis, self, self.max(&values))
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let analysis = inputs.analysis;
        super::check_layer_head(analysis, self.layer, self.head)?;
        if let MapKind::Flow(into) = &self.kind {
            for &token in into {
                super::check_token(analysis, token, "--flow-to")?;
            }
        }
        let values: std::borrow::Cow<'a, [f32]> = match inputs.map {
            Some(map) => map.into(),
            None if self.kind.is_combined() => {
                return Err("the rollout or flow has not been computed".to_owned())
            }
            None => self
                .values(analysis, None)
                .ok_or_else(|| "this run computed no value norms".to_owned())?
                .into(),
        };
        let max = self.max(&values);
        let marks = Marks {
            selection: canvas.selection,
            hovered: canvas.hovered_cell(),
            zoom: canvas.zoom,
        };
        let (scene, geometry) = scene(
            analysis,
            self,
            values,
            max,
            &marks,
            canvas.width,
            canvas.height,
        );
        Ok(super::Drawn {
            scene,
            zoomable: vec![super::Zoomable::of_matrix(&geometry)],
        })
    }
}

#[cfg(feature = "gui")]
pub use tab::HeatmapTab;

/// The Heatmap tab: the controls, the map filling the room it has (the wheel zooms at the
/// pointer, dragging pans), the crosshair and the cell's weight under the pointer.
#[cfg(feature = "gui")]
mod tab {
    use serde::{Deserialize, Serialize};

    use super::Heatmap;
    use crate::model::Analysis;
    use crate::render::matrix::MatrixZoom;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::widgets::controls::{attention_kind_switch, layer_head_controls};
    use crate::ui::widgets::matrix::{cell_tooltip, zoom_controls, zoom_keys};
    use crate::ui::{token_click, AttentionKind, ViewState};
    use crate::views::Figure;

    /// The Heatmap tab's own state.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct HeatmapTab {
        /// Colour 0 to 1 for every head, instead of 0 to the map's largest weight.
        pub fixed_scale: bool,
        /// The zoom and pan (not remembered between runs).
        #[serde(skip)]
        pub zoom: MatrixZoom,
    }

    impl Tab for HeatmapTab {
        fn figure(
            &self,
            state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Heatmap(Heatmap {
                layer: state.layer,
                head: state.head,
                kind: state.map_kind(),
                fixed_scale: self.fixed_scale,
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let (layers, heads) = (cx.analysis().layers(), cx.analysis().heads());
            let kind = cx.state.attention_kind;
            layer_head_controls(ui, cx.state, layers, heads, !kind.is_combined());
            ui.horizontal(|ui| {
                attention_kind_switch(ui, &mut cx.state.attention_kind, true);
                ui.separator();
                ui.add_enabled_ui(kind != AttentionKind::Norms, |ui| {
                    ui.checkbox(&mut self.fixed_scale, "Fixed 0–1 scale")
                        .on_hover_text(
                            "Colour 0 to 1 for every head, instead of 0 to this head's largest weight",
                        )
                        .on_disabled_hover_text(
                            "Norms are not probabilities: they colour 0 to their largest value",
                        );
                });
                if kind == AttentionKind::Flow {
                    ui.weak("shift-click rows to add them");
                }
                ui.separator();
                zoom_controls(ui, &mut self.zoom);
            });
            zoom_keys(ui, &mut self.zoom);
            let Some(values) = cx.computed.map.clone() else {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(match kind {
                        AttentionKind::Flow => "Finding the maximum flow into the selected tokens…",
                        AttentionKind::Rollout => "Rolling attention out through the layers…",
                        _ => "This run computed no value norms; change the text to run it again.",
                    });
                });
                return;
            };
            let selection = cx.state.selection();
            selection_summary(ui, cx.analysis(), &values, &selection);
            let Some(figure) = self.figure(cx.state, cx.analysis(), None) else {
                return;
            };
            let Some(shown) = cx.draw(ui, &figure, Some(&mut self.zoom), 0.0) else {
                return;
            };
            if let Some(Hit::Cell { row, column }) = shown.hovered {
                let layer = matches!(
                    cx.state.attention_kind,
                    AttentionKind::Raw | AttentionKind::Norms
                )
                .then_some(cx.state.layer);
                cell_tooltip(
                    &shown.response,
                    cx.analysis(),
                    layer,
                    &values,
                    (row, column),
                    "weight",
                );
            }
            if let Some(Hit::Cell { row, .. } | Hit::Token(row)) = shown.clicked {
                cx.actions.push(token_click(ui, row, &selection));
            }
        }
    }

    /// How many tokens the selection summary names on each side.
    const SUMMARY_TOKENS: usize = 4;

    /// One line on the selected tokens of a map: the keys the selection draws on most, and the
    /// queries that draw most on the selection, each weight summed over the selected tokens.
    fn selection_summary(
        ui: &mut egui::Ui,
        analysis: &Analysis,
        values: &[f32],
        selection: &[usize],
    ) {
        if selection.is_empty() {
            return;
        }
        let tokens = analysis.len();
        let weight = |query: usize, key: usize| {
            let value = values[query * tokens + key];
            if value.is_nan() {
                0.0
            } else {
                value
            }
        };
        let strongest = |sums: Vec<f32>| -> String {
            crate::model::prediction_heads::top_k(&sums, SUMMARY_TOKENS)
                .into_iter()
                .map(|(index, sum)| format!("{} {sum:.2}", analysis.display_token(index as usize)))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        let from: Vec<f32> = (0..tokens)
            .map(|key| selection.iter().map(|&query| weight(query, key)).sum())
            .collect();
        let to: Vec<f32> = (0..tokens)
            .map(|query| selection.iter().map(|&key| weight(query, key)).sum())
            .collect();
        let names: Vec<String> = selection
            .iter()
            .map(|&token| analysis.display_token(token))
            .collect();
        ui.horizontal_wrapped(|ui| {
            ui.strong(format!("Selected: {}", names.join(" + ")))
                .on_hover_text("Shift- or ctrl-click tokens (chips, rows) to select several; click one to select it alone");
            ui.label(format!("draws most on {}", strongest(from)))
                .on_hover_text("Keys by their weight summed over the selected query rows");
            ui.label(format!("· drawn on most by {}", strongest(to)))
                .on_hover_text("Query rows by their weight summed over the selected key columns");
        });
    }
}
