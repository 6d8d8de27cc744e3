//! Parts that several views draw: the caption of a figure, a colour bar, panels of labelled
//! bars, the layer and head numbers around a grid of heads. Each adds shapes to a scene and
//! measures its text with [`super::text`], so the screen and the figure lay out alike.

use super::scene::{Align, Baseline, Font, Paint, Point, Rect, Scene, Text};
use super::text::{text_width, widest};
use super::{attention_color, difference_color, tick_label, MASKED_COLOR};

/// Around a figure's drawing.
pub const MARGIN: f32 = 24.0;
const TITLE_SIZE: f32 = 18.0;
const SUBTITLE_SIZE: f32 = 12.0;

/// A colour bar's width.
pub const COLOR_BAR_WIDTH: f32 = 16.0;
/// Between a matrix and its colour bar.
pub const BAR_GAP: f32 = 12.0;
/// Between the colour bar and its labels.
const BAR_LABEL_GAP: f32 = 4.0;
/// The colour bar's labels.
const BAR_FONT_SIZE: f32 = 11.0;
/// The room a colour bar takes before its labels start.
pub const BAR_ROOM_BEFORE_LABELS: f32 = BAR_GAP + COLOR_BAR_WIDTH + BAR_LABEL_GAP;
/// Between two keys under a colour bar.
pub const MASK_KEY_GAP: f32 = 6.0;
/// The key under a colour bar of causal attention.
const MASKED_LABEL: &str = "masked";
/// The key under a colour bar of windowed attention.
const WINDOW_LABEL: &str = "outside the window";

/// Which kinds of masked (grey) cells a map has, for the keys under its colour bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaskKey {
    /// Keys after the query, which a causal model never sees.
    pub later: bool,
    /// Keys outside a sliding or local window.
    pub window: bool,
}

impl MaskKey {
    /// No masked cells.
    pub const NONE: Self = Self {
        later: false,
        window: false,
    };

    /// Only a causal model's later keys, when `causal`.
    pub fn causal(causal: bool) -> Self {
        Self {
            later: causal,
            window: false,
        }
    }

    /// What layer `layer` of a run masks.
    pub fn of(analysis: &crate::model::Analysis, layer: usize) -> Self {
        Self {
            later: analysis.causal,
            window: analysis.window(layer) != crate::model::KeyWindow::Whole,
        }
    }

    /// The keys to draw, in order.
    fn labels(self) -> impl Iterator<Item = &'static str> {
        [(self.later, MASKED_LABEL), (self.window, WINDOW_LABEL)]
            .into_iter()
            .filter_map(|(shown, label)| shown.then_some(label))
    }

    /// How many keys are drawn.
    pub fn entries(self) -> usize {
        self.labels().count()
    }

    /// The words a map's note adds for its grey cells (empty without any).
    pub fn note(self, window: crate::model::KeyWindow) -> String {
        use crate::model::KeyWindow;
        let mut parts = Vec::new();
        if self.later {
            parts.push(" · grey: masked, a causal model sees only earlier tokens".to_owned());
        }
        if self.window {
            parts.push(match window {
                KeyWindow::Sliding(size) => format!(
                    " · grey: outside the sliding window of {size} keys (the query's own included)"
                ),
                KeyWindow::Local(half) => {
                    format!(" · grey: outside the local window of ±{half} tokens")
                }
                KeyWindow::Whole => String::new(),
            });
        }
        parts.concat()
    }
}

/// What a figure says above the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption {
    /// First line, e.g. `bert-base-uncased · layer 5 · head 3`.
    pub title: String,
    /// The input text, shortened to fit.
    pub text: String,
}

impl Caption {
    /// A caption naming the model and what is shown, with the input text below.
    pub fn new(model: &str, what: &str, text_a: &str, text_b: Option<&str>) -> Self {
        let mut text = match text_b {
            Some(b) => format!("A: {text_a}   B: {b}"),
            None => text_a.to_owned(),
        };
        if text.chars().count() > 110 {
            text = text.chars().take(107).collect::<String>() + "...";
        }
        Self {
            title: format!("{model} · {what}"),
            text,
        }
    }

    /// The figure of `drawing` under this caption, with margins all round.
    pub fn frame<'a>(&self, drawing: Scene<'a>) -> Scene<'a> {
        let top = MARGIN + TITLE_SIZE + SUBTITLE_SIZE + 28.0;
        let width = (MARGIN + drawing.width + MARGIN)
            .max(MARGIN + text_width(&self.title, TITLE_SIZE, Font::Sans) + MARGIN)
            .max(MARGIN + text_width(&self.text, SUBTITLE_SIZE, Font::Sans) + MARGIN);
        let mut figure = Scene::new(width, top + drawing.height + MARGIN, drawing.name.clone());
        figure.text(
            Text::new(
                Point::new(MARGIN, MARGIN),
                self.title.clone(),
                TITLE_SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Top)
            .bold(),
        );
        figure.text(
            Text::new(
                Point::new(MARGIN, MARGIN + TITLE_SIZE + 8.0),
                self.text.clone(),
                SUBTITLE_SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Top)
            .paint(Paint::FaintInk),
        );
        let height = figure.height;
        figure.append(drawing, MARGIN, top);
        figure.height = height;
        figure
    }
}

/// How matrix values map to colours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColorScale {
    /// Viridis from 0 to `max` (attention weights).
    Sequential {
        /// The value of the brightest colour.
        max: f32,
    },
    /// Red–white–blue from `-max_abs` to `max_abs` (differences).
    Diverging {
        /// The value of the strongest colours.
        max_abs: f32,
    },
    /// Red–white–blue from −1 to 1: the cosine similarity of two tokens' vectors, not
    /// attention (no causal mask applies).
    Similarity,
}

impl ColorScale {
    /// The values of the lowest and the highest colour.
    pub fn range(self) -> (f32, f32) {
        match self {
            ColorScale::Sequential { max } => (0.0, max),
            ColorScale::Diverging { max_abs } => (-max_abs, max_abs),
            ColorScale::Similarity => (-1.0, 1.0),
        }
    }

    /// The colour at `t`, a fraction of the range from its low end.
    fn color_at(self, t: f32) -> [u8; 3] {
        match self {
            ColorScale::Sequential { .. } => attention_color(t, 1.0),
            ColorScale::Diverging { .. } | ColorScale::Similarity => {
                difference_color(2.0 * t - 1.0, 1.0)
            }
        }
    }

    /// The colour bar's ticks: bottom, middle and top, as a fraction of its height and a label.
    pub fn ticks(self) -> [(f32, String); 3] {
        let (low, high) = self.range();
        [(0.0, low), (0.5, (low + high) / 2.0), (1.0, high)]
            .map(|(fraction, value)| (fraction, tick_label(value, high - low)))
    }

    /// The widest label beside the bar (the masked keys' too, when they are drawn).
    pub fn widest_label(self, masked: MaskKey) -> f32 {
        let ticks = widest(
            self.ticks().iter().map(|(_, label)| label),
            BAR_FONT_SIZE,
            Font::Sans,
        );
        masked
            .labels()
            .map(|label| text_width(label, BAR_FONT_SIZE, Font::Sans))
            .fold(ticks, f32::max)
    }
}

/// A vertical bar of the scale's colours from its low (bottom) to its high end, with three
/// ticks; under it, the grey of each kind of masked cell `masked` names.
pub fn color_bar(scene: &mut Scene<'_>, bar: Rect, scale: ColorScale, masked: MaskKey) {
    const STOPS: usize = 16;
    let stops = (0..=STOPS)
        .map(|step| {
            let t = step as f32 / STOPS as f32;
            (t, scale.color_at(t))
        })
        .collect();
    scene.add(super::scene::Shape::Gradient { rect: bar, stops });
    for (fraction, label) in scale.ticks() {
        let y = bar.max.y - bar.height() * fraction;
        scene.text(
            Text::new(
                Point::new(bar.max.x + BAR_LABEL_GAP, y),
                label,
                BAR_FONT_SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Middle),
        );
    }
    for (entry, label) in masked.labels().enumerate() {
        let top = bar.max.y + 14.0 + entry as f32 * (bar.width() + MASK_KEY_GAP);
        let swatch = Rect::from_size(bar.min.x, top, bar.width(), bar.width());
        scene.fill(swatch, Paint::Rgb(MASKED_COLOR));
        scene.text(
            Text::new(
                Point::new(swatch.max.x + BAR_LABEL_GAP, swatch.center().y),
                label,
                BAR_FONT_SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Middle),
        );
    }
}

/// One row of a bar panel: a label, the bar's length (0–1) and the value it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct BarRow {
    /// Left of the bar (a token, a label).
    pub label: String,
    /// The bar's length as a fraction of the longest possible.
    pub length: f32,
    /// Right of the bar.
    pub value: String,
    /// Drawn in the accent colour (the model's answer, a changed prediction).
    pub marked: bool,
    /// The token the row stands for, which a click selects.
    pub token: Option<usize>,
}

impl BarRow {
    /// A row with `label`, a bar of `length` and `value` beside it.
    pub fn new(label: impl Into<String>, length: f32, value: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            length,
            value: value.into(),
            marked: false,
            token: None,
        }
    }
}

/// A group of bars under a title.
#[derive(Debug, Clone, PartialEq)]
pub struct BarPanel {
    /// Above the bars.
    pub title: String,
    /// The bars.
    pub rows: Vec<BarRow>,
}

const BAR_ROW: f32 = 18.0;
const BAR_TITLE: f32 = 22.0;
const BAR_PANEL_GAP: f32 = 14.0;
const BAR_LABEL_SIZE: f32 = 12.0;
const BAR_TITLE_SIZE: f32 = 13.0;
const BAR_VALUE_SIZE: f32 = 11.0;

/// The colour of value bars.
pub fn bar_color() -> Paint {
    Paint::Rgb(attention_color(0.65, 1.0))
}

/// A bar of a value, `width` long (at least a hairline, so that zero still shows where the bar
/// starts).
pub fn value_bar(scene: &mut Scene<'_>, left: f32, top: f32, width: f32, height: f32) {
    scene.fill(
        Rect::from_size(left, top, width.max(0.5), height),
        bar_color(),
    );
}

/// Panels of labelled bars, one under another, `width` points wide at most for the bars: the
/// scene and where each panel's bars start.
/// Long because panels of bars wrap into rows whose heights depend on every panel's measured
/// labels.
pub fn bar_panels(panels: &[BarPanel], width: f32) -> Scene<'static> {
    let label_width = widest(
        panels
            .iter()
            .flat_map(|panel| &panel.rows)
            .map(|row| &row.label),
        BAR_LABEL_SIZE,
        Font::Mono,
    )
    .min(320.0);
    let value_width = widest(
        panels
            .iter()
            .flat_map(|panel| &panel.rows)
            .map(|row| &row.value),
        BAR_VALUE_SIZE,
        Font::Sans,
    );
    let bars_left = label_width + 10.0;
    let bar_length = (width - bars_left - 6.0 - value_width - 4.0).clamp(80.0, 560.0);
    let titles = widest(
        panels.iter().map(|panel| &panel.title),
        BAR_TITLE_SIZE,
        Font::Sans,
    );
    let mut scene = Scene::new(
        (bars_left + bar_length + 6.0 + value_width).max(titles),
        0.0,
        "Bars",
    );
    let mut y = 0.0;
    for panel in panels {
        scene.text(
            Text::new(
                Point::new(0.0, y),
                panel.title.clone(),
                BAR_TITLE_SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Top)
            .bold(),
        );
        y += BAR_TITLE;
        for row in &panel.rows {
            let middle = y + BAR_ROW / 2.0 - 1.0;
            let paint = if row.marked {
                Paint::Accent
            } else {
                Paint::Ink
            };
            scene.text(
                Text::new(
                    Point::new(bars_left - 10.0, middle),
                    row.label.clone(),
                    BAR_LABEL_SIZE,
                    Font::Mono,
                )
                .anchor(Align::End, Baseline::Middle)
                .paint(paint),
            );
            let length = row.length.clamp(0.0, 1.0) * bar_length;
            value_bar(&mut scene, bars_left, y + 2.0, length, BAR_ROW - 5.0);
            scene.text(
                Text::new(
                    Point::new(bars_left + length.max(0.5) + 6.0, middle),
                    row.value.clone(),
                    BAR_VALUE_SIZE,
                    Font::Sans,
                )
                .anchor(Align::Start, Baseline::Middle)
                .paint(Paint::FaintInk),
            );
            if let Some(token) = row.token {
                scene.region(
                    Rect::from_size(0.0, y, bars_left + bar_length, BAR_ROW),
                    super::scene::Target::Token(token),
                    None,
                );
            }
            y += BAR_ROW;
        }
        y += BAR_PANEL_GAP;
    }
    scene.height = (y - BAR_PANEL_GAP).max(0.0);
    scene
}

/// The head numbers above a layers × heads grid and the layer numbers left of it; cells of side
/// `cell` every `pitch` from (`left`, `top`).
pub fn grid_labels(
    scene: &mut Scene<'_>,
    left: f32,
    top: f32,
    pitch: f32,
    cell: f32,
    layers: usize,
    heads: usize,
) {
    const SIZE: f32 = 11.0;
    for head in 0..heads {
        scene.text(
            Text::new(
                Point::new(left + pitch * head as f32 + cell / 2.0, top - 4.0),
                head.to_string(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::Center, Baseline::Bottom),
        );
    }
    for layer in 0..layers {
        scene.text(
            Text::new(
                Point::new(left - 6.0, top + pitch * layer as f32 + cell / 2.0),
                layer.to_string(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::End, Baseline::Middle),
        );
    }
}

/// Lines of faint notes starting at (`left`, `top`), `SIZE` 11; returns the y under them.
pub fn notes(scene: &mut Scene<'_>, left: f32, top: f32, lines: &[String]) -> f32 {
    const SIZE: f32 = 11.0;
    const LINE: f32 = 16.0;
    for (index, line) in lines.iter().enumerate() {
        scene.text(
            Text::new(
                Point::new(left, top + LINE * index as f32),
                line.clone(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Top)
            .paint(Paint::FaintInk),
        );
    }
    top + LINE * lines.len() as f32
}

/// The width `lines` of notes need from `left`.
pub fn notes_width(left: f32, lines: &[String]) -> f32 {
    left + widest(lines, 11.0, Font::Sans)
}

/// A bar chart of `values` in `width × height`: one bar per value from 0 up, labelled below by
/// `label(index)`, the largest value named at the top of the axis; each bar a region named
/// `name(index)` for screen readers and tooltips.
pub fn bar_chart(
    values: &[f32],
    width: f32,
    height: f32,
    label: impl Fn(usize) -> String,
    name: impl Fn(usize) -> String,
) -> Scene<'static> {
    const AXIS: f32 = 36.0;
    const UNDER: f32 = 16.0;
    const SIZE: f32 = 9.0;
    let mut scene = Scene::new(width, height, "Bar chart");
    // Identical values give all zeros: keep a readable scale rather than one of 1e-38.
    let largest = values.iter().copied().fold(0f32, f32::max);
    let largest = if largest > 1e-6 { largest } else { 1.0 };
    let chart = height - UNDER;
    let pitch = ((width - AXIS) / values.len().max(1) as f32).clamp(6.0, 40.0);
    scene.line(
        Point::new(AXIS - 4.0, chart),
        Point::new(AXIS + pitch * values.len() as f32, chart),
        super::scene::Stroke::new(1.0, Paint::FaintInk),
    );
    for (text, y) in [(tick_label(largest, largest), 0.0), ("0".to_owned(), chart)] {
        scene.text(
            Text::new(Point::new(AXIS - 6.0, y), text, SIZE, Font::Sans)
                .anchor(Align::End, Baseline::Middle)
                .paint(Paint::FaintInk),
        );
    }
    for (index, &value) in values.iter().enumerate() {
        let bar = value.max(0.0) / largest * chart;
        let x = AXIS + pitch * index as f32;
        scene.fill(
            Rect::from_size(x + pitch * 0.1, chart - bar, pitch * 0.8, bar.max(0.5)),
            Paint::Rgb(attention_color(0.4, 1.0)),
        );
        scene.text(
            Text::new(
                Point::new(x + pitch / 2.0, chart + 3.0),
                label(index),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::Center, Baseline::Top),
        );
        scene.label(
            Rect::from_size(x, 0.0, pitch, chart),
            name(index),
            Some(name(index)),
        );
    }
    scene
}

/// A grid of `rows` from (`left`, `top`), a cell of side `cell` every `pitch`, in diverging
/// colours over ±`scale` (red positive, blue negative), each row numbered at its left;
/// `region(row, column)` names each cell's target and its tooltip.
pub fn diverging_grid(
    scene: &mut Scene<'_>,
    rows: &[Vec<f32>],
    (left, top): (f32, f32),
    (pitch, cell): (f32, f32),
    scale: f32,
    region: impl Fn(usize, usize) -> (super::scene::Target, String),
) {
    const SIZE: f32 = 11.0;
    for (row, values) in rows.iter().enumerate() {
        scene.text(
            Text::new(
                Point::new(left - 6.0, top + pitch * row as f32 + cell / 2.0),
                row.to_string(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::End, Baseline::Middle),
        );
        for (column, &value) in values.iter().enumerate() {
            let rect = Rect::from_size(
                left + pitch * column as f32,
                top + pitch * row as f32,
                cell,
                cell,
            );
            scene.fill(rect, Paint::Rgb(super::difference_color(value, scale)));
            let (target, tooltip) = region(row, column);
            scene.region(rect, target, None);
            scene.label(rect, tooltip.clone(), Some(tooltip));
        }
    }
}

/// Outlines cell (`row`, `column`) of a grid laid out as [`diverging_grid`] lays it out: the
/// open head, in grids of heads.
pub fn outline_grid_cell(
    scene: &mut Scene<'_>,
    (left, top): (f32, f32),
    (pitch, cell): (f32, f32),
    (row, column): (usize, usize),
) {
    scene.outline(
        Rect::from_size(
            left + pitch * column as f32 - 1.0,
            top + pitch * row as f32 - 1.0,
            cell + 2.0,
            cell + 2.0,
        ),
        super::scene::Stroke::new(2.0, Paint::Accent),
    );
}

/// A bar from the line x = `centre` (right for positive values, left for negative), `half`
/// long at ±`scale`, in the row from `top` `height` tall, coloured by its sign; its value
/// beside the right end of the axis.
pub fn diverging_bar(
    scene: &mut Scene<'_>,
    (centre, half): (f32, f32),
    (top, height): (f32, f32),
    value: f32,
    scale: f32,
) {
    let length = value / scale * half;
    let (x, width) = if length >= 0.0 {
        (centre, length)
    } else {
        (centre + length, -length)
    };
    scene.fill(
        Rect::from_size(x, top + 3.0, width.max(0.5), height - 6.0),
        Paint::Rgb(super::difference_color(value.signum() * scale * 0.8, scale)),
    );
    scene.text(
        Text::new(
            Point::new(centre + half + 6.0, top + height / 2.0),
            format!("{value:+.4}"),
            11.0,
            Font::Mono,
        )
        .anchor(Align::Start, Baseline::Middle)
        .paint(Paint::FaintInk),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caption_frames_the_drawing_below_it() {
        let mut drawing = Scene::new(100.0, 50.0, "d");
        drawing.fill(Rect::from_size(0.0, 0.0, 100.0, 50.0), Paint::Ink);
        let caption = Caption::new("tiny", "layer 0 · head 1", "the cat", Some("sat"));
        let figure = caption.frame(drawing);
        assert_eq!(figure.texts().next(), Some("tiny · layer 0 · head 1"));
        assert!(figure.texts().any(|t| t == "A: the cat   B: sat"));
        assert!(figure.width >= 100.0 + 2.0 * MARGIN);
        assert!(figure.height > 50.0 + 2.0 * MARGIN + TITLE_SIZE);
    }

    #[test]
    fn bars_leave_room_for_the_longest_label_and_value() {
        let panels = [BarPanel {
            title: "masked LM".to_owned(),
            rows: vec![
                BarRow::new("cat", 1.0, "0.900"),
                BarRow::new("a much longer token", 0.1, "0.100"),
            ],
        }];
        let scene = bar_panels(&panels, 600.0);
        assert!(scene.width <= 600.0 + 1.0, "{}", scene.width);
        assert_eq!(scene.height, BAR_TITLE + 2.0 * BAR_ROW);
        assert_eq!(scene.texts().count(), 1 + 2 * 2);
    }
}
