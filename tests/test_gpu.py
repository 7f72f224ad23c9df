"""The real GPU path: 4-bit NF4 QLoRA with fp16 compute at the t4 profile's defaults, on a TinyLlama-shaped model.

Skipped without CUDA. No download: the model has TinyLlama-1.1B's exact shape (22 layers, hidden 2048, 32k
vocabulary) with random weights, saved locally with the tiny tokenizer and loaded through the same
`from_pretrained` code as a Hub model. Every test runs under a T4's memory (`set_per_process_memory_fraction`), so
passing here means the defaults fit a free Colab T4. Set COURSE_GPU_REPORT=path.json to keep the measured figures.
"""

import json
import os
import time

import pytest
import torch

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from helpers.budget import T4_GIB, estimate_training_memory, measured_matmul_flops, rough_training_seconds  # noqa: E402
from helpers.config import make_config  # noqa: E402
from helpers.model import MODEL_CHOICES  # noqa: E402

TINYLLAMA = MODEL_CHOICES["TinyLlama/TinyLlama-1.1B-Chat-v1.0"].shape
REPORT: dict = {}


@pytest.fixture(scope="module", autouse=True)
def t4_memory_cap():
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(T4_GIB * 2**30 / total)
    yield
    torch.cuda.set_per_process_memory_fraction(1.0)
    if os.environ.get("COURSE_GPU_REPORT"):
        from helpers.machine import package_versions

        REPORT.update(device=torch.cuda.get_device_name(0), cap_gib=T4_GIB, versions=package_versions())
        with open(os.environ["COURSE_GPU_REPORT"], "w") as f:
            json.dump(REPORT, f, indent=2)


@pytest.fixture(scope="module")
def tinyllama_dir(tmp_path_factory):
    from helpers.tiny import build_shaped_model

    return build_shaped_model(TINYLLAMA, tmp_path_factory.mktemp("tinyllama"), device="cuda")


def t4_config(model_dir):
    cfg = make_config("t4")
    cfg.model.model_id = str(model_dir)
    return cfg


def test_t4_defaults_train_4bit_qlora_in_fp16_under_a_t4_cap(tinyllama_dir, tmp_path):
    from helpers.rundir import RunDir
    from helpers.train import train_run

    cfg = t4_config(tinyllama_dir)
    cfg.train.max_steps, cfg.train.eval_steps, cfg.train.learning_rate = 40, 20, 1e-3
    assert (cfg.model.quantization, cfg.model.dtype, cfg.train.gradient_checkpointing) == ("4bit", "float16", True)
    run = RunDir(tmp_path / "run")
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    summary = train_run(cfg, run)
    wall = time.perf_counter() - start
    assert summary["global_step"] == 40
    assert summary["eval_loss_after"] < summary["eval_loss_before"]  # random weights, but the format is learnable
    assert (run.adapter_dir / "adapter_model.safetensors").exists()
    peak = torch.cuda.max_memory_allocated() / 2**30
    assert peak < T4_GIB
    REPORT["meetings_run"] = {"steps": 40, "batch": cfg.train.per_device_train_batch_size,
                              "train_runtime_s": round(summary["train_runtime_s"], 1), "wall_s": round(wall, 1),
                              "peak_allocated_gib": round(peak, 2)}


def test_4bit_weights_take_about_a_quarter_of_fp16(tinyllama_dir):
    from helpers.model import load_base_model

    model = load_base_model(t4_config(tinyllama_dir))
    assert getattr(model, "is_loaded_in_4bit", False)
    fp16_bytes = TINYLLAMA.parameters * 2
    assert model.get_memory_footprint() < 0.4 * fp16_bytes  # linear layers at 4 bits; embeddings stay fp16
    REPORT["weights_gib"] = {"4bit": round(model.get_memory_footprint() / 2**30, 2),
                             "fp16": round(fp16_bytes / 2**30, 2)}


@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointing", "no-checkpointing"])
def test_memory_estimate_against_the_measured_peak(tinyllama_dir, checkpointing):
    """Full-length batches (8 x 512 tokens, the worst case the t4 defaults allow): the estimate is a slight
    over-estimate, never an under-estimate that would let a run crash."""
    from helpers.budget import measure_training_peak

    cfg = t4_config(tinyllama_dir)
    cfg.train.gradient_checkpointing = checkpointing
    estimate = estimate_training_memory(cfg, TINYLLAMA, on_gpu=True)
    if not checkpointing:  # the no-checkpointing case needs more than a T4 has: measure it without the cap
        torch.cuda.set_per_process_memory_fraction(1.0)
    try:
        measured = measure_training_peak(cfg, seq_len=cfg.train.max_length)["peak_gib"]
    finally:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(T4_GIB * 2**30 / total)
    REPORT[f"full_length_{'checkpointing' if checkpointing else 'no_checkpointing'}"] = {
        "estimate_gib": round(estimate.tensors_gib, 2), "measured_peak_gib": round(measured, 2),
        "parts_gib": {k: round(v, 2) for k, v in estimate.parts.items()}}
    assert measured <= estimate.tensors_gib <= 1.3 * measured
    if checkpointing:
        assert estimate.total_gib < T4_GIB and measured < T4_GIB


def test_merge_estimate_against_the_measured_peak(tinyllama_dir, tmp_path):
    """06's merge on t4 (section 5): the 4-bit adapter model still loaded, the fp16 base loaded again, merged and
    saved, the merged model reloaded for the check. The estimate, less its CUDA overhead (which the allocator does
    not count), is within 20% of the measured peak, and the whole fits a T4."""
    from helpers.budget import estimate_merge_memory, measure_merge_peak
    from helpers.rundir import RunDir
    from helpers.tiny import build_shaped_adapter

    cfg, run = t4_config(tinyllama_dir), RunDir(tmp_path / "run")
    build_shaped_adapter(cfg, run.adapter_dir)
    measured = measure_merge_peak(cfg, run)
    estimate = estimate_merge_memory(cfg, TINYLLAMA, on_gpu=True)
    tensors = estimate["total_gib"] - estimate["parts"]["CUDA overhead"]
    REPORT["merge"] = {"estimate_gib": round(tensors, 2), "measured_peak_gib": round(measured["peak_gib"], 2),
                       "parts_gib": {k: round(v, 2) for k, v in estimate["parts"].items()},
                       "written_gb": round(measured["written_gb"], 2),
                       "merge_and_save_s": round(measured["merge_and_save_s"], 1)}
    assert 0.8 * measured["peak_gib"] <= tensors <= 1.2 * measured["peak_gib"], REPORT["merge"]
    assert measured["peak_gib"] + estimate["parts"]["CUDA overhead"] < T4_GIB
    assert abs(measured["written_gb"] - estimate["written_gb"]) < 0.03 * estimate["written_gb"]


def test_rough_time_is_within_2x_of_a_measured_run(tinyllama_dir):
    """The panel's rough time, checked against the 40-step run above."""
    run = REPORT.get("meetings_run")
    if run is None:
        pytest.skip("needs the training test's timing")
    from helpers.data import token_lengths
    from helpers.model import load_tokenizer

    cfg = t4_config(tinyllama_dir)
    rows = [json.loads(line) for line in open("data/meetings/train.jsonl", encoding="utf-8")]
    mean_tokens = sum(token_lengths(rows, load_tokenizer(cfg))) / len(rows)
    tokens = int(run["steps"] * run["batch"] * cfg.train.gradient_accumulation_steps * mean_tokens)
    guess = rough_training_seconds(TINYLLAMA, cfg, tokens, run["steps"], measured_matmul_flops(), on_gpu=True)
    REPORT["rough_time"] = {"guess_s": round(guess, 1), "measured_s": run["train_runtime_s"]}
    assert run["train_runtime_s"] / 2 <= guess <= 2 * run["train_runtime_s"]


def test_a_real_out_of_memory_error_is_explained(tinyllama_dir, tmp_path):
    """Batch 16 x 512 without gradient checkpointing needs about 27 GiB: under the T4 cap it runs out of memory, and
    the learner gets the changes that would fit instead of a CUDA traceback."""
    from datasets import Dataset

    from helpers.budget import _full_length_rows
    from helpers.lora import apply_lora
    from helpers.model import load_model_and_tokenizer
    from helpers.rundir import RunDir
    from helpers.train import TrainingError, make_trainer, train_with_guidance

    cfg = t4_config(tinyllama_dir)
    cfg.train.gradient_checkpointing, cfg.train.per_device_train_batch_size = False, 16
    model, tokenizer = load_model_and_tokenizer(cfg)
    model = apply_lora(model, cfg)
    rows = _full_length_rows(tokenizer, cfg.train.max_length, 32)
    splits = {"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows[:2])}
    trainer = make_trainer(cfg, RunDir(tmp_path / "run"), model, tokenizer, splits, max_steps=2,
                           eval_strategy="no", save_strategy="no")
    with pytest.raises(TrainingError, match="gradient_checkpointing = True") as info:
        train_with_guidance(trainer, cfg)
    assert info.value.__cause__ is None and "per_device_train_batch_size = 8" in str(info.value)
    REPORT["out_of_memory_message"] = str(info.value)
