"""GGUF export, checked: the merged model converted by llama.cpp's own converter, quantized, run through llama.cpp's
Python binding, and compared answer for answer with the Hugging Face model it came from. Introduced in
06_inference (section 7); `python -m helpers export --run-dir DIR --gguf` is the same steps from the command line.

Everything here needs the optional `export` extra (`pip install -e ".[export]"`): `llama-cpp-python`, which
compiles llama.cpp on install. Its source distribution vendors llama.cpp's converter (`convert_hf_to_gguf.py`),
which the installed package leaves out; `converter_script` fetches that source once and keeps it in a cache.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

QUANTS = ("f16", "q8_0", "q4_k_m")
LLAMA_CPP_VERSION = "0.3.36"  # the binding and the converter must come from the same llama.cpp
INSTALL_EXPORT = 'pip install -e ".[export]"'
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py")


class ExportError(RuntimeError):
    """The export cannot go on; the message says why and what to do."""


INSTALL_EXPORT_COLAB = f"!pip install -q llama-cpp-python=={LLAMA_CPP_VERSION}"  # Colab has sentencepiece


def require_llama_cpp():
    """The `llama_cpp` module, or an ExportError with the command that installs it (in a cell, on Colab)."""
    try:
        import llama_cpp
    except ImportError:
        if "google.colab" in sys.modules:
            where = (f"In a new cell run: {INSTALL_EXPORT_COLAB}  (or set INSTALL_LLAMA_CPP = True in 06's section 7) "
                     "then run this cell again")
        else:
            where = f"From the course folder run: {INSTALL_EXPORT}"
        raise ExportError(
            f"GGUF export needs llama-cpp-python, llama.cpp's Python binding, which is an optional extra of this "
            f"course and is not installed. {where}  (it compiles llama.cpp: about 4 to 5 minutes on 2 CPU cores "
            f"the first time; pip keeps the build in its cache)") from None
    return llama_cpp


EXPORT_REQUIREMENTS = (f"llama-cpp-python=={LLAMA_CPP_VERSION}", "sentencepiece>=0.2")  # pyproject's `export` extra


def install_llama_cpp():
    """Install the `export` extra into the running kernel with pip (06's install switch; meant for Colab, where the
    course was installed without it), then return `llama_cpp`. pip compiles llama.cpp: minutes, once per runtime."""
    import importlib
    import time

    print(f"pip install {' '.join(EXPORT_REQUIREMENTS)}: the first time on a machine, pip compiles llama.cpp, about "
          "4 to 5 minutes on 2 CPU cores, and prints nothing meanwhile", flush=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *EXPORT_REQUIREMENTS],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ExportError("pip could not install llama-cpp-python; its last lines:\n  " +
                          "\n  ".join(proc.stderr.strip().splitlines()[-5:]))
    importlib.invalidate_caches()  # the kernel looked for the package before it existed
    print(f"installed in {time.perf_counter() - start:.0f} s", flush=True)
    return require_llama_cpp()


def _cache_dir() -> Path:
    root = os.environ.get("COURSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llm-finetuning-course")
    return Path(root)


def converter_script(version: str | None = None) -> Path:
    """llama.cpp's `convert_hf_to_gguf.py`, from the `llama-cpp-python` source distribution of the installed
    version (downloaded once with pip, kept in the course's cache). `LLAMA_CPP_DIR` may point at a llama.cpp
    checkout instead."""
    if os.environ.get("LLAMA_CPP_DIR"):
        script = Path(os.environ["LLAMA_CPP_DIR"]) / "convert_hf_to_gguf.py"
        if not script.exists():
            raise ExportError(f"LLAMA_CPP_DIR={os.environ['LLAMA_CPP_DIR']} has no convert_hf_to_gguf.py: point it "
                              "at a llama.cpp checkout, or unset it to use the converter of llama-cpp-python")
        return script
    version = version or require_llama_cpp().__version__
    folder = _cache_dir() / f"llama.cpp-converter-{version}"
    if not (folder / CONVERTER_PARTS[0]).exists():
        _fetch_converter(version, folder)
    return folder / CONVERTER_PARTS[0]


def _fetch_converter(version: str, folder: Path) -> None:
    """Take the converter's parts out of llama-cpp-python's source distribution: the one in $COURSE_WHEELHOUSE
    (where `tasks.py` keeps it), or downloaded with pip (about 77 MB)."""
    print(f"fetching llama.cpp's converter from llama-cpp-python {version}'s source distribution (once; kept in "
          f"{folder})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
               "-q", "-d", tmp, f"llama-cpp-python=={version}"]
        kept = Path(os.environ.get("COURSE_WHEELHOUSE") or _cache_dir() / "wheels") / \
            f"llama_cpp_python-{version}.tar.gz"
        if kept.exists():
            archives, proc = [kept], subprocess.CompletedProcess(cmd, 0)
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise ExportError(f"could not download llama-cpp-python {version}'s source distribution, which holds "
                              f"llama.cpp's converter ({' '.join(cmd[2:])} failed: "
                              f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}). Without network, set "
                              f"LLAMA_CPP_DIR to a llama.cpp checkout")
        prefix = f"{archives[0].name[:-len('.tar.gz')]}/vendor/llama.cpp/"
        staging = Path(tmp) / "converter"
        with tarfile.open(archives[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and
                       m.name[len(prefix):].split("/")[0] in CONVERTER_PARTS and (m.isfile() or m.isdir())]
            for m in members:
                m.name = m.name[len(prefix):]
            tar.extractall(staging, members=members, filter="data")
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.move(str(staging), str(folder))


def prepare_for_gguf(model_dir: Path, base_model: str) -> None:
    """Put beside the merged model what the converter reads and `save_pretrained` does not write.

    - SentencePiece's `tokenizer.model` (Llama 2, TinyLlama, the tiny model): transformers 5 saves only
      `tokenizer.json`, and without the SentencePiece file the converter guesses the merge order, so llama.cpp would
      split words differently. It is copied from the base model (its folder, or the Hub).
    - `add_bos_token` in tokenizer_config.json, as the tokenizer behaves, so llama.cpp adds a BOS exactly when
      transformers does.
    """
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "tokenizer.model").exists():
        source = _base_file(base_model, "tokenizer.model")
        if source is not None:
            shutil.copy(source, model_dir / "tokenizer.model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config_file = model_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    ids = tokenizer("x")["input_ids"]
    config["add_bos_token"] = bool(ids) and ids[0] == tokenizer.bos_token_id
    config["add_eos_token"] = bool(ids) and ids[-1] == tokenizer.eos_token_id and len(ids) > 1
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _base_file(base_model: str, name: str) -> Path | None:
    """A file of the base model, from its folder or the Hub; None if it has none."""
    if base_model == "tiny":
        from .tiny import ensure_tiny_model

        base_model = str(ensure_tiny_model())
    if Path(base_model).is_dir():
        path = Path(base_model) / name
        return path if path.exists() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(base_model, name))
    except EntryNotFoundError:
        return None


def convert_to_gguf(model_dir: Path, outfile: Path, outtype: str = "f16") -> Path:
    """Run llama.cpp's converter on a saved transformers model (weights, tokenizer, chat template into one file)."""
    Path(outfile).parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(converter_script()), str(model_dir), "--outfile", str(outfile), "--outtype", outtype]
    print("$ python", " ".join(cmd[1:]), flush=True)  # as typed in a terminal, with the converter's full path
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = [line for line in proc.stderr.strip().splitlines() if line.strip()][-3:]
        hint = ""
        if "pre-tokenizer was not recognized" in proc.stderr:
            hint = (" The converter does not know this byte-level BPE tokenizer (it recognises them by a hash of "
                    "their token ids); a model with a SentencePiece tokenizer.model, or one the converter lists, "
                    "converts.")
        elif "ModuleNotFoundError" in proc.stderr:
            hint = f" A library the converter imports is missing: {INSTALL_EXPORT} installs them."
        raise ExportError(f"llama.cpp's converter failed on {model_dir}:{hint}\n  " + "\n  ".join(last))
    return Path(outfile)


def quantize_gguf(source: Path, outfile: Path, quant: str) -> Path:
    """Quantize a GGUF file with llama.cpp's own quantizer (`llama_model_quantize`, what `llama-quantize` runs)."""
    llama_cpp = require_llama_cpp()
    ftypes = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}
    if quant not in ftypes:
        raise ExportError(f"quantization {quant!r} is not one of {', '.join(ftypes)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    params.nthread = os.cpu_count() or 1
    with _quiet():
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(outfile).encode(), ctypes.byref(params))
    if status != 0:
        raise ExportError(f"llama.cpp could not quantize {source} to {quant} (status {status})")
    return Path(outfile)


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of a GGUF file are stored in each type (F32, F16, Q8_0, Q4_K, ...), read with llama.cpp's
    own `gguf` reader, which comes with the converter (already fetched once a file has been converted)."""
    from collections import Counter

    reader_dir = str(converter_script().parent / "gguf-py")
    if reader_dir not in sys.path:
        sys.path.insert(0, reader_dir)
    from gguf import GGUFReader

    return dict(Counter(t.tensor_type.name for t in GGUFReader(str(path)).tensors).most_common())


def _quiet():
    """llama.cpp writes its log straight to the process's stderr; keep it for errors only."""
    from llama_cpp._utils import suppress_stdout_stderr

    return suppress_stdout_stderr(disable=False)


def export_gguf(model_dir: Path, export_dir: Path, quant: str, base_model: str) -> Path:
    """`export/model-<quant>.gguf` from a merged model: convert to f16, then quantize (q8_0, q4_k_m)."""
    if quant not in QUANTS:
        raise ExportError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    prepare_for_gguf(model_dir, base_model)
    f16 = export_dir / "model-f16.gguf"
    weights = max(p.stat().st_mtime for p in Path(model_dir).glob("*.safetensors"))
    if not f16.exists() or f16.stat().st_mtime < weights:  # converted from these weights already
        convert_to_gguf(model_dir, f16, "f16")
    return f16 if quant == "f16" else quantize_gguf(f16, export_dir / f"model-{quant}.gguf", quant)


# ---- the Ollama Modelfile ------------------------------------------------------------------------------------------

_SENTINELS = {"system": "\x01SYSTEM\x01", "user": "\x01USER\x01", "user2": "\x01USER2\x01",
              "assistant": "\x01ASSISTANT\x01"}


def chat_wrappers(tokenizer) -> dict[str, str]:
    """The text the chat template writes around each role's message, read off rendered conversations: what an Ollama
    TEMPLATE must write. `check_wrappers` proves them on real conversations."""
    s = _SENTINELS

    def render(messages, generation_prompt=False):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    user, user2, assistant = ({"role": "user", "content": s["user"]}, {"role": "user", "content": s["user2"]},
                              {"role": "assistant", "content": s["assistant"]})
    one = render([user])
    generation = render([user], True)[len(one):]
    start_user, user_end = one.split(s["user"])
    turns = render([user, assistant, user2])
    assistant_start_end = turns.split(s["user"])[1].split(s["user2"])[0]
    between, after = assistant_start_end.split(s["assistant"])
    assistant_start = between[len(user_end):]
    wrappers = {"start": "", "user": ["", user_end], "assistant": [assistant_start, ""], "generation": generation}
    # what follows an assistant message and what opens a user one are written back to back: split them where the
    # first user message's opening, seen at the start of the conversation, begins
    for cut in range(len(after) + 1):
        if start_user.endswith(after[cut:]):
            wrappers["assistant"][1], wrappers["user"][0] = after[:cut], after[cut:]
            wrappers["start"] = start_user[:len(start_user) - len(after[cut:])]
            break
    try:
        with_system = render([{"role": "system", "content": s["system"]}, user])
        head, rest = with_system.split(s["system"])
        system_end = rest.split(s["user"])[0][:-len(wrappers["user"][0]) or None]
        wrappers["system"] = [head[len(wrappers["start"]):], system_end]
    except Exception:  # a template without system messages
        pass
    return wrappers


def render_with_wrappers(wrappers: dict, messages: list[dict], generation_prompt: bool = True) -> str:
    """What the Modelfile's TEMPLATE writes for these messages (the same loop, in Python)."""
    text = wrappers["start"]
    for m in messages:
        before, after = wrappers[m["role"]]
        text += before + m["content"] + after
    return text + (wrappers["generation"] if generation_prompt else "")


def check_wrappers(tokenizer, wrappers: dict, conversations: list[list[dict]]) -> list[int]:
    """The conversations (indices) for which the TEMPLATE would write something other than the chat template."""
    return [i for i, messages in enumerate(conversations)
            if render_with_wrappers(wrappers, messages) != tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True)]


def ollama_modelfile(gguf_name: str, wrappers: dict, stop: list[str], num_ctx: int | None = None) -> str:
    """An Ollama Modelfile: the GGUF file, a TEMPLATE (Go template syntax) that writes what the chat template
    writes, the end-of-turn tokens as stop parameters, and the decoding the export was checked with: greedy, with no
    repetition penalty (Ollama's default, 1.1, penalises the message's words that an extraction must copy), in the
    context the model was trained for."""
    branches = "".join(f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{wrappers[role][0]}'
                       f'{{{{ .Content }}}}{wrappers[role][1]}'
                       for i, role in enumerate(r for r in ("system", "user", "assistant") if r in wrappers))
    template = f"{wrappers['start']}{{{{ range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{wrappers['generation']}"
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f'PARAMETER stop "{token}"' for token in stop]
    lines += ["PARAMETER temperature 0", "PARAMETER repeat_penalty 1"]
    lines += [f"PARAMETER num_ctx {num_ctx}"] if num_ctx else []
    return "\n".join(lines) + "\n"


# ---- verification: the GGUF model against the Hugging Face model --------------------------------------------------

def load_gguf(path: Path, n_ctx: int = 2048):
    """The GGUF model in llama.cpp's Python binding, quietly, on the CPU (all its threads), deterministic."""
    llama_cpp = require_llama_cpp()
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=os.cpu_count() or 1, seed=0, verbose=False)


def gguf_reply(llm, messages: list[dict], max_tokens: int) -> dict:
    """One greedy chat answer from the GGUF model, through the chat template stored in the file; `stopped` is
    True when the model ended the answer itself (end-of-turn or EOS token), False when `max_tokens` cut it."""
    out = llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=max_tokens, repeat_penalty=1.0)
    choice = out["choices"][0]
    return {"text": (choice["message"]["content"] or "").strip(), "stopped": choice["finish_reason"] == "stop"}


def gguf_prompt(llm, messages: list[dict]) -> str:
    """The prompt the GGUF model's own chat template writes (what `create_chat_completion` sends)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return ""
    bos = llm.detokenize([llm.token_bos()], special=True).decode(errors="replace")
    eos = llm.detokenize([llm.token_eos()], special=True).decode(errors="replace")
    return Jinja2ChatFormatter(template=template, bos_token=bos, eos_token=eos)(messages=messages).prompt


def prompt_checks(llm, tokenizer, messages: list[dict]) -> dict:
    """Does the file's chat template write the prompt transformers writes, and does llama.cpp split that prompt into
    the same tokens? Both must hold for the GGUF model to see what the fine-tuned model was trained on."""
    hf_prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    hf_ids = tokenizer(hf_prompt, add_special_tokens=False)["input_ids"]
    return {"template": gguf_prompt(llm, messages) == hf_prompt,
            "tokens": llm.tokenize(hf_prompt.encode(), add_bos=False, special=True) == hf_ids}


def file_ends_turns(llm, tokenizer) -> bool:
    """Does the GGUF file end generation at every token transformers stops at (EOS and the end-of-turn token)?"""
    from .evaluation import stop_token_ids

    llama_cpp = require_llama_cpp()
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    for tid in stop_token_ids(tokenizer):
        ids = llm.tokenize(tokenizer.convert_ids_to_tokens(tid).encode(), add_bos=False, special=True)
        if len(ids) != 1 or not llama_cpp.llama_vocab_is_eog(vocab, ids[0]):
            return False
    return True


def likely_cause(llm, tokenizer, messages: list[dict], gguf: dict, ends_turns: bool | None = None,
                 hf_stopped: bool = True) -> str:
    """Why a GGUF answer differs from the Hugging Face one, checked in the order things break at export.
    `ends_turns`: `file_ends_turns(llm, tokenizer)`, when the caller has it already; `hf_stopped`: whether the
    transformers model ended its answer itself."""
    if not llm.metadata.get("tokenizer.chat_template"):
        return "template: the GGUF file holds no chat template, so the prompt is not the format the model learned"
    checks = prompt_checks(llm, tokenizer, messages)
    if not checks["template"]:
        return "template: the file's chat template writes a different prompt from the tokenizer's"
    if not checks["tokens"]:
        return "tokenizer: llama.cpp splits the prompt into different tokens from transformers"
    if not gguf["stopped"]:
        if not (file_ends_turns(llm, tokenizer) if ends_turns is None else ends_turns):
            return "stop token: the answer ran to max_tokens; the end-of-turn token is not an end-of-generation token"
        return ("model: the answer ran to max_tokens although the file ends generation at the end-of-turn token, so "
                "the model itself did not end it: an under-trained model, or training answers that do not end with "
                "the end-of-turn token")
    if not hf_stopped:
        return ("model: the transformers answer ran to max_new_tokens, so a cut answer was compared: the model "
                "itself did not end it (an under-trained model, or training answers without the end-of-turn token)")
    return ("quantization: same prompt and tokens, so rounding changed a close choice of token (the file's fewer "
            "bits, or, for f16, the other machine's arithmetic: the transformers model may run in fp16 on a GPU)")


def compare_with_hf(llm, tokenizer, rows: list[dict], hf_answers: list[str], max_tokens: int,
                    progress: bool = True, hf_stopped: list[bool] | None = None) -> dict:
    """The same held-out prompts answered by the GGUF model: agreement with the Hugging Face answers, the task
    metric of each, whether every GGUF answer stopped by itself, the likely cause of each disagreement, and the
    prompts the file writes or tokenizes differently (a broken export can still agree where the model is sure).
    `hf_stopped`: from `generate_answers(..., stopped=[])`, whether each transformers answer ended by itself."""
    from tqdm.auto import tqdm

    from .data import prompt_of, reference_of
    from .evaluation import score_answers

    answers = [gguf_reply(llm, prompt_of(r), max_tokens) for r in tqdm(rows, desc="GGUF answers",
                                                                       disable=not progress, leave=False)]
    texts = [a["text"] for a in answers]
    references = [reference_of(r) for r in rows]
    rows_out = [{"hf": h, "gguf": g["text"], "agree": h == g["text"], "stopped": g["stopped"]}
                for h, g in zip(hf_answers, answers)]
    ends_turns = file_ends_turns(llm, tokenizer) if not all(g["stopped"] for g in answers) else None
    hf_ended_all = hf_stopped if hf_stopped is not None else [True] * len(rows)  # not given: assume it stopped
    for row, r, g, hf_ended in zip(rows_out, rows, answers, hf_ended_all):
        if not row["agree"] or not row["stopped"]:
            row["cause"] = likely_cause(llm, tokenizer, prompt_of(r), g, ends_turns, hf_ended)
    checks = [prompt_checks(llm, tokenizer, prompt_of(r)) for r in rows]  # on every prompt, agreeing or not
    n = len(rows_out)
    return {"n": n, "agreement": sum(r["agree"] for r in rows_out) / n,
            "template_differs_on": [i for i, c in enumerate(checks) if not c["template"]],
            "tokens_differ_on": [i for i, c in enumerate(checks) if not c["tokens"]],
            "stopped": sum(r["stopped"] for r in rows_out) / n,
            "hf_stopped": None if hf_stopped is None else sum(hf_stopped) / n,
            "hf_exact_match": score_answers(hf_answers, references)["exact_match"],
            "gguf_exact_match": score_answers(texts, references)["exact_match"], "rows": rows_out}


def gguf_metadata(llm) -> dict:
    """What travelled into the file: the chat template, the BOS/EOS tokens and every end-of-generation token."""
    llama_cpp = require_llama_cpp()
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    piece = lambda t: llm.detokenize([t], special=True).decode(errors="replace")
    return {"chat_template": bool(llm.metadata.get("tokenizer.chat_template")),
            "bos": piece(llm.token_bos()), "eos": piece(llm.token_eos()),
            "end_of_generation": [piece(t) for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]}


def merged_model_dir(cfg, run) -> Path:
    """The plain model to convert: 06's merged/ folder (merged now if it is missing or older than the adapter), or
    run/model after full fine-tuning."""
    from .inference import merge_adapter

    if cfg.method == "full":
        return run.model_dir
    weights = list(run.merged_dir.glob("*.safetensors"))
    adapter = run.adapter_dir / "adapter_model.safetensors"
    if not weights or min(w.stat().st_mtime for w in weights) < adapter.stat().st_mtime:
        print(f"merging the adapter into the base model: {run.merged_dir}", flush=True)
        merge_adapter(cfg, run)
    return run.merged_dir


def write_modelfile(tokenizer, gguf_path: Path, conversations: list[list[dict]], n_ctx: int | None = None) -> dict:
    """`export/Modelfile` for the GGUF file, with its TEMPLATE checked against the chat template on the
    conversations; returns the wrappers and the conversations it would render differently (none, when it is right)."""
    from .evaluation import stop_token_ids

    wrappers = chat_wrappers(tokenizer)
    stop = [tokenizer.convert_ids_to_tokens(t) for t in stop_token_ids(tokenizer)]
    path = Path(gguf_path).parent / "Modelfile"
    path.write_text(ollama_modelfile(Path(gguf_path).name, wrappers, stop, n_ctx), encoding="utf-8")
    return {"path": path, "wrappers": wrappers, "stop": stop,
            "differs_on": check_wrappers(tokenizer, wrappers, conversations)}


def export_run(cfg, run, quant: str = "q8_0", limit: int | None = None, progress: bool = True) -> dict:
    """The whole of 06's export section, headless (`python -m helpers export --gguf`): merge, convert, quantize,
    write the Modelfile, answer the test prompts with both models and compare. Saves export/report-<quant>.json."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .data import load_splits, prompt_of
    from .evaluation import generate_answers

    require_llama_cpp()
    model_dir = merged_model_dir(cfg, run)
    export_dir = run.path / "export"
    gguf_path = export_gguf(model_dir, export_dir, quant, cfg.model.model_id)
    rows = list(load_splits(cfg, run)["test"])[:limit]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    n_ctx = min(getattr(model.config, "max_position_embeddings", 2048), 4096)
    modelfile = write_modelfile(tokenizer, gguf_path, [prompt_of(r) for r in rows], n_ctx)
    hf_stopped = []
    hf_answers = generate_answers(model, tokenizer, rows, cfg, progress=progress, stopped=hf_stopped)
    llm = load_gguf(gguf_path, n_ctx=n_ctx)
    report = compare_with_hf(llm, tokenizer, rows, hf_answers, max_tokens=cfg.eval.max_new_tokens * 2,
                             progress=progress, hf_stopped=hf_stopped)
    report.update({"quant": quant, "file": gguf_path.name, "size_mb": round(gguf_path.stat().st_size / 1e6, 2),
                   "tensor_types": tensor_types(gguf_path),
                   "metadata": gguf_metadata(llm), "modelfile_differs_on": modelfile["differs_on"]})
    (export_dir / f"report-{quant}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n",
                                                     encoding="utf-8")
    return report
