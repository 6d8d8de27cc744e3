//! Step-by-step generation for causal models with a language-model head: a key/value cache so
//! that each step runs only its new token ([`super::backend::Incremental`]), transformers'
//! logits processors with their exact semantics, and a seeded generator of our own.
//!
//! The processors follow `transformers/generation/logits_process.py` and the order in which
//! `GenerationMixin._get_logits_processor` applies them when sampling: `TemperatureLogitsWarper`
//! (only when T ≠ 1), `TopKLogitsWarper` (only when K ≠ 0), `TopPLogitsWarper` (only when
//! P < 1), then a softmax.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::backend::{ForwardInput, KvCache};
use super::error::{ModelError, Result};
use super::LoadedModel;

/// The sampling processors' settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// `TemperatureLogitsWarper`: the logits are divided by it (> 0).
    pub temperature: f64,
    /// `TopKLogitsWarper`: every score below the K-th largest is removed; 0 turns it off.
    pub top_k: usize,
    /// `TopPLogitsWarper`: the least probable tokens holding at most 1 − P of the mass are
    /// removed; 1 turns it off.
    pub top_p: f64,
}

impl Default for Sampling {
    /// transformers' defaults: T = 1, K = 50, P = 1.
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
        }
    }
}

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// The most probable token (the first of equals, as `argmax` gives).
    Greedy,
    /// Drawn from the processed distribution.
    Sample(Sampling),
}

/// What a checkpoint says about decoding: its `generation_config.json` where there is one, and
/// the end-of-text ids of `config.json` otherwise.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationDefaults {
    /// `do_sample`; without the file, false (greedy), as transformers does.
    pub do_sample: bool,
    /// The file's temperature, top-k and top-p, transformers' defaults where it is silent.
    pub sampling: Sampling,
    /// The ids that end a generation (`eos_token_id`, one or a list).
    pub eos_ids: Vec<u32>,
    /// The processors the file asks for that bertscope does not apply, by their key.
    pub not_applied: Vec<String>,
}

impl GenerationDefaults {
    /// Reads `config.json` and, when given, `generation_config.json`.
    pub fn read(config: &Path, generation_config: Option<&Path>) -> Result<Self> {
        let json = |path: &Path| -> Result<Value> {
            let text = std::fs::read_to_string(path).map_err(|err| ModelError::Io {
                path: path.to_owned(),
                reason: err.to_string(),
            })?;
            serde_json::from_str(&text).map_err(|err| ModelError::BadConfig {
                path: path.to_owned(),
                reason: format!("not valid JSON ({err})"),
            })
        };
        let eos_of = |value: &Value| -> Vec<u32> {
            match value.get("eos_token_id") {
                Some(Value::Number(id)) => id.as_u64().map(|id| id as u32).into_iter().collect(),
                Some(Value::Array(ids)) => ids
                    .iter()
                    .filter_map(|id| id.as_u64().map(|id| id as u32))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut defaults = Self {
            eos_ids: eos_of(&json(config)?),
            ..Self::default()
        };
        let Some(path) = generation_config else {
            return Ok(defaults);
        };
        let file = json(path)?;
        if file.get("eos_token_id").is_some() {
            defaults.eos_ids = eos_of(&file);
        }
        defaults.do_sample = file
            .get("do_sample")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let number = |key: &str| file.get(key).and_then(Value::as_f64);
        if let Some(temperature) = number("temperature") {
            defaults.sampling.temperature = temperature;
        }
        if let Some(top_k) = file.get("top_k").and_then(Value::as_u64) {
            defaults.sampling.top_k = top_k as usize;
        }
        if let Some(top_p) = number("top_p") {
            defaults.sampling.top_p = top_p;
        }
        defaults.not_applied = unapplied_processors(&file);
        Ok(defaults)
    }
}

/// The keys of `generation_config.json` that would add a logits processor bertscope does not
/// apply, each as `key=value`.
fn unapplied_processors(file: &Value) -> Vec<String> {
    let set = |key: &str, unset: &dyn Fn(&Value) -> bool| -> Option<String> {
        let value = file.get(key)?;
        (!value.is_null() && !unset(value)).then(|| format!("{key}={value}"))
    };
    let equals = |default: f64| move |value: &Value| value.as_f64() == Some(default);
    let at_most = |limit: f64| move |value: &Value| value.as_f64().is_some_and(|v| v <= limit);
    let outside_unit = |value: &Value| value.as_f64().is_none_or(|v| v <= 0.0 || v >= 1.0);
    let never = |_: &Value| false;
    [
        set("repetition_penalty", &equals(1.0)),
        set("encoder_repetition_penalty", &equals(1.0)),
        set("no_repeat_ngram_size", &at_most(0.0)),
        set("encoder_no_repeat_ngram_size", &at_most(0.0)),
        set("min_length", &at_most(0.0)),
        set("min_new_tokens", &at_most(0.0)),
        set("guidance_scale", &equals(1.0)),
        set("typical_p", &equals(1.0)),
        set("epsilon_cutoff", &outside_unit),
        set("eta_cutoff", &outside_unit),
        set("min_p", &never),
        set("top_h", &never),
        set("bad_words_ids", &never),
        set("sequence_bias", &never),
        set("forced_bos_token_id", &never),
        set("forced_eos_token_id", &never),
        set("suppress_tokens", &never),
        set("begin_suppress_tokens", &never),
        set("exponential_decay_length_penalty", &never),
        set("remove_invalid_values", &|value: &Value| {
            value != &Value::Bool(true)
        }),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What a person asked for on the command line or in the window, before the checkpoint's
/// defaults fill the gaps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DecodingRequest {
    /// `--greedy`.
    pub greedy: bool,
    /// `--temperature`.
    pub temperature: Option<f64>,
    /// `--top-k` (negative values are refused).
    pub top_k: Option<i64>,
    /// `--top-p`.
    pub top_p: Option<f64>,
    /// `--seed`.
    pub seed: Option<u64>,
}

impl DecodingRequest {
    /// The decoding it asks for: greedy with `greedy`, sampling with any sampling option, and
    /// otherwise what the checkpoint's `do_sample` says; one line saying what to do when an
    /// option is out of range or the options contradict each other.
    pub fn resolve(&self, defaults: &GenerationDefaults) -> Result<Decoding> {
        let sampling_options = self.temperature.is_some()
            || self.top_k.is_some()
            || self.top_p.is_some()
            || self.seed.is_some();
        if self.greedy && sampling_options {
            return Err(ModelError::BadInput(
                "--greedy takes the most probable token and cannot be combined with --temperature, --top-k, --top-p or --seed; leave out one or the other".to_owned(),
            ));
        }
        if self.greedy || !(sampling_options || defaults.do_sample) {
            return Ok(Decoding::Greedy);
        }
        if let Some(top_k) = self.top_k.filter(|&k| k < 0) {
            return Err(ModelError::BadInput(format!(
                "--top-k is {top_k}; give 0 (off) or a positive number of tokens to keep"
            )));
        }
        let sampling = Sampling {
            temperature: self.temperature.unwrap_or(defaults.sampling.temperature),
            top_k: self.top_k.map_or(defaults.sampling.top_k, |k| k as usize),
            top_p: self.top_p.unwrap_or(defaults.sampling.top_p),
        };
        check_sampling(&sampling)?;
        Ok(Decoding::Sample(sampling))
    }
}

/// Refuses a temperature that is not positive and a top-p outside (0, 1], in one line.
pub fn check_sampling(sampling: &Sampling) -> Result<()> {
    if !(sampling.temperature > 0.0 && sampling.temperature.is_finite()) {
        return Err(ModelError::BadInput(format!(
            "the temperature is {}; give a number above 0 (1 leaves the distribution as it is, or use --greedy)",
            sampling.temperature
        )));
    }
    if !(sampling.top_p > 0.0 && sampling.top_p <= 1.0) {
        return Err(ModelError::BadInput(format!(
            "top-p is {}; give a probability mass above 0 and at most 1 (1 turns it off)",
            sampling.top_p
        )));
    }
    Ok(())
}

/// One distribution before and after the processors.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    /// The softmax of the logits.
    pub probs: Vec<f32>,
    /// The softmax of the processed scores (removed tokens: 0).
    pub probs_after: Vec<f32>,
    /// How many tokens the processors kept.
    pub kept: usize,
}

/// The softmax of `scores` in f32, as torch's: −∞ gives exactly 0.
pub fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = scores.iter().map(|&s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().map(|&e| f64::from(e)).sum();
    let inverse = (1.0 / sum) as f32;
    exps.into_iter().map(|e| e * inverse).collect()
}

/// The scores after transformers' warpers for `sampling`, removed tokens at −∞.
pub fn warp(logits: &[f32], sampling: &Sampling) -> Vec<f32> {
    let mut scores = logits.to_vec();
    if sampling.temperature != 1.0 {
        let temperature = sampling.temperature as f32;
        scores.iter_mut().for_each(|s| *s /= temperature);
    }
    if sampling.top_k != 0 && !scores.is_empty() {
        let k = sampling.top_k.min(scores.len());
        let mut sorted = scores.clone();
        sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        // Only scores *below* the K-th are removed: its equals survive.
        scores
            .iter_mut()
            .filter(|s| **s < kth)
            .for_each(|s| *s = f32::NEG_INFINITY);
    }
    if sampling.top_p < 1.0 && !scores.is_empty() {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let ascending: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
        // torch compares the f32 cumulative sums with 1 − P cast to f32.
        let threshold = (1.0 - sampling.top_p) as f32;
        let mut cumulative = 0f64;
        let last = order.len() - 1;
        let removed: Vec<usize> = softmax(&ascending)
            .into_iter()
            .zip(&order)
            .enumerate()
            .filter_map(|(rank, (prob, &index))| {
                cumulative += f64::from(prob);
                (rank != last && (cumulative as f32) <= threshold).then_some(index)
            })
            .collect();
        for index in removed {
            scores[index] = f32::NEG_INFINITY;
        }
    }
    scores
}

/// The distribution of `logits` before and after the processors of `decoding`.
pub fn process(logits: &[f32], decoding: &Decoding) -> Processed {
    let probs = softmax(logits);
    match decoding {
        Decoding::Greedy => Processed {
            probs_after: probs.clone(),
            kept: logits.len(),
            probs,
        },
        Decoding::Sample(sampling) => {
            let scores = warp(logits, sampling);
            Processed {
                kept: scores.iter().filter(|s| s.is_finite()).count(),
                probs_after: softmax(&scores),
                probs,
            }
        }
    }
}

/// A small, seeded generator (xoshiro256**, seeded through SplitMix64): the same seed gives the
/// same draws on every machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn seeded(seed: u64) -> Self {
        let mut mix = seed;
        let mut next = || {
            mix = mix.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = mix;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            state: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform draw from [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The token `decoding` chooses from one step's logits and processed distribution.
pub fn choose(logits: &[f32], processed: &Processed, decoding: &Decoding, rng: &mut Rng) -> u32 {
    let first_max = |values: &[f32]| {
        values
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(best, max), (i, &v)| {
                if v > max {
                    (i, v)
                } else {
                    (best, max)
                }
            })
            .0 as u32
    };
    match decoding {
        Decoding::Greedy => first_max(logits),
        Decoding::Sample(_) => {
            let total: f64 = processed.probs_after.iter().map(|&p| f64::from(p)).sum();
            let target = rng.next_f64() * total;
            let mut cumulative = 0f64;
            let mut last_kept = first_max(&processed.probs_after);
            for (id, &prob) in processed.probs_after.iter().enumerate() {
                if prob > 0.0 {
                    cumulative += f64::from(prob);
                    last_kept = id as u32;
                    if cumulative > target {
                        return id as u32;
                    }
                }
            }
            last_kept
        }
    }
}

/// One token of the vocabulary at a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Its vocabulary spelling.
    pub token: String,
    /// Its id.
    pub id: u32,
    /// Its logit.
    pub logit: f32,
    /// Its probability before the processors.
    pub prob: f32,
    /// Its probability after them.
    pub prob_after: f32,
}

/// The token a step chose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chosen {
    /// Its vocabulary spelling.
    pub token: String,
    /// Its id.
    pub id: u32,
    /// Its probability before the processors.
    pub prob: f32,
    /// Its probability after them.
    pub prob_after: f32,
}

/// One generation step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationStep {
    /// The chosen token's position in the whole sequence.
    pub position: usize,
    /// The chosen token.
    pub chosen: Chosen,
    /// The ten most probable tokens before the processors.
    pub top_k: Vec<Candidate>,
    /// How many tokens survived the processors.
    pub kept: usize,
    /// `[layer][head][key]`: the row of the token whose state predicted this one (the one
    /// before it), over the prompt and every token generated before this one.
    pub attentions: Vec<Vec<Vec<f32>>>,
}

/// The distribution after the tokens run so far: the logits of the next token and the last
/// token's attention rows.
#[derive(Debug, Clone, PartialEq)]
pub struct NextToken {
    /// The language-model head's logits, `[vocab]`.
    pub logits: Vec<f32>,
    /// `[layers, heads, keys]`.
    pub attention: Vec<f32>,
    /// Layers and heads of `attention`.
    pub layers: usize,
    /// Heads per layer.
    pub heads: usize,
}

impl NextToken {
    /// The attention rows nested `[layer][head][key]`.
    pub fn nested_attention(&self) -> Vec<Vec<Vec<f32>>> {
        let keys = self.attention.len() / (self.layers * self.heads).max(1);
        self.attention
            .chunks(self.heads * keys.max(1))
            .map(|layer| layer.chunks(keys.max(1)).map(<[f32]>::to_vec).collect())
            .collect()
    }

    /// One step's record when `id` is chosen from this distribution.
    pub fn step(
        &self,
        model: &LoadedModel,
        position: usize,
        id: u32,
        processed: &Processed,
    ) -> GenerationStep {
        let tokenizer = model.tokenizer();
        let spelling = |id: u32| tokenizer.id_to_token(id).unwrap_or_default();
        let mut order: Vec<usize> = (0..self.logits.len()).collect();
        let shown = TOP_CANDIDATES.min(order.len());
        if shown > 0 {
            order.select_nth_unstable_by(shown - 1, |&a, &b| {
                self.logits[b].total_cmp(&self.logits[a]).then(a.cmp(&b))
            });
        }
        order.truncate(shown);
        order.sort_by(|&a, &b| self.logits[b].total_cmp(&self.logits[a]).then(a.cmp(&b)));
        GenerationStep {
            position,
            chosen: Chosen {
                token: spelling(id),
                id,
                prob: processed.probs[id as usize],
                prob_after: processed.probs_after[id as usize],
            },
            top_k: order
                .into_iter()
                .map(|i| Candidate {
                    token: spelling(i as u32),
                    id: i as u32,
                    logit: self.logits[i],
                    prob: processed.probs[i],
                    prob_after: processed.probs_after[i],
                })
                .collect(),
            kept: processed.kept,
            attentions: self.nested_attention(),
        }
    }
}

/// How many of the most probable tokens each step lists.
pub const TOP_CANDIDATES: usize = 10;

/// A generation in progress: the tokens so far, the cache of the ones run, and the generator.
pub struct Generator {
    ids: Vec<u32>,
    prompt_tokens: usize,
    cache: KvCache,
    next: Option<NextToken>,
    head: usize,
    rng: Rng,
}

impl Generator {
    /// Starts from prompt ids; one line saying what to do when the model cannot generate or
    /// the prompt is empty or too long.
    pub fn new(model: &LoadedModel, prompt: &[u32], seed: u64) -> Result<Self> {
        let head = model.generation_head()?;
        if prompt.is_empty() {
            return Err(ModelError::BadInput(
                "the prompt is empty; give at least one word to continue".to_owned(),
            ));
        }
        let max = model.config().max_tokens();
        if prompt.len() > max {
            return Err(ModelError::BadInput(format!(
                "the prompt has {} tokens, more than the model's {max} positions; shorten it",
                prompt.len()
            )));
        }
        Ok(Self {
            ids: prompt.to_vec(),
            prompt_tokens: prompt.len(),
            cache: KvCache::new(),
            next: None,
            head,
            rng: Rng::seeded(seed),
        })
    }

    /// Every token so far, the prompt's first.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// How many of [`Generator::ids`] are the prompt.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// How many tokens can still be generated before the positions run out.
    pub fn room(&self, model: &LoadedModel) -> usize {
        model.config().max_tokens().saturating_sub(self.ids.len())
    }

    /// Restarts the generator's draws from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = Rng::seeded(seed);
    }

    /// The distribution after the tokens so far, running the ones the cache lacks (the whole
    /// prompt at first, then one token).
    pub fn next(&mut self, model: &LoadedModel) -> Result<&NextToken> {
        if self.next.is_none() {
            let run = self.cache.tokens();
            let positions = model.config().position_ids(&self.ids);
            let input = ForwardInput::new(&self.ids[run..], &positions[run..], None);
            let extended = model.incremental().extend(&mut self.cache, &input)?;
            let logits = model
                .row_logits(&extended.last_state, self.head, &[false])?
                .into_vec();
            self.next = Some(NextToken {
                logits,
                attention: extended.attention,
                layers: model.config().num_hidden_layers,
                heads: model.config().num_attention_heads,
            });
        }
        Ok(self.next.as_ref().expect("computed above"))
    }

    /// Chooses the next token as `decoding` says and appends it; one line when the positions
    /// are used up.
    pub fn step(&mut self, model: &LoadedModel, decoding: &Decoding) -> Result<GenerationStep> {
        if self.room(model) == 0 {
            return Err(ModelError::BadInput(format!(
                "the text fills the model's {} positions; nothing more can be generated",
                model.config().max_tokens()
            )));
        }
        let position = self.ids.len();
        let mut rng = self.rng.clone();
        let next = self.next(model)?;
        let processed = process(&next.logits, decoding);
        let id = choose(&next.logits, &processed, decoding, &mut rng);
        let step = next.step(model, position, id, &processed);
        self.rng = rng;
        self.ids.push(id);
        self.next = None;
        Ok(step)
    }

    /// Forgets every token from `len` on (at least one is kept), to generate again from there.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        let len = len.max(1);
        if len >= self.ids.len() {
            return Ok(());
        }
        self.ids.truncate(len);
        self.prompt_tokens = self.prompt_tokens.min(len);
        // The last kept token runs again, so that its state gives the next distribution.
        self.cache.truncate(len - 1)?;
        self.next = None;
        Ok(())
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The requested number of tokens was generated.
    MaxNewTokens,
    /// An end-of-text token was generated.
    EndOfText,
    /// The stop text appeared.
    StopText,
    /// The model's positions ran out.
    Positions,
}

/// What `bertscope generate` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    /// The prompt's tokens.
    pub prompt_tokens: Vec<String>,
    /// The prompt's ids.
    pub prompt_ids: Vec<u32>,
    /// The generated tokens.
    pub tokens: Vec<String>,
    /// The generated ids.
    pub ids: Vec<u32>,
    /// The prompt and its continuation, decoded together.
    pub text: String,
    /// Why it ended.
    pub stopped: StopReason,
    /// Every step.
    pub steps: Vec<GenerationStep>,
    /// What was cut or changed, for standard error.
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// What a generation run asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// How many tokens at most (≥ 1).
    pub max_new_tokens: usize,
    /// Greedy or sampling.
    pub decoding: Decoding,
    /// The generator's seed.
    pub seed: u64,
    /// A text that ends the generation once the continuation contains it.
    pub stop: Option<String>,
}

/// Generates from `prompt`, calling `on_text` with each new piece of decoded text as soon as it
/// is whole (a character split across tokens waits for its last byte).
pub fn generate(
    model: &LoadedModel,
    prompt: &str,
    options: &GenerateOptions,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(ModelError::BadInput(
            "the prompt is empty; give --text with at least one word to continue".to_owned(),
        ));
    }
    if options.max_new_tokens == 0 {
        return Err(ModelError::BadInput(
            "--max-new-tokens is 0; ask for at least one token".to_owned(),
        ));
    }
    model.generation_head()?;
    let encoded = model.tokenizer().encode(prompt, None)?;
    let mut notes = Vec::new();
    if encoded.dropped_tokens > 0 {
        notes.push(format!(
            "the prompt was cut by {} tokens to fit the model's {} positions",
            encoded.dropped_tokens,
            model.config().max_tokens()
        ));
    }
    let mut generator = Generator::new(model, &encoded.ids, options.seed)?;
    let room = generator.room(model);
    if room == 0 {
        return Err(ModelError::BadInput(format!(
            "the prompt fills the model's {} positions; shorten it to leave room to generate",
            model.config().max_tokens()
        )));
    }
    let wanted = options.max_new_tokens;
    if wanted > room {
        notes.push(format!(
            "{wanted} new tokens do not fit the model's {} positions; generating at most {room}",
            model.config().max_tokens()
        ));
    }
    let eos = &model.generation_defaults().eos_ids;
    let mut steps = Vec::new();
    let mut shown = 0;
    let mut stopped = StopReason::Positions;
    for _ in 0..wanted.min(room) {
        let step = generator.step(model, &options.decoding)?;
        let id = step.chosen.id;
        steps.push(step);
        let continuation = continuation_text(model, generator.ids(), generator.prompt_tokens())?;
        if !continuation.ends_with('\u{FFFD}') && continuation.len() > shown {
            if let Some(piece) = continuation.get(shown..) {
                on_text(piece);
            }
            shown = continuation.len();
        }
        if eos.contains(&id) {
            stopped = StopReason::EndOfText;
            break;
        }
        if let Some(stop) = options.stop.as_deref().filter(|stop| !stop.is_empty()) {
            if continuation.contains(stop) {
                stopped = StopReason::StopText;
                break;
            }
        }
        if steps.len() == wanted {
            stopped = StopReason::MaxNewTokens;
        }
    }
    let ids = generator.ids()[generator.prompt_tokens()..].to_vec();
    let tokenizer = model.tokenizer();
    let continuation = continuation_text(model, generator.ids(), generator.prompt_tokens())?;
    if let Some(rest) = continuation.get(shown..).filter(|rest| !rest.is_empty()) {
        on_text(rest);
    }
    let spell = |ids: &[u32]| -> Vec<String> {
        ids.iter()
            .map(|&id| tokenizer.id_to_token(id).unwrap_or_default())
            .collect()
    };
    Ok(Generation {
        prompt_tokens: encoded.tokens.clone(),
        prompt_ids: encoded.ids.clone(),
        tokens: spell(&ids),
        text: tokenizer.decode(generator.ids())?,
        ids,
        stopped,
        steps,
        notes,
    })
}

/// The text of the tokens after the prompt's first `prompt` ones, as it reads after the
/// prompt: decoded behind the prompt's last few tokens and cut after their text, because
/// decoders treat a sequence's first piece apart (SentencePiece's `▁` loses its space there).
fn continuation_text(model: &LoadedModel, ids: &[u32], prompt: usize) -> Result<String> {
    const CONTEXT: usize = 4;
    let tokenizer = model.tokenizer();
    let start = prompt.saturating_sub(CONTEXT);
    let context = tokenizer.decode(&ids[start..prompt])?;
    let whole = tokenizer.decode(&ids[start..])?;
    Ok(match whole.strip_prefix(&context) {
        Some(rest) => rest.to_owned(),
        None => tokenizer.decode(&ids[prompt..])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(temperature: f64, top_k: usize, top_p: f64) -> Decoding {
        Decoding::Sample(Sampling {
            temperature,
            top_k,
            top_p,
        })
    }

    #[test]
    fn top_k_keeps_every_score_tied_with_the_kth() {
        let logits = [3.0, 1.0, 2.0, 2.0, 0.5];
        let processed = process(&logits, &sampling(1.0, 2, 1.0));
        assert_eq!(processed.kept, 3);
        assert_eq!(processed.probs_after[1], 0.0);
        assert_eq!(processed.probs_after[4], 0.0);
        assert!((processed.probs_after.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // K = 0 is off; K beyond the vocabulary keeps it all.
        assert_eq!(process(&logits, &sampling(1.0, 0, 1.0)).kept, 5);
        assert_eq!(process(&logits, &sampling(1.0, 9, 1.0)).kept, 5);
    }

    #[test]
    fn top_p_removes_the_tail_holding_at_most_one_minus_p_and_keeps_one() {
        // Probabilities 0.5, 0.25, 0.125, 0.125.
        let logits = [4f32.ln(), 2f32.ln(), 0.0, 0.0];
        let probs = softmax(&logits);
        let tail = probs[2] + probs[3];
        let processed = process(&logits, &sampling(1.0, 0, 1.0 - f64::from(tail) - 1e-3));
        assert_eq!(processed.kept, 2);
        let processed = process(&logits, &sampling(1.0, 0, 1e-9));
        assert_eq!(processed.kept, 1);
        assert_eq!(processed.probs_after[0], 1.0);
    }

    #[test]
    fn temperature_sharpens_and_greedy_takes_the_first_maximum() {
        let logits = [1.0, 2.0, 2.0];
        let cold = process(&logits, &sampling(0.5, 0, 1.0));
        assert!(cold.probs_after[1] > cold.probs[1]);
        let greedy = process(&logits, &Decoding::Greedy);
        assert_eq!(greedy.probs, greedy.probs_after);
        assert_eq!(
            choose(&logits, &greedy, &Decoding::Greedy, &mut Rng::seeded(0)),
            1
        );
    }

    #[test]
    fn draws_follow_the_distribution_and_repeat_with_the_seed() {
        let logits = [0.0, 1.0, 2.0, -1.0];
        let decoding = sampling(1.0, 0, 1.0);
        let processed = process(&logits, &decoding);
        let mut rng = Rng::seeded(42);
        let mut counts = [0usize; 4];
        let draws = 20_000;
        for _ in 0..draws {
            counts[choose(&logits, &processed, &decoding, &mut rng) as usize] += 1;
        }
        for (count, prob) in counts.iter().zip(&processed.probs_after) {
            let share = *count as f32 / draws as f32;
            assert!((share - prob).abs() < 0.015, "{share} {prob}");
        }
        let mut a = Rng::seeded(7);
        let mut b = Rng::seeded(7);
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(Rng::seeded(7).next_u64(), Rng::seeded(8).next_u64());
    }

    #[test]
    fn contradicting_or_out_of_range_options_are_refused() {
        let defaults = GenerationDefaults::default();
        let refused = |request: DecodingRequest| request.resolve(&defaults).is_err();
        assert!(refused(DecodingRequest {
            greedy: true,
            temperature: Some(0.7),
            ..Default::default()
        }));
        assert!(refused(DecodingRequest {
            temperature: Some(0.0),
            ..Default::default()
        }));
        assert!(refused(DecodingRequest {
            top_k: Some(-1),
            ..Default::default()
        }));
        assert!(refused(DecodingRequest {
            top_p: Some(1.5),
            ..Default::default()
        }));
        assert!(refused(DecodingRequest {
            top_p: Some(0.0),
            ..Default::default()
        }));
        assert_eq!(
            DecodingRequest::default().resolve(&defaults).unwrap(),
            Decoding::Greedy
        );
        let sampling_file = GenerationDefaults {
            do_sample: true,
            ..GenerationDefaults::default()
        };
        assert_eq!(
            DecodingRequest::default().resolve(&sampling_file).unwrap(),
            Decoding::Sample(Sampling::default())
        );
    }

    #[test]
    fn processors_the_file_asks_for_are_named() {
        let file: Value = serde_json::json!({
            "repetition_penalty": 1.2, "no_repeat_ngram_size": 0, "top_k": 20,
            "min_p": null, "bad_words_ids": [[1]]
        });
        assert_eq!(
            unapplied_processors(&file),
            vec!["repetition_penalty=1.2", "bad_words_ids=[[1]]"]
        );
    }
}
