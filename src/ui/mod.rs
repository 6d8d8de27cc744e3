//! What the app's tabs share: the scene painter, the [`tab::Tab`] trait and the context a tab
//! draws from, shared widgets and token chips, the settings tabs share ([`ViewState`]) and the
//! [`UiAction`]s a tab asks the app for. Each tab lives with its view in `crate::views`. No tab
//! touches the worker, files or dialogs, so every tab can be driven headless in tests.

pub mod scene;
pub mod tab;
pub mod tokens;
pub mod widgets;

use serde::{Deserialize, Serialize};

use crate::analysis::HeadChoice;

pub use crate::views::View;

/// What the heatmap, the lines and the overview show: the captured attention of a head, or
/// what the analyses make of it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
pub enum AttentionKind {
    /// Each head's attention probabilities, as the model computed them.
    #[default]
    #[value(name = "attention", alias = "raw")]
    Raw,
    /// Attention rollout (Abnar & Zuidema 2020): how much each position draws on each input
    /// token through all layers so far, residual connections included.
    Rollout,
    /// Norm-based attention (Kobayashi et al. 2020): each weight times the size of the vector
    /// the head moves from that key, ‖α·f(x)‖.
    Norms,
    /// Attention flow (Abnar & Zuidema 2020) into the selected tokens: the maximum flow from
    /// each input token through the rollout graph up to the layer.
    Flow,
}

impl AttentionKind {
    /// Whether the kind combines a layer's heads (and the layers below) into one map, which
    /// the app computes off the UI thread: rollout and flow.
    pub fn is_combined(self) -> bool {
        matches!(self, Self::Rollout | Self::Flow)
    }
}

pub use crate::views::lines::PairFilter;

/// What the tabs share and the app remembers: the open tab, the layer, head and kind of
/// attention several tabs show, the selection (which holds everywhere), words, and the export
/// settings. Each tab's own state is its own (see [`crate::views::Tabs`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViewState {
    /// The open tab.
    pub view: View,
    /// Layer shown by the heatmap, lines, query·key and compare.
    pub layer: usize,
    /// Head (or mean) shown by the heatmap and query·key.
    pub head: HeadChoice,
    /// The token selected in any view: the focus of a selection, the one views of a single
    /// token (query·key, the lens, the projection's path) show.
    #[serde(skip)]
    pub selected_token: Option<usize>,
    /// The rest of a selection of several tokens (shift- or ctrl-click), in the order they were
    /// added; never holds `selected_token`.
    #[serde(skip)]
    pub also_selected: Vec<usize>,
    /// What the heatmap, lines and overview show: attention, rollout, norms or flow.
    pub attention_kind: AttentionKind,
    /// Words instead of subword pieces, in the views that read them.
    pub words: bool,
    /// PNG export scale: 1, 2 or 4.
    pub export_scale: f32,
    /// `.npz` exports in half precision.
    pub export_f16: bool,
    /// Heads `(layer, head)` switched off, in the order they were clicked (not remembered: they
    /// belong to one model).
    #[serde(skip)]
    pub ablated_heads: Vec<(usize, usize)>,
}

impl Default for ViewState {
    fn default() -> Self {
        Self {
            view: View::Heatmap,
            layer: 0,
            head: HeadChoice::Head(0),
            selected_token: None,
            also_selected: Vec::new(),
            attention_kind: AttentionKind::Raw,
            words: false,
            export_scale: 2.0,
            export_f16: false,
            ablated_heads: Vec::new(),
        }
    }
}

impl ViewState {
    /// Every selected token, in input order.
    pub fn selection(&self) -> Vec<usize> {
        let mut selection: Vec<usize> = self
            .also_selected
            .iter()
            .copied()
            .chain(self.selected_token)
            .collect();
        selection.sort_unstable();
        selection.dedup();
        selection
    }

    /// The tokens attention flow is shown into: the selection, else the first token.
    pub fn flow_targets(&self) -> Vec<usize> {
        let selection = self.selection();
        if selection.is_empty() {
            vec![0]
        } else {
            selection
        }
    }

    /// Selects `token` alone, or nothing.
    pub fn select(&mut self, token: Option<usize>) {
        self.selected_token = token;
        self.also_selected.clear();
    }

    /// Adds `token` to the selection as its focus, or takes it out if it was in.
    pub fn toggle_in_selection(&mut self, token: usize) {
        if self.selected_token == Some(token) {
            self.selected_token = self.also_selected.pop();
        } else if let Some(index) = self.also_selected.iter().position(|&t| t == token) {
            self.also_selected.remove(index);
        } else {
            self.also_selected.extend(self.selected_token);
            self.selected_token = Some(token);
        }
    }

    /// The kind of map the heatmap and the lines show: flow goes into the selection, else the
    /// first token.
    pub fn map_kind(&self) -> crate::views::heatmap::MapKind {
        use crate::views::heatmap::MapKind;
        match self.attention_kind {
            AttentionKind::Raw => MapKind::Attention,
            AttentionKind::Rollout => MapKind::Rollout,
            AttentionKind::Norms => MapKind::Norms,
            AttentionKind::Flow => MapKind::Flow(self.flow_targets()),
        }
    }

    /// Keeps layer, head and token indices inside a model's shape and an input's length.
    pub fn clamp_to(&mut self, layers: usize, heads: usize, tokens: usize) {
        self.layer = self.layer.min(layers.saturating_sub(1));
        if let HeadChoice::Head(head) = self.head {
            self.head = HeadChoice::Head(head.min(heads.saturating_sub(1)));
        }
        if self.selected_token.is_some_and(|token| token >= tokens) {
            self.selected_token = None;
        }
        self.also_selected.retain(|&token| token < tokens);
        if self.selected_token.is_none() {
            self.selected_token = self.also_selected.pop();
        }
    }
}

/// What a view asks the app to do.
#[derive(Debug, Clone, PartialEq)]
pub enum UiAction {
    /// Select a token everywhere (or clear the selection).
    SelectToken(Option<usize>),
    /// Add a token to the selection, or take it out (shift- or ctrl-click).
    ToggleInSelection(usize),
    /// Show this layer and head in the heatmap view.
    OpenInHeatmap {
        /// Layer index.
        layer: usize,
        /// Head index.
        head: usize,
    },
    /// Replace this token of the input with the model's mask token and run again.
    MaskToken(usize),
    /// Turn on sentence B (a question-answering model needs a context).
    UsePair,
    /// Save the open view as a figure, or the attention data (the app asks where).
    Export,
    /// Switch a head off (or back on) and run the text again.
    ToggleAblation {
        /// Layer index.
        layer: usize,
        /// Head index.
        head: usize,
    },
    /// Switch every head back on.
    ClearAblation,
    /// Ask for a corpus file (a dialog), then run it.
    PickCorpus,
    /// Run head statistics over the corpus file in the view state.
    RunCorpus,
    /// Stop the corpus run.
    CancelCorpus,
    /// Save the corpus run's statistics (the app asks where).
    SaveCorpus,
    /// Open the Attribution tab on this target (`--target`'s spelling): "why this prediction?".
    Why(String),
    /// Explain a prediction (attribution, patching, logit attribution) off the UI thread,
    /// unless the same explanation was asked for last.
    Explain(crate::worker::ExplainRequest),
    /// What the Generate tab asks: a step, playing, stopping, resetting.
    Generate(crate::views::generate::GenerateAction),
    /// Ask for the Train tab's data file (a dialog).
    PickTrainingData,
    /// Fine-tune the loaded model as the Train tab says, off the UI thread.
    StartTraining(Box<crate::model::finetune::FineTuneOptions>),
    /// Stop fine-tuning after the current step.
    CancelTraining,
    /// Open this fine-tuned folder, with the model it came from beside it in the Compare tab.
    CompareFineTuned(std::path::PathBuf),
}

/// What a click on token `index` asks for: with shift or ctrl (⌘) held, adding it to the
/// selection or taking it out; otherwise selecting it alone, or clearing the selection when it
/// was all that was selected.
pub fn token_click(ui: &egui::Ui, index: usize, selection: &[usize]) -> UiAction {
    let modifiers = ui.input(|input| input.modifiers);
    if modifiers.shift || modifiers.command {
        UiAction::ToggleInSelection(index)
    } else if selection == [index] {
        UiAction::SelectToken(None)
    } else {
        UiAction::SelectToken(Some(index))
    }
}

/// A small button showing a symbol ("<", "+"), named for screen readers by `name`, with a
/// tooltip.
pub fn symbol_button(ui: &mut egui::Ui, symbol: &str, name: &str, hover: &str) -> egui::Response {
    let response = ui.small_button(symbol).on_hover_text(hover);
    let enabled = ui.is_enabled();
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, enabled, name));
    response
}

/// egui's fonts with Hack after Ubuntu for proportional text too, so that the symbols views
/// and figures use (‖, →) are drawn wherever they appear, as the figures draw them
/// ([`crate::render::text`] measures them so).
pub fn install_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    if let Some(family) = fonts.families.get_mut(&egui::FontFamily::Proportional) {
        let hack = "Hack".to_owned();
        if fonts.font_data.contains_key(&hack) && !family.contains(&hack) {
            family.insert(1.min(family.len()), hack);
        }
    }
    ctx.set_fonts(fonts);
}

/// The input of one headless frame of a 1400 × 900 window (the app's default size), for the
/// frame timings `bench` prints.
pub fn headless_input() -> egui::RawInput {
    egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::Vec2::new(1400.0, 900.0),
        )),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_of_several_tokens_keeps_its_focus() {
        let mut state = ViewState::default();
        state.select(Some(3));
        state.toggle_in_selection(1);
        state.toggle_in_selection(5);
        assert_eq!(state.selection(), vec![1, 3, 5]);
        assert_eq!(state.selected_token, Some(5), "the last added is the focus");
        state.toggle_in_selection(5);
        assert_eq!(state.selection(), vec![1, 3]);
        assert_eq!(state.selected_token, Some(1));
        state.clamp_to(1, 1, 2);
        assert_eq!(state.selection(), vec![1]);
        assert_eq!(state.flow_targets(), vec![1]);
        state.select(None);
        assert_eq!(
            state.flow_targets(),
            vec![0],
            "no selection: into the first token"
        );
    }
}
