"""The cells every notebook shares, generated from one place (`helpers.paths.GITHUB_REPO`).

`python -m helpers sync-notebooks` rewrites each notebook's cell tagged `badge` (title and Open-in-Colab badge),
the cell tagged `install`, and the badge links in README.md; tests/test_static.py checks that they agree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .paths import GITHUB_BRANCH, GITHUB_REPO, NOTEBOOKS_DIR, REPO_ROOT

COLAB_DIR = "/content/llm-finetuning-course"


def colab_url(notebook_name: str) -> str:
    return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{GITHUB_BRANCH}/notebooks/{notebook_name}"


def badge_markdown(notebook_name: str) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook_name)})"


def install_cell_source() -> str:
    """Colab only: clone the course and pip-install what Colab lacks. A no-op elsewhere; never touches torch."""
    return f'''# Colab only: fetch the course code and install the libraries Colab lacks (about 1 minute).
# Elsewhere this cell does nothing. It never installs or upgrades torch: Colab's own build matches its GPU.
import os, subprocess, sys
if "google.colab" in sys.modules:
    if not os.path.isdir("{COLAB_DIR}"):
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/{GITHUB_REPO}", "{COLAB_DIR}"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "{COLAB_DIR}"], check=True)
    sys.path.insert(0, "{COLAB_DIR}")'''


def tagged_cell(nb: dict, tag: str) -> dict | None:
    return next((c for c in nb["cells"] if tag in c.get("metadata", {}).get("tags", [])), None)


def expected_badge_line(path: Path) -> str:
    return badge_markdown(path.name)


def sync_notebook(path: Path) -> bool:
    """Rewrite the badge line and the install cell of one notebook; True if anything changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    badge = tagged_cell(nb, "badge")
    if badge is not None:
        lines = "".join(badge["source"]).split("\n")
        new = [expected_badge_line(path) if "colab-badge.svg" in line else line for line in lines]
        if new != lines:
            badge["source"] = "\n".join(new)
            changed = True
    install = tagged_cell(nb, "install")
    if install is not None and "".join(install["source"]) != install_cell_source():
        install["source"] = install_cell_source()
        changed = True
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def sync_readme(path: Path = REPO_ROOT / "README.md") -> bool:
    """Point the README's Colab links at GITHUB_REPO / GITHUB_BRANCH; True if anything changed."""
    text = path.read_text(encoding="utf-8")
    prefix = colab_url("")
    new = re.sub(r"https://colab\.research\.google\.com/github/[^/\s]+/[^/\s]+/blob/[^/\s]+/notebooks/", prefix, text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def sync_notebooks() -> list[Path]:
    changed = [p for p in sorted(NOTEBOOKS_DIR.glob("*.ipynb")) if sync_notebook(p)]
    return changed + ([REPO_ROOT / "README.md"] if sync_readme() else [])
