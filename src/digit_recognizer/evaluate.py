"""Scoring: submission vs answer key, as Kaggle checks and scores it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DigitsData, file_sha256, load_test_csv, load_train_csv, read_submission
from .errors import DataWarning, InputError
from .predict import load_run, predict_labels, read_csv_rows, run_proba
from .report import write_report
from .rundir import CURVES_FILE


@dataclass(frozen=True)
class Score:
    accuracy: float
    n_images: int
    n_errors: int


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(np.asarray(truth), np.asarray(predicted)))


def score_labels(predicted: np.ndarray, truth: np.ndarray) -> Score:
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    return Score(accuracy(predicted, truth), len(truth), int((predicted != truth).sum()))


def read_scored_pair(submission_path, answers_path) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, truth) labels, after Kaggle's format checks and a row-count match."""
    answers = read_submission(answers_path)
    predicted = read_submission(submission_path)
    if len(predicted) != len(answers):
        raise InputError(submission_path, f"has {len(predicted)} rows but the answer key "
                                          f"{answers_path} has {len(answers)}")
    return predicted, answers


def score_submission(submission_path, answers_path) -> Score:
    """Check a submission's format (header, ids, labels, row count) and score it."""
    return score_labels(*read_scored_pair(submission_path, answers_path))


def evaluate_run(run_dir, labeled_csv, report_dir=None, tta: bool | None = False,
                 labels_csv=None, reframe: bool = True) -> dict:
    """Predict labeled data with a run's model and write the full report (metrics.json,
    confusion.png, errors.png, calibration.png, report.html) to `report_dir` (default
    RUN/report). The data is one labeled CSV (Kaggle's train.csv format), or with `labels_csv`
    an unlabeled test CSV plus its answer key (`ImageId,Label`). An ensemble averages its
    members; `tta` averages test-time augmented views too (None: as the recipe says, see
    predict.load_run). `reframe`: rows whose digit is not framed as MNIST's are reframed
    first, as `digits predict` reads a CSV (predict.read_csv_rows). Data the run trained on
    gives a DataWarning (its accuracy says nothing about new images)."""
    if labels_csv is None:
        data = load_train_csv(labeled_csv)
    else:
        pixels = load_test_csv(labeled_csv)
        answers = read_submission(labels_csv)
        if len(answers) != len(pixels):
            raise InputError(labels_csv, f"has {len(answers)} labels but {labeled_csv} has "
                                         f"{len(pixels)} images")
        data = DigitsData(pixels.pixels, answers, pixels.path, pixels.sha256)
    run = load_run(run_dir, tta)
    warn_if_trained_on(data, run.training_data)
    rows, reframed = read_csv_rows(run, data.pixels, reframe)
    data = DigitsData(rows, data.labels, data.path, data.sha256)  # the report shows what was read
    return report_predictions(run, data, run_proba(run, data.pixels), report_dir,
                              int(reframed.sum()))


def warn_if_trained_on(data, training: dict | None) -> None:
    """DataWarning when `data` is the run's training file (same SHA-256), or shares images
    with it. `training` is the run's recorded training data (path, sha256), if any."""
    if not training:
        return
    if data.sha256 == training.get("sha256"):
        warnings.warn(DataWarning(f"{data.path} is the run's own training file (same SHA-256): "
                                  "accuracy on it says little about new images"), stacklevel=2)
        return
    path = Path(training.get("train_csv", ""))
    if not path.is_file():
        return  # the training file moved: nothing to compare with
    trained = load_train_csv(path)
    if trained.sha256 != training.get("sha256"):
        return  # changed since training: it is not what the run saw
    seen = {row.tobytes() for row in trained.pixels}
    shared = sum(row.tobytes() in seen for row in data.pixels)
    if shared:
        warnings.warn(DataWarning(f"{data.path}: {shared} of {len(data)} images are also in the "
                                  f"run's training file {path}: those are not held out"),
                      stacklevel=2)


def report_predictions(run, data, probabilities, report_dir=None, reframed: int = 0) -> dict:
    """The full report for the probabilities `run_proba(run, data.pixels)` gave on labeled
    `data` (with or without TTA, as the run was loaded; `reframed` of its rows reframed
    before, predict.read_csv_rows)."""
    models = [{"path": str(p), "sha256": file_sha256(p)} for p in run.model_paths]
    sources = {
        "model": models[0] if len(models) == 1 else {"ensemble": str(run.run_dir),
                                                     "members": models},
        "data": {"path": str(data.path), "rows": len(data), "sha256": data.sha256,
                 "reframed_rows": reframed},
        "test_time_augmentation": run.uses_tta,
    }
    report_dir = Path(report_dir) if report_dir else Path(run.run_dir) / "report"
    return write_report(report_dir, data.labels, predict_labels(probabilities), probabilities,
                        data.pixels, sources, curves=Path(run.model_paths[0]).parent / CURVES_FILE,
                        config=run.describe())


def report_submission(submission_path, answers_path, report_dir) -> dict:
    """Confusion matrix and per-class table from a submission and an answer key (no model)."""
    predicted, truth = read_scored_pair(submission_path, answers_path)
    sources = {"submission": {"path": str(submission_path), "sha256": file_sha256(submission_path)},
               "data": {"path": str(answers_path), "rows": len(truth),
                        "sha256": file_sha256(answers_path)}}
    return write_report(report_dir, truth, predicted, sources=sources)
