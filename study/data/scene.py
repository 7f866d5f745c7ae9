"""A deterministic scene: a panning, zooming textured background and 2-4 textured shapes that move along smooth paths,
turn, grow and shrink, occlude one another and sometimes leave the frame. Each frame comes with an exact object-id map.

Objects are drawn once in their own square canvas (texture + mask) and mapped into the frame by an affine transform per
frame (PIL's Image.transform: bilinear for the texture, nearest for the mask, so the id map is exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from study.data.textures import texture


@dataclass
class SceneObject:
    canvas: Image.Image  # RGB (M, M), the object's texture
    mask: Image.Image  # L (M, M), 255 inside the shape
    center0: np.ndarray  # (2,) x, y in frame pixels at t = 0
    velocity: np.ndarray  # (2,) pixels per frame
    wobble: np.ndarray  # (2, 3) per axis: amplitude, angular frequency, phase of a sine added to the path
    angle0: float
    spin: float  # radians per frame
    scale0: float  # frame pixels per canvas pixel
    pulse: tuple[float, float, float]  # relative amplitude, frequency, phase of the scale

    def pose(self, t: float) -> tuple[np.ndarray, float, float]:
        """(center, angle, scale) at frame t."""
        amp, freq, phase = self.wobble[:, 0], self.wobble[:, 1], self.wobble[:, 2]
        center = self.center0 + self.velocity * t + amp * np.sin(freq * t + phase)
        a, f, p = self.pulse
        return center, self.angle0 + self.spin * t, self.scale0 * (1 + a * np.sin(f * t + p))


def _shape_mask(rng: np.random.Generator, m: int) -> Image.Image:
    """An ellipse or a star-shaped polygon filling most of an m x m canvas."""
    mask = Image.new("L", (m, m), 0)
    draw = ImageDraw.Draw(mask)
    if rng.random() < 0.4:
        rx, ry = m / 2 * rng.uniform(0.55, 0.98), m / 2 * rng.uniform(0.55, 0.98)
        draw.ellipse([m / 2 - rx, m / 2 - ry, m / 2 + rx, m / 2 + ry], fill=255)
    else:
        k = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radii = m / 2 * rng.uniform(0.5, 0.98, k)
        draw.polygon([(m / 2 + r * np.cos(a), m / 2 + r * np.sin(a)) for a, r in zip(angles, radii)], fill=255)
    return mask


def _affine(center: np.ndarray, angle: float, scale: float, canvas_size: int) -> tuple[float, ...]:
    """PIL's inverse map: frame pixel (X, Y) -> canvas pixel, for a canvas centred at `center`, turned and scaled."""
    c, s = np.cos(angle) / scale, np.sin(angle) / scale
    half = canvas_size / 2
    return (c, s, half - c * center[0] - s * center[1], -s, c, half + s * center[0] - c * center[1])


class Scene:
    """`render(t)` -> (rgb uint8 (H, W, 3), ids uint8 (H, W)); 0 = background, k = the k-th object (1-based, z-order)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, n_frames: int, n_objects: int | None = None,
                 real_prob: float = 0.7, exit_last: bool = False, vary: bool = True, speed: float = 1.0):
        self.h, self.w, self.n_frames = height, width, n_frames
        side = min(height, width)
        # background: 1.5x the frame, panned linearly and zoomed gently
        self.bg = Image.fromarray(texture(rng, int(height * 1.5), int(width * 1.5), real_prob, vary))
        self.zoom = (rng.uniform(1.0, 1.15), rng.uniform(0, 0.1), rng.uniform(0.02, 0.15))
        start, end = rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)
        self.pan = (start, end)
        n_objects = n_objects or int(rng.integers(2, 5))
        self.objects = [self._make_object(rng, side, n_frames, real_prob, vary, speed) for _ in range(n_objects)]
        if exit_last:
            self._send_out(self.objects[-1], n_frames)

    def _make_object(self, rng, side, n_frames, real_prob, vary, speed) -> SceneObject:
        size = rng.uniform(0.22, 0.5) * side  # in frame pixels
        m = max(8, int(np.ceil(size * 1.25)))  # canvas a bit larger than needed so growing stays sharp
        travel = speed * rng.uniform(0.1, 0.7) * side / max(1, n_frames - 1)
        direction = rng.uniform(0, 2 * np.pi)
        return SceneObject(
            canvas=Image.fromarray(texture(rng, m, m, real_prob, vary)), mask=_shape_mask(rng, m),
            center0=rng.uniform(0.15, 0.85, 2) * (self.w, self.h),
            velocity=travel * np.array([np.cos(direction), np.sin(direction)]),
            wobble=np.stack([rng.uniform(0, 0.08 * side, 2), rng.uniform(0.05, 0.3, 2), rng.uniform(0, 2 * np.pi, 2)], 1),
            angle0=rng.uniform(0, 2 * np.pi), spin=rng.uniform(-0.08, 0.08),
            scale0=size / m, pulse=(rng.uniform(0, 0.25), rng.uniform(0.03, 0.2), rng.uniform(0, 2 * np.pi)))

    def _send_out(self, obj: SceneObject, n_frames: int) -> None:
        """Make this object cross the nearest frame edge and be fully outside by the last frame."""
        obj.wobble[:, 0] = 0
        cx, cy = obj.center0
        edges = {(-1, 0): cx, (1, 0): self.w - cx, (0, -1): cy, (0, 1): self.h - cy}
        (dx, dy), dist = min(edges.items(), key=lambda kv: kv[1])
        reach = obj.canvas.size[0] * obj.scale0 * (1 + obj.pulse[0]) * 0.75  # beyond the half-diagonal of the canvas
        obj.velocity = np.array([dx, dy], float) * (dist + reach) / max(1, (n_frames - 1) * 0.8)

    def cross(self, below: SceneObject, above: SceneObject, n_frames: int) -> None:
        """Send `above` (later in z-order) straight over `below`'s path: their centres meet at the middle frame, so
        `below` is occluded there and comes out again."""
        mid = (n_frames - 1) / 2
        above.wobble[:, 0] = 0
        above.velocity = (below.pose(mid)[0] - above.center0) / max(mid, 1)

    def background(self, t: float) -> Image.Image:
        z0, za, zf = self.zoom
        zoom = z0 + za * np.sin(zf * t)
        bw, bh = self.bg.size
        u = t / max(1, self.n_frames - 1)
        ox, oy = (self.pan[0] + (self.pan[1] - self.pan[0]) * u) * (bw - self.w / zoom, bh - self.h / zoom)
        return self.bg.transform((self.w, self.h), Image.AFFINE, (1 / zoom, 0, ox, 0, 1 / zoom, oy), Image.BILINEAR)

    def render(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        rgb = np.array(self.background(t))  # (H, W, 3)
        ids = np.zeros((self.h, self.w), np.uint8)
        for k, obj in enumerate(self.objects, start=1):  # later objects occlude earlier ones
            coeffs = _affine(*obj.pose(t), obj.canvas.size[0])
            inside = np.asarray(obj.mask.transform((self.w, self.h), Image.AFFINE, coeffs, Image.NEAREST)) > 127
            tex = np.asarray(obj.canvas.transform((self.w, self.h), Image.AFFINE, coeffs, Image.BILINEAR))
            rgb[inside] = tex[inside]
            ids[inside] = k
        return rgb, ids

    def visible_fraction(self, t: float) -> list[float]:
        """Per object, the fraction of the frame it covers (visible part) at frame t."""
        _, ids = self.render(t)
        return [float((ids == k).mean()) for k in range(1, len(self.objects) + 1)]
