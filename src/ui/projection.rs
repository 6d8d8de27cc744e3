//! Token hidden states in 2-D (PCA over all layers), with a layer slider and the selected
//! token's trajectory from the embeddings to the last layer.

use egui_plot::{Line, Plot, PlotPoints, Points, Text};

use super::{UiAction, ViewState};
use crate::analysis::projection::Projection;
use crate::model::Analysis;

/// The projection tab.
pub fn projection_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    projection: &Projection,
    state: &mut ViewState,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let last = projection.layers().saturating_sub(1);
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(&mut state.projection_layer, 0..=last).text("layer"))
            .on_hover_text("0 is the embedding output; the last is the final layer");
        ui.weak(format!(
            "PCA over all layers · axes explain {:.0}% and {:.0}% of the variance · select a token to see its path",
            projection.explained_variance[0] * 100.0,
            projection.explained_variance[1] * 100.0
        ));
    });
    let layer = state.projection_layer.min(last);
    let points = projection.layer(layer);
    let selection_color = ui.visuals().selection.stroke.color;
    let response = Plot::new("projection")
        .data_aspect(1.0)
        .show_axes([false, false])
        .label_formatter(|_| None)
        .show(ui, |plot| {
            if let Some(token) = state.selected_token {
                let path: Vec<[f64; 2]> = projection
                    .trajectory(token)
                    .iter()
                    .map(|&[x, y]| [f64::from(x), f64::from(y)])
                    .collect();
                plot.line(
                    Line::new(
                        format!("path of {}", analysis.tokens[token]),
                        PlotPoints::from(path),
                    )
                    .color(selection_color)
                    .width(2.0),
                );
            }
            let all: Vec<[f64; 2]> = points
                .iter()
                .map(|&[x, y]| [f64::from(x), f64::from(y)])
                .collect();
            plot.points(Points::new("tokens", PlotPoints::from(all)).radius(4.0));
            for (index, &[x, y]) in points.iter().enumerate() {
                let mut label = egui::RichText::new(analysis.display_token(index));
                if state.selected_token == Some(index) {
                    label = label.color(selection_color).strong();
                }
                plot.text(
                    Text::new(
                        format!("token {index}"),
                        [f64::from(x), f64::from(y)].into(),
                        label,
                    )
                    .anchor(egui::Align2::LEFT_BOTTOM),
                );
            }
        });
    if response.response.clicked() {
        if let Some(pointer) = response.response.interact_pointer_pos() {
            let target = response.transform.value_from_position(pointer);
            let nearest = points
                .iter()
                .enumerate()
                .map(|(index, &[x, y])| {
                    (
                        index,
                        (f64::from(x) - target.x).powi(2) + (f64::from(y) - target.y).powi(2),
                    )
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(index, _)| index);
            actions.push(UiAction::SelectToken(nearest));
        }
    }
    actions
}
