//! The WordPiece tokenizer: `tokenizer.json` through the `tokenizers` crate, or, when a checkpoint
//! only ships `vocab.txt`, the same pipeline transformers' BertTokenizer runs (clean-up, CJK
//! splitting, lower-casing, accent stripping, punctuation splitting, greedy WordPiece).

use std::path::Path;

use serde_json::Value;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, EncodeInput, Tokenizer, TruncationParams, TruncationStrategy};

use super::error::{first_line, ModelError, Result};
use super::source::TokenizerFiles;

/// A tokenized input: one entry per token in every vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedText {
    /// Token strings as the vocabulary spells them (`##` marks a word continuation).
    pub tokens: Vec<String>,
    /// Vocabulary ids.
    pub ids: Vec<u32>,
    /// Segment (token type) ids: 0 for sentence A, 1 for sentence B.
    pub segment_ids: Vec<u32>,
    /// `[start, end)` character offsets into the token's sentence; `None` for special tokens.
    pub char_offsets: Vec<Option<(usize, usize)>>,
    /// Which sentence each token comes from (0 = A, 1 = B); `None` for special tokens.
    pub sentence: Vec<Option<usize>>,
    /// Tokens cut off because the input was longer than the model accepts.
    pub dropped_tokens: usize,
}

impl EncodedText {
    /// Shortens the encoding to `len` tokens, keeping the final token (the closing `[SEP]`).
    pub fn shorten_keeping_last(&mut self, len: usize) {
        fn shorten<T>(values: &mut Vec<T>, len: usize) {
            if len > 0 && values.len() > len {
                let last = values.pop();
                values.truncate(len - 1);
                values.extend(last);
            }
        }
        let dropped = self.ids.len().saturating_sub(len);
        shorten(&mut self.tokens, len);
        shorten(&mut self.ids, len);
        shorten(&mut self.segment_ids, len);
        shorten(&mut self.char_offsets, len);
        shorten(&mut self.sentence, len);
        self.dropped_tokens += dropped;
    }
}

/// A BERT tokenizer that never pads or truncates behind the caller's back.
pub struct BertTokenizer {
    inner: Tokenizer,
    max_len: usize,
    mask_token: String,
    mask_id: Option<u32>,
}

impl BertTokenizer {
    /// Builds the tokenizer; `max_len` is the model's `max_position_embeddings`.
    pub fn load(files: &TokenizerFiles, max_len: usize) -> Result<Self> {
        let (mut inner, mask_token, path) = match files {
            TokenizerFiles::Json(path) => {
                let inner = Tokenizer::from_file(path).map_err(|err| ModelError::Tokenizer {
                    path: path.clone(),
                    reason: first_line(&err.to_string()),
                })?;
                (inner, "[MASK]".to_owned(), path.as_path())
            }
            TokenizerFiles::Vocab { vocab, config } => {
                let options = VocabOptions::read(config.as_deref())?;
                let inner = from_vocab(vocab, &options)?;
                (inner, options.mask_token.clone(), vocab.as_path())
            }
        };
        // Padding and truncation settings inside tokenizer.json are for training pipelines;
        // we want every token and handle the model's limit ourselves.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|err| ModelError::Tokenizer {
                path: path.to_owned(),
                reason: first_line(&err.to_string()),
            })?;
        let mask_id = inner.token_to_id(&mask_token);
        Ok(Self {
            inner,
            max_len,
            mask_token,
            mask_id,
        })
    }

    /// The mask token's spelling (usually `[MASK]`).
    pub fn mask_token(&self) -> &str {
        &self.mask_token
    }

    /// The mask token's id, if the vocabulary has one.
    pub fn mask_id(&self) -> Option<u32> {
        self.mask_id
    }

    /// Size of the vocabulary including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The vocabulary spelling of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Tokenizes a sentence or a sentence pair with special tokens, truncating to the model's
    /// limit (longest sentence first, as transformers does) and counting what was dropped.
    pub fn encode(&self, text_a: &str, text_b: Option<&str>) -> Result<EncodedText> {
        let input = |a: &str, b: Option<&str>| -> EncodeInput {
            match b {
                Some(b) => (a.to_owned(), b.to_owned()).into(),
                None => a.to_owned().into(),
            }
        };
        let failed = |err: tokenizers::Error| {
            ModelError::BadInput(format!(
                "cannot tokenize the text: {}",
                first_line(&err.to_string())
            ))
        };
        let mut encoding = self
            .inner
            .encode_char_offsets(input(text_a, text_b), true)
            .map_err(failed)?;
        let full_len = encoding.len();
        let mut dropped_tokens = 0;
        if full_len > self.max_len {
            let mut truncating = self.inner.clone();
            truncating
                .with_truncation(Some(TruncationParams {
                    max_length: self.max_len,
                    strategy: TruncationStrategy::LongestFirst,
                    ..TruncationParams::default()
                }))
                .map_err(failed)?;
            encoding = truncating
                .encode_char_offsets(input(text_a, text_b), true)
                .map_err(|err| {
                    ModelError::BadInput(format!(
                        "the text has {full_len} tokens, more than the model's {} and too many to truncate ({})",
                        self.max_len,
                        first_line(&err.to_string())
                    ))
                })?;
            dropped_tokens = full_len - encoding.len();
        }
        let sentence: Vec<Option<usize>> = encoding.get_sequence_ids();
        let special = encoding.get_special_tokens_mask();
        let char_offsets = encoding
            .get_offsets()
            .iter()
            .zip(special)
            .map(|(&offsets, &is_special)| (is_special == 0).then_some(offsets))
            .collect();
        Ok(EncodedText {
            tokens: encoding.get_tokens().to_vec(),
            ids: encoding.get_ids().to_vec(),
            segment_ids: encoding.get_type_ids().to_vec(),
            char_offsets,
            sentence,
            dropped_tokens,
        })
    }
}

/// The options of `tokenizer_config.json` that change how BertTokenizer splits text.
struct VocabOptions {
    lowercase: bool,
    strip_accents: Option<bool>,
    chinese_chars: bool,
    unk_token: String,
    sep_token: String,
    cls_token: String,
    pad_token: String,
    mask_token: String,
}

impl VocabOptions {
    fn read(path: Option<&Path>) -> Result<Self> {
        let json = match path {
            Some(path) => {
                let bad = |reason: String| ModelError::Tokenizer {
                    path: path.to_owned(),
                    reason,
                };
                let text = std::fs::read_to_string(path)
                    .map_err(|err| bad(format!("cannot read ({err})")))?;
                serde_json::from_str(&text).map_err(|err| bad(format!("not valid JSON ({err})")))?
            }
            None => Value::Null,
        };
        let flag = |key: &str| json.get(key).and_then(Value::as_bool);
        // Special tokens are spelled either as strings or as AddedToken objects.
        let token = |key: &str, default: &str| {
            json.get(key)
                .and_then(|value| value.as_str().or_else(|| value.get("content")?.as_str()))
                .unwrap_or(default)
                .to_owned()
        };
        Ok(Self {
            lowercase: flag("do_lower_case").unwrap_or(true),
            strip_accents: flag("strip_accents"),
            chinese_chars: flag("tokenize_chinese_chars").unwrap_or(true),
            unk_token: token("unk_token", "[UNK]"),
            sep_token: token("sep_token", "[SEP]"),
            cls_token: token("cls_token", "[CLS]"),
            pad_token: token("pad_token", "[PAD]"),
            mask_token: token("mask_token", "[MASK]"),
        })
    }
}

/// Assembles transformers' BertTokenizer pipeline from a `vocab.txt`.
fn from_vocab(vocab: &Path, options: &VocabOptions) -> Result<Tokenizer> {
    let bad = |reason: String| ModelError::Tokenizer {
        path: vocab.to_owned(),
        reason,
    };
    let vocab_str = vocab
        .to_str()
        .ok_or_else(|| bad("the path is not valid UTF-8".to_owned()))?;
    let model = WordPiece::from_file(vocab_str)
        .unk_token(options.unk_token.clone())
        .continuing_subword_prefix("##".to_owned())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|err| bad(first_line(&err.to_string())))?;
    let id = |token: &str| {
        model_token_id(&model, token)
            .ok_or_else(|| bad(format!("the vocabulary has no {token} token")))
    };
    let sep = (options.sep_token.clone(), id(&options.sep_token)?);
    let cls = (options.cls_token.clone(), id(&options.cls_token)?);

    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(
            true,
            options.chinese_chars,
            options.strip_accents,
            options.lowercase,
        )))
        .map_err(|err| bad(first_line(&err.to_string())))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new(sep, cls)));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    // Typed special tokens such as "[MASK]" must survive lower-casing and punctuation splitting.
    let specials: Vec<AddedToken> = [
        &options.pad_token,
        &options.unk_token,
        &options.cls_token,
        &options.sep_token,
        &options.mask_token,
    ]
    .into_iter()
    .filter(|token| tokenizer.token_to_id(token).is_some())
    .map(|token| AddedToken::from(token.clone(), true))
    .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|err| bad(first_line(&err.to_string())))?;
    Ok(tokenizer)
}

fn model_token_id(model: &WordPiece, token: &str) -> Option<u32> {
    use tokenizers::Model;
    model.token_to_id(token)
}
