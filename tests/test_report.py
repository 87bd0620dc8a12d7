import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score

from digit_recognizer.cli import main
from digit_recognizer.report import (classification_metrics, most_confident_errors,
                                     most_confused_pairs, write_report)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def predictions():
    rng = np.random.default_rng(7)
    y_true = np.repeat(np.arange(10), 6)
    y_pred = y_true.copy()
    y_pred[y_true == 9] = 4  # digit 9 is never predicted
    y_pred[[0, 1, 13]] = [6, 6, 7]
    probabilities = rng.dirichlet(np.ones(10), size=len(y_true)) * 0.5
    probabilities[np.arange(len(y_true)), y_pred] += 0.5
    return y_true, y_pred, probabilities


def test_metrics_match_scikit_learn(predictions):
    y_true, y_pred, probabilities = predictions
    m = classification_metrics(y_true, y_pred, probabilities)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["n_errors"] == 9
    labels = list(range(10))
    precision = precision_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    for c in range(10):
        assert m["per_class"][str(c)]["precision"] == pytest.approx(precision[c])
        assert m["per_class"][str(c)]["recall"] == pytest.approx(recall[c])
        assert m["per_class"][str(c)]["support"] == 6
    assert m["per_class"]["9"]["precision"] == 0.0 and m["per_class"]["9"]["recall"] == 0.0
    assert m["macro"]["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro",
                                                      zero_division=0))
    assert m["log_loss"] == pytest.approx(log_loss(y_true, probabilities, labels=labels))
    assert m["most_confused"][0] == {"true": 9, "predicted": 4, "count": 6}
    assert m["most_confused"][1] == {"true": 0, "predicted": 6, "count": 2}


def test_most_confused_pairs_ignores_the_diagonal():
    cm = np.diag([50] * 10)
    assert most_confused_pairs(cm) == []
    cm[3, 5] = 2
    assert most_confused_pairs(cm) == [{"true": 3, "predicted": 5, "count": 2}]


def test_gallery_picks_the_most_confident_mistakes():
    y_true = np.array([0, 1, 2, 3, 4])
    probabilities = np.full((5, 10), 0.01)
    probabilities[0, 0] = 0.99  # right
    probabilities[1, 7] = 0.60  # wrong, fairly sure
    probabilities[2, 2] = 0.90  # right
    probabilities[3, 8] = 0.95  # wrong, very sure
    probabilities[4, 1] = 0.30  # wrong, unsure
    assert most_confident_errors(y_true, probabilities, k=24).tolist() == [3, 1, 4]
    assert most_confident_errors(y_true, probabilities, k=2).tolist() == [3, 1]


def test_report_files_are_valid(tmp_path, predictions):
    y_true, y_pred, probabilities = predictions
    pixels = np.random.default_rng(0).integers(0, 256, (len(y_true), 28, 28), dtype=np.uint8)
    write_report(tmp_path, y_true, y_pred, probabilities, pixels, config={"recipe": "x"})
    for name in ["confusion.png", "errors.png", "calibration.png"]:
        assert (tmp_path / name).read_bytes()[:8] == PNG, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_errors"] == 9 and len(metrics["most_confident_errors"]) == 9
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!doctype html>") and page.count("data:image/png;base64,") == 3
    assert "http" not in page.replace("https://", "")  # nothing to fetch: works offline


def test_evaluate_cli_on_a_trained_run(tiny_run, small_demo, tmp_path, capsys):
    run_dir, _, _ = tiny_run
    report = tmp_path / "report"
    assert main(["evaluate", str(run_dir), str(small_demo.train_csv), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "report.html" in out
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["data"]["rows"] == 400 and len(metrics["model"]["sha256"]) == 64
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # curves, confusion, errors, calibration


def test_score_report_needs_no_model(small_demo, tmp_path, capsys):
    answers = small_demo.answers_csv
    submission = tmp_path / "submission.csv"
    lines = answers.read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + "," + str((int(lines[1].split(",")[1]) + 1) % 10)
    submission.write_text("\n".join(lines) + "\n")
    assert main(["score", str(submission), str(answers), "--report", str(tmp_path / "r")]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["n_errors"] == 1 and metrics["n_images"] == 200
    assert (tmp_path / "r" / "confusion.png").exists()
