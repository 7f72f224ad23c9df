"""DPO after SFT on the tiny model, over several seeds: what notebook 08 asserts, and what too large a step does.

    python benchmarks/dpo_seeds.py [--seeds 0,1,2,3,4] [--variants] [--out benchmarks/results/dpo_cpu.json]

Each seed fine-tunes the tiny profile's SFT adapter (04) with that seed, then runs the DPO stage of 08 on the shipped
preference pairs (helpers.dpo.dpo_run, DPOSettings' defaults) and records, before and after DPO: TRL's reward
accuracy and margin on the 40 held-out pairs, how often the greedy answer is the chosen one (by group), and 05's
exact match on the SFT test split. With --variants, the same SFT adapter also goes through DPO with a learning rate
4x larger, without the SFT term, and with beta 10x larger and smaller. The JSON holds every run, min / median / max,
the machine and the library versions; the README's table comes from it. It exits 1 if 08's assertions would fail on
any seed.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "results" / "dpo_cpu.json"


def assertion_problems(summary: dict) -> list[str]:
    """What 08's assertions check on a DPO run's summary (the same margins)."""
    from helpers.dpo import dpo_lesson_holds

    return dpo_lesson_holds(summary["before"], summary["after"])


def flat(summary: dict) -> dict:
    b, a = summary["before"], summary["after"]
    out = {"seconds": summary["seconds"]}
    for when, m in (("before", b), ("after", a)):
        out[f"reward_accuracy_{when}"] = m["reward"]["rewards/accuracies"]
        out[f"margin_{when}"] = m["reward"]["rewards/margins"]
        out[f"chosen_no_time_{when}"] = m["chosen_rate"]["no time given"]["chosen"]
        out[f"chosen_time_{when}"] = m["chosen_rate"]["time given"]["chosen"]
        out[f"task_exact_match_{when}"] = m["task"]
    return out


def main() -> int:
    import torch
    import transformers
    import trl

    from helpers.config import make_config
    from helpers.dpo import DPOSettings, dpo_run
    from helpers.rundir import RunDir
    from helpers.train import ensure_adapter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--variants", action="store_true")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = DPOSettings()
    variants = {"default": base}
    if args.variants:
        variants |= {"lr x4": replace(base, learning_rate=base.learning_rate * 4),
                     "no SFT term": replace(base, sft_weight=0.0),
                     "beta x10": replace(base, beta=base.beta * 10), "beta /10": replace(base, beta=base.beta / 10)}
    rows, problems = [], []
    for seed in seeds:
        cfg = make_config("tiny")
        cfg.train.seed = seed
        with tempfile.TemporaryDirectory() as tmp:
            sft = RunDir(Path(tmp) / "sft")
            ensure_adapter(cfg, sft)
            for name, settings in variants.items():
                run = RunDir(Path(tmp) / name.replace(" ", "_").replace("/", "div"))
                shutil.copytree(sft.path, run.path)
                start = time.time()
                summary = dpo_run(cfg, run, settings)
                summary["seconds"] = time.time() - start
                row = {"seed": seed, "variant": name, **flat(summary)}
                rows.append(row)
                if name == "default":
                    problems += [f"seed {seed}: {p}" for p in assertion_problems(summary)]
                print(f"seed {seed} {name:<12} " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()
                                                           if isinstance(v, float)), flush=True)
    keys = [k for k in rows[0] if k not in ("seed", "variant")]
    spread = {name: {k: {"min": min(r[k] for r in rows if r["variant"] == name),
                         "median": statistics.median(r[k] for r in rows if r["variant"] == name),
                         "max": max(r[k] for r in rows if r["variant"] == name)} for k in keys}
              for name in variants}
    record = {"date": date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "python": platform.python_version(), "torch": torch.__version__,
              "transformers": transformers.__version__, "trl": trl.__version__, "seeds": seeds,
              "variants": {n: vars(s) for n, s in variants.items()}, "spread": spread, "rows": rows,
              "problems": problems}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for name, s in spread.items():
        print(f"{name:<12} " + "  ".join(f"{k} {v['min']:.2f}/{v['median']:.2f}/{v['max']:.2f}" for k, v in s.items()))
    print(f"saved {args.out}")
    for p in problems:
        print("problem:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
