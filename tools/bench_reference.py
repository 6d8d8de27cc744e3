#!/usr/bin/env python3
"""The speed reference for `bertscope bench`: transformers' eager model with every attention map
returned, on the same checkpoint, input length and thread count.

    /tmp/ref/bin/python tools/bench_reference.py --write-model /tmp/bert-base-random
    /tmp/ref/bin/python tools/bench_reference.py --write-model /tmp/gpt2-random --family gpt2
    /tmp/ref/bin/python tools/bench_reference.py --model /tmp/bert-base-random --seq-len 128
    cargo run --release -- bench --model /tmp/bert-base-random --seq-len 128

With --device cuda the model runs on the GPU and every attention map is copied to the host with
`.cpu()` after each run, as `bertscope bench --device cuda` copies them.

--write-model saves a random-weight checkpoint of a family's base shapes (--large: bert-large's):
bert (BertForPreTraining, 12 layers, hidden 768, 12 heads), bert-classifier
(BertForSequenceClassification, two labels; for --attribution, which times Captum), distilbert (DistilBertForMaskedLM,
6 layers), roberta (RobertaForMaskedLM, 12 layers, vocabulary 50265), gpt2 (GPT2LMHeadModel,
124M, vocabulary 50257), smollm2 (LlamaForCausalLM in SmolLM2-135M's shapes, bf16) or modernbert
(ModernBertForMaskedLM in ModernBERT-base's shapes). BERT and DistilBERT get the bert-base-uncased tokenizer files from
--tokenizer-from; RoBERTa and GPT-2 a small byte-level BPE tokenizer trained here (the ids it
produces are a subset of the model's vocabulary, so the shapes timed are the real ones).

The timed model computes what `bertscope bench` computes: the encoder with every attention map
for the encoder families (whose heads need a mask or a pair to run), and GPT-2 and the Llama kin
with their LM head, whose next-token logits `bench` computes at every position. Prints `median_ms <float>` last.
"""

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import torch
import transformers as T

CORPUS = ["The quick brown fox jumps over the lazy dog while teachers explain how attention heads "
          "in transformer models relate every word of a sentence to every other word."] * 50


def byte_level_tokenizer(folder: Path, specials: list[str]) -> None:
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=1000, special_tokens=specials, show_progress=False)
    bpe.save_model(str(folder))


def fast_tokenizer(folder: Path, specials: list[str], template: bool) -> None:
    """A byte-level BPE tokenizer.json (the Llama kin and ModernBERT read no other), with
    [CLS] … [SEP] framing when `template`."""
    from tokenizers import ByteLevelBPETokenizer, Tokenizer
    from tokenizers.processors import TemplateProcessing

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=1000, special_tokens=specials, show_progress=False)
    tokenizer = Tokenizer.from_str(bpe.to_str())
    if template:
        tokenizer.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 0), ("[SEP]", 1)])
    T.PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(folder)


def write_model(folder: Path, family: str, tokenizer_from: Path, large: bool) -> None:
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    eager = {"attn_implementation": "eager"}
    if family == "bert":
        config = T.BertConfig(**eager)
        if large:
            config = T.BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                  intermediate_size=4096, **eager)
        T.BertForPreTraining(config).eval().save_pretrained(folder)
    elif family == "bert-classifier":
        T.BertForSequenceClassification(T.BertConfig(num_labels=2, **eager)).eval().save_pretrained(folder)
    elif family == "distilbert":
        T.DistilBertForMaskedLM(T.DistilBertConfig(**eager)).eval().save_pretrained(folder)
    elif family == "roberta":
        config = T.RobertaConfig(max_position_embeddings=514, type_vocab_size=1, **eager)
        T.RobertaForMaskedLM(config).eval().save_pretrained(folder)
        byte_level_tokenizer(folder, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    elif family == "gpt2":
        T.GPT2LMHeadModel(T.GPT2Config(**eager)).eval().save_pretrained(folder)
        byte_level_tokenizer(folder, ["<|endoftext|>"])
        # GPT-2's real vocabulary ends with <|endoftext|> at 50256; ours starts with it.
        config = json.loads((folder / "config.json").read_text())
        config["bos_token_id"] = config["eos_token_id"] = 0
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    elif family == "smollm2":
        # SmolLM2-135M's shapes, saved in bf16 as the Hub's checkpoint is.
        config = T.LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                               num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                               rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                               tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, **eager)
        T.LlamaForCausalLM(config).eval().to(torch.bfloat16).save_pretrained(folder)
        fast_tokenizer(folder, ["<|endoftext|>"], template=False)
    elif family == "modernbert":
        # ModernBERT-base's shapes.
        config = T.ModernBertConfig(vocab_size=50368, hidden_size=768, intermediate_size=1152, num_hidden_layers=22,
                                    num_attention_heads=12, pad_token_id=2, cls_token_id=0, sep_token_id=1,
                                    **eager)
        T.ModernBertForMaskedLM(config).eval().save_pretrained(folder)
        fast_tokenizer(folder, ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"], template=True)
    if family in ("bert", "bert-classifier", "distilbert"):
        for name in ["vocab.txt", "tokenizer.json", "tokenizer_config.json"]:
            if (tokenizer_from / name).exists():
                shutil.copy(tokenizer_from / name, folder / name)
    (folder / "generation_config.json").unlink(missing_ok=True)
    print(f"wrote {folder}")


def bench(folder: Path, seq_len: int, iters: int, threads: int, device: str) -> None:
    torch.set_num_threads(threads)
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    classes = {"bert": T.BertModel, "distilbert": T.DistilBertModel, "roberta": T.RobertaModel,
               "xlm-roberta": T.XLMRobertaModel, "gpt2": T.GPT2LMHeadModel, "llama": T.LlamaForCausalLM,
               "modernbert": T.ModernBertModel}
    model = classes[model_type].from_pretrained(folder, attn_implementation="eager",
                                                dtype=torch.float32).eval().to(device)
    ids = torch.randint(1000, 5000, (1, seq_len))
    inputs = {"input_ids": ids}
    if model_type == "bert":
        ids[0, 0], ids[0, -1] = 101, 102
        inputs["token_type_ids"] = torch.zeros_like(ids)
    elif model_type == "distilbert":
        ids[0, 0], ids[0, -1] = 101, 102
    elif model_type in ("roberta", "xlm-roberta"):
        ids[0, 0], ids[0, -1] = 0, 2
    elif model_type == "modernbert":
        ids[0, 0], ids[0, -1] = 0, 1
    inputs = {name: tensor.to(device) for name, tensor in inputs.items()}
    times = []
    with torch.inference_mode():
        for _ in range(iters + 3):
            start = time.perf_counter()
            outputs = model(**inputs, output_attentions=True)
            maps = [attention.cpu() for attention in outputs.attentions]
            if device == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
            del maps
    times = times[3:]
    where = torch.cuda.get_device_name() if device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"transformers {transformers_version()} eager {type(model).__name__}, output_attentions=True, "
          f"{where}, seq_len {seq_len}")
    print("runs_ms [" + ", ".join(f"{t:.1f}" for t in times) + "]")
    print(f"median_ms {statistics.median(times):.3f}")


def bench_attribution(folder: Path, seq_len: int, iters: int, threads: int) -> None:
    """Captum's LayerIntegratedGradients (50 steps, Gauss–Legendre) on a
    BertForSequenceClassification, with internal_batch_size=10 and without, then one
    gradient × input (forward and backward), as `bench --attribution` times them."""
    from captum.attr import LayerIntegratedGradients

    torch.set_num_threads(threads)
    model = T.BertForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    ids = torch.randint(1000, 5000, (1, seq_len))
    ids[0, 0], ids[0, -1] = 101, 102
    baseline = torch.zeros_like(ids)
    baseline[0, 0], baseline[0, -1] = 101, 102
    positions = torch.arange(seq_len).unsqueeze(0)
    types = torch.zeros_like(ids)

    def forward(batch, positions, types):
        return model(input_ids=batch, position_ids=positions, token_type_ids=types).logits[:, 1]

    lig = LayerIntegratedGradients(forward, model.bert.embeddings)
    print(f"transformers {transformers_version()} eager BertForSequenceClassification, "
          f"{torch.get_num_threads()} threads, seq_len {seq_len}")
    for batch in (10, None):
        times = []
        for _ in range(max(1, iters)):
            start = time.perf_counter()
            lig.attribute(ids, baselines=baseline, additional_forward_args=(positions, types),
                          n_steps=50, internal_batch_size=batch)
            times.append((time.perf_counter() - start) * 1e3)
        print(f"ig_ms internal_batch_size={batch}: [" + ", ".join(f"{t:.0f}" for t in times) + "]")
    grads = []
    for _ in range(iters + 2):
        start = time.perf_counter()
        x = {}
        hook = model.bert.embeddings.register_forward_hook(lambda m, i, o: x.setdefault("x", o))
        value = forward(ids, positions, types)[0]
        (grad,) = torch.autograd.grad(value, x["x"])
        hook.remove()
        (grad * x["x"]).sum(-1)
        grads.append((time.perf_counter() - start) * 1e3)
    print(f"gradient_ms {statistics.median(grads[2:]):.3f}")


def bench_generate(folder: Path, seq_len: int, new_tokens: int, iters: int, threads: int) -> None:
    """transformers' greedy `generate` with the cache and every step's attentions, as
    `bench --generate` times it: the first token alone, then the per-token time of the rest."""
    torch.set_num_threads(threads)
    model = T.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager",
                                                   dtype=torch.float32).eval()
    ids = torch.randint(1000, 5000, (1, seq_len)) % model.config.vocab_size

    def run(tokens):
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(ids, do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens,
                           use_cache=True, output_attentions=True, return_dict_in_generate=True,
                           pad_token_id=0)
        return (time.perf_counter() - start) * 1e3

    run(new_tokens)
    firsts, per_token = [], []
    for _ in range(iters):
        first = run(1)
        total = run(new_tokens)
        firsts.append(first)
        per_token.append((total - first) / (new_tokens - 1))
    print(f"transformers {transformers_version()} eager {type(model).__name__}.generate, use_cache=True, "
          f"output_attentions=True, greedy, {torch.get_num_threads()} threads, prompt {seq_len}, "
          f"{new_tokens} new tokens")
    print(f"first_token_ms {statistics.median(firsts):.3f}")
    print(f"per_token_ms {statistics.median(per_token):.3f}")


def bench_gemm(folder: Path, seq_len: int, iters: int, threads: int) -> None:
    """torch's sgemm on the shapes `bench --gemm` times: W [m, k] @ X [k, n], and the vocabulary
    head's X [n, k] @ Wᵀ."""
    torch.set_num_threads(threads)
    config = json.loads((folder / "config.json").read_text())
    hidden = config.get("hidden_size") or config.get("n_embd") or config.get("dim")
    inner = config.get("intermediate_size") or config.get("n_inner") or config.get("hidden_dim") or 4 * hidden
    heads = config.get("num_attention_heads") or config.get("n_head") or config.get("n_heads")
    head_dim = config.get("head_dim") or hidden // heads
    kv_heads = config.get("num_key_value_heads") or heads
    gated = config.get("model_type") in ("llama", "mistral", "qwen2", "qwen3", "gemma3_text", "modernbert")
    queries = heads * head_dim
    shapes = [("cube", 2048, 2048, 2048), ("qkv", queries + 2 * kv_heads * head_dim, seq_len, hidden),
              ("attention_output", hidden, seq_len, queries),
              ("ffn_in", (2 if gated else 1) * inner, seq_len, hidden), ("ffn_out", hidden, seq_len, inner),
              ("vocabulary", config["vocab_size"], seq_len, hidden)]
    print(f"torch {torch.__version__} sgemm, {torch.get_num_threads()} threads, median of {iters} runs")
    for name, m, n, k in shapes:
        w, x = torch.randn(m, k), torch.randn(k, n)
        # The vocabulary head as transformers runs it: logits [n, m] = X [n, k] @ Wᵀ.
        product = (lambda: torch.mm(x.T, w.T)) if name == "vocabulary" else (lambda: torch.mm(w, x))
        product()
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            product()
            times.append((time.perf_counter() - start) * 1e3)
        ms = statistics.median(times)
        print(f"gemm {name} {m}x{n}x{k} {ms:.3f} ms {2 * m * n * k / (ms * 1e6):.1f} GFLOP/s")


def bench_train(folder: Path, seq_len: int, batch: int, iters: int, threads: int) -> None:
    """Fine-tuning steps as the Trainer takes them: the model as a new 2-label classifier in train
    mode (the config's dropout), loss, backward, clip_grad_norm_(1.0), AdamW, zero_grad."""
    torch.set_num_threads(threads)
    model = T.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2,
                                                                 dtype=torch.float32)
    tok = T.AutoTokenizer.from_pretrained(folder)
    model.train()
    text = "the quick brown fox jumps over the lazy dog and runs away " * seq_len
    enc = tok([text] * batch, truncation=True, max_length=seq_len, return_tensors="pt")
    labels = torch.tensor([i % 2 for i in range(batch)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, betas=(0.9, 0.999), eps=1e-8)
    times = []
    for _ in range(iters + 2):
        start = time.perf_counter()
        loss = model(**enc, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        times.append((time.perf_counter() - start) * 1e3)
    times = times[2:]
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"transformers {transformers_version()} {type(model).__name__} training steps, "
          f"batch {batch} x {seq_len} tokens, {torch.get_num_threads()} threads")
    print("train_step_runs_ms [" + ", ".join(f"{t:.1f}" for t in times) + "]")
    print(f"train_step_ms {statistics.median(times):.1f}")
    print(f"peak_memory_mb {peak:.0f}")


def transformers_version() -> str:
    return T.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-model", type=Path, help="folder to write a random checkpoint to")
    parser.add_argument("--family", choices=["bert", "bert-classifier", "distilbert", "roberta", "gpt2", "smollm2",
                                             "modernbert"],
                        default="bert")
    parser.add_argument("--attribution", action="store_true",
                        help="time Captum's integrated gradients and one gradient instead (bert-classifier)")
    parser.add_argument("--gemm", action="store_true",
                        help="time torch's sgemm on the model's dense shapes instead")
    parser.add_argument("--generate", type=int, metavar="TOKENS",
                        help="time greedy generation of this many tokens instead (gpt2)")
    parser.add_argument("--train", type=int, metavar="BATCH",
                        help="time fine-tuning steps on batches of this many texts instead")
    parser.add_argument("--large", action="store_true", help="bert-large shapes instead (bert only)")
    parser.add_argument("--tokenizer-from", type=Path, default=Path("../shared/models/all-MiniLM-L6-v2"))
    parser.add_argument("--model", type=Path, help="checkpoint folder to time")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.write_model:
        write_model(args.write_model, args.family, args.tokenizer_from, args.large)
    if args.model and args.gemm:
        bench_gemm(args.model, args.seq_len, args.iters, args.threads)
    elif args.model and args.generate:
        bench_generate(args.model, args.seq_len, args.generate, args.iters, args.threads)
    elif args.model and args.train:
        bench_train(args.model, args.seq_len, args.train, args.iters, args.threads)
    elif args.model and args.attribution:
        bench_attribution(args.model, args.seq_len, args.iters, args.threads)
    elif args.model:
        bench(args.model, args.seq_len, args.iters, args.threads, args.device)


if __name__ == "__main__":
    main()
