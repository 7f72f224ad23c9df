import json
import subprocess
import sys

import pytest

from helpers.data import (DataError, check_chat_rows, load_raw_splits, loss_mask_tokens, prepare_splits, read_jsonl,
                          render_loss_mask, to_sft_format)
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


def test_corpus_never_contains_the_answers():
    corpus = (DATA_DIR / "corpus.txt").read_text()
    for row in load_raw_splits("data/meetings")["train"][:50]:
        assert row["messages"][-1]["content"] not in corpus


@pytest.mark.parametrize("row, message", [
    ({"text": "hello"}, "expected an object with a 'messages' list"),
    ({"messages": "hi"}, "must be a non-empty list"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "last message must be the assistant's reply"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, "'role' in"),
    ({"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "x"}]}, "text 'content'"),
    ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}, "empty content"),
])
def test_bad_rows_are_reported_with_file_and_row(row, message):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(DataError) as e:
        check_chat_rows([good, row], "mine.jsonl")
    assert "mine.jsonl:2:" in str(e.value) and message in str(e.value)


def test_broken_json_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"messages": []}\n{"messages": [\n')
    with pytest.raises(DataError, match=r"train.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_missing_dataset_is_a_clear_error():
    with pytest.raises(DataError, match="could not load the dataset"):
        load_raw_splits("no/such-dataset-anywhere")


def test_splits_are_disjoint_deterministic_and_saved(tiny_run):
    cfg, run = tiny_run
    first = prepare_splits(cfg, run)
    second = prepare_splits(cfg, run)
    assert first == second
    train = {json.dumps(r) for r in first["train"]}
    assert not train & {json.dumps(r) for r in first["validation"]}
    assert not train & {json.dumps(r) for r in first["test"]}
    assert len(first["validation"]) == cfg.data.validation_size
    assert read_jsonl(run.data_dir / "test.jsonl") == first["test"]


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
