//! Memory-mapped safetensors weights, looked up under every spelling real BERT checkpoints use:
//! with or without the `bert.` prefix, `LayerNorm.weight/bias` or the legacy `LayerNorm.gamma/beta`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::error::{first_line, ModelError, Result};
use super::source::WeightFiles;

/// Which heads a checkpoint has and how it spells them, decided once for both forward paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLayout {
    /// The masked-LM head, when `cls.predictions.transform.*` is present.
    pub mlm: Option<MlmLayout>,
    /// Whether the pooler and `cls.seq_relationship` (next-sentence head) are both present.
    pub nsp: bool,
}

/// How a checkpoint stores its masked-LM decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlmLayout {
    /// `cls.predictions.decoder.weight` is stored; when false it is tied to the word embeddings.
    pub decoder_weight_stored: bool,
    /// The decoder bias: `cls.predictions.bias` or `cls.predictions.decoder.bias`.
    pub decoder_bias: &'static str,
}

/// The tensors of one checkpoint, and where the encoder's names start.
pub struct WeightStore {
    tensors: MmapedSafetensors,
    names: HashSet<String>,
    folder: PathBuf,
    encoder_prefix: &'static str,
    device: Device,
}

impl WeightStore {
    /// Memory-maps the weight files; `folder` names the model in errors.
    pub fn open(files: &WeightFiles, folder: &Path, device: &Device) -> Result<Self> {
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
        let encoder_prefix = if names.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        Ok(Self {
            tensors,
            names,
            folder: folder.to_owned(),
            encoder_prefix,
            device: device.clone(),
        })
    }

    /// The spellings under which a canonical (modern, unprefixed) name may be stored.
    fn spellings(&self, canonical: &str, in_encoder: bool) -> Vec<String> {
        let prefix = if in_encoder { self.encoder_prefix } else { "" };
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

    /// Which heads the checkpoint has, and how it spells them.
    pub fn head_layout(&self) -> HeadLayout {
        let mlm = self
            .contains("cls.predictions.transform.dense.weight", false)
            .then(|| MlmLayout {
                decoder_weight_stored: self.contains("cls.predictions.decoder.weight", false),
                decoder_bias: if self.contains("cls.predictions.bias", false) {
                    "cls.predictions.bias"
                } else {
                    "cls.predictions.decoder.bias"
                },
            });
        let nsp = self.contains("pooler.dense.weight", true)
            && self.contains("cls.seq_relationship.weight", false);
        HeadLayout { mlm, nsp }
    }

    /// Whether any spelling of an encoder tensor (or, with `in_encoder` false, a head tensor) exists.
    pub fn contains(&self, canonical: &str, in_encoder: bool) -> bool {
        self.spellings(canonical, in_encoder)
            .iter()
            .any(|name| self.names.contains(name))
    }

    /// The stored name of a tensor, under whichever spelling the checkpoint uses.
    fn stored_name(&self, canonical: &str, in_encoder: bool) -> Option<String> {
        self.spellings(canonical, in_encoder)
            .into_iter()
            .find(|name| self.names.contains(name))
    }

    /// Loads a tensor as f32 on the device, checking its shape; `Ok(None)` when it is absent.
    pub fn get_optional(
        &self,
        canonical: &str,
        in_encoder: bool,
        shape: &[usize],
    ) -> Result<Option<Tensor>> {
        let Some(name) = self.stored_name(canonical, in_encoder) else {
            return Ok(None);
        };
        let tensor =
            self.tensors
                .load(&name, &self.device)
                .map_err(|err| ModelError::BadWeights {
                    path: self.folder.clone(),
                    reason: format!(
                        "cannot read tensor '{name}' ({})",
                        first_line(&err.to_string())
                    ),
                })?;
        if tensor.dims() != shape {
            return Err(ModelError::ShapeMismatch {
                folder: self.folder.clone(),
                name,
                found: tensor.dims().to_vec(),
                expected: shape.to_vec(),
            });
        }
        Ok(Some(tensor.to_dtype(DType::F32)?))
    }

    /// Loads a tensor into host memory as row-major f32, checking its shape; `Ok(None)` when it
    /// is absent. f32 checkpoints are copied straight out of the memory map.
    pub fn get_host_optional(
        &self,
        canonical: &str,
        in_encoder: bool,
        shape: &[usize],
    ) -> Result<Option<Vec<f32>>> {
        let Some(name) = self.stored_name(canonical, in_encoder) else {
            return Ok(None);
        };
        if let Ok(view) = self.tensors.get(&name) {
            if view.dtype() == safetensors::Dtype::F32 && view.shape() == shape {
                let values = view
                    .data()
                    .chunks_exact(4)
                    .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
                    .collect();
                return Ok(Some(values));
            }
        }
        // Other dtypes, and the shape-mismatch error, go through candle.
        self.get_optional(canonical, in_encoder, shape)?
            .map(|tensor| Ok(tensor.flatten_all()?.to_vec1::<f32>()?))
            .transpose()
    }

    /// Like [`WeightStore::get_host_optional`] for a tensor that must exist.
    pub fn get_host(&self, canonical: &str, in_encoder: bool, shape: &[usize]) -> Result<Vec<f32>> {
        self.get_host_optional(canonical, in_encoder, shape)?
            .ok_or_else(|| self.missing(canonical, in_encoder))
    }

    fn missing(&self, canonical: &str, in_encoder: bool) -> ModelError {
        ModelError::MissingTensor {
            folder: self.folder.clone(),
            name: canonical.to_owned(),
            tried: self.spellings(canonical, in_encoder).join(", "),
        }
    }

    /// Loads a tensor that must exist.
    pub fn get(&self, canonical: &str, in_encoder: bool, shape: &[usize]) -> Result<Tensor> {
        self.get_optional(canonical, in_encoder, shape)?
            .ok_or_else(|| self.missing(canonical, in_encoder))
    }
}
