//! The Heads tab: Clark et al.'s statistics of every head, of the text or of a corpus file.

use super::{BertscopeApp, Shown, Tab};
use crate::export::FigureView;
use crate::ui::head_stats::HeadSource;
use crate::ui::UiAction;
use crate::worker::CorpusRun;

/// The Heads tab.
pub(crate) struct Heads;

impl Tab for Heads {
    fn label(&self) -> &'static str {
        "Heads"
    }

    fn description(&self) -> &'static str {
        "What each head attends to, by Clark et al.'s statistics: first token, separators, punctuation, itself, neighbours, entropy; of the text or of a corpus file"
    }

    fn figure(&self) -> FigureView {
        FigureView::Heads
    }

    fn prepare(&self, app: &mut BertscopeApp, _ctx: &egui::Context, words: bool) {
        app.primary.update_head_stats(words);
    }

    fn pending(&self, app: &BertscopeApp, words: bool) -> bool {
        match app.settings.view.head_source {
            HeadSource::Corpus => {
                app.launch_corpus.is_some()
                    || matches!(app.primary.corpus, Some(CorpusRun::Running { .. }))
            }
            HeadSource::Text => {
                app.primary.result.is_some() && app.primary.head_stats(words).is_none()
            }
        }
    }

    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction> {
        let text_stats = app.primary.head_stats(shown.words());
        crate::ui::head_stats::heads_view(
            ui,
            text_stats.as_deref().map(Vec::as_slice),
            app.primary.corpus.as_ref(),
            &mut app.settings.view,
        )
    }
}
