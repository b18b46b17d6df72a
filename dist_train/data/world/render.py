"""Drawing a scene: the groups of a `Meaning` laid out so that the relation holds in the picture.

The subject group is drawn entirely on the relation's side of the object group (left half vs right
half, top half vs bottom half), so every caption that describes the scene is true of the image.
Everything random comes from the scene's own seed: any worker renders the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .meaning import Group, Meaning

RGB = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (240, 210, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
RADIUS = {"small": (0.05, 0.07), "big": (0.10, 0.12)}  # as a fraction of the image side
SUPERSAMPLE = 2


@dataclass(frozen=True)
class Placed:
    shape: str
    colour: str
    x: float  # centre, pixels
    y: float
    r: float  # radius of the circumscribed circle, pixels


def _region(meaning: Meaning, role: str, size: float) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) where the `role` group ("subject" or "obj") must lie."""
    half = size / 2
    first = {"left_of": (0, 0, half, size), "above": (0, 0, size, half),
             "right_of": (half, 0, size, size), "below": (0, half, size, size)}
    second = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}
    rel = meaning.relation if role == "subject" else second[meaning.relation]
    return first[rel]


def _place_group(group: Group, region, size: float, rng: np.random.Generator, placed: list[Placed]) -> None:
    x0, y0, x1, y1 = region
    lo, hi = RADIUS[group.size]
    margin = 0.02 * size
    for attempt in range(1000):
        shrink = 1.0 - 0.3 * min(attempt / 500, 1.0)  # crowded halves get slightly smaller shapes
        r = rng.uniform(lo, hi) * size * shrink
        if x1 - x0 < 2 * (r + margin) or y1 - y0 < 2 * (r + margin):
            continue
        x = rng.uniform(x0 + r + margin, x1 - r - margin)
        y = rng.uniform(y0 + r + margin, y1 - r - margin)
        if all(math.hypot(x - p.x, y - p.y) > r + p.r + margin for p in placed):
            placed.append(Placed(group.shape, group.colour, x, y, r))
            return
    raise RuntimeError(f"could not place {group} in {region}")  # cannot happen with the radii above


def layout(meaning: Meaning, seed: int, size: int) -> tuple[tuple[int, int, int], list[Placed]]:
    """Background colour and the placed objects of a scene."""
    rng = np.random.default_rng(seed)
    grey = rng.integers(95, 170)
    background = tuple(int(np.clip(grey + rng.integers(-12, 13), 0, 255)) for _ in range(3))
    placed: list[Placed] = []
    for role in ("subject", "obj"):
        group = getattr(meaning, role)
        for _ in range(group.count):
            _place_group(group, _region(meaning, role, size), size, rng, placed)
    return background, placed


def _polygon(shape: str, x: float, y: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        h = r / math.sqrt(2)
        return [(x - h, y - h), (x + h, y - h), (x + h, y + h), (x - h, y + h)]
    if shape == "triangle":
        return [(x + r * math.cos(a), y - r * math.sin(a)) for a in (math.pi / 2, math.pi * 7 / 6, math.pi * 11 / 6)]
    if shape == "star":
        points = []
        for k in range(10):
            a = math.pi / 2 + k * math.pi / 5
            rad = r if k % 2 == 0 else r * 0.45
            points.append((x + rad * math.cos(a), y - rad * math.sin(a)))
        return points
    raise ValueError(shape)


def render(meaning: Meaning, seed: int, size: int) -> Image.Image:
    """The scene of `meaning` as an RGB image of `size` x `size` pixels."""
    background, placed = layout(meaning, seed, size)
    rng = np.random.default_rng([seed, 1])
    s = SUPERSAMPLE
    img = Image.new("RGB", (size * s, size * s), background)
    draw = ImageDraw.Draw(img)
    for p in placed:
        colour = tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in RGB[p.colour])
        x, y, r = p.x * s, p.y * s, p.r * s
        if p.shape == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.polygon(_polygon(p.shape, x, y, r), fill=colour)
    return img.resize((size, size), Image.Resampling.LANCZOS)
