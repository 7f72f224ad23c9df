"""The notebooks write the library calls out; the command line runs helpers. These tests hold the two together:
the notebook's cell, executed as it stands, builds the very object the helper builds, for every profile."""

import json

import pytest

from helpers.config import PROFILES, make_config
from helpers.paths import NOTEBOOKS_DIR


RECIPE = "# The whole recipe"


def code_cells(notebook: str) -> list[str]:
    """The sources of a notebook's code cells, in order."""
    cells = json.loads((NOTEBOOKS_DIR / notebook).read_text(encoding="utf-8"))["cells"]
    return [c["source"] for c in cells if c["cell_type"] == "code"]


def code_cell(notebook: str, marker: str) -> str:
    """The source of the one teaching cell (not the whole-recipe cell) of a notebook that contains `marker`."""
    found = [s for s in code_cells(notebook) if marker in s and not s.startswith(RECIPE)]
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


# --- 02: BitsAndBytesConfig, AutoTokenizer, AutoModelForCausalLM ------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("quantization", ["none", "4bit", "8bit"])
def test_the_bitsandbytes_config_written_in_02_is_the_one_the_command_line_loads_with(profile, quantization):
    from helpers.model import quantization_config

    cfg = make_config(profile)
    cfg.model.quantization = quantization
    namespace = {"cfg": cfg}
    exec(code_cell("02_model_loading.ipynb", "bnb_config = BitsAndBytesConfig("), namespace)  # its assert runs too
    ours, theirs = namespace["bnb_config"], quantization_config(cfg)
    assert (ours is None) == (quantization == "none") == (theirs is None)
    assert ours is None or ours.to_dict() == theirs.to_dict()


def test_02_loads_the_tokenizer_and_model_load_model_and_tokenizer_loads(tiny_model_dir):
    import torch

    from helpers.model import load_model_and_tokenizer

    cfg = make_config("tiny")
    namespace = {"cfg": cfg}
    for marker in ("AutoTokenizer.from_pretrained(", "bnb_config = BitsAndBytesConfig(",
                   "model = AutoModelForCausalLM.from_pretrained("):
        exec(code_cell("02_model_loading.ipynb", marker), namespace)
    model, tokenizer = load_model_and_tokenizer(cfg)
    ours, theirs = namespace["model"], model
    assert namespace["tokenizer"].pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id
    assert namespace["tokenizer"].get_vocab() == tokenizer.get_vocab()
    assert ours.config.to_dict() == theirs.config.to_dict()
    assert ours.generation_config.to_dict() == theirs.generation_config.to_dict()
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_02_pads_with_unk_when_the_tokenizer_pads_with_eos_and_refuses_when_it_cannot():
    import types

    from helpers.model import ModelLoadError, ensure_pad_token

    llama_like = types.SimpleNamespace(pad_token="</s>", eos_token="</s>", unk_token="<unk>")

    class Tok(types.SimpleNamespace):  # token ids follow the tokens, as a real tokenizer's do
        ids = {"</s>": 2, "<unk>": 0, None: None}
        pad_token_id = property(lambda self: self.ids[self.pad_token])
        eos_token_id = property(lambda self: self.ids[self.eos_token])

    assert ensure_pad_token(Tok(**vars(llama_like))).pad_token == "<unk>"
    with pytest.raises(ModelLoadError, match="add_special_tokens"):
        ensure_pad_token(Tok(pad_token=None, eos_token="</s>", unk_token=None))


# --- 04: SFTConfig, SFTTrainer ------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("early_stopping", [0, 3])
@pytest.mark.parametrize("markers", [True, False])
def test_the_sft_config_written_in_04_is_the_one_the_command_line_trains_with(profile, early_stopping, markers,
                                                                              tmp_path):
    import types

    from helpers.rundir import RunDir
    from helpers.train import build_sft_config

    cfg = make_config(profile)
    cfg.train.early_stopping_patience = early_stopping
    tokenizer = types.SimpleNamespace(chat_template="{% generation %}{% endgeneration %}" if markers else "{{ x }}")
    run = RunDir(tmp_path)
    namespace = {"cfg": cfg, "run": run, "tokenizer": tokenizer}
    exec(code_cell("04_training_sft.ipynb", "sft_config = SFTConfig("), namespace)  # its own assert runs too
    ours = namespace["sft_config"]
    assert ours.to_dict() == build_sft_config(cfg, run, tokenizer).to_dict()
    assert ours.load_best_model_at_end == bool(early_stopping)
    assert ours.assistant_only_loss == markers and ours.completion_only_loss


def test_the_trainer_built_in_04_is_the_one_make_trainer_builds(tiny_run, tiny_model_dir):
    from helpers.data import load_splits
    from helpers.lora import apply_lora
    from helpers.model import load_model_and_tokenizer
    from helpers.train import build_sft_config, make_trainer

    cfg, run = tiny_run
    cfg.train.early_stopping_patience = 2
    splits = load_splits(cfg, run)
    model, tokenizer = load_model_and_tokenizer(cfg)
    model = apply_lora(model, cfg)
    namespace = {"cfg": cfg, "model": model, "tokenizer": tokenizer, "splits": splits,
                 "sft_config": build_sft_config(cfg, run, tokenizer)}
    exec(code_cell("04_training_sft.ipynb", "trainer = SFTTrainer("), namespace)
    ours, theirs = namespace["trainer"], make_trainer(cfg, run, model, tokenizer, splits)
    assert ours.args.to_dict() == theirs.args.to_dict()
    assert [type(c).__name__ for c in ours.callback_handler.callbacks] == \
        [type(c).__name__ for c in theirs.callback_handler.callbacks]
    assert "EarlyStoppingCallback" in [type(c).__name__ for c in ours.callback_handler.callbacks]
    for split in ("train_dataset", "eval_dataset"):
        assert getattr(ours, split).to_list() == getattr(theirs, split).to_list()


# --- 06: PeftModel.from_pretrained, merge_and_unload ----------------------------------------------------------

def test_06_loads_and_merges_the_adapter_as_load_finetuned_and_merge_adapter_do(trained_run, tmp_path):
    import shutil

    import torch

    from helpers.config import RunConfig
    from helpers.inference import load_finetuned, merge_adapter
    from helpers.rundir import RunDir

    cfg = RunConfig.load(trained_run.config_file)
    run = RunDir(tmp_path / "run")  # a copy: the merge writes into the run directory
    shutil.copytree(trained_run.adapter_dir, run.adapter_dir)
    namespace = {"open_run": lambda: (cfg, run)}
    cell = code_cell("06_inference.ipynb", "model = PeftModel.from_pretrained(model, str(run.adapter_dir))")
    exec(cell.replace("from helpers.rundir import open_run\n", ""), namespace)
    reference, _ = load_finetuned(cfg, run)
    a, b = namespace["model"].state_dict(), reference.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) and not namespace["model"].training

    namespace.update(torch=torch, question=[{"role": "user", "content": "Hi, this is Nils."}])
    exec(code_cell("06_inference.ipynb", ".merge_and_unload()"), namespace)
    ours = namespace["merged"].state_dict()
    reference_run = RunDir(tmp_path / "reference")
    shutil.copytree(trained_run.adapter_dir, reference_run.adapter_dir)
    theirs = merge_adapter(cfg, reference_run)[0].state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert sorted(p.name for p in run.merged_dir.iterdir()) == sorted(p.name for p in reference_run.merged_dir.iterdir())
