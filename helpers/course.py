"""Run the whole course headless: every notebook in order, into one run directory, keeping executed copies."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .paths import NOTEBOOKS_DIR


def course_notebooks() -> list[Path]:
    """The numbered lesson notebooks, in order."""
    return sorted(p for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def execute_notebook(path: Path, out_path: Path, env: dict[str, str], timeout: int) -> float:
    """Execute one notebook in a fresh kernel (working folder: notebooks/) and save it with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        start = time.time()
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with open(out_path.with_suffix(".kernel.log"), "wb") as log:  # the kernel's own stderr chatter
            client.execute(stderr=log)
        return time.time() - start
    finally:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_path)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_course(run_dir: str | None = None, profile: str | None = None, timeout: int = 1800) -> int:
    """Execute 00..06 into one run directory; print a summary of what the fine-tune achieved."""
    from nbclient.exceptions import CellExecutionError

    from .machine import detect_profile
    from .rundir import resolve_run_dir

    profile = profile or detect_profile()
    run_path = resolve_run_dir(profile, run_dir)
    run_path.mkdir(parents=True, exist_ok=True)
    env = {"COURSE_RUN_DIR": str(run_path), "COURSE_PROFILE": profile}
    print(f"Running the course on the {profile} profile into {run_path}")
    total = time.time()
    for nb in course_notebooks():
        out = run_path / "executed" / nb.name
        print(f"  {nb.name:<32}", end="", flush=True)
        try:
            seconds = execute_notebook(nb, out, env, timeout)
        except CellExecutionError as e:
            print("FAILED")
            print(f"\n{str(e)[-3000:]}\nThe executed notebook, with the error, is in {out}")
            return 1
        print(f"{seconds:6.1f}s")
    print(f"All notebooks ran in {time.time() - total:.0f}s; executed copies in {run_path / 'executed'}")
    print(course_summary(run_path))
    return 0


def course_summary(run_path: Path) -> str:
    """Eval loss and task metric before and after fine-tuning, and where the figures are."""
    metrics = json.loads((run_path / "metrics.json").read_text())
    b, f = metrics["base"], metrics["finetuned"]
    lines = [
        "",
        f"{'':<26}{'base':>10}{'fine-tuned':>12}",
        f"{'held-out loss':<26}{b['eval_loss']:>10.3f}{f['eval_loss']:>12.3f}",
        f"{'perplexity':<26}{b['perplexity']:>10.1f}{f['perplexity']:>12.1f}",
        f"{'exact match (test)':<26}{b['exact_match']:>10.2f}{f['exact_match']:>12.2f}",
    ]
    if "valid_format" in b:
        lines.append(f"{'answer in format (test)':<26}{b['valid_format']:>10.2f}{f['valid_format']:>12.2f}")
    for group, g in f.get("by_group", {}).items():
        lines.append(f"{'  ' + group:<26}{b['by_group'][group]['exact_match']:>10.2f}{g['exact_match']:>12.2f}")
    lines += [f"{'ROUGE-L (test)':<26}{b['rougeL']:>10.2f}{f['rougeL']:>12.2f}",
              f"{'BLEU (test)':<26}{b['bleu']:>10.1f}{f['bleu']:>12.1f}",
              f"training curves: {metrics['fit']['verdict']}"]
    figures = sorted((run_path / "figures").glob("*.png"))
    lines.append(f"\nFigures ({len(figures)}):")
    lines += [f"  {p}" for p in figures]
    return "\n".join(lines)
