"""What a user sees on the terminal: a rejected input is exactly one line of ours, answered before
TensorFlow is imported; a successful command shows no line we did not write.

Each case runs in a fresh interpreter (the test process itself has Keras loaded already).
"""

import gzip
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from digit_recognizer.backend import filter_start_up_lines

# Runs the real CLI in a fresh process, then reports which heavy modules it imported.
PROBE = textwrap.dedent("""
    import sys
    from digit_recognizer.cli import main
    code = main(sys.argv[1:])
    heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
    print("IMPORTED:" + ",".join(heavy))
    sys.exit(code)
""")


def probe(*args):
    out = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=900)
    imported = out.stdout.strip().splitlines()[-1].removeprefix("IMPORTED:")
    return out, imported


def test_start_up_filter_drops_tensorflow_notes_and_keeps_errors():
    caught = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795571940.607650    3115 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1795571678.041827    2395 cpu_feature_guard.cc:227] This TensorFlow "
        "binary is optimized\n"
        "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.\n"
        "E0000 00:00:1795571940.607650    3115 cuda_dnn.cc:1] Unable to register cuDNN\n"
        "ImportError: something real\n")
    assert filter_start_up_lines(caught) == (
        "E0000 00:00:1795571940.607650    3115 cuda_dnn.cc:1] Unable to register cuDNN\n"
        "ImportError: something real\n")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    (d / "train.csv").write_text(f"{header}\n3," + ",".join(["0"] * 783) + ",300\n")
    (d / "test.csv").write_text(",".join(f"pixel{i}" for i in range(784)) + "\n1,2\n")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (d / "answers.csv").write_text("ImageId,Label\n1,7\n")
    (d / "broken.onnx").write_bytes(b"not a model")
    return d


@pytest.mark.parametrize("command", ["train", "train-ensemble", "predict", "predict-image",
                                     "evaluate", "run", "export", "export-target",
                                     "predict-onnx"])
def test_rejected_input_is_one_line_before_tensorflow(command, bad_files, tiny_run, tmp_path):
    run_dir = tiny_run[0]
    args = {
        "train": ["train", bad_files / "train.csv", "--run-dir", tmp_path / "r"],
        "train-ensemble": ["train", bad_files / "train.csv", "--run-dir", tmp_path / "r",
                           "--ensemble", 2],
        "predict": ["predict", run_dir, bad_files / "test.csv", "-o", tmp_path / "s.csv"],
        "predict-image": ["predict", run_dir, bad_files / "broken.png"],
        "evaluate": ["evaluate", run_dir, bad_files / "train.csv"],
        "run": ["run", "--data", tmp_path / "no-such-dir", "--run-dir", tmp_path / "r"],
        "export": ["export", tmp_path / "no-such-run", "-o", tmp_path / "s.csv.onnx"],
        "export-target": ["export", run_dir, "-o", tmp_path / "s.csv"],  # not .onnx
        "predict-onnx": ["predict", bad_files / "broken.onnx", bad_files / "test.csv"],
    }[command]
    out, imported = probe(*args)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("digits: error: ") and out.stderr.count("\n") == 1, out.stderr
    assert imported == "", f"{imported} imported before the input was rejected"
    assert not (tmp_path / "r").exists() and not (tmp_path / "s.csv").exists()


def test_a_successful_train_prints_no_line_we_did_not_write(small_demo, tmp_path):
    out, imported = probe("train", small_demo.train_csv, "--run-dir", tmp_path / "r",
                          "--epochs", 1, "--batch-size", 64)
    assert out.returncode == 0, out.stderr
    assert imported == "keras,tensorflow"  # it did load TensorFlow, and kept it quiet
    assert out.stderr == "", out.stderr


@pytest.mark.parametrize("rows, fmt", [(10, "plain"), (10, "crlf"), (10, "gzip"),
                                       (10, "no final newline"), (30, "plain")])
def test_tiny_training_files_train_with_one_line_saying_how(rows, fmt, mnist, tmp_path):
    pixels, labels = mnist["train_pixels"][:rows], mnist["train_labels"][:rows]
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    lines = [header] + [",".join(map(str, [y, *x.reshape(-1)])) for x, y in zip(pixels, labels)]
    text = ("\r\n" if fmt == "crlf" else "\n").join(lines)
    text += "" if fmt == "no final newline" else ("\r\n" if fmt == "crlf" else "\n")
    path = tmp_path / ("train.csv.gz" if fmt == "gzip" else "train.csv")
    path.write_bytes(gzip.compress(text.encode()) if fmt == "gzip" else text.encode())
    out = subprocess.run([sys.executable, "-m", "digit_recognizer.cli", "train", str(path),
                          "--run-dir", str(tmp_path / "r"), "--epochs", "1"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r" / "model.keras").exists()
    lines = out.stderr.splitlines()
    assert lines and all(line.startswith("digits: warning: ") for line in lines), out.stderr
    assert any("not stratified" in line for line in lines)
    missing = sorted(set(range(10)) - set(labels.tolist()))
    if missing:
        assert any("no rows of digit" in line and str(missing[0]) in line for line in lines)


def test_a_single_row_class_and_a_missing_class(mnist, tmp_path):
    from digit_recognizer.data import write_train_csv

    x, y = mnist["train_pixels"][:3000], mnist["train_labels"][:3000]
    keep = np.flatnonzero(y != 7)
    single = np.concatenate([keep, np.flatnonzero(y == 7)[:1]])
    write_train_csv(tmp_path / "single7.csv", x[single], y[single])
    write_train_csv(tmp_path / "no7.csv", x[keep], y[keep])
    for name, expected in (("single7", "digit 7 has a single row"),
                           ("no7", "no rows of digit 7: the model will never predict it")):
        out = subprocess.run([sys.executable, "-m", "digit_recognizer.cli", "train",
                              str(tmp_path / f"{name}.csv"), "--run-dir", str(tmp_path / name),
                              "--epochs", "1", "--batch-size", "256"],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=900)
        assert out.returncode == 0, out.stderr
        assert out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr


def test_one_row_is_refused_with_the_minimum_unless_validation_is_off(mnist, tmp_path, capsys):
    from digit_recognizer.cli import main
    from digit_recognizer.data import write_train_csv

    write_train_csv(tmp_path / "one.csv", mnist["train_pixels"][:1], mnist["train_labels"][:1])
    assert main(["train", str(tmp_path / "one.csv"), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs at least 2 rows" in err
    assert not (tmp_path / "r").exists()
    assert main(["train", str(tmp_path / "one.csv"), "--run-dir", str(tmp_path / "r"),
                 "--val-fraction", "0", "--epochs", "1"]) == 0
    assert ": training accuracy (no validation split)" in capsys.readouterr().out
