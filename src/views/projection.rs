//! Token hidden states of one layer in the PCA plane of every layer (so positions compare across
//! layers), coloured by sentence A, sentence B and special tokens, labelled where labels do not
//! overlap (the selected and the hovered token always), with the selected token's path from the
//! embeddings to the last layer. One scale on both axes: distances mean the same across and up.

use crate::analysis::projection::Projection;
use crate::model::Analysis;
use crate::render::matrix::MatrixZoom;
use crate::render::scene::{
    Align, Baseline, Font, Paint, Point, Rect, Scene, Shape, Stroke, Target, Text,
};
use crate::render::text::text_width;
use crate::render::{place_labels, TokenGroup};

const LABEL_SIZE: f32 = 11.0;
const LEGEND: f32 = 24.0;
const NOTE: f32 = 26.0;
const ROOM: f32 = 10.0;
/// How near (in points) the pointer must be to a token for its label to show regardless.
pub const HOVER_RADIUS: f32 = 10.0;

/// A projection view with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ProjectionView {
    /// 0 is the embeddings, l the output of layer l.
    pub layer: usize,
    /// The token whose path is drawn.
    pub token: Option<usize>,
}

/// What the window marks on the plot: the token nearest the pointer, the zoom.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Marks {
    /// The token nearest the pointer.
    pub hovered: Option<usize>,
    /// How far the plot is zoomed in, and where.
    pub zoom: MatrixZoom,
}

/// The size a figure gives the plot.
pub const NATURAL_SIZE: (f32, f32) = (680.0, 520.0);

/// The note under the plot.
fn note(projection: &Projection, layer: usize) -> String {
    format!(
        "layer {layer} of {} (0: embeddings) · PCA over all layers · axes explain {:.0}% and {:.0}% of the variance",
        projection.layers().saturating_sub(1),
        projection.explained_variance[0] * 100.0,
        projection.explained_variance[1] * 100.0
    )
}

/// The plot in `width × height`: its points one region (a hit names the nearest token and how
/// far it is); the scene and the plot's rectangle.
/// Long because the plot is one layout: axes, points, the selected token's path and the labels
/// placed around them share the zoomed frame; splitting would hand that frame to each piece.
pub fn scene(
    analysis: &Analysis,
    projection: &Projection,
    view: &ProjectionView,
    marks: &Marks,
    width: f32,
    height: f32,
) -> (Scene<'static>, Rect) {
    let layer = view.layer.min(projection.layers().saturating_sub(1));
    let points = projection.layer(layer);
    let path = view
        .token
        .filter(|&token| token < points.len())
        .map(|token| projection.trajectory(token))
        .unwrap_or_default();
    let mut scene = Scene::new(
        width,
        height,
        format!("Token projection, layer {layer}: click a point to select its token"),
    );
    // The legend: the groups present.
    let mut x = 0.0;
    for group in TokenGroup::ALL {
        if !(0..points.len()).any(|index| TokenGroup::of(analysis, index) == group) {
            continue;
        }
        scene.add(Shape::Circle {
            center: Point::new(x + 5.0, LEGEND / 2.0 - 2.0),
            radius: 5.0,
            fill: Paint::Rgb(group.color()),
        });
        scene.text(
            Text::new(
                Point::new(x + 14.0, LEGEND / 2.0 - 2.0),
                group.name(),
                11.0,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Middle),
        );
        x += 14.0 + text_width(group.name(), 11.0, Font::Sans) + 18.0;
    }
    let plot = Rect::from_size(
        0.0,
        LEGEND,
        width.max(80.0),
        (height - LEGEND - NOTE).max(80.0),
    );
    scene.outline(plot, Stroke::new(1.0, Paint::FaintInk));
    // One scale on both axes, fitted to the layer's points and the path, then zoomed.
    let (mut low, mut high) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for point in points.iter().chain(&path) {
        for axis in 0..2 {
            low[axis] = low[axis].min(point[axis]);
            high[axis] = high[axis].max(point[axis]);
        }
    }
    let span = |axis: usize| (high[axis] - low[axis]).max(1e-6);
    let inner = (plot.width() - 2.0 * ROOM, plot.height() - 2.0 * ROOM);
    let scale = (inner.0 / span(0)).min(inner.1 / span(1)) * marks.zoom.zoom;
    // The zoomed part's top left corner, in data coordinates.
    let origin = (
        low[0] + marks.zoom.left * span(0),
        high[1] - marks.zoom.top * span(1),
    );
    let at = |[x, y]: [f32; 2]| {
        Point::new(
            plot.min.x + ROOM + (x - origin.0) * scale,
            // Up is up.
            plot.min.y + ROOM + (origin.1 - y) * scale,
        )
    };
    let inside = |p: Point| plot.contains(p);
    if path.len() > 1 {
        scene.add(Shape::Path {
            points: path.iter().map(|&p| at(p)).collect(),
            stroke: Stroke::new(1.5, Paint::Accent),
        });
    }
    let screen: Vec<Point> = points.iter().map(|&p| at(p)).collect();
    for (index, &point) in screen.iter().enumerate() {
        if inside(point) {
            scene.add(Shape::Circle {
                center: point,
                radius: 4.0,
                fill: Paint::Rgb(TokenGroup::of(analysis, index).color()),
            });
        }
    }
    // Labels where they overlap no other, the selected and the hovered one always.
    let texts: Vec<String> = (0..points.len())
        .map(|index| analysis.display_token(index))
        .collect();
    let boxes: Vec<[f32; 4]> = screen
        .iter()
        .zip(&texts)
        .map(|(point, label)| {
            if !inside(*point) {
                // Zoomed out of view: its label takes no room.
                return [f32::NEG_INFINITY; 4];
            }
            let width = text_width(label, LABEL_SIZE, Font::Mono);
            // Right of the point, or left of it where the plot ends.
            let left = if point.x + 5.0 + width > plot.max.x - 2.0 {
                point.x - 5.0 - width
            } else {
                point.x + 5.0
            };
            [
                left,
                point.y - 4.0 - LABEL_SIZE,
                left + width,
                point.y - 4.0,
            ]
        })
        .collect();
    let always: Vec<usize> = view.token.into_iter().chain(marks.hovered).collect();
    let shown = place_labels(&boxes, &always);
    for (index, label) in texts.iter().enumerate().filter(|&(i, _)| shown[i]) {
        if !inside(screen[index]) {
            continue;
        }
        let [left, _, _, bottom] = boxes[index];
        let mut text = Text::new(
            Point::new(left, bottom),
            label.clone(),
            LABEL_SIZE,
            Font::Mono,
        )
        .anchor(Align::Start, Baseline::Bottom);
        if always.contains(&index) {
            text = text.paint(Paint::Accent).bold();
        }
        scene.text(text);
    }
    scene.region(
        plot,
        Target::Points(screen.iter().copied().zip(0..).collect()),
        None,
    );
    scene.text(
        Text::new(
            Point::new(0.0, plot.max.y + 8.0),
            note(projection, layer),
            11.0,
            Font::Sans,
        )
        .anchor(Align::Start, Baseline::Top)
        .paint(Paint::FaintInk),
    );
    (scene, plot)
}

impl super::Draw for ProjectionView {
    const LABEL: &'static str = "Projection";
    const DESCRIPTION: &'static str =
        "Token hidden states projected to 2-D with PCA, layer by layer";
    const READS_WORDS: bool = true;

    fn title(&self, _inputs: &super::Inputs<'_>) -> String {
        format!("hidden states, layer {}", self.layer)
    }

    const COMPUTES: bool = true;

    fn compute_key(&self) -> String {
        // The same for every value of the parameters.
        "projection".to_owned()
    }

    fn compute(&self, runs: &super::Runs<'_>) -> super::Computed {
        let fitted = runs
            .shown()
            .hidden_states
            .to_host()
            .map(|hidden| std::sync::Arc::new(Projection::fit(&hidden)))
            .map_err(|err| err.to_string());
        super::Computed {
            projection: Some(fitted),
            ..super::Computed::default()
        }
    }

    fn natural_size(&self, _inputs: &super::Inputs<'_>) -> (f32, f32) {
        NATURAL_SIZE
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let analysis = inputs.analysis;
        // Layer 0 is the embeddings, so the last layer's number is the layer count.
        if self.layer > analysis.layers() {
            return Err(format!(
                "layer {} is out of range; the projection has layers 0 (embeddings) to {}",
                self.layer,
                analysis.layers()
            ));
        }
        if let Some(token) = self.token {
            super::check_token(analysis, token, "token")?;
        }
        let projection = inputs
            .projection
            .ok_or_else(|| "the projection has not been computed".to_owned())?;
        let marks = Marks {
            hovered: match canvas.hovered {
                Some(crate::render::scene::Hit::Point { token, distance })
                    if distance <= HOVER_RADIUS =>
                {
                    Some(token)
                }
                _ => None,
            },
            zoom: canvas.zoom,
        };
        let (scene, plot) = scene(
            analysis,
            projection,
            self,
            &marks,
            canvas.width,
            canvas.height,
        );
        Ok(super::Drawn {
            scene,
            zoomable: vec![super::Zoomable {
                rect: plot,
                max_zoom: 20.0,
            }],
        })
    }
}

#[cfg(feature = "gui")]
pub use tab::ProjectionTab;

/// The Projection tab: a layer slider; the wheel zooms at the pointer, dragging pans, a click
/// selects the nearest token (its path shows).
#[cfg(feature = "gui")]
mod tab {
    use serde::{Deserialize, Serialize};

    use super::ProjectionView;
    use crate::model::Analysis;
    use crate::render::matrix::MatrixZoom;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::{UiAction, ViewState};
    use crate::views::Figure;

    /// The Projection tab's own state.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ProjectionTab {
        /// The layer shown (0 = embeddings).
        pub layer: usize,
        /// The zoom and pan (not remembered between runs).
        #[serde(skip)]
        pub zoom: MatrixZoom,
    }

    impl Tab for ProjectionTab {
        fn figure(
            &self,
            state: &ViewState,
            run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Projection(ProjectionView {
                layer: self.layer.min(run.layers()),
                token: state.selected_token,
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let last = cx.analysis().layers();
            ui.horizontal(|ui| {
                ui.add(egui::Slider::new(&mut self.layer, 0..=last).text("layer"))
                    .on_hover_text("0 is the embedding output; the last is the final layer");
                ui.separator();
                crate::ui::widgets::matrix::zoom_controls(ui, &mut self.zoom);
                ui.weak("select a token to see its path");
            });
            match &cx.computed.projection {
                None => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Projecting the hidden states (PCA)…");
                    });
                    return;
                }
                Some(Err(message)) => {
                    ui.colored_label(ui.visuals().error_fg_color, message);
                    return;
                }
                Some(Ok(_)) => {}
            }
            let Some(figure) = self.figure(cx.state, cx.analysis(), None) else {
                return;
            };
            let Some(shown) = cx.draw(ui, &figure, Some(&mut self.zoom), 0.0) else {
                return;
            };
            if let Some(Hit::Point { token, .. }) = shown.clicked {
                cx.actions.push(UiAction::SelectToken(Some(token)));
            }
        }
    }
}
