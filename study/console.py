"""The CLI's rich output: tables whose names never truncate, on a narrow terminal or in a pipe.

Rich lays a table out to the console's width (80 columns when stdout is not a terminal) and cuts cells that do not
fit with an ellipsis. On a terminal, name columns fold (the whole name stays, over two lines if need be); in a pipe the
console is as wide as the content, so a table comes out on one line per row, as a script or `grep` wants it.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

PIPE_WIDTH = 1000  # wider than any table here: nothing folds or truncates when the output is not a terminal


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=PIPE_WIDTH)


def table(title: str | None, names: list[str], values: list[str], **kwargs) -> Table:
    """A table with `names` columns (left, folded, never cut) then `values` columns (right-aligned, unbroken)."""
    out = Table(title=title, title_justify="left", **kwargs)
    for name in names:
        out.add_column(name, overflow="fold")
    for name in values:
        out.add_column(name, justify="right", no_wrap=True)
    return out
