"""`study ui` and `study dashboard`: MLflow's UI over the study runs, optuna-dashboard over the study storage.

Both bind to 127.0.0.1 unless told otherwise, refuse a taken port in one line, and stop cleanly on Ctrl-C or SIGTERM.
The MLflow server is a child process that dies with `study ui`, even when `study ui` is killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from study.errors import UserError

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def check_port(host: str, port: int) -> None:
    """A taken port would otherwise show as a page of server traceback."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None


def url_of(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _die_with_parent(parent: int):
    """preexec_fn: the kernel sends the child SIGTERM when its parent dies, however it dies (SIGKILL included)."""
    def setup() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # not Linux: Ctrl-C and SIGTERM still stop the server
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return setup


def _interrupt(signum, frame):  # SIGTERM (a service manager, `kill`) stops a server as Ctrl-C does
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server child in its own process group (we stop it and all it started, then report) that dies with us."""

    def __init__(self, cmd: list[str], env: dict[str, str], quiet: bool = False):
        out = subprocess.DEVNULL if quiet else None
        self.proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent(os.getpid()),
                                     stdout=out, stderr=out)

    def poll(self) -> int | None:
        return self.proc.poll()

    def terminate_group(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def run_child_server(cmd: list[str], env: dict[str, str], name: str) -> int | None:
    """Run a server process until it exits (-> its exit code) or we are interrupted by Ctrl-C or SIGTERM (-> None)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    server = ServerProcess(cmd, env)
    try:
        while server.poll() is None:  # in steps: a blocking wait misses a Ctrl-C that lands on another thread
            time.sleep(0.5)
    except KeyboardInterrupt:
        log.info("%s stopped (exit code %s)", name, server.terminate_group())
        return None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return server.poll()


def serve_ui(port: int = 5000, host: str = "127.0.0.1", tracking_uri: str | None = None) -> None:
    """`mlflow server` over the study runs: one worker, job execution off; prints each study's runs-table link."""
    from study import tracking, tracking_summary

    check_port(host, port)
    state = tracking.state_dir()
    uri = tracking.resolve_tracking_uri(tracking_uri, state)
    base = url_of(host, port)
    print(f"MLflow UI: {base}  (store {tracking.redact_url(uri)}; Ctrl-C stops it)", flush=True)
    for name, link in tracking_summary.study_links(base, uri):  # also creates the state folder for a fresh sqlite store
        print(f"  {name}: {link}", flush=True)
    code = run_child_server(mlflow_server_command(uri, host, port, state), mlflow_env(), "mlflow server")
    if code is None:
        print("MLflow UI stopped.", flush=True)
    elif code:
        raise UserError(f"mlflow server exited with code {code} (its error is above); "
                        f"check --tracking-uri {tracking.redact_url(uri)}")


def mlflow_server_command(uri: str, host: str, port: int, state: Path) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", "1", "--artifacts-destination", (state / "mlartifacts").as_uri()]


def mlflow_env() -> dict[str, str]:
    return {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def wait_until_up(url: str, proc: ServerProcess | None = None, timeout_s: float = 120) -> None:
    """Poll `url` until it answers 200 (a server just started takes seconds to import and bind)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise UserError(f"the server for {url} exited with code {proc.poll()} before answering; "
                            "`study ui` shows its error")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise UserError(f"no answer from {url} within {timeout_s:.0f} s")


def serve_dashboard(name: str, budget: str | None = None, storage: str | None = None, port: int = 8080,
                    host: str = "127.0.0.1") -> None:
    """optuna-dashboard over the study's Optuna storage, in this process (so nothing outlives it)."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
    from socketserver import ThreadingMixIn

    import optuna
    from optuna_dashboard import wsgi

    from study.config import state_dir
    from study.config_load import default_budget
    from study.orchestrate.storage import check_storage_url, default_storage_url
    from study.provenance import redact_url
    from study.studies import load_study, stored_name

    spec = load_study(name)
    budget = budget or default_budget()
    check_port(host, port)
    if storage:
        check_storage_url(storage)
    url = storage or default_storage_url(state_dir())
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise UserError(f"study {spec.name}: no runs yet (no {url}); start it with `study run {spec.name}`")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = optuna.storages.RDBStorage(url)
    try:
        study_id = rdb.get_study_id_from_name(stored_name(spec.name, budget))
    except KeyError:
        raise UserError(f"study {spec.name}: nothing at budget {budget} in {redact_url(url)}; "
                        f"start it with `study run {spec.name} --budget {budget}` or pass --budget") from None

    class Quiet(WSGIRequestHandler):  # wsgiref logs every request to stderr otherwise
        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingMixIn, WSGIServer):  # the dashboard polls while a page loads: one thread per request
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    httpd = Server((host, port), Quiet)
    httpd.set_app(wsgi(rdb))
    base = url_of(host, port)
    print(f"optuna-dashboard: {base}/dashboard/studies/{study_id}  (storage {redact_url(url)}; Ctrl-C stops it)",
          flush=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        httpd.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("optuna-dashboard stopped.", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        httpd.server_close()
