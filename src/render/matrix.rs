//! The labelled matrix that the heatmap, Compare and the embeddings' similarity share: one image
//! of the values, token labels left and above (every k-th while cells are small, each once they
//! fit), a colour bar with its ticks, the selection outlined, and, on screen, a zoom and the
//! pointer's crosshair.

use serde::{Deserialize, Serialize};

use super::parts::{color_bar, ColorScale, BAR_ROOM_BEFORE_LABELS};
use super::scene::{
    Align, Baseline, Font, Image, Paint, Point, Raster, Rect, Scene, Shape, Stroke, Target, Text,
};
use super::text::{text_width, widest};

/// How far a matrix is zoomed in, and which part of it shows: fractions of the whole, so that
/// one zoom can be shared by matrices of different lengths (Compare).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MatrixZoom {
    /// 1 shows the whole matrix; 2 shows a quarter of it at twice the size.
    pub zoom: f32,
    /// The first column shown, as a fraction of the columns (0 to `1 − 1/zoom`).
    pub left: f32,
    /// The first row shown, as a fraction of the rows (0 to `1 − 1/zoom`).
    pub top: f32,
}

impl Default for MatrixZoom {
    fn default() -> Self {
        Self {
            zoom: 1.0,
            left: 0.0,
            top: 0.0,
        }
    }
}

impl MatrixZoom {
    /// Whether the whole matrix is shown.
    pub fn is_fit(&self) -> bool {
        self.zoom <= 1.0
    }

    /// The fraction of the matrix's side that is shown.
    pub fn shown(&self) -> f32 {
        1.0 / self.zoom
    }

    /// Zooms by `factor` (up to `max_zoom`) so that the point at `anchor` (fractions of the
    /// shown part: (0, 0) its top left, (1, 1) its bottom right) stays under the pointer.
    pub fn zoom_at(&mut self, factor: f32, anchor: (f32, f32), max_zoom: f32) {
        let before = self.shown();
        let fixed = (self.left + anchor.0 * before, self.top + anchor.1 * before);
        self.zoom = (self.zoom * factor).clamp(1.0, max_zoom.max(1.0));
        let after = self.shown();
        self.left = fixed.0 - anchor.0 * after;
        self.top = fixed.1 - anchor.1 * after;
        self.clamp();
    }

    /// Moves the shown part by (`dx`, `dy`), in fractions of the whole matrix.
    pub fn pan(&mut self, dx: f32, dy: f32) {
        self.left += dx;
        self.top += dy;
        self.clamp();
    }

    /// Keeps the shown part inside the matrix.
    fn clamp(&mut self) {
        let room = (1.0 - self.shown()).max(0.0);
        self.left = self.left.clamp(0.0, room);
        self.top = self.top.clamp(0.0, room);
    }
}

/// The largest cell when the whole matrix is shown: a few tokens should not become a wall of
/// colour.
pub const MAX_FIT_CELL: f32 = 64.0;
/// Zooming stops at cells this big.
pub const MAX_ZOOMED_CELL: f32 = 48.0;
const MIN_LABEL_FONT: f32 = 8.0;
const MAX_LABEL_FONT: f32 = 12.0;
/// The widest a label strip gets; longer tokens are cut by it.
const MAX_LABEL_ROOM: f32 = 110.0;
/// Under the matrix: room for its note.
const NOTE_ROOM: f32 = 22.0;
/// The note's size.
const NOTE_SIZE: f32 = 11.0;

/// Where a matrix of `tokens` rows lies in its square, zoomed: which tokens are in view and how
/// big their cells and labels are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatrixGeometry {
    /// The square the shown part fills.
    pub viewport: Rect,
    /// Rows (and columns) of the matrix.
    pub tokens: usize,
    /// A cell's side in points.
    pub cell: f32,
    /// The first shown column (x) and row (y), in tokens (fractional while panning).
    pub first: Point,
    /// Token labels' font size.
    pub font_size: f32,
    /// Every this many rows (and columns) carries a label: 1 once labels fit.
    pub label_every: usize,
}

impl MatrixGeometry {
    /// The geometry of `zoom` applied to a matrix of `tokens` drawn in `viewport`.
    pub fn new(viewport: Rect, tokens: usize, zoom: &MatrixZoom) -> Self {
        let cell = viewport.width() / tokens.max(1) as f32 * zoom.zoom;
        let font_size = (cell * 0.8).clamp(MIN_LABEL_FONT, MAX_LABEL_FONT);
        let label_every = ((font_size + 2.0) / cell).ceil().max(1.0) as usize;
        Self {
            viewport,
            tokens,
            cell,
            first: Point::new(zoom.left * tokens as f32, zoom.top * tokens as f32),
            font_size,
            label_every,
        }
    }

    /// The largest zoom worth having: cells of [`MAX_ZOOMED_CELL`] points.
    pub fn max_zoom(side: f32, tokens: usize) -> f32 {
        (MAX_ZOOMED_CELL * tokens as f32 / side).max(1.0)
    }

    /// Rows (or columns) at least partly in view, along one axis (0 = columns, 1 = rows).
    pub fn visible(&self, axis: usize) -> std::ops::Range<usize> {
        let first = if axis == 0 {
            self.first.x
        } else {
            self.first.y
        };
        let shown = self.viewport.width() / self.cell;
        let start = first.floor().max(0.0) as usize;
        let end = ((first + shown).ceil() as usize).min(self.tokens);
        start..end
    }

    /// The x of column `column`'s left edge.
    pub fn cell_x(&self, column: usize) -> f32 {
        self.viewport.min.x + (column as f32 - self.first.x) * self.cell
    }

    /// The y of row `row`'s top edge.
    pub fn cell_y(&self, row: usize) -> f32 {
        self.viewport.min.y + (row as f32 - self.first.y) * self.cell
    }

    /// The whole row `row`, clipped to the viewport.
    pub fn row_rect(&self, row: usize) -> Rect {
        let top = self.cell_y(row).max(self.viewport.min.y);
        let bottom = (self.cell_y(row) + self.cell).min(self.viewport.max.y);
        Rect {
            min: Point::new(self.viewport.min.x, top),
            max: Point::new(self.viewport.max.x, bottom.max(top)),
        }
    }

    /// The whole column `column`, clipped to the viewport.
    pub fn column_rect(&self, column: usize) -> Rect {
        let left = self.cell_x(column).max(self.viewport.min.x);
        let right = (self.cell_x(column) + self.cell).min(self.viewport.max.x);
        Rect {
            min: Point::new(left, self.viewport.min.y),
            max: Point::new(right.max(left), self.viewport.max.y),
        }
    }

    /// The (row, column) at a point, if it is in view.
    pub fn cell_at(&self, point: Point) -> Option<(usize, usize)> {
        if !self.viewport.contains(point) {
            return None;
        }
        let row = self.first.y + (point.y - self.viewport.min.y) / self.cell;
        let column = self.first.x + (point.x - self.viewport.min.x) / self.cell;
        let last = self.tokens.checked_sub(1)?;
        Some(((row as usize).min(last), (column as usize).min(last)))
    }

    /// The part of the image shown, in fractions of its sides.
    pub fn uv(&self) -> Rect {
        let shown = self.viewport.width() / self.cell / self.tokens.max(1) as f32;
        let left = self.first.x / self.tokens.max(1) as f32;
        let top = self.first.y / self.tokens.max(1) as f32;
        Rect::from_size(left, top, shown, shown)
    }
}

/// A labelled matrix to draw: its image, labels, colour scale and what is selected or hovered.
pub struct Matrix<'a, 'b> {
    /// The values' image, `tokens × tokens`, coloured by `scale`.
    pub raster: Raster<'a>,
    /// Each row's (and column's) label.
    pub labels: &'b [String],
    /// How the colours map to values, for the colour bar.
    pub scale: ColorScale,
    /// Which grey cells to explain (a causal model's later keys, keys outside a window).
    pub masked: super::parts::MaskKey,
    /// Selected tokens, outlined.
    pub selection: &'b [usize],
    /// The cell under the pointer: its row and column get a crosshair and strong labels.
    pub hovered: Option<(usize, usize)>,
    /// The zoom.
    pub zoom: MatrixZoom,
    /// A line under the matrix (what rows and columns are).
    pub note: Option<String>,
    /// What the matrix is, for screen readers.
    pub name: String,
}

/// The room a matrix's labels need: `longest` characters at the largest label font.
fn label_room(labels: &[String]) -> f32 {
    (widest(labels, MAX_LABEL_FONT, Font::Mono) + 8.0).min(MAX_LABEL_ROOM)
}

impl<'a> Matrix<'a, '_> {
    /// Room right of the matrix for the colour bar and its widest label.
    fn bar_room(&self) -> f32 {
        BAR_ROOM_BEFORE_LABELS + self.scale.widest_label(self.masked) + 4.0
    }

    /// Room below the matrix: the masked key and the note.
    fn bottom_room(&self) -> f32 {
        let entries = self.masked.entries() as f32;
        let key = if entries > 0.0 {
            8.0 + entries * 28.0 - (entries - 1.0) * (28.0 - 16.0 - super::parts::MASK_KEY_GAP)
        } else {
            8.0
        };
        key + if self.note.is_some() { NOTE_ROOM } else { 0.0 }
    }

    /// The size a figure gives the matrix: cells of up to 28 points, about 520 points a side
    /// for longer inputs (at least a point a cell).
    pub fn natural_size(&self) -> (f32, f32) {
        let tokens = self.labels.len().max(1) as f32;
        let side = (520.0_f32).min(28.0 * tokens).max(tokens);
        let room = label_room(self.labels);
        let note = self
            .note
            .as_deref()
            .map_or(0.0, |note| text_width(note, NOTE_SIZE, Font::Sans));
        (
            (room + side + self.bar_room()).max(room + note),
            room + side + self.bottom_room(),
        )
    }

    /// The side the matrix gets in a `width × height` box: as much as fits, at most
    /// [`MAX_FIT_CELL`] a cell.
    fn side(&self, width: f32, height: f32) -> f32 {
        let room = label_room(self.labels);
        (width - room - self.bar_room())
            .min(height - room - self.bottom_room())
            .min(MAX_FIT_CELL * self.labels.len().max(1) as f32)
            .max(60.0)
    }

    /// The geometry of the matrix in a `width × height` box at (`left`, `top`).
    pub fn geometry(&self, left: f32, top: f32, width: f32, height: f32) -> MatrixGeometry {
        let room = label_room(self.labels);
        let side = self.side(width, height);
        let viewport = Rect::from_size(left + room, top + room, side, side);
        MatrixGeometry::new(viewport, self.labels.len(), &self.zoom)
    }

    /// Draws the matrix into `scene` in a `width × height` box at (`left`, `top`); returns its
    /// geometry.
    pub fn draw(
        self,
        scene: &mut Scene<'a>,
        left: f32,
        top: f32,
        width: f32,
        height: f32,
    ) -> MatrixGeometry {
        let geometry = self.geometry(left, top, width, height);
        self.draw_at(scene, &geometry);
        geometry
    }

    /// Draws the matrix at `geometry`.
    pub fn draw_at(self, scene: &mut Scene<'a>, geometry: &MatrixGeometry) {
        let matrix = self;
        let tokens = matrix.labels.len();
        let viewport = geometry.viewport;
        scene.add(Shape::Image(Image {
            rect: viewport,
            uv: geometry.uv(),
            raster: matrix.raster.clone(),
            // A few thousand squares at most; a longer input is one image in the figure.
            vector_cells: tokens <= 64,
        }));
        scene.label(viewport, matrix.name.clone(), None);
        scene.region(
            viewport,
            Target::Cells {
                rows: tokens,
                columns: tokens,
                first: geometry.first,
                cell_width: geometry.cell,
                cell_height: geometry.cell,
            },
            None,
        );
        for &token in matrix.selection.iter().filter(|&&t| t < tokens) {
            let stroke = Stroke::new(1.5, Paint::Accent);
            scene.outline(geometry.row_rect(token).expand(0.75), stroke);
            scene.outline(geometry.column_rect(token).expand(0.75), stroke);
        }
        if let Some((row, column)) = matrix.hovered {
            // A crosshair: the hovered row and column, outlined in a colour that shows on every
            // part of the scale.
            let stroke = Stroke::new(1.0, Paint::StrongInk);
            scene.outline(geometry.row_rect(row).expand(-0.5), stroke);
            scene.outline(geometry.column_rect(column).expand(-0.5), stroke);
        }
        token_labels(scene, geometry, &matrix);
        let side = viewport.width();
        let bar = Rect::from_size(
            viewport.max.x + super::parts::BAR_GAP,
            viewport.min.y,
            super::parts::COLOR_BAR_WIDTH,
            side,
        );
        color_bar(scene, bar, matrix.scale, matrix.masked);
        if let Some(note) = &matrix.note {
            let y = viewport.max.y + matrix.bottom_room() - NOTE_ROOM + NOTE_SIZE;
            scene.text(
                Text::new(
                    Point::new(viewport.min.x, y),
                    note.clone(),
                    NOTE_SIZE,
                    Font::Sans,
                )
                .paint(Paint::FaintInk),
            );
            let width = text_width(note, NOTE_SIZE, Font::Sans);
            scene.label(
                Rect::from_size(viewport.min.x, y - NOTE_SIZE, width, NOTE_SIZE * 1.4),
                note.clone(),
                None,
            );
        }
    }
}

/// Row labels left of the matrix and column labels above it, for every `label_every`-th token
/// in view, plus the selected and hovered ones (highlighted, on a box that hides the neighbours
/// they overlap).
/// Long because row and column labels thin out, cut and rotate by the same level-of-detail rule,
/// which must see both axes.
fn token_labels(scene: &mut Scene<'_>, geometry: &MatrixGeometry, matrix: &Matrix<'_, '_>) {
    let viewport = geometry.viewport;
    let size = geometry.font_size;
    // (index, colour, boxed) of every label to draw along one axis; the hovered and selected
    // ones are drawn last, over any neighbour.
    let to_draw = |axis: usize, hovered: Option<usize>| {
        let every = geometry.label_every;
        let mut drawn: Vec<(usize, Paint, bool)> = geometry
            .visible(axis)
            .filter(|&index| {
                index % every == 0 && !matrix.selection.contains(&index) && Some(index) != hovered
            })
            .map(|index| (index, Paint::Ink, false))
            .collect();
        drawn.extend(
            hovered
                .filter(|h| !matrix.selection.contains(h))
                .map(|h| (h, Paint::StrongInk, true)),
        );
        drawn.extend(
            matrix
                .selection
                .iter()
                .filter(|&&s| s < matrix.labels.len())
                .map(|&s| (s, Paint::Accent, true)),
        );
        drawn
    };
    let room = label_room(matrix.labels);
    let fits = |label: &str| {
        // A label longer than its strip is cut to what fits, with an ellipsis.
        let limit = room - 8.0;
        if text_width(label, size, Font::Mono) <= limit {
            return label.to_owned();
        }
        let per_char = text_width("M", size, Font::Mono).max(1.0);
        let keep = ((limit / per_char) as usize).saturating_sub(1).max(1);
        label.chars().take(keep).collect::<String>() + "…"
    };
    for (index, paint, boxed) in to_draw(1, matrix.hovered.map(|(row, _)| row)) {
        let y = geometry.cell_y(index) + geometry.cell / 2.0;
        if (viewport.min.y..=viewport.max.y).contains(&y) {
            let mut text = Text::new(
                Point::new(viewport.min.x - 4.0, y),
                fits(&matrix.labels[index]),
                size,
                Font::Mono,
            )
            .anchor(Align::End, Baseline::Middle)
            .paint(paint);
            if boxed {
                text = text.on(Paint::Background);
            }
            scene.text(text);
            scene.region(
                Rect::from_size(
                    viewport.min.x - room,
                    y - geometry.cell.max(size) / 2.0,
                    room - 2.0,
                    geometry.cell.max(size),
                ),
                Target::Token(index),
                None,
            );
        }
    }
    for (index, paint, boxed) in to_draw(0, matrix.hovered.map(|(_, column)| column)) {
        let x = geometry.cell_x(index) + geometry.cell / 2.0;
        if (viewport.min.x..=viewport.max.x).contains(&x) {
            let mut text = Text::new(
                Point::new(x, viewport.min.y - 4.0),
                fits(&matrix.labels[index]),
                size,
                Font::Mono,
            )
            .anchor(Align::Start, Baseline::Middle)
            .paint(paint)
            .upright();
            if boxed {
                text = text.on(Paint::Background);
            }
            scene.text(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zooming_keeps_the_point_under_the_pointer_and_stays_inside() {
        let mut zoom = MatrixZoom::default();
        let anchor = (0.25, 0.75);
        zoom.zoom_at(4.0, anchor, 100.0);
        assert_eq!(zoom.zoom, 4.0);
        // The point a quarter across and three quarters down is still under the pointer.
        assert!((zoom.left + anchor.0 * zoom.shown() - 0.25).abs() < 1e-6);
        assert!((zoom.top + anchor.1 * zoom.shown() - 0.75).abs() < 1e-6);
        zoom.pan(5.0, -5.0);
        assert_eq!((zoom.left, zoom.top), (0.75, 0.0));
        zoom.zoom_at(0.01, anchor, 100.0);
        assert_eq!(zoom, MatrixZoom::default());
        zoom.zoom_at(1000.0, anchor, 8.0);
        assert_eq!(zoom.zoom, 8.0);
    }

    #[test]
    fn labels_thin_out_when_cells_are_small_and_all_show_once_zoomed() {
        let viewport = Rect::from_size(100.0, 50.0, 700.0, 700.0);
        let fit = MatrixGeometry::new(viewport, 1024, &MatrixZoom::default());
        assert!(fit.label_every > 10, "{fit:?}");
        assert_eq!(fit.visible(0), 0..1024);

        let mut zoom = MatrixZoom::default();
        zoom.zoom_at(
            MatrixGeometry::max_zoom(viewport.width(), 1024),
            (0.5, 0.5),
            f32::INFINITY,
        );
        let zoomed = MatrixGeometry::new(viewport, 1024, &zoom);
        assert_eq!(zoomed.label_every, 1);
        assert_eq!(zoomed.cell, MAX_ZOOMED_CELL);
        let rows = zoomed.visible(1);
        assert!(rows.len() <= 16 && rows.contains(&512), "{rows:?}");
        // The centre of the viewport is still the centre of the matrix.
        assert_eq!(zoomed.cell_at(viewport.center()), Some((512, 512)));
        assert_eq!(zoomed.cell_at(Point::new(0.0, 0.0)), None);
    }
}
