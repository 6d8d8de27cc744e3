//! Where a model's files come from: a local folder in the Hugging Face layout, or a Hub id resolved
//! through the standard Hugging Face cache (`HF_HOME`, `HF_HUB_OFFLINE`), downloading on demand.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo};

use super::error::{first_line, ModelError, Result};

/// What the user asked for: a folder on disk or a model on the Hugging Face Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder holding config.json, weights and tokenizer files.
    Folder(PathBuf),
    /// A Hub repository id such as `bert-base-uncased` or `google-bert/bert-large-uncased`.
    Hub(String),
}

impl ModelSource {
    /// Reads a `--model` argument: an existing folder wins over a Hub id of the same spelling.
    pub fn parse(arg: &str) -> Result<Self> {
        let trimmed = arg.trim();
        let path = Path::new(trimmed);
        if path.is_dir() {
            return Ok(Self::Folder(path.to_owned()));
        }
        if path.exists() {
            return Err(ModelError::Io {
                path: path.to_owned(),
                reason: "this is a file; pass the model folder that holds config.json".to_owned(),
            });
        }
        if looks_like_hub_id(trimmed) {
            Ok(Self::Hub(trimmed.to_owned()))
        } else if trimmed.is_empty() {
            Err(ModelError::BadModelArgument(String::new()))
        } else {
            Err(ModelError::Io {
                path: path.to_owned(),
                reason: "no such folder".to_owned(),
            })
        }
    }

    /// A short name for titles and status bars: the Hub id or the folder's name.
    pub fn display_name(&self) -> String {
        match self {
            Self::Hub(id) => id.clone(),
            Self::Folder(path) => path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
        }
    }
}

/// A Hub id is `name` or `owner/name` made of letters, digits, `-`, `_` and `.`.
fn looks_like_hub_id(arg: &str) -> bool {
    let parts: Vec<&str> = arg.split('/').collect();
    let valid_part = |part: &&str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (1..=2).contains(&parts.len()) && parts.iter().all(valid_part)
}

/// The weights of a checkpoint: one safetensors file, or the shards an index names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightFiles {
    /// `model.safetensors`.
    Single(PathBuf),
    /// The shards listed by `model.safetensors.index.json`, in file-name order.
    Sharded {
        /// The index file, named in errors.
        index: PathBuf,
        /// The shard files.
        shards: Vec<PathBuf>,
    },
}

/// The vocabulary a tokenizer is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerVocab {
    /// A `tokenizer.json` for the `tokenizers` crate.
    Json(PathBuf),
    /// A WordPiece `vocab.txt`.
    WordPiece(PathBuf),
    /// Byte-level BPE: `vocab.json` and `merges.txt`.
    Bpe {
        /// `vocab.json`.
        vocab: PathBuf,
        /// `merges.txt`.
        merges: PathBuf,
    },
}

/// How to build the tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerFiles {
    /// The vocabulary.
    pub vocab: TokenizerVocab,
    /// `tokenizer_config.json`, with options such as `do_lower_case`, when there is one.
    pub config: Option<PathBuf>,
}

/// The files of one model, all present on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The folder (or cache snapshot) the files are in.
    pub folder: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// The weights.
    pub weights: WeightFiles,
    /// The tokenizer.
    pub tokenizer: TokenizerFiles,
    /// `generation_config.json`, the decoding defaults of a causal model, when there is one.
    pub generation_config: Option<PathBuf>,
}

/// One step of a download, reported to whoever shows progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadProgress {
    /// The file being downloaded.
    pub file: String,
    /// Bytes received so far.
    pub done_bytes: u64,
    /// Size of the file in bytes.
    pub total_bytes: u64,
}

/// Locates (and, for Hub ids, downloads) a model's files; `progress` hears about downloads only.
pub fn resolve(
    source: &ModelSource,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<ModelFiles> {
    match source {
        ModelSource::Folder(folder) => resolve_folder(folder),
        ModelSource::Hub(id) => resolve_hub(id, progress),
    }
}

/// Finds the files of a local folder.
pub fn resolve_folder(folder: &Path) -> Result<ModelFiles> {
    let file = |name: &str| Some(folder.join(name)).filter(|path| path.is_file());
    let config = file("config.json").ok_or_else(|| ModelError::MissingFile {
        folder: folder.to_owned(),
        file: "config.json",
    })?;
    let weights = if let Some(single) = file("model.safetensors") {
        WeightFiles::Single(single)
    } else if let Some(index) = file("model.safetensors.index.json") {
        let shards = shard_names(&index)?
            .into_iter()
            .map(|name| folder.join(name))
            .collect();
        WeightFiles::Sharded { index, shards }
    } else if file("pytorch_model.bin").is_some() {
        return Err(ModelError::PickleOnly(folder.to_owned()));
    } else {
        return Err(ModelError::MissingFile {
            folder: folder.to_owned(),
            file: "model.safetensors",
        });
    };
    let vocab = if let Some(json) = file("tokenizer.json") {
        TokenizerVocab::Json(json)
    } else if let Some(vocab) = file("vocab.txt") {
        TokenizerVocab::WordPiece(vocab)
    } else if let (Some(vocab), Some(merges)) = (file("vocab.json"), file("merges.txt")) {
        TokenizerVocab::Bpe { vocab, merges }
    } else if let Some(sentencepiece) = ["sentencepiece.bpe.model", "spiece.model"]
        .into_iter()
        .find_map(file)
    {
        return Err(ModelError::Tokenizer {
            path: sentencepiece,
            reason: "bertscope reads SentencePiece tokenizers from tokenizer.json, which is not here; write it once with transformers: AutoTokenizer.from_pretrained(folder).save_pretrained(folder)".to_owned(),
        });
    } else {
        return Err(ModelError::MissingFile {
            folder: folder.to_owned(),
            file: "tokenizer.json",
        });
    };
    let tokenizer = TokenizerFiles {
        vocab,
        config: file("tokenizer_config.json"),
    };
    Ok(ModelFiles {
        folder: folder.to_owned(),
        config,
        weights,
        tokenizer,
        generation_config: file("generation_config.json"),
    })
}

/// The distinct shard file names of a `model.safetensors.index.json`.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let bad = |reason: String| ModelError::BadWeights {
        path: index.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(index).map_err(|err| bad(format!("cannot read ({err})")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| bad(format!("not valid JSON ({err})")))?;
    let map = json
        .get("weight_map")
        .and_then(|map| map.as_object())
        .ok_or_else(|| bad("no 'weight_map' object".to_owned()))?;
    let mut names = BTreeSet::new();
    for file in map.values() {
        let name = file
            .as_str()
            .ok_or_else(|| bad("a 'weight_map' entry is not a file name".to_owned()))?;
        // Shards live beside the index; anything else would read outside the model folder.
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(bad(format!("shard name '{name}' is not a plain file name")));
        }
        names.insert(name.to_owned());
    }
    if names.is_empty() {
        return Err(bad("'weight_map' is empty".to_owned()));
    }
    Ok(names.into_iter().collect())
}

/// Whether the user asked for no network use (`HF_HUB_OFFLINE=1`), as huggingface_hub does.
fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|value| {
            matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// Resolves a Hub id through the HF cache, downloading missing files unless offline.
/// Long because each way a Hub download can fail (offline, gated, missing file, partial cache) gets
/// its own one-line message here.
fn resolve_hub(id: &str, progress: &mut dyn FnMut(DownloadProgress)) -> Result<ModelFiles> {
    let cache = Cache::from_env();
    let cached = cache.repo(Repo::model(id.to_owned()));
    let offline = hub_offline();
    let api = if offline {
        None
    } else {
        Some(
            ApiBuilder::from_env()
                .with_progress(false)
                .build()
                .map_err(|err| ModelError::NotCached {
                    model: id.to_owned(),
                    reason: format!(
                        "the Hub client could not start ({})",
                        first_line(&err.to_string())
                    ),
                })?,
        )
    };
    let remote = api.as_ref().map(|api| api.model(id.to_owned()));

    // Cache first, so that a cached model never touches the network.
    let mut fetch = |file: &str| -> std::result::Result<PathBuf, String> {
        if let Some(path) = cached.get(file) {
            return Ok(path);
        }
        let Some(remote) = &remote else {
            return Err("HF_HUB_OFFLINE is set".to_owned());
        };
        let mut reporter = ProgressAdapter {
            file: file.to_owned(),
            done: 0,
            total: 0,
            callback: &mut *progress,
        };
        remote
            .download_with_progress(file, &mut reporter)
            .map_err(|err| first_line(&err.to_string()))
    };

    let config = fetch("config.json").map_err(|reason| {
        if offline || !reason.contains("status") {
            ModelError::NotCached {
                model: id.to_owned(),
                reason: if offline {
                    reason
                } else {
                    format!("the Hub cannot be reached ({reason})")
                },
            }
        } else {
            ModelError::Download {
                model: id.to_owned(),
                file: "config.json".to_owned(),
                reason,
            }
        }
    })?;
    let folder = config.parent().map(Path::to_owned).unwrap_or_default();
    let missing = |file: &str, reason: String| ModelError::Download {
        model: id.to_owned(),
        file: file.to_owned(),
        reason,
    };

    let weights = match fetch("model.safetensors") {
        Ok(single) => WeightFiles::Single(single),
        Err(single_err) => match fetch("model.safetensors.index.json") {
            Ok(index) => {
                let shards = shard_names(&index)?
                    .iter()
                    .map(|name| fetch(name).map_err(|reason| missing(name, reason)))
                    .collect::<Result<Vec<_>>>()?;
                WeightFiles::Sharded { index, shards }
            }
            Err(_) if fetch("pytorch_model.bin").is_ok() => {
                return Err(ModelError::PickleOnly(folder));
            }
            Err(_) => return Err(missing("model.safetensors", single_err)),
        },
    };
    let vocab = match fetch("tokenizer.json") {
        Ok(json) => TokenizerVocab::Json(json),
        Err(json_err) => match fetch("vocab.txt") {
            Ok(vocab) => TokenizerVocab::WordPiece(vocab),
            Err(_) => match (fetch("vocab.json"), fetch("merges.txt")) {
                (Ok(vocab), Ok(merges)) => TokenizerVocab::Bpe { vocab, merges },
                _ => return Err(missing("tokenizer.json", json_err)),
            },
        },
    };
    let tokenizer = TokenizerFiles {
        vocab,
        config: fetch("tokenizer_config.json").ok(),
    };
    Ok(ModelFiles {
        folder,
        config,
        weights,
        tokenizer,
        generation_config: fetch("generation_config.json").ok(),
    })
}

/// Bridges hf-hub's progress trait to a plain callback.
struct ProgressAdapter<'a> {
    file: String,
    done: u64,
    total: u64,
    callback: &'a mut dyn FnMut(DownloadProgress),
}

impl ProgressAdapter<'_> {
    fn report(&mut self) {
        (self.callback)(DownloadProgress {
            file: self.file.clone(),
            done_bytes: self.done,
            total_bytes: self.total,
        });
    }
}

impl hf_hub::api::Progress for &mut ProgressAdapter<'_> {
    fn init(&mut self, size: usize, _filename: &str) {
        self.total = size as u64;
        self.done = 0;
        self.report();
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        self.report();
    }

    fn finish(&mut self) {
        self.done = self.total;
        self.report();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_recognised() {
        assert!(looks_like_hub_id("bert-base-uncased"));
        assert!(looks_like_hub_id("google-bert/bert-large-uncased"));
        assert!(!looks_like_hub_id("a/b/c"));
        assert!(!looks_like_hub_id("./model"));
        assert!(!looks_like_hub_id("my model"));
    }

    #[test]
    fn missing_path_is_a_clear_error() {
        let err = ModelSource::parse("/no/such/folder/anywhere")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such folder"), "{err}");
    }

    #[test]
    fn offline_hub_miss_says_so() {
        let cache = tempfile::tempdir().unwrap();
        // Safe here: no other test reads these variables.
        std::env::set_var("HF_HOME", cache.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let err = resolve(&ModelSource::Hub("bert-base-uncased".into()), &mut |_| {})
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the Hugging Face cache"), "{err}");
        assert!(err.contains("local folder"), "{err}");
    }
}
