//! The error type of the inference core: every variant reads as one sentence that names the
//! file or input at fault and, where there is one, what to do about it.

use std::path::PathBuf;

/// Everything that can go wrong while finding, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model argument is neither an existing folder nor a plausible Hub id.
    #[error("model '{0}' is neither a local folder nor a Hugging Face Hub id (like bert-base-uncased or google-bert/bert-large-uncased)")]
    BadModelArgument(String),

    /// A local folder lacks a file every model needs.
    #[error("{folder}: no {file} in this folder; a model folder needs config.json, weights (model.safetensors) and a tokenizer (tokenizer.json, vocab.txt, or vocab.json with merges.txt)")]
    MissingFile {
        /// The model folder.
        folder: PathBuf,
        /// The file that should be there.
        file: &'static str,
    },

    /// The model is not in the local cache and the Hub cannot be used.
    #[error("{model}: not in the Hugging Face cache and {reason}; download it elsewhere or pass a local folder with --model /path/to/folder")]
    NotCached {
        /// The Hub id that was asked for.
        model: String,
        /// Why the Hub could not be asked (offline mode, network error, ...).
        reason: String,
    },

    /// A download from the Hub failed.
    #[error("{model}: could not download {file} from the Hugging Face Hub ({reason}); check the id and your connection, or pass a local folder")]
    Download {
        /// The Hub id.
        model: String,
        /// The file being fetched.
        file: String,
        /// The underlying error, shortened to one line.
        reason: String,
    },

    /// Only a pickle checkpoint is present.
    #[error("{0}: only pytorch_model.bin is present; bertscope does not load pickle checkpoints because they can run code. Convert it once with transformers: AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)")]
    PickleOnly(PathBuf),

    /// A file could not be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },

    /// `config.json` is not valid JSON or lacks a key.
    #[error("{path}: {reason}")]
    BadConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },

    /// The config describes a family bertscope does not run.
    #[error(
        "{path}: model_type '{model_type}' is not supported; bertscope runs {}",
        crate::model::family_id::Family::supported_list()
    )]
    UnsupportedModelType {
        /// The config file.
        path: PathBuf,
        /// The `model_type` found.
        model_type: String,
    },

    /// The weights files are not valid safetensors or the index is broken.
    #[error("{path}: {reason}")]
    BadWeights {
        /// The weights file (or index).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A tensor the encoder needs is not in the checkpoint under any known spelling.
    #[error("{folder}: the weights have no tensor '{name}' (tried the spellings {tried}); do config.json and the weights belong together?")]
    MissingTensor {
        /// The model folder.
        folder: PathBuf,
        /// The canonical name.
        name: String,
        /// The names looked for.
        tried: String,
    },

    /// A tensor's shape disagrees with config.json.
    #[error("{folder}: tensor '{name}' has shape {found:?} but config.json implies {expected:?}")]
    ShapeMismatch {
        /// The model folder.
        folder: PathBuf,
        /// The tensor name as stored.
        name: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape the config implies.
        expected: Vec<usize>,
    },

    /// The tokenizer files could not be loaded.
    #[error("{path}: cannot load the tokenizer: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The text cannot be run.
    #[error("{0}")]
    BadInput(String),

    /// The device asked for is not available in this build or on this machine.
    #[error("{0}")]
    Device(String),

    /// The caller cancelled a long computation.
    #[error("cancelled")]
    Cancelled,

    /// A tensor operation failed (a bug or an exhausted device).
    #[error("tensor computation failed: {0}")]
    Compute(String),
}

impl From<candle_core::Error> for ModelError {
    fn from(err: candle_core::Error) -> Self {
        Self::Compute(first_line(&err.to_string()))
    }
}

/// Shortens an error message to its first line, so that messages stay one line for the user.
pub(crate) fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().trim().to_owned()
}

/// The result type of the inference core.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
