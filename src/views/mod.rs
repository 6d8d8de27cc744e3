//! The views, each drawn once. A view is one value, a [`Figure`]: which view and its parameters
//! (`Heatmap { layer, head, kind, .. }`). It turns [`Inputs`] (the run and what was computed
//! from it) into a [`Scene`] on a [`Canvas`]; the app paints that scene in its tab and export
//! writes the same scene under a caption. The tab bar, `--view`, exports, the remembered
//! settings and the tests all iterate one registry, [`View`].
//!
//! A view is a file here (its parameters, its [`Draw`]: what it computes from the run before
//! drawing and how it draws, and behind the `gui` feature its tab) and a line in the `views!`
//! list below. The app computes what a view computes off the UI thread without knowing the
//! view; export and the tests compute it before drawing.

pub mod attribution;
pub mod compare;
pub mod embeddings;
pub mod generate;
pub mod head_stats;
pub mod heatmap;
pub mod lens;
pub mod lines;
pub mod logit_attribution;
pub mod overview;
pub mod patching;
pub mod predictions;
pub mod projection;
pub mod query_key;
pub mod train;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::analysis::projection::Projection;
use crate::analysis::stats::HeadStats;
use crate::model::attribution::Attribution;
use crate::model::logit_attribution::LogitAttribution;
use crate::model::patching::Patching;
use crate::model::{Analysis, EmbeddingBreakdown, HeadKind, LensPosition};
use crate::render::matrix::MatrixZoom;
use crate::render::scene::{Hit, Rect, Scene};

/// What views draw from: the run (pieces, or words when the view shows words) and what was
/// computed from it, by the app off the UI thread or by export before drawing. A view that needs
/// a value it was not given says so.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The model's name, for titles.
    pub model: &'a str,
    /// The run as the view shows it.
    pub analysis: &'a Analysis,
    /// The map a heatmap or the lines draw, when it is computed apart: rollout or flow (`None`
    /// for attention and norms, which views read from the analysis, unless the app keeps them).
    pub map: Option<&'a [f32]>,
    /// The logit lens at every position it read.
    pub lens: Option<&'a [LensPosition]>,
    /// The input embeddings taken apart.
    pub embeddings: Option<&'a EmbeddingBreakdown>,
    /// The hidden states' PCA.
    pub projection: Option<&'a Projection>,
    /// Every head's statistics, of the text or of a corpus.
    pub head_stats: Option<&'a [Vec<HeadStats>]>,
    /// What the statistics are of, when not of the text (a corpus's name and size).
    pub head_stats_of: Option<&'a str>,
    /// The checkpoint's prediction heads, in order.
    pub predicting: &'a [HeadKind],
    /// The model's mask token.
    pub mask: Option<&'a str>,
    /// The same input with every head on, when heads were switched off.
    pub intact: Option<&'a Analysis>,
    /// A second model's name and run of the same text.
    pub comparison: Option<(&'a str, &'a Analysis)>,
    /// The divergence of every layer of the first model from the second's aligned layer.
    pub divergence: Option<&'a [f32]>,
    /// The target logit attributed to the input tokens.
    pub attribution: Option<&'a Attribution>,
    /// Activation patching from a corrupted text.
    pub patching: Option<&'a Patching>,
    /// A next-token logit taken apart by layer and head.
    pub logit_attribution: Option<&'a LogitAttribution>,
    /// A generation and the distribution of its next step.
    pub generation: Option<&'a crate::worker::generation::GenerationState>,
    /// A fine-tuning run's steps and epochs.
    pub training: Option<&'a crate::model::finetune::TrainingProgress>,
}

impl<'a> Inputs<'a> {
    /// Inputs holding only the run.
    pub fn of(model: &'a str, analysis: &'a Analysis) -> Self {
        Self {
            model,
            analysis,
            map: None,
            lens: None,
            embeddings: None,
            projection: None,
            head_stats: None,
            head_stats_of: None,
            predicting: &[],
            mask: None,
            intact: None,
            comparison: None,
            divergence: None,
            attribution: None,
            patching: None,
            logit_attribution: None,
            generation: None,
            training: None,
        }
    }
}

/// What a figure draws that is computed from the run apart from drawing: the app computes it
/// off the UI thread (and keeps it), export and tests before drawing ([`Computed::of`]). Each
/// value is `None` until ready, or when the figure does not need it.
#[derive(Debug, Default, Clone)]
pub struct Computed {
    /// The map a heatmap or the lines draw: the heatmap's own map, or rollout or flow.
    pub map: Option<Arc<Vec<f32>>>,
    /// The hidden states' PCA, or why it failed.
    pub projection: Option<Result<Arc<Projection>, String>>,
    /// Every head's statistics of the text.
    pub head_stats: Option<Arc<Vec<Vec<HeadStats>>>>,
    /// The two models' divergence per layer (when they read the text as the same tokens).
    pub divergence: Option<Vec<f32>>,
}

/// The runs a view computes from: the model's run as pieces, the same read as words when the
/// view shows words, and the second model's run.
#[derive(Clone, Copy)]
pub struct Runs<'a> {
    /// The run, in subword pieces.
    pub pieces: &'a Analysis,
    /// The words and the run merged to them, when the view shows words.
    pub words: Option<(&'a crate::analysis::words::Words, &'a Analysis)>,
    /// The second model's run of the same text.
    pub other: Option<&'a Analysis>,
}

impl Runs<'_> {
    /// The run as the view shows it: its words, or its pieces.
    pub fn shown(&self) -> &Analysis {
        self.words.map_or(self.pieces, |(_, merged)| merged)
    }
}

impl Computed {
    /// Everything `figure` needs of the run `pieces`, computed now: read as `words` (the words
    /// and the run merged to them) when given; `other` is the second model's run.
    pub fn of(
        figure: &Figure,
        pieces: &Analysis,
        words: Option<(&crate::analysis::words::Words, &Analysis)>,
        other: Option<&Analysis>,
    ) -> Self {
        figure.compute(&Runs {
            pieces,
            words,
            other,
        })
    }

    /// The inputs of a figure of `shown` by `model`: what was computed, and the model's data.
    pub fn inputs<'a>(
        &'a self,
        model: &'a str,
        shown: &'a Analysis,
        data: &ModelData<'a>,
    ) -> Inputs<'a> {
        Inputs {
            map: self.map.as_deref().map(Vec::as_slice),
            lens: data.lens,
            embeddings: data.embeddings,
            projection: match &self.projection {
                Some(Ok(projection)) => Some(projection),
                _ => None,
            },
            head_stats: self.head_stats.as_deref().map(Vec::as_slice),
            predicting: data.predicting,
            mask: data.mask,
            intact: data.intact,
            comparison: data.comparison,
            divergence: self.divergence.as_deref(),
            attribution: data.attribution,
            patching: data.patching,
            logit_attribution: data.logit_attribution,
            generation: data.generation,
            training: data.training,
            ..Inputs::of(model, shown)
        }
    }
}

/// What figures draw from that only a loaded model gives (the logit lens, the embeddings, which
/// heads it predicts with), or that comes from elsewhere (the intact run of an ablation, a
/// second model for Compare).
#[derive(Clone, Copy, Default)]
pub struct ModelData<'a> {
    /// The logit lens of the run.
    pub lens: Option<&'a [LensPosition]>,
    /// The run's input embeddings, taken apart.
    pub embeddings: Option<&'a EmbeddingBreakdown>,
    /// The checkpoint's prediction heads, in order (else those the run has output of).
    pub predicting: &'a [HeadKind],
    /// The model's mask token.
    pub mask: Option<&'a str>,
    /// The same input with every head on, when heads were switched off.
    pub intact: Option<&'a Analysis>,
    /// A second model's name and run of the same text.
    pub comparison: Option<(&'a str, &'a Analysis)>,
    /// The newest attribution of the text.
    pub attribution: Option<&'a Attribution>,
    /// The newest activation patching of the text.
    pub patching: Option<&'a Patching>,
    /// The newest logit attribution of the text.
    pub logit_attribution: Option<&'a LogitAttribution>,
    /// The generation of the Generate tab, or the text's next-token distribution.
    pub generation: Option<&'a crate::worker::generation::GenerationState>,
    /// The Train tab's fine-tuning run.
    pub training: Option<&'a crate::model::finetune::TrainingProgress>,
}

/// Where a view is drawn and what the window marks on it: the selection, the pointer's hit and
/// the zoom. A figure is drawn on a plain canvas (nothing selected, no pointer, no zoom).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Canvas<'s> {
    /// Width in points.
    pub width: f32,
    /// Height in points.
    pub height: f32,
    /// Selected tokens.
    pub selection: &'s [usize],
    /// What the pointer is over.
    pub hovered: Option<Hit>,
    /// How far a zoomable part is zoomed.
    pub zoom: MatrixZoom,
    /// The head the heatmap shows, outlined in grids of heads.
    pub open: Option<(usize, usize)>,
}

impl Canvas<'_> {
    /// The matrix cell `(row, column)` the pointer is over, if it is over one.
    pub fn hovered_cell(&self) -> Option<(usize, usize)> {
        match self.hovered {
            Some(Hit::Cell { row, column }) => Some((row, column)),
            _ => None,
        }
    }

    /// A plain canvas of this size: what figures are drawn on.
    pub fn plain(width: f32, height: f32) -> Canvas<'static> {
        Canvas {
            width,
            height,
            selection: &[],
            hovered: None,
            zoom: MatrixZoom::default(),
            open: None,
        }
    }
}

/// A part of a drawn view that the wheel zooms and dragging pans (a matrix, a plot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zoomable {
    /// Where it is in the scene.
    pub rect: Rect,
    /// The largest zoom worth having.
    pub max_zoom: f32,
}

impl Zoomable {
    /// A labelled matrix laid out as `geometry`: its cells zoom until one fills the view.
    pub fn of_matrix(geometry: &crate::render::matrix::MatrixGeometry) -> Self {
        Self {
            rect: geometry.viewport,
            max_zoom: crate::render::matrix::MatrixGeometry::max_zoom(
                geometry.viewport.width(),
                geometry.tokens,
            ),
        }
    }
}

/// A drawn view: its scene and its zoomable parts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Drawn<'a> {
    /// The drawing.
    pub scene: Scene<'a>,
    /// Its zoomable parts.
    pub zoomable: Vec<Zoomable>,
}

impl<'a> From<Scene<'a>> for Drawn<'a> {
    fn from(scene: Scene<'a>) -> Self {
        Self {
            scene,
            zoomable: Vec::new(),
        }
    }
}

/// What a view is and how it draws.
pub trait Draw {
    /// The tab's label.
    const LABEL: &'static str;
    /// What the tab shows, for its tooltip.
    const DESCRIPTION: &'static str;
    /// Whether the view can show words instead of subword pieces.
    const READS_WORDS: bool;

    /// What a figure of it is called after the model's name, e.g. `layer 5 · head 3`.
    fn title(&self, inputs: &Inputs<'_>) -> String;

    /// The size a figure gives it.
    fn natural_size(&self, inputs: &Inputs<'_>) -> (f32, f32);

    /// Whether the view needs values computed from the run before it draws.
    const COMPUTES: bool = false;

    /// What the view needs computed from `runs` before it draws (nothing by default). Export
    /// and tests call it before drawing; the app calls it off the UI thread, keeping the values
    /// several figures share (rollout for every layer, the projection, head statistics, the
    /// divergence) in caches of its own.
    fn compute(&self, _runs: &Runs<'_>) -> Computed {
        Computed::default()
    }

    /// What [`Draw::compute`]'s values depend on besides the runs, so that the app computes
    /// them again only when it changes: by default every parameter.
    fn compute_key(&self) -> String
    where
        Self: std::fmt::Debug,
    {
        format!("{self:?}")
    }

    /// Draws it; fails with one line when its inputs do not allow it (a view of one head asked
    /// for a layer the model lacks, a lens without a language-model head).
    fn draw<'a>(&self, inputs: &Inputs<'a>, canvas: &Canvas<'_>) -> Result<Drawn<'a>, String>;
}

/// Makes [`View`] (which view) and [`Figure`] (which view, with its parameters) from the list
/// of views: each line names a variant (its `--view` name, in kebab case) and the file (module)
/// and parameter type that implement it.
macro_rules! views {
    ($($(#[$attribute:meta])* $variant:ident => $module:ident :: $params:ident / $tab:ident,)+) => {
        /// The views, in tab order.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize,
            clap::ValueEnum,
        )]
        pub enum View {
            $($(#[$attribute])* $variant,)+
        }

        /// A view with its parameters: what a tab shows and an export draws.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Figure {
            $(
                #[doc = concat!("The ", stringify!($variant), " view.")]
                $variant($module::$params),
            )+
        }

        impl View {
            /// Every view, in tab order.
            pub const ALL: &'static [View] = &[$(View::$variant,)+];

            /// The files (modules) of the views, as registered.
            #[cfg(test)]
            const MODULES: &'static [&'static str] = &[$(stringify!($module),)+];

            /// The tab's label.
            pub fn label(self) -> &'static str {
                match self {
                    $(View::$variant => <$module::$params as Draw>::LABEL,)+
                }
            }

            /// What the tab shows, for its tooltip.
            pub fn description(self) -> &'static str {
                match self {
                    $(View::$variant => <$module::$params as Draw>::DESCRIPTION,)+
                }
            }

            /// Whether the view can show words instead of subword pieces.
            pub fn reads_words(self) -> bool {
                match self {
                    $(View::$variant => <$module::$params as Draw>::READS_WORDS,)+
                }
            }
        }

        /// Every tab's own state, one field per view (remembered with the settings).
        #[cfg(feature = "gui")]
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Tabs {
            $(
                #[doc = concat!("The ", stringify!($variant), " tab.")]
                pub $module: $module::$tab,
            )+
        }

        #[cfg(feature = "gui")]
        impl Tabs {
            /// The tab of `view`.
            pub fn tab(&self, view: View) -> &dyn crate::ui::tab::Tab {
                match view {
                    $(View::$variant => &self.$module,)+
                }
            }

            /// The tab of `view`, to draw it.
            pub fn tab_mut(&mut self, view: View) -> &mut dyn crate::ui::tab::Tab {
                match view {
                    $(View::$variant => &mut self.$module,)+
                }
            }
        }

        impl Figure {
            /// Which view it is.
            pub fn view(&self) -> View {
                match self {
                    $(Figure::$variant(_) => View::$variant,)+
                }
            }

            /// What a figure of it is called after the model's name.
            pub fn title(&self, inputs: &Inputs<'_>) -> String {
                match self {
                    $(Figure::$variant(params) => params.title(inputs),)+
                }
            }

            /// The size a figure gives it.
            pub fn natural_size(&self, inputs: &Inputs<'_>) -> (f32, f32) {
                match self {
                    $(Figure::$variant(params) => params.natural_size(inputs),)+
                }
            }

            /// Whether it needs values computed from the run before it draws.
            pub fn computes(&self) -> bool {
                match self {
                    $(Figure::$variant(_) => <$module::$params as Draw>::COMPUTES,)+
                }
            }

            /// What its computed values depend on besides the runs (the view, and those of
            /// its parameters they depend on).
            pub fn compute_key(&self) -> (View, String) {
                match self {
                    $(Figure::$variant(params) => (View::$variant, params.compute_key()),)+
                }
            }

            /// What it needs computed from `runs` before it draws.
            pub fn compute(&self, runs: &Runs<'_>) -> Computed {
                match self {
                    $(Figure::$variant(params) => params.compute(runs),)+
                }
            }

            /// Draws it on `canvas`.
            pub fn draw<'a>(
                &self,
                inputs: &Inputs<'a>,
                canvas: &Canvas<'_>,
            ) -> Result<Drawn<'a>, String> {
                match self {
                    $(Figure::$variant(params) => params.draw(inputs, canvas),)+
                }
            }
        }
    };
}

// The registry: a view is a file in this folder and a line here.
views! {
    /// One head's attention matrix.
    #[default]
    Heatmap => heatmap::Heatmap / HeatmapTab,
    /// BertViz-style token-to-token lines.
    Lines => lines::Lines / LinesTab,
    /// Every layer × head as thumbnails.
    Overview => overview::Overview / OverviewTab,
    /// Head statistics (Clark et al. 2019): a coloured grid and a sortable table.
    Heads => head_stats::HeadStatsView / HeadsTab,
    /// Hidden states projected to 2-D.
    Projection => projection::ProjectionView / ProjectionTab,
    /// What the model's heads predict (masked LM, next token, labels, answers, entities).
    #[serde(alias = "Mlm")]
    #[value(alias = "mlm")]
    Predictions => predictions::PredictionsView / PredictionsTab,
    /// The logit lens: the prediction head read after every layer.
    Lens => lens::LensView / LensTab,
    /// The input embeddings taken apart: word, position, segment, their sum, the LayerNorm.
    Embeddings => embeddings::EmbeddingsView / EmbeddingsTab,
    /// BertViz's neuron view: query and key vectors behind one row of attention.
    #[value(name = "query-key")]
    QueryKey => query_key::QueryKeyView / QueryKeyTab,
    /// Two models side by side (once a second model is loaded).
    Compare => compare::CompareView / CompareTab,
    /// Which input tokens raised or lowered one logit.
    Attribution => attribution::AttributionView / AttributionTab,
    /// Activation patching from a corrupted text.
    Patching => patching::PatchingView / PatchingTab,
    /// A next-token logit taken apart by layer and head (causal models).
    #[value(name = "logit-attribution")]
    LogitAttribution => logit_attribution::LogitAttributionView / LogitAttributionTab,
    /// A causal model writing step by step, and each step's distribution (causal models).
    Generate => generate::GenerateView / GenerateTab,
    /// Fine-tuning the model as a classifier on a labelled file.
    Train => train::TrainView / TrainTab,
}

/// Checks a layer and head against the model's shape, with a message naming the valid range.
pub fn check_layer_head(
    analysis: &Analysis,
    layer: usize,
    head: crate::analysis::HeadChoice,
) -> Result<(), String> {
    let (layers, heads) = (analysis.layers(), analysis.heads());
    if layer >= layers {
        return Err(format!(
            "layer {layer} is out of range; this model has {layers} layers (0 to {})",
            layers.saturating_sub(1)
        ));
    }
    match head {
        crate::analysis::HeadChoice::Head(head) if head >= heads => Err(format!(
            "head {head} is out of range; this model has {heads} heads per layer (0 to {})",
            heads.saturating_sub(1)
        )),
        _ => Ok(()),
    }
}

/// Checks a token index against the input's length.
pub fn check_token(analysis: &Analysis, token: usize, what: &str) -> Result<(), String> {
    if token < analysis.len() {
        Ok(())
    } else {
        Err(format!(
            "{what} {token} is out of range; the input has {} tokens (0 to {})",
            analysis.len(),
            analysis.len().saturating_sub(1)
        ))
    }
}

impl View {
    /// The name `--view` takes.
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default()
    }
}

impl Figure {
    /// The view's figure: its scene on a plain canvas of `size` (width, height; default its
    /// natural size), under a caption naming the model, what is shown and the text.
    pub fn figure<'a>(
        &self,
        inputs: &Inputs<'a>,
        text_a: &str,
        text_b: Option<&str>,
        size: Option<(f32, f32)>,
    ) -> Result<Scene<'a>, String> {
        let (width, height) = size.unwrap_or_else(|| self.natural_size(inputs));
        let drawn = self.draw(inputs, &Canvas::plain(width, height))?;
        let title = match inputs.comparison {
            Some((other, _)) if self.view() == View::Compare => {
                format!("{} vs {other}", inputs.model)
            }
            _ => inputs.model.to_owned(),
        };
        let caption =
            crate::render::parts::Caption::new(&title, &self.title(inputs), text_a, text_b);
        Ok(caption.frame(drawn.scene))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// A view's file that the `views!` list leaves out is not even compiled: this catches it.
    #[test]
    fn every_file_here_is_a_registered_view() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/views");
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
            "each file in src/views needs its line in views!"
        );
    }

    /// `View::ALL` is what the tab bar, the shortcuts, the accessibility test and the tab
    /// snapshots iterate; clap's `--view` list is the same enum. Each view has a label and a
    /// tooltip of its own.
    #[test]
    fn every_view_is_registered_once_with_a_label() {
        for view in View::value_variants() {
            let registered = View::ALL.iter().filter(|&&v| v == *view).count();
            assert_eq!(registered, 1, "{view:?} is in View::ALL {registered} times");
            assert!(!view.label().is_empty() && !view.description().is_empty());
        }
        assert_eq!(View::ALL.len(), View::value_variants().len());
        let mut labels: Vec<_> = View::ALL.iter().map(|view| view.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), View::ALL.len(), "one label per view");
    }
}
