import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digit_recognizer.cli import main
from digit_recognizer.data import read_submission

DIGITS = [sys.executable, "-m", "digit_recognizer.cli"]


def digits(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([*DIGITS, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600, stdin=subprocess.DEVNULL)


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "digits"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ["demo-data", "train", "predict", "score", "run"]:
        assert command in out.stdout


def test_demo_data_train_predict_score(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    out = digits("demo-data", data, "--rows", 300, "--test-rows", 120)
    assert out.returncode == 0, out.stderr
    assert (data / "train.csv").exists() and (data / "test_labels.csv").exists()

    out = digits("train", data / "train.csv", "--run-dir", run, "--epochs", 1,
                 "--batch-size", 64, "--val-fraction", 0.2, "--seed", 5)
    assert out.returncode == 0, out.stderr
    assert "best validation accuracy" in out.stdout
    for name in ["model.keras", "config.json", "history.csv", "curves.png"]:
        assert (run / name).exists(), name

    submission = tmp_path / "sub" / "submission.csv"
    out = digits("predict", run, data / "test.csv", "-o", submission)
    assert out.returncode == 0, out.stderr
    lines = submission.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 121 and lines[1].startswith("1,")
    assert len(read_submission(submission)) == 120

    out = digits("score", submission, data / "test_labels.csv")
    assert out.returncode == 0, out.stderr
    assert re.search(r"accuracy \d+\.\d+%", out.stdout)


def test_run_uses_existing_data_and_scores(tmp_path, small_demo):
    data = tmp_path / "data"
    data.mkdir()
    for path in [small_demo.train_csv, small_demo.test_csv, small_demo.answers_csv]:
        shutil.copy(path, data / path.name)
    code = main(["run", "--data", str(data), "--run-dir", str(tmp_path / "run"),
                 "--epochs", "1", "--batch-size", "64"])
    assert code == 0
    assert len(read_submission(tmp_path / "run" / "submission.csv")) == 200


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "train.csv"
    bad.write_text("label,pixel0\n1,2\n")
    run = tmp_path / "run"
    code = main(["train", str(bad), "--run-dir", str(run)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(bad) in err and "line 1" in err
    assert not run.exists()


def test_score_rejects_wrong_row_count(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("ImageId,Label\n1,1\n2,2\n")
    (tmp_path / "b.csv").write_text("ImageId,Label\n1,1\n")
    assert main(["score", str(tmp_path / "b.csv"), str(tmp_path / "a.csv")]) == 2
    assert "has 1 rows but the answer key" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception):
        main(["--debug", "score", str(tmp_path / "missing.csv"), str(tmp_path / "x.csv")])
