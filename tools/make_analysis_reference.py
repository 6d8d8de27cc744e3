#!/usr/bin/env python3
"""Reference values of the attention analyses, computed independently of bertscope: the
attention probabilities, hidden states and heads come from Hugging Face transformers (eager
attention), and attention rollout, attention flow (networkx max-flow), norm-based attention,
the logit lens, the embedding breakdown, head ablation (transformers 4.x's head_mask, patched
into the eager attention), word-level maps and Clark et al.'s head statistics are computed here
with numpy from their published definitions. `tests/cli.rs` checks `bertscope dump --with ...`
(and `--ablate`, `--words`) and `bertscope stats --corpus` (and `--words`) against them, and
`tests/ui.rs` the app's corpus run.

    /tmp/ref/bin/python tools/make_analysis_reference.py

Writes tests/fixtures/<fixture>/analyses.json for tiny-legacy (BERT, a sentence pair),
roberta-mlm (byte-level BPE) and gpt2-lm (causal), and tests/fixtures/head_labels.json: maps made
to fall on each side of Clark's thresholds, with their statistics.
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
# The output token that attention flow goes into, and the output word of the word-level flow.
FLOW_TO = 2
WORD_FLOW_TO = 1
# A small corpus per fixture for `stats --corpus`: one text per line, blank lines skipped, a tab
# splitting sentence A from B (GPT-2 reads one text, so its corpus has no pairs).
CORPUS = {
    "tiny-legacy": "The cat sat on the mat.\n\nIt was warm\tand dry, too.\n",
    "roberta-mlm": "The cat sat on the mat.\n\nIt was warm\tand dry, too!\n",
    "gpt2-lm": "The cat sat on the mat.\n\nIt was warm and dry, too.\n",
}
# Clark et al.'s kinds of head, as the README states them for `head-stats`: a head is the first
# kind whose measure exceeds its threshold, and "mixed" when none does.
HEAD_KINDS = [
    ("previous", lambda s: s["prev"], 0.5),
    ("next", lambda s: s["next"], 0.5),
    ("special", lambda s: s["cls"] + s["sep"], 0.6),
    ("broad", lambda s: s["entropy"], 3.8),
]


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
    out = {k: float(v) for k, v in stats.items()}
    out["label"] = head_label(out)
    return out


def head_label(stats):
    return next((kind for kind, measure, threshold in HEAD_KINDS if measure(stats) > threshold),
                "mixed")


def corpus_stats(per_text):
    """Head statistics over a corpus from each text's (statistics [L][H], query rows): every
    statistic a mean over all query rows of all texts, `prev` and `next` over the rows that
    have a previous (next) token, and the label of those means."""
    rows = sum(t for _, t in per_text)
    layers, heads = len(per_text[0][0]), len(per_text[0][0][0])
    out = []
    for l in range(layers):
        out.append([])
        for h in range(heads):
            stats = {}
            for key in ("cls", "sep", "punct", "self", "entropy"):
                stats[key] = sum(s[l][h][key] * t for s, t in per_text) / rows
            for key in ("prev", "next"):
                stats[key] = sum(s[l][h][key] * (t - 1) for s, t in per_text) \
                    / max(sum(t - 1 for _, t in per_text), 1)
            stats["label"] = head_label(stats)
            out[-1].append(stats)
    return {"lines": len(per_text), "tokens": rows, "heads": out}


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


def piece_kinds(tokenizer, ids, tokens):
    """Which pieces are separators and which punctuation (README: `head-stats`)."""
    special = set(tokenizer.all_special_ids)
    separators = np.array([i in special and tok in ("[SEP]", "</s>") for i, tok in zip(ids, tokens)])
    punctuation = np.array([
        i not in special and len(bare(tokenizer, tok)) > 0
        and all(is_punctuation(c) for c in bare(tokenizer, tok))
        for i, tok in zip(ids, tokens)
    ])
    return separators, punctuation


def words_of(tokenizer, enc, text, text_b):
    """The words of an encoded text, each word's pieces, and which words are separators and
    which punctuation: a word the tokenizer added is a separator when it is [SEP] or </s>, and a
    word of the text is punctuation when all its characters are."""
    ids = enc["input_ids"][0].tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids)
    t = len(ids)
    sentence_of = enc.sequence_ids(0) if hasattr(enc, "sequence_ids") else [0] * t
    offsets = tokenizer(text, text_b, return_offsets_mapping=True)["offset_mapping"]
    added = [tuple(pair) == (0, 0) for pair in offsets]
    words, spans = word_spans(tokenizer, tokens, added, sentence_of)
    separators = np.array([added[a] and w in ("[SEP]", "</s>") for w, (a, _) in zip(words, spans)])
    punctuation = np.array([not added[a] and len(w) > 0 and all(is_punctuation(c) for c in w)
                            for w, (a, _) in zip(words, spans)])
    return words, spans, separators, punctuation


def encode(tokenizer, model, text, text_b):
    enc = tokenizer(text, text_b, return_tensors="pt")
    if "token_type_ids" in enc and model.config.model_type != "bert":
        del enc["token_type_ids"]
    return enc


def all_head_stats(att, separators, punctuation):
    return [[head_stats(att[l, h], separators, punctuation) for h in range(att.shape[1])]
            for l in range(att.shape[0])]


def corpus_reference(model, tokenizer, text):
    """`stats --corpus` of `text` over pieces and over words."""
    pieces, words = [], []
    for line in text.split("\n"):
        if not line.strip():
            continue
        a, b = line.split("\t", 1) if "\t" in line else (line, None)
        enc = encode(tokenizer, model, a, b)
        with torch.no_grad():
            out = model(**enc, output_attentions=True)
        att = np.stack([x[0].double().numpy() for x in out.attentions])
        ids = enc["input_ids"][0].tolist()
        separators, punctuation = piece_kinds(tokenizer, ids, tokenizer.convert_ids_to_tokens(ids))
        pieces.append((all_head_stats(att, separators, punctuation), len(ids)))
        _, spans, separators, punctuation = words_of(tokenizer, enc, a, b)
        words.append((all_head_stats(word_map(att, spans), separators, punctuation), len(spans)))
    return {"text": text, "pieces": corpus_stats(pieces), "words": corpus_stats(words)}


def label_cases():
    """Attention maps made to fall on each side of Clark's thresholds, with their statistics:
    the fixtures' random heads are all "mixed", so the rule is checked on these."""

    def shifted(t, offset, weight):
        m = np.full((t, t), 0.0)
        for i in range(t):
            j = i + offset if 0 <= i + offset < t else i
            m[i, j] += weight
            m[i, i] += 1.0 - weight if j != i else 0.0
        return m

    def rows(t, columns):
        """Every row puts `weight` on each of `columns` and the rest on itself."""
        m = np.zeros((t, t))
        for i in range(t):
            for j, weight in columns.items():
                m[i, j] += weight
            m[i, i] += 1.0 - sum(columns.values())
        return m

    t = 8
    separators = [False] * (t - 1) + [True]
    punctuation = [False, False, True, False, False, True, False, False]
    cases = {
        "previous": shifted(t, -1, 0.9),
        "next": shifted(t, 1, 0.9),
        "prev at exactly 0.5 is not previous": shifted(t, -1, 0.5),
        "special by cls": rows(t, {0: 0.7}),
        "special by cls and sep": rows(t, {0: 0.35, 7: 0.3}),
        "cls and sep under 0.6 are not special": rows(t, {0: 0.2, 7: 0.2}),
        "punctuation": rows(t, {2: 0.4, 5: 0.4}),
        "broad": np.full((60, 60), 1.0 / 60),
        "not broad": np.full((40, 40), 1.0 / 40),
        "previous before special": np.array([[1.0, 0.0], [0.6, 0.4]]),
    }
    out = []
    for name, m in cases.items():
        n = m.shape[0]
        seps = np.array(separators if n == t else [False] * n)
        punct = np.array(punctuation if n == t else [False] * n)
        m = m.astype(np.float32).astype(np.float64)
        out.append({"name": name, "map": m.tolist(), "separators": seps.tolist(),
                    "punctuation": punct.tolist(), "stats": head_stats(m, seps, punct)})
    return out


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
        enc = encode(tokenizer, model, text, text_b)
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
        separators, punctuation = piece_kinds(tokenizer, ids, tokens)
        t = len(ids)
        rollout, r = [], None
        for layer in range(att.shape[0]):
            a_hat = 0.5 * att[layer].mean(axis=0) + 0.5 * np.eye(t)
            r = a_hat if r is None else a_hat @ r
            rollout.append(r.tolist())
        stats = all_head_stats(att, separators, punctuation)
        attention_norms = att * norms[:, :, None, :]
        words, spans, word_separators, word_punctuation = words_of(tokenizer, enc, text, text_b)
        word_att = word_map(att, spans)
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
            "word_attentions": word_att.tolist(),
            "word_rollout": word_map(np.array(rollout), spans).tolist(),
            "word_attention_norms": word_map(attention_norms, spans).tolist(),
            "word_flow_to": WORD_FLOW_TO,
            "word_flow": flow(word_att, WORD_FLOW_TO),
            "word_punctuation": word_punctuation.tolist(),
            "word_head_stats": all_head_stats(word_att, word_separators, word_punctuation),
            "corpus": corpus_reference(model, tokenizer, CORPUS[name]),
        }
        (folder / "analyses.json").write_text(json.dumps(document) + "\n")
        print(f"{name}: {t} tokens, punctuation at {np.flatnonzero(punctuation).tolist()}")
    cases = label_cases()
    (FIXTURES / "head_labels.json").write_text(json.dumps(cases) + "\n")
    print("head labels:", ", ".join(f"{c['name']}: {c['stats']['label']}" for c in cases))


if __name__ == "__main__":
    main()
