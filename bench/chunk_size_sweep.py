#!/usr/bin/env python3
"""Measures word-count throughput of local mode for a range of chunk sizes.

Generates a seeded Zipf-distributed text corpus (never committed), runs
`submit-job local` over it once per chunk size per round, checks every result
against collections.Counter, and prints MB/s and the ratio to the best size
measured in the same run.

    cargo build --release && python3 bench/chunk_size_sweep.py [--mib 256] [--rounds 3]
"""

import argparse
import collections
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBMIT = os.path.join(ROOT, "target", "release", "submit-job")
SIZES = ["256KiB", "1MiB", "2MiB", "4MiB", "8MiB", "16MiB", "32MiB"]


def generate(path, mib, seed):
    rng = random.Random(seed)
    words = [("w%d" % i).encode() for i in range(50000)]
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    target = mib << 20
    with open(path, "wb") as out:
        written = 0
        while written < target:
            batch = rng.choices(words, weights, k=100000)
            lines = [b" ".join(batch[i : i + 12]) for i in range(0, len(batch), 12)]
            block = b"\n".join(lines) + b"\n"
            out.write(block)
            written += len(block)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", nargs="*", default=SIZES)
    args = parser.parse_args()
    if not os.path.exists(SUBMIT):
        sys.exit("build first: cargo build --release")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        size = generate(corpus, args.mib, seed=1)
        with open(corpus, "rb") as f:
            expected = collections.Counter(f.read().split())
        best = {}
        for _ in range(args.rounds):
            for chunk in args.sizes:
                started = time.perf_counter()
                run = subprocess.run(
                    [SUBMIT, "local", corpus, "--chunk-size", chunk, "-q"],
                    capture_output=True,
                    check=True,
                )
                elapsed = time.perf_counter() - started
                got = {}
                for line in run.stdout.splitlines():
                    key, value = line.rsplit(b"\t", 1)
                    got[key] = int(value)
                if got != expected:
                    sys.exit(f"wrong result at chunk size {chunk}")
                best[chunk] = min(best.get(chunk, elapsed), elapsed)
        fastest = min(best.values())
        print(f"corpus: {size / 1e6:.0f} MB, {os.cpu_count()} cores, best of {args.rounds}")
        print(f"{'chunk size':>10}  {'MB/s':>8}  {'vs best':>7}")
        for chunk in args.sizes:
            print(f"{chunk:>10}  {size / 1e6 / best[chunk]:8.1f}  {fastest / best[chunk]:7.2f}")


if __name__ == "__main__":
    main()
