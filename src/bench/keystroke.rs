//! Keystroke latency, headless: the whole app (logic, worker, drawing) on an egui context
//! without a window, timed from a changed text to the frame that draws its result. Behind
//! `bertscope bench --keystroke N`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::app::{BertscopeApp, LaunchOptions, ModelStatus, Settings};
use crate::views::View;
use crate::worker::{ExplainKind, ExplainRequest};

/// How long to wait for a model to load or for one result before giving up.
const PATIENCE: Duration = Duration::from_secs(300);

/// Types `keystrokes` characters one at a time, each once the previous one's result is on
/// screen, and returns the milliseconds from each keystroke to the end of the frame that drew
/// its result (the open tab, 1400 × 900, tessellated).
/// Whether the open tab's explanation (attribution, patching, logit attribution), if it shows
/// one, is of the current text.
fn explained(app: &BertscopeApp) -> bool {
    let kind = match app.settings().view.view {
        View::Attribution => ExplainKind::Attribution,
        View::Patching => ExplainKind::Patching,
        View::LogitAttribution => ExplainKind::LogitAttribution,
        _ => return true,
    };
    let text = &app.settings().text_a;
    app.explained().get(kind).is_some_and(|state| {
        state.result.is_some()
            && match &state.request {
                ExplainRequest::Attribution { text: (a, _), .. }
                | ExplainRequest::LogitAttribution { text: (a, _), .. } => a == text,
                ExplainRequest::Patching { clean: (a, _), .. } => a == text,
            }
    })
}

pub fn measure_keystroke_ms(launch: LaunchOptions, keystrokes: usize) -> anyhow::Result<Vec<f64>> {
    let ctx = egui::Context::default();
    let mut app = BertscopeApp::new(
        &ctx,
        Settings::default(),
        launch,
        Arc::new(Mutex::new(None)),
    );
    let frame = |app: &mut BertscopeApp| {
        let output = ctx.run_ui(crate::ui::headless_input(), |ui| {
            app.update_logic(ui.ctx());
            app.draw(ui);
        });
        std::hint::black_box(ctx.tessellate(output.shapes, output.pixels_per_point));
    };
    let started = Instant::now();
    while app.result().is_none() || app.is_busy() {
        if let ModelStatus::Failed { message, .. } = app.model_status() {
            anyhow::bail!("{message}");
        }
        if let Some(error) = app.analysis_error() {
            anyhow::bail!("{error}");
        }
        anyhow::ensure!(
            started.elapsed() < PATIENCE,
            "no first result after {PATIENCE:?}"
        );
        frame(&mut app);
        std::thread::sleep(Duration::from_millis(1));
    }
    // Settle the layout and the first result's textures.
    for _ in 0..3 {
        frame(&mut app);
    }
    let typed = " and then the students typed a few more words";
    let mut times = Vec::with_capacity(keystrokes);
    for character in typed.chars().cycle().take(keystrokes) {
        let before = app.result().map(Arc::as_ptr);
        let mut text = app.settings().text_a.clone();
        text.push(character);
        let pressed = Instant::now();
        app.set_text(text);
        loop {
            frame(&mut app);
            if app.result().map(Arc::as_ptr) != before && !app.is_busy() && explained(&app) {
                break;
            }
            if let Some(error) = app.analysis_error() {
                anyhow::bail!("{error}");
            }
            anyhow::ensure!(pressed.elapsed() < PATIENCE, "no result after {PATIENCE:?}");
            // The real app sleeps until the worker's wake-up; this polls finely instead.
            std::thread::sleep(Duration::from_micros(200));
        }
        times.push(pressed.elapsed().as_secs_f64() * 1e3);
    }
    Ok(times)
}
