#!/usr/bin/env python3
"""Reference values of the attention analyses, computed independently of bertscope: the
attention probabilities, hidden states and heads come from Hugging Face transformers (eager
attention), and attention rollout, attention flow (networkx max-flow), norm-based attention,
the logit lens, the embedding breakdown, head ablation (transformers 4.x's head_mask, patched
into the eager attention), word-level maps and Clark et al.'s head statistics are computed here
with numpy from their published definitions. `tests/cli.rs` checks `bertscope dump --with ...`
(and `--ablate`, `--words`) against them.

    /tmp/ref/bin/python tools/make_analysis_reference.py

Writes tests/fixtures/<fixture>/analyses.json for tiny-legacy (BERT, a sentence pair),
roberta-mlm (byte-level BPE) and gpt2-lm (causal).
"""

import json
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from transformers import AutoModelForMaskedLM, AutoModelForCausalLM, AutoTokenizer
from transformers.models.bert import modeling_bert
from transformers.models.gpt2 import modeling_gpt2
from transformers.models.roberta import modeling_roberta

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CASES = {
    "tiny-legacy": ("The cat sat on the [MASK], didn't it?", "Yes — it was warm there!"),
    "roberta-mlm": ("The cat sat on the <mask>, didn't it?", "Yes: it was warm."),
    "gpt2-lm": ("The cat sat on the mat, didn't it? Yes... it was warm.", None),
}
# Heads ablated in the ablation check, (layer, head).
ABLATE = [(0, 1), (1, 3)]
# The output token that attention flow goes into.
FLOW_TO = 2


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


# Per layer, 1 for a kept head and 0 for an ablated one; None runs the model unchanged.
KEEP = None


def ablating(original):
    """The eager attention with transformers 4.x's head_mask: probabilities times the mask,
    context vectors from the masked probabilities."""

    def attention(module, query, key, value, attention_mask, **kwargs):
        output, weights = original(module, query, key, value, attention_mask, **kwargs)
        if KEEP is None:
            return output, weights
        weights = weights * KEEP[module.ablate_layer][None, :, None, None]
        return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights

    return attention


for module in (modeling_bert, modeling_roberta, modeling_gpt2):
    module.eager_attention_forward = ablating(module.eager_attention_forward)


def parts(model):
    """(encoder layers, attention module of a layer, embeddings module, prediction head, final
    norm or None) of the three families."""
    kind = model.config.model_type
    if kind == "gpt2":
        body = model.transformer
        return body.h, (lambda layer: layer.attn), body, model.lm_head, body.ln_f
    body = model.bert if kind == "bert" else model.roberta
    head = model.cls.predictions if kind == "bert" else model.lm_head
    return body.encoder.layer, (lambda layer: layer.attention.self), body.embeddings, head, None


def value_norms(model, hidden_states):
    """‖f_h(x_j)‖ [L, H, T] with f_h(x) = (x W_V^h + b_V^h) W_O^h, x what the attention reads."""
    layers, _, _, _, _ = parts(model)
    heads = model.config.num_attention_heads
    out = []
    for index, layer in enumerate(layers):
        x = hidden_states[index][0]
        if model.config.model_type == "gpt2":
            x = layer.ln_1(x)
            hidden = x.shape[-1]
            v = (x @ layer.attn.c_attn.weight + layer.attn.c_attn.bias)[:, 2 * hidden:]
            w_o = layer.attn.c_proj.weight  # [in, out]
        else:
            v = layer.attention.self.value(x)
            w_o = layer.attention.output.dense.weight.T  # [in, out]
        v, w_o = v.double().numpy(), w_o.double().numpy()
        d = v.shape[-1] // heads
        out.append([np.linalg.norm(v[:, h * d:(h + 1) * d] @ w_o[h * d:(h + 1) * d], axis=1)
                    for h in range(heads)])
    return np.array(out)


def top5(logits, tokenizer):
    probs = torch.softmax(logits.double(), dim=-1)
    values, ids = probs.topk(5)
    return [{"token": tokenizer.convert_ids_to_tokens(int(i)), "id": int(i), "prob": float(p)}
            for p, i in zip(values, ids)]


def logit_lens(model, tokenizer, hidden_states, positions):
    _, _, _, head, final_norm = parts(model)
    lens = []
    for position in positions:
        layers = []
        for layer, state in enumerate(hidden_states):
            h = state[0, position]
            if final_norm is not None and layer + 1 < len(hidden_states):
                h = final_norm(h)
            layers.append({"layer": layer, "top_k": top5(head(h[None])[0], tokenizer)})
        lens.append({"position": position, "layers": layers})
    return lens


def embeddings(model, enc, hidden_states):
    _, _, body, _, _ = parts(model)
    ids = enc["input_ids"][0]
    t = len(ids)
    if model.config.model_type == "gpt2":
        word, position = body.wte.weight[ids], body.wpe.weight[torch.arange(t)]
        segment, normed = None, None
    else:
        if model.config.model_type == "roberta":
            pad = model.config.pad_token_id
            position_ids = torch.arange(pad + 1, pad + 1 + t)
        else:
            position_ids = torch.arange(t)
        segment_ids = enc.get("token_type_ids", torch.zeros((1, t), dtype=torch.long))[0]
        word = body.word_embeddings.weight[ids]
        position = body.position_embeddings.weight[position_ids]
        segment = body.token_type_embeddings.weight[segment_ids]
        normed = hidden_states[0][0]
    total = word + (segment if segment is not None else 0) + position
    norm = lambda rows: torch.linalg.vector_norm(rows.double(), dim=-1).tolist()
    out = []
    for i in range(t):
        out.append({
            "position": i,
            "word": norm(word)[i],
            "position_emb": norm(position)[i],
            "segment": None if segment is None else norm(segment)[i],
            "sum": norm(total)[i],
            "after_norm": None if normed is None else norm(normed)[i],
        })
    return out


def flow(att, to):
    """Max-flow from every input token into output token `to`, on the rollout graph."""
    layers, _, t, _ = att.shape
    graph = nx.DiGraph()
    for layer in range(layers):
        a_hat = 0.5 * att[layer].mean(axis=0) + 0.5 * np.eye(t)
        for q in range(t):
            for k in range(t):
                if a_hat[q, k] > 0:
                    graph.add_edge((layer, k), (layer + 1, q), capacity=float(a_hat[q, k]))
    return [nx.maximum_flow_value(graph, (0, j), (layers, to),
                                  flow_func=nx.algorithms.flow.edmonds_karp)
            if graph.has_node((0, j)) else 0.0 for j in range(t)]


def word_spans(tokenizer, tokens, added, sentence_of):
    """A word is a word-start piece and its continuations; tokens the tokenizer added (no
    characters of the text: offsets (0, 0)) are words of their own, and so is whatever follows
    one. A mask typed in the text is text."""
    byte_level = "Ġ" in tokenizer.get_vocab()
    spans = []
    for i, tok in enumerate(tokens):
        if byte_level:
            starts_word = tok.startswith("Ġ")
        elif tok.startswith("\u2581"):
            starts_word = True
        else:
            starts_word = not tok.startswith("##")
        new = (i == 0 or added[i] or added[i - 1]
               or sentence_of[i] != sentence_of[i - 1] or starts_word)
        if new:
            spans.append([i, i + 1])
        else:
            spans[-1][1] = i + 1
    words = [tokens[a] if added[a] else tokenizer.convert_tokens_to_string(tokens[a:b]).strip()
             for a, b in spans]
    return words, spans


def word_map(m, spans):
    """[..., T, T] → [..., W, W]: rows averaged over a word's pieces, columns summed."""
    summed = np.stack([m[..., a:b].sum(axis=-1) for a, b in spans], axis=-1)
    return np.stack([summed[..., a:b, :].mean(axis=-2) for a, b in spans], axis=-2)


def main() -> None:
    global KEEP
    for name, (text, text_b) in CASES.items():
        folder = FIXTURES / name
        tokenizer = AutoTokenizer.from_pretrained(folder)
        auto = AutoModelForCausalLM if name.startswith("gpt2") else AutoModelForMaskedLM
        model = auto.from_pretrained(folder, attn_implementation="eager").eval()
        layers, attention_of, _, _, _ = parts(model)
        for index, layer in enumerate(layers):
            attention_of(layer).ablate_layer = index
        enc = tokenizer(text, text_b, return_tensors="pt")
        if "token_type_ids" in enc and model.config.model_type != "bert":
            del enc["token_type_ids"]
        with torch.no_grad():
            KEEP = None
            out = model(**enc, output_attentions=True, output_hidden_states=True)
            hidden_states = out.hidden_states
            norms = value_norms(model, hidden_states)
            mask = tokenizer.mask_token_id
            ids = enc["input_ids"][0].tolist()
            positions = [i for i, id_ in enumerate(ids) if id_ == mask] if mask is not None \
                else [len(ids) - 1]
            lens = logit_lens(model, tokenizer, hidden_states, positions)
            parts_of_embeddings = embeddings(model, enc, hidden_states)
            heads = model.config.num_attention_heads
            KEEP = [torch.tensor([0.0 if (l, h) in ABLATE else 1.0 for h in range(heads)])
                    for l in range(len(layers))]
            ablated = model(**enc, output_attentions=True)
            KEEP = None
            ablated_att = np.stack([a[0].double().numpy() for a in ablated.attentions])
            ablated_top5 = [{"position": p, "top_k": top5(ablated.logits[0, p], tokenizer)}
                            for p in positions]
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
        attention_norms = att * norms[:, :, None, :]
        sentence_of = enc.sequence_ids(0) if hasattr(enc, "sequence_ids") else [0] * t
        offsets = tokenizer(text, text_b, return_offsets_mapping=True)["offset_mapping"]
        added = [tuple(pair) == (0, 0) for pair in offsets]
        words, spans = word_spans(tokenizer, tokens, added, sentence_of)
        document = {
            "text": text,
            "text_b": text_b,
            "tokens": tokens,
            "punctuation": punctuation.tolist(),
            "rollout": rollout,
            "head_stats": stats,
            "flow_to": FLOW_TO,
            "flow": flow(att, FLOW_TO),
            "attention_norms": attention_norms.tolist(),
            "logit_lens": lens,
            "embeddings": parts_of_embeddings,
            "ablate": [list(pair) for pair in ABLATE],
            "ablated_attentions": ablated_att.tolist(),
            "ablated_predictions": ablated_top5,
            "words": words,
            "word_attentions": word_map(att, spans).tolist(),
            "word_rollout": word_map(np.array(rollout), spans).tolist(),
        }
        (folder / "analyses.json").write_text(json.dumps(document) + "\n")
        print(f"{name}: {t} tokens, punctuation at {np.flatnonzero(punctuation).tolist()}")


if __name__ == "__main__":
    main()
