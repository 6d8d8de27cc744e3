//! The Generate tab's logic (no drawing): its requests to the worker, *Play*'s next step, and
//! the generated text going into the text box, so that every tab shows it.

use super::BertscopeApp;
use crate::views::generate::GenerateAction;
use crate::worker::generation::{GenerateRequest, GenerationState};

impl BertscopeApp {
    /// Asks the worker for a step (or only the next distribution), keeping `keep` tokens.
    fn send_generate(&mut self, step: bool, keep: usize) {
        let tab = &self.settings.tabs.generate;
        let state = &self.primary.generation;
        let request = GenerateRequest {
            prompt: state
                .prompt
                .clone()
                .unwrap_or_else(|| self.settings.text_a.clone()),
            keep,
            step,
            decoding: tab.decoding(),
            seed: tab.seed,
        };
        // The first step starts from the text as it is now (an earlier failed first step may
        // have left an older one).
        if step && !self.primary.generation.started() {
            self.primary.generation.app_text = Some(self.settings.text_a.clone());
        }
        if !step {
            self.primary.generation.previewed = Some(request.prompt.clone());
        }
        let id = self.next_id();
        self.primary.generate(id, request);
    }

    /// Does what the Generate tab asked.
    pub(super) fn generate_action(&mut self, action: GenerateAction) {
        let state = &mut self.primary.generation;
        let idle = state.pending.is_none() && state.ended.is_none();
        match action {
            GenerateAction::Preview => {
                if !state.started()
                    && state.pending.is_none()
                    && state.previewed.as_deref() != Some(self.settings.text_a.as_str())
                {
                    self.send_generate(false, usize::MAX);
                }
            }
            GenerateAction::Step if idle => self.send_generate(true, usize::MAX),
            GenerateAction::Play if idle => {
                state.playing = true;
                state.played = 0;
                self.send_generate(true, usize::MAX);
            }
            GenerateAction::Stop => state.playing = false,
            GenerateAction::Reset => {
                if let Some(prompt) = state.prompt.take() {
                    self.settings.text_a = prompt;
                    self.text_changed();
                }
                self.primary.generation = GenerationState::default();
                self.settings.tabs.generate.selected = None;
            }
            GenerateAction::RegenerateFrom(index) if state.pending.is_none() => {
                let keep = state.prompt_ids.len() + index;
                state.ended = None;
                state.playing = false;
                self.send_generate(true, keep);
            }
            GenerateAction::Save => self.save_generation(),
            GenerateAction::Step | GenerateAction::Play | GenerateAction::RegenerateFrom(_) => {}
        }
    }

    /// Every frame: a step that came back goes into the text box (and *Play* asks for the
    /// next); a text the person changed ends the generation.
    pub(super) fn generation_logic(&mut self, generated: bool) {
        let state = &mut self.primary.generation;
        if !state.started() {
            return;
        }
        if state.app_text.as_deref() != Some(self.settings.text_a.as_str()) {
            // The person typed: the text is theirs, and the next step starts from it.
            self.primary.generation = GenerationState::default();
            self.settings.tabs.generate.selected = None;
            return;
        }
        if !generated {
            return;
        }
        if self.settings.text_a != state.text {
            self.settings.text_a.clone_from(&state.text);
            state.app_text = Some(state.text.clone());
            self.text_changed();
        }
        let state = &self.primary.generation;
        let more = state.played < self.settings.tabs.generate.max_new_tokens;
        if state.playing && more && state.ended.is_none() && state.pending.is_none() {
            self.send_generate(true, usize::MAX);
        } else {
            self.primary.generation.playing = false;
        }
    }

    /// Asks where to save the generation and writes it as `bertscope generate --out` does.
    fn save_generation(&mut self) {
        let dialog = rfd::FileDialog::new()
            .set_title("Save the generation")
            .set_file_name("generation.json")
            .add_filter("JSON", &["json"]);
        let Some(target) = dialog.save_file() else {
            self.export_note = Some(
                "Not saved. If no dialog appeared, use `bertscope generate … --out F.json`."
                    .to_owned(),
            );
            return;
        };
        self.export_note = Some(match self.save_generation_to(&target) {
            Ok(()) => format!("Saved {}", target.display()),
            Err(err) => format!("{err:#}"),
        });
    }

    /// Writes the generation to `path` as JSON (atomically): a few hundred kilobytes at most,
    /// so on the spot.
    pub fn save_generation_to(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let document = self.primary.generation.document();
        crate::export::write_atomically(path, |out| {
            serde_json::to_writer(&mut *out, &document).map_err(std::io::Error::other)?;
            std::io::Write::write_all(out, b"\n")
        })
    }
}
