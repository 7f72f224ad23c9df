"""How robust 06's GGUF check is on the tiny profile: the course's fine-tune with seeds 0-4, each exported at f16,
q8_0 and q4_k_m and compared with the Hugging Face model on the test prompts.

    python benchmarks/export_seeds.py [--seeds 0,1,2,3,4] [--quants f16,q8_0,q4_k_m] [--out FILE]

06 and tests/test_export.py assert, on one trained run, that the f16 file answers as the transformers model does on
at least 95% of the test prompts and q8_0 on at least 90%, and that every GGUF answer stops by itself. A check that
holds for one fine-tune may hold by luck: this script repeats it for every seed (LoRA's start, the row order and
the dropout masks change; the base model is the shipped one) and records, per seed and level, the agreement, the
exact match of both models, the stops, the prompt checks (template, tokens) and the causes of each disagreement,
then min / median / max. It exits 1 if a seed misses a threshold. Needs the `export` extra.

`--undertrained 2,10,30` repeats the comparison for fine-tunes of only that many steps (reported, not checked): a
model unsure of its answers shows what the agreement rate measures besides the export itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "results" / "export_seeds_cpu.json"
# What 06 and tests/test_export.py assert on the tiny profile (the thresholds); q4_k_m is reported only.
THRESHOLDS = {"f16": 0.95, "q8_0": 0.90}


def export_scores(seed: int, work: Path, quants: list[str], max_steps: int, limit: int | None) -> dict:
    """One seed: the fine-tune and its HF scores (helpers.robustness), then each level's comparison (helpers.export)."""
    from helpers.export import export_run
    from helpers.robustness import seed_scores
    from helpers.rundir import open_run

    row = seed_scores(seed, work, max_steps)
    cfg, run = open_run(work / f"seed-{seed}", profile="tiny")
    row["levels"] = {}
    for quant in quants:
        start = time.time()
        report = export_run(cfg, run, quant=quant, limit=limit, progress=False)
        causes = Counter(r["cause"].split(":")[0] for r in report["rows"] if "cause" in r)
        row["levels"][quant] = {
            "agreement": report["agreement"], "hf_exact_match": report["hf_exact_match"],
            "gguf_exact_match": report["gguf_exact_match"], "stopped": report["stopped"],
            "hf_stopped": report["hf_stopped"],
            "template_differs_on": len(report["template_differs_on"]),
            "tokens_differ_on": len(report["tokens_differ_on"]), "causes": dict(causes),
            "size_mb": report["size_mb"], "prompts": report["n"], "seconds": round(time.time() - start, 1)}
    return row


def level_spread(rows: list[dict], quant: str) -> dict:
    """min / median / max over the seeds of one level's agreement, exact matches and stops."""
    keys = ("agreement", "hf_exact_match", "gguf_exact_match", "stopped", "hf_stopped")
    return {k: {f: fn(r["levels"][quant][k] for r in rows)
                for f, fn in (("min", min), ("median", statistics.median), ("max", max))} for k in keys}


def missed(rows: list[dict], quants: list[str]) -> list[str]:
    """Every seed and level below its threshold, or with an answer that did not stop, as sentences."""
    out = []
    for r in rows:
        for quant in quants:
            level = r["levels"][quant]
            if quant in THRESHOLDS and level["agreement"] < THRESHOLDS[quant]:
                out.append(f"seed {r['seed']} {quant}: agreement {level['agreement']:.2f} is below "
                           f"{THRESHOLDS[quant]:.2f}")
            if level["stopped"] < 1:
                out.append(f"seed {r['seed']} {quant}: {1 - level['stopped']:.0%} of GGUF answers did not stop")
    return out


def measure(seeds: list[int], quants: list[str], max_steps: int, limit: int | None) -> list[dict]:
    """export_scores for every seed, each run in a temporary folder, a line printed per seed."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="export-seeds-") as work:
        for seed in seeds:
            runs.append(export_scores(seed, Path(work), quants, max_steps, limit))
            print(f"{runs[-1]['steps']} steps, seed {seed}: HF exact match {runs[-1]['exact_match']:.2f}; " +
                  "; ".join(f"{q} agreement {v['agreement']:.2f}, GGUF exact match {v['gguf_exact_match']:.2f}, "
                            f"stopped {v['stopped']:.0%} (HF {v['hf_stopped']:.0%})"
                            for q, v in runs[-1]["levels"].items()), flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--quants", default="f16,q8_0,q4_k_m")
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: the tiny profile's full fine-tune")
    parser.add_argument("--limit", type=int, help="only the first N test prompts (default: all)")
    parser.add_argument("--undertrained", default="2,10,30",
                        help="also fine-tunes of only these many steps, reported only ('' for none)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    quants = args.quants.split(",")

    from helpers.export import require_llama_cpp
    from helpers.machine import cpu_summary, package_versions
    from helpers.tiny import verify_tiny_model

    llama_cpp = require_llama_cpp()
    manifest = verify_tiny_model()
    rows = measure(seeds, quants, args.max_steps, args.limit)
    undertrained = [{"max_steps": steps, "runs": (runs := measure(seeds, quants, steps, args.limit)),
                     "spread": {q: level_spread(runs, q) for q in quants}}
                    for steps in [int(s) for s in args.undertrained.split(",") if s]]
    record = {"what": "the tiny fine-tune with each seed, exported to GGUF at each level and compared with the HF "
                      "model on the test prompts, greedily (helpers.export.export_run, as 06 and the export command)",
              "date": date.today().isoformat(), "seeds": seeds, "max_steps": args.max_steps, "limit": args.limit,
              "base_model_sha256": manifest["files"]["model.safetensors"], "machine": cpu_summary(),
              "versions": {**package_versions(), "llama_cpp_python": llama_cpp.__version__},
              "thresholds": THRESHOLDS, "runs": rows,
              "spread": {q: level_spread(rows, q) for q in quants}, "missed": missed(rows, quants),
              "undertrained": undertrained}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for quant, s in record["spread"].items():
        print(f"{quant}: agreement {s['agreement']['min']:.2f} / {s['agreement']['median']:.2f} / "
              f"{s['agreement']['max']:.2f} (min / median / max over {len(seeds)} seeds)")
    print("\n".join(record["missed"]) or "every seed meets 06's thresholds, and every GGUF answer stopped")
    return 1 if record["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
