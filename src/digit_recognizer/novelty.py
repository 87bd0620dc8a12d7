"""Far from any digit: a picture with ink but no digit in it (a letter, a star, a scribble).

A softmax always names a digit, often confidently, for a letter or a drawing of a house. The
check here looks instead at where the image lands in one of the network's hidden layers: the
layer named FEATURE_MAPS if the network has one (the strided net's second-stage maps, 4x4x64 =
1024 values), else the features the classifier reads (256 in the quick net): each digit's
training rows form a cloud there, and the Mahalanobis distance to the nearest cloud (one
covariance shared by the ten classes, Lee et al. 2018, "A Simple Unified Framework for
Detecting Out-of-Distribution Samples") says how unlike every digit the network has seen an
image is.

A model trained with made-up non-digits (Config.outliers, outliers.py) has learnt to be unsure
away from digits, and its feature space no longer tells them apart; its check reads that doubt
instead: 1 - the top probability, with the same kind of threshold (the same quantile of the
validation digits' doubt). Measured on the dev split: bench/README.md.

Fitted once per model, after training, on the training split; its threshold is the
THRESHOLD_QUANTILE of the validation split's distances, so by construction about 0.1% of
digits like the validation rows are answered "no digit found". That quantile was chosen on the
bench's dev sets (bench/handwriting.py --split dev; the measured trade-off is in
bench/README.md), never on MNIST's held-out test set. Saved as DIGIT_SPACE_FILE in the run
directory; a run without it (made before, or interrupted) predicts without this check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_path

DIGIT_SPACE_FILE = "digit_space.npz"
FEATURE_LAYER = "probabilities"  # the features are this (last, dense) layer's input, unless
# the network names another layer so (its output, flattened, is read instead). The strided net
# names its second stage's maps: there 26.4% of the dev not-digits are caught, on its 128
# classifier inputs 7.0%, with at most one more digit refused per dev set and network
# (bench/README.md, 2026-11-30).
FEATURE_MAPS = "digit_features"
THRESHOLD_QUANTILE = 99.9  # % of validation digits within the threshold
MAX_FIT_ROWS = 10_000  # training rows the clouds are fitted on (a seeded sample beyond that)
MIN_FIT_ROWS = 200  # fewer training rows than this: no digit space, no check
RIDGE = 1e-3  # added to the covariance's diagonal: dead ReLU features have zero variance


@dataclass(frozen=True)
class DigitSpace:
    means: np.ndarray  # float32 (10, d): each digit's mean feature vector
    precision: np.ndarray  # float32 (d, d): inverse of the shared covariance
    calibration: np.ndarray  # float32, sorted: the validation digits' squared distances
    quantile: float = THRESHOLD_QUANTILE  # % of `calibration` within the threshold
    # float32, sorted: the validation digits' top probabilities. Present for a run trained with
    # made-up non-digits: then the check reads the doubt (1 - top probability), not distances.
    confidence: np.ndarray | None = None

    @property
    def threshold(self) -> float:
        """The squared distance beyond which an image is far from any digit."""
        return max(float(np.percentile(self.calibration, self.quantile)), 1e-9)

    @property
    def doubt_limit(self) -> float:
        """With `confidence`: the most doubt (1 - top probability) a digit may show."""
        return max(1.0 - float(np.percentile(self.confidence, 100 - self.quantile)), 1e-6)

    def relative_distance(self, features: np.ndarray,
                          probabilities: np.ndarray | None = None) -> np.ndarray:
        """How far from any digit, relative to the limit, float32 (n,): above 1 means no
        digit. The squared distance to the nearest digit / threshold, or with `confidence`
        the doubt of `probabilities` (n, 10) / doubt_limit."""
        if self.confidence is not None:
            if probabilities is None:
                raise ValueError("this digit space reads the probabilities: pass them")
            top = np.asarray(probabilities, dtype=np.float64).max(axis=1)
            return ((1.0 - top) / self.doubt_limit).astype(np.float32)
        return (nearest_squared_distance(features, self.means, self.precision)
                / self.threshold).astype(np.float32)


def nearest_squared_distance(features, means, precision) -> np.ndarray:
    """Squared Mahalanobis distance of features (n, d) to the nearest of `means`, float64 (n,)."""
    f = np.asarray(features, dtype=np.float64)
    nearest = np.full(len(f), np.inf)
    for mean in np.asarray(means, dtype=np.float64):
        centred = f - mean
        nearest = np.minimum(nearest, np.einsum("ij,ij->i", centred @ precision, centred))
    return nearest


def fit_digit_space(features: np.ndarray, labels: np.ndarray, calibration: np.ndarray,
                    quantile: float = THRESHOLD_QUANTILE,
                    confidence: np.ndarray | None = None) -> DigitSpace:
    """Class means and shared covariance of training `features` (n, d) with `labels`; the
    threshold is the `quantile` % of the distances of `calibration` features (digits the model
    was not trained on: the validation split). `confidence`: the same digits' top
    probabilities, for a check that reads doubt instead (a run with made-up non-digits)."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    means = np.zeros((10, features.shape[1]))
    for c in classes:
        means[c] = features[labels == c].mean(axis=0)
    centred = features - means[labels]
    covariance = np.cov(centred, rowvar=False, bias=True).reshape(features.shape[1], -1)
    precision = np.linalg.inv(covariance + RIDGE * np.eye(len(covariance)))
    means, precision = means[classes].astype(np.float32), precision.astype(np.float32)
    distances = np.sort(nearest_squared_distance(calibration, means, precision))
    return DigitSpace(means, precision, distances.astype(np.float32), quantile,
                      None if confidence is None
                      else np.sort(np.asarray(confidence, dtype=np.float32)))


def feature_model(model):
    """The Keras model with a second output, the features (n, d): its FEATURE_MAPS layer's
    output flattened if it has one, else its FEATURE_LAYER's input."""
    from .backend import keras

    names = {layer.name for layer in model.layers}
    maps = model.get_layer(FEATURE_MAPS).output if FEATURE_MAPS in names else None
    return keras.Model(model.input, [model.output,
                                     features_tensor(maps, model.get_layer(FEATURE_LAYER).input)])


def features_tensor(maps, classifier_input):
    """The tensor the digit space is fitted on: the FEATURE_MAPS layer's output `maps`,
    flattened, if the network has that layer (else None), else the FEATURE_LAYER's input.
    Shared by feature_model and the export's rebuilt graphs, so both read the same values."""
    from .backend import keras

    if maps is None:
        return classifier_input
    # named: a loaded model's own Flatten may hold the default name
    return keras.layers.Flatten(name=f"{FEATURE_MAPS}_flat")(maps)


def probabilities_and_features(net, inputs: np.ndarray, batch_size: int = 1024):
    """A feature_model's two outputs for model inputs (n, 28, 28, 1), in batches of
    `batch_size` (predict_on_batch: Keras's predict() builds a tf.data pipeline per call)."""
    parts = [net.predict_on_batch(inputs[start:start + batch_size])
             for start in range(0, len(inputs), batch_size)]
    if not parts:
        return np.empty((0, 10), np.float32), np.empty((0, 0), np.float32)
    return tuple(np.concatenate([np.asarray(part[k], dtype=np.float32) for part in parts])
                 for k in (0, 1))


def save_digit_space(space: DigitSpace, path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, means=space.means, precision=space.precision,
                 calibration=space.calibration, quantile=np.float64(space.quantile),
                 **({} if space.confidence is None else {"confidence": space.confidence}))


def load_digit_space(path) -> DigitSpace | None:
    """The run's digit space, or None if it has none (a run made before this check)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            return DigitSpace(f["means"], f["precision"], f["calibration"],
                              float(f["quantile"]),
                              f["confidence"] if "confidence" in f.files else None)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(path, f"is not a readable digit space ({type(e).__name__})") from e
