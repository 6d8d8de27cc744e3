#!/usr/bin/env python3
"""Small random-weight checkpoints with real tokenizers, one per kind of prediction head, for
trying the app and making the README's screenshots where no pretrained checkpoint can be had
(the Hugging Face Hub is not reachable from the machines this project is built on).

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers safetensors
    /tmp/ref/bin/python tools/make_demo_models.py --out /tmp/demo --minilm ../shared/models/all-MiniLM-L6-v2

Writes, under --out: bert-sentiment (BertForSequenceClassification, NEGATIVE/POSITIVE), bert-qa
(BertForQuestionAnswering), bert-ner (BertForTokenClassification, CoNLL-2003 labels),
distilbert-mlm (DistilBertForMaskedLM) — all with the bert-base-uncased WordPiece vocabulary of
--minilm — and gpt2 (GPT2LMHeadModel) with a byte-level BPE vocabulary trained here on a few
English sentences. 4 layers × 8 heads, hidden 128. The weights are random, so the predictions
are meaningless; what the views show is real computation.
"""

import argparse
import shutil
from pathlib import Path

import torch
import transformers as T
from tokenizers import ByteLevelBPETokenizer

SHAPE = {"num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 128, "intermediate_size": 512,
         "initializer_range": 0.2, "attn_implementation": "eager"}
CONLL = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Teachers explain how attention heads in transformer models relate every word to every other word.",
    "The cat sat on the mat because it was tired, and the dog slept by the door.",
    "Once upon a time there was a small village next to a river, where children played all day.",
    "She lives near the old school in Paris, next to the station.",
] * 40


def labels(names: list[str]) -> dict:
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def wordpiece(folder: Path, minilm: Path) -> None:
    for name in ["vocab.txt", "tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(minilm / name, folder / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minilm", type=Path, required=True, help="the all-MiniLM-L6-v2 folder")
    args = parser.parse_args()
    torch.manual_seed(0)
    vocab = 30522
    models = {
        "bert-sentiment": T.BertForSequenceClassification(
            T.BertConfig(vocab_size=vocab, **SHAPE, **labels(["NEGATIVE", "POSITIVE"]))),
        "bert-qa": T.BertForQuestionAnswering(T.BertConfig(vocab_size=vocab, **SHAPE)),
        "bert-ner": T.BertForTokenClassification(T.BertConfig(vocab_size=vocab, **SHAPE, **labels(CONLL))),
        "distilbert-mlm": T.DistilBertForMaskedLM(T.DistilBertConfig(
            vocab_size=vocab, dim=128, n_layers=4, n_heads=8, hidden_dim=512, initializer_range=0.2,
            attn_implementation="eager")),
    }
    for name, model in models.items():
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        model.eval().save_pretrained(folder)
        wordpiece(folder, args.minilm)

    folder = args.out / "gpt2"
    folder.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=2000, special_tokens=["<|endoftext|>"], show_progress=False)
    bpe.save_model(str(folder))
    config = T.GPT2Config(vocab_size=bpe.get_vocab_size(), n_embd=128, n_layer=4, n_head=8,
                          initializer_range=0.2, bos_token_id=0, eos_token_id=0, attn_implementation="eager")
    T.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    for extra in args.out.glob("*/generation_config.json"):
        extra.unlink()
    print(f"wrote {', '.join(sorted(p.name for p in args.out.iterdir()))} under {args.out}")


if __name__ == "__main__":
    main()
