#!/usr/bin/env python3
"""The speed reference for `bertscope bench`: transformers' eager BertModel with every attention
map returned, on the same checkpoint, input length and thread count.

    /tmp/ref/bin/python tools/bench_reference.py --write-model /tmp/bert-base-random
    /tmp/ref/bin/python tools/bench_reference.py --model /tmp/bert-base-random --seq-len 128
    cargo run --release -- bench --model /tmp/bert-base-random --seq-len 128

--write-model saves a random-weight bert-base-shaped BertForPreTraining (12 layers, hidden 768,
12 heads) with the bert-base-uncased tokenizer files copied from --tokenizer-from, so both tools
time the same shapes. Prints `median_ms <float>` last, like `bertscope bench`.
"""

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForPreTraining, BertModel


def write_model(folder: Path, tokenizer_from: Path, large: bool) -> None:
    torch.manual_seed(0)
    config = BertConfig(attn_implementation="eager")
    if large:
        config = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                            intermediate_size=4096, attn_implementation="eager")
    BertForPreTraining(config).eval().save_pretrained(folder)
    for name in ["vocab.txt", "tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(tokenizer_from / name, folder / name)
    print(f"wrote {folder}")


def bench(folder: Path, seq_len: int, iters: int, threads: int) -> None:
    torch.set_num_threads(threads)
    model = BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    ids = torch.randint(1000, 5000, (1, seq_len))
    ids[0, 0], ids[0, -1] = 101, 102
    segments = torch.zeros_like(ids)
    times = []
    with torch.inference_mode():
        for _ in range(iters + 3):
            start = time.perf_counter()
            model(input_ids=ids, token_type_ids=segments, output_attentions=True)
            times.append((time.perf_counter() - start) * 1e3)
    times = times[3:]
    print(f"transformers eager, output_attentions=True, {torch.get_num_threads()} threads, seq_len {seq_len}")
    print("runs_ms [" + ", ".join(f"{t:.1f}" for t in times) + "]")
    print(f"median_ms {statistics.median(times):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-model", type=Path, help="folder to write a random bert-base checkpoint to")
    parser.add_argument("--large", action="store_true", help="write bert-large shapes instead")
    parser.add_argument("--tokenizer-from", type=Path, default=Path("../shared/models/all-MiniLM-L6-v2"))
    parser.add_argument("--model", type=Path, help="checkpoint folder to time")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.write_model:
        write_model(args.write_model, args.tokenizer_from, args.large)
    if args.model:
        bench(args.model, args.seq_len, args.iters, args.threads)


if __name__ == "__main__":
    main()
