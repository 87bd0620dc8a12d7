"""The main job: data -> train -> predict -> submission (-> score when an answer key exists)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .data import DigitsData, load_test_csv, load_train_csv, write_submission
from .demo import write_demo_data
from .ensemble import train_members
from .errors import InputError
from .evaluate import Score, read_scored_pair, report_predictions, score_labels
from .predict import load_run, predict_labels, read_csv_rows, run_proba
from .train import train

SUBMISSION_FILE = "submission.csv"
ANSWERS_FILE = "test_labels.csv"


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    submission: Path
    score: Score | None  # None without an answer key (real Kaggle data)
    metrics: dict | None  # the report's metrics (held-out set, else the validation split)
    report_dir: Path | None
    best_val_accuracy: float | None  # the best member's, for an ensemble; None: no split
    seconds: dict = field(default_factory=dict)  # stage -> wall seconds
    created_demo_data: bool = False
    tta: bool = False  # the submission and score average the test-time views
    reframed: int = 0  # test rows not in MNIST's frame, reframed before (read_csv_rows)
    n_test_rows: int = 0


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
        members: int | None = None, jobs: int = 1, tta: bool | None = None,
        write_demo: bool = True, reframe: bool = True, log=None) -> RunSummary:
    """`members` = N trains an ensemble of N (`jobs` members at a time, progress lines to
    `log`), as `digits train --ensemble N` does; None, a single model. `tta` predicts with
    test-time augmentation; None: as the recipe says (`Config.tta`, read by `load_run` from
    the run's saved config, as `digits predict` reads it). `reframe`: test rows whose digit
    is not framed as MNIST's are reframed first, as `digits predict` reads a CSV
    (predict.read_csv_rows). `write_demo`: see `find_or_create_data`."""
    seconds = {}
    t = time.perf_counter()
    train_csv, test_csv, created = find_or_create_data(data_dir, write_demo)
    seconds["data"] = time.perf_counter() - t

    t = time.perf_counter()
    train_data = load_train_csv(train_csv)
    test_data = load_test_csv(test_csv)
    seconds["load"] = time.perf_counter() - t

    t = time.perf_counter()
    result = None
    if members is not None:
        added = train_members(config, train_data, run_dir, members, jobs=jobs, verbose=verbose,
                              log=log)
        scores = [m.best_val_accuracy for m in added if m.best_val_accuracy is not None]
        best_val = max(scores) if scores else None
    else:
        result = train(config, train_data, run_dir, verbose=verbose)
        best_val = result.best_val_accuracy
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    loaded = load_run(run_dir, tta)  # the kept checkpoint, as `digits predict` would see it
    submission = Path(run_dir) / SUBMISSION_FILE
    test_rows, moved = read_csv_rows(loaded, test_data.pixels, reframe)
    reframed = int(moved.sum())
    probabilities = run_proba(loaded, test_rows)
    write_submission(submission, predict_labels(probabilities))
    seconds["predict"] = time.perf_counter() - t

    # Report on the held-out set when its answer key is here, else on the validation split.
    t = time.perf_counter()
    answers = Path(data_dir) / ANSWERS_FILE
    report_dir, metrics, score = Path(run_dir) / "report", None, None
    if answers.exists():
        predicted, truth = read_scored_pair(submission, answers)  # the file as Kaggle checks it
        score = score_labels(predicted, truth)
        labeled = DigitsData(test_rows, truth, str(answers), test_data.sha256)
        metrics = report_predictions(loaded, labeled, probabilities, report_dir, reframed)
    elif result is not None and len(result.val_indices):
        rows = result.val_indices
        labeled = DigitsData(train_data.pixels[rows], train_data.labels[rows],
                             f"{train_csv} (validation split)", train_data.sha256)
        metrics = report_predictions(loaded, labeled, run_proba(loaded, labeled.pixels),
                                     report_dir)
    else:  # no validation rows, or each member trained on the others': no honest report
        report_dir = None
    seconds["report"] = time.perf_counter() - t
    return RunSummary(Path(run_dir), submission, score, metrics, report_dir, best_val,
                      seconds, created, loaded.tta, reframed, len(test_rows))
