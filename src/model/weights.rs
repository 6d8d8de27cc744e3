//! Memory-mapped safetensors weights, looked up under every spelling real checkpoints use: with
//! or without the base model's prefix (`bert.`, `distilbert.`, `roberta.`, `transformer.`), and
//! `LayerNorm.weight/bias` or the legacy `LayerNorm.gamma/beta`. Tensors come out as host f32 in
//! the canonical layouts of [`super::params`]; family descriptions say which names to read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};

use super::error::{first_line, ModelError, Result};
use super::params::{Linear, Norm, NormKind};
use super::source::WeightFiles;

/// Where a tensor name lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Inside the base model, which task checkpoints store under a prefix such as `bert.`.
    Base,
    /// At the top level, where task heads (`cls.`, `classifier.`, `lm_head.`) are stored.
    Top,
}

/// The tensors of one checkpoint, and the prefix its base model is stored under.
pub struct WeightStore {
    tensors: MmapedSafetensors,
    names: HashSet<String>,
    folder: PathBuf,
    base_prefix: String,
    /// Tensors added in memory under their stored names (a new classifier head to train).
    added: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// When set, every tensor reads as its elements' addresses instead of its values.
    addresses: Option<Addresses>,
    /// While reading addresses: each stored name read, with the canonical name and scope it
    /// was read under.
    read_as: std::cell::RefCell<BTreeMap<String, (String, Scope)>>,
}

/// Where each element of a checkpoint lives, for writing weights back under the names they were
/// read from. Element `e` of stored tensor `name` reads as the f32 whose bits are
/// `first[name] + e`: loading copies and transposes values but never computes with them, so
/// the bits of every loaded element name its source. Address 0 is no stored element (a zero a
/// description fills in itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Addresses {
    /// The first address of each stored tensor, and its shape.
    pub tensors: BTreeMap<String, (u32, Vec<usize>)>,
    /// The base model's prefix in the checkpoint (`bert.`), or empty.
    pub base_prefix: String,
}

impl Addresses {
    /// The stored tensor and element an address names.
    pub fn locate(&self, address: u32) -> Option<(&str, usize)> {
        // Tensors are few; ranges are searched in address order.
        self.tensors
            .iter()
            .find(|(_, (first, shape))| {
                let len = shape.iter().product::<usize>() as u32;
                address >= *first && address < first + len
            })
            .map(|(name, (first, _))| (name.as_str(), (address - first) as usize))
    }
}

impl WeightStore {
    /// Memory-maps the weight files; `folder` names the model in errors.
    pub fn open(files: &WeightFiles, folder: &Path) -> Result<Self> {
        let paths: Vec<&PathBuf> = match files {
            WeightFiles::Single(path) => vec![path],
            WeightFiles::Sharded { shards, .. } => shards.iter().collect(),
        };
        for path in &paths {
            if !path.is_file() {
                let index = match files {
                    WeightFiles::Sharded { index, .. } => index.display().to_string(),
                    WeightFiles::Single(_) => String::new(),
                };
                return Err(ModelError::BadWeights {
                    path: (*path).clone(),
                    reason: format!("shard named by {index} is missing"),
                });
            }
        }
        // SAFETY: the files are mapped read-only; like every mmap reader we rely on nobody
        // truncating a checkpoint while it is open.
        let tensors =
            unsafe { MmapedSafetensors::multi(&paths) }.map_err(|err| ModelError::BadWeights {
                path: paths.first().map(|p| (*p).clone()).unwrap_or_default(),
                reason: format!(
                    "not a valid safetensors file ({})",
                    first_line(&err.to_string())
                ),
            })?;
        let names: HashSet<String> = tensors
            .tensors()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        Ok(Self {
            tensors,
            names,
            folder: folder.to_owned(),
            base_prefix: String::new(),
            added: HashMap::new(),
            addresses: None,
            read_as: std::cell::RefCell::new(BTreeMap::new()),
        })
    }

    /// Adds a tensor under its stored name (with any base prefix), shadowing a stored one.
    pub fn add(&mut self, name: String, shape: Vec<usize>, values: Vec<f32>) {
        self.names.insert(name.clone());
        self.added.insert(name, (shape, values));
    }

    /// Every stored tensor's name and shape, added ones included.
    pub fn stored_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let mut shapes: BTreeMap<String, Vec<usize>> = self
            .tensors
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.shape().to_vec()))
            .collect();
        for (name, (shape, _)) in &self.added {
            shapes.insert(name.clone(), shape.clone());
        }
        shapes
    }

    /// From now on tensors read as their elements' addresses ([`Addresses`]), which this
    /// returns; refused for checkpoints with more elements than addresses can name.
    pub fn read_addresses(&mut self) -> Result<Addresses> {
        // Bit patterns from 0x7f80_0000 on are infinities and NaNs, which a copy may alter.
        const LIMIT: u64 = 0x7f80_0000;
        let mut next: u64 = 1;
        let mut tensors = BTreeMap::new();
        for (name, shape) in self.stored_shapes() {
            let len = shape.iter().product::<usize>() as u64;
            tensors.insert(name, (next as u32, shape));
            next += len;
            if next >= LIMIT {
                return Err(ModelError::BadWeights {
                    path: self.folder.clone(),
                    reason: "too many weights to fine-tune (more than 2.1 billion)".to_owned(),
                });
            }
        }
        let addresses = Addresses {
            tensors,
            base_prefix: self.base_prefix.clone(),
        };
        self.addresses = Some(addresses.clone());
        Ok(addresses)
    }

    /// While reading addresses, each stored tensor read so far: the canonical name and scope it
    /// was read under.
    pub fn read_as(&self) -> BTreeMap<String, (String, Scope)> {
        self.read_as.borrow().clone()
    }

    /// The tensor's values as stored, f32 (for writing back elements nothing loaded).
    pub fn stored_values(&self, name: &str) -> Result<Vec<f32>> {
        if let Some((_, values)) = self.added.get(name) {
            return Ok(values.clone());
        }
        self.tensors
            .load(name, &Device::Cpu)
            .and_then(|tensor| tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
            .map_err(|err| ModelError::BadWeights {
                path: self.folder.clone(),
                reason: format!(
                    "cannot read tensor '{name}' ({})",
                    first_line(&err.to_string())
                ),
            })
    }

    /// The prefix the base model is stored under (`bert.`), or empty.
    pub fn base_prefix(&self) -> &str {
        &self.base_prefix
    }

    /// Stores the base model under `prefix` when the checkpoint has `probe` there (a task
    /// checkpoint such as `BertForMaskedLM`); otherwise names are read unprefixed.
    pub fn detect_base_prefix(&mut self, prefix: &str, probe: &str) {
        if self.names.contains(&format!("{prefix}{probe}")) {
            prefix.clone_into(&mut self.base_prefix);
        }
    }

    /// The model folder, for messages.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The spellings under which a canonical (modern, unprefixed) name may be stored.
    fn spellings(&self, canonical: &str, scope: Scope) -> Vec<String> {
        let prefix = match scope {
            Scope::Base => self.base_prefix.as_str(),
            Scope::Top => "",
        };
        let mut spellings = vec![format!("{prefix}{canonical}")];
        let legacy = canonical
            .strip_suffix("LayerNorm.weight")
            .map(|stem| format!("{stem}LayerNorm.gamma"))
            .or_else(|| {
                canonical
                    .strip_suffix("LayerNorm.bias")
                    .map(|stem| format!("{stem}LayerNorm.beta"))
            });
        if let Some(legacy) = legacy {
            spellings.push(format!("{prefix}{legacy}"));
        }
        spellings
    }

    /// Whether any spelling of a tensor exists.
    pub fn has(&self, canonical: &str, scope: Scope) -> bool {
        self.stored_name(canonical, scope).is_some()
    }

    /// The shape a tensor is stored with, when present (a classifier's label count is its rows).
    pub fn shape(&self, canonical: &str, scope: Scope) -> Option<Vec<usize>> {
        let name = self.stored_name(canonical, scope)?;
        if let Some((shape, _)) = self.added.get(&name) {
            return Some(shape.clone());
        }
        self.tensors
            .get(&name)
            .ok()
            .map(|view| view.shape().to_vec())
    }

    fn stored_name(&self, canonical: &str, scope: Scope) -> Option<String> {
        self.spellings(canonical, scope)
            .into_iter()
            .find(|name| self.names.contains(name))
    }

    fn missing(&self, canonical: &str, scope: Scope) -> ModelError {
        ModelError::MissingTensor {
            folder: self.folder.clone(),
            name: canonical.to_owned(),
            tried: self.spellings(canonical, scope).join(", "),
        }
    }

    /// A tensor as row-major host f32, checking its shape; `Ok(None)` when it is absent. f32
    /// checkpoints are copied straight out of the memory map; other dtypes convert through candle.
    pub fn tensor_optional(
        &self,
        canonical: &str,
        scope: Scope,
        shape: &[usize],
    ) -> Result<Option<Vec<f32>>> {
        let Some(name) = self.stored_name(canonical, scope) else {
            return Ok(None);
        };
        let unreadable = |err: &dyn std::fmt::Display| ModelError::BadWeights {
            path: self.folder.clone(),
            reason: format!(
                "cannot read tensor '{name}' ({})",
                first_line(&err.to_string())
            ),
        };
        let stored_shape = match self.added.get(&name) {
            Some((shape, _)) => shape.clone(),
            None => self
                .tensors
                .get(&name)
                .map_err(|err| unreadable(&err))?
                .shape()
                .to_vec(),
        };
        if stored_shape != shape {
            return Err(ModelError::ShapeMismatch {
                folder: self.folder.clone(),
                name,
                found: stored_shape,
                expected: shape.to_vec(),
            });
        }
        if let Some(addresses) = &self.addresses {
            self.read_as
                .borrow_mut()
                .insert(name.clone(), (canonical.to_owned(), scope));
            let first = addresses.tensors.get(&name).map_or(0, |(first, _)| *first);
            let len = shape.iter().product::<usize>() as u32;
            return Ok(Some((first..first + len).map(f32::from_bits).collect()));
        }
        if let Some((_, values)) = self.added.get(&name) {
            return Ok(Some(values.clone()));
        }
        let view = self.tensors.get(&name).map_err(|err| unreadable(&err))?;
        if view.shape() != shape {
            return Err(ModelError::ShapeMismatch {
                folder: self.folder.clone(),
                name,
                found: view.shape().to_vec(),
                expected: shape.to_vec(),
            });
        }
        if view.dtype() == safetensors::Dtype::F32 {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
                .collect();
            return Ok(Some(values));
        }
        let tensor = self
            .tensors
            .load(&name, &Device::Cpu)
            .and_then(|tensor| tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
            .map_err(|err| unreadable(&err))?;
        Ok(Some(tensor))
    }

    /// A tensor that must exist.
    pub fn tensor(&self, canonical: &str, scope: Scope, shape: &[usize]) -> Result<Vec<f32>> {
        self.tensor_optional(canonical, scope, shape)?
            .ok_or_else(|| self.missing(canonical, scope))
    }

    /// A PyTorch `Linear`: `{stem}.weight` `[outputs, inputs]` and `{stem}.bias` `[outputs]`.
    pub fn linear(
        &self,
        stem: &str,
        scope: Scope,
        inputs: usize,
        outputs: usize,
    ) -> Result<Linear> {
        let mut linear = self.linear_without_bias(stem, scope, inputs, outputs)?;
        linear.bias = Some(self.tensor(&format!("{stem}.bias"), scope, &[outputs])?);
        Ok(linear)
    }

    /// A `Linear` created with `bias=False`.
    pub fn linear_without_bias(
        &self,
        stem: &str,
        scope: Scope,
        inputs: usize,
        outputs: usize,
    ) -> Result<Linear> {
        Ok(Linear {
            weight: self.tensor(&format!("{stem}.weight"), scope, &[outputs, inputs])?,
            bias: None,
            inputs,
            outputs,
        })
    }

    /// GPT-2's `Conv1D`, whose weight is stored `[inputs, outputs]`: transposed into a `Linear`.
    pub fn conv1d(
        &self,
        stem: &str,
        scope: Scope,
        inputs: usize,
        outputs: usize,
    ) -> Result<Linear> {
        let stored = self.tensor(&format!("{stem}.weight"), scope, &[inputs, outputs])?;
        // Tiles keep both sides of the transpose in cache: GPT-2's 124M weights load in a blink.
        const TILE: usize = 64;
        let mut weight = vec![0f32; stored.len()];
        for input_tile in (0..inputs).step_by(TILE) {
            for output_tile in (0..outputs).step_by(TILE) {
                for input in input_tile..(input_tile + TILE).min(inputs) {
                    let row = &stored[input * outputs..][..outputs];
                    for output in output_tile..(output_tile + TILE).min(outputs) {
                        weight[output * inputs + input] = row[output];
                    }
                }
            }
        }
        Ok(Linear {
            weight,
            bias: Some(self.tensor(&format!("{stem}.bias"), scope, &[outputs])?),
            inputs,
            outputs,
        })
    }

    /// A LayerNorm: `{stem}.weight` and `{stem}.bias` (or `gamma`/`beta`), `[width]` each.
    pub fn norm(&self, stem: &str, scope: Scope, width: usize, eps: f64) -> Result<Norm> {
        Ok(Norm {
            gamma: self.tensor(&format!("{stem}.weight"), scope, &[width])?,
            beta: self.tensor(&format!("{stem}.bias"), scope, &[width])?,
            eps,
            kind: NormKind::Layer,
        })
    }

    /// A LayerNorm whose bias may have been left out (`bias=False`: ModernBERT's `norm_bias`),
    /// then zeros.
    pub fn norm_optional_bias(
        &self,
        stem: &str,
        scope: Scope,
        width: usize,
        eps: f64,
    ) -> Result<Norm> {
        Ok(Norm {
            gamma: self.tensor(&format!("{stem}.weight"), scope, &[width])?,
            beta: self
                .tensor_optional(&format!("{stem}.bias"), scope, &[width])?
                .unwrap_or_else(|| vec![0.0; width]),
            eps,
            kind: NormKind::Layer,
        })
    }

    /// A `Linear` whose bias may have been left out (`bias=False`).
    pub fn linear_optional_bias(
        &self,
        stem: &str,
        scope: Scope,
        inputs: usize,
        outputs: usize,
    ) -> Result<Linear> {
        let mut linear = self.linear_without_bias(stem, scope, inputs, outputs)?;
        linear.bias = self.tensor_optional(&format!("{stem}.bias"), scope, &[outputs])?;
        Ok(linear)
    }

    /// An RMSNorm: `{stem}.weight`, `[width]`.
    pub fn rms_norm(&self, stem: &str, scope: Scope, width: usize, eps: f64) -> Result<Norm> {
        self.rms_norm_offset(stem, scope, width, eps, 0.0)
    }

    /// An RMSNorm whose scale is `offset + weight` (Gemma's `1 + w`, added in f32 as
    /// transformers adds it).
    pub fn rms_norm_offset(
        &self,
        stem: &str,
        scope: Scope,
        width: usize,
        eps: f64,
        offset: f32,
    ) -> Result<Norm> {
        if offset != 0.0 && self.addresses.is_some() {
            return Err(ModelError::BadInput(
                "a norm stored as an offset scale (Gemma's 1 + w) cannot be written back yet"
                    .to_owned(),
            ));
        }
        let mut gamma = self.tensor(&format!("{stem}.weight"), scope, &[width])?;
        if offset != 0.0 {
            gamma.iter_mut().for_each(|w| *w += offset);
        }
        Ok(Norm {
            gamma,
            beta: vec![0.0; width],
            eps,
            kind: NormKind::Rms,
        })
    }
}
