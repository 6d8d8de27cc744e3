//! The Embeddings tab: what goes into the first layer. For every token, the size (L2 norm) of
//! its word, position and segment embedding rows, of their sum and of the embedding LayerNorm's
//! output; beside it, how alike the tokens' position embeddings are (cosine similarity).

use egui::{RichText, Sense, Vec2};

use super::heatmap::{draw_matrix, ColorScale};
use super::textures::TextureCache;
use super::{UiAction, ViewState};
use crate::model::{Analysis, EmbeddingBreakdown};

/// Width of a column's bar.
const BAR: f32 = 28.0;

/// The Embeddings tab; `breakdown` is `None` when it could not be computed.
pub fn embeddings_view(
    ui: &mut egui::Ui,
    analysis: &Analysis,
    breakdown: Option<&EmbeddingBreakdown>,
    state: &mut ViewState,
    textures: &mut TextureCache,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    let Some(breakdown) = breakdown else {
        ui.label("The embeddings could not be taken apart for this run.");
        return actions;
    };
    let columns: [(&str, &str, Vec<Option<f32>>); 5] = [
        ("word", "‖word embedding‖: the token's row of the vocabulary table", breakdown.tokens.iter().map(|t| Some(t.word)).collect()),
        ("position", "‖position embedding‖: the row for the token's place in the input", breakdown.tokens.iter().map(|t| Some(t.position_emb)).collect()),
        ("segment", "‖segment embedding‖: sentence A or B (none for GPT-2 and DistilBERT)", breakdown.tokens.iter().map(|t| t.segment).collect()),
        ("sum", "‖word + segment + position‖: what the embedding LayerNorm receives", breakdown.tokens.iter().map(|t| Some(t.sum)).collect()),
        ("after norm", "‖LayerNorm(sum)‖: what the first layer reads (none for GPT-2, whose layers normalise their own input)", breakdown.tokens.iter().map(|t| t.after_norm).collect()),
    ];
    let largest: Vec<f32> = columns
        .iter()
        .map(|(_, _, values)| {
            values
                .iter()
                .flatten()
                .copied()
                .fold(f32::MIN_POSITIVE, f32::max)
        })
        .collect();
    ui.weak("Sizes (L2 norms) of each token's input embedding and its parts · right: cosine similarity of the position embeddings");
    ui.columns(2, |halves| {
        // Both ways, so that a narrow window clips the table instead of drawing it over the
        // matrix.
        egui::ScrollArea::both()
            .id_salt("embedding-table")
            .auto_shrink([false, false])
            .show(&mut halves[0], |ui| {
                egui::Grid::new("embeddings")
                    .striped(true)
                    .spacing([10.0, 3.0])
                    .show(ui, |ui| {
                        ui.strong("token");
                        for (name, hover, _) in &columns {
                            ui.strong(*name).on_hover_text(*hover);
                        }
                        ui.end_row();
                        for (index, token) in breakdown.tokens.iter().enumerate() {
                            let label = analysis.display_token(token.position);
                            let selected = state.selected_token == Some(token.position);
                            if ui
                                .selectable_label(selected, RichText::new(label).monospace())
                                .clicked()
                            {
                                actions.push(UiAction::SelectToken(Some(token.position)));
                            }
                            for ((_, _, values), &max) in columns.iter().zip(&largest) {
                                match values[index] {
                                    Some(value) => size_cell(ui, value, max),
                                    None => {
                                        ui.weak("—");
                                    }
                                }
                            }
                            ui.end_row();
                        }
                    });
            });
        let ui = &mut halves[1];
        ui.strong("Position embeddings: cosine similarity");
        let tokens = analysis.len();
        let values = &breakdown.position_similarity;
        let texture = textures.position_similarity(ui.ctx(), values, tokens);
        let weight = |row: usize, col: usize| values[row * tokens + col];
        actions.extend(draw_matrix(
            ui,
            analysis,
            &weight,
            &texture,
            ColorScale::Similarity,
            &state.selection(),
            &mut state.embeddings_zoom,
        ));
    });
    actions
}

/// A norm as a number with a bar scaled to its column's largest value.
fn size_cell(ui: &mut egui::Ui, value: f32, max: f32) {
    ui.horizontal(|ui| {
        let (rect, _) = ui.allocate_exact_size(Vec2::new(BAR, 10.0), Sense::hover());
        let filled = rect.with_max_x(rect.left() + BAR * (value / max).clamp(0.0, 1.0));
        ui.painter()
            .rect_filled(rect, 2.0, ui.visuals().faint_bg_color);
        ui.painter()
            .rect_filled(filled, 2.0, ui.visuals().selection.bg_fill);
        ui.monospace(format!("{value:.2}"))
            .on_hover_text(format!("{value:.6}"));
    });
}
