#!/usr/bin/env python3
"""Writes the test fixtures under tests/fixtures/ with Hugging Face transformers, the reference
implementation bertscope must match.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers safetensors
    /tmp/ref/bin/python tools/make_fixtures.py --minilm ../shared/models/all-MiniLM-L6-v2

It makes three tiny random-weight checkpoints that spell their tensors the ways real checkpoints do,
and for each, plus the real MiniLM checkpoint, the outputs of transformers for a few texts:

- tiny-modern      BertModel; no prefix, LayerNorm.weight/bias, pooler, tokenizer.json.
- tiny-legacy      BertForPreTraining (MLM + NSP); `bert.` prefix, LayerNorm.gamma/beta, decoder
                   tied to the word embeddings (absent), bias as cls.predictions.bias, sharded
                   safetensors with model.safetensors.index.json, tokenizer.json.
- tiny-vocab-only  BertForMaskedLM with its own decoder weight and cls.predictions.decoder.bias,
                   gelu_new, and only vocab.txt + tokenizer_config.json (no tokenizer.json).

Then one tiny checkpoint per family and head (hidden 16, 2 layers, 4 heads, 64 positions):

- bert-sentiment        BertForSequenceClassification, NEGATIVE/POSITIVE (softmax), vocab.txt.
- bert-qa               BertForQuestionAnswering, vocab.txt.
- bert-ner              BertForTokenClassification, BIO labels, no pooler, vocab.txt.
- distilbert-mlm        DistilBertForMaskedLM with sinusoidal_pos_embds and the (fixed) position
                        table left out of the file, vocab.txt.
- distilbert-regression DistilBertForSequenceClassification with one output (regression).
- roberta-mlm           RobertaForMaskedLM, byte-level BPE from vocab.json + merges.txt only.
- roberta-multilabel    RobertaForSequenceClassification, multi_label_classification (sigmoid),
                        tokenizer.json.
- xlmr-qa               XLMRobertaForQuestionAnswering, SentencePiece (Unigram) tokenizer.json.
- gpt2-lm               GPT2LMHeadModel, lm_head tied to wte (absent), vocab.json + merges.txt.
- gpt2-classifier       GPT2ForSequenceClassification with pad_token_id, tokenizer.json.
- gpt2-untied           GPT2LMHeadModel with its own lm_head.weight (generation references only).

The family checkpoints just above but gpt2-untied, tiny-vocab-only, and the newer families'
checkpoints (`--modern`) draw their biases and norm scales at random: transformers would leave
them at 0 and 1, where a wrong bias or scale term cannot show (tiny-vocab-only holds the one BERT
masked-LM head so drawn: its transform, LayerNorm and decoder bias). tiny-modern, tiny-legacy and
gpt2-untied keep transformers' initialisation: the app's snapshots are drawn from tiny-legacy,
and what these three check is how tensors are named, tied and stored, which shows at 1 and 0
too (a swapped gamma and beta, a missing tensor).

Each folder gets reference.safetensors (attentions [L,H,T,T] and hidden states [L+1,T,D] per case)
and cases.json: texts, tokens, ids, the segment ids the model received, dropped tokens, and each
head's output: MLM top-5, NSP, next-token top-5 at every position, label scores, the QA answer
(decoded as transformers 4.x's question-answering pipeline did, written out below because 5.x
dropped the pipeline) and per-token labels. The MiniLM reference also holds a 512-token case, of
which only a few heads and rows are stored.
"""

import argparse
import json
import os
import shutil
from pathlib import Path

# The tokenizer trainers sum scores in parallel, in no fixed order: one thread keeps the
# fixtures' vocabularies the same from run to run.
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    BertTokenizer,
    BertTokenizerLegacy,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPT2Tokenizer,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
    RobertaTokenizer,
    XLMRobertaConfig,
    XLMRobertaForQuestionAnswering,
    XLMRobertaTokenizer,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# Texts exercising WordPiece splits, accents, CJK, emoji, dashes, typed [MASK] and pairs.
TINY_CASES = {
    "tiny-modern": [
        ("plain", "The cat sat on the mat.", None),
        ("pair", "Where is the station?", "It is next to the old church."),
        ("accents", "Crème brûlée — naïve café, 東京 and 🙂!", None),
        ("truncated", " ".join(["the history of the world is long and old"] * 12), None),
        ("truncated-pair", "a short question here?", " ".join(["and then the story went on"] * 15)),
    ],
    "tiny-legacy": [
        ("mask", "The [MASK] sat on the [MASK].", None),
        ("pair", "He went to the [MASK] store.", "He bought a gallon of milk."),
        ("random-pair", "The man went home.", "Penguins are birds that cannot fly."),
    ],
    "tiny-vocab-only": [
        ("upper", "HELLO [MASK] World, Straße!", None),
        ("unicode", "Crème brûlée in 東京 costs 5€ – naïve? 🙂 [MASK]…", None),
        ("pair", "Is it [MASK]?", "Yes — it is."),
    ],
}

MINILM_CASES = [
    ("plain", "The quick brown fox jumps over the lazy dog.", None),
    ("unicode", "Crème brûlée à Paris — naïve café; 東京タワー 🍕 and ☕…", None),
    ("pair", "Where does the teacher live?", "She lives near the school."),
]


def small_vocab(full_vocab: Path) -> list[str]:
    """Specials, single characters and common words of the bert-base-uncased vocabulary."""
    tokens = full_vocab.read_text(encoding="utf-8").splitlines()
    head = tokens[:3000]
    suffixes = [t for t in tokens[3000:] if t.startswith("##") and len(t) == 3]
    return head + suffixes


def tiny_config(vocab_size: int, **extra) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        initializer_range=0.3,
        attn_implementation="eager",
        **extra,
    )


def rename(state: dict, prefix_encoder: bool, legacy_norm: bool) -> dict:
    out = {}
    for name, tensor in state.items():
        name = name.removeprefix("bert.")
        if legacy_norm:
            name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        if prefix_encoder and not name.startswith("cls."):
            name = "bert." + name
        out[name] = tensor.detach().clone().contiguous()
    return out


def save_config(config: BertConfig, folder: Path, architecture: str) -> None:
    data = config.to_dict()
    keep = [
        "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
        "max_position_embeddings", "type_vocab_size", "initializer_range", "layer_norm_eps",
        "pad_token_id", "position_embedding_type",
    ]
    out = {"architectures": [architecture]} | {k: data[k] for k in keep if k in data}
    (folder / "config.json").write_text(json.dumps(out, indent=2) + "\n")


def tokenize(tokenizer, text, text_b, max_len, fast=True):
    full = tokenizer(text, text_b, add_special_tokens=True)
    extra = {"return_offsets_mapping": True, "return_special_tokens_mask": True} if fast else {}
    enc = tokenizer(text, text_b, add_special_tokens=True, return_token_type_ids=True,
                    truncation="longest_first", max_length=max_len, **extra)
    return enc, len(full["input_ids"]) - len(enc["input_ids"])


def top5(probs, label):
    """The five most probable ids; asserts that their order is clear at f32 precision."""
    top = probs.topk(6)
    gap = (top.values[:-1].log() - top.values[1:].log()).min().item()
    assert gap > 1e-4, f"{label}: top-5 too close to order reliably (log-probability gap {gap})"
    return {"ids": top.indices[:5].tolist(), "probs": top.values[:5].tolist()}


def classification(config, logits):
    """Every label's softmax/sigmoid probability or regression score, highest first."""
    count = logits.shape[-1]
    problem = config.problem_type or ("regression" if count == 1 else "single_label_classification")
    values = {"single_label_classification": logits.softmax(-1),
              "multi_label_classification": logits.sigmoid(),
              "regression": logits}[problem]
    key = "score" if problem == "regression" else "prob"
    labels = [{"label": config.id2label[i], "id": i, key: values[i].item()} for i in range(count)]
    return {"problem_type": problem, "labels": sorted(labels, key=lambda d: (-d[key], d["id"]))}


def qa_answer(enc, start_logits, end_logits, context):
    """transformers 4.x's question-answering pipeline with its defaults (max_answer_len 15,
    handle_impossible_answer False), which 5.x removed: softmax over the first token and the
    context tokens (the rest get -10000), the first token zeroed, then the best span s <= e < s + 15."""
    sequence = enc.sequence_ids()
    allowed = np.array([i == 0 or s == 1 for i, s in enumerate(sequence)])

    def spread(logits):
        x = np.where(allowed, logits.numpy().astype(np.float32), np.float32(-10000.0))
        e = np.exp(x - x.max())
        return e / e.sum()

    p_start, p_end = spread(start_logits), spread(end_logits)
    start_probs, end_probs = p_start.tolist(), p_end.tolist()
    p_start[0] = p_end[0] = 0.0
    candidates = np.tril(np.triu(np.outer(p_start, p_end)), 14)
    s, e = np.unravel_index(np.argmax(candidates), candidates.shape)
    assert sequence[s] == 1 and sequence[e] == 1
    offsets = enc["offset_mapping"]
    a, b = offsets[s][0], offsets[e][1]
    return {"answer": context[a:b], "score": float(p_start[s] * p_end[e]), "start": int(s),
            "end": int(e), "char_start": a, "char_end": b,
            "start_probs": start_probs, "end_probs": end_probs}


@torch.no_grad()
def reference(model, tokenizer, cases, folder: Path, max_len: int, mask_id: int | None = None,
              head: str | None = None, segments: bool = True, fast: bool = True):
    """Runs every case through the model; `head` names the task output to record: "mlm",
    "pretraining" (MLM + NSP), "next_token", "classification", "qa" or "token_classification".
    `segments` passes the tokenizer's token types (BERT); other families get none (zeros)."""
    tensors, records = {}, []
    for name, text, text_b in cases:
        label = f"{folder.name}/{name}"
        enc, dropped = tokenize(tokenizer, text, text_b, max_len, fast)
        ids = torch.tensor([enc["input_ids"]])
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        segment_ids = enc["token_type_ids"] if segments else [0] * ids.shape[1]
        if segments:
            inputs["token_type_ids"] = torch.tensor([segment_ids])
        out = model(**inputs, output_attentions=True, output_hidden_states=True)
        tensors[f"{name}.attentions"] = torch.cat(out.attentions).contiguous()
        tensors[f"{name}.hidden_states"] = torch.cat(out.hidden_states).contiguous()
        record = {
            "name": name,
            "text": text,
            "text_b": text_b,
            "tokens": tokenizer.convert_ids_to_tokens(enc["input_ids"]),
            "token_ids": enc["input_ids"],
            "segment_ids": segment_ids,
            "dropped_tokens": dropped,
        }
        if head in ("mlm", "pretraining"):
            logits = out.prediction_logits if head == "pretraining" else out.logits
            probs = logits[0].softmax(-1)
            record["mlm"] = [{"position": pos} | top5(probs[pos], f"{label}@{pos}")
                             for pos, token_id in enumerate(enc["input_ids"]) if token_id == mask_id]
        if head == "pretraining" and text_b is not None:
            record["nsp_is_next"] = out.seq_relationship_logits[0].softmax(-1)[0].item()
        if head == "next_token":
            probs = out.logits[0].softmax(-1)
            record["next_token"] = [{"position": pos} | top5(probs[pos], f"{label}@{pos}")
                                    for pos in range(ids.shape[1])]
        if head == "classification":
            record["classification"] = classification(model.config, out.logits[0])
        if head == "qa" and text_b is not None:
            record["qa"] = qa_answer(enc, out.start_logits[0], out.end_logits[0], text_b)
        if head == "token_classification":
            probs = out.logits[0].softmax(-1)
            record["token_classification"] = [
                {"position": pos, "label": model.config.id2label[probs[pos].argmax().item()],
                 "prob": probs[pos].max().item()}
                for pos, special in enumerate(enc["special_tokens_mask"]) if not special]
        records.append(record)
    save_file(tensors, folder / "reference.safetensors")
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__, "cases": records}
    (folder / "cases.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


def write_vocab(folder: Path, vocab: list[str]) -> Path:
    path = folder / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return path


def tokenizer_config(folder: Path) -> None:
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "do_lower_case": True, "tokenize_chinese_chars": True, "strip_accents": None,
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
        "mask_token": "[MASK]", "tokenizer_class": "BertTokenizer", "model_max_length": 64,
    }, indent=2) + "\n")


def fresh(name: str) -> Path:
    folder = FIXTURES / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def make_tiny(vocab: list[str]) -> None:
    # tiny-modern: BertModel, modern names, tokenizer.json.
    torch.manual_seed(1)
    folder = fresh("tiny-modern")
    config = tiny_config(len(vocab))
    model = BertModel(config).eval()
    save_file(rename(model.state_dict(), False, False), folder / "model.safetensors", metadata={"format": "pt"})
    save_config(config, folder, "BertModel")
    write_vocab(folder, vocab)
    tokenizer_config(folder)
    BertTokenizer.from_pretrained(folder).save_pretrained(folder)
    tok = BertTokenizer.from_pretrained(folder)
    reference(model, tok, TINY_CASES["tiny-modern"], folder, 64, tok.mask_token_id)

    # tiny-legacy: BertForPreTraining, legacy names, tied decoder, sharded.
    torch.manual_seed(2)
    folder = fresh("tiny-legacy")
    config = tiny_config(len(vocab))
    model = BertForPreTraining(config).eval()
    state = rename(model.state_dict(), True, True)
    state.pop("cls.predictions.decoder.weight", None)
    bias = state.pop("cls.predictions.decoder.bias", None)
    if "cls.predictions.bias" not in state:
        state["cls.predictions.bias"] = bias
    names = sorted(state)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for index, part in enumerate(halves, start=1):
        shard = f"model-{index:05d}-of-00002.safetensors"
        save_file({n: state[n] for n in part}, folder / shard, metadata={"format": "pt"})
        weight_map |= {n: shard for n in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": sum(t.numel() * 4 for t in state.values())}, "weight_map": weight_map}, indent=2) + "\n")
    save_config(config, folder, "BertForPreTraining")
    write_vocab(folder, vocab)
    tokenizer_config(folder)
    BertTokenizer.from_pretrained(folder).save_pretrained(folder)
    (folder / "vocab.txt").unlink()
    tok = BertTokenizer.from_pretrained(folder)
    reference(model, tok, TINY_CASES["tiny-legacy"], folder, 64, tok.mask_token_id, head="pretraining")

    # tiny-vocab-only: BertForMaskedLM with an untied decoder, vocab.txt only.
    torch.manual_seed(3)
    folder = fresh("tiny-vocab-only")
    config = tiny_config(len(vocab), hidden_act="gelu_new", tie_word_embeddings=False)
    model = BertForMaskedLM(config).eval()
    random_biases(model)
    state = rename(model.state_dict(), True, False)
    bias = state.pop("cls.predictions.bias", None)
    if "cls.predictions.decoder.bias" not in state:
        state["cls.predictions.decoder.bias"] = bias
    assert not torch.equal(state["cls.predictions.decoder.weight"], state["bert.embeddings.word_embeddings.weight"])
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    save_config(config, folder, "BertForMaskedLM")
    write_vocab(folder, vocab)
    tokenizer_config(folder)
    # The reference tokens come from transformers' pure-Python BertTokenizer.
    slow = BertTokenizerLegacy(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    reference(model, slow, TINY_CASES["tiny-vocab-only"], folder, 64, slow.mask_token_id, head="mlm",
              fast=False)


def make_minilm(path: Path) -> None:
    folder = fresh("minilm-reference")
    model = BertModel.from_pretrained(path, attn_implementation="eager").eval()
    tok = BertTokenizer.from_pretrained(path)
    reference(model, tok, MINILM_CASES, folder, 512, tok.mask_token_id)
    make_minilm_long(model, tok, folder)


# A full 512-token input; only a few heads and every 16th query row are stored.
LONG_TEXT = " ".join(["The teacher explained how attention heads relate every word in a sentence to the others."] * 40)
LONG_HEADS = [(0, 0), (2, 5), (5, 11)]


@torch.no_grad()
def make_minilm_long(model, tok, folder: Path) -> None:
    enc, dropped = tokenize(tok, LONG_TEXT, None, 512)
    ids = torch.tensor([enc["input_ids"]])
    assert ids.shape[1] == 512
    out = model(input_ids=ids, token_type_ids=torch.tensor([enc["token_type_ids"]]),
                attention_mask=torch.ones_like(ids), output_attentions=True, output_hidden_states=True)
    rows = list(range(0, 512, 16)) + [511]
    save_file({
        "attentions": torch.stack([out.attentions[layer][0, head, rows] for layer, head in LONG_HEADS]).contiguous(),
        "last_hidden_rows": out.hidden_states[-1][0, rows].contiguous(),
    }, folder / "long.safetensors")
    (folder / "long.json").write_text(json.dumps({
        "text": LONG_TEXT, "token_ids": enc["input_ids"], "dropped_tokens": dropped,
        "heads": LONG_HEADS, "rows": rows}) + "\n")


# ---- one tiny checkpoint per family and head ----

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Where does the teacher live? She lives near the old school in Paris, next to the station.",
    "The history of the world is long and old, and the story went on and on.",
    "What a wonderful, heart-warming film! The plot was thin, but the acting was superb.",
    "John Smith flew from Paris to New York on Monday with Ana and Zoë.",
    "Crème brûlée and a naïve café in São Paulo — 東京 is far away 🙂.",
    "Hello world, how are you today? Fine, thanks.",
    "Attention heads relate every word in a sentence to every other word.",
    "The cat sat on the mat because it was tired, and the man went home.",
    "Is it good? Yes, it is. It is next to the old church.",
    "Teachers explain how transformer models read a sentence, one token at a time.",
] * 20

SHAPE = {"num_hidden_layers": 2, "num_attention_heads": 4, "initializer_range": 0.3,
         "attn_implementation": "eager"}
BERT_SHAPE = SHAPE | {"hidden_size": 16, "intermediate_size": 32, "max_position_embeddings": 64}
# RoBERTa numbers positions from pad_token_id + 1, so 64 tokens need 66 rows.
ROBERTA_MAX_TOKENS = 64
ROBERTA_SHAPE = BERT_SHAPE | {"max_position_embeddings": 66, "type_vocab_size": 1, "pad_token_id": 1,
                              "bos_token_id": 0, "eos_token_id": 2}
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

FAMILY_CASES = {
    "bert-sentiment": [
        ("positive", "What a wonderful, heart-warming film!", None),
        ("pair", "The plot was thin.", "But the acting was superb."),
        ("accents", "Crème brûlée — naïve café, 東京 🙂", None),
    ],
    "bert-qa": [
        ("qa", "Where does the teacher live?", "She lives near the old school in Paris, next to the station."),
        ("qa-unicode", "Who made the crème brûlée?", "The chef, Zoë, made it — in 東京, last year."),
        ("qa-truncated", "What is long?", " ".join(["The history of the world is long and old."] * 8)),
        ("no-context", "Where is the station?", None),
    ],
    "bert-ner": [
        ("names", "John Smith flew from Paris to New York on Monday.", None),
        ("unicode", "Zoë visited 東京 and São Paulo with Ana.", None),
    ],
    "distilbert-mlm": [
        ("mask", "The [MASK] sat on the [MASK].", None),
        ("pair", "Is it [MASK]?", "Yes — it is."),
    ],
    "distilbert-regression": [
        ("plain", "The movie was fine, I suppose.", None),
        ("truncated", " ".join(["and then the story went on"] * 15), None),
    ],
    "roberta-mlm": [
        ("mask", "The <mask> sat on the mat.", None),
        ("pair", "Where is the <mask>?", "It is next to the old church."),
        ("unicode", "Crème brûlée — naïve café, 東京 🙂\nnew  line", None),
        ("truncated", "and then the story went on " * 20, None),
    ],
    "roberta-multilabel": [
        ("plain", "The teacher explained how attention works.", None),
        ("pair-mask", "Is this <mask> good?", "Yes, it is."),
    ],
    "xlmr-qa": [
        ("qa", "Where does the teacher live?", "She lives near the old school, next to the station."),
        ("qa-unicode", "Who made it?", "Zoë made the crème brûlée in Paris."),
    ],
    "gpt2-lm": [
        ("plain", "The quick brown fox jumps over the lazy dog.", None),
        ("whitespace", "Hello world,\nhow are you?\tFine — thanks 🙂", None),
        ("truncated", " ".join(["the history of the world is long and old"] * 12), None),
    ],
    "gpt2-classifier": [
        ("plain", "What a wonderful film!", None),
        ("padded", "Great movie!<|endoftext|><|endoftext|>", None),
    ],
}


def family_vocab(full_vocab: Path) -> list[str]:
    """A WordPiece vocabulary smaller than the BERT fixtures': the five special tokens first, then
    single characters and common words, then one-character continuations."""
    tokens = full_vocab.read_text(encoding="utf-8").splitlines()
    specials = [tokens[0]] + tokens[100:104]
    suffixes = [t for t in tokens if t.startswith("##") and len(t) == 3]
    return specials + tokens[999:2300] + suffixes


def labels(names: list[str]) -> dict:
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def wordpiece_folder(name: str, vocab: list[str]):
    folder = fresh(name)
    write_vocab(folder, vocab)
    tokenizer_config(folder)
    return folder, BertTokenizer.from_pretrained(folder)


def train_bpe(specials: list[str]) -> tuple[Path, dict, list]:
    """A byte-level BPE tokenizer trained on CORPUS: its files, vocabulary and merges."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=600, min_frequency=2, special_tokens=specials,
                            show_progress=False)
    files = FIXTURES / ".bpe"
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir()
    bpe.save_model(str(files))
    vocab = json.loads((files / "vocab.json").read_text())
    merges = [tuple(line.split(" ")) for line in (files / "merges.txt").read_text().splitlines()[1:] if line]
    return files, vocab, merges


def train_unigram(specials: list[str]) -> list:
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(CORPUS, vocab_size=400, special_tokens=specials, unk_token="<unk>",
                                show_progress=False)
    pieces = [(piece, score) for piece, score in json.loads(unigram.to_str())["model"]["vocab"]]
    assert [p for p, _ in pieces[:5]] == specials, pieces[:5]
    return pieces


def without(folder: Path, tensor: str) -> None:
    """Rewrites model.safetensors without one tensor (one transformers computes when missing)."""
    path = folder / "model.safetensors"
    state = load_file(path)
    state.pop(tensor)
    save_file(state, path, metadata={"format": "pt"})


def random_biases(model, norm_weight_mean=1.0):
    """Draws every bias and norm scale (LayerNorm, RMSNorm, q/k norms) at random. transformers
    initialises biases at 0 and norm scales at 1, which would let a wrong bias or scale term pass
    every comparison. Gemma 3's norms scale by (1 + w), so their w is drawn around
    `norm_weight_mean=0.0`."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.3)
            elif name.endswith("weight") and ("norm" in name.lower() or ".ln_" in name):
                parameter.normal_(norm_weight_mean, 0.3)


def make_families(minilm: Path) -> None:
    vocab = family_vocab(minilm / "vocab.txt")

    torch.manual_seed(11)
    folder, tok = wordpiece_folder("bert-sentiment", vocab)
    model = BertForSequenceClassification(BertConfig(vocab_size=len(vocab), **BERT_SHAPE,
                                                     **labels(["NEGATIVE", "POSITIVE"]))).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, FAMILY_CASES["bert-sentiment"], folder, 64, head="classification")

    torch.manual_seed(12)
    folder, tok = wordpiece_folder("bert-qa", vocab)
    model = BertForQuestionAnswering(BertConfig(vocab_size=len(vocab), **BERT_SHAPE)).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, FAMILY_CASES["bert-qa"], folder, 64, head="qa")

    torch.manual_seed(13)
    folder, tok = wordpiece_folder("bert-ner", vocab)
    model = BertForTokenClassification(BertConfig(vocab_size=len(vocab), **BERT_SHAPE, **labels(NER_LABELS))).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, FAMILY_CASES["bert-ner"], folder, 64, head="token_classification")

    distil_shape = {"vocab_size": len(vocab), "dim": 16, "n_layers": 2, "n_heads": 4, "hidden_dim": 32,
                    "max_position_embeddings": 64, "initializer_range": 0.3, "attn_implementation": "eager"}
    torch.manual_seed(14)
    folder, tok = wordpiece_folder("distilbert-mlm", vocab)
    model = DistilBertForMaskedLM(DistilBertConfig(**distil_shape, sinusoidal_pos_embds=True)).eval()
    random_biases(model)
    model.save_pretrained(folder)
    without(folder, "distilbert.embeddings.position_embeddings.weight")
    reference(model, tok, FAMILY_CASES["distilbert-mlm"], folder, 64, tok.mask_token_id, head="mlm",
              segments=False)

    torch.manual_seed(15)
    folder, tok = wordpiece_folder("distilbert-regression", vocab)
    model = DistilBertForSequenceClassification(DistilBertConfig(**distil_shape, **labels(["stars"]))).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, FAMILY_CASES["distilbert-regression"], folder, 64, head="classification",
              segments=False)

    files, bpe_vocab, merges = train_bpe(ROBERTA_SPECIALS)
    torch.manual_seed(16)
    folder = fresh("roberta-mlm")
    for name in ["vocab.json", "merges.txt"]:
        shutil.copy(files / name, folder / name)
    tok = RobertaTokenizer.from_pretrained(folder)
    model = RobertaForMaskedLM(RobertaConfig(vocab_size=len(bpe_vocab), **ROBERTA_SHAPE)).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, FAMILY_CASES["roberta-mlm"], folder, ROBERTA_MAX_TOKENS, tok.mask_token_id, head="mlm",
              segments=False)

    torch.manual_seed(17)
    folder = fresh("roberta-multilabel")
    # As the Hub's roberta-base spells it: <mask> swallows the space before it.
    tok = RobertaTokenizer(vocab=bpe_vocab, merges=merges,
                           mask_token=AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False,
                                                 special=True))
    tok.save_pretrained(folder)
    model = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=len(bpe_vocab), **ROBERTA_SHAPE, problem_type="multi_label_classification",
        **labels(["joy", "anger", "surprise"]))).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, FAMILY_CASES["roberta-multilabel"], folder, ROBERTA_MAX_TOKENS, head="classification",
              segments=False)

    torch.manual_seed(18)
    folder = fresh("xlmr-qa")
    pieces = train_unigram(ROBERTA_SPECIALS)
    tok = XLMRobertaTokenizer(vocab=pieces)
    tok.save_pretrained(folder)
    tok = XLMRobertaTokenizer.from_pretrained(folder)
    model = XLMRobertaForQuestionAnswering(XLMRobertaConfig(vocab_size=len(pieces), **ROBERTA_SHAPE)).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, FAMILY_CASES["xlmr-qa"], folder, ROBERTA_MAX_TOKENS, head="qa", segments=False)

    files, bpe_vocab, merges = train_bpe(["<|endoftext|>"])
    end_of_text = bpe_vocab["<|endoftext|>"]
    gpt2_shape = {"vocab_size": len(bpe_vocab), "n_embd": 16, "n_layer": 2, "n_head": 4, "n_positions": 64,
                  "bos_token_id": end_of_text, "eos_token_id": end_of_text, "initializer_range": 0.3,
                  "attn_implementation": "eager"}
    torch.manual_seed(19)
    folder = fresh("gpt2-lm")
    for name in ["vocab.json", "merges.txt"]:
        shutil.copy(files / name, folder / name)
    tok = GPT2Tokenizer.from_pretrained(folder)
    model = GPT2LMHeadModel(GPT2Config(**gpt2_shape)).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, FAMILY_CASES["gpt2-lm"], folder, 64, head="next_token", segments=False)

    torch.manual_seed(20)
    folder = fresh("gpt2-classifier")
    tok = GPT2Tokenizer(vocab=bpe_vocab, merges=merges)
    tok.save_pretrained(folder)
    tok = GPT2Tokenizer.from_pretrained(folder)
    model = GPT2ForSequenceClassification(GPT2Config(**gpt2_shape, pad_token_id=end_of_text,
                                                     **labels(["negative", "neutral", "positive"]))).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, FAMILY_CASES["gpt2-classifier"], folder, 64, head="classification",
              segments=False)
    shutil.rmtree(files)


# Attribution references (`--attribution`): for existing checkpoints, a text, a target and what
# torch autograd and Captum give for it, written to <fixture>/attribution.json.
#
# x is the embedding layer's output (BERT kin: `embeddings`; GPT-2: `transformer.drop`), the
# baseline the same input with every non-special token replaced by the padding token (GPT-2:
# <|endoftext|>), with the real position and segment ids passed explicitly and no attention mask.
ATTRIBUTION_CASES = [
    # fixture, transformers class, text, text_b, target spec as `--target` writes it (None: default)
    ("bert-sentiment", "BertForSequenceClassification", "the movie was great fun", None, None),
    ("bert-qa", "BertForQuestionAnswering", "Where does the teacher live?",
     "She lives near the old school in Paris.", None),
    ("bert-ner", "BertForTokenClassification", "John lives in Paris", None, "ner:2"),
    ("tiny-legacy", "BertForPreTraining", "the capital of france is [MASK] .", None, None),
    ("distilbert-mlm", "DistilBertForMaskedLM", "paris is the [MASK] of france", None, None),
    ("roberta-mlm", "RobertaForMaskedLM", "The teacher lives in <mask> today.", None, None),
    ("gpt2-lm", "GPT2LMHeadModel", "The quick brown fox jumps", None, "next:2"),
    ("gpt2-classifier", "GPT2ForSequenceClassification", "a fine day for a walk", None, "label"),
]


def embedding_layer(model):
    for name in ("bert", "distilbert", "roberta"):
        if hasattr(model, name):
            return getattr(model, name).embeddings
    if hasattr(model, "model"):
        # The Llama kin's and Gemma's (scaled) token embeddings; ModernBERT's with their norm.
        base = model.model
        return base.embeddings if hasattr(base, "embeddings") else base.embed_tokens
    return model.transformer.drop


def head_logits(model, kind, out):
    """The logits `[batch, tokens, outputs]` (or `[batch, outputs]`) of the head `kind`."""
    if kind == "qa_start":
        return out.start_logits
    if kind == "qa_end":
        return out.end_logits
    if kind == "mlm" and hasattr(out, "prediction_logits"):
        return out.prediction_logits
    return out.logits


def resolve_target(model, tok, ids, spec, forward):
    """(head, position, output index, logits row reader) following the rules of --target."""
    heads = {"BertForSequenceClassification": "classification", "BertForQuestionAnswering": "qa_start",
             "BertForTokenClassification": "token_classification", "BertForPreTraining": "mlm",
             "DistilBertForMaskedLM": "mlm", "RobertaForMaskedLM": "mlm", "GPT2LMHeadModel": "next_token",
             "GPT2ForSequenceClassification": "classification", "LlamaForCausalLM": "next_token",
             "MistralForCausalLM": "next_token", "Qwen2ForCausalLM": "next_token",
             "Qwen3ForCausalLM": "next_token", "Gemma3ForCausalLM": "next_token",
             "ModernBertForMaskedLM": "mlm"}
    kind = heads[type(model).__name__]
    name, _, rest = (spec or "").partition(":")
    position = int(rest.split(":")[0]) if rest.split(":")[0] else None
    t = ids.shape[1]
    out = forward(ids)
    logits = head_logits(model, kind, out)[0]
    if kind == "classification":
        if type(model).__name__.startswith("GPT2"):
            pad = model.config.pad_token_id
            row = max(i for i in range(t) if ids[0, i].item() != pad)
        else:
            row = 0
        scores = logits if logits.dim() == 1 else logits[row]
        return kind, None, row, int(scores.argmax())
    if kind == "mlm":
        row = position if position is not None else int((ids[0] == tok.mask_token_id).nonzero()[0])
    elif kind == "next_token":
        row = position if position is not None else t - 1
    elif kind == "token_classification":
        row = position
    else:  # qa_start: the start of the answer dump reports
        enc_sequence = None
        row = position if position is not None else qa_default_start(model, tok, ids, out)
        return kind, row, row, 0
    return kind, row, row, int(logits[row].argmax())


QA_CACHE = {}


def qa_default_start(model, tok, ids, out):
    return QA_CACHE["start"]


def make_attribution(folder_name, cls_name, text, text_b, spec, steps=50):
    from captum.attr import LayerIntegratedGradients
    folder = FIXTURES / folder_name
    model = getattr(transformers, cls_name).from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    enc = tok(text, text_b, return_tensors="pt")
    ids = enc["input_ids"]
    t = ids.shape[1]
    family = model.config.model_type
    if family in ("roberta", "xlm-roberta"):
        positions = ids.ne(model.config.pad_token_id).long().cumsum(1) * ids.ne(model.config.pad_token_id) \
            + model.config.pad_token_id
    else:
        positions = torch.arange(t).unsqueeze(0)
    extra = {}
    if family != "distilbert":
        extra["position_ids"] = positions
    if family in ("bert", "roberta", "xlm-roberta"):
        extra["token_type_ids"] = enc.get("token_type_ids", torch.zeros_like(ids))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    specials = set(tok.all_special_ids)
    special = [i.item() in specials for i in ids[0]]
    baseline = torch.tensor([[i.item() if s else pad for i, s in zip(ids[0], special)]])

    def forward(batch_ids, **more):
        kwargs = {k: v.expand(batch_ids.shape[0], -1) for k, v in extra.items()}
        return model(input_ids=batch_ids, **kwargs)

    if cls_name == "BertForQuestionAnswering":
        with torch.no_grad():
            out = forward(ids)
        s, e = out.start_logits[0], out.end_logits[0]
        seq = enc.sequence_ids(0)
        ps, pe = torch.softmax(s, -1), torch.softmax(e, -1)
        best = max(((ps[i] * pe[j]).item(), i, j) for i in range(t) for j in range(i, min(i + 15, t))
                   if seq[i] == 1 and seq[j] == 1)
        QA_CACHE["start"] = best[1]
    with torch.no_grad():
        kind, position, row, output = resolve_target(model, tok, ids, spec, forward)

    def logit_of(out):
        logits = head_logits(model, kind, out)
        return logits[:, output] if logits.dim() == 2 and kind == "classification" else logits[:, row, output] \
            if logits.dim() == 3 else logits[:, row]

    def f(batch_ids):
        return logit_of(forward(batch_ids))

    layer = embedding_layer(model)
    # Gradient at the input: replace the layer's output by a leaf.
    with torch.no_grad():
        captured = {}
        h = layer.register_forward_hook(lambda m, i, o: captured.setdefault("x", o.detach().clone()))
        forward(ids)
        h.remove()
        captured_base = {}
        h = layer.register_forward_hook(lambda m, i, o: captured_base.setdefault("x", o.detach().clone()))
        forward(baseline)
        h.remove()
    x = captured["x"].clone().requires_grad_(True)
    h = layer.register_forward_hook(lambda m, i, o: x)
    value = f(ids)[0]
    (grad,) = torch.autograd.grad(value, x)
    h.remove()
    def f_states(states):
        # The real ids with the layer's output replaced: the head reads the clean run's row
        # (a GPT-2 classifier would otherwise pool a baseline of pads at another token).
        hook = layer.register_forward_hook(lambda m, i, o: states)
        try:
            return f(ids.expand(states.shape[0], -1))
        finally:
            hook.remove()

    x0, xb = captured["x"][0], captured_base["x"][0]
    with torch.no_grad():
        logit = f_states(x0[None])[0].item()
        baseline_logit = f_states(xb[None])[0].item()
        occlusion = []
        for i in range(t):
            if special[i]:
                occlusion.append(0.0)
                continue
            occluded = x0.clone()
            occluded[i] = xb[i]
            occlusion.append(logit - f_states(occluded[None])[0].item())
    lig = LayerIntegratedGradients(f, layer)
    ig, delta = lig.attribute(ids, baselines=baseline, n_steps=steps, return_convergence_delta=True)
    result = {
        "text": text, "text_b": text_b, "target_spec": spec, "ig_steps": steps,
        "ids": ids[0].tolist(),
        "baseline_ids": baseline[0].tolist(),
        "target": {"head": kind, "position": position, "id": output, "logit": logit},
        "baseline_logit": baseline_logit,
        "grad_x_input": (grad[0] * x0).sum(-1).tolist(),
        "grad_norm": grad[0].norm(dim=-1).tolist(),
        "integrated_gradients": ig[0].sum(-1).tolist(),
        "ig_delta": float(ig[0].sum() - (logit - baseline_logit)),
        "occlusion": occlusion,
    }
    (folder / "attribution.json").write_text(json.dumps(result, indent=1) + "\n")
    print(folder_name, kind, position, output, f"logit {logit:.4f} ig_delta {result['ig_delta']:.2e}")


def make_attributions() -> None:
    for case in ATTRIBUTION_CASES:
        make_attribution(*case)
    for case in PATCHING_CASES:
        make_patching(*case)
    make_logit_attribution("gpt2-lm", "The quick brown fox jumps", 3)


# The same references for the newer families (`--modern` writes them with their checkpoints):
# rotary embeddings, grouped queries, windows, RMSNorm and (1 + w) norms, gated MLPs, Gemma's
# post-norms and soft-capped logits, ModernBERT's identity norm and local layers.
MODERN_ATTRIBUTION_CASES = [
    ("llama-lm", "LlamaForCausalLM", "The quick brown fox jumps", None, "next:2"),
    ("qwen3-lm", "Qwen3ForCausalLM", "Where does the teacher live?", None, None),
    ("mistral-lm", "MistralForCausalLM", "Where does the teacher live? She lives near the old school.", None,
     None),
    ("gemma3-lm", "Gemma3ForCausalLM", "Where does the teacher live? She lives near the old school.", None,
     None),
    ("modernbert-mlm", "ModernBertForMaskedLM", "The teacher lives in [MASK] near the old school in Paris.",
     None, None),
]
MODERN_PATCHING_CASES = [
    ("llama-lm", "LlamaForCausalLM", "The quick brown fox jumps", "The quick brown cat jumps"),
    ("gemma3-lm", "Gemma3ForCausalLM", "Where does the teacher live? She lives near the old church.",
     "Where does the man live? She lives near the old school."),
]


def make_modern_attributions() -> None:
    for case in MODERN_ATTRIBUTION_CASES:
        make_attribution(*case)
    for case in MODERN_PATCHING_CASES:
        make_patching(*case)
    make_rms_logit_attribution("llama-lm", "LlamaForCausalLM", "The quick brown fox jumps", 3)
    make_rms_logit_attribution("gemma3-lm", "Gemma3ForCausalLM", "Where does the teacher live? She lives", 9)


def make_rms_logit_attribution(folder_name, cls_name, text, position):
    """Direct logit attribution under a final RMSNorm, from the modules' own outputs: the
    embedding, each head's slice of `o_proj` (Gemma: each attention block's post-normed output),
    each MLP's output (Gemma: post-normed), read with hooks; σ the RMS of the stream entering the
    final norm; the logit before any soft-cap."""
    folder = FIXTURES / folder_name
    model = getattr(transformers, cls_name).from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = tok(text, return_tensors="pt")["input_ids"]
    base = model.model
    gemma = hasattr(base.layers[0], "post_feedforward_layernorm")
    captured = {"z": {}, "attn": {}, "mlp": {}}
    hooks = [base.embed_tokens.register_forward_hook(lambda m, i, o: captured.__setitem__("embed", o))]
    for index, layer in enumerate(base.layers):
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(
            lambda m, args, index=index: captured["z"].__setitem__(index, args[0])))
        attn_out = layer.post_attention_layernorm if gemma else layer.self_attn
        mlp_out = layer.post_feedforward_layernorm if gemma else layer.mlp
        hooks.append(attn_out.register_forward_hook(
            lambda m, i, o, index=index: captured["attn"].__setitem__(index, o[0] if isinstance(o, tuple) else o)))
        hooks.append(mlp_out.register_forward_hook(
            lambda m, i, o, index=index: captured["mlp"].__setitem__(index, o)))
    hooks.append(base.norm.register_forward_pre_hook(lambda m, args: captured.__setitem__("stream", args[0])))
    with torch.no_grad():
        model(input_ids=ids)
    for hook in hooks:
        hook.remove()
    stream = captured["stream"][0, position].double()
    norm = base.norm
    gamma = norm.weight.double() + (1.0 if gemma else 0.0)
    eps = norm.variance_epsilon if hasattr(norm, "variance_epsilon") else norm.eps
    sigma = torch.sqrt((stream ** 2).mean() + eps)
    w_all = model.lm_head.weight.double()
    before_cap = (stream / sigma * gamma) @ w_all.T
    token = int(before_cap.argmax())
    w_u = w_all[token]

    def part(c):
        return float(((c.double() / sigma) * gamma * w_u).sum())

    heads_n = model.config.num_attention_heads
    head_dim = model.config.head_dim
    heads, attention, mlps = [], [], []
    for index, layer in enumerate(base.layers):
        if gemma:
            heads.append([])
        else:
            z = captured["z"][index][0, position]
            w = layer.self_attn.o_proj.weight  # [out, in]
            heads.append([part(w[:, h * head_dim:(h + 1) * head_dim] @ z[h * head_dim:(h + 1) * head_dim])
                          for h in range(heads_n)])
        attention.append(part(captured["attn"][index][0, position]))
        mlps.append(part(captured["mlp"][index][0, position]))
    result = {"text": text, "position": position, "id": token, "logit": float(before_cap[token]),
              "softcap": model.config.final_logit_softcapping if gemma else None,
              "embed": part(captured["embed"][0, position]), "heads": heads, "attention": attention,
              "mlps": mlps, "final_bias": 0.0}
    total = result["embed"] + sum(attention) + sum(mlps)
    assert abs(total - result["logit"]) < 1e-4, (total, result["logit"])
    if not gemma:
        assert all(abs(sum(h) - a) < 1e-4 for h, a in zip(heads, attention))
    (folder / "logit_attribution.json").write_text(json.dumps(result, indent=1) + "\n")
    print(folder_name, "logit attribution", token, f"{result['logit']:.4f} = {total:.4f}")


# Activation patching references (<fixture>/patching.json): the corrupted run with the clean run's
# residual stream entering layer l at position p, or one head's context vectors (the input of
# the attention output projection) at layer l, put back.
PATCHING_CASES = [
    ("bert-sentiment", "BertForSequenceClassification", "the movie was great fun", "the movie is great fun"),
    ("distilbert-mlm", "DistilBertForMaskedLM", "paris is the [MASK] of france", "berlin is the [MASK] of germany"),
    ("roberta-mlm", "RobertaForMaskedLM", "The teacher lives in <mask> today.", "A teacher lives at <mask> today."),
    ("gpt2-lm", "GPT2LMHeadModel", "The quick brown fox jumps", "The quick brown cat jumps"),
]


def layers_of(model):
    """(layer modules, the attention output projection of a layer)."""
    if hasattr(model, "transformer") and hasattr(model.transformer, "h"):
        return model.transformer.h, lambda layer: layer.attn.c_proj
    if hasattr(model, "model") and hasattr(model.model, "layers"):
        return model.model.layers, lambda layer: layer.self_attn.o_proj
    if hasattr(model, "distilbert"):
        return model.distilbert.transformer.layer, lambda layer: layer.attention.out_lin
    base = model.bert if hasattr(model, "bert") else model.roberta
    return base.encoder.layer, lambda layer: layer.attention.output.dense


def make_patching(folder_name, cls_name, clean_text, corrupt_text):
    folder = FIXTURES / folder_name
    model = getattr(transformers, cls_name).from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    clean = tok(clean_text, return_tensors="pt")["input_ids"]
    corrupt = tok(corrupt_text, return_tensors="pt")["input_ids"]
    assert clean.shape == corrupt.shape, (folder_name, clean.shape, corrupt.shape)
    t = clean.shape[1]
    with torch.no_grad():
        kind, position, row, output = resolve_target(model, tok, clean, None, lambda ids: model(input_ids=ids))
    layers, projection = layers_of(model)
    hidden = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim
    heads = model.config.num_attention_heads if hasattr(model.config, "num_attention_heads") else model.config.n_heads
    head_dim = getattr(model.config, "head_dim", None) or hidden // heads

    def logit(ids):
        out = model(input_ids=ids)
        logits = head_logits(model, kind, out)[0]
        return (logits[output] if logits.dim() == 1 else logits[row, output]).item()

    # The clean run's layer inputs and context vectors.
    inputs, contexts = {}, {}
    hooks = []
    for index, layer in enumerate(layers):
        hooks.append(layer.register_forward_pre_hook(
            lambda m, args, kwargs, index=index: inputs.__setitem__(index, (args[0] if args else kwargs["hidden_states"]).clone()),
            with_kwargs=True))
        hooks.append(projection(layer).register_forward_pre_hook(
            lambda m, args, index=index: contexts.__setitem__(index, args[0].clone())))
    with torch.no_grad():
        clean_logit = logit(clean)
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        corrupt_logit = logit(corrupt)

    def patched(module, pre_hook):
        hook = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
        try:
            with torch.no_grad():
                return (logit(corrupt) - corrupt_logit) / (clean_logit - corrupt_logit)
        finally:
            hook.remove()

    def replace_position(index, p):
        def hook(m, args, kwargs):
            if args:
                x = args[0].clone()
                x[0, p] = inputs[index][0, p]
                return (x, *args[1:]), kwargs
            x = kwargs["hidden_states"].clone()
            x[0, p] = inputs[index][0, p]
            return args, {**kwargs, "hidden_states": x}
        return hook

    def replace_head(index, h):
        def hook(m, args, kwargs):
            x = args[0].clone()
            x[..., h * head_dim:(h + 1) * head_dim] = contexts[index][..., h * head_dim:(h + 1) * head_dim]
            return (x, *args[1:]), kwargs
        return hook

    resid = [[patched(layer, replace_position(i, p)) for p in range(t)] for i, layer in enumerate(layers)]
    head_out = [[patched(projection(layer), replace_head(i, h)) for h in range(heads)]
                for i, layer in enumerate(layers)]
    result = {"clean": clean_text, "corrupt": corrupt_text,
              "target": {"head": kind, "position": position, "id": output},
              "clean_logit": clean_logit, "corrupt_logit": corrupt_logit,
              "resid_pre": resid, "head_out": head_out}
    (folder / "patching.json").write_text(json.dumps(result, indent=1) + "\n")
    print(folder_name, "patching", kind, position, output, f"{clean_logit:.4f} {corrupt_logit:.4f}")


def make_logit_attribution(folder_name, text, position):
    """Direct logit attribution of GPT-2's next-token logit at `position`, from the modules'
    own outputs: the embedding (`drop`), each head's slice of `c_proj`, its bias, each MLP."""
    folder = FIXTURES / folder_name
    model = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = tok(text, return_tensors="pt")["input_ids"]
    captured = {"z": {}, "mlp": {}}
    hooks = [model.transformer.drop.register_forward_hook(lambda m, i, o: captured.__setitem__("embed", o))]
    for index, block in enumerate(model.transformer.h):
        hooks.append(block.attn.c_proj.register_forward_pre_hook(
            lambda m, args, index=index: captured["z"].__setitem__(index, args[0])))
        hooks.append(block.mlp.register_forward_hook(
            lambda m, i, o, index=index: captured["mlp"].__setitem__(index, o)))
    hooks.append(model.transformer.ln_f.register_forward_pre_hook(
        lambda m, args: captured.__setitem__("stream", args[0])))
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, position]
    for hook in hooks:
        hook.remove()
    token = int(logits.argmax())
    ln = model.transformer.ln_f
    w_u = model.lm_head.weight[token].double()
    stream = captured["stream"][0, position].double()
    sigma = torch.sqrt(stream.var(unbiased=False) + ln.eps)
    gamma, beta = ln.weight.double(), ln.bias.double()

    def part(c):
        c = c.double()
        return float((((c - c.mean()) / sigma) * gamma * w_u).sum())

    heads_n = model.config.n_head
    head_dim = model.config.n_embd // heads_n
    heads, biases, mlps = [], [], []
    for index, block in enumerate(model.transformer.h):
        z = captured["z"][index][0, position]
        w = block.attn.c_proj.weight  # Conv1D: [in, out]
        heads.append([part(z[h * head_dim:(h + 1) * head_dim] @ w[h * head_dim:(h + 1) * head_dim])
                      for h in range(heads_n)])
        biases.append(part(block.attn.c_proj.bias))
        mlps.append(part(captured["mlp"][index][0, position]))
    result = {"text": text, "position": position, "id": token, "logit": float(logits[token]),
              "embed": part(captured["embed"][0, position]), "heads": heads, "attn_bias": biases,
              "mlps": mlps, "final_bias": float((beta * w_u).sum())}
    total = result["embed"] + sum(map(sum, heads)) + sum(biases) + sum(mlps) + result["final_bias"]
    assert abs(total - result["logit"]) < 1e-4, (total, result["logit"])
    (folder / "logit_attribution.json").write_text(json.dumps(result, indent=1) + "\n")
    print(folder_name, "logit attribution", token, f"{result['logit']:.4f} = {total:.4f}")


# Generation references (`--generation`): greedy ids of `generate(do_sample=False)` and the
# distributions of transformers' own warpers, for the tied GPT-2 checkpoint and an untied one
# (gpt2-untied, written here from gpt2-lm's vocabulary), in <fixture>/generation.json.
GENERATION_PROMPT = "The quick brown fox"
GENERATION_TOKENS = 40
WARPER_SETTINGS = [(t, k, p) for t in (0.7, 1.3) for k in (5, 50) for p in (0.5, 0.9)]
WARPER_PREFIXES = (0, 7, 23)


def make_untied() -> None:
    from transformers import GPT2Config as Config
    torch.manual_seed(25)
    source = FIXTURES / "gpt2-lm"
    folder = fresh("gpt2-untied")
    for name in ["vocab.json", "merges.txt"]:
        shutil.copy(source / name, folder / name)
    config = Config.from_pretrained(source)
    config.tie_word_embeddings = False
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    assert "lm_head.weight" in load_file(folder / "model.safetensors")


def make_generation(folder_name: str) -> None:
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = FIXTURES / folder_name
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager",
                                                 dtype=torch.float32).eval()
    prompt = tok(GENERATION_PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(prompt, do_sample=False, max_new_tokens=GENERATION_TOKENS,
                             pad_token_id=model.config.eos_token_id)
    ids = out[0].tolist()
    result = {"prompt": GENERATION_PROMPT, "prompt_ids": prompt[0].tolist(),
              "greedy_ids": ids[prompt.shape[1]:], "warpers": []}
    for extra in WARPER_PREFIXES:
        prefix = ids[:prompt.shape[1] + extra]
        with torch.no_grad():
            logits = model(torch.tensor([prefix])).logits[:, -1, :]
        probs = logits.softmax(-1)[0]
        for t, k, p in WARPER_SETTINGS:
            scores = TemperatureLogitsWarper(t)(None, logits.clone())
            scores = TopKLogitsWarper(k)(None, scores)
            scores = TopPLogitsWarper(p)(None, scores)
            after = scores.softmax(-1)[0]
            kept = torch.nonzero(torch.isfinite(scores[0])).flatten().tolist()
            top = torch.topk(probs, 10).indices.tolist()
            result["warpers"].append({
                "prefix": prefix, "temperature": t, "top_k": k, "top_p": p,
                "kept": kept, "prob_after": [after[i].item() for i in kept],
                "top10": top, "prob": [probs[i].item() for i in top]})
    (folder / "generation.json").write_text(json.dumps(result, indent=1) + "\n")
    print(folder_name, "greedy", len(result["greedy_ids"]), "tokens:", tok.decode(ids))


def make_generations() -> None:
    make_untied()
    for name in ["gpt2-lm", "gpt2-untied"]:
        make_generation(name)


# The Llama kin (`--modern`): tiny random decoders with tokenizer.json, 2 layers, 4 query heads.
MODERN_CASES = [
    ("plain", "The cat sat on the mat.", None),
    # Longer than every fixture's window of 8 keys, so that its masks are exercised.
    ("long", "Where does the teacher live? She lives near the old school in Paris, next to the station.",
     None),
]


# Seeds whose random models order every top-5 reliably and, for the language models, generate
# 40 greedy tokens without meeting their end-of-text token.
MODERN_SEEDS = {"llama-lm": 31, "mistral-lm": 40, "qwen2-lm": 33, "qwen3-lm": 38, "llama-classifier": 35,
                "gemma3-lm": 41, "modernbert-mlm": 42, "modernbert-classifier": 43}


def fast_tokenizer(tokenizer_object, folder: Path, bos: str | None, eos: str, **specials):
    """Saves a `tokenizers` tokenizer as transformers' PreTrainedTokenizerFast (tokenizer.json +
    tokenizer_config.json), adding `bos` in front of every text when given (Llama's framing)."""
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast
    if bos is not None:
        tokenizer_object.post_processor = TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tokenizer_object.token_to_id(bos))])
    tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, bos_token=bos, eos_token=eos, **specials)
    tok.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def byte_level_tokenizer(specials: list[str]):
    from tokenizers import Tokenizer
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=600, min_frequency=2, special_tokens=specials,
                            show_progress=False)
    return Tokenizer.from_str(bpe.to_str())


def sentencepiece_tokenizer():
    """xlmr-qa's SentencePiece (Unigram) tokenizer, whose specials are <s>, <pad>, </s>, <unk> and
    <mask>: the Unigram trainer is not deterministic from run to run, so it is reused, not retrained."""
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(FIXTURES / "xlmr-qa" / "tokenizer.json"))


def to_bf16_weights(model, folder: Path) -> None:
    """Rounds every weight to bf16 (so the f32 reference computes with the stored values) and
    saves the checkpoint in bf16, as the Hub's modern checkpoints are."""
    import copy
    for parameter in model.parameters():
        parameter.data = parameter.data.to(torch.bfloat16).to(torch.float32)
    # A copy is cast, not the model: casting would round its rotary frequencies too, which a
    # bf16 checkpoint loaded in f32 computes afresh.
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(folder)


def make_modern() -> None:
    from transformers import (LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification,
                              MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                              Qwen3Config, Qwen3ForCausalLM)
    torch.set_grad_enabled(False)
    shape = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48,
             "max_position_embeddings": 64, "initializer_range": 0.3, "attn_implementation": "eager"}

    # SmolLM2's shape in small: byte-level BPE, grouped-query attention, tied embeddings; and
    # Llama 3.1's rope scaling with a short original context, so that it changes frequencies.
    torch.manual_seed(MODERN_SEEDS["llama-lm"])
    folder = fresh("llama-lm")
    tok = fast_tokenizer(byte_level_tokenizer(["<|endoftext|>"]), folder, None, "<|endoftext|>")
    config = LlamaConfig(vocab_size=len(tok), **shape, num_key_value_heads=2, tie_word_embeddings=True,
                         bos_token_id=0, eos_token_id=0,
                         rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 16})
    model = LlamaForCausalLM(config).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, MODERN_CASES, folder, 64, head="next_token", segments=False)

    # TinyLlama's tokenizer kind (SentencePiece pieces, <s> in front), Mistral's window.
    torch.manual_seed(MODERN_SEEDS["mistral-lm"])
    folder = fresh("mistral-lm")
    tok = fast_tokenizer(sentencepiece_tokenizer(), folder, "<s>", "</s>", unk_token="<unk>")
    model = MistralForCausalLM(MistralConfig(vocab_size=len(tok), **shape, num_key_value_heads=4,
                                             sliding_window=8, tie_word_embeddings=False,
                                             bos_token_id=0, eos_token_id=2)).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, MODERN_CASES, folder, 64, head="next_token", segments=False)

    # Qwen2: q/k/v biases, a window on layers from max_window_layers on, linear rope scaling.
    torch.manual_seed(MODERN_SEEDS["qwen2-lm"])
    folder = fresh("qwen2-lm")
    tok = fast_tokenizer(byte_level_tokenizer(["<|endoftext|>"]), folder, None, "<|endoftext|>")
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), **shape, num_key_value_heads=2,
                                         use_sliding_window=True, sliding_window=8, max_window_layers=1,
                                         tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
                                         rope_parameters={"rope_type": "linear", "rope_theta": 1000000.0,
                                                          "factor": 2.0})).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, MODERN_CASES, folder, 64, head="next_token", segments=False)

    # Qwen3: per-head q/k RMSNorm, an explicit head_dim wider than hidden/heads, one key/value
    # head, bf16 weights.
    torch.manual_seed(MODERN_SEEDS["qwen3-lm"])
    folder = fresh("qwen3-lm")
    tok = fast_tokenizer(byte_level_tokenizer(["<|endoftext|>"]), folder, None, "<|endoftext|>")
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tok), **shape, num_key_value_heads=1, head_dim=16,
                                         tie_word_embeddings=True, bos_token_id=0,
                                         eos_token_id=0)).eval()
    random_biases(model)
    to_bf16_weights(model, folder)
    reference(model, tok, MODERN_CASES, folder, 64, head="next_token", segments=False)

    # A Llama classifier: `score` on the last token that is not padding.
    torch.manual_seed(MODERN_SEEDS["llama-classifier"])
    folder = fresh("llama-classifier")
    tok = fast_tokenizer(byte_level_tokenizer(["<|endoftext|>"]), folder, None, "<|endoftext|>",
                         pad_token="<|endoftext|>")
    model = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=len(tok), **shape, num_key_value_heads=2, pad_token_id=0,
        **labels(["negative", "neutral", "positive"]))).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, [("plain", "What a wonderful film!", None),
                           ("padded", "Great movie!<|endoftext|><|endoftext|>", None)],
              folder, 64, head="classification", segments=False)
    # Gemma 3: a local layer (window 8, θ 10⁴) and a global one (θ 10⁶, linear scaling), √hidden
    # embeddings, (1 + w) norms, query_pre_attn_scalar, the final logits' soft-cap (the 270M sets
    # none; transformers 5.x's Gemma 3 attention never passes attn_logit_softcapping on, so no
    # reference for it can come from there), SentencePiece pieces with <s> in front.
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    torch.manual_seed(MODERN_SEEDS["gemma3-lm"])
    folder = fresh("gemma3-lm")
    tok = fast_tokenizer(sentencepiece_tokenizer(), folder, "<s>", "</s>", unk_token="<unk>",
                         pad_token="<pad>")
    config = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, max_position_embeddings=64,
        initializer_range=0.3, sliding_window=8, layer_types=["sliding_attention", "full_attention"],
        attn_logit_softcapping=None, final_logit_softcapping=3.0, pad_token_id=1, eos_token_id=2,
        bos_token_id=0, attn_implementation="eager",
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 2.0}})
    model = Gemma3ForCausalLM(config).eval()
    # transformers initialises the norms' w at 0 (scale 1); random ones test the (1 + w).
    random_biases(model, norm_weight_mean=0.0)
    model.save_pretrained(folder)
    reference(model, tok, MODERN_CASES, folder, 64, head="next_token", segments=False)

    # ModernBERT: a global layer, then two local ones seeing ±4 tokens (local_attention 8), no
    # attention norm on layer 0, GeGLU, byte-level BPE with [CLS] … [SEP] framing.
    from tokenizers.processors import TemplateProcessing
    from transformers import (ModernBertConfig, ModernBertForMaskedLM,
                              ModernBertForSequenceClassification, PreTrainedTokenizerFast)
    specials = ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"]
    modern_shape = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
                    "max_position_embeddings": 64, "local_attention": 8, "initializer_range": 0.3,
                    "pad_token_id": 2, "cls_token_id": 0, "sep_token_id": 1, "bos_token_id": None,
                    "eos_token_id": None, "attn_implementation": "eager"}

    def modernbert_tokenizer(folder: Path):
        tokenizer_object = byte_level_tokenizer(specials)
        tokenizer_object.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", 0), ("[SEP]", 1)])
        tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, cls_token="[CLS]", sep_token="[SEP]",
                                      pad_token="[PAD]", unk_token="[UNK]",
                                      mask_token=AddedToken("[MASK]", lstrip=True, special=True))
        tok.save_pretrained(folder)
        return PreTrainedTokenizerFast.from_pretrained(folder)

    torch.manual_seed(MODERN_SEEDS["modernbert-mlm"])
    folder = fresh("modernbert-mlm")
    tok = modernbert_tokenizer(folder)
    model = ModernBertForMaskedLM(ModernBertConfig(vocab_size=len(tok), **modern_shape)).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, [("mask", "The teacher lives in [MASK] near the old school in Paris.", None),
                           ("pair", "Where is the [MASK]?", "It is next to the old church.")],
              folder, 64, tok.mask_token_id, head="mlm", segments=False)

    torch.manual_seed(MODERN_SEEDS["modernbert-classifier"])
    folder = fresh("modernbert-classifier")
    tok = modernbert_tokenizer(folder)
    model = ModernBertForSequenceClassification(ModernBertConfig(
        vocab_size=len(tok), **modern_shape, classifier_pooling="mean", norm_bias=True,
        **labels(["negative", "positive"]))).eval()
    random_biases(model)
    model.save_pretrained(folder)
    reference(model, tok, [("plain", "What a wonderful film, and such a fine cast!", None)], folder, 64,
              head="classification", segments=False)

    torch.set_grad_enabled(True)
    for name in ["llama-lm", "mistral-lm", "qwen2-lm", "qwen3-lm", "gemma3-lm"]:
        make_generation(name)
    make_modern_attributions()
    for name in ["llama-lm", "mistral-lm", "qwen2-lm", "qwen3-lm", "llama-classifier", "gemma3-lm",
                 "modernbert-mlm", "modernbert-classifier"]:
        config = json.loads((FIXTURES / name / "config.json").read_text())
        print(name, {k: config.get(k) for k in ["layer_types", "rope_parameters", "sliding_window", "dtype"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minilm", type=Path, help="the all-MiniLM-L6-v2 folder")
    parser.add_argument("--attribution", action="store_true",
                        help="only write the attribution references of the existing checkpoints")
    parser.add_argument("--generation", action="store_true",
                        help="only write gpt2-untied and the generation references")
    parser.add_argument("--modern", action="store_true",
                        help="only write the Llama-kin checkpoints and their references")
    args = parser.parse_args()
    if args.modern:
        make_modern()
        return
    if args.attribution:
        make_attributions()
        make_modern_attributions()
        return
    if args.generation:
        make_generations()
        return
    if args.minilm is None:
        parser.error("--minilm is required")
    torch.set_grad_enabled(False)
    make_tiny(small_vocab(args.minilm / "vocab.txt"))
    make_minilm(args.minilm)
    make_families(args.minilm)
    torch.set_grad_enabled(True)
    make_attributions()
    make_generations()
    make_modern()
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"fixtures written: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
