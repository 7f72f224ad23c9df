"""Checks that need no execution: clean notebooks, badges, install cells, pins."""

import json
import re
import sys

import pytest

from helpers.notebook_tools import badge_markdown, install_cell_source, tagged_cell
from helpers.paths import NOTEBOOKS_DIR, REPO_ROOT

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = ["00_setup_and_gpu_check", "01_dataset_prep", "02_model_loading", "03_lora", "04_training_sft",
            "05_evaluation", "06_inference", "07_methods_compared",
            "08_preference_tuning_dpo"]


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_notebooks_exist_in_order():
    assert [p.stem for p in NOTEBOOKS][:len(EXPECTED)] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    for cell in load(path)["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, f"{path.name}: clear the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_its_badge_and_install_cell(path):
    nb = load(path)
    first, second = nb["cells"][0], nb["cells"][1]
    assert "badge" in first["metadata"].get("tags", []) and badge_markdown(path.name) in "".join(first["source"])
    assert "install" in second["metadata"].get("tags", [])
    assert "".join(second["source"]) == install_cell_source(), "run: python -m helpers sync-notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_objectives_and_ends_with_exercises_and_next(path):
    text = "".join(load(path)["cells"][0]["source"])
    assert "In this notebook you will" in text and "Time and memory" in text and "Prerequisites" in text
    last = "".join(load(path)["cells"][-1]["source"])
    assert "What you learned" in last and "Exercises" in last


def test_readme_badges_point_where_the_notebooks_do():
    from helpers.notebook_tools import colab_url

    readme = (REPO_ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert colab_url(path.name) in readme, f"README lacks the badge of {path.name}: python -m helpers sync-notebooks"
    assert readme.count("colab.research.google.com/github/") == len(NOTEBOOKS)


def test_install_cell_never_touches_torch_and_is_colab_only():
    src = install_cell_source()
    code_lines = [line for line in src.splitlines() if not line.lstrip().startswith("#")]
    assert not any(re.search(r"\btorch\b", line) for line in code_lines)
    assert 'if "google.colab" in sys.modules:' in src


def test_requirements_never_pin_torch():
    lines = [l.split("#")[0].strip() for l in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    assert not [l for l in lines if re.match(r"^(torch|torchvision|torchaudio)\b", l)]


def test_requirements_cover_what_the_notebooks_import():
    imported = set()
    for path in NOTEBOOKS:
        for cell in load(path)["cells"]:
            if cell["cell_type"] == "code":
                imported |= set(re.findall(r"^\s*(?:from|import) (\w+)", "".join(cell["source"]), re.M))
    requirements = (REPO_ROOT / "requirements.txt").read_text().lower()
    # IPython comes with ipykernel (listed), and every Jupyter or Colab kernel has it
    provided_elsewhere = {"helpers", "torch", "IPython", *sys.stdlib_module_names}
    # optional extras: 06 imports llama_cpp only after helpers.export.require_llama_cpp said it is there
    extras = {"llama_cpp": 'export = ["llama-cpp-python'}
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    for module in sorted(imported - provided_elsewhere):
        if module in extras:
            assert extras[module] in pyproject, f"notebooks import {module}: pyproject.toml's extra must install it"
            continue
        distribution = module.lower().replace("_", "-")  # rouge_score is installed as rouge-score
        assert distribution in requirements, f"notebooks import {module} but requirements.txt lacks it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_cells_stay_short(path):
    """A cell is the lesson, not the plumbing: at most 30 lines, and most under 10 (the install cell aside)."""
    lengths = sorted(len("".join(c["source"]).splitlines()) for c in load(path)["cells"][2:] if c["cell_type"] == "code")
    assert lengths[-1] <= 30, f"{path.name}: a cell of {lengths[-1]} lines: split it or move plumbing to helpers"
    assert lengths[len(lengths) // 2] < 10, f"{path.name}: the median code cell has {lengths[len(lengths) // 2]} lines"


def test_sync_rewrites_a_stale_badge_and_install_cell(tmp_path):
    import shutil

    from helpers.notebook_tools import colab_url, sync_notebook, sync_readme

    readme = tmp_path / "README.md"
    readme.write_text("[x](https://colab.research.google.com/github/someone/fork/blob/dev/notebooks/03_lora.ipynb)")
    assert sync_readme(readme) and colab_url("03_lora.ipynb") in readme.read_text()
    nb_path = tmp_path / NOTEBOOKS[0].name
    shutil.copy(NOTEBOOKS[0], nb_path)
    nb = load(nb_path)
    nb["cells"][1]["source"] = "!pip install torch"
    nb_path.write_text(json.dumps(nb))
    assert sync_notebook(nb_path)
    assert "".join(load(nb_path)["cells"][1]["source"]) == install_cell_source()
