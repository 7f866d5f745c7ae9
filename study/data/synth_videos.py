"""`study data synth`: generated training videos (scene.py) written as real mp4 files with PyAV (libx264, yuv420p).

Video i is a pure function of (seed, i), so the set is the same whatever the number of processes that render it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from study.data.scene import Scene
from study.errors import UserError

FPS = 30
CRF = 18


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = FPS, crf: int = CRF) -> None:
    """uint8 (H, W, 3) frames -> an H.264 mp4 (H and W must be even for yuv420p)."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        stream.thread_type, stream.codec_context.thread_count = "AUTO", 1  # parallelism comes from the process pool
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())


def render_training_video(seed: int, index: int, n_frames: int, size: int) -> list[np.ndarray]:
    """One video's frames. Speed, object count and texture source vary per video so a short run cannot memorize them."""
    rng = np.random.default_rng([seed, index])
    scene = Scene(rng, size, size, n_frames, real_prob=0.75)
    return [scene.render(t)[0] for t in range(n_frames)]


def _write_one(args: tuple[str, int, int, int, int]) -> str:
    folder, seed, index, n_frames, size = args
    path = Path(folder) / f"video_{index:05d}.mp4"
    write_mp4(path, render_training_video(seed, index, n_frames, size))
    return path.name


def prepare_out(out: str | Path) -> Path:
    """The final folder must not hold anything yet (we never mix sets or overwrite), and its parent must take files."""
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not an empty folder; choose a new path or remove it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create {out.parent} ({e.strerror}); choose a writable path") from None
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"--out {out}: {out.parent} is not writable; choose a writable path")
    return out


def temp_beside(out: Path) -> Path:
    """A fresh temp folder next to `out` (same filesystem, so `publish` is a rename)."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise UserError(f"--out {out}: cannot write in {out.parent} ({e.strerror}); choose a writable path") from None


def folder_size(folder: Path) -> tuple[int, float]:
    """(files, MB) under a folder."""
    sizes = [p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()]
    return len(sizes), sum(sizes) / 1e6


def publish(tmp: Path, out: Path) -> None:
    """Atomic hand-over of a finished temp folder (same parent, so a rename)."""
    if out.exists():
        out.rmdir()  # empty, checked by prepare_out
    os.rename(tmp, out)


def write_video_set(out: str | Path, n_videos: int, n_frames: int, size: int, seed: int, processes: int | None = None,
                    quiet: bool = False) -> Path:
    """Write n_videos mp4 files of n_frames frames, size x size pixels, into `out`; returns the folder."""
    if n_videos < 1 or n_frames < 2 or size < 16:
        raise UserError(f"--videos {n_videos} --frames {n_frames} --size {size}: need videos >= 1, frames >= 2, size >= 16")
    if size % 2:
        raise UserError(f"--size {size}: H.264 (yuv420p) needs an even frame size; use {size + 1}")
    out = prepare_out(out)
    started = time.perf_counter()
    probe_decoding(out, size)
    tmp = temp_beside(out)
    try:
        jobs = [(str(tmp), seed, i, n_frames, size) for i in range(n_videos)]
        processes = processes or min(os.cpu_count() or 1, n_videos)
        if processes <= 1:
            list(map(_write_one, jobs))
        else:  # spawn: the caller may hold threads (torch) that fork would copy in a bad state
            with ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn")) as pool:
                list(pool.map(_write_one, jobs, chunksize=max(1, n_videos // (4 * processes))))
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not quiet:
        _, mb = folder_size(out)
        print(f"wrote {n_videos} videos x {n_frames} frames at {size}x{size} ({mb:.1f} MB) to {out} "
              f"in {time.perf_counter() - started:.1f} s")
    return out


def probe_decoding(out: Path, size: int) -> None:
    """Refuse a frame size that decord cannot read back. Measured (decord 0.6): videos 16, 24, 48 or 72 px wide
    encode fine but decord's frame copy fails on them, while every other even width from 18 to 518 reads back; a
    two-frame probe video finds this for any decord build, before anything is written."""
    from study.data.video import VideoDecodeError, read_frames

    folder = temp_beside(out)
    try:
        path = folder / "probe.mp4"
        write_mp4(path, [np.full((size, size, 3), 128, np.uint8)] * 2)
        try:
            frames = read_frames(path, [0, 1])
        except (VideoDecodeError, UserError):
            frames = None
        if frames is None or frames.shape != (2, size, size, 3):
            raise UserError(f"--size {size}: the video decoder (decord) cannot read back frames {size} px wide "
                            f"(measured: 16, 24, 48 and 72 fail); use another even size, e.g. {size + 2} or 64")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
