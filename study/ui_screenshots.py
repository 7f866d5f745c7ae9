"""`study ui --screenshots DIR`: the MLflow UI as a researcher first sees it, as PNGs (the study's runs table, one
trial's metric charts), from a headless Chromium driven over its DevTools protocol.

Chromium is a system tool, not a Python dependency. It is driven through `--remote-debugging-pipe` (JSON messages,
NUL-terminated, on file descriptors 3 and 4): the standard library is enough, where Playwright or a websocket client
would add a package and a Node.js driver for one maintainer command.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from study.errors import UserError

log = logging.getLogger(__name__)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars")
WINDOW = (1600, 1000)
# The UI opens MLflow's assistant panel on a first visit; a researcher closes it once and the browser remembers.
CLOSED_ASSISTANT = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true", "mlflow.assistant.panelOpen_v1": "false"}


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    raise UserError("--screenshots needs Chromium: install it (e.g. `apt-get install -y chromium`) and run again")


def _above_4(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Chromium:
    """One headless browser tab, driven by DevTools protocol commands."""

    def __init__(self, executable: str, profile: Path):
        commands_r, self._commands = os.pipe()  # we write commands, Chromium reads them on its fd 3
        self._replies, replies_w = os.pipe()    # Chromium writes replies and events on its fd 4
        commands_r, replies_w = _above_4(commands_r), _above_4(replies_w)  # the dup2s below then clobber neither

        def pipes_on_3_and_4() -> None:  # in the child: dup2 makes 3 and 4 inheritable; our other fds close at exec
            os.dup2(commands_r, 3)
            os.dup2(replies_w, 4)

        self.proc = subprocess.Popen([executable, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
                                      f"--window-size={WINDOW[0]},{WINDOW[1]}"], close_fds=False,
                                     preexec_fn=pipes_on_3_and_4, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        os.close(commands_r)
        os.close(replies_w)
        self._buffer, self._next_id, self._session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1,
                  mobile=False)

    def call(self, method: str, timeout_s: float = 60, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self._session and not method.startswith("Target."):
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            while b"\0" not in self._buffer:
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed its DevTools pipe during {method}")
                self._buffer += chunk
            raw, _, self._buffer = self._buffer.partition(b"\0")
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"Chromium {method}: {reply['error']}")
                return reply.get("result", {})
        raise RuntimeError(f"Chromium {method}: no reply within {timeout_s:.0f} s")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for_text(self, texts: list[str], timeout_s: float = 60) -> None:
        """Until every text shows on the page (the UI renders after its API calls answer)."""
        probe = f"(() => {{ const t = document.body ? document.body.innerText : ''; " \
                f"return {json.dumps(texts)}.every(x => t.includes(x)); }})()"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.evaluate(probe):
                return
            time.sleep(0.5)
        shown = self.evaluate("document.body ? document.body.innerText : ''") or ""
        raise RuntimeError(f"the page never showed {texts} within {timeout_s:.0f} s; it shows: {shown[:600]!r}")

    def type_into(self, selector: str, text: str, timeout_s: float = 30) -> None:
        """Focus the element and type, with the browser's own input events (what a React page listens to)."""
        focus = f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (e) e.focus(); return !!e; }})()"
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(focus):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {selector} on the page within {timeout_s:.0f} s")
            time.sleep(0.5)
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=10)
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._commands)
        os.close(self._replies)


def take_screenshots(out: Path, tracking_uri: str | None = None, study: str | None = None) -> list[Path]:
    """Start the MLflow server on a free loopback port, photograph the latest study's (or `study`'s) runs table and
    one trial's metrics page into `out`, stop everything. -> the PNG paths."""
    from study import tracking, tracking_summary
    from study.ui import ServerProcess, free_port, mlflow_env, mlflow_server_command, wait_until_up

    chromium = find_chromium()
    state = tracking.state_dir()
    uri = tracking.resolve_tracking_uri(tracking_uri, state)
    target = tracking_summary.latest_study_trial(uri, study)
    if target is None:
        what = f"of study {study}" if study else "study"
        raise UserError(f"no finished {what} trial in {tracking.redact_url(uri)}: run a study first (e.g. `make demo`)")
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = ServerProcess(mlflow_server_command(uri, "127.0.0.1", port, state), mlflow_env(), quiet=True)
    shots = []
    try:
        wait_until_up(f"{base}/health", server)
        with tempfile.TemporaryDirectory(prefix="study-chromium-") as profile:
            browser = Chromium(chromium, Path(profile))
            try:
                browser.goto(f"{base}/static-files/favicon.ico")  # the UI's origin, to set what a visit remembers
                browser.evaluate("; ".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)})"
                                           for k, v in CLOSED_ASSISTANT.items()))
                link = dict(tracking_summary.study_links(base, uri))[target["experiment"]]
                browser.goto(link)
                browser.wait_for_text([target["primary_metric"], "random init", target["parent_name"]])
                time.sleep(2)  # the group rows and widths settle after the data arrives
                shots.append(browser.screenshot(out / "mlflow_ui_study.png"))
                browser.goto(f"{base}/#/experiments/{target['experiment_id']}/runs/{target['run_id']}/model-metrics"
                             "?workflowType=machine_learning")
                browser.wait_for_text([target["run_name"], "Model metrics"])
                # the charts come alphabetically (data.*, davis.* ...): show the loss and the primary metric first,
                # typed into the page's own chart filter as a researcher would
                browser.type_into('input[placeholder="Search metric charts"]',
                                  f"train.loss|{target['primary_metric']}")
                browser.wait_for_text(["train.loss"])
                time.sleep(3)  # the charts draw after their metric histories load
                shots.append(browser.screenshot(out / "mlflow_ui_trial.png"))
            finally:
                browser.close()
    finally:
        server.terminate_group()
    return shots
