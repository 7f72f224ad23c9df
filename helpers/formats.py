"""Read a dataset in any common format, check every record, and convert it to the course's chat form.

Introduced in 01_dataset_prep; `python -m helpers validate-data PATH` runs exactly the same checks.

Record formats, detected from the field names (or named with `fmt=` / `--format`):

    instruction        {"instruction", "input" (optional), "output", "system" (optional)}   the Alpaca style
    chat               {"messages": [{"role", "content"}, ...]}                               OpenAI / TRL style
    sharegpt           {"conversations": [{"from", "value"}, ...]}                            ShareGPT style
    prompt_completion  {"prompt", "completion"}  (text, or lists of messages)                 TRL's own
    text               {"text"}                                                               raw text

Preference pairs, for preference tuning (DPO), not for supervised fine-tuning:

    preference           {"prompt", "chosen", "rejected"}  (text, or lists of messages)           TRL's own
                         {"chosen", "rejected"}  (two conversations sharing the prompt)           TRL's implicit prompt
    sharegpt_preference  {"conversations", "chosen": {"from", "value"}, "rejected": {...}}        ShareGPT style

A message's `content` may be text or a list of text parts (joined with a line break); image, audio or file parts
and media fields (`images`, ...) are refused with one message per file. Chat and ShareGPT records may call tools as
transformers' chat templates take them: `tools` definitions, assistant `tool_calls` (ShareGPT: `function_call`
turns), `tool` results (ShareGPT: `observation`); an assistant message with `"weight": 0` is context, not a target.

SFT records become `{"messages": [...]}` (plus `"tools"` as JSON text); a pair becomes TRL's explicit-prompt
conversational row `{"prompt": [messages], "chosen": [assistant messages], "rejected": [assistant messages]}`.

Files: `.jsonl` (one record per line), `.json` (an array of records), `.csv` (a header row), `.parquet`.
Problems are reported as `FILE:N: what is wrong, and how to fix it`, where N is the 1-based line of a JSONL or
CSV file and the 1-based record of a JSON array or Parquet file. Nothing here ever modifies the input file.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("system", "user", "assistant", "tool")
PAIR_FORMATS = ("preference", "sharegpt_preference")
FORMATS = ("instruction", "chat", "sharegpt", "prompt_completion", "text", *PAIR_FORMATS)
# The fields that identify each format, checked in order: a pair also has a prompt or conversations, so it comes first
# (and either of chosen / rejected is enough, so that a pair missing one is told so, not misread as another format).
SIGNATURE = {("conversations", "chosen"): "sharegpt_preference", ("conversations", "rejected"): "sharegpt_preference",
             ("chosen",): "preference", ("rejected",): "preference", ("messages",): "chat",
             ("conversations",): "sharegpt", ("instruction",): "instruction", ("prompt",): "prompt_completion",
             ("text",): "text"}
# The fields each format may have, and those it needs ('preference' without a prompt is TRL's implicit-prompt form).
FIELDS = {"instruction": ("instruction", "input", "output", "system"), "chat": ("messages", "tools"),
          "sharegpt": ("conversations", "system", "tools"), "prompt_completion": ("prompt", "completion", "tools"),
          "text": ("text",),
          "preference": ("prompt", "chosen", "rejected"),
          "sharegpt_preference": ("conversations", "system", "chosen", "rejected")}
REQUIRED = {"instruction": ("instruction", "output"), "chat": ("messages",), "sharegpt": ("conversations",),
            "prompt_completion": ("prompt", "completion"), "text": ("text",), "preference": ("chosen", "rejected"),
            "sharegpt_preference": ("conversations", "chosen", "rejected")}
# Names other datasets use for our fields: used to suggest a --map, never applied silently.
SYNONYMS = {"question": "instruction", "query": "instruction", "task": "instruction", "context": "input",
            "answer": "output", "response": "output", "target": "output", "reply": "output", "label": "output",
            "dialog": "messages", "conversation": "messages", "content": "text", "body": "text"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "bot": "assistant", "chatgpt": "assistant", "function_call": "assistant",
                  "observation": "tool", "tool": "tool"}
# An optional label on any record, such as "unseen phrasing": never trained on, it lets evaluation score each kind of
# row apart (05_evaluation's scores by group).
GROUP_FIELD = "group"
EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
MAX_PROBLEMS = 50
MIN_EXAMPLES = 50
SHORT_REPLY = 3  # characters


class DataError(ValueError):
    """A dataset problem, reported as FILE:N: what is wrong, and how to fix it."""


@dataclass
class ValidationReport:
    """What `validate_file` found: the detected format, the converted rows, problems (errors) and warnings."""

    source: str
    format: str | None = None
    rows: list[dict] = field(default_factory=list)  # chat-form rows or pairs, only when there are no problems
    locations: list[int] = field(default_factory=list)  # the line / record number of each row in the source
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)  # records with every field blank: skipped, nothing lost
    unit: str = "line"
    records: int = 0  # non-empty records read, valid or not
    notes: list[str] = field(default_factory=list)  # worth knowing, not wrong: fields left out, tool use, weights

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def kind(self) -> str:
        """"preference" for preference pairs (DPO data), "sft" for demonstrations (or a format not yet known)."""
        return "preference" if self.format in PAIR_FORMATS else "sft"

    @property
    def noun(self) -> str:
        return "preference pair" if self.kind == "preference" else "example"

    def problem_text(self) -> str:
        shown = self.problems[:MAX_PROBLEMS]
        more = len(self.problems) - len(shown)
        return "\n".join(shown) + (f"\n... and {more} more problems; fix these and run again" if more else "")

    def summary(self) -> str:
        if not self.ok:
            return f"{self.source}: {_n(len(self.problems), 'problem')}\n{self.problem_text()}"
        lines = [f"{self.source}: {_n(len(self.rows), self.noun)}, format '{self.format}', valid"]
        lines += [f"warning: {w}" for w in self.warnings] + [f"note: {w}" for w in self.notes]
        return "\n".join(lines)

    def raise_if_problems(self) -> "ValidationReport":
        if self.problems:
            raise DataError(self.problem_text())
        return self


def parse_mapping(text: str | dict | None) -> dict[str, str]:
    """`"question=instruction,answer=output"` (or a dict) -> {"question": "instruction", "answer": "output"}."""
    if not text:
        return {}
    if isinstance(text, dict):
        return dict(text)
    mapping = {}
    for pair in text.split(","):
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise DataError(f"--map expects old=new pairs separated by commas, such as "
                            f"question=instruction,answer=output; {pair!r} is not one")
        mapping[old.strip()] = new.strip()
    return mapping


# --- reading files ------------------------------------------------------------------------------------------
def read_records(path: str | Path) -> tuple[list, list[int], str]:
    """The records of one file, the line or record number of each, and which ("line" or "record") it is."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path (a relative path starts from {Path.cwd()})")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give one file, or load the folder with load_raw_splits")
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; save it as "
                        + ", ".join(EXTENSIONS))
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    text = _read_text(path)
    return {".json": _read_json, ".csv": _read_csv}[suffix](path, text)


def _read_text(path: Path) -> str:
    _check_text_start(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Excel, Notepad) is fine
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the file with UTF-8 "
                        "encoding") from None
    if not text.strip():
        raise DataError(f"{path}: the file holds only blank lines or spaces; write the examples into it")
    return text


def _read_jsonl(path: Path) -> tuple[list, list[int], str]:
    """One record per line, read line by line: the file's text is never held whole beside its records."""
    _check_text_start(path)
    from tqdm.auto import tqdm

    records, lines, problems, first = [], [], [], None
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, desc=f"reading {path.name}", unit="B",
                                     unit_scale=True, delay=2, leave=False) as bar:
        for n, raw in enumerate(f, start=1):
            bar.update(len(raw))
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{n}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file with UTF-8 "
                                "encoding") from None
            if not line.strip():
                continue
            first = line if first is None else first
            try:
                records.append(json.loads(line))
                lines.append(n)
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{n}: not valid JSON ({e.msg}, column {e.colno}); each line must be one "
                                "complete JSON object, such as {\"instruction\": ..., \"output\": ...}")
    if first is None:
        raise DataError(f"{path}: the file holds only blank lines or spaces; write the examples into it")
    if problems and first.lstrip().startswith("["):
        raise DataError(f"{path}:1: this looks like a JSON array, not JSON Lines; rename the file to .json")
    if problems:
        raise DataError(_capped(problems))
    return records, lines, "line"


def _check_text_start(path: Path) -> None:
    """An empty or binary file, told apart from a text file by its first bytes."""
    with open(path, "rb") as f:
        head = f.read(8192)
    if not head:
        raise DataError(f"{path}: the file is empty (0 bytes); write the examples into it, one per line for .jsonl")
    if b"\x00" in head:
        raise DataError(f"{path}: this is a binary file, not text; export the data as .jsonl, .json, .csv or "
                        ".parquet (and check that this is the file you meant)")


def _read_json(path: Path, text: str) -> tuple[list, list[int], str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            raise DataError(f"{path}:{e.lineno}: more than one JSON value in the file: this looks like JSON Lines "
                            "(one object per line); rename the file to .jsonl") from None
        cut = " (the file may be cut short: was it copied or downloaded completely?)" if e.pos >= len(
            text.rstrip()) else ""
        raise DataError(f"{path}:{e.lineno}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}{cut}; "
                        "fix the file (a JSON validator shows the spot)") from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        hint = f" (the records may be the list under {lists[0]!r}: save that list alone)" if lists else ""
        raise DataError(f"{path}: the file holds one JSON object, but a .json dataset must be an array of records, "
                        f"[{{...}}, {{...}}]{hint}; or write one object per line in a .jsonl file")
    if not isinstance(data, list):
        raise DataError(f"{path}: the file holds a JSON {type(data).__name__}, not an array of records")
    return data, list(range(1, len(data) + 1)), "record"


def _read_csv(path: Path, text: str) -> tuple[list, list[int], str]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        records, lines, problems, end = [], [], [], reader.line_num
        for cells in reader:
            start, end = end + 1, reader.line_num
            if not any(c.strip() for c in cells):
                if cells:
                    records.append(dict.fromkeys(header, "")), lines.append(start)
                continue
            if len(cells) != len(header):
                problems.append(f"{path}:{start}: {len(cells)} fields, but the header has {len(header)}; put "
                                "quotes around a field that contains a comma or a line break")
                continue
            records.append(dict(zip(header, cells)))
            lines.append(start)
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({e}); check the quotes on that line") from None
    if problems:
        raise DataError(_capped(problems))
    header = [h.strip() for h in header]
    records = [{k.strip(): v for k, v in r.items()} for r in records]
    if not records:
        raise DataError(f"{path}: a header ({', '.join(header)}) but no rows; add the examples below it")
    return records, lines, "line"


def _read_parquet(path: Path) -> tuple[list, list[int], str]:
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a damaged or mislabelled file
        reason = str(e).split(": ")[-1].split(". ")[0]
        raise DataError(f"{path}: not a readable Parquet file ({reason}); "
                        "re-export it, or save the data as .jsonl") from None
    if not records:
        raise DataError(f"{path}: the Parquet file has no rows")
    return records, list(range(1, len(records) + 1)), "record"


def _capped(problems: list[str]) -> str:
    more = len(problems) - MAX_PROBLEMS
    return "\n".join(problems[:MAX_PROBLEMS]) + (f"\n... and {more} more problems" if more > 0 else "")


# --- checking and converting records -------------------------------------------------------------------------
def detect_format(record) -> str | None:
    """The format a record is written in, from its field names; None if no known field is present."""
    if isinstance(record, dict):
        for keys, fmt in SIGNATURE.items():
            if all(k in record for k in keys):
                return fmt
    return None


def _is_blank(record) -> bool:
    return isinstance(record, dict) and all(v is None or (isinstance(v, str) and not v.strip())
                                            for v in record.values())


def _text(value, name: str) -> tuple[str | None, str | None]:
    """(the text, None) or (None, what is wrong with it)."""
    if isinstance(value, str):
        return (value, None) if value.strip() else (None, f"{name} is empty; write the text or drop the record")
    if value is None:
        return None, f"{name} is missing (null); every record needs it"
    if isinstance(value, list):
        return None, f"{name} is a list, but text belongs here; join the items into one string"
    if isinstance(value, (int, float, bool)):
        kind = "true/false value" if isinstance(value, bool) else "number"
        return None, f"{name} is a {kind} ({json.dumps(value)}), but text belongs here; write it in quotes, " \
                     f"\"{value}\""
    return None, f"{name} is a {type(value).__name__}, but text belongs here"


def _content(value, name: str) -> tuple[str | None, str | None]:
    """A message's text: a string, or a list of content parts (OpenAI's and transformers' form) whose text parts are
    joined with a line break. A part that is not text (an image, audio, a file) is a `NonText` problem."""
    if isinstance(value, list) and value and all(isinstance(p, dict) for p in value):
        kinds = [str(p.get("type", "text" if "text" in p else "untyped")) for p in value]
        other = [k for k in kinds if k != "text"]
        if other:
            return None, NonText(f"{other[0]} part")
        texts = [p.get("text") for p in value]
        if not all(isinstance(t, str) for t in texts):
            return None, f"{name}: a text part has no 'text' string; write each part as {{\"type\": \"text\", \"text\": ...}}"
        value = "\n".join(texts)
    return _text(value, name)


class NonText(str):
    """A problem reported once per file, with the records it concerns: content that is not text (an image part, an
    'images' field). The course fine-tunes text-only models, which would never see it."""

    def __new__(cls, kind: str):
        self = super().__new__(cls, f"holds {kind.replace('_', ' ')}s: the course trains text-only models")
        self.kind = kind
        return self


# Record fields that carry media for vision / audio models: a text-only model would never see them.
MEDIA_FIELDS = ("images", "image", "audios", "audio", "videos", "video")
# What a message may hold besides its role and text; anything else is named once, as dropped, in the summary.
MESSAGE_KEYS = ("tool_calls", "tool_call_id", "name", "weight")
TOOL_CALL_SHAPE = '{"type": "function", "function": {"name": ..., "arguments": {...}}}'


def _arguments(value, where: str) -> tuple[dict | None, str | None]:
    """A tool call's arguments as a dict: given as an object, or as the JSON text of one (OpenAI's form)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            return None, f"{where}: 'arguments' is not valid JSON ({e.msg}, column {e.colno}); write a JSON object"
    if not isinstance(value, dict):
        return None, f"{where}: 'arguments' must be a JSON object of named arguments ({{}} for none)"
    return value, None


def _tool_call(call, where: str) -> tuple[dict | None, str | None]:
    """One call as transformers' chat templates take it: {"type": "function", "function": {"name", "arguments"}}
    (also read: the flat {"name", "arguments"} form of ShareGPT's function_call turns), with its "id" if given."""
    if not isinstance(call, dict):
        return None, f"{where} is a {type(call).__name__}; write it as {TOOL_CALL_SHAPE}"
    fn = call.get("function", call)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
        return None, f"{where} has no function name; write it as {TOOL_CALL_SHAPE}"
    if "arguments" not in fn:
        return None, f"{where} ({fn['name']}) has no 'arguments'; give them as a JSON object ({{}} for none)"
    args, wrong = _arguments(fn["arguments"], f"{where} ({fn['name']})")
    if wrong:
        return None, wrong
    out = {"type": "function", "function": {"name": fn["name"], "arguments": args}}
    return ({**out, "id": call["id"]} if isinstance(call.get("id"), str) else out), None


def _tool_calls(value, i: int) -> tuple[list[dict], list[str]]:
    if isinstance(value, str):  # ShareGPT's function_call value, and some exports: the calls as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            return [], [f"message {i}: the tool call is not valid JSON ({e.msg}); write {TOOL_CALL_SHAPE}"]
    calls = value if isinstance(value, list) else [value]
    out, problems = [], []
    for k, call in enumerate(calls, start=1):
        call, wrong = _tool_call(call, f"message {i}, tool call {k}")
        problems += [wrong] if wrong else []
        out += [call] if call else []
    return out, problems


def read_tools(value, name: str = "'tools'") -> tuple[list[dict] | None, str | None]:
    """The tool definitions of a record (a list, or its JSON text) as transformers' chat templates take them:
    [{"type": "function", "function": {"name", "description", "parameters"}}]."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            return None, f"{name} is text but not valid JSON ({e.msg}); write the list of tool definitions"
    if not isinstance(value, list) or not value:
        return None, f"{name} must be a non-empty list of tool definitions, {{\"type\": \"function\", \"function\": " \
                     "{\"name\": ..., \"description\": ..., \"parameters\": {...}}}"
    out = []
    for k, tool in enumerate(value, start=1):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return None, f"{name}: definition {k} has no function name"
        out.append({"type": "function", "function": fn})
    return out, None


def _check_messages(msgs, name: str = "'messages'", role_key: str = "role", text_key: str = "content",
                    role_map: dict | None = None, needs_reply: bool = True,
                    sharegpt: str = "sharegpt") -> tuple[list[dict], list[str]]:
    if isinstance(msgs, str):
        return [], [f"{name} is a string, but it must be a list of {{{role_key!r}: ..., {text_key!r}: ...}} objects "
                    "(was it JSON-encoded twice?)"]
    if not isinstance(msgs, list) or not msgs:
        return [], [f"{name} must be a non-empty list of {{{role_key!r}: ..., {text_key!r}: ...}} objects"]
    out, problems = [], []
    allowed = role_map or {r: r for r in ROLES}
    for i, m in enumerate(msgs, start=1):
        if not isinstance(m, dict):
            problems.append(f"message {i} is a {type(m).__name__}, not a {{{role_key!r}, {text_key!r}}} object")
            continue
        message, wrong = _message(m, i, allowed, role_key, text_key, sharegpt)
        problems += wrong
        out += [message] if message else []
    if problems:
        return [], problems
    problems += _order_problems(out)
    if not needs_reply:
        return out, problems
    if not any(m["role"] == "assistant" for m in out):
        problems.append("no assistant reply: a training example must end with the assistant's message, the text "
                        "the model learns to write")
    elif out[-1]["role"] != "assistant":
        problems.append(f"the last message is from the {out[-1]['role']}; end with the assistant's reply, or drop "
                        "the trailing message")
    elif all(m.get("weight") == 0 for m in out if m["role"] == "assistant"):
        problems.append("every assistant message has weight 0, so nothing in this example is trained; set "
                        "\"weight\": 1 on the replies to learn, or drop the record")
    return out, problems


def _message(m: dict, i: int, allowed: dict, role_key: str, text_key: str,
             sharegpt: str) -> tuple[dict | None, list[str]]:
    """One message in the course's form, {"role", "content"} plus, where given, "tool_calls" (assistant), "tool_call_id"
    and "name" (tool) and "weight": 0 (an assistant turn that carries no loss); and what is wrong with it."""
    role = m.get(role_key)
    if role not in allowed:
        hint = f" (this is ShareGPT style: use --format {sharegpt})" if "from" in m and role_key == "role" else ""
        return None, [f"message {i} has {role_key} {role!r}; use one of {', '.join(allowed)}{hint}"]
    role, out, problems = allowed[role], {}, []
    if role_key == "from" and m[role_key] == "function_call":  # ShareGPT: the call is the message's value
        calls, problems = _tool_calls(m.get(text_key), i)
        out = {"role": "assistant", "content": "", "tool_calls": calls}
    else:
        calls, problems = _tool_calls(m["tool_calls"], i) if m.get("tool_calls") else ([], [])
        if calls and role != "assistant":
            problems.append(f"message {i} ({role}) has tool_calls; only the assistant calls tools")
        blank = m.get("tool_calls") and m.get(text_key) in (None, "", [])  # a call alone needs no text
        content, wrong = ("", None) if blank else _content(m.get(text_key), f"message {i} ({role}) {text_key}")
        if wrong:
            return None, [wrong] if isinstance(wrong, NonText) else problems + [wrong]
        out = {"role": role, "content": content, **({"tool_calls": calls} if calls else {})}
    if role == "tool":
        out.update({k: m[k] for k in ("tool_call_id", "name") if isinstance(m.get(k), str)})
    if "weight" in m:
        weight = m["weight"]
        if role != "assistant":
            problems.append(f"message {i} ({role}) has a weight; only assistant messages carry one")
        elif weight not in (0, 1) or isinstance(weight, str):
            problems.append(f"message {i} has weight {weight!r}; use 0 (do not train on this reply) or 1 (train)")
        elif weight == 0:
            out["weight"] = 0
    return (None, problems) if problems else (out, [])


def _order_problems(msgs: list[dict]) -> list[str]:
    """A system message only first; a tool result only after the assistant's call (one result per call, matching
    its id where the calls have ids)."""
    problems = []
    if any(m["role"] == "system" for m in msgs[1:]):
        problems.append("a system message may only come first; move it to the start or make it a user message")
    pending = []  # the calls of the latest assistant message that have no result yet
    for i, m in enumerate(msgs, start=1):
        if m["role"] == "assistant":
            pending = list(m.get("tool_calls", []))
        elif m["role"] == "tool":
            if not pending:
                problems.append(f"message {i} is a tool result, but no tool call is waiting for it; a tool result "
                                "follows the assistant message that calls the tool (one result per call)")
                continue
            ids = [c["id"] for c in pending if "id" in c]
            if "tool_call_id" in m and ids and m["tool_call_id"] not in ids:
                problems.append(f"message {i} answers tool_call_id {m['tool_call_id']!r}, but the waiting calls are "
                                f"{', '.join(map(repr, ids))}")
                continue
            matched = ids and "tool_call_id" in m
            pending = [c for c in pending if c.get("id") != m["tool_call_id"]] if matched else pending[1:]
        else:
            pending = []
    return problems


def to_row(record: dict, fmt: str) -> tuple[dict, list[str]]:
    """One record as the row the course keeps: {"messages"} for SFT formats, {"prompt", "chosen", "rejected"} for
    pairs; and what is wrong with it (an empty list when nothing is)."""
    if fmt in PAIR_FORMATS:
        return to_pair(record, fmt)
    msgs, problems = to_messages(record, fmt)
    row = {"messages": msgs}
    if record.get("tools") not in (None, "", []) and "tools" in FIELDS[fmt]:
        tools, wrong = read_tools(record["tools"])
        if wrong:
            return row, problems + [wrong]
        defined = {t["function"]["name"] for t in tools}
        unknown = sorted({c["function"]["name"] for m in msgs for c in m.get("tool_calls", [])} - defined)
        if unknown:
            problems.append(f"the assistant calls {_names(unknown)}, which 'tools' does not define (it defines "
                            f"{_names(sorted(defined))}); add the definition, or fix the name")
        # JSON text, as TRL's SFTTrainer reads it: a list of dicts would make Arrow merge the schemas of different
        # tools into one, adding every other tool's parameters as nulls.
        row["tools"] = json.dumps(tools, ensure_ascii=False)
    return row, problems


def _missing_fields(record: dict, fmt: str) -> str | None:
    missing = [f for f in REQUIRED[fmt] if f not in record]
    if not missing:
        return None
    said = f"missing field {', '.join(repr(m) for m in missing)} (the {fmt!r} format needs {', '.join(REQUIRED[fmt])})"
    if fmt in PAIR_FORMATS and set(missing) & {"chosen", "rejected"}:
        said += ("; a pair needs the better reply as 'chosen' and the worse as 'rejected': add it, or drop the "
                 "record")
    return said


def to_messages(record: dict, fmt: str) -> tuple[list[dict], list[str]]:
    """One record in an SFT format as chat messages, and what is wrong with it (an empty list when nothing is)."""
    if fmt in PAIR_FORMATS:
        raise ValueError(f"{fmt!r} holds preference pairs, not one conversation; use to_pair")
    missing = _missing_fields(record, fmt)
    if missing:
        return [], [missing]
    if fmt == "chat":
        return _check_messages(record["messages"])
    if fmt == "sharegpt":
        msgs, problems = _check_messages(record["conversations"], "'conversations'", "from", "value", SHAREGPT_ROLES)
        return _with_system(record, msgs, problems)
    if fmt == "text":
        text, wrong = _text(record["text"], "'text'")
        return ([{"role": "assistant", "content": text}], []) if text else ([], [wrong])
    if fmt == "instruction":
        instruction, w1 = _text(record["instruction"], "'instruction'")
        output, w2 = _text(record["output"], "'output'")
        extra = record.get("input")
        w3 = None if extra is None or isinstance(extra, str) else _text(extra, "'input'")[1]
        problems = [w for w in (w1, w2, w3) if w]
        if problems:
            return [], problems
        prompt = instruction + (f"\n\n{extra}" if extra and extra.strip() else "")
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        return _with_system(record, msgs, [])
    # prompt_completion: plain text, or (TRL's conversational form) lists of messages
    prompt, completion = record["prompt"], record["completion"]
    if isinstance(prompt, list) or isinstance(completion, list):
        if not (isinstance(prompt, list) and isinstance(completion, list)):
            return [], ["'prompt' and 'completion' must both be text, or both be lists of messages"]
        before, p1 = _check_messages(prompt, "'prompt'", needs_reply=False)
        after, p2 = _check_messages(completion, "'completion'")
        return before + after, p1 + p2
    p, w1 = _text(prompt, "'prompt'")
    c, w2 = _text(completion, "'completion'")
    problems = [w for w in (w1, w2) if w]
    return ([{"role": "user", "content": p}, {"role": "assistant", "content": c}], []) if not problems else ([], problems)


def _with_system(record: dict, msgs: list[dict], problems: list[str]) -> tuple[list[dict], list[str]]:
    system = record.get("system")
    if problems or system is None or (isinstance(system, str) and not system.strip()):
        return msgs, problems
    text, wrong = _text(system, "'system'")
    return ([], [wrong]) if wrong else ([{"role": "system", "content": text}] + msgs, [])


# --- preference pairs ------------------------------------------------------------------------------------------
# Every list of messages a row can hold: an SFT row's `messages`, a pair's three.
MESSAGE_FIELDS = ("messages", "prompt", "chosen", "rejected")
NO_PROMPT = ("'chosen' and 'rejected' are text, but there is no 'prompt': add a 'prompt' field with what both replies "
             "answer (or rename yours with --map old=prompt), or write 'chosen' and 'rejected' as whole conversations "
             "(lists of messages) that share the prompt")


def to_pair(record: dict, fmt: str = "preference") -> tuple[dict, list[str]]:
    """One preference record as TRL's explicit-prompt conversational row {"prompt", "chosen", "rejected"} (each a
    list of messages), and what is wrong with it (an empty list when nothing is)."""
    missing = _missing_fields(record, fmt)
    if missing:
        return {}, [missing]
    if fmt == "sharegpt_preference":
        parts, problems = _sharegpt_pair(record)
    else:
        parts, problems = _explicit_pair(record) if "prompt" in record else _implicit_pair(record)
    if problems:
        return {}, problems
    prompt, chosen, rejected = parts
    prompt_name = "'conversations'" if fmt == "sharegpt_preference" else "'prompt'"
    problems = _pair_problems(prompt, chosen, rejected, prompt_name)
    return ({} if problems else {"prompt": prompt, "chosen": chosen, "rejected": rejected}), problems


def _pair_problems(prompt: list[dict], chosen: list[dict], rejected: list[dict], prompt_name: str) -> list[str]:
    """What every form of pair must satisfy once its parts are valid messages."""
    problems = []
    if prompt[-1]["role"] == "assistant":
        problems.append(f"{prompt_name} ends with an assistant message, but the prompt is the conversation up to the "
                        "reply being judged: end it with the user's turn (move that reply into 'chosen' and "
                        "'rejected', or drop it)")
    if [(m["role"], m["content"].strip()) for m in chosen] == [(m["role"], m["content"].strip()) for m in rejected]:
        problems.append("'chosen' and 'rejected' are the same reply: an identical pair teaches the model nothing; "
                        "make 'rejected' the worse reply, or drop the record")
    return problems


def _named_messages(value, name: str, role_key: str = "role", text_key: str = "content", role_map: dict | None = None,
                    reply: bool = True) -> tuple[list[dict], list[str]]:
    """`_check_messages` for one part of a pair: each problem names the part; a reply must end with the assistant."""
    msgs, problems = _check_messages(value, name, role_key, text_key, role_map, needs_reply=False,
                                     sharegpt="sharegpt_preference")
    problems = [p if p.startswith(name) else f"{name}: {p}" for p in problems]
    if reply and not problems and msgs[-1]["role"] != "assistant":
        problems.append(f"{name} must end with an assistant message, the reply being judged; its last message is "
                        f"from the {msgs[-1]['role']}")
    return msgs, problems


def _mixed(values: dict) -> str | None:
    """A record that writes some parts as text and others as message lists (TRL takes one or the other)."""
    lists = [n for n, v in values.items() if isinstance(v, list)]
    texts = [n for n, v in values.items() if isinstance(v, str)]
    if not (lists and texts):
        return None
    fix = ("write all three as text, or all three as lists of {'role', 'content'} messages" if "prompt" in values
           else "write both as whole conversations, lists of {'role', 'content'} messages")
    return (f"{_names(lists)} {'is a list' if len(lists) == 1 else 'are lists'} of messages, but {_names(texts)} "
            f"{'is' if len(texts) == 1 else 'are'} text; {fix}")


def _names(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _explicit_pair(record: dict) -> tuple[tuple | None, list[str]]:
    """TRL's explicit prompt: three texts, or three lists of messages."""
    values = {name: record[name] for name in FIELDS["preference"]}
    mixed = _mixed(values)
    if mixed:
        return None, [mixed]
    if not any(isinstance(v, list) for v in values.values()):  # TRL's standard (text) form
        texts = [_text(v, f"'{name}'") for name, v in values.items()]
        problems = [w for _, w in texts if w]
        (p, _), (c, _), (r, _) = texts
        parts = ([{"role": "user", "content": p}], [{"role": "assistant", "content": c}],
                 [{"role": "assistant", "content": r}])
        return (None, problems) if problems else (parts, [])
    prompt, p1 = _named_messages(values["prompt"], "'prompt'", reply=False)
    chosen, p2 = _named_messages(values["chosen"], "'chosen'")
    rejected, p3 = _named_messages(values["rejected"], "'rejected'")
    if p1 or p2 or p3:
        return None, p1 + p2 + p3
    # A common slip: whole conversations in chosen / rejected beside a prompt, so the prompt would come twice.
    repeat = [n for n, msgs in (("chosen", chosen), ("rejected", rejected)) if msgs[:len(prompt)] == prompt]
    if repeat:
        return None, [f"{_names(repeat)} {'repeats' if len(repeat) == 1 else 'repeat'} the prompt before the reply; "
                      "beside a 'prompt' field, 'chosen' and 'rejected' hold only the reply: drop the prompt's "
                      "messages from them (or drop 'prompt': TRL's implicit-prompt form)"]
    return (prompt, chosen, rejected), []


def _implicit_pair(record: dict) -> tuple[tuple | None, list[str]]:
    """TRL's implicit prompt: two whole conversations, the same up to the final assistant reply."""
    chosen, rejected = record["chosen"], record["rejected"]
    if not isinstance(chosen, list) and not isinstance(rejected, list) and str in (type(chosen), type(rejected)):
        return None, [NO_PROMPT]
    mixed = _mixed({"chosen": chosen, "rejected": rejected})
    if mixed:
        return None, [mixed]
    chosen, p1 = _named_messages(chosen, "'chosen'")
    rejected, p2 = _named_messages(rejected, "'rejected'")
    if p1 or p2:
        return None, p1 + p2
    kc, kr = _reply_start(chosen), _reply_start(rejected)
    bare = [n for n, k in (("chosen", kc), ("rejected", kr)) if k == 0]
    if bare:
        return None, [f"{_names(bare)} {'holds' if len(bare) == 1 else 'hold'} only the assistant's reply, with no "
                      "prompt before it: without a 'prompt' field, both are whole conversations that start with the "
                      "same prompt (the user's turn); add it to both, or give it as a 'prompt' field"]
    if chosen[:kc] != rejected[:kr]:
        return None, [_prompt_difference(chosen[:kc], rejected[:kr])]
    return (chosen[:kc], chosen[kc:], rejected[kr:]), []


def _reply_start(msgs: list[dict]) -> int:
    """Where the final assistant turn (the trailing assistant messages) begins."""
    k = len(msgs)
    while k and msgs[k - 1]["role"] == "assistant":
        k -= 1
    return k


def _prompt_difference(a: list[dict], b: list[dict]) -> str:
    """Where the prompts of an implicit-prompt pair part: the first message that differs, or their lengths."""
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    if i is None:
        where = f"'chosen' has {_n(len(a), 'message')} before its final reply and 'rejected' {len(b)}"
    else:
        x, y = a[i], b[i]
        said = (f"the {x['role']}'s in 'chosen', the {y['role']}'s in 'rejected'" if x["role"] != y["role"]
                else f"{x['role']}: {_excerpts(x['content'], y['content'])}")
        where = f"they differ at message {i + 1} ({said})"
    return ("without a 'prompt' field, 'chosen' and 'rejected' must share the prompt (every message before the "
            f"final assistant reply), but {where}; make them the same up to the reply, or write the record as "
            "'prompt', 'chosen' and 'rejected'")


def _excerpts(a: str, b: str, k: int = 30) -> str:
    """A few characters of each text from just before where they first differ: "'...ran late'" vs "'...ran early'"."""
    start = max(0, len(os.path.commonprefix([a, b])) - 10)
    cut = lambda t: ("..." if start else "") + t[start:start + k] + ("..." if len(t) > start + k else "")
    return f"{cut(a)!r} vs {cut(b)!r}"


def _sharegpt_pair(record: dict) -> tuple[tuple | None, list[str]]:
    """The ShareGPT layout: `conversations` (and `system`) is the prompt; chosen / rejected one message each."""
    prompt, problems = _named_messages(record["conversations"], "'conversations'", "from", "value", SHAREGPT_ROLES,
                                       reply=False)
    prompt, problems = _with_system(record, prompt, problems)
    (chosen, p1), (rejected, p2) = (_sharegpt_reply(record[n], f"'{n}'") for n in ("chosen", "rejected"))
    problems += p1 + p2
    return (None, problems) if problems else ((prompt, chosen, rejected), [])


def _sharegpt_reply(value, name: str) -> tuple[list[dict], list[str]]:
    """One {"from": "gpt", "value": ...} object, or a list of them."""
    if isinstance(value, str):
        return [], [f"{name} is text, but in the ShareGPT layout it is one {{\"from\": \"gpt\", \"value\": ...}} "
                    "object; write it so, or use the 'preference' format (prompt, chosen and rejected as text)"]
    return _named_messages([value] if isinstance(value, dict) else value, name, "from", "value", SHAREGPT_ROLES)


def reply_text(row: dict) -> str:
    """The reply a converted row trains towards: its final assistant message, or a pair's chosen one."""
    last = (row["chosen"] if "chosen" in row else row["messages"])[-1]
    calls = [f"{c['function']['name']}({json.dumps(c['function']['arguments'], ensure_ascii=False)})"
             for c in last.get("tool_calls") or []]
    return last["content"] or " ".join(calls)


def _map_hint(keys: list[str]) -> str:
    """How to rename unknown fields: a suggested --map from common synonyms and near-misspellings."""
    known = sorted({f for fs in FIELDS.values() for f in fs})
    pairs = []
    for k in keys:
        target = SYNONYMS.get(k.lower()) or next(iter(difflib.get_close_matches(k.lower(), known, n=1)), None)
        if target:
            pairs.append(f"{k}={target}")
    fix = f"--map {','.join(pairs)}" if pairs else "--map old=new"
    return f"none is a field the course knows; rename them with {fix} (known fields: {', '.join(known)})"


def _schema_problem(records: list, fmt: str | None, header_at: str) -> str | None:
    """When every record has the same fields (a CSV header, a Parquet or Hub table), report a wrong schema once."""
    keysets = {tuple(r) for r in records if isinstance(r, dict) and not _is_blank(r)}
    if len(keysets) != 1:
        return None
    keys = list(next(iter(keysets)))
    own = detect_format(dict.fromkeys(keys))
    columns = (f"the header's columns are {', '.join(map(repr, keys))}" if header_at.endswith(":1:")
               else f"every record has the fields {', '.join(map(repr, keys))}")
    if own is None:
        return f"{header_at} {columns}; {_map_hint(keys)}"
    missing = [f for f in REQUIRED[fmt or own] if f not in keys]
    if missing:
        return (f"{header_at} {columns}, but the {fmt or own!r} format needs {', '.join(REQUIRED[fmt or own])}: "
                f"{', '.join(map(repr, missing))} missing; add it, or rename a column with --map old=new")
    if (fmt or own) == "preference" and "prompt" not in keys and all(
            isinstance(r["chosen"], str) for r in records if isinstance(r, dict) and not _is_blank(r)):
        return f"{header_at} {columns}: {NO_PROMPT}"
    return None


def validate_records(records: list, where: str, locations: list[int] | None = None, unit: str = "line",
                     fmt: str | None = None, mapping: dict | str | None = None,
                     header_at: str | None = None) -> ValidationReport:
    """Check every record, convert the valid ones to chat form, and collect problems as WHERE:N: messages.

    `header_at` says where a problem shared by every record is reported (a CSV's header line); default WHERE:.
    """
    header_at = header_at or f"{where}:"
    locations = locations or list(range(1, len(records) + 1))
    mapping = parse_mapping(mapping)
    report = ValidationReport(source=where, unit=unit)
    fmt = None if fmt == "auto" else fmt
    explicit = fmt is not None
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)} (or leave it out to detect it)")
    if mapping:
        present = {k for r in records if isinstance(r, dict) for k in r}
        absent = [k for k in mapping if k not in present]
        if absent:
            report.problems.append(f"{where}: --map names {', '.join(map(repr, absent))}, which no record has; "
                                   f"the fields are {', '.join(sorted(present))}")
            return report
        records = [{mapping.get(k, k): v for k, v in r.items()} if isinstance(r, dict) else r for r in records]
    schema = _schema_problem(records, fmt, header_at)
    if schema:
        report.problems.append(schema)
        return report
    detected, non_text, unused = {}, {}, Counter()
    owns = [None if _is_blank(record) else detect_format(record) for record in records]  # "" marks a blank record
    owns = ["" if own is None and _is_blank(record) else own for own, record in zip(owns, records)]
    for n, own in zip(locations, owns):
        if own != "":
            detected.setdefault(own, []).append(n)
    formats = [f for f in detected if f is not None]
    if fmt is None:
        fmt = max(formats, key=lambda f: len(detected[f])) if formats else None
    report.format = fmt
    report.records = sum(len(ns) for ns in detected.values())
    from tqdm.auto import tqdm

    checking = tqdm(zip(locations, records, owns), total=len(records), desc="checking records", unit=" records",
                    delay=2, leave=False)
    for n, record, own in checking:
        at = f"{where}:{n}:"
        if own == "":
            report.empty.append(n)
            continue
        if not isinstance(record, dict):
            report.problems.append(f"{at} a JSON {type(record).__name__}, but each record must be an object "
                                   "with named fields, such as {\"instruction\": ..., \"output\": ...}")
            continue
        if own is None:
            report.problems.append(f"{at} the fields are {', '.join(map(repr, record))}; {_map_hint(list(record))}")
            continue
        if fmt is not None and own != fmt and not set(record) & set(FIELDS[fmt]):
            said = (f"--format is {fmt!r}; leave --format out to detect it, or convert the file" if explicit else
                    f"the file's records are {fmt!r} (first at {unit} {detected[fmt][0]}); one file holds one "
                    "format: convert this record or move it to its own file")
            report.problems.append(f"{at} this record is in the {own!r} format, but {said}")
            continue
        media = [f for f in MEDIA_FIELDS if record.get(f) not in (None, "", [], {})]
        row, problems = ({}, [NonText(f"'{media[0]}' field")]) if media else to_row(record, fmt)
        for p in (p for p in problems if isinstance(p, NonText)):
            non_text.setdefault(p.kind, []).append(n)
        kept = [p for p in problems if not isinstance(p, NonText)]
        if len(kept) < len(problems) and not kept:  # only non-text content: reported once for the file, below
            continue
        problems = kept
        unused.update(_unused_fields(record, fmt))
        group = record.get(GROUP_FIELD)
        if group is not None and not (isinstance(group, str) and group.strip()):
            problems.append(f"'{GROUP_FIELD}' is {type(group).__name__}, but it labels the row for scoring apart: "
                            "give text, such as \"unseen phrasing\", or leave the field out")
        report.problems += [f"{at} {p}" for p in problems]
        if not problems:
            report.rows.append({**row, **({GROUP_FIELD: group.strip()} if group else {})})
            report.locations.append(n)
    if non_text:
        report.problems.insert(0, _non_text_problem(non_text, where, unit))
    if not report.rows and not report.problems:
        report.problems.append(f"{where}: no examples; every record is empty")
    if report.problems:
        report.rows, report.locations = [], []
    else:
        report.warnings = dataset_warnings(report)
        report.notes = _notes(report.rows, unused, report.records)
    return report


def _non_text_problem(non_text: dict[str, list[int]], where: str, unit: str) -> str:
    """One message for every record of a file that holds images, audio or files, whatever part types they use."""
    records = sorted({n for ns in non_text.values() for n in ns})
    kinds = "; ".join(f"{kind.replace('_', ' ')}s in {_n(len(ns), 'record')} ({unit}s {_some(ns)})"
                      for kind, ns in non_text.items())
    return (f"{where}: {_n(len(records), 'record')} {'holds' if len(records) == 1 else 'hold'} content that is not "
            f"text ({kinds}). The course fine-tunes text-only language models, which would never see it, so these "
            "records are refused rather than trained without it: remove the non-text parts (keeping the text) or "
            "those records, or fine-tune a vision-language model (outside this course)")


def _unused_fields(record: dict, fmt: str) -> list[str]:
    """The fields (and message keys) of a record that the converted row leaves out, such as 'id' or 'messages[].refusal'."""
    names = [k for k in record if k not in FIELDS[fmt] and k != GROUP_FIELD]
    for name in ("messages", "conversations", "prompt", "completion"):
        msgs = record.get(name)
        if name in FIELDS[fmt] and isinstance(msgs, list):
            own = ("from", "value") if name == "conversations" else ("role", "content")
            names += sorted({f"{name}[].{k}" for m in msgs if isinstance(m, dict) for k in m
                             if k not in own and k not in MESSAGE_KEYS})
    return names


def _notes(rows: list[dict], unused: dict[str, int], records: int) -> list[str]:
    """What a valid file holds that is worth knowing before training: fields left out, tool use, weight-0 turns."""
    notes = []
    if unused:
        fields = ", ".join(f"{k!r} ({'every record' if c == records else _n(c, 'record')})" for k, c in unused.items())
        notes.append(f"not used for training, left out of the converted rows: {fields}; rename a field with --map "
                     "old=new if it holds what the model should learn")
    calls = sum(len(m.get("tool_calls", [])) for r in rows for m in r.get("messages", []))
    if calls:
        users = sum(any("tool_calls" in m for m in r.get("messages", [])) for r in rows)
        notes.append(f"{_n(users, 'example')} with {_n(calls, 'tool call')}: the model's chat template must render "
                     "tool calls and results (checked when the data meets the tokenizer); the calls are trained like "
                     "any reply")
    silent = sum(m.get("weight") == 0 for r in rows for m in r.get("messages", []))
    if silent:
        notes.append(f"{_n(silent, 'assistant reply')} with weight 0: kept as context, with no loss on them")
    return notes


def dataset_warnings(report: ValidationReport, tokenizer=None, max_length: int | None = None) -> list[str]:
    """Things that are allowed but worth a look: few examples (or pairs), duplicates, very short (chosen) replies,
    empty records, and (given a tokenizer) examples longer than max_length (a pair: prompt + its longer reply)."""
    rows, where, unit, noun = report.rows, report.source, report.unit, report.noun
    pairs = report.kind == "preference"
    warnings = []
    held_out = re.search(r"(^|[/\\\[])(test|validation|valid|val|dev)(\.\w+|\])$", where)
    if len(rows) < MIN_EXAMPLES and not held_out:  # a small validation or test split is normal
        warnings.append(f"only {_n(len(rows), noun)}; {'preference tuning' if pairs else 'fine-tuning'} usually "
                        f"needs at least {MIN_EXAMPLES} (hundreds are better) to learn a pattern rather than memorise "
                        "a few answers")
    if report.empty:
        warnings.append(f"{_n(len(report.empty), 'empty record')} skipped ({unit}s {_some(report.empty)})")
    seen, dupes = {}, []
    for n, row in zip(report.locations, rows):
        key = repr({k: v for k, v in row.items() if k != GROUP_FIELD} if GROUP_FIELD in row else row)
        if key in seen:
            dupes.append(f"{n} = {seen[key]}")
        seen.setdefault(key, n)
    if dupes:
        warnings.append(f"{_n(len(dupes), 'exact duplicate')} ({unit}s {_some(dupes)}); cleaning removes them")
    short = [n for n, row in zip(report.locations, rows) if len(reply_text(row).strip()) < SHORT_REPLY]
    if short:
        warnings.append(f"{_n(len(short), 'chosen reply' if pairs else 'reply')} shorter than {SHORT_REPLY} characters "
                        f"({unit}s {_some(short)}); "
                        "check they are meant to be that short")
    long = length_warning(report, tokenizer, max_length) if tokenizer is not None and max_length else None
    return warnings + ([long] if long else [])


def length_warning(report: ValidationReport, tokenizer, max_length: int) -> str | None:
    """The examples (or pairs) longer than max_length tokens after the chat template, if any."""
    from .data import token_lengths

    long = [(n, k) for n, k in zip(report.locations, token_lengths(report.rows, tokenizer)) if k > max_length]
    if not long:
        return None
    return (f"{_n(len(long), report.noun)} longer than max_length={max_length} tokens (longest "
            f"{max(k for _, k in long)}, {report.unit}s {_some([n for n, _ in long])}): they would be truncated, "
            "cutting off the answer; cleaning drops them, or raise max_length")


def _n(count: int, noun: str) -> str:
    """'1 example', '3 examples'."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun[:-1]}ies" if re.search(r"[^aeiou]y$", noun) else f"{count} {noun}s"


def _some(items: list, k: int = 5) -> str:
    return ", ".join(map(str, items[:k])) + (f" and {len(items) - k} more" if len(items) > k else "")


def validate_file(path: str | Path, fmt: str | None = None, mapping: dict | str | None = None,
                  tokenizer=None, max_length: int | None = None) -> ValidationReport:
    """Read one file and check every record; file-level problems (not found, empty, broken JSON) included."""
    try:
        records, locations, unit = read_records(path)
    except DataError as e:
        return ValidationReport(source=str(path), problems=str(e).splitlines())
    header_at = f"{path}:1:" if Path(path).suffix.lower() == ".csv" else None
    report = validate_records(records, str(path), locations, unit, fmt, mapping, header_at)
    long = length_warning(report, tokenizer, max_length) if report.ok and tokenizer is not None and max_length else None
    report.warnings += [long] if long else []
    return report
