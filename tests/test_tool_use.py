"""Tool calling and multi-turn chats trained end to end on the tiny profile: the shipped tool-use sample
(data/tool_use, OpenAI's chat format with tools, tool_calls, tool results and weight-0 turns) trains with the loss on
every trained assistant turn, calls included, with and without {% generation %} markers in the chat template."""

import pytest
import torch
from transformers import AutoTokenizer

from helpers.config import make_config
from helpers.data import (DataError, as_dataset, check_template_renders, load_splits, loss_mask_tokens,
                          per_turn_rows, to_sft_format)
from helpers.formats import validate_file
from helpers.lora import apply_lora
from helpers.model import load_model_and_tokenizer
from helpers.paths import DATA_DIR
from helpers.rundir import RunDir
from helpers.tiny import ensure_tiny_model
from helpers.train import make_trainer

SAMPLE = DATA_DIR / "tool_use" / "train.jsonl"


def without_markers(tokenizer):
    """The same template with its {% generation %} markers removed: what most Hub chat templates look like."""
    tokenizer.chat_template = tokenizer.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    return tokenizer


@pytest.fixture(scope="module")
def rows():
    report = validate_file(SAMPLE)
    assert report.ok and len(report.rows) == 120, report.summary()
    return report.rows


def trained_text(tokenizer, row) -> str:
    return "".join(text for text, trained in loss_mask_tokens(tokenizer, row["messages"], row.get("tools")) if trained)


@pytest.mark.parametrize("markers", [True, False])
def test_the_loss_covers_calls_and_replies_but_not_weight_zero_turns(rows, markers):
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model())
    tokenizer = tokenizer if markers else without_markers(tokenizer)
    greeted = next(r for r in rows if r["messages"][1].get("weight") == 0)
    text = trained_text(tokenizer, greeted)
    call = greeted["messages"][3]["tool_calls"][0]["function"]["name"]
    assert f'<tool_call>{{"name": "{call}"' in text and greeted["messages"][-1]["content"] in text
    assert "How can I help" not in text, "a weight-0 reply carries no loss"
    assert greeted["messages"][4]["content"] not in text, "the tool's result is input, not a target"


def test_without_markers_every_trained_turn_becomes_its_own_row(rows):
    tokenizer = without_markers(AutoTokenizer.from_pretrained(ensure_tiny_model()))
    ds = to_sft_format(as_dataset(rows), tokenizer)
    assert len(ds) == 2 * len(rows), "two trained assistant turns per conversation (the call and the reply)"
    assert ds[0]["completion"][0]["tool_calls"][0]["function"]["arguments"] == \
        rows[0]["messages"][3]["tool_calls"][0]["function"]["arguments"], "arguments come back as written, no nulls"
    assert all(len(per_turn_rows(r)) == 2 for r in rows)


def test_a_template_that_drops_tool_calls_is_refused_at_load_time(rows):
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model())
    tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] in ['user', 'assistant'] %}<|{{ m['role'] }}|>"
                               "{{ m['content'] }}<|end|>{% endif %}{% endfor %}")
    with pytest.raises(DataError, match="cannot render them: it drops the tool definitions, the call"):
        check_template_renders(tokenizer, rows)
    with pytest.raises(DataError, match="cannot render"):
        to_sft_format(as_dataset(rows), tokenizer)


@pytest.mark.parametrize("markers", [True, False])
def test_the_tool_use_sample_trains(tmp_path, markers):
    """SFTTrainer on the sample: the batch's labels hold the calls and replies (never the weight-0 greeting), the
    loss falls, and only LoRA weights move."""
    cfg = make_config("tiny")
    cfg.data.dataset, cfg.train.max_length, cfg.train.max_steps = str(SAMPLE.parent), 512, 30
    run = RunDir(tmp_path / "run")
    model, tokenizer = load_model_and_tokenizer(cfg)
    tokenizer = tokenizer if markers else without_markers(tokenizer)
    model = apply_lora(model, cfg)
    trainer = make_trainer(cfg, run, model, tokenizer, load_splits(cfg, run), save_strategy="no", eval_strategy="no")
    targets = "".join(tokenizer.decode([t for t in trainer.train_dataset[i]["labels"] if t != -100]) for i in range(8))
    assert "<tool_call>" in targets and "How can I help" not in targets
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < 0.7 * losses[0], losses
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n), "a base weight changed"
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n)


def test_validate_data_refuses_tool_data_for_a_template_that_drops_it(tmp_path, capsys):
    """`python -m helpers validate-data FILE --model DIR`: the tiny tokenizer renders tools (exit 0); a copy whose
    template drops them gets the one-line reason and exit 2."""
    import shutil

    from helpers import cli

    assert cli.main(["validate-data", str(SAMPLE), "--profile", "tiny", "--max-length", "512"]) == 0
    model = tmp_path / "no_tools"
    shutil.copytree(ensure_tiny_model(), model)
    (model / "chat_template.jinja").write_text("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
                                               "{% endfor %}")
    capsys.readouterr()
    assert cli.main(["validate-data", str(SAMPLE), "--profile", "tiny", "--model", str(model)]) == 2
    out = capsys.readouterr().out
    assert "cannot render them: it drops the tool definitions, the call, its arguments" in out
    assert "Traceback" not in out
