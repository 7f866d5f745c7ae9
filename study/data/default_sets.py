"""The embedded default data sets: generated once into <state_dir>/data/<kind>-<params>/ and reused.

The folder name is the cache key (the parameters and the generator's version in GENERATOR_VERSION: bump a kind's
version whenever its generator's output changes).
Several worker processes may ask at once: an fcntl lock per set serializes them, the writers fill a temp folder and
rename it into place, so a set that exists is complete.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from study.data.synth_eval import write_davis, write_jhmdb, write_vip
from study.data.synth_videos import write_video_set

GENERATOR_VERSION = {"train": 1, "davis": 2, "jhmdb": 1, "vip": 1}   # davis 2: 1-3 objects, occlusions, speeds


@contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure(state_dir: str | Path, name: str, write: Callable[[Path], object]) -> Path:
    folder = Path(state_dir).expanduser() / "data" / f"{name}-v{GENERATOR_VERSION[name.split('-')[0]]}"
    if folder.is_dir():
        return folder
    with _locked(folder.parent / f".{folder.name}.lock"):
        if not folder.is_dir():  # another process may have made it while we waited
            write(folder)
    return folder


def dataset_root(cfg, dataset: str) -> Path:
    """Where `dataset` ('davis' | 'jhmdb' | 'vip') is read from for a RunConfig: eval.<dataset>_root when set, else the
    generated set in the state folder (made on first use, then cached)."""
    from study.config import state_dir

    configured = getattr(cfg.eval, f"{dataset}_root")
    if configured:
        return Path(configured)
    state, e = state_dir(cfg), cfg.eval
    if dataset == "davis":
        return ensure_davis_set(state, short_side=e.short_side, n_sequences=e.synth_sequences, n_frames=e.synth_frames,
                                seed=e.synth_seed)
    return {"jhmdb": ensure_jhmdb_set, "vip": ensure_vip_set}[dataset](state, seed=e.synth_seed)


def ensure_train_set(state_dir: str | Path, n_videos: int, n_frames: int, size: int, seed: int) -> Path:
    """The generated training videos (mp4), e.g. <state_dir>/data/train-256x40-96px-s0-v1/."""
    return _ensure(state_dir, f"train-{n_videos}x{n_frames}-{size}px-s{seed}",
                   lambda out: write_video_set(out, n_videos, n_frames, size, seed, quiet=True))


def ensure_davis_set(state_dir: str | Path, short_side: int = 192, n_sequences: int = 4, n_frames: int = 24,
                     seed: int = 0) -> Path:
    """The generated DAVIS-2017-layout set. Frames are made at `short_side` (192 by default: the cpu budget evaluates
    there, so nothing is resized and scoring stays quick); the smoke budget passes 64."""
    return _ensure(state_dir, f"davis-{n_sequences}x{n_frames}-{short_side}p-s{seed}",
                   lambda out: write_davis(out, n_sequences, n_frames, short_side, seed, quiet=True))


def ensure_jhmdb_set(state_dir: str | Path, n_videos: int = 4, n_frames: int = 20, seed: int = 0) -> Path:
    """The generated JHMDB-layout set (320x240 frames, as JHMDB's)."""
    return _ensure(state_dir, f"jhmdb-{n_videos}x{n_frames}-s{seed}",
                   lambda out: write_jhmdb(out, n_videos, n_frames, seed, quiet=True))


def ensure_vip_set(state_dir: str | Path, n_videos: int = 4, n_frames: int = 20, seed: int = 0) -> Path:
    """The generated VIP-layout set (320x240 frames)."""
    return _ensure(state_dir, f"vip-{n_videos}x{n_frames}-s{seed}",
                   lambda out: write_vip(out, n_videos, n_frames, seed, quiet=True))
