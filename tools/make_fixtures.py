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

Each folder gets reference.safetensors (attentions [L,H,T,T] and hidden states [L+1,T,D] per case)
and cases.json (texts, tokens, ids, segment ids, dropped tokens, MLM top-5, NSP).
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertModel,
    BertTokenizer,
    BertTokenizerLegacy,
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


def tokenize(tokenizer, text, text_b, max_len):
    full = tokenizer(text, text_b, add_special_tokens=True)
    enc = tokenizer(text, text_b, add_special_tokens=True, return_token_type_ids=True,
                    truncation="longest_first", max_length=max_len)
    return enc, len(full["input_ids"]) - len(enc["input_ids"])


@torch.no_grad()
def reference(model, tokenizer, cases, folder: Path, max_len: int, mask_id: int | None):
    tensors, records = {}, []
    for name, text, text_b in cases:
        enc, dropped = tokenize(tokenizer, text, text_b, max_len)
        ids = torch.tensor([enc["input_ids"]])
        types = torch.tensor([enc["token_type_ids"]])
        out = model(input_ids=ids, token_type_ids=types, attention_mask=torch.ones_like(ids),
                    output_attentions=True, output_hidden_states=True)
        tensors[f"{name}.attentions"] = torch.cat(out.attentions).contiguous()
        tensors[f"{name}.hidden_states"] = torch.cat(out.hidden_states).contiguous()
        record = {
            "name": name,
            "text": text,
            "text_b": text_b,
            "tokens": tokenizer.convert_ids_to_tokens(enc["input_ids"]),
            "token_ids": enc["input_ids"],
            "segment_ids": enc["token_type_ids"],
            "dropped_tokens": dropped,
        }
        logits = getattr(out, "prediction_logits", None)
        if logits is None:
            logits = getattr(out, "logits", None)
        if logits is not None:
            probs = logits[0].softmax(-1)
            mlm = []
            for pos, token_id in enumerate(enc["input_ids"]):
                if token_id != mask_id:
                    continue
                top = probs[pos].topk(6)
                gaps = (top.values[:-1] - top.values[1:]).min().item()
                assert gaps > 1e-4, f"{folder.name}/{name}: top-5 too close to order reliably ({gaps})"
                mlm.append({
                    "position": pos,
                    "ids": top.indices[:5].tolist(),
                    "probs": top.values[:5].tolist(),
                })
            record["mlm"] = mlm
        nsp = getattr(out, "seq_relationship_logits", None)
        if nsp is not None and text_b is not None:
            record["nsp_is_next"] = nsp[0].softmax(-1)[0].item()
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
    reference(model, tok, TINY_CASES["tiny-legacy"], folder, 64, tok.mask_token_id)

    # tiny-vocab-only: BertForMaskedLM with an untied decoder, vocab.txt only.
    torch.manual_seed(3)
    folder = fresh("tiny-vocab-only")
    config = tiny_config(len(vocab), hidden_act="gelu_new", tie_word_embeddings=False)
    model = BertForMaskedLM(config).eval()
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
    reference(model, slow, TINY_CASES["tiny-vocab-only"], folder, 64, slow.mask_token_id)


def make_minilm(path: Path) -> None:
    folder = fresh("minilm-reference")
    model = BertModel.from_pretrained(path, attn_implementation="eager").eval()
    tok = BertTokenizer.from_pretrained(path)
    reference(model, tok, MINILM_CASES, folder, 512, tok.mask_token_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minilm", type=Path, required=True, help="the all-MiniLM-L6-v2 folder")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    make_tiny(small_vocab(args.minilm / "vocab.txt"))
    make_minilm(args.minilm)
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"fixtures written: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
