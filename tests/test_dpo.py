"""Preference tuning (`helpers.dpo`, `python -m helpers dpo`): the memory estimate, the refusals, and DPO on the tiny
profile raising the held-out reward accuracy with margin, after a kill and a resume (benchmarks/dpo_seeds.py measures
the same over five seeds: reward accuracy 0.97-1.00 after DPO)."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import kill_when_written

from helpers.budget import estimate_dpo_memory, estimate_training_memory
from helpers.config import make_config
from helpers.dpo import DPOSettings, dpo_lesson_holds, dpo_settings, dpo_stage, require_adapter_run
from helpers.rundir import RunDir


def test_dpo_memory_doubles_the_activations_and_holds_the_reference_adapter():
    cfg = make_config("t4")
    sft, dpo = estimate_training_memory(cfg, on_gpu=True), estimate_dpo_memory(cfg, on_gpu=True)
    assert dpo.parts["activations"] == pytest.approx(2 * sft.parts["activations"])
    assert dpo.parts["weights"] == sft.parts["weights"]  # the base weights are held once
    assert dpo.parts["reference adapter"] == pytest.approx(sft.lora_parameters * 4 / 2**30)
    assert dpo.batch_size == sft.batch_size and dpo.total_gib > sft.total_gib


def test_settings_per_profile_and_a_full_run_refused(tmp_path):
    assert dpo_settings(make_config("tiny")) == DPOSettings()
    assert dpo_settings(make_config("t4")).learning_rate == 5e-6
    cfg = make_config("tiny")
    cfg.method = "full"
    with pytest.raises(ValueError, match="fully fine-tuned.*--method lora"):
        require_adapter_run(cfg, RunDir(tmp_path))


def test_the_dpo_command_refuses_sft_data_in_one_line(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run.path, run)
    proc = subprocess.run([sys.executable, "-m", "helpers", "dpo", "--run-dir", str(run), "--data", "data/meetings"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "not preference pairs" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_sft_training_refuses_preference_data_in_one_line(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.config_file.write_text('{"profile": "tiny", "data": {"dataset": "data/preferences"}}')
    proc = subprocess.run([sys.executable, "-m", "helpers", "train", "--run-dir", str(run.path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "preference pair" in proc.stderr and "notebook 08" in proc.stderr


def test_dpo_killed_then_resumed_raises_the_held_out_reward_accuracy(trained_run, tmp_path):
    """SIGKILL after the first checkpoint, then the same command: it resumes, ends at the same step, and the lesson
    holds with 08's margins (reward accuracy >= 0.8, the chosen reply where no time is given, 05's score kept)."""
    run = RunDir(tmp_path / "run")
    shutil.copytree(trained_run.path, run.path)
    stage = dpo_stage(run)
    cmd = [sys.executable, "-m", "helpers", "dpo", "--run-dir", str(run.path), "--save-steps", "50"]
    kill_when_written(cmd, stage.checkpoints_dir / "checkpoint-100" / "trainer_state.json")
    assert not (stage.path / "dpo_summary.json").exists()

    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((stage.path / "dpo_summary.json").read_text())
    assert summary["global_step"] == 250 and summary["resumed_from_step"] in (100, 150) and "resuming from" in again.stdout
    assert summary["before"]["reward"]["rewards/accuracies"] == 0.0   # the policy starts as its own reference
    problems = dpo_lesson_holds(summary["before"], summary["after"])
    assert not problems, problems
    assert (stage.adapter_dir / "adapter_model.safetensors").exists()
    assert not (stage.adapter_dir / "ref").exists()   # TRL's frozen reference copy is not saved with the result
    print(again.stdout[-1500:])
