"""An articulated stick figure for the JHMDB- and VIP-format sets: 15 joints in JHMDB order that move coherently (a walk
cycle with swinging arms, the body translating, bobbing and scaling), drawn as textured body parts with VIP class ids.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from study.data.textures import texture

JOINTS = ("neck", "belly", "head", "r_shoulder", "l_shoulder", "r_hip", "l_hip", "r_elbow", "l_elbow", "r_knee", "l_knee",
          "r_wrist", "l_wrist", "r_ankle", "l_ankle")
J = {name: k for k, name in enumerate(JOINTS)}
# VIP / LIP part classes (0 = background)
VIP_CLASSES = ("background", "hat", "hair", "sunglasses", "upper-clothes", "dress", "coat", "socks", "pants", "gloves",
               "scarf", "skirt", "torso-skin", "face", "left-arm", "right-arm", "left-leg", "right-leg", "left-shoe",
               "right-shoe")
C = {name: k for k, name in enumerate(VIP_CLASSES)}


class Figure:
    """`joints(t)` -> (15, 2) float x, y (0-based pixels); `draw(t, rgb, classes)` paints the figure in place."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, n_frames: int, real_prob: float = 1.0):
        self.h, self.w = height, width
        self.size0 = rng.uniform(0.45, 0.7) * height  # figure height in pixels, head to ankles
        # keep the whole figure in the frame: it spans belly - 0.52 s .. belly + 0.55 s, s up to 1.12 size0
        top, span = 0.03 * height + 0.59 * self.size0, 0.94 * height - 1.2 * self.size0
        self.start = np.array([rng.uniform(0.35, 0.65) * width, top + rng.uniform(0, max(0.0, span))])
        self.velocity = np.array([rng.uniform(-0.15, 0.15), 0.0]) * width / max(1, n_frames)
        self.phase, self.freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.45)
        self.swing = rng.uniform(0.3, 0.8)
        self.wave = rng.random() < 0.4  # one arm raised and waving instead of swinging
        self.hat = rng.random() < 0.4
        self.trousers = rng.choice([C["pants"], C["skirt"]])
        self.top = rng.choice([C["upper-clothes"], C["coat"]])
        # one texture per part, attached to the figure (it moves and scales with it)
        self.part_textures = {c: Image.fromarray(texture(rng, height, height, real_prob, vary=False))
                              for c in range(1, len(VIP_CLASSES))}
        self.joint_textures = [texture(rng, 16, 16, real_prob, vary=False) for _ in JOINTS]

    def _scale(self, t: float) -> float:
        return self.size0 * (1 + 0.1 * np.sin(0.07 * t + self.phase))

    def joints(self, t: float) -> np.ndarray:
        s, a = self._scale(t), self.freq * t + self.phase
        belly = self.start + self.velocity * t + np.array([0.0, 0.02 * s * np.sin(2 * a)])
        p = np.zeros((15, 2))
        p[J["belly"]] = belly
        p[J["neck"]] = belly + s * np.array([0.0, -0.3])
        p[J["head"]] = belly + s * np.array([0.0, -0.42])
        for side, sx in (("r", -1), ("l", 1)):  # the person faces us: their right is image left
            sh = p[J[f"{side}_shoulder"]] = belly + s * np.array([0.11 * sx, -0.28])
            hip = p[J[f"{side}_hip"]] = belly + s * np.array([0.07 * sx, 0.08])
            swing = self.swing * np.sin(a + (0 if side == "r" else np.pi))
            if self.wave and side == "l":
                up = np.pi * 0.8 + 0.3 * np.sin(3 * a)
                el = sh + 0.16 * s * np.array([sx * np.sin(up), np.cos(up)])
                wr = el + 0.15 * s * np.array([sx * np.sin(up + 0.5), np.cos(up + 0.5)])
            else:
                up = 0.25 + 0.5 * swing
                el = sh + 0.16 * s * np.array([sx * np.sin(up), np.cos(up)])
                wr = el + 0.15 * s * np.array([sx * np.sin(up + 0.3), np.cos(up + 0.3)])
            p[J[f"{side}_elbow"]], p[J[f"{side}_wrist"]] = el, wr
            knee_bend = 0.3 * max(0.0, np.sin(a + (0 if side == "r" else np.pi)))
            kn = hip + 0.22 * s * np.array([np.sin(0.4 * swing), np.cos(0.4 * swing)])
            p[J[f"{side}_knee"]] = kn
            p[J[f"{side}_ankle"]] = kn + 0.21 * s * np.array([np.sin(0.4 * swing - knee_bend), np.cos(0.4 * swing - knee_bend)])
        return p

    def part_map(self, t: float) -> np.ndarray:
        """uint8 (H, W) VIP class ids of the figure alone (0 elsewhere)."""
        p, s = self.joints(t), self._scale(t)
        img = Image.new("L", (self.w, self.h), 0)
        d = ImageDraw.Draw(img)
        xy = lambda name: tuple(p[J[name]])  # noqa: E731
        limb = max(2, int(0.055 * s))
        for side, arm, leg, shoe in (("r", "right-arm", "right-leg", "right-shoe"), ("l", "left-arm", "left-leg", "left-shoe")):
            d.line([xy(f"{side}_hip"), xy(f"{side}_knee"), xy(f"{side}_ankle")], fill=int(self.trousers), width=limb + 2,
                   joint="curve")
            if self.trousers == C["skirt"]:
                d.line([xy(f"{side}_knee"), xy(f"{side}_ankle")], fill=C[leg], width=limb, joint="curve")
            ax, ay = xy(f"{side}_ankle")
            d.ellipse([ax - limb, ay - limb / 2, ax + limb, ay + limb], fill=C[shoe])
        d.polygon([xy("r_shoulder"), xy("l_shoulder"), xy("l_hip"), xy("r_hip")], fill=int(self.top))
        d.line([xy("neck"), xy("head")], fill=C["torso-skin"], width=limb)
        for side, arm in (("r", "right-arm"), ("l", "left-arm")):
            d.line([xy(f"{side}_shoulder"), xy(f"{side}_elbow"), xy(f"{side}_wrist")], fill=C[arm], width=limb, joint="curve")
        hx, hy = xy("head")
        r = 0.075 * s
        d.ellipse([hx - r, hy - r * 1.2, hx + r, hy + r * 1.2], fill=C["face"])
        d.pieslice([hx - r, hy - r * 1.2, hx + r, hy + r * 1.2], 180, 360, fill=C["hair"])
        if self.hat:
            d.rectangle([hx - r * 1.1, hy - r * 1.9, hx + r * 1.1, hy - r * 0.9], fill=C["hat"])
        return np.asarray(img)

    def draw(self, t: float, rgb: np.ndarray, classes: np.ndarray | None = None, joint_blobs: bool = False) -> None:
        """Paint the textured figure into rgb (H, W, 3) and its class ids into `classes`, in place."""
        parts = self.part_map(t)
        s, belly = self._scale(t) / self.size0, self.joints(t)[J["belly"]]
        coeffs = (1 / s, 0, self.h / 2 - belly[0] / s, 0, 1 / s, self.h / 2 - belly[1] / s)  # texture moves with the body
        for c in np.unique(parts[parts > 0]):
            inside = parts == c
            tex = np.asarray(self.part_textures[int(c)].transform((self.w, self.h), Image.AFFINE, coeffs, Image.BILINEAR))
            rgb[inside] = tex[inside]
        if classes is not None:
            classes[parts > 0] = parts[parts > 0]
        if joint_blobs:  # a small textured disc on every joint, so each joint has something of its own to track
            y, x = np.mgrid[0:16, 0:16]
            disc = (y - 7.5) ** 2 + (x - 7.5) ** 2 <= 7.5 ** 2
            for k, (jx, jy) in enumerate(self.joints(t)):
                top, left = int(round(jy)) - 8, int(round(jx)) - 8
                ys, xs = slice(max(0, top), min(self.h, top + 16)), slice(max(0, left), min(self.w, left + 16))
                sub = disc[ys.start - top:ys.stop - top, xs.start - left:xs.stop - left]
                rgb[ys, xs][sub] = self.joint_textures[k][ys.start - top:ys.stop - top, xs.start - left:xs.stop - left][sub]
