//! What goes into the first layer: for every token, the size (L2 norm) of its word, position and
//! segment embedding rows, of their sum and of the embedding LayerNorm's output, as a table of
//! numbers with bars; beside it, how alike the tokens' position embeddings are (cosine
//! similarity).

use crate::model::{Analysis, EmbeddingBreakdown};
use crate::render::difference_rgba;
use crate::render::matrix::{Matrix, MatrixGeometry, MatrixZoom};
use crate::render::parts::{bar_color, ColorScale};
use crate::render::scene::{
    Align, Baseline, Font, Paint, Pixels, Point, Raster, RasterKey, Rect, Scene, Target, Text,
};
use crate::render::text::widest;

const SIZE: f32 = 12.0;
const ROW: f32 = 19.0;
const BAR: f32 = 28.0;
const GAP: f32 = 10.0;
/// Room for a value beside its bar ("12.34").
const VALUE: f32 = 40.0;
/// What the table's columns are, in order.
const COLUMNS: [(&str, &str, &str); 5] = [
    (
        "word",
        "‖word embedding‖",
        "the token's row of the vocabulary table",
    ),
    (
        "position",
        "‖position embedding‖",
        "the row for the token's place in the input",
    ),
    (
        "segment",
        "‖segment embedding‖",
        "sentence A or B (none for GPT-2 and DistilBERT)",
    ),
    (
        "sum",
        "‖word + segment + position‖",
        "what the embedding LayerNorm receives",
    ),
    (
        "after norm",
        "‖LayerNorm(sum)‖",
        "what the first layer reads (none for GPT-2, whose layers normalise their own input)",
    ),
];

/// What the view marks: the selected tokens, and the similarity matrix's zoom and hovered cell.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks<'a> {
    /// Selected tokens.
    pub selection: &'a [usize],
    /// The similarity matrix's zoom.
    pub zoom: MatrixZoom,
    /// The similarity cell under the pointer.
    pub hovered: Option<(usize, usize)>,
}

/// Each column's values for every token (`None` where the family has no such part).
fn column_values(breakdown: &EmbeddingBreakdown) -> [Vec<Option<f32>>; 5] {
    let tokens = &breakdown.tokens;
    [
        tokens.iter().map(|t| Some(t.word)).collect(),
        tokens.iter().map(|t| t.position_emb).collect(),
        tokens.iter().map(|t| t.segment).collect(),
        tokens.iter().map(|t| Some(t.sum)).collect(),
        tokens.iter().map(|t| t.after_norm).collect(),
    ]
}

/// The size a figure gives the view: the table, and the matrix at its natural size beside it.
pub fn natural_size(analysis: &Analysis, breakdown: &EmbeddingBreakdown) -> (f32, f32) {
    let labels: Vec<String> = (0..analysis.len())
        .map(|i| analysis.display_token(i))
        .collect();
    let matrix = Matrix {
        raster: Raster::new(RasterKey(0), || Pixels {
            width: 0,
            height: 0,
            rgba: Vec::new(),
        }),
        labels: &labels,
        scale: ColorScale::Similarity,
        masked: crate::render::parts::MaskKey::NONE,
        selection: &[],
        hovered: None,
        zoom: MatrixZoom::default(),
        note: None,
        name: String::new(),
    };
    let (matrix_width, matrix_height) = matrix.natural_size();
    let (table_width, table_height) = table_size(&labels, breakdown);
    (
        table_width + 2.0 * GAP + matrix_width,
        (TOP + matrix_height).max(table_height),
    )
}

/// Above the table and the matrix: the key.
const TOP: f32 = 24.0;

/// The table's size: a token column and a column per part the family has.
fn table_size(labels: &[String], breakdown: &EmbeddingBreakdown) -> (f32, f32) {
    let values = column_values(breakdown);
    let shown = values
        .iter()
        .filter(|column| column.iter().any(Option::is_some))
        .count();
    let token_column = widest(labels, SIZE, Font::Mono).max(40.0) + GAP;
    (
        token_column + (BAR + VALUE + GAP) * shown as f32,
        TOP + ROW * (breakdown.tokens.len() + 1) as f32 + 40.0,
    )
}

/// The table and the similarity matrix side by side in `width × height`: table rows are token
/// regions (a click selects), the matrix's cells a grid whose geometry comes back too (no
/// matrix for a model without position embeddings).
/// Long because the table and the similarity matrix beside it share one layout pass (column widths,
/// row heights, the selection and hover marks).
pub fn scene<'a>(
    analysis: &Analysis,
    breakdown: &'a EmbeddingBreakdown,
    marks: &Marks<'_>,
    width: f32,
    height: f32,
) -> (Scene<'a>, Option<MatrixGeometry>) {
    let labels: Vec<String> = (0..analysis.len())
        .map(|i| analysis.display_token(i))
        .collect();
    let values = column_values(breakdown);
    let shown: Vec<usize> = (0..COLUMNS.len())
        .filter(|&c| values[c].iter().any(Option::is_some))
        .collect();
    let token_column = widest(&labels, SIZE, Font::Mono).max(40.0) + GAP;
    let column = BAR + VALUE + GAP;
    let table_width = token_column + column * shown.len() as f32;
    let key = shown
        .iter()
        .map(|&c| COLUMNS[c].1)
        .collect::<Vec<_>>()
        .join(", ");
    let mut scene = Scene::new(width, height, "Input embeddings");
    let top = TOP;
    scene.text(
        Text::new(Point::new(0.0, top + ROW / 2.0), "token", SIZE, Font::Sans)
            .anchor(Align::Start, Baseline::Middle)
            .bold(),
    );
    for (slot, &c) in shown.iter().enumerate() {
        let (name, what, detail) = COLUMNS[c];
        let x = token_column + column * slot as f32;
        scene.text(
            Text::new(Point::new(x, top + ROW / 2.0), name, SIZE, Font::Sans)
                .anchor(Align::Start, Baseline::Middle)
                .bold(),
        );
        scene.label(
            Rect::from_size(x, top, column - GAP, ROW),
            name,
            Some(format!("{what}: {detail}")),
        );
    }
    let largest: Vec<f32> = values
        .iter()
        .map(|column| {
            column
                .iter()
                .flatten()
                .copied()
                .fold(f32::MIN_POSITIVE, f32::max)
        })
        .collect();
    for (row, token) in breakdown.tokens.iter().enumerate() {
        let y = top + ROW * (row + 1) as f32;
        if row % 2 == 1 {
            scene.fill(
                Rect::from_size(0.0, y, table_width, ROW),
                Paint::FaintBackground,
            );
        }
        let selected = marks.selection.contains(&token.position);
        scene.text(
            Text::new(
                Point::new(0.0, y + ROW / 2.0),
                labels.get(token.position).cloned().unwrap_or_default(),
                SIZE,
                Font::Mono,
            )
            .anchor(Align::Start, Baseline::Middle)
            .paint(if selected { Paint::Accent } else { Paint::Ink }),
        );
        for (slot, &c) in shown.iter().enumerate() {
            let x = token_column + column * slot as f32;
            match values[c][row] {
                Some(value) => {
                    scene.fill(
                        Rect::from_size(x, y + ROW / 2.0 - 5.0, BAR, 10.0),
                        Paint::FaintBackground,
                    );
                    scene.fill(
                        Rect::from_size(
                            x,
                            y + ROW / 2.0 - 5.0,
                            BAR * (value / largest[c]).clamp(0.0, 1.0),
                            10.0,
                        ),
                        bar_color(),
                    );
                    scene.text(
                        Text::new(
                            Point::new(x + BAR + 4.0, y + ROW / 2.0),
                            format!("{value:.2}"),
                            SIZE,
                            Font::Mono,
                        )
                        .anchor(Align::Start, Baseline::Middle),
                    );
                }
                None => scene.text(
                    Text::new(Point::new(x, y + ROW / 2.0), "—", SIZE, Font::Sans)
                        .anchor(Align::Start, Baseline::Middle)
                        .paint(Paint::FaintInk),
                ),
            }
        }
        scene.region(
            Rect::from_size(0.0, y, table_width, ROW),
            Target::Token(token.position),
            None,
        );
    }
    // Under the table: what its columns measure.
    let mut y = top + ROW * (breakdown.tokens.len() + 1) as f32 + 8.0;
    for line in super::predictions::wrap(
        &format!("Sizes (L2 norms): {key}"),
        11.0,
        Font::Sans,
        table_width,
    ) {
        scene.text(
            Text::new(Point::new(0.0, y), line, 11.0, Font::Sans)
                .anchor(Align::Start, Baseline::Top)
                .paint(Paint::FaintInk),
        );
        y += 15.0;
    }
    let tokens = labels.len();
    let matrix_left = table_width + 2.0 * GAP;
    if breakdown.position_similarity.len() != tokens * tokens {
        scene.text(
            Text::new(
                Point::new(matrix_left, 0.0),
                "No position embeddings: this model turns each query and key by its position (rotary embeddings) inside every layer",
                11.0,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Top)
            .paint(Paint::FaintInk),
        );
        scene.height = scene.height.max(y);
        return (scene, None);
    }
    scene.text(
        Text::new(
            Point::new(matrix_left, 0.0),
            "Position embeddings: cosine similarity",
            12.0,
            Font::Sans,
        )
        .anchor(Align::Start, Baseline::Top)
        .bold(),
    );
    let similarity = &breakdown.position_similarity;
    let matrix = Matrix {
        raster: Raster::new(RasterKey::of("position-similarity"), move || Pixels {
            width: tokens,
            height: tokens,
            rgba: difference_rgba(similarity, 1.0),
        }),
        labels: &labels,
        scale: ColorScale::Similarity,
        masked: crate::render::parts::MaskKey::NONE,
        selection: marks.selection,
        hovered: marks.hovered,
        zoom: marks.zoom,
        note: None,
        name: format!("Similarity matrix, {tokens} × {tokens} tokens"),
    };
    let geometry = matrix.draw(
        &mut scene,
        matrix_left,
        top,
        (width - matrix_left).max(120.0),
        (height - top).max(120.0),
    );
    scene.height = scene.height.max(y);
    (scene, Some(geometry))
}

/// The embeddings view (it has no parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingsView;

fn breakdown<'a>(inputs: &super::Inputs<'a>) -> Result<&'a EmbeddingBreakdown, String> {
    inputs
        .embeddings
        .ok_or_else(|| "the embeddings were not taken apart".to_owned())
}

impl super::Draw for EmbeddingsView {
    const LABEL: &'static str = "Embeddings";
    const DESCRIPTION: &'static str = "What goes into the first layer: the size of each token's word, position and segment embeddings, their sum and its LayerNorm, and how alike the positions are";
    const READS_WORDS: bool = false;

    fn title(&self, _inputs: &super::Inputs<'_>) -> String {
        "input embeddings (L2 norms)".to_owned()
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        breakdown(inputs).map_or((100.0, 100.0), |parts| natural_size(inputs.analysis, parts))
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let parts = breakdown(inputs)?;
        let marks = Marks {
            selection: canvas.selection,
            zoom: canvas.zoom,
            hovered: canvas.hovered_cell(),
        };
        let (scene, geometry) = scene(inputs.analysis, parts, &marks, canvas.width, canvas.height);
        Ok(super::Drawn {
            scene,
            zoomable: geometry.iter().map(super::Zoomable::of_matrix).collect(),
        })
    }
}

#[cfg(feature = "gui")]
pub use tab::EmbeddingsTab;

/// The Embeddings tab: the table and the similarity matrix (zoomable); a row selects its token.
#[cfg(feature = "gui")]
mod tab {
    use serde::{Deserialize, Serialize};

    use super::EmbeddingsView;
    use crate::model::Analysis;
    use crate::render::matrix::MatrixZoom;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::widgets::matrix::zoom_keys;
    use crate::ui::{token_click, ViewState};
    use crate::views::Figure;

    /// The Embeddings tab's own state.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct EmbeddingsTab {
        /// The similarity matrix's zoom and pan (not remembered between runs).
        #[serde(skip)]
        pub zoom: MatrixZoom,
    }

    impl Tab for EmbeddingsTab {
        fn figure(
            &self,
            _state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Embeddings(EmbeddingsView))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let run = cx.run;
            let Some(breakdown) = run.result.embeddings.as_ref() else {
                ui.label("The embeddings could not be taken apart for this run.");
                return;
            };
            zoom_keys(ui, &mut self.zoom);
            let selection = cx.state.selection();
            let Some(figure) = self.figure(cx.state, run.analysis(), None) else {
                return;
            };
            let Some(shown) = cx.draw(ui, &figure, Some(&mut self.zoom), 0.0) else {
                return;
            };
            let analysis = run.analysis();
            match shown.hovered {
                Some(Hit::Cell { row, column }) => {
                    let tokens = analysis.len();
                    let Some(&similarity) =
                        breakdown.position_similarity.get(row * tokens + column)
                    else {
                        return;
                    };
                    shown.response.clone().on_hover_ui_at_pointer(|ui| {
                        ui.label(format!(
                            "{} and {}",
                            analysis.display_token(row),
                            analysis.display_token(column)
                        ));
                        ui.monospace(format!("cosine similarity {similarity:.6}"));
                        ui.weak(format!("tokens {row} and {column}"));
                    });
                }
                Some(Hit::Token(token)) => {
                    if let Some(parts) = breakdown.tokens.iter().find(|t| t.position == token) {
                        shown.response.clone().on_hover_text_at_pointer(format!(
                            "token {token}: word {:.6}, position {}, sum {:.6}",
                            parts.word,
                            parts
                                .position_emb
                                .map_or("none (rotary)".to_owned(), |norm| format!("{norm:.6}")),
                            parts.sum
                        ));
                    }
                }
                _ => {}
            }
            if let Some(Hit::Cell { row, .. } | Hit::Token(row)) = shown.clicked {
                cx.actions.push(token_click(ui, row, &selection));
            }
        }
    }
}
