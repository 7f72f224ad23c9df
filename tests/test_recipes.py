"""Each notebook ends with "the whole recipe": what it taught, as a learner would write it in an empty notebook, with
the libraries alone. These tests hold them to it: every recipe is short and never imports helpers, and the seven,
run one after the other in a fresh interpreter where `import helpers` fails, take the tiny model from raw data to a
trained, scored, merged model, and DPO on top of the adapter. Only the paths come from outside: TINY_MODEL, DATA_DIR, OUTPUT_DIR, FINETUNED_DIR (and CORPUS for 07)."""

import json
import re
import subprocess
import sys

import pytest

from helpers.paths import DATA_DIR, NOTEBOOKS_DIR

RECIPE = "# The whole recipe"
NOTEBOOKS = sorted(p.name for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def recipe_of(notebook: str) -> str:
    cells = json.loads((NOTEBOOKS_DIR / notebook).read_text(encoding="utf-8"))["cells"]
    found = [c["source"] for c in cells if c["cell_type"] == "code" and c["source"].startswith(RECIPE)]
    assert len(found) == 1, f"{notebook}: {len(found)} whole-recipe cells (there must be one)"
    return found[0]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_notebook_ends_with_a_short_recipe_without_helpers(notebook):
    cells = json.loads((NOTEBOOKS_DIR / notebook).read_text(encoding="utf-8"))["cells"]
    recipe = recipe_of(notebook)
    assert 10 <= len(recipe.splitlines()) <= 28, f"{notebook}: the recipe has {len(recipe.splitlines())} lines"
    assert "helpers" not in recipe, f"{notebook}: the recipe uses helpers"
    position = next(i for i, c in enumerate(cells) if c["source"] == recipe)
    after = [c for c in cells[position + 1:] if c["cell_type"] == "code"]
    assert not after, f"{notebook}: code cells follow the recipe"
    assert any(c["source"].startswith("## The whole recipe") for c in cells[:position])


def test_the_recipes_alone_take_the_tiny_model_from_data_to_a_merged_model(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    program = "\n\n".join([
        "import sys\nsys.modules['helpers'] = None   # `import helpers` now fails: the recipes must not need it",
        f"TINY_MODEL, DATA_DIR, OUTPUT_DIR = {str(tiny_model_dir)!r}, {str(DATA_DIR / 'meetings')!r}, {str(out)!r}",
        *(recipe_of(nb) for nb in NOTEBOOKS if nb < "05"),
        "FINETUNED_DIR = f'{OUTPUT_DIR}/adapter'",
        *(recipe_of(nb) for nb in NOTEBOOKS if "05" <= nb < "07"),
        f"PAIRS_DIR, OUTPUT_DIR = {str(DATA_DIR / 'preferences')!r}, {str(out / 'dpo')!r}",   # 08: DPO on 04's adapter
        recipe_of("08_preference_tuning_dpo.ipynb"),
    ])
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path,
                          env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    accuracy = float(re.search(r"held-out reward accuracy ([\d.]+)", proc.stdout)[1])
    assert accuracy >= 0.8, proc.stdout[-2000:]   # 08's recipe: DPO on the adapter the recipes trained
    assert (out / "dpo" / "adapter" / "adapter_model.safetensors").exists()
    before, after = map(float, re.search(r"eval loss ([\d.]+) -> ([\d.]+)", proc.stdout).groups())
    assert after < 0.5 * before, proc.stdout[-2000:]
    exact = float(re.search(r"exact match ([\d.]+)", proc.stdout)[1])
    assert exact >= 0.5, proc.stdout[-2000:]
    assert "name: Nils" in proc.stdout, proc.stdout[-500:]  # 06's streamed answer, from the merged model
    print(proc.stdout)
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "merged" / "model.safetensors").exists()


def test_the_full_fine_tuning_recipe_alone_trains_every_weight_and_measures_forgetting(tmp_path, tiny_model_dir):
    """07's recipe on its own: the tiny model fully fine-tuned on the shipped data, its known-text loss measured; then
    05's and 06's recipes score and stream the whole saved model, with no adapter to merge."""
    program = "\n\n".join([
        "import sys\nsys.modules['helpers'] = None",
        f"TINY_MODEL, DATA_DIR, CORPUS = {str(tiny_model_dir)!r}, {str(DATA_DIR / 'meetings')!r}, "
        f"{str(DATA_DIR / 'corpus.txt')!r}",
        f"OUTPUT_DIR = {str(tmp_path / 'out')!r}",
        recipe_of("07_methods_compared.ipynb"),
        "FINETUNED_DIR = f'{OUTPUT_DIR}/model'",   # 05's and 06's recipes take the whole model as well as an adapter
        *(recipe_of(nb) for nb in NOTEBOOKS if "05" <= nb < "07"),
    ])
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path,
                          env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = re.search(r"eval loss ([\d.]+) -> ([\d.]+); known-text loss ([\d.]+) -> ([\d.]+)", proc.stdout)
    before, after, known_before, known_after = map(float, found.groups())
    assert after < 0.2 * before and known_before < known_after, proc.stdout[-2000:]
    assert (tmp_path / "out" / "model" / "model.safetensors").exists()
    assert re.search(r"test rows: exact match [\d.]+", proc.stdout), proc.stdout[-2000:]   # 05's, on the whole model
    assert "name:" in proc.stdout[-100:] and not (tmp_path / "out" / "merged").exists()   # 06's: nothing to merge
