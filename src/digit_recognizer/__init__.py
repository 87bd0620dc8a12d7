"""digit-recognizer: Kaggle's Digit Recognizer, end to end, on Keras 3.

    from digit_recognizer import get_recipe, train, load_run, run_proba, load_test_csv

Importing the package does not import Keras/TensorFlow (seconds of start-up); the functions
that need it import it when called.
"""

from .config import RECIPES, Config, get_recipe
from .data import DigitsData, load_test_csv, load_train_csv, read_submission, write_submission
from .demo import load_embedded_mnist, write_demo_data
from .errors import DataWarning, InputError
from .evaluate import Score, accuracy, score_labels, score_submission
from .pipeline import RunSummary, run
from .ensemble import train_members
from .predict import (CsvPredictions, LoadedRun, load_run, predict_csv, predict_labels,
                      predict_proba, run_proba)
from .train import TrainResult, split_train_val, train

__version__ = "0.1.0"


def __getattr__(name):  # model.py imports Keras, so it is loaded on first use only
    if name in ("build_model", "forward_flops"):
        from . import model
        return getattr(model, name)
    raise AttributeError(f"module 'digit_recognizer' has no attribute {name!r}")


__all__ = [
    "RECIPES", "Config", "get_recipe", "DigitsData", "load_embedded_mnist", "load_test_csv",
    "load_train_csv", "read_submission", "write_demo_data", "write_submission", "InputError",
    "DataWarning", "Score", "accuracy", "score_labels", "score_submission", "RunSummary", "run",
    "CsvPredictions", "LoadedRun", "load_run", "predict_csv", "predict_labels", "predict_proba",
    "run_proba", "train_members", "TrainResult", "split_train_val", "train", "build_model",
    "forward_flops",
]
