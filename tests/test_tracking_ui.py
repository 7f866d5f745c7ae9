"""`study ui` and `study dashboard`: servers answer on 127.0.0.1 only, Ctrl-C stops them, a SIGKILL takes the MLflow
server along; `study ui --screenshots` photographs the UI or says in one line that Chromium is missing."""

from __future__ import annotations

import shutil
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


def _wait_listening(port: int, proc: subprocess.Popen, url: str, err) -> None:
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None and _get(url) != 200:
        time.sleep(0.5)
    assert _get(url) == 200, err.read_text()[-3000:]


@pytest.mark.slow
def test_study_ui_killed_with_sigkill_takes_its_server_along(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", "ui", "--port", str(port)], cwd=REPO,
                            env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=(tmp_path / "ui.err").open("w"),
                            start_new_session=True)
    try:
        _wait_listening(port, proc, f"http://127.0.0.1:{port}/health", tmp_path / "ui.err")
        proc.kill()  # SIGKILL to `study ui` alone: no handler runs, its process group is not signalled
        proc.wait(timeout=10)
        deadline = time.time() + 10
        while time.time() < deadline and _listening(port):
            time.sleep(0.2)
        assert _listening(port) == []  # the MLflow server died with its parent
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in psutil.process_iter(["cmdline"]):  # never leave a server behind, even when the test fails
            if p.info["cmdline"] and f"{port}" in p.info["cmdline"] and "mlflow" in " ".join(p.info["cmdline"]):
                p.kill()


@pytest.fixture(scope="module")
def fake_study_state(tmp_path_factory):
    from tests.orchestrate_helpers import make_experiments, run_fake

    tmp = tmp_path_factory.mktemp("dashboard")
    make_experiments(tmp)
    r = run_fake(tmp, "tiny")
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp


@pytest.mark.slow
def test_study_dashboard_serves_the_study_on_loopback_and_stops_cleanly(fake_study_state):
    tmp = fake_study_state
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", "dashboard", "tiny", "--budget", "smoke", "--port",
                             str(port)], cwd=REPO, env=env_for(tmp), stdout=subprocess.PIPE,
                            stderr=(tmp / "dash.err").open("w"), text=True, start_new_session=True,
                            preexec_fn=_default_sigint)
    try:
        _wait_listening(port, proc, f"http://127.0.0.1:{port}/api/studies", tmp / "dash.err")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
            assert "tiny [smoke]" in r.read().decode()
        assert _listening(port) == ["127.0.0.1"]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (tmp / "dash.err").read_text()
    assert f"optuna-dashboard: http://127.0.0.1:{port}/dashboard/studies/" in out and "optuna-dashboard stopped." in out
    assert _listening(port) == []


def test_study_dashboard_without_runs_or_on_a_taken_port_is_one_line_exit_2(tmp_path):
    from tests.orchestrate_helpers import make_experiments

    make_experiments(tmp_path)
    r = subprocess.run([sys.executable, "-m", "study.cli", "dashboard", "tiny", "--port", str(_free_port())], cwd=REPO,
                       env=env_for(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: study tiny: no runs yet (no sqlite:///{(tmp_path / 'state').resolve() / 'optuna.db'}); "
        "start it with `study run tiny`"]
    assert not (tmp_path / "state" / "optuna.db").exists()  # looking created nothing
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "study.cli", "dashboard", "tiny", "--port", str(port)], cwd=REPO,
                           env=env_for(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in r.stderr


def test_screenshots_without_chromium_is_one_line_exit_2(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to("/usr/bin/git")  # a PATH with no browser on it
    r = subprocess.run([sys.executable, "-m", "study.cli", "ui", "--screenshots", str(tmp_path / "shots")], cwd=REPO,
                       env=env_for(tmp_path, PATH=str(bin_dir)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: --screenshots needs Chromium: install it (e.g. `apt-get install -y chromium`) and run again"]
    assert not (tmp_path / "shots").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_screenshots_show_the_runs_table_and_a_trial(fake_study_state, tmp_path):
    r = subprocess.run([sys.executable, "-m", "study.cli", "ui", "--screenshots", str(tmp_path / "shots")], cwd=REPO,
                       env=env_for(fake_study_state), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    from PIL import Image

    for name in ("mlflow_ui_study.png", "mlflow_ui_trial.png"):
        img = Image.open(tmp_path / "shots" / name)
        assert img.size == (1600, 1000) and len(img.convert("L").getcolors(1 << 16)) > 20, name  # a page, not blank


@pytest.mark.slow
def test_screenshots_pick_the_named_study(fake_study_state):
    from study.tracking import default_tracking_uri
    from study.tracking_summary import latest_study_trial

    uri = default_tracking_uri((fake_study_state / "state").resolve())
    target = latest_study_trial(uri, "tiny")
    assert target["experiment"] == "tiny [smoke]" and target["primary_metric"]
    assert latest_study_trial(uri, "tin") is None and latest_study_trial(uri, "other") is None


def test_study_without_screenshots_is_one_line_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "study.cli", "ui", "--study", "mask_ratio"], cwd=REPO,
                       env=env_for(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --study names the study --screenshots photographs; add --screenshots DIR"]
