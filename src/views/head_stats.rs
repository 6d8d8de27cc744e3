//! Head statistics (Clark et al. 2019) as a layers × heads grid coloured by one statistic
//! (viridis from 0 to its largest value), each cell marked with its head's kind, with a colour
//! bar and a key.

use crate::analysis::stats::{HeadStats, Statistic};
use crate::render::attention_color;
use crate::render::parts::{color_bar, grid_labels, notes, notes_width, ColorScale, BAR_GAP};
use crate::render::scene::{Align, Baseline, Font, Paint, Rect, Scene, Stroke, Target, Text};

/// Left of and above the grid: the layer and head numbers.
const LABEL_ROOM: f32 = 30.0;
const GAP: f32 = 2.0;
/// The smallest and largest cells, in points.
const CELL: std::ops::RangeInclusive<f32> = 14.0..=44.0;
/// Right of the grid: the colour bar and its labels.
const BAR_ROOM: f32 = BAR_GAP + 16.0 + 4.0 + 48.0;

/// The width a figure gives the grid: cells of up to 44 points, about 720 in all.
pub fn natural_width(heads: usize) -> f32 {
    let cell = (720.0 / heads.max(1) as f32 - GAP).clamp(*CELL.start(), *CELL.end());
    LABEL_ROOM + (cell + GAP) * heads as f32 + BAR_ROOM
}

/// The grid of `stats` coloured by `statistic` in `width` points, with a named region per head
/// ("layer 1, head 3: entropy 2.104, mixed"); `hovered` is outlined.
/// Long because the grid, its labels, the colour bar and the sortable table share one layout pass.
pub fn scene(
    stats: &[Vec<HeadStats>],
    statistic: Statistic,
    hovered: Option<(usize, usize)>,
    width: f32,
) -> Scene<'static> {
    let heads = stats.first().map_or(0, Vec::len);
    let layers = stats.len();
    let cell = ((width - LABEL_ROOM - BAR_ROOM) / heads.max(1) as f32 - GAP)
        .clamp(*CELL.start(), *CELL.end());
    let pitch = cell + GAP;
    let max = stats
        .iter()
        .flatten()
        .map(|s| statistic.of(s))
        .fold(0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    let grid_bottom = LABEL_ROOM + pitch * layers as f32;
    let key = [
        format!(
            "rows: layers · columns: heads · colour: {}",
            statistic.description()
        ),
        "P previous-token, N next-token, S [CLS]/[SEP], B broad heads (Clark et al. 2019)"
            .to_owned(),
    ];
    let mut scene = Scene::new(
        (LABEL_ROOM + pitch * heads as f32 + BAR_ROOM).max(notes_width(0.0, &key)),
        grid_bottom + 12.0 + 16.0 * key.len() as f32,
        format!(
            "Head statistics, {layers} layers × {heads} heads, coloured by {}",
            statistic.name()
        ),
    );
    grid_labels(
        &mut scene, LABEL_ROOM, LABEL_ROOM, pitch, cell, layers, heads,
    );
    for (layer, row) in stats.iter().enumerate() {
        for (head, head_stats) in row.iter().enumerate() {
            let rect = Rect::from_size(
                LABEL_ROOM + pitch * head as f32,
                LABEL_ROOM + pitch * layer as f32,
                cell,
                cell,
            );
            let value = statistic.of(head_stats);
            scene.fill(rect, Paint::Rgb(attention_color(value, max)));
            let mark = head_stats.label.mark();
            if !mark.is_empty() {
                // Light marks on dark cells, dark on light (viridis brightens with the value).
                let ink = if value / max > 0.6 {
                    Paint::Rgb([0, 0, 0])
                } else {
                    Paint::Rgb([255, 255, 255])
                };
                scene.text(
                    Text::new(rect.center(), mark, (cell * 0.5).min(13.0), Font::Sans)
                        .anchor(Align::Center, Baseline::Middle)
                        .paint(ink),
                );
            }
            if hovered == Some((layer, head)) {
                scene.outline(rect.expand(1.5), Stroke::new(1.5, Paint::Ink));
            }
            scene.region(
                rect,
                Target::Head { layer, head },
                Some(format!(
                    "layer {layer}, head {head}: {} {value:.3}, {}",
                    statistic.name(),
                    head_stats.label.name()
                )),
            );
        }
    }
    color_bar(
        &mut scene,
        Rect::from_size(
            LABEL_ROOM + pitch * heads as f32 + BAR_GAP,
            LABEL_ROOM,
            16.0,
            (pitch * layers as f32 - GAP).max(40.0),
        ),
        ColorScale::Sequential { max },
        crate::render::parts::MaskKey::NONE,
    );
    notes(&mut scene, 0.0, grid_bottom + 8.0, &key);
    scene.height = scene.height.max(LABEL_ROOM + 40.0 + 8.0);
    scene
}

/// The head statistics view with its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HeadStatsView {
    /// The statistic that colours the grid (and orders the tab's table).
    pub statistic: Statistic,
}

impl HeadStatsView {
    fn stats<'a>(inputs: &super::Inputs<'a>) -> Result<&'a [Vec<HeadStats>], String> {
        inputs
            .head_stats
            .ok_or_else(|| "the head statistics have not been computed".to_owned())
    }
}

impl super::Draw for HeadStatsView {
    const LABEL: &'static str = "Heads";
    const DESCRIPTION: &'static str = "What each head attends to, by Clark et al.'s statistics: first token, separators, punctuation, itself, neighbours, entropy; of the text or of a corpus file";
    const READS_WORDS: bool = true;

    fn title(&self, _inputs: &super::Inputs<'_>) -> String {
        format!("head statistics · {}", self.statistic.name())
    }

    const COMPUTES: bool = true;

    fn compute_key(&self) -> String {
        // The same for every value of the parameters.
        "head statistics".to_owned()
    }

    fn compute(&self, runs: &super::Runs<'_>) -> super::Computed {
        super::Computed {
            head_stats: Some(std::sync::Arc::new(crate::analysis::stats::head_stats(
                runs.shown(),
            ))),
            ..super::Computed::default()
        }
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        let stats = Self::stats(inputs).unwrap_or_default();
        let width = natural_width(stats.first().map_or(0, Vec::len));
        (width, scene(stats, self.statistic, None, width).height)
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let hovered = match canvas.hovered {
            Some(crate::render::scene::Hit::Head { layer, head }) => Some((layer, head)),
            _ => None,
        };
        let stats = Self::stats(inputs)?;
        Ok(scene(stats, self.statistic, hovered, canvas.width).into())
    }
}

#[cfg(feature = "gui")]
pub use tab::{HeadSource, HeadsTab};

/// The Heads tab: the statistics of the text or of a corpus file (run here, with progress and
/// Cancel), the grid and a table sorted by the chosen statistic; a click opens a head.
#[cfg(feature = "gui")]
mod tab {
    use egui::Sense;
    use serde::{Deserialize, Serialize};

    use super::HeadStatsView;
    use crate::analysis::stats::{HeadStats, Statistic};
    use crate::model::Analysis;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::{UiAction, ViewState};
    use crate::views::Figure;
    use crate::worker::CorpusRun;

    /// Table rows in points.
    const ROW_HEIGHT: f32 = 18.0;

    /// Whose statistics the Heads tab shows.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
    pub enum HeadSource {
        /// The text in the input box.
        #[default]
        Text,
        /// A corpus file, run in the tab.
        Corpus,
    }

    /// The Heads tab's own state.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct HeadsTab {
        /// The statistic that colours the grid and orders the table.
        pub statistic: Statistic,
        /// Whose statistics: the text's or a corpus's.
        pub source: HeadSource,
        /// The corpus file, as typed or chosen.
        pub corpus_path: String,
    }

    impl Tab for HeadsTab {
        fn figure(
            &self,
            _state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Heads(HeadStatsView {
                statistic: self.statistic,
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            ui.horizontal(|ui| {
                ui.label("Statistics of");
                ui.selectable_value(&mut self.source, HeadSource::Text, "this text")
                    .on_hover_text("Every head's statistics over the tokens of the text above");
                ui.selectable_value(&mut self.source, HeadSource::Corpus, "a corpus")
                    .on_hover_text(
                        "Every head's statistics over all tokens of a text file, one text per line \
                         (as `bertscope stats --corpus` computes them)",
                    );
                ui.separator();
                statistic_picker(ui, &mut self.statistic);
            });
            let stats: Option<&[Vec<HeadStats>]> = match self.source {
                HeadSource::Text => {
                    let stats = cx.computed.head_stats.as_deref().map(Vec::as_slice);
                    if stats.is_none() {
                        ui.horizontal(|ui| {
                            ui.spinner();
                            ui.label("Computing every head's statistics…");
                        });
                        return;
                    }
                    stats
                }
                HeadSource::Corpus => {
                    let corpus = cx.corpus;
                    let words = cx.state.words;
                    corpus_controls(ui, corpus, self, words, cx.actions);
                    match corpus.and_then(CorpusRun::progress) {
                        Some(progress) => Some(&progress.report.heads),
                        None => return,
                    }
                }
            };
            let Some(stats) =
                stats.filter(|stats| stats.first().is_some_and(|row| !row.is_empty()))
            else {
                return;
            };
            let Some(figure) = self.figure(cx.state, cx.analysis(), None) else {
                return;
            };
            let statistic = self.statistic;
            if let Some(shown) = cx.draw_with(ui, &figure, None, 0.0, Some(stats)) {
                if let Some(Hit::Head { layer, head }) = shown.hovered {
                    if let Some(head_stats) = stats.get(layer).and_then(|row| row.get(head)) {
                        shown.response.clone().on_hover_text_at_pointer(format!(
                            "layer {layer}, head {head}: {} {:.3}, {}\nclick to open it in the heatmap",
                            statistic.name(),
                            statistic.of(head_stats),
                            head_stats.label.name()
                        ));
                    }
                }
                if let Some(Hit::Head { layer, head }) = shown.clicked {
                    cx.actions.push(UiAction::OpenInHeatmap { layer, head });
                }
            }
            ui.separator();
            table(ui, stats, &mut self.statistic, cx.actions);
        }
    }

    /// The statistic that colours the grid and orders the table.
    fn statistic_picker(ui: &mut egui::Ui, statistic: &mut Statistic) {
        ui.label("Colour and sort by");
        egui::ComboBox::from_id_salt("head-statistic")
            .selected_text(statistic.name())
            .show_ui(ui, |ui| {
                for choice in Statistic::ALL {
                    ui.selectable_value(statistic, choice, choice.name())
                        .on_hover_text(choice.description());
                }
            })
            .response
            .on_hover_text("The statistic that colours the grid and orders the table");
    }

    /// The corpus file, Browse, Run or Cancel with the progress, and what the run found.
    /// Long because it is the corpus run's whole state machine on screen (pick, run, progress,
    /// cancel, save, the error), each state a few lines.
    fn corpus_controls(
        ui: &mut egui::Ui,
        corpus: Option<&CorpusRun>,
        tab: &mut HeadsTab,
        shown_words: bool,
        actions: &mut Vec<UiAction>,
    ) {
        let running = matches!(corpus, Some(CorpusRun::Running { .. }));
        ui.horizontal(|ui| {
            let label = ui.label("Corpus file");
            let field = ui
                .add(
                    egui::TextEdit::singleline(&mut tab.corpus_path)
                        .hint_text("a text file: one text per line, a tab splits a pair")
                        .desired_width(360.0),
                )
                .labelled_by(label.id)
                .on_hover_text("A UTF-8 text file: one text per line; a tab splits sentence A from B; blank lines are skipped");
            let entered = field.lost_focus() && ui.input(|input| input.key_pressed(egui::Key::Enter));
            if ui
                .button("Browse…")
                .on_hover_text("Choose the corpus file")
                .clicked()
            {
                actions.push(UiAction::PickCorpus);
            }
            let can_run = !tab.corpus_path.trim().is_empty();
            if running {
                if ui
                    .button("Cancel")
                    .on_hover_text("Stop the run (Esc); its statistics so far are dropped")
                    .clicked()
                    || ui.input(|input| input.key_pressed(egui::Key::Escape))
                {
                    actions.push(UiAction::CancelCorpus);
                }
            } else if ui
                .add_enabled(can_run, egui::Button::new("Run"))
                .on_hover_text(
                    "Run the model on every line and average each head's statistics over all of \
                     their tokens",
                )
                .clicked()
                || (entered && can_run)
            {
                actions.push(UiAction::RunCorpus);
            }
        });
        let over = |words: bool| if words { "words" } else { "pieces" };
        match corpus {
            None => {
                ui.weak(
                    "Choose a text file and Run: the model reads every line, and each statistic \
                     averages over every token of every line, as `bertscope stats` does.",
                );
            }
            Some(CorpusRun::Failed { message }) => {
                ui.colored_label(ui.visuals().error_fg_color, message);
            }
            Some(CorpusRun::Cancelled { done, total }) => {
                ui.weak(if *total == 0 {
                    "Cancelled.".to_owned()
                } else {
                    format!("Cancelled after {done} of {total} lines; Run starts again.")
                });
            }
            Some(CorpusRun::Running {
                path,
                words,
                progress,
                ..
            }) => {
                let name = file_name(path);
                let (fraction, text) = match progress {
                    Some(p) => (
                        p.report.lines as f32 / p.total.max(1) as f32,
                        format!(
                            "{name}: {} / {} lines · {} {} · {:.0} s",
                            p.report.lines,
                            p.total,
                            p.report.tokens,
                            over(*words),
                            p.seconds
                        ),
                    ),
                    None => (0.0, format!("{name}: starting…")),
                };
                ui.add(egui::ProgressBar::new(fraction).text(text).animate(true));
            }
            Some(CorpusRun::Finished {
                path,
                words,
                progress,
            }) => {
                ui.horizontal(|ui| {
                    let report = &progress.report;
                    ui.label(format!(
                        "{}: {} lines · {} {} · {:.1} s",
                        file_name(path),
                        report.lines,
                        report.tokens,
                        over(*words),
                        progress.seconds
                    ));
                    if *words != shown_words {
                        ui.weak(format!("(Run again for {})", over(shown_words)));
                    }
                    if ui
                        .button("Save…")
                        .on_hover_text("Save these statistics as JSON or CSV, or the grid as a PNG or SVG figure, as `bertscope stats --out` writes them (Ctrl+E)")
                        .clicked()
                    {
                        actions.push(UiAction::SaveCorpus);
                    }
                });
            }
        }
    }

    /// A path's file name, for a short line.
    fn file_name(path: &std::path::Path) -> String {
        path.file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// Every head's statistics, highest first by `statistic`; a column's header sorts by it, a
    /// row opens its head.
    fn table(
        ui: &mut egui::Ui,
        stats: &[Vec<HeadStats>],
        statistic: &mut Statistic,
        actions: &mut Vec<UiAction>,
    ) {
        let chosen = *statistic;
        // The table, highest first; a column's header sorts by it.
        let mut order: Vec<(usize, usize, &HeadStats)> = stats
            .iter()
            .enumerate()
            .flat_map(|(layer, row)| {
                row.iter()
                    .enumerate()
                    .map(move |(head, s)| (layer, head, s))
            })
            .collect();
        order.sort_by(|a, b| chosen.of(b.2).total_cmp(&chosen.of(a.2)));
        let column_width = 64.0;
        ui.horizontal(|ui| {
            for header in ["layer", "head"] {
                ui.add_sized(
                    [column_width, ROW_HEIGHT],
                    egui::Label::new(egui::RichText::new(header).strong()),
                );
            }
            for choice in Statistic::ALL {
                // The selected header (the sort) is highlighted.
                let text = choice.name();
                if ui
                    .add_sized(
                        [column_width, ROW_HEIGHT],
                        egui::Button::new(text).selected(choice == chosen),
                    )
                    .on_hover_text(format!("Sort by {}", choice.description()))
                    .clicked()
                {
                    *statistic = choice;
                }
            }
            ui.add_sized(
                [column_width, ROW_HEIGHT],
                egui::Label::new(egui::RichText::new("label").strong()),
            );
        });
        egui::ScrollArea::vertical()
            .id_salt("head-table")
            .auto_shrink([false, false])
            .show_rows(ui, ROW_HEIGHT, order.len(), |ui, rows| {
                for &(layer, head, s) in &order[rows] {
                    let row = ui.horizontal(|ui| {
                        let cells = [layer.to_string(), head.to_string()]
                            .into_iter()
                            .chain(
                                Statistic::ALL
                                    .iter()
                                    .map(|choice| format!("{:.3}", choice.of(s))),
                            )
                            .chain(std::iter::once(s.label.name().to_owned()));
                        for text in cells {
                            ui.add_sized(
                                [column_width, ROW_HEIGHT],
                                egui::Label::new(egui::RichText::new(text).monospace()),
                            );
                        }
                    });
                    let clicked = ui
                        .interact(
                            row.response.rect,
                            ui.scope_id().with(("head-row", layer, head)),
                            Sense::click(),
                        )
                        .on_hover_text("Click to open this head in the heatmap")
                        .clicked();
                    if clicked {
                        actions.push(UiAction::OpenInHeatmap { layer, head });
                    }
                }
            });
    }
}
