"""Generated evaluation sets in the published folder layouts: DAVIS-2017, JHMDB and VIP.

Everything visible is textured from real video crops (procedural textures only where the real clips are missing): random
ViT features already separate procedural textures, so only real ones show what training buys.
Each writer fills a temp folder next to `out` and renames it into place, so a crash leaves nothing half-written.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

from study.data.figure import JOINTS, Figure
from study.data.scene import Scene
from study.data.synth_videos import folder_size, prepare_out, publish, temp_beside
from study.data.textures import texture
from study.errors import UserError
from study.palette import write_palette_png

JHMDB_SIZE = (240, 320)  # H, W of JHMDB frames
VIP_SIZE = (240, 320)
JHMDB_CLASSES = ("walk", "wave", "run", "jump")


def _in_temp(out: str | Path, fill, what, quiet: bool) -> Path:
    """Run fill(tmp) in a temp folder beside `out`, rename it into place, and say what was written (unless quiet):
    what(root) -> e.g. '16 DAVIS-2017 sequences x 24 frames at 342x192'."""
    out = prepare_out(out)
    started = time.perf_counter()
    tmp = temp_beside(out)
    try:
        fill(tmp)
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not quiet:
        files, mb = folder_size(out)
        print(f"wrote {what(out)} ({files} files, {mb:.1f} MB) to {out} in {time.perf_counter() - started:.1f} s")
    return out


def _frames_text(n_videos: int, n_frames: int, kind: str, size: tuple[int, int]) -> str:
    return f"{n_videos} {kind} x {n_frames} frames at {size[1]}x{size[0]}"


def davis_frame_size(short_side: int) -> tuple[int, int]:
    """(H, W) = short_side x round(short_side * 16 / 9) rounded to even (480 -> 854)."""
    return short_side, int(round(short_side * 16 / 9 / 2)) * 2


SPEEDS = (0.5, 1.0, 2.0)   # slow, medium, fast: how far objects travel over a sequence


def davis_scene(rng: np.random.Generator, h: int, w: int, n_frames: int) -> Scene:
    """1-3 real-textured objects, all visible in frame 0 (they carry the first-frame labels), at one of three speeds.
    With 2 or more objects, half the sequences send the last one out of the frame, and most make a later object pass
    over the first (an occlusion it comes out of)."""
    for _ in range(100):
        n = int(rng.integers(1, 4))
        leave = n >= 2 and rng.random() < 0.5
        occlude = n >= 2 and rng.random() < 0.6 and (n == 3 or not leave)
        scene = Scene(rng, h, w, n_frames, n_objects=n, real_prob=1.0, exit_last=leave, vary=False,
                      speed=float(rng.choice(SPEEDS)))
        if occlude:
            scene.cross(scene.objects[0], scene.objects[1], n_frames)
        if min(scene.visible_fraction(0)) >= 0.004 and (not leave or scene.visible_fraction(n_frames - 1)[-1] == 0):
            return scene
    raise RuntimeError(f"no valid scene at {h}x{w} in 100 draws")   # never seen: a bug in the scene generator


def write_davis(out: str | Path, n_sequences: int, n_frames: int, short_side: int, seed: int,
                quiet: bool = False) -> Path:
    """DAVIS-2017 layout: JPEGImages/480p/<seq>/00000.jpg, Annotations/480p/<seq>/00000.png, ImageSets/2017/val.txt."""
    if n_sequences < 1 or n_frames < 3 or short_side < 16:
        raise UserError(f"--sequences {n_sequences} --frames {n_frames} --short-side {short_side}: need sequences >= 1, "
                        "frames >= 3 (the first and last are not scored), short side >= 16")
    h, w = davis_frame_size(short_side)
    names = [f"synth-{seed}-{s:03d}" for s in range(n_sequences)]

    def fill(root: Path) -> None:
        for s, name in enumerate(names):
            scene = davis_scene(np.random.default_rng([seed, s]), h, w, n_frames)
            jpg, ann = root / "JPEGImages/480p" / name, root / "Annotations/480p" / name
            jpg.mkdir(parents=True), ann.mkdir(parents=True)
            for t in range(n_frames):
                rgb, ids = scene.render(t)
                Image.fromarray(rgb).save(jpg / f"{t:05d}.jpg", quality=95)
                write_palette_png(ann / f"{t:05d}.png", ids)
        (root / "ImageSets/2017").mkdir(parents=True)
        (root / "ImageSets/2017/val.txt").write_text("".join(f"{n}\n" for n in names))

    def what(root: Path) -> str:
        objects = sum(int(np.array(Image.open(root / "Annotations/480p" / n / "00000.png")).max()) for n in names)
        return _frames_text(n_sequences, n_frames, "DAVIS-2017 sequences", (h, w)) + f", {objects} objects"

    return _in_temp(out, fill, what, quiet)


def _panning_background(rng: np.random.Generator, h: int, w: int):
    """A real-textured background 1.3x the frame, panned linearly: frame t -> uint8 (h, w, 3)."""
    bg = texture(rng, int(h * 1.3), int(w * 1.3), real_prob=1.0, vary=False)
    (y0, x0), (y1, x1) = rng.uniform(0, 1, (2, 2))

    def at(t: float, n: int) -> np.ndarray:
        u = t / max(1, n - 1)
        y = int((y0 + (y1 - y0) * u) * (bg.shape[0] - h))
        x = int((x0 + (x1 - x0) * u) * (bg.shape[1] - w))
        return bg[y:y + h, x:x + w].copy()
    return at


def write_jhmdb(out: str | Path, n_videos: int, n_frames: int, seed: int, quiet: bool = False) -> Path:
    """JHMDB layout: Rename_Images/<class>/<video>/00001.png (320x240, 1-based names),
    joint_positions/<class>/<video>/joint_positions.mat (pos_img (2, 15, T), 1-based pixel coordinates),
    splits/<class>_test_split1.txt (JHMDB's format: '<video>.avi 2', 2 = test) and vallist.txt ('<frames dir> <mat>')."""
    if n_videos < 1 or n_frames < 2:
        raise UserError(f"--videos {n_videos} --frames {n_frames}: need videos >= 1 and frames >= 2")
    h, w = JHMDB_SIZE

    def fill(root: Path) -> None:
        listing, splits = [], {}
        for v in range(n_videos):
            rng = np.random.default_rng([seed, v])
            cls = JHMDB_CLASSES[v % len(JHMDB_CLASSES)]
            name = f"synth_{cls}_{seed}_{v:03d}"
            frames_dir, mat_dir = root / "Rename_Images" / cls / name, root / "joint_positions" / cls / name
            frames_dir.mkdir(parents=True), mat_dir.mkdir(parents=True)
            background, figure = _panning_background(rng, h, w), Figure(rng, h, w, n_frames)
            pos = np.zeros((2, len(JOINTS), n_frames))
            for t in range(n_frames):
                rgb = background(t, n_frames)
                figure.draw(t, rgb, joint_blobs=True)
                Image.fromarray(rgb).save(frames_dir / f"{t + 1:05d}.png")
                pos[:, :, t] = figure.joints(t).T + 1  # 1-based, as JHMDB's pos_img
            savemat(mat_dir / "joint_positions.mat", {"pos_img": pos, "scale": np.ones(n_frames)})
            listing.append(f"Rename_Images/{cls}/{name} joint_positions/{cls}/{name}/joint_positions.mat\n")
            splits.setdefault(cls, []).append(f"{name}.avi 2\n")
        (root / "splits").mkdir()
        for cls, lines in splits.items():
            (root / "splits" / f"{cls}_test_split1.txt").write_text("".join(lines))
        (root / "vallist.txt").write_text("".join(listing))

    return _in_temp(out, fill, lambda root: _frames_text(n_videos, n_frames, "JHMDB videos", (h, w)) + ", 15 joints",
                    quiet)


def write_vip(out: str | Path, n_videos: int, n_frames: int, seed: int, size: tuple[int, int] = VIP_SIZE,
              quiet: bool = False) -> Path:
    """VIP layout: VIP_Fine/Images/videos<N>/<000000000001>.jpg, VIP_Fine/Annotations/Category_ids/videos<N>/*.png
    (mode L, part classes 0..19) and VIP_Fine/lists/val_videos.txt. One or two people per video."""
    if n_videos < 1 or n_frames < 2:
        raise UserError(f"--videos {n_videos} --frames {n_frames}: need videos >= 1 and frames >= 2")
    h, w = size

    def fill(root: Path) -> None:
        fine, names = root / "VIP_Fine", []
        for v in range(n_videos):
            rng = np.random.default_rng([seed, v])
            name = f"videos{v + 1}"
            img_dir, ann_dir = fine / "Images" / name, fine / "Annotations/Category_ids" / name
            img_dir.mkdir(parents=True), ann_dir.mkdir(parents=True)
            background = _panning_background(rng, h, w)
            people = [Figure(rng, h, w, n_frames) for _ in range(int(rng.integers(1, 3)))]
            for t in range(n_frames):
                rgb, classes = background(t, n_frames), np.zeros((h, w), np.uint8)
                for person in people:  # later people occlude earlier ones
                    person.draw(t, rgb, classes)
                Image.fromarray(rgb).save(img_dir / f"{t + 1:012d}.jpg", quality=95)
                Image.fromarray(classes, mode="L").save(ann_dir / f"{t + 1:012d}.png")
            names.append(name)
        (fine / "lists").mkdir(parents=True)
        (fine / "lists/val_videos.txt").write_text("".join(f"{n}\n" for n in names))

    return _in_temp(out, fill, lambda root: _frames_text(n_videos, n_frames, "VIP videos", (h, w)), quiet)
