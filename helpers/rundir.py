"""The run directory: every artifact of one fine-tuning run, in one folder that the notebooks hand along.

    runs/<run-name>/
        config.json          the RunConfig (00)
        data/                train / validation / test splits, as JSONL (01)
        baseline.json        base-model answers before fine-tuning (02)
        checkpoints/         Trainer checkpoints (04)
        adapter/             the trained LoRA adapter (04; LoRA and QLoRA)
        model/               the whole fine-tuned model, when every weight trained (cfg.method = "full")
        train_summary.json   log history, eval loss before and after (04)
        metrics.json         base vs fine-tuned metrics (05)
        merged/              the adapter merged into the base model (06)
        figures/             every plot, as PNG

Introduced in 00_setup_and_gpu_check.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import RunConfig, make_config
from .paths import RUNS_DIR


class MissingArtifact(FileNotFoundError):
    """An upstream artifact is not in the run directory; the message names the notebook that makes it."""


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def model_dir(self) -> Path:
        """Where full fine-tuning saves the whole model (there is no adapter to save)."""
        return self.path / "model"

    def finetuned_dir(self, cfg: RunConfig) -> Path:
        """Where this run's training result is: the adapter (LoRA, QLoRA) or the whole model (full)."""
        return self.adapter_dir if cfg.method != "full" else self.model_dir

    def has_finetuned(self, cfg: RunConfig) -> bool:
        """Whether training has saved its result (adapter_model.safetensors or model.safetensors)."""
        name = "adapter_model.safetensors" if cfg.method != "full" else "model.safetensors"
        return (self.finetuned_dir(cfg) / name).exists()

    @property
    def merged_dir(self) -> Path:
        return self.path / "merged"

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def train_summary_file(self) -> Path:
        return self.path / "train_summary.json"

    @property
    def baseline_file(self) -> Path:
        return self.path / "baseline.json"

    def figure_path(self, name: str) -> Path:
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / f"{name}.png"

    def write_json(self, name: str, obj) -> Path:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
        return path

    def read_json(self, name: str, made_by: str):
        path = self.path / name
        if not path.exists():
            raise MissingArtifact(f"{path} does not exist yet: run {made_by} first (same run directory).")
        return json.loads(path.read_text(encoding="utf-8"))

    def __str__(self) -> str:
        return str(self.path)


DRIVE = Path("/content/drive/MyDrive")
NOT_ON_DRIVE = ("This run directory is not on Google Drive: it lasts only as long as this Colab runtime, and each "
                "notebook opened from its badge gets a new runtime. To keep it, mount Drive "
                "(from google.colab import drive; drive.mount('/content/drive')) and run this cell again.")


def resolve_run_dir(run_name: str, run_dir: str | Path | None = None) -> Path:
    """`run_dir` if given, else `COURSE_RUN_DIR`, else runs/<run_name> (on Colab, on Drive if it is mounted)."""
    if run_dir:
        return Path(run_dir).expanduser().resolve()
    if os.environ.get("COURSE_RUN_DIR"):
        return Path(os.environ["COURSE_RUN_DIR"]).expanduser().resolve()
    if DRIVE.is_dir():  # Colab with Google Drive mounted: a disconnect loses nothing
        return DRIVE / "llm-finetuning-course" / "runs" / run_name
    return RUNS_DIR / run_name


def lost_with_the_runtime(path: Path) -> bool:
    """True on Colab when the run directory is not on the mounted Drive, so that a disconnect would lose it."""
    return "google.colab" in sys.modules and not Path(path).is_relative_to(DRIVE.parent)


def open_run(run_dir: str | Path | None = None, profile: str | None = None) -> tuple[RunConfig, RunDir]:
    """Open (or start) a run: its saved config if there is one, else the profile's preset, saved there now."""
    from .machine import detect_profile

    profile = profile or detect_profile()
    path = resolve_run_dir(profile, run_dir)
    run = RunDir(path)
    if run.config_file.exists():
        cfg = RunConfig.load(run.config_file)
    else:
        cfg = make_config(profile, run_name=path.name)
        path.mkdir(parents=True, exist_ok=True)
        cfg.save(run.config_file)
    if lost_with_the_runtime(path):
        print(NOT_ON_DRIVE)
    return cfg, run


def save_config(cfg: RunConfig, run: RunDir) -> Path:
    """Write the (possibly edited) config back to the run directory."""
    return cfg.save(run.config_file)
