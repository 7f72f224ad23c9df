"""Experiment tracking (04_training_sft): TensorBoard or Trackio, both offline, writing into the run directory.

`cfg.train.report_to` names the tracker ("none" by default); SFTConfig's `report_to` takes the same name, and
transformers' own TensorBoardCallback or TrackioCallback does the logging. What this module adds is the plumbing:
a one-line message with the install command when the tracker is missing (instead of a traceback when the trainer
is built), the folder it writes to (`<run>/logs/<tracker>`), and reading TensorBoard's event files back into the
trainer's log-history shape, so that the course's run comparison reads the same logs TensorBoard shows.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from .config import ConfigError, RunConfig
from .rundir import RunDir

INSTALL = {"tensorboard": "pip install tensorboard", "trackio": "pip install trackio"}


def tracker_dir(run: RunDir, tracker: str) -> Path:
    """Where `tracker` writes this run's logs: `<run>/logs/<tracker>`."""
    return run.path / "logs" / tracker


def prepare_tracker(cfg: RunConfig, run: RunDir) -> Path | None:
    """Check that cfg.train.report_to's tracker is installed and point it at the run directory; returns its folder
    (None for "none"). Call it before the trainer is built: both trackers read their folder then."""
    tracker = cfg.train.report_to
    if tracker == "none":
        return None
    if importlib.util.find_spec(tracker) is None:
        raise ConfigError(f"cfg.train.report_to = {tracker!r}, but {tracker} is not installed: run "
                          f"`{INSTALL[tracker]}` (in a notebook `%pip install {tracker}`, then restart the kernel), "
                          "or set cfg.train.report_to = 'none'")
    folder = tracker_dir(run, tracker)
    folder.mkdir(parents=True, exist_ok=True)
    if tracker == "tensorboard":
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder)  # read by TensorBoardCallback when the trainer is built
        beside = Path(sys.executable).parent / "tensorboard"
        if shutil.which("tensorboard") is None and beside.exists():  # a kernel in a virtual environment that was
            os.environ.setdefault("TENSORBOARD_BINARY", str(beside))  # never activated: %tensorboard finds it here
    else:
        os.environ["TRACKIO_DIR"] = str(folder)  # read once, when trackio is imported, and copied into its modules
        imported = sys.modules.get("trackio.utils")
        if imported is not None and Path(imported.TRACKIO_DIR) != folder:
            # imported earlier for another folder (TRL imports it at every checkpoint, for the model card): forget
            # it, so that the trainer's import reads this run's folder instead of writing to the earlier one
            for name in [m for m in sys.modules if m == "trackio" or m.startswith("trackio.")]:
                del sys.modules[name]
    return folder


def read_tensorboard_history(folder: Path | str) -> list[dict]:
    """TensorBoard's scalars in a folder as the trainer's log history: one dict per logged step, training values
    ("train/loss" -> "loss") apart from evaluations ("eval/loss" -> "eval_loss")."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point, not a sample
    events.Reload()
    rows: dict[tuple[int, bool], dict] = {}
    for tag in events.Tags()["scalars"]:
        section, _, name = tag.partition("/")
        evaluation = section == "eval"
        key = f"eval_{name}" if evaluation else name
        for point in events.Scalars(tag):
            rows.setdefault((point.step, evaluation), {"step": point.step})[key] = point.value
    return [rows[k] for k in sorted(rows)]
