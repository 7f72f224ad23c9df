"""The widgets in a real front end: JupyterLab 4 (ipywidgets 8) in `.venv`, or the classic Notebook with ipywidgets
7.7.1 (the protocol Colab implements) in `.venv-colab`, rendered by Debian's Chromium and used as a learner would.

Each test opens a course notebook with its own kernel (tiny profile, one temporary run directory for the module),
runs its cells through the front end, acts on the rendered widgets, checks what the page and the run directory
show, and saves screenshots under tests/artifacts/browser/<front end>/. Run them with
`python3 tasks.py test -m browser` (or `python3 tasks.py colab -m browser` for the classic front end).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pytest

from jupyter_front import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, JupyterServer, NotebookPage, front_end_name,
                           missing_requirements)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
if missing_requirements():
    if os.environ.get("CI"):  # .ci/run installs Chromium: there a skip would hide a broken set-up
        pytest.fail(f"the browser tests cannot run: {missing_requirements()}", pytrace=False)
    pytest.skip(missing_requirements(), allow_module_level=True)

FRONT = front_end_name()
SHOTS = ARTIFACTS / FRONT
RED = "rgb(187, 0, 0)"  # the panel's "Not possible" colour, #b00


@pytest.fixture(scope="module")
def server():
    with tempfile.TemporaryDirectory(prefix="course-browser-") as tmp:
        work = Path(tmp)
        srv = JupyterServer(FRONT, work, {"COURSE_PROFILE": "tiny", "COURSE_RUN_DIR": str(work / "run")})
        srv.run_dir = work / "run"
        yield srv
        srv.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_notebook(server, browser):
    pages = []

    def opener(name: str) -> NotebookPage:
        pages.append(NotebookPage(browser, server, name, SHOTS))
        return pages[-1]

    yield opener
    for page in pages:
        assert not page.errors, f"JavaScript errors in the page: {page.errors}"
        page.close()


def ran_cleanly(nb: NotebookPage, last: str) -> None:
    upto = nb.ids[: nb.index(last) + 1]
    assert not nb.errors_in(upto), nb.errors_in(upto)


def opened_at(open_notebook, name: str, cell_id: str):
    """The notebook opened and run from the top to `cell_id`, without errors; and that cell."""
    nb = open_notebook(name)
    nb.run_through(cell_id)
    ran_cleanly(nb, cell_id)
    return nb, nb.cell(cell_id)


def control(cell, description: str):
    """The panel's control whose label is exactly `description`."""
    label = cell.page.locator("label", has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
    return cell.locator(".widget-inline-hbox", has=label).first


def set_readout(cell, description: str, value: str) -> None:
    """Type a value into a slider's editable readout and press Enter, as a learner does for an exact value."""
    readout = control(cell, description).locator(".widget-readout")
    readout.click()
    readout.press("Control+a")
    readout.type(value)
    readout.press("Enter")


def choose(select, starting: str) -> None:
    """Pick the dropdown option whose label starts with `starting` (labels carry the size, e.g. "(1.1B)")."""
    labels = select.evaluate("s => Array.from(s.options).map(o => o.textContent.replace(/\\u00a0/g, ' '))")
    select.select_option(index=next(i for i, label in enumerate(labels) if label.startswith(starting)))


def html_widgets(cell):
    return cell.locator(".widget-html-content")


def wait_for_text(locator, pattern: str, timeout_s: float = 60) -> str:
    """Wait until the locator's text matches `pattern`; return the text."""
    locator.page.wait_for_function(
        "([el, p]) => new RegExp(p).test(el.innerText)", arg=[locator.element_handle(), pattern],
        timeout=timeout_s * 1000)
    return locator.inner_text()


def poll_json(path: Path, done, timeout_s: float = 20):
    """The JSON file's content once `done(content)` holds (the kernel writes it after the click), or what it holds
    when time runs out."""
    import time

    deadline, content = time.time() + timeout_s, None
    while time.time() < deadline:
        try:
            content = json.loads(path.read_text())
            if done(content):
                break
        except (OSError, ValueError):  # not written yet, or caught mid-write
            pass
        time.sleep(0.25)
    return content


def test_02_model_picker_changes_the_memory_verdict(open_notebook):
    nb, cell = opened_at(open_notebook, "02_model_loading.ipynb", "c02d")
    verdict = html_widgets(cell).last
    before = verdict.inner_text()
    assert "Memory (1.1M parameters" in before, before
    nb.screenshot("02_picker_tiny", "c02d")
    choose(cell.locator(".widget-dropdown select"), "TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    after = wait_for_text(verdict, r"1\.10B parameters")
    assert after != before and "On a T4" in after, after
    nb.screenshot("02_picker_tinyllama", "c02d")
    nb.run_cell("c02e")  # the next cell reads the picker's value
    text = nb.text_of("c02e")
    assert "model: TinyLlama/TinyLlama-1.1B-Chat-v1.0" in text, nb.outputs("c02e")
    # back to tiny, saved again: the later tests share this run directory
    choose(cell.locator(".widget-dropdown select"), "tiny")
    wait_for_text(verdict, r"1\.1M parameters")
    nb.run_cell("c02e")
    assert "model: tiny" in nb.text_of("c02e")


def effective_batch(summary_text: str) -> int:
    return int(re.search(r"effective batch (\d+)", summary_text).group(1))


def test_04_panel_updates_its_summary_and_refuses_an_impossible_setting(open_notebook):
    nb, cell = opened_at(open_notebook, "04_training_sft.ipynb", "c04")
    summary = html_widgets(cell).last
    first = wait_for_text(summary, "optimizer steps")
    readout = {name: control(cell, name).locator(".widget-readout").inner_text()
               for name in ("learning rate", "batch size", "grad. accumulation")}
    batch = int(readout["batch size"])
    nb.screenshot("04_panel_defaults", "c04")
    nb.run_cell("c05")  # untouched, the panel is the config (a browser's slider snapping must not change it)
    assert "changed: nothing (defaults)" in nb.text_of("c05"), nb.outputs("c05")

    set_readout(cell, "learning rate", "1.0e-3")
    set_readout(cell, "batch size", str(2 * batch))
    wait_for_text(summary, rf"effective batch {2 * effective_batch(first)}\b")
    nb.screenshot("04_panel_changed", "c04")
    nb.run_cell("c05")
    changed = nb.text_of("c05")
    assert "'train.learning_rate': (" in changed and "0.001)" in changed, changed
    assert f"'train.per_device_train_batch_size': ({batch}, {2 * batch})" in changed, changed

    set_readout(cell, "batch size", "64")
    set_readout(cell, "grad. accumulation", "32")
    refused = wait_for_text(summary, "Not possible")
    assert "effective batch (2048) is larger than the training set" in refused, refused
    colour = summary.locator("b", has_text="Not possible").evaluate("el => getComputedStyle(el).color")
    assert colour == RED, colour
    nb.screenshot("04_panel_impossible", "c04")
    nb.run_cell("c05")
    errors = nb.errors_in(["c05"])
    assert len(errors) == 1 and "ConfigError" in errors[0] and "effective batch (2048)" in errors[0], errors
    nb.screenshot("04_panel_refused_by_next_cell", "c05")
    for name, value in readout.items():  # the defaults again, saved: the later tests share this run directory
        set_readout(cell, name, value)
    wait_for_text(summary, "optimizer steps")
    nb.run_cell("c05")
    assert not nb.errors_in(["c05"]), nb.errors_in(["c05"])


def test_04_live_loss_plot_updates_one_figure_in_place_and_tensorboard_shows_the_run(open_notebook):
    nb, cell = opened_at(open_notebook, "04_training_sft.ipynb", "c04")
    control(cell, "tracker").locator("select").select_option("tensorboard")
    nb.run_cell("c05")
    assert "'train.report_to': ('none', 'tensorboard')" in nb.text_of("c05")
    nb.run_cells(nb.ids[nb.index("c05") + 1], nb.ids[nb.index("c15") - 1])
    ran_cleanly(nb, "c15")

    nb.run_cell("c15", wait=False)
    cell = nb.cell("c15")
    images = cell.locator(".jp-OutputArea-output img, .output_subarea img")
    images.first.wait_for(timeout=300_000)
    first_src = images.first.get_attribute("src")
    assert images.count() == 1
    nb.screenshot("04_live_plot_early", "c15")
    # an update replaces the picture (JupyterLab renders a new <img>): look again each time, within the cell
    nb.page.wait_for_function("([el, src]) => { const img = el.querySelector('img'); return img && img.src !== src; }",
                              arg=[cell.element_handle(), first_src], timeout=300_000)
    assert images.count() == 1, "a redraw added a second figure instead of replacing the first"
    nb.screenshot("04_live_plot_later", "c15")
    nb.wait_idle()
    ran_cleanly(nb, "c15")
    assert images.count() == 1
    assert images.first.get_attribute("src") != first_src
    nb.screenshot("04_live_plot_final", "c15")

    # section 9: the second run, the comparison, and TensorBoard embedded in the notebook over both runs' logs
    nb.run_cells("c16", "c18u")
    ran_cleanly(nb, "c18u")
    frame = nb.cell("c18u").locator("iframe")
    frame.wait_for(timeout=120_000)
    board = nb.page.frame_locator(".jp-Notebook .jp-Cell iframe, #notebook-container .cell iframe")
    board.locator("text=/lr-low/").first.wait_for(timeout=120_000)  # the run list names both runs
    nb.page.wait_for_timeout(3000)  # let the charts draw
    nb.screenshot("04_tensorboard_in_the_notebook", "c18u")


def test_05_a_click_on_a_rating_is_saved(open_notebook, server):
    nb, cell = opened_at(open_notebook, "05_evaluation.ipynb", "c16")
    rows = cell.locator(".widget-toggle-buttons")
    assert rows.count() >= 2
    nb.screenshot("05_rating_unrated", "c16")
    rows.nth(0).locator("button", has_text="A is better").click()
    rows.nth(1).locator("button", has_text="both bad").click()
    saved = poll_json(server.run_dir / "human_ratings.json", lambda rows: len(rows) == 2)
    assert [r["choice"] for r in saved] == ["A is better", "both bad"], saved
    assert all(r["outcome"] for r in saved)
    nb.screenshot("05_rating_two_rated", "c16")


def test_06_chat_box_streams_replies_on_send_and_enter_and_resets(open_notebook):
    nb, cell = opened_at(open_notebook, "06_inference.ipynb", "c10b")
    history, status = html_widgets(cell).first, html_widgets(cell).last
    wait_for_text(status, "Ready")
    # record every state the conversation shows, to see the reply arrive piece by piece (the ▌ cursor)
    history.evaluate("el => { window.seen = []; new MutationObserver(() => window.seen.push(el.innerText))"
                     ".observe(el, {subtree: true, childList: true, characterData: true}); }")
    box = cell.locator(".widget-text input")
    box.fill("Hello, Noor speaking. Lima at noon?")
    cell.locator("button", has_text="Send").click()
    wait_for_text(status, "Turn 1:", timeout_s=120)
    assert "Noor speaking" in history.inner_text()
    assert nb.page.evaluate("window.seen.some(t => t.includes('▌'))"), "the reply did not stream"
    assert box.input_value() == ""
    nb.screenshot("06_chat_after_send", "c10b")
    box.fill("And Oslo at nine?")
    box.press("Enter")
    wait_for_text(status, "Turn 2:", timeout_s=120)
    assert "Oslo at nine" in history.inner_text()
    nb.screenshot("06_chat_after_enter", "c10b")
    cell.locator("button", has_text="Reset").click()
    wait_for_text(status, "History cleared")
    assert "Oslo" not in history.inner_text() and "Noor" not in history.inner_text()
    nb.screenshot("06_chat_after_reset", "c10b")
