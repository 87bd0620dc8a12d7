"""The run directory: its file names, and reading its JSON files with one behaviour.

  RUN/model.keras    best epoch's model          RUN/ensemble.json   an ensemble's shared data
  RUN/config.json    config, statistics, result  RUN/members/NN/     each a run directory
  RUN/history.csv    per-epoch metrics           RUN/backup/         --resume state while training
  RUN/curves.png     training curves

Reading these needs no Keras: a run directory is checked before TensorFlow loads.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .files import read_json

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
BACKUP_DIR = "backup"  # Keras BackupAndRestore state: weights, optimiser, epoch; gone when done
ENSEMBLE_FILE = "ensemble.json"
MEMBERS_DIR = "members"


def is_ensemble(run_dir) -> bool:
    return (Path(run_dir) / ENSEMBLE_FILE).exists()


def read_run_json(path) -> dict:
    """config.json or ensemble.json; missing or invalid is an InputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "missing: not a run directory made by `digits train`")
    return read_json(path)


def check_run_dir(run_dir) -> Path:
    """An existing directory, or an InputError saying how to make one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "is not a run directory (train one with `digits train`)")
    return run_dir


def training_data_of(run_dir) -> dict:
    """What the run trained on: {"train_csv": path, "sha256": ..., "rows": ...}."""
    run_dir = check_run_dir(run_dir)
    info = read_run_json(run_dir / (ENSEMBLE_FILE if is_ensemble(run_dir) else CONFIG_FILE))
    return info.get("data") or {}
