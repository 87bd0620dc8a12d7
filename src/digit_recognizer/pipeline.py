"""The main job: data -> train -> predict -> submission (-> score when an answer key exists)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .data import load_test_csv, load_train_csv, write_demo_data
from .errors import InputError
from .evaluate import Score, score_submission

SUBMISSION_FILE = "submission.csv"
ANSWERS_FILE = "test_labels.csv"


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    submission: Path
    score: Score | None  # None without an answer key (real Kaggle data)
    metrics: dict | None  # the report's metrics (held-out set, else the validation split)
    report_dir: Path | None
    best_val_accuracy: float  # the best member's, for an ensemble
    seconds: dict = field(default_factory=dict)  # stage -> wall seconds
    created_demo_data: bool = False


def find_or_create_data(data_dir, write_demo: bool = True) -> tuple[Path, Path, bool]:
    """DIR/train.csv and DIR/test.csv (.csv or .csv.gz). With `write_demo`, a missing or empty
    DIR gets the demo data; without, it is an InputError: a mistyped path to Kaggle's files
    must not quietly train on MNIST and write a submission for the wrong test set."""
    data_dir = Path(data_dir)

    def find(stem):
        return next((p for p in (data_dir / f"{stem}.csv", data_dir / f"{stem}.csv.gz")
                     if p.exists()), None)

    if data_dir.exists() and not data_dir.is_dir():
        raise InputError(data_dir, "is not a directory (expected one holding train.csv and "
                                   "test.csv)")
    train_csv, test_csv = find("train"), find("test")
    if train_csv is None and test_csv is None:
        if not write_demo:
            what = "no such directory" if not data_dir.exists() else "has no train.csv or test.csv"
            raise InputError(data_dir, f"{what}: expected Kaggle's train.csv and test.csv "
                                       "(or add --demo-data to write MNIST demo data there)")
        demo = write_demo_data(data_dir)
        return demo.train_csv, demo.test_csv, True
    if train_csv is None or test_csv is None:
        missing = "train.csv" if train_csv is None else "test.csv"
        raise InputError(data_dir, f"has no {missing} (needs both, or neither for demo data)")
    return train_csv, test_csv, False


def run(config: Config, data_dir="data", run_dir="runs/default", verbose="auto",
        members: int | None = None, jobs: int = 1, tta: bool = False,
        write_demo: bool = True, log=None) -> RunSummary:
    """`members` = N trains an ensemble of N (`jobs` members at a time, progress lines to
    `log`), as `digits train --ensemble N` does; None, a single model. `tta` predicts with
    test-time augmentation. `write_demo`: see `find_or_create_data`."""
    from .data import DigitsData, read_submission, write_submission
    from .ensemble import train_members
    from .evaluate import report_predictions
    from .predict import load_run, predict_labels, run_proba
    from .train import split_train_val, train

    seconds = {}
    t = time.perf_counter()
    train_csv, test_csv, created = find_or_create_data(data_dir, write_demo)
    seconds["data"] = time.perf_counter() - t

    t = time.perf_counter()
    train_data = load_train_csv(train_csv)
    test_data = load_test_csv(test_csv)
    seconds["load"] = time.perf_counter() - t

    t = time.perf_counter()
    if members is not None:
        added = train_members(config, train_data, run_dir, members, jobs=jobs, verbose=verbose,
                              log=log)
        best_val = max(m.best_val_accuracy for m in added)
    else:
        best_val = train(config, train_data, run_dir, verbose=verbose).best_val_accuracy
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    loaded = load_run(run_dir)  # the best checkpoint, as a user's `digits predict` would see it
    submission = Path(run_dir) / SUBMISSION_FILE
    probabilities = run_proba(loaded, test_data.pixels, tta)
    write_submission(submission, predict_labels(probabilities))
    seconds["predict"] = time.perf_counter() - t

    # Report on the held-out set when its answer key is here, else on the validation split.
    t = time.perf_counter()
    answers = Path(data_dir) / ANSWERS_FILE
    report_dir, metrics, score = Path(run_dir) / "report", None, None
    if answers.exists():
        score = score_submission(submission, answers)
        labeled = DigitsData(test_data.pixels, read_submission(answers), str(answers),
                             test_data.sha256)
        metrics = report_predictions(loaded, labeled, probabilities, report_dir, tta)
    elif members is None:
        split = split_train_val(train_data, config.val_fraction, config.seed)
        labeled = DigitsData(split.x_val, split.y_val, f"{train_csv} (validation split)",
                             train_data.sha256)
        probabilities = run_proba(loaded, labeled.pixels, tta)
        metrics = report_predictions(loaded, labeled, probabilities, report_dir, tta)
    else:  # each member trained on the others' validation rows: no honest report possible
        report_dir = None
    seconds["report"] = time.perf_counter() - t
    return RunSummary(Path(run_dir), submission, score, metrics, report_dir, best_val,
                      seconds, created)
