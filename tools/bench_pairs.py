#!/usr/bin/env python3
"""bertscope against transformers in pairs, on one machine in one sitting: each round runs
`bertscope bench`, then `tools/bench_reference.py` twice, then `bertscope bench` again, and
reports the ratio of the round's two bertscope medians to its two transformers medians. Machines
with noisy neighbours change speed by up to 2x within minutes; a ratio taken within one round
is far steadier than two medians taken minutes apart, so the goals are judged on these ratios.

    python3 tools/bench_pairs.py --model /tmp/bert-base-random --seq-len 128 --rounds 4
    python3 tools/bench_pairs.py --model /tmp/bert-base-random --seq-len 512 --iters 5
    python3 tools/bench_pairs.py --model /tmp/bert-classifier --attribution --rounds 2

--attribution compares one run of integrated gradients (50 steps; bertscope's `ig_ms`) with
Captum's best median of the batch sizes `bench_reference.py --attribution` times.
Checkpoints come from `bench_reference.py --write-model`; the reference runs in --python (a
venv with torch and transformers, and Captum for --attribution). Uses only the standard library.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    """The CPU's model name, as `lscpu` and /proc/cpuinfo give it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def run_lines(command: list[str], env: dict[str, str], stop_after: str | None = None) -> list[str]:
    """The output lines of `command`; with `stop_after`, the command is ended once a line starts
    with it (`bench --attribution` goes on to time activation patching, which is not compared)."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=ROOT)
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if stop_after and line.startswith(stop_after):
            process.terminate()
            break
    process.stdout.close()
    code = process.wait()
    if code != 0 and not (stop_after and lines and lines[-1].startswith(stop_after)):
        sys.exit(f"{command[0]} failed ({code}):\n" + "\n".join(lines[-10:]))
    return lines


def field(lines: list[str], name: str) -> float:
    """The number after `name` on the last line that starts with it."""
    for line in reversed(lines):
        if line.startswith(name + " "):
            return float(line.split()[1])
    sys.exit(f"no '{name}' line in:\n" + "\n".join(lines[-10:]))


def captum_best(lines: list[str]) -> float:
    """The lowest of the medians of Captum's runs per batch size."""
    medians = []
    for line in lines:
        match = re.match(r"ig_ms internal_batch_size=\S+: \[(.*)\]", line)
        if match:
            medians.append(statistics.median(float(t) for t in match.group(1).split(",")))
    if not medians:
        sys.exit("no ig_ms lines from the reference:\n" + "\n".join(lines[-10:]))
    return min(medians)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint folder to time")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--iters", type=int, default=10, help="runs per median")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--attribution", action="store_true",
                        help="integrated gradients against Captum instead of the forward")
    parser.add_argument("--bertscope", type=Path, default=ROOT / "target/release/bertscope")
    parser.add_argument("--python", default="/tmp/ref/bin/python",
                        help="the Python with torch and transformers")
    args = parser.parse_args()

    if not args.bertscope.is_file():
        sys.exit(f"{args.bertscope} does not exist: build it first (cargo build --release)")
    if not shutil.which(args.python):
        sys.exit(f"{args.python} does not exist: give --python, a Python with torch and transformers")
    if not (args.model / "config.json").is_file():
        sys.exit(f"{args.model} holds no config.json: write one with bench_reference.py --write-model")
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    common = ["--model", str(args.model), "--seq-len", str(args.seq_len)]
    if args.attribution:
        ours_command = [str(args.bertscope), "bench", *common, "--iters", "3", "--attribution"]
        theirs_command = [args.python, "tools/bench_reference.py", *common, "--iters", "2",
                          "--threads", str(args.threads), "--attribution"]
    else:
        ours_command = [str(args.bertscope), "bench", *common, "--iters", str(args.iters)]
        theirs_command = [args.python, "tools/bench_reference.py", *common, "--iters", str(args.iters),
                          "--threads", str(args.threads)]

    def ours() -> tuple[float, str]:
        if args.attribution:
            lines = run_lines(ours_command, env, stop_after="ig_ms")
            value = field(lines, "ig_ms")
        else:
            lines = run_lines(ours_command, env)
            value = field(lines, "median_ms")
        return value, next((line for line in lines if line.startswith("isa ")), "isa unknown")

    def theirs() -> float:
        lines = run_lines(theirs_command, env)
        return captum_best(lines) if args.attribution else field(lines, "median_ms")

    what = "integrated gradients (50 steps)" if args.attribution else "forward"
    print(f"{args.model.name}, {args.seq_len} tokens, {what}, {args.threads} threads, on {cpu_name()}")
    ratios = []
    for round_number in range(1, args.rounds + 1):
        first, isa = ours()
        if round_number == 1:
            print(isa)
        reference = [theirs(), theirs()]
        second, _ = ours()
        ratio = (first + second) / sum(reference)
        ratios.append(ratio)
        print(f"round {round_number}: bertscope {first:.1f} {second:.1f} ms, "
              f"transformers {reference[0]:.1f} {reference[1]:.1f} ms, ratio {ratio:.2f}", flush=True)
    print(f"ratio per round {min(ratios):.2f}-{max(ratios):.2f}, median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
