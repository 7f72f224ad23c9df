"""Evaluation: the metrics, the side-by-side table, the curves' verdict, human ratings, and `helpers evaluate`."""

import json
import subprocess
import sys

import pytest

from helpers.evaluation import (blind_pairs, diagnose_fit, load_ratings, parse_fields, rating_outcome,
                                save_ratings, score_answers, side_by_side_html, summarize_ratings, text_scores)
from helpers.rundir import RunDir


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
    assert 0.5 < scores["rougeL"] < 1 and 0 < scores["bleu"] < 100


def test_valid_format_needs_exactly_the_reference_fields():
    refs = ["name: Ana\nday: Friday"] * 3
    preds = ["name: Ana\nday: Friday", "The train leaves: at 9am", "name: Ana"]
    assert score_answers(preds, refs)["valid_format"] == 1 / 3


def test_free_text_gets_exact_match_rouge_l_and_bleu():
    refs = ["Could you please send me the report when you have a moment?", "I will be unable to attend."]
    assert score_answers(refs, refs) == {"exact_match": 1.0, "rougeL": 1.0, "bleu": pytest.approx(100), "n": 2}
    near = ["Could you please send the report when you have a moment?", "I cannot attend."]
    far = ["Send it.", "No."]
    near_scores, far_scores = text_scores(near, refs), text_scores(far, refs)
    assert score_answers(near, refs)["exact_match"] == 0
    assert 0.6 < near_scores["rougeL"] < 1 and far_scores["rougeL"] < 0.2
    assert near_scores["bleu"] > 30 > far_scores["bleu"]


def test_side_by_side_html_marks_right_answers_and_wrong_words_and_escapes_text():
    pairs = [{"message": "<script>x</script> at 2pm?", "base": "blah <b>", "fine-tuned": "name: Ana\ntime: 2pm",
              "reference": "name: Ana\ntime: 2pm"},
             {"message": "Bo at 9am?", "base": "", "fine-tuned": "name: Cy\ntime: 9am", "reference": "name: Bo\ntime: 9am"}]
    page = side_by_side_html(pairs)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page
    assert page.count("background:#d9f2d9") == 2  # the legend, and the one right answer
    assert ">Cy</span>" in page and ">Bo</span>" not in page and "(empty)" in page


def _history(evals, train=1.0):
    out = []
    for step, loss in enumerate(evals, 1):
        out += [{"step": step * 10, "loss": train}, {"step": step * 10, "eval_loss": loss}]
    return out


@pytest.mark.parametrize("evals, verdict", [
    ([3.0, 2.0, 1.5, 1.6, 1.8], "over-fitting"),
    ([3.0, 2.0, 1.5, 1.3], "under-fitting (still learning)"),
    ([3.0, 2.0, 1.40, 1.399], "converged, no sign of over-fitting"),
    ([3.0, 2.0], "too few evaluations to judge"),
    ([0.25, 0.03, 0.0154, 0.0163], "converged, no sign of over-fitting"),  # 6% up, but 0.001 nats: noise
    ([0.25, 0.03, 0.0154, 0.09], "over-fitting"),
])
def test_diagnose_fit_reads_the_eval_curve(evals, verdict):
    fit = diagnose_fit(_history(evals))
    assert fit["verdict"] == verdict and fit["next"]


def test_the_evaluation_after_training_does_not_count_twice():
    history = _history([3.0, 2.0, 1.40, 1.399]) + [{"step": 40, "eval_loss": 1.2}]
    assert diagnose_fit(history)["verdict"].startswith("converged")


def test_diagnose_fit_also_reads_the_task_scores():
    """A converged curve over a model that never copies a name must not read as a success."""
    weak = {"exact_match": 0.0, "field_accuracy": {"name": 0.0, "city": 0.83, "time": 1.0}}
    fit = diagnose_fit(_history([3.0, 2.0, 1.40, 1.399]), task_scores=weak)
    assert fit["verdict"].startswith("converged") and "'name' 0%" in fit["task"]
    assert "memorised values instead of copying" in fit["next"][0]
    strong = {"exact_match": 0.9, "field_accuracy": {"name": 0.95, "city": 0.93, "time": 1.0}}
    assert "task" not in diagnose_fit(_history([3.0, 2.0, 1.40, 1.399]), task_scores=strong)


def _results(em0, em1, loss0=11.0, loss1=1.4, name=0.9):
    base = {"eval_loss": loss0, "perplexity": 2.718 ** loss0, "exact_match": em0, "n": 60,
            "field_accuracy": {"name": 0.0, "city": 0.0, "time": 0.0}}
    tuned = {"eval_loss": loss1, "perplexity": 2.718 ** loss1, "exact_match": em1, "n": 60,
             "field_accuracy": {"name": name, "city": 0.9, "time": 1.0},
             "by_group": {"seen phrasing": {"exact_match": 0.9, "n": 40},
                          "unseen phrasing": {"exact_match": 0.7, "n": 20}}}
    return {"base": base, "finetuned": tuned}


def test_the_interpretation_is_computed_from_the_numbers_it_interprets():
    from helpers.evaluation import interpret_comparison, loss_baselines

    class Tok:
        def __len__(self):
            return 2048

    baselines = loss_baselines(Tok())
    assert baselines["uniform guess"]["perplexity"] == 2048 and baselines["perfect answer"]["eval_loss"] == 0
    good = interpret_comparison(_results(0.0, 0.85), baselines)
    assert "fell: 11.00 -> 1.40" in good and "51 of 60" in good and "*worse* than a blind guess" in good
    assert "unseen phrasing 0.70 (20 rows)" in good and "every field is right in most answers" in good
    bad = interpret_comparison(_results(0.0, 0.05, loss1=12.0, name=0.0), baselines)
    assert "did not fall" in bad and "3 of 60" in bad and "'name' is the hardest. Below 0.5" in bad


def test_a_failed_lesson_says_which_part_failed_and_what_to_do():
    from helpers.evaluation import lesson_problems

    assert lesson_problems(_results(0.0, 0.85)) == []
    problems = lesson_problems(_results(0.0, 0.05, loss1=12.0, name=0.0))
    assert len(problems) == 2 and "held-out loss did not fall" in problems[0]
    assert "rose only from 0.00 to 0.05" in problems[1] and "'name' (0.00)" in problems[1]


def test_scores_by_group_score_each_label_apart():
    from helpers.evaluation import scores_by_group

    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"name: {n}"}],
             "group": g} for n, g in (("A", "x"), ("B", "x"), ("C", "y"))]
    groups = scores_by_group(rows, ["name: A", "name: Z", "name: C"])
    assert groups["x"]["exact_match"] == 0.5 and groups["y"]["exact_match"] == 1.0 and groups["x"]["n"] == 2
    assert scores_by_group([{k: v for k, v in r.items() if k != "group"} for r in rows], ["", "", ""]) == {}


def test_ratings_are_blind_unblinded_saved_and_only_kept_for_the_same_answers(tmp_path):
    pairs = [{"message": f"m{i}", "base": f"b{i}", "fine-tuned": f"f{i}", "reference": f"r{i}"} for i in range(6)]
    items = blind_pairs(pairs, seed=0)
    assert {i["a_is"] for i in items} == {"base", "fine-tuned"}  # both orders occur
    assert all(i["a"] == i[i["a_is"]] and i["b"] != i["a"] for i in items)
    tuned_is_a = next(i for i in items if i["a_is"] == "fine-tuned")
    assert rating_outcome(tuned_is_a, "A is better") == "fine-tuned better"
    assert rating_outcome(tuned_is_a, "B is better") == "base better"
    run = RunDir(tmp_path)
    assert summarize_ratings(load_ratings(run, pairs), shown=6)["rated"] == 0  # nothing saved: no ratings
    save_ratings(run, items, ["A is better", "both bad"] + ["not rated"] * 4)
    summary = summarize_ratings(load_ratings(run, pairs), shown=6)
    assert summary["rated"] == 2 and summary["both bad"] == 1
    changed = [{**pairs[0], "fine-tuned": "a new answer"}, *pairs[1:]]
    assert len(load_ratings(run, changed)) == 1  # the rating of another answer does not carry over


def test_rating_widget_saves_each_click_and_starts_from_earlier_ratings(tmp_path):
    from helpers.widgets import rating_widget

    pairs = [{"message": f"m{i}", "base": f"b{i}", "fine-tuned": f"f{i}", "reference": f"r{i}"} for i in range(3)]
    run = RunDir(tmp_path)
    toggles = rating_widget(pairs, run).children[1::2]
    assert all(t.value == "not rated" for t in toggles) and not (tmp_path / "human_ratings.json").exists()
    toggles[1].value = "both good"
    saved = json.loads((tmp_path / "human_ratings.json").read_text())
    assert [r["message"] for r in saved] == ["m1"] and saved[0]["outcome"] == "both good"
    assert rating_widget(pairs, run).children[3].value == "both good"


@pytest.fixture(scope="module")
def evaluated_run(trained_run):
    """`python -m helpers evaluate` on the shared trained tiny run."""
    proc = subprocess.run([sys.executable, "-m", "helpers", "evaluate", "--run-dir", str(trained_run.path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return trained_run, proc.stdout


def test_evaluate_command_writes_a_complete_metrics_json(evaluated_run):
    run, stdout = evaluated_run
    metrics = json.loads(run.metrics_file.read_text())
    for name in ("base", "finetuned"):
        assert {"eval_loss", "perplexity", "exact_match", "valid_format", "field_accuracy", "rougeL", "bleu",
                "n"} <= set(metrics[name])
    assert metrics["n_test"] == metrics["base"]["n"] > 0
    assert metrics["generation"]["decoding"] == "greedy" and metrics["fit"]["verdict"]
    assert metrics["human"]["rated"] == 0  # headless: nobody rated, and metrics.json says so
    assert run.figure_path("base_vs_finetuned").stat().st_size > 10_000
    assert "<table" in (run.path / "side_by_side.html").read_text()
    assert "held-out loss" in stdout and "exact match" in stdout


def test_fine_tuned_beats_base_on_the_task_metric_and_held_out_loss(evaluated_run):
    metrics = json.loads(evaluated_run[0].metrics_file.read_text())
    base, tuned = metrics["base"], metrics["finetuned"]
    assert tuned["eval_loss"] < 0.5 * base["eval_loss"]
    assert tuned["exact_match"] > base["exact_match"] and tuned["valid_format"] >= 0.9 > base["valid_format"]
    assert set(tuned["by_group"]) == {"seen phrasing", "unseen phrasing"}
    assert tuned["rougeL"] > base["rougeL"] and tuned["bleu"] > base["bleu"]


def test_batched_left_padded_greedy_generation_matches_one_at_a_time_and_is_bounded(evaluated_run):
    from helpers.config import RunConfig
    from helpers.data import read_prepared
    from helpers.evaluation import generate_answers
    from helpers.inference import load_finetuned

    run = evaluated_run[0]
    cfg = RunConfig.load(run.config_file)
    model, tokenizer = load_finetuned(cfg, run)
    rows = read_prepared(run, "test")[:6]
    stopped = []
    batched = generate_answers(model, tokenizer, rows, cfg, progress=False, stopped=stopped)
    assert stopped == [True] * 6  # the trained model ends every answer itself
    cfg.eval.batch_size = 1
    assert generate_answers(model, tokenizer, rows, cfg, progress=False) == batched
    cfg.eval.max_new_tokens, stopped = 3, []
    short = generate_answers(model, tokenizer, rows, cfg, progress=False, stopped=stopped)
    assert all(len(tokenizer(a, add_special_tokens=False)["input_ids"]) <= 4 for a in short)
    assert stopped == [False] * 6  # cut at 3 tokens: no answer is that short


def test_evaluate_without_an_adapter_says_to_train_first(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "helpers", "evaluate", "--run-dir", str(tmp_path / "run"),
                           "--profile", "tiny"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no trained adapter" in proc.stderr and "helpers train --run-dir" in proc.stderr


def test_proportion_interval_is_the_wilson_interval():
    from helpers.evaluation import proportion_interval

    low, high = proportion_interval(28 / 60, 60)
    assert (round(low, 3), round(high, 3)) == (0.346, 0.591)  # Wilson, z = 1.96
    assert proportion_interval(0.0, 60)[0] == 0.0 and proportion_interval(1.0, 60)[1] == pytest.approx(1.0)
    narrow = proportion_interval(0.5, 240)
    wide = proportion_interval(0.5, 60)
    assert abs((narrow[1] - narrow[0]) * 2 - (wide[1] - wide[0])) < 0.01  # four times the rows: half the width
    with pytest.raises(ValueError):
        proportion_interval(0.5, 0)
