"""The run directory: its file names, and reading its JSON files with one behaviour.

  RUN/model.keras    the kept epoch's model      RUN/ensemble.json   an ensemble's shared data
  RUN/config.json    config, statistics, result  RUN/members/NN/     each a run directory
  RUN/history.csv    per-epoch metrics           RUN/backup/         --resume state while training
  RUN/curves.png     training curves

Reading these needs no Keras: a run directory is checked before TensorFlow loads.

An ensemble: member k (1-based) is RUN/members/NN/, a complete single-model run directory. A
member claims its slot by creating its directory (atomic), so several processes (or a later
`--add-members`) can add members to one ensemble at the same time; predict/evaluate use every
member whose training completed, so a half-finished ensemble is usable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .data import DigitsData
from .errors import InputError
from .files import check_writable, read_json, write_json_atomic

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


@dataclass(frozen=True)
class Member:
    index: int  # 1-based
    run_dir: Path
    status: str  # "complete" | "training" | "interrupted" | "unstarted"
    config: Config | None  # None until the member's config.json is written
    best_val_accuracy: float | None
    train_seconds: float | None

    @property
    def recipe(self) -> str | None:
        return self.config.recipe if self.config else None

    @property
    def seed(self) -> int | None:
        return self.config.seed if self.config else None

    @property
    def usable(self) -> bool:
        return self.status == "complete" and (self.run_dir / MODEL_FILE).exists()


def members(run_dir) -> list[Member]:
    """Every member directory of an ensemble, in index order (01..99, 100, ...), with its state."""
    found = []
    members_dir = Path(run_dir) / MEMBERS_DIR
    paths = [p for p in (members_dir.iterdir() if members_dir.is_dir() else [])
             if p.is_dir() and p.name.isdigit()]
    for path in sorted(paths, key=lambda p: int(p.name)):
        info = read_run_json(path / CONFIG_FILE) if (path / CONFIG_FILE).exists() else {}
        result = info.get("result", {})
        found.append(Member(
            int(path.name), path, info.get("status", "unstarted"),
            Config.from_dict(info["config"]) if "config" in info else None,
            result.get("best_val_accuracy"),
            result.get("train_seconds")))
    return found


def init_ensemble(run_dir, data: DigitsData) -> None:
    """Create RUN/ensemble.json, or check that an existing ensemble used the same data."""
    run_dir = Path(run_dir)
    path = run_dir / ENSEMBLE_FILE
    if path.exists():
        info = read_run_json(path)
        if info["data"]["sha256"] != data.sha256:
            raise InputError(data.path, f"differs from the data the ensemble {run_dir} was "
                                        f"trained on ({info['data']['train_csv']}); members "
                                        "must share their training data")
        return
    if (run_dir / MODEL_FILE).exists():
        raise InputError(run_dir, "holds a single-model run; give ensembles their own --run-dir")
    check_writable(run_dir)
    write_json_atomic(path, {"kind": "ensemble",
                             "data": {"train_csv": str(data.path), "sha256": data.sha256,
                                      "rows": len(data)}})


def claim_member_dir(run_dir) -> tuple[int, Path]:
    """The next free member slot, claimed by creating its directory (safe across processes)."""
    members_dir = Path(run_dir) / MEMBERS_DIR
    members_dir.mkdir(parents=True, exist_ok=True)
    index = 1
    while True:
        path = members_dir / f"{index:02d}"
        try:
            path.mkdir()
            return index, path
        except FileExistsError:
            index += 1
