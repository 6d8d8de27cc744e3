//! `config.json` of a checkpoint, read by its family's description (see [`super::family`]) and
//! validated so that later code can trust it. The result names what every family has in
//! transformers' canonical attribute names (`hidden_size`, `num_hidden_layers`, ...), and the
//! order of operations the family runs in ([`Architecture`]).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::{ModelError, Result};
use super::family_id::Family;

/// An activation function, inside a feed-forward block or a prediction head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact, erf-based GELU (transformers' default for BERT).
    GeluErf,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation (GPT-2's default).
    GeluTanh,
    /// `relu`.
    Relu,
    /// `tanh` (BERT's pooler, RoBERTa's classification head).
    Tanh,
    /// `silu` / `swish`: `x·σ(x)` (the gate of Llama's SwiGLU).
    Silu,
}

impl Activation {
    /// Reads a transformers activation name (`hidden_act`, `activation`, `activation_function`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Self::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Self::GeluTanh,
            "relu" => Self::Relu,
            "tanh" => Self::Tanh,
            "silu" | "swish" => Self::Silu,
            _ => return None,
        })
    }
}

/// Where each layer normalises: after the residual sum (BERT) or before each block (GPT-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x = norm(x + attention(x)); x = norm(x + ffn(x))`.
    Post,
    /// `x = x + attention(norm(x)); x = x + ffn(norm(x))`.
    Pre,
}

/// How position ids are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionIds {
    /// `0, 1, 2, ...`.
    FromZero,
    /// RoBERTa's: tokens other than padding count up from `pad + 1`; padding tokens get `pad`.
    AfterPadding {
        /// The padding token's id, which is also the first position number.
        pad: u32,
    },
}

/// What the model's segment (token type) embeddings receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segments {
    /// The tokenizer's segment ids: 0 for sentence A, 1 for sentence B (BERT).
    FromTokenizer,
    /// Always 0: the embedding exists but transformers never passes token types (RoBERTa).
    Zeros,
    /// The family has no segment embedding (DistilBERT, GPT-2).
    Absent,
}

/// Which keys a query may see in one layer, besides causal masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "size")]
pub enum KeyWindow {
    /// Every key (or, causally, every earlier key).
    #[default]
    Whole,
    /// A causal sliding window of this many keys, the query's own included: key `j` is seen
    /// from query `i` when `i − W < j ≤ i` (transformers' `sliding_window_overlay`).
    Sliding(usize),
    /// A bidirectional local window: key `j` is seen from query `i` when `|i − j| ≤` this half
    /// width (ModernBERT's `local_attention / 2`).
    Local(usize),
}

impl KeyWindow {
    /// The keys query `query` sees among `keys` (positions in the whole sequence), as one range.
    pub fn keys_seen(self, causal: bool, query: usize, keys: usize) -> std::ops::Range<usize> {
        let mut end = if causal { (query + 1).min(keys) } else { keys };
        let start = match self {
            Self::Whole => 0,
            Self::Sliding(size) => (query + 1).saturating_sub(size),
            Self::Local(half) => {
                end = end.min(query + half + 1);
                query.saturating_sub(half)
            }
        };
        start.min(end)..end
    }
}

/// Rotary position embeddings of one layer (RoFormer's, in transformers' "rotate half" layout):
/// dimension pair `(f, f + d/2)` of each query and key at position `p` turns by `p·inv_freq[f]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotary {
    /// One inverse frequency per dimension pair, `[head_dim / 2]`, computed as transformers
    /// computes them in f32 (with any rope scaling applied).
    pub inv_freq: Vec<f32>,
    /// transformers' `attention_scaling`, multiplied into cos and sin (1 for the types read).
    pub scaling: f32,
}

impl Rotary {
    /// The plain rotary embedding of `head_dim`-wide heads with base `theta`:
    /// `inv_freq[f] = 1/θ^(2f/d)`, in f32 as transformers computes it.
    pub fn new(head_dim: usize, theta: f64) -> Self {
        let dim = head_dim as f32;
        let base = theta as f32;
        Self {
            inv_freq: (0..head_dim / 2)
                .map(|pair| 1.0 / base.powf((2 * pair) as f32 / dim))
                .collect(),
            scaling: 1.0,
        }
    }

    /// `cos` and `sin` of every position's angles, `[positions, head_dim / 2]` each, in f32 as
    /// transformers computes them (`position · inv_freq`, then cos and sin).
    pub fn tables(&self, positions: &[u32]) -> (Vec<f32>, Vec<f32>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &position in positions {
            for &inv_freq in &self.inv_freq {
                let angle = position as f32 * inv_freq;
                cos.push(angle.cos() * self.scaling);
                sin.push(angle.sin() * self.scaling);
            }
        }
        (cos, sin)
    }
}

/// The order of operations of a family: everything a backend needs besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    /// Post- or pre-LayerNorm layers.
    pub norm: NormPlacement,
    /// Causal (a token sees only itself and earlier tokens) or bidirectional attention.
    pub causal: bool,
    /// A LayerNorm right after the embedding sum.
    pub embedding_norm: bool,
    /// A LayerNorm after the last layer (GPT-2's `ln_f`), applied to the last hidden state.
    pub final_norm: bool,
    /// How position ids are numbered.
    pub positions: PositionIds,
    /// Whether the position table holds fixed sinusoids (DistilBERT's `sinusoidal_pos_embds`),
    /// computed when a checkpoint does not store them.
    pub sinusoidal_positions: bool,
    /// What the segment embedding receives.
    pub segments: Segments,
    /// The factor applied to `q·k` in each layer (usually `1/√head_dim`).
    pub attention_scales: Vec<f32>,
    /// Whether the model reads a sentence pair.
    pub takes_pairs: bool,
    /// Whether the feed-forward block is gated (Llama's SwiGLU): its first layer computes a
    /// gate and an "up" projection, stacked, and the second reads `act(gate) · up`.
    pub gated_ffn: bool,
    /// Per layer, which keys a query sees besides causality; empty: every layer sees every key.
    pub windows: Vec<KeyWindow>,
    /// Per layer, the rotary embedding of its queries and keys; empty: none (the family adds
    /// learned or sinusoidal position embeddings instead).
    pub rotary: Vec<Option<Rotary>>,
    /// A factor on the word embeddings (Gemma's `√hidden`).
    pub embedding_scale: Option<f32>,
    /// Soft-capping of every attention score, `c·tanh(s/c)`, after scaling and before the mask
    /// (Gemma's `attn_logit_softcapping`).
    pub attention_softcap: Option<f32>,
    /// Soft-capping of the language-model head's logits (Gemma's `final_logit_softcapping`).
    pub logit_softcap: Option<f32>,
    /// The activation inside prediction and classification heads, where the config names it
    /// apart from the layers' (ModernBERT's `classifier_activation`).
    pub head_activation: Option<Activation>,
    /// Whether a sequence classifier pools the mean of every token rather than reading one
    /// (ModernBERT's `classifier_pooling = "mean"`).
    pub mean_pooling: bool,
    /// Whether each block's whole output is normalised before the residual sum (Gemma 3's
    /// post-norms), so that an attention block's output does not split into its heads'.
    pub block_post_norms: bool,
}

impl Architecture {
    /// The plain order of operations most families share; descriptions change what differs.
    pub fn new(norm: NormPlacement, causal: bool, attention_scales: Vec<f32>) -> Self {
        Self {
            norm,
            causal,
            embedding_norm: false,
            final_norm: false,
            positions: PositionIds::FromZero,
            sinusoidal_positions: false,
            segments: Segments::Absent,
            attention_scales,
            takes_pairs: false,
            gated_ffn: false,
            windows: Vec::new(),
            rotary: Vec::new(),
            embedding_scale: None,
            attention_softcap: None,
            logit_softcap: None,
            head_activation: None,
            mean_pooling: false,
            block_post_norms: false,
        }
    }

    /// Layer `layer`'s key window.
    pub fn window(&self, layer: usize) -> KeyWindow {
        self.windows.get(layer).copied().unwrap_or_default()
    }

    /// The keys query `query` sees in layer `layer`, among `keys`.
    pub fn keys_seen(&self, layer: usize, query: usize, keys: usize) -> std::ops::Range<usize> {
        self.window(layer).keys_seen(self.causal, query, keys)
    }

    /// Layer `layer`'s rotary embedding, when it has one.
    pub fn rotary(&self, layer: usize) -> Option<&Rotary> {
        self.rotary.get(layer).and_then(Option::as_ref)
    }

    /// Whether any layer limits its keys to a window.
    pub fn has_windows(&self) -> bool {
        self.windows
            .iter()
            .any(|window| *window != KeyWindow::Whole)
    }

    /// Whether this is an order of operations the batched runs behind attribution, patching
    /// and logit attribution compute (LayerNorm, learned positions, one key/value head per
    /// query head, an ungated feed-forward block, every key seen).
    pub fn plain(&self) -> bool {
        !self.gated_ffn
            && self.rotary.is_empty()
            && !self.has_windows()
            && self.embedding_scale.is_none()
            && self.attention_softcap.is_none()
    }
}

/// What a sequence-classification head predicts, and so how its logits become scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// One label of several: softmax.
    SingleLabelClassification,
    /// Any number of labels: a sigmoid per label.
    MultiLabelClassification,
    /// One real number: the raw score.
    Regression,
}

impl ProblemType {
    /// transformers' spelling, as in `config.json` and the dump.
    pub fn name(self) -> &'static str {
        match self {
            Self::SingleLabelClassification => "single_label_classification",
            Self::MultiLabelClassification => "multi_label_classification",
            Self::Regression => "regression",
        }
    }
}

/// The hyper-parameters of a checkpoint, whatever its family.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The model family (`model_type`).
    pub family: Family,
    /// Rows of the word-embedding matrix.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention (query) heads per layer.
    pub num_attention_heads: usize,
    /// Key/value heads per layer: fewer than the query heads under grouped-query attention,
    /// where query head `h` reads key/value head `h / (heads / kv_heads)`.
    pub num_key_value_heads: usize,
    /// Width of one attention head (`hidden_size / num_attention_heads` unless the config says).
    pub head_dim: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the segment-embedding table (0 when the family has none).
    pub type_vocab_size: usize,
    /// Epsilon of the encoder's LayerNorms.
    pub layer_norm_eps: f64,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// Id of the padding token, when the config names one.
    pub pad_token_id: Option<u32>,
    /// The transformers classes the checkpoint was saved from (`architectures`).
    pub model_classes: Vec<String>,
    /// Label names by id (`id2label`); empty when the config has none.
    pub labels: Vec<String>,
    /// `problem_type`, when the config says.
    pub problem_type: Option<ProblemType>,
    /// The order of operations.
    pub architecture: Architecture,
}

impl ModelConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// The key/value head query head `head` reads.
    pub fn kv_head(&self, head: usize) -> usize {
        head / (self.num_attention_heads / self.num_key_value_heads.max(1)).max(1)
    }

    /// Width of all query heads together (`hidden_size` unless the config sets `head_dim`).
    pub fn query_width(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_width(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Longest input in tokens (special tokens included): the position table, less the
    /// positions RoBERTa's numbering skips.
    pub fn max_tokens(&self) -> usize {
        match self.architecture.positions {
            PositionIds::FromZero => self.max_position_embeddings,
            PositionIds::AfterPadding { pad } => self
                .max_position_embeddings
                .saturating_sub(pad as usize + 1),
        }
    }

    /// The position id of every token, as transformers numbers them.
    pub fn position_ids(&self, ids: &[u32]) -> Vec<u32> {
        match self.architecture.positions {
            PositionIds::FromZero => (0..ids.len() as u32).collect(),
            PositionIds::AfterPadding { pad } => {
                let mut counted = 0;
                ids.iter()
                    .map(|&id| {
                        if id == pad {
                            pad
                        } else {
                            counted += 1;
                            pad + counted
                        }
                    })
                    .collect()
            }
        }
    }

    /// The label of class `id`: `id2label`'s name, else transformers' default `LABEL_{id}`.
    pub fn label(&self, id: usize) -> String {
        self.labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{id}"))
    }

    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| ModelError::Io {
            path: path.to_owned(),
            reason: format!("cannot read the model config ({err})"),
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates the text of a `config.json`; `path` only names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|err| ModelError::BadConfig {
            path: path.to_owned(),
            reason: format!("not valid JSON ({err})"),
        })?;
        let Value::Object(keys) = value else {
            return Err(ModelError::BadConfig {
                path: path.to_owned(),
                reason: "not a JSON object".to_owned(),
            });
        };
        let reader = ConfigReader {
            keys,
            path: path.to_owned(),
        };
        let family = reader.detect_family()?;
        let config = family.description().read_config(&reader)?;
        config.validate(&reader)?;
        Ok(config)
    }

    fn validate(&self, reader: &ConfigReader) -> Result<()> {
        if self.head_dim == 0 {
            return Err(reader.bad(format!(
                "the hidden size {} is not a multiple of the {} attention heads",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.num_key_value_heads == 0
            || !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            return Err(reader.bad(format!(
                "the {} attention heads are not a multiple of the {} key/value heads",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        let layers = self.num_hidden_layers;
        let arch = &self.architecture;
        if (!arch.windows.is_empty() && arch.windows.len() != layers)
            || (!arch.rotary.is_empty() && arch.rotary.len() != layers)
            || arch.attention_scales.len() != layers
        {
            return Err(reader.bad(format!(
                "per-layer settings do not cover the {layers} layers"
            )));
        }
        if self.max_tokens() == 0 {
            return Err(reader.bad(format!(
                "{} position embeddings leave no room for tokens",
                self.max_position_embeddings
            )));
        }
        Ok(())
    }
}

/// The keys of a `config.json`, read with messages that name the file and the key.
pub struct ConfigReader {
    keys: Map<String, Value>,
    path: PathBuf,
}

impl ConfigReader {
    /// The family a config describes: its `model_type`, or for very old BERT checkpoints that
    /// predate the key, their architecture list.
    pub fn detect_family(&self) -> Result<Family> {
        match self.model_type() {
            Some(model_type) => Family::ALL
                .into_iter()
                .find(|family| family.model_type() == model_type)
                .ok_or_else(|| ModelError::UnsupportedModelType {
                    path: self.path().to_owned(),
                    model_type: model_type.to_owned(),
                }),
            None if self
                .model_classes()
                .iter()
                .any(|class| class.starts_with("Bert")) =>
            {
                Ok(Family::Bert)
            }
            None => Err(self.bad(format!(
                "missing key 'model_type' (one of {})",
                Family::supported_list()
            ))),
        }
    }

    /// An error about this config file.
    pub fn bad(&self, reason: String) -> ModelError {
        ModelError::BadConfig {
            path: self.path.clone(),
            reason,
        }
    }

    /// The config file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first of `names` that is present (families spell some keys two ways).
    fn find<'a>(&self, names: &[&'a str]) -> Option<(&'a str, &Value)> {
        names
            .iter()
            .find_map(|&name| Some(name).zip(self.keys.get(name)))
            .filter(|(_, value)| !value.is_null())
    }

    /// A positive integer that must be present under one of `names`.
    pub fn size(&self, names: &[&str]) -> Result<usize> {
        self.optional_size(names)?
            .ok_or_else(|| self.bad(format!("missing key '{}'", names[0])))
    }

    /// A positive integer, when present under one of `names`.
    pub fn optional_size(&self, names: &[&str]) -> Result<Option<usize>> {
        let Some((name, value)) = self.find(names) else {
            return Ok(None);
        };
        match value.as_u64() {
            Some(0) => Err(self.bad(format!("key '{name}' must be greater than 0"))),
            Some(v) => usize::try_from(v)
                .map(Some)
                .map_err(|_| self.bad(format!("key '{name}' is too large"))),
            None => Err(self.bad(format!("key '{name}' must be a positive integer"))),
        }
    }

    /// A non-negative integer (may be 0), when present.
    pub fn optional_count(&self, name: &str) -> Result<Option<usize>> {
        match self.find(&[name]) {
            None => Ok(None),
            Some((_, value)) => value
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| self.bad(format!("key '{name}' must be a whole number"))),
        }
    }

    /// A number, when present.
    pub fn optional_float(&self, names: &[&str]) -> Result<Option<f64>> {
        match self.find(names) {
            None => Ok(None),
            Some((name, value)) => value
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(format!("key '{name}' must be a number"))),
        }
    }

    /// A boolean, when present.
    pub fn optional_bool(&self, name: &str) -> Result<Option<bool>> {
        match self.find(&[name]) {
            None => Ok(None),
            Some((_, value)) => value
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(format!("key '{name}' must be true or false"))),
        }
    }

    /// A string, when present.
    pub fn optional_str(&self, names: &[&str]) -> Result<Option<&str>> {
        match self.find(names) {
            None => Ok(None),
            Some((name, value)) => value
                .as_str()
                .map(Some)
                .ok_or_else(|| self.bad(format!("key '{name}' must be a string"))),
        }
    }

    /// A token id, when present (configs write `null` or a list for some families).
    pub fn optional_token_id(&self, name: &str) -> Option<u32> {
        self.find(&[name])
            .and_then(|(_, value)| value.as_u64())
            .and_then(|id| u32::try_from(id).ok())
    }

    /// The activation named by the first present key of `names`, else `default`.
    pub fn activation(&self, names: &[&str], default: &str) -> Result<Activation> {
        let name = self.optional_str(names)?.unwrap_or(default);
        Activation::from_name(name).ok_or_else(|| {
            self.bad(format!(
                "activation '{name}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, tanh, silu and swish are)"
            ))
        })
    }

    /// A JSON object under `name`, when present.
    pub fn optional_object(&self, name: &str) -> Result<Option<&Map<String, Value>>> {
        match self.find(&[name]) {
            None => Ok(None),
            Some((_, value)) => value
                .as_object()
                .map(Some)
                .ok_or_else(|| self.bad(format!("key '{name}' must be an object"))),
        }
    }

    /// A list of strings under `name`, when present (`layer_types`).
    pub fn optional_strings(&self, name: &str) -> Result<Option<Vec<&str>>> {
        match self.find(&[name]) {
            None => Ok(None),
            Some((_, value)) => value
                .as_array()
                .and_then(|list| list.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
                .map(Some)
                .ok_or_else(|| self.bad(format!("key '{name}' must be a list of strings"))),
        }
    }

    /// The rotary embedding of layers of type `layer_type` (`None`: the model has one kind),
    /// read as transformers 5.x writes it (`rope_parameters`, nested by layer type where layers
    /// differ) and as older checkpoints do (`rope_theta`, `rope_scaling`); `theta_keys` are
    /// the older top-level keys of this layer type's θ, `default_theta` the family's default.
    /// Rope types other than `default`, `linear` and `llama3` are refused, naming the key.
    pub fn rotary(
        &self,
        head_dim: usize,
        layer_type: Option<&str>,
        theta_keys: &[&str],
        default_theta: f64,
    ) -> Result<Rotary> {
        let nested = |name: &str| -> Result<Option<(String, &Map<String, Value>)>> {
            let Some(object) = self.optional_object(name)? else {
                return Ok(None);
            };
            Ok(Some(match layer_type.and_then(|kind| object.get(kind)) {
                Some(Value::Object(inner)) => {
                    (format!("{name}.{}", layer_type.unwrap_or("")), inner)
                }
                _ => (name.to_owned(), object),
            }))
        };
        let (key, parameters) = match nested("rope_parameters")? {
            Some(found) => (found.0, Some(found.1)),
            None => match nested("rope_scaling")? {
                Some(found) => (found.0, Some(found.1)),
                None => ("rope_scaling".to_owned(), None),
            },
        };
        let number = |name: &str| -> Result<Option<f64>> {
            match parameters
                .and_then(|p| p.get(name))
                .filter(|v| !v.is_null())
            {
                None => Ok(None),
                Some(value) => value
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| self.bad(format!("key '{key}.{name}' must be a number"))),
            }
        };
        let theta = match number("rope_theta")? {
            Some(theta) => theta,
            None => self.optional_float(theta_keys)?.unwrap_or(default_theta),
        };
        let kind = parameters
            .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
            .and_then(Value::as_str)
            .unwrap_or("default");
        if let Some(fraction) = number("partial_rotary_factor")?
            .or(self.optional_float(&["partial_rotary_factor"])?)
            .filter(|&f| f != 1.0)
        {
            return Err(self.bad(format!(
                "partial_rotary_factor {fraction} is not supported (only 1.0 is: every dimension turns)"
            )));
        }
        let mut inv_freq = Rotary::new(head_dim, theta).inv_freq;
        let required = |name: &str| -> Result<f64> {
            number(name)?
                .ok_or_else(|| self.bad(format!("rope type '{kind}' needs key '{key}.{name}'")))
        };
        match kind {
            "default" => {}
            "linear" => {
                let factor = required("factor")? as f32;
                inv_freq.iter_mut().for_each(|f| *f /= factor);
            }
            "llama3" => {
                let factor = required("factor")? as f32;
                let low = required("low_freq_factor")?;
                let high = required("high_freq_factor")?;
                let context = match number("original_max_position_embeddings")? {
                    Some(context) => context,
                    None => self.size(&["max_position_embeddings"])? as f64,
                };
                let (low_wavelength, high_wavelength) = (context / low, context / high);
                for f in &mut inv_freq {
                    let wavelength = 2.0 * std::f32::consts::PI / *f;
                    let scaled = if f64::from(wavelength) > low_wavelength {
                        *f / factor
                    } else {
                        *f
                    };
                    // Wavelengths are finite and positive: the negations are plain comparisons.
                    let wavelength_f64 = f64::from(wavelength);
                    let medium =
                        wavelength_f64 >= high_wavelength && wavelength_f64 <= low_wavelength;
                    *f = if medium {
                        let smooth = ((context as f32) / wavelength - low as f32)
                            / (high as f32 - low as f32);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    };
                }
            }
            other => {
                return Err(self.bad(format!(
                    "{key}.rope_type '{other}' is not supported (default, linear and llama3 are)"
                )))
            }
        }
        Ok(Rotary {
            inv_freq,
            scaling: 1.0,
        })
    }

    /// `architectures`: the transformers classes the checkpoint was saved from.
    pub fn model_classes(&self) -> Vec<String> {
        self.find(&["architectures"])
            .and_then(|(_, value)| value.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `model_type`, when present.
    pub fn model_type(&self) -> Option<&str> {
        self.find(&["model_type"])
            .and_then(|(_, value)| value.as_str())
    }

    /// `id2label` in id order. Ids must run from 0 without gaps.
    pub fn labels(&self) -> Result<Vec<String>> {
        let Some((_, value)) = self.find(&["id2label"]) else {
            return Ok(Vec::new());
        };
        let Some(map) = value.as_object() else {
            return Err(self.bad("key 'id2label' must map ids to names".to_owned()));
        };
        let mut labels = vec![None; map.len()];
        for (id, name) in map {
            let index = id
                .parse::<usize>()
                .ok()
                .filter(|&index| index < labels.len())
                .ok_or_else(|| {
                    self.bad(format!(
                        "'id2label' has id '{id}'; ids must run from 0 to {}",
                        labels.len().saturating_sub(1)
                    ))
                })?;
            labels[index] = Some(name.as_str().unwrap_or_default().to_owned());
        }
        Ok(labels.into_iter().flatten().collect())
    }

    /// `problem_type`, when present.
    pub fn problem_type(&self) -> Result<Option<ProblemType>> {
        Ok(match self.optional_str(&["problem_type"])? {
            None => None,
            Some("single_label_classification") => Some(ProblemType::SingleLabelClassification),
            Some("multi_label_classification") => Some(ProblemType::MultiLabelClassification),
            Some("regression") => Some(ProblemType::Regression),
            Some(other) => {
                return Err(self.bad(format!(
                    "problem_type '{other}' is not one of single_label_classification, multi_label_classification, regression"
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":2,
        "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":32}"#;

    fn parse(text: &str) -> Result<ModelConfig> {
        ModelConfig::from_json(text, Path::new("config.json"))
    }

    #[test]
    fn defaults_follow_transformers() -> Result<()> {
        let config = parse(MINI)?;
        assert_eq!(config.family, Family::Bert);
        assert_eq!(config.type_vocab_size, 2);
        assert_eq!(config.layer_norm_eps, 1e-12);
        assert_eq!(config.hidden_act, Activation::GeluErf);
        assert_eq!(config.head_dim(), 4);
        assert_eq!(config.max_tokens(), 32);
        assert_eq!(config.label(3), "LABEL_3");
        Ok(())
    }

    #[test]
    fn missing_key_is_named() {
        let text = MINI.replace("\"hidden_size\":8,", "");
        let err = parse(&text).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("missing key 'hidden_size'"), "{err}");
        assert!(err.starts_with("config.json"), "{err}");
    }

    #[test]
    fn unknown_families_are_refused_with_the_supported_list() {
        let text = MINI.replace("\"bert\"", "\"t5\"");
        let err = parse(&text).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("model_type 't5' is not supported"), "{err}");
        assert!(
            err.contains("bert, distilbert, roberta, xlm-roberta, gpt2"),
            "{err}"
        );
    }

    #[test]
    fn heads_must_divide_hidden() {
        let text = MINI.replace("\"num_attention_heads\":2", "\"num_attention_heads\":3");
        let err = parse(&text).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("not a multiple"), "{err}");
    }

    #[test]
    fn invalid_json_is_reported() {
        let err = parse("{").map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn labels_come_in_id_order() -> Result<()> {
        let text = MINI.replace(
            "\"model_type\"",
            r#""id2label":{"1":"POSITIVE","0":"NEGATIVE"},"problem_type":"multi_label_classification","model_type""#,
        );
        let config = parse(&text)?;
        assert_eq!(config.labels, ["NEGATIVE", "POSITIVE"]);
        assert_eq!(
            config.problem_type,
            Some(ProblemType::MultiLabelClassification)
        );
        Ok(())
    }

    /// A config of `model_type` with a tiny decoder's shape and `extra` keys.
    fn decoder(model_type: &str, extra: &str) -> Result<ModelConfig> {
        parse(&format!(
            r#"{{"model_type":"{model_type}","vocab_size":10,"hidden_size":8,"num_hidden_layers":3,
            "num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":16,
            "max_position_embeddings":32{extra}}}"#
        ))
    }

    fn rope_bases(config: &ModelConfig) -> Vec<f32> {
        config
            .architecture
            .rotary
            .iter()
            .map(|rotary| 1.0 / rotary.as_ref().unwrap().inv_freq[1].powf(2.0))
            .collect()
    }

    #[test]
    fn older_qwen_keys_read_as_transformers_reads_them() -> Result<()> {
        // Before 5.x: no layer_types, the window from max_window_layers on, rope_theta and a
        // rope_scaling spelled with "type".
        let config = decoder(
            "qwen2",
            r#","use_sliding_window":true,"sliding_window":4,"max_window_layers":1,
            "rope_theta":1000000.0,"rope_scaling":{"type":"linear","factor":2.0}"#,
        )?;
        let arch = &config.architecture;
        assert_eq!(
            arch.windows,
            [
                KeyWindow::Whole,
                KeyWindow::Sliding(4),
                KeyWindow::Sliding(4)
            ]
        );
        assert_eq!(config.head_dim(), 4);
        let inv_freq = &arch.rotary(0).unwrap().inv_freq;
        assert_eq!(inv_freq[0], 0.5, "θ⁰ = 1, halved by the linear factor");
        assert!((inv_freq[1] - 0.5 / 1000.0).abs() < 1e-9, "{inv_freq:?}");
        assert!(arch.gated_ffn && arch.causal);
        // Without use_sliding_window transformers forgets the window.
        let config = decoder("qwen3", r#","sliding_window":4,"max_window_layers":0"#)?;
        assert!(!config.architecture.has_windows());
        Ok(())
    }

    #[test]
    fn sliding_windows_count_the_query_itself() {
        let window = KeyWindow::Sliding(3);
        assert_eq!(window.keys_seen(true, 0, 10), 0..1);
        assert_eq!(window.keys_seen(true, 5, 10), 3..6);
        assert_eq!(KeyWindow::Local(2).keys_seen(false, 5, 7), 3..7);
        assert_eq!(KeyWindow::Local(2).keys_seen(false, 0, 7), 0..3);
        assert_eq!(KeyWindow::Whole.keys_seen(false, 2, 7), 0..7);
        assert_eq!(KeyWindow::Whole.keys_seen(true, 2, 7), 0..3);
    }

    #[test]
    fn older_gemma_and_modernbert_keys_read_as_transformers_reads_them() -> Result<()> {
        // Every second layer global; local layers with their own θ and no rope scaling.
        let config = decoder(
            "gemma3_text",
            r#","head_dim":4,"sliding_window":5,"sliding_window_pattern":2,"rope_theta":1000.0,
            "rope_local_base_freq":100.0,"rope_scaling":{"rope_type":"linear","factor":4.0},
            "query_pre_attn_scalar":16,"final_logit_softcapping":30.0"#,
        )?;
        let arch = &config.architecture;
        assert_eq!(
            arch.windows,
            [
                KeyWindow::Sliding(5),
                KeyWindow::Whole,
                KeyWindow::Sliding(5)
            ]
        );
        let thetas = rope_bases(&config);
        assert!((thetas[0] - 100.0).abs() < 1e-3, "{thetas:?}");
        assert!(
            (thetas[1] - 16_000.0).abs() < 1.0,
            "θ 1000 scaled by 4 twice: {thetas:?}"
        );
        assert_eq!(arch.attention_scales[0], 0.25);
        assert_eq!(arch.embedding_scale, Some(8f32.sqrt()));
        assert_eq!(arch.logit_softcap, Some(30.0));
        let err = decoder("gemma3_text", r#","use_bidirectional_attention":true"#)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("use_bidirectional_attention"), "{err}");
        assert!(!err.contains('\n'));

        let config = parse(
            r#"{"model_type":"modernbert","vocab_size":10,"hidden_size":8,"num_hidden_layers":3,
            "num_attention_heads":2,"intermediate_size":16,"global_attn_every_n_layers":2,
            "local_attention":6,"global_rope_theta":1000.0,"local_rope_theta":50.0,
            "classifier_pooling":"mean"}"#,
        )?;
        let arch = &config.architecture;
        assert_eq!(
            arch.windows,
            [KeyWindow::Whole, KeyWindow::Local(3), KeyWindow::Whole]
        );
        let thetas = rope_bases(&config);
        assert!((thetas[0] - 1000.0).abs() < 0.1 && (thetas[1] - 50.0).abs() < 1e-3);
        assert!(!arch.causal && arch.mean_pooling && arch.embedding_norm);
        Ok(())
    }

    #[test]
    fn unsupported_rope_types_layer_types_and_activations_are_named_in_one_line() {
        for (extra, named) in [
            (
                r#","rope_scaling":{"rope_type":"yarn","factor":2.0}"#,
                "rope_scaling.rope_type 'yarn' is not supported",
            ),
            (
                r#","rope_parameters":{"rope_type":"dynamic","rope_theta":10000.0}"#,
                "rope_parameters.rope_type 'dynamic' is not supported",
            ),
            (
                r#","rope_parameters":{"rope_type":"llama3","rope_theta":10000.0}"#,
                "rope type 'llama3' needs key 'rope_parameters.factor'",
            ),
            (
                r#","hidden_act":"relu2""#,
                "activation 'relu2' is not supported",
            ),
            (
                r#","layer_types":["full_attention","chunked_attention","full_attention"]"#,
                "layer_types entry 'chunked_attention' is not supported",
            ),
            (
                r#","partial_rotary_factor":0.5"#,
                "partial_rotary_factor 0.5",
            ),
            (
                r#","num_key_value_heads":3"#,
                "not a multiple of the 3 key/value heads",
            ),
        ] {
            let model_type = if extra.contains("layer_types") {
                "qwen2"
            } else {
                "llama"
            };
            let err = decoder(model_type, extra)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{extra}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn roberta_positions_start_after_padding() -> Result<()> {
        let text = MINI.replace("\"bert\"", "\"roberta\"").replace(
            "\"max_position_embeddings\":32",
            "\"max_position_embeddings\":34,\"pad_token_id\":1",
        );
        let config = parse(&text)?;
        assert_eq!(config.max_tokens(), 32);
        assert_eq!(config.position_ids(&[0, 5, 1, 7]), vec![2, 3, 1, 4]);
        Ok(())
    }
}
