import pytest

from helpers import machine
from helpers.config import ConfigError, make_config
from helpers.machine import GpuInfo


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "t4")
    assert machine.detect_profile() == "t4"
    monkeypatch.setenv("COURSE_PROFILE", "T4 please")
    with pytest.raises(ConfigError, match="tiny, t4, ampere"):
        machine.detect_profile()


@pytest.mark.parametrize("capability, profile", [(None, "tiny"), ((7, 5), "t4"), ((8, 0), "ampere"), ((9, 0), "ampere")])
def test_profile_from_compute_capability(monkeypatch, capability, profile):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    gpu = None if capability is None else GpuInfo("test GPU", capability, 16.0)
    monkeypatch.setattr(machine, "gpu_info", lambda: gpu)
    assert machine.detect_profile() == profile


def test_t4_has_no_native_bf16():
    assert not GpuInfo("Tesla T4", (7, 5), 15.0).supports_bf16
    assert GpuInfo("A100", (8, 0), 40.0).supports_bf16


def test_cpu_training_never_asks_for_bf16():
    import torch

    from helpers.train import precision_flags

    if torch.cuda.is_available():
        pytest.skip("checks the CPU path")
    assert precision_flags(make_config("tiny")) == {"use_cpu": True, "bf16": False, "fp16": False}


def test_token_is_read_from_environment_and_report_never_contains_it(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    assert machine.hf_token() == "hf_secret_value_123"
    report = machine.machine_report()
    assert report["hf_token_available"] is True
    assert "hf_secret_value_123" not in repr(report)


def test_check_command_runs(capsys):
    from helpers.cli import main

    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "profile" in out and "transformers" in out
