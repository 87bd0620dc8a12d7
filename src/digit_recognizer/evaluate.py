"""Scoring: submission vs answer key, as Kaggle checks and scores it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import file_sha256, read_submission
from .errors import InputError


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


def evaluate_run(run_dir, labeled_csv, report_dir=None, tta: bool = False) -> dict:
    """Predict a labeled CSV (Kaggle train.csv format) with a run's model and write the full
    report (metrics.json, confusion.png, errors.png, calibration.png, report.html) to
    `report_dir` (default RUN/report). An ensemble averages its members; `tta` averages
    test-time augmented views too."""
    from .data import load_train_csv
    from .predict import load_run, run_proba

    run = load_run(run_dir)
    data = load_train_csv(labeled_csv)
    return report_predictions(run, data, run_proba(run, data.pixels, tta), report_dir,
                              tta=tta)


def report_predictions(run, data, probabilities, report_dir=None, tta: bool = False) -> dict:
    """The full report for probabilities a run already gave on labeled `data`."""
    from pathlib import Path

    from .predict import predict_labels
    from .report import write_report
    from .train import CURVES_FILE

    models = [{"path": str(p), "sha256": file_sha256(p)} for p in run.model_paths]
    sources = {
        "model": models[0] if len(models) == 1 else {"ensemble": str(run.run_dir),
                                                     "members": models},
        "data": {"path": str(data.path), "rows": len(data), "sha256": data.sha256},
        "test_time_augmentation": tta,
    }
    report_dir = Path(report_dir) if report_dir else Path(run.run_dir) / "report"
    return write_report(report_dir, data.labels, predict_labels(probabilities), probabilities,
                        data.pixels, sources, curves=Path(run.model_paths[0]).parent / CURVES_FILE,
                        config=run.info.get("config") or run.info)


def report_submission(submission_path, answers_path, report_dir) -> dict:
    """Confusion matrix and per-class table from a submission and an answer key (no model)."""
    from .report import write_report

    predicted, truth = read_scored_pair(submission_path, answers_path)
    sources = {"submission": {"path": str(submission_path), "sha256": file_sha256(submission_path)},
               "data": {"path": str(answers_path), "rows": len(truth),
                        "sha256": file_sha256(answers_path)}}
    return write_report(report_dir, truth, predicted, sources=sources)
