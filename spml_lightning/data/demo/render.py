"""Rendering the offline demo data set: small procedurally drawn multi-label scenes.

Nothing here needs the internet, torch or Lightning: numpy draws the random
choices and PIL draws the pictures. The set is built to be hard for SPML in the
way real scenes are, not merely to exist:

* 14 object classes drawn as simple glyphs a person tells apart at 64 px
  (``DEMO_CLASS_NAMES``), 1 to 4 objects per image.
* Class imbalance: Zipf-like base frequencies, so the most frequent class
  appears several times (about 7x) as often as the rarest.
* Co-occurrence: every image belongs to a hidden scene context (seaside, street,
  park, night) that raises the probability of some classes, and pairwise
  affinities (boat -> wave, car -> road, moon -> star, ...) act after each
  object is chosen. This is what makes the unknown labels of an SPML training
  image positive far more often for some class pairs than for others.
* Visual difficulty: random positions, sizes (some objects a dozen pixels
  wide), rotations and flips, partial occlusion, colours that vary within a
  class and are shared across classes (so shape, not colour, decides),
  textured backgrounds whose palette only loosely follows the context, faint
  clutter, brightness jitter and pixel noise.

Labels are the presence of a class among the objects actually drawn; an object
is kept only if most of it is on the canvas and no later object hides more than
about half of it, so every positive label is visible.

Everything derives from an explicit seed through ``numpy.random.SeedSequence``
(one child per image), so the same arguments give byte-identical output
whatever global random state says, and the first ``n`` images of a render do
not depend on how many images were asked for.

Writing a rendered set to disk is ``install.py``'s job.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["DEMO_CLASS_NAMES", "GENERATOR_VERSION", "check_int", "render_demo_images"]

#: Bump whenever the pixels or labels a given set of arguments produces change,
#: so that ``write_demo_dataset`` (``install.py``) regenerates sets written by an
#: older generator.
GENERATOR_VERSION = 1

DEMO_CLASS_NAMES: tuple[str, ...] = (
    "bird",
    "boat",
    "car",
    "cloud",
    "fish",
    "flower",
    "house",
    "moon",
    "person",
    "road",
    "star",
    "sun",
    "tree",
    "wave",
)
_C = len(DEMO_CLASS_NAMES)
_IDX = {name: i for i, name in enumerate(DEMO_CLASS_NAMES)}

# --------------------------------------------------------------------------- labels

# Zipf-like base weights; the contexts below multiply them, so the realised
# frequencies differ from these (the tests check the realised imbalance).
_BASE_WEIGHT = {
    "person": 1.00,
    "tree": 0.80,
    "car": 0.65,
    "cloud": 0.60,
    "house": 0.55,
    "bird": 0.50,
    "sun": 0.32,
    "road": 0.38,
    "wave": 0.30,
    "boat": 0.26,
    "flower": 0.24,
    "fish": 0.14,
    "star": 0.11,
    "moon": 0.07,
}

# (name, probability, multipliers of the base weights). A multiplier below 1
# makes a class unlikely but, apart from the sun at night, never impossible:
# real scenes have surprises too.
_CONTEXTS: tuple[tuple[str, float, Mapping[str, float]], ...] = (
    (
        "seaside",
        0.28,
        {
            "boat": 5.0,
            "wave": 6.0,
            "fish": 5.0,
            "bird": 2.0,
            "sun": 2.0,
            "cloud": 1.5,
            "car": 0.15,
            "road": 0.1,
            "house": 0.4,
            "tree": 0.4,
            "flower": 0.3,
            "star": 0.3,
            "moon": 0.3,
        },
    ),
    (
        "street",
        0.30,
        {
            "car": 3.5,
            "road": 5.0,
            "house": 2.5,
            "person": 1.5,
            "boat": 0.05,
            "wave": 0.05,
            "fish": 0.05,
            "flower": 0.5,
            "star": 0.3,
            "moon": 0.3,
        },
    ),
    (
        "park",
        0.27,
        {
            "tree": 3.0,
            "flower": 6.0,
            "person": 1.5,
            "bird": 1.8,
            "sun": 1.5,
            "boat": 0.2,
            "wave": 0.2,
            "fish": 0.1,
            "road": 0.3,
            "car": 0.4,
            "star": 0.3,
            "moon": 0.3,
        },
    ),
    (
        "night",
        0.15,
        {
            "moon": 14.0,
            "star": 10.0,
            "house": 1.5,
            "car": 1.2,
            "sun": 0.0,
            "bird": 0.3,
            "flower": 0.3,
            "cloud": 0.7,
            "fish": 0.5,
        },
    ),
)

# Multiplied into the weights after a class is chosen: these pairs appear
# together more often than their contexts alone would make them.
_AFFINITY = {
    "boat": {"wave": 3.0, "fish": 1.5},
    "fish": {"wave": 2.0},
    "car": {"road": 3.0, "house": 1.3},
    "road": {"car": 2.5},
    "moon": {"star": 3.0},
    "star": {"moon": 2.0},
    "house": {"tree": 1.6, "person": 1.3},
    "flower": {"tree": 1.5},
    "sun": {"cloud": 1.6},
}

# Weight left to a class after it was chosen once: countable things repeat
# now and then (two birds), scene-wide things never do (one sun, one road).
_REPEAT = {
    "bird": 0.5,
    "cloud": 0.5,
    "fish": 0.4,
    "flower": 0.5,
    "star": 0.6,
    "person": 0.3,
    "tree": 0.4,
    "boat": 0.2,
    "car": 0.2,
    "house": 0.2,
    "wave": 0.0,
    "road": 0.0,
    "sun": 0.0,
    "moon": 0.0,
}

_NUM_OBJECTS_P = np.array([0.30, 0.36, 0.22, 0.12])  # P(1, 2, 3, 4 objects)


def _weight_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    base = np.array([_BASE_WEIGHT[n] for n in DEMO_CLASS_NAMES])
    ctx_p = np.array([p for _, p, _ in _CONTEXTS])
    ctx_w = np.ones((len(_CONTEXTS), _C))
    for k, (_, _, mult) in enumerate(_CONTEXTS):
        for name, m in mult.items():
            ctx_w[k, _IDX[name]] = m
    ctx_w *= base
    affinity = np.ones((_C, _C))
    for a, row in _AFFINITY.items():
        for b, m in row.items():
            affinity[_IDX[a], _IDX[b]] = m
    repeat = np.array([_REPEAT[n] for n in DEMO_CLASS_NAMES])
    return ctx_p / ctx_p.sum(), ctx_w, affinity, repeat, base


_CTX_P, _CTX_W, _AFFINITY_M, _REPEAT_V, _ = _weight_table()


def _sample_scene(rng: np.random.Generator) -> tuple[int, list[int]]:
    """Draws a context and the classes of 1-4 objects (a class may repeat)."""
    ctx = int(rng.choice(len(_CTX_P), p=_CTX_P))
    w = _CTX_W[ctx].copy()
    n = int(rng.choice(4, p=_NUM_OBJECTS_P)) + 1
    classes: list[int] = []
    for _ in range(n):
        total = w.sum()
        if total <= 0:
            break
        c = int(rng.choice(_C, p=w / total))
        classes.append(c)
        w *= _AFFINITY_M[c]
        w[c] *= _REPEAT_V[c]
    return ctx, classes


# --------------------------------------------------------------------------- colours

_RGB = tuple[int, int, int]


def _hsv(
    rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]
) -> _RGB:
    """A random colour with hue (degrees, may wrap), saturation and value in ranges."""
    hh = (rng.uniform(*h) % 360.0) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hh, rng.uniform(*s), rng.uniform(*v))
    return (round(r * 255), round(g * 255), round(b * 255))


def _any_hue(rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float]) -> _RGB:
    return _hsv(rng, (0.0, 360.0), s, v)


# --------------------------------------------------------------------------- glyphs


class _Box:
    """Maps unit-box coordinates (u, v) in [0, 1]^2 to canvas pixels, with optional flip."""

    def __init__(self, x0: float, y0: float, w: float, h: float, flip: bool) -> None:
        self.x0, self.y0, self.w, self.h, self.flip = x0, y0, w, h, flip

    def p(self, u: float, v: float) -> tuple[float, float]:
        if self.flip:
            u = 1.0 - u
        return (self.x0 + u * self.w, self.y0 + v * self.h)

    def rect(self, u0: float, v0: float, u1: float, v1: float) -> list[float]:
        (xa, ya), (xb, yb) = self.p(u0, v0), self.p(u1, v1)
        return [min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)]

    def circle(self, u: float, v: float, r: float) -> list[float]:
        """Bounding box of a circle of radius r pixels centred at (u, v)."""
        x, y = self.p(u, v)
        return [x - r, y - r, x + r, y + r]


_Glyph = Callable[[ImageDraw.ImageDraw, _Box, np.random.Generator, int], None]
_CLEAR = (0, 0, 0, 0)


def _draw_sun(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    col = _hsv(rng, (32, 56), (0.75, 1.0), (0.88, 1.0))
    s = min(b.w, b.h)
    d.ellipse(b.circle(0.5, 0.5, 0.28 * s), fill=col)
    n = int(rng.integers(7, 12))
    a0 = rng.uniform(0, 2 * math.pi)
    cx, cy = b.p(0.5, 0.5)
    for k in range(n):
        a = a0 + 2 * math.pi * k / n
        r1, r2 = 0.37 * s, 0.5 * s
        d.line(
            [
                (cx + r1 * math.cos(a), cy + r1 * math.sin(a)),
                (cx + r2 * math.cos(a), cy + r2 * math.sin(a)),
            ],
            fill=col,
            width=lw,
        )


def _draw_moon(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    col = _hsv(rng, (40, 62), (0.05, 0.45), (0.82, 1.0))
    s = min(b.w, b.h)
    d.ellipse(b.circle(0.5, 0.5, 0.47 * s), fill=col)
    # Cutting a transparent disc out of the layer leaves a crescent; _Box.flip
    # decides which way it faces.
    d.ellipse(
        b.circle(0.5 + rng.uniform(0.22, 0.34), 0.5 - rng.uniform(0.0, 0.12), 0.42 * s), fill=_CLEAR
    )


def _draw_star(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    if rng.random() < 0.35:
        col = _hsv(rng, (0, 360), (0.0, 0.12), (0.85, 1.0))
    else:
        col = _hsv(rng, (36, 62), (0.55, 1.0), (0.85, 1.0))
    s = min(b.w, b.h)
    cx, cy = b.p(0.5, 0.5)
    ro, ri = 0.5 * s, 0.5 * s * rng.uniform(0.36, 0.46)
    pts = []
    for k in range(10):
        a = -math.pi / 2 + math.pi * k / 5
        r = ro if k % 2 == 0 else ri
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    d.polygon(pts, fill=col)


def _draw_cloud(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    col = _hsv(rng, (0, 360), (0.0, 0.12), (0.68, 1.0))
    j = rng.uniform(-0.06, 0.06, size=6)
    d.ellipse(b.rect(0.0, 0.38 + j[0], 0.46, 0.95), fill=col)
    d.ellipse(b.rect(0.2 + j[1], 0.02 + j[2], 0.7 + j[1], 0.85), fill=col)
    d.ellipse(b.rect(0.52 + j[3], 0.22 + j[4], 1.0, 0.95), fill=col)
    d.ellipse(b.rect(0.1, 0.5 + j[5], 0.9, 1.0), fill=col)


def _draw_bird(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    col = _hsv(rng, (0, 360), (0.0, 0.5), (0.05, 0.38))
    tip, top, mid = rng.uniform(0.25, 0.5), rng.uniform(0.0, 0.2), rng.uniform(0.55, 0.8)
    pts = [b.p(0.0, tip), b.p(0.22, top), b.p(0.5, mid), b.p(0.78, top), b.p(1.0, tip)]
    d.line(pts, fill=col, width=max(2, round(lw * 1.4)), joint="curve")


def _draw_tree(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    trunk = _hsv(rng, (18, 35), (0.45, 0.8), (0.22, 0.5))
    if rng.random() < 0.15:  # autumn: a crown sharing its hue with suns and fish
        crown = _hsv(rng, (15, 48), (0.6, 0.95), (0.55, 0.9))
    else:
        crown = _hsv(rng, (85, 150), (0.45, 0.9), (0.28, 0.7))
    d.rectangle(b.rect(0.4, 0.55, 0.6, 1.0), fill=trunk)
    if rng.random() < 0.5:
        d.polygon([b.p(0.5, 0.0), b.p(0.0, 0.78), b.p(1.0, 0.78)], fill=crown)
    else:
        d.ellipse(b.rect(0.0, 0.0, 1.0, 0.72), fill=crown)


def _draw_house(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    wall = _any_hue(rng, (0.05, 0.5), (0.55, 0.95))
    if rng.random() < 0.7:
        roof = _hsv(rng, (-10, 28), (0.5, 0.9), (0.35, 0.8))
    else:
        roof = _any_hue(rng, (0.0, 0.3), (0.2, 0.5))
    dark = _any_hue(rng, (0.2, 0.6), (0.1, 0.35))
    d.rectangle(b.rect(0.12, 0.45, 0.88, 1.0), fill=wall)
    d.polygon([b.p(0.5, 0.04), b.p(0.0, 0.48), b.p(1.0, 0.48)], fill=roof)
    d.rectangle(b.rect(0.42, 0.68, 0.6, 1.0), fill=dark)
    if rng.random() < 0.7:
        d.rectangle(
            b.rect(0.2, 0.56, 0.34, 0.7), fill=_hsv(rng, (180, 220), (0.1, 0.4), (0.75, 1.0))
        )


def _draw_car(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    body = _any_hue(rng, (0.55, 1.0), (0.45, 1.0))
    glass = _hsv(rng, (180, 230), (0.05, 0.35), (0.7, 0.95))
    wheel = _any_hue(rng, (0.0, 0.2), (0.03, 0.2))
    d.polygon([b.p(0.2, 0.42), b.p(0.32, 0.1), b.p(0.7, 0.1), b.p(0.84, 0.42)], fill=body)
    d.polygon([b.p(0.29, 0.4), b.p(0.37, 0.18), b.p(0.64, 0.18), b.p(0.75, 0.4)], fill=glass)
    d.rounded_rectangle(b.rect(0.0, 0.38, 1.0, 0.8), radius=max(1, round(0.08 * b.h)), fill=body)
    r = 0.19 * b.h
    d.ellipse(b.circle(0.23, 0.8, r), fill=wheel)
    d.ellipse(b.circle(0.77, 0.8, r), fill=wheel)


def _draw_road(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    asphalt = _any_hue(rng, (0.0, 0.12), (0.25, 0.5))
    paint = (
        _hsv(rng, (45, 58), (0.6, 0.9), (0.85, 1.0))
        if rng.random() < 0.35
        else (_any_hue(rng, (0.0, 0.08), (0.85, 1.0)))
    )
    d.rectangle(b.rect(0.0, 0.0, 1.0, 1.0), fill=asphalt)
    dash, gap = rng.uniform(0.05, 0.09), rng.uniform(0.04, 0.07)
    u = rng.uniform(-dash, 0.0)
    half = max(1.0, 0.06 * b.h) / b.h
    while u < 1.0:
        d.rectangle(b.rect(max(u, 0.0), 0.5 - half, min(u + dash, 1.0), 0.5 + half), fill=paint)
        u += dash + gap


def _draw_boat(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    hull = _any_hue(rng, (0.35, 0.9), (0.3, 0.85))
    sail = _any_hue(rng, (0.0, 0.2), (0.82, 1.0))
    d.polygon([b.p(0.0, 0.66), b.p(1.0, 0.66), b.p(0.8, 0.95), b.p(0.2, 0.95)], fill=hull)
    d.line([b.p(0.5, 0.04), b.p(0.5, 0.68)], fill=hull, width=lw)
    d.polygon([b.p(0.54, 0.06), b.p(0.54, 0.6), b.p(0.94, 0.6)], fill=sail)
    if rng.random() < 0.5:
        d.polygon([b.p(0.46, 0.2), b.p(0.46, 0.6), b.p(0.14, 0.6)], fill=sail)


def _draw_wave(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    cycles = rng.uniform(1.2, 2.2)
    phase = rng.uniform(0, 2 * math.pi)
    us = np.linspace(0.0, 1.0, 17)
    rows = int(rng.integers(2, 4))
    for k in range(rows):
        v0 = 0.2 + 0.6 * k / max(rows - 1, 1)
        col = (
            _any_hue(rng, (0.0, 0.1), (0.85, 1.0))
            if k == 0 and rng.random() < 0.5
            else _hsv(rng, (175, 225), (0.45, 0.95), (0.55, 1.0))
        )
        pts = [
            b.p(float(u), v0 + 0.17 * math.sin(2 * math.pi * cycles * u + phase + 0.6 * k))
            for u in us
        ]
        d.line(pts, fill=col, width=max(2, round(lw * 1.3)), joint="curve")


def _draw_fish(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    body = _any_hue(rng, (0.55, 1.0), (0.6, 1.0))
    eye = _any_hue(rng, (0.0, 0.3), (0.0, 0.2))
    d.polygon([b.p(0.62, 0.5), b.p(1.0, 0.12), b.p(1.0, 0.88)], fill=body)
    d.ellipse(b.rect(0.0, 0.18, 0.74, 0.82), fill=body)
    d.ellipse(b.circle(0.17, 0.42, max(1.0, 0.07 * b.h)), fill=eye)


def _draw_flower(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    family = int(rng.integers(0, 5))
    petal = [
        lambda: _hsv(rng, (330, 370), (0.5, 0.9), (0.8, 1.0)),  # red / pink
        lambda: _hsv(rng, (265, 310), (0.4, 0.8), (0.7, 1.0)),  # purple
        lambda: _hsv(rng, (42, 60), (0.7, 1.0), (0.85, 1.0)),  # yellow, like suns
        lambda: _any_hue(rng, (0.0, 0.1), (0.88, 1.0)),  # white, like clouds
        lambda: _hsv(rng, (195, 230), (0.4, 0.8), (0.75, 1.0)),  # blue
    ][family]()
    centre = _hsv(rng, (20, 50), (0.6, 1.0), (0.4, 0.9))
    stem = _hsv(rng, (90, 140), (0.5, 0.9), (0.3, 0.6))
    w = b.w
    hv = 0.5 * w / b.h  # head centre, in v units, one half-width below the top
    d.line([b.p(0.5, hv), b.p(0.5, 1.0)], fill=stem, width=lw)
    d.ellipse(b.rect(0.5, 0.62, 0.9, 0.74), fill=stem)
    cx, cy = b.p(0.5, hv)
    n = int(rng.integers(5, 8))
    a0 = rng.uniform(0, 2 * math.pi)
    for k in range(n):
        a = a0 + 2 * math.pi * k / n
        px, py = cx + 0.28 * w * math.cos(a), cy + 0.28 * w * math.sin(a)
        r = 0.2 * w
        d.ellipse([px - r, py - r, px + r, py + r], fill=petal)
    r = 0.15 * w
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=centre)


def _draw_person(d: ImageDraw.ImageDraw, b: _Box, rng: np.random.Generator, lw: int) -> None:
    clothes = _any_hue(rng, (0.3, 0.9), (0.2, 0.8))
    skin = _hsv(rng, (15, 35), (0.25, 0.65), (0.4, 0.95))
    width = max(2, round(lw * 1.2))
    d.line([b.p(0.5, 0.2), b.p(0.5, 0.62)], fill=clothes, width=width)
    hand = rng.uniform(0.1, 0.6)
    d.line(
        [b.p(0.05, hand), b.p(0.5, 0.32), b.p(0.95, rng.uniform(0.1, 0.6))],
        fill=clothes,
        width=width,
        joint="curve",
    )
    d.line(
        [b.p(0.15, 1.0), b.p(0.5, 0.6), b.p(0.85, 1.0)], fill=clothes, width=width, joint="curve"
    )
    d.ellipse(b.circle(0.5, 0.11, 0.11 * b.h), fill=skin)


# name -> (glyph, width/height aspect, max |rotation| degrees, vertical band of
# the centre as a fraction of the canvas, drawing layer: lower draws first).
_GLYPHS: dict[str, tuple[_Glyph, float, float, tuple[float, float], int]] = {
    "bird": (_draw_bird, 1.6, 25.0, (0.08, 0.6), 3),
    "boat": (_draw_boat, 1.0, 12.0, (0.35, 0.85), 2),
    "car": (_draw_car, 1.8, 8.0, (0.45, 0.9), 3),
    "cloud": (_draw_cloud, 1.7, 8.0, (0.08, 0.55), 1),
    "fish": (_draw_fish, 1.6, 30.0, (0.45, 0.92), 3),
    "flower": (_draw_flower, 0.6, 15.0, (0.45, 0.9), 3),
    "house": (_draw_house, 1.0, 5.0, (0.35, 0.85), 1),
    "moon": (_draw_moon, 1.0, 180.0, (0.08, 0.5), 2),
    "person": (_draw_person, 0.5, 12.0, (0.35, 0.88), 3),
    "road": (_draw_road, 1.0, 0.0, (0.55, 0.88), 0),
    "star": (_draw_star, 1.0, 180.0, (0.08, 0.6), 2),
    "sun": (_draw_sun, 1.0, 180.0, (0.08, 0.5), 2),
    "tree": (_draw_tree, 0.7, 6.0, (0.3, 0.8), 1),
    "wave": (_draw_wave, 1.8, 10.0, (0.45, 0.92), 0),
}
assert set(_GLYPHS) == set(DEMO_CLASS_NAMES)

_SUPERSAMPLE = 2  # drawn at twice the size, then box-filtered: anti-aliased edges
_SIZE_RANGE = (0.2, 0.5)  # geometric-mean object size as a fraction of the canvas
_MAX_OUTSIDE = 0.12  # fraction of an object's box allowed past each canvas edge
_MIN_KEPT = 0.55  # fraction of an earlier object a later one must leave visible
_MIN_ON_CANVAS = 0.75  # fraction of an object's pixels that must fall on the canvas
_PLACEMENT_TRIES = 10

# --------------------------------------------------------------------------- backgrounds

# Per context: (top hue range, top s, top v), (bottom hue range, bottom s, bottom v).
_Range = tuple[float, float]
_BG_PALETTES: tuple[tuple[tuple[_Range, _Range, _Range], tuple[_Range, _Range, _Range]], ...] = (
    (((185, 215), (0.15, 0.55), (0.7, 1.0)), ((170, 215), (0.3, 0.8), (0.35, 0.8))),  # seaside
    (((0, 360), (0.0, 0.2), (0.5, 0.9)), ((20, 50), (0.05, 0.3), (0.35, 0.75))),  # street
    (((185, 215), (0.15, 0.5), (0.7, 1.0)), ((75, 140), (0.3, 0.75), (0.3, 0.7))),  # park
    (((215, 260), (0.3, 0.8), (0.05, 0.3)), ((215, 260), (0.2, 0.7), (0.05, 0.35))),  # night
)
_BG_DECOUPLED = 0.35  # chance that a background ignores the context (a weaker cue)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear interpolation weights, for smooth upsampling by matmul."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    eye = np.eye(n_in)
    return np.stack([np.interp(pos, np.arange(n_in), eye[j]) for j in range(n_in)], axis=1)


def _background(rng: np.random.Generator, ctx: int, size: int, interp: np.ndarray) -> np.ndarray:
    """A textured (size, size, 3) uint8 background loosely matching the context."""
    if rng.random() < _BG_DECOUPLED:
        ctx = int(rng.integers(len(_BG_PALETTES)))
    pal = _BG_PALETTES[ctx]
    top = np.array(_hsv(rng, *pal[0]), dtype=np.float32)
    bottom = np.array(_hsv(rng, *pal[1]), dtype=np.float32)
    horizon = rng.uniform(0.3, 0.7)
    soft = rng.uniform(0.03, 0.25)
    y = np.linspace(0.0, 1.0, size, dtype=np.float32)
    t = 1.0 / (1.0 + np.exp(-(y - horizon) / soft))
    img = (top[None, :] * (1 - t[:, None]) + bottom[None, :] * t[:, None])[:, None, :]
    img = np.broadcast_to(img, (size, size, 3)).astype(np.float32)
    # Low-frequency blotches (lighting, terrain) ...
    coarse = rng.normal(0.0, rng.uniform(8.0, 28.0), size=(interp.shape[1], interp.shape[1], 3))
    smooth = interp @ coarse.transpose(2, 0, 1) @ interp.T  # (3, size, size)
    img = img + smooth.transpose(1, 2, 0).astype(np.float32)
    # ... and a periodic texture (ripples, grass, brickwork) of random orientation.
    if rng.random() < 0.7:
        a = rng.uniform(0, math.pi)
        f = rng.uniform(0.08, 0.35)
        yy = np.arange(size, dtype=np.float32)[:, None]
        xx = np.arange(size, dtype=np.float32)[None, :]
        stripes = np.sin(f * (xx * math.cos(a) + yy * math.sin(a)) + rng.uniform(0, 6.3))
        img = img + (rng.uniform(4.0, 16.0) * stripes)[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _clutter(img: Image.Image, rng: np.random.Generator, size: int) -> None:
    """Faint strokes and blobs that belong to no class: something to ignore."""
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(1, 6))):
        col = (*_any_hue(rng, (0.0, 1.0), (0.1, 1.0)), int(rng.integers(40, 130)))
        kind = rng.random()
        pts = [tuple(p) for p in rng.uniform(-0.1, 1.1, size=(2, 2)) * size]
        if kind < 0.45:
            d.line(pts, fill=col, width=int(rng.integers(1, max(2, size // 24))))
        elif kind < 0.75:
            x, y = rng.uniform(0, size, size=2)
            w, h = rng.uniform(0.04, 0.2, size=2) * size
            d.rectangle([x, y, x + w, y + h], fill=col)
        else:
            c = rng.uniform(0, size, size=2)
            poly = c + rng.normal(0.0, 0.07 * size, size=(int(rng.integers(3, 6)), 2))
            d.polygon([tuple(p) for p in poly], fill=col)


# --------------------------------------------------------------------------- one image


def _place_object(
    name: str,
    rng: np.random.Generator,
    size: int,
    owner: np.ndarray,
    areas: list[int],
) -> tuple[Image.Image, tuple[int, int], np.ndarray] | None:
    """Draws ``name`` somewhere it is mostly on the canvas and hides no earlier object too much.

    The object is drawn (and rotated) on a small RGBA layer around it rather than
    on a canvas-sized one: rotation dominates the cost and scales with the area.

    Returns:
        (layer, canvas position of its top-left corner, canvas-sized mask of its
        opaque pixels), or None if no placement among the tries satisfies both
        ``_MIN_ON_CANVAS`` and ``_MIN_KEPT``.
    """
    glyph, aspect, max_rot, (band_lo, band_hi), _ = _GLYPHS[name]
    for _ in range(_PLACEMENT_TRIES):
        s = size * math.exp(rng.uniform(math.log(_SIZE_RANGE[0]), math.log(_SIZE_RANGE[1])))
        if name == "road":
            # A road crosses the whole picture: a band, not an object in a box.
            w, h = float(size), size * rng.uniform(0.13, 0.24)
            x0 = 0.0
        else:
            w, h = s * math.sqrt(aspect), s / math.sqrt(aspect)
            x0 = rng.uniform(-_MAX_OUTSIDE * w, size - (1 - _MAX_OUTSIDE) * w)
        cy = rng.uniform(band_lo, band_hi) * size
        y0 = float(np.clip(cy - h / 2, -_MAX_OUTSIDE * h, size - (1 - _MAX_OUTSIDE) * h))
        flip = bool(rng.random() < 0.5)
        angle = rng.uniform(-max_rot, max_rot) if max_rot > 0 else 0.0
        lw = max(2, round(0.075 * math.sqrt(w * h)))

        # A square layer centred on the box and big enough for any rotation of it.
        side = math.ceil(math.hypot(w, h)) + 4
        lx = math.floor(x0 + w / 2 - side / 2)
        ly = math.floor(y0 + h / 2 - side / 2)
        layer = Image.new("RGBA", (side, side), _CLEAR)
        glyph(ImageDraw.Draw(layer), _Box(x0 - lx, y0 - ly, w, h, flip), rng, lw)
        if angle:
            layer = layer.rotate(
                angle, resample=Image.Resampling.BILINEAR, center=(x0 - lx + w / 2, y0 - ly + h / 2)
            )
        local = np.asarray(layer.getchannel("A")) > 127
        total = np.count_nonzero(local)
        # The part of the layer that lies on the canvas.
        cx0, cy0 = max(lx, 0), max(ly, 0)
        cx1, cy1 = min(lx + side, size), min(ly + side, size)
        if total == 0 or cx0 >= cx1 or cy0 >= cy1:
            continue
        mask = np.zeros((size, size), dtype=bool)
        mask[cy0:cy1, cx0:cx1] = local[cy0 - ly : cy1 - ly, cx0 - lx : cx1 - lx]
        if np.count_nonzero(mask) < _MIN_ON_CANVAS * total:
            continue
        if all(
            np.count_nonzero((owner == j) & ~mask) >= _MIN_KEPT * area
            for j, area in enumerate(areas)
        ):
            return layer, (lx, ly), mask
    return None


def _render_one(
    rng: np.random.Generator, image_size: int, interp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One (image, label row) pair; all randomness comes from ``rng``."""
    size = image_size * _SUPERSAMPLE
    ctx, classes = _sample_scene(rng)
    img = Image.fromarray(_background(rng, ctx, size, interp))
    _clutter(img, rng, size)

    # Ground-like things (roads, waves) first, so that what stands on them hides them.
    order = rng.permutation(len(classes))
    names = sorted((DEMO_CLASS_NAMES[classes[i]] for i in order), key=lambda n: _GLYPHS[n][4])

    owner = np.full((size, size), -1, dtype=np.int8)
    areas: list[int] = []
    label = np.zeros(_C, dtype=np.uint8)
    for name in names:
        placed = _place_object(name, rng, size, owner, areas)
        if placed is None:
            continue  # not drawn, so not labelled
        layer, corner, mask = placed
        img.paste(layer, corner, layer)
        owner[mask] = len(areas)
        areas.append(int(mask.sum()))
        label[_IDX[name]] = 1

    small = np.asarray(img.reduce(_SUPERSAMPLE), dtype=np.float32)
    # Exposure and sensor noise, applied after the downsampling like a camera would.
    contrast, brightness = rng.uniform(0.8, 1.12), rng.uniform(-14.0, 14.0)
    small = (small - 128.0) * contrast + 128.0 + brightness
    small += rng.normal(0.0, rng.uniform(2.0, 7.0), size=small.shape).astype(np.float32)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8), label


# --------------------------------------------------------------------------- public API


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int`` if it is an integer >= ``minimum``, else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def render_demo_images(
    num_images: int, seed: int, image_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Renders ``num_images`` demo scenes and their full label matrix.

    Image ``i`` depends only on ``(seed, i, image_size)``: it is drawn from its
    own child of ``numpy.random.SeedSequence(seed)``, so a longer render starts
    with the images of a shorter one and no global random state is touched.
    Output is byte-identical across calls and processes for the same numpy and
    Pillow versions on the same platform (their drawing and floating-point
    code decides the exact pixels).

    Args:
        num_images: number of images (>= 0).
        seed: non-negative integer seed.
        image_size: side of the square images in pixels (>= 32).

    Returns:
        (images, labels): images uint8 of shape (N, image_size, image_size, 3)
        and labels uint8 of shape (N, C) in {0, 1}, C = len(DEMO_CLASS_NAMES),
        columns in ``DEMO_CLASS_NAMES`` order, every row with 1 to 4 positives.

    Raises:
        ValueError: if an argument is out of range.
    """
    num_images = check_int("num_images", num_images, 0)
    seed = check_int("seed", seed, 0)
    image_size = check_int("image_size", image_size, 32)
    images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)
    labels = np.zeros((num_images, _C), dtype=np.uint8)
    interp = _interp_matrix(image_size * _SUPERSAMPLE, 6)
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(num_images)):
        images[i], labels[i] = _render_one(np.random.default_rng(child), image_size, interp)
    return images, labels
