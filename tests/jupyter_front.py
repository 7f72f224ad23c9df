"""The course notebooks in a real front end, for tests/test_browser.py: a Jupyter server on localhost (a free port,
a random token) and Debian's Chromium driven by Playwright, acting as a learner would.

Two front ends, because they speak different widget protocols:
- `lab`: JupyterLab 4 with ipywidgets 8 (the course's own environment, `.venv`);
- `classic`: the classic Notebook 6 with ipywidgets 7.7.1, the protocol Google Colab implements (`.venv-colab`,
  made by `python3 tasks.py colab`).
Which one a test session gets follows from the installed ipywidgets. Cells are run through the front end's own
commands (what its Run menu does), widgets are found and used in the rendered page, and every test saves a
screenshot under `tests/artifacts/browser/<front end>/`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying Google's hosts, which a closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def front_end_name() -> str:
    """`classic` where ipywidgets 7 is installed (Colab's protocol), else `lab`."""
    import ipywidgets

    return "classic" if ipywidgets.__version__.startswith("7.") else "lab"


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here, or None."""
    import importlib.util

    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium chromium-driver)"
    server = "notebook" if front_end_name() == "classic" else "jupyterlab"
    for module in ("playwright", server):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e .[browser])"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """A Jupyter server over a copy of the course's notebooks (they import this checkout's helpers and data), its
    kernels running with `env` (the tiny profile, a temporary run directory)."""

    def __init__(self, front: str, workdir: Path, env: dict[str, str]):
        self.front, self.workdir, self.token, self.port = front, workdir, secrets.token_hex(16), free_port()
        # a copy, so that the front end's autosave never writes outputs into the checkout's notebooks
        shutil.copytree(ROOT / "notebooks", workdir / "notebooks", dirs_exist_ok=True)
        if front == "lab":
            cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={workdir}",
                   f"--IdentityProvider.token={self.token}", "--LabApp.expose_app_in_browser=True",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        else:
            cmd = [sys.executable, "-m", "notebook", f"--notebook-dir={workdir}", f"--NotebookApp.token={self.token}"]
        cmd += ["--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={self.port}"]  # CI runs as root
        if front == "lab":  # no news pop-up over the cells; every cell rendered, not only those near the viewport
            settings = workdir / "lab-settings"
            for plugin, values in (("apputils-extension/notification", {"fetchNews": "false"}),
                                   ("notebook-extension/tracker", {"windowingMode": "none"})):
                path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(values))
            env = {**env, "JUPYTERLAB_SETTINGS_DIR": str(settings),
                   "JUPYTERLAB_WORKSPACES_DIR": str(workdir / "lab-workspaces")}
        self.log_path = workdir / "server.log"
        self.log = open(self.log_path, "w")
        # PYTHONPATH: the kernels import this checkout's helpers wherever the copy lives. JUPYTER_CONFIG_DIR: none of
        # the user's own Jupyter settings (the environment's own, such as the classic widget extension, still apply)
        env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "JUPYTER_CONFIG_DIR": str(workdir / "jupyter-config")}
        self.process = subprocess.Popen(cmd, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self._wait_until_up()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def notebook_url(self, notebook: str) -> str:
        prefix = "lab/tree" if self.front == "lab" else "notebooks"
        return self.url(f"{prefix}/notebooks/{notebook}") + ("&reset" if self.front == "lab" else "")

    def _wait_until_up(self, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Jupyter server exited: {self.log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url("api/status"), timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the Jupyter server did not answer in {timeout:.0f} s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# What each front end's page offers: run cells 0..i, read a cell's outputs, say whether execution is over.
_LAB_JS = {
    # the notebook's panel, found by its path (not "the current tab", which a restored layout may change)
    "ready": "(name) => { const app = window.jupyterapp; if (!app) return false;"
             " const p = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path.endsWith(name));"
             " const k = p && p.sessionContext.session && p.sessionContext.session.kernel;"
             " if (!k || k.connectionStatus !== 'connected' || k.status !== 'idle') return false;"
             " window.courseNb = p; return true; }",
    "cell_ids": "() => { const m = window.courseNb.content.model;"
                " return Array.from({length: m.cells.length}, (_, i) => m.cells.get(i).id); }",
    # not awaited: the page returns at once, and wait_idle watches the kernel and the prompts
    "run_through": "(i) => { const app = window.jupyterapp, nb = window.courseNb.content;"
                   " app.shell.activateById(window.courseNb.id); nb.activeCellIndex = i;"
                   " app.commands.execute('notebook:run-all-above').then(() =>"
                   " { nb.activeCellIndex = i; app.commands.execute('notebook:run-cell'); }); }",
    "run_one": "(i) => { const app = window.jupyterapp, nb = window.courseNb.content;"
               " app.shell.activateById(window.courseNb.id); nb.activeCellIndex = i;"
               " app.commands.execute('notebook:run-cell'); }",
    "outputs": "(i) => { const c = window.courseNb.content.model.cells.get(i);"
               " return c.type === 'code' ? c.outputs.toJSON() : []; }",
    "busy": "() => { const p = window.courseNb, s = p.sessionContext.session;"
            " return !s || !s.kernel || s.kernel.status !== 'idle' || Array.from(p.content.widgets).some(c =>"
            " c.model.type === 'code' && c.promptNode && c.promptNode.textContent.includes('*')); }",
    "scroll_to": "(i) => { window.courseNb.content.widgets[i].node.scrollIntoView(); }",
}
_CLASSIC_JS = {
    "ready": "(name) => !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel && "
             "Jupyter.notebook.kernel.is_connected() && Jupyter.notebook.kernel.info_reply && "
             "Jupyter.notebook.kernel.info_reply.status === 'ok')",
    "cell_ids": "() => Jupyter.notebook.get_cells().map(c => c.metadata.id || (c.id || ''))",
    "run_through": "(i) => { Jupyter.notebook.execute_cell_range(0, i + 1); }",
    "run_one": "(i) => { Jupyter.notebook.execute_cells([i]); }",
    "outputs": "(i) => { const c = Jupyter.notebook.get_cell(i); return c.output_area ? c.output_area.outputs : []; }",
    "busy": "() => Jupyter.notebook.kernel_busy || Jupyter.notebook.get_cells().some(c => c.cell_type === 'code' &&"
            " c.input_prompt_number === '*')",
    "scroll_to": "(i) => { Jupyter.notebook.get_cell(i).element[0].scrollIntoView(); }",
}


class NotebookPage:
    """One course notebook open in the browser, with its own kernel."""

    def __init__(self, browser, server: JupyterServer, notebook: str, shots: Path):
        self.server, self.notebook, self.shots = server, notebook, shots
        self.js = _LAB_JS if server.front == "lab" else _CLASSIC_JS
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(server.notebook_url(notebook))
        self.page.wait_for_function(self.js["ready"], arg=notebook, timeout=120_000)
        self.ids = self._cell_ids()

    def _cell_ids(self) -> list[str]:
        if self.server.front == "lab":
            return self.page.evaluate(self.js["cell_ids"])
        # the classic front end keeps no cell ids: read them from the file, cell for cell
        nb = json.loads((self.server.workdir / "notebooks" / self.notebook).read_text())
        return [c.get("id", "") for c in nb["cells"]]

    def index(self, cell_id: str) -> int:
        return self.ids.index(cell_id)

    def run_through(self, cell_id: str, timeout: float = 600) -> None:
        """Run every cell from the top to `cell_id` included, as Run > Run All Above then Run Cell would."""
        self.page.evaluate(self.js["run_through"], self.index(cell_id))
        self.wait_idle(timeout)

    def run_cell(self, cell_id: str, timeout: float = 600, wait: bool = True) -> None:
        """Run one cell, as Run > Run Selected Cell does; `wait=False` returns while it runs."""
        self.page.evaluate(self.js["run_one"], self.index(cell_id))
        if wait:
            self.wait_idle(timeout)

    def run_cells(self, first: str, last: str, timeout: float = 600) -> None:
        """Run the cells from `first` to `last` included, one after the other, as Run Selected Cell does."""
        for i in range(self.index(first), self.index(last) + 1):
            self.page.evaluate(self.js["run_one"], i)
            self.wait_idle(timeout)

    def wait_idle(self, timeout: float = 600) -> None:
        self.page.wait_for_timeout(500)  # let the kernel report busy first
        self.page.wait_for_function(f"() => !({self.js['busy']})()", timeout=timeout * 1000, polling=250)

    def outputs(self, cell_id: str) -> list[dict]:
        return self.page.evaluate(self.js["outputs"], self.index(cell_id))

    def text_of(self, cell_id: str) -> str:
        """What the cell printed (its stream outputs)."""
        return "".join(o.get("text", "") for o in self.outputs(cell_id))

    def errors_in(self, cell_ids: list[str]) -> list[str]:
        """The error outputs (name and message) of the given cells."""
        return [f"{c}: {o.get('ename')}: {o.get('evalue')}" for c in cell_ids for o in self.outputs(c)
                if o.get("output_type") == "error"]

    def cell(self, cell_id: str):
        """The rendered cell, scrolled into view (JupyterLab renders only the cells near the viewport)."""
        i = self.index(cell_id)
        self.page.evaluate(self.js["scroll_to"], i)
        selector = ".jp-Notebook .jp-Cell" if self.server.front == "lab" else "#notebook-container .cell"
        return self.page.locator(selector).nth(i)

    def screenshot(self, name: str, cell_id: str | None = None) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        (self.cell(cell_id) if cell_id else self.page).screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()
