//! Two models side by side on the same text: a chosen (or depth-aligned) layer pair as heatmaps,
//! their difference when both tokenize alike, the divergence of every layer, or both overview
//! grids.

use egui_plot::{Bar, BarChart, Plot};

use super::heatmap::{draw_matrix, ColorScale};
use super::textures::TextureCache;
use super::widgets::controls::layer_picker;
use super::widgets::matrix::{zoom_controls, zoom_keys};
use super::{overview, UiAction, ViewState};
use crate::analysis::compare::{aligned_layer, same_tokens};
use crate::analysis::{attention_weight, HeadChoice};
use crate::model::Analysis;

/// One side of the comparison.
pub struct Side<'a> {
    /// The model's name.
    pub name: &'a str,
    /// Its analysis of the text.
    pub analysis: &'a Analysis,
    /// Its textures.
    pub textures: &'a mut TextureCache,
    /// Its scenes' images.
    pub rasters: &'a mut super::scene::Rasters,
}

/// The compare tab. `divergence` is the mean JS divergence per layer of A (computed once per
/// result pair), present when both models tokenize the text identically.
pub fn compare_view<'a>(
    ui: &mut egui::Ui,
    a: Side<'a>,
    b: Side<'a>,
    difference_textures: &mut TextureCache,
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
            actions.extend(compare_body(
                ui,
                a,
                b,
                difference_textures,
                divergence,
                state,
            ))
        });
    actions
}

/// Everything below the compare controls, in a scroll area.
fn compare_body<'a>(
    ui: &mut egui::Ui,
    mut a: Side<'a>,
    mut b: Side<'a>,
    difference_textures: &mut TextureCache,
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

    let pair = [
        (state.layer, state.compare_heads[0]),
        (state.compare_layer, state.compare_heads[1]),
    ];
    let columns = if identical { 3 } else { 2 };
    let selected = state.selection();
    ui.columns(columns, |columns| {
        for (index, (side, (layer, head))) in [(&mut a, pair[0]), (&mut b, pair[1])]
            .into_iter()
            .enumerate()
        {
            let ui = &mut columns[index];
            ui.strong(format!("{} · layer {layer} · {head}", side.name));
            let (texture, max) = side
                .textures
                .full(ui.ctx(), side.analysis, layer, head, false);
            let weight = |query, key| attention_weight(side.analysis, layer, head, query, key);
            let selection: &[usize] = if identical { &selected } else { &[] };
            if let Some(action) = draw_matrix(
                ui,
                side.analysis,
                &weight,
                &texture,
                ColorScale::Sequential { max },
                selection,
                &mut state.compare_zoom,
            ) {
                if identical {
                    actions.push(action);
                }
            }
        }
        if identical {
            let ui = &mut columns[2];
            ui.strong("A − B");
            let (texture, max_abs) =
                difference_textures.difference(ui.ctx(), a.analysis, pair[0], b.analysis, pair[1]);
            let weight = |query, key| {
                attention_weight(a.analysis, pair[0].0, pair[0].1, query, key)
                    - attention_weight(b.analysis, pair[1].0, pair[1].1, query, key)
            };
            if let Some(action) = draw_matrix(
                ui,
                a.analysis,
                &weight,
                &texture,
                ColorScale::Diverging { max_abs },
                &selected,
                &mut state.compare_zoom,
            ) {
                actions.push(action);
            }
        }
    });

    ui.separator();
    match divergence {
        None if identical => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Computing how differently the two models attend, layer by layer…");
            });
        }
        Some(divergence) if identical => {
            ui.label("How differently the two models attend, per layer of A (mean Jensen–Shannon divergence of the head-averaged attention rows against B's aligned layer; 0 = identical, 1 = disjoint):");
            let bars: Vec<Bar> = divergence
                .iter()
                .enumerate()
                .map(|(layer, &value)| {
                    Bar::new(layer as f64, f64::from(value)).name(format!("layer {layer}"))
                })
                .collect();
            Plot::new("divergence")
                .height(140.0)
                .include_y(0.0)
                .allow_scroll(false)
                .allow_drag(false)
                .x_axis_label("layer of A")
                // Layers are whole numbers.
                .x_axis_formatter(|mark, _| {
                    if mark.value.fract() == 0.0 {
                        format!("{}", mark.value)
                    } else {
                        String::new()
                    }
                })
                .show(ui, |plot| {
                    plot.bar_chart(BarChart::new("JS divergence", bars))
                });
        }
        _ => {
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
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!("{why}, so their maps are not compared cell by cell."),
            );
            ui.columns(2, |columns| {
                for (column, side) in columns.iter_mut().zip([&a, &b]) {
                    let tokens: Vec<String> = (0..side.analysis.len())
                        .map(|index| side.analysis.display_token(index))
                        .collect();
                    column.weak(tokens.join(" "));
                }
            });
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
