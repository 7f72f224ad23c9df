"""The memory estimate and the widgets built on it: shapes from configs, LoRA counts, verdicts, fixes, and the
estimate against the peak memory training really takes (on the CPU here; on a GPU in test_gpu.py)."""

import json
import subprocess
import sys

import pytest

from helpers.budget import (ModelShape, estimate_training_memory, fitting_changes, full_logits_gib, lora_parameters,
                            memory_verdict, model_shape, training_plan)
from helpers.config import ConfigError, make_config
from helpers.model import MODEL_CHOICES

PUBLISHED_SIZES = {  # parameters, from each model's card
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": 1.100e9, "Qwen/Qwen2.5-0.5B-Instruct": 0.494e9,
    "Qwen/Qwen2.5-1.5B-Instruct": 1.54e9, "HuggingFaceTB/SmolLM2-360M-Instruct": 0.362e9,
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": 1.71e9, "meta-llama/Llama-3.2-1B-Instruct": 1.236e9,
    "microsoft/Phi-3-mini-4k-instruct": 3.82e9,
}


@pytest.mark.parametrize("model_id", PUBLISHED_SIZES)
def test_recorded_shapes_give_the_published_sizes(model_id):
    assert model_shape(model_id).parameters == pytest.approx(PUBLISHED_SIZES[model_id], rel=0.01)


def test_tiny_shape_matches_the_real_model_and_peft_counts():
    from helpers.lora import apply_lora, trainable_report
    from helpers.model import load_model_and_tokenizer

    cfg = make_config("tiny")
    shape = model_shape("tiny")  # read from the built model's config.json
    for targets in ("all-linear", "attention", "q_proj,v_proj"):
        cfg.lora.target_modules = targets
        model, _ = load_model_and_tokenizer(cfg)
        assert shape.parameters == sum(p.numel() for p in model.parameters())
        report = trainable_report(apply_lora(model, cfg))
        assert lora_parameters(shape, cfg.lora.r, targets) == report["trainable"], targets


def test_checkpointing_and_4bit_shrink_the_parts_they_should():
    cfg = make_config("t4")
    shape = model_shape(cfg.model.model_id)
    base = estimate_training_memory(cfg, shape, on_gpu=True)
    cfg.train.gradient_checkpointing = False
    no_ckpt = estimate_training_memory(cfg, shape, on_gpu=True)
    assert no_ckpt.parts["activations"] > 5 * base.parts["activations"]
    assert no_ckpt.parts["weights"] == base.parts["weights"]
    cfg.model.quantization = "none"
    fp16 = estimate_training_memory(cfg, shape, on_gpu=True)
    assert fp16.parts["weights"] > 2 * base.parts["weights"]
    assert estimate_training_memory(cfg, shape, on_gpu=False).parts.get("CUDA overhead") is None


def test_full_logits_dominate_for_a_large_vocabulary():
    """The lesson behind TRL's chunked LM head: for Qwen2.5-0.5B the whole logits would outweigh the model."""
    cfg = make_config("t4")
    cfg.model.model_id = "Qwen/Qwen2.5-0.5B-Instruct"
    shape = model_shape(cfg.model.model_id)
    estimate = estimate_training_memory(cfg, shape, on_gpu=True)
    full = full_logits_gib(shape, 8 * 512, 2)
    assert full > 3 * estimate.parts["weights"] and full > 10 * estimate.parts["logits"]


def test_verdict_and_the_changes_that_make_it_fit():
    cfg = make_config("t4")
    cfg.model.model_id = "microsoft/Phi-3-mini-4k-instruct"
    cfg.model.quantization, cfg.train.gradient_checkpointing = "none", False
    cfg.train.per_device_train_batch_size, cfg.train.max_length = 16, 1024
    shape = model_shape(cfg.model.model_id)
    estimate = estimate_training_memory(cfg, shape, on_gpu=True)
    verdict = memory_verdict(estimate, 14.6, "T4", cfg, shape)
    assert verdict.startswith("Does not fit") and "cfg.train.gradient_checkpointing = True" in verdict
    changes = dict(fitting_changes(cfg, 14.6, shape, on_gpu=True))
    for name, value in changes.items():
        section, field = name.split(".")
        setattr(getattr(cfg, section), field, value)
    assert estimate_training_memory(cfg, shape, on_gpu=True).total_gib <= 0.9 * 14.6
    assert memory_verdict(estimate_training_memory(cfg, shape, on_gpu=True), 14.6, "T4").startswith(("Fits", "Tight"))


def test_a_model_too_big_for_any_setting_says_pick_a_smaller_one():
    cfg = make_config("t4")
    huge = ModelShape(8192, 28672, 80, 64, 8, 128256, False)  # a 70B Llama
    with pytest.raises(ValueError, match="smaller model"):
        fitting_changes(cfg, 14.6, huge, on_gpu=True)


def test_training_plan_counts_steps_like_the_trainer():
    cfg = make_config("tiny")  # batch 8, 5 epochs; the trainer runs 270 steps on 432 rows
    plan = training_plan(cfg, n_train=432, mean_tokens=66, matmul_flops=1e10)
    assert (plan["effective_batch"], plan["steps_per_epoch"], plan["steps"]) == (8, 54, 270)
    cfg.train.max_steps = 40
    assert training_plan(cfg, 432, 66, matmul_flops=1e10)["steps"] == 40


MEASURE = """
import json, sys
from helpers.budget import estimate_training_memory, measure_training_peak
from helpers.config import make_config
cfg = make_config("tiny")
cfg.train.per_device_train_batch_size = int(sys.argv[1])
estimate = estimate_training_memory(cfg, seq_len=256)
print(json.dumps({"estimate": estimate.total_gib, "measured": measure_training_peak(cfg, 256)["peak_gib"]}))
"""


def test_estimate_against_measured_peak_on_cpu():
    """On the CPU the process's peak resident memory also holds the allocator's cached blocks and autograd's
    gradient buffers, which the GPU's allocated-memory figure does not: it reads 2-3x the tensors the estimate
    counts. So here: the estimate grows with the batch as the measurement does, and stays within that factor."""
    results = {}
    for batch in (8, 32):  # a fresh process each: the peak of one must not hide the other's
        proc = subprocess.run([sys.executable, "-c", MEASURE, str(batch)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[batch] = json.loads(proc.stdout.strip().splitlines()[-1])
    for r in results.values():
        assert r["measured"] / 3.5 <= r["estimate"] <= r["measured"], results
    grew = results[32]["measured"] - results[8]["measured"]
    assert grew / 3.5 <= results[32]["estimate"] - results[8]["estimate"] <= grew, results


def test_panel_rejects_impossible_settings_and_applies_good_ones():
    from helpers.widgets import apply_panel, hyperparameter_panel

    cfg = make_config("tiny")
    panel = hyperparameter_panel(cfg, n_train=432, mean_tokens=66)
    widgets = {w.description: w for w in panel.children if hasattr(w, "description")}
    assert "270" in panel.children[-1].value and "Memory" in panel.children[-1].value
    widgets["batch size"].value, widgets["grad. accumulation"].value = 64, 16
    assert "Not possible" in panel.children[-1].value
    with pytest.raises(ConfigError, match="effective batch"):
        apply_panel(cfg, panel, n_train=432)
    assert cfg.train.per_device_train_batch_size == 8  # nothing applied
    widgets["batch size"].value, widgets["grad. accumulation"].value = 4, 2
    widgets["LoRA targets"].value = "attention"
    changed = apply_panel(cfg, panel, n_train=432)
    assert changed == {"train.per_device_train_batch_size": (8, 4), "train.gradient_accumulation_steps": (1, 2),
                       "lora.target_modules": ("all-linear", "attention")}


def test_panel_ignores_the_float_noise_a_browser_sends_back():
    from helpers.widgets import apply_panel, hyperparameter_panel

    cfg = make_config("tiny")
    panel = hyperparameter_panel(cfg, n_train=432, mean_tokens=66)
    widgets = {w.description: w for w in panel.children if hasattr(w, "description")}
    # what JupyterLab sent back for an untouched panel (the log slider's grid misses 4e-3; 5.0 came back noisy)
    widgets["learning rate"].value, widgets["epochs"].value = 0.003981071705534973, 5.000000000000001
    widgets["LoRA dropout"].value = cfg.lora.dropout + 1e-12
    assert apply_panel(cfg, panel, n_train=432) == {}
    assert "270" in panel.children[-1].value  # 5 epochs, not 6
    widgets["learning rate"].value, widgets["epochs"].value = 0.0010000000000000002, 2.5000000000000004
    assert apply_panel(cfg, panel, n_train=432) == {"train.learning_rate": (0.004, 0.001),
                                                    "train.num_train_epochs": (5.0, 2.5)}


def test_model_picker_offers_the_catalogue_and_checks_a_typed_id():
    from helpers.widgets import ANY_HUB_ID, apply_model_picker, model_picker

    cfg = make_config("tiny")
    picker = model_picker(cfg)
    dropdown, other, info = picker.children
    assert set(MODEL_CHOICES) <= {v for _, v in dropdown.options}
    assert "Fits" in info.value
    dropdown.value = "meta-llama/Llama-3.2-1B-Instruct"
    assert "gated" in info.value and "T4" in info.value
    dropdown.value = ANY_HUB_ID
    with pytest.raises(ConfigError, match="empty"):
        apply_model_picker(cfg, picker)
    other.value = "not a model id"
    with pytest.raises(ConfigError, match="owner/name"):
        apply_model_picker(cfg, picker)
    other.value = "Qwen/Qwen2.5-0.5B-Instruct"
    assert apply_model_picker(cfg, picker) == cfg.model.model_id == "Qwen/Qwen2.5-0.5B-Instruct"


def test_the_merge_estimate_counts_every_copy_06_holds_at_once():
    """06's merge on t4: the 4-bit adapter model, the fp16 base it merges into and the reloaded merged model."""
    from helpers.budget import estimate_merge_memory, model_shape
    from helpers.config import make_config

    cfg = make_config("t4")
    est = estimate_merge_memory(cfg, on_gpu=True)
    fp16_copy = model_shape(cfg.model.model_id).parameters * 2 / 2**30
    assert est["parts"]["base, unquantized, merged"] == est["parts"]["merged model reloaded (the check)"] == fp16_copy
    assert 0.6 < est["parts"]["adapter model (sections 1-4)"] < fp16_copy / 1.5, "4-bit linear layers"
    assert 5.0 < est["total_gib"] < 6.5 and 2.1 < est["written_gb"] < 2.3   # TinyLlama: 1.1B parameters in fp16


def test_the_merge_writes_what_the_estimate_says(tmp_path):
    """06's merge, run by measure_merge_peak on the tiny model: the merged folder holds the weights the estimate
    counts (the t4 figures are checked in tests/test_gpu.py), and the merged model answers as base + adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from helpers.budget import estimate_merge_memory, measure_merge_peak
    from helpers.config import make_config
    from helpers.model import load_model_and_tokenizer
    from helpers.rundir import RunDir
    from helpers.tiny import build_shaped_adapter

    cfg, run = make_config("tiny"), RunDir(tmp_path / "run")
    adapter_dir = build_shaped_adapter(cfg, run.adapter_dir)
    measured = measure_merge_peak(cfg, run)
    estimate = estimate_merge_memory(cfg, on_gpu=False)
    assert measured["device"] == "cpu" and measured["peak_gib"] >= 0
    assert abs(measured["written_gb"] - estimate["written_gb"]) < 0.03 * estimate["written_gb"], measured
    model, tokenizer = load_model_and_tokenizer(cfg)
    adapted = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    merged = AutoModelForCausalLM.from_pretrained(run.merged_dir).eval()
    ids = tokenizer("Hi, this is Nils.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert (adapted(ids).logits - merged(ids).logits).abs().max() < 1e-4
        with adapted.disable_adapter():   # the random B matrices did change the model
            assert (adapted(ids).logits - merged(ids).logits).abs().max() > 1e-3
