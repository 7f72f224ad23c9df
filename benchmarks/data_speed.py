"""How long checking and cleaning a dataset takes, and how much memory, against its size: 1k to 500k records.

    python benchmarks/data_speed.py [--sizes 1000,5000,10000,50000,100000,500000]
                                    [--out benchmarks/results/data_speed_cpu.json] [--plot-only]

For each size it writes an Alpaca-style JSONL file (instruction, an input on 40% of the records, output; about 420
bytes a record, built deterministically from the words of data/corpus.txt) and runs, each in a new process as a
learner would:
- `python -m helpers validate-data FILE` (read, check every record, count every example's tokens with the tiny
  profile's tokenizer: what `validate-data` prints);
- the cleaning of 01_dataset_prep: `read_dataset`, the tokenizer, `clean_splits` (whitespace, duplicates,
  near-duplicates, over-long examples).
Wall time is the whole process, interpreter start and imports included; memory is the process's peak resident set.
The JSON (and a PNG of both curves) goes to benchmarks/results; the README's figure is that PNG. Figures, not tests:
a noisy machine changes them, so no test times anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "data_speed_cpu.json"
# Runs the given Python code and reports the process's peak memory (ru_maxrss is in KiB on Linux).
PEAK = "import resource, sys\n{code}\nprint('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
VALIDATE = ("from helpers.cli import main\ntry:\n    main(['validate-data', {path!r}, '--profile', 'tiny'])\n"
            "except SystemExit:\n    pass")
CLEAN = ("from helpers.config import make_config\nfrom helpers.data import clean_splits, read_dataset\n"
         "from helpers.model import load_tokenizer\ncfg = make_config('tiny')\n"
         "reports = read_dataset({path!r})\ncleaned, report = clean_splits(reports, load_tokenizer(cfg), "
         "cfg.train.max_length)\nprint('rows kept', len(cleaned['train']))")


def write_alpaca(path: Path, n: int, seed: int = 0) -> int:
    """n Alpaca-style records, written one at a time; returns the file's size in bytes."""
    words = (ROOT / "data" / "corpus.txt").read_text(encoding="utf-8").split()
    rng = random.Random(seed)
    sentence = lambda k: " ".join(rng.choices(words, k=k)).capitalize().rstrip(".,") + "."
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            record = {"instruction": sentence(rng.randint(5, 15)),
                      "input": sentence(rng.randint(5, 25)) if rng.random() < 0.4 else "",
                      "output": " ".join(sentence(rng.randint(6, 16)) for _ in range(rng.randint(1, 5)))}
            f.write(json.dumps(record) + "\n")
    return path.stat().st_size


def measure(code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK.format(code=code)], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_KIB")]
    if not peak:
        raise RuntimeError(proc.stderr[-2000:])
    return {"seconds": round(seconds, 2), "peak_mib": round(int(peak[0].split()[1]) / 1024)}


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    n = [r["records"] for r in results]
    for key, label in (("validate", "validate-data"), ("clean", "cleaning (01)")):
        left.plot(n, [r[key]["seconds"] for r in results], "o-", label=label)
        right.plot(n, [r[key]["peak_mib"] for r in results], "o-", label=label)
    left.axhline(10, color="tab:red", ls="--", lw=1, label="target at 50k: 10 s")
    right.axhline(1024, color="tab:red", ls="--", lw=1, label="target at 50k: 1 GiB")
    for ax, title, ticks in ((left, "wall time, process start to end (s)", [2, 5, 10, 20, 50, 100]),
                             (right, "peak memory (MiB)", [250, 500, 1000, 2000])):
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("records (Alpaca-style JSONL)")
        ax.set_yticks(ticks)
        ax.set_title(title), ax.grid(alpha=0.3, which="both"), ax.axvline(50_000, color="grey", lw=0.8)
        ax.legend(fontsize=8)
        ax.yaxis.set_major_formatter(ScalarFormatter()), ax.yaxis.set_minor_formatter(NullFormatter())
    fig.suptitle("Checking and cleaning a dataset on 2 CPU cores (tiny profile's tokenizer)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> int:
    from helpers.machine import cpu_summary

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000,50000,100000,500000")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON already at --out")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.out.read_text(encoding="utf-8"))["results"], args.out.with_suffix(".png"))
        return 0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"alpaca_{n}.jsonl"
            size = write_alpaca(path, n)
            row = {"records": n, "file_mib": round(size / 2**20, 1),
                   "validate": measure(VALIDATE.format(path=str(path))), "clean": measure(CLEAN.format(path=str(path)))}
            print(json.dumps(row), flush=True)
            results.append(row)
            path.unlink()
    import tokenizers
    import transformers

    record = {"date": date.today().isoformat(), "machine": cpu_summary(), "python": platform.python_version(),
              "transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
