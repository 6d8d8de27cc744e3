"""Fine-tuning references (`tests/fixtures/<name>/finetune.*`): for fixtures that already have a
classification head, a small data file and what transformers computes training on it with the
Trainer's optimiser, clipping and schedule, dropout 0 and no shuffling:

- finetune.csv            the data (text[, text_b], label);
- finetune.json           the options and each step's loss;
- finetune.safetensors    `grad.<name>`: the first step's gradients (before clipping), and
                          `delta.<name>`: each parameter's change over all steps.

Run with the venv that has torch and transformers: python tools/make_finetune_reference.py [NAME...]
"""
import csv
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                          get_linear_schedule_with_warmup)
from transformers.trainer_pt_utils import get_parameter_names

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
OPTIONS = {"batch_size": 4, "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 1,
           "max_grad_norm": 1.0, "max_len": 64, "epochs": 1}

TEXTS = ["What a wonderful, heart-warming film!", "The plot was thin.", "I loved the music.",
         "The acting was superb.", "It was a waste of time.", "The story went on and on.",
         "A fine film, I suppose.", "Nothing happened at all.", "The teacher explained it well.",
         "Where is the old church?", "Great movie!", "The ending was sad but good."]
PAIRS = [None, "But the acting was superb.", None, None, "Never again.", None,
         None, "Not one thing.", None, None, None, "I cried."]

DATA = {
    "bert-sentiment": (True, ["POSITIVE", "NEGATIVE", "POSITIVE", "POSITIVE", "NEGATIVE",
                              "NEGATIVE", "POSITIVE", "NEGATIVE", "POSITIVE", "NEGATIVE",
                              "POSITIVE", "POSITIVE"]),
    "distilbert-regression": (False, ["4.5", "1", "4", "5", "0.5", "2", "3.25", "1.5", "4",
                                      "2.5", "5", "3"]),
    "roberta-multilabel": (False, ["joy", "anger", "joy|surprise", "joy", "anger",
                                   "anger|surprise", "joy", "anger", "surprise", "surprise",
                                   "joy|surprise", "joy|anger"]),
    "gpt2-classifier": (False, ["positive", "negative", "positive", "positive", "negative",
                                "neutral", "neutral", "negative", "positive", "neutral",
                                "positive", "neutral"]),
    "llama-classifier": (False, ["positive", "negative", "positive", "positive", "negative",
                                 "neutral", "neutral", "negative", "positive", "neutral",
                                 "positive", "neutral"]),
}


def decay_names(model):
    """The Trainer's grouping (`Trainer.get_decay_parameter_names`): every parameter but those
    of LayerNorm modules and those whose name says bias or norm (RMSNorm's too)."""
    patterns = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    return set(get_parameter_names(model, [torch.nn.LayerNorm], patterns))


def main():
    # Names on the command line regenerate only those fixtures.
    chosen = sys.argv[1:] or list(DATA)
    for name, (pairs, labels) in DATA.items():
        if name not in chosen:
            continue
        folder = FIXTURES / name
        rows = [(text, pair, label) for text, pair, label in zip(TEXTS, PAIRS, labels)]
        with open(folder / "finetune.csv", "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["text", "text_b", "label"] if pairs else ["text", "label"])
            for text, pair, label in rows:
                writer.writerow([text, pair or "", label] if pairs else [text, label])
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        tok = AutoTokenizer.from_pretrained(folder)
        config = model.config
        if tok.pad_token_id != config.pad_token_id:
            tok.pad_token = tok.convert_ids_to_tokens(config.pad_token_id)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model.train()
        initial = {n: p.detach().clone() for n, p in model.named_parameters()}
        decay = decay_names(model)
        groups = [
            {"params": [p for n, p in model.named_parameters() if n in decay],
             "weight_decay": OPTIONS["weight_decay"]},
            {"params": [p for n, p in model.named_parameters() if n not in decay],
             "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=OPTIONS["lr"], betas=(0.9, 0.999), eps=1e-8)
        batch_size = OPTIONS["batch_size"]
        steps = len(rows) // batch_size
        schedule = get_linear_schedule_with_warmup(optimizer, OPTIONS["warmup_steps"], steps)
        names = [config.id2label[i] for i in range(config.num_labels)]
        losses, grads = [], {}
        for step in range(steps):
            part = rows[step * batch_size:(step + 1) * batch_size]
            # Each example alone (a batch may mix pairs and single texts), then padded.
            enc = tok.pad([tok(r[0], r[1] if pairs and r[1] else None, truncation=True,
                               max_length=OPTIONS["max_len"]) for r in part],
                          return_tensors="pt")
            if config.problem_type == "multi_label_classification":
                y = torch.tensor([[1.0 if n in r[2].split("|") else 0.0 for n in names]
                                  for r in part])
            elif config.num_labels == 1:
                y = torch.tensor([float(r[2]) for r in part])
            else:
                y = torch.tensor([names.index(r[2]) for r in part])
            loss = model(**enc, labels=y).loss
            loss.backward()
            losses.append(loss.item())
            if step == 0:
                grads = {f"grad.{n}": p.grad.detach().clone()
                         for n, p in model.named_parameters() if p.grad is not None}
            torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIONS["max_grad_norm"])
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        deltas = {f"delta.{n}": (p.detach() - initial[n]).contiguous()
                  for n, p in model.named_parameters()}
        save_file({**grads, **deltas}, folder / "finetune.safetensors")
        with open(folder / "finetune.json", "w") as out:
            json.dump({"options": OPTIONS, "losses": losses}, out, indent=1)
        print(name, "losses", losses)


if __name__ == "__main__":
    main()
