//! Paints a [`Scene`] with egui: the same shapes export writes as SVG, in the theme's colours,
//! with images kept as textures across frames. Regions with a name become widgets of their own
//! (screen readers and tests find them by it); the pointer's hit and a click come back in
//! [`SceneResponse`].

use std::collections::HashMap;

use egui::{Color32, FontId, Pos2, Sense, TextureHandle, TextureOptions, Vec2};

use crate::render::scene::{
    Align, Baseline, Font, Hit, Paint, Palette, Point, RasterKey, Rect, Scene, Shape, Text,
};

/// UI-thread time one frame may spend making images; the rest wait for the next frames, so
/// that a 384-head overview fills in over a few frames instead of freezing the window.
const RASTER_BUDGET: std::time::Duration = std::time::Duration::from_millis(3);

/// Textures of the images scenes draw, by [`RasterKey`], for one analysis (or one pair, for
/// Compare): [`Rasters::reset`] forgets them when it changes.
#[derive(Default)]
pub struct Rasters {
    generation: u64,
    textures: HashMap<RasterKey, (TextureHandle, u64)>,
    /// Values views compute from the data to draw (a map's weights, for its colours and
    /// tooltips), kept with the textures.
    values: HashMap<RasterKey, std::sync::Arc<Vec<f32>>>,
    /// The frame being painted, and the image time spent in it.
    frame: u64,
    spent: std::time::Duration,
    /// Whether an image was put off in the latest frame.
    deferred: bool,
}

impl Rasters {
    /// Forgets every texture when the data changed (identified by `generation`).
    pub fn reset(&mut self, generation: u64) {
        if generation != self.generation {
            self.generation = generation;
            self.textures.clear();
            self.values.clear();
        }
    }

    /// Forgets every texture.
    pub fn clear(&mut self) {
        self.textures.clear();
        self.values.clear();
    }

    /// The values named `key`, made by `make` the first time (until [`Rasters::reset`]).
    pub fn values(
        &mut self,
        key: RasterKey,
        make: impl FnOnce() -> Option<Vec<f32>>,
    ) -> Option<std::sync::Arc<Vec<f32>>> {
        if let Some(values) = self.values.get(&key) {
            return Some(std::sync::Arc::clone(values));
        }
        let values = std::sync::Arc::new(make()?);
        if self.values.len() > 64 {
            self.values.clear();
        }
        self.values.insert(key, std::sync::Arc::clone(&values));
        Some(values)
    }

    /// Whether an image still waits to be made (screenshots and tests wait for it).
    pub fn pending(&self) -> bool {
        self.deferred
    }

    /// How many textures are kept.
    pub fn len(&self) -> usize {
        self.textures.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.textures.is_empty()
    }

    /// The texture of a raster: made now if the frame's budget allows (the first of a frame is
    /// always made), else `None` and a repaint is asked for.
    fn texture(
        &mut self,
        ctx: &egui::Context,
        raster: &crate::render::scene::Raster<'_>,
    ) -> Option<TextureHandle> {
        let frame = ctx.cumulative_frame_nr();
        if frame != self.frame {
            self.frame = frame;
            self.spent = std::time::Duration::ZERO;
            self.deferred = false;
            // Textures unused for a while (another layer's map, an old selection's flow).
            if self.textures.len() > 512 {
                self.textures
                    .retain(|_, (_, used)| frame.saturating_sub(*used) < 120);
            }
        }
        if let Some((texture, used)) = self.textures.get_mut(&raster.key) {
            *used = frame;
            return Some(texture.clone());
        }
        if self.spent >= RASTER_BUDGET {
            self.deferred = true;
            ctx.request_repaint();
            return None;
        }
        let started = std::time::Instant::now();
        let pixels = (raster.make)();
        let image = egui::ColorImage::from_rgba_unmultiplied(
            [pixels.width.max(1), pixels.height.max(1)],
            if pixels.rgba.is_empty() {
                &[0, 0, 0, 0]
            } else {
                &pixels.rgba
            },
        );
        let texture = ctx.load_texture(
            format!("scene-{:x}", raster.key.0),
            image,
            TextureOptions::NEAREST,
        );
        self.spent += started.elapsed();
        self.textures.insert(raster.key, (texture.clone(), frame));
        Some(texture)
    }
}

/// The theme's colours for the roles of [`Paint`].
pub fn palette(visuals: &egui::Visuals) -> Palette {
    let rgba = |color: Color32| color.to_srgba_unmultiplied();
    Palette {
        ink: rgba(visuals.text_color()),
        faint_ink: rgba(visuals.weak_text_color()),
        strong_ink: rgba(visuals.strong_text_color()),
        accent: rgba(visuals.selection.stroke.color),
        highlight: rgba(visuals.selection.bg_fill),
        sentence_b: if visuals.dark_mode {
            [70, 55, 20, 255]
        } else {
            [255, 236, 190, 255]
        },
        alert: rgba(visuals.error_fg_color),
        background: rgba(visuals.panel_fill),
        faint_background: rgba(visuals.extreme_bg_color),
    }
}

/// What the pointer did with a painted scene.
pub struct SceneResponse {
    /// The whole scene's response (drags, double clicks, the wheel).
    pub response: egui::Response,
    /// Where the scene's origin is on screen.
    pub origin: Pos2,
    /// What the pointer is over.
    pub hovered: Option<Hit>,
    /// What was clicked this frame.
    pub clicked: Option<Hit>,
    /// The pointer in scene coordinates, when it is over the scene.
    pub pointer: Option<Point>,
    /// The scene's zoomable parts (its matrices, its plot), in scene coordinates.
    pub areas: Vec<crate::render::scene::Rect>,
}

impl SceneResponse {
    /// A screen position in scene coordinates.
    pub fn to_scene(&self, pos: Pos2) -> Point {
        Point::new(pos.x - self.origin.x, pos.y - self.origin.y)
    }
}

/// Where the pointer would be in a scene allocated next in `ui`, at `size` (to build a scene
/// with the hovered part highlighted before painting it).
pub fn pointer_in_next(ui: &egui::Ui) -> Option<Point> {
    let origin = ui.cursor().min;
    let pos = ui.input(|input| input.pointer.hover_pos())?;
    Some(Point::new(pos.x - origin.x, pos.y - origin.y))
}

/// Builds a scene, finds what the pointer is over, and builds it again with that hovered (when
/// the pointer is over it) before painting it: views draw their hover highlights themselves.
pub fn show_hovered<'a>(
    ui: &mut egui::Ui,
    rasters: &mut Rasters,
    sense: Sense,
    build: impl Fn(Option<Hit>) -> Scene<'a>,
) -> SceneResponse {
    let first = build(None);
    let hovered = pointer_in_next(ui)
        .filter(|point| point.x >= 0.0 && point.y >= 0.0)
        .and_then(|point| first.hit_at(point));
    let scene = if hovered.is_some() {
        build(hovered)
    } else {
        first
    };
    show(ui, &scene, rasters, sense)
}

fn color(paint: Paint, palette: &Palette) -> Color32 {
    let [r, g, b, a] = palette.rgba(paint);
    Color32::from_rgba_unmultiplied(r, g, b, a)
}

fn font_id(font: Font, size: f32) -> FontId {
    match font {
        Font::Sans => FontId::proportional(size),
        Font::Mono => FontId::monospace(size),
    }
}

/// Paints one text: laid out by egui, placed at its anchor as [`crate::render::svg`] places it.
fn paint_text(painter: &egui::Painter, origin: Vec2, text: &Text, palette: &Palette) {
    let mut ink = color(text.paint, palette);
    if text.bold && text.paint == Paint::Ink {
        // egui's fonts have no bold face: bold reads as the strong colour.
        ink = color(Paint::StrongInk, palette);
    }
    let galley = painter.layout_no_wrap(text.text.clone(), font_id(text.font, text.size), ink);
    let size = galley.size();
    let along = match text.align {
        Align::Start => 0.0,
        Align::Center => size.x / 2.0,
        Align::End => size.x,
    };
    let across = match text.baseline {
        Baseline::Top => 0.0,
        Baseline::Middle => size.y / 2.0,
        Baseline::Bottom => size.y,
    };
    let anchor = Pos2::new(text.at.x, text.at.y) + origin;
    if text.upright {
        // Turned a quarter anticlockwise about its top left corner: the line runs up the
        // screen and its height runs right.
        let pos = anchor + Vec2::new(-across, along);
        if let Some(background) = text.background {
            let rect = egui::Rect::from_min_max(
                Pos2::new(pos.x, pos.y - size.x),
                Pos2::new(pos.x + size.y, pos.y),
            );
            painter.rect_filled(rect.expand(1.0), 2.0, color(background, palette));
        }
        painter.add(
            egui::epaint::TextShape::new(pos, galley, ink).with_angle(-std::f32::consts::FRAC_PI_2),
        );
    } else {
        let pos = anchor - Vec2::new(along, across);
        if let Some(background) = text.background {
            let rect = egui::Rect::from_min_size(pos, size);
            painter.rect_filled(rect.expand(1.0), 2.0, color(background, palette));
        }
        painter.galley(pos, galley, ink);
    }
}

fn to_rect(rect: &Rect, origin: Vec2) -> egui::Rect {
    egui::Rect::from_min_max(
        Pos2::new(rect.min.x, rect.min.y) + origin,
        Pos2::new(rect.max.x, rect.max.y) + origin,
    )
}

/// A vertical gradient from the first stop (bottom) to the last (top), as one mesh.
fn gradient_mesh(rect: egui::Rect, stops: &[(f32, [u8; 3])]) -> egui::Mesh {
    let mut mesh = egui::Mesh::default();
    for (index, (offset, [r, g, b])) in stops.iter().enumerate() {
        let y = rect.bottom() - rect.height() * offset;
        let color = Color32::from_rgb(*r, *g, *b);
        mesh.colored_vertex(Pos2::new(rect.left(), y), color);
        mesh.colored_vertex(Pos2::new(rect.right(), y), color);
        if index > 0 {
            let base = 2 * index as u32;
            mesh.add_triangle(base - 2, base - 1, base);
            mesh.add_triangle(base - 1, base + 1, base);
        }
    }
    mesh
}

/// Paints `scene` in `ui` (allocating its size) and reports what the pointer did; `sense` is
/// what the scene as a whole responds to (clicks, drags).
/// Long because it is the painter's one pass over a scene: allocating the area, painting each shape
/// kind, and turning regions into widgets and hits must see the same transform.
pub fn show(
    ui: &mut egui::Ui,
    scene: &Scene<'_>,
    rasters: &mut Rasters,
    sense: Sense,
) -> SceneResponse {
    let (response, painter) = ui.allocate_painter(Vec2::new(scene.width, scene.height), sense);
    let origin = response.rect.min;
    let shift = origin.to_vec2();
    let name = scene.name.clone();
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &name));
    let palette = palette(ui.visuals());
    let clip = painter.clip_rect();
    for shape in &scene.shapes {
        match shape {
            Shape::Rect {
                rect,
                fill,
                stroke,
                rounding,
            } => {
                let rect = to_rect(rect, shift);
                if let Some(fill) = fill {
                    painter.rect_filled(rect, *rounding, color(*fill, &palette));
                }
                if let Some(stroke) = stroke {
                    painter.rect_stroke(
                        rect,
                        *rounding,
                        egui::Stroke::new(stroke.width, color(stroke.paint, &palette)),
                        egui::StrokeKind::Inside,
                    );
                }
            }
            Shape::Line { from, to, stroke } => {
                painter.line_segment(
                    [
                        Pos2::new(from.x, from.y) + shift,
                        Pos2::new(to.x, to.y) + shift,
                    ],
                    egui::Stroke::new(stroke.width, color(stroke.paint, &palette)),
                );
            }
            Shape::Path { points, stroke } => {
                painter.add(egui::Shape::line(
                    points.iter().map(|p| Pos2::new(p.x, p.y) + shift).collect(),
                    egui::Stroke::new(stroke.width, color(stroke.paint, &palette)),
                ));
            }
            Shape::Circle {
                center,
                radius,
                fill,
            } => {
                painter.circle_filled(
                    Pos2::new(center.x, center.y) + shift,
                    *radius,
                    color(*fill, &palette),
                );
            }
            Shape::Text(text) => {
                // Labels far outside the visible part (a long scrolled list) are skipped.
                let at = Pos2::new(text.at.x, text.at.y) + shift;
                if clip.expand(200.0).contains(at) {
                    paint_text(&painter, shift, text, &palette);
                }
            }
            Shape::Image(image) => {
                let rect = to_rect(&image.rect, shift);
                if !ui.is_rect_visible(rect) {
                    continue;
                }
                match rasters.texture(ui.ctx(), &image.raster) {
                    Some(texture) => {
                        let uv = egui::Rect::from_min_max(
                            Pos2::new(image.uv.min.x, image.uv.min.y),
                            Pos2::new(image.uv.max.x, image.uv.max.y),
                        );
                        painter.image(texture.id(), rect, uv, Color32::WHITE);
                    }
                    None => {
                        painter.rect_filled(rect, 0.0, color(Paint::FaintBackground, &palette));
                    }
                }
            }
            Shape::Gradient { rect, stops } => {
                painter.add(gradient_mesh(to_rect(rect, shift), stops));
            }
        }
    }
    let pointer_pos = response.hover_pos();
    let mut clicked = None;
    let mut hovered = None;
    // Named regions are widgets of their own, on top of the scene.
    for (index, region) in scene.regions.iter().enumerate() {
        let Some(name) = &region.name else {
            continue;
        };
        let rect = to_rect(&region.rect, shift);
        // A part with nothing to act on only names itself: it lets clicks and drags through
        // to the scene (a matrix under its name still zooms).
        let label = region.target == crate::render::scene::Target::Label;
        let (sense, role) = if label {
            (Sense::hover(), egui::Role::Label)
        } else {
            (Sense::click(), egui::Role::Button)
        };
        let widget = ui.interact(rect, response.id.with(("region", index)), sense);
        widget.widget_info(|| egui::WidgetInfo::labeled(role, true, name));
        let widget = match &region.tooltip {
            Some(tooltip) => widget.on_hover_text_at_pointer(tooltip),
            None => widget,
        };
        let at = |pos: Pos2| Point::new(pos.x - origin.x, pos.y - origin.y);
        if widget.hovered() {
            hovered = widget.hover_pos().and_then(|pos| region.hit(at(pos)));
        }
        if widget.clicked() {
            clicked = widget
                .interact_pointer_pos()
                .and_then(|pos| region.hit(at(pos)))
                .or_else(|| region.hit(region.rect.center()));
        }
    }
    let pointer = pointer_pos.map(|pos| Point::new(pos.x - origin.x, pos.y - origin.y));
    if hovered.is_none() {
        hovered = pointer.and_then(|point| scene.hit_at(point));
    }
    if clicked.is_none() && response.clicked() {
        clicked = response
            .interact_pointer_pos()
            .and_then(|pos| scene.hit_at(Point::new(pos.x - origin.x, pos.y - origin.y)));
    }
    SceneResponse {
        response,
        origin,
        hovered,
        clicked,
        pointer,
        areas: Vec::new(),
    }
}
