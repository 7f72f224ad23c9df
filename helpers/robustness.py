"""How robust the tiny profile's lesson is: the course's fine-tune repeated with several seeds, every score kept,
and min / median / max against the targets. `python -m helpers robustness` (or `benchmarks/robustness.py`); the
README's robustness table comes from its JSON.

A lesson that works on 3 seeds of 5 is a broken lesson, so the claim "fine-tuning works" is measured over seeds,
not shown once. Each seed changes what `cfg.train.seed` changes: LoRA's random start, the order of the training
rows and the dropout masks. The base model is the shipped one, the same bits everywhere.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import date
from pathlib import Path

from .paths import REPO_ROOT

# What the tiny profile must reach on the shipped test split (unseen names), over 5 seeds.
TARGETS = {"exact_match": {"median": 0.80, "min": 0.60}, "name": {"median": 0.85}}
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "robustness_cpu.json"


def seed_scores(seed: int, folder: Path, max_steps: int = -1) -> dict:
    """Fine-tune with the tiny profile's defaults and this seed, then score the test split: one row of the table."""
    from .config import make_config
    from .data import load_splits
    from .evaluation import evaluate_answers
    from .inference import load_finetuned
    from .rundir import RunDir
    from .train import train_run

    cfg = make_config("tiny", run_name=f"seed-{seed}")
    cfg.train.seed = seed
    cfg.train.max_steps = max_steps
    run = RunDir(Path(folder) / f"seed-{seed}")
    cfg.save(run.config_file)
    start = time.time()
    summary = train_run(cfg, run)
    model, tokenizer = load_finetuned(cfg, run)
    scores, _ = evaluate_answers(model, tokenizer, list(load_splits(cfg, run)["test"]), cfg)
    return {"seed": seed, "exact_match": scores["exact_match"], **scores.get("field_accuracy", {}),
            "valid_format": scores.get("valid_format"),
            **{f"exact_match ({g})": s["exact_match"] for g, s in scores.get("by_group", {}).items()},
            "eval_loss_before": summary["eval_loss_before"], "eval_loss_after": summary["eval_loss_after"],
            "steps": summary["global_step"], "seconds": round(time.time() - start, 1)}


def spread(rows: list[dict]) -> dict[str, dict]:
    """min / median / max of every numeric score across the seeds."""
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and k not in ("seed", "steps")]
    return {k: {"min": min(r[k] for r in rows), "median": statistics.median(r[k] for r in rows),
                "max": max(r[k] for r in rows)} for k in keys}


def check_targets(stats: dict[str, dict]) -> list[str]:
    """The targets missed, as sentences; [] when every one is met."""
    return [f"{metric} {which} {stats[metric][which]:.2f} is below the target {goal:.2f}"
            for metric, goals in TARGETS.items() for which, goal in goals.items()
            if metric in stats and stats[metric][which] < goal]


def measure_robustness(seeds: list[int], out: Path = DEFAULT_OUT, work: Path | None = None,
                       max_steps: int = -1) -> dict:
    """Every seed's scores, their spread, the targets' verdict, machine and versions, written to `out` (JSON)."""
    import tempfile

    from .machine import cpu_summary, package_versions
    from .tiny import verify_tiny_model

    work = Path(work or tempfile.mkdtemp(prefix="robustness-"))
    manifest = verify_tiny_model()
    rows = []
    for seed in seeds:
        rows.append(seed_scores(seed, work, max_steps))
        r = rows[-1]
        print(f"seed {seed}: exact match {r['exact_match']:.2f}, name {r.get('name', float('nan')):.2f}, "
              f"city {r.get('city', float('nan')):.2f}, time {r.get('time', float('nan')):.2f} "
              f"({r['seconds']:.0f}s)", flush=True)
    stats = spread(rows)
    record = {"what": "the tiny profile's fine-tune (python -m helpers train defaults) with each seed, scored on the "
                      "shipped test split (names never seen in training)",
              "date": date.today().isoformat(), "seeds": seeds, "max_steps": max_steps,
              "base_model_sha256": manifest["files"]["model.safetensors"],
              "machine": cpu_summary(),
              "versions": package_versions(), "targets": TARGETS, "runs": rows, "spread": stats,
              "missed": check_targets(stats)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def spread_table(record: dict) -> str:
    """The spread as a Markdown table (what the README shows)."""
    lines = ["| score | min | median | max |", "|---|---|---|---|"]
    for k, s in record["spread"].items():
        lines.append(f"| {k} | {s['min']:.2f} | {s['median']:.2f} | {s['max']:.2f} |")
    return "\n".join(lines)
