"""Sample inputs drawn by code, so the demo and the tests need no image files from anywhere.

`landscape()` is a simple scene with clear structure (sky, sun, hills, houses, water) to serve as content;
`swirls()` is a brush-stroke painting (short strokes along a swirling flow field, in a night-sky palette) to
serve as style. Both are deterministic for a given seed.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["landscape", "swirls"]


def landscape(width: int = 384, height: int = 256) -> Image.Image:
    """A daylight village scene: gradient sky, sun, two hill ridges, houses with roofs and windows, a lake."""
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    sky = (1 - y) * np.array([70, 130, 210]) + y * np.array([190, 220, 245])
    im = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    w, h = width, height
    d.ellipse([0.72 * w, 0.08 * h, 0.84 * w, 0.08 * h + 0.12 * w], fill=(255, 225, 120))
    for ridge, colour, base in ((0.45, (90, 140, 90), 0.55), (0.6, (60, 110, 60), 0.68)):
        pts = [(x, h * (ridge + 0.06 * math.sin(x / w * 7 + base * 10))) for x in range(0, w + 8, 8)]
        d.polygon([(0, h), *pts, (w, h)], fill=colour)
    d.rectangle([0, 0.78 * h, w, h], fill=(60, 100, 160))  # lake
    for k, (x0, colour) in enumerate(((0.08, (230, 210, 170)), (0.3, (200, 90, 70)), (0.52, (240, 240, 230)))):
        x0, x1, top, bottom = x0 * w, (x0 + 0.16) * w, (0.5 + 0.03 * k) * h, 0.78 * h
        d.rectangle([x0, top, x1, bottom], fill=colour, outline=(40, 30, 30))
        d.polygon([(x0 - 4, top), ((x0 + x1) / 2, top - 0.12 * h), (x1 + 4, top)], fill=(120, 50, 40))
        for wx in (x0 + 0.2 * (x1 - x0), x0 + 0.6 * (x1 - x0)):
            d.rectangle([wx, top + 0.06 * h, wx + 0.2 * (x1 - x0), top + 0.12 * h], fill=(60, 80, 120))
    return im.filter(ImageFilter.SMOOTH)


_NIGHT = np.array([(20, 40, 100), (40, 80, 160), (90, 140, 200), (240, 210, 90), (250, 245, 200), (15, 25, 50)])


def swirls(width: int = 384, height: int = 256, seed: int = 0) -> Image.Image:
    """Brush strokes along a field of vortices, in a blue/yellow palette (a nod to The Starry Night)."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (width, height), tuple(int(c) for c in _NIGHT[0]))
    d = ImageDraw.Draw(im)
    centres = rng.uniform([0, 0], [width, height], size=(5, 2))
    spins = rng.choice([-1.0, 1.0], size=5)
    n = width * height // 18
    for px, py in rng.uniform([0, 0], [width, height], size=(n, 2)):
        # flow direction: sum of vortices, each tangential around its centre, fading with distance
        dx = dy = 0.0
        for (cx, cy), s in zip(centres, spins):
            rx, ry = px - cx, py - cy
            r2 = rx * rx + ry * ry + 200.0
            dx, dy = dx - s * ry / r2 * 400, dy + s * rx / r2 * 400
        norm = math.hypot(dx, dy) + 1e-6
        length = rng.uniform(4, 11)
        ex, ey = px + dx / norm * length, py + dy / norm * length
        near = min(math.hypot(px - cx, py - cy) for cx, cy in centres) / max(width, height)
        k = rng.choice(len(_NIGHT), p=_palette_weights(near))
        colour = tuple(int(c) for c in np.clip(_NIGHT[k] + rng.normal(0, 12, 3), 0, 255))
        d.line([(px, py), (ex, ey)], fill=colour, width=int(rng.integers(2, 4)))
    return im


def _palette_weights(near: float) -> np.ndarray:
    """Bright yellows near the vortex centres, blues elsewhere."""
    glow = math.exp(-near * 12)
    w = np.array([1.0, 1.2, 0.8, 1.5 * glow, 1.0 * glow, 0.3])
    return w / w.sum()


if __name__ == "__main__":  # python -m stylelab.samples OUT_DIR  -> OUT_DIR/demo_content.png, demo_style.png
    import sys
    from pathlib import Path

    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    from .files import write_atomic

    write_atomic(out / "demo_content.png", lambda f: landscape().save(f, format="PNG"))
    write_atomic(out / "demo_style.png", lambda f: swirls().save(f, format="PNG"))
