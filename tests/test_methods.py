"""Full fine-tuning, LoRA and QLoRA (07_methods_compared, `python -m helpers train --method`): the config, what
each method trains, the forgetting measurement, and a fully fine-tuned run going through evaluate and chat."""

import io
import json
import subprocess
import sys

import pytest

from helpers.budget import T4_GIB, estimate_training_memory, fitting_changes
from helpers.config import ConfigError, RunConfig, check_method, make_config, method_name, use_method
from helpers.data import load_splits
from helpers.methods import (compare_methods, forgetting, knowledge_texts, method_trainer, snapshot_weights,
                             text_loss, weights_moved)
from helpers.rundir import RunDir


def test_use_method_sets_the_quantization_each_method_needs():
    cfg = make_config("tiny")
    assert (cfg.method, method_name(cfg)) == ("lora", "lora")
    assert use_method(cfg, "qlora").model.quantization == "4bit" and method_name(cfg) == "qlora"
    assert use_method(cfg, "full").model.quantization == "none" and method_name(cfg) == "full"
    assert use_method(cfg, "lora").model.quantization == "none"
    assert make_config("t4").method == "qlora" and make_config("ampere").method == "lora"
    with pytest.raises(ConfigError, match="one of lora, qlora, full"):
        cfg.method = "adapter"


def test_impossible_combinations_are_refused_with_the_fix():
    cfg = make_config("t4")
    cfg.method = "full"  # but the weights are still 4-bit
    with pytest.raises(ConfigError, match=r"cannot be updated: use use_method\(cfg, 'full'\)"):
        check_method(cfg)
    cfg = make_config("tiny")
    cfg.method = "qlora"
    with pytest.raises(ConfigError, match="LoRA on 4-bit weights"):
        check_method(cfg)


def test_a_config_saved_before_methods_existed_loads_with_the_method_it_was():
    old = make_config("t4").to_dict()
    del old["method"]
    assert RunConfig.from_dict(old).method == "qlora"
    old = make_config("tiny").to_dict()
    del old["method"]
    assert RunConfig.from_dict(old).method == "lora"


def test_full_fine_tuning_of_tinyllama_does_not_fit_a_t4_and_its_qlora_does():
    t4 = make_config("t4")
    full = estimate_training_memory(use_method(t4.copy(), "full"), on_gpu=True)
    qlora = estimate_training_memory(use_method(t4.copy(), "qlora"), on_gpu=True)
    assert full.total_gib > T4_GIB > 3 * qlora.total_gib
    assert full.parts["optimizer state"] == pytest.approx(2 * full.parts["weights"])  # AdamW: two per weight
    assert full.parts["optimizer state"] > 1000 * qlora.parts["optimizer state"] / 20  # adapters only vs all
    # the fitting advice never proposes 4-bit weights for a method that must update them
    changes = dict(fitting_changes(use_method(t4.copy(), "full"), 40.0, on_gpu=True))
    assert "model.quantization" not in changes


def _short(method: str, lr: float, steps: int = 4):
    cfg = use_method(make_config("tiny"), method)
    cfg.train.learning_rate, cfg.train.max_steps = lr, steps
    return cfg


def test_full_fine_tuning_moves_every_weight_and_lora_only_the_adapters(tmp_path):
    for method, moved_all in (("full", True), ("lora", False), ("qlora", False)):
        cfg = _short(method, 4e-3)
        run = RunDir(tmp_path / method)
        trainer = method_trainer(cfg, run, load_splits(cfg, run))
        before = snapshot_weights(trainer.model)
        lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
        trainer.train()
        moved = weights_moved(trainer.model, before)
        if moved_all:
            assert moved["base_tensors_changed"] == moved["base_tensors"] > 30 and moved["lora_tensors"] == 0
        else:
            assert moved["base_tensors_changed"] == 0 and moved["lora_tensors"] > 0, method
            after = dict(trainer.model.named_parameters())
            assert all(not after[n].detach().equal(w) for n, w in lora_before.items()), method


def test_the_forgetting_measurement_is_reproducible(tmp_path):
    from helpers.model import load_model_and_tokenizer

    texts = knowledge_texts()
    assert len(texts) == 63 and texts == knowledge_texts()
    model, tokenizer = load_model_and_tokenizer(make_config("tiny"))
    first, second = text_loss(model, tokenizer, texts), text_loss(model, tokenizer, texts, batch_size=5)
    assert first == pytest.approx(second, abs=1e-5)
    # the shipped base model knows its corpus well: far below a blind guess over its vocabulary (ln 2048 = 7.6)
    assert 0.2 < first < 0.6


def test_a_large_learning_rate_forgets_measurably_more_than_lora(tmp_path):
    cfg = make_config("tiny")
    cfg.train.num_train_epochs = 2.0
    splits = load_splits(cfg, RunDir(tmp_path / "data"))
    results = compare_methods(cfg, {"LoRA": ("lora", 4e-3), "full": ("full", 4e-3)}, tmp_path, splits,
                              list(splits["test"])[:20], knowledge_texts())
    lora, full = forgetting(results["LoRA"]), forgetting(results["full"])
    print(f"forgetting: LoRA {lora:.3f}, full at the same rate {full:.3f}")
    assert full > 1.5 * lora + 0.2  # the notebook's assertion; over 5 seeds the ratio was at least 2.5x
    assert results["LoRA"]["exact_match"] >= 0.6


def test_python_m_helpers_train_method_full_saves_the_whole_model_and_05_06_use_it(tmp_path):
    run_dir = tmp_path / "full"
    proc = subprocess.run([sys.executable, "-m", "helpers", "train", "--run-dir", str(run_dir), "--profile", "tiny",
                           "--method", "full", "--learning-rate", "1e-3", "--max-steps", "40"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "method full, learning rate 0.001" in proc.stdout and "whole model in" in proc.stdout
    run = RunDir(run_dir)
    cfg = RunConfig.load(run.config_file)
    assert (cfg.method, cfg.train.learning_rate) == ("full", 1e-3)
    assert (run.model_dir / "model.safetensors").exists() and not run.adapter_dir.exists()
    assert json.loads(run.train_summary_file.read_text())["method"] == "full"

    proc = subprocess.run([sys.executable, "-m", "helpers", "evaluate", "--run-dir", str(run_dir)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(run.metrics_file.read_text())
    assert metrics["finetuned"]["eval_loss"] < 0.5 * metrics["base"]["eval_loss"]  # the base was loaded apart

    from helpers.chat import terminal_chat
    from helpers.inference import merge_adapter

    out = io.StringIO()
    script = iter(["Extract the name, city and time from this message, one per line.\n\nMessage: Nils, Porto, 4pm",
                   "/quit"])
    assert terminal_chat(str(run_dir), input_fn=lambda _: next(script), out=out) == 0
    assert "fully fine-tuned" in out.getvalue() and "4pm" in out.getvalue().split("model> ")[1]
    with pytest.raises(ValueError, match="no adapter to merge"):
        merge_adapter(cfg, run)


def test_4bit_layers_on_a_cpu_are_not_repacked_for_inference():
    """bitsandbytes repacks a 4-bit weight for CPU inference at the first no-grad forward, after which training
    computes wrong gradients; load_base_model turns that off (helpers.model.keep_cpu_4bit_trainable)."""
    import bitsandbytes as bnb
    import torch

    from helpers.model import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(use_method(make_config("tiny"), "qlora"))
    model.eval()
    with torch.no_grad():
        model(**tokenizer("name: Nils", return_tensors="pt"))
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)


@pytest.mark.slow
def test_notebooks_05_and_06_run_on_a_fully_fine_tuned_run(tmp_path):
    import nbformat

    from helpers.course import execute_notebook
    from helpers.paths import NOTEBOOKS_DIR

    run_dir = tmp_path / "full"
    proc = subprocess.run([sys.executable, "-m", "helpers", "train", "--run-dir", str(run_dir), "--profile", "tiny",
                           "--method", "full", "--learning-rate", "1e-3"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("05_evaluation", "06_inference"):
        out = tmp_path / f"{name}.ipynb"
        execute_notebook(NOTEBOOKS_DIR / f"{name}.ipynb", out, {"COURSE_RUN_DIR": str(run_dir), "COURSE_PROFILE": "tiny"},
                         timeout=900)
        text = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", []))
        assert "No trained" not in text, f"{name} trained again instead of using the saved model"
    assert "The lesson held" in (tmp_path / "05_evaluation.ipynb").read_text()  # 05's own assertions passed
    assert "every weight fine-tuned" in text and "largest logit difference: 0.00e+00" in text  # 06: nothing merged
    assert not RunDir(run_dir).merged_dir.exists() and not RunDir(run_dir).adapter_dir.exists()
