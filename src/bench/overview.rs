//! The overview's frame time, headless: every layer × head of an analysis in a 1400 × 900
//! window (layout, painting and tessellation), for `bertscope bench --overview-frames`.

use crate::model::Analysis;
use crate::ui::scene::Rasters;
use crate::ui::tab::Marks;
use crate::views::overview::{overview_grid, Overview};
use crate::views::{Figure, Inputs};

/// CPU times of the overview, headless in a 1400 × 900 window.
#[derive(Debug, Clone, Copy)]
pub struct OverviewTimes {
    /// Frames until every thumbnail in view was made.
    pub filling_frames: usize,
    /// The slowest of those frames, in milliseconds.
    pub slowest_filling_ms: f64,
    /// The median frame afterwards, in milliseconds.
    pub frame_ms: f64,
}

/// Times the overview: the frames that make the thumbnails in view, then `frames` more.
pub fn measure_frame_ms(analysis: &Analysis, frames: usize) -> OverviewTimes {
    let ctx = egui::Context::default();
    // A window that is already open has its fonts: a first empty frame loads them, untimed.
    let _ = ctx.run_ui(crate::ui::headless_input(), |ui| {
        egui::CentralPanel::default().show(ui, |ui| ui.label("0123456789 layers heads"));
    });
    let figure = Figure::Overview(Overview::default());
    let inputs = Inputs::of("model", analysis);
    let mut rasters = Rasters::default();
    let frame = |rasters: &mut Rasters| {
        let output = ctx.run_ui(crate::ui::headless_input(), |ui| {
            egui::CentralPanel::default().show(ui, |ui| {
                let marks = Marks {
                    selection: &[],
                    open: None,
                };
                overview_grid(ui, &figure, &inputs, marks, false, rasters);
            });
        });
        ctx.tessellate(output.shapes, output.pixels_per_point).len()
    };
    let timed = |rasters: &mut Rasters| {
        let started = std::time::Instant::now();
        std::hint::black_box(frame(rasters));
        started.elapsed().as_secs_f64() * 1e3
    };
    let (mut filling_frames, mut slowest_filling_ms) = (0, 0f64);
    loop {
        slowest_filling_ms = slowest_filling_ms.max(timed(&mut rasters));
        filling_frames += 1;
        if !rasters.pending() {
            break;
        }
    }
    // Two more settle the layout.
    for _ in 0..2 {
        frame(&mut rasters);
    }
    let mut times: Vec<f64> = (0..frames.max(1)).map(|_| timed(&mut rasters)).collect();
    times.sort_by(f64::total_cmp);
    OverviewTimes {
        filling_frames,
        slowest_filling_ms,
        frame_ms: times[times.len() / 2],
    }
}
