"""Where things live: the repository and its shipped data. Nothing here touches the disk on import."""

from __future__ import annotations

from pathlib import Path

# The course's GitHub repository: the one place it is written. The notebooks' Colab badges and install cells are
# generated from it by `python -m helpers sync-notebooks`; a test checks they agree.
GITHUB_REPO = "llm-finetuning-course/llm-finetuning-course"
GITHUB_BRANCH = "main"

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
RUNS_DIR = REPO_ROOT / "runs"

