"""The `study` command line itself: help that answers at once and shows no Python types, an example per command,
--version, shell completion, --log-level, and tables that keep names whole in a pipe."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.orchestrate_helpers import REPO, env_for

HEAVY = ("torch", "mlflow", "optuna", "polars", "pandas", "timm", "matplotlib")


def _study(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=REPO, env=env_for(tmp_path, COLUMNS="80", **env),
                          capture_output=True, text=True, timeout=120)


def _commands() -> list[list[str]]:
    from study.cli import app, bench_app, data_app

    def names(typer_app):
        return [c.name for c in typer_app.registered_commands]

    return ([[n] for n in names(app)] + [["bench", n] for n in names(bench_app)]
            + [["data", n] for n in names(data_app)])


def test_help_imports_no_heavy_library(tmp_path):
    probe = ("import sys\nfrom study.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env_for(tmp_path), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout


def test_every_command_has_help_without_python_types_and_an_example(tmp_path):
    commands = _commands()
    assert ["dashboard"] in commands and ["ui"] in commands
    for cmd in commands:
        r = _study(tmp_path, *cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        options = r.stdout.split("Options:", 1)[1]
        assert not re.search(r"<(str|int|float|bool|list\[str\])>", options), (cmd, options)
        assert f"Example: study {' '.join(cmd)}" in r.stdout, (cmd, r.stdout)
    run_help = _study(tmp_path, "run", "--help").stdout
    assert "--set KEY=VALUE" in run_help and "--budget BUDGET" in run_help


def test_version_completion_and_log_level(tmp_path):
    from importlib.metadata import version

    r = _study(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"study {version('siammae-study')}"
    top = _study(tmp_path, "--help").stdout
    assert "--install-completion" in top and "--show-completion" in top and "--log-level LEVEL" in top
    bad = _study(tmp_path, "--log-level", "loud", "list")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --log-level loud: choose one of debug, info, warning, error"]
    env_bad = _study(tmp_path, "list", STUDY_LOG_LEVEL="chatty")
    assert env_bad.returncode == 2 and "$STUDY_LOG_LEVEL chatty" in env_bad.stderr


def test_log_level_reaches_our_loggers_only(monkeypatch):
    import logging

    from study.logs import configure_logging

    monkeypatch.delenv("STUDY_LOG_LEVEL", raising=False)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("study").level, logging.getLogger("analysis").level)
    try:
        configure_logging("debug")
        assert logging.getLogger("study.tracking").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("urllib3").isEnabledFor(logging.INFO)  # other libraries stay at warning
        import os

        assert os.environ["STUDY_LOG_LEVEL"] == "DEBUG"  # worker subprocesses inherit it
        configure_logging(None)  # from the environment now
        assert logging.getLogger("study").level == logging.DEBUG
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("study").setLevel(saved[2])
        logging.getLogger("analysis").setLevel(saved[3])


def test_tables_keep_long_names_whole_in_a_pipe():
    import io

    from rich.console import Console

    from study.console import PIPE_WIDTH, table

    name = "encoder=siamese, decoder=cross-self, frame_gap=[4, 48], mask_ratio=0.95 (the long cell a user copies)"
    t = table("a title", ["cell"], ["J&F", "steps"])
    t.add_row(name, "58.12", "400")
    out = io.StringIO()
    Console(file=out, width=PIPE_WIDTH).print(t)  # what console() is when stdout is not a terminal
    assert name in out.getvalue()
    narrow = io.StringIO()
    Console(file=narrow, width=60).print(t)  # a narrow terminal: the name folds over lines, every character stays
    first_column = "".join(line.split("│")[1] for line in narrow.getvalue().splitlines() if line.startswith("│"))
    assert first_column.replace(" ", "") == name.replace(" ", "") and "…" not in narrow.getvalue()


@pytest.mark.slow
def test_model_info_in_a_pipe_keeps_its_row_names(tmp_path):
    r = _study(tmp_path, "model-info", "--preset", "tiny", "--img", "64", "--patch", "8")
    assert r.returncode == 0, r.stderr
    assert "of which fixed (sin-cos position embeddings)" in r.stdout
    assert "FLOPs per pair, forward + backward" in r.stdout and "…" not in r.stdout
