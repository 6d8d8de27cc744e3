//! GPU textures of attention maps, made once per analysis and reused every frame, so that even
//! 512 × 512 maps and 384 thumbnails cost one image draw each.

use std::collections::HashMap;

use egui::{ColorImage, TextureHandle, TextureOptions};

use crate::analysis::compare::difference;
use crate::analysis::{shown_map, HeadChoice};
use crate::model::Analysis;
use crate::render::{difference_rgba, heatmap_rgba, max_value};

/// Largest side of an overview thumbnail, in texels.
pub const THUMBNAIL_TEXELS: usize = 96;

/// Which texture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Full {
        layer: usize,
        head: HeadChoice,
        fixed_scale: bool,
    },
    Difference {
        a_layer: usize,
        a_head: HeadChoice,
        b_layer: usize,
        b_head: HeadChoice,
    },
    Thumbnail {
        layer: usize,
        head: usize,
        norms: bool,
    },
    Combined {
        kind: crate::ui::AttentionKind,
        layer: usize,
        fixed_scale: bool,
    },
    Norms {
        layer: usize,
        head: HeadChoice,
    },
    PositionSimilarity,
}

/// UI-thread time one frame may spend making thumbnails; the rest wait for the next frames, so
/// that a 384-head overview fills in over a few frames instead of freezing the window.
const THUMBNAIL_BUDGET: std::time::Duration = std::time::Duration::from_millis(3);

/// Textures of the current analysis; [`TextureCache::reset`] when a new one arrives.
#[derive(Default)]
pub struct TextureCache {
    generation: u64,
    textures: HashMap<Key, (TextureHandle, f32)>,
    /// The pass whose thumbnail time `spent` counts.
    pass: u64,
    spent: std::time::Duration,
    /// Whether a thumbnail was put off in the latest pass.
    deferred: bool,
}

impl TextureCache {
    /// Forgets every texture if the analysis changed (identified by `generation`).
    pub fn reset(&mut self, generation: u64) {
        if generation != self.generation {
            self.generation = generation;
            self.textures.clear();
        }
    }

    /// Forgets the flow maps, drawn for a selection that changed.
    pub fn forget_flow(&mut self) {
        self.textures.retain(|key, _| {
            !matches!(
                key,
                Key::Combined {
                    kind: crate::ui::AttentionKind::Flow,
                    ..
                }
            )
        });
    }

    /// Forgets every texture.
    pub fn clear(&mut self) {
        self.textures.clear();
    }

    /// The full-resolution map of one head (or the mean), and the value its brightest colour
    /// stands for.
    pub fn full(
        &mut self,
        ctx: &egui::Context,
        analysis: &Analysis,
        layer: usize,
        head: HeadChoice,
        fixed_scale: bool,
    ) -> (TextureHandle, f32) {
        let key = Key::Full {
            layer,
            head,
            fixed_scale,
        };
        self.textures
            .entry(key)
            .or_insert_with(|| {
                let values = shown_map(analysis, layer, head);
                let max = if fixed_scale { 1.0 } else { max_value(&values) };
                let size = analysis.len();
                let image =
                    ColorImage::from_rgba_unmultiplied([size, size], &heatmap_rgba(&values, max));
                (
                    ctx.load_texture(
                        format!("attention-{layer}-{head:?}"),
                        image,
                        TextureOptions::NEAREST,
                    ),
                    max,
                )
            })
            .clone()
    }

    /// The norm-based map of one head (or the mean), causal cells masked, and the value its
    /// brightest colour stands for; `None` when the run computed no value norms.
    pub fn norms(
        &mut self,
        ctx: &egui::Context,
        analysis: &Analysis,
        layer: usize,
        head: HeadChoice,
    ) -> Option<(TextureHandle, f32)> {
        let entry = match self.textures.entry(Key::Norms { layer, head }) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let mut values = crate::analysis::norms::norm_map(analysis, layer, head)?;
                if analysis.causal {
                    crate::render::mask_future(&mut values, analysis.len());
                }
                let max = max_value(&values);
                let size = analysis.len();
                let image =
                    ColorImage::from_rgba_unmultiplied([size, size], &heatmap_rgba(&values, max));
                let texture = ctx.load_texture(
                    format!("norms-{layer}-{head:?}"),
                    image,
                    TextureOptions::NEAREST,
                );
                entry.insert((texture, max))
            }
        };
        Some(entry.clone())
    }

    /// The cosine similarity of the tokens' position embeddings (`values`, `tokens × tokens`,
    /// −1 to 1).
    pub fn position_similarity(
        &mut self,
        ctx: &egui::Context,
        values: &[f32],
        tokens: usize,
    ) -> TextureHandle {
        self.textures
            .entry(Key::PositionSimilarity)
            .or_insert_with(|| {
                let image = ColorImage::from_rgba_unmultiplied(
                    [tokens, tokens],
                    &difference_rgba(values, 1.0),
                );
                let texture =
                    ctx.load_texture("position-similarity", image, TextureOptions::NEAREST);
                (texture, 1.0)
            })
            .0
            .clone()
    }

    /// A map that combines a layer's heads (rollout or flow after `layer`: `values`,
    /// `tokens × tokens`, NaN where not computed), and the value its brightest colour stands
    /// for. A flow map changes with the selection: [`TextureCache::forget_flow`] then.
    pub fn combined(
        &mut self,
        ctx: &egui::Context,
        values: &[f32],
        tokens: usize,
        (kind, layer): (crate::ui::AttentionKind, usize),
        fixed_scale: bool,
    ) -> (TextureHandle, f32) {
        self.textures
            .entry(Key::Combined {
                kind,
                layer,
                fixed_scale,
            })
            .or_insert_with(|| {
                let max = if fixed_scale { 1.0 } else { max_value(values) };
                let image = ColorImage::from_rgba_unmultiplied(
                    [tokens, tokens],
                    &heatmap_rgba(values, max),
                );
                (
                    ctx.load_texture(format!("{kind:?}-{layer}"), image, TextureOptions::NEAREST),
                    max,
                )
            })
            .clone()
    }

    /// The difference `A − B` of two models' maps over the same tokens, with the largest
    /// absolute difference (the value of the strongest colours).
    pub fn difference(
        &mut self,
        ctx: &egui::Context,
        a: &Analysis,
        (a_layer, a_head): (usize, HeadChoice),
        b: &Analysis,
        (b_layer, b_head): (usize, HeadChoice),
    ) -> (TextureHandle, f32) {
        let key = Key::Difference {
            a_layer,
            a_head,
            b_layer,
            b_head,
        };
        self.textures
            .entry(key)
            .or_insert_with(|| {
                let values = difference(
                    &shown_map(a, a_layer, a_head),
                    &shown_map(b, b_layer, b_head),
                );
                let max_abs = values.iter().fold(0f32, |m, v| m.max(v.abs()));
                let size = a.len();
                let image = ColorImage::from_rgba_unmultiplied(
                    [size, size],
                    &difference_rgba(&values, max_abs),
                );
                (
                    ctx.load_texture("difference", image, TextureOptions::NEAREST),
                    max_abs,
                )
            })
            .clone()
    }

    /// Whether a thumbnail was put off in the latest frame, to be made in a later one.
    pub fn thumbnails_pending(&self) -> bool {
        self.deferred
    }

    /// A small map of one head for the overview (its attention, or its norm-based attention
    /// when `norms` and the run has value norms), max-pooled down to [`THUMBNAIL_TEXELS`];
    /// `None` when this frame has spent its thumbnail time (ask again next frame).
    pub fn thumbnail(
        &mut self,
        ctx: &egui::Context,
        analysis: &Analysis,
        (layer, head): (usize, usize),
        norms: bool,
    ) -> Option<TextureHandle> {
        let key = Key::Thumbnail { layer, head, norms };
        let pass = ctx.cumulative_pass_nr();
        if pass != self.pass {
            self.pass = pass;
            self.spent = std::time::Duration::ZERO;
            self.deferred = false;
        }
        if let Some((texture, _)) = self.textures.get(&key) {
            return Some(texture.clone());
        }
        if self.spent >= THUMBNAIL_BUDGET {
            self.deferred = true;
            return None;
        }
        let started = std::time::Instant::now();
        let texture = self
            .textures
            .entry(key)
            .or_insert_with(|| {
                // Without value norms the switch falls back to the attention weights.
                let (values, size) =
                    crate::render::head_thumbnail(analysis, layer, head, norms, THUMBNAIL_TEXELS)
                        .unwrap_or_else(|| {
                            analysis.attention_thumbnail(layer, head, THUMBNAIL_TEXELS)
                        });
                let max = max_value(&values);
                let image =
                    ColorImage::from_rgba_unmultiplied([size, size], &heatmap_rgba(&values, max));
                (
                    ctx.load_texture(
                        format!("thumbnail-{layer}-{head}"),
                        image,
                        TextureOptions::NEAREST,
                    ),
                    max,
                )
            })
            .0
            .clone();
        self.spent += started.elapsed();
        Some(texture)
    }
}
