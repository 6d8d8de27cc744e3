//! Head statistics (Clark et al. 2019) of the current text: a layers × heads grid coloured by
//! one statistic, each cell marked with its head's label, and a table sorted by the statistic.
//! Click a head to open it in the heatmap.

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};

use super::{UiAction, ViewState};
use crate::analysis::stats::{HeadStats, Statistic};
use crate::render::attention_color;

const LABEL_ROOM: f32 = 28.0;
const GAP: f32 = 2.0;
/// Table rows in points.
const ROW_HEIGHT: f32 = 18.0;

/// The Heads tab, given every head's statistics `[layer][head]`.
pub fn heads_view(
    ui: &mut egui::Ui,
    stats: &[Vec<HeadStats>],
    state: &mut ViewState,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let statistic = state.head_statistic;
    ui.horizontal(|ui| {
        ui.label("Colour and sort by");
        egui::ComboBox::from_id_salt("head-statistic")
            .selected_text(statistic.name())
            .show_ui(ui, |ui| {
                for choice in Statistic::ALL {
                    ui.selectable_value(&mut state.head_statistic, choice, choice.name())
                        .on_hover_text(choice.description());
                }
            })
            .response
            .on_hover_text("The statistic that colours the grid and orders the table");
    });
    let heads = stats.first().map_or(0, Vec::len);
    if heads == 0 {
        return actions;
    }
    let max = stats
        .iter()
        .flatten()
        .map(|s| statistic.of(s))
        .fold(0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    ui.weak(format!(
        "{}, from 0 (dark) to {max:.3} (yellow) · P previous-token, N next-token, S [CLS]/[SEP], B broad heads (Clark et al. 2019)",
        statistic.description()
    ));

    // The grid: as wide as the window allows, cells at most 40 points.
    let cell = ((ui.available_width() - LABEL_ROOM) / heads as f32 - GAP).clamp(10.0, 40.0);
    let pitch = cell + GAP;
    let (response, painter) = ui.allocate_painter(
        Vec2::new(
            LABEL_ROOM + pitch * heads as f32,
            LABEL_ROOM + pitch * stats.len() as f32,
        ),
        Sense::hover(),
    );
    let origin = response.rect.min + Vec2::splat(LABEL_ROOM);
    let text_color = ui.visuals().text_color();
    let font = FontId::proportional(11.0);
    for head in 0..heads {
        painter.text(
            Pos2::new(origin.x + pitch * head as f32 + cell / 2.0, origin.y - 6.0),
            Align2::CENTER_BOTTOM,
            head.to_string(),
            font.clone(),
            text_color,
        );
    }
    for (layer, row) in stats.iter().enumerate() {
        let y = origin.y + pitch * layer as f32;
        painter.text(
            Pos2::new(origin.x - 6.0, y + cell / 2.0),
            Align2::RIGHT_CENTER,
            layer.to_string(),
            font.clone(),
            text_color,
        );
        for (head, head_stats) in row.iter().enumerate() {
            let rect = Rect::from_min_size(
                Pos2::new(origin.x + pitch * head as f32, y),
                Vec2::splat(cell),
            );
            let value = statistic.of(head_stats);
            let [r, g, b] = attention_color(value, max);
            painter.rect_filled(rect, 1.0, Color32::from_rgb(r, g, b));
            // Light marks on dark cells, dark on light (viridis brightens with the value).
            let ink = if value / max > 0.6 {
                Color32::BLACK
            } else {
                Color32::WHITE
            };
            painter.text(
                rect.center(),
                Align2::CENTER_CENTER,
                head_stats.label.mark(),
                FontId::proportional((cell * 0.5).min(13.0)),
                ink,
            );
            let cell_response = ui.interact(
                rect,
                ui.scope_id().with(("head-stat", layer, head)),
                Sense::click(),
            );
            let name = format!(
                "layer {layer}, head {head}: {} {value:.3}, {}",
                statistic.name(),
                head_stats.label.name()
            );
            cell_response
                .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &name));
            if cell_response.hovered() {
                painter.rect_stroke(rect, 0.0, Stroke::new(1.5, text_color), StrokeKind::Outside);
            }
            if cell_response
                .on_hover_text_at_pointer(format!("{name}\nclick to open it in the heatmap"))
                .clicked()
            {
                actions.push(UiAction::OpenInHeatmap { layer, head });
            }
        }
    }

    ui.separator();
    // The table, highest first; a column's header sorts by it.
    let mut order: Vec<(usize, usize, &HeadStats)> = stats
        .iter()
        .enumerate()
        .flat_map(|(layer, row)| {
            row.iter()
                .enumerate()
                .map(move |(head, s)| (layer, head, s))
        })
        .collect();
    order.sort_by(|a, b| statistic.of(b.2).total_cmp(&statistic.of(a.2)));
    let column_width = 64.0;
    ui.horizontal(|ui| {
        for header in ["layer", "head"] {
            ui.add_sized(
                [column_width, ROW_HEIGHT],
                egui::Label::new(egui::RichText::new(header).strong()),
            );
        }
        for choice in Statistic::ALL {
            // The selected header (the sort) is highlighted.
            let text = choice.name();
            if ui
                .add_sized(
                    [column_width, ROW_HEIGHT],
                    egui::Button::new(text).selected(choice == statistic),
                )
                .on_hover_text(format!("Sort by {}", choice.description()))
                .clicked()
            {
                state.head_statistic = choice;
            }
        }
        ui.add_sized(
            [column_width, ROW_HEIGHT],
            egui::Label::new(egui::RichText::new("label").strong()),
        );
    });
    egui::ScrollArea::vertical()
        .id_salt("head-table")
        .auto_shrink([false, false])
        .show_rows(ui, ROW_HEIGHT, order.len(), |ui, rows| {
            for &(layer, head, s) in &order[rows] {
                let row = ui.horizontal(|ui| {
                    let cells = [layer.to_string(), head.to_string()]
                        .into_iter()
                        .chain(
                            Statistic::ALL
                                .iter()
                                .map(|choice| format!("{:.3}", choice.of(s))),
                        )
                        .chain(std::iter::once(s.label.name().to_owned()));
                    for text in cells {
                        ui.add_sized(
                            [column_width, ROW_HEIGHT],
                            egui::Label::new(egui::RichText::new(text).monospace()),
                        );
                    }
                });
                let clicked = ui
                    .interact(
                        row.response.rect,
                        ui.scope_id().with(("head-row", layer, head)),
                        Sense::click(),
                    )
                    .on_hover_text("Click to open this head in the heatmap")
                    .clicked();
                if clicked {
                    actions.push(UiAction::OpenInHeatmap { layer, head });
                }
            }
        });
    actions
}
