//! Every layer × head as a grid of thumbnails (BertViz's model view); click one to open it.

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};

use super::textures::TextureCache;
use super::{UiAction, ViewState};
use crate::analysis::HeadChoice;
use crate::model::Analysis;

const LABEL_ROOM: f32 = 28.0;
const GAP: f32 = 3.0;

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
        super::heatmap::attention_kind_switch(ui, &mut state.attention_kind, true);
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
    textures: &mut TextureCache,
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
            let width = ui.available_width() - LABEL_ROOM;
            let thumb = ((width / heads as f32) - GAP).clamp(24.0, 96.0);
            let pitch = thumb + GAP;
            let size = Vec2::new(
                LABEL_ROOM + pitch * heads as f32,
                LABEL_ROOM + pitch * layers as f32,
            );
            let (response, painter) = ui.allocate_painter(size, Sense::hover());
            let origin = response.rect.min + Vec2::splat(LABEL_ROOM);
            let text_color = ui.visuals().text_color();
            let font = FontId::proportional(11.0);
            for head in 0..heads {
                painter.text(
                    Pos2::new(origin.x + pitch * head as f32 + thumb / 2.0, origin.y - 6.0),
                    Align2::CENTER_BOTTOM,
                    head.to_string(),
                    font.clone(),
                    text_color,
                );
            }
            let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
            for layer in 0..layers {
                let y = origin.y + pitch * layer as f32;
                painter.text(
                    Pos2::new(origin.x - 6.0, y + thumb / 2.0),
                    Align2::RIGHT_CENTER,
                    layer.to_string(),
                    font.clone(),
                    text_color,
                );
                for head in 0..heads {
                    let rect = Rect::from_min_size(
                        Pos2::new(origin.x + pitch * head as f32, y),
                        Vec2::splat(thumb),
                    );
                    // Only thumbnails in view are made: a 24-layer grid scrolls.
                    if !ui.is_rect_visible(rect) {
                        continue;
                    }
                    match textures.thumbnail(ui.ctx(), analysis, (layer, head), norms) {
                        Some(texture) => {
                            painter.image(texture.id(), rect, uv, Color32::WHITE);
                        }
                        None => {
                            painter.rect_filled(rect, 0.0, ui.visuals().faint_bg_color);
                            ui.ctx().request_repaint();
                        }
                    }
                    if ablation.heads.contains(&(layer, head)) {
                        let red = ui.visuals().error_fg_color;
                        painter.rect_filled(rect, 0.0, Color32::from_black_alpha(150));
                        let stroke = Stroke::new(2.0, red);
                        painter.line_segment([rect.left_top(), rect.right_bottom()], stroke);
                        painter.line_segment([rect.right_top(), rect.left_bottom()], stroke);
                        painter.rect_stroke(rect, 0.0, stroke, StrokeKind::Inside);
                    }
                    if state.layer == layer && state.head == HeadChoice::Head(head) {
                        painter.rect_stroke(
                            rect,
                            0.0,
                            Stroke::new(2.0, ui.visuals().selection.stroke.color),
                            StrokeKind::Outside,
                        );
                    }
                }
            }
            // One interactive cell per head, labelled for screen readers and tests.
            for layer in 0..layers {
                for head in 0..heads {
                    let rect = Rect::from_min_size(
                        origin + Vec2::new(pitch * head as f32, pitch * layer as f32),
                        Vec2::splat(thumb),
                    );
                    let cell = ui.interact(
                        rect,
                        ui.scope_id().with(("overview", layer, head)),
                        Sense::click(),
                    );
                    let off = ablation.heads.contains(&(layer, head));
                    let label = if off {
                        format!("layer {layer}, head {head} (switched off)")
                    } else {
                        format!("layer {layer}, head {head}")
                    };
                    cell.widget_info(|| {
                        egui::WidgetInfo::labeled(egui::Role::Button, true, &label)
                    });
                    if cell.hovered() {
                        painter.rect_stroke(
                            rect,
                            0.0,
                            Stroke::new(1.0, text_color),
                            StrokeKind::Outside,
                        );
                    }
                    let hint = match (ablation.clicks_toggle, off) {
                        (true, true) => "click to switch it back on",
                        (true, false) => "click to switch it off",
                        (false, _) => "click to open in the heatmap",
                    };
                    let cell = cell.on_hover_text_at_pointer(format!("{label}: {hint}"));
                    if cell.clicked() {
                        actions.push(if ablation.clicks_toggle {
                            UiAction::ToggleAblation { layer, head }
                        } else {
                            UiAction::OpenInHeatmap { layer, head }
                        });
                    }
                }
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
    let mut textures = TextureCache::default();
    let frame = |textures: &mut TextureCache| {
        let output = ctx.run_ui(super::headless_input(), |ui| {
            egui::CentralPanel::default().show(ui, |ui| {
                overview_view(ui, analysis, &state, Ablation::default(), textures);
            });
        });
        ctx.tessellate(output.shapes, output.pixels_per_point).len()
    };
    let timed = |textures: &mut TextureCache| {
        let started = std::time::Instant::now();
        std::hint::black_box(frame(textures));
        started.elapsed().as_secs_f64() * 1e3
    };
    let (mut filling_frames, mut slowest_filling_ms) = (0, 0f64);
    loop {
        slowest_filling_ms = slowest_filling_ms.max(timed(&mut textures));
        filling_frames += 1;
        if !textures.thumbnails_pending() {
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
