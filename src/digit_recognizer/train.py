"""Training: split, normalisation statistics, input pipeline, optimiser/schedule, Keras callbacks.

A run directory holds everything predict/evaluate need:
  model.keras   best epoch by validation accuracy (written atomically)
  config.json   resolved config, preprocessing statistics, data checksum, versions, result
  history.csv   per-epoch loss, accuracy, val_loss, val_accuracy, learning_rate, seconds
  curves.png    the tutorial's four curves
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .data import DigitsData, load_train_csv
from .errors import DataWarning, InputError
from .files import atomic_path, read_json, write_json_atomic
from .rundir import BACKUP_DIR, CONFIG_FILE, CURVES_FILE, HISTORY_FILE, MODEL_FILE

N_CLASSES = 10


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray  # uint8 (n, 28, 28)
    y_train: np.ndarray  # uint8 (n,)
    x_val: np.ndarray
    y_val: np.ndarray


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_val_accuracy: float  # training accuracy when monitor == "accuracy" (no validation)
    best_epoch: int  # 1-based
    epochs_run: int
    train_seconds: float
    history: "object"  # pandas.DataFrame, one row per epoch
    monitor: str = "val_accuracy"  # "accuracy" when trained without a validation split


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
    if val_fraction <= 0:
        return Split(data.pixels, data.labels, data.pixels[:0], data.labels[:0])
    n = len(data)
    n_val = math.ceil(n * val_fraction)  # scikit-learn's rounding of a fractional test_size
    if n - n_val < 1:
        raise InputError(data.path, f"has {n} row{'s' if n != 1 else ''}: holding out "
                                    f"{val_fraction:g} for validation needs at least "
                                    f"{min_rows_for_validation(val_fraction)} rows "
                                    "(or --val-fraction 0 to train on every row)")
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
    x_tr, x_val, y_tr, y_val = train_test_split(
        data.pixels, data.labels, test_size=n_val, random_state=seed, stratify=stratify)
    return Split(x_tr, y_tr, x_val, y_val)


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
    """Mean and standard deviation of the training pixels, in pixel units (0-255)."""
    x = np.asarray(pixels, dtype=np.float64)
    return float(x.mean()), float(x.std())


def to_inputs(pixels: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) -> float32 (n, 28, 28, 1) raw pixels, the models' input."""
    return np.asarray(pixels, dtype=np.float32).reshape(-1, 28, 28, 1)


def make_dataset(pixels, labels, batch_size: int, shuffle: bool, seed: int):
    """In-memory tf.data pipeline of (raw float32 pixels, one-hot labels).

    Keras's own autotuning of tf.data stalled short fit() calls on 2 cores, so it is switched
    off and the pipeline is fixed: cache in memory, reshuffle each epoch, batch, prefetch 2.
    """
    from .backend import keras  # noqa: F401  (TensorFlow imported quietly)
    import tensorflow as tf

    x = to_inputs(pixels)
    y = np.eye(10, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def build_optimizer(config: Config, steps_per_epoch: int):
    from .backend import keras

    total = max(1, config.epochs * steps_per_epoch)
    if config.lr_schedule == "onecycle":
        warmup = int(config.warmup_fraction * total)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 20, decay_steps=max(1, total - warmup),
            alpha=0.0, warmup_target=config.learning_rate, warmup_steps=warmup)
    elif config.lr_schedule == "plateau":
        lr = config.learning_rate
    else:
        raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")
    if config.optimizer == "rmsprop":  # the tutorial's settings
        return keras.optimizers.RMSprop(learning_rate=lr, rho=0.9, epsilon=1e-8)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay)
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
        versions["tensorflow"] = tf.__version__
    return versions


def _callbacks(config: Config, run_dir: Path, has_val: bool, extra: list,
               best_so_far: float | None, history_rows: dict):
    from .backend import keras

    from .plots import write_history

    class LogLearningRate(keras.callbacks.Callback):
        """Puts the optimiser's current learning rate into the epoch logs (history.csv)."""

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None and "learning_rate" not in logs:
                logs["learning_rate"] = float(
                    keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["seconds"] = time.perf_counter() - self.start

    class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
        """Keras's ModelCheckpoint, saving to a temporary name then renaming over model.keras,
        so a crash mid-save never leaves a half-written model."""

        def __init__(self, final_path: Path, **kwargs):
            self.final_path = final_path
            self.tmp_path = final_path.with_name(f".{final_path.stem}.tmp.keras")
            super().__init__(str(self.tmp_path), **kwargs)

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if self.tmp_path.exists():
                with open(self.tmp_path, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(self.tmp_path, self.final_path)

    class HistoryWriter(keras.callbacks.Callback):
        """Rewrites history.csv atomically after every epoch (it survives an interruption).
        Rows are keyed by epoch, so an epoch re-run after a resume replaces its old row."""

        def on_epoch_end(self, epoch, logs=None):
            history_rows[epoch + 1] = {"epoch": epoch + 1,
                                       **{k: float(v) for k, v in (logs or {}).items()}}
            write_history(run_dir / HISTORY_FILE, [history_rows[e] for e in sorted(history_rows)])

    monitor = "val_accuracy" if has_val else "accuracy"
    callbacks = [LogLearningRate(), EpochTimer(),
                 # A resumed run keeps its best model unless a later epoch beats it.
                 AtomicModelCheckpoint(run_dir / MODEL_FILE, monitor=monitor, mode="max",
                                       save_best_only=True, initial_value_threshold=best_so_far)]
    if config.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss" if has_val else "loss", patience=3, factor=0.5, min_lr=1e-5))
    # BackupAndRestore (weights, optimiser state so the LR schedule continues, epoch counter)
    # comes last, so an epoch counts as done for --resume only once its model and history
    # are on disk; killed in between, the epoch is re-run and its history row replaced.
    backup = keras.callbacks.BackupAndRestore(str(run_dir / BACKUP_DIR), double_checkpoint=True)
    return [*extra, *callbacks, HistoryWriter(), backup]


def check_writable(directory: Path) -> None:
    """Fail before training, not after an hour, when the run directory cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / ".write-test") as tmp:
            tmp.write_bytes(b"0" * 65536)  # a little data, so a full disk shows up too
        (directory / ".write-test").unlink()
    except OSError as e:
        raise InputError(directory, f"cannot be written ({e.strerror or e})") from e


def train(config: Config, train_data: DigitsData | str | os.PathLike, run_dir,
          callbacks: list | None = None, verbose: int | str = "auto",
          resume: bool = False) -> TrainResult:
    """Train `config` on a labeled CSV (or already loaded data) and fill `run_dir`.

    Interrupted (Ctrl-C, SIGTERM turned into KeyboardInterrupt by the CLI) it keeps the best
    model and history so far, writes the curves, marks config.json "interrupted" and re-raises.
    `resume=True` continues from the last completed epoch (see `resume_training`).
    """
    import pandas as pd

    # Everything that can be wrong with the input is checked before Keras (seconds) loads.
    data = train_data if isinstance(train_data, DigitsData) else load_train_csv(train_data)
    split = split_train_val(data, config.val_fraction, config.seed)
    warn_missing_classes(data)
    run_dir = Path(run_dir)
    check_writable(run_dir)

    from .backend import keras
    from .model import build_model
    from .plots import plot_curves

    if not resume:  # a fresh run never picks up a stale backup or history
        import shutil
        shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)
        (run_dir / HISTORY_FILE).unlink(missing_ok=True)
    keras.utils.set_random_seed(config.seed)

    mean, std = pixel_statistics(split.x_train)
    steps_per_epoch = -(-len(split.x_train) // config.batch_size)
    model = compile_model(build_model(config, mean, std), config, steps_per_epoch)
    has_val = len(split.x_val) > 0
    monitor = "val_accuracy" if has_val else "accuracy"

    history_rows, best_so_far = {}, None
    if resume and (run_dir / HISTORY_FILE).exists():
        previous = pd.read_csv(run_dir / HISTORY_FILE)
        history_rows = {int(r["epoch"]): r for r in previous.to_dict("records")}
        best_so_far = float(previous[monitor].max()) if len(previous) else None

    info = {
        "status": "training",
        "config": config.to_dict(),
        "preprocessing": {
            "input": "raw pixels 0-255, shape (28, 28, 1); normalised inside the model",
            "pixel_mean": mean, "pixel_std": std,
            "statistics_from": "training split only",
        },
        "data": {"train_csv": str(data.path), "sha256": data.sha256, "rows": len(data),
                 "train_rows": len(split.x_train), "val_rows": len(split.x_val)},
        "versions": library_versions(),
        "seed": config.seed,
        "command": " ".join(sys.argv),
    }
    write_json_atomic(run_dir / CONFIG_FILE, info)

    train_ds = make_dataset(split.x_train, split.y_train, config.batch_size, True, config.seed)
    val_ds = (make_dataset(split.x_val, split.y_val, 1024, False, config.seed)
              if has_val else None)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    start = time.perf_counter()

    def finish(status: str) -> TrainResult:
        """Curves, final config.json and the result, from the history rows held in memory
        (the same rows HistoryWriter has written to history.csv)."""
        seconds = time.perf_counter() - start
        frame = pd.DataFrame([history_rows[e] for e in sorted(history_rows)])
        info["status"] = status
        if frame.empty:  # interrupted before the first epoch ended
            write_json_atomic(run_dir / CONFIG_FILE, info)
            return TrainResult(run_dir, float("nan"), 0, 0, seconds, frame, monitor)
        best = int(frame[monitor].idxmax())
        best_epoch, best_value = int(frame["epoch"][best]), float(frame[monitor][best])
        plot_curves(frame, run_dir / CURVES_FILE, title=f"recipe '{config.recipe}'")
        info["result"] = {"best_epoch": best_epoch, f"best_{monitor}": best_value,
                          "epochs_run": len(frame), "train_seconds": round(seconds, 2)}
        write_json_atomic(run_dir / CONFIG_FILE, info)
        return TrainResult(run_dir, best_value, best_epoch, len(frame), seconds, frame,
                           monitor)

    try:
        # shuffle=False: the tf.data pipeline already reshuffles every epoch.
        model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, verbose=verbose,
                  shuffle=False, callbacks=_callbacks(config, run_dir, has_val, callbacks or [],
                                                      best_so_far, history_rows))
    except KeyboardInterrupt:
        finish("interrupted")
        raise
    return finish("complete")


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
