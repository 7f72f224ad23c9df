import json

import pytest

from helpers.config import PROFILES, ConfigError, RunConfig, make_config


@pytest.mark.parametrize("profile", PROFILES)
def test_presets_roundtrip_through_json(tmp_path, profile):
    cfg = make_config(profile)
    path = cfg.save(tmp_path / "config.json")
    assert RunConfig.load(path) == cfg


def test_t4_preset_never_uses_bf16():
    cfg = make_config("t4")
    assert cfg.model.dtype == "float16" and cfg.model.quantization == "4bit"


@pytest.mark.parametrize("section, name, value, hint", [
    ("train", "learning_rate", 5, "below 1"),
    ("train", "learning_rate", "fast", "below 1"),
    ("lora", "r", 0, "from 1 to 1024"),
    ("train", "lr_scheduler_type", "fast", "'cosine'"),
    ("model", "quantization", "4-bit", "'4bit'"),
    ("model", "dtype", "fp16", "'float16'"),
    ("train", "max_steps", 0, "-1"),
])
def test_invalid_values_fail_when_set_and_say_what_is_allowed(section, name, value, hint):
    cfg = make_config("tiny")
    with pytest.raises(ConfigError, match=name) as e:
        setattr(getattr(cfg, section), name, value)
    assert hint in str(e.value)


def test_unknown_setting_lists_the_real_ones():
    cfg = make_config("tiny")
    with pytest.raises(ConfigError, match="learning_rate"):
        cfg.train.lr = 1e-4


def test_unknown_profile():
    with pytest.raises(ConfigError, match="tiny, t4, ampere"):
        make_config("a100")


def test_broken_config_file_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        RunConfig.load(path)
    path.write_text(json.dumps({"profile": "tiny", "train": {"lr": 1}}))
    with pytest.raises(ConfigError, match="remove that key"):
        RunConfig.load(path)


def test_colab_without_drive_says_the_run_directory_would_be_lost(tmp_path, monkeypatch, capsys):
    import sys
    import types

    from helpers.rundir import open_run

    open_run(tmp_path / "local", profile="tiny")
    assert "Google Drive" not in capsys.readouterr().out  # not on Colab: nothing to say
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    open_run(tmp_path / "local", profile="tiny")
    out = capsys.readouterr().out
    assert "not on Google Drive" in out and "drive.mount('/content/drive')" in out
