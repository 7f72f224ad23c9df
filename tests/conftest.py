import pytest

from helpers.config import make_config
from helpers.rundir import RunDir


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
