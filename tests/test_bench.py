"""The recipe benchmark (helpers/bench.py), at a tiny size so that it never rots: it runs end to end, the JSON holds
every field with sane numbers, and the plot is written. The speed target itself is not tested (it is measured)."""

import argparse
import json
import math

import pytest

from helpers.bench import METRICS, BatchCounter, add_bench_arguments, cmd_bench


def test_batch_counter_counts_real_tokens_and_padding():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    examples = [{"input_ids": [5, 6, 7]}, {"input_ids": [8]}]
    padded = BatchCounter(DataCollatorForLanguageModeling(pad_token_id=0))
    padded(examples)
    assert (padded.real, padded.positions, padded.batches) == (4, 6, 1)
    packed = BatchCounter(DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True))
    packed(examples)  # one flat row, no attention mask, nothing padded
    assert (packed.real, packed.positions) == (4, 4)


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "recipes.json"
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    # one torch thread per training: with two, a test suite running beside it can make it ten times slower
    args = parser.parse_args(["--smoke", "--device", "cpu", "--examples", "8", "--eval-rows", "4", "--threads", "1",
                              "--out", str(out)])
    assert cmd_bench(args) == 0
    return json.loads(out.read_text()), out


def test_smoke_report_has_every_field(smoke_report):
    report, _ = smoke_report
    for key in ("benchmark", "date", "device", "machine", "versions", "settings", "base_model_heldout_answer_loss",
                "recipes", "ratio_course_over_tutorial", "target", "variants", "notes"):
        assert key in report, key
    assert report["device"] == "cpu" and report["machine"]["cpu_model"] and report["machine"]["torch_threads"] == 1
    assert {"torch", "transformers", "trl", "peft"} <= set(report["versions"])
    assert report["settings"]["runs"] == 1 and report["settings"]["examples"] == 8
    for name in ("tutorial", "course"):
        recipe = report["recipes"][name]
        assert recipe["description"] and len(recipe["runs"]) == 1 and set(METRICS) <= set(recipe["median"])
    assert set(report["ratio_course_over_tutorial"]) == {"real_tokens_per_s", "train_s", "peak_gib",
                                                         "heldout_answer_loss"}


def test_smoke_numbers_are_sane(smoke_report):
    report, _ = smoke_report
    a, b = (report["recipes"][n]["runs"][0] for n in ("tutorial", "course"))
    for run in (a, b):
        assert "error" not in run, run.get("error")
        assert run["train_s"] > 0 and run["real_tokens_per_s"] > 0 and run["peak_gib"] > 0.05
        assert 0 < run["real_tokens"] <= run["positions"] and 0 <= run["padding_fraction"] < 1
        assert math.isfinite(run["heldout_answer_loss"]) and run["heldout_answer_loss"] > 0
        assert math.isfinite(run["final_train_loss"])
    assert a["real_tokens"] == b["real_tokens"]  # the same examples, the same epochs: the same real tokens
    assert a["positions"] == 8 * 512  # every example padded to 512
    assert a["padding_fraction"] > 0.8 > b["padding_fraction"]
    assert a["optimizer_steps"] == b["optimizer_steps"] == 1  # 8 examples, effective batch 8 in both recipes
    assert all(v > 0 for v in report["ratio_course_over_tutorial"].values())


def test_smoke_plot_is_written(smoke_report):
    _, out = smoke_report
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
