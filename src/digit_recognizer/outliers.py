"""Made-up non-digits for outlier exposure (Hendrycks et al. 2019, "Deep Anomaly Detection with
Outlier Exposure"): scribbles, stars, grids and spirals, drawn as a pen would draw them and
read as images.to_mnist reads a drawing of them. Trained with the uniform target (0.1
per class), they teach the softmax to be unsure away from digits, and the "no digit found"
check reads that doubt (novelty.py). Letters and signs are deliberately not among them: the
dev split's letters measure whether the doubt carries over to shapes never shown.
"""

from __future__ import annotations

import numpy as np

from .data import N_CLASSES

CANVAS = 112  # px: drawn at 4x MNIST's size, then read by images.to_mnist


def made_up_non_digits(n: int, seed: int) -> np.ndarray:
    """`n` non-digits as MNIST digits look (white ink on black), uint8 (n, 28, 28); the same
    images for the same seed."""
    from .images import NoDigitFound, ink_to_mnist

    rng = np.random.default_rng(1000 + seed)
    out = []
    while len(out) < n:
        try:
            # white paper, evenly lit: to_mnist's background is 255 (its fit skipped: 6x faster)
            out.append(ink_to_mnist(255.0 - _shape(rng)))
        except NoDigitFound:  # a shape drawn off the canvas: draw another
            pass
    return np.stack(out) if out else np.zeros((0, 28, 28), np.uint8)


def _shape(rng) -> np.ndarray:
    """One pen shape, dark on white, (CANVAS, CANVAS) uint8."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (CANVAS, CANVAS), 255)
    draw = ImageDraw.Draw(image)
    width = int(rng.integers(6, 14))  # px at CANVAS: MNIST-like to marker-like strokes
    kind = rng.integers(4)
    centre = rng.uniform(35, 77, 2)
    if kind == 0:  # a scribble: a random polyline
        points = [tuple(rng.uniform(10, 102, 2)) for _ in range(rng.integers(3, 9))]
        draw.line(points, fill=0, width=width, joint="curve")
    elif kind == 1:  # a star of 5-8 points
        k = int(rng.integers(5, 9))
        outer = rng.uniform(30, 50)
        inner = outer * rng.uniform(0.3, 0.6)
        angles = np.linspace(0, 2 * np.pi, 2 * k + 1) + rng.uniform(0, 6.3)
        points = [(centre[0] + (outer if i % 2 == 0 else inner) * np.cos(a),
                   centre[1] + (outer if i % 2 == 0 else inner) * np.sin(a))
                  for i, a in enumerate(angles)]
        draw.line(points, fill=0, width=width, joint="curve")
    elif kind == 2:  # a grid of 2-4 lines each way
        lo, hi = 15, 97
        for v in np.linspace(lo, hi, int(rng.integers(2, 5))):
            draw.line([(v, lo), (v, hi)], fill=0, width=width)
            draw.line([(lo, v), (hi, v)], fill=0, width=width)
    else:  # a spiral, either way round
        turns = np.linspace(0, rng.uniform(8, 16), 200)
        radius = 3 * turns + 2
        sign = 1 if rng.random() < 0.5 else -1
        draw.line([(56 + r * np.cos(sign * t), 56 + r * np.sin(sign * t))
                   for r, t in zip(radius, turns)], fill=0, width=width, joint="curve")
    return np.asarray(image)


def outlier_count(n_digits: int, share: float) -> int:
    """How many made-up non-digits go with `n_digits` training images."""
    return int(round(share * n_digits)) if share > 0 else 0


def with_outliers(pixels: np.ndarray, targets: np.ndarray, share: float, seed: int):
    """The training images with `share` x their number of made-up non-digits appended, and
    the targets as probabilities (n, 10): the digits' own (one-hot from labels, or a teacher's
    probabilities as given), uniform for the non-digits."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        targets = np.eye(N_CLASSES, dtype=np.float32)[targets]
    n = outlier_count(len(pixels), share)
    extra = made_up_non_digits(n, seed)
    return (np.concatenate([np.asarray(pixels, dtype=np.uint8), extra]),
            np.concatenate([targets.astype(np.float32),
                            np.full((n, N_CLASSES), 1.0 / N_CLASSES, np.float32)]))
