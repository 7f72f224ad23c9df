"""Load any dataset into the course's chat form, clean it, split it and save it. Introduced in 01_dataset_prep.

The course's internal form is the chat form TRL understands: one `messages` list per row, each message a dict with
`role` ("system", "user" or "assistant") and `content` (text), ending with the assistant's reply. `formats.py`
reads and checks every supported file format and converts it to this form; this module takes it from there.
Preference pairs (for DPO) are read by `read_preference_dataset` as TRL's rows {"prompt", "chosen", "rejected"}, each a
list of messages; the SFT loaders refuse them, and `read_preference_dataset` refuses SFT data, each in one line.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .config import RunConfig
from .formats import (EXTENSIONS, FIELDS, GROUP_FIELD, MESSAGE_FIELDS, DataError, ValidationReport, _n, reply_text,
                      validate_file, validate_records)
from .paths import REPO_ROOT
from .rundir import RunDir

SPLITS = ("train", "validation", "test")
SPLIT_FILE_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
                    "dev": "validation", "test": "test"}

def resolve_dataset(source: str) -> Path | str:
    """A local path (relative to the working folder or to the course folder) if one exists, else a Hub id."""
    if Path(source).expanduser().exists():
        return Path(source).expanduser()
    if (REPO_ROOT / source).exists():
        return REPO_ROOT / source
    if Path(source).suffix.lower() in EXTENSIONS or source.startswith((".", "/", "~")):
        where = Path.cwd() if Path.cwd() == REPO_ROOT else f"{Path.cwd()} or from the course folder {REPO_ROOT}"
        raise DataError(f"{source}: no such file or folder; check the path (a relative path starts from {where})")
    return source


def split_files(folder: Path) -> dict[str, Path]:
    """train / validation / test files in a folder, in any supported format (valid/val/dev count as validation)."""
    files = {}
    for path in sorted(folder.iterdir()):
        split = SPLIT_FILE_NAMES.get(path.stem.lower())
        if split and path.suffix.lower() in EXTENSIONS:
            if split in files:
                raise DataError(f"{folder}: two files for the {split} split ({files[split].name}, {path.name}); "
                                "keep one")
            files[split] = path
    if "train" not in files:
        raise DataError(f"{folder}: no training file; name it train.jsonl (or .json, .csv, .parquet), with "
                        "optional validation.* and test.* beside it")
    return files


def dataset_reports(source: str, fmt: str | None = None,
                    mapping: dict | str | None = None) -> dict[str, ValidationReport]:
    """What the checks found in every split of a dataset (a folder of split files, one file, or a Hub id)."""
    resolved = resolve_dataset(source)
    if isinstance(resolved, str):
        reports = read_hub_dataset(resolved, fmt, mapping)
    else:
        files = split_files(resolved) if resolved.is_dir() else {"train": resolved}
        reports = {split: validate_file(path, fmt, mapping) for split, path in files.items()}
    return {s: reports[s] for s in SPLITS if s in reports}


def read_dataset(source: str, fmt: str | None = None, mapping: dict | str | None = None) -> dict[str, ValidationReport]:
    """Every split of a dataset, read, checked and converted (see `dataset_reports`).

    Raises one DataError listing every problem in every split (FILE:N: what is wrong, and how to fix it), or, for
    preference pairs, one line saying that they are data for preference tuning.
    """
    reports = dataset_reports(source, fmt, mapping)
    pairs = next((r for r in reports.values() if r.kind == "preference"), None)
    if pairs:  # before the problems: a pair file is the wrong data for SFT, however well formed
        layout = "/".join(f for f in FIELDS[pairs.format] if f != "system")
        raise DataError(f"{pairs.source} holds {_n(pairs.records, 'preference pair')} ({layout}): that is data for "
                        "preference tuning (notebook 08, python -m helpers dpo); supervised fine-tuning needs "
                        "demonstrations (one reply per prompt). To fine-tune on the chosen replies, convert each pair "
                        'to {"messages": prompt + chosen}.')
    return _raise_problems(reports)


def read_preference_dataset(source: str, fmt: str | None = None,
                            mapping: dict | str | None = None) -> dict[str, ValidationReport]:
    """Every split of a preference dataset (a folder of split files, one file, or a Hub id), read and checked: rows
    {"prompt", "chosen", "rejected"}, each a list of messages (see `formats.to_pair`).

    Raises one DataError listing every problem, or one line when the data holds SFT examples instead of pairs.
    """
    reports = dataset_reports(source, fmt, mapping)
    sft = next((r for r in reports.values() if r.format and r.kind == "sft"), None)
    if sft:
        raise DataError(f"{sft.source} holds {_n(sft.records, 'SFT example')} (format '{sft.format}'), not preference "
                        "pairs: DPO needs a prompt with a chosen and a rejected reply per record "
                        '({"prompt", "chosen", "rejected"}); train on this file with notebook 04 or '
                        "python -m helpers train")
    return _raise_problems(reports)


def _raise_problems(reports: dict[str, ValidationReport]) -> dict[str, ValidationReport]:
    """The reports, if every split is valid; else one DataError listing every problem in every split."""
    problems = [p for r in reports.values() if not r.ok for p in r.problem_text().splitlines()]
    if problems:
        raise DataError("\n".join(problems))
    return reports


def read_hub_dataset(dataset_id: str, fmt: str | None = None,
                     mapping: dict | str | None = None) -> dict[str, ValidationReport]:
    """A Hugging Face Hub dataset (or anything `datasets.load_dataset` reads), through the same checks."""
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset_id)
    except Exception as e:  # network down, id misspelt, gated dataset
        raise DataError(f"could not load the dataset {dataset_id!r} from the Hugging Face Hub ({type(e).__name__}); "
                        "check the id, your network, or give a local folder or file instead") from None
    reports = {}
    for name in ds:
        split = SPLIT_FILE_NAMES.get(name, name)
        reports[split] = validate_records(list(ds[name]), f"{dataset_id}[{name}]", unit="record", fmt=fmt,
                                          mapping=mapping)
    if "train" not in reports:
        raise DataError(f"{dataset_id}: no 'train' split (found {', '.join(ds)}); pick a dataset with one")
    return reports


def load_raw_splits(source: str, fmt: str | None = None, mapping: dict | str | None = None) -> dict[str, list[dict]]:
    """The dataset's own splits as lists of chat rows (see `read_dataset`)."""
    return {split: report.rows for split, report in read_dataset(source, fmt, mapping).items()}


# --- cleaning -------------------------------------------------------------------------------------------------
# What clean_text changes: a carriage return, spaces before a line end, three line ends in a row.
UNTIDY = re.compile(r"\r|[^\S\n]\n|\n\n\n")
NON_WORD = re.compile(r"[\W_]+")


def clean_text(text: str) -> str:
    """Unix line ends, no trailing spaces on a line, at most one blank line in a row, no space at either end."""
    if not UNTIDY.search(text):  # most texts are tidy already: skip the rebuild
        return text.strip()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def normalized_key(row: dict) -> str:
    """A row's text with case, accents' encoding, punctuation and spacing ignored: near-duplicates share it.

    A pair's prompt, chosen and rejected are kept apart (||), so moving a message from one to another is a change.
    Tool calls, weights and tool definitions count as they are written.
    """
    fields = []
    for name in (f for f in MESSAGE_FIELDS if f in row):
        parts = []
        for m in row[name]:
            text = unicodedata.normalize("NFKC", m["content"]).casefold()
            extra = {k: v for k, v in m.items() if k not in ("role", "content")}
            parts.append(m["role"] + ":" + NON_WORD.sub(" ", text).strip()
                         + (json.dumps(extra, sort_keys=True) if extra else ""))
        fields.append("|".join(parts))
    return "||".join(fields) + (row.get("tools") or "")


def _tidy(row: dict) -> dict:
    """The row with `clean_text` applied to every message (an SFT row's or a pair's); all else as it is."""
    return {k: [{**m, "content": clean_text(m["content"])} for m in v] if k in MESSAGE_FIELDS else v
            for k, v in row.items()}


def clean_splits(reports: dict[str, ValidationReport], tokenizer=None,
                 max_length: int | None = None) -> tuple[dict[str, list[dict]], dict]:
    """Clean every split and say what was removed and why.

    Steps: empty records (skipped when read), whitespace tidied, exact duplicates, near-duplicates (same text up
    to case, punctuation and spacing), examples longer than `max_length` tokens (train and validation: truncating
    them would cut off the answer), and training rows that also occur in validation or test (a leak that would
    inflate every score). The report counts each step per split and lists every removed row.
    """
    if tokenizer is not None:
        check_template_renders(tokenizer, [r for rep in reports.values() for r in rep.rows])
    cleaned, counts, removed = {}, {}, []
    order = [s for s in reports if s != "train"] + ["train"]  # eval splits first: train is checked against them
    held_out = set()
    for split in order:
        report = reports[split]
        c = {"rows_in": len(report.rows) + len(report.empty), "empty": len(report.empty), "whitespace_fixed": 0,
             "exact_duplicates": 0, "near_duplicates": 0, "too_long": 0, "also_in_eval_splits": 0}
        removed += [{"split": split, report.unit: n, "reason": "empty record", "text": ""} for n in report.empty]
        lengths = token_lengths(report.rows, tokenizer) if tokenizer is not None and max_length else None
        near, kept = {}, []  # normalized key -> the rows seen with it (an exact duplicate also shares that key)
        for i, (n, row) in enumerate(zip(report.locations, report.rows)):
            tidy = _tidy(row)
            c["whitespace_fixed"] += tidy != row
            nkey = normalized_key(tidy)
            reason = ("exact_duplicates" if tidy in near.get(nkey, ()) else "near_duplicates" if nkey in near
                      else "too_long" if lengths and split != "test" and lengths[i] > max_length
                      else "also_in_eval_splits" if split == "train" and nkey in held_out else None)
            near.setdefault(nkey, []).append(tidy)
            if reason:
                c[reason] += 1
                removed.append({"split": split, report.unit: n, "reason": reason.replace("_", " "),
                                "text": reply_text(tidy)[:80]})
            else:
                kept.append(tidy)
        if split != "train":
            held_out |= {normalized_key(r) for r in kept}
        c["rows_out"] = len(kept)
        cleaned[split], counts[split] = kept, c
    order = [s for s in SPLITS if s in counts]
    return ({s: cleaned[s] for s in order},
            {"counts": {s: counts[s] for s in order}, "removed": removed, "max_length": max_length})


# --- splitting and saving ---------------------------------------------------------------------------------------
def make_splits(cleaned: dict[str, list[dict]], cfg: RunConfig) -> dict[str, list[dict]]:
    """train / validation / test with a fixed seed: the dataset's own splits where it has them, else cut from train.

    A cut takes `cfg.data.test_size` / `validation_size` rows, but never more than a tenth of train each, so a small
    dataset keeps most of its rows for training.
    """
    train = list(cleaned["train"])
    random.Random(cfg.data.seed).shuffle(train)
    out = {}
    for split, size in (("test", cfg.data.test_size), ("validation", cfg.data.validation_size)):
        if split in cleaned:
            out[split] = cleaned[split][:size]
            continue
        n = min(size, len(train) // 10)
        if n == 0:
            raise DataError(f"{cfg.data.dataset}: only {len(train)} training rows, too few to hold out a {split} "
                            "split (10 is the least); add rows, or ship a test file beside train")
        out[split], train = train[:n], train[n:]
    return {"train": train, "validation": out["validation"], "test": out["test"]}


def save_splits(splits: dict[str, list[dict]], run: RunDir, cleaning: dict | None = None) -> Path:
    """Write the splits as JSONL (and the cleaning report) into the run directory's data/ folder."""
    run.data_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with open(run.data_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if cleaning is not None:
        (run.data_dir / "cleaning_report.json").write_text(json.dumps(cleaning, indent=1, ensure_ascii=False) + "\n",
                                                          encoding="utf-8")
    return run.data_dir


def prepare_splits(cfg: RunConfig, run: RunDir, tokenizer=None) -> dict[str, list[dict]]:
    """Read, check, clean, split and save, as 01_dataset_prep does step by step. The input is never modified."""
    if tokenizer is None:
        from .model import load_tokenizer

        tokenizer = load_tokenizer(cfg)
    reports = read_dataset(cfg.data.dataset, cfg.data.format, cfg.data.column_map)
    cleaned, cleaning = clean_splits(reports, tokenizer, cfg.train.max_length)
    splits = make_splits(cleaned, cfg)
    save_splits(splits, run, cleaning)
    return splits


def load_splits(cfg: RunConfig, run: RunDir):
    """The run's prepared splits as a `datasets.DatasetDict`; prepared now if 01_dataset_prep has not run."""
    from datasets import Dataset, DatasetDict

    if not all((run.data_dir / f"{s}.jsonl").exists() for s in SPLITS):
        print(f"No prepared data in {run.data_dir}: preparing it now from {cfg.data.dataset} "
              "(what 01_dataset_prep does).")
        prepare_splits(cfg, run)
    return DatasetDict({s: as_dataset(read_prepared(run, s)) for s in SPLITS})


def as_dataset(rows: list[dict]):
    """`Dataset.from_list(rows)`; where messages carry tool calls, each message is stored as JSON (datasets' `Json`
    feature), because Arrow would merge the arguments of different tools into one schema, adding every other
    tool's arguments as nulls (a call `{"city": "Oslo"}` would come back as `{"city": "Oslo", "query": None}`)."""
    from datasets import Dataset, Features, Json, List, Value

    lists = (*MESSAGE_FIELDS, "completion")
    if not any("tool_calls" in m for r in rows for k in lists if k in r for m in r[k]):
        return Dataset.from_list(rows)
    keys = dict.fromkeys(k for r in rows for k in r)
    return Dataset.from_list(rows, features=Features({k: List(Json()) if k in lists else Value("string") for k in keys}))


def read_prepared(run: RunDir, split: str) -> list[dict]:
    """One prepared split from the run directory (written by `save_splits`)."""
    path = run.data_dir / f"{split}.jsonl"
    return validate_file(path, fmt="chat").raise_if_problems().rows


def prompt_of(row: dict) -> list[dict]:
    """The conversation up to (not including) the final assistant reply: what the model is asked."""
    return row["messages"][:-1]


def reference_of(row: dict) -> str:
    """The final assistant reply: the answer the model should give."""
    return row["messages"][-1]["content"]


def has_generation_markers(tokenizer) -> bool:
    """Whether the chat template marks assistant turns with {% generation %}, which assistant_only_loss needs."""
    return "{% generation %}" in (tokenizer.chat_template or "")


def trained_turns(messages: list[dict]) -> list[int]:
    """The positions of the assistant messages that carry the loss: all of them, except those with weight 0."""
    return [i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("weight", 1) != 0]


def has_weights(rows) -> bool:
    """Whether any assistant message is marked weight 0 (context only, no loss)."""
    return any(m.get("weight") == 0 for r in rows for m in r["messages"])


def _plain(message: dict) -> dict:
    """A message as the chat template takes it: no weight, and no keys Arrow filled with None."""
    return {k: v for k, v in message.items() if k != "weight" and v is not None}


def per_turn_rows(row: dict) -> list[dict]:
    """One prompt/completion row per trained assistant turn: the conversation before the turn, and the turn.

    TRL's completion-only loss then trains every assistant turn of a multi-turn chat (tool calls included) with any
    chat template; a turn with weight 0 gets no row, so it is context and never a target.
    """
    msgs = [_plain(m) for m in row["messages"]]
    tools = {"tools": row["tools"]} if row.get("tools") else {}
    return [{"prompt": msgs[:i], "completion": [msgs[i]], **tools} for i in trained_turns(row["messages"])]


def to_sft_format(ds, tokenizer, answers_only: bool = True):
    """What SFTTrainer trains on, with the loss on the assistant's turns only (`answers_only`, the run config's
    `train.assistant_only_loss`; False trains on every token, the prompt included).

    With {% generation %} markers in the chat template: `messages` as they are, plus `assistant_only_loss=True`:
    the template marks every assistant turn. Without them (most Hub chat templates, TinyLlama's included), or when
    some turns have weight 0: one prompt/completion row per trained assistant turn (`per_turn_rows`), and TRL's
    completion-only loss masks the rest. A chat with k trained turns becomes k rows, its start repeated in each:
    the price of training every turn with a template that cannot mark them. Either way the prompt carries no loss.
    """
    if GROUP_FIELD in ds.column_names:  # a label for scoring apart, not something to train on
        ds = ds.remove_columns(GROUP_FIELD)
    rows = ds.to_list()
    check_template_renders(tokenizer, rows)
    if not answers_only or (has_generation_markers(tokenizer) and not has_weights(rows)):
        return ds
    return as_dataset([r for row in rows for r in per_turn_rows(row)])


# A conversation with a tool call, to check that a chat template renders all of it.
PROBE_TOOLS = [{"type": "function", "function": {"name": "probe_lookup", "description": "Look a word up.",
                                                  "parameters": {"type": "object",
                                                                 "properties": {"word": {"type": "string"}}}}}]
PROBE = [{"role": "user", "content": "Look up a word."},
         {"role": "assistant", "content": "", "tool_calls": [
             {"type": "function", "function": {"name": "probe_lookup", "arguments": {"word": "probe_argument"}}}]},
         {"role": "tool", "content": "probe_result"},
         {"role": "assistant", "content": "Done."}]


def uses_tools(rows) -> bool:
    return any(r.get("tools") or any(m["role"] == "tool" or "tool_calls" in m for m in r.get("messages", []))
               for r in rows)


def check_template_renders(tokenizer, rows) -> None:
    """Refuse tool-use data for a chat template that drops tool calls or results (most templates of models not
    trained for tools): they would vanish from training without a word. Nothing to check for other data."""
    if not uses_tools(rows):
        return
    try:
        text = tokenizer.apply_chat_template(PROBE, tools=PROBE_TOOLS, tokenize=False)
        lost = [what for what, mark in (("the tool definitions", "Look a word up."), ("the call", "probe_lookup"),
                                        ("its arguments", "probe_argument"), ("the tool's result", "probe_result"))
                if mark not in text]
    except Exception as e:  # a template may refuse role "tool" outright ("roles must alternate")
        lost = [f"the whole conversation ({type(e).__name__}: {str(e)[:80]})"]
    if lost:
        name = getattr(tokenizer, "name_or_path", "") or "this model"
        raise DataError(f"the data calls tools, but the chat template of {name} cannot render them: it drops "
                        f"{', '.join(lost)}, so they would vanish from training. Pick a model whose chat template "
                        "renders tools (Qwen2.5-Instruct, Llama-3.1-Instruct and most recent instruct models do), or "
                        "train on the records without tools")


def _template_kwargs(row: dict) -> dict:
    return {"tools": json.loads(row["tools"])} if row.get("tools") else {}


def token_lengths(rows: list[dict], tokenizer) -> list[int]:
    """Tokens per example after the chat template: what max_length is compared with (for a preference pair, the
    prompt with the longer of its two replies).

    The same count as `len(tokenizer.apply_chat_template(messages)["input_ids"])`, done in batches (the template
    renders the texts, the fast tokenizer encodes a batch on every core), with a progress bar after 2 seconds.
    Counting a long example makes transformers warn "Token indices sequence length is longer than the specified
    maximum ... will result in indexing errors": nothing is fed to the model here, and the examples longer than
    max_length are reported by name (and removed by cleaning), so that warning is silenced while counting.
    """
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    batches = [rows[start:start + 2000] for start in range(0, len(rows), 2000)]
    lengths, pending = [], None
    # The Rust tokenizer encodes one batch (on every core, without holding Python's lock) while Python renders the next.
    try:
        with ThreadPoolExecutor(1) as pool, tqdm(total=len(rows), desc="counting tokens", unit=" examples", delay=2,
                                                 leave=False) as bar:
            for batch in batches + [None]:
                job = batch and pool.submit(_token_counts, tokenizer,
                                            [_render(tokenizer, c, r) for r in batch for c in _conversations(r)])
                if pending:
                    done, counts = pending[0], iter(pending[1].result())
                    lengths += [max(next(counts) for _ in _conversations(r)) for r in done]
                    bar.update(len(done))
                pending = batch and (batch, job)
    finally:
        hf_logging.set_verbosity(level)
    return lengths


def _token_counts(tokenizer, texts: list[str]) -> list[int]:
    """How many tokens each text is (as apply_chat_template counts them: no special tokens added), encoded as one
    batch by the Rust tokenizer (every core) where the tokenizer has one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    truncation, padding = backend.truncation, backend.padding  # a saved tokenizer may carry either: counts need none
    backend.no_truncation(), backend.no_padding()
    try:
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]
    finally:
        if truncation:
            backend.enable_truncation(**truncation)
        if padding:
            backend.enable_padding(**{k: v for k, v in padding.items() if k != "length" or v})


def _render(tokenizer, messages: list[dict], row: dict) -> str:
    return tokenizer.apply_chat_template([_plain(m) for m in messages], tokenize=False, **_template_kwargs(row))


def _conversations(row: dict) -> list[list[dict]]:
    """The whole conversations a row stands for: one for an SFT row, prompt + each reply for a pair."""
    if "messages" in row:
        return [row["messages"]]
    return [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]


def loss_mask_tokens(tokenizer, messages: list[dict], tools=None) -> list[tuple[str, bool]]:
    """Each token of the templated conversation, and whether the loss is computed on it, as `to_sft_format` trains.

    With {% generation %} markers the template itself marks the assistant's tokens. Without them, each trained
    assistant turn is what the template adds between the conversation before it (with the generation prompt) and
    the conversation up to and including it: the completion of that turn's prompt/completion row. Turns with
    weight 0 carry no loss either way.
    """
    kw = {"tools": json.loads(tools) if isinstance(tools, str) else tools} if tools else {}
    plain = [_plain(m) for m in messages]
    render = lambda msgs, **more: tokenizer.apply_chat_template(msgs, return_dict=True, **kw, **more)
    enc = render(plain, return_assistant_tokens_mask=has_generation_markers(tokenizer))
    ids = enc["input_ids"]
    marked = enc.get("assistant_masks") or [1] * len(ids)
    if has_generation_markers(tokenizer) and not has_weights([{"messages": messages}]):
        span = [1] * len(ids)
    else:
        span = [0] * len(ids)
        for i in trained_turns(messages):
            start = len(render(plain[:i], add_generation_prompt=True)["input_ids"])
            end = len(render(plain[:i + 1])["input_ids"])
            span[start:end] = [1] * (end - start)
    return [(tokenizer.decode([i]), bool(m and s)) for i, m, s in zip(ids, marked, span)]


def render_loss_mask(pieces: list[tuple[str, bool]]) -> str:
    """Plain-text view: trained tokens inside [[ ]], the rest as they are."""
    out, inside = [], False
    for text, trained in pieces:
        if trained != inside:
            out.append("[[" if trained else "]]")
            inside = trained
        out.append(text)
    return "".join(out) + ("]]" if inside else "")
