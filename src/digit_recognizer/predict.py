"""Inference in layers: run directory -> model -> probabilities -> labels -> submission."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data import iter_test_chunks, to_inputs, write_submission
from .errors import InputError
from .images import load_digits, reframe_rows
from .novelty import (DIGIT_SPACE_FILE, feature_model, load_digit_space,
                      probabilities_and_features)
from .onnx_model import is_onnx_file, load_onnx
from .rundir import (CONFIG_FILE, ENSEMBLE_FILE, MODEL_FILE, check_run_dir, is_ensemble, members,
                     read_run_json)

PREDICT_BATCH = 1024  # images per forward call; large batches amortise per-call overhead
PREFETCH_CHUNKS = 4  # x 16 MiB of CSV read and checked before the model loads (Kaggle's: 51 MB)
# A run trained on at least this share of rows in MNIST's frame learned MNIST's framing
# (train.csv: 41,998 of 42,000 rows; a training CSV of frame-filling scans: none).
MNIST_FRAMED_SHARE = 0.99


@dataclass(frozen=True)
class LoadedRun:
    """A trained run: one model, or an ensemble's usable members (their probabilities are
    averaged), and how it predicts: with test-time augmentation or not, decided once, here,
    so every probability and every report made from this run agree on it."""
    run_dir: Path  # the run directory, or the exported .onnx file
    models: tuple  # one per member: keras.Model, or one onnx_model.OnnxModel for a whole export
    model_paths: tuple[Path, ...]
    configs: tuple[dict, ...]  # each member's config.json
    ensemble: dict | None = None  # ensemble.json; None for a single model
    tta: bool = False  # average over tta_views() of each image (7 views)
    # Each member's digit space and its model with a features output (novelty.py); empty
    # when any member lacks one (older runs, exports): no "far from any digit" check then.
    spaces: tuple = ()
    feature_nets: tuple = ()

    @property
    def is_ensemble(self) -> bool:
        return self.ensemble is not None

    @property
    def uses_tta(self) -> bool:
        """Predictions average TTA views: asked for here, or inside an exported graph."""
        return self.tta or any(getattr(m, "has_tta", False) for m in self.models)

    @property
    def training_data(self) -> dict:
        """What the run trained on ({"train_csv", "sha256", "rows"}; {} if not recorded): the
        ensemble's data, or the single model's (exports carry it in their metadata)."""
        source = self.ensemble or (self.configs[0] if self.configs else {})
        return source.get("data") or {}

    @property
    def learned_mnist_framing(self) -> bool:
        """Whether the run trained on digits framed as MNIST's (nearly all rows of a sample,
        train.share_in_mnist_frame): only then are CSV rows framed otherwise reframed for it.
        Runs that did not record it (older ones, exports made elsewhere) count as MNIST's."""
        return all(info.get("data", {}).get("in_mnist_frame", 1.0) >= MNIST_FRAMED_SHARE
                   for info in self.configs)

    @property
    def n_members(self) -> int:
        return len(self.configs) or len(self.models)

    @property
    def recipes(self) -> list[str]:
        return sorted({info["config"]["recipe"] for info in self.configs})

    def describe(self) -> dict:
        """The run's configuration for a report: config.json's, or the ensemble's and its
        members'."""
        if not self.configs:  # an .onnx file made elsewhere, without our metadata
            return {"model": str(self.run_dir)}
        if not self.is_ensemble:
            return self.configs[0]
        return {"ensemble": self.ensemble, "members": [info["config"] for info in self.configs]}


def load_run(run_dir, tta: bool | None = False) -> LoadedRun:
    """Load a run directory (a single model, or every completed member of an ensemble), or a
    model exported to ONNX (run by onnxruntime, without TensorFlow). `tta`: predictions average
    the test-time augmented views (7x the inference time); None: as the run's recipe says for
    a test CSV (`Config.tta`, every member's for an ensemble; an exported file: no)."""
    if is_onnx_file(run_dir):
        return load_exported(run_dir, bool(tta))
    run_dir = check_run_dir(run_dir)
    if not is_ensemble(run_dir):
        model, info = load_model_dir(run_dir)
        return LoadedRun(run_dir, (model,), (run_dir / MODEL_FILE,), (info,), None,
                         _recipe_tta([info]) if tta is None else tta,
                         *_digit_spaces([run_dir], [model]))
    ensemble = read_run_json(run_dir / ENSEMBLE_FILE)
    usable = [m for m in members(run_dir) if m.usable]
    if not usable:
        raise InputError(run_dir, "is an ensemble with no finished member yet "
                                  "(`digits train --add-members K` trains some)")
    loaded = [load_model_dir(m.run_dir) for m in usable]
    models = [model for model, _ in loaded]
    infos = tuple(info for _, info in loaded)
    return LoadedRun(run_dir, tuple(models), tuple(m.run_dir / MODEL_FILE for m in usable),
                     infos, ensemble, _recipe_tta(infos) if tta is None else tta,
                     *_digit_spaces([m.run_dir for m in usable], models))


def _recipe_tta(infos) -> bool:
    return all(info["config"].get("tta", False) for info in infos)


def _digit_spaces(run_dirs, models) -> tuple[tuple, tuple]:
    """(spaces, feature nets) for the far-from-any-digit check: one per member, or ((), ())
    if any member has no digit space."""
    spaces = [load_digit_space(Path(d) / DIGIT_SPACE_FILE) for d in run_dirs]
    if any(space is None for space in spaces):
        return (), ()
    return tuple(spaces), tuple(feature_model(m) for m in models)


def load_exported(path, tta: bool = False) -> LoadedRun:
    """An .onnx file from `digits export`: one graph, already averaging an ensemble's members
    (and the TTA views, if it was exported with --tta)."""
    model = load_onnx(path)
    if tta and model.has_tta:
        raise InputError(path, "already averages the test-time augmented views (exported "
                               "with --tta); drop --tta")
    info = model.info
    return LoadedRun(Path(path), (model,), (Path(path),), tuple(info.get("members", [])),
                     info.get("ensemble"), tta)


def load_model_dir(run_dir: Path) -> tuple[object, dict]:
    """A single-model run directory's kept model and config.json. Models load in Keras's
    safe_mode, which refuses to deserialise arbitrary Python code (lambdas) from a file."""
    model_path, config_path = run_dir / MODEL_FILE, run_dir / CONFIG_FILE
    info = read_run_json(config_path)
    if not model_path.exists():
        raise InputError(model_path, "missing: training has not finished a single epoch")
    from .backend import keras
    from .model import RandomPen  # noqa: F401 - registers our custom layers for loading

    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    except Exception as e:  # zip/h5/deserialisation errors all mean: not a usable model file
        raise InputError(model_path, f"cannot be loaded as a Keras model ({type(e).__name__}: "
                                     f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e
    if tuple(model.input_shape[1:]) != (28, 28, 1) or model.output_shape[-1] != 10:
        raise InputError(model_path, f"is not a digit model: input {model.input_shape}, "
                                     f"output {model.output_shape}")
    check_model_matches_config(model, info, config_path)
    return model, info


def check_model_matches_config(model, info: dict, config_path) -> None:
    """The model's built-in normalisation must be the one config.json records: a mismatch means
    the files come from different runs (and predictions would be silently wrong)."""
    try:
        mean = float(info["preprocessing"]["pixel_mean"])
        std = float(info["preprocessing"]["pixel_std"])
        layer = model.get_layer("normalise")
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(config_path, f"does not describe this model ({e})") from e
    if not (abs(layer.scale - 1.0 / std) <= 1e-6 * abs(layer.scale)
            and abs(layer.offset + mean / std) <= 1e-6 * max(1.0, abs(layer.offset))):
        raise InputError(config_path, "does not match model.keras: its normalisation "
                                      f"(mean {mean:.4g}, std {std:.4g}) differs from the "
                                      "model's; were files copied from different runs?")


def predict_proba(model, pixels: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """One model's class probabilities, float32 (n, 10), for pixels (n, 28, 28), 0-255."""
    x = to_inputs(pixels)
    out = np.empty((len(x), 10), dtype=np.float32)
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        out[start:start + len(batch)] = np.asarray(model.predict_on_batch(batch))
    return out


# Test-time augmentation: the image itself, moved one pixel each way, and turned 8 degrees
# each way (small versions of the training augmentation; fixed in advance, not tuned).
TTA_SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (rows, columns), pixels
TTA_ROTATIONS = (-8.0, 8.0)  # degrees


def tta_views(pixels: np.ndarray) -> list[np.ndarray]:
    """The images and their test-time variants, float32 (n, 28, 28) each, 0 = background."""
    from scipy import ndimage

    x = np.asarray(pixels, dtype=np.float32)
    views = [x]
    for dy, dx in TTA_SHIFTS:
        views.append(_shifted(x, dy, dx))
    for angle in TTA_ROTATIONS:
        views.append(np.clip(ndimage.rotate(x, angle, axes=(2, 1), reshape=False, order=1,
                                            cval=0.0), 0, 255))
    return views


def _shifted(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images (n, h, w) moved dy rows down and dx columns right, 0 where nothing moved in:
    scipy.ndimage.shift's order-0 result for whole pixels, by slicing (0.3-0.4 s less per 10,000
    images on 2 cores)."""
    out = np.zeros_like(x)
    h, w = x.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def run_proba(run: LoadedRun, pixels: np.ndarray, plain: np.ndarray | None = None) -> np.ndarray:
    """A run's probabilities: the mean over its members (and over the TTA views if the run
    was loaded with `tta`). `plain`: the members' mean for the images themselves when the
    caller has it already (run_outputs): only the other views still need the network."""
    views = tta_views(pixels) if run.tta else [pixels]
    total = np.zeros((len(pixels), 10), dtype=np.float64)
    if plain is not None:
        total += np.asarray(plain, dtype=np.float64) * len(run.models)
    for model in run.models:
        for view in views[0 if plain is None else 1:]:
            total += predict_proba(model, view)
    return (total / (len(run.models) * len(views))).astype(np.float32)


def run_outputs(run: LoadedRun, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities as run_proba gives them, each image's distance from the digits relative
    to the limit: above 1 is far from any digit; None for a run without digit spaces). The
    distance is the mean over members, of the image itself (TTA views do not enter it)."""
    if not run.spaces:
        exported = run.models[0] if len(run.models) == 1 else None
        if getattr(exported, "has_distance", False):  # an ONNX export computes both
            probabilities, distance = exported.outputs_on_batch(to_inputs(pixels))
            return run_proba(run, pixels, plain=probabilities), distance
        return run_proba(run, pixels), None
    x = to_inputs(pixels)
    total = np.zeros((len(x), 10), dtype=np.float64)
    distance = np.zeros(len(x), dtype=np.float64)
    for net, space in zip(run.feature_nets, run.spaces):
        p, features = probabilities_and_features(net, x)
        total += p
        distance += space.relative_distance(features, p)
    probabilities = run_proba(run, pixels, plain=total / len(run.spaces))
    return probabilities, (distance / len(run.spaces)).astype(np.float32)


@dataclass(frozen=True)
class DigitAnswer:
    """What a person asking about one image gets: a digit, or None and why not."""
    label: int | None
    probabilities: np.ndarray  # float32 (10,), also when label is None
    reason: str | None = None  # "no digit found (...)" when label is None
    distance: float | None = None  # from the digits, relative to the limit (novelty.py)


def far_from_digits_reason(distance: float) -> str:
    """The same words for both checks (novelty.py): distance from the digits, or doubt."""
    return (f"no digit found (unlike every digit the model learned: {distance:.1f} times what "
            "it accepts)")


def answer_digits(run: LoadedRun, digits: np.ndarray) -> list[DigitAnswer]:
    """MNIST-style digits (n, 28, 28) -> one DigitAnswer each: the most likely digit, or "no
    digit found" for an image far from every digit the run knows."""
    if len(digits) == 0:
        return []
    probabilities, distances = run_outputs(run, digits)
    answers = []
    if distances is None:  # a run without digit spaces: every image gets its digit
        distances = [None] * len(probabilities)
    for p, d in zip(probabilities, distances):
        far = d is not None and d > 1.0
        answers.append(DigitAnswer(None if far else int(np.argmax(p)), p,
                                   far_from_digits_reason(float(d)) if far else None,
                                   None if d is None else float(d)))
    return answers


def predict_labels(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(probabilities).argmax(axis=1).astype(np.uint8)


@dataclass(frozen=True)
class CsvPredictions:
    labels: np.ndarray  # uint8 (n,), one per row
    reframed_ids: np.ndarray  # 1-based ImageIds of the rows read after images.reframe_rows
    reframed_pixels: np.ndarray  # uint8 (len(reframed_ids), 28, 28): those rows as read

    @property
    def reframed(self) -> int:
        return len(self.reframed_ids)


def read_csv_rows(run: LoadedRun, pixels: np.ndarray, reframe: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """CSV rows (n, 28, 28) as every command reads them for `run`: with `reframe`, the rows
    whose digit is not framed as MNIST's are (images.reframe_rows: MNIST's own rows are
    untouched), if the run learned MNIST's framing (LoadedRun.learned_mnist_framing; a model
    trained on other framings reads rows as they are). Returns the rows and which of them
    were reframed (bool (n,))."""
    if not (reframe and run.learned_mnist_framing):
        return pixels, np.zeros(len(pixels), dtype=bool)
    return reframe_rows(pixels)


def predict_csv(run_dir, test_csv, submission_path, progress: bool | None = None,
                tta: bool | None = False, reframe: bool = True) -> CsvPredictions:
    """Read a test CSV in chunks, predict, write Kaggle's submission; returns the labels and
    the rows that were reframed (read_csv_rows), as read.

    Streams the CSV (bounded memory for any number of rows) and keeps only one byte per
    image; the submission is written atomically at the end, so bad input found half-way
    leaves no file. The first PREFETCH_CHUNKS chunks (all of a Kaggle-sized file) are read and
    checked before the model loads, so bad input is answered before TensorFlow starts.
    `progress=None` shows a progress bar only on a terminal.
    """
    chunks = iter_test_chunks(test_csv)
    checked = list(itertools.islice(chunks, PREFETCH_CHUNKS))
    run = load_run(run_dir, tta)
    labels, ids, seen, done = [], [], [], 0
    with tqdm(unit=" img", desc="predict", disable=None if progress is None else not progress,
              leave=False) as bar:
        for chunk in itertools.chain(checked, chunks):
            rows, moved = read_csv_rows(run, chunk, reframe)
            labels.append(predict_labels(run_proba(run, rows)))
            ids.append(done + 1 + np.flatnonzero(moved))
            seen.append(rows[moved])
            done += len(chunk)
            bar.update(len(chunk))
    labels = np.concatenate(labels)
    write_submission(submission_path, labels)
    return CsvPredictions(labels, np.concatenate(ids), np.concatenate(seen))


def top_k(probabilities: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """[(digit, probability), ...] for one image's probabilities, most likely first."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[:k]
    return [(int(d), float(probabilities[d])) for d in order]


def predict_images(run: LoadedRun, paths) -> tuple[np.ndarray, np.ndarray]:
    """Image files -> (the 28x28 digits the model saw, their probabilities)."""
    digits = load_digits(paths)
    return digits, run_proba(run, digits)
