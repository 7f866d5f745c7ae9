"""Logging for the entry points: one logger per module does the logging, this sets where it goes and how much.

Level from --log-level, else $STUDY_LOG_LEVEL, else WARNING; a rich handler on a terminal, plain lines otherwise.
The chosen level is put in $STUDY_LOG_LEVEL so that worker subprocesses log the same way.
"""

from __future__ import annotations

import logging
import os
import sys

from study.errors import UserError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ENV = "STUDY_LOG_LEVEL"
OURS = ("study", "analysis")  # the packages whose loggers take the chosen level


def configure_logging(level: str | None = None) -> None:
    name = (level or os.environ.get(ENV) or "WARNING").upper()
    if name not in LEVELS:
        where = "--log-level" if level else f"${ENV}"
        raise UserError(f"{where} {name.lower()}: choose one of {', '.join(x.lower() for x in LEVELS)}")
    os.environ[ENV] = name
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.getLevelName(name), logging.WARNING))  # other libraries' debug output stays off
    for package in OURS:
        logging.getLogger(package).setLevel(name)
