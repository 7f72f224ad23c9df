import pytest

from helpers.config import make_config
from helpers.rundir import RunDir


def kill_when_written(cmd: list[str], marker, timeout_s: float = 600) -> None:
    """Start the command, and SIGKILL it as soon as `marker` (a checkpoint's last file) exists: a crash mid-run."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout_s
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def tiny_run(tmp_path):
    """A fresh run directory with the tiny profile's config saved in it."""
    cfg = make_config("tiny", run_name=tmp_path.name)
    run = RunDir(tmp_path / "run")
    cfg.save(run.config_file)
    return cfg, run


@pytest.fixture(scope="session")
def tiny_model_dir():
    from helpers.tiny import ensure_tiny_model

    return ensure_tiny_model(verbose=False)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny run trained with the profile's defaults by `python -m helpers train`, shared by the evaluation and
    inference tests (training is the slow part; 60 steps would lower the loss but not yet get answers right)."""
    import subprocess
    import sys

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    proc = subprocess.run([sys.executable, "-m", "helpers", "train", "--run-dir", str(run_dir), "--profile", "tiny"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return RunDir(run_dir)
