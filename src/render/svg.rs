//! A scene as a figure file: SVG, and PNG rasterised from that SVG by resvg at 1×, 2× or 4×,
//! with the fonts egui draws with embedded, so both formats look the same on every machine and
//! like the window.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use svg::node::element::{
    Circle, Group, Image as SvgImage, Line, LinearGradient, Polyline, Rectangle, Stop,
    Text as SvgText,
};
use svg::Document;

use super::scene::{
    Align, Baseline, Font, Image, Paint, Palette, Pixels, Rect, Scene, Shape, Text,
};

/// The font families figures ask for: egui's, then any the viewer has.
const SANS: &str = "Ubuntu, 'DejaVu Sans', sans-serif";
const MONO: &str = "Hack, 'DejaVu Sans Mono', monospace";

fn hex(paint: Paint, palette: &Palette) -> (String, Option<f32>) {
    let [r, g, b, a] = palette.rgba(paint);
    let opacity = (a < 255).then(|| f32::from(a) / 255.0);
    (format!("#{r:02x}{g:02x}{b:02x}"), opacity)
}

/// Sets a fill (or stroke) colour and, for a translucent one, its opacity.
fn paint<T: svg::Node>(mut node: T, attribute: &str, value: Paint, palette: &Palette) -> T {
    let (color, opacity) = hex(value, palette);
    node.assign(attribute, color);
    if let Some(opacity) = opacity {
        node.assign(format!("{attribute}-opacity"), format!("{opacity:.3}"));
    }
    node
}

/// Where a text's baseline lies below its anchor, for the anchor's place across the line.
pub fn baseline_offset(text: &Text) -> f32 {
    let (ascent, descent) = super::text::vertical_metrics(text.font);
    text.size
        * match text.baseline {
            Baseline::Top => ascent,
            Baseline::Middle => (ascent + descent) / 2.0,
            Baseline::Bottom => descent,
        }
}

fn text_node(text: &Text, palette: &Palette) -> Group {
    let anchor = match text.align {
        Align::Start => "start",
        Align::Center => "middle",
        Align::End => "end",
    };
    let family = match text.font {
        Font::Sans => SANS,
        Font::Mono => MONO,
    };
    let mut group = Group::new();
    if text.upright {
        group = group.set(
            "transform",
            format!("translate({:.2},{:.2}) rotate(-90)", text.at.x, text.at.y),
        );
    } else {
        group = group.set(
            "transform",
            format!("translate({:.2},{:.2})", text.at.x, text.at.y),
        );
    }
    if let Some(background) = text.background {
        let width = text.width();
        let left = match text.align {
            Align::Start => 0.0,
            Align::Center => -width / 2.0,
            Align::End => -width,
        };
        let (ascent, descent) = super::text::vertical_metrics(text.font);
        let top = baseline_offset(text) - ascent * text.size;
        let height = (ascent - descent) * text.size;
        group = group.add(paint(
            Rectangle::new()
                .set("x", left - 1.0)
                .set("y", top - 1.0)
                .set("width", width + 2.0)
                .set("height", height + 2.0)
                .set("rx", 2),
            "fill",
            background,
            palette,
        ));
    }
    let mut node = SvgText::new(text.text.clone())
        .set("x", 0)
        .set("y", format!("{:.2}", baseline_offset(text)))
        .set("font-size", text.size)
        .set("font-family", family)
        .set("text-anchor", anchor)
        // Tokens keep their spaces, as the screen shows them.
        .set("xml:space", "preserve");
    if text.bold {
        node = node.set("font-weight", "bold");
    }
    group.add(paint(node, "fill", text.paint, palette))
}

/// Pixels as a PNG `data:` URI, for an embedded image.
fn png_data_uri(pixels: &Pixels) -> String {
    let mut bytes = std::io::Cursor::new(Vec::new());
    let encoded = image::RgbaImage::from_raw(
        pixels.width as u32,
        pixels.height as u32,
        pixels.rgba.clone(),
    )
    .map(|img| img.write_to(&mut bytes, image::ImageFormat::Png).is_ok())
    .unwrap_or(false);
    if !encoded {
        return String::new();
    }
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes.get_ref())
    )
}

/// An image: one square per pixel for small matrices, else one embedded PNG (of the part `uv`
/// shows).
fn image_node(image: &Image<'_>) -> Group {
    let pixels = (image.raster.make)();
    let mut group = Group::new();
    let (width, height) = (pixels.width, pixels.height);
    if width == 0 || height == 0 {
        return group;
    }
    // The shown part, in pixels.
    let columns = ((image.uv.min.x * width as f32).floor() as usize)
        ..((image.uv.max.x * width as f32).ceil() as usize).min(width);
    let rows = ((image.uv.min.y * height as f32).floor() as usize)
        ..((image.uv.max.y * height as f32).ceil() as usize).min(height);
    let cell_width = image.rect.width() / (image.uv.width() * width as f32);
    let cell_height = image.rect.height() / (image.uv.height() * height as f32);
    let x_of = |column: usize| {
        image.rect.min.x + (column as f32 - image.uv.min.x * width as f32) * cell_width
    };
    let y_of =
        |row: usize| image.rect.min.y + (row as f32 - image.uv.min.y * height as f32) * cell_height;
    if image.vector_cells {
        for row in rows {
            for column in columns.clone() {
                let i = 4 * (row * width + column);
                let [r, g, b, a] = [
                    pixels.rgba[i],
                    pixels.rgba[i + 1],
                    pixels.rgba[i + 2],
                    pixels.rgba[i + 3],
                ];
                group = group.add(paint(
                    Rectangle::new()
                        .set("x", format!("{:.2}", x_of(column)))
                        .set("y", format!("{:.2}", y_of(row)))
                        // A hair wider than the cell so no seams show between neighbours.
                        .set("width", format!("{:.2}", cell_width + 0.05))
                        .set("height", format!("{:.2}", cell_height + 0.05)),
                    "fill",
                    Paint::Rgba([r, g, b, a]),
                    &Palette::PAPER,
                ));
            }
        }
        return group;
    }
    let shown = if columns.len() == width && rows.len() == height {
        pixels
    } else {
        let mut rgba = Vec::with_capacity(4 * columns.len() * rows.len());
        for row in rows.clone() {
            rgba.extend_from_slice(
                &pixels.rgba[4 * (row * width + columns.start)..4 * (row * width + columns.end)],
            );
        }
        Pixels {
            width: columns.len(),
            height: rows.len(),
            rgba,
        }
    };
    group.add(
        SvgImage::new()
            .set("x", format!("{:.2}", x_of(columns.start)))
            .set("y", format!("{:.2}", y_of(rows.start)))
            .set("width", format!("{:.2}", cell_width * shown.width as f32))
            .set(
                "height",
                format!("{:.2}", cell_height * shown.height as f32),
            )
            .set("preserveAspectRatio", "none")
            .set("style", "image-rendering:pixelated")
            .set("href", png_data_uri(&shown)),
    )
}

fn rect_attributes(node: Rectangle, rect: &Rect) -> Rectangle {
    node.set("x", format!("{:.2}", rect.min.x))
        .set("y", format!("{:.2}", rect.min.y))
        .set("width", format!("{:.2}", rect.width().max(0.0)))
        .set("height", format!("{:.2}", rect.height().max(0.0)))
}

/// The scene as an SVG document on a background of the palette's, in its colours.
/// Long because it is one match over every shape kind, each arm a few lines of SVG.
pub fn to_document(scene: &Scene<'_>, palette: &Palette) -> Document {
    let (width, height) = (scene.width.ceil(), scene.height.ceil());
    let mut document = Document::new()
        .set("viewBox", (0, 0, width, height))
        .set("width", width)
        .set("height", height)
        .add(paint(
            Rectangle::new().set("width", "100%").set("height", "100%"),
            "fill",
            Paint::Background,
            palette,
        ));
    let mut gradients = 0;
    for shape in &scene.shapes {
        document = match shape {
            Shape::Rect {
                rect,
                fill,
                stroke,
                rounding,
            } => {
                let mut node = rect_attributes(Rectangle::new(), rect);
                if *rounding > 0.0 {
                    node = node.set("rx", *rounding);
                }
                node = match fill {
                    Some(fill) => paint(node, "fill", *fill, palette),
                    None => node.set("fill", "none"),
                };
                if let Some(stroke) = stroke {
                    node = paint(node, "stroke", stroke.paint, palette)
                        .set("stroke-width", stroke.width);
                }
                document.add(node)
            }
            Shape::Line { from, to, stroke } => document.add(
                paint(
                    Line::new()
                        .set("x1", format!("{:.2}", from.x))
                        .set("y1", format!("{:.2}", from.y))
                        .set("x2", format!("{:.2}", to.x))
                        .set("y2", format!("{:.2}", to.y)),
                    "stroke",
                    stroke.paint,
                    palette,
                )
                .set("stroke-width", format!("{:.2}", stroke.width)),
            ),
            Shape::Path { points, stroke } => {
                let points: Vec<String> = points
                    .iter()
                    .map(|p| format!("{:.2},{:.2}", p.x, p.y))
                    .collect();
                document.add(
                    paint(
                        Polyline::new()
                            .set("points", points.join(" "))
                            .set("fill", "none"),
                        "stroke",
                        stroke.paint,
                        palette,
                    )
                    .set("stroke-width", stroke.width),
                )
            }
            Shape::Circle {
                center,
                radius,
                fill,
            } => document.add(paint(
                Circle::new()
                    .set("cx", format!("{:.2}", center.x))
                    .set("cy", format!("{:.2}", center.y))
                    .set("r", *radius),
                "fill",
                *fill,
                palette,
            )),
            Shape::Text(text) => document.add(text_node(text, palette)),
            Shape::Image(image) => document.add(image_node(image)),
            Shape::Gradient { rect, stops } => {
                // Colour bars are named for what they show (the first is "viridis").
                let id = if gradients == 0 {
                    "viridis".to_owned()
                } else {
                    format!("scale{gradients}")
                };
                gradients += 1;
                let mut gradient = LinearGradient::new()
                    .set("id", id.clone())
                    .set("x1", 0)
                    .set("y1", 1)
                    .set("x2", 0)
                    .set("y2", 0);
                for (offset, [r, g, b]) in stops {
                    gradient = gradient.add(
                        Stop::new()
                            .set("offset", *offset)
                            .set("stop-color", format!("#{r:02x}{g:02x}{b:02x}")),
                    );
                }
                document
                    .add(gradient)
                    .add(rect_attributes(Rectangle::new(), rect).set("fill", format!("url(#{id})")))
            }
        };
    }
    document
}

/// The scene as SVG text.
pub fn to_svg(scene: &Scene<'_>, palette: &Palette) -> String {
    to_document(scene, palette).to_string()
}

/// The fonts figures are drawn with: egui's own, then whatever the system has (for CJK).
fn font_database() -> Arc<resvg::usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut fonts = resvg::usvg::fontdb::Database::new();
            fonts.load_font_data(epaint_default_fonts::UBUNTU_LIGHT.to_vec());
            fonts.load_font_data(epaint_default_fonts::HACK_REGULAR.to_vec());
            fonts.load_system_fonts();
            fonts.set_sans_serif_family("Ubuntu");
            fonts.set_monospace_family("Hack");
            Arc::new(fonts)
        })
        .clone()
}

/// Rasterises SVG text to PNG bytes at `scale` (1, 2 or 4 for slides and print).
pub fn svg_to_png(svg: &str, scale: f32) -> anyhow::Result<Vec<u8>> {
    let options = resvg::usvg::Options {
        fontdb: font_database(),
        ..Default::default()
    };
    let tree = resvg::usvg::Tree::from_str(svg, &options)
        .map_err(|err| anyhow::anyhow!("cannot draw the figure ({err})"))?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .ok_or_else(|| anyhow::anyhow!("scale {scale} is not usable"))?;
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| {
            anyhow::anyhow!(
                "the figure is too large to draw at {scale}x ({}x{} pixels)",
                size.width(),
                size.height()
            )
        })?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|err| anyhow::anyhow!("cannot encode the PNG ({err})"))
}

/// The scene as PNG bytes at `scale`.
pub fn to_png(scene: &Scene<'_>, palette: &Palette, scale: f32) -> anyhow::Result<Vec<u8>> {
    svg_to_png(&to_svg(scene, palette), scale)
}

#[cfg(test)]
mod tests {
    use super::super::scene::{Point, Raster, RasterKey, Stroke};
    use super::*;

    fn scene() -> Scene<'static> {
        let mut scene = Scene::new(120.0, 80.0, "test");
        scene.fill(
            Rect::from_size(10.0, 10.0, 20.0, 20.0),
            Paint::Rgb([255, 0, 0]),
        );
        scene.line(
            Point::new(0.0, 0.0),
            Point::new(100.0, 50.0),
            Stroke::new(2.0, Paint::Rgba([0, 0, 255, 128])),
        );
        scene.text(Text::new(
            Point::new(40.0, 40.0),
            "a < b & c",
            12.0,
            Font::Mono,
        ));
        scene.add(Shape::Image(Image {
            rect: Rect::from_size(60.0, 10.0, 40.0, 40.0),
            uv: Rect::UNIT,
            raster: Raster::new(RasterKey(1), || Pixels {
                width: 2,
                height: 2,
                rgba: vec![255; 16],
            }),
            vector_cells: true,
        }));
        scene
    }

    #[test]
    fn svg_holds_every_shape_with_text_escaped_and_roles_in_the_palettes_colours() {
        let svg = to_svg(&scene(), &Palette::PAPER);
        assert!(svg.contains("width=\"120\"") && svg.contains("height=\"80\""));
        assert!(svg.contains("a &lt; b &amp; c"), "{svg}");
        assert!(svg.contains("#ff0000"));
        assert!(svg.contains("stroke-opacity=\"0.502\""), "{svg}");
        assert!(svg.contains("fill=\"#202020\""), "ink");
        // A small image: one square per pixel, after the background and the red square.
        assert_eq!(svg.matches("<rect").count(), 2 + 4);
    }

    #[test]
    fn png_is_the_svg_at_the_scale_asked_for() {
        let png = to_png(&scene(), &Palette::PAPER, 2.0).unwrap();
        let image = image::load_from_memory(&png).unwrap();
        assert_eq!((image.width(), image.height()), (240, 160));
        let red = image.to_rgba8().get_pixel(40, 40).0;
        assert_eq!(red, [255, 0, 0, 255]);
    }
}
