"""Training: split, normalisation statistics, input pipeline, optimiser/schedule (callbacks.py
holds the Keras callbacks).

A run directory holds everything predict/evaluate need:
  model.keras   the kept epoch: the best by validation accuracy, or the last (config.checkpoint)
  config.json   resolved config, preprocessing statistics, data checksum, versions, result
  history.csv   per-epoch loss, accuracy, val_loss, val_accuracy, learning_rate, seconds
  curves.png    the tutorial's four curves
  digit_space.npz  where digits lie in the model's last hidden layer (novelty.py)
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .data import IMAGE_SIZE, N_CLASSES, DigitsData, load_train_csv, to_inputs
from .errors import DataWarning, InputError
from .files import check_writable, read_json, write_json_atomic
from .novelty import DIGIT_SPACE_FILE
from .outliers import outlier_count, with_outliers
from .plots import plot_curves
from .rundir import (BACKUP_DIR, CONFIG_FILE, CURVES_FILE, HISTORY_FILE, MODEL_FILE,
                     check_run_dir)


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray  # uint8 (n, 28, 28)
    y_train: np.ndarray  # uint8 (n,)
    x_val: np.ndarray
    y_val: np.ndarray
    val_indices: np.ndarray  # rows of the training data held out for validation


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_epoch: int  # 1-based: the epoch whose weights are model.keras (0: none finished)
    best_accuracy: float  # of `monitor`, at best_epoch
    monitor: str  # "val_accuracy", or "accuracy" when trained without a validation split
    epochs_run: int
    train_seconds: float
    history: "object"  # pandas.DataFrame, one row per epoch
    val_indices: np.ndarray  # rows of the training data held out for validation

    @property
    def best_val_accuracy(self) -> float | None:
        """The selected epoch's validation accuracy; None without a validation split."""
        return self.best_accuracy if self.monitor == "val_accuracy" else None


def split_train_val(data: DigitsData, val_fraction: float, seed: int) -> Split:
    """Seeded hold-out from the training file (the only validation we ever use).

    Stratified by digit where the file allows it (every digit present has 2+ rows and the
    validation part has a row for each); otherwise a seeded random split, with a DataWarning
    saying why. A file too small to keep a training row beside the validation rows is an
    InputError stating the minimum.
    """
    from sklearn.model_selection import train_test_split

    if data.labels is None:
        raise ValueError(f"{data.path} has no labels")
    check_enough_rows(data, val_fraction)
    if val_fraction <= 0:
        return Split(data.pixels, data.labels, data.pixels[:0], data.labels[:0],
                     np.arange(0))
    n = len(data)
    n_val = math.ceil(n * val_fraction)  # scikit-learn's rounding of a fractional test_size
    counts = np.bincount(data.labels, minlength=N_CLASSES)
    present = int((counts > 0).sum())
    rarest = int(np.argmin(np.where(counts > 0, counts, n + 1)))
    if counts[rarest] < 2 or min(n_val, n - n_val) < present:
        reason = (f"digit {rarest} has a single row" if counts[rarest] < 2 else
                  f"{n_val} validation rows cannot hold each of {present} digits")
        warnings.warn(DataWarning(f"{data.path}: validation split is not stratified ({reason}); "
                                  f"using a seeded random {n_val} of {n} rows"), stacklevel=2)
        stratify = None
    else:
        stratify = data.labels
    train_rows, val_rows = train_test_split(np.arange(n), test_size=n_val, random_state=seed,
                                            stratify=stratify)
    return Split(data.pixels[train_rows], data.labels[train_rows], data.pixels[val_rows],
                 data.labels[val_rows], val_rows)


def kfold_splits(data: DigitsData, folds: int, seed: int) -> list[Split]:
    """`folds` stratified folds of the training file: each row is validation in one of them."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise ValueError("cross-validation needs 2 or more folds")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [Split(data.pixels[t], data.labels[t], data.pixels[v], data.labels[v], v)
            for t, v in splitter.split(np.zeros(len(data)), data.labels)]


def check_enough_rows(data: DigitsData, val_fraction: float) -> None:
    """An InputError, stating the minimum, when holding out `val_fraction` leaves no row to
    train on (any seed: it depends on the row count alone)."""
    n = len(data)
    if val_fraction > 0 and n - math.ceil(n * val_fraction) < 1:
        raise InputError(data.path, f"has {n} row{'s' if n != 1 else ''}: holding out "
                                    f"{val_fraction:g} for validation needs at least "
                                    f"{min_rows_for_validation(val_fraction)} rows "
                                    "(or --val-fraction 0 to train on every row)")


def check_teacher(config: Config, run_dir) -> None:
    """With distillation, an InputError unless the teacher is another existing run."""
    if config.teacher:
        check_run_dir(config.teacher)
        if Path(config.teacher).resolve() == Path(run_dir).resolve():
            raise InputError(run_dir, "cannot be its own teacher: give --distill another run")


def check_can_train(data: DigitsData, config: Config, run_dir) -> None:
    """What train() checks before writing anything, for callers that write first (ensembles):
    enough rows for the validation split, and a usable teacher."""
    check_enough_rows(data, config.val_fraction)
    check_teacher(config, run_dir)


def min_rows_for_validation(val_fraction: float) -> int:
    """The fewest rows that leave one training row after holding out `val_fraction`."""
    n = 2
    while n - math.ceil(n * val_fraction) < 1:
        n += 1
    return n


def warn_missing_classes(data: DigitsData) -> None:
    """A digit with no training row is one the model can never answer: say so, once."""
    missing = [d for d, c in enumerate(np.bincount(data.labels, minlength=N_CLASSES)) if c == 0]
    if missing:
        names = ", ".join(map(str, missing))
        warnings.warn(DataWarning(f"{data.path}: no rows of digit{'s' if len(missing) > 1 else ''}"
                                  f" {names}: the model will never predict "
                                  f"{'them' if len(missing) > 1 else 'it'}"), stacklevel=2)


def pixel_statistics(pixels: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the training pixels, in pixel units (0-255).

    From the 256-bin histogram of the uint8 pixels: exact, and without the float64 copy of
    the images that took over a second for 38k rows on 2 cores (0.05 s this way)."""
    x = np.asarray(pixels)
    if x.dtype != np.uint8:
        x = np.asarray(x, dtype=np.float64)
        return float(x.mean()), float(x.std())
    flat = x.ravel()
    chunk = 1 << 20  # pixels per bincount call: bounds its int64 copy to 8 MB
    counts = sum((np.bincount(flat[i:i + chunk], minlength=256)
                  for i in range(0, len(flat), chunk)), np.zeros(256, np.int64)).astype(float)
    values = np.arange(256, dtype=np.float64)
    mean = float(counts @ values / counts.sum())
    return mean, float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))


def make_dataset(pixels, labels, batch_size: int, shuffle: bool, seed: int, augment=None):
    """In-memory tf.data pipeline of (raw float32 pixels, one-hot labels); `labels` are digits
    (n,) or, for distillation, target probabilities (n, 10) used as they are. `augment`: a
    Keras layer applied to each batch of pixels in training mode (model.build_augmentation).

    The images stay one uint8 tensor; the pipeline shuffles row numbers and gathers each batch
    (converted to float32 per batch): building it copies 30 MB once, where slicing a float32
    copy of the images into the pipeline took 0.6 s for 38k rows on 2 cores.
    Keras's own autotuning of tf.data stalled short fit() calls on 2 cores, so it is switched
    off and the pipeline is fixed: reshuffle each epoch, batch, gather (and augment), prefetch 2.
    """
    from .backend import keras  # noqa: F401  (TensorFlow imported quietly)
    import tensorflow as tf

    images = tf.constant(np.asarray(pixels, dtype=np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE,
                                                                     1))
    labels = np.asarray(labels)
    if labels.ndim == 2:  # probabilities
        targets = tf.constant(labels.astype(np.float32))

        def target_of(rows):
            return tf.gather(targets, rows)
    else:
        classes = tf.constant(labels.astype(np.int64))

        def target_of(rows):
            return tf.one_hot(tf.gather(classes, rows), N_CLASSES)
    ds = tf.data.Dataset.range(len(images))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

    def batch_of(rows):  # one map, in order (no parallel calls): the same seed, the same images
        x = tf.cast(tf.gather(images, rows), tf.float32)
        return (x if augment is None else augment(x, training=True)), target_of(rows)

    ds = ds.batch(batch_size).map(batch_of)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(2).with_options(options)


def learning_rate_schedule(config: Config, steps_per_epoch: int):
    """"onecycle": linear warm-up from peak/20 to the peak over warmup_fraction of the steps,
    then cosine decay to 0 at the last step; "plateau": the constant peak (the tutorial's,
    halved by ReduceLROnPlateau)."""
    from .backend import keras

    total = max(1, config.epochs * steps_per_epoch)
    if config.lr_schedule == "onecycle":
        warmup = int(config.warmup_fraction * total)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 20, decay_steps=max(1, total - warmup),
            alpha=0.0, warmup_target=config.learning_rate, warmup_steps=warmup)
    if config.lr_schedule == "plateau":
        return config.learning_rate
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")


def build_optimizer(config: Config, steps_per_epoch: int):
    from .backend import keras

    lr = learning_rate_schedule(config, steps_per_epoch)
    ema = {"use_ema": True, "ema_momentum": config.ema} if config.ema > 0 else {}
    if config.optimizer == "rmsprop":  # the tutorial's settings
        return keras.optimizers.RMSprop(learning_rate=lr, rho=0.9, epsilon=1e-8, **ema)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, **ema)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, **ema)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def compile_model(model, config: Config, steps_per_epoch: int):
    from .backend import keras

    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=config.steps_per_execution,
    )
    return model


def library_versions() -> dict[str, str]:
    from .backend import keras
    import sklearn

    versions = {"python": platform.python_version(), "keras": keras.__version__,
                "backend": keras.backend.backend(), "numpy": np.__version__,
                "scikit-learn": sklearn.__version__}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        from .backend import onednn_state

        versions["tensorflow"] = tf.__version__
        # oneDNN or Eigen kernels: the same model, other rounding and speed (tf_env.py)
        versions["onednn"] = onednn_state()
    return versions


def training_callbacks(config: Config, run_dir: Path, monitor: str, history) -> list:
    """The learning rate and seconds into the logs, the kept model saved, LR halved on plateaus
    (the tutorial's schedule), history.csv written, and BackupAndRestore (weights, optimiser
    state so the LR schedule continues, epoch counter) last, so an epoch counts as done for
    --resume only once its model and history are on disk; killed in between, the epoch is
    re-run and its history row replaced."""
    from . import callbacks
    from .backend import keras

    chosen = [callbacks.LogLearningRate(), callbacks.EpochTimer(),
              callbacks.KeptModelSaver(run_dir / MODEL_FILE, monitor, config.checkpoint,
                                       history, in_float32=config.precision != "float32")]
    if config.lr_schedule == "plateau":
        chosen.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss" if monitor == "val_accuracy" else "loss", patience=3, factor=0.5,
            min_lr=1e-5))
    return [*chosen, callbacks.HistoryWriter(history),
            keras.callbacks.BackupAndRestore(str(run_dir / BACKUP_DIR), double_checkpoint=True)]


def ema_swap(config: Config) -> list:
    """With a weight average (`config.ema`), the callback that puts the averaged weights in the
    model for validation and at each epoch's end, first in the list so that every other
    callback (the best-model saver, the backup, the bench's observer) sees them."""
    from .callbacks import SwapWeightAverage

    return [SwapWeightAverage()] if config.ema > 0 else []


def share_in_mnist_frame(pixels: np.ndarray, seed: int, sample: int = 2000) -> float:
    """The share of training rows framed as MNIST's are (images.in_mnist_frame), on a seeded
    sample: a model that learned other framings must read its CSVs as they are
    (predict.read_csv_rows)."""
    from .images import in_mnist_frame

    if len(pixels) == 0:
        return 1.0
    rows = np.random.default_rng(seed).choice(len(pixels), min(sample, len(pixels)),
                                              replace=False)
    return round(float(in_mnist_frame(pixels[rows]).mean()), 4)


def augmentation_place(config: Config) -> str:
    """Where training applies the recipe's augmentation: "input pipeline" on TensorFlow, whose
    tf.data threads run it beside the training step (2 cores, 2026-12-01: epochs of `default`
    3-10% shorter in side-by-side runs), "model" on other backends, "none" without it."""
    from .backend import keras

    if not config.augment:
        return "none"
    return "input pipeline" if keras.backend.backend() == "tensorflow" else "model"


def run_info(config: Config, data: DigitsData, split: Split, mean: float, std: float) -> dict:
    """config.json: everything predict/evaluate need, and how the run was made."""
    return {
        "status": "training",
        "config": config.to_dict(),
        "preprocessing": {
            "input": "raw pixels 0-255, shape (28, 28, 1); normalised inside the model",
            "pixel_mean": mean, "pixel_std": std,
            "statistics_from": "training split only",
        },
        "data": {"train_csv": str(data.path), "sha256": data.sha256, "rows": len(data),
                 "train_rows": len(split.x_train), "val_rows": len(split.x_val),
                 "in_mnist_frame": share_in_mnist_frame(split.x_train, config.seed)},
        "versions": library_versions(),
        "seed": config.seed,
        "command": " ".join(sys.argv),
    }


def train(config: Config, train_data: DigitsData | str | os.PathLike, run_dir,
          callbacks: list | None = None, verbose: int | str = "auto",
          resume: bool = False, split: Split | None = None) -> TrainResult:
    """Train `config` on a labeled CSV (or already loaded data) and fill `run_dir`.

    Interrupted (Ctrl-C, SIGTERM turned into KeyboardInterrupt by the CLI) it keeps the best
    model and history so far, writes the curves, marks config.json "interrupted" and re-raises.
    `resume=True` continues from the last completed epoch (see `resume_training`). `split`:
    the training/validation rows to use (e.g. a cross-validation fold) instead of the seeded
    hold-out of `config.val_fraction`.
    """
    # Everything that can be wrong with the input is checked before Keras (seconds) loads.
    data = train_data if isinstance(train_data, DigitsData) else load_train_csv(train_data)
    split = split or split_train_val(data, config.val_fraction, config.seed)
    warn_missing_classes(data)
    run_dir = Path(run_dir)
    check_teacher(config, run_dir)
    check_writable(run_dir)

    from .backend import keras
    from .callbacks import History, interrupts_between_batches
    from .model import build_augmentation, build_model, resolve_precision

    config = resolve_precision(config)  # config.json records the precision this machine used

    if not resume:  # a fresh run never picks up a stale backup or history
        shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)
        (run_dir / HISTORY_FILE).unlink(missing_ok=True)
    (run_dir / DIGIT_SPACE_FILE).unlink(missing_ok=True)  # fitted again on the final model
    history = History(run_dir / HISTORY_FILE, _history_rows(run_dir) if resume else None)
    keras.utils.set_random_seed(config.seed)
    mean, std = pixel_statistics(split.x_train)  # of the digits only
    n_train = len(split.x_train) + outlier_count(len(split.x_train), config.outliers)
    steps_per_epoch = -(-n_train // config.batch_size)
    # A resumed run keeps its augmentation where it was (its backup holds that model's
    # variables); runs started before config.json recorded it had it in the model.
    augmentation = (read_json(run_dir / CONFIG_FILE).get("augmentation", "model") if resume
                    else augmentation_place(config))
    model = compile_model(build_model(config, mean, std,
                                      with_augmentation=augmentation == "model"),
                          config, steps_per_epoch)
    monitor = "val_accuracy" if len(split.x_val) else "accuracy"
    info = {**run_info(config, data, split, mean, std), "augmentation": augmentation}
    write_json_atomic(run_dir / CONFIG_FILE, info)

    targets = (teacher_targets(config.teacher, split.x_train, config.teacher_temperature)
               if config.teacher else split.y_train)
    x_train = split.x_train
    if config.outliers > 0:  # made-up non-digits after the digits, with the uniform target
        x_train, targets = with_outliers(x_train, targets, config.outliers, config.seed)
    train_ds = make_dataset(x_train, targets, config.batch_size, True, config.seed,
                            augment=build_augmentation(config)
                            if augmentation == "input pipeline" else None)
    val_ds = (make_dataset(split.x_val, split.y_val, 1024, False, config.seed)
              if len(split.x_val) else None)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    start = time.perf_counter()
    try:
        with interrupts_between_batches() as stop_point:
            # shuffle=False: the tf.data pipeline already reshuffles every epoch.
            model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, verbose=verbose,
                      shuffle=False,
                      callbacks=[stop_point, *ema_swap(config), *(callbacks or []),
                                 *training_callbacks(config, run_dir, monitor, history)])
    except KeyboardInterrupt:
        _finish(run_dir, info, history, monitor, "interrupted", time.perf_counter() - start,
                split.val_indices)
        raise
    seconds = time.perf_counter() - start
    fit_run_digit_space(run_dir, split, config.seed, by_doubt=config.outliers > 0)
    return _finish(run_dir, info, history, monitor, "complete", seconds, split.val_indices)


def teacher_targets(teacher, pixels: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Distillation targets: the teacher run's probabilities for `pixels` (its members'
    mean, without test-time augmentation), softened by `temperature`, float32 (n, 10)."""
    from .predict import load_run, run_proba

    p = run_proba(load_run(teacher), pixels).astype(np.float64)
    if temperature != 1.0:
        p = np.maximum(p, 1e-30) ** (1.0 / temperature)
        p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32)


def fit_run_digit_space(run_dir: Path, split: Split, seed: int, by_doubt: bool = False) -> None:
    """The kept model's digit space (novelty.py), fitted on up to MAX_FIT_ROWS training rows
    and calibrated on the validation rows (on the training rows themselves without a split).
    `by_doubt` (a run trained with made-up non-digits): the check reads the top probability,
    calibrated on the same rows, instead of the feature-space distance."""
    from .backend import keras
    from .model import RandomPen  # noqa: F401 - registers our custom layers for loading
    from .novelty import (MAX_FIT_ROWS, MIN_FIT_ROWS, feature_model, fit_digit_space,
                          probabilities_and_features, save_digit_space)

    if not (run_dir / MODEL_FILE).exists() or len(split.x_train) < MIN_FIT_ROWS:
        return  # too few rows to place ten clouds in the feature space: no check
    model = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
    features = feature_model(model)
    rows = np.arange(len(split.x_train))
    if len(rows) > MAX_FIT_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_FIT_ROWS, replace=False))

    fit_p, fitted = probabilities_and_features(features, to_inputs(split.x_train[rows]))
    val_p, calibration = (probabilities_and_features(features, to_inputs(split.x_val))
                          if len(split.x_val) else (fit_p, fitted))
    save_digit_space(fit_digit_space(fitted, split.y_train[rows], calibration,
                                     confidence=val_p.max(axis=1) if by_doubt else None),
                     run_dir / DIGIT_SPACE_FILE)


def _history_rows(run_dir: Path) -> list[dict]:
    import pandas as pd

    path = run_dir / HISTORY_FILE
    return pd.read_csv(path).to_dict("records") if path.exists() else []


def _finish(run_dir: Path, info: dict, history, monitor: str, status: str, seconds: float,
            val_indices: np.ndarray) -> TrainResult:
    """Curves, the final config.json and the result, from the history held in memory (the
    rows history.csv holds)."""
    frame = history.frame()
    info["status"] = status
    if frame.empty:  # interrupted before the first epoch ended
        write_json_atomic(run_dir / CONFIG_FILE, info)
        return TrainResult(run_dir, 0, float("nan"), monitor, 0, seconds, frame, val_indices)
    from .callbacks import kept_epoch_index  # the rule the saver applied

    kept = kept_epoch_index(frame[monitor].tolist(), info["config"].get("checkpoint", "best"))
    best_epoch, best_value = int(frame["epoch"][kept]), float(frame[monitor][kept])
    plot_curves(frame, run_dir / CURVES_FILE, title=f"recipe '{info['config']['recipe']}'")
    info["result"] = {"best_epoch": best_epoch, "monitor": monitor,
                      "best_val_accuracy": best_value if monitor == "val_accuracy" else None,
                      "epochs_run": len(frame), "train_seconds": round(seconds, 2)}
    write_json_atomic(run_dir / CONFIG_FILE, info)
    return TrainResult(run_dir, best_epoch, best_value, monitor, len(frame), seconds, frame,
                       val_indices)


def resume_training(run_dir, verbose: int | str = "auto") -> TrainResult:
    """Continue an interrupted run from its last completed epoch, with the same config, data,
    optimiser state and learning-rate schedule."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        raise InputError(config_path, "missing: nothing to resume")
    info = read_json(config_path)
    if info.get("status") == "complete":
        raise InputError(run_dir, "finished training already: nothing to resume")
    if not (run_dir / BACKUP_DIR).is_dir():
        raise InputError(run_dir / BACKUP_DIR, "missing: no completed epoch to resume from")
    data = load_train_csv(info["data"]["train_csv"])
    if data.sha256 != info["data"]["sha256"]:
        raise InputError(data.path, "changed since this run started (sha256 differs)")
    return train(Config.from_dict(info["config"]), data, run_dir, verbose=verbose, resume=True)


def result_of(run_dir) -> TrainResult:
    """The TrainResult a finished run directory records (config.json's result, history.csv):
    for runs trained elsewhere, e.g. by a Ray worker."""
    import pandas as pd

    run_dir = Path(run_dir)
    info = read_json(run_dir / CONFIG_FILE)
    result = info["result"]
    best = result["best_val_accuracy"]
    history = pd.read_csv(run_dir / HISTORY_FILE)
    if best is None:  # trained without validation: the selected epoch's training accuracy
        best = float(history["accuracy"][result["best_epoch"] - 1])
    return TrainResult(run_dir, result["best_epoch"], best, result["monitor"],
                       result["epochs_run"], result["train_seconds"], history, np.arange(0))
