//! Two models side by side on the same text: a layer pair as heatmaps, their difference `A − B`
//! when both tokenize alike, and the divergence of every layer of A from B's layer at the same
//! relative depth; when they tokenize differently, both token lists.

use std::rc::Rc;

use crate::analysis::compare::{difference, same_tokens};
use crate::analysis::{shown_map, HeadChoice};
use crate::model::Analysis;
use crate::render::matrix::{Matrix, MatrixGeometry, MatrixZoom};
use crate::render::parts::MaskKey;
use crate::render::parts::{bar_chart, ColorScale};
use crate::render::scene::{
    Align, Baseline, Font, Paint, Pixels, Point, Raster, RasterKey, Scene, Text,
};
use crate::render::{difference_rgba, heatmap_rgba, max_value};

const TITLE: f32 = 12.0;
const GAP: f32 = 24.0;
const CHART_HEIGHT: f32 = 140.0;
/// A figure's matrices: about 300 points a side.
const FIGURE_SIDE: f32 = 300.0;

/// One side of the comparison: a model's name, its run of the text, and the map shown.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    /// The model's name.
    pub name: &'a str,
    /// Its analysis of the text.
    pub analysis: &'a Analysis,
    /// The layer shown.
    pub layer: usize,
    /// The head (or mean) shown.
    pub head: HeadChoice,
}

/// What the comparison marks: the selection, the cell under the pointer, the shared zoom.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks<'a> {
    /// Selected tokens (when both tokenize alike).
    pub selection: &'a [usize],
    /// The cell under the pointer, in every matrix.
    pub hovered: Option<(usize, usize)>,
    /// One zoom for every matrix, so that they stay aligned.
    pub zoom: MatrixZoom,
}

/// The maps' values, `[query][key]`, a causal model's future cells NaN.
fn map(side: &Side<'_>) -> Vec<f32> {
    shown_map(side.analysis, side.layer, side.head)
}

/// The size a figure gives the comparison: matrices of about 300 points, the chart under them.
pub fn natural_size(a: &Side<'_>, b: &Side<'_>) -> (f32, f32) {
    let columns = if same_tokens(a.analysis, b.analysis) {
        3.0
    } else {
        2.0
    };
    let block = FIGURE_SIDE + 200.0;
    (
        columns * block + (columns - 1.0) * GAP,
        block + CHART_HEIGHT + 60.0,
    )
}

/// The comparison in `width × height`; `divergence` (per layer of A) is drawn when both tokenize
/// alike and it has been computed. Returns the scene and where each matrix lies (A, B, then the
/// difference).
/// Long because it is one layout: three matrices under one zoom, their labels, the colour bars and
/// the divergence chart share a geometry computed once; the parts come from `render`.
pub fn scene<'a>(
    a: &Side<'a>,
    b: &Side<'a>,
    divergence: Option<&[f32]>,
    marks: &Marks<'_>,
    width: f32,
    height: f32,
) -> (Scene<'a>, Vec<MatrixGeometry>) {
    let identical = same_tokens(a.analysis, b.analysis);
    let columns = if identical { 3 } else { 2 };
    let block_width = (width - GAP * (columns - 1) as f32) / columns as f32;
    let below = if identical { CHART_HEIGHT + 40.0 } else { 80.0 };
    let block_height = (height - below).max(160.0);
    let mut scene = Scene::new(width, height, "Comparison of two models");
    let mut geometries = Vec::new();
    let selection: &[usize] = if identical { marks.selection } else { &[] };
    let hovered = if identical { marks.hovered } else { None };
    let mut draw = |scene: &mut Scene<'a>,
                    column: usize,
                    title: String,
                    labels: &[String],
                    raster: Raster<'a>,
                    scale: ColorScale,
                    masked: MaskKey| {
        let left = (block_width + GAP) * column as f32;
        scene.text(
            Text::new(Point::new(left, 0.0), title.clone(), TITLE, Font::Sans)
                .anchor(Align::Start, Baseline::Top)
                .bold(),
        );
        let title_width = crate::render::text::text_width(&title, TITLE, Font::Sans);
        scene.label(
            crate::render::scene::Rect::from_size(left, 0.0, title_width, TITLE * 1.4),
            title.clone(),
            None,
        );
        let tokens = labels.len();
        let matrix = Matrix {
            raster,
            labels,
            scale,
            masked,
            selection,
            hovered,
            zoom: marks.zoom,
            note: None,
            name: format!("{title}, {tokens} × {tokens} tokens"),
        };
        geometries.push(matrix.draw(scene, left, 20.0, block_width, block_height - 20.0));
    };
    let mut maps = Vec::new();
    for (slot, side) in [a, b].into_iter().enumerate() {
        let values = Rc::new(map(side));
        let max = max_value(&values);
        let tokens = side.analysis.len();
        let labels: Vec<String> = (0..tokens)
            .map(|i| side.analysis.display_token(i))
            .collect();
        let shown = Rc::clone(&values);
        let raster = Raster::new(
            RasterKey::of(("compare", slot, side.layer, side.head)),
            move || Pixels {
                width: tokens,
                height: tokens,
                rgba: heatmap_rgba(&shown, max),
            },
        );
        draw(
            &mut scene,
            slot,
            format!("{} · layer {} · {}", side.name, side.layer, side.head),
            &labels,
            raster,
            ColorScale::Sequential { max },
            MaskKey::of(side.analysis, side.layer),
        );
        maps.push(values);
    }
    if identical {
        let values = difference(&maps[0], &maps[1]);
        let max_abs = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        let tokens = a.analysis.len();
        let labels: Vec<String> = (0..tokens).map(|i| a.analysis.display_token(i)).collect();
        let raster = Raster::new(
            RasterKey::of(("difference", a.layer, a.head, b.layer, b.head)),
            move || Pixels {
                width: tokens,
                height: tokens,
                rgba: difference_rgba(&values, max_abs),
            },
        );
        draw(
            &mut scene,
            2,
            "A − B".to_owned(),
            &labels,
            raster,
            ColorScale::Diverging { max_abs },
            MaskKey::of(a.analysis, a.layer),
        );
    }
    let top = block_height + 12.0;
    if identical {
        let title = "divergence per layer: Jensen–Shannon of A's layer mean from B's at the same depth (0 = identical, 1 = disjoint)";
        scene.text(
            Text::new(Point::new(0.0, top), title, TITLE, Font::Sans)
                .anchor(Align::Start, Baseline::Top)
                .bold(),
        );
        match divergence {
            Some(divergence) => {
                let chart = bar_chart(
                    divergence,
                    (width * 0.6).clamp(200.0, 720.0),
                    CHART_HEIGHT,
                    |layer| layer.to_string(),
                    |layer| format!("layer {layer} of A: divergence {:.4}", divergence[layer]),
                );
                scene.append(chart, 0.0, top + 22.0);
            }
            None => scene.text(
                Text::new(
                    Point::new(0.0, top + 22.0),
                    "Computing how differently the two models attend, layer by layer…",
                    11.0,
                    Font::Sans,
                )
                .anchor(Align::Start, Baseline::Top)
                .paint(Paint::FaintInk),
            ),
        }
    } else {
        let (family_a, family_b) = (a.analysis.model_type, b.analysis.model_type);
        let why = if family_a == family_b {
            "The two models split this text into different tokens".to_owned()
        } else {
            format!(
                "{} and {} split this text into different tokens (their tokenizers differ)",
                family_a.name(),
                family_b.name()
            )
        };
        let mut y = top;
        for (line, font, paint) in [
            (why, Font::Sans, Paint::Alert),
            (
                "They tokenize this text differently, so their maps are not compared cell by cell: no difference map or divergence.".to_owned(),
                Font::Sans,
                Paint::FaintInk,
            ),
            (format!("A: {}", tokens_of(a.analysis)), Font::Mono, Paint::FaintInk),
            (format!("B: {}", tokens_of(b.analysis)), Font::Mono, Paint::FaintInk),
        ] {
            let start = y;
            for wrapped in super::predictions::wrap(&line, 11.0, font, width) {
                scene.text(
                    Text::new(Point::new(0.0, y), wrapped, 11.0, font)
                        .anchor(Align::Start, Baseline::Top)
                        .paint(paint),
                );
                y += 15.0;
            }
            scene.label(
                crate::render::scene::Rect::from_size(0.0, start, width, y - start),
                line,
                None,
            );
        }
        scene.height = scene.height.max(y);
    }
    (scene, geometries)
}

fn tokens_of(analysis: &Analysis) -> String {
    (0..analysis.len())
        .map(|index| analysis.display_token(index))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The comparison with its parameters: the layer and head of each model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CompareView {
    /// The first model's layer.
    pub layer: usize,
    /// The first model's head (or mean).
    pub head: HeadChoice,
    /// The second model's layer.
    pub other_layer: usize,
    /// The second model's head (or mean).
    pub other_head: HeadChoice,
}

impl CompareView {
    fn sides<'a>(&self, inputs: &super::Inputs<'a>) -> Result<[Side<'a>; 2], String> {
        let (name, other) = inputs
            .comparison
            .ok_or_else(|| "the compare figure needs a second model (--compare)".to_owned())?;
        super::check_layer_head(inputs.analysis, self.layer, self.head)?;
        super::check_layer_head(other, self.other_layer, self.other_head)
            .map_err(|err| format!("the second model, {name}: {err}"))?;
        Ok([
            Side {
                name: inputs.model,
                analysis: inputs.analysis,
                layer: self.layer,
                head: self.head,
            },
            Side {
                name,
                analysis: other,
                layer: self.other_layer,
                head: self.other_head,
            },
        ])
    }
}

impl super::Draw for CompareView {
    const LABEL: &'static str = "Compare";
    const DESCRIPTION: &'static str =
        "The same text through two models: aligned layers, difference map, divergence per layer";
    const READS_WORDS: bool = false;

    fn title(&self, _inputs: &super::Inputs<'_>) -> String {
        "compared".to_owned()
    }

    const COMPUTES: bool = true;

    fn compute_key(&self) -> String {
        // The same for every value of the parameters.
        "divergence".to_owned()
    }

    fn compute(&self, runs: &super::Runs<'_>) -> super::Computed {
        let shown = runs.shown();
        super::Computed {
            divergence: runs
                .other
                .filter(|other| same_tokens(shown, other))
                .map(|other| crate::analysis::compare::divergence_by_layer(shown, other)),
            ..super::Computed::default()
        }
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        self.sides(inputs)
            .map_or((400.0, 300.0), |[a, b]| natural_size(&a, &b))
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let [a, b] = self.sides(inputs)?;
        let marks = Marks {
            selection: canvas.selection,
            hovered: canvas.hovered_cell(),
            zoom: canvas.zoom,
        };
        let (scene, geometries) = scene(
            &a,
            &b,
            inputs.divergence,
            &marks,
            canvas.width,
            canvas.height,
        );
        let zoomable = geometries.iter().map(super::Zoomable::of_matrix).collect();
        Ok(super::Drawn { scene, zoomable })
    }
}

#[cfg(feature = "gui")]
pub use tab::CompareTab;

/// The Compare tab: each model's layer and head (B's aligned by depth, or picked), then the
/// layer pair with its difference and divergence, or both models' grids of heads.
#[cfg(feature = "gui")]
mod tab {
    use serde::{Deserialize, Serialize};

    use super::CompareView;
    use crate::analysis::compare::{aligned_layer, same_tokens};
    use crate::analysis::{shown_map, HeadChoice};
    use crate::model::Analysis;
    use crate::render::matrix::MatrixZoom;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Marks, Tab, TabContext};
    use crate::ui::widgets::controls::layer_picker;
    use crate::ui::widgets::matrix::{cell_tooltip, zoom_controls, zoom_keys};
    use crate::ui::{token_click, ViewState};
    use crate::views::overview::{overview_grid, Overview};
    use crate::views::{Figure, Inputs};

    /// The Compare tab's own state.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct CompareTab {
        /// The layer of the comparison model paired with the shared layer.
        pub compare_layer: usize,
        /// Pick the comparison layer by relative depth.
        pub align_by_depth: bool,
        /// Both grids of every head instead of one layer pair.
        pub overviews: bool,
        /// The head (or mean) shown for model A and for model B.
        pub heads: [HeadChoice; 2],
        /// One zoom for every matrix (not remembered between runs).
        #[serde(skip)]
        pub zoom: MatrixZoom,
    }

    impl Default for CompareTab {
        fn default() -> Self {
            Self {
                compare_layer: 0,
                align_by_depth: true,
                overviews: false,
                heads: [HeadChoice::Mean; 2],
                zoom: MatrixZoom::default(),
            }
        }
    }

    impl Tab for CompareTab {
        fn figure(
            &self,
            state: &ViewState,
            run: &Analysis,
            other: Option<&Analysis>,
        ) -> Option<Figure> {
            let other = other?;
            let other_layer = if self.align_by_depth {
                aligned_layer(state.layer, run.layers(), other.layers())
            } else {
                self.compare_layer.min(other.layers().saturating_sub(1))
            };
            let head = |slot: usize, heads: usize| match self.heads[slot] {
                HeadChoice::Head(head) if head >= heads => HeadChoice::Mean,
                head => head,
            };
            Some(Figure::Compare(CompareView {
                layer: state.layer,
                head: head(0, run.heads()),
                other_layer,
                other_head: head(1, other.heads()),
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let Some((name, other)) = cx
                .comparison
                .as_ref()
                .map(|other| (other.name.clone(), std::sync::Arc::clone(&other.result)))
            else {
                ui.label("Load a second model with Compare with… above.");
                return;
            };
            let run = cx.run;
            let analysis = run.analysis();
            self.controls(
                ui,
                cx.state,
                (&cx.info.name, analysis),
                (&name, &other.analysis),
            );
            let Some(figure) = self.figure(cx.state, analysis, Some(&other.analysis)) else {
                return;
            };
            if self.overviews {
                self.grids(ui, cx, (&name, &other.analysis));
                return;
            }
            let Figure::Compare(view) = figure else {
                return;
            };
            let identical = same_tokens(analysis, &other.analysis);
            let selection = cx.state.selection();
            egui::ScrollArea::vertical()
                .id_salt("compare")
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    let Some(shown) = cx.draw(ui, &figure, Some(&mut self.zoom), 420.0) else {
                        return;
                    };
                    if let (Some(Hit::Cell { row, column }), Some(_)) =
                        (shown.hovered, shown.pointer)
                    {
                        let a = shown_map(analysis, view.layer, view.head);
                        let b = shown_map(&other.analysis, view.other_layer, view.other_head);
                        // Which matrix: A's, B's, then the difference.
                        let slot = shown
                            .pointer
                            .and_then(|p| shown.areas.iter().position(|area| area.contains(p)));
                        match slot.unwrap_or(usize::MAX) {
                            0 => cell_tooltip(
                                &shown.response,
                                analysis,
                                Some(view.layer),
                                &a,
                                (row, column),
                                "weight",
                            ),
                            1 => cell_tooltip(
                                &shown.response,
                                &other.analysis,
                                Some(view.other_layer),
                                &b,
                                (row, column),
                                "weight",
                            ),
                            _ if identical => {
                                let difference: Vec<f32> =
                                    a.iter().zip(&b).map(|(x, y)| x - y).collect();
                                cell_tooltip(
                                    &shown.response,
                                    analysis,
                                    Some(view.layer),
                                    &difference,
                                    (row, column),
                                    "difference A − B",
                                );
                            }
                            _ => {}
                        }
                    }
                    if identical {
                        if let Some(Hit::Cell { row, .. } | Hit::Token(row)) = shown.clicked {
                            cx.actions.push(token_click(ui, row, &selection));
                        }
                    }
                });
        }
    }

    impl CompareTab {
        /// Each model's layer and head, the alignment, the grids switch and the zoom.
        fn controls(
            &mut self,
            ui: &mut egui::Ui,
            state: &mut ViewState,
            (a_name, a): (&str, &Analysis),
            (b_name, b): (&str, &Analysis),
        ) {
            let (a_layers, b_layers) = (a.layers(), b.layers());
            if self.align_by_depth {
                self.compare_layer = aligned_layer(state.layer, a_layers, b_layers);
            }
            self.compare_layer = self.compare_layer.min(b_layers.saturating_sub(1));
            for (slot, heads) in [a.heads(), b.heads()].into_iter().enumerate() {
                if matches!(self.heads[slot], HeadChoice::Head(head) if head >= heads) {
                    self.heads[slot] = HeadChoice::Mean;
                }
            }
            ui.horizontal(|ui| {
                ui.label(format!("A: {a_name}"));
                let label = |layer: usize| format!("layer {layer}");
                layer_picker(
                    ui,
                    "compare-a-layer",
                    &mut state.layer,
                    a_layers,
                    label,
                    "Layer of model A",
                );
                head_picker(
                    ui,
                    "compare-a-head",
                    &mut self.heads[0],
                    a.heads(),
                    "Head of model A",
                );
                ui.separator();
                ui.label(format!("B: {b_name}"));
                ui.add_enabled_ui(!self.align_by_depth, |ui| {
                    layer_picker(
                        ui,
                        "compare-b-layer",
                        &mut self.compare_layer,
                        b_layers,
                        label,
                        "Layer of model B",
                    );
                });
                head_picker(
                    ui,
                    "compare-b-head",
                    &mut self.heads[1],
                    b.heads(),
                    "Head of model B",
                );
                ui.checkbox(&mut self.align_by_depth, "align by depth")
                    .on_hover_text(
                        "Pair layers at the same relative depth: layer 5 of 12 with layer 11 of 24",
                    );
                ui.separator();
                ui.checkbox(&mut self.overviews, "all heads").on_hover_text(
                    "Show both models' layers × heads grids instead of one layer pair",
                );
                if !self.overviews {
                    ui.separator();
                    zoom_controls(ui, &mut self.zoom);
                }
            });
            if !self.overviews {
                zoom_keys(ui, &mut self.zoom);
            }
            ui.weak(format!(
                "A has {a_layers} layers × {} heads, B has {b_layers} layers × {} heads · the divergence below compares layer means",
                a.heads(),
                b.heads()
            ));
        }

        /// Both models' grids of heads side by side; A's heads open in the heatmap.
        fn grids(
            &mut self,
            ui: &mut egui::Ui,
            cx: &mut TabContext<'_>,
            (b_name, b): (&str, &Analysis),
        ) {
            let run = cx.run;
            let selection = cx.state.selection();
            let figure = Figure::Overview(Overview::default());
            let mut opened = None;
            ui.columns(2, |columns| {
                columns[0].strong(format!("A: {}", cx.info.name));
                let inputs = Inputs::of(&cx.info.name, run.analysis());
                let marks = Marks {
                    selection: &selection,
                    open: None,
                };
                opened = overview_grid(&mut columns[0], &figure, &inputs, marks, false, cx.rasters);
                columns[1].strong(format!("B: {b_name}"));
                // Opening a head of B in the heatmap would show A's map: B's grid is for looking.
                if let Some(other) = cx.comparison.as_mut() {
                    let inputs = Inputs::of(b_name, b);
                    let marks = Marks {
                        selection: &[],
                        open: None,
                    };
                    overview_grid(
                        &mut columns[1],
                        &figure,
                        &inputs,
                        marks,
                        false,
                        other.rasters,
                    );
                }
            });
            if let Some((layer, head)) = opened {
                cx.actions
                    .push(crate::ui::UiAction::OpenInHeatmap { layer, head });
            }
        }
    }

    /// A head picker (with the mean of the layer) for one side.
    fn head_picker(ui: &mut egui::Ui, id: &str, head: &mut HeadChoice, heads: usize, hover: &str) {
        let label = |choice: HeadChoice| match choice {
            HeadChoice::Head(head) => format!("head {head}"),
            HeadChoice::Mean => "mean of heads".to_owned(),
        };
        egui::ComboBox::from_id_salt(id)
            .selected_text(label(*head))
            .show_ui(ui, |ui| {
                ui.selectable_value(head, HeadChoice::Mean, label(HeadChoice::Mean));
                for index in 0..heads {
                    ui.selectable_value(
                        head,
                        HeadChoice::Head(index),
                        label(HeadChoice::Head(index)),
                    );
                }
            })
            .response
            .on_hover_text(hover);
    }
}
