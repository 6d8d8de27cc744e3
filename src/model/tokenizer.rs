//! Tokenizers: `tokenizer.json` through the `tokenizers` crate, or, when a checkpoint ships only
//! vocabulary files, the pipeline transformers builds from them: WordPiece from `vocab.txt`
//! (BertTokenizer: clean-up, CJK splitting, lower-casing, accent stripping, punctuation
//! splitting, greedy WordPiece) or byte-level BPE from `vocab.json` + `merges.txt`
//! (RobertaTokenizer, GPT2Tokenizer). The family's conventions say which special tokens frame
//! the text; [`TokenStyle`] shows pieces readably.

use std::path::Path;

use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, EncodeInput, Tokenizer, TruncationParams, TruncationStrategy};

use super::error::{first_line, ModelError, Result};
use super::source::{TokenizerFiles, TokenizerVocab};

/// How a tokenizer spells its pieces, which decides how they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenStyle {
    /// WordPiece: `##` marks a continuation (`play ##ing`).
    #[default]
    WordPiece,
    /// Byte-level BPE: bytes spelled as printable characters, `Ġ` a leading space (`Ġplay`).
    ByteLevel,
    /// SentencePiece: `▁` marks the start of a word (`▁play`).
    SentencePiece,
}

/// Shown where a piece starts a new word (byte-level `Ġ`, SentencePiece `▁`).
pub const WORD_START: char = '▁';
/// Shown for a newline inside a piece (byte-level `Ċ`).
pub const NEWLINE: char = '↵';
/// Shown for a tab inside a piece.
pub const TAB: char = '⇥';

impl TokenStyle {
    /// A piece as people read it: WordPiece `##ing` as `·ing`; byte-level pieces decoded from
    /// their byte alphabet, with a leading space as `▁`, newlines as `↵`, tabs as `⇥`, and bytes
    /// that are part of a longer character as `\xF0`.
    pub fn display(self, token: &str) -> String {
        match self {
            Self::WordPiece => match token.strip_prefix("##") {
                Some(rest) => format!("·{rest}"),
                None => token.to_owned(),
            },
            Self::ByteLevel => {
                let Some(bytes) = token.chars().map(byte_of).collect::<Option<Vec<u8>>>() else {
                    return token.to_owned();
                };
                readable_bytes(&bytes)
            }
            Self::SentencePiece => token.replace('\n', &NEWLINE.to_string()),
        }
    }

    /// A piece's own characters, without the marks of where it sits in a word: WordPiece's
    /// `##`, the leading space of byte-level pieces (decoded), SentencePiece's `▁`.
    pub fn bare(self, token: &str) -> String {
        match self {
            Self::WordPiece => token.strip_prefix("##").unwrap_or(token).to_owned(),
            Self::ByteLevel => match token.chars().map(byte_of).collect::<Option<Vec<u8>>>() {
                Some(bytes) => String::from_utf8_lossy(&bytes).trim_start().to_owned(),
                None => token.to_owned(),
            },
            Self::SentencePiece => token.trim_start_matches(WORD_START).to_owned(),
        }
    }

    /// Whether a piece begins a word (as opposed to continuing the previous piece).
    pub fn starts_word(self, token: &str) -> bool {
        match self {
            Self::WordPiece => !token.starts_with("##"),
            Self::ByteLevel => token
                .chars()
                .next()
                .and_then(byte_of)
                .is_some_and(|byte| byte.is_ascii_whitespace()),
            Self::SentencePiece => token.starts_with(WORD_START),
        }
    }
}

/// GPT-2's byte alphabet backwards: the byte a printable character stands for. Printable
/// Latin-1 bytes stand for themselves; the other 68 bytes were moved to U+0100 onwards, in order.
fn byte_of(c: char) -> Option<u8> {
    let code = c as u32;
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    if code < 0x100 {
        return printable(code).then_some(code as u8);
    }
    let shifted = (0u32..=0xFF)
        .filter(|&b| !printable(b))
        .nth((code - 0x100) as usize)?;
    u8::try_from(shifted).ok()
}

fn readable_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                ' ' => out.push(WORD_START),
                '\n' => out.push(NEWLINE),
                '\t' => out.push(TAB),
                c if c.is_control() => out.push_str(&format!("\\x{:02X}", u32::from(c))),
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02X}"));
        }
    }
    out
}

/// A family's special tokens, as transformers' tokenizer classes spell them by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// The first token (`[CLS]`, `<s>`).
    pub cls: &'static str,
    /// The separator and last token (`[SEP]`, `</s>`).
    pub sep: &'static str,
    /// Padding.
    pub pad: &'static str,
    /// Unknown pieces.
    pub unk: &'static str,
    /// The mask token, for masked-LM families.
    pub mask: Option<&'static str>,
}

/// How special tokens frame a text and a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `[CLS] A [SEP] B [SEP]`, segments 0 and 1.
    Bert,
    /// `<s> A </s></s> B </s>`.
    Roberta,
    /// Nothing added (GPT-2).
    None,
}

/// Which vocabulary files can stand in for `tokenizer.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabFiles {
    /// `vocab.txt` (WordPiece).
    WordPiece,
    /// `vocab.json` + `merges.txt` (byte-level BPE).
    ByteLevelBpe,
    /// None: only `tokenizer.json` will do (SentencePiece models).
    None,
}

/// What a family's description says about its tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizerConventions {
    /// How pieces are spelled.
    pub style: TokenStyle,
    /// Default special tokens (`tokenizer_config.json` may rename them).
    pub specials: SpecialTokens,
    /// How they frame the text.
    pub framing: Framing,
    /// Which vocabulary files can replace `tokenizer.json`.
    pub vocab_files: VocabFiles,
}

/// A tokenized input: one entry per token in every vector, and the texts it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedText {
    /// Sentence A.
    pub text_a: String,
    /// Sentence B, for a pair.
    pub text_b: Option<String>,
    /// Token strings as the vocabulary spells them (`##ing`, `Ġplay`, `▁play`).
    pub tokens: Vec<String>,
    /// Vocabulary ids.
    pub ids: Vec<u32>,
    /// Segment (token type) ids as the tokenizer assigns them: 0 for sentence A, 1 for B.
    pub segment_ids: Vec<u32>,
    /// `[start, end)` character offsets into the token's sentence; `None` for special tokens.
    pub char_offsets: Vec<Option<(usize, usize)>>,
    /// Which sentence each token comes from (0 = A, 1 = B); `None` for special tokens.
    pub sentence: Vec<Option<usize>>,
    /// Tokens cut off because the input was longer than the model accepts.
    pub dropped_tokens: usize,
}

impl EncodedText {
    /// Shortens the encoding to `len` tokens, keeping the final token (a closing `[SEP]`).
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

/// A model's tokenizer, which never pads or truncates behind the caller's back.
pub struct ModelTokenizer {
    inner: Tokenizer,
    max_len: usize,
    mask_token: Option<String>,
    mask_id: Option<u32>,
    style: TokenStyle,
    special_ids: Vec<u32>,
    pad_id: Option<u32>,
}

impl ModelTokenizer {
    /// Builds the tokenizer of a family; `max_len` is the model's longest input in tokens.
    pub fn load(
        files: &TokenizerFiles,
        conventions: &TokenizerConventions,
        family_name: &str,
        max_len: usize,
    ) -> Result<Self> {
        let has_json = matches!(files.vocab, TokenizerVocab::Json(_));
        let options = TokenizerOptions::read(files.config.as_deref(), conventions, !has_json)?;
        let (mut inner, style, path) = match &files.vocab {
            TokenizerVocab::Json(path) => {
                let inner = Tokenizer::from_file(path).map_err(|err| ModelError::Tokenizer {
                    path: path.clone(),
                    reason: first_line(&err.to_string()),
                })?;
                let style = style_of(&inner).unwrap_or(conventions.style);
                (inner, style, path.as_path())
            }
            TokenizerVocab::WordPiece(vocab)
                if conventions.vocab_files == VocabFiles::WordPiece =>
            {
                (
                    from_wordpiece(vocab, &options)?,
                    TokenStyle::WordPiece,
                    vocab.as_path(),
                )
            }
            TokenizerVocab::Bpe { vocab, merges }
                if conventions.vocab_files == VocabFiles::ByteLevelBpe =>
            {
                (
                    from_byte_level_bpe(vocab, merges, &options, conventions.framing)?,
                    TokenStyle::ByteLevel,
                    vocab.as_path(),
                )
            }
            TokenizerVocab::WordPiece(path) | TokenizerVocab::Bpe { vocab: path, .. } => {
                let needs = match conventions.vocab_files {
                    VocabFiles::WordPiece => "tokenizer.json or vocab.txt",
                    VocabFiles::ByteLevelBpe => "tokenizer.json, or vocab.json with merges.txt",
                    VocabFiles::None => "tokenizer.json (write it once with transformers: AutoTokenizer.from_pretrained(folder).save_pretrained(folder))",
                };
                return Err(ModelError::Tokenizer {
                    path: path.clone(),
                    reason: format!("a {family_name} model needs {needs}"),
                });
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
        let mask_id = options
            .mask
            .as_deref()
            .and_then(|mask| inner.token_to_id(mask));
        let special_ids = options
            .specials()
            .iter()
            .filter_map(|token| inner.token_to_id(token))
            .collect();
        let pad_id = inner.token_to_id(&options.pad);
        Ok(Self {
            inner,
            max_len,
            mask_token: options.mask.filter(|_| mask_id.is_some()),
            mask_id,
            style,
            special_ids,
            pad_id,
        })
    }

    /// The mask token's spelling (`[MASK]`, `<mask>`), when the vocabulary has one.
    pub fn mask_token(&self) -> Option<&str> {
        self.mask_token.as_deref()
    }

    /// The mask token's id, if the vocabulary has one.
    pub fn mask_id(&self) -> Option<u32> {
        self.mask_id
    }

    /// The ids of the special tokens (padding, unknown, first, separator, mask), as
    /// transformers' `all_special_ids` lists them.
    pub fn special_ids(&self) -> &[u32] {
        &self.special_ids
    }

    /// The padding token's id (GPT-2's is `<|endoftext|>`), when the vocabulary has it.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// The id of a vocabulary spelling.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// How pieces are spelled.
    pub fn style(&self) -> TokenStyle {
        self.style
    }

    /// Size of the vocabulary including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The vocabulary spelling of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The text of `ids`, special tokens spelled out, as transformers' `decode` gives it.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|err| {
            ModelError::Compute(format!(
                "cannot decode the tokens: {}",
                first_line(&err.to_string())
            ))
        })
    }

    /// Tokenizes a text or a pair with special tokens, truncating to the model's limit (longest
    /// sequence first, as transformers does) and counting what was dropped.
    pub fn encode(&self, text_a: &str, text_b: Option<&str>) -> Result<EncodedText> {
        self.encode_within(text_a, text_b, self.max_len)
    }

    /// [`ModelTokenizer::encode`] truncating to `max_len` tokens (at most the model's limit).
    pub fn encode_within(
        &self,
        text_a: &str,
        text_b: Option<&str>,
        max_len: usize,
    ) -> Result<EncodedText> {
        let max_len = max_len.min(self.max_len);
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
        if full_len > max_len {
            let mut truncating = self.inner.clone();
            truncating
                .with_truncation(Some(TruncationParams {
                    max_length: max_len,
                    strategy: TruncationStrategy::LongestFirst,
                    ..TruncationParams::default()
                }))
                .map_err(failed)?;
            encoding = truncating
                .encode_char_offsets(input(text_a, text_b), true)
                .map_err(|err| {
                    ModelError::BadInput(format!(
                        "the text has {full_len} tokens, more than the model's {} and too many to truncate ({})",
                        max_len,
                        first_line(&err.to_string())
                    ))
                })?;
            dropped_tokens = full_len - encoding.len();
        }
        let sentence: Vec<Option<usize>> = encoding.get_sequence_ids();
        let char_offsets = encoding
            .get_offsets()
            .iter()
            .zip(encoding.get_special_tokens_mask())
            .map(|(&offsets, &special)| (special == 0).then_some(offsets))
            .collect();
        // The vocabulary's spelling, as transformers' convert_ids_to_tokens gives it: an added
        // token that strips the space before it (RoBERTa's `<mask>`) is matched with the space.
        let tokens = encoding
            .get_ids()
            .iter()
            .zip(encoding.get_tokens())
            .map(|(&id, token)| self.inner.id_to_token(id).unwrap_or_else(|| token.clone()))
            .collect();
        Ok(EncodedText {
            text_a: text_a.to_owned(),
            text_b: text_b.map(str::to_owned),
            tokens,
            ids: encoding.get_ids().to_vec(),
            segment_ids: encoding.get_type_ids().to_vec(),
            char_offsets,
            sentence,
            dropped_tokens,
        })
    }
}

/// The style a `tokenizer.json` spells its pieces in, when it says.
fn style_of(tokenizer: &Tokenizer) -> Option<TokenStyle> {
    match tokenizer.get_model() {
        ModelWrapper::WordPiece(_) => return Some(TokenStyle::WordPiece),
        ModelWrapper::Unigram(_) => return Some(TokenStyle::SentencePiece),
        ModelWrapper::BPE(_) | ModelWrapper::WordLevel(_) => {}
    }
    decoder_style(tokenizer.get_decoder()?)
}

/// The style a decoder undoes: Llama's SentencePiece BPE decodes with a sequence that replaces
/// `▁` by a space (and falls back to bytes).
fn decoder_style(decoder: &DecoderWrapper) -> Option<TokenStyle> {
    match decoder {
        DecoderWrapper::ByteLevel(_) => Some(TokenStyle::ByteLevel),
        DecoderWrapper::Metaspace(_) | DecoderWrapper::Replace(_) => {
            Some(TokenStyle::SentencePiece)
        }
        DecoderWrapper::WordPiece(_) => Some(TokenStyle::WordPiece),
        DecoderWrapper::Sequence(sequence) => {
            sequence.get_decoders().iter().find_map(decoder_style)
        }
        _ => None,
    }
}

/// The options of `tokenizer_config.json` that change how a tokenizer built from vocabulary
/// files splits and frames text.
struct TokenizerOptions {
    lowercase: bool,
    strip_accents: Option<bool>,
    chinese_chars: bool,
    add_prefix_space: bool,
    unk: String,
    sep: String,
    cls: String,
    pad: String,
    mask: Option<String>,
}

impl TokenizerOptions {
    /// Reads `tokenizer_config.json`. When `required` is false (a `tokenizer.json` says how to
    /// tokenize, and this file only names the mask token) a file that cannot be read is ignored.
    fn read(
        path: Option<&Path>,
        conventions: &TokenizerConventions,
        required: bool,
    ) -> Result<Self> {
        let json = match path {
            Some(path) => {
                let bad = |reason: String| ModelError::Tokenizer {
                    path: path.to_owned(),
                    reason,
                };
                let parsed = std::fs::read_to_string(path)
                    .map_err(|err| bad(format!("cannot read ({err})")))
                    .and_then(|text| {
                        serde_json::from_str(&text)
                            .map_err(|err| bad(format!("not valid JSON ({err})")))
                    });
                match parsed {
                    Ok(json) => json,
                    Err(err) if required => return Err(err),
                    Err(_) => Value::Null,
                }
            }
            None => Value::Null,
        };
        let flag = |key: &str| json.get(key).and_then(Value::as_bool);
        // Special tokens are spelled either as strings or as AddedToken objects.
        let token = |key: &str| {
            json.get(key)
                .and_then(|value| value.as_str().or_else(|| value.get("content")?.as_str()))
                .map(str::to_owned)
        };
        let specials = &conventions.specials;
        Ok(Self {
            lowercase: flag("do_lower_case").unwrap_or(true),
            strip_accents: flag("strip_accents"),
            chinese_chars: flag("tokenize_chinese_chars").unwrap_or(true),
            add_prefix_space: flag("add_prefix_space").unwrap_or(false),
            unk: token("unk_token").unwrap_or_else(|| specials.unk.to_owned()),
            // Decoders name their framing tokens bos and eos, and often have no padding token:
            // their end of text stands in for it, as transformers' pipelines use it.
            sep: token("sep_token")
                .or_else(|| token("eos_token"))
                .unwrap_or_else(|| specials.sep.to_owned()),
            cls: token("cls_token")
                .or_else(|| token("bos_token"))
                .unwrap_or_else(|| specials.cls.to_owned()),
            pad: token("pad_token")
                .or_else(|| token("eos_token"))
                .unwrap_or_else(|| specials.pad.to_owned()),
            mask: token("mask_token").or_else(|| specials.mask.map(str::to_owned)),
        })
    }

    /// The special tokens, each once, in transformers' order.
    fn specials(&self) -> Vec<String> {
        let mut specials: Vec<String> = Vec::new();
        for token in [&self.pad, &self.unk, &self.cls, &self.sep]
            .into_iter()
            .chain(self.mask.as_ref())
        {
            if !specials.contains(token) {
                specials.push(token.clone());
            }
        }
        specials
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| ModelError::Tokenizer {
        path: path.to_owned(),
        reason: "the path is not valid UTF-8".to_owned(),
    })
}

/// Assembles transformers' BertTokenizer pipeline from a `vocab.txt`.
fn from_wordpiece(vocab: &Path, options: &TokenizerOptions) -> Result<Tokenizer> {
    let bad = |reason: String| ModelError::Tokenizer {
        path: vocab.to_owned(),
        reason,
    };
    let model = WordPiece::from_file(path_str(vocab)?)
        .unk_token(options.unk.clone())
        .continuing_subword_prefix("##".to_owned())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|err| bad(first_line(&err.to_string())))?;
    let id = |token: &str| {
        use tokenizers::Model;
        model
            .token_to_id(token)
            .ok_or_else(|| bad(format!("the vocabulary has no {token} token")))
    };
    let sep = (options.sep.clone(), id(&options.sep)?);
    let cls = (options.cls.clone(), id(&options.cls)?);

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
    let specials: Vec<AddedToken> = options
        .specials()
        .into_iter()
        .filter(|token| tokenizer.token_to_id(token).is_some())
        .map(|token| AddedToken::from(token, true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|err| bad(first_line(&err.to_string())))?;
    Ok(tokenizer)
}

/// Assembles transformers' RobertaTokenizer (`framing` Roberta) or GPT2Tokenizer (no framing)
/// from `vocab.json` and `merges.txt`.
fn from_byte_level_bpe(
    vocab: &Path,
    merges: &Path,
    options: &TokenizerOptions,
    framing: Framing,
) -> Result<Tokenizer> {
    let bad = |reason: String| ModelError::Tokenizer {
        path: vocab.to_owned(),
        reason,
    };
    let model = BPE::from_file(path_str(vocab)?, path_str(merges)?)
        .build()
        .map_err(|err| bad(first_line(&err.to_string())))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(options.add_prefix_space, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<String> = match framing {
        Framing::None => vec![options.unk.clone()],
        Framing::Bert | Framing::Roberta => options.specials(),
    };
    tokenizer
        .add_special_tokens(
            specials
                .iter()
                .map(|token| AddedToken::from(token.clone(), true))
                .collect::<Vec<_>>(),
        )
        .map_err(|err| bad(first_line(&err.to_string())))?;
    if framing != Framing::None {
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| bad(format!("the vocabulary has no {token} token")))
        };
        let sep = (options.sep.clone(), id(&options.sep)?);
        let cls = (options.cls.clone(), id(&options.cls)?);
        tokenizer.with_post_processor(Some(
            RobertaProcessing::new(sep, cls)
                .trim_offsets(true)
                .add_prefix_space(options.add_prefix_space),
        ));
    }
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_pieces_read_as_text() {
        let style = TokenStyle::ByteLevel;
        assert_eq!(style.display("Ġthe"), "▁the");
        assert_eq!(style.display("Ċ"), "↵");
        assert_eq!(style.display("ĠĠ"), "▁▁");
        assert_eq!(style.display("cafÃ©"), "café");
        // The first two bytes of 🙂 (F0 9F 99 82) alone are not a character.
        assert_eq!(style.display("ðŁ"), "\\xF0\\x9F");
        assert_eq!(style.display("<|endoftext|>"), "<|endoftext|>");
        // Control bytes have no glyph: Ā is byte 0, ą byte 5, č byte 13 (carriage return).
        assert_eq!(style.display("Āąč"), "\\x00\\x05\\x0D");
        assert!(style.starts_word("Ġthe") && !style.starts_word("the"));
    }

    #[test]
    fn wordpiece_and_sentencepiece_marks() {
        assert_eq!(TokenStyle::WordPiece.display("##ing"), "·ing");
        assert_eq!(TokenStyle::WordPiece.display("#"), "#");
        assert!(!TokenStyle::WordPiece.starts_word("##ing"));
        assert_eq!(TokenStyle::SentencePiece.display("▁play"), "▁play");
        assert!(TokenStyle::SentencePiece.starts_word("▁play"));
    }

    #[test]
    fn the_byte_alphabet_inverts_gpt2s() {
        assert_eq!(byte_of('!'), Some(b'!'));
        assert_eq!(byte_of('Ġ'), Some(b' '));
        assert_eq!(byte_of('Ċ'), Some(b'\n'));
        assert_eq!(byte_of('ĉ'), Some(b'\t'));
        assert_eq!(byte_of('Ā'), Some(0));
        assert_eq!(byte_of('Ń'), Some(0xAD));
        assert_eq!(byte_of(' '), None);
        assert_eq!(byte_of('東'), None);
    }
}
