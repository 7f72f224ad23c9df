"""Every notebook also runs alone, in a fresh kernel and a fresh run directory (as on a fresh Colab runtime)."""

import pytest

from helpers.course import course_notebooks, execute_notebook


@pytest.mark.slow
@pytest.mark.parametrize("notebook", course_notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_alone_in_a_fresh_run_directory(notebook, tmp_path):
    import nbformat

    out = tmp_path / "executed.ipynb"
    execute_notebook(notebook, out, {"COURSE_RUN_DIR": str(tmp_path / "run"), "COURSE_PROFILE": "tiny"}, timeout=900)
    text = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", []))
    if "05" <= notebook.stem < "07":  # needs an adapter: it must say it is training one, and why
        assert "No trained adapter" in text and "what 04_training_sft does" in text
