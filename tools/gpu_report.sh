#!/usr/bin/env bash
# The GPU figures of bertscope, repeatable by anyone: faithfulness of the cuda build against
# transformers, and its speed against torch on the same GPU (plus the CPU on that machine's host).
#
#   tools/gpu_report.sh build          # here (no GPU needed): the cuda binary, stripped and
#                                      # gzipped, with tokenizer files, into gpu-bundle/
#   tools/gpu_report.sh run [PYTHON]   # on the GPU machine, from the repository root, with a
#                                      # Python that has torch (CUDA) and transformers
#
# `run` writes random-weight bert-base and bert-large checkpoints, then
#   1. faithfulness: every test fixture (every family and head) and both random checkpoints run
#      through `bertscope export --device cuda` (all attention maps as .npy) and through
#      transformers on the CPU with the same token ids; prints the largest attention difference;
#   2. speed: `bertscope bench --device cuda` and `tools/bench_reference.py --device cuda`
#      (eager, output_attentions=True, `.cpu()` on every map), alternated, two rounds, median of
#      20 runs, at bert-base 128/512 and bert-large 128/512 tokens; then the CPU on all host cores
#      at 8, 128 and 512 tokens; prints markdown tables.
# With the device tool: carry gpu-bundle, and run `tools/gpu_report.sh run /path/to/python`.
# DEVICE=cpu runs the same on the CPU (with any bertscope binary in gpu-bundle), to try the script.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=gpu-bundle

case "${1:-}" in
build)
  cargo fetch --locked
  eval "$(../shared/cuda/setup.sh)"
  CARGO_TARGET_DIR=target-cuda cargo build --release --locked --no-default-features --features cuda
  mkdir -p "$bundle/tokenizer"
  strip -o "$bundle/bertscope" target-cuda/release/bertscope
  gzip -9f "$bundle/bertscope"
  # bert-base-uncased's vocabulary, for the random checkpoints (the GPU machine has no network).
  for name in vocab.txt tokenizer.json tokenizer_config.json; do
    cp "../shared/models/all-MiniLM-L6-v2/$name" "$bundle/tokenizer/"
  done
  ls -l "$bundle"
  ;;
run)
  python=${2:-python3}
  work=${WORK:-/tmp/bertscope-gpu}
  device=${DEVICE:-cuda}
  iters=${ITERS:-20}
  export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1
  mkdir -p "$work"
  bin=$work/bertscope
  gunzip -c "$bundle/bertscope.gz" >"$bin"
  chmod +x "$bin"
  # cuBLAS, cuRAND and the CUDA runtime come with torch's wheels; the driver from the system.
  site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  for lib in "$site"/nvidia/cu13/lib "$site"/nvidia/*/lib /usr/local/nvidia/lib64; do
    [ -d "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  lscpu | grep -E '^(Model name|CPU\(s\))' || true

  for size in base large; do
    [ -f "$work/bert-$size/config.json" ] || "$python" tools/bench_reference.py \
      --write-model "$work/bert-$size" --tokenizer-from "$bundle/tokenizer" \
      $([ $size = large ] && echo --large)
  done

  echo "## Faithfulness: bertscope on $device vs transformers on the CPU, max |attention difference|"
  "$python" - "$bin" "$device" "$work" tests/fixtures/* <<'PY'
import json, subprocess, sys
from pathlib import Path
import numpy as np, torch, transformers as T

binary, device, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
fixtures = [Path(f) for f in sys.argv[4:]]
short = "The cat sat on the mat, and the dog watched it."
long = " ".join(["The teacher explained how attention heads relate every word to the others."] * 40)
cases = [(f, short) for f in fixtures if (f / "model.safetensors").exists()]
cases += [(work / "bert-base", short), (work / "bert-base", long), (work / "bert-large", long)]
worst = 0.0
print("| model | tokens | max difference |\n|---|---|---|")
for folder, text in cases:
    common = ["--model", str(folder), "--device", device, "--text", text]
    npy = work / "attentions.npy"
    subprocess.run([binary, "export", *common, "--out", str(npy)], check=True, capture_output=True)
    ours = np.load(npy)
    if text is short:  # the ids bertscope ran, from its dump
        ids = json.loads(subprocess.run([binary, "dump", *common], check=True, capture_output=True,
                                        text=True).stdout)["token_ids"]
    else:  # a dump of 512 tokens is too big: BERT's tokenizer, as transformers runs it
        ids = T.AutoTokenizer.from_pretrained(folder)(text, truncation=True, max_length=512)["input_ids"]
    model = T.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.inference_mode():
        outputs = model(input_ids=torch.tensor([ids]), output_attentions=True)
    reference = torch.stack(outputs.attentions)[:, 0].numpy()
    diff = float(np.abs(reference - ours).max()) if reference.shape == ours.shape else float("inf")
    worst = max(worst, diff)
    print(f"| {folder.name} | {len(ids)} | {diff:.1e} |")
print(f"max attention difference {worst:.1e}: {'faithful' if worst <= 1e-5 else 'NOT faithful'} at 1e-5")
PY

  median() { awk '/^median_ms/ {print $2}'; }
  field() { awk -v key="$1" '{for (i = 1; i < NF; i++) if ($i == key) print $(i + 1)}'; }
  echo "## Speed on $device: every attention map on the host (ms, median of $iters; two rounds)"
  echo "| model | tokens | bertscope | compute | transfer | torch | ratio |"
  echo "|---|---|---|---|---|---|---|"
  for round in 1 2; do
    for run in "base 128" "base 512" "large 128" "large 512"; do
      set -- $run
      ours=$("$bin" bench --model "$work/bert-$1" --device "$device" --seq-len "$2" --iters "$iters")
      torch_ms=$("$python" tools/bench_reference.py --model "$work/bert-$1" --device "$device" \
        --seq-len "$2" --iters "$iters" | median)
      ms=$(echo "$ours" | median)
      echo "| bert-$1 | $2 | $ms | $(echo "$ours" | field compute_ms) | $(echo "$ours" | field transfer_ms) | $torch_ms | $(awk -v a="$ms" -v b="$torch_ms" 'BEGIN {printf "%.2f", a / b}') |"
    done
  done
  threads=$(nproc)
  echo "## Speed on the host CPU, $threads threads (ms, median of $iters)"
  echo "| model | tokens | bertscope | torch | ratio |"
  echo "|---|---|---|---|---|"
  for round in 1 2; do
    for tokens in 8 128 512; do
      ms=$(RAYON_NUM_THREADS=$threads "$bin" bench --model "$work/bert-base" --seq-len "$tokens" \
        --iters "$iters" | median)
      torch_ms=$("$python" tools/bench_reference.py --model "$work/bert-base" --threads "$threads" \
        --seq-len "$tokens" --iters "$iters" | median)
      echo "| bert-base | $tokens | $ms | $torch_ms | $(awk -v a="$ms" -v b="$torch_ms" 'BEGIN {printf "%.2f", a / b}') |"
    done
  done
  ;;
*)
  sed -n '2,18p' "$0"
  exit 2
  ;;
esac
