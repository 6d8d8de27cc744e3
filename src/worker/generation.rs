//! Generation in the app: what the Generate tab asks the worker ([`GenerateRequest`]), what a
//! step sends back ([`GenerationUpdate`]), the worker's generator between steps
//! ([`GenerationSession`]), and the app's record of the generation so far
//! ([`GenerationState`]).
//!
//! Each step is one request, so that typing, *Stop* and every other request go between two
//! steps: the app asks for the next step of *Play* when the previous one has come back.

use std::sync::Arc;

use crate::model::generation::{
    Decoding, GenerationStep, Generator, NextToken, StopReason, TOP_CANDIDATES,
};
use crate::model::{LoadedModel, Result};

/// What the Generate tab asks of the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The text the generation continues.
    pub prompt: String,
    /// How many tokens of the sequence (prompt first) to keep before stepping: fewer than it
    /// has regenerates from there; `usize::MAX` keeps them all.
    pub keep: usize,
    /// Whether to take a step, or only to give the distribution the next step draws from.
    pub step: bool,
    /// How the step chooses.
    pub decoding: Decoding,
    /// The sampler's seed (changing it restarts the draws, keeping the tokens).
    pub seed: u64,
}

/// The distribution the next step draws from, before any processor: the processors are
/// applied where it is drawn, so that the tab's sliders redraw it at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Upcoming {
    /// The logits and the last token's attention rows.
    pub next: NextToken,
    /// The most probable tokens by logit (id, spelling), most probable first: the processors
    /// keep their order, so the same tokens lead at every setting.
    pub top: Vec<(u32, String)>,
    /// Its position: where the chosen token will go.
    pub position: usize,
}

/// How many of the most probable next tokens the Generate view draws.
pub const UPCOMING_SHOWN: usize = 20;

impl Upcoming {
    fn of(model: &LoadedModel, next: &NextToken, position: usize) -> Self {
        let mut order: Vec<usize> = (0..next.logits.len()).collect();
        let shown = UPCOMING_SHOWN.max(TOP_CANDIDATES).min(order.len());
        let by_logit =
            |&a: &usize, &b: &usize| next.logits[b].total_cmp(&next.logits[a]).then(a.cmp(&b));
        if shown > 0 {
            order.select_nth_unstable_by(shown - 1, by_logit);
        }
        order.truncate(shown);
        order.sort_by(by_logit);
        let tokenizer = model.tokenizer();
        Self {
            next: next.clone(),
            top: order
                .into_iter()
                .map(|id| {
                    let id = id as u32;
                    (id, tokenizer.id_to_token(id).unwrap_or_default())
                })
                .collect(),
            position,
        }
    }
}

/// What one generation request gave.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationUpdate {
    /// The text the generation continues.
    pub prompt: String,
    /// Its ids.
    pub prompt_ids: Vec<u32>,
    /// Its tokens' spellings.
    pub prompt_tokens: Vec<String>,
    /// The step taken, if one was asked for.
    pub step: Option<GenerationStep>,
    /// The prompt and everything generated, decoded together: the app's new text.
    pub text: String,
    /// The distribution of the next step, unless the positions are used up.
    pub upcoming: Option<Upcoming>,
    /// Why no further step can be taken (an end-of-text token, the positions), if so.
    pub ended: Option<StopReason>,
}

/// The worker's generator, kept between steps.
pub struct GenerationSession {
    prompt: String,
    seed: u64,
    prompt_tokens: Vec<String>,
    generator: Generator,
}

impl GenerationSession {
    /// Answers `request`, continuing `session` when it is of the same prompt and starting
    /// anew otherwise.
    pub fn answer(
        session: &mut Option<Self>,
        model: &LoadedModel,
        request: &GenerateRequest,
    ) -> Result<GenerationUpdate> {
        let current = session.take().filter(|s| s.prompt == request.prompt);
        let mut current = match current {
            Some(current) => current,
            None => {
                let encoded = model.tokenizer().encode(&request.prompt, None)?;
                Self {
                    prompt: request.prompt.clone(),
                    seed: request.seed,
                    generator: Generator::new(model, &encoded.ids, request.seed)?,
                    prompt_tokens: encoded.tokens,
                }
            }
        };
        if current.seed != request.seed {
            current.seed = request.seed;
            current.generator.reseed(request.seed);
        }
        let update = current.advance(model, request);
        // A failed step leaves the generator as it was, for the next request.
        *session = Some(current);
        update
    }

    fn advance(
        &mut self,
        model: &LoadedModel,
        request: &GenerateRequest,
    ) -> Result<GenerationUpdate> {
        let generator = &mut self.generator;
        generator.truncate(request.keep)?;
        let eos = &model.generation_defaults().eos_ids;
        let step = if request.step {
            Some(generator.step(model, &request.decoding)?)
        } else {
            None
        };
        let ended = if step.as_ref().is_some_and(|s| eos.contains(&s.chosen.id)) {
            Some(StopReason::EndOfText)
        } else if generator.room(model) == 0 {
            Some(StopReason::Positions)
        } else {
            None
        };
        let upcoming = if generator.room(model) > 0 {
            let position = generator.ids().len();
            Some(Upcoming::of(model, generator.next(model)?, position))
        } else {
            None
        };
        let prompt_ids = generator.ids()[..generator.prompt_tokens()].to_vec();
        Ok(GenerationUpdate {
            prompt: self.prompt.clone(),
            prompt_tokens: self.prompt_tokens[..prompt_ids.len().min(self.prompt_tokens.len())]
                .to_vec(),
            prompt_ids,
            step,
            text: model.tokenizer().decode(generator.ids())?,
            upcoming,
            ended,
        })
    }
}

/// The app's record of a generation: the prompt, every step so far, and the distribution of
/// the next one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationState {
    /// The text the generation continues; `None` before the first step (the tab then shows
    /// what would follow the text as it is).
    pub prompt: Option<String>,
    /// The prompt's ids.
    pub prompt_ids: Vec<u32>,
    /// The prompt's tokens.
    pub prompt_tokens: Vec<String>,
    /// Every step so far.
    pub steps: Vec<GenerationStep>,
    /// The text after the last step (what the app put into the text box), or the text the
    /// upcoming distribution is of.
    pub text: String,
    /// The distribution the next step draws from, for `text`.
    pub upcoming: Option<Arc<Upcoming>>,
    /// Why no further step can be taken, if so.
    pub ended: Option<StopReason>,
    /// The request in flight.
    pub pending: Option<u64>,
    /// Whether *Play* is on: the app asks for the next step when one comes back.
    pub playing: bool,
    /// Steps taken since *Play* was pressed.
    pub played: usize,
    /// Why the last request failed.
    pub error: Option<String>,
    /// The text the app's box held when it last took in a step (or asked for the first): a
    /// different text there means the person typed, which ends the generation.
    pub app_text: Option<String>,
    /// The text the last distribution was asked for before any step.
    pub previewed: Option<String>,
}

impl GenerationState {
    /// Takes in the answer to request `id`; false when it was not the newest (and is dropped).
    pub fn apply(&mut self, id: u64, update: &GenerationUpdate) -> bool {
        if self.pending != Some(id) {
            return false;
        }
        self.pending = None;
        self.error = None;
        if let Some(step) = &update.step {
            self.prompt = Some(update.prompt.clone());
            self.prompt_ids.clone_from(&update.prompt_ids);
            self.prompt_tokens.clone_from(&update.prompt_tokens);
            self.steps
                .truncate(step.position.saturating_sub(update.prompt_ids.len()));
            self.steps.push(step.clone());
            self.played += 1;
        }
        self.text.clone_from(&update.text);
        self.upcoming = update.upcoming.clone().map(Arc::new);
        self.ended = update.ended;
        if self.ended.is_some() {
            self.playing = false;
        }
        true
    }

    /// Takes in a failure of request `id`.
    pub fn fail(&mut self, id: u64, message: String) {
        if self.pending == Some(id) {
            self.pending = None;
            self.playing = false;
            self.error = Some(message);
        }
    }

    /// Whether a generation has begun.
    pub fn started(&self) -> bool {
        self.prompt.is_some()
    }

    /// The generation as `bertscope generate --out` writes it.
    pub fn document(&self) -> crate::model::generation::Generation {
        crate::model::generation::Generation {
            prompt_tokens: self.prompt_tokens.clone(),
            prompt_ids: self.prompt_ids.clone(),
            tokens: self.steps.iter().map(|s| s.chosen.token.clone()).collect(),
            ids: self.steps.iter().map(|s| s.chosen.id).collect(),
            text: self.text.clone(),
            stopped: self.ended.unwrap_or(StopReason::MaxNewTokens),
            steps: self.steps.clone(),
            notes: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeviceChoice, ModelSource};

    fn gpt2() -> LoadedModel {
        let folder =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-lm");
        LoadedModel::load(&ModelSource::Folder(folder), DeviceChoice::Cpu, &mut |_| {})
            .expect("the fixture loads")
    }

    fn request(prompt: &str, keep: usize, step: bool) -> GenerateRequest {
        GenerateRequest {
            prompt: prompt.to_owned(),
            keep,
            step,
            decoding: Decoding::Greedy,
            seed: 0,
        }
    }

    #[test]
    fn a_session_steps_regenerates_and_restarts_for_another_prompt() {
        let model = gpt2();
        let mut session = None;
        let mut state = GenerationState::default();
        let mut answer = |id: u64, request: GenerateRequest, state: &mut GenerationState| {
            state.pending = Some(id);
            let update =
                GenerationSession::answer(&mut session, &model, &request).expect("the step runs");
            assert!(state.apply(id, &update));
            update
        };
        let preview = answer(1, request("The quick", usize::MAX, false), &mut state);
        assert!(preview.step.is_none() && !state.started());
        let upcoming = preview.upcoming.expect("a distribution");
        assert_eq!(upcoming.position, preview.prompt_ids.len());
        assert_eq!(upcoming.top.len(), UPCOMING_SHOWN);
        for _ in 0..3 {
            answer(2, request("The quick", usize::MAX, true), &mut state);
        }
        let prompt = state.prompt_ids.len();
        assert_eq!(state.steps.len(), 3);
        assert_eq!(state.steps[2].position, prompt + 2);
        // The greedy step drew the upcoming distribution's most probable token.
        assert_eq!(state.steps[0].chosen.id, upcoming.top[0].0);
        let third = state.steps[2].chosen.id;
        answer(3, request("The quick", prompt + 2, true), &mut state);
        assert_eq!(state.steps.len(), 3);
        assert_eq!(
            state.steps[2].chosen.id, third,
            "greedy draws the same token again"
        );
        assert_eq!(state.document().ids.len(), 3);
        // Another prompt starts anew.
        let other = answer(4, request("A", usize::MAX, true), &mut state);
        assert_eq!(
            other.step.as_ref().expect("a step").position,
            other.prompt_ids.len()
        );
        // An answer to an older request is dropped.
        assert!(!state.apply(3, &other));
    }
}
