"""Atomic file writes: a file is either its old self or its new self, never half-written (crash, kill -9, full disk).

Write into a temp file beside the target (same filesystem), then `os.replace` it over the target. One definition for
every writer in the project: checkpoints, result PNGs, pictures, run ids, exports.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yields a temp path beside `path` (same suffix, so writers that go by the suffix still work); on success it
    replaces `path`, on any error it is removed. `durable`: fsync the file before the rename (checkpoints)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
