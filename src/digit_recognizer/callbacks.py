"""The training loop's Keras callbacks, and the per-epoch history they keep on disk.

Imported by `train()` once its input is checked (this module imports Keras).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path

from .backend import keras
from .files import atomic_path
from .plots import write_history


class History:
    """Per-epoch rows (epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, seconds),
    keyed by epoch so an epoch re-run after a resume replaces its old row; history.csv is
    rewritten atomically after every epoch, so it survives an interruption."""

    def __init__(self, path: Path, rows: list[dict] | None = None):
        self.path = Path(path)
        self.rows = {int(r["epoch"]): dict(r) for r in rows or []}

    def record(self, epoch: int, logs: dict) -> None:
        self.rows[epoch] = {"epoch": epoch, **{k: float(v) for k, v in logs.items()}}
        write_history(self.path, [self.rows[e] for e in sorted(self.rows)])

    def frame(self):
        import pandas as pd

        return pd.DataFrame([self.rows[e] for e in sorted(self.rows)])


class LogLearningRate(keras.callbacks.Callback):
    """Puts the optimiser's current learning rate into the epoch logs (history.csv)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "learning_rate" not in logs:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class EpochTimer(keras.callbacks.Callback):
    """Puts the epoch's wall seconds into the epoch logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self.start


def kept_epoch_index(values, checkpoint: str) -> int:
    """Which epoch a run keeps in model.keras, 0-based, given `monitor`'s value after each
    epoch so far: the last (config.checkpoint "last"), or the first with the highest value
    ("best"; an epoch without a value never wins). The saver below applies it after every
    epoch, and train() reads the kept epoch back with it: one rule for both."""
    if checkpoint == "last":
        return len(values) - 1
    scores = [float("-inf") if v is None or v != v else float(v) for v in values]  # v != v: NaN
    return scores.index(max(scores))


class KeptModelSaver(keras.callbacks.Callback):
    """Saves the model at every epoch that kept_epoch_index keeps so far (for "best", Keras's
    ModelCheckpoint with save_best_only), through a temporary file renamed over `path`: a
    crash mid-save never leaves a half-written model. `history` holds the epochs of an
    interrupted run, which the rule weighs too. `in_float32`: the model trains in another
    precision (config.precision) and is saved as its float32 copy (model.float32_copy)."""

    def __init__(self, path: Path, monitor: str, checkpoint: str, history: History,
                 in_float32: bool = False):
        super().__init__()
        self.path, self.monitor, self.checkpoint = Path(path), monitor, checkpoint
        self.history, self.in_float32 = history, in_float32
        self._copy = None  # the float32 copy, built once, its weights set at each save

    def on_epoch_end(self, epoch, logs=None):
        done = self.history.rows  # 1-based epochs; a re-run epoch's old row does not count
        values = [done[e].get(self.monitor) for e in sorted(done) if e <= epoch]
        values.append((logs or {}).get(self.monitor))
        if kept_epoch_index(values, self.checkpoint) == len(values) - 1:
            kept = self.model
            if self.in_float32:
                from .model import float32_copy

                if self._copy is None:
                    self._copy = float32_copy(self.model)
                else:
                    self._copy.set_weights(self.model.get_weights())
                kept = self._copy
            with atomic_path(self.path) as tmp:
                kept.save(tmp)


class SwapWeightAverage(keras.callbacks.SwapEMAWeights):
    """Keras's SwapEMAWeights(swap_on_epoch=True): the weight average (the optimizer's
    `use_ema`) is in the model for validation and at each epoch's end, the raw weights while
    it trains. A run resumed from BackupAndRestore starts from a backup taken at an epoch's
    end, i.e. with the average in the model and the raw weights in the optimizer's slots, which
    Keras's callback, fresh, does not know: so a fit that begins past epoch 0 marks it so,
    and the first epoch swaps the raw weights back in to train on."""

    def __init__(self):
        super().__init__(swap_on_epoch=True)
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started and epoch > 0:
            self._ema_weights_in_model = True  # SwapEMAWeights' own flag (keras 3.15)
        self._started = True
        super().on_epoch_begin(epoch, logs)


class HistoryWriter(keras.callbacks.Callback):
    def __init__(self, history: History):
        super().__init__()
        self.history = history

    def on_epoch_end(self, epoch, logs=None):
        self.history.record(epoch + 1, logs or {})


class EpochLogger(keras.callbacks.Callback):
    """One line per epoch to `log` (e.g. print): `PREFIX: epoch E/N  metrics  seconds`; the
    progress of ensemble members, whose Keras progress bars are off."""

    def __init__(self, log, prefix: str, epochs: int):
        super().__init__()
        self.log, self.prefix, self.epochs = log, prefix, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        shown = "  ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items()
                          if k in ("loss", "accuracy", "val_loss", "val_accuracy"))
        self.log(f"{self.prefix}: epoch {epoch + 1}/{self.epochs}  {shown}  "
                 f"{time.perf_counter() - self.start:.1f} s")


class StopBetweenBatches(keras.callbacks.Callback):
    """Raises a held signal's exception where an epoch or a batch begins (see
    `interrupts_between_batches`)."""

    def __init__(self):
        super().__init__()
        self.pending = None  # (signal number, the handler that raises), once one arrived

    def raise_pending(self) -> None:
        if self.pending is not None:
            signum, handler = self.pending
            self.pending = None
            handler(signum, None)

    def on_epoch_begin(self, epoch, logs=None):
        self.raise_pending()

    def on_train_batch_begin(self, batch, logs=None):
        self.raise_pending()

    def on_train_end(self, logs=None):  # after the last epoch; first, so the backup is kept
        self.raise_pending()


@contextlib.contextmanager
def interrupts_between_batches(signals=(signal.SIGINT, signal.SIGTERM)):
    """For a fit(): a SIGINT or SIGTERM whose handler is Python code (Python's Ctrl-C, the
    CLI's SIGTERM, both raising KeyboardInterrupt) is held and that handler run where the next
    epoch or batch begins or the training ends, by the callback this yields (put it first).
    Raised at once, the exception lands wherever the main thread is, at an epoch's end inside
    Keras writing the checkpoint and backup or TensorFlow making the next epoch's iterator;
    `digits train` sent SIGTERM just after an epoch once died of a segmentation fault (CI,
    stop 27).

    A repeated signal is held too: an ensemble's member gets Ctrl-C from the terminal and again
    from its parent. The wait is short (32 steps at most, or one validation pass), and a
    handler could not interrupt a fit stuck inside TensorFlow's C++ before either, as Python
    runs it only between bytecodes. Outside the main thread nothing changes."""
    stopper = StopBetweenBatches()
    if threading.current_thread() is not threading.main_thread():
        yield stopper
        return

    def hold(signum, frame):
        stopper.pending = stopper.pending or (signum, previous[signum])

    previous = {s: h for s in signals if callable(h := signal.getsignal(s))}
    for s in previous:
        signal.signal(s, hold)
    try:
        yield stopper
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    stopper.raise_pending()  # came after the training ended: not lost
