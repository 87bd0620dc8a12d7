import csv
import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from digit_recognizer.cli import main
from digit_recognizer.errors import InputError
from digit_recognizer.images import (NoDigitFound, image_to_mnist, in_mnist_frame,
                                    looks_blocky, reframe_rows, to_mnist,
                                    undo_blocky_enlargement)


def layout(digit, scale=3, canvas=(120, 160), at=(10, 70), invert=True, thicken=0, rgb=False):
    """Paste an MNIST digit into a photo-like layout: bigger, off-centre, dark on light."""
    img = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    for _ in range(thicken):
        img = img.filter(ImageFilter.MaxFilter(3))
    page = Image.new("L", (canvas[1], canvas[0]), 0)
    page.paste(img, (at[1], at[0]))
    arr = np.asarray(page)
    if invert:
        arr = 255 - arr
    if rgb:
        arr = np.stack([arr, arr, arr], axis=-1)
    return arr


def png_bytes(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def centre_of_mass(x):
    ys, xs = np.indices(x.shape)
    return (ys * x).sum() / x.sum(), (xs * x).sum() / x.sum()


@pytest.mark.parametrize("kwargs", [
    dict(), dict(invert=False), dict(scale=5, at=(0, 0), canvas=(150, 150)),
    dict(scale=1, at=(90, 120)), dict(thicken=2), dict(rgb=True),
])
def test_mnist_conventions(mnist, kwargs):
    digit = mnist["test_pixels"][0]
    image = layout(digit, **kwargs)
    grey = image.mean(axis=-1) if image.ndim == 3 else image
    out = to_mnist(grey)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    # light digit on dark background, whatever the input's polarity
    assert out[0].max() == 0 and out.max() >= 200
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert max(height, width) in (20, 21)  # longer side scaled to 20 px (+1 for anti-aliasing)
    cy, cx = centre_of_mass(out.astype(float))
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0  # centred on the centre of mass


def test_bad_images(tmp_path):
    (tmp_path / "notes.png").write_text("this is not a png")
    with pytest.raises(InputError, match="not a readable image"):
        image_to_mnist(tmp_path / "notes.png")
    blank = np.full((50, 50), 240, np.uint8)
    with pytest.raises(NoDigitFound, match="blank: no digit found"):
        image_to_mnist(png_bytes(blank), "blank.png")
    faint = blank.copy()
    faint[20:30, 24:26] = 240 - 31  # just under the contrast threshold (32 of 255)
    with pytest.raises(NoDigitFound, match="strongest contrast is 31 of 255"):
        image_to_mnist(png_bytes(faint), "faint.png")
    faint[20:30, 24:26] = 240 - 32  # at the threshold: a (thin) digit
    assert image_to_mnist(png_bytes(faint), "stroke.png").max() == 255
    with pytest.raises(InputError, match="no such file"):
        image_to_mnist(tmp_path / "missing.png")
    big = Image.new("L", (8000, 6000), 255)  # 48 MP, compresses to a small file
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    with pytest.raises(InputError, match="more than"):
        image_to_mnist(buf.getvalue(), "huge.png")


def test_transparent_drawing_is_read_as_ink_on_white(mnist):
    ink = layout(mnist["test_pixels"][1], invert=False)
    rgba = np.zeros(ink.shape + (4,), np.uint8)
    rgba[..., 3] = ink  # black strokes on a transparent canvas
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG")
    out = image_to_mnist(buf.getvalue(), "drawing.png")
    assert out.max() >= 200 and out[0].max() == 0


def test_predict_images_cli(tiny_run, mnist, tmp_path, capsys):
    run_dir, _, _ = tiny_run
    paths = []
    for i in range(3):
        path = tmp_path / f"digit{i}.jpg"
        Image.fromarray(layout(mnist["test_pixels"][i])).convert("RGB").save(path, quality=90)
        paths.append(str(path))
    show = tmp_path / "seen"
    assert main(["predict", str(run_dir), *paths, "--show", str(show)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3 and all("%" in line for line in out)
    assert len(list(show.glob("*.seen.png"))) == 3
    assert main(["predict", str(run_dir), *paths, "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "file,label,probability,reason" and len(rows) == 4
    label, prob, reason = rows[1].split(",")[1:]
    assert label.isdigit() and 0 <= float(prob) <= 1 and reason == ""
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main(["predict", str(run_dir), str(tmp_path / "bad.png")]) == 2
    assert "bad.png" in capsys.readouterr().err

    # No digit, no guess: a blank page and a one-colour picture are answered per image
    Image.new("L", (60, 40), 250).save(tmp_path / "blank.png")
    Image.new("RGB", (30, 30), (200, 40, 40)).save(tmp_path / "red.png")
    blank, red = str(tmp_path / "blank.png"), str(tmp_path / "red.png")
    assert main(["predict", str(run_dir), paths[0], blank, "--show", str(tmp_path / "s2")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(paths[0]) and "%" in out[0]
    assert out[1].startswith(f"{blank}: no digit found")
    assert [p.name for p in (tmp_path / "s2").iterdir()] == ["digit0.seen.png"]
    assert main(["predict", str(run_dir), blank, paths[1], "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["file", "label", "probability", "reason"]
    assert rows[1][:3] == [blank, "", ""] and rows[1][3].startswith("no digit found")
    assert rows[2][1].isdigit() and rows[2][3] == ""
    assert main(["predict", str(run_dir), blank, red]) == 1  # none held a digit
    assert capsys.readouterr().out.count("no digit found") == 2


@pytest.mark.slow
def test_held_out_digits_survive_the_whole_image_path(mnist):
    """Train (3 epochs of 30,000) on MNIST's training images, then predict 1,000 held-out test
    digits pasted into photo-like layouts (bigger, off-centre, dark on light, as PNG files):
    >= 98%."""
    from digit_recognizer.config import get_recipe
    from digit_recognizer.data import DigitsData
    from digit_recognizer.predict import load_run, predict_images, predict_proba
    import tempfile
    from pathlib import Path

    from digit_recognizer.train import train

    data = DigitsData(mnist["train_pixels"][:30_000], mnist["train_labels"][:30_000], "mnist", "-")
    with tempfile.TemporaryDirectory() as tmp:
        train(get_recipe("default").replace(epochs=3), data, Path(tmp) / "run", verbose=0)
        run = load_run(Path(tmp) / "run")
        rng = np.random.default_rng(0)
        test_x, test_y = mnist["test_pixels"][:1000], mnist["test_labels"][:1000]
        direct = (predict_proba(run.models[0], test_x).argmax(1) == test_y).mean()
        paths = []
        for i, digit in enumerate(test_x):
            scale = int(rng.integers(2, 6))
            at = (int(rng.integers(0, 40)), int(rng.integers(0, 60)))
            canvas = (28 * scale + 45, 28 * scale + 65)
            path = Path(tmp) / f"{i}.png"
            Image.fromarray(layout(digit, scale, canvas, at, invert=bool(i % 2))).save(path)
            paths.append(path)
        _, probabilities = predict_images(run, paths)
        through = (probabilities.argmax(1) == test_y).mean()
    assert direct >= 0.98
    assert through >= 0.98, f"direct {direct:.4f}, through the image path {through:.4f}"


def test_uneven_light_is_flattened_before_the_digit_is_cropped(mnist):
    """A photo lit from one side: the paper's darker side is not ink."""
    digit = mnist["test_pixels"][0]
    flat = layout(digit, canvas=(200, 200), at=(60, 60)).astype(np.float32)
    yy, xx = np.mgrid[0:200, 0:200]
    shade = 70 * xx / 200  # 70 grey levels darker towards the right
    lit = np.clip(flat * (1 - 0.3 * xx / 200) - shade * 0.2, 0, 255)
    expected, got = to_mnist(flat), to_mnist(lit)
    assert np.corrcoef(expected.ravel(), got.ravel())[0, 1] > 0.95
    cy, cx = centre_of_mass(got.astype(float))
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0


def test_evenly_lit_images_keep_the_borders_level_as_background(mnist):
    from digit_recognizer.images import background_surface

    image = layout(mnist["test_pixels"][3]).astype(np.float32)
    assert background_surface(image, 255.0, dark_ink=True) == 255.0  # a constant: unchanged
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 4, image.shape), 0, 255)
    assert np.isscalar(background_surface(noisy, float(np.median(noisy[0])), dark_ink=True))


def test_grain_far_from_the_digit_does_not_stretch_its_box(mnist):
    digit = mnist["test_pixels"][1]
    clean = layout(digit, canvas=(200, 200), at=(60, 60))
    specked = clean.copy()
    for y, x in [(5, 5), (190, 12), (20, 185), (185, 185), (100, 3)]:
        specked[y:y + 2, x:x + 2] = 0  # dust: 2x2 dark dots on the white paper
    assert np.array_equal(to_mnist(specked), to_mnist(clean))


def test_a_blocky_enlargement_reads_as_the_small_image_it_was_made_from(mnist):
    small = 255 - mnist["test_pixels"][3]  # dark on light, as scanned
    for scale, crop in ((8, (0, 0)), (3, (2, 1)), (5, (4, 3))):
        big = np.kron(small, np.ones((scale, scale), np.uint8))[crop[0]:, crop[1]:]
        assert np.array_equal(undo_blocky_enlargement(big.astype(np.float32)), small)
        assert np.array_equal(image_to_mnist(png_bytes(big), "blocky.png"), to_mnist(small))


@pytest.mark.parametrize("kwargs", [dict(), dict(scale=1), dict(thicken=2)])
def test_digits_that_are_not_blocky_are_read_unchanged(mnist, kwargs):
    grey = layout(mnist["test_pixels"][0], **kwargs).astype(np.float32)
    assert undo_blocky_enlargement(grey) is grey


def test_noise_and_plain_shapes_are_not_taken_for_blocky_images():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.float32)
    assert undo_blocky_enlargement(noise) is noise
    bar = np.zeros((64, 64), np.float32)
    bar[8:56, 30:34] = 255  # a "1" of one rectangle: too few edges to tell a grid
    assert undo_blocky_enlargement(bar) is bar


def filling_the_frame(digit):
    """An MNIST digit as a scan that fills the frame would hold it (as USPS's digits do): cropped
    to its ink, its longer side stretched to 28 px, the other centred."""
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    crop = Image.fromarray(digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    scale = 28 / max(crop.size)
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                       Image.Resampling.BILINEAR)
    frame = Image.new("L", (28, 28), 0)
    frame.paste(crop, ((28 - crop.width) // 2, (28 - crop.height) // 2))
    return np.asarray(frame)


def test_mnist_rows_are_in_its_frame_and_read_untouched(mnist):
    rows = mnist["test_pixels"][:2000]
    assert in_mnist_frame(rows).all()  # (all 10,000 held-out rows; 2 of train.csv's 42,000 not)
    out, reframed = reframe_rows(rows)
    assert not reframed.any()
    np.testing.assert_array_equal(out, rows)


def aligned_correlation(a, b):
    """Pixel correlation of two digits at the best of the 9 alignments within a pixel (two
    framings of one digit can round its centre of mass differently)."""
    return max(np.corrcoef(np.roll(a, (dy, dx), axis=(0, 1)).ravel(), b.ravel())[0, 1]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_digits_framed_otherwise_are_reframed_as_mnist_frames_them(mnist):
    """Moved off-centre, dark on light, filling the frame, or drawn small: each row comes back
    in MNIST's frame (light on dark, longer side 20 px, centre of mass at the centre), as its
    MNIST original reads."""
    digits = mnist["test_pixels"][:40]
    clear = (digits[:, 25:].sum(axis=(1, 2)) == 0) & (digits[:, :, :3].sum(axis=(1, 2)) == 0)
    digits = digits[clear]  # no ink in the margins the shift below cuts off
    moved = np.zeros_like(digits)
    moved[:, 3:, :25] = digits[:, :25, 3:]  # 3 px down and left, no ink lost
    filling = np.stack([filling_the_frame(d) for d in digits])
    small = np.zeros_like(digits)
    small[:, 7:21, 7:21] = [np.asarray(Image.fromarray(d).resize((14, 14), Image.Resampling.BOX))
                            for d in digits]
    originals = np.stack([to_mnist(d) for d in digits])
    inverted = 255 - digits  # dark ink on white, as a scan exported the wrong way round
    for kind, least in ((moved, 0.999), (inverted, 0.999), (filling, 0.9), (small, 0.75)):
        assert not in_mnist_frame(kind).any()
        out, reframed = reframe_rows(kind)
        assert reframed.all()
        for row in out.astype(float):  # MNIST's frame, give or take a blurred edge
            strong = row >= 0.15 * row.max()
            box = max(np.ptp(np.flatnonzero(strong.any(axis=1))),
                      np.ptp(np.flatnonzero(strong.any(axis=0)))) + 1
            assert 18 <= box <= 21
            assert np.abs(np.array(centre_of_mass(row)) - 13.5).max() <= 1.0
        assert min(aligned_correlation(a.astype(float), b.astype(float))
                   for a, b in zip(originals, out)) > least
    np.testing.assert_array_equal(reframe_rows(moved)[0], originals)  # a shift is undone


def test_rows_without_ink_are_left_as_they_are():
    rows = np.zeros((3, 28, 28), np.uint8)
    rows[1] = 20  # faint: below the ink contrast
    out, reframed = reframe_rows(rows)
    assert not reframed.any()
    np.testing.assert_array_equal(out, rows)


def test_rows_enlarged_without_smoothing_are_smoothed_before_reframing(mnist):
    """An 8x8 scan enlarged to fill the frame without smoothing (blocks of 3 and 4 px, no grid
    undo_blocky_enlargement can undo) reads like the smoothly enlarged one once reframed."""
    def scan(digit, how):
        small = Image.fromarray(digit).resize((8, 8), Image.Resampling.BOX)
        return np.asarray(small.resize((28, 28), how))

    digits = mnist["test_pixels"][:20]
    blocky = np.stack([scan(d, Image.Resampling.NEAREST) for d in digits])
    smooth = np.stack([scan(d, Image.Resampling.BILINEAR) for d in digits])
    assert all(looks_blocky(r) for r in blocky) and not any(looks_blocky(r) for r in smooth)
    assert not any(looks_blocky(r) for r in digits)  # MNIST's own anti-aliased strokes
    read_blocky, read_smooth = reframe_rows(blocky)[0], reframe_rows(smooth)[0]
    unsmoothed = np.stack([to_mnist(r) for r in blocky])
    closer = [aligned_correlation(s.astype(float), b.astype(float))
              > aligned_correlation(s.astype(float), u.astype(float))
              for s, b, u in zip(read_smooth, read_blocky, unsmoothed)]
    assert np.mean(closer) >= 0.75  # 17 of these 20
