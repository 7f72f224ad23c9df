"""Full fine-tuning vs LoRA vs QLoRA on the tiny model, over several seeds: notebook 07's four runs, repeated.

    python benchmarks/methods_compared.py [--seeds 0,1,2,3,4] [--out benchmarks/results/methods_cpu.json]

Each seed trains the four runs of 07_methods_compared (LoRA, QLoRA and full fine-tuning at the tiny profile's
learning rate, full fine-tuning at a quarter of it; two epochs each, the shipped data) with helpers.methods, and
records exact match, forgetting (the rise of the loss on 63 paragraphs of the pretraining corpus), the optimizer
state and the time. The JSON holds every run, min / median / max, the machine and the library versions; the README's
table comes from it. It exits 1 if the notebook's assertions would fail on any seed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "results" / "methods_cpu.json"


def main() -> int:
    import torch
    import transformers
    import trl

    from helpers.config import make_config
    from helpers.data import load_splits
    from helpers.methods import compare_methods, forgetting, knowledge_texts
    from helpers.rundir import RunDir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    lr = make_config("tiny").train.learning_rate
    runs = {"LoRA": ("lora", lr), "QLoRA": ("qlora", lr), "full, large lr": ("full", lr),
            "full, small lr": ("full", lr / 4)}
    rows, problems = [], []
    for seed in seeds:
        cfg = make_config("tiny")
        cfg.train.num_train_epochs, cfg.train.seed = 2.0, seed
        with tempfile.TemporaryDirectory() as tmp:
            splits = load_splits(cfg, RunDir(Path(tmp) / "data"))
            start = time.time()
            results = compare_methods(cfg, runs, tmp, splits, list(splits["test"]), knowledge_texts())
        for name, r in results.items():
            rows.append({"seed": seed, "run": name, "learning_rate": r["learning_rate"],
                         "exact_match": r["exact_match"], "forgetting": forgetting(r),
                         "knowledge_loss_before": r["knowledge_loss_before"],
                         "knowledge_loss_after": r["knowledge_loss_after"], "eval_loss_after": r["eval_loss_after"],
                         "optimizer_state_mib": r["optimizer_state_mib"], "train_seconds": r["train_seconds"]})
        f = {n: forgetting(r) for n, r in results.items()}
        if not f["full, large lr"] > 1.5 * f["LoRA"] + 0.2:
            problems.append(f"seed {seed}: the large rate forgot {f['full, large lr']:.2f}, LoRA {f['LoRA']:.2f}")
        if not f["full, small lr"] < 0.5 * f["full, large lr"] or results["LoRA"]["exact_match"] < 0.6:
            problems.append(f"seed {seed}: a notebook assertion fails")
        print(f"seed {seed} ({time.time() - start:.0f}s): " + ", ".join(
            f"{n} EM {r['exact_match']:.2f} forgot {f[n]:.2f}" for n, r in results.items()), flush=True)
    spread = {}
    for name in runs:
        mine = [r for r in rows if r["run"] == name]
        spread[name] = {k: {"min": min(r[k] for r in mine), "median": statistics.median(r[k] for r in mine),
                            "max": max(r[k] for r in mine)}
                        for k in ("exact_match", "forgetting", "optimizer_state_mib", "train_seconds")}
    record = {"date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "python": platform.python_version(), "torch": torch.__version__,
              "transformers": transformers.__version__, "trl": trl.__version__, "seeds": seeds,
              "runs": {n: {"method": m, "learning_rate": l} for n, (m, l) in runs.items()},
              "epochs": 2, "spread": spread, "rows": rows, "problems": problems}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for name, s in spread.items():
        print(f"{name:<16} exact match {s['exact_match']['min']:.2f}/{s['exact_match']['median']:.2f}/"
              f"{s['exact_match']['max']:.2f}  forgetting {s['forgetting']['min']:.2f}/{s['forgetting']['median']:.2f}/"
              f"{s['forgetting']['max']:.2f}  (min/median/max)")
    print(f"saved {args.out}")
    for p in problems:
        print("problem:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
