//! Every layer × head as a grid of thumbnails (BertViz's model view): each head's attention, or
//! its norm-based attention, max-pooled to at most 96 cells a side and coloured from 0 to its
//! own largest value.

use crate::model::Analysis;
use crate::render::parts::{grid_labels, notes};
use crate::render::scene::{
    Image, Paint, Pixels, Point, Raster, RasterKey, Rect, Scene, Shape, Stroke, Target,
};
use crate::render::{head_thumbnail, heatmap_rgba, max_value};

/// Largest side of a thumbnail, in cells.
pub const THUMBNAIL_CELLS: usize = 96;
/// Left of and above the grid: the layer and head numbers.
const LABEL_ROOM: f32 = 30.0;
const GAP: f32 = 3.0;
/// The smallest and largest thumbnails, in points.
const THUMB: std::ops::RangeInclusive<f32> = 24.0..=96.0;

/// What the overview shows of each head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Overview {
    /// Norm-based attention ‖α·f(x)‖ instead of attention weights.
    pub norms: bool,
}

/// What the overview marks on its grid: heads switched off, the head open in the heatmap, the
/// head under the pointer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks<'a> {
    /// Heads `(layer, head)` switched off: crossed out.
    pub ablated: &'a [(usize, usize)],
    /// The head the heatmap shows: outlined.
    pub open: Option<(usize, usize)>,
    /// The head under the pointer: outlined faintly.
    pub hovered: Option<(usize, usize)>,
}

/// The width a figure gives the grid: thumbnails of up to 72 points, about 960 in all.
pub fn natural_width(heads: usize) -> f32 {
    let thumb = (960.0 / heads.max(1) as f32 - 4.0).clamp(*THUMB.start(), 72.0);
    LABEL_ROOM + (thumb + GAP) * heads as f32
}

/// The note under the grid.
fn note(overview: Overview, analysis: &Analysis) -> String {
    let what = if overview.norms {
        "‖α·f(x)‖"
    } else {
        "weight"
    };
    let windowed = (0..analysis.layers())
        .any(|layer| analysis.window(layer) != crate::model::KeyWindow::Whole);
    let masked = match (analysis.causal, windowed) {
        (_, true) => " · grey: masked (later tokens, or outside a layer's window)",
        (true, false) => " · grey: masked",
        (false, false) => "",
    };
    format!("rows: layers · columns: heads · each map coloured from 0 to its own largest {what}{masked}")
}

/// The grid in `width` points (thumbnails as large as fit, within 24 to 96 points): a named
/// region per head ("layer 1, head 2"). Fails when norm-based attention is asked of a run that
/// computed no value norms.
/// Long because the grid, its row and column labels and the marks (open, ablated, hovered) share
/// one cell geometry.
pub fn scene<'a>(
    analysis: &'a Analysis,
    overview: Overview,
    marks: &Marks<'_>,
    width: f32,
) -> Result<Scene<'a>, String> {
    if overview.norms && analysis.value_norms.is_none() {
        return Err("this run computed no value norms".to_owned());
    }
    let (layers, heads) = (analysis.layers(), analysis.heads());
    let thumb =
        ((width - LABEL_ROOM) / heads.max(1) as f32 - GAP).clamp(*THUMB.start(), *THUMB.end());
    let pitch = thumb + GAP;
    let grid_height = pitch * layers as f32;
    let mut scene = Scene::new(
        LABEL_ROOM + pitch * heads as f32,
        LABEL_ROOM + grid_height + 22.0,
        format!("{layers} layers × {heads} heads"),
    );
    grid_labels(
        &mut scene, LABEL_ROOM, LABEL_ROOM, pitch, thumb, layers, heads,
    );
    for layer in 0..layers {
        for head in 0..heads {
            let rect = Rect::from_size(
                LABEL_ROOM + pitch * head as f32,
                LABEL_ROOM + pitch * layer as f32,
                thumb,
                thumb,
            );
            let norms = overview.norms;
            scene.add(Shape::Image(Image {
                rect,
                uv: Rect::UNIT,
                raster: Raster::new(
                    RasterKey::of(("thumbnail", layer, head, norms)),
                    move || {
                        // Checked above: with norms asked for, the run has them.
                        let (values, size) =
                            head_thumbnail(analysis, layer, head, norms, THUMBNAIL_CELLS)
                                .unwrap_or_else(|| {
                                    analysis.attention_thumbnail(layer, head, THUMBNAIL_CELLS)
                                });
                        Pixels {
                            width: size,
                            height: size,
                            rgba: heatmap_rgba(&values, max_value(&values)),
                        }
                    },
                ),
                vector_cells: false,
            }));
            if marks.ablated.contains(&(layer, head)) {
                scene.fill(rect, Paint::Rgba([0, 0, 0, 150]));
                let stroke = Stroke::new(2.0, Paint::Alert);
                scene.line(rect.min, rect.max, stroke);
                scene.line(
                    Point::new(rect.max.x, rect.min.y),
                    Point::new(rect.min.x, rect.max.y),
                    stroke,
                );
                scene.outline(rect, stroke);
            }
            if marks.open == Some((layer, head)) {
                scene.outline(rect.expand(2.0), Stroke::new(2.0, Paint::Accent));
            }
            if marks.hovered == Some((layer, head)) {
                scene.outline(rect.expand(1.0), Stroke::new(1.0, Paint::Ink));
            }
            let off = if marks.ablated.contains(&(layer, head)) {
                " (switched off)"
            } else {
                ""
            };
            scene.region(
                rect,
                Target::Head { layer, head },
                Some(format!("layer {layer}, head {head}{off}")),
            );
        }
    }
    notes(
        &mut scene,
        0.0,
        LABEL_ROOM + grid_height + 4.0,
        &[note(overview, analysis)],
    );
    scene.width = scene.width.max(crate::render::parts::notes_width(
        0.0,
        &[note(overview, analysis)],
    ));
    Ok(scene)
}

impl super::Draw for Overview {
    const LABEL: &'static str = "Overview";
    const DESCRIPTION: &'static str =
        "Every layer and head at a glance; click one to open it in the heatmap";
    const READS_WORDS: bool = true;

    fn title(&self, inputs: &super::Inputs<'_>) -> String {
        let (layers, heads) = (inputs.analysis.layers(), inputs.analysis.heads());
        if self.norms {
            format!("{layers} layers × {heads} heads · norm-based attention ‖α·f(x)‖")
        } else {
            format!("{layers} layers × {heads} heads")
        }
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        let width = natural_width(inputs.analysis.heads());
        let height = scene(inputs.analysis, *self, &Marks::default(), width)
            .map_or(100.0, |scene| scene.height);
        (width, height)
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let marks = Marks {
            ablated: &inputs.analysis.ablated_heads,
            open: canvas.open,
            hovered: match canvas.hovered {
                Some(crate::render::scene::Hit::Head { layer, head }) => Some((layer, head)),
                _ => None,
            },
        };
        scene(inputs.analysis, *self, &marks, canvas.width).map(super::Drawn::from)
    }
}

#[cfg(feature = "gui")]
pub use tab::{overview_grid, OverviewTab};

/// The Overview tab: the grid of heads; a click opens a head in the heatmap, or in ablation mode
/// switches it off or on.
#[cfg(feature = "gui")]
mod tab {
    use serde::{Deserialize, Serialize};

    use super::Overview;
    use crate::model::Analysis;
    use crate::render::scene::Hit;
    use crate::ui::scene::Rasters;
    use crate::ui::tab::{Marks, Tab, TabContext};
    use crate::ui::widgets::controls::attention_kind_switch;
    use crate::ui::{AttentionKind, UiAction, ViewState};
    use crate::views::{Figure, Inputs, View};

    /// The Overview tab's own state.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct OverviewTab {
        /// Clicks switch heads off and on instead of opening them (not remembered).
        #[serde(skip)]
        pub ablation_mode: bool,
    }

    impl Tab for OverviewTab {
        fn figure(
            &self,
            state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Overview(Overview {
                norms: state.attention_kind == AttentionKind::Norms,
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            ui.horizontal(|ui| {
                let before = cx.state.attention_kind;
                attention_kind_switch(ui, &mut cx.state.attention_kind, true);
                if cx.state.attention_kind.is_combined() && cx.state.attention_kind != before {
                    // One map per layer, not per head: shown where a layer is picked.
                    cx.state.view = View::Heatmap;
                }
            });
            self.ablation_bar(ui, cx);
            let Some(figure) = self.figure(cx.state, cx.analysis(), None) else {
                return;
            };
            let clicks_toggle = self.ablation_mode;
            let inputs = crate::ui::tab::inputs_of(
                cx.run,
                cx.info,
                cx.computed,
                None,
                cx.explained,
                cx.generation,
                None,
            );
            let selection = cx.state.selection();
            let open = match cx.state.head {
                crate::analysis::HeadChoice::Head(head) => Some((cx.state.layer, head)),
                crate::analysis::HeadChoice::Mean => None,
            };
            let hits = overview_grid(
                ui,
                &figure,
                &inputs,
                Marks {
                    selection: &selection,
                    open,
                },
                clicks_toggle,
                cx.rasters,
            );
            if let Some((layer, head)) = hits {
                cx.actions.push(if clicks_toggle {
                    UiAction::ToggleAblation { layer, head }
                } else {
                    UiAction::OpenInHeatmap { layer, head }
                });
            }
        }
    }

    impl OverviewTab {
        /// The ablation mode's switch, what is switched off, and a way back.
        fn ablation_bar(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            ui.horizontal(|ui| {
                ui.toggle_value(&mut self.ablation_mode, "Ablate heads")
                    .on_hover_text("While on, clicking a head switches it off (its attention is multiplied by zero, as transformers 4.x's head_mask did) or back on; the model runs again and Predictions shows before → after");
                if cx.state.ablated_heads.is_empty() {
                    if self.ablation_mode {
                        ui.weak("Click heads to switch them off");
                    }
                } else {
                    let list: Vec<String> = cx
                        .state
                        .ablated_heads
                        .iter()
                        .map(|(layer, head)| format!("{layer}:{head}"))
                        .collect();
                    ui.colored_label(
                        ui.visuals().warn_fg_color,
                        format!("Switched off (layer:head): {}", list.join(", ")),
                    );
                    if ui
                        .button("Restore all")
                        .on_hover_text("Switch every head back on and run again")
                        .clicked()
                    {
                        cx.actions.push(UiAction::ClearAblation);
                    }
                }
            });
        }
    }

    /// A grid of heads with its hint line, in a scroll area: the head clicked, if any. Compare
    /// draws two of them.
    pub fn overview_grid(
        ui: &mut egui::Ui,
        figure: &Figure,
        inputs: &Inputs<'_>,
        marks: Marks<'_>,
        clicks_toggle: bool,
        rasters: &mut Rasters,
    ) -> Option<(usize, usize)> {
        let analysis = inputs.analysis;
        let click = if clicks_toggle {
            "click a head to switch it off or on"
        } else {
            "click a head to open it"
        };
        ui.weak(format!(
            "{} layers × {} heads · rows are layers, columns are heads · {click}",
            analysis.layers(),
            analysis.heads()
        ));
        let ablated = &analysis.ablated_heads;
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let shown = crate::ui::tab::draw(ui, figure, inputs, marks, rasters, None, 0.0)?;
                if let Some(Hit::Head { layer, head }) = shown.hovered {
                    let off = ablated.contains(&(layer, head));
                    let hint = match (clicks_toggle, off) {
                        (true, true) => "click to switch it back on",
                        (true, false) => "click to switch it off",
                        (false, _) => "click to open in the heatmap",
                    };
                    let state = if off { " (switched off)" } else { "" };
                    shown.response.clone().on_hover_text_at_pointer(format!(
                        "layer {layer}, head {head}{state}: {hint}"
                    ));
                }
                match shown.clicked {
                    Some(Hit::Head { layer, head }) => Some((layer, head)),
                    _ => None,
                }
            })
            .inner
    }
}
