//! BertViz's neuron view: for one query token, one head's query vector, every key vector, their
//! element-wise products, q·k/√d and the softmax, so that a student can see where an attention
//! weight comes from. Vectors are images (blue negative, red positive), one row per key.

use crate::analysis::query_key::{query_key, QueryKey};
use crate::model::Analysis;
use crate::render::difference_rgba;
use crate::render::parts::bar_color;
use crate::render::scene::{
    Align, Baseline, Font, Image, Paint, Pixels, Point, Raster, RasterKey, Rect, Scene, Shape,
    Stroke, Target, Text,
};
use crate::render::text::widest;

const ROW: f32 = 16.0;
const SCORE_WIDTH: f32 = 64.0;
const BAR_WIDTH: f32 = 120.0;
/// The narrowest a vector column gets, so that its heading fits.
const MIN_COLUMN: f32 = 150.0;
/// Room after the bar for its value.
const VALUE_WIDTH: f32 = 50.0;
const GAP: f32 = 14.0;
const SIZE: f32 = 11.0;

/// Which row of attention the view takes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct QueryKeyView {
    /// Layer index.
    pub layer: usize,
    /// Head index.
    pub head: usize,
    /// The query token.
    pub query: usize,
}

/// The width a figure gives the view: 4 points a vector cell.
pub fn natural_width(analysis: &Analysis) -> f32 {
    let head_dim = analysis.queries.shape().get(3).copied().unwrap_or(1);
    fixed_width(analysis) + 2.0 * (4.0 * head_dim as f32).max(MIN_COLUMN)
}

/// Everything but the two vector columns.
fn fixed_width(analysis: &Analysis) -> f32 {
    let labels = (0..analysis.len()).map(|i| analysis.display_token(i));
    label_width(labels) + SCORE_WIDTH + BAR_WIDTH + VALUE_WIDTH + 4.0 * GAP
}

/// Room for the token labels (and the query's "q " before its label).
fn label_width(labels: impl Iterator<Item = String>) -> f32 {
    widest(labels, SIZE, Font::Mono).max(40.0) + 24.0
}

/// One image row per vector: `rows × head_dim` cells coloured blue to red over ±`max`.
fn vectors<'a>(
    key: RasterKey,
    rows: impl Fn() -> Vec<f32> + 'a,
    head_dim: usize,
    max: f32,
) -> Raster<'a> {
    Raster::new(key, move || {
        let values = rows();
        Pixels {
            width: head_dim,
            height: values.len() / head_dim.max(1),
            rgba: difference_rgba(&values, max),
        }
    })
}

/// The view of `view.query` in `width` points: key rows are token regions (a click makes that
/// token the query); `hovered` is outlined.
/// Long because it is one layout: the query row, the key rows, the products and the weights line up
/// on shared columns computed once.
pub fn scene<'a>(
    analysis: &'a Analysis,
    view: QueryKeyView,
    hovered: Option<usize>,
    width: f32,
) -> Scene<'a> {
    let parts: QueryKey = query_key(analysis, view.layer, view.head, view.query);
    let tokens = parts.keys.len();
    let head_dim = parts.query_vector.len().max(1);
    let labels: Vec<String> = (0..tokens).map(|i| analysis.display_token(i)).collect();
    let label_width = label_width(labels.iter().cloned());
    let fixed = label_width + SCORE_WIDTH + BAR_WIDTH + VALUE_WIDTH + 4.0 * GAP;
    let cell = ((width - fixed) / (2 * head_dim) as f32).clamp(2.0, 8.0);
    let vector_width = (cell * head_dim as f32).max(MIN_COLUMN);
    let vectors_left = label_width + GAP;
    let products_left = vectors_left + vector_width + GAP;
    let score_left = products_left + vector_width + GAP;
    let bar_left = score_left + SCORE_WIDTH + GAP;
    let largest = |values: &mut dyn Iterator<Item = &f32>| {
        values.fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()))
    };
    let vector_max = largest(&mut parts.keys.iter().flatten().chain(&parts.query_vector));
    let product_max = largest(&mut parts.products.iter().flatten());
    let mut scene = Scene::new(
        bar_left + BAR_WIDTH + VALUE_WIDTH,
        ROW * (tokens + 3) as f32,
        format!(
            "Query and key vectors of layer {}, head {}",
            view.layer, view.head
        ),
    );
    for (x, heading) in [
        (vectors_left, "q, then each key k"),
        (products_left, "q × k, element-wise"),
        (score_left, "q·k/√d"),
        (bar_left, "softmax"),
    ] {
        scene.text(
            Text::new(Point::new(x, ROW / 2.0), heading, 12.0, Font::Sans)
                .anchor(Align::Start, Baseline::Middle)
                .bold(),
        );
    }
    let query_top = ROW;
    scene.text(
        Text::new(
            Point::new(label_width, query_top + ROW / 2.0),
            format!("q {}", labels[parts.query]),
            SIZE,
            Font::Mono,
        )
        .anchor(Align::End, Baseline::Middle),
    );
    let image = |rect: Rect, raster: Raster<'a>| {
        Shape::Image(Image {
            rect,
            uv: Rect::UNIT,
            raster,
            vector_cells: tokens * head_dim <= 4096,
        })
    };
    let (layer, head, query) = (view.layer, view.head, view.query);
    let query_row = parts.query_vector.clone();
    scene.add(image(
        Rect::from_size(
            vectors_left,
            query_top + 2.0,
            cell * head_dim as f32,
            ROW - 4.0,
        ),
        vectors(
            RasterKey::of(("query", layer, head, query)),
            move || query_row.clone(),
            head_dim,
            vector_max,
        ),
    ));
    let keys_top = ROW * 3.0;
    let keys_height = ROW * tokens as f32;
    scene.add(image(
        Rect::from_size(vectors_left, keys_top, cell * head_dim as f32, keys_height),
        vectors(
            RasterKey::of(("keys", layer, head, query)),
            move || analysis.keys.matrix(&[layer, head]).to_vec(),
            head_dim,
            vector_max,
        ),
    ));
    let products: Vec<f32> = parts.products.iter().flatten().copied().collect();
    scene.add(image(
        Rect::from_size(products_left, keys_top, cell * head_dim as f32, keys_height),
        vectors(
            RasterKey::of(("products", layer, head, query)),
            move || products.clone(),
            head_dim,
            product_max,
        ),
    ));
    for (key, label) in labels.iter().enumerate() {
        let top = keys_top + ROW * key as f32;
        let middle = top + ROW / 2.0;
        let ink = if parts.scores[key].is_some() {
            Paint::Ink
        } else {
            Paint::FaintInk
        };
        scene.text(
            Text::new(
                Point::new(label_width, middle),
                label.clone(),
                SIZE,
                Font::Mono,
            )
            .anchor(Align::End, Baseline::Middle)
            .paint(ink),
        );
        let score = parts.scores[key].map_or_else(|| "masked".to_owned(), |s| format!("{s:+.3}"));
        scene.text(
            Text::new(Point::new(score_left, middle), score, SIZE, Font::Mono)
                .anchor(Align::Start, Baseline::Middle)
                .paint(ink),
        );
        let probability = parts.softmax[key];
        scene.fill(
            Rect::from_size(
                bar_left,
                top + 3.0,
                (BAR_WIDTH * probability.clamp(0.0, 1.0)).max(0.5),
                ROW - 6.0,
            ),
            bar_color(),
        );
        scene.text(
            Text::new(
                Point::new(bar_left + BAR_WIDTH + 4.0, middle),
                format!("{probability:.3}"),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Middle)
            .paint(Paint::FaintInk),
        );
        let row = Rect::from_size(0.0, top, scene.width, ROW);
        if hovered == Some(key) {
            scene.outline(row, Stroke::new(1.0, Paint::FaintInk));
        }
        scene.region(row, Target::Token(key), None);
    }
    scene
}

impl super::Draw for QueryKeyView {
    const LABEL: &'static str = "Query·Key";
    const DESCRIPTION: &'static str = "Where one attention row comes from: the query vector, each key, their products, q·k/√d and the softmax (BertViz's neuron view)";
    const READS_WORDS: bool = false;

    fn title(&self, _inputs: &super::Inputs<'_>) -> String {
        format!(
            "layer {} · head {} · query·key of token {}",
            self.layer, self.head, self.query
        )
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        let width = natural_width(inputs.analysis);
        (width, 16.0 * (inputs.analysis.len() + 3) as f32)
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let analysis = inputs.analysis;
        super::check_layer_head(
            analysis,
            self.layer,
            crate::analysis::HeadChoice::Head(self.head),
        )?;
        super::check_token(analysis, self.query, "token")?;
        let hovered = match canvas.hovered {
            Some(crate::render::scene::Hit::Token(token)) => Some(token),
            _ => None,
        };
        Ok(scene(analysis, *self, hovered, canvas.width).into())
    }
}

#[cfg(feature = "gui")]
pub use tab::QueryKeyTab;

/// The Query·Key tab: layer and head, then the neuron view of the selected token (a row makes
/// its token the query).
#[cfg(feature = "gui")]
mod tab {
    use serde::{Deserialize, Serialize};

    use super::QueryKeyView;
    use crate::analysis::query_key::query_key;
    use crate::analysis::HeadChoice;
    use crate::model::Analysis;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::widgets::controls::layer_head_controls;
    use crate::ui::{UiAction, ViewState};
    use crate::views::Figure;

    /// The Query·Key tab (it keeps no state of its own).
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub struct QueryKeyTab;

    impl Tab for QueryKeyTab {
        fn figure(
            &self,
            state: &ViewState,
            run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            let HeadChoice::Head(head) = state.head else {
                return None;
            };
            Some(Figure::QueryKey(QueryKeyView {
                layer: state.layer,
                head,
                query: state
                    .selected_token
                    .filter(|&token| token < run.len())
                    .unwrap_or(0),
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let run = cx.run;
            let analysis = run.analysis();
            layer_head_controls(ui, cx.state, analysis.layers(), analysis.heads(), true);
            let Some(Figure::QueryKey(view)) = self.figure(cx.state, analysis, None) else {
                ui.label(
                    "The neuron view shows one head's query and key vectors: pick a head above.",
                );
                return;
            };
            ui.weak(format!(
                "Query: token {} ({}) · click a token above or a row below to choose another · cells are blue (negative) to red (positive)",
                view.query,
                analysis.display_token(view.query)
            ));
            let figure = Figure::QueryKey(view);
            egui::ScrollArea::both()
                .id_salt("query-key")
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    let Some(shown) = cx.draw(ui, &figure, None, 0.0) else {
                        return;
                    };
                    if let Some(Hit::Token(key)) = shown.hovered {
                        let tokens = analysis.len();
                        let parts = query_key(analysis, view.layer, view.head, view.query);
                        let probability = parts.softmax[key];
                        let captured =
                            analysis.attention(view.layer, view.head)[view.query * tokens + key];
                        shown.response.clone().on_hover_ui_at_pointer(|ui| {
                            ui.label(format!(
                                "{} → {}",
                                analysis.display_token(view.query),
                                analysis.display_token(key)
                            ));
                            ui.monospace(format!("softmax {probability:.6}"));
                            ui.monospace(format!("captured attention {captured:.6}"));
                            ui.weak("click to make this token the query");
                        });
                    }
                    if let Some(Hit::Token(key)) = shown.clicked {
                        cx.actions.push(UiAction::SelectToken(Some(key)));
                    }
                });
        }
    }
}
