"""Load, check, split and save a chat dataset. Introduced in 01_dataset_prep.

The course's internal form is the chat form TRL understands: one `messages` list per row, each message a dict with
`role` ("system", "user" or "assistant") and `content` (text), ending with the assistant's reply.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import RunConfig
from .paths import REPO_ROOT
from .rundir import RunDir

ROLES = ("system", "user", "assistant")
SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """A dataset problem, reported as FILE:N: what is wrong, and how to fix it."""


def resolve_dataset(source: str) -> Path | str:
    """A local path (relative to the working folder or to the course folder) if one exists, else a Hub id."""
    for base in (Path.cwd(), REPO_ROOT):
        candidate = (base / source).expanduser()
        if candidate.exists():
            return candidate.resolve()
    return source


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a broken line is reported with its number, not as a raw traceback."""
    rows, problems = [], []
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno}); each line must be one "
                                "complete JSON object")
    if problems:
        raise DataError("\n".join(problems[:20]))
    return rows


def check_chat_rows(rows: list[dict], where: str) -> None:
    """Check every row is a chat ending with an assistant reply; raise one DataError listing every problem."""
    problems = []
    for n, row in enumerate(rows, start=1):
        problems += [f"{where}:{n}: {p}" for p in _row_problems(row)]
    if not rows:
        problems.append(f"{where}: no rows; the file is empty")
    if problems:
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError("\n".join(problems[:20]) + more)


def _row_problems(row) -> list[str]:
    if not isinstance(row, dict) or "messages" not in row:
        keys = list(row) if isinstance(row, dict) else type(row).__name__
        return [f"expected an object with a 'messages' list, found {keys}; convert the row to chat form"]
    msgs = row["messages"]
    if not isinstance(msgs, list) or not msgs:
        return ["'messages' must be a non-empty list of {'role': ..., 'content': ...} objects"]
    problems = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            problems.append(f"message {i} must have a 'role' in {ROLES} and a text 'content', found {m!r:.80}")
        elif not m["content"].strip():
            problems.append(f"message {i} ({m['role']}) has empty content; write the text or drop the message")
    if not problems and msgs[-1]["role"] != "assistant":
        problems.append("the last message must be the assistant's reply (the text the model learns to write)")
    return problems


def load_raw_splits(source: str) -> dict[str, list[dict]]:
    """The dataset's own splits as lists of rows: a folder of JSONL files, one JSONL file, or a Hub dataset id."""
    resolved = resolve_dataset(source)
    if isinstance(resolved, Path):
        files = {p.stem: p for p in sorted(resolved.glob("*.jsonl"))} if resolved.is_dir() else {"train": resolved}
        if "train" not in files:
            raise DataError(f"{resolved}: expected a train.jsonl file (and optionally test.jsonl) in this folder")
        splits = {name: read_jsonl(path) for name, path in files.items()}
        for name, rows in splits.items():
            check_chat_rows(rows, str(files[name]))
        return splits
    from datasets import load_dataset  # a Hub id: same checks on what arrives

    try:
        ds = load_dataset(resolved)
    except Exception as e:  # network down, id misspelt, gated dataset
        raise DataError(f"could not load the dataset {source!r} from the Hugging Face Hub ({type(e).__name__}); "
                        "check the id, your network, or give a local folder or .jsonl file instead") from None
    splits = {name: list(ds[name]) for name in ds}
    for name, rows in splits.items():
        check_chat_rows(rows, f"{source}[{name}]")
    return splits


def prepare_splits(cfg: RunConfig, run: RunDir) -> dict[str, list[dict]]:
    """Train / validation / test with a fixed seed, saved as JSONL in the run directory."""
    import random

    raw = load_raw_splits(cfg.data.dataset)
    train = list(raw["train"])
    random.Random(cfg.data.seed).shuffle(train)
    n_val = cfg.data.validation_size
    test = raw.get("test") or raw.get("validation")
    if test is None:  # no held-out split shipped: cut one from train as well
        test, train = train[:cfg.data.test_size], train[cfg.data.test_size:]
    if len(train) <= n_val:
        raise DataError(f"{cfg.data.dataset}: only {len(train)} training rows, but validation_size is {n_val}; "
                        "lower cfg.data.validation_size or add rows")
    splits = {"train": train[n_val:], "validation": train[:n_val], "test": test[:cfg.data.test_size]}
    run.data_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with open(run.data_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return splits


def load_splits(cfg: RunConfig, run: RunDir):
    """The run's prepared splits as a `datasets.DatasetDict`; prepared now if 01_dataset_prep has not run."""
    from datasets import Dataset, DatasetDict

    if not all((run.data_dir / f"{s}.jsonl").exists() for s in SPLITS):
        print(f"No prepared data in {run.data_dir}: preparing it now from {cfg.data.dataset} "
              "(what 01_dataset_prep does).")
        prepare_splits(cfg, run)
    return DatasetDict({s: Dataset.from_list(read_jsonl(run.data_dir / f"{s}.jsonl")) for s in SPLITS})


def prompt_of(row: dict) -> list[dict]:
    """The conversation up to (not including) the final assistant reply: what the model is asked."""
    return row["messages"][:-1]


def reference_of(row: dict) -> str:
    """The final assistant reply: the answer the model should give."""
    return row["messages"][-1]["content"]


def has_generation_markers(tokenizer) -> bool:
    """Whether the chat template marks assistant turns with {% generation %}, which assistant_only_loss needs."""
    return "{% generation %}" in (tokenizer.chat_template or "")


def to_sft_format(ds, tokenizer):
    """What SFTTrainer trains on, with the loss on the answer only.

    With {% generation %} markers in the chat template: `messages` as they are, plus `assistant_only_loss=True`.
    Without them (most Hub chat templates, TinyLlama's included): a `prompt` / `completion` pair, and TRL's
    completion-only loss does the masking. Either way the prompt's tokens carry no loss.
    """
    if has_generation_markers(tokenizer):
        return ds
    return ds.map(lambda row: {"prompt": prompt_of(row), "completion": row["messages"][-1:]},
                  remove_columns=["messages"])


def token_lengths(rows: list[dict], tokenizer) -> list[int]:
    """Tokens per example after the chat template: what max_length is compared with."""
    return [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
            for r in rows]


def loss_mask_tokens(tokenizer, messages: list[dict]) -> list[tuple[str, bool]]:
    """Each token of the templated conversation, and whether the loss is computed on it.

    With {% generation %} markers the template itself says which tokens are the assistant's; otherwise everything
    after the prompt (the conversation minus its last reply, plus the generation prompt) is the completion.
    """
    if has_generation_markers(tokenizer):
        enc = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = enc["input_ids"], enc["assistant_masks"]
    else:
        ids = tokenizer.apply_chat_template(messages, return_dict=True)["input_ids"]
        n_prompt = len(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                                     return_dict=True)["input_ids"])
        mask = [0] * n_prompt + [1] * (len(ids) - n_prompt)
    return [(tokenizer.decode([i]), bool(m)) for i, m in zip(ids, mask)]


def render_loss_mask(pieces: list[tuple[str, bool]]) -> str:
    """Plain-text view: trained tokens inside [[ ]], the rest as they are."""
    out, inside = [], False
    for text, trained in pieces:
        if trained != inside:
            out.append("[[" if trained else "]]")
            inside = trained
        out.append(text)
    return "".join(out) + ("]]" if inside else "")
