"""Inference on the tiny profile (06_inference): merging, stopping, streaming, the chat box, the terminal chat, the
generation settings and the optional push to the Hub. One trained run is shared with the evaluation tests."""

import io
import threading

import pytest
import torch

from helpers.chat import chat_box, fit_history, generation_panel, read_generation_panel, terminal_chat
from helpers.inference import (answer_token_choices, generation_settings, load_finetuned, merge_adapter,
                               push_to_hub, reply, stream_reply, top_p_survivors)

QUESTION = [{"role": "user", "content": "Extract the name, city and time from this message, one per line.\n\nMessage: "
                                        "Hi, this is Nils. Could we meet in Porto at 4pm?"}]


@pytest.fixture(scope="module")
def trained(trained_run):
    """The shared tiny run trained with the profile's defaults (conftest.py), and its config."""
    from helpers.config import RunConfig

    return RunConfig.load(trained_run.config_file), trained_run


@pytest.fixture(scope="module")
def finetuned(trained):
    cfg, run = trained
    return load_finetuned(cfg, run)


def test_merged_model_matches_the_adapter_model(trained, finetuned):
    from transformers import AutoModelForCausalLM

    cfg, run = trained
    model, tokenizer = finetuned
    enc = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    merged, _ = merge_adapter(cfg, run)
    reloaded = AutoModelForCausalLM.from_pretrained(run.merged_dir)  # from disk, no peft involved
    with torch.no_grad():
        adapter_logits, merged_logits = model(**enc).logits, reloaded(**enc).logits
    assert (adapter_logits - merged_logits).abs().max() < 1e-3
    assert reply(reloaded, tokenizer, QUESTION) == reply(model, tokenizer, QUESTION)
    assert (run.merged_dir / "model.safetensors").exists() and (run.merged_dir / "chat_template.jinja").exists()
    assert not list(run.merged_dir.glob("*.bin")), "safetensors only"


def test_generation_stops_at_end_of_turn_and_max_new_tokens_bounds_it(finetuned):
    from helpers.evaluation import stop_token_ids

    model, tokenizer = finetuned
    info = {}
    "".join(stream_reply(model, tokenizer, QUESTION, info=info, max_new_tokens=200))
    assert info["stopped"] and info["new_tokens"] < 200, "the reply must end at <|end|>, not at the cap"
    enc = tokenizer.apply_chat_template([{"role": "user", "content": "Hi, this is Bo. Lima at 9am?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=200, do_sample=False, eos_token_id=stop_token_ids(tokenizer),
                         pad_token_id=tokenizer.pad_token_id)
    new = out[0, enc["input_ids"].shape[1]:].tolist()
    assert len(new) < 200 and new[-1] in stop_token_ids(tokenizer)
    info = {}
    "".join(stream_reply(model, tokenizer, QUESTION, info=info, max_new_tokens=3))
    assert info["new_tokens"] == 3 and info["stopped"] is False, "max_new_tokens is a hard bound"


def test_streaming_gives_the_same_text_as_a_plain_greedy_reply(finetuned):
    model, tokenizer = finetuned
    pieces = list(stream_reply(model, tokenizer, QUESTION))
    assert len(pieces) > 1, "the reply must arrive in pieces"
    assert "".join(pieces).strip() == reply(model, tokenizer, QUESTION)


def test_a_failing_generate_raises_instead_of_hanging(finetuned):
    _, tokenizer = finetuned

    class Broken:
        device = torch.device("cpu")

        def generate(self, **kwargs):
            raise RuntimeError("CUDA out of memory (simulated)")

    outcome = {}

    def consume():
        try:
            list(stream_reply(Broken(), tokenizer, QUESTION))
        except RuntimeError as e:
            outcome["error"] = str(e)

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "stream_reply hung after generate failed"
    assert "out of memory" in outcome["error"]


def test_chat_box_handles_a_scripted_two_turn_exchange(finetuned):
    model, tokenizer = finetuned
    chat = chat_box(model, tokenizer, settings=generation_panel(max_new_tokens=40))
    first = chat.send(QUESTION[0]["content"])
    assert first and chat.last_info["stopped"]
    second = chat.send("Hi, this is <b>Bo & Ana</b>. Lima at 9am?")
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "user", "assistant"]
    assert chat.messages[3]["content"] == second
    # multi-turn: the second prompt carried the whole first exchange, through the chat template
    assert QUESTION[0]["content"] in chat.last_prompt and first in chat.last_prompt
    assert chat.last_prompt.count("<|user|>") == 2 and chat.last_info["prompt_tokens"] > 40
    shown = chat.history.value
    assert "&lt;b&gt;Bo &amp; Ana&lt;/b&gt;" in shown and "<b>Bo" not in shown, "user text must be escaped"
    assert "Turn 2" in chat.status.value
    chat.reset()
    assert chat.messages == [] and "no messages" in chat.history.value


def test_chat_box_send_button_and_system_message(finetuned):
    model, tokenizer = finetuned
    chat = chat_box(model, tokenizer, settings={"max_new_tokens": 8}, system="You extract meeting details.")
    chat.text.value = "Hi, this is Bo. Lima at 9am?"
    chat.send_button.click()  # what a click in the browser does (ipywidgets 7 and 8)
    assert chat.text.value == "" and len(chat.messages) == 2
    assert chat.last_prompt.startswith("<|system|>\nYou extract meeting details.")
    assert chat.last_info["new_tokens"] <= 8
    chat.text.value = "   "
    chat.send_button.click()  # an empty message is ignored
    assert len(chat.messages) == 2


def test_generation_panel_defaults_to_greedy_and_reads_back(monkeypatch):
    panel = generation_panel()
    settings = read_generation_panel(panel)
    assert settings == {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 64, "repetition_penalty": 1.0}
    assert generation_settings(**settings)["do_sample"] is False
    assert "Greedy" in panel.children[-1].value
    panel.children[0].value = 0.7
    panel.children[1].value = 0.9
    settings = read_generation_panel(panel)
    assert settings["temperature"] == 0.7 and settings["top_p"] == 0.9
    assert generation_settings(**settings) == {"max_new_tokens": 64, "repetition_penalty": 1.0, "do_sample": True,
                                               "temperature": 0.7, "top_p": 0.9}
    assert "Sampling" in panel.children[-1].value


@pytest.mark.parametrize("bad", [{"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"max_new_tokens": 0},
                                 {"repetition_penalty": 0}])
def test_impossible_generation_settings_are_refused_with_the_allowed_range(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"{name} = .* is not allowed: use"):
        generation_settings(**bad)


def test_top_p_helpers_follow_transformers(finetuned):
    model, tokenizer = finetuned
    rows = answer_token_choices(model, tokenizer, QUESTION, "name: Nils")
    assert rows[-1]["token"] == "<|end|>" and all(r["candidates"] >= 1 for r in rows)
    logits = torch.tensor([3.0, 2.0, 1.0, -5.0])  # probabilities about 0.66, 0.24, 0.09, 0.0006
    assert top_p_survivors(logits, 1.0).tolist() == [True] * 4
    assert top_p_survivors(logits, 0.8).tolist() == [True, True, False, False]
    assert top_p_survivors(logits, 0.5).tolist() == [True, False, False, False]


def test_fit_history_drops_the_oldest_exchanges_first(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    system = [{"role": "system", "content": "Be brief."}]
    turns = [{"role": r, "content": f"{r} message number {i} " * 5} for i in range(3) for r in ("user", "assistant")]
    messages = system + turns + [{"role": "user", "content": "the newest question"}]
    kept, dropped = fit_history(tokenizer, messages, max_tokens=None)
    assert kept == messages and dropped == 0
    kept, dropped = fit_history(tokenizer, messages, max_tokens=90)
    assert dropped >= 1 and kept[0] == system[0] and kept[-1]["content"] == "the newest question"
    assert kept[1:] == messages[1 + 2 * dropped:], "whole exchanges go, oldest first"
    kept, dropped = fit_history(tokenizer, messages, max_tokens=1)
    assert kept == system + messages[-1:], "the newest message always stays"


def scripted(lines):
    """An input() stand-in that answers with `lines`, then raises the exception given last (or EOFError)."""
    lines = list(lines)

    def input_fn(prompt=""):
        item = lines.pop(0) if lines else EOFError
        if isinstance(item, type) and issubclass(item, BaseException):
            raise item
        return item

    return input_fn


def test_terminal_chat_streams_replies_keeps_history_and_exits_cleanly(trained, monkeypatch):
    import helpers.inference

    _, run = trained
    seen = []
    real = helpers.inference.stream_reply

    def recording(model, tokenizer, messages, **kwargs):
        seen.append(list(messages))
        yield from real(model, tokenizer, messages, **kwargs)

    monkeypatch.setattr(helpers.inference, "stream_reply", recording)
    out = io.StringIO()
    code = terminal_chat(str(run.path), input_fn=scripted([QUESTION[0]["content"], "hello", "/reset", "hi",
                                                           EOFError]), out=out, max_new_tokens=30)
    text = out.getvalue()
    assert code == 0 and text.count("model> ") == 3 and "(conversation forgotten)" in text and text.endswith("bye\n")
    assert "/reset" in text and "/quit" in text, "the banner names the commands"
    assert "name:" in text, "the first reply was written to the terminal"
    assert [len(m) for m in seen] == [1, 3, 1], "multi-turn history, emptied by /reset"
    for ending in (KeyboardInterrupt, "/quit"):
        out = io.StringIO()
        assert terminal_chat(str(run.path), input_fn=scripted([ending]), out=out) == 0
        assert out.getvalue().endswith("bye\n")


def test_chat_command_options(trained, monkeypatch):
    import argparse

    from helpers.chat import add_chat_arguments, cmd_chat

    _, run = trained
    parser = argparse.ArgumentParser()
    add_chat_arguments(parser)
    args = parser.parse_args(["--run-dir", str(run.path), "--temperature", "0.7", "--max-new-tokens", "16"])
    assert (args.temperature, args.top_p, args.max_new_tokens) == (0.7, 1.0, 16)
    monkeypatch.setattr("builtins.input", scripted(["hello", EOFError]))
    assert cmd_chat(args) == 0
    with pytest.raises(ValueError, match="temperature"):
        terminal_chat(str(run.path), temperature=-1)


# A real push needs the network and a token with write access, which tests never have: these tests cover the skip
# paths, and the calls made to huggingface_hub (through a stand-in), and that the token never appears in output.

@pytest.fixture
def saved_model(tmp_path):
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    return folder


def test_push_is_skipped_without_a_repo_id_or_a_token(saved_model, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert push_to_hub(saved_model, "").startswith("skipped: no repository id. Set HUB_REPO_ID")
    message = push_to_hub(saved_model, "someone/model")
    assert message.startswith("skipped: no Hugging Face token") and "Colab Secrets" in message
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="your-name/model-name"):
        push_to_hub(saved_model, "just-a-name", token="hf_x")


def test_push_uploads_privately_and_never_shows_the_token(saved_model, monkeypatch, capsys):
    import huggingface_hub

    secret = "hf_doNotPrintThis123"
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))

    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    message = push_to_hub(saved_model, "someone/model")
    assert message.startswith("pushed merged/ to https://huggingface.co/someone/model (private)")
    assert calls[0] == ("init", secret)  # the token goes to the library, and nowhere else
    assert calls[1][2]["private"] is True and calls[2][1]["folder_path"] == str(saved_model)

    class RefusingApi(FakeApi):
        def create_repo(self, repo_id, **kwargs):
            raise PermissionError(f"401 Unauthorized: invalid token {secret}")

    monkeypatch.setattr(huggingface_hub, "HfApi", RefusingApi)
    with pytest.raises(RuntimeError, match="write access") as refused:
        push_to_hub(saved_model, "someone/model")
    assert secret not in str(refused.value) and refused.value.__cause__ is None
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert push_to_hub(saved_model, "someone/model").startswith("skipped: HF_HUB_OFFLINE")
    assert secret not in capsys.readouterr().out + message


def test_push_refuses_a_folder_without_a_model(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(FileNotFoundError, match="merge cell of 06_inference"):
        push_to_hub(tmp_path, "someone/model", token="hf_x")


def test_the_merged_model_goes_where_the_learner_chooses(tiny_run):
    from helpers.inference import merged_destination

    _, run = tiny_run
    assert merged_destination(run, "run") == run.merged_dir
    assert merged_destination(run, "local") != run.merged_dir and run.path.name in merged_destination(run, "local").name
    assert merged_destination(run, "run", "export") == run.path / "export"   # 06's GGUF files, by the same choice
    assert merged_destination(run, "local", "export").name == f"{run.path.name}-export"
    with pytest.raises(ValueError, match="'run'.*'local'.*Hub"):
        merged_destination(run, "drive")
