"""Set up and run, from a fresh clone, with only Python 3.10+ and pip:

    python3 tasks.py course    # set up .venv, then run every notebook headless (tiny profile without a GPU)
    python3 tasks.py test      # set up .venv, then run the test suite (unit tests + every notebook via nbval)

Set-up creates `.venv/` beside this file, installs torch==2.13.0 (CPU build) first where there is no NVIDIA GPU,
so that pip does not pull several GB of CUDA packages, then the course (`pip install -e .[test]`). It is skipped
when nothing it depends on has changed since the last run.
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
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
CPU_TORCH = "torch==2.13.0"


def run(*cmd: str | Path) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True).returncode == 0


def setup() -> None:
    stamp = VENV / ".course-setup"
    key = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in ("requirements.txt", "pyproject.toml"))
                         + CPU_TORCH.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == key and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    # --no-compile: skip byte-compiling every installed file (most are never imported); Python compiles what it
    # imports, on first use
    pip = [PY, "-m", "pip", "install", "--disable-pip-version-check", "--no-compile", "-q"]
    if not has_nvidia_gpu():
        run(*pip, CPU_TORCH)  # first, so that nothing later pulls a CUDA build
    run(*pip, "-e", ".[test]")
    stamp.write_text(key)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("course", "test"):
        print(__doc__)
        return 2
    setup()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Packages are installed without byte-compiling (--no-compile), so let Python cache what it actually imports:
    # with PYTHONDONTWRITEBYTECODE set, every notebook kernel would recompile transformers from source.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if sys.argv[1] == "course":
        cmd = [PY, "-m", "helpers", "run-course", *sys.argv[2:]]
    else:
        cmd = [PY, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", *sys.argv[2:]]
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
