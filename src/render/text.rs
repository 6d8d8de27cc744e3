//! How wide a line of text is drawn, measured once for every painter: with the glyph advances of
//! the fonts egui draws with (Ubuntu Light and Hack, embedded), which the figures embed too.
//! Views lay out with it (label room, colour-bar room, figure width), so that the screen and the
//! exported figure make the same decisions.

use std::sync::OnceLock;

use super::scene::Font;

/// A parsed face and its advance per `char`, for the characters looked up so far.
struct Face {
    face: ttf_parser::Face<'static>,
    units_per_em: f32,
}

fn face(font: Font) -> Option<&'static Face> {
    static SANS: OnceLock<Option<Face>> = OnceLock::new();
    static MONO: OnceLock<Option<Face>> = OnceLock::new();
    let (cell, bytes): (_, &'static [u8]) = match font {
        Font::Sans => (&SANS, epaint_default_fonts::UBUNTU_LIGHT),
        Font::Mono => (&MONO, epaint_default_fonts::HACK_REGULAR),
    };
    cell.get_or_init(|| {
        let face = ttf_parser::Face::parse(bytes, 0).ok()?;
        let units_per_em = f32::from(face.units_per_em());
        Some(Face { face, units_per_em })
    })
    .as_ref()
}

/// The advance of a character the face lacks (drawn from a fallback font): a full em for wide
/// characters (CJK, emoji), 0.6 em for others.
fn fallback_advance(c: char) -> f32 {
    if u32::from(c) >= 0x1100 {
        1.0
    } else {
        0.6
    }
}

/// How far the font reaches above its baseline (the ascent, positive) and below it (the
/// descent, negative), in ems: where a line's top, middle and bottom lie around the baseline.
pub fn vertical_metrics(font: Font) -> (f32, f32) {
    face(font).map_or((0.9, -0.2), |face| {
        (
            f32::from(face.face.ascender()) / face.units_per_em,
            f32::from(face.face.descender()) / face.units_per_em,
        )
    })
}

/// The width of `text` drawn at `size` points in `font`, in points.
pub fn text_width(text: &str, size: f32, font: Font) -> f32 {
    let Some(face) = face(font) else {
        return text.chars().map(fallback_advance).sum::<f32>() * size;
    };
    // A character Ubuntu lacks (‖, →) is drawn from Hack, as egui's fonts fall back
    // (`crate::ui::install_fonts`).
    let fallback = match font {
        Font::Sans => self::face(Font::Mono),
        Font::Mono => None,
    };
    let advance = |face: &Face, c: char| {
        face.face
            .glyph_index(c)
            .and_then(|glyph| face.face.glyph_hor_advance(glyph))
            .map(|advance| f32::from(advance) / face.units_per_em)
    };
    let ems: f32 = text
        .chars()
        .map(|c| {
            advance(face, c)
                .or_else(|| fallback.and_then(|fallback| advance(fallback, c)))
                .unwrap_or_else(|| fallback_advance(c))
        })
        .sum();
    ems * size
}

/// The width of the widest of `texts` at `size` in `font` (0 for none).
pub fn widest(texts: impl IntoIterator<Item = impl AsRef<str>>, size: f32, font: Font) -> f32 {
    texts
        .into_iter()
        .map(|text| text_width(text.as_ref(), size, font))
        .fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_grow_with_text_and_size_and_mono_is_fixed_pitch() {
        let short = text_width("cat", 12.0, Font::Sans);
        assert!(short > 10.0 && short < 30.0, "{short}");
        assert!(text_width("catalogue", 12.0, Font::Sans) > short);
        assert!((text_width("cat", 24.0, Font::Sans) - 2.0 * short).abs() < 1e-3);
        let (narrow, wide) = (
            text_width("iii", 12.0, Font::Mono),
            text_width("WWW", 12.0, Font::Mono),
        );
        assert!((narrow - wide).abs() < 1e-3, "Hack is monospaced");
        assert!(
            text_width("猫", 12.0, Font::Sans) >= 11.0,
            "wide characters"
        );
        assert_eq!(
            widest(["a", "abc", "ab"], 10.0, Font::Mono),
            text_width("abc", 10.0, Font::Mono)
        );
    }
}
