"""`study ui`: the MLflow server answers on 127.0.0.1 only and Ctrl-C stops it (server included)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from tests.orchestrate_helpers import REPO, env_for


def _default_sigint() -> None:
    """As in a terminal: a job started in the background by a shell (as CI runners do) inherits SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> list[str]:
    return [c.laddr.ip for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except OSError:
        return 0


@pytest.mark.slow
def test_study_ui_serves_on_loopback_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", "ui", "--port", str(port)], cwd=REPO,
                            env=env_for(tmp_path), stdout=subprocess.PIPE, stderr=(tmp_path / "ui.err").open("w"),
                            text=True, start_new_session=True, preexec_fn=_default_sigint)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None and _get(f"http://127.0.0.1:{port}/") != 200:
            time.sleep(0.5)
        assert _get(f"http://127.0.0.1:{port}/") == 200, (tmp_path / "ui.err").read_text()[-3000:]
        assert _get(f"http://127.0.0.1:{port}/health") == 200
        assert _listening(port) == ["127.0.0.1"]  # loopback only: not 0.0.0.0, not ::
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert f"MLflow UI: http://127.0.0.1:{port}" in out and "MLflow UI stopped." in out
    deadline = time.time() + 5
    while time.time() < deadline and _listening(port):
        time.sleep(0.2)
    assert _listening(port) == []  # the server went with it, nothing left behind


def test_study_ui_on_a_taken_port_is_one_line_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "study.cli", "ui", "--port", str(port)], cwd=REPO,
                           env=env_for(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--port {port}: cannot listen on 127.0.0.1:{port}" in lines[0], r.stderr
