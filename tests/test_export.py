"""GGUF export (06_inference, section 7; `python -m helpers export --gguf`): the tiny fine-tuned model converted by
llama.cpp's own converter, quantized, run through llama-cpp-python, and compared with the Hugging Face model on the
test split. Needs the `export` extra; `.ci/run` installs it, and there a missing binding fails instead of skipping."""

import json
import os
import subprocess
import sys
import types

import pytest

from helpers import export
from helpers.config import RunConfig

try:
    import llama_cpp  # noqa: F401
except ImportError:
    # .ci/run installs the extra in .venv: there a skip would hide a broken set-up (not in .venv-colab, which lacks it)
    if os.environ.get("CI") and "export" in os.environ.get("COURSE_EXTRAS", "export").split(","):
        raise
    pytest.skip(f"llama-cpp-python is not installed ({export.INSTALL_EXPORT})", allow_module_level=True)


@pytest.fixture(scope="module")
def reports(trained_run):
    """The shared tiny run exported at every quantization level, each compared on all 60 test prompts."""
    cfg = RunConfig.load(trained_run.config_file)
    return {quant: export.export_run(cfg, trained_run, quant=quant, progress=False) for quant in export.QUANTS}


def test_f16_agrees_with_the_hf_model_on_at_least_95_percent_of_the_answers(reports):
    r = reports["f16"]
    assert r["n"] == 60
    assert r["agreement"] >= 0.95, [row for row in r["rows"] if not row["agree"]]
    assert r["gguf_exact_match"] >= r["hf_exact_match"] - 0.05


def test_q8_0_agrees_on_at_least_90_percent(reports):
    assert reports["q8_0"]["agreement"] >= 0.90, [row for row in reports["q8_0"]["rows"] if not row["agree"]]


def test_every_gguf_answer_stops_by_itself_at_every_level(reports):
    for quant, r in reports.items():
        assert r["stopped"] == 1, (quant, [row for row in r["rows"] if not row["stopped"]])
        assert r["hf_stopped"] == 1, quant  # and so did the transformers model's


def test_every_prompt_is_written_and_tokenized_as_transformers_does_at_every_level(reports):
    for quant, r in reports.items():
        assert r["template_differs_on"] == [] and r["tokens_differ_on"] == [], quant


def test_a_prompt_tokenized_differently_is_counted_even_when_the_answers_agree(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": "Lima at noon?"}]
    llm = _FakeGGUF(tokenizer.chat_template, tokens=[1, 2, 3])   # the right template, other tokens
    rows = [{"messages": messages + [{"role": "assistant", "content": "y"}]}]
    report = export.compare_with_hf(llm, tokenizer, rows, ["y"], max_tokens=8, progress=False)
    assert report["agreement"] == 1 and report["tokens_differ_on"] == [0] and report["template_differs_on"] == []


def test_q4_k_m_is_reported_with_its_size_and_agreement(trained_run, reports):
    r = reports["q4_k_m"]
    assert (trained_run.path / "export" / "model-q4_k_m.gguf").exists()
    assert 0 <= r["agreement"] <= 1 and r["size_mb"] < reports["q8_0"]["size_mb"] < reports["f16"]["size_mb"]
    saved = json.loads((trained_run.path / "export" / "report-q4_k_m.json").read_text())
    assert saved["agreement"] == r["agreement"] and len(saved["rows"]) == 60


def test_the_chat_template_and_end_of_turn_token_travel_inside_the_file(trained_run, reports):
    meta = reports["q8_0"]["metadata"]
    assert meta["chat_template"] and meta["eos"] == "<|end|>" and "<|end|>" in meta["end_of_generation"]
    llm = export.load_gguf(trained_run.path / "export" / "model-q8_0.gguf", n_ctx=512)
    question = [{"role": "user", "content": "Extract the name, city and time from this message, one per line.\n\n"
                                            "Message: Hi, this is Nils. Could we meet in Porto at 4pm?"}]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained_run.merged_dir)
    prompt = tokenizer.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    assert export.gguf_prompt(llm, question) == prompt, "the file's template writes the tokenizer's prompt"
    assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == \
        tokenizer(prompt, add_special_tokens=False)["input_ids"], "llama.cpp tokenizes as transformers does"


def test_the_modelfile_template_writes_what_the_chat_template_writes(trained_run, reports):
    text = (trained_run.path / "export" / "Modelfile").read_text()
    assert text.startswith("FROM ./model-") and 'PARAMETER stop "<|end|>"' in text and "{{ range .Messages }}" in text
    assert "PARAMETER repeat_penalty 1\n" in text and "PARAMETER num_ctx 512\n" in text, "as the export was checked"
    assert reports["q8_0"]["modelfile_differs_on"] == []


def test_the_command_line_exports_and_reports(trained_run, reports):
    proc = subprocess.run([sys.executable, "-m", "helpers", "export", "--run-dir", str(trained_run.path), "--gguf",
                           "--quant", "f16", "--limit", "6"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "model-f16.gguf" in proc.stdout and "identical on" in proc.stdout and "chat template yes" in proc.stdout
    assert "llama.cpp split 6 of 6 into the same tokens" in proc.stdout


def test_without_llama_cpp_the_export_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(export.ExportError, match=r'pip install -e "\.\[export\]"'):
        export.require_llama_cpp()
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    with pytest.raises(export.ExportError, match=r"In a new cell run: !pip install -q llama-cpp-python==0\.3\.36"):
        export.require_llama_cpp()


def test_the_install_switch_installs_the_export_extra(monkeypatch):
    import tomllib

    from helpers.paths import REPO_ROOT

    extra = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["export"]
    assert list(export.EXPORT_REQUIREMENTS) == extra, "06's install switch installs what `.[export]` does"
    calls = []
    monkeypatch.setattr(export.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, "", ""))
    assert export.install_llama_cpp().__name__ == "llama_cpp"
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", *extra]]
    failed = subprocess.CompletedProcess([], 1, "", "Building wheel ...\nerror: no compiler")
    monkeypatch.setattr(export.subprocess, "run", lambda cmd, **kw: failed)
    with pytest.raises(export.ExportError, match="no compiler"):
        export.install_llama_cpp()


def test_wrappers_of_a_tinyllama_shaped_template_with_a_bos():
    """TinyLlama's chat template writes `eos_token` after each message; this one also opens with the BOS."""
    from transformers import AutoTokenizer

    from helpers.tiny import ensure_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model())
    tokenizer.chat_template = (
        "{{ bos_token }}{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
        "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
        "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
        "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
        "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
    wrappers = export.chat_wrappers(tokenizer)
    assert wrappers["start"] == "<s>" and wrappers["user"] == ["<|user|>\n", "<|end|>\n"]
    conversations = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Lima at noon?"}],
                     [{"role": "user", "content": "Hi"}]]
    assert export.check_wrappers(tokenizer, wrappers, conversations) == []
    modelfile = export.ollama_modelfile("model-q8_0.gguf", wrappers, ["<|end|>"], num_ctx=2048)
    assert modelfile.splitlines()[1].startswith('TEMPLATE """<s>{{ range .Messages }}{{ if eq .Role "system" }}')
    assert modelfile.splitlines()[-3:] == ["PARAMETER temperature 0", "PARAMETER repeat_penalty 1",
                                           "PARAMETER num_ctx 2048"]


class _FakeGGUF:
    """Just what `likely_cause` and `compare_with_hf` read from a llama_cpp.Llama (its answer is always "y")."""

    def __init__(self, template, tokens=None):
        self.metadata = {"tokenizer.chat_template": template} if template else {}
        self._tokens = tokens

    def token_bos(self):
        return 2

    def token_eos(self):
        return 3

    def detokenize(self, ids, special=True):
        return {2: b"<s>", 3: b"<|end|>"}[ids[0]]

    def tokenize(self, text, add_bos=False, special=True):
        return self._tokens

    def create_chat_completion(self, **kwargs):
        return {"choices": [{"message": {"content": "y"}, "finish_reason": "stop"}]}


def test_a_disagreement_is_explained_by_its_likely_cause(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": "Hi"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    stopped, cut = {"text": "x", "stopped": True}, {"text": "x", "stopped": False}
    cause = lambda llm, g, ends=True: export.likely_cause(llm, tokenizer, messages, g, ends).split(":")[0]
    assert cause(_FakeGGUF(None), stopped) == "template"
    assert cause(_FakeGGUF("{{ messages[0]['content'] }}"), stopped) == "template"
    assert cause(_FakeGGUF(tokenizer.chat_template, tokens=ids[:-1]), stopped) == "tokenizer"
    assert cause(_FakeGGUF(tokenizer.chat_template, tokens=ids), cut, ends=False) == "stop token"
    # the file does end turns: an answer that runs on is the model's, not the export's
    assert cause(_FakeGGUF(tokenizer.chat_template, tokens=ids), cut, ends=True) == "model"
    assert cause(_FakeGGUF(tokenizer.chat_template, tokens=ids), stopped) == "quantization"
    # the transformers answer was cut at max_new_tokens: a cut answer was compared, not a rounding difference
    assert export.likely_cause(_FakeGGUF(tokenizer.chat_template, tokens=ids), tokenizer, messages, stopped, True,
                               hf_stopped=False).startswith("model")


def test_the_exported_file_ends_generation_at_the_end_of_turn_token(trained_run, reports, monkeypatch):
    from transformers import AutoTokenizer

    path = trained_run.path / "export" / reports["q8_0"]["file"]
    llm, tokenizer = export.load_gguf(path), AutoTokenizer.from_pretrained(trained_run.merged_dir)
    assert export.file_ends_turns(llm, tokenizer)
    # a stop token the file does not end at (here an ordinary word) is caught
    import helpers.evaluation

    word = tokenizer("Lima", add_special_tokens=False)["input_ids"][:1]
    monkeypatch.setattr(helpers.evaluation, "stop_token_ids", lambda tok: [tokenizer.eos_token_id, *word])
    assert not export.file_ends_turns(llm, tokenizer)


def _export_seeds():
    """benchmarks/export_seeds.py, imported as a module (benchmarks/ is not a package)."""
    import importlib.util

    from helpers.paths import REPO_ROOT

    spec = importlib.util.spec_from_file_location("export_seeds", REPO_ROOT / "benchmarks" / "export_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_seed_benchmark_names_every_seed_and_level_below_its_threshold():
    bench = _export_seeds()
    level = {"agreement": 1.0, "hf_exact_match": 1.0, "gguf_exact_match": 1.0, "stopped": 1.0, "hf_stopped": 1.0}
    rows = [{"seed": 0, "levels": {"f16": dict(level), "q8_0": dict(level), "q4_k_m": dict(level, agreement=0.5)}},
            {"seed": 1, "levels": {"f16": dict(level, agreement=0.9), "q8_0": dict(level, stopped=0.95),
                                   "q4_k_m": dict(level)}}]
    quants = ["f16", "q8_0", "q4_k_m"]
    assert bench.missed(rows, quants) == ["seed 1 f16: agreement 0.90 is below 0.95",
                                          "seed 1 q8_0: 5% of GGUF answers did not stop"]  # q4_k_m: reported only
    assert bench.level_spread(rows, "f16")["agreement"] == {"min": 0.9, "median": 0.95, "max": 1.0}


def test_the_seed_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path):
    out = tmp_path / "export_seeds.json"
    rc = _export_seeds().main(["--seeds", "0", "--max-steps", "2", "--limit", "2", "--quants", "f16",
                               "--undertrained", "1", "--out", str(out)])
    record = json.loads(out.read_text())
    level = record["runs"][0]["levels"]["f16"]
    assert level["prompts"] == 2 and 0 <= level["agreement"] <= 1 and level["size_mb"] > 0
    assert set(record["spread"]) == {"f16"} and record["versions"]["llama_cpp_python"]
    assert rc == (1 if record["missed"] else 0)
    assert [u["max_steps"] for u in record["undertrained"]] == [1] and "f16" in record["undertrained"][0]["spread"]
