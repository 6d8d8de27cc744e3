//! Token-to-token attention lines (BertViz's head view): queries on the left, keys on the right,
//! one colour per head, a line's opacity and width following its weight. Rollout and flow draw
//! one set of lines; norm-based attention each head's, over the layer's largest.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::heatmap::MapKind;
use crate::analysis::norms::norm_map;
use crate::analysis::HeadChoice;
use crate::model::Analysis;
use crate::render::head_color;
use crate::render::scene::{
    Align, Baseline, Font, Paint, Point, Rect, Scene, Stroke, Target, Text,
};
use crate::render::text::widest;

/// Horizontal room for the lines, between the token columns.
const SPAN: std::ops::RangeInclusive<f32> = 220.0..=520.0;
/// A row's height.
const ROW: std::ops::RangeInclusive<f32> = 12.0..=24.0;
/// Room beside the keys for the selection's bars.
const BAR_ROOM: f32 = 48.0;

/// Which sentence pairs the lines show, for inputs with two sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PairFilter {
    /// Every query and key.
    #[default]
    All,
    /// Queries in A attending to keys in A.
    AToA,
    /// A → B.
    AToB,
    /// B → A.
    BToA,
    /// B → B.
    BToB,
}

impl PairFilter {
    /// Every filter, in display order.
    pub const ALL: [PairFilter; 5] = [Self::All, Self::AToA, Self::AToB, Self::BToA, Self::BToB];

    /// Button label.
    pub fn label(self) -> &'static str {
        match self {
            Self::All => "All",
            Self::AToA => "A to A",
            Self::AToB => "A to B",
            Self::BToA => "B to A",
            Self::BToB => "B to B",
        }
    }

    /// Whether a line from a query in `from` to a key in `to` passes (`None` = special token,
    /// which passes only the "All" filter).
    pub fn allows(self, from: Option<usize>, to: Option<usize>) -> bool {
        match self {
            Self::All => true,
            Self::AToA => from == Some(0) && to == Some(0),
            Self::AToB => from == Some(0) && to == Some(1),
            Self::BToA => from == Some(1) && to == Some(0),
            Self::BToB => from == Some(1) && to == Some(1),
        }
    }
}

/// The lines of a layer with their parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lines {
    /// Layer index (for rollout and flow: the last layer they run through).
    pub layer: usize,
    /// What the lines show.
    pub kind: MapKind,
    /// Heads whose lines are not drawn.
    pub hidden_heads: Vec<usize>,
    /// Lines fainter than this weight are not drawn.
    pub threshold: f32,
    /// Only each query's strongest this many keys per head (0 = all).
    pub top_k: usize,
    /// Which sentence's queries to which sentence's keys.
    pub pairs: PairFilter,
}

impl Default for Lines {
    fn default() -> Self {
        Self {
            layer: 0,
            kind: MapKind::Attention,
            hidden_heads: Vec::new(),
            threshold: 0.1,
            top_k: 0,
            pairs: PairFilter::All,
        }
    }
}

/// What the pointer is on, and what is selected.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks<'a> {
    /// Selected tokens: without a token under the pointer, only their lines show, and bars
    /// beside the keys sum their weight.
    pub selection: &'a [usize],
    /// A query (left) under the pointer: only its lines show.
    pub query: Option<usize>,
    /// A key (right) under the pointer: only the lines into it show.
    pub key: Option<usize>,
}

/// The maps the lines draw for the layer, each with the head whose colour it takes, weights
/// scaled to 0–1: every shown head's attention; every shown head's norm-based attention over
/// the layer's largest norm; or the rollout or flow (`combined`), in one colour. `None` for a
/// combined kind not yet computed.
fn layer_maps<'a>(
    analysis: &'a Analysis,
    lines: &Lines,
    combined: Option<&'a [f32]>,
) -> Option<Vec<(usize, Cow<'a, [f32]>)>> {
    let shown = (0..analysis.heads()).filter(|head| !lines.hidden_heads.contains(head));
    Some(match lines.kind {
        MapKind::Attention => shown
            .map(|head| (head, analysis.attention(lines.layer, head).into()))
            .collect(),
        MapKind::Norms => {
            let maps: Vec<(usize, Vec<f32>)> = shown
                .filter_map(|head| {
                    Some((
                        head,
                        norm_map(analysis, lines.layer, HeadChoice::Head(head))?,
                    ))
                })
                .collect();
            let largest = maps
                .iter()
                .flat_map(|(_, map)| map.iter().copied())
                .fold(f32::MIN_POSITIVE, f32::max);
            maps.into_iter()
                .map(|(head, map)| (head, map.iter().map(|v| v / largest).collect()))
                .collect()
        }
        MapKind::Rollout | MapKind::Flow(_) => vec![(0, combined?.into())],
    })
}

/// Calls `draw` with each key whose line a query row may draw: every key, or only its `top_k`
/// strongest (0 = every key). Every key costs no allocation: this runs per row, per head, per
/// frame.
fn for_each_key_to_draw(row: &[f32], top_k: usize, draw: impl FnMut(usize)) {
    match top_k {
        0 => (0..row.len()).for_each(draw),
        k => crate::model::prediction_heads::top_k(row, k)
            .into_iter()
            .map(|(key, _)| key as usize)
            .for_each(draw),
    }
}

/// The width a figure gives the lines: both token columns and 360 points between them.
pub fn natural_width(analysis: &Analysis) -> f32 {
    let height = natural_height(analysis);
    let row = ((height - 4.0) / analysis.len().max(1) as f32).clamp(*ROW.start(), *ROW.end());
    let size = (row * 0.7).clamp(9.0, 13.0);
    let labels = (0..analysis.len()).map(|i| analysis.display_token(i));
    2.0 * (widest(labels, size, Font::Mono) + 10.0) + 360.0 + BAR_ROOM
}

/// The height a figure gives the lines: rows of 12 to 22 points, about 640 in all.
pub fn natural_height(analysis: &Analysis) -> f32 {
    let tokens = analysis.len().max(1) as f32;
    (640.0 / tokens).clamp(*ROW.start(), 22.0) * tokens + 4.0
}

/// The lines in `width × height` (rows as tall as fit, within 12 to 24 points); tokens are
/// regions, left as queries and right as keys. `None` while a combined kind is computed.
/// Long because the two token columns, each head's lines and the legend share one layout pass (row
/// height, column positions, colours per head).
pub fn scene(
    analysis: &Analysis,
    lines: &Lines,
    combined: Option<&[f32]>,
    marks: &Marks<'_>,
    width: f32,
    height: f32,
) -> Option<Scene<'static>> {
    let maps = layer_maps(analysis, lines, combined)?;
    let tokens = analysis.len();
    let heads = analysis.heads();
    let row = (height / tokens.max(1) as f32).clamp(*ROW.start(), *ROW.end());
    let size = (row * 0.7).clamp(9.0, 13.0);
    let labels: Vec<String> = (0..tokens).map(|i| analysis.display_token(i)).collect();
    let column = widest(&labels, size, Font::Mono) + 10.0;
    let span = (width - 2.0 * column - BAR_ROOM).clamp(*SPAN.start(), *SPAN.end());
    let top = 2.0;
    let left_x = column;
    let right_x = left_x + span;
    let y_of = |index: usize| top + row * (index as f32 + 0.5);
    let mut scene = Scene::new(
        right_x + column + BAR_ROOM,
        row * tokens as f32 + 4.0,
        format!("Attention lines of layer {}", lines.layer),
    );
    let focused = marks.query.is_some() || marks.key.is_some();
    let one_colour = lines.kind.is_combined();
    // Per key, the weight from the selected queries, summed over them and averaged over the
    // drawn maps: the bars beside the keys.
    let mut from_selection = vec![0f32; tokens];
    let mut drawn = 0usize;
    for (head, map) in &maps {
        let [r, g, b] = if one_colour {
            head_color(0, 1)
        } else {
            head_color(*head, heads)
        };
        for query in 0..tokens {
            // A causal model's lines only run backwards, to earlier tokens.
            let keys = if analysis.causal { query + 1 } else { tokens };
            let weights = &map[query * tokens..][..keys];
            if weights.first().is_some_and(|weight| weight.is_nan()) {
                // A flow row not computed (not a selected token).
                continue;
            }
            if marks.selection.contains(&query) {
                for (sum, &weight) in from_selection.iter_mut().zip(weights) {
                    *sum += weight / maps.len() as f32;
                }
            }
            for_each_key_to_draw(weights, lines.top_k, |key| {
                let weight = weights[key];
                if weight < lines.threshold.max(1e-3) {
                    return;
                }
                let shown = match (marks.query, marks.key) {
                    (Some(q), _) => q == query,
                    (None, Some(k)) => k == key,
                    (None, None) => marks.selection.is_empty() || marks.selection.contains(&query),
                };
                if !shown
                    || !lines
                        .pairs
                        .allows(analysis.sentence[query], analysis.sentence[key])
                {
                    return;
                }
                drawn += 1;
                let alpha = (weight.sqrt() * 230.0) as u8;
                scene.line(
                    Point::new(left_x + 4.0, y_of(query)),
                    Point::new(right_x - 4.0, y_of(key)),
                    Stroke::new(1.0 + 2.0 * weight, Paint::Rgba([r, g, b, alpha])),
                );
            });
        }
    }
    if drawn == 0 {
        scene.text(
            Text::new(
                Point::new((left_x + right_x) / 2.0, top + 8.0),
                format!(
                    "no weight here reaches {:.3}: lower the threshold",
                    lines.threshold
                ),
                12.0,
                Font::Sans,
            )
            .anchor(Align::Center, Baseline::Top)
            .paint(Paint::FaintInk),
        );
    }
    let largest = from_selection
        .iter()
        .copied()
        .fold(f32::MIN_POSITIVE, f32::max);
    for (index, label) in labels.iter().enumerate() {
        let highlighted = marks.query == Some(index)
            || marks.key == Some(index)
            || marks.selection.contains(&index);
        let paint = if highlighted {
            Paint::Accent
        } else {
            Paint::Ink
        };
        let tint = (analysis.sentence[index] == Some(1)).then_some(Paint::SentenceB);
        for (x, align, target) in [
            (left_x - 4.0, Align::End, Target::Query(index)),
            (right_x + 4.0, Align::Start, Target::Key(index)),
        ] {
            let mut text = Text::new(Point::new(x, y_of(index)), label.clone(), size, Font::Mono)
                .anchor(align, Baseline::Middle)
                .paint(paint);
            if let Some(tint) = tint {
                text = text.on(tint);
            }
            scene.text(text);
            let region_left = if align == Align::End {
                0.0
            } else {
                right_x - 8.0
            };
            scene.region(
                Rect::from_size(region_left, y_of(index) - row / 2.0, column + 8.0, row),
                target,
                None,
            );
        }
        if !marks.selection.is_empty() && !focused {
            let label_width = crate::render::text::text_width(label, size, Font::Mono);
            scene.fill(
                Rect::from_size(
                    right_x + 8.0 + label_width,
                    y_of(index) - 3.0,
                    40.0 * from_selection[index] / largest,
                    6.0,
                ),
                Paint::Accent,
            );
        }
    }
    Some(scene)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_each_rows_strongest_keys() {
        let row = [0.1, 0.5, 0.05, 0.35];
        let keys = |top_k| {
            let mut keys = Vec::new();
            for_each_key_to_draw(&row, top_k, |key| keys.push(key));
            keys
        };
        assert_eq!(keys(0), vec![0, 1, 2, 3]);
        assert_eq!(keys(2), vec![1, 3]);
        assert_eq!(keys(9).len(), 4);
    }
}

impl super::Draw for Lines {
    const LABEL: &'static str = "Lines";
    const DESCRIPTION: &'static str =
        "Token-to-token attention lines, one colour per head (BertViz head view)";
    const READS_WORDS: bool = true;

    fn title(&self, _inputs: &super::Inputs<'_>) -> String {
        format!("layer {} · attention lines", self.layer)
    }

    const COMPUTES: bool = true;

    fn compute(&self, runs: &super::Runs<'_>) -> super::Computed {
        // A layer the model lacks leaves nothing computed: drawing says why.
        if self.layer >= runs.shown().layers() {
            return super::Computed::default();
        }
        super::Computed {
            map: self
                .kind
                .combined(runs, self.layer)
                .map(std::sync::Arc::new),
            ..super::Computed::default()
        }
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        (
            natural_width(inputs.analysis),
            natural_height(inputs.analysis),
        )
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        use crate::render::scene::Hit;
        super::check_layer_head(inputs.analysis, self.layer, HeadChoice::Mean)?;
        let marks = Marks {
            selection: canvas.selection,
            query: match canvas.hovered {
                Some(Hit::Query(token)) => Some(token),
                _ => None,
            },
            key: match canvas.hovered {
                Some(Hit::Key(token)) => Some(token),
                _ => None,
            },
        };
        scene(
            inputs.analysis,
            self,
            inputs.map,
            &marks,
            canvas.width,
            canvas.height,
        )
        .map(super::Drawn::from)
        .ok_or_else(|| "the rollout or flow has not been computed".to_owned())
    }
}

#[cfg(feature = "gui")]
pub use tab::LinesTab;

/// The Lines tab: which heads, the threshold, the strongest keys per token, the sentence pairs;
/// the pointer on a token shows only its lines, a click selects it.
#[cfg(feature = "gui")]
mod tab {
    use egui::Color32;
    use serde::{Deserialize, Serialize};

    use super::{Lines, PairFilter};
    use crate::model::Analysis;
    use crate::render::head_color;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::widgets::controls::{attention_kind_switch, layer_head_controls};
    use crate::ui::{token_click, AttentionKind, UiAction, ViewState};
    use crate::views::Figure;

    /// The Lines tab's own state.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    pub struct LinesTab {
        /// Heads hidden.
        pub hidden_heads: Vec<usize>,
        /// Which sentence's queries to which sentence's keys.
        pub pair_filter: PairFilter,
        /// Lines fainter than this weight are not drawn.
        pub threshold: f32,
        /// Only each query's strongest this many keys per head (0 = all).
        pub top_k: usize,
    }

    impl Default for LinesTab {
        fn default() -> Self {
            Self {
                hidden_heads: Vec::new(),
                pair_filter: PairFilter::All,
                threshold: 0.1,
                top_k: 0,
            }
        }
    }

    impl Tab for LinesTab {
        fn figure(
            &self,
            state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Lines(Lines {
                layer: state.layer,
                kind: state.map_kind(),
                hidden_heads: self.hidden_heads.clone(),
                threshold: self.threshold,
                top_k: self.top_k,
                pairs: self.pair_filter,
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            let (layers, heads) = (cx.analysis().layers(), cx.analysis().heads());
            layer_head_controls(ui, cx.state, layers, heads, false);
            ui.horizontal(|ui| attention_kind_switch(ui, &mut cx.state.attention_kind, true));
            let kind = cx.state.attention_kind;
            ui.add_enabled_ui(!kind.is_combined(), |ui| self.head_buttons(ui, heads));
            let is_pair = cx.analysis().sentence.contains(&Some(1));
            let tokens = cx.analysis().len();
            ui.horizontal(|ui| self.filters(ui, tokens, is_pair));
            ui.weak(match kind {
                AttentionKind::Raw => format!(
                    "Layer {}: hover a token to see only its lines; click to select it, shift-click to select several (bars: their summed weight on each key)",
                    cx.state.layer
                ),
                AttentionKind::Norms => format!(
                    "Layer {}: norm-based attention ‖α·f(x)‖ over the layer's largest; hover a token to see only its lines",
                    cx.state.layer
                ),
                AttentionKind::Rollout => format!(
                    "Rollout through layers 0–{}: how much each token draws on each input token; hover a token to see only its lines",
                    cx.state.layer
                ),
                AttentionKind::Flow => format!(
                    "Flow through layers 0–{} into the selected tokens (else the first) from each input token; shift-click to add tokens",
                    cx.state.layer
                ),
            });
            if kind.is_combined() && cx.computed.map.is_none() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(if kind == AttentionKind::Flow {
                        "Finding the maximum flow into the selected tokens…"
                    } else {
                        "Rolling attention out through the layers…"
                    });
                });
                return;
            }
            let Some(figure) = self.figure(cx.state, cx.analysis(), None) else {
                return;
            };
            let selection = cx.state.selection();
            egui::ScrollArea::vertical()
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    let Some(shown) = cx.draw(ui, &figure, None, 0.0) else {
                        return;
                    };
                    match shown.clicked {
                        Some(Hit::Query(index) | Hit::Key(index)) => {
                            cx.actions.push(token_click(ui, index, &selection));
                        }
                        _ if shown.response.clicked() => {
                            cx.actions.push(UiAction::SelectToken(None));
                        }
                        _ => {}
                    }
                });
        }
    }

    impl LinesTab {
        /// A button per head in its colour (shown or hidden), and all / none.
        fn head_buttons(&mut self, ui: &mut egui::Ui, heads: usize) {
            ui.horizontal_wrapped(|ui| {
                ui.label("Heads");
                for head in 0..heads {
                    let [r, g, b] = head_color(head, heads);
                    let shown = !self.hidden_heads.contains(&head);
                    let text = egui::RichText::new(format!("{head}")).color(if shown {
                        Color32::BLACK
                    } else {
                        ui.visuals().weak_text_color()
                    });
                    let button = egui::Button::new(text).fill(if shown {
                        Color32::from_rgb(r, g, b)
                    } else {
                        Color32::TRANSPARENT
                    });
                    if ui
                        .add(button)
                        .on_hover_text(format!("show or hide head {head}"))
                        .clicked()
                    {
                        if shown {
                            self.hidden_heads.push(head);
                        } else {
                            self.hidden_heads.retain(|&h| h != head);
                        }
                    }
                }
                if ui.small_button("all").clicked() {
                    self.hidden_heads.clear();
                }
                if ui.small_button("none").clicked() {
                    self.hidden_heads = (0..heads).collect();
                }
            });
        }

        /// The threshold, the top-k per token, and (for a pair) which sentences.
        fn filters(&mut self, ui: &mut egui::Ui, tokens: usize, is_pair: bool) {
            ui.add(egui::Slider::new(&mut self.threshold, 0.0..=0.5).text("hide weights below"))
                .on_hover_text("Lines for weights under this are not drawn");
            ui.separator();
            let top_k = ui.add(
                egui::DragValue::new(&mut self.top_k)
                    .range(0..=tokens)
                    .custom_formatter(|k, _| {
                        if k == 0.0 {
                            "all".to_owned()
                        } else {
                            format!("{k}")
                        }
                    })
                    .prefix("top "),
            );
            let label = ui.label("keys per token");
            top_k.labelled_by(label.id).on_hover_text(
                "Draw only each token's strongest lines per head (0 or all: every line above the threshold); clearer at hundreds of tokens",
            );
            if is_pair {
                ui.separator();
                for filter in PairFilter::ALL {
                    ui.selectable_value(&mut self.pair_filter, filter, filter.label())
                        .on_hover_text("Which sentence's queries attend to which sentence's keys");
                }
            } else {
                self.pair_filter = PairFilter::All;
            }
        }
    }
}
