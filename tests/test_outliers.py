"""Made-up non-digits for outlier exposure: what they look like and how they join training."""

import numpy as np

from digit_recognizer.images import to_mnist
from digit_recognizer.outliers import _shape, made_up_non_digits, outlier_count, with_outliers


def test_made_up_non_digits_are_read_as_mnist_reads_a_drawing():
    images = made_up_non_digits(40, seed=2)
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert (images.max(axis=(1, 2)) == 255).all()  # ink at full contrast, as to_mnist makes it
    # MNIST's frame: the ink within a 20 px box, its centre of mass near the middle
    for image in images:
        rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 20
    ys, xs = np.indices((28, 28))
    mass = images.sum(axis=(1, 2))
    assert np.abs((images * ys).sum(axis=(1, 2)) / mass - 13.5).max() < 2.5
    assert np.abs((images * xs).sum(axis=(1, 2)) / mass - 13.5).max() < 2.5
    # the shortcut past to_mnist's background fit gives what to_mnist gives
    rng = np.random.default_rng(1002)
    np.testing.assert_array_equal(images[0], to_mnist(_shape(rng)))
    # the same images for the same seed, others for another
    np.testing.assert_array_equal(images, made_up_non_digits(40, seed=2))
    assert not np.array_equal(images, made_up_non_digits(40, seed=3))


def test_with_outliers_appends_non_digits_with_the_uniform_target():
    digits = np.zeros((100, 28, 28), np.uint8)
    labels = np.arange(100) % 10
    x, y = with_outliers(digits, labels, 0.05, seed=2)
    assert outlier_count(100, 0.05) == 5 and outlier_count(100, 0.0) == 0
    assert x.shape == (105, 28, 28) and y.shape == (105, 10) and y.dtype == np.float32
    np.testing.assert_array_equal(x[:100], digits)
    np.testing.assert_array_equal(y[:100].argmax(axis=1), labels)
    assert (y[:100].max(axis=1) == 1).all()
    np.testing.assert_allclose(y[100:], 0.1)
    # a teacher's probabilities stay as they are
    soft = np.full((100, 10), 0.05, np.float32)
    soft[:, 0] = 0.55
    _, y = with_outliers(digits, soft, 0.05, seed=2)
    np.testing.assert_array_equal(y[:100], soft)
