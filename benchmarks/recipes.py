"""The common tutorial recipe against the course's default recipe: real tokens per second, time, peak memory,
padding and held-out loss, each recipe repeated (medians reported), with the ratio course / tutorial.

    python benchmarks/recipes.py [--runs 3] [--examples N] [--variants] [--smoke] [--out results.json]

The same as `python -m helpers bench`. On the CPU it trains the tiny profile's model on the shipped dataset; on a
CUDA GPU it builds a TinyLlama-shaped model from its config (random weights, no download) and uses the t4 defaults,
and also reports model FLOPs utilisation. See helpers/bench.py for exactly what each recipe is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from helpers.bench import add_bench_arguments, cmd_bench

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser)
    return cmd_bench(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
