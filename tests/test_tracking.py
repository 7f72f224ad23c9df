"""Experiment tracking on the tiny profile: TensorBoard and Trackio write into the run directory, the course's run
comparison reads TensorBoard's logs back unchanged, and a tracker that is not installed gets one clear message."""

import importlib.util
import os

import pytest

from helpers.config import ConfigError, make_config
from helpers.rundir import RunDir
from helpers.tracking import prepare_tracker, read_tensorboard_history, tracker_dir
from helpers.train import collect_run_histories, summarize_training

from test_training_guards import tiny_trainer


def short_config(tracker: str):
    cfg = make_config("tiny")
    cfg.train.report_to = tracker
    cfg.train.max_steps, cfg.train.logging_steps, cfg.train.eval_steps = 8, 2, 4
    return cfg


@pytest.fixture
def restore_tracker_env():
    saved = {k: os.environ.get(k) for k in ("TENSORBOARD_LOGGING_DIR", "TRACKIO_DIR")}
    yield
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_the_config_accepts_the_offline_trackers_only():
    cfg = make_config("tiny")
    assert cfg.train.report_to == "none"
    for name in ("tensorboard", "trackio", "none"):
        cfg.train.report_to = name
    with pytest.raises(ConfigError, match="'none' .*'tensorboard' or 'trackio'"):
        cfg.train.report_to = "wandb"


def test_a_missing_tracker_is_one_line_with_the_install_command(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trackio" else real(name, *a))
    with pytest.raises(ConfigError, match=r"trackio is not installed: run `pip install trackio`") as e:
        prepare_tracker(short_config("trackio"), RunDir(tmp_path / "run"))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run" / "logs").exists()  # nothing half set up
    assert prepare_tracker(short_config("none"), RunDir(tmp_path / "run")) is None


def test_tensorboard_logs_into_the_run_and_the_comparison_reads_the_same_numbers(tmp_path, restore_tracker_env):
    cfg = short_config("tensorboard")
    run, trainer = tiny_trainer(tmp_path, cfg)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    trainer.callback_handler.on_train_end(trainer.args, trainer.state, trainer.control)  # flush the event file
    board = tracker_dir(run, "tensorboard")
    assert list(board.glob("events.out.tfevents.*")), f"no TensorBoard events in {board}"

    logged = summarize_training(trainer, before, after, None)["log_history"]
    read = read_tensorboard_history(board)
    train_loss = {r["step"]: r["loss"] for r in logged if "loss" in r}
    assert len(train_loss) == 4
    assert {r["step"]: r["loss"] for r in read if "loss" in r} == pytest.approx(train_loss, rel=1e-6)
    # TensorBoard also holds the evaluation before training, as step 0 (the trainer's history starts at training)
    eval_loss = {0: before["eval_loss"], **{r["step"]: r["eval_loss"] for r in logged if "eval_loss" in r}}
    assert len(eval_loss) == 3
    assert {r["step"]: r["eval_loss"] for r in read if "eval_loss" in r} == pytest.approx(eval_loss, rel=1e-6)

    histories = collect_run_histories(tmp_path)  # no train_summary.json: the comparison reads TensorBoard's logs
    assert list(histories) == ["run"] and histories["run"] == read


def test_trackio_logs_into_the_run_directory_offline(tmp_path, restore_tracker_env):
    run, trainer = tiny_trainer(tmp_path, short_config("trackio"))
    trainer.train()
    folder = tracker_dir(run, "trackio")
    assert os.environ["TRACKIO_DIR"] == str(folder)
    assert list(folder.glob("*.db")), f"trackio wrote nothing to {folder}"


def test_measuring_trainers_never_log_to_the_tracker(tmp_path, restore_tracker_env):
    from helpers.evaluation import base_trainer_for

    from helpers.data import load_splits

    cfg = short_config("tensorboard")
    cfg.method = "full"  # 05's trainer for the base model, which only evaluates
    run = RunDir(tmp_path / "run")
    trainer = base_trainer_for(cfg, run, load_splits(cfg, run))
    assert trainer.args.report_to in (["none"], [])
    assert not tracker_dir(run, "tensorboard").exists()
