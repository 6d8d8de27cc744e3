//! A view's drawing, made once: a list of shapes in figure coordinates (points, y down, the
//! origin at the top left) and the regions a pointer can hit. The app paints a scene with egui
//! (`crate::ui::scene`) and export writes the same scene as SVG ([`super::svg`]) and rasterises
//! that to PNG, so that what is exported is what is shown.
//!
//! Colours that depend on the theme are [`Paint`] roles (text, faint text, the selection's
//! colour…), which each painter maps to its palette; data colours (viridis, head colours) are
//! plain RGB.

use std::rc::Rc;

/// A point in figure coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Points from the left edge.
    pub x: f32,
    /// Points from the top edge.
    pub y: f32,
}

impl Point {
    /// The point (`x`, `y`).
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }

    /// The distance to `other`.
    pub fn distance(self, other: Point) -> f32 {
        (self.x - other.x).hypot(self.y - other.y)
    }
}

/// An axis-aligned rectangle in figure coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rect {
    /// The top left corner.
    pub min: Point,
    /// The bottom right corner.
    pub max: Point,
}

impl Rect {
    /// The rectangle from its top left corner and its size.
    pub fn from_size(left: f32, top: f32, width: f32, height: f32) -> Self {
        Self {
            min: Point::new(left, top),
            max: Point::new(left + width, top + height),
        }
    }

    /// Its width.
    pub fn width(&self) -> f32 {
        self.max.x - self.min.x
    }

    /// Its height.
    pub fn height(&self) -> f32 {
        self.max.y - self.min.y
    }

    /// Its centre.
    pub fn center(&self) -> Point {
        Point::new(
            (self.min.x + self.max.x) / 2.0,
            (self.min.y + self.max.y) / 2.0,
        )
    }

    /// Whether `point` lies inside (edges included).
    pub fn contains(&self, point: Point) -> bool {
        (self.min.x..=self.max.x).contains(&point.x) && (self.min.y..=self.max.y).contains(&point.y)
    }

    /// The rectangle grown by `margin` on every side.
    pub fn expand(&self, margin: f32) -> Self {
        Self {
            min: Point::new(self.min.x - margin, self.min.y - margin),
            max: Point::new(self.max.x + margin, self.max.y + margin),
        }
    }

    /// The whole unit square: an image's full extent in texture coordinates.
    pub const UNIT: Rect = Rect {
        min: Point::new(0.0, 0.0),
        max: Point::new(1.0, 1.0),
    };
}

/// A colour: a data colour of its own, or a role that each painter gives its theme's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    /// This colour, opaque.
    Rgb([u8; 3]),
    /// This colour with an alpha (not premultiplied).
    Rgba([u8; 4]),
    /// Text and lines in the foreground.
    Ink,
    /// Notes, axis names and other secondary text.
    FaintInk,
    /// The hovered token's label.
    StrongInk,
    /// What is selected: labels, outlines, paths.
    Accent,
    /// Behind what is picked out in text (the answer in its context), readable under ink.
    Highlight,
    /// Behind sentence B's tokens.
    SentenceB,
    /// Warnings and switched-off heads.
    Alert,
    /// The background the drawing sits on.
    Background,
    /// A slightly different background: placeholders, stripes.
    FaintBackground,
}

/// The colours of the roles of [`Paint`], RGBA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    /// [`Paint::Ink`].
    pub ink: [u8; 4],
    /// [`Paint::FaintInk`].
    pub faint_ink: [u8; 4],
    /// [`Paint::StrongInk`].
    pub strong_ink: [u8; 4],
    /// [`Paint::Accent`].
    pub accent: [u8; 4],
    /// [`Paint::Highlight`].
    pub highlight: [u8; 4],
    /// [`Paint::SentenceB`].
    pub sentence_b: [u8; 4],
    /// [`Paint::Alert`].
    pub alert: [u8; 4],
    /// [`Paint::Background`].
    pub background: [u8; 4],
    /// [`Paint::FaintBackground`].
    pub faint_background: [u8; 4],
}

impl Palette {
    /// The figures' palette: dark ink on white paper.
    pub const PAPER: Palette = Palette {
        ink: [0x20, 0x20, 0x20, 255],
        faint_ink: [0x60, 0x60, 0x60, 255],
        strong_ink: [0, 0, 0, 255],
        accent: [0xc0, 0x39, 0x2b, 255],
        highlight: [0xcc, 0xe4, 0xff, 255],
        sentence_b: [255, 236, 190, 255],
        alert: [0xc0, 0x20, 0x20, 255],
        background: [255, 255, 255, 255],
        faint_background: [0xf0, 0xf0, 0xf0, 255],
    };

    /// The RGBA of `paint`.
    pub fn rgba(&self, paint: Paint) -> [u8; 4] {
        match paint {
            Paint::Rgb([r, g, b]) => [r, g, b, 255],
            Paint::Rgba(rgba) => rgba,
            Paint::Ink => self.ink,
            Paint::FaintInk => self.faint_ink,
            Paint::StrongInk => self.strong_ink,
            Paint::Accent => self.accent,
            Paint::Highlight => self.highlight,
            Paint::SentenceB => self.sentence_b,
            Paint::Alert => self.alert,
            Paint::Background => self.background,
            Paint::FaintBackground => self.faint_background,
        }
    }
}

/// A line's width and colour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stroke {
    /// Width in points.
    pub width: f32,
    /// Colour.
    pub paint: Paint,
}

impl Stroke {
    /// A stroke of `width` points in `paint`.
    pub const fn new(width: f32, paint: Paint) -> Self {
        Self { width, paint }
    }
}

/// The two typefaces of figures and the app: egui's own, embedded (see [`super::text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Font {
    /// Ubuntu Light: titles, notes, numbers.
    Sans,
    /// Hack: tokens, so that pieces line up and read as the vocabulary spells them.
    Mono,
}

/// Where a text's anchor point lies along its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// The text starts at the anchor.
    Start,
    /// The text is centred on the anchor.
    Center,
    /// The text ends at the anchor.
    End,
}

/// Where a text's anchor point lies across its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// The anchor is the top of the line.
    Top,
    /// The anchor is the middle of the line.
    Middle,
    /// The anchor is the bottom of the line.
    Bottom,
}

/// A line of text.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    /// The anchor.
    pub at: Point,
    /// What it says.
    pub text: String,
    /// Font size in points.
    pub size: f32,
    /// Typeface.
    pub font: Font,
    /// Colour.
    pub paint: Paint,
    /// Where the anchor lies along the line.
    pub align: Align,
    /// Where the anchor lies across the line.
    pub baseline: Baseline,
    /// Bold (figures) or the strong colour (egui's fonts have no bold face).
    pub bold: bool,
    /// Turned a quarter anticlockwise, reading upwards (column labels).
    pub upright: bool,
    /// A box behind the text, hiding what it overlaps.
    pub background: Option<Paint>,
}

impl Text {
    /// A text of `size` in `font`, starting at `at` on its middle line, in ink.
    pub fn new(at: Point, text: impl Into<String>, size: f32, font: Font) -> Self {
        Self {
            at,
            text: text.into(),
            size,
            font,
            paint: Paint::Ink,
            align: Align::Start,
            baseline: Baseline::Middle,
            bold: false,
            upright: false,
            background: None,
        }
    }

    /// The same text in `paint`.
    pub fn paint(mut self, paint: Paint) -> Self {
        self.paint = paint;
        self
    }

    /// The same text anchored at `align` and `baseline`.
    pub fn anchor(mut self, align: Align, baseline: Baseline) -> Self {
        self.align = align;
        self.baseline = baseline;
        self
    }

    /// The same text in bold.
    pub fn bold(mut self) -> Self {
        self.bold = true;
        self
    }

    /// The same text turned to read upwards.
    pub fn upright(mut self) -> Self {
        self.upright = true;
        self
    }

    /// The same text on a box of `paint`.
    pub fn on(mut self, paint: Paint) -> Self {
        self.background = Some(paint);
        self
    }

    /// How wide it is drawn, in points (measured with the embedded fonts).
    pub fn width(&self) -> f32 {
        super::text::text_width(&self.text, self.size, self.font)
    }
}

/// An identity for a raster's pixels, so that painters make each image once (egui keeps it as
/// a texture) and scenes compare equal when they show the same image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RasterKey(pub u64);

impl RasterKey {
    /// The key of anything hashable that names an image (the view, the map, its colouring).
    pub fn of(what: impl std::hash::Hash) -> Self {
        use std::hash::Hasher as _;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        what.hash(&mut hasher);
        Self(hasher.finish())
    }
}

/// RGBA pixels, row-major, `width × height`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `4 × width × height` bytes, not premultiplied.
    pub rgba: Vec<u8>,
}

/// An image whose pixels are made only when a painter needs them: the app keeps textures by
/// key across frames and makes each once; export makes them as it writes.
#[derive(Clone)]
pub struct Raster<'a> {
    /// What the pixels show.
    pub key: RasterKey,
    /// Makes the pixels.
    pub make: Rc<dyn Fn() -> Pixels + 'a>,
}

impl std::fmt::Debug for Raster<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Raster").field(&self.key).finish()
    }
}

impl PartialEq for Raster<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<'a> Raster<'a> {
    /// A raster named `key` whose pixels `make` makes.
    pub fn new(key: RasterKey, make: impl Fn() -> Pixels + 'a) -> Self {
        Self {
            key,
            make: Rc::new(make),
        }
    }
}

/// An image drawn into a rectangle, each pixel a sharp square (matrices are data, not photos).
#[derive(Debug, Clone, PartialEq)]
pub struct Image<'a> {
    /// Where it is drawn.
    pub rect: Rect,
    /// The part of the image shown, in fractions of its width and height (a zoomed matrix
    /// shows part of its image).
    pub uv: Rect,
    /// The pixels.
    pub raster: Raster<'a>,
    /// Figures write an image this small as one vector square per pixel, so that each cell of
    /// a small matrix stays an object in the SVG; larger ones are one embedded image.
    pub vector_cells: bool,
}

/// Something drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape<'a> {
    /// A rectangle, filled and/or outlined.
    Rect {
        /// Where.
        rect: Rect,
        /// Fill.
        fill: Option<Paint>,
        /// Outline, drawn inside the rectangle's edge.
        stroke: Option<Stroke>,
        /// Corner radius.
        rounding: f32,
    },
    /// A straight line.
    Line {
        /// One end.
        from: Point,
        /// The other end.
        to: Point,
        /// Width and colour.
        stroke: Stroke,
    },
    /// Connected straight lines.
    Path {
        /// The corners, in order.
        points: Vec<Point>,
        /// Width and colour.
        stroke: Stroke,
    },
    /// A filled circle.
    Circle {
        /// Centre.
        center: Point,
        /// Radius.
        radius: f32,
        /// Fill.
        fill: Paint,
    },
    /// A line of text.
    Text(Text),
    /// An image.
    Image(Image<'a>),
    /// A rectangle filled with colours running from its bottom (the first stop) to its top: a
    /// colour bar.
    Gradient {
        /// Where.
        rect: Rect,
        /// Colours at fractions of the height from the bottom, in order.
        stops: Vec<(f32, [u8; 3])>,
    },
}

/// What a region of a scene stands for, when the pointer is over it.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A token (a label, a chip, a bar).
    Token(usize),
    /// A token as a query (the left column of the lines).
    Query(usize),
    /// A token as a key (the right column of the lines).
    Key(usize),
    /// An attention head.
    Head {
        /// Layer index.
        layer: usize,
        /// Head index.
        head: usize,
    },
    /// A grid of cells covering the region: `rows × columns` of `cell_width × cell_height`, the
    /// region's top left corner showing row `first.y` and column `first.x` (fractional while
    /// zoomed).
    Cells {
        /// Rows of the whole grid.
        rows: usize,
        /// Columns of the whole grid.
        columns: usize,
        /// The row and column at the region's top left corner.
        first: Point,
        /// A cell's width in points.
        cell_width: f32,
        /// A cell's height in points.
        cell_height: f32,
    },
    /// Points standing for tokens: the one nearest the pointer.
    Points(Vec<(Point, usize)>),
    /// Nothing to act on: a part named for screen readers (a row of a table, a note).
    Label,
}

/// What the pointer is on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hit {
    /// A token.
    Token(usize),
    /// A token as a query.
    Query(usize),
    /// A token as a key.
    Key(usize),
    /// An attention head.
    Head {
        /// Layer index.
        layer: usize,
        /// Head index.
        head: usize,
    },
    /// A cell of a grid.
    Cell {
        /// Row (query).
        row: usize,
        /// Column (key).
        column: usize,
    },
    /// The point of a token nearest the pointer, and how far it is in points.
    Point {
        /// The token.
        token: usize,
        /// Its distance from the pointer.
        distance: f32,
    },
}

/// A part of a scene the pointer can hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// Where.
    pub rect: Rect,
    /// What it stands for.
    pub target: Target,
    /// Its name for screen readers (and tests that click it); regions with a name are widgets
    /// of their own in the app.
    pub name: Option<String>,
    /// What the app shows when the pointer rests on it.
    pub tooltip: Option<String>,
}

impl Region {
    /// What the pointer at `point` hits in this region, if it lies inside.
    pub fn hit(&self, point: Point) -> Option<Hit> {
        if !self.rect.contains(point) {
            return None;
        }
        Some(match &self.target {
            Target::Label => return None,
            Target::Token(token) => Hit::Token(*token),
            Target::Query(token) => Hit::Query(*token),
            Target::Key(token) => Hit::Key(*token),
            Target::Head { layer, head } => Hit::Head {
                layer: *layer,
                head: *head,
            },
            Target::Cells {
                rows,
                columns,
                first,
                cell_width,
                cell_height,
            } => {
                let row = first.y + (point.y - self.rect.min.y) / cell_height;
                let column = first.x + (point.x - self.rect.min.x) / cell_width;
                Hit::Cell {
                    row: (row.max(0.0) as usize).min(rows.checked_sub(1)?),
                    column: (column.max(0.0) as usize).min(columns.checked_sub(1)?),
                }
            }
            Target::Points(points) => {
                let (at, token) = points
                    .iter()
                    .min_by(|a, b| a.0.distance(point).total_cmp(&b.0.distance(point)))?;
                Hit::Point {
                    token: *token,
                    distance: at.distance(point),
                }
            }
        })
    }
}

/// A view's drawing: its size, its shapes in drawing order, and the regions the pointer can
/// hit (later regions lie on top).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scene<'a> {
    /// Width in points.
    pub width: f32,
    /// Height in points.
    pub height: f32,
    /// What is drawn, back to front.
    pub shapes: Vec<Shape<'a>>,
    /// What can be hit, back to front.
    pub regions: Vec<Region>,
    /// What the whole drawing is, for screen readers.
    pub name: String,
}

impl<'a> Scene<'a> {
    /// An empty scene of this size.
    pub fn new(width: f32, height: f32, name: impl Into<String>) -> Self {
        Self {
            width,
            height,
            shapes: Vec::new(),
            regions: Vec::new(),
            name: name.into(),
        }
    }

    /// Adds a shape.
    pub fn add(&mut self, shape: Shape<'a>) {
        self.shapes.push(shape);
    }

    /// Adds a line of text.
    pub fn text(&mut self, text: Text) {
        self.shapes.push(Shape::Text(text));
    }

    /// Adds a filled rectangle.
    pub fn fill(&mut self, rect: Rect, paint: Paint) {
        self.shapes.push(Shape::Rect {
            rect,
            fill: Some(paint),
            stroke: None,
            rounding: 0.0,
        });
    }

    /// Adds an outline.
    pub fn outline(&mut self, rect: Rect, stroke: Stroke) {
        self.shapes.push(Shape::Rect {
            rect,
            fill: None,
            stroke: Some(stroke),
            rounding: 0.0,
        });
    }

    /// Adds a straight line.
    pub fn line(&mut self, from: Point, to: Point, stroke: Stroke) {
        self.shapes.push(Shape::Line { from, to, stroke });
    }

    /// Adds a region the pointer can hit.
    pub fn region(&mut self, rect: Rect, target: Target, name: Option<String>) {
        self.regions.push(Region {
            rect,
            target,
            name,
            tooltip: None,
        });
    }

    /// Adds a part with nothing to act on, named for screen readers, with what a pointer
    /// resting on it is told (if anything).
    pub fn label(&mut self, rect: Rect, name: impl Into<String>, tooltip: Option<String>) {
        self.regions.push(Region {
            rect,
            target: Target::Label,
            name: Some(name.into()),
            tooltip,
        });
    }

    /// What the pointer at `point` hits: the topmost region under it.
    pub fn hit_at(&self, point: Point) -> Option<Hit> {
        self.regions
            .iter()
            .rev()
            .find_map(|region| region.hit(point))
    }

    /// Adds `other`'s shapes and regions moved by (`dx`, `dy`), and grows to hold them.
    pub fn append(&mut self, other: Scene<'a>, dx: f32, dy: f32) {
        self.width = self.width.max(other.width + dx);
        self.height = self.height.max(other.height + dy);
        let shift = |p: Point| Point::new(p.x + dx, p.y + dy);
        let shift_rect = |r: Rect| Rect {
            min: shift(r.min),
            max: shift(r.max),
        };
        for shape in other.shapes {
            self.shapes.push(match shape {
                Shape::Rect {
                    rect,
                    fill,
                    stroke,
                    rounding,
                } => Shape::Rect {
                    rect: shift_rect(rect),
                    fill,
                    stroke,
                    rounding,
                },
                Shape::Line { from, to, stroke } => Shape::Line {
                    from: shift(from),
                    to: shift(to),
                    stroke,
                },
                Shape::Path { points, stroke } => Shape::Path {
                    points: points.into_iter().map(shift).collect(),
                    stroke,
                },
                Shape::Circle {
                    center,
                    radius,
                    fill,
                } => Shape::Circle {
                    center: shift(center),
                    radius,
                    fill,
                },
                Shape::Text(mut text) => {
                    text.at = shift(text.at);
                    Shape::Text(text)
                }
                Shape::Image(mut image) => {
                    image.rect = shift_rect(image.rect);
                    Shape::Image(image)
                }
                Shape::Gradient { rect, stops } => Shape::Gradient {
                    rect: shift_rect(rect),
                    stops,
                },
            });
        }
        for mut region in other.regions {
            region.rect = shift_rect(region.rect);
            if let Target::Points(points) = &mut region.target {
                for (point, _) in points {
                    *point = shift(*point);
                }
            }
            self.regions.push(region);
        }
    }

    /// Every text in the scene, in drawing order (tests read what a figure says).
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.shapes.iter().filter_map(|shape| match shape {
            Shape::Text(text) => Some(text.text.as_str()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topmost_region_is_hit_and_cells_are_found_by_position() {
        let mut scene = Scene::new(100.0, 100.0, "test");
        scene.region(
            Rect::from_size(0.0, 0.0, 40.0, 40.0),
            Target::Cells {
                rows: 4,
                columns: 4,
                first: Point::new(0.0, 0.0),
                cell_width: 10.0,
                cell_height: 10.0,
            },
            None,
        );
        scene.region(
            Rect::from_size(30.0, 30.0, 20.0, 20.0),
            Target::Token(7),
            None,
        );
        assert_eq!(
            scene.hit_at(Point::new(15.0, 25.0)),
            Some(Hit::Cell { row: 2, column: 1 })
        );
        assert_eq!(scene.hit_at(Point::new(35.0, 35.0)), Some(Hit::Token(7)));
        assert_eq!(scene.hit_at(Point::new(90.0, 90.0)), None);
    }

    #[test]
    fn an_appended_scene_moves_with_its_regions() {
        let mut inner = Scene::new(10.0, 10.0, "inner");
        inner.fill(Rect::from_size(0.0, 0.0, 10.0, 10.0), Paint::Ink);
        inner.region(
            Rect::from_size(0.0, 0.0, 10.0, 10.0),
            Target::Token(1),
            None,
        );
        let mut outer = Scene::new(5.0, 5.0, "outer");
        outer.append(inner, 20.0, 30.0);
        assert_eq!((outer.width, outer.height), (30.0, 40.0));
        assert_eq!(outer.hit_at(Point::new(25.0, 35.0)), Some(Hit::Token(1)));
        assert_eq!(outer.hit_at(Point::new(5.0, 5.0)), None);
    }
}
