"""Callbacks that watch a training run as it goes: the live loss plot and the NaN/inf guard. Introduced in
04_training_sft.

Unlike the other helpers, this module imports transformers when it is imported (a callback subclasses its
TrainerCallback); helpers.train imports it only when it builds a trainer.
"""

from __future__ import annotations

import math
import sys
import time

from transformers import TrainerCallback

from .rundir import RunDir


class NonFiniteLossGuard(TrainerCallback):
    """Stops training at the first NaN or infinite loss, eval loss or gradient norm, and keeps it from being saved.

    Once one step produces NaN, every weight the optimizer touches becomes NaN too, so training on is wasted time
    and a checkpoint written afterwards is useless. `train_with_guidance` reads what this recorded and explains it.
    """

    WATCHED = ("loss", "eval_loss", "grad_norm")

    def __init__(self):
        self.bad_step: int | None = None  # the step whose log first held a NaN/inf
        self.bad_values: dict[str, float] = {}
        self.last_good_step = 0  # the step of the last log that was all finite: weights up to it are sound

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {k: v for k, v in (logs or {}).items() if k in self.WATCHED and isinstance(v, (int, float))}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if not bad:
            if values and self.bad_step is None:
                self.last_good_step = state.global_step
            return
        if self.bad_step is None:
            self.bad_step, self.bad_values = state.global_step, bad
        control.should_training_stop = True
        control.should_save = False  # the log comes before this step's save: skip it, the weights are NaN
        control.should_evaluate = False


def notebook_display():
    """IPython's `display` inside a Jupyter or Colab kernel, else None (plain python, the command line, a terminal
    IPython, where a picture cannot be shown)."""
    ipython = sys.modules.get("IPython")  # not imported means not running under IPython
    shell = ipython.get_ipython() if ipython else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    from IPython.display import display

    return display


def png_image(fig):
    """The figure as an IPython PNG image: the same picture in Jupyter, Colab and VS Code, whatever matplotlib
    backend the kernel has set up (course figures render themselves, see `plots._figure_class`)."""
    from IPython.display import Image

    return Image(data=fig._repr_png_(), format="png")


class LiveLossPlot(TrainerCallback):
    """The loss curves, redrawn in one notebook output as training logs, and saved as a PNG when training ends.

    Redraws are at most one per `every_s` seconds (drawing a PNG takes a fraction of a second, a step on a GPU far
    less), plus one at the end. Outside a notebook nothing is shown; the PNG is still saved.
    """

    def __init__(self, run: RunDir, title: str = "Loss", eval_loss_before: float | None = None,
                 every_s: float = 2.0, display=None):
        self.run, self.title, self.eval_loss_before, self.every_s = run, title, eval_loss_before, every_s
        self.display = display or notebook_display()  # None: draw nothing until the end, then only save
        self.handle = None  # the notebook output that is updated in place, made by the first draw
        self.pending = False  # a log arrived that the picture does not show yet
        self.last_draw = -math.inf

    def on_log(self, args, state, control, logs=None, **kwargs):
        if {"loss", "eval_loss"} & set(logs or {}):
            self.pending = True
            self.maybe_draw(state)

    def on_step_end(self, args, state, control, **kwargs):
        self.maybe_draw(state)  # a log skipped by the throttle is drawn a step or two later, not only at the end

    FIGURE = "loss_curves"  # the PNG's name in the run's figures folder

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        fig = self.figure(state.log_history)
        self.show(fig)
        fig.savefig(self.run.figure_path(self.FIGURE), dpi=120, bbox_inches="tight")

    def maybe_draw(self, state) -> None:
        due = time.monotonic() - self.last_draw >= self.every_s
        if self.pending and due and self.display and state.is_world_process_zero:
            self.show(self.figure(state.log_history))

    def figure(self, log_history: list[dict]):
        from .plots import plot_loss_curves

        return plot_loss_curves(log_history, title=self.title, eval_loss_before=self.eval_loss_before)

    def show(self, fig) -> None:
        if self.display is None:
            return
        if self.handle is None:
            self.handle = self.display(png_image(fig), display_id=True)
        else:
            self.handle.update(png_image(fig))
        self.pending, self.last_draw = False, time.monotonic()


class LivePreferencePlot(LiveLossPlot):
    """08's live plot for DPO: the chosen and rejected replies' log-probabilities and the held-out reward margin and
    accuracy (`plots.plot_preference_curves`), redrawn in place like 04's loss curves, saved as dpo_curves.png."""

    FIGURE = "dpo_curves"

    def __init__(self, run: RunDir, title: str = "DPO", before: dict | None = None, **kwargs):
        super().__init__(run, title, **kwargs)
        self.before = before  # the reward metrics before training, drawn at step 0

    def figure(self, log_history: list[dict]):
        from .plots import plot_preference_curves

        return plot_preference_curves(log_history, title=self.title, before=self.before)
