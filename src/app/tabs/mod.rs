//! The tabs of the main area. Each tab is one file here, a unit struct implementing [`Tab`]
//! (its label, tooltip, figure, what it computes off the UI thread, and how it draws), and one
//! line in the `tabs!` list below, which declares its module and makes the [`View`] enum that
//! the tab bar, the number keys, `--view`, exports and the tests iterate (as egui_demo_lib lists
//! its demos).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::BertscopeApp;
use crate::export::FigureView;
use crate::model::Analysis;
use crate::ui::UiAction;
use crate::worker::AnalysisResult;

/// Makes [`View`], one variant per tab, from the list of tabs: each line names a variant (its
/// `--view` name, in kebab case) and the file (module) and unit struct that implement it.
macro_rules! tabs {
    ($($(#[$attribute:meta])* $variant:ident => $module:ident :: $tab:ident,)+) => {
        $(pub(crate) mod $module;)+

        /// The tabs of the main area, in tab order.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize,
            clap::ValueEnum,
        )]
        pub enum View {
            $($(#[$attribute])* $variant,)+
        }

        impl View {
            /// Every tab, in tab order.
            pub const ALL: &'static [View] = &[$(View::$variant,)+];

            /// The files (modules) of the tabs, as registered.
            #[cfg(test)]
            const MODULES: &'static [&'static str] = &[$(stringify!($module),)+];

            /// What the tab is and does in the app.
            pub(crate) fn tab(self) -> &'static dyn Tab {
                match self {
                    $(View::$variant => &$module::$tab,)+
                }
            }
        }
    };
}

// The registry: a tab is a file in this folder and a line here.
tabs! {
    /// One head's attention matrix.
    #[default]
    Heatmap => heatmap::Heatmap,
    /// BertViz-style token-to-token lines.
    Lines => lines::Lines,
    /// Every layer × head as thumbnails.
    Overview => overview::Overview,
    /// Head statistics (Clark et al. 2019): a coloured grid and a sortable table.
    Heads => head_stats::Heads,
    /// Hidden states projected to 2-D.
    Projection => projection::Projection,
    /// What the model's heads predict (masked LM, next token, labels, answers, entities).
    #[serde(alias = "Mlm")]
    #[value(alias = "mlm")]
    Predictions => predictions::Predictions,
    /// The logit lens: the prediction head read after every layer.
    Lens => lens::Lens,
    /// The input embeddings taken apart: word, position, segment, their sum, the LayerNorm.
    Embeddings => embeddings::Embeddings,
    /// BertViz's neuron view: query and key vectors behind one row of attention.
    #[value(name = "query-key")]
    QueryKey => query_key::QueryKey,
    /// Two models side by side (once a second model is loaded).
    Compare => compare::Compare,
}

impl View {
    /// The figure an export of this view draws.
    pub fn figure(self) -> crate::export::FigureView {
        self.tab().figure()
    }

    /// Whether the view can show words instead of subword pieces (see
    /// [`crate::export::FigureView::reads_words`]).
    pub fn reads_words(self) -> bool {
        self.figure().reads_words()
    }

    /// The tab's label.
    pub fn label(self) -> &'static str {
        self.tab().label()
    }

    /// What the tab shows, for its tooltip.
    pub fn description(self) -> &'static str {
        self.tab().description()
    }
}

/// One tab of the main area.
pub trait Tab: Sync {
    /// The tab's label.
    fn label(&self) -> &'static str;

    /// What the tab shows, for its tooltip.
    fn description(&self) -> &'static str;

    /// The figure an export of this tab draws.
    fn figure(&self) -> FigureView;

    /// Starts or collects what the tab needs computed off the UI thread (logic, every frame
    /// while the tab is open); `words` says whether it shows words.
    fn prepare(&self, _app: &mut BertscopeApp, _ctx: &egui::Context, _words: bool) {}

    /// Whether the tab still waits for such a value (screenshots and tests wait for it).
    fn pending(&self, _app: &BertscopeApp, _words: bool) -> bool {
        false
    }

    /// Draws the tab for the shown run and returns what the user asked for.
    fn show(&self, ui: &mut egui::Ui, app: &mut BertscopeApp, shown: &Shown) -> Vec<UiAction>;
}

/// The run a tab draws: the model's newest result, read as words when the tab shows words.
pub struct Shown {
    /// The newest result.
    pub result: Arc<AnalysisResult>,
    /// The result read as words, when the tab shows words.
    pub word_level: Option<Arc<Analysis>>,
}

impl Shown {
    /// What the tab draws: the words, or the pieces.
    pub fn analysis(&self) -> &Analysis {
        self.word_level.as_deref().unwrap_or(&self.result.analysis)
    }

    /// Whether the tab shows words.
    pub fn words(&self) -> bool {
        self.word_level.is_some()
    }
}

/// A spinner with a line, for a value being computed.
fn working(ui: &mut egui::Ui, what: &str) -> Vec<UiAction> {
    ui.horizontal(|ui| {
        ui.spinner();
        ui.label(what);
    });
    Vec::new()
}

/// The one map of an attention kind that combines heads (rollout or flow, see
/// [`crate::ui::AttentionKind::is_combined`]), as the heatmap and the lines draw it.
enum Combined {
    /// Rollout through every layer; the map of one layer is drawn.
    Rollout(Arc<Vec<Vec<f32>>>, usize),
    /// Flow into the selected tokens.
    Flow(Arc<Vec<f32>>),
}

impl Combined {
    /// The open layer's map, once computed; `None` for raw attention and norms, or while it
    /// is being computed.
    fn of(app: &BertscopeApp, words: bool) -> Option<Self> {
        use crate::ui::AttentionKind;
        let view = &app.settings.view;
        match view.attention_kind {
            AttentionKind::Rollout => Some(Self::Rollout(app.primary.rollout(words)?, view.layer)),
            AttentionKind::Flow => Some(Self::Flow(app.primary.flow(
                words,
                view.layer,
                view.flow_targets(),
            )?)),
            _ => None,
        }
    }

    fn values(&self) -> Option<&[f32]> {
        match self {
            Self::Rollout(layers, layer) => layers.get(*layer).map(Vec::as_slice),
            Self::Flow(values) => Some(values),
        }
    }

    /// Starts computing the map the open kind needs (logic).
    fn prepare(app: &mut BertscopeApp, words: bool) {
        use crate::ui::AttentionKind;
        let view = &app.settings.view;
        match view.attention_kind {
            AttentionKind::Rollout => app.primary.update_rollout(words),
            AttentionKind::Flow => {
                let (layer, targets) = (view.layer, view.flow_targets());
                app.primary.update_flow(words, layer, targets);
            }
            _ => {}
        }
    }

    /// Whether the open kind's map is still being computed.
    fn pending(app: &BertscopeApp, words: bool) -> bool {
        let view = &app.settings.view;
        view.attention_kind.is_combined()
            && app.primary.result.is_some()
            && Self::of(app, words).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::View;

    /// A tab's file that the `tabs!` list leaves out is not even compiled: this catches it.
    #[test]
    fn every_file_here_is_a_registered_tab() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/app/tabs");
        let mut files: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .filter_map(|entry| {
                let path = entry.unwrap().path();
                let stem = path.file_stem()?.to_str()?.to_owned();
                (path.extension()? == "rs" && stem != "mod").then_some(stem)
            })
            .collect();
        files.sort();
        let mut registered: Vec<String> = View::MODULES.iter().map(|m| (*m).to_owned()).collect();
        registered.sort();
        assert_eq!(
            files, registered,
            "each file in src/app/tabs needs its line in tabs!"
        );
    }
}
