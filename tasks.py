"""Set up and run, from a fresh clone, with only Python 3.10+ and pip:

    python3 tasks.py course    # set up .venv, then run every notebook headless (tiny profile without a GPU)
    python3 tasks.py test      # set up .venv, then run the test suite (unit tests + every notebook via nbval)
    python3 tasks.py colab     # the same tests in .venv-colab, on Google Colab's recorded library versions

Set-up creates `.venv/` beside this file, installs torch==2.13.0 (CPU build) first where there is no NVIDIA GPU,
so that pip does not pull several GB of CUDA packages, then the course (`pip install -e .[test,browser,export]`). It
is skipped when nothing it depends on has changed since the last run. The export extra's llama-cpp-python compiles
llama.cpp (a few minutes): its wheel is built once into a wheelhouse ($COURSE_WHEELHOUSE, or
~/.cache/llm-finetuning-course/wheels) and reused, with its source distribution, which holds llama.cpp's converter.
The browser tests (tests/test_browser.py) also
need Debian's Chromium at /usr/bin/chromium; `.ci/run` installs it.

`colab` first installs the versions Colab ships (`tests/colab_versions.txt`: ipywidgets 7, IPython 7, transformers
5.15, datasets 4.0, ...), then the course the way a notebook's install cell does on Colab (`pip install -e .`, which
upgrades only what `requirements.txt` needs), prints what that install changed, and runs the test suite there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CPU_TORCH = "torch==2.13.0"
LLAMA_CPP = "llama-cpp-python==0.3.36"  # as pyproject.toml's export extra
COLAB_VERSIONS = "tests/colab_versions.txt"


def python_in(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(*cmd: str | Path) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True).returncode == 0


def setup(venv_dir: Path, colab: bool = False) -> Path:
    """Create or refresh a virtual environment with the course installed; return its python."""
    py = python_in(venv_dir)
    stamp = venv_dir / ".course-setup"
    inputs = ("requirements.txt", "pyproject.toml") + ((COLAB_VERSIONS,) if colab else ())
    key = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in inputs) + CPU_TORCH.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == key and py.exists():
        return py
    if not py.exists():
        print(f"creating {venv_dir}", flush=True)
        venv.create(venv_dir, with_pip=True)
    # --no-compile: skip byte-compiling every installed file (most are never imported); Python compiles what it
    # imports, on first use
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--no-compile", "-q"]
    if not has_nvidia_gpu():
        run(*pip, CPU_TORCH)  # first, so that nothing later pulls a CUDA build
    if colab:
        run(*pip, "-r", COLAB_VERSIONS)
        before = freeze(py)
        run(*pip, "-e", ".")  # what the notebooks' install cell runs on Colab
        report_changes(before, freeze(py))
    # the course and its test tools; the browser tests use JupyterLab here, and Colab's own front end, the classic
    # Notebook of tests/colab_versions.txt, on the colab path (where only pytest, nbval and Playwright are new)
    if colab:
        run(*pip, "-e", ".[test,browser-driver]")
    else:  # the GGUF export's llama-cpp-python compiles llama.cpp: built once into the wheelhouse, then reused
        run(*pip, "--find-links", ensure_llama_cpp_wheel(py), "-e", ".[test,browser,export]")
    stamp.write_text(key)
    return py


def wheelhouse() -> Path:
    """Where the llama-cpp-python build is kept between runs: $COURSE_WHEELHOUSE, or the user's cache."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-finetuning-course" / "wheels"
    return Path(os.environ.get("COURSE_WHEELHOUSE") or default)


def ensure_llama_cpp_wheel(py: Path) -> Path:
    """Build llama-cpp-python's wheel from its source distribution into the wheelhouse unless it is there (a few
    minutes on 2 cores: it compiles llama.cpp); keep the source distribution too, for llama.cpp's converter."""
    folder = wheelhouse()
    version = LLAMA_CPP.split("==")[1]
    if not list(folder.glob(f"llama_cpp_python-{version}-*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        print(f"building {LLAMA_CPP} into {folder} (compiles llama.cpp; once)", flush=True)
        run(py, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-binary", ":all:", "--no-deps",
            "-d", folder, LLAMA_CPP)
        env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        # --no-cache-dir: the wheelhouse is the cache; pip's own could hand back a wheel built elsewhere
        cmd = [py, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-cache-dir", "-q", "--no-deps", "-w", folder,
               next(folder.glob(f"llama_cpp_python-{version}.tar.gz"))]
        print("+", " ".join(map(str, cmd)), flush=True)
        subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env=env)
    return folder


def freeze(py: Path) -> dict[str, str]:
    out = subprocess.run([str(py), "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split("==", 1) for line in out.splitlines() if "==" in line)


def report_changes(before: dict[str, str], after: dict[str, str]) -> None:
    """What the install cell changes in Colab's runtime: upgrades of preinstalled libraries, and additions."""
    changed = [f"  {name} {before[name]} -> {after[name]}" for name in sorted(after)
               if name in before and before[name] != after[name]]
    added = sorted(f"{name} {after[name]}" for name in after if name not in before)
    print("The install cell changes on Colab:", *(changed or ["  nothing preinstalled"]), sep="\n")
    print("and adds:", ", ".join(added), flush=True)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("course", "test", "colab"):
        print(__doc__)
        return 2
    py = setup(ROOT / ".venv-colab", colab=True) if sys.argv[1] == "colab" else setup(ROOT / ".venv")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Packages are installed without byte-compiling (--no-compile), so let Python cache what it actually imports:
    # with PYTHONDONTWRITEBYTECODE set, every notebook kernel would recompile transformers from source.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # what set-up installed: .venv-colab has no export extra, so tests/test_export.py skips there even under CI
    env["COURSE_EXTRAS"] = "test,browser-driver" if sys.argv[1] == "colab" else "test,browser,export"
    if sys.argv[1] == "course":
        cmd = [py, "-m", "helpers", "run-course", *sys.argv[2:]]
    else:
        cmd = [py, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", *sys.argv[2:]]
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
