//! Which family a checkpoint is, by its `model_type`: a name that the configuration, errors and
//! views use without knowing how a family is described (that is [`super::family`]).

/// The model families bertscope runs, by `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `bert`: BERT and its fine-tuned heads.
    Bert,
    /// `distilbert`: DistilBERT.
    DistilBert,
    /// `roberta`: RoBERTa.
    Roberta,
    /// `xlm-roberta`: XLM-RoBERTa (RoBERTa's architecture, a SentencePiece tokenizer).
    XlmRoberta,
    /// `gpt2`: GPT-2, causal.
    Gpt2,
    /// `llama`: Llama-style decoders (SmolLM2, TinyLlama, Llama 3).
    Llama,
    /// `mistral`: Llama with a sliding window on every layer.
    Mistral,
    /// `qwen2`: Qwen2 and Qwen2.5 (biases on q, k and v).
    Qwen2,
    /// `qwen3`: Qwen3 (RMSNorm of each query and key head).
    Qwen3,
    /// `gemma3_text`: Gemma 3's text decoder (270M, 1B).
    Gemma3,
    /// `modernbert`: ModernBERT, a rotary encoder with local and global layers.
    ModernBert,
}

impl Family {
    /// Every family, in the order messages list them.
    pub const ALL: [Family; 11] = [
        Self::Bert,
        Self::DistilBert,
        Self::Roberta,
        Self::XlmRoberta,
        Self::Gpt2,
        Self::Llama,
        Self::Mistral,
        Self::Qwen2,
        Self::Qwen3,
        Self::Gemma3,
        Self::ModernBert,
    ];

    /// The `model_type` of `config.json`, also the name the dump and the app show.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::DistilBert => "distilbert",
            Self::Roberta => "roberta",
            Self::XlmRoberta => "xlm-roberta",
            Self::Gpt2 => "gpt2",
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma3 => "gemma3_text",
            Self::ModernBert => "modernbert",
        }
    }

    /// The family's name as people write it, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bert => "BERT",
            Self::DistilBert => "DistilBERT",
            Self::Roberta => "RoBERTa",
            Self::XlmRoberta => "XLM-RoBERTa",
            Self::Gpt2 => "GPT-2",
            Self::Llama => "Llama",
            Self::Mistral => "Mistral",
            Self::Qwen2 => "Qwen2",
            Self::Qwen3 => "Qwen3",
            Self::Gemma3 => "Gemma 3",
            Self::ModernBert => "ModernBERT",
        }
    }

    /// Every supported `model_type`, comma-separated, for messages.
    pub fn supported_list() -> String {
        Self::ALL.map(Self::model_type).join(", ")
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

impl serde::Serialize for Family {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.model_type())
    }
}
