"""Interruptions, resume, kills at random moments, untrusted run files, unwritable outputs."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pandas as pd
import pytest

from digit_recognizer.cli import _sigterm_as_interrupt
from digit_recognizer.config import get_recipe
from digit_recognizer.errors import InputError
from digit_recognizer.predict import load_run
from digit_recognizer.train import resume_training, train

TINY = dict(epochs=4, batch_size=64, width=4)


class StopAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_interrupt_keeps_files_and_resume_matches_an_uninterrupted_run(small_demo, tmp_path):
    config = get_recipe("default").replace(**TINY)
    full = train(config, small_demo.train_csv, tmp_path / "full", verbose=0)

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config, small_demo.train_csv, run, callbacks=[StopAtEpoch(2)], verbose=0)
    info = json.loads((run / "config.json").read_text())
    assert info["status"] == "interrupted"
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [1, 2]
    assert (run / "curves.png").exists() and (run / "backup").is_dir()
    load_run(run)  # the best checkpoint so far is usable

    resumed = resume_training(run, verbose=0)
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert json.loads((run / "config.json").read_text())["status"] == "complete"
    # Same optimiser state and schedule: the learning rates match the uninterrupted run's.
    np.testing.assert_allclose(history["learning_rate"], full.history["learning_rate"],
                               rtol=1e-5)
    assert resumed.epochs_run == 4
    assert not (run / "backup").exists()
    with pytest.raises(InputError, match="nothing to resume"):
        resume_training(run)


def test_a_run_resumes_with_its_augmentation_where_it_was(small_demo, tmp_path, monkeypatch):
    """Runs started before the augmentation moved into the input pipeline (2026-12-01) had it
    in the model, and their backups hold its variables: resumed, they keep it there (and
    config.json, which did not record the place, reads as "model"); new runs record theirs."""
    train_module = sys.modules["digit_recognizer.train"]  # the package exports train()
    config = get_recipe("default").replace(**TINY)
    run = tmp_path / "run"
    monkeypatch.setattr(train_module, "augmentation_place", lambda config: "model")
    with pytest.raises(KeyboardInterrupt):
        train(config, small_demo.train_csv, run, callbacks=[StopAtEpoch(2)], verbose=0)
    monkeypatch.undo()
    info = json.loads((run / "config.json").read_text())
    assert info.pop("augmentation") == "model"
    (run / "config.json").write_text(json.dumps(info))  # as such a run's config.json was

    assert resume_training(run, verbose=0).epochs_run == 4
    assert json.loads((run / "config.json").read_text())["augmentation"] == "model"
    layers = [layer.name for layer in load_run(run).models[0].layers]
    assert "augment" in layers
    fresh = tmp_path / "fresh"
    train(config.replace(epochs=1), small_demo.train_csv, fresh, verbose=0)
    assert json.loads((fresh / "config.json").read_text())["augmentation"] == "input pipeline"


def test_a_resumed_run_keeps_averaging_the_weights(small_demo, tmp_path):
    """`ema`: the backup is taken at an epoch's end, when the model holds the weight average;
    a resumed run must put the raw weights back to train on and keep the average as such. At
    a momentum of 1 - 1e-7 the average stays at the first step's weights (where Keras starts
    it) through the interruption; mixing the two up would save the raw weights instead."""
    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if not hasattr(self, "weights"):
                self.weights = [w.copy() for w in self.model.get_weights() if w.ndim > 1]

    config = get_recipe("quick").replace(epochs=4, batch_size=64, width=8, ema=1 - 1e-7,
                                         steps_per_execution=1)
    run, first = tmp_path / "run", FirstStep()
    with pytest.raises(KeyboardInterrupt):
        train(config, small_demo.train_csv, run, callbacks=[first, StopAtEpoch(2)], verbose=0)
    assert resume_training(run, verbose=0).epochs_run == 4
    saved = keras.saving.load_model(run / "model.keras", compile=False)
    kernels = [w for w in saved.get_weights() if w.ndim > 1]
    assert max(float(np.abs(a - b).max()) for a, b in zip(kernels, first.weights)) < 1e-5


class SignalAtEpochEnd(keras.callbacks.Callback):
    """Sends this process SIGTERM `times` times at the end of epoch `epoch` (0-based), before
    the callbacks that write its model, history row and backup have run."""

    def __init__(self, epoch, times):
        super().__init__()
        self.epoch, self.times = epoch, times

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("epoch, times", [(0, 1), (0, 2), (3, 1)])
def test_a_signal_during_an_epochs_end_is_held_until_the_next_epoch(small_demo, tmp_path,
                                                                    epoch, times):
    """SIGTERM, as `digits` handles it, is acted on where the next epoch begins (or the
    training ends), so the epoch being written is kept whole and resumable; sent twice (an
    ensemble's member gets Ctrl-C from the terminal and from its parent), it is still held."""
    assert threading.current_thread() is threading.main_thread()  # signals reach this thread
    config = get_recipe("default").replace(**TINY)
    run = tmp_path / "run"
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(config, small_demo.train_csv, run, verbose=0,
                  callbacks=[SignalAtEpochEnd(epoch, times)])
        assert signal.getsignal(signal.SIGTERM) is _sigterm_as_interrupt  # put back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert json.loads((run / "config.json").read_text())["status"] == "interrupted"
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == list(range(1, epoch + 2))
    assert resume_training(run, verbose=0).epochs_run == TINY["epochs"]
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [1, 2, 3, 4]
    assert json.loads((run / "config.json").read_text())["status"] == "complete"


def _digits(*args):
    return [sys.executable, "-m", "digit_recognizer.cli", *map(str, args)]


def _as_in_a_terminal():
    """In the child before exec: SIGINT's default disposition, as a terminal's shell gives its
    commands. A shell without job control starts background commands (CI launched with `&`)
    with SIGINT ignored, which children inherit and Python then leaves alone: Ctrl-C would be
    ignored, as such a user asked, and the tests below would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# A safety net only: every wait below ends on an event (a file, an epoch, the process exiting).
# No test assumes how far a process gets in some number of seconds.
SAFETY_NET_S = 1800


def _wait_for(predicate, proc=None, timeout=SAFETY_NET_S):
    """Poll until `predicate()` holds. Gives up when `proc` has exited without it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.05)
    return False


def _epochs_done(run):
    try:
        return len(pd.read_csv(run / "history.csv"))
    except Exception:
        return 0


def test_sigterm_stops_cleanly(small_demo, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_digits("train", small_demo.train_csv, "--run-dir", run,
                                    "--epochs", 200, "--batch-size", 64),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    assert _wait_for(lambda: _epochs_done(run) >= 1, proc), "no epoch finished"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=SAFETY_NET_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert f"digits train --resume {run}" in err  # the actual path, not a placeholder
    assert json.loads((run / "config.json").read_text())["status"] == "interrupted"
    load_run(run)


@pytest.mark.slow
def test_ctrl_c_typed_in_a_terminal_stops_training_cleanly(small_demo, tmp_path):
    """The user's own way to stop: Ctrl-C in a terminal, where the line discipline sends SIGINT
    to the foreground process group and Keras draws a progress bar."""
    import pty

    run = tmp_path / "run"
    # The tutorial's recipe calls back after every step (45 an epoch here), so the stop comes
    # mid-epoch, with the progress bar's line unfinished.
    command = _digits("train", small_demo.train_csv, "--run-dir", run, "--recipe", "tutorial",
                      "--epochs", 200, "--batch-size", 8)
    pid, terminal = pty.fork()  # the child's controlling terminal is this pty
    if pid == 0:
        _as_in_a_terminal()
        os.execv(sys.executable, command)
    shown = bytearray()

    def read_terminal():  # drain it, or the progress bar blocks the child
        while True:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the child has gone: EIO
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    status = None
    try:
        # Ctrl-C once epoch 2's progress bar is on the screen (the output is the event).
        bar = re.compile(rb"Epoch 2/200.*?\d+/\d+", re.DOTALL)

        def bar_shown():
            assert os.waitpid(pid, os.WNOHANG)[0] == 0, bytes(shown)[-2000:]  # still running
            return bar.search(bytes(shown)) is not None

        assert _wait_for(bar_shown), bytes(shown)[-2000:]
        os.write(terminal, b"\x03")
        _, status = os.waitpid(pid, 0)
        reader.join(timeout=SAFETY_NET_S)
    finally:
        if status is None:  # failed before the child ended: do not leave it training
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(terminal)
    text = shown.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 130, text[-2000:]
    assert "Traceback" not in text
    assert re.search(r"(^|\n)digits: interrupted; finished files are kept "
                     rf"\(`digits train --resume {re.escape(str(run))}`", text), text[-2000:]
    assert json.loads((run / "config.json").read_text())["status"] == "interrupted"
    load_run(run)


@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_ensemble_cleanly(small_demo, tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: the parent and, twice (from the
    terminal and forwarded by the parent), each member process."""
    run = tmp_path / "run"
    proc = subprocess.Popen(_digits("train", small_demo.train_csv, "--run-dir", run,
                                    "--ensemble", 2, "--jobs", 2, "--epochs", 200,
                                    "--batch-size", 64),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_as_in_a_terminal)
    member_dirs = [run / "members" / "01", run / "members" / "02"]
    assert _wait_for(lambda: all(_epochs_done(m) >= 1 for m in member_dirs), proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=SAFETY_NET_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("interrupted") == 1, err
    for member in member_dirs:
        assert json.loads((member / "config.json").read_text())["status"] == "interrupted"
        load_run(member)


def _check_run_files(run):
    """Every file present is complete: config.json parses, history.csv parses, model loads.
    A run directory that does not exist yet lost nothing."""
    if not run.exists():
        return set()
    names = {p.name for p in run.iterdir() if not p.name.startswith(".")}
    if "config.json" in names:
        json.loads((run / "config.json").read_text())
    if "history.csv" in names:
        pd.read_csv(run / "history.csv")
    if "model.keras" in names:
        load_run(run)
    if "curves.png" in names:
        assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    return names


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_complete_files(small_demo, tmp_path):
    """SIGKILL at moments defined by events, not by seconds: at start-up, when config.json
    appears, when the first model.keras appears, and at a random offset after an epoch ends
    (somewhere inside a later epoch or its saves). Each attempt has its own directory."""
    rng = np.random.default_rng(11)
    args = ("train", small_demo.train_csv, "--epochs", 30, "--batch-size", 32)
    moments = {
        "start-up": lambda run: True,
        "config.json written": lambda run: (run / "config.json").exists(),
        "first model saved": lambda run: (run / "model.keras").exists(),
        "an epoch ended": lambda run: _epochs_done(run) >= 1,
    }
    for attempt, (moment, ready) in enumerate(moments.items()):
        run = tmp_path / f"run{attempt}"
        proc = subprocess.Popen(_digits(*args[:2], "--run-dir", run, *args[2:]),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL)
        assert _wait_for(lambda: ready(run), proc), f"never reached: {moment}"
        if moment == "an epoch ended":
            time.sleep(rng.uniform(0.0, 1.0))  # any point after it is a valid moment
        proc.kill()
        proc.wait()
        _check_run_files(run)
    # And a run killed after its second epoch can be resumed to the end.
    run = tmp_path / "resumed"
    proc = subprocess.Popen(_digits(*args[:2], "--run-dir", run, *args[2:]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    assert _wait_for(lambda: _epochs_done(run) >= 2, proc), "no second epoch"
    proc.kill()
    proc.wait()
    _check_run_files(run)
    out = subprocess.run(_digits("train", "--resume", run), capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=SAFETY_NET_S)
    assert out.returncode == 0, out.stderr
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == list(range(1, 31))


def test_truncated_foreign_and_mismatched_run_files(tiny_run, tmp_path):
    import shutil

    source, _, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    blob = (run / "model.keras").read_bytes()

    (run / "model.keras").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError, match="cannot be loaded"):
        load_run(run)

    (run / "model.keras").write_text("hello, I am not a model")
    with pytest.raises(InputError, match="cannot be loaded"):
        load_run(run)

    (run / "model.keras").write_bytes(blob)
    info = json.loads((run / "config.json").read_text())
    info["preprocessing"]["pixel_mean"] += 5.0
    (run / "config.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match="does not match model.keras"):
        load_run(run)

    (run / "config.json").write_text("{ not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_run(run)


def test_model_with_code_is_refused_by_safe_mode(tiny_run, tmp_path):
    """A .keras file carrying a Lambda layer (arbitrary Python) must not be deserialised."""
    import shutil

    source, _, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t * 0 + 1)(inputs)
    x = keras.layers.Flatten()(x)
    evil = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    evil.save(run / "model.keras")
    with pytest.raises(InputError, match="cannot be loaded"):
        load_run(run)


def test_unwritable_run_dir_fails_before_training(small_demo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    config = get_recipe("default").replace(**TINY)
    with pytest.raises(InputError, match="cannot be written"):
        train(config, small_demo.train_csv, blocker / "run", verbose=0)


def test_existing_run_is_not_corrupted_by_a_failing_one(tiny_run, small_demo, tmp_path):
    import shutil

    source, _, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    bad = tmp_path / "bad.csv"
    bad.write_text("label,pixel0\n1,1\n")
    with pytest.raises(InputError):
        train(get_recipe("default"), bad, run, verbose=0)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert before == after


def test_full_disk_fails_before_training(small_demo, tmp_path, monkeypatch):
    """ENOSPC while probing the run directory stops before any training or writing."""
    import errno
    from pathlib import Path

    real_write_bytes = Path.write_bytes

    def full_disk(self, data):
        if ".write-test" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    run = tmp_path / "run"
    with pytest.raises(InputError, match="No space left"):
        train(get_recipe("default").replace(**TINY), small_demo.train_csv, run, verbose=0)
    assert not any(p.name in {"model.keras", "config.json", "history.csv"} for p in run.iterdir())
