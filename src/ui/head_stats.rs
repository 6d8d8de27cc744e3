//! Head statistics (Clark et al. 2019) of the current text or of a corpus file: a layers ×
//! heads grid coloured by one statistic, each cell marked with its head's label, and a table
//! sorted by the statistic. Click a head to open it in the heatmap.

use egui::Sense;
use serde::{Deserialize, Serialize};

use super::{UiAction, ViewState};
use crate::analysis::stats::{HeadStats, Statistic};
use crate::render::scene::Hit;
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

/// The Heads tab: the statistics of the text (`None` while they are computed) or of the corpus
/// run, with the corpus controls.
pub fn heads_view(
    ui: &mut egui::Ui,
    text_stats: Option<&[Vec<HeadStats>]>,
    corpus: Option<&CorpusRun>,
    state: &mut ViewState,
) -> Vec<UiAction> {
    let mut actions = Vec::new();
    ui.horizontal(|ui| {
        ui.label("Statistics of");
        ui.selectable_value(&mut state.head_source, HeadSource::Text, "this text")
            .on_hover_text("Every head's statistics over the tokens of the text above");
        ui.selectable_value(&mut state.head_source, HeadSource::Corpus, "a corpus")
            .on_hover_text(
                "Every head's statistics over all tokens of a text file, one text per line \
                 (as `bertscope stats --corpus` computes them)",
            );
        ui.separator();
        statistic_picker(ui, state);
    });
    let stats = match state.head_source {
        HeadSource::Text => match text_stats {
            Some(stats) => stats,
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Computing every head's statistics…");
                });
                return actions;
            }
        },
        HeadSource::Corpus => {
            corpus_controls(ui, corpus, state, &mut actions);
            match corpus.and_then(CorpusRun::progress) {
                Some(progress) => &progress.report.heads,
                None => return actions,
            }
        }
    };
    grid_and_table(ui, stats, state, &mut actions);
    actions
}

/// The statistic that colours the grid and orders the table.
fn statistic_picker(ui: &mut egui::Ui, state: &mut ViewState) {
    ui.label("Colour and sort by");
    egui::ComboBox::from_id_salt("head-statistic")
        .selected_text(state.head_statistic.name())
        .show_ui(ui, |ui| {
            for choice in Statistic::ALL {
                ui.selectable_value(&mut state.head_statistic, choice, choice.name())
                    .on_hover_text(choice.description());
            }
        })
        .response
        .on_hover_text("The statistic that colours the grid and orders the table");
}

/// The corpus file, Browse, Run or Cancel with the progress, and what the run found.
fn corpus_controls(
    ui: &mut egui::Ui,
    corpus: Option<&CorpusRun>,
    state: &mut ViewState,
    actions: &mut Vec<UiAction>,
) {
    let running = matches!(corpus, Some(CorpusRun::Running { .. }));
    ui.horizontal(|ui| {
        let label = ui.label("Corpus file");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut state.corpus_path)
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
        let can_run = !state.corpus_path.trim().is_empty();
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
                if *words != state.words {
                    ui.weak(format!("(Run again for {})", over(state.words)));
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

/// The grid coloured by the chosen statistic and the table sorted by it.
fn grid_and_table(
    ui: &mut egui::Ui,
    stats: &[Vec<HeadStats>],
    state: &mut ViewState,
    actions: &mut Vec<UiAction>,
) {
    let statistic = state.head_statistic;
    let heads = stats.first().map_or(0, Vec::len);
    if heads == 0 {
        return;
    }

    let width = ui.available_width();
    let shown = super::scene::show_hovered(
        ui,
        &mut super::scene::Rasters::default(),
        Sense::hover(),
        |hovered| {
            let hovered = match hovered {
                Some(Hit::Head { layer, head }) => Some((layer, head)),
                _ => None,
            };
            crate::views::head_stats::scene(stats, statistic, hovered, width)
        },
    );
    if let Some(Hit::Head { layer, head }) = shown.hovered {
        if let Some(head_stats) = stats.get(layer).and_then(|row| row.get(head)) {
            shown.response.on_hover_text_at_pointer(format!(
                "layer {layer}, head {head}: {} {:.3}, {}\nclick to open it in the heatmap",
                statistic.name(),
                statistic.of(head_stats),
                head_stats.label.name()
            ));
        }
    }
    if let Some(Hit::Head { layer, head }) = shown.clicked {
        actions.push(UiAction::OpenInHeatmap { layer, head });
    }

    ui.separator();
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
    order.sort_by(|a, b| statistic.of(b.2).total_cmp(&statistic.of(a.2)));
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
                    egui::Button::new(text).selected(choice == statistic),
                )
                .on_hover_text(format!("Sort by {}", choice.description()))
                .clicked()
            {
                state.head_statistic = choice;
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
