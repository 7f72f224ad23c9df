"""Compare the course's memory estimate (helpers.budget) with the peak memory training really uses.

    python benchmarks/memory_estimate.py [--out results.json]

On a CUDA GPU it builds a TinyLlama-shaped model from its config (random weights, no download: 22 layers, hidden
2048, 32k vocabulary), saves it once, and for each configuration below trains two steps on full-length examples
in a fresh process, reading torch.cuda.max_memory_allocated. Without a GPU it does the same with the tiny model and
the process's peak resident memory (which also counts the allocator's slack, so it reads higher).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (quantization, dtype, batch, seq_len, gradient checkpointing)
GPU_CASES = {
    "t4 defaults: 4-bit, fp16, batch 8 x 512, checkpointing": ("4bit", "float16", 8, 512, True),
    "4-bit, fp16, batch 8 x 512, no checkpointing": ("4bit", "float16", 8, 512, False),
    "4-bit, fp16, batch 4 x 256, checkpointing": ("4bit", "float16", 4, 256, True),
    "fp16 weights, batch 8 x 512, checkpointing": ("none", "float16", 8, 512, True),
    "fp16 weights, batch 2 x 1024, no checkpointing": ("none", "float16", 2, 1024, False),
}
CPU_CASES = {
    "tiny, fp32, batch 8 x 256": ("none", "float32", 8, 256, False),
    "tiny, fp32, batch 32 x 256": ("none", "float32", 32, 256, False),
    "tiny, fp32, batch 32 x 256, checkpointing": ("none", "float32", 32, 256, True),
}


def measure_one(model_id: str, case: tuple) -> dict:
    from helpers.budget import estimate_training_memory, measure_training_peak
    from helpers.config import make_config

    quantization, dtype, batch, seq_len, checkpointing = case
    cfg = make_config("t4" if dtype != "float32" else "tiny")
    cfg.model.model_id, cfg.model.quantization, cfg.model.dtype = model_id, quantization, dtype
    cfg.train.per_device_train_batch_size, cfg.train.gradient_checkpointing = batch, checkpointing
    estimate = estimate_training_memory(cfg, seq_len=seq_len)
    measured = measure_training_peak(cfg, seq_len)
    return {"estimate_gib": round(estimate.tensors_gib, 3), "measured_gib": round(measured["peak_gib"], 3),
            "ratio": round(estimate.tensors_gib / measured["peak_gib"], 3),
            "parts_gib": {k: round(v, 3) for k, v in estimate.parts.items()}, "device": measured["device"]}


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: model_id, case name
    args = parser.parse_args()
    on_gpu = torch.cuda.is_available()
    cases = GPU_CASES if on_gpu else CPU_CASES
    if args.one:
        print("RESULT " + json.dumps(measure_one(args.one[0], cases[args.one[1]])))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model_id = "tiny"
        if on_gpu:
            from helpers.model import MODEL_CHOICES
            from helpers.tiny import build_shaped_model

            model_id = str(Path(tmp) / "tinyllama-shape")
            build_shaped_model(MODEL_CHOICES["TinyLlama/TinyLlama-1.1B-Chat-v1.0"].shape, Path(model_id), "cuda")
        results = {}
        for name in cases:  # a fresh process each, so that one case's memory cannot inflate the next one's peak
            proc = subprocess.run([sys.executable, __file__, "--one", model_id, name], capture_output=True, text=True)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            results[name] = json.loads(line[7:]) if line else {"error": proc.stderr[-2000:]}
            print(f"{name:<55} {results[name]}", flush=True)
    from helpers.machine import package_versions, gpu_info

    gpu = gpu_info()
    report = {"device": gpu.name if gpu else "cpu", "versions": package_versions(), "results": results}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
