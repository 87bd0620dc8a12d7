"""The bad-input corpus: generated here, each file run through the real CLI.

Every case must give one line on stderr naming the file (and line/column where there is one),
exit code 2, no traceback, and leave the output untouched.
"""

import gzip
import json

import pytest

from digit_recognizer.cli import main
from digit_recognizer.data import PIXEL_COLUMNS, TRAIN_COLUMNS

TRAIN_HEADER = ",".join(TRAIN_COLUMNS)
TEST_HEADER = ",".join(PIXEL_COLUMNS)


def row(label="3", pixels=None):
    cells = ["0"] * 784 if pixels is None else pixels
    return ",".join(([label] if label is not None else []) + cells)


def with_pixel(value, at=10):
    cells = ["0"] * 784
    cells[at] = value
    return cells


# name -> (bytes, is_train, expected "line N" or None, expected fragment of the message)
def corpus():
    t, h = TRAIN_HEADER, TEST_HEADER
    good = row()
    cases = {
        "wrong header": (f"{t.replace('label', 'digit')}\n{good}\n", True, "line 1", "bad header"),
        "missing header": (f"{good}\n{good}\n", True, "line 1", "bad header"),
        "duplicated header": (f"{t}\n{t}\n{good}\n", True, "line 2", "not an integer"),
        "extra column in one row": (f"{t}\n{good}\n{good},7\n", True, "line 3", "found 786"),
        "missing column in one row": (f"{t}\n{good}\n{good[:-2]}\n", True, "line 3", "found 784"),
        "non-numeric cell": (f"{t}\n{row(pixels=with_pixel('x1'))}\n", True, "line 2",
                             "not an integer"),
        "empty cell": (f"{t}\n{row(pixels=with_pixel(''))}\n", True, "line 2", "empty cell"),
        "NaN": (f"{t}\n{row(pixels=with_pixel('NaN'))}\n", True, "line 2", "'NaN'"),
        "inf": (f"{t}\n{good}\n{row(pixels=with_pixel('inf'))}\n", True, "line 3", "'inf'"),
        "negative pixel": (f"{t}\n{row(pixels=with_pixel('-3'))}\n", True, "line 2", "'-3'"),
        "pixel 256": (f"{t}\n{row(pixels=with_pixel('256'))}\n", True, "line 2", "outside 0-255"),
        "float pixel": (f"{t}\n{row(pixels=with_pixel('12.5'))}\n", True, "line 2", "'12.5'"),
        "label -1": (f"{t}\n{row(label='-1')}\n", True, "line 2", "not an integer label"),
        "label 10": (f"{t}\n{row(label='10')}\n", True, "line 2", "outside 0-9"),
        "label a": (f"{t}\n{row(label='a')}\n", True, "line 2", "not an integer label"),
        "empty file": ("", True, "line 1", "empty"),
        "header only": (f"{t}\n", True, "line 2", "no rows"),
        "truncated last line": (f"{t}\n{good}\n{good[:900]}", True, "line 3", "expected 785"),
        "binary file": (bytes(range(256)) * 64, True, None, "not UTF-8"),
        "test file as train": (f"{h}\n{row(label=None)}\n", True, "line 1", "looks like a test"),
        "train file as test": (f"{t}\n{good}\n", False, "line 1", "looks like a train"),
        "10 MB on one line": (f"{t}\n" + "1" * 10_000_000 + "\n", True, "line 2",
                              "expected 785 values, found 1"),
        "test: non-numeric": (f"{h}\n{row(None)}\n{row(None, with_pixel('?'))}\n", False,
                              "line 3", "'?'"),
        "test: missing column": (f"{h}\n{row(None)[:-2]}\n", False, "line 2", "found 783"),
    }
    return cases


CORPUS = corpus()


def _write(tmp_path, name, content, gz=False):
    path = tmp_path / (name.replace(" ", "_").replace(":", "") + (".csv.gz" if gz else ".csv"))
    blob = content.encode() if isinstance(content, str) else content
    path.write_bytes(gzip.compress(blob) if gz else blob)
    return path


def _check(capsys, code, path, line):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert str(path) in err
    if line:
        assert line in err, err
    return err


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_input_through_the_cli(name, tmp_path, capsys, tiny_run):
    content, is_train, line, words = CORPUS[name]
    path = _write(tmp_path, name, content)
    if is_train:
        run = tmp_path / "run"
        code = main(["train", str(path), "--run-dir", str(run), "--epochs", "1"])
        err = _check(capsys, code, path, line)
        assert not run.exists(), "a run directory was created for bad input"
    else:
        run_dir, _, _ = tiny_run
        out = tmp_path / "submission.csv"
        out.write_text("ImageId,Label\n1,7\n")  # an earlier submission must survive
        code = main(["predict", str(run_dir), str(path), "-o", str(out)])
        err = _check(capsys, code, path, line)
        assert out.read_text() == "ImageId,Label\n1,7\n"
    assert words in err


def test_corrupt_gzip(tmp_path, capsys):
    good = gzip.compress((TRAIN_HEADER + "\n" + row() + "\n").encode())
    path = tmp_path / "train.csv.gz"
    path.write_bytes(good[:40] + b"\x00garbage\xff" * 8)
    code = main(["train", str(path), "--run-dir", str(tmp_path / "run")])
    assert "gzip" in _check(capsys, code, path, None)


def test_gzipped_bad_row_is_located_too(tmp_path, capsys):
    path = _write(tmp_path, "g", f"{TRAIN_HEADER}\n{row()}\n{row(label='b')}\n", gz=True)
    code = main(["train", str(path), "--run-dir", str(tmp_path / "run")])
    _check(capsys, code, path, "line 3")


@pytest.mark.parametrize("field, value, words", [
    ("pen_styles", "thick,crayon", "unknown pen style crayon; choose from thick, marker"),
    ("conv_norm", "sideways", "unknown conv_norm 'sideways'; choose from before_pool"),
    ("architecture", "resnet", "unknown architecture 'resnet'"),
    ("checkpoint", "first", "unknown checkpoint 'first'; choose from best, last"),
])
def test_a_recipe_file_naming_what_does_not_exist(field, value, words, tmp_path, capsys,
                                                  small_demo):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"architecture": "quick", "augment": True, "pen": 0.3,
                                  field: value}))
    run = tmp_path / "run"
    code = main(["train", str(small_demo.train_csv), "--run-dir", str(run), "--recipe",
                 str(recipe)])
    err = _check(capsys, code, recipe, None)
    assert words in err and not run.exists()


def test_missing_run_directory_for_predict(tmp_path, capsys, small_demo):
    code = main(["predict", str(tmp_path / "nope"), str(small_demo.test_csv), "-o",
                 str(tmp_path / "s.csv")])
    _check(capsys, code, tmp_path / "nope", None)
    assert not (tmp_path / "s.csv").exists()

