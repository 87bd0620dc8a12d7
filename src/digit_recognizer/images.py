"""Real images -> MNIST-style 28x28 digits, following how MNIST itself was made.

MNIST digits are light ink on a dark background, cropped to the ink, scaled so the longer side
is 20 px (anti-aliased, aspect kept), and pasted into 28x28 with the centre of mass at the
centre. A photo or a drawing is usually dark on light, off-centre and any size; without this,
"it gets my own digit wrong". A small image enlarged without smoothing (a blocky 8x8 scan) is
read as the small image it was (undo_blocky_enlargement).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_path

MAX_FILE_BYTES = 20 * 1024 * 1024  # 20 MiB
MAX_PIXELS = 40_000_000  # refuse decompression bombs well before Pillow's own limit
DIGIT_BOX = 20  # px, the longer side of the digit inside the 28x28 frame
FRAME = 28
# No digit below this contrast between ink and background, in grey levels (0-255): an eighth of
# full contrast. A blank page, a one-colour picture or a faint smudge is answered "no digit
# found" instead of with a guess. (A picture with contrast but no digit in it is not detected.)
MIN_INK_CONTRAST = 32
# A digit's box is where its ink reaches this share of its strongest ink (ink_to_mnist crops to
# it; in_mnist_frame measures a CSV row's framing by it).
STRONG_INK = 0.15
# The finished digit's grey levels go through this power, 255 * (v / 255) ** INK_GAMMA, which
# makes the faint edges fainter: enlarged scans, fonts and photos come out of the resize with
# wider grey edges than MNIST's strokes have. Chosen on the dev split of bench/handwriting.py
# (2026-12-01; 1.2 over 0.7-2.0, rule in bench/README.md, "The finished digit's grey levels"):
# the eight image sets 97.39 -> 97.63%, none lower. MNIST's own rows never pass through here.
INK_GAMMA = 1.2


class NoDigitFound(InputError):
    """A readable image that holds no digit (blank, one colour, or too faint). Commands that
    read several images answer it per image instead of failing, with `reason`."""

    def __init__(self, path, reason: str):
        self.reason = reason  # "no digit found (...)": what a per-image answer says
        super().__init__(path, f"is blank: {reason}")


def load_image(source, name: str | None = None) -> np.ndarray:
    """Decode an image file (path or bytes) to float grey levels 0-255, shape (h, w).

    Transparency is composited onto white (a drawing on a transparent canvas is dark on light),
    and EXIF rotation is applied (phone photos)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = name or str(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InputError(name, "no such file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(name, f"is larger than {MAX_FILE_BYTES // 2**20} MiB")
        blob = path.read_bytes()
    else:
        blob = bytes(source)
        if len(blob) > MAX_FILE_BYTES:
            raise InputError(name, f"is larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        with Image.open(io.BytesIO(blob)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise InputError(name, f"has {image.width}x{image.height} pixels, more than "
                                       f"{MAX_PIXELS:,}")
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P"
                                                       and "transparency" in image.info):
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, rgba)
            grey = np.asarray(image.convert("L"), dtype=np.float32)
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
        raise InputError(name, f"is not a readable image ({type(e).__name__})") from e
    return grey


def to_mnist(grey: np.ndarray, name: str = "image") -> np.ndarray:
    """MNIST's preprocessing of a grey image (any size, either polarity) -> uint8 (28, 28)."""
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise InputError(name, f"expected a 2-D grey image, got shape {grey.shape}")
    grey = undo_blocky_enlargement(grey)
    # Polarity: the border is background. Dark-on-light images are inverted to light-on-dark.
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    level = float(np.median(border))
    dark_ink = level > 127.5
    background = background_surface(grey, level, dark_ink)
    ink = (background - grey) if dark_ink else (grey - background)
    return ink_to_mnist(np.clip(ink, 0, None), name)


def ink_to_mnist(ink: np.ndarray, name: str = "image") -> np.ndarray:
    """The rest of to_mnist, from an ink map (float, 0 = no ink, either scale) on an even
    background: MNIST's 20 px box and centre of mass -> uint8 (28, 28)."""
    ink = np.asarray(ink, dtype=np.float32)
    if ink.max() < MIN_INK_CONTRAST:
        raise NoDigitFound(name, "no digit found (no ink against the background; the "
                                 f"strongest contrast is {ink.max():.0f} of 255, below "
                                 f"{MIN_INK_CONTRAST})")
    ink = ink * (255.0 / ink.max())
    # The digit's box is where ink reaches 15% of full contrast (paper texture and JPEG noise
    # do not count), but the faint anti-aliased edges inside it are kept, as in MNIST.
    strong = _without_specks(ink >= STRONG_INK * 255)
    ink[ink < 0.05 * 255] = 0
    rows, cols = np.flatnonzero(strong.any(axis=1)), np.flatnonzero(strong.any(axis=0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    small = _fit_box(crop)

    # Paste so that the centre of mass lands on the frame's centre (MNIST's convention).
    total = small.sum()
    ys, xs = np.indices(small.shape)
    com_y, com_x = (ys * small).sum() / total, (xs * small).sum() / total
    top = int(round(FRAME / 2 - 0.5 - com_y))
    left = int(round(FRAME / 2 - 0.5 - com_x))
    top = min(max(top, 0), FRAME - small.shape[0])
    left = min(max(left, 0), FRAME - small.shape[1])
    frame = np.zeros((FRAME, FRAME), dtype=np.float32)
    frame[top:top + small.shape[0], left:left + small.shape[1]] = small
    frame = 255.0 * (frame.astype(np.float64) / 255.0) ** INK_GAMMA
    return np.rint(frame).astype(np.uint8)


MIN_BLOCKY_SIDE = 6  # px: a smaller "original" is more likely a shape with even edges


def undo_blocky_enlargement(grey: np.ndarray) -> np.ndarray:
    """A small image enlarged without smoothing (nearest neighbour: an 8x8 scan shown at
    64x64, every pixel a k x k block of one grey) -> the small image, one pixel per block;
    any other image unchanged. Read as it is, the blocks' steps would reach the 20 px box as
    jagged strokes that no MNIST writer made; the small image is enlarged smoothly instead.

    Blocky means: along each axis, every place where the grey changes lies on one grid of
    step k >= 2 (k: the greatest common divisor of the lengths between changes), and the
    small image keeps at least MIN_BLOCKY_SIDE px on its longer side."""
    steps = [_change_positions(grey, axis) for axis in (0, 1)]
    inner = np.concatenate([np.diff(s) for s in steps])
    if any(len(s) < 2 for s in steps) or len(inner) < 3:
        return grey  # too few edges to tell a grid from a shape
    k = int(np.gcd.reduce(inner))
    if k < 2 or max(grey.shape) // k < MIN_BLOCKY_SIDE:
        return grey
    # one pixel per block, from the block's middle; the grid's phase is where the edges lie
    centres = [_block_centres(n, int(s[0]) % k, k) for n, s in zip(grey.shape, steps)]
    return grey[np.ix_(*centres)]


def _change_positions(grey: np.ndarray, axis: int) -> np.ndarray:
    """Indices i along `axis` where line i differs from line i - 1 anywhere."""
    differs = np.diff(grey, axis=axis) != 0
    return np.flatnonzero(differs.any(axis=1 - axis)) + 1


def _block_centres(n: int, phase: int, k: int) -> np.ndarray:
    starts = np.arange(phase - k if phase else 0, n, k)
    ends = np.minimum(starts + k, n)
    starts = np.maximum(starts, 0)
    return (starts + ends - 1) // 2


# Uneven light (a photo of paper lit from one side) shows as a background that drifts by more
# than this many grey levels across the image; below it the background is one level, the
# border's median, exactly as for a scan or a drawing.
UNEVEN_LIGHT = 16
SPECK_FRACTION = 0.1  # ink blobs smaller than this share of the largest are grain, not digit


def _fit_box(crop: np.ndarray) -> np.ndarray:
    """The crop scaled so its longer side is DIGIT_BOX px: box filter (area average, i.e.
    anti-aliased) when shrinking, bicubic when enlarging (sharper strokes than bilinear from
    an 8x8 or 16x16 scan; chosen on the dev split, bench/README.md, "Enlarging small digits
    bicubically": 8x8 scans 97.59 -> 98.00%)."""
    from PIL import Image

    h, w = crop.shape
    scale = DIGIT_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL: (width, height)
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
    small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(size, resample))
    return np.clip(small, 0, 255)


def background_surface(grey: np.ndarray, level: float, dark_ink: bool) -> np.ndarray | float:
    """The paper's brightness under the digit: a smooth quadratic surface fitted to the pixels
    that are not ink (robustly, on a <=64 px copy), or the constant `level` (the border's
    median) when the light is even."""
    h, w = grey.shape
    step = max(1, max(h, w) // 64)
    small = grey[::step, ::step]
    if small.size < 36:  # too few pixels to fit 6 terms: an icon-sized image is evenly lit
        return level
    ys, xs = np.mgrid[0:small.shape[0], 0:small.shape[1]]
    y, x = (ys * step / h - 0.5).ravel(), (xs * step / w - 0.5).ravel()
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    values = small.ravel().astype(np.float64)
    # ink lies on one side of the paper: start from the pixels within reach of the border's
    # level, refit on those the surface explains
    keep = (values - level) * (-1 if dark_ink else 1) < MIN_INK_CONTRAST
    for _ in range(3):
        if keep.sum() < 6:
            return level
        coef, *_ = np.linalg.lstsq(terms[keep], values[keep], rcond=None)
        off = (values - terms @ coef) * (-1 if dark_ink else 1)  # > 0: towards ink
        keep = off < MIN_INK_CONTRAST / 2
    fitted = terms @ coef
    if fitted.max() - fitted.min() <= UNEVEN_LIGHT:
        return level
    yy, xx = np.mgrid[0:h, 0:w]
    yy, xx = yy / h - 0.5, xx / w - 0.5
    return (coef[0] + coef[1] * xx + coef[2] * yy + coef[3] * xx * xx + coef[4] * xx * yy
            + coef[5] * yy * yy).astype(np.float32)


def _without_specks(strong: np.ndarray) -> np.ndarray:
    """The strong-ink mask without blobs much smaller than the largest (paper grain, JPEG
    noise, dust): they would stretch the digit's box. Digits' own pieces are kept."""
    from scipy import ndimage

    labels, n = ndimage.label(strong, structure=np.ones((3, 3)))
    if n <= 1:
        return strong
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= SPECK_FRACTION * sizes.max()) + 1
    return np.isin(labels, keep)


# A CSV row is meant to hold a digit framed as MNIST frames its digits: the ink's longer side
# DIGIT_BOX px (where ink reaches 15% of the row's strongest, as ink_to_mnist measures it) and
# the centre of mass within a pixel of the frame's centre. In train.csv 41,978 of 42,000 rows
# have exactly that box (the other 22: 14-19 px, faint strokes) and every row's centre of mass
# is within 1.0 px of the centre on each axis. Digits from elsewhere often are not: scanned
# to fill the frame (as USPS's are), smaller, or off-centre. The tolerances were chosen on the
# dev split of bench/handwriting.py's CSV sets and six framings of its optdigits (default
# recipe, seeds 2-4): reframing every row that is not exactly MNIST's read digits boxed at
# 22-24 px worse than as they were (97.9 -> 96.7%); a 17-23 px box and 2 px gave the best mean
# (96.7%: digits filling the frame 89.7 -> 96.6%, off-centre 87.6 -> 96.5%, 16 px 93.2 -> 95.7%,
# 24 px 95.2 -> 96.8%, the 22-24 px ones and MNIST-framed ones unchanged within 0.03 pt).
FRAME_BOX = (17, 23)  # px, the longer side of a framed digit's ink
FRAME_CENTRE_TOLERANCE = 2.0  # px on each axis


def in_mnist_frame(pixels: np.ndarray) -> np.ndarray:
    """Which rows (n, 28, 28) of light-on-dark pixels, 0-255, hold a digit framed about as
    MNIST's are (FRAME_BOX, FRAME_CENTRE_TOLERANCE): bool (n,). A row without ink (below
    MIN_INK_CONTRAST) counts as framed: there is nothing to move."""
    x = np.asarray(pixels, dtype=np.float32).reshape(-1, FRAME, FRAME)
    peak = x.max(axis=(1, 2))
    strong = x >= STRONG_INK * peak[:, None, None]

    def extent(marks):  # (n, FRAME) bool -> length from the first to the last True
        first = marks.argmax(axis=1)
        last = FRAME - 1 - marks[:, ::-1].argmax(axis=1)
        return last - first + 1

    box = np.maximum(extent(strong.any(axis=2)), extent(strong.any(axis=1)))
    total = np.maximum(x.sum(axis=(1, 2)), 1e-6)
    positions = np.arange(FRAME, dtype=np.float32) - (FRAME - 1) / 2  # from the centre, px
    off_y = (x.sum(axis=2) * positions).sum(axis=1) / total
    off_x = (x.sum(axis=1) * positions).sum(axis=1) / total
    centred = (np.abs(off_y) <= FRAME_CENTRE_TOLERANCE) & (np.abs(off_x) <= FRAME_CENTRE_TOLERANCE)
    framed = (box >= FRAME_BOX[0]) & (box <= FRAME_BOX[1]) & centred
    return (peak < MIN_INK_CONTRAST) | framed


# A row enlarged without smoothing by an uneven factor (8 -> 28 px: blocks of 3 and 4 px) is no
# grid that undo_blocky_enlargement can undo, and reframed as it is it keeps its blocks: such
# rows are smoothed first. Chosen on the dev split of bench/handwriting.py's CSV sets (seeds
# 2-4): every blocky 8x8 scan has >= 75% of its neighbouring mid-grey pixels exactly equal
# along rows and along columns, no smooth one does (nor any of MNIST's 10,000 test rows; 3 of
# its 60,000 training rows); blurring those (sigma 0.5, 0.75, 1 px) read them 93.4 -> 95.3,
# 96.1, 96.3% with `default` and 88.9 -> 94.0, 97.8, 98.3% with `best`, while blurring every
# reframed row cost the smooth small and off-centre digits 0.3-3.5 pt.
BLOCKY_SHARE = 0.75  # of neighbouring mid-grey (32-223) pixel pairs with the same grey, each way
BLOCKY_BLUR = 1.0  # px, Gaussian sigma at 28 px


def looks_blocky(row: np.ndarray) -> bool:
    """Whether a (28, 28) row looks enlarged without smoothing: along rows and along columns
    alike, most neighbouring mid-grey pixels have exactly the same grey (BLOCKY_SHARE). A
    stroke with one grey down its edge (some of MNIST's) is equal one way only."""
    x = np.asarray(row, dtype=np.int16)
    mid = (x >= 32) & (x <= 223)
    for a, b, both in ((x[:, 1:], x[:, :-1], mid[:, 1:] & mid[:, :-1]),
                       (x[1:], x[:-1], mid[1:] & mid[:-1])):
        pairs = int(both.sum())
        if pairs == 0 or (both & (a == b)).sum() < BLOCKY_SHARE * pairs:
            return False
    return True


def _reframed(row: np.ndarray, name: str) -> np.ndarray:
    """One row as to_mnist reads an image, smoothed first if it is blocky on no even grid."""
    grey = row.astype(np.float32)
    # looks_blocky first: it is cheap, and to_mnist runs undo_blocky_enlargement itself
    if looks_blocky(row) and undo_blocky_enlargement(grey).shape == grey.shape:
        from scipy import ndimage

        grey = ndimage.gaussian_filter(grey, BLOCKY_BLUR)
    return to_mnist(grey, name)


def reframe_rows(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, reframed): the rows (n, 28, 28) uint8 with each one not in MNIST's frame
    (in_mnist_frame) redone as to_mnist does an image (cropped to its ink, scaled to the 20 px
    box, centred by mass; smoothed first if blocky: looks_blocky), and which rows those were
    (bool (n,)). Framed rows are returned untouched, so MNIST's own rows read exactly as
    before."""
    rows = np.asarray(pixels, dtype=np.uint8).reshape(-1, FRAME, FRAME)
    reframed = ~in_mnist_frame(rows)
    if reframed.any():
        rows = rows.copy()
        for i in np.flatnonzero(reframed):
            try:
                rows[i] = _reframed(rows[i], f"row {i + 1}")
            except NoDigitFound:  # its ink was only specks or uneven light: leave it
                reframed[i] = False
    return rows, reframed


def image_to_mnist(source, name: str | None = None) -> np.ndarray:
    """An image file (path or bytes) -> uint8 (28, 28) the way MNIST digits look."""
    name = name or str(source)
    return to_mnist(load_image(source, name), name)


def find_digits(paths) -> list[np.ndarray | NoDigitFound]:
    """Each image file as a uint8 (28, 28) digit, or the NoDigitFound saying why there is none.
    An unreadable file still raises (InputError)."""
    found = []
    for path in paths:
        try:
            found.append(image_to_mnist(path))
        except NoDigitFound as e:
            found.append(e)
    return found


def load_digits(paths) -> np.ndarray:
    """Image files -> uint8 (n, 28, 28) MNIST-style digits (the first bad file raises)."""
    return np.stack([image_to_mnist(p) for p in paths])


def save_digit_png(pixels: np.ndarray, path, scale: int = 8) -> None:
    """What the model saw, enlarged (nearest neighbour) so a person can look at it."""
    from PIL import Image

    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L")
    image = image.resize((FRAME * scale, FRAME * scale), Image.Resampling.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
