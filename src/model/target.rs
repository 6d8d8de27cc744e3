//! The logit an attribution, a patching run or a logit attribution explains: one output of one
//! prediction head at one position, written as `--target` spells it and resolved on a run.

use std::str::FromStr;

use serde::Serialize;

use super::backend::{ForwardInput, LogitIndex, Trace};
use super::error::{ModelError, Result};
use super::params::{HeadInput, HeadKind};
use super::prediction_heads;
use super::tokenizer::{EncodedText, TokenStyle};
use super::LoadedModel;

/// The head a target reads, as the JSON names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetHead {
    /// A masked-LM logit.
    Mlm,
    /// A causal LM's next-token logit.
    NextToken,
    /// A sequence-classification logit (or a regression score).
    Classification,
    /// A question-answering start logit.
    QaStart,
    /// A question-answering end logit.
    QaEnd,
    /// A token-classification logit.
    TokenClassification,
}

impl TargetHead {
    /// How `--target` spells it.
    pub fn spelling(self) -> &'static str {
        match self {
            Self::Mlm => "mlm",
            Self::NextToken => "next",
            Self::Classification => "label",
            Self::QaStart => "answer-start",
            Self::QaEnd => "answer-end",
            Self::TokenClassification => "ner",
        }
    }

    /// The kind of prediction head that gives it.
    fn kind(self) -> HeadKind {
        match self {
            Self::Mlm => HeadKind::MaskedLm,
            Self::NextToken => HeadKind::NextToken,
            Self::Classification => HeadKind::SequenceClassification,
            Self::QaStart | Self::QaEnd => HeadKind::QuestionAnswering,
            Self::TokenClassification => HeadKind::TokenClassification,
        }
    }
}

/// A target as written: `mlm:I[:TOKEN]`, `next:I[:TOKEN]`, `label[:NAME]`, `answer-start[:I]`,
/// `answer-end[:I]` or `ner:I[:LABEL]`; what is left out takes its default when resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetSpec {
    /// The head; `None`: the first the checkpoint has of classification, answer start, masked
    /// LM, token classification, next token.
    pub head: Option<TargetHead>,
    /// The position, for heads that read one.
    pub position: Option<usize>,
    /// The token (vocabulary spelling or id) or label name.
    pub output: Option<String>,
}

impl FromStr for TargetSpec {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            ModelError::BadInput(format!(
                "--target {text:?}: {why}; write mlm:I[:TOKEN], next:I[:TOKEN], label[:NAME], answer-start[:I], answer-end[:I] or ner:I[:LABEL]"
            ))
        };
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        let head = [
            TargetHead::Mlm,
            TargetHead::NextToken,
            TargetHead::Classification,
            TargetHead::QaStart,
            TargetHead::QaEnd,
            TargetHead::TokenClassification,
        ]
        .into_iter()
        .find(|head| head.spelling() == name.trim())
        .ok_or_else(|| bad("unknown head"))?;
        let position = |text: &str| -> Result<Option<usize>> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| bad("the position is not a token index"))
        };
        let (position, output) = match head {
            TargetHead::Classification => (None, rest),
            TargetHead::QaStart | TargetHead::QaEnd => (position(rest)?, ""),
            _ => {
                let (at, output) = rest.split_once(':').unwrap_or((rest, ""));
                (position(at)?, output)
            }
        };
        Ok(Self {
            head: Some(head),
            position,
            output: (!output.is_empty()).then(|| output.to_owned()),
        })
    }
}

/// A resolved target, as the JSON writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// The head.
    pub head: TargetHead,
    /// The token position, for heads that read one (`null` for a sequence classifier).
    pub position: Option<usize>,
    /// The token id or label id; for question answering, 0 (start) or 1 (end).
    pub id: u32,
    /// The token's vocabulary spelling or the label's name.
    pub name: Option<String>,
    /// The logit on the run it was resolved on.
    pub logit: f32,
    /// Which logit the backend reads.
    #[serde(skip)]
    pub index: LogitIndex,
}

impl Target {
    /// Its name as views show it: a token in `style`'s readable spelling (`▁Paris` for
    /// `ĠParis`), a label as it is.
    pub fn display_name(&self, style: TokenStyle) -> Option<String> {
        let name = self.name.as_deref()?;
        Some(match self.head {
            TargetHead::Mlm | TargetHead::NextToken => style.display(name),
            _ => name.to_owned(),
        })
    }
}

/// Where a target reads, before its output is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TargetPlan {
    head: TargetHead,
    position: Option<usize>,
    /// The logit, its output [`TOP_OUTPUT`] while open.
    pub index: LogitIndex,
    /// The output, when the spec or the head fixes it.
    pub output: Option<usize>,
}

/// The output of a [`LogitIndex`] that stands for the row's most probable output, chosen by the
/// run that reads it.
pub const TOP_OUTPUT: usize = usize::MAX;

/// The defaults, in the order the issue gives: classification, answer start, masked LM, token
/// classification, next token.
const DEFAULT_ORDER: [TargetHead; 5] = [
    TargetHead::Classification,
    TargetHead::QaStart,
    TargetHead::Mlm,
    TargetHead::TokenClassification,
    TargetHead::NextToken,
];

impl LoadedModel {
    /// The heads a target can read on this checkpoint, spelled as `--target` takes them.
    pub fn target_heads(&self) -> Vec<&'static str> {
        let mut heads: Vec<&'static str> = Vec::new();
        for head in DEFAULT_ORDER
            .into_iter()
            .chain([TargetHead::QaEnd])
            .filter(|head| self.has_head(head.kind()))
        {
            heads.push(head.spelling());
        }
        heads
    }

    /// Resolves `spec` on the run of `encoded` (`input`: its positions and segments) that
    /// `trace` traced.
    pub(crate) fn resolve_target(
        &self,
        spec: &TargetSpec,
        encoded: &EncodedText,
        input: &ForwardInput<'_>,
        trace: &Trace,
    ) -> Result<Target> {
        let plan = self.plan_target(spec, encoded, input, Some(trace))?;
        let last = self.last_states(trace, encoded.ids.len());
        let hidden = self.config.hidden_size;
        let outputs = self.row_logits(
            &last[plan.index.row * hidden..][..hidden],
            plan.index.head,
            &[true],
        )?;
        let output = plan
            .output
            .unwrap_or_else(|| prediction_heads::argmax(&outputs));
        Ok(self.finish_target(&plan, output, outputs[output]))
    }

    /// The last layer's output before any final norm, `[tokens, hidden]`, of a trace.
    fn last_states<'t>(&self, trace: &'t Trace, tokens: usize) -> &'t [f32] {
        let hidden = self.config.hidden_size;
        &trace.states[(trace.states.len() / hidden - tokens) * hidden..]
    }

    /// Where a target reads (head, row) and which output, when `spec` or the head fixes it
    /// (`None`: the top output, known once the model has run). A question-answering head's
    /// default span reads `trace`, or a run of its own when none is given.
    pub(crate) fn plan_target(
        &self,
        spec: &TargetSpec,
        encoded: &EncodedText,
        input: &ForwardInput<'_>,
        trace: Option<&Trace>,
    ) -> Result<TargetPlan> {
        let head = match spec.head {
            Some(head) => head,
            None => DEFAULT_ORDER
                .into_iter()
                .find(|head| self.has_head(head.kind()))
                .ok_or_else(|| self.no_head("no prediction head"))?,
        };
        let (index, summary) = self
            .heads
            .iter()
            .enumerate()
            .find(|(_, summary)| summary.kind == head.kind())
            .ok_or_else(|| {
                self.no_head(&format!(
                    "no {} head for --target {}",
                    head.kind().name(),
                    head.spelling()
                ))
            })?;
        let tokens = encoded.ids.len();
        let check = |position: usize| -> Result<usize> {
            if position < tokens {
                Ok(position)
            } else {
                Err(ModelError::BadInput(format!(
                    "--target {}:{position}: the text has tokens 0 to {}",
                    head.spelling(),
                    tokens - 1
                )))
            }
        };
        let row = match head {
            TargetHead::Mlm => match spec.position {
                Some(position) => check(position)?,
                None => encoded
                    .ids
                    .iter()
                    .position(|&id| Some(id) == self.tokenizer.mask_id())
                    .ok_or_else(|| {
                        ModelError::BadInput(format!(
                            "the text has no {} token; type one, or give a position as the target: mlm:I",
                            self.tokenizer.mask_token().unwrap_or("mask")
                        ))
                    })?,
            },
            TargetHead::NextToken => check(spec.position.unwrap_or(tokens - 1))?,
            TargetHead::Classification => match summary.input {
                HeadInput::LastNonPadding { pad: Some(pad) } => {
                    encoded.ids.iter().rposition(|&id| id != pad).unwrap_or(0)
                }
                HeadInput::LastNonPadding { pad: None } => tokens - 1,
                _ => 0,
            },
            TargetHead::TokenClassification => match spec.position {
                Some(position) => check(position)?,
                None => encoded
                    .sentence
                    .iter()
                    .position(Option::is_some)
                    .unwrap_or(0),
            },
            TargetHead::QaStart | TargetHead::QaEnd => match spec.position {
                Some(position) => check(position)?,
                None => {
                    let own;
                    let trace = match trace {
                        Some(trace) => trace,
                        None => {
                            own = self.interventions()?.trace(input)?;
                            &own
                        }
                    };
                    let answer =
                        self.answer_of(encoded, self.last_states(trace, tokens), index)?;
                    if head == TargetHead::QaStart {
                        answer.start
                    } else {
                        answer.end
                    }
                }
            },
        };
        let output = match head {
            TargetHead::QaStart => Some(0),
            TargetHead::QaEnd => Some(1),
            TargetHead::Mlm | TargetHead::NextToken => spec
                .output
                .as_deref()
                .map(|token| self.token_id(token))
                .transpose()?
                .map(|id| id as usize),
            TargetHead::Classification | TargetHead::TokenClassification => spec
                .output
                .as_deref()
                .map(|label| self.label_id(label, summary.outputs))
                .transpose()?
                .map(|id| id as usize),
        };
        Ok(TargetPlan {
            head,
            position: (head != TargetHead::Classification).then_some(row),
            index: LogitIndex {
                head: index,
                row,
                output: output.unwrap_or(TOP_OUTPUT),
            },
            output,
        })
    }

    /// The target `plan` reads, with its output (the top one when the plan left it open) and
    /// its logit on the run.
    pub(crate) fn finish_target(&self, plan: &TargetPlan, output: usize, logit: f32) -> Target {
        let name = match plan.head {
            TargetHead::QaStart | TargetHead::QaEnd => None,
            TargetHead::Mlm | TargetHead::NextToken => self.tokenizer.id_to_token(output as u32),
            TargetHead::Classification | TargetHead::TokenClassification => {
                Some(self.config.label(output))
            }
        };
        Target {
            head: plan.head,
            position: plan.position,
            id: output as u32,
            name,
            logit,
            index: LogitIndex {
                output,
                ..plan.index
            },
        }
    }

    /// An error naming the targets this checkpoint can give.
    fn no_head(&self, what: &str) -> ModelError {
        let heads = self.target_heads();
        ModelError::BadInput(if heads.is_empty() {
            format!(
                "{} has {what}, and no prediction head to explain",
                self.name
            )
        } else {
            format!(
                "{} has {what}; its targets: {}",
                self.name,
                heads.join(", ")
            )
        })
    }

    /// The id of a token written as its vocabulary spelling (with or without the byte-level
    /// `Ġ` or SentencePiece `▁` that starts a word) or as a number.
    fn token_id(&self, token: &str) -> Result<u32> {
        let vocab = self.config.vocab_size;
        [token.to_owned(), format!("Ġ{token}"), format!("▁{token}")]
            .iter()
            .find_map(|spelling| self.tokenizer.token_to_id(spelling))
            .or_else(|| token.parse().ok())
            .filter(|&id: &u32| (id as usize) < vocab)
            .ok_or_else(|| {
                ModelError::BadInput(format!("{token:?} is not a token of this vocabulary"))
            })
    }

    /// The id of a label given by name or number.
    fn label_id(&self, label: &str, outputs: usize) -> Result<u32> {
        (0..outputs)
            .find(|&id| self.config.label(id) == label)
            .or_else(|| label.parse().ok().filter(|&id| id < outputs))
            .map(|id| id as u32)
            .ok_or_else(|| {
                let names: Vec<String> = (0..outputs).map(|id| self.config.label(id)).collect();
                ModelError::BadInput(format!(
                    "there is no label {label:?}; the labels: {}",
                    names.join(", ")
                ))
            })
    }

    /// The answer the question-answering head `index` gives on `last` (the last layer's
    /// output before any final norm, `[tokens, hidden]`), as `dump` reports it.
    fn answer_of(
        &self,
        encoded: &EncodedText,
        last: &[f32],
        index: usize,
    ) -> Result<super::Answer> {
        let tokens = encoded.ids.len();
        let logits = self.row_logits(last, index, &vec![true; tokens])?;
        let start: Vec<f32> = logits.iter().step_by(2).copied().collect();
        let end: Vec<f32> = logits.iter().skip(1).step_by(2).copied().collect();
        prediction_heads::answer(&prediction_heads::QaInput {
            start_logits: &start,
            end_logits: &end,
            sentence: &encoded.sentence,
            char_offsets: &encoded.char_offsets,
            context: encoded.text_b.as_deref().unwrap_or_default(),
        })
        .ok_or_else(|| {
            ModelError::BadInput(
                "the question-answering head reads a question and a context (--text-b); give both, or a position: --target answer-start:I".to_owned(),
            )
        })
    }
}
