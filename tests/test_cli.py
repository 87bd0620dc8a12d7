import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digit_recognizer.cli import main
from digit_recognizer.data import read_submission
from digit_recognizer.errors import InputError

DIGITS = [sys.executable, "-m", "digit_recognizer.cli"]


def digits(*args, cwd=None, env=None):
    return subprocess.run([*DIGITS, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=900, stdin=subprocess.DEVNULL, env=env)


EXIT_PROBE = """
import atexit, sys, threading
from digit_recognizer import cli
atexit.register(print, "atexit handler ran")
late = threading.Event()
if "thread" in sys.argv:  # a thread still working when main() returns
    threading.Thread(target=lambda: (late.wait(), sum(range(3_000_000)),
                                     print("thread finished"))).start()
cli.main = lambda: (print("main done", end=""), late.set(), 3)[-1]  # unflushed on return
cli.run_as_command()
"""


@pytest.mark.parametrize("thread", [False, True])
def test_the_command_exits_with_mains_code_after_atexit_and_flushing(thread):
    """`run_as_command` skips the interpreter's teardown, not what must happen before it."""
    out = subprocess.run([sys.executable, "-c", EXIT_PROBE, *(["thread"] if thread else [])],
                         capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert out.returncode == 3, out.stderr
    assert out.stdout.startswith("main done") and "atexit handler ran" in out.stdout
    assert ("thread finished" in out.stdout) == thread, out.stdout


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
                 "--batch-size", 64, "--val-fraction", 0.2, "--seed", 5, "--checkpoint", "best",
                 "--precision", "mixed_bfloat16")
    assert out.returncode == 0, out.stderr
    assert re.search(r"kept epoch \d+/\d+: validation accuracy", out.stdout)
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["seed"], config["val_fraction"], config["checkpoint"],
            config["precision"]) == (5, 0.2, "best", "mixed_bfloat16")
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


def test_run_uses_existing_data_and_scores(tmp_path, small_demo, capsys):
    """The default recipe's submission averages the test-time views (`Config.tta`, chosen on
    validation); `--no-tta` predicts the images alone. Either way the file is what `digits
    predict` writes for the kept model."""
    from digit_recognizer.data import load_test_csv
    from digit_recognizer.predict import load_run, predict_labels, run_proba

    data = tmp_path / "data"
    data.mkdir()
    for path in [small_demo.train_csv, small_demo.test_csv, small_demo.answers_csv]:
        shutil.copy(path, data / path.name)
    pixels = load_test_csv(small_demo.test_csv).pixels
    for flags, tta in (([], True), (["--no-tta"], False)):
        run = tmp_path / f"run-{tta}"
        code = main(["run", "--data", str(data), "--run-dir", str(run), "--epochs", "1",
                     "--batch-size", "64", *flags])
        assert code == 0
        submitted = read_submission(run / "submission.csv")
        assert len(submitted) == 200
        assert (submitted == predict_labels(run_proba(load_run(run, tta), pixels))).all()
        held_out = next(line for line in capsys.readouterr().out.splitlines()
                        if line.startswith("held-out"))
        assert ("test-time augmentation" in held_out) == tta


def test_predict_and_evaluate_take_the_recipes_tta(tiny_run, small_demo, tmp_path, capsys):
    """A test CSV and image files are predicted (and evaluated) with the views when the run's
    recipe says so (`default`: `tta` true), as `digits run` submits it; `--no-tta` turns them
    off."""
    from digit_recognizer.data import load_test_csv
    from digit_recognizer.images import load_digits, save_digit_png
    from digit_recognizer.predict import load_run, predict_labels, run_proba

    run = tiny_run[0]
    assert json.loads((run / "config.json").read_text())["config"]["tta"] is True
    pixels = load_test_csv(small_demo.test_csv).pixels
    expected = {tta: predict_labels(run_proba(load_run(run, tta), pixels)) for tta in (False, True)}
    assert (expected[False] != expected[True]).any()  # the tiny model reads some differently
    for flags, tta in (([], True), (["--no-tta"], False), (["--tta"], True)):
        out = tmp_path / f"sub{len(flags)}{tta}.csv"
        assert main(["predict", str(run), str(small_demo.test_csv), "-o", str(out), *flags]) == 0
        assert (read_submission(out) == expected[tta]).all()
    report = tmp_path / "report"
    assert main(["evaluate", str(run), str(small_demo.test_csv), "--labels",
                 str(small_demo.answers_csv), "--report", str(report)]) == 0
    truth = read_submission(small_demo.answers_csv)
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx((expected[True] == truth).mean())
    # images: the same, read by their probability of the top digit (6 decimals)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"d{i}.png")
        save_digit_png(pixels[i].reshape(28, 28), paths[-1])
    digits = load_digits(paths)
    proba = {tta: run_proba(load_run(run, tta), digits) for tta in (False, True)}
    assert not np.allclose(proba[True], proba[False], atol=1e-5)
    for flags, tta in (([], True), (["--no-tta"], False)):
        capsys.readouterr()
        assert main(["predict", str(run), *map(str, paths), "--format", "csv", *flags]) == 0
        rows = [r.split(",") for r in capsys.readouterr().out.splitlines()[1:]]
        assert [int(r[1]) for r in rows] == list(predict_labels(proba[tta]))
        np.testing.assert_allclose([float(r[2]) for r in rows], proba[tta].max(axis=1),
                                   atol=2e-6)


def test_csv_rows_framed_otherwise_are_reframed_unless_asked_not_to(tiny_run, small_demo,
                                                                   tmp_path, capsys):
    """A test CSV whose digits fill the frame (as scans elsewhere do) is read after reframing
    each row as MNIST frames its digits, by predict and evaluate alike, and says so;
    `--no-reframe` reads the rows as they are. Kaggle's own rows are read as they are."""
    from digit_recognizer.data import load_test_csv, write_test_csv, write_train_csv
    from digit_recognizer.images import reframe_rows
    from digit_recognizer.predict import load_run, predict_labels, run_proba
    from test_images import filling_the_frame

    run = tiny_run[0]
    pixels = load_test_csv(small_demo.test_csv).pixels[:40]
    filled = np.stack([filling_the_frame(d) for d in pixels])
    filled_csv = tmp_path / "filled.csv"
    write_test_csv(filled_csv, filled)
    loaded = load_run(run, True)
    expected = {True: predict_labels(run_proba(loaded, reframe_rows(filled)[0])),
                False: predict_labels(run_proba(loaded, filled))}
    assert (expected[True] != expected[False]).any()
    for flags, reframe in (([], True), (["--no-reframe"], False)):
        out = tmp_path / f"sub{reframe}.csv"
        capsys.readouterr()
        assert main(["predict", str(run), str(filled_csv), "-o", str(out), *flags]) == 0
        assert (read_submission(out) == expected[reframe]).all()
        printed = capsys.readouterr().out
        assert ("reframed     40 of 40 rows" in printed) == reframe
    # --show: what the model saw, for each reframed row, named by its ImageId
    assert main(["predict", str(run), str(filled_csv), "-o", str(tmp_path / "s.csv"),
                 "--show", str(tmp_path / "seen")]) == 0
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == sorted(
        f"{i}.seen.png" for i in range(1, 41))
    from PIL import Image

    seen = np.asarray(Image.open(tmp_path / "seen" / "3.seen.png"))[::8, ::8]  # saved 8x
    np.testing.assert_array_equal(seen, reframe_rows(filled)[0][2])
    labeled = tmp_path / "labeled.csv"
    write_train_csv(labeled, filled, read_submission(small_demo.answers_csv)[:40])
    assert main(["evaluate", str(run), str(labeled), "--report", str(tmp_path / "rep")]) == 0
    assert "reframed     40 of 40 rows" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["data"]["reframed_rows"] == 40
    assert main(["predict", str(run), str(small_demo.test_csv), "-o", str(tmp_path / "k.csv")]) == 0
    assert "reframed" not in capsys.readouterr().out  # MNIST's rows: none reframed
    # A model that learned other framings (recorded at training: all of MNIST's rows framed)
    # reads rows as they are.
    info = json.loads((run / "config.json").read_text())
    assert info["data"]["in_mnist_frame"] == 1.0
    other = tmp_path / "trained-on-filled"
    shutil.copytree(run, other)
    info["data"]["in_mnist_frame"] = 0.02
    (other / "config.json").write_text(json.dumps(info))
    assert main(["predict", str(other), str(filled_csv), "-o", str(tmp_path / "o.csv")]) == 0
    assert (read_submission(tmp_path / "o.csv") == expected[False]).all()
    assert "reframed" not in capsys.readouterr().out


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
    with pytest.raises(InputError, match="no such file"):
        main(["--debug", "score", str(tmp_path / "missing.csv"), str(tmp_path / "x.csv")])


@pytest.mark.parametrize("option, value, message", [
    ("--epochs", "0", "must be 1 or more, not 0"),
    ("--epochs", "-3", "must be 1 or more, not -3"),
    ("--batch-size", "0", "must be 1 or more"),
    ("--val-fraction", "1.5", "must be at least 0 and below 1"),
    ("--val-fraction", "-0.1", "must be at least 0 and below 1"),
    ("--seed", "x", "'x' is not a whole number"),
    ("--ensemble", "0", "must be 1 or more"),
    ("--jobs", "0", "must be 1 or more"),
])
def test_numeric_options_are_range_checked_by_the_parser(option, value, message, tmp_path,
                                                         capsys, small_demo):
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(small_demo.train_csv), "--run-dir", str(tmp_path / "r"), option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"digits train: error: argument {option}: {message}" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "x.csv"], "needs --run-dir RUN"),
    (["train", "--run-dir", "r"], "needs TRAIN_CSV"),
    (["train", "x.csv", "--run-dir", "r", "--jobs", "2"], "--jobs J trains ensemble members"),
    (["train", "--resume", "r", "--run-dir", "r"], "--resume RUN takes no"),
    (["serve", "r", "--port", "70000"], "must be 1 to 65535"),
    (["demo-data", "d", "--rows", "60001"], "must be 1 to 60000"),
])
def test_usage_errors_share_argparse_style(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: digits ") and ": error: " in err and message in err


def test_run_never_writes_demo_data_into_a_mistyped_directory(tmp_path, capsys):
    data = tmp_path / "nonexist_dir"
    assert main(["run", "--data", str(data), "--run-dir", str(tmp_path / "r"),
                 "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err and "train.csv" in err
    assert not data.exists() and not (tmp_path / "r").exists()
    data.mkdir()
    assert main(["run", "--data", str(data), "--run-dir", str(tmp_path / "r")]) == 2
    assert "has no train.csv or test.csv" in capsys.readouterr().err
    assert list(data.iterdir()) == []


def test_version_and_help_show_defaults_and_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.fullmatch(r"digits \d+\.\d+\.\d+\n", capsys.readouterr().out)
    for command in ["demo-data", "train", "predict", "score", "evaluate", "serve", "run"]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "examples:\n  digits " + command in text, command
        assert "(default: None)" not in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for recipe in ["default", "fast", "best", "tutorial"]:
        assert re.search(rf"^  {recipe} +.*\b\d+ epochs.* (s|min)\b", text, re.M), recipe
    assert "--add-members" not in text.split("--recipe")[1].split("--epochs")[0]
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "(default: 8000)" in capsys.readouterr().out


def test_show_names_are_distinct():
    from digit_recognizer.commands import seen_names

    assert seen_names(["a/four.png", "b/seven.jpg"]) == ["four.seen.png", "seven.seen.png"]
    assert seen_names(["four.png", "four.jpg"]) == ["four.png.seen.png", "four.jpg.seen.png"]
    names = seen_names(["a/x.png", "b/x.png", "c/x.jpg"])
    assert len(set(names)) == 3


def test_serve_checks_the_run_and_the_port_before_announcing(tiny_run, tmp_path):
    import socket

    out = digits("serve", tmp_path / "notyet")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "is not a run directory" in out.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out = digits("serve", tiny_run[0], "--port", busy.getsockname()[1])
    assert out.returncode == 2 and out.stdout == "", out.stdout
    assert out.stderr.count("\n") == 1 and "is in use" in out.stderr, out.stderr


def test_evaluate_a_test_csv_with_its_answer_key_and_warn_on_training_data(tiny_run,
                                                                           small_demo, tmp_path):
    run_dir = tiny_run[0]
    out = digits("evaluate", run_dir, small_demo.test_csv, "--labels", small_demo.answers_csv,
                 "--report", tmp_path / "rep")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert "(" in out.stdout and "errors in 200 images" in out.stdout
    out = digits("evaluate", run_dir, small_demo.train_csv, "--report", tmp_path / "rep2")
    assert out.returncode == 0
    assert out.stderr.count("\n") == 1 and "is the run's own training file" in out.stderr
    # A file that shares rows with the training data, but is not the same file
    from digit_recognizer.data import load_train_csv, write_train_csv

    train = load_train_csv(small_demo.train_csv)
    mixed = tmp_path / "mixed.csv"
    write_train_csv(mixed, train.pixels[:30], train.labels[:30])
    out = digits("evaluate", run_dir, mixed, "--report", tmp_path / "rep3")
    assert out.returncode == 0
    assert "30 of 30 images are also in the run's training file" in out.stderr
    out = digits("evaluate", run_dir, small_demo.test_csv, "--labels", tmp_path / "none.csv")
    assert out.returncode == 2 and "none.csv: no such file" in out.stderr


def test_score_with_report_prints_the_accuracy_once(small_demo, tmp_path, capsys):
    assert main(["score", str(small_demo.answers_csv), str(small_demo.answers_csv),
                 "--report", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.count("accuracy") == 1
    page = (tmp_path / "r" / "report.html").read_text()
    assert '{"path"' not in page and "sha256 " in page


@pytest.mark.slow
def test_run_with_no_data_option_writes_demo_data_into_data(tmp_path):
    """`make run`'s command: no --data, so data/ (here under a fresh working directory) gets
    the demo data, and the run trains, predicts and scores it."""
    out = digits("run", "--run-dir", "runs/r", "--recipe", "quick", "--epochs", "1",
                 cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert {"train.csv", "test.csv", "test_labels.csv"} <= {p.name for p in
                                                           (tmp_path / "data").iterdir()}
    assert "demo data written" in out.stdout and "held-out" in out.stdout
    assert len(read_submission(tmp_path / "runs" / "r" / "submission.csv")) == 10_000
