from helpers.evaluation import parse_fields, score_answers


def test_parse_fields_reads_key_value_lines_and_json():
    assert parse_fields("name: Ana\nday: Friday\ntime: 2pm") == {"name": "Ana", "day": "Friday", "time": "2pm"}
    assert parse_fields('{"name": "Ana"}') == {"name": "Ana"}
    assert parse_fields("Ana on Friday") is None
    assert parse_fields("") is None
    assert parse_fields('{"name": ') is None


def test_scores_whole_answers_and_each_field():
    refs = ["name: Ana\nday: Friday\ntime: 2pm", "name: Bo\nday: Monday\ntime: 9am"]
    preds = ["day: Friday\nname: Ana\ntime: 2pm", "name: Bo\nday: Sunday\ntime: 9am"]  # field order does not matter
    scores = score_answers(preds, refs)
    assert scores["exact_match"] == 0.5
    assert scores["valid_format"] == 1.0
    assert scores["field_accuracy"] == {"day": 0.5, "name": 1.0, "time": 1.0}


def test_valid_format_needs_exactly_the_reference_fields():
    refs = ["name: Ana\nday: Friday"] * 3
    preds = ["name: Ana\nday: Friday", "The train leaves: at 9am", "name: Ana"]
    assert score_answers(preds, refs)["valid_format"] == 1 / 3


def test_unstructured_references_fall_back_to_text_match():
    assert score_answers([" Paris ", "Rome"], ["Paris", "Madrid"]) == {"exact_match": 0.5, "n": 2}
