"""The notebooks write the library calls out; the command line runs helpers. These tests hold the two together:
the notebook's cell, executed as it stands, builds the very object the helper builds, for every profile."""

import json

import pytest

from helpers.config import PROFILES, make_config
from helpers.paths import NOTEBOOKS_DIR


def code_cell(notebook: str, marker: str) -> str:
    """The source of the one code cell of a notebook that contains `marker`."""
    cells = json.loads((NOTEBOOKS_DIR / notebook).read_text(encoding="utf-8"))["cells"]
    found = [c["source"] for c in cells if c["cell_type"] == "code" and marker in c["source"]]
    assert len(found) == 1, f"{notebook}: {len(found)} code cells contain {marker!r}"
    return found[0]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("targets", ["all-linear", "attention", "q_proj,v_proj"])
def test_the_lora_config_written_in_03_is_the_one_the_command_line_builds(profile, targets):
    from helpers.lora import build_lora_config

    cfg = make_config(profile)
    cfg.lora.target_modules = targets
    namespace = {"cfg": cfg}
    exec(code_cell("03_lora.ipynb", "lora_config = LoraConfig("), namespace)  # its own assert runs too
    assert namespace["lora_config"] == build_lora_config(cfg)


def test_attaching_lora_as_03_does_gives_the_model_apply_lora_gives(tiny_model_dir):
    """Same seed, same LoraConfig, same calls: the adapters of the notebook and of `apply_lora` are identical."""
    import torch

    from helpers.lora import apply_lora, build_lora_config
    from helpers.model import load_model_and_tokenizer

    cfg = make_config("tiny")
    model, tokenizer = load_model_and_tokenizer(cfg)
    namespace = {"cfg": cfg, "model": model, "tokenizer": tokenizer, "torch": torch,
                 "lora_config": build_lora_config(cfg)}
    exec(code_cell("03_lora.ipynb", "model = get_peft_model(model, lora_config)"), namespace)
    reference = apply_lora(load_model_and_tokenizer(cfg)[0], cfg)
    ours, theirs = namespace["model"].state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and any("lora_A" in k for k in ours)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert [n for n, p in namespace["model"].named_parameters() if p.requires_grad] == \
        [n for n, p in reference.named_parameters() if p.requires_grad]
