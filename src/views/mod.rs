//! The views, each drawn once: a view turns what it shows (the analysis, what was computed from
//! it) and its parameters into a [`crate::render::scene::Scene`], which the app paints and
//! export writes. No egui here.

pub mod compare;
pub mod embeddings;
pub mod head_stats;
pub mod heatmap;
pub mod lens;
pub mod lines;
pub mod overview;
pub mod predictions;
pub mod projection;
pub mod query_key;
