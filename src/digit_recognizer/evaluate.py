"""Scoring: submission vs answer key, as Kaggle checks and scores it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import read_submission
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


def score_submission(submission_path, answers_path) -> Score:
    """Check a submission's format (header, ids, labels, row count) and score it."""
    answers = read_submission(answers_path)
    predicted = read_submission(submission_path)
    if len(predicted) != len(answers):
        raise InputError(submission_path, f"has {len(predicted)} rows but the answer key "
                                          f"{answers_path} has {len(answers)}")
    return score_labels(predicted, answers)
