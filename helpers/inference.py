"""Use the fine-tuned model: load base + adapter, generate, stream, look at the next-token probabilities, merge,
push to the Hub. Introduced in 06_inference."""

from __future__ import annotations

from contextlib import contextmanager

from .config import RunConfig
from .rundir import RunDir


def load_finetuned(cfg: RunConfig, run: RunDir):
    """The base model with the run's LoRA adapter on top (a peft `PeftModel`), and the tokenizer: 06's first cell.
    After full fine-tuning (cfg.method = "full") there is no adapter: the saved model itself is loaded."""
    from peft import PeftModel

    from .model import load_model_and_tokenizer
    from .train import ensure_adapter

    ensure_adapter(cfg, run)
    if cfg.method == "full":
        return load_full_model(cfg, run.model_dir)
    model, tokenizer = load_model_and_tokenizer(cfg)
    model = PeftModel.from_pretrained(model, str(run.adapter_dir))
    model.eval()
    return model, tokenizer


@contextmanager
def base_model_of(model, cfg: RunConfig):
    """The model before fine-tuning, for a comparison (06). On a peft model that is `model.disable_adapter()`: the
    same weights with LoRA switched off. Full fine-tuning changed the weights themselves, so the base model is loaded
    again, as in 02, and freed afterwards."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
        return
    from .model import load_model_and_tokenizer

    base, _ = load_model_and_tokenizer(cfg)
    try:
        yield base.eval()
    finally:
        del base


def load_full_model(cfg: RunConfig, folder):
    """A fully fine-tuned model and its tokenizer from their folder, the way 02 loads a base model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .model import ensure_pad_token, explain_load_errors

    with explain_load_errors(str(folder)):
        tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False))
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=getattr(torch, cfg.model.dtype), attn_implementation="sdpa", use_safetensors=True,
            device_map={"": 0} if torch.cuda.is_available() else None, trust_remote_code=False)
    model.generation_config.pad_token_id = model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def generation_settings(temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 64,
                        repetition_penalty: float = 1.0) -> dict:
    """Keyword arguments for `generate`: temperature 0 means greedy (deterministic). Impossible values are refused."""
    checks = [("temperature", temperature, temperature >= 0, "0 (greedy) or more, e.g. 0.7"),
              ("top_p", top_p, 0 < top_p <= 1, "above 0 and at most 1, e.g. 0.9"),
              ("max_new_tokens", max_new_tokens, int(max_new_tokens) == max_new_tokens >= 1, "a whole number >= 1"),
              ("repetition_penalty", repetition_penalty, repetition_penalty > 0, "above 0: 1 is none, 1.1-1.3 usual")]
    for name, value, ok, allowed in checks:
        if not ok:
            raise ValueError(f"{name} = {value!r} is not allowed: use {allowed}")
    settings = {"max_new_tokens": int(max_new_tokens), "repetition_penalty": float(repetition_penalty)}
    if temperature > 0:
        settings.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
    else:
        settings.update(do_sample=False)
    return settings


def _generate_kwargs(model, tokenizer, messages: list[dict], settings: dict) -> dict:
    """Everything `generate` needs for one reply: the templated prompt, the settings, and where to stop."""
    from .evaluation import stop_token_ids

    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True).to(model.device)
    return dict(**enc, eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id,
                **generation_settings(**settings))


def reply(model, tokenizer, messages: list[dict], **settings) -> str:
    """One assistant reply to a conversation, stopping at the end-of-turn token."""
    import torch

    kwargs = _generate_kwargs(model, tokenizer, messages, settings)
    with torch.no_grad():
        out = model.generate(**kwargs)
    return tokenizer.decode(out[0, kwargs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def stream_reply(model, tokenizer, messages: list[dict], info: dict | None = None, **settings):
    """Yield the reply piece by piece as it is generated (TextIteratorStreamer, generation in a thread).

    When the stream ends, `info` (if given) receives `prompt_tokens`, `new_tokens` and `stopped` (True when the reply
    ended at the end-of-turn token, False when `max_new_tokens` cut it).
    """
    from threading import Thread

    from transformers import TextIteratorStreamer

    from .evaluation import stop_token_ids

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = _generate_kwargs(model, tokenizer, messages, settings)
    result = {}

    def generate() -> None:
        try:
            result["out"] = model.generate(**kwargs, streamer=streamer)
        except BaseException as e:  # without this the loop below would wait forever for text that never comes
            result["error"] = e
            streamer.end()

    thread = Thread(target=generate, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if "error" in result:
        raise result["error"]
    if info is not None:
        prompt_tokens = kwargs["input_ids"].shape[1]
        new = result["out"][0, prompt_tokens:].tolist()
        info.update(prompt_tokens=prompt_tokens, new_tokens=len(new),
                    stopped=bool(new) and new[-1] in stop_token_ids(tokenizer))


def next_token_logits(model, tokenizer, messages: list[dict], answer_so_far: str = ""):
    """The model's scores (logits) for every vocabulary token as the next token of the reply, after `answer_so_far`."""
    import torch

    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + answer_so_far
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids.to(model.device)
    with torch.no_grad():
        return model(input_ids=ids).logits[0, -1].float().cpu()


def top_p_survivors(logits, top_p: float):
    """Which tokens `generate(top_p=...)` may still draw from: a boolean mask over the vocabulary.

    It asks transformers' own `TopPLogitsWarper`, the filter `generate` applies, rather than re-implementing it.
    """
    from transformers import TopPLogitsWarper

    filtered = TopPLogitsWarper(top_p=top_p)(None, logits[None].clone())[0]
    return filtered > float("-inf")


def top_p_table(tokenizer, logits, top_ps=(1.0, 0.9, 0.5), k: int = 8) -> list[dict]:
    """The k most likely next tokens: probability, running total, and whether each top-p keeps it."""
    probs = logits.softmax(-1)
    kept = {p: top_p_survivors(logits, p) for p in top_ps}
    top = probs.topk(k)
    rows, total = [], 0.0
    for prob, idx in zip(top.values.tolist(), top.indices.tolist()):
        total += prob
        rows.append({"token": tokenizer.decode([idx]), "probability": prob, "cumulative": total,
                     **{f"top_p={p}": bool(kept[p][idx]) for p in top_ps}})
    return rows


def answer_token_choices(model, tokenizer, messages: list[dict], answer: str, top_p: float = 0.9) -> list[dict]:
    """For each token of `answer`: its probability, and how many tokens top-p would leave to sample from there."""
    import torch

    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    # the answer, then the token that ends the turn: stopping is a choice the model makes too
    answer_ids = tokenizer(answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    with torch.no_grad():  # one forward pass scores every position of the answer at once (teacher forcing)
        logits = model(input_ids=torch.tensor([prompt_ids + answer_ids], device=model.device)).logits[0].float().cpu()
    rows = []
    for i, token_id in enumerate(answer_ids):
        scores = logits[len(prompt_ids) - 1 + i]
        rows.append({"token": tokenizer.decode([token_id]), "probability": scores.softmax(-1)[token_id].item(),
                     "candidates": int(top_p_survivors(scores, top_p).sum())})
    return rows


def merge_adapter(cfg: RunConfig, run: RunDir):
    """Fold the adapter into the base weights (W + BA) and save a plain model, safetensors, to run/merged: 06's
    merge cell, as a function.

    Merging needs full-precision base weights: a 4-bit base is loaded again unquantized (in the profile's compute
    dtype) for the merge, because adding BA into 4-bit weights would round the update away.
    """
    from peft import PeftModel

    from .model import load_model_and_tokenizer

    if cfg.method == "full":
        raise ValueError(f"this run was fully fine-tuned (cfg.method = 'full'): there is no adapter to merge, and "
                         f"{run.model_dir} already holds the whole model; use that folder where 06 uses merged/")
    unquantized = cfg.copy()
    unquantized.model.quantization = "none"
    base, tokenizer = load_model_and_tokenizer(unquantized)
    merged = PeftModel.from_pretrained(base, str(run.adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(run.merged_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(run.merged_dir))  # the chat template travels with the model
    return merged, tokenizer


def push_to_hub(folder, repo_id: str, token: str | None = None, private: bool = True) -> str:
    """Upload a saved model folder (merged model or adapter, with its tokenizer and chat template) to the Hub.

    Returns what happened in one sentence: the repository's address, or why the push was skipped (no repo id, no
    token, offline). The token comes from `hf_token()` (Colab secrets or HF_TOKEN) and never appears in the result
    or in an error message. Private by default: making a model public is a decision, not a default.
    """
    from pathlib import Path

    from .machine import hf_token

    folder, repo_id = Path(folder), (repo_id or "").strip()
    if not repo_id:
        return ("skipped: no repository id. Set HUB_REPO_ID to 'your-name/model-name' (and add a write token as "
                "HF_TOKEN in Colab Secrets, or in the HF_TOKEN environment variable) to push.")
    token = token or hf_token()
    if not token:
        return (f"skipped: no Hugging Face token, so nothing was pushed to {repo_id}. Add a token with write access "
                "as HF_TOKEN in Colab Secrets (the key icon on the left), or set the HF_TOKEN environment variable.")
    if repo_id.count("/") != 1 or " " in repo_id:
        raise ValueError(f"HUB_REPO_ID = {repo_id!r} is not a repository id: use 'your-name/model-name'")
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return f"skipped: HF_HUB_OFFLINE is set (offline mode), so nothing was pushed to {repo_id}."
    if not (folder / "config.json").exists() and not (folder / "adapter_config.json").exists():
        raise FileNotFoundError(f"{folder} holds no saved model (no config.json or adapter_config.json): run the "
                                "merge cell of 06_inference first, or push the run's adapter/ folder")
    config = folder / "tokenizer_config.json"
    if not (folder / "chat_template.jinja").exists() and "chat_template" not in (
            config.read_text(encoding="utf-8") if config.exists() else ""):
        print(f"warning: {folder} has no chat_template.jinja: users of {repo_id} will not know the prompt format")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                          commit_message="Upload from the LLM fine-tuning course (06_inference)")
    except Exception as e:  # a refused token, no write access, a name taken: say so without ever echoing the token
        message = f"{type(e).__name__}: {e}".replace(token, "<token>")
        raise RuntimeError(f"pushing {folder} to {repo_id} failed ({message[:400]}). Check that the token has "
                           "write access and that the repository name is yours.") from None
    return f"pushed {folder.name}/ to {url} ({'private' if private else 'public'})"


MERGE_DESTINATIONS = ("run", "local")


def merged_destination(run: RunDir, where: str = "run", folder: str = "merged"):
    """Where 06 writes the merged model: "run" is run/merged (on Google Drive when the run directory is there: kept
    across sessions, but a 1.1B model is 2.2 GB of your Drive quota and takes minutes to write); "local" is this
    machine's own disk (/content on Colab: fast, free, lost with the runtime). The Hub is section 6's push.
    `folder="export"` is where its GGUF files go, by the same choice."""
    import tempfile
    from pathlib import Path

    from .machine import in_colab

    if where not in MERGE_DESTINATIONS:
        raise ValueError(f"WRITE_MERGED_TO = {where!r}: choose 'run' (the run directory) or 'local' (this machine's "
                         "disk); to put the model on the Hugging Face Hub, push it in section 6")
    if where == "run":
        return run.path / folder
    return Path("/content" if in_colab() else tempfile.gettempdir()) / f"{run.path.name}-{folder}"
