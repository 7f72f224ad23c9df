"""Training guards on the tiny profile: the loss mask switch, early stopping that keeps the best checkpoint,
out-of-memory and NaN failures explained, the live loss plot, and runs compared."""

import math
import types

import pytest
import torch

from helpers.config import make_config
from helpers.data import load_splits
from helpers.lora import apply_lora
from helpers.model import load_model_and_tokenizer
from helpers.rundir import RunDir
from helpers.train import (TrainingError, build_sft_config, collect_run_histories, make_trainer, memory_fixes,
                           summarize_training, train_with_guidance)


def tiny_trainer(tmp_path, cfg, n_train=16, strip_markers=False, callbacks=None, **overrides):
    """A trainer on the first n_train training examples; strip_markers gives the tokenizer a template without
    {% generation %} markers, as most Hub models have (the prompt/completion path)."""
    run = RunDir(tmp_path / "run")
    model, tokenizer = load_model_and_tokenizer(cfg)
    if strip_markers:
        tokenizer.chat_template = (tokenizer.chat_template.replace("{% generation %}", "")
                                   .replace("{% endgeneration %}", ""))
    model = apply_lora(model, cfg)
    splits = load_splits(cfg, run)
    splits["train"] = splits["train"].select(range(n_train))
    trainer = make_trainer(cfg, run, model, tokenizer, splits, callbacks=callbacks, disable_tqdm=True, **overrides)
    return run, trainer


def fake_state(log_history=(), global_step=0):
    from transformers import TrainerState

    return TrainerState(log_history=list(log_history), global_step=global_step)


# --- the loss mask -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strip_markers", [False, True], ids=["generation-markers", "prompt-completion"])
@pytest.mark.parametrize("answers_only", [True, False], ids=["answers-only", "whole-sequence"])
def test_assistant_only_loss_switch_decides_which_tokens_carry_the_loss(tmp_path, answers_only, strip_markers):
    cfg = make_config("tiny")
    cfg.train.assistant_only_loss = answers_only
    _, trainer = tiny_trainer(tmp_path, cfg, strip_markers=strip_markers, save_strategy="no", eval_strategy="no")
    batch = next(iter(trainer.get_train_dataloader()))
    trained = (batch["labels"] != -100).sum().item()
    tokens = batch["attention_mask"].sum().item()
    if answers_only:
        assert trained < tokens / 2, "the prompt is being trained on"
    else:
        assert trained > tokens / 2, "assistant_only_loss=False must put the loss on the prompt too"


def test_build_sft_config_sets_the_mask_flag_of_the_data_format(tmp_path):
    cfg = make_config("tiny")
    plain = types.SimpleNamespace(chat_template="{{ messages }}")  # no markers: prompt/completion data
    args = build_sft_config(cfg, RunDir(tmp_path), plain)
    assert (args.assistant_only_loss, args.completion_only_loss) == (False, True)
    cfg.train.assistant_only_loss = False
    args = build_sft_config(cfg, RunDir(tmp_path), plain)
    assert (args.assistant_only_loss, args.completion_only_loss) == (False, False)


# --- early stopping ----------------------------------------------------------------------------------------------

def test_early_stopping_aligns_saving_with_evaluation(tmp_path):
    cfg = make_config("tiny")  # eval_steps 30, save_steps 100
    markers = types.SimpleNamespace(chat_template="{% generation %}{% endgeneration %}")
    off = build_sft_config(cfg, RunDir(tmp_path), markers)
    assert (off.load_best_model_at_end, off.save_steps) == (False, 100)
    cfg.train.early_stopping_patience = 3
    on = build_sft_config(cfg, RunDir(tmp_path), markers)
    assert on.load_best_model_at_end and on.metric_for_best_model == "eval_loss" and not on.greater_is_better
    assert on.save_steps == on.eval_steps == 30 and on.save_total_limit == 2
    unevaluated = build_sft_config(cfg, RunDir(tmp_path), markers, eval_strategy="no", save_strategy="no")
    assert not unevaluated.load_best_model_at_end, "no evaluations: nothing to stop on"


def test_a_trainer_without_evaluation_trains_even_with_early_stopping_asked_for(tmp_path):
    from transformers import EarlyStoppingCallback

    cfg = make_config("tiny")
    cfg.train.early_stopping_patience = 2
    cfg.train.max_steps = 2
    _, trainer = tiny_trainer(tmp_path, cfg, save_strategy="no", eval_strategy="no")
    assert not any(isinstance(c, EarlyStoppingCallback) for c in trainer.callback_handler.callbacks)
    assert train_with_guidance(trainer, cfg).global_step == 2


def overfitting_config():
    """Settings that overfit within seconds: 8 examples, 150 epochs of one step each, a high constant learning
    rate, an evaluation every 3 steps. The eval loss bottoms out near step 24 while the train loss keeps falling."""
    cfg = make_config("tiny")
    cfg.train.learning_rate = 1e-2
    cfg.train.lr_scheduler_type = "constant"
    cfg.train.max_steps = 150
    cfg.train.eval_steps = cfg.train.logging_steps = 3
    cfg.train.early_stopping_patience = 2
    return cfg


def test_early_stopping_stops_an_overfitting_run_and_restores_its_best_checkpoint(tmp_path):
    cfg = overfitting_config()
    run, trainer = tiny_trainer(tmp_path, cfg, n_train=8)
    before = trainer.evaluate()
    train_with_guidance(trainer, cfg)
    after = trainer.evaluate()
    summary = summarize_training(trainer, before, after)

    evals = [(h["eval_loss"], h["step"]) for h in trainer.state.log_history[:-1] if "eval_loss" in h]
    best_loss, best_step = min(evals)
    assert summary["stopped_early"] and summary["global_step"] < cfg.train.max_steps
    assert summary["global_step"] == best_step + 2 * cfg.train.eval_steps, "patience 2: two worse evaluations"
    assert after["eval_loss"] == pytest.approx(best_loss, rel=1e-6), "the best weights were not restored"
    assert summary["best_eval_loss"] == pytest.approx(best_loss, rel=1e-6)
    assert summary["best_checkpoint_step"] == best_step
    # save_total_limit=2 keeps the newest checkpoint and the best one; the one between them was deleted
    kept = sorted(p.name for p in run.checkpoints_dir.glob("checkpoint-*"))
    assert kept == sorted([f"checkpoint-{best_step}", f"checkpoint-{summary['global_step']}"])


# --- out of memory -----------------------------------------------------------------------------------------------

def test_out_of_memory_becomes_a_training_error_with_this_runs_fixes(tmp_path):
    from transformers import TrainerCallback

    class OutOfMemoryAtStep2(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    cfg = make_config("tiny")  # batch 8, accumulation 1, max_length 256, no quantization, no checkpointing
    cfg.train.max_steps = 10
    cfg.train.save_steps = 1
    _, trainer = tiny_trainer(tmp_path, cfg, callbacks=[OutOfMemoryAtStep2()], eval_strategy="no")
    with pytest.raises(TrainingError) as caught:
        train_with_guidance(trainer, cfg)
    message = str(caught.value)
    for fix in ("cfg.train.per_device_train_batch_size = 4", "cfg.train.gradient_accumulation_steps = 2",
                "cfg.train.max_length = 128", 'cfg.model.quantization = "4bit"',
                "cfg.train.gradient_checkpointing = True"):
        assert fix in message
    assert "Tried to allocate 2.00 GiB" in message and "checkpoint-1" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_memory_fixes_leave_out_what_is_already_in_place():
    cfg = make_config("tiny")
    cfg.train.per_device_train_batch_size = 1
    cfg.train.gradient_checkpointing = True
    cfg.model.quantization = "4bit"
    assert [line for line, _ in memory_fixes(cfg)] == ["cfg.train.max_length = 128"]
    cfg.train.max_length = 16
    assert memory_fixes(cfg) == []


@pytest.mark.parametrize("error, explained", [(RuntimeError("CUDA error: out of memory"), True),
                                               (RuntimeError("Expected all tensors on the same device"), False)])
def test_only_out_of_memory_runtime_errors_are_explained(tmp_path, error, explained):
    def fail(resume_from_checkpoint=None):
        raise error

    trainer = types.SimpleNamespace(train=fail, args=types.SimpleNamespace(output_dir=str(tmp_path / "checkpoints")))
    with pytest.raises(TrainingError if explained else RuntimeError) as caught:
        train_with_guidance(trainer, make_config("tiny"))
    assert (type(caught.value) is TrainingError) == explained
    if explained:
        assert "No checkpoint was saved yet" in str(caught.value)


# --- NaN / inf ---------------------------------------------------------------------------------------------------

def test_guard_stops_at_the_first_non_finite_value():
    from transformers import TrainerControl

    from helpers.live import NonFiniteLossGuard

    guard, control = NonFiniteLossGuard(), TrainerControl()
    guard.on_log(None, fake_state(global_step=10), control, logs={"loss": 2.5, "grad_norm": 1.0})
    assert not control.should_training_stop and guard.last_good_step == 10
    control.should_save = True
    guard.on_log(None, fake_state(global_step=20), control, logs={"loss": 2.4, "grad_norm": math.inf})
    assert control.should_training_stop and not control.should_save
    assert (guard.bad_step, guard.bad_values, guard.last_good_step) == (20, {"grad_norm": math.inf}, 10)
    guard.on_log(None, fake_state(global_step=20), control, logs={"eval_loss": math.nan})
    assert guard.bad_step == 20 and guard.bad_values == {"grad_norm": math.inf}, "the first bad step is kept"


def test_a_nan_weight_stops_training_with_an_explanation(tmp_path):
    cfg = make_config("tiny")
    cfg.train.max_steps = 20
    cfg.train.logging_steps = cfg.train.save_steps = 2
    run = RunDir(tmp_path / "run")
    model, tokenizer = load_model_and_tokenizer(cfg)
    model = apply_lora(model, cfg)
    with torch.no_grad():  # one broken adapter matrix: every forward pass now yields NaN
        next(p for n, p in model.named_parameters() if "lora_B" in n).fill_(float("nan"))
    splits = load_splits(cfg, run)
    trainer = make_trainer(cfg, run, model, tokenizer, splits, disable_tqdm=True, eval_strategy="no")
    with pytest.raises(TrainingError) as caught:
        train_with_guidance(trainer, cfg)
    message = str(caught.value)
    assert trainer.state.global_step == 2, "training must stop at the first log that shows NaN"
    assert "NaN" in message and f"{cfg.train.learning_rate:g}" in message and "10x lower" in message
    assert "No checkpoint was saved before step 2" in message
    assert not list(run.checkpoints_dir.glob("checkpoint-*")), "the NaN weights must not be saved"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_command_line_prints_a_training_error_without_a_traceback(tmp_path, monkeypatch, capsys):
    import helpers.train
    from helpers.cli import main

    def fail(cfg, run):
        raise TrainingError("Training stopped at step 2: the loss became NaN")

    monkeypatch.setattr(helpers.train, "train_run", fail)
    assert main(["train", "--run-dir", str(tmp_path / "run"), "--profile", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "error: Training stopped at step 2: the loss became NaN" in err and "Traceback" not in err


# --- the live loss plot ------------------------------------------------------------------------------------------

def test_live_loss_plot_saves_the_png_after_a_real_run_outside_a_notebook(tmp_path):
    from helpers.live import LiveLossPlot

    cfg = make_config("tiny")
    cfg.train.max_steps = 10
    cfg.train.logging_steps = 2
    cfg.train.eval_steps = 5
    run = RunDir(tmp_path / "run")
    live = LiveLossPlot(run, title="tiny: loss", eval_loss_before=5.0)
    assert live.display is None, "plain python: nothing to display in"
    _, trainer = tiny_trainer(tmp_path, cfg, callbacks=[live], save_strategy="no")
    train_with_guidance(trainer, cfg)
    assert run.figure_path("loss_curves").stat().st_size > 10_000
    summary = summarize_training(trainer, {"eval_loss": 5.0}, trainer.evaluate())
    assert (summary["stopped_early"], summary["best_eval_loss"], summary["best_checkpoint_step"]) == (False, None, None)


def test_live_loss_plot_updates_one_display_and_throttles(tmp_path):
    from helpers.live import LiveLossPlot

    calls = []

    class Handle:
        def update(self, obj):
            calls.append(("update", obj))

    def display(obj, display_id=False):
        calls.append(("display", display_id))
        return Handle()

    run = RunDir(tmp_path / "run")
    live = LiveLossPlot(run, display=display, every_s=3600)
    history = [{"step": 1, "loss": 3.0}]
    live.on_log(None, fake_state(history), None, logs=history[-1])
    history.append({"step": 2, "loss": 2.5})
    live.on_log(None, fake_state(history), None, logs=history[-1])  # within the hour: not drawn yet
    live.on_log(None, fake_state(history), None, logs={"learning_rate": 1e-3})  # no loss: ignored
    assert [c[0] for c in calls] == ["display"] and calls[0][1] is True
    live.last_draw -= 3600  # an hour later: the next step draws the pending log
    live.on_step_end(None, fake_state(history), None)
    live.on_step_end(None, fake_state(history), None)  # nothing new: no redraw
    live.on_train_end(None, fake_state(history), None)  # the end always draws, and saves
    assert [c[0] for c in calls] == ["display", "update", "update"]
    assert type(calls[1][1]).__name__ == "Image" and run.figure_path("loss_curves").exists()


def test_notebook_display_is_none_outside_a_kernel():
    from helpers.live import notebook_display

    assert notebook_display() is None


# --- runs compared -----------------------------------------------------------------------------------------------

def fake_history(scale):
    return ([{"step": s, "loss": scale * 4 / s, "learning_rate": 1e-3} for s in (2, 4, 6, 8)] +
            [{"step": s, "eval_loss": scale * 5 / s} for s in (4, 8)] + [{"step": 8, "train_runtime": 1.0}])


def test_run_histories_are_collected_by_name_and_plotted_one_colour_per_run(tmp_path, capsys):
    from helpers.plots import plot_run_comparison

    for name, scale in (("lr-high", 1.0), ("lr-low", 1.5)):
        RunDir(tmp_path / name).write_json("train_summary.json", {"log_history": fake_history(scale)})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "train_summary.json").write_text("{ half written")
    (tmp_path / "untrained").mkdir()
    histories = collect_run_histories(tmp_path)
    assert list(histories) == ["lr-high", "lr-low"] and histories["lr-low"] == fake_history(1.5)
    assert "skipped broken" in capsys.readouterr().out

    fig = plot_run_comparison(histories, title="learning rates")
    ax = fig.axes[0]
    assert len(ax.lines) == 4, "one train and one eval line per run"
    colours = [line.get_color() for line in ax.lines]
    assert colours[0] == colours[1] != colours[2] == colours[3]
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["lr-high", "lr-low"]
