//! Token hidden states in 2-D (PCA over all layers), with a layer slider and the selected
//! token's trajectory from the embeddings to the last layer.

use egui_plot::{Legend, Line, Plot, PlotPoints, Points, Text};

use super::{UiAction, ViewState};
use crate::analysis::projection::Projection;
use crate::model::Analysis;
use crate::render::{place_labels, TokenGroup};

/// How near (in points) the pointer must be to a token for its label to show regardless.
const HOVER_RADIUS: f32 = 10.0;
/// A label's estimated size per character and height, in points (plot text is ~12 pt).
const LABEL_CHAR_WIDTH: f32 = 7.0;
const LABEL_HEIGHT: f32 = 14.0;

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
        .legend(Legend::default())
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
            // Points coloured by where the token comes from: sentence A, sentence B, or added
            // by the tokenizer.
            for group in TokenGroup::ALL {
                let [r, g, b] = group.color();
                let members: Vec<[f64; 2]> = points
                    .iter()
                    .enumerate()
                    .filter(|&(index, _)| TokenGroup::of(analysis, index) == group)
                    .map(|(_, &[x, y])| [f64::from(x), f64::from(y)])
                    .collect();
                if !members.is_empty() {
                    plot.points(
                        Points::new(group.name(), PlotPoints::from(members))
                            .radius(4.0)
                            .color(egui::Color32::from_rgb(r, g, b)),
                    );
                }
            }
            // Labels where they fit: the selected and the hovered token first (always), then in
            // token order, each only if it overlaps none already placed.
            let hovered = plot.pointer_coordinate().and_then(|pointer| {
                let pointer = plot.screen_from_plot(pointer);
                points
                    .iter()
                    .enumerate()
                    .map(|(index, &[x, y])| {
                        let at = plot.screen_from_plot([f64::from(x), f64::from(y)].into());
                        (index, at.distance(pointer))
                    })
                    .filter(|&(_, distance)| distance <= HOVER_RADIUS)
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(index, _)| index)
            });
            let texts: Vec<String> = (0..points.len())
                .map(|index| analysis.display_token(index))
                .collect();
            let boxes: Vec<[f32; 4]> = points
                .iter()
                .zip(&texts)
                .map(|(&[x, y], text)| {
                    let anchor = plot.screen_from_plot([f64::from(x), f64::from(y)].into());
                    let width = text.chars().count() as f32 * LABEL_CHAR_WIDTH + 2.0;
                    [
                        anchor.x,
                        anchor.y - LABEL_HEIGHT,
                        anchor.x + width,
                        anchor.y,
                    ]
                })
                .collect();
            let always: Vec<usize> = state.selected_token.into_iter().chain(hovered).collect();
            let shown = place_labels(&boxes, &always);
            for (index, text) in texts.into_iter().enumerate().filter(|&(i, _)| shown[i]) {
                let [x, y] = points[index];
                let mut label = egui::RichText::new(text);
                if always.contains(&index) {
                    label = label.color(selection_color).strong();
                }
                plot.text(
                    // Unnamed: labels stay out of the legend.
                    Text::new("", [f64::from(x), f64::from(y)].into(), label)
                        .anchor(egui::Align2::LEFT_BOTTOM),
                );
            }
        });
    response.response.widget_info(|| {
        egui::WidgetInfo::labeled(
            egui::Role::Image,
            true,
            format!("Token projection, layer {layer}: click a point to select its token"),
        )
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
