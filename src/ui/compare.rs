//! Two models side by side on the same text: a chosen (or depth-aligned) layer pair as heatmaps,
//! their difference when both tokenize alike, the divergence of every layer, or both overview
//! grids.

use egui::Sense;

use super::heatmap::cell_tooltip;
use super::scene::Rasters;
use super::widgets::controls::layer_picker;
use super::widgets::matrix::{zoom_controls, zoom_keys};
use super::{overview, UiAction, ViewState};
use crate::analysis::compare::{aligned_layer, same_tokens};
use crate::analysis::{shown_map, HeadChoice};
use crate::model::Analysis;
use crate::render::scene::Hit;
use crate::views::compare;

/// One side of the comparison.
pub struct Side<'a> {
    /// The model's name.
    pub name: &'a str,
    /// Its analysis of the text.
    pub analysis: &'a Analysis,
    /// Its scenes' images.
    pub rasters: &'a mut Rasters,
}

/// The compare tab. `divergence` is the mean JS divergence per layer of A (computed once per
/// result pair), present when both models tokenize the text identically.
pub fn compare_view<'a>(
    ui: &mut egui::Ui,
    a: Side<'a>,
    b: Side<'a>,
    rasters: &mut Rasters,
    divergence: Option<&[f32]>,
    state: &mut ViewState,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let (a_layers, b_layers) = (a.analysis.layers(), b.analysis.layers());
    if state.align_by_depth {
        state.compare_layer = aligned_layer(state.layer, a_layers, b_layers);
    }
    state.compare_layer = state.compare_layer.min(b_layers.saturating_sub(1));
    for (slot, heads) in [a.analysis.heads(), b.analysis.heads()]
        .into_iter()
        .enumerate()
    {
        if matches!(state.compare_heads[slot], HeadChoice::Head(head) if head >= heads) {
            state.compare_heads[slot] = HeadChoice::Mean;
        }
    }
    ui.horizontal(|ui| {
        ui.label(format!("A: {}", a.name));
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
            &mut state.compare_heads[0],
            a.analysis.heads(),
            "Head of model A",
        );
        ui.separator();
        ui.label(format!("B: {}", b.name));
        ui.add_enabled_ui(!state.align_by_depth, |ui| {
            layer_picker(
                ui,
                "compare-b-layer",
                &mut state.compare_layer,
                b_layers,
                label,
                "Layer of model B",
            );
        });
        head_picker(
            ui,
            "compare-b-head",
            &mut state.compare_heads[1],
            b.analysis.heads(),
            "Head of model B",
        );
        ui.checkbox(&mut state.align_by_depth, "align by depth")
            .on_hover_text(
                "Pair layers at the same relative depth: layer 5 of 12 with layer 11 of 24",
            );
        ui.separator();
        ui.checkbox(&mut state.compare_overviews, "all heads")
            .on_hover_text("Show both models' layers × heads grids instead of one layer pair");
        if !state.compare_overviews {
            ui.separator();
            zoom_controls(ui, &mut state.compare_zoom);
        }
    });
    if !state.compare_overviews {
        zoom_keys(ui, &mut state.compare_zoom);
    }
    ui.weak(format!(
        "A has {a_layers} layers × {} heads, B has {b_layers} layers × {} heads · the divergence below compares layer means",
        a.analysis.heads(),
        b.analysis.heads()
    ));

    egui::ScrollArea::vertical()
        .id_salt("compare")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            actions.extend(compare_body(ui, a, b, rasters, divergence, state))
        });
    actions
}

/// Everything below the compare controls, in a scroll area.
fn compare_body<'a>(
    ui: &mut egui::Ui,
    a: Side<'a>,
    b: Side<'a>,
    rasters: &mut Rasters,
    divergence: Option<&[f32]>,
    state: &mut ViewState,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let identical = same_tokens(a.analysis, b.analysis);
    if state.compare_overviews {
        ui.columns(2, |columns| {
            columns[0].strong(format!("A: {}", a.name));
            let ablation = overview::Ablation {
                heads: &state.ablated_heads,
                clicks_toggle: false,
            };
            actions.extend(overview::overview_view(
                &mut columns[0],
                a.analysis,
                state,
                ablation,
                a.rasters,
            ));
            columns[1].strong(format!("B: {}", b.name));
            // Opening a head of B in the heatmap would show A's map: B's grid is for looking.
            overview::overview_view(
                &mut columns[1],
                b.analysis,
                state,
                overview::Ablation::default(),
                b.rasters,
            );
        });
        return actions;
    }
    let sides = [
        compare::Side {
            name: a.name,
            analysis: a.analysis,
            layer: state.layer,
            head: state.compare_heads[0],
        },
        compare::Side {
            name: b.name,
            analysis: b.analysis,
            layer: state.compare_layer,
            head: state.compare_heads[1],
        },
    ];
    let selection = state.selection();
    let (width, height) = (ui.available_width(), ui.available_height().max(420.0));
    let geometries = std::cell::RefCell::new(Vec::new());
    let zoom = state.compare_zoom;
    let shown = super::scene::show_hovered(ui, rasters, Sense::click_and_drag(), |hovered| {
        let marks = compare::Marks {
            selection: &selection,
            hovered: match hovered {
                Some(Hit::Cell { row, column }) => Some((row, column)),
                _ => None,
            },
            zoom,
        };
        let (scene, matrices) =
            compare::scene(&sides[0], &sides[1], divergence, &marks, width, height);
        *geometries.borrow_mut() = matrices;
        scene
    });
    let geometries = geometries.into_inner();
    // The matrix under the pointer (or the first) takes the wheel and the drag for all of them.
    let active = shown
        .pointer
        .and_then(|p| geometries.iter().find(|g| g.viewport.contains(p)))
        .or(geometries.first());
    if let Some(geometry) = active {
        super::widgets::matrix::interact(ui, &shown, geometry, &mut state.compare_zoom);
    }
    if let (Some(Hit::Cell { row, column }), Some(pointer)) = (shown.hovered, shown.pointer) {
        let under = geometries.iter().position(|g| g.viewport.contains(pointer));
        match under {
            Some(2) => {
                let tokens = a.analysis.len();
                let maps: Vec<Vec<f32>> = sides
                    .iter()
                    .map(|side| shown_map(side.analysis, side.layer, side.head))
                    .collect();
                let values: Vec<f32> = (0..tokens * tokens)
                    .map(|i| maps[0][i] - maps[1][i])
                    .collect();
                cell_tooltip(
                    &shown.response,
                    a.analysis,
                    &values,
                    row,
                    column,
                    "difference A − B",
                );
            }
            Some(slot) => {
                let side = &sides[slot.min(1)];
                let values = shown_map(side.analysis, side.layer, side.head);
                cell_tooltip(
                    &shown.response,
                    side.analysis,
                    &values,
                    row,
                    column,
                    "weight",
                );
            }
            None => {}
        }
    }
    if identical {
        if let Some(Hit::Cell { row, .. }) | Some(Hit::Token(row)) = shown.clicked {
            actions.push(super::token_click(ui, row, &selection));
        }
    }
    actions
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
