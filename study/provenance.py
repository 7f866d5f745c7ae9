"""Where a result came from: the command as typed, the project's git commit, the package versions, a URL without its
password. A leaf (no mlflow, no torch): the tracker records these on a study's parent run, a report may cite them."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

VERSIONED = ("torch", "timm", "mlflow", "optuna", "polars", "numpy")  # the packages a result's provenance names


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, shell-quoted; the `study` entry point (or `python -m study.cli`) is shown as `study`."""
    argv = list(sys.argv if argv is None else argv)
    if argv and (Path(argv[0]).name == "study" or Path(argv[0]).parts[-2:] == ("study", "cli.py")):
        argv[0] = "study"
    return shlex.join(argv)


def git_commit(folder: Path | None = None) -> str:
    """HEAD of the checkout that holds this package, "-dirty" when tracked files changed; "unknown" outside git."""
    where = str(folder or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode:
            return "unknown"
        changed = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine, or a hung filesystem
        return "unknown"
    return head.stdout.strip() + ("-dirty" if changed.returncode or changed.stdout.strip() else "")


def package_versions() -> dict[str, str | None]:
    """Python and the versions of the packages a result depends on (None: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def redact_url(url: str) -> str:
    """A storage or tracking URL without its password (user, host and database stay)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{host}" if parts.username else host))
