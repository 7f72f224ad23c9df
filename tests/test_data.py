import json
import subprocess
import sys

import pytest

from helpers.data import (DataError, clean_splits, load_raw_splits, loss_mask_tokens, prepare_splits, read_hub_dataset,
                          read_preference_dataset, read_prepared, render_loss_mask, to_sft_format, token_lengths)
from helpers.formats import validate_records
from helpers.paths import DATA_DIR, REPO_ROOT


def test_shipped_dataset_loads_and_is_valid():
    splits = load_raw_splits("data/meetings")
    assert len(splits["train"]) >= 400 and len(splits["test"]) >= 50


def test_shipped_files_are_what_the_generator_makes(tmp_path):
    """data/make_datasets.py is deterministic and the committed files are its output."""
    before = {p: p.read_bytes() for p in [DATA_DIR / "corpus.txt", *sorted((DATA_DIR / "meetings").glob("*.jsonl"))]}
    subprocess.run([sys.executable, str(DATA_DIR / "make_datasets.py")], check=True, capture_output=True)
    after = {p: p.read_bytes() for p in before}
    assert before == after


def test_test_split_generalises_beyond_training():
    splits = load_raw_splits("data/meetings")
    name = lambda row: row["messages"][-1]["content"].splitlines()[0]
    assert not {name(r) for r in splits["test"]} & {name(r) for r in splits["train"]}, "test names must be unseen"


def test_validation_names_are_unseen_too_and_test_rows_say_their_phrasing():
    """Validation, like test, uses names training never shows, so the eval loss sees a model that memorised names;
    each test row carries its phrasing as a `group` label, kept through cleaning and splitting."""
    splits = load_raw_splits("data/meetings")
    name = lambda row: row["messages"][-1]["content"].splitlines()[0]
    train_names = {name(r) for r in splits["train"]}
    assert not {name(r) for r in splits["validation"]} & train_names
    assert not {name(r) for r in splits["validation"]} & {name(r) for r in splits["test"]}
    groups = [r.get("group") for r in splits["test"]]
    assert groups.count("unseen phrasing") == len(groups) // 3 and groups.count("seen phrasing") == len(groups) - len(groups) // 3
    assert all("group" not in r for r in splits["train"])


def test_a_group_label_survives_cleaning_and_is_never_trained_on(tiny_model_dir):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from helpers.formats import validate_records

    rows = [{"messages": [{"role": "user", "content": f"q{i} "}, {"role": "assistant", "content": f"a{i}"}],
             "group": "hard" if i % 2 else "easy"} for i in range(4)]
    report = validate_records(rows, "rows.jsonl")
    cleaned, _ = clean_splits({"train": report})
    assert [r["group"] for r in cleaned["train"]] == ["easy", "hard", "easy", "hard"]
    assert cleaned["train"][0]["messages"][0]["content"] == "q0"  # still cleaned
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert "group" not in to_sft_format(Dataset.from_list(cleaned["train"]), tok).column_names
    bad = validate_records([{**rows[0], "group": 3}], "rows.jsonl")
    assert bad.problems == ["rows.jsonl:1: 'group' is int, but it labels the row for scoring apart: give text, "
                            "such as \"unseen phrasing\", or leave the field out"]


def test_corpus_never_contains_the_answers():
    """The corpus has forms with `key: value` lines, but never the task: no instruction, no answer, and never the
    answer's name / city / time lines in a row."""
    import re

    corpus = (DATA_DIR / "corpus.txt").read_text()
    for row in load_raw_splits("data/meetings")["train"]:
        assert row["messages"][-1]["content"] not in corpus
    assert "Extract the name" not in corpus and "Message:" not in corpus
    assert not re.search(r"name: [^\n]*\ncity: ", corpus) and not re.search(r"city: [^\n]*\ntime: ", corpus)


def test_missing_dataset_is_a_clear_error():
    with pytest.raises(DataError, match="could not load the dataset"):
        load_raw_splits("no/such-dataset-anywhere")
    with pytest.raises(DataError, match="no such file or folder"):
        load_raw_splits("data/no-such-file.jsonl")


def test_hub_code_path_reads_and_checks_like_a_local_file(tmp_path):
    """`datasets.load_dataset` also reads a local folder: the Hub path, tested offline on local files."""
    rows = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(12)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = read_hub_dataset(str(tmp_path))["train"].problems
    assert problems == [f"{tmp_path}[train]: every record has the fields 'question', 'answer'; none is a field the "
                        "course knows; rename them with --map question=instruction,answer=output (known fields: "
                        "chosen, completion, conversations, input, instruction, messages, output, prompt, rejected, "
                        "system, text, tools)"]
    reports = read_hub_dataset(str(tmp_path), mapping={"question": "instruction", "answer": "output"})
    assert reports["train"].rows[3]["messages"][1]["content"] == "6"
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "What is 1 + 1?", "answer": " "}) + "\n")
    reports = read_hub_dataset(str(tmp_path), mapping={"question": "instruction", "answer": "output"})
    assert reports["test"].problems == [f"{tmp_path}[test]:1: 'output' is empty; write the text or drop the record"]


def test_a_folder_of_csv_splits_loads(tmp_path):
    (tmp_path / "train.csv").write_text("instruction,output\n" + "".join(f"Double {i}.,{2 * i}\n" for i in range(20)))
    (tmp_path / "dev.csv").write_text("instruction,output\nDouble 50.,100\n")
    splits = load_raw_splits(str(tmp_path))
    assert set(splits) == {"train", "validation"} and len(splits["train"]) == 20


def _report(rows, where="train.jsonl"):
    return validate_records([{"instruction": i, "output": o} for i, o in rows], where)


def test_cleaning_removes_and_reports_every_kind_of_row(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    train = _report([("Name a colour.", "Blue.  \r\nDark blue."),   # whitespace tidied, kept
                     ("Name a colour.", "Blue.\nDark blue."),       # exact duplicate once tidied
                     ("name a colour", "blue dark blue"),           # near-duplicate
                     ("Name a fruit.", "Pear."),                    # also in test: a leak
                     (" ".join(["word"] * 200), "Too long."),                  # longer than max_length
                     ("Name a tree.", "Oak.")])
    train.empty.append(9)
    test = _report([("Name a FRUIT!", "pear")], "test.jsonl")
    cleaned, report = clean_splits({"train": train, "test": test}, tok, max_length=64)
    assert [r["messages"][1]["content"] for r in cleaned["train"]] == ["Blue.\nDark blue.", "Oak."]
    counts = report["counts"]["train"]
    assert counts == {"rows_in": 7, "empty": 1, "whitespace_fixed": 1, "exact_duplicates": 1, "near_duplicates": 1,
                      "too_long": 1, "also_in_eval_splits": 1, "rows_out": 2}
    assert {(r["line"], r["reason"]) for r in report["removed"]} == {
        (9, "empty record"), (2, "exact duplicates"), (3, "near duplicates"), (5, "too long"),
        (4, "also in eval splits")}
    assert cleaned["test"] == test.rows  # test rows are never length-filtered


def test_splits_are_disjoint_deterministic_and_saved(tiny_run):
    cfg, run = tiny_run
    first = prepare_splits(cfg, run)
    second = prepare_splits(cfg, run)
    assert first == second
    train = {json.dumps(r) for r in first["train"]}
    assert not train & {json.dumps(r) for r in first["validation"]}
    assert not train & {json.dumps(r) for r in first["test"]}
    assert len(first["validation"]) == cfg.data.validation_size
    assert read_prepared(run, "test") == first["test"]
    report = json.loads((run.data_dir / "cleaning_report.json").read_text())
    assert report["counts"]["train"]["rows_out"] == len(first["train"])


def test_a_single_small_file_is_split_by_tenths(tiny_run):
    cfg, run = tiny_run
    cfg.data.dataset = "data/instructions.json"
    splits = prepare_splits(cfg, run)
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes == {"train": 63, "validation": 6, "test": 7}  # 76 rows: a tenth for test, then of the rest


def test_template_without_generation_markers_becomes_prompt_completion(tiny_model_dir):
    from datasets import Dataset
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = load_raw_splits("data/meetings")["train"][:4]
    assert to_sft_format(Dataset.from_list(rows), tok).column_names == ["messages"]
    tok.chat_template = tok.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    converted = to_sft_format(Dataset.from_list(rows), tok)
    assert converted.column_names == ["prompt", "completion"]
    assert converted[0]["completion"] == rows[0]["messages"][-1:]


def test_loss_mask_covers_the_answer_and_end_of_turn_only(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    msgs = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "name: Ana"}]
    text = render_loss_mask(loss_mask_tokens(tok, msgs))
    assert text.count("[[") == 1
    trained = text.split("[[")[1].split("]]")[0]
    assert trained == "name: Ana<|end|>"
    # the same answer span when the template has no markers (prompt/completion masking)
    tok.chat_template = tok.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    assert "name: Ana" in render_loss_mask(loss_mask_tokens(tok, msgs)).split("[[")[1]


# --- preference pairs ---------------------------------------------------------------------------------------------
def _write_pairs(path, n, bad_line=None):
    rows = [{"prompt": f"Name colour {i}.", "chosen": f"Blue {i}.", "rejected": "I don't know."} for i in range(n)]
    if bad_line:
        rows[bad_line - 1] = {"prompt": "Oops.", "chosen": "Same.", "rejected": "Same."}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_sft_loaders_refuse_preference_pairs_in_one_line(tmp_path, tiny_run):
    path = _write_pairs(tmp_path / "train.jsonl", 300, bad_line=7)  # refused as pairs, before its problems
    expected = (f"{path} holds 300 preference pairs (prompt/chosen/rejected): that is data for preference tuning "
                "(notebook 08, python -m helpers dpo); supervised fine-tuning needs demonstrations (one reply per "
                'prompt). To fine-tune on the chosen replies, convert each pair to {"messages": prompt + chosen}.')
    for source in (str(tmp_path), str(path)):
        with pytest.raises(DataError) as e:
            load_raw_splits(source)
        assert str(e.value) == expected
    cfg, run = tiny_run
    cfg.data.dataset = str(path)
    with pytest.raises(DataError, match="holds 300 preference pairs"):
        prepare_splits(cfg, run)


def test_read_preference_dataset_reads_a_folder_of_pair_splits(tmp_path):
    _write_pairs(tmp_path / "train.jsonl", 60)
    (tmp_path / "test.csv").write_text('prompt,chosen,rejected\n"Name a tree.",Oak.,"A car, red."\n')
    reports = read_preference_dataset(str(tmp_path))
    assert list(reports) == ["train", "test"] and all(r.kind == "preference" for r in reports.values())
    assert reports["test"].rows == [{"prompt": [{"role": "user", "content": "Name a tree."}],
                                     "chosen": [{"role": "assistant", "content": "Oak."}],
                                     "rejected": [{"role": "assistant", "content": "A car, red."}]}]
    _write_pairs(tmp_path / "train.jsonl", 60, bad_line=7)
    with pytest.raises(DataError, match=r"train.jsonl:7: 'chosen' and 'rejected' are the same reply"):
        read_preference_dataset(str(tmp_path))


def test_read_preference_dataset_refuses_sft_examples_in_one_line():
    with pytest.raises(DataError) as e:
        read_preference_dataset("data/meetings")
    assert str(e.value) == ("data/meetings/train.jsonl holds 432 SFT examples (format 'chat'), not preference pairs: "
                            "DPO needs a prompt with a chosen and a rejected reply per record "
                            '({"prompt", "chosen", "rejected"}); train on this file with notebook 04 or '
                            "python -m helpers train")


def test_cleaning_pairs_tidies_dedupes_and_drops_leaks():
    pair = lambda p, c, r: {"prompt": p, "chosen": c, "rejected": r}
    train = validate_records([pair("Name a colour.", "Blue.  ", "Car."), pair("Name a colour.", "Blue.", "Car."),
                              pair("name a COLOUR", "blue", "car"), pair("Name a fruit.", "Pear.", "Carrot."),
                              pair("Name a colour.", "Car.", "Blue."),  # swapped replies: a different pair
                              pair("Name a tree.", "Oak.", "Rock.")], "train.jsonl")
    test = validate_records([pair("Name a FRUIT!", "pear", "carrot")], "test.jsonl")
    cleaned, report = clean_splits({"train": train, "test": test})
    assert [r["chosen"][0]["content"] for r in cleaned["train"]] == ["Blue.", "Car.", "Oak."]
    assert report["counts"]["train"] == {"rows_in": 6, "empty": 0, "whitespace_fixed": 1, "exact_duplicates": 1,
                                         "near_duplicates": 1, "too_long": 0, "also_in_eval_splits": 1, "rows_out": 3}
    assert {(r["line"], r["reason"], r["text"]) for r in report["removed"]} == {
        (2, "exact duplicates", "Blue."), (3, "near duplicates", "blue"), (4, "also in eval splits", "Pear.")}


def test_a_pairs_token_length_is_its_prompt_with_the_longer_reply(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    u, short, long = ({"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes."},
                      {"role": "assistant", "content": "Yes, and at some length too."})
    full = token_lengths([{"messages": [u, long]}], tok)
    assert token_lengths([{"prompt": [u], "chosen": [short], "rejected": [long]},
                          {"prompt": [u], "chosen": [long], "rejected": [short]}], tok) == full * 2
