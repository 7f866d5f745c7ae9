"""Where a report's numbers come from: how the study was run (the MLflow parent run's `study.*` tags, written by
`study run`) and how the report was made (now: date, command, the project's git commit).

A tag the run did not record shows as "not recorded": a report never guesses its own history.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

NOT_RECORDED = "not recorded"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# `study run`'s tags on the parent run; the names are shared with study/orchestrate (which writes them).
COMMAND, GIT_COMMIT, VERSIONS, OVERRIDES, STATE_DIR, STORAGE = (
    "study.command", "study.git_commit", "study.versions", "study.overrides", "study.state_dir", "study.storage")
PACKAGES = ("python", "torch", "timm", "mlflow", "optuna")  # shown first, in this order; any others follow


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """The project's commit now, '(uncommitted changes)' when the tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return commit + (" (uncommitted changes)" if dirty else "")


def versions_text(tag: str | None) -> str:
    """'python 3.12.3, torch 2.14.1, ...' from the JSON object of the versions tag."""
    if not tag:
        return NOT_RECORDED
    try:
        versions = json.loads(tag)
    except ValueError:
        return tag
    if not isinstance(versions, dict):
        return tag
    names = [p for p in PACKAGES if p in versions] + sorted(k for k in versions if k not in PACKAGES)
    return ", ".join(f"{k} {versions[k]}" for k in names) or NOT_RECORDED


def overrides_text(tag: str | None) -> str:
    """'none' for '[]', '`train.blr=0.01`, ...' for a JSON list of 'key=value'."""
    if tag is None:
        return NOT_RECORDED
    try:
        items = json.loads(tag)
    except ValueError:
        return f"`{tag}`"
    if not isinstance(items, list):
        return f"`{tag}`"
    return ", ".join(f"`{i}`" for i in items) or "none"


def _code(value: str | None) -> str:
    return f"`{value}`" if value else NOT_RECORDED


def run_lines(parent: dict | None) -> list[tuple[str, str]]:
    """How the study was run, from its parent run's tags (`study.tracking.fetch_parent_run`)."""
    if not parent:
        return [("study run", "no parent run found: " + NOT_RECORDED)]
    tags = parent.get("tags") or {}
    return [("study run", _code(tags.get(COMMAND))),
            ("overrides (`--set`)", overrides_text(tags.get(OVERRIDES))),
            ("project commit of the runs", _code(tags.get(GIT_COMMIT))),
            ("versions", versions_text(tags.get(VERSIONS))),
            ("state folder", _code(tags.get(STATE_DIR))),
            ("Optuna storage", _code(tags.get(STORAGE)))]


def report_lines(command: str, now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """How this report was made."""
    now = now or dt.datetime.now().astimezone()
    return [("report made", now.strftime("%Y-%m-%d %H:%M %Z").strip()), ("report command", f"`{command}`"),
            ("project commit of the report", f"`{git_commit()}`")]


def runs_period(records: list[dict]) -> str:
    """'2026-11-26 10:02 to 2026-11-26 11:40' (UTC): when the runs of the table started and ended."""
    starts = [r["start_time"] for r in records if r.get("start_time")]
    ends = [r["end_time"] for r in records if r.get("end_time")]
    if not starts:
        return NOT_RECORDED
    fmt = lambda ms: dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: E731
    return f"{fmt(min(starts))} to {fmt(max(ends))}" if ends else f"from {fmt(min(starts))} (still running)"
