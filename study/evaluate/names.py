"""Names read from a data set's lists (DAVIS val.txt, VIP val_videos.txt, JHMDB split files) become folder and file
names under --out: they must be plain names, never paths."""

from __future__ import annotations

from pathlib import Path

from study.errors import UserError


def plain_name(name: str, source: Path | str, what: str = "name") -> str:
    """`name` unchanged if it is one plain path component; else a user error naming the list it came from."""
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("-")
           or any(ord(c) < 32 for c in name))
    if bad:
        raise UserError(f"{source}: {what} {name!r} is not a plain name (no '/', '\\', '..', leading '-' or control "
                        "characters); list folder names only")
    return name
