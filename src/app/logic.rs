//! Everything the app does that is not drawing: worker responses, debounced re-runs, the actions
//! views return, dropped folders and `--screenshot`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BertscopeApp, ModelStatus};
use crate::analysis::HeadChoice;
use crate::model::{AnalysisRequest, ModelSource};
use crate::ui::{UiAction, View};
use crate::worker::{WorkerRequest, WorkerResponse};

/// Typing pauses this long before the model runs on the new text.
pub const DEBOUNCE: Duration = Duration::from_millis(250);
/// Draining responses stops after this long so a burst never stalls a frame.
const DRAIN_BUDGET: Duration = Duration::from_millis(10);
/// `--screenshot` gives up after this long without a result.
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(300);

impl BertscopeApp {
    fn next_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    fn send(&mut self, request: WorkerRequest) {
        let delivered = self
            .worker
            .as_ref()
            .is_some_and(|worker| worker.send(request));
        if !delivered {
            self.model = ModelStatus::Failed {
                name: self.settings.model.clone(),
                message: "the inference thread stopped; restart bertscope".to_owned(),
            };
        }
    }

    /// Asks the worker for a model; the text runs again once it is loaded.
    pub fn load_model(&mut self, name: String) {
        let name = name.trim().to_owned();
        self.picker_note = None;
        let source = match ModelSource::parse(&name) {
            Ok(source) => source,
            Err(err) => {
                self.model = ModelStatus::Failed {
                    name,
                    message: err.to_string(),
                };
                return;
            }
        };
        let id = self.next_id();
        self.model_field = name.clone();
        self.model = ModelStatus::Loading {
            id,
            name,
            progress: None,
        };
        let device = self.device;
        self.send(WorkerRequest::Load { id, source, device });
    }

    /// Marks the text as changed: it runs once typing pauses for [`DEBOUNCE`].
    pub fn text_changed(&mut self) {
        self.text_changed_at = Some(Instant::now());
    }

    fn request_analysis(&mut self) {
        self.text_changed_at = None;
        let request = AnalysisRequest::new(self.settings.text_a.clone())
            .with_text_b(self.settings.use_pair.then(|| self.settings.text_b.clone()));
        let id = self.next_id();
        self.latest_analysis_id = Some(id);
        self.send(WorkerRequest::Analyze { id, request });
    }

    /// One logic step: drain the worker, run debounced text, handle dropped folders.
    pub fn update_logic(&mut self, ctx: &egui::Context) {
        let started = Instant::now();
        while started.elapsed() < DRAIN_BUDGET {
            let Some(response) = self.worker.as_ref().and_then(|worker| worker.try_recv()) else {
                break;
            };
            self.handle_response(response);
        }
        if started.elapsed() >= DRAIN_BUDGET {
            ctx.request_repaint();
        }

        if let Some(changed) = self.text_changed_at {
            if matches!(self.model, ModelStatus::Ready(_)) {
                let waited = changed.elapsed();
                if waited >= DEBOUNCE {
                    self.request_analysis();
                } else {
                    ctx.request_repaint_after(DEBOUNCE - waited);
                }
            }
        }

        let dropped = ctx.input(|input| {
            input
                .raw
                .dropped_files
                .iter()
                .map(|file| file.path().to_owned())
                .next()
        });
        if let Some(path) = dropped {
            let folder = if path.is_dir() {
                path
            } else {
                path.parent().map(ToOwned::to_owned).unwrap_or(path)
            };
            self.load_model(folder.display().to_string());
        }

        self.screenshot_logic(ctx);
    }

    fn handle_response(&mut self, response: WorkerResponse) {
        match response {
            WorkerResponse::Downloading { id, progress } => {
                if let ModelStatus::Loading {
                    id: loading,
                    progress: shown,
                    ..
                } = &mut self.model
                {
                    if *loading == id {
                        *shown = Some(progress);
                    }
                }
            }
            WorkerResponse::Loaded { id, info } => {
                if let ModelStatus::Loading {
                    id: loading, name, ..
                } = &self.model
                {
                    if *loading == id {
                        self.settings.model = name.clone();
                        self.model = ModelStatus::Ready(info);
                        // The old result belongs to the old model.
                        self.result = None;
                        self.request_analysis();
                    }
                }
            }
            WorkerResponse::LoadFailed { id, message } => {
                if let ModelStatus::Loading {
                    id: loading, name, ..
                } = &self.model
                {
                    if *loading == id {
                        self.model = ModelStatus::Failed {
                            name: name.clone(),
                            message,
                        };
                        self.result = None;
                    }
                }
            }
            WorkerResponse::Analyzed { id, result } => {
                if Some(id) == self.latest_analysis_id {
                    self.answered_analysis_id = Some(id);
                    self.analysis_error = None;
                    let analysis = &result.analysis;
                    self.settings.view.clamp_to(
                        analysis.layers(),
                        analysis.heads(),
                        analysis.len(),
                    );
                    self.textures.reset(id);
                    self.result = Some(result);
                }
            }
            WorkerResponse::AnalysisFailed { id, message } => {
                if Some(id) == self.latest_analysis_id {
                    self.answered_analysis_id = Some(id);
                    self.analysis_error = Some(message);
                }
            }
        }
    }

    /// Applies what the views asked for.
    pub fn apply(&mut self, actions: Vec<UiAction>) {
        for action in actions {
            match action {
                UiAction::SelectToken(token) => self.settings.view.selected_token = token,
                UiAction::OpenInHeatmap { layer, head } => {
                    let view = &mut self.settings.view;
                    view.layer = layer;
                    view.head = HeadChoice::Head(head);
                    view.view = View::Heatmap;
                }
                UiAction::MaskToken(index) => self.mask_token(index),
                UiAction::Export => self.export_view(),
            }
        }
    }

    /// Replaces a token's characters in the input with `[MASK]` and runs at once.
    fn mask_token(&mut self, index: usize) {
        let Some(result) = &self.result else { return };
        let analysis = &result.analysis;
        let (Some(Some((start, end))), Some(Some(sentence))) = (
            analysis.char_offsets.get(index),
            analysis.sentence.get(index),
        ) else {
            return;
        };
        let text = if *sentence == 0 {
            &mut self.settings.text_a
        } else {
            &mut self.settings.text_b
        };
        *text = replace_chars(text, *start, *end, "[MASK]");
        self.settings.view.selected_token = None;
        if matches!(self.model, ModelStatus::Ready(_)) {
            self.request_analysis();
        }
    }

    /// Asks where to save the open view (native dialog) and writes it.
    fn export_view(&mut self) {
        let Some(figure) = self.settings.view.view.figure() else {
            return;
        };
        let Some(result) = &self.result else { return };
        let view = &self.settings.view;
        let name = format!(
            "bertscope-{}-layer{}.png",
            view.view.label().to_lowercase(),
            view.layer
        );
        let dialog = rfd::FileDialog::new()
            .set_title("Export")
            .set_file_name(name)
            .add_filter("PNG figure", &["png"])
            .add_filter("SVG figure", &["svg"])
            .add_filter("All attention maps (JSON)", &["json"])
            .add_filter("This head (CSV)", &["csv"])
            .add_filter("All attention maps (NumPy .npy)", &["npy"]);
        let Some(path) = dialog.save_file() else {
            self.export_note = Some(
                "Not saved. If no dialog appeared, use `bertscope export` from a terminal."
                    .to_owned(),
            );
            return;
        };
        self.export_note = Some(match self.export_to(&path, figure, result) {
            Ok(()) => format!("Saved {}", path.display()),
            Err(err) => format!("{err:#}"),
        });
    }

    /// Writes the open view (or data) to `path`, as `Export…` does after the dialog.
    pub fn export_to(
        &self,
        path: &std::path::Path,
        figure: crate::export::FigureView,
        result: &crate::worker::AnalysisResult,
    ) -> anyhow::Result<()> {
        let view = &self.settings.view;
        let options = crate::export::ExportOptions {
            view: figure,
            layer: view.layer,
            head: view.head,
            scale: view.export_scale,
            hidden_heads: view.hidden_heads.clone(),
            line_threshold: view.line_threshold,
            fixed_scale: view.fixed_scale,
        };
        let model = match &self.model {
            ModelStatus::Ready(info) => info.name.clone(),
            _ => self.settings.model.clone(),
        };
        crate::export::export(
            path,
            &model,
            &result.analysis,
            &result.request.text_a,
            result.request.text_b.as_deref(),
            &options,
        )
    }

    /// The open file dialog, run from the UI (it blocks while open, as native dialogs do).
    pub fn pick_folder(&mut self) {
        match rfd::FileDialog::new()
            .set_title("Open a model folder")
            .pick_folder()
        {
            Some(folder) => self.load_model(folder.display().to_string()),
            // Without a desktop portal or zenity, rfd returns at once with nothing.
            None => {
                self.picker_note = Some("No folder chosen. If no dialog appeared, type the folder's path or drop the folder on the window.".to_owned());
            }
        }
    }

    fn screenshot_logic(&mut self, ctx: &egui::Context) {
        let Some(job) = &mut self.screenshot else {
            return;
        };
        if job.requested {
            return;
        }
        let failure = match &self.model {
            ModelStatus::Failed { message, .. } => Some(message.clone()),
            _ if job.started.elapsed() > SCREENSHOT_TIMEOUT => {
                Some("no result to draw within 5 minutes".to_owned())
            }
            _ => self.analysis_error.clone(),
        };
        if let Some(message) = failure {
            if let Ok(mut outcome) = job.outcome.lock() {
                *outcome = Some(Err(format!("cannot take the screenshot: {message}")));
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        let ready = self.result.is_some()
            && self.text_changed_at.is_none()
            && self.latest_analysis_id == self.answered_analysis_id;
        if !ready {
            job.frames_with_result = 0;
            return;
        }
        // Two frames after the result: textures are uploaded and layout has settled.
        if job.frames_with_result < 3 {
            ctx.request_repaint();
            return;
        }
        job.requested = true;
        let path = job.path.clone();
        let outcome = Arc::clone(&job.outcome);
        let closer = ctx.clone();
        ctx.request_screenshot(move |image| {
            let saved = save_png(&path, &image).map(|()| path.clone());
            if let Ok(mut slot) = outcome.lock() {
                *slot = Some(saved.map_err(|err| format!("{err:#}")));
            }
            closer.send_viewport_cmd(egui::ViewportCommand::Close);
        });
    }

    /// Bookkeeping after a frame was drawn.
    pub fn after_frame(&mut self, ctx: &egui::Context) {
        if let Some(job) = &mut self.screenshot {
            if self.result.is_some() {
                job.frames_with_result += 1;
                ctx.request_repaint();
            }
        }
    }
}

/// Replaces characters `[start, end)` (counted in chars, not bytes) of `text`.
pub fn replace_chars(text: &str, start: usize, end: usize, replacement: &str) -> String {
    let before: String = text.chars().take(start).collect();
    let after: String = text.chars().skip(end).collect();
    format!("{before}{replacement}{after}")
}

fn save_png(path: &std::path::Path, image: &egui::ColorImage) -> anyhow::Result<()> {
    let [width, height] = image.size;
    let pixels: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|pixel| pixel.to_srgba_unmultiplied())
        .collect();
    let buffer = image::RgbaImage::from_raw(width as u32, height as u32, pixels)
        .ok_or_else(|| anyhow::anyhow!("the screenshot had an unexpected size"))?;
    crate::export::write_atomically(path, |writer| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        buffer
            .write_to(&mut bytes, image::ImageFormat::Png)
            .map_err(std::io::Error::other)?;
        writer.write_all(bytes.get_ref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_counts_characters_not_bytes() {
        assert_eq!(replace_chars("naïve café", 6, 10, "[MASK]"), "naïve [MASK]");
        assert_eq!(
            replace_chars("東京 is big", 0, 1, "[MASK]"),
            "[MASK]京 is big"
        );
    }
}
