//! Which input tokens made the model give one logit: the text coloured by attribution (red
//! raises the logit, blue lowers it, one scale centred on 0 per method) and a bar per token,
//! by integrated gradients, gradient × input, the gradient's norm or occlusion.

use serde::{Deserialize, Serialize};

use crate::analysis::words::words;
use crate::model::attribution::Attribution;
use crate::model::tokenizer::TokenStyle;
use crate::render::difference_color;
use crate::render::parts::{diverging_bar, notes, notes_width};
use crate::render::scene::{
    Align, Baseline, Font, Paint, Point, Rect, Scene, Stroke, Target, Text,
};
use crate::render::text::text_width;

const SIZE: f32 = 12.0;
const ROW: f32 = 18.0;
const MARGIN: f32 = 8.0;
const CHIP_GAP: f32 = 4.0;
/// Room for a value beside its bar.
const VALUE: f32 = 64.0;

/// An attribution method.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
pub enum Method {
    /// Integrated gradients (Captum's `LayerIntegratedGradients`, 50 Gauss–Legendre steps).
    #[value(name = "ig")]
    IntegratedGradients,
    /// Gradient × input (the default: it follows the text live).
    #[default]
    #[value(name = "grad-x-input")]
    GradXInput,
    /// The gradient's L2 norm.
    #[value(name = "grad-norm")]
    GradNorm,
    /// The logit's drop when a token is replaced by the baseline's.
    Occlusion,
}

impl Method {
    /// Every method, in the order the tab offers them.
    pub const ALL: [Method; 4] = [
        Method::IntegratedGradients,
        Method::GradXInput,
        Method::GradNorm,
        Method::Occlusion,
    ];

    /// Its name on screen.
    pub fn name(self) -> &'static str {
        match self {
            Self::IntegratedGradients => "integrated gradients",
            Self::GradXInput => "gradient × input",
            Self::GradNorm => "gradient norm",
            Self::Occlusion => "occlusion",
        }
    }

    /// Its values in `attribution`, when computed.
    pub fn values(self, attribution: &Attribution) -> Option<&[f32]> {
        match self {
            Self::IntegratedGradients => attribution.integrated_gradients.as_deref(),
            Self::GradXInput => Some(&attribution.grad_x_input),
            Self::GradNorm => Some(&attribution.grad_norm),
            Self::Occlusion => attribution.occlusion.as_deref(),
        }
    }

    /// Whether it needs the long run (integrated gradients), rather than the live one.
    pub fn is_long(self) -> bool {
        self == Self::IntegratedGradients
    }
}

/// The Attribution view: a method, over pieces or words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AttributionView {
    /// The method shown.
    pub method: Method,
    /// Whether per word (lists summed over a word's pieces; the norm of them together).
    pub words: bool,
}

/// What the view shows: labels and values per token or word, the largest magnitude.
struct Shown {
    labels: Vec<String>,
    values: Vec<f32>,
    scale: f32,
}

impl AttributionView {
    fn shown(&self, inputs: &super::Inputs<'_>) -> Result<(Shown, Attribution), String> {
        let attribution = inputs
            .attribution
            .ok_or_else(|| "nothing has been attributed yet".to_owned())?;
        let analysis = inputs.analysis;
        if attribution.grad_norm.len() != analysis.len() {
            return Err(
                "the attribution is of another text; it is being computed again".to_owned(),
            );
        }
        let (attribution, labels) = if self.words {
            let words = words(analysis);
            let labels = words.words.clone();
            (attribution.clone().per_word(&words), labels)
        } else {
            let labels = (0..analysis.len())
                .map(|i| analysis.display_token(i))
                .collect();
            (attribution.clone(), labels)
        };
        let values = self
            .method
            .values(&attribution)
            .ok_or_else(|| format!("{} has not been computed yet", self.method.name()))?
            .to_vec();
        let scale = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        Ok((
            Shown {
                labels,
                values,
                scale: if scale > 0.0 { scale } else { 1.0 },
            },
            attribution,
        ))
    }

    fn header(&self, attribution: &Attribution, shown: &Shown, style: TokenStyle) -> Vec<String> {
        let target = &attribution.target;
        let name = target.display_name(style);
        let what = match (&name, target.position) {
            (Some(name), Some(position)) => format!("{name:?} at token {position}"),
            (Some(name), None) => format!("{name:?}"),
            (None, Some(position)) => format!("token {position}"),
            (None, None) => String::new(),
        };
        let mut lines = vec![
            format!(
                "why {what}? the {} logit {:.4}{}",
                serde_json::to_value(target.head)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
                    .replace('_', " "),
                target.logit,
                // The baseline matters to the methods that compare with it.
                attribution
                    .baseline_logit
                    .filter(|_| matches!(
                        self.method,
                        Method::IntegratedGradients | Method::Occlusion
                    ))
                    .map(|logit| format!(" (baseline {logit:.4})"))
                    .unwrap_or_default()
            ),
            format!(
                "{}: red raises the logit, blue lowers it; colours span ±{:.3}",
                self.method.name(),
                shown.scale
            ),
        ];
        if let (Method::IntegratedGradients, Some(delta)) = (self.method, attribution.ig_delta) {
            lines.push(convergence_line(
                delta,
                target.logit,
                attribution.baseline_logit,
            ));
        }
        lines
    }
}

/// How far integrated gradients are from completeness. A `delta` within f32 rounding of the
/// logits is said as such rather than printed: its digits are rounding noise, which differ
/// between CPUs (AVX2 and AVX-512 sum in different orders).
fn convergence_line(delta: f32, logit: f32, baseline: Option<f32>) -> String {
    let rounding = 1e-5 * logit.abs().max(baseline.map_or(0.0, f32::abs)).max(1.0);
    // Compared with the bound as printed (one digit), so that what is said holds.
    let said = format!("{rounding:.0e}");
    if delta.abs() < said.parse().unwrap_or(rounding) {
        format!("convergence: |Σ IG − (f(x) − f(baseline))| < {said}, f32 rounding")
    } else {
        format!("convergence: Σ IG − (f(x) − f(baseline)) = {delta:.2e}")
    }
}

/// The colour of a value on a scale centred on 0.
fn color(value: f32, scale: f32) -> [u8; 3] {
    difference_color(value, scale)
}

/// The tokens as coloured chips, wrapped to `width`; returns the y under them.
fn chips(scene: &mut Scene<'_>, shown: &Shown, top: f32, width: f32, selection: &[usize]) -> f32 {
    let (mut x, mut y) = (MARGIN, top);
    for (index, (label, &value)) in shown.labels.iter().zip(&shown.values).enumerate() {
        let chip = text_width(label, SIZE, Font::Sans) + 8.0;
        if x + chip > width - MARGIN && x > MARGIN {
            x = MARGIN;
            y += ROW + CHIP_GAP;
        }
        let rect = Rect::from_size(x, y, chip, ROW);
        scene.fill(rect, Paint::Rgb(color(value, shown.scale)));
        if selection.contains(&index) {
            scene.outline(rect, Stroke::new(2.0, Paint::Accent));
        }
        scene.text(
            Text::new(
                Point::new(x + 4.0, y + ROW / 2.0),
                label.clone(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::Start, Baseline::Middle)
            .paint(Paint::Rgb([20, 20, 20])),
        );
        scene.region(
            rect,
            Target::Token(index),
            Some(format!("{label}: {value:.4}")),
        );
        x += chip + CHIP_GAP;
    }
    y + ROW
}

/// A bar per token from a centre line, its value beside it.
fn bars(scene: &mut Scene<'_>, shown: &Shown, top: f32, width: f32) -> f32 {
    let label_width = shown
        .labels
        .iter()
        .map(|label| text_width(label, SIZE, Font::Sans))
        .fold(40f32, f32::max)
        .min(180.0);
    let left = MARGIN + label_width + 8.0;
    let half = ((width - left - VALUE - MARGIN) / 2.0).max(30.0);
    let centre = left + half;
    for (index, (label, &value)) in shown.labels.iter().zip(&shown.values).enumerate() {
        let y = top + ROW * index as f32;
        scene.text(
            Text::new(
                Point::new(left - 8.0, y + ROW / 2.0),
                label.clone(),
                SIZE,
                Font::Sans,
            )
            .anchor(Align::End, Baseline::Middle),
        );
        diverging_bar(scene, (centre, half), (y, ROW), value, shown.scale);
        scene.region(
            Rect::from_size(MARGIN, y, width - 2.0 * MARGIN, ROW),
            Target::Token(index),
            None,
        );
    }
    let bottom = top + ROW * shown.labels.len() as f32;
    scene.line(
        Point::new(centre, top),
        Point::new(centre, bottom),
        Stroke::new(1.0, Paint::FaintInk),
    );
    bottom
}

impl super::Draw for AttributionView {
    const LABEL: &'static str = "Attribution";
    const DESCRIPTION: &'static str = "Why did it predict that? Which input tokens raised or lowered one logit: integrated gradients, gradient × input, the gradient's norm or occlusion";
    const READS_WORDS: bool = false;

    fn title(&self, inputs: &super::Inputs<'_>) -> String {
        let style = inputs.analysis.token_style;
        let target = inputs
            .attribution
            .and_then(|a| a.target.display_name(style))
            .map(|name| format!(" of {name:?}"))
            .unwrap_or_default();
        format!("attribution{target} · {}", self.method.name())
    }

    fn natural_size(&self, inputs: &super::Inputs<'_>) -> (f32, f32) {
        let count = self
            .shown(inputs)
            .map_or(1, |(shown, _)| shown.labels.len());
        (
            640.0,
            3.0 * 16.0 + 2.0 * ROW + 40.0 + ROW * count as f32 + 3.0 * ROW,
        )
    }

    fn draw<'a>(
        &self,
        inputs: &super::Inputs<'a>,
        canvas: &super::Canvas<'_>,
    ) -> Result<super::Drawn<'a>, String> {
        let (shown, attribution) = self.shown(inputs)?;
        let header = self.header(&attribution, &shown, inputs.analysis.token_style);
        let width = canvas
            .width
            .max(320.0)
            .max(notes_width(MARGIN, &header) + MARGIN);
        let mut scene = Scene::new(width, canvas.height, "Attribution");
        let y = notes(&mut scene, MARGIN, MARGIN, &header);
        let selection = if self.words {
            &[][..]
        } else {
            canvas.selection
        };
        let y = chips(&mut scene, &shown, y + 8.0, width, selection);
        let bottom = bars(&mut scene, &shown, y + 12.0, width);
        scene.height = scene.height.max(bottom + MARGIN);
        Ok(super::Drawn {
            scene,
            zoomable: Vec::new(),
        })
    }
}

#[cfg(feature = "gui")]
pub use tab::AttributionTab;

/// The Attribution tab: a method switch, the target, the words switch; gradient × input, the
/// gradient norm and occlusion follow the text live, integrated gradients run with progress.
#[cfg(feature = "gui")]
mod tab {
    use serde::{Deserialize, Serialize};

    use super::{AttributionView, Method};
    use crate::model::attribution::{AttributionOptions, DEFAULT_IG_STEPS};
    use crate::model::target::TargetSpec;
    use crate::model::Analysis;
    use crate::render::scene::Hit;
    use crate::ui::tab::{Tab, TabContext};
    use crate::ui::{token_click, ViewState};
    use crate::views::Figure;
    use crate::worker::ExplainRequest;

    /// The Attribution tab's own state.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct AttributionTab {
        /// The method shown.
        pub method: Method,
        /// The target as `--target` writes it; empty: the model's default.
        pub target: String,
        /// Per word.
        pub words: bool,
    }

    impl AttributionTab {
        /// What to ask the worker for the text `text`, or why the target does not parse.
        pub fn request(&self, text: (String, Option<String>)) -> Result<ExplainRequest, String> {
            let target = match self.target.trim() {
                "" => TargetSpec::default(),
                spec => spec
                    .parse()
                    .map_err(|err: crate::model::ModelError| err.to_string())?,
            };
            Ok(ExplainRequest::Attribution {
                text,
                options: AttributionOptions {
                    target,
                    // Only what the method shows: gradient × input and its norm come with every
                    // run (one backward pass); occlusion costs a forward per token.
                    ig_steps: if self.method.is_long() {
                        DEFAULT_IG_STEPS
                    } else {
                        0
                    },
                    occlusion: self.method == Method::Occlusion,
                },
            })
        }
    }

    impl Tab for AttributionTab {
        fn figure(
            &self,
            _state: &ViewState,
            _run: &Analysis,
            _other: Option<&Analysis>,
        ) -> Option<Figure> {
            Some(Figure::Attribution(AttributionView {
                method: self.method,
                words: self.words,
            }))
        }

        fn show(&mut self, ui: &mut egui::Ui, cx: &mut TabContext<'_>) {
            ui.horizontal(|ui| {
                for method in Method::ALL {
                    ui.selectable_value(&mut self.method, method, method.name())
                        .on_hover_text(match method {
                            Method::IntegratedGradients => "Captum's LayerIntegratedGradients on the embedding output, 50 Gauss–Legendre steps; runs in the background, cancelled by typing",
                            Method::GradXInput => "Σ over the hidden dimension of the embedding output × the logit's gradient; live",
                            Method::GradNorm => "the L2 norm of the logit's gradient at each token (LIT's gradient norm); live",
                            Method::Occlusion => "how much the logit drops when the token is replaced by the padding token (a forward pass per token); live",
                        });
                }
                ui.separator();
                ui.checkbox(&mut self.words, "words")
                    .on_hover_text("Sum each word's pieces (the gradient norm: the norm of all of them)");
            });
            ui.horizontal(|ui| {
                ui.label("why:");
                ui.add(
                    egui::TextEdit::singleline(&mut self.target)
                        .hint_text("the model's default target")
                        .desired_width(220.0),
                )
                .on_hover_text("A logit of one head: mlm:I[:TOKEN], next:I[:TOKEN], label[:NAME], answer-start[:I], answer-end[:I] or ner:I[:LABEL] (I a token index). Empty: the first head the model has of label, answer-start, mlm, ner, next");
                if !self.target.is_empty() && ui.button("default").clicked() {
                    self.target.clear();
                }
            });
            let text = (
                cx.run.result.request.text_a.clone(),
                cx.run.result.request.text_b.clone(),
            );
            let request = match self.request(text) {
                Ok(request) => request,
                Err(message) => {
                    ui.colored_label(ui.visuals().error_fg_color, message);
                    return;
                }
            };
            let method = self.method.name();
            if !cx.explanation_ready(
                ui,
                &request,
                &format!("computing {method}…"),
                &|done, total| format!("{method} · {done}/{total}"),
            ) {
                return;
            }
            let selection = cx.state.selection();
            let Some(figure) = self.figure(cx.state, cx.analysis(), None) else {
                return;
            };
            let Some(shown) = cx.draw(ui, &figure, None, 0.0) else {
                return;
            };
            if !self.words {
                if let Some(Hit::Token(token)) = shown.clicked {
                    cx.actions.push(token_click(ui, token, &selection));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::convergence_line;

    #[test]
    fn convergence_within_rounding_is_said_not_printed() {
        assert_eq!(
            convergence_line(-5.4e-7, 2.5, Some(-0.3)),
            "convergence: |Σ IG − (f(x) − f(baseline))| < 2e-5, f32 rounding"
        );
        assert_eq!(
            convergence_line(3.2e-3, 2.5, Some(-0.3)),
            "convergence: Σ IG − (f(x) − f(baseline)) = 3.20e-3"
        );
        // Under the bound (2.5e-5) but not under the one printed (2e-5).
        assert_eq!(
            convergence_line(2.2e-5, 2.5, None),
            "convergence: Σ IG − (f(x) − f(baseline)) = 2.20e-5"
        );
    }
}
