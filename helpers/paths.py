"""Where things live: the repository, its shipped data, the model cache. Nothing here touches the disk on import."""

from __future__ import annotations

import os
from pathlib import Path

# The course's GitHub repository: the one place it is written. The notebooks' Colab badges and install cells are
# generated from it by `python -m helpers sync-notebooks`; a test checks they agree.
GITHUB_REPO = "llm-finetuning-course/llm-finetuning-course"
GITHUB_BRANCH = "main"

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
RUNS_DIR = REPO_ROOT / "runs"


def cache_dir() -> Path:
    """Folder for built models (the tiny base model): `COURSE_CACHE_DIR`, else ~/.cache/llm-finetuning-course."""
    return Path(os.environ.get("COURSE_CACHE_DIR") or Path.home() / ".cache" / "llm-finetuning-course")
