//! Every layer × head as a grid of thumbnails (BertViz's model view); click one to open it.

use egui::Sense;

use super::scene::Rasters;
use super::{UiAction, ViewState};
use crate::analysis::HeadChoice;
use crate::model::Analysis;
use crate::render::scene::{Hit, Scene};
use crate::views;
use crate::views::overview::{Marks, Overview};

/// Which heads of the grid's model are switched off, and whether clicking a head switches it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ablation<'a> {
    /// Heads `(layer, head)` switched off: marked with a cross.
    pub heads: &'a [(usize, usize)],
    /// Clicks switch heads off and on instead of opening them in the heatmap.
    pub clicks_toggle: bool,
}

/// The Overview tab's ablation controls: the mode switch, what is switched off, and a way
/// back. Returns what the app must do.
pub fn ablation_bar(ui: &mut egui::Ui, state: &mut ViewState) -> Vec<UiAction> {
    let mut actions = Vec::new();
    ui.horizontal(|ui| {
        ui.toggle_value(&mut state.ablation_mode, "✂ Ablate heads")
            .on_hover_text("While on, clicking a head switches it off (its attention is multiplied by zero, as transformers 4.x's head_mask did) or back on; the model runs again and Predictions shows before → after");
        if state.ablated_heads.is_empty() {
            if state.ablation_mode {
                ui.weak("Click heads to switch them off");
            }
        } else {
            let list: Vec<String> = state
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
                actions.push(UiAction::ClearAblation);
            }
        }
    });
    actions
}

/// The overview's *Show* switch: each head's attention or its norm-based attention (rollout and
/// flow combine every head, so they have no grid of heads: they open the heatmap).
pub fn kind_switch(ui: &mut egui::Ui, state: &mut ViewState) {
    ui.horizontal(|ui| {
        let before = state.attention_kind;
        super::widgets::controls::attention_kind_switch(ui, &mut state.attention_kind, true);
        if state.attention_kind.is_combined() && state.attention_kind != before {
            // One map per layer, not per head: shown where a layer is picked.
            state.view = super::View::Heatmap;
        }
    });
}

/// The overview tab: every head of `analysis` (its attention, or its norm-based attention), with
/// `ablation`'s heads crossed out.
pub fn overview_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    state: &ViewState,
    ablation: Ablation<'_>,
    rasters: &mut Rasters,
) -> Vec<UiAction> {
    let (layers, heads) = (analysis.layers(), analysis.heads());
    let norms = state.attention_kind == super::AttentionKind::Norms;
    let click = if ablation.clicks_toggle {
        "click a head to switch it off or on"
    } else {
        "click a head to open it"
    };
    ui.weak(format!(
        "{layers} layers × {heads} heads{} · rows are layers, columns are heads · {click}",
        match state.attention_kind {
            super::AttentionKind::Norms => " · norm-based attention ‖α·f(x)‖, each to its own largest",
            super::AttentionKind::Raw => "",
            _ => " · attention (rollout and flow combine every head: the heatmap and lines show them)",
        }
    ));
    let mut actions = Vec::new();
    egui::ScrollArea::both()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let width = ui.available_width();
            let overview = Overview { norms };
            let open = match state.head {
                HeadChoice::Head(head) => Some((state.layer, head)),
                HeadChoice::Mean => None,
            };
            let build = |hovered: Option<Hit>| {
                let hovered = match hovered {
                    Some(Hit::Head { layer, head }) => Some((layer, head)),
                    _ => None,
                };
                let marks = Marks {
                    ablated: ablation.heads,
                    open,
                    hovered,
                };
                views::overview::scene(analysis, overview, &marks, width)
                    .unwrap_or_else(|message| Scene::new(width, 20.0, message))
            };
            let shown = super::scene::show_hovered(ui, rasters, Sense::hover(), build);
            if let Some(Hit::Head { layer, head }) = shown.hovered {
                let off = ablation.heads.contains(&(layer, head));
                let hint = match (ablation.clicks_toggle, off) {
                    (true, true) => "click to switch it back on",
                    (true, false) => "click to switch it off",
                    (false, _) => "click to open in the heatmap",
                };
                let state = if off { " (switched off)" } else { "" };
                shown
                    .response
                    .on_hover_text_at_pointer(format!("layer {layer}, head {head}{state}: {hint}"));
            }
            if let Some(Hit::Head { layer, head }) = shown.clicked {
                actions.push(if ablation.clicks_toggle {
                    UiAction::ToggleAblation { layer, head }
                } else {
                    UiAction::OpenInHeatmap { layer, head }
                });
            }
        });
    actions
}

/// CPU times of the overview, headless in a 1400 × 900 window (layout, painting and
/// tessellation), for `bertscope bench`.
#[derive(Debug, Clone, Copy)]
pub struct OverviewTimes {
    /// Frames until every thumbnail in view was made.
    pub filling_frames: usize,
    /// The slowest of those frames, in milliseconds.
    pub slowest_filling_ms: f64,
    /// The median frame afterwards, in milliseconds.
    pub frame_ms: f64,
}

/// Times the overview: the frames that make the thumbnails in view, then `frames` more.
pub fn measure_frame_ms(analysis: &Analysis, frames: usize) -> OverviewTimes {
    let ctx = egui::Context::default();
    // A window that is already open has its fonts: a first empty frame loads them, untimed.
    let _ = ctx.run_ui(super::headless_input(), |ui| {
        egui::CentralPanel::default().show(ui, |ui| ui.label("0123456789 layers heads"));
    });
    let state = ViewState::default();
    let mut textures = Rasters::default();
    let frame = |textures: &mut Rasters| {
        let output = ctx.run_ui(super::headless_input(), |ui| {
            egui::CentralPanel::default().show(ui, |ui| {
                overview_view(ui, analysis, &state, Ablation::default(), textures);
            });
        });
        ctx.tessellate(output.shapes, output.pixels_per_point).len()
    };
    let timed = |textures: &mut Rasters| {
        let started = std::time::Instant::now();
        std::hint::black_box(frame(textures));
        started.elapsed().as_secs_f64() * 1e3
    };
    let (mut filling_frames, mut slowest_filling_ms) = (0, 0f64);
    loop {
        slowest_filling_ms = slowest_filling_ms.max(timed(&mut textures));
        filling_frames += 1;
        if !textures.pending() {
            break;
        }
    }
    // Two more settle the layout.
    for _ in 0..2 {
        frame(&mut textures);
    }
    let mut times: Vec<f64> = (0..frames.max(1)).map(|_| timed(&mut textures)).collect();
    times.sort_by(f64::total_cmp);
    OverviewTimes {
        filling_frames,
        slowest_filling_ms,
        frame_ms: times[times.len() / 2],
    }
}
