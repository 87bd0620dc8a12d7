"""Digits that are not MNIST: generated test sets, and a run's accuracy on each beside MNIST's.

    make bench-handwriting                         # about 1 minute for the default run
    .venv/bin/python bench/handwriting.py --run runs/default --show

The sets are written as image files (bench/results/handwriting/SET/*.png, with labels.csv) and
read back exactly as `digits predict RUN IMAGE` reads them (images.to_mnist), so they measure
what a person photographing or drawing a digit gets:

  fonts-handwriting  digits in the handwriting-like fonts of Debian's font packages (`make
                     fonts`), varied stroke width, slant, rotation and blur, dark on white
  fonts-print        the same from DejaVu's printed faces
  lowres-8x8         real handwriting from 43 other writers (UCI optdigits, in scikit-learn):
                     8x8 pixels, 17 grey levels, light on dark, as stored
  lowres-8x8-blocky  the same 8x8 digits scaled up 8x without smoothing (a blocky scan)
  lowres-16x16       handwriting-font digits rendered at 16x16, scaled up 4x without smoothing
  thick-marker       handwriting-font digits with a stroke a fifth of their height
  canvas-strokes     pen strokes as the drawing page makes them (22 px round brush on a 320 px
                     canvas), from stroke templates with random jitter
  photos             dark ink on paper: uneven light, paper grain, off-centre, blur, JPEG
  not-digits         no digit at all: letters and signs no digit resembles (A, K, m, #, @...)
                     from the fonts, pen shapes (star, heart, grid, spiral...) and scribbles
                     on the canvas, and photos of some of them; right = "no digit found"

Two sets are Kaggle-format test CSVs instead, read as `digits predict RUN TEST_CSV` reads one
(a label for every row): digits scanned elsewhere and stored as 28x28 rows that fill the frame
(as USPS's do) rather than sit in MNIST's 20 px box at the centre of mass:

  csv-8x8-filling    the optdigits digits above, scaled up smoothly to fill 28x28
  csv-8x8-blocky-filling  the same, scaled up without smoothing (uneven 3-4 px blocks)
  csv-16x16-filling  the lowres-16x16 digits, scaled up smoothly to fill 28x28

each read twice: as the commands read it (rows not in MNIST's frame reframed first,
images.reframe_rows; with the test-time views if the run's recipe has them, as `digits
predict` reads a CSV or an image, and with `--tta`) and `--no-reframe` (the rows as they are).

With `--split test`, MNIST's held-out set is scored twice: as the CSV path reads it (always a
label; the recipe's TTA, as for the CSV sets) and as images (`mnist-held-out-as-images`: the
images path may answer "no digit found"). `--split dev`, the split choices are made on, does
not read it.

Each set comes in two disjoint splits made from fixed seeds (every run of the bench sees the
same images): `--split dev`, on which settings such as the recipes' `pen` share were chosen,
and `--split test` (the default), which is only reported. No set is ever trained on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "results" / "handwriting"
FONT_DIRS = ("/usr/share/fonts",)
HANDWRITING_FONTS = ("bwht", "comic-neue", "dancingscript", "kaushanscript", "breip",
                     "femkeklaver", "fifthhorseman", "humor-sans", "kristi")


def font_files(kind: str) -> list[Path]:
    files = sorted(p for d in FONT_DIRS for p in Path(d).rglob("*") if p.suffix.lower() in
                   (".ttf", ".otf"))
    if kind == "handwriting":
        return [p for p in files if p.parent.name in HANDWRITING_FONTS]
    return [p for p in files if p.parent.name == "dejavu"]


def render_digit(font_path: Path, digit: int | str, size: int, rng, stroke: float = 0.0,
                 slant: float = 0.0, rotation: float = 0.0, blur: float = 0.0,
                 canvas: int | None = None):
    """One digit, dark ink on white, as a PIL image of `canvas` px (default 2 x size)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    canvas = canvas or 2 * size
    font = ImageFont.truetype(str(font_path), size)
    image = Image.new("L", (canvas, canvas), 255)
    draw = ImageDraw.Draw(image)
    width = int(round(stroke * size))
    draw.text((canvas / 2, canvas / 2), str(digit), font=font, fill=0, anchor="mm",
              stroke_width=width, stroke_fill=0)
    if slant:  # shear: x' = x + slant * (y - centre)
        image = image.transform(image.size, Image.Transform.AFFINE,
                                (1, slant, -slant * canvas / 2, 0, 1, 0),
                                resample=Image.Resampling.BILINEAR, fillcolor=255)
    if rotation:
        image = image.rotate(rotation, resample=Image.Resampling.BILINEAR, fillcolor=255)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    return image


def font_set(fonts, rng, per_font: int, stroke=(0.0, 0.06), size=(40, 72)):
    images, labels = [], []
    for font in fonts:
        for digit in range(10):
            for _ in range(per_font):
                images.append(render_digit(
                    font, digit, int(rng.integers(*size)), rng,
                    stroke=float(rng.uniform(*stroke)), slant=float(rng.uniform(-0.25, 0.25)),
                    rotation=float(rng.uniform(-10, 10)), blur=float(rng.uniform(0, 1.2))))
                labels.append(digit)
    return images, labels


# Stroke templates for the canvas set: each digit as pen paths in a unit square (x right,
# y down), the way people commonly draw them with a mouse or finger.
def _arc(cx, cy, rx, ry, start, end, n=14):
    t = np.linspace(np.radians(start), np.radians(end), n)
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


TEMPLATES = {
    0: [_arc(0.5, 0.5, 0.25, 0.35, -90, 270, 24)],
    1: [[(0.38, 0.25), (0.52, 0.13), (0.52, 0.87)]],
    2: [_arc(0.5, 0.33, 0.22, 0.2, 200, 360, 10) + [(0.70, 0.40), (0.28, 0.86), (0.75, 0.86)]],
    3: [_arc(0.48, 0.32, 0.2, 0.18, 210, 450, 12) + _arc(0.48, 0.67, 0.23, 0.2, -90, 150, 12)],
    4: [[(0.62, 0.87), (0.62, 0.13), (0.25, 0.62), (0.78, 0.62)]],
    5: [[(0.70, 0.14), (0.33, 0.14), (0.30, 0.45)] + _arc(0.48, 0.64, 0.24, 0.22, -120, 150, 14)],
    6: [[(0.65, 0.13)] + _arc(0.5, 0.64, 0.22, 0.22, 200, 560, 22)],
    7: [[(0.25, 0.15), (0.75, 0.15), (0.42, 0.87)]],
    8: [_arc(0.5, 0.31, 0.18, 0.17, 90, 450, 16), _arc(0.5, 0.67, 0.23, 0.2, -90, 270, 18)],
    9: [_arc(0.5, 0.35, 0.2, 0.2, 0, 360, 18) + [(0.70, 0.35), (0.62, 0.88)]],
}


def canvas_set(rng, per_digit: int):
    """Pen strokes drawn as the page draws them: round caps and joins, 22 px on 320 px."""
    images, labels = [], []
    for digit, paths in TEMPLATES.items():
        images += [draw_paths(paths, rng) for _ in range(per_digit)]
        labels += [digit] * per_digit
    return images, labels


# Things people draw or photograph that are not digits: letters and signs that no digit
# resembles (no O, I, l, S, Z, B, G, g, q, b...), and pen shapes, scribbles and marks.
NOT_DIGIT_CHARS = "ACEFHKMNRWXYaehkmnrwx#@&%?*+="
SHAPES = {
    "star": [[(0.5 + 0.4 * np.sin(a), 0.52 - 0.4 * np.cos(a))
              for a in np.radians(np.arange(0, 721, 144))]],
    "heart": [_arc(0.35, 0.35, 0.15, 0.15, 180, 360, 10)
              + _arc(0.65, 0.35, 0.15, 0.15, 180, 360, 10)
              + [(0.8, 0.4), (0.5, 0.85), (0.2, 0.4)]],
    "cross": [[(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)]],
    "plus": [[(0.5, 0.15), (0.5, 0.85)], [(0.15, 0.5), (0.85, 0.5)]],
    "square": [[(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.2)]],
    "triangle": [[(0.5, 0.15), (0.85, 0.8), (0.15, 0.8), (0.5, 0.15)]],
    "grid": [[(0.35, 0.1), (0.35, 0.9)], [(0.65, 0.1), (0.65, 0.9)],
             [(0.1, 0.35), (0.9, 0.35)], [(0.1, 0.65), (0.9, 0.65)]],
    "smiley": [_arc(0.5, 0.5, 0.38, 0.38, 0, 360, 24), _arc(0.5, 0.52, 0.2, 0.15, 20, 160, 8),
               [(0.38, 0.38), (0.38, 0.40)], [(0.62, 0.38), (0.62, 0.40)]],
    "spiral": [[(0.5 + r * np.cos(a), 0.5 + r * np.sin(a))
                for r, a in zip(np.linspace(0.02, 0.4, 40), np.linspace(0, 4 * np.pi, 40))]],
    "zigzag": [[(0.1 + 0.8 * i / 6, 0.35 if i % 2 else 0.65) for i in range(7)]],
    "lines": [[(0.15, y), (0.85, y)] for y in (0.25, 0.45, 0.65, 0.85)],
    "arrow": [[(0.15, 0.5), (0.85, 0.5)], [(0.6, 0.25), (0.85, 0.5), (0.6, 0.75)]],
}


def draw_paths(paths, rng, size: int = 320, brush: int = 22):
    """Pen paths (unit square) drawn as the page draws them, jittered like canvas_set's."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.55, 0.95) * size
    offset = rng.uniform(0, size - scale, 2)
    shear, wobble = rng.uniform(-0.2, 0.2), rng.uniform(0.005, 0.03)
    for path in paths:
        pts = np.array(path) + rng.normal(0, wobble, (len(path), 2))
        pts[:, 0] += shear * (pts[:, 1] - 0.5)
        xy = [tuple(p) for p in pts * scale + offset]
        draw.line(xy, fill=17, width=brush, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round caps
            draw.ellipse((x - brush / 2, y - brush / 2, x + brush / 2, y + brush / 2), fill=17)
    return image


def scribble(rng, points: int = 12):
    """A random pen path: what a child or a cat draws."""
    steps = rng.normal(0, 0.25, (points, 2))
    return [list(np.clip(0.5 + np.cumsum(steps, axis=0) * 0.5, 0.05, 0.95))]


def not_digit_set(fonts, rng, per_kind: int):
    """Images that hold no digit (label -1): NOT_DIGIT_CHARS from `fonts`, SHAPES and
    scribbles on the canvas, and photos of some of them."""
    images = []
    for char in NOT_DIGIT_CHARS:
        for _ in range(per_kind):
            images.append(render_digit(
                fonts[int(rng.integers(len(fonts)))], char, int(rng.integers(40, 72)), rng,
                stroke=float(rng.uniform(0, 0.06)), slant=float(rng.uniform(-0.25, 0.25)),
                rotation=float(rng.uniform(-10, 10)), blur=float(rng.uniform(0, 1.2))))
    for paths in SHAPES.values():
        images += [draw_paths(paths, rng) for _ in range(per_kind)]
    images += [draw_paths(scribble(rng, int(rng.integers(8, 20))), rng)
               for _ in range(4 * per_kind)]
    images += [photo_of(images[int(i)], rng) for i in rng.choice(len(images), len(images) // 4,
                                                                  replace=False)]
    return images, [-1] * len(images)


def scanned_at(image, pixels: int):
    """The digit scanned at `pixels` x `pixels`: its ink box (square, 15% margin) averaged down."""
    from PIL import Image

    ink = 255 - np.asarray(image)
    rows, cols = np.flatnonzero(ink.max(1) > 64), np.flatnonzero(ink.max(0) > 64)
    side = int(max(rows[-1] - rows[0], cols[-1] - cols[0]) * 1.3) + 1
    cy, cx = (rows[0] + rows[-1]) // 2, (cols[0] + cols[-1]) // 2
    box = (cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side)
    return image.crop(box).resize((pixels, pixels), Image.Resampling.BOX)


def photo_of(image, rng, size: int = 256):
    """A digit image as a phone photo of paper: larger sheet, off-centre, uneven light, grain,
    a little blur and JPEG."""
    from PIL import Image, ImageFilter

    ink = 1.0 - np.asarray(image, dtype=np.float32) / 255.0  # 1 = ink
    sheet = np.zeros((size, size), np.float32)
    h, w = ink.shape
    scale = rng.uniform(0.35, 0.7) * size / max(h, w)
    small = np.asarray(Image.fromarray((ink * 255).astype(np.uint8)).resize(
        (max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BILINEAR),
        dtype=np.float32) / 255.0
    y, x = (rng.integers(0, size - s + 1) for s in small.shape)
    sheet[y:y + small.shape[0], x:x + small.shape[1]] = small
    yy, xx = np.mgrid[0:size, 0:size] / size
    light = 0.75 + 0.2 * (np.cos(rng.uniform(0, 6.3)) * xx + np.sin(rng.uniform(0, 6.3)) * yy)
    paper = light * (0.92 + 0.04 * rng.standard_normal((size, size)))
    grey = np.clip(paper * (1 - 0.8 * sheet) * 255, 0, 255).astype(np.uint8)
    photo = Image.fromarray(grey).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    import io

    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=int(rng.integers(40, 85)))
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def make_sets(split: str = "test") -> dict[str, tuple[list, list]]:
    """{set name: (PIL images, labels)}. Two disjoint splits: "dev" (settings such as the
    `pen` share of the recipes were chosen on it) and "test" (reported; never used to choose):
    fonts alternate between them, optdigits' writers' digits are halved, the random draws
    (stroke, slant, jitter, light) use different seeds."""
    from PIL import Image, ImageOps
    from sklearn.datasets import load_digits

    part = {"dev": 0, "test": 1}[split]
    rng = np.random.default_rng(part)
    hand = font_files("handwriting")[part::2]
    printed = font_files("print")[part::2]
    if not hand:
        raise SystemExit("no handwriting fonts: `make fonts` installs Debian's (as root)")
    sets = {"fonts-handwriting": font_set(hand, rng, 6),
            "fonts-print": font_set(printed, rng, 2)}
    optdigits = load_digits()
    half = slice(0, len(optdigits.target) // 2) if part == 0 else \
        slice(len(optdigits.target) // 2, None)
    eight = [Image.fromarray((im * 255 / 16).astype(np.uint8)) for im in optdigits.images[half]]
    labels8 = [int(t) for t in optdigits.target[half]]
    sets["lowres-8x8"] = (eight, labels8)
    sets["lowres-8x8-blocky"] = ([im.resize((64, 64), Image.Resampling.NEAREST) for im in eight],
                                 labels8)
    small, labels = font_set(hand, rng, 2)
    sets["lowres-16x16"] = ([scanned_at(im, 16).resize((64, 64), Image.Resampling.NEAREST)
                             for im in small], labels)
    sets["thick-marker"] = font_set(hand, rng, 2, stroke=(0.05, 0.08))
    sets["canvas-strokes"] = canvas_set(rng, 30)
    photos, labels = font_set(hand, rng, 2)
    sets["photos"] = ([photo_of(im, rng) for im in photos], labels)
    sets["not-digits"] = not_digit_set(hand + printed, rng, 4)
    # Kaggle-format rows (light on dark, 28x28) of digits that fill the frame (write_sets
    # writes them as a test CSV): made from the two low-resolution sets above
    sets["csv-8x8-filling"] = ([filling_row(im) for im in eight], labels8)
    sets["csv-8x8-blocky-filling"] = ([filling_row(im, blocky=True) for im in eight], labels8)
    sets["csv-16x16-filling"] = ([filling_row(ImageOps.invert(scanned_at(im, 16)))
                                  for im in small], sets["lowres-16x16"][1])
    return sets


def filling_row(image, blocky: bool = False) -> np.ndarray:
    """A light-on-dark low-resolution digit scaled up to fill a 28x28 CSV row: smoothly, or
    `blocky` (nearest neighbour: uneven blocks, 28 not being a multiple of 8)."""
    from PIL import Image

    how = Image.Resampling.NEAREST if blocky else Image.Resampling.BILINEAR
    return np.asarray(image.convert("L").resize((28, 28), how))


def write_sets(sets, out: Path = OUT) -> dict[str, tuple[list[Path], np.ndarray]]:
    """Each set as PNG files and labels.csv under out/SET/ (the csv-* sets: out/SET/test.csv,
    Kaggle's format); returns their paths (a CSV set: [its CSV]) and labels."""
    from digit_recognizer.data import write_test_csv

    shutil.rmtree(out, ignore_errors=True)
    written = {}
    for name, (images, labels) in sets.items():
        folder = out / name
        folder.mkdir(parents=True)
        if name.startswith("csv-"):
            write_test_csv(folder / "test.csv", np.stack(images))
            written[name] = ([folder / "test.csv"], np.array(labels))
            continue
        paths = []
        for i, (image, label) in enumerate(zip(images, labels)):
            paths.append(folder / f"{i:04d}-{label}.png")
            image.save(paths[-1])
        (folder / "labels.csv").write_text("file,label\n" + "".join(
            f"{p.name},{y}\n" for p, y in zip(paths, labels)))
        written[name] = (paths, np.array(labels))
    return written


def evaluate(run_dir, written, tta: bool = False, show: bool = False,
             quantile: float | None = None, held_out: bool = True) -> dict:
    """Accuracy on each set through the `digits predict IMAGE` path (an image answered "no
    digit found" counts as wrong for a digit, right for `not-digits`), and with `held_out`
    MNIST's held-out through both paths: the CSV (always a label) and the images' (with "no
    digit" answers). The dev split, where choices are made, passes held_out=False: the
    held-out set is only observed, never shown beside a choice."""
    from digit_recognizer.demo import load_embedded_mnist
    from digit_recognizer.images import NoDigitFound, find_digits, save_digit_png
    from digit_recognizer.data import load_test_csv
    from digit_recognizer.predict import (answer_digits, load_run, predict_labels, read_csv_rows,
                                          run_proba)

    # CSVs and images: the recipe's TTA, as `digits predict` reads them (--tta: on for any)
    csv_run = run = load_run(run_dir, True if tta else None)
    if quantile is not None and quantile >= 100:  # no far-from-any-digit check
        run = dataclasses.replace(run, spaces=(), feature_nets=())
    elif quantile is not None:  # the check's threshold at another validation quantile
        run = dataclasses.replace(run, spaces=tuple(dataclasses.replace(s, quantile=quantile)
                                                    for s in run.spaces))
    results = {}
    if held_out:
        mnist = load_embedded_mnist()
        mnist_answers = answer_digits(run, mnist["test_pixels"])  # one pass: label and refusal
        labels = np.array([a.probabilities.argmax() for a in mnist_answers])
        # The CSV path, as `digits predict` reads it: the answers above took the same views
        # (or none, for a recipe without them), so only the rows it reframes need the network
        # again. (Until 2026-12-01 a run without the views skipped this and read those few
        # MNIST rows as they are.)
        rows, reframed = read_csv_rows(csv_run, mnist["test_pixels"])
        if reframed.any():
            labels[reframed] = predict_labels(run_proba(csv_run, rows[reframed]))
        right = labels == mnist["test_labels"]
        answered = np.array([-1 if a.label is None else a.label for a in mnist_answers])
        results = {"mnist-held-out": {"images": len(right), "accuracy": float(right.mean()),
                                      "no_digit": 0},
                   "mnist-held-out-as-images": {
                       "images": len(right),
                       "accuracy": float((answered == mnist["test_labels"]).mean()),
                       "no_digit": int((answered == -1).sum())}}
    for name, (paths, labels) in written.items():
        if name.startswith("csv-"):  # as `digits predict RUN TEST_CSV` reads it, and without
            rows = load_test_csv(paths[0]).pixels
            for reframe, key in ((True, name), (False, f"{name} --no-reframe")):
                read = read_csv_rows(csv_run, rows, reframe)[0]
                predicted = predict_labels(run_proba(csv_run, read))
                results[key] = {"images": len(rows), "no_digit": 0,
                                "accuracy": float((predicted == labels).mean())}
            continue
        found = find_digits(paths)
        ok = np.array([not isinstance(d, NoDigitFound) for d in found])
        predicted = np.full(len(paths), -1)
        if ok.any():
            answers = answer_digits(run, np.stack([d for d in found
                                                   if not isinstance(d, NoDigitFound)]))
            predicted[ok] = [-1 if a.label is None else a.label for a in answers]
        results[name] = {"images": len(paths), "accuracy": float((predicted == labels).mean()),
                         "no_digit": int((predicted == -1).sum())}
        if show:  # what the model saw, for the first 20 of each set
            for path, digit in list(zip(paths, found))[:20]:
                if not isinstance(digit, NoDigitFound):
                    save_digit_png(digit, path.with_suffix(".seen.png"), scale=4)
    return results


def draw_sheet(written, path: Path, per_set: int = 4, cell: int = 72) -> None:
    """One row per set: `per_set` inputs, each beside the 28x28 digit the model saw (a CSV
    set: the row as stored beside the row as read, reframed)."""
    from PIL import Image, ImageDraw

    from digit_recognizer.data import load_test_csv
    from digit_recognizer.images import NoDigitFound, find_digits, reframe_rows

    label_w = 150
    sheet = Image.new("L", (label_w + 2 * per_set * cell, len(written) * cell), 255)
    draw = ImageDraw.Draw(sheet)
    for row, (name, (paths, _)) in enumerate(written.items()):
        draw.text((6, row * cell + cell // 2 - 6), name, fill=0)
        rng = np.random.default_rng(row)
        if name.startswith("csv-"):
            stored = load_test_csv(paths[0]).pixels
            stored = stored[rng.choice(len(stored), per_set, replace=False)]
            pairs = [(Image.fromarray(a), b) for a, b in zip(stored, reframe_rows(stored)[0])]
        else:
            picks = [paths[j] for j in rng.choice(len(paths), per_set, replace=False)]
            pairs = [(Image.open(p).convert("L"), seen) for p, seen in zip(picks,
                                                                           find_digits(picks))]
        for i, (shown, seen) in enumerate(pairs):
            x = label_w + 2 * i * cell
            sheet.paste(shown.resize((cell - 4, cell - 4)), (x, row * cell + 2))
            if not isinstance(seen, NoDigitFound):
                sheet.paste(Image.fromarray(seen).resize((cell - 4, cell - 4),
                                                         Image.Resampling.NEAREST),
                            (x + cell - 2, row * cell + 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def _seed_of(run) -> str:
    config = Path(run) / "config.json"
    if config.exists():
        return str(json.loads(config.read_text())["config"]["seed"])
    members = sorted(Path(run).glob("members/*/config.json"))
    return "+".join(str(json.loads(m.read_text())["config"]["seed"]) for m in members) or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append",
                        help="run directory (or .onnx); repeat to compare (default: "
                             "bench/results/run-default)")
    parser.add_argument("--tta", action="store_true",
                        help="the test-time views for every run (default: as each run's recipe "
                             "says, as `digits predict` reads CSVs and images)")
    parser.add_argument("--show", action="store_true", help="save *.seen.png beside 20 per set")
    parser.add_argument("--sheet", type=Path, metavar="PNG",
                        help="also draw, for each set, 4 images and what the model saw")
    parser.add_argument("--split", choices=["dev", "test"], default="test",
                        help="dev: where settings were chosen; test: reported, never chosen on")
    parser.add_argument("--quantiles", type=lambda s: [float(q) for q in s.split(",")],
                        metavar="Q,Q...", help="compare far-from-any-digit thresholds: each "
                        "run at each validation quantile (%%; 100 = no check), e.g. 100,99.9,99.5")
    args = parser.parse_args()
    runs = args.run or [ROOT / "bench" / "results" / "run-default"]

    from bench import machine_info, print_machine, versions
    from digit_recognizer.pipeline import find_or_create_data

    if not args.run and not runs[0].exists():
        import subprocess

        find_or_create_data(ROOT / "data")
        print(f"-- training {runs[0]} (default recipe)", flush=True)
        subprocess.run([str(Path(sys.executable).parent / "digits"), "train",
                        str(ROOT / "data" / "train.csv"), "--run-dir", str(runs[0])],
                       check=True, stdout=subprocess.DEVNULL)

    held_out = args.split == "test"  # never beside the dev split's choices
    start = time.perf_counter()
    written = write_sets(make_sets(args.split), OUT / args.split)
    made = time.perf_counter() - start
    if args.quantiles:
        table = {f"{run}@{q:g}": evaluate(run, written, args.tta, args.show, q, held_out)
                 for run in runs for q in args.quantiles}
    else:
        table = {str(run): evaluate(run, written, args.tta, args.show, held_out=held_out)
                 for run in runs}
    if args.sheet:
        draw_sheet(written, args.sheet)
    (ROOT / "bench" / "results" / f"handwriting-{args.split}.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "split": args.split,
         "tta": args.tta, "versions": versions(), "results": table}, indent=2))
    print_machine(machine_info(), versions())
    print(f"{args.split} sets made in {made:.0f} s under {OUT / args.split}/ (fixed seed "
          f"{ {'dev': 0, 'test': 1}[args.split]}); tta {args.tta}; runs' training seeds: "
          + ", ".join(f"{Path(r).name} {_seed_of(r)}" for r in map(str, runs)))
    names = list(next(iter(table.values())))
    print("| set | images | " + " | ".join(Path(r).name for r in table) + " |")
    print("|---|---|" + "---|" * len(table))
    for name in names:
        first = next(iter(table.values()))[name]
        cells = " | ".join(f"{t[name]['accuracy']:.2%}" + (f" ({t[name]['no_digit']} no digit)"
                                                          if t[name]["no_digit"] else "")
                           for t in table.values())
        print(f"| {name} | {first['images']} | {cells} |")


if __name__ == "__main__":
    main()
