"""Every supported format loads; every malformed file gives its own message, with its file and line or record."""

import json
from pathlib import Path

import pytest

from helpers import cli
from helpers.formats import MAX_PROBLEMS, dataset_warnings, detect_format, validate_file, validate_records

CASES = Path(__file__).parent / "data_cases"
BAD = CASES / "bad"

# file, extra arguments, where the problem is reported (FILE:N: or FILE:), what it says
MALFORMED = [
    ("truncated.json", {}, "truncated.json:13:", "not valid JSON: Expecting property name"),
    ("truncated.json", {}, "truncated.json:13:", "the file may be cut short"),
    ("truncated_line.jsonl", {}, "truncated_line.jsonl:3:", "not valid JSON (Unterminated string"),
    ("missing_output.jsonl", {}, "missing_output.jsonl:2:", "missing field 'output'"),
    ("empty_output.json", {}, "empty_output.json:3:", "'output' is empty"),
    ("list_output.jsonl", {}, "list_output.jsonl:2:", "'output' is a list, but text belongs here"),
    ("number_output.json", {}, "number_output.json:1:", "'output' is a number (42)"),
    ("messages_string.jsonl", {}, "messages_string.jsonl:1:", "'messages' is a string, but it must be a list"),
    ("null_content.jsonl", {}, "null_content.jsonl:2:", "message 1 (user) content is missing (null)"),
    ("unknown_role.jsonl", {}, "unknown_role.jsonl:3:", "message 2 has role 'bot'; use one of system, user, assistant, tool"),
    ("sharegpt_bad_from.json", {}, "sharegpt_bad_from.json:2:", "message 2 has from 'robot'"),
    ("no_assistant.jsonl", {}, "no_assistant.jsonl:2:", "no assistant reply"),
    ("trailing_user.jsonl", {}, "trailing_user.jsonl:1:", "the last message is from the user"),
    ("system_in_middle.jsonl", {}, "system_in_middle.jsonl:1:", "a system message may only come first"),
    ("mixed_formats.jsonl", {}, "mixed_formats.jsonl:3:", "in the 'chat' format, but the file's records are "
                                                           "'instruction' (first at line 1)"),
    ("array_line.jsonl", {}, "array_line.jsonl:2:", "a JSON list, but each record must be an object"),
    ("empty.jsonl", {}, "empty.jsonl:", "the file is empty"),
    ("blank.jsonl", {}, "blank.jsonl:", "only blank lines or spaces"),
    ("binary.jsonl", {}, "binary.jsonl:", "a binary file, not text"),
    ("latin1.jsonl", {}, "latin1.jsonl:2:", "not UTF-8 text (byte 0xe9)"),
    ("missing.jsonl", {}, "missing.jsonl:", "no such file"),
    ("notes.txt", {}, "notes.txt:", "unsupported file type '.txt'"),
    ("object.json", {}, "object.json:", "one JSON object, but a .json dataset must be an array"),
    ("object.json", {}, "object.json:", "the list under 'data'"),
    ("jsonl_as_json.json", {}, "jsonl_as_json.json:2:", "this looks like JSON Lines"),
    ("missing_columns.csv", {}, "missing_columns.csv:1:", "'output' missing"),
    ("field_count.csv", {}, "field_count.csv:3:", "3 fields, but the header has 2; put quotes around"),
    ("unknown_fields.csv", {}, "unknown_fields.csv:1:", "--map question=instruction,answer=output"),
    ("unknown_fields.jsonl", {}, "unknown_fields.jsonl:", "--map question=instruction,answer=output"),
    ("bad_map_target.jsonl", {"mapping": "answr=output"}, "bad_map_target.jsonl:", "--map names 'answr', which no "
                                                                                   "record has"),
    ("broken.parquet", {}, "broken.parquet:", "not a readable Parquet file"),
    ("mixed_formats.jsonl", {"fmt": "chat"}, "mixed_formats.jsonl:1:", "but --format is 'chat'"),
    # preference pairs
    ("pair_missing_rejected.jsonl", {}, "pair_missing_rejected.jsonl:2:", "missing field 'rejected' (the 'preference' "
                                                                           "format needs chosen, rejected); a pair needs"),
    ("pair_empty_chosen.json", {}, "pair_empty_chosen.json:2:", "'chosen' is empty; write the text or drop the record"),
    ("pair_empty_chosen.json", {}, "pair_empty_chosen.json:3:", "'chosen' must be a non-empty list of"),
    ("pair_identical.jsonl", {}, "pair_identical.jsonl:2:", "'chosen' and 'rejected' are the same reply: an identical "
                                                             "pair teaches the model nothing"),
    ("pair_prompts_differ.jsonl", {}, "pair_prompts_differ.jsonl:2:", "must share the prompt (every message before the "
     "final assistant reply), but they differ at message 1 (user: '...h Ana ran late.' vs '...h Ana ran early.')"),
    ("pair_prompt_ends_with_assistant.jsonl", {}, "pair_prompt_ends_with_assistant.jsonl:1:",
     "'prompt' ends with an assistant message"),
    ("pair_mixed.jsonl", {}, "pair_mixed.jsonl:1:", "'chosen' is a list of messages, but 'prompt' and 'rejected' are "
                                                     "text; write all three as text, or all three as lists"),
    ("pair_reply_from_user.json", {}, "pair_reply_from_user.json:1:", "'rejected' must end with an assistant message"),
    ("pair_missing_rejected.csv", {}, "pair_missing_rejected.csv:1:", "the 'preference' format needs chosen, rejected: "
                                                                       "'rejected' missing"),
    ("pair_no_prompt.csv", {}, "pair_no_prompt.csv:1:", "'chosen' and 'rejected' are text, but there is no 'prompt'"),
    # content that is not text, tools, weights
    ("image_parts.jsonl", {}, "image_parts.jsonl:", "3 records hold content that is not text (image url parts in 2 "
                                                    "records (lines 1, 4); input audio parts in 1 record (lines 3))"),
    ("image_parts.jsonl", {}, "image_parts.jsonl:", "remove the non-text parts (keeping the text) or those records, or "
                                                    "fine-tune a vision-language model"),
    ("images_field.jsonl", {}, "images_field.jsonl:", "2 records hold content that is not text ('images' fields in 2 "
                                                      "records (lines 1, 2))"),
    ("tool_result_first.jsonl", {}, "tool_result_first.jsonl:1:", "message 2 is a tool result, but no tool call is "
                                                                  "waiting for it"),
    ("tool_call_bad_arguments.jsonl", {}, "tool_call_bad_arguments.jsonl:1:", "message 2, tool call 1 (get_weather): "
                                                                              "'arguments' is not valid JSON"),
    ("tool_call_no_name.jsonl", {}, "tool_call_no_name.jsonl:1:", "message 2, tool call 1 has no function name"),
    ("tool_undefined.jsonl", {}, "tool_undefined.jsonl:1:", "the assistant calls 'book_room', which 'tools' does not "
                                                            "define (it defines 'get_weather')"),
    ("tool_wrong_id.jsonl", {}, "tool_wrong_id.jsonl:1:", "message 3 answers tool_call_id 'call_9', but the waiting "
                                                          "calls are 'call_1'"),
    ("bad_weight.jsonl", {}, "bad_weight.jsonl:1:", "message 2 has weight 0.5; use 0 (do not train on this reply) or 1"),
    ("bad_weight.jsonl", {}, "bad_weight.jsonl:2:", "message 1 (user) has a weight; only assistant messages carry one"),
    ("bad_weight.jsonl", {}, "bad_weight.jsonl:3:", "every assistant message has weight 0, so nothing in this example "
                                                    "is trained"),
]


@pytest.mark.parametrize("name, kwargs, where, message", MALFORMED, ids=[f"{c[0]}-{i}" for i, c in enumerate(MALFORMED)])
def test_malformed_file_gets_its_message_and_line(name, kwargs, where, message):
    path = BAD / name
    before = path.read_bytes() if path.exists() else None
    report = validate_file(path, **kwargs)
    assert not report.ok and not report.rows
    hits = [p for p in report.problems if p.startswith(str(path) + where[len(name):]) and message in p]
    assert hits, f"expected {where} ... {message!r}, got:\n{report.problem_text()}"
    if before is not None:
        assert path.read_bytes() == before, "validation must never modify the input"


def test_corpus_has_at_least_fifteen_distinct_malformed_files():
    assert len({c[0] for c in MALFORMED}) >= 15
    assert {p.name for p in BAD.iterdir()} <= {c[0] for c in MALFORMED}, "every file in the corpus is tested"


def test_every_problem_is_listed_up_to_a_cap(tmp_path):
    path = tmp_path / "many.jsonl"
    good = {"instruction": "Name a colour.", "output": "Blue."}
    rows = [good, {"instruction": "x"}, good, {"instruction": "y", "output": ""}] + [{"instruction": "z"}] * 120
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = validate_file(path)
    assert len(report.problems) == 122
    assert f"{path}:2: missing field 'output'" in report.problems[0] and f"{path}:4: 'output' is empty" in report.problems[1]
    text = report.problem_text()
    assert len(text.splitlines()) == MAX_PROBLEMS + 1 and text.endswith("fix these and run again")


GOOD = [  # file, arguments, format, first row's messages
    ("bom_crlf.jsonl", {}, "chat", [("system", "Answer briefly."), ("user", "Où est la gare ? 🚉"),
                                    ("assistant", "Tout droit, puis à gauche.")]),
    ("quoted.csv", {}, "instruction", [("user", "Summarise, in one line.\n\nFirst line,\r\nsecond line."),
                                       ("assistant", "Two lines, summarised.")]),
    ("alpaca.json", {}, "instruction", [("user", "Convert 5 km to metres."), ("assistant", "5,000 metres.")]),
    ("sharegpt.json", {}, "sharegpt", [("system", "You are terse."), ("user", "Capital of Peru?"),
                                       ("assistant", "Lima."), ("user", "And of Chile?"), ("assistant", "Santiago.")]),
    ("prompt_completion.jsonl", {}, "prompt_completion", [("user", "2 + 2 ="), ("assistant", " 4")]),
    ("prompt_completion_chat.jsonl", {}, "prompt_completion", [("system", "Be brief."), ("user", "Hi"),
                                                               ("assistant", "Hello.")]),
    ("text.jsonl", {}, "text", [("assistant", "The river runs past the old mill.")]),
    ("mapped.csv", {"mapping": "question=instruction,answer=output"}, "instruction",
     [("user", "What is 2 + 2?"), ("assistant", "4")]),
    ("openai_parts.jsonl", {}, "chat", [("system", "Answer briefly."), ("user", "Name the city:\n'Lunch in Oslo at noon.'"),
                                        ("assistant", "Oslo")]),
    ("openai_tools.jsonl", {}, "chat", [("user", "Weather in Oslo?"), ("assistant", ""),
                                        ("tool", '{"forecast": "snow, -2 C"}'), ("assistant", "Snow in Oslo today, -2 C.")]),
    ("sharegpt_tools.json", {}, "sharegpt", [("user", "Weather in Accra?"), ("assistant", ""),
                                             ("tool", '{"forecast": "clear, 31 C"}'), ("assistant", "Clear in Accra, 31 C.")]),
]


@pytest.mark.parametrize("name, kwargs, fmt, first", GOOD, ids=[g[0] for g in GOOD])
def test_well_formed_file_loads_into_chat_form(name, kwargs, fmt, first):
    report = validate_file(CASES / "good" / name, **kwargs)
    assert report.ok, report.problem_text()
    assert report.format == fmt
    assert [(m["role"], m["content"]) for m in report.rows[0]["messages"]] == first


def test_quoted_csv_keeps_commas_quotes_and_newlines_and_skips_the_empty_row():
    report = validate_file(CASES / "good" / "quoted.csv")
    assert report.rows[1]["messages"] == [{"role": "user", "content": 'Say "hello" in Polish.'},
                                          {"role": "assistant", "content": "Cześć"}]
    assert report.locations == [2, 4] and report.empty == [5]  # record 1 spans lines 2-3
    assert any("1 empty record skipped (lines 5)" in w for w in report.warnings)


def test_parquet_and_the_same_records_in_every_file_type_agree(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = json.loads((CASES / "good" / "alpaca.json").read_text(encoding="utf-8"))
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "alpaca.parquet")
    (tmp_path / "alpaca.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    rows = [validate_file(p).rows for p in (CASES / "good" / "alpaca.json", tmp_path / "alpaca.parquet",
                                            tmp_path / "alpaca.jsonl")]
    assert rows[0] == rows[1] == rows[2]
    assert rows[0][1]["messages"][0]["content"] == "Give the plural.\n\nnaïve café"  # input joins the instruction


def test_warnings_for_few_duplicate_short_and_long_examples(tiny_model_dir):
    from transformers import AutoTokenizer

    rows = [{"instruction": f"Repeat {i}.", "output": f"{i} {i}"} for i in range(10)]
    rows += [rows[0], {"instruction": "Say a letter.", "output": "a"}, {"instruction": "word " * 300, "output": "ok!"}]
    report = validate_records(rows, "mine.json", unit="record")
    from helpers.formats import dataset_warnings

    warnings = "\n".join(dataset_warnings(report, AutoTokenizer.from_pretrained(tiny_model_dir), 64))
    assert "only 13 examples" in warnings
    assert "1 exact duplicate (records 11 = 1)" in warnings
    assert "1 reply shorter than 3 characters (records 12)" in warnings
    assert "1 example longer than max_length=64 tokens" in warnings and "records 13" in warnings


def test_validate_data_command_accepts_a_valid_folder(capsys):
    assert cli.main(["validate-data", "data/meetings"]) == 0
    out = capsys.readouterr().out
    assert "data/meetings/train.jsonl: 432 examples, format 'chat', valid" in out
    assert "problem" not in out
    assert "token lengths counted with the tokenizer of tiny against max_length 256" in out


def test_validate_data_command_lists_problems_and_exits_2(capsys):
    assert cli.main(["validate-data", str(BAD / "unknown_role.jsonl")]) == 2
    assert "unknown_role.jsonl:3: message 2 has role 'bot'" in capsys.readouterr().out
    assert cli.main(["validate-data", str(CASES / "good" / "mapped.csv"),
                     "--map", "question=instruction,answer=output"]) == 0


def test_validate_data_command_never_shows_a_traceback(capsys):
    for args in (["nowhere/train.jsonl"], [str(BAD / "mapped.csv"), "--map", "question"], [str(BAD / "binary.jsonl")]):
        assert cli.main(["validate-data", *args]) == 2
        captured = capsys.readouterr()
        assert "Traceback" not in captured.out + captured.err


# --- preference pairs ---------------------------------------------------------------------------------------------
def _m(role, content):
    return {"role": role, "content": content}


GOOD_PAIRS = [  # file, arguments, format, first row (TRL's explicit-prompt conversational form)
    ("preference.jsonl", {}, "preference",
     {"prompt": [_m("user", "Capital of Peru?")], "chosen": [_m("assistant", "Lima.")],
      "rejected": [_m("assistant", "Peru has no capital.")], "group": "geography"}),
    ("preference_chat.jsonl", {}, "preference",
     {"prompt": [_m("system", "Be brief."), _m("user", "Hi")], "chosen": [_m("assistant", "Hello.")],
      "rejected": [_m("assistant", "Greetings, dear user, how may I help?")]}),
    ("preference_implicit.jsonl", {}, "preference",
     {"prompt": [_m("user", "Capital of Peru?"), _m("assistant", "Lima."), _m("user", "And of Chile?")],
      "chosen": [_m("assistant", "Santiago.")], "rejected": [_m("assistant", "Buenos Aires.")]}),
    ("sharegpt_preference.json", {}, "sharegpt_preference",
     {"prompt": [_m("system", "You are terse."), _m("user", "Capital of Peru?")], "chosen": [_m("assistant", "Lima.")],
      "rejected": [_m("assistant", "Cusco, I think.")]}),
    ("preference.csv", {}, "preference", {"prompt": [_m("user", "Summarise, in one line.")],
                                         "chosen": [_m("assistant", "Two lines, summarised.")],
                                         "rejected": [_m("assistant", "I cannot, sorry.")]}),
    ("preference.jsonl", {"fmt": "preference"}, "preference", None),
    ("sharegpt_preference.json", {"fmt": "sharegpt_preference"}, "sharegpt_preference", None),
]


@pytest.mark.parametrize("name, kwargs, fmt, first", GOOD_PAIRS, ids=[f"{g[0]}-{i}" for i, g in enumerate(GOOD_PAIRS)])
def test_preference_file_loads_into_trl_pairs(name, kwargs, fmt, first):
    report = validate_file(CASES / "good" / name, **kwargs)
    assert report.ok, report.problem_text()
    assert report.format == fmt and report.kind == "preference" and len(report.rows) == 2
    if first is not None:
        assert report.rows[0] == first


def test_the_second_sharegpt_pair_takes_a_one_element_list():
    rows = validate_file(CASES / "good" / "sharegpt_preference.json").rows
    assert rows[1] == {"prompt": [_m("user", "Name a fruit.")], "chosen": [_m("assistant", "Pear.")],
                       "rejected": [_m("assistant", "Carrot.")]}


def test_a_pair_is_detected_before_prompt_completion_and_sharegpt():
    assert detect_format({"prompt": "", "chosen": "", "rejected": ""}) == "preference"
    assert detect_format({"prompt": "", "chosen": ""}) == "preference"  # then told 'rejected' is missing
    assert detect_format({"chosen": [], "rejected": []}) == "preference"
    assert detect_format({"conversations": [], "chosen": {}, "rejected": {}}) == "sharegpt_preference"
    assert detect_format({"prompt": "", "completion": ""}) == "prompt_completion"
    assert detect_format({"conversations": []}) == "sharegpt"


def test_pairs_with_problems_get_one_message_each_and_a_cap(tmp_path):
    path = tmp_path / "same.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": "Yes.", "rejected": "Yes."}) + "\n"
                            for i in range(300)))
    report = validate_file(path)
    assert report.format == "preference" and len(report.problems) == 300
    assert report.problems[0] == (f"{path}:1: 'chosen' and 'rejected' are the same reply: an identical pair teaches "
                                  "the model nothing; make 'rejected' the worse reply, or drop the record")
    lines = report.problem_text().splitlines()
    assert len(lines) == MAX_PROBLEMS + 1 and lines[-1] == "... and 250 more problems; fix these and run again"


def test_a_file_wide_pair_problem_is_reported_once():
    for name in ("pair_missing_rejected.csv", "pair_no_prompt.csv"):
        report = validate_file(BAD / name)
        assert len(report.problems) == 1, report.problems
    assert validate_file(BAD / "pair_missing_rejected.csv").problems == [
        f"{BAD / 'pair_missing_rejected.csv'}:1: the header's columns are 'prompt', 'chosen', but the 'preference' "
        "format needs chosen, rejected: 'rejected' missing; add it, or rename a column with --map old=new"]


def test_implicit_prompts_that_differ_in_length_are_told_so():
    a = [_m("user", "Hi"), _m("assistant", "Hello."), _m("user", "Bye"), _m("assistant", "Bye!")]
    report = validate_records([{"chosen": a, "rejected": a[:1] + [_m("assistant", "Go.")]}], "p.jsonl")
    assert report.problems == ["p.jsonl:1: without a 'prompt' field, 'chosen' and 'rejected' must share the prompt "
                               "(every message before the final assistant reply), but 'chosen' has 3 messages before "
                               "its final reply and 'rejected' 1; make them the same up to the reply, or write the "
                               "record as 'prompt', 'chosen' and 'rejected'"]
    only_reply = validate_records([{"chosen": [_m("assistant", "A")], "rejected": [_m("assistant", "B")]}], "p.jsonl")
    assert "'chosen' and 'rejected' hold only the assistant's reply, with no prompt" in only_reply.problems[0]


def test_a_bad_message_inside_a_pair_names_its_part():
    record = {"prompt": [_m("user", "Hi")], "chosen": [_m("assistant", None)], "rejected": [_m("user", "Hi")]}
    assert validate_records([record], "p.jsonl").problems == [
        "p.jsonl:1: 'chosen': message 1 (assistant) content is missing (null); every record needs it",
        "p.jsonl:1: 'rejected' must end with an assistant message, the reply being judged; its last message is from "
        "the user"]


def test_summary_and_kind_say_pairs_or_examples():
    pairs = validate_file(CASES / "good" / "preference.jsonl")
    assert pairs.summary().splitlines()[0] == f"{CASES / 'good' / 'preference.jsonl'}: 2 preference pairs, format " \
                                              "'preference', valid"
    sft = validate_file(CASES / "good" / "alpaca.json")
    assert sft.kind == "sft" and ": 2 examples, format 'instruction', valid" in sft.summary()


def test_warnings_for_few_duplicate_short_and_long_pairs(tiny_model_dir):
    from transformers import AutoTokenizer

    rows = [{"prompt": f"Repeat {i}.", "chosen": f"{i} {i}", "rejected": "No."} for i in range(10)]
    rows += [rows[0], {"prompt": "Say a letter.", "chosen": "a", "rejected": "No."},
             {"prompt": "Hi", "chosen": "ok!", "rejected": "word " * 300}]
    report = validate_records(rows, "pairs.json", unit="record")
    warnings = "\n".join(dataset_warnings(report, AutoTokenizer.from_pretrained(tiny_model_dir), 64))
    assert "only 13 preference pairs; preference tuning usually needs at least 50" in warnings
    assert "1 exact duplicate (records 11 = 1)" in warnings
    assert "1 chosen reply shorter than 3 characters (records 12)" in warnings
    assert "1 preference pair longer than max_length=64 tokens" in warnings and "records 13" in warnings  # rejected


def test_validate_data_command_reports_preference_pairs(capsys):
    assert cli.main(["validate-data", str(CASES / "good" / "preference_chat.jsonl")]) == 0
    assert "preference_chat.jsonl: 2 preference pairs, format 'preference', valid" in capsys.readouterr().out
    assert cli.main(["validate-data", str(BAD / "pair_identical.jsonl"), "--format", "preference"]) == 2
    assert "pair_identical.jsonl:2: 'chosen' and 'rejected' are the same reply" in capsys.readouterr().out


def test_tool_calls_come_out_as_chat_templates_take_them():
    """OpenAI's JSON-text arguments and ShareGPT's function_call turns both become {"type": "function", "function":
    {"name", "arguments": dict}}; tool results keep their tool_call_id; tools are kept as the JSON text TRL reads."""
    rows = validate_file(CASES / "good" / "openai_tools.jsonl").rows
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}, "id": "call_1"}
    assert rows[0]["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [call]}
    assert rows[0]["messages"][2] == {"role": "tool", "content": '{"forecast": "snow, -2 C"}', "tool_call_id": "call_1"}
    assert json.loads(rows[0]["tools"])[0]["function"]["name"] == "get_weather" and rows[0]["tools"] == rows[1]["tools"]
    assert [c["id"] for c in rows[1]["messages"][1]["tool_calls"]] == ["a", "b"], "parallel calls, two results"
    sharegpt = validate_file(CASES / "good" / "sharegpt_tools.json").rows[0]
    assert sharegpt["messages"][1]["tool_calls"] == [{"type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Accra"}}}]
    assert json.loads(sharegpt["tools"]) == json.loads(rows[0]["tools"])


def test_weights_are_kept_only_where_they_silence_a_turn_and_the_summary_says_so():
    report = validate_file(CASES / "good" / "openai_parts.jsonl")
    msgs = report.rows[1]["messages"]
    assert msgs[1] == {"role": "assistant", "content": "Hello.", "weight": 0} and "weight" not in msgs[3]
    assert "note: 1 assistant reply with weight 0: kept as context, with no loss on them" in report.summary()


def test_fields_that_are_dropped_are_named_once_and_nothing_else_is_lost(tmp_path):
    rows = [{"id": i, "source": "web", "messages": [{"role": "user", "content": f"Q{i}"},
                                                    {"role": "assistant", "content": f"A{i}", "refusal": None}]}
            for i in range(60)]
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = validate_file(path)
    notes = [n for n in report.notes if "left out" in n]
    assert notes == ["not used for training, left out of the converted rows: 'id' (every record), 'source' (every "
                     "record), 'messages[].refusal' (every record); rename a field with --map old=new if it holds "
                     "what the model should learn"]
    assert report.summary().count("left out") == 1
    assert [m["content"] for m in report.rows[59]["messages"]] == ["Q59", "A59"]


def test_one_non_text_message_per_file_however_many_records():
    rows = [{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"{i}.png"}},
                                                       {"type": "text", "text": "What is it?"}]},
                          {"role": "assistant", "content": "A cat."}]} for i in range(500)]
    report = validate_records(rows, "photos.jsonl")
    assert len(report.problems) == 1 and not report.rows
    assert report.problems[0].startswith("photos.jsonl: 500 records hold content that is not text (image url parts "
                                         "in 500 records (lines 1, 2, 3, 4, 5 and 495 more))")


def test_a_record_with_other_problems_besides_images_is_told_both():
    rows = [{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}}]},
                          {"role": "assistant", "content": "x"}]},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}]}]
    problems = validate_records(rows, "mix.jsonl").problems
    assert len(problems) == 2 and "not text" in problems[0] and problems[1].startswith("mix.jsonl:2: message 2 has role")
