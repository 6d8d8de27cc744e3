#!/usr/bin/env python3
"""Reference values of the attention analyses, computed independently of bertscope: the
attention probabilities come from Hugging Face transformers (eager attention), and attention
rollout and Clark et al.'s head statistics are computed here with numpy from their published
definitions. `tests/cli.rs` checks `bertscope dump --with rollout,head-stats` against them.

    /tmp/ref/bin/python tools/make_analysis_reference.py

Writes tests/fixtures/<fixture>/analyses.json for tiny-legacy (BERT, a sentence pair),
roberta-mlm (byte-level BPE) and gpt2-lm (causal).
"""

import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CASES = {
    "tiny-legacy": ("The cat sat on the mat, didn't it?", "Yes — it was warm there!"),
    "roberta-mlm": ("The cat sat on the mat, didn't it?", "Yes: it was warm."),
    "gpt2-lm": ("The cat sat on the mat, didn't it? Yes... it was warm.", None),
}


def is_punctuation(c: str) -> bool:
    o = ord(c)
    return (c.isascii() and not c.isalnum() and c.isprintable() and c != " ") \
        or 0x2000 <= o <= 0x206F or 0x3000 <= o <= 0x303F or c in "¡«»¿"


def bare(tokenizer, token: str) -> str:
    if token.startswith("##"):
        return token[2:]
    if token.startswith("\u2581"):
        return token.lstrip("\u2581")
    if getattr(tokenizer, "byte_encoder", None) is not None or "Ġ" in tokenizer.get_vocab():
        return tokenizer.convert_tokens_to_string([token]).lstrip()
    return token


def head_stats(att, separators, punctuation):
    """att: [T, T] for one head."""
    t = att.shape[0]
    rows = np.arange(t)
    ent = -np.where(att > 0, att * np.log(np.where(att > 0, att, 1.0)), 0.0).sum(axis=1)
    stats = {
        "cls": att[:, 0].mean(),
        "sep": att[:, separators].sum(axis=1).mean() if separators.any() else 0.0,
        "punct": att[:, punctuation].sum(axis=1).mean() if punctuation.any() else 0.0,
        "self": att[rows, rows].mean(),
        "prev": att[rows[1:], rows[1:] - 1].mean() if t > 1 else 0.0,
        "next": att[rows[:-1], rows[:-1] + 1].mean() if t > 1 else 0.0,
        "entropy": ent.mean(),
    }
    if stats["prev"] > 0.5:
        label = "previous"
    elif stats["next"] > 0.5:
        label = "next"
    elif stats["cls"] + stats["sep"] > 0.6:
        label = "special"
    elif stats["entropy"] > 3.8:
        label = "broad"
    else:
        label = "mixed"
    out = {k: float(v) for k, v in stats.items()}
    out["label"] = label
    return out


def main() -> None:
    for name, (text, text_b) in CASES.items():
        folder = FIXTURES / name
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
        enc = tokenizer(text, text_b, return_tensors="pt")
        if "token_type_ids" in enc and model.config.model_type != "bert":
            del enc["token_type_ids"]
        with torch.no_grad():
            out = model(**enc, output_attentions=True)
        att = np.stack([a[0].double().numpy() for a in out.attentions])  # [L, H, T, T]
        ids = enc["input_ids"][0].tolist()
        tokens = tokenizer.convert_ids_to_tokens(ids)
        special = set(tokenizer.all_special_ids)
        separators = np.array([i in special and tok in ("[SEP]", "</s>") for i, tok in zip(ids, tokens)])
        punctuation = np.array([
            i not in special and len(bare(tokenizer, tok)) > 0
            and all(is_punctuation(c) for c in bare(tokenizer, tok))
            for i, tok in zip(ids, tokens)
        ])
        t = len(ids)
        rollout, r = [], None
        for layer in range(att.shape[0]):
            a_hat = 0.5 * att[layer].mean(axis=0) + 0.5 * np.eye(t)
            r = a_hat if r is None else a_hat @ r
            rollout.append(r.tolist())
        stats = [[head_stats(att[l, h], separators, punctuation) for h in range(att.shape[1])]
                 for l in range(att.shape[0])]
        document = {
            "text": text,
            "text_b": text_b,
            "tokens": tokens,
            "punctuation": punctuation.tolist(),
            "rollout": rollout,
            "head_stats": stats,
        }
        (folder / "analyses.json").write_text(json.dumps(document) + "\n")
        print(f"{name}: {t} tokens, punctuation at {np.flatnonzero(punctuation).tolist()}")


if __name__ == "__main__":
    main()
