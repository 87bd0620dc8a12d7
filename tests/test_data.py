import gzip
import os

import numpy as np
import pytest

from digit_recognizer.data import (CACHE_SUFFIX, TRAIN_COLUMNS, load_test_csv, load_train_csv,
                                   read_submission, write_submission, write_test_csv,
                                   write_train_csv)
from digit_recognizer.errors import InputError

HEADER = ",".join(TRAIN_COLUMNS)
TEST_HEADER = ",".join(TRAIN_COLUMNS[1:])


def good_row(label=3, fill=0):
    return ",".join([str(label)] + [str(fill)] * 784)


def write(tmp_path, text, name="train.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_demo_data_round_trip(small_demo, mnist):
    train = load_train_csv(small_demo.train_csv, use_cache=False)
    assert train.pixels.dtype == np.uint8 and train.pixels.shape == (400, 28, 28)
    np.testing.assert_array_equal(train.pixels, mnist["train_pixels"][small_demo.train_indices])
    np.testing.assert_array_equal(train.labels, mnist["train_labels"][small_demo.train_indices])
    test = load_test_csv(small_demo.test_csv, use_cache=False)
    assert test.labels is None
    np.testing.assert_array_equal(test.pixels, mnist["test_pixels"][small_demo.test_order])
    answers = read_submission(small_demo.answers_csv)
    np.testing.assert_array_equal(answers, mnist["test_labels"][small_demo.test_order])


def test_demo_data_headers_are_kaggles(small_demo):
    with open(small_demo.train_csv) as f:
        assert f.readline().rstrip("\n") == HEADER
    with open(small_demo.test_csv) as f:
        assert f.readline().rstrip("\n") == TEST_HEADER
    with open(small_demo.answers_csv) as f:
        assert f.readline().rstrip("\n") == "ImageId,Label"
        assert f.readline().startswith("1,")


def test_embedded_mnist_is_the_real_thing(mnist):
    assert mnist["train_pixels"].shape == (60_000, 28, 28)
    assert mnist["test_pixels"].shape == (10_000, 28, 28)
    assert np.bincount(mnist["test_labels"]).tolist()[:3] == [980, 1135, 1032]  # MNIST's counts
    assert mnist["train_pixels"].max() == 255


def test_train_csv_round_trip_with_crlf_bom_and_gzip(tmp_path, rng):
    pixels = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 4, 4, 1], dtype=np.uint8)
    write_train_csv(tmp_path / "a.csv", pixels, labels)
    text = (tmp_path / "a.csv").read_text()
    variants = {
        "crlf.csv": text.replace("\n", "\r\n").encode(),
        "bom.csv": b"\xef\xbb\xbf" + text.encode(),
    }
    for name, blob in variants.items():
        (tmp_path / name).write_bytes(blob)
    (tmp_path / "z.csv.gz").write_bytes(gzip.compress(text.encode()))
    for name in ["a.csv", "crlf.csv", "bom.csv", "z.csv.gz"]:
        data = load_train_csv(tmp_path / name, use_cache=False)
        np.testing.assert_array_equal(data.pixels, pixels, err_msg=name)
        np.testing.assert_array_equal(data.labels, labels, err_msg=name)


def test_test_csv_round_trip(tmp_path, rng):
    pixels = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    write_test_csv(tmp_path / "t.csv.gz", pixels)
    np.testing.assert_array_equal(load_test_csv(tmp_path / "t.csv.gz").pixels, pixels)


def test_cache_is_used_and_invalidated_when_csv_changes(tmp_path, rng):
    path = tmp_path / "train.csv"
    write_train_csv(path, np.zeros((2, 28, 28), np.uint8), np.array([1, 2]))
    first = load_train_csv(path)
    cache = tmp_path / ("train.csv" + CACHE_SUFFIX)
    assert cache.exists()
    assert load_train_csv(path).labels.tolist() == [1, 2]
    # Same size, same mtime, different content: the checksum must catch it.
    stat = os.stat(path)
    path.write_text(path.read_text().replace("\n1,", "\n7,", 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = load_train_csv(path)
    assert second.labels.tolist() == [7, 2]
    assert second.sha256 != first.sha256


def test_damaged_cache_is_ignored(tmp_path):
    path = tmp_path / "train.csv"
    write_train_csv(path, np.zeros((2, 28, 28), np.uint8), np.array([5, 6]))
    (tmp_path / ("train.csv" + CACHE_SUFFIX)).write_bytes(b"not a zip file")
    assert load_train_csv(path).labels.tolist() == [5, 6]


# Each malformed file: (content, loader, expected line, expected column, words in the message)
MALFORMED = {
    "empty file": ("", "train", 1, None, "empty"),
    "header only": (HEADER + "\n", "train", 2, None, "no rows"),
    "wrong header name": (HEADER.replace("pixel5,", "pixelX,") + "\n" + good_row(), "train", 1,
                          7, "pixel5"),
    "missing header": (good_row() + "\n" + good_row(), "train", 1, 1, "header"),
    "test columns as train": (TEST_HEADER + "\n" + ",".join(["0"] * 784), "train", 1, None,
                              "looks like a test file"),
    "train columns as test": (HEADER + "\n" + good_row(), "test", 1, None,
                              "looks like a train file"),
    "short row": (HEADER + "\n" + good_row() + "\n" + good_row()[:-2], "train", 3, 785,
                  "expected 785 values, found 784"),
    "long row": (HEADER + "\n" + good_row() + ",0\n", "train", 2, 786, "found 786"),
    "non-numeric pixel": (HEADER + "\n" + good_row() + "\n" + "1,0,abc" + ",0" * 782, "train",
                          3, 3, "'abc' is not an integer"),
    "empty cell": (HEADER + "\n" + "1,0,,0" + ",0" * 781, "train", 2, 3, "empty"),
    "pixel above 255": (HEADER + "\n" + "1" + ",0" * 783 + ",256", "train", 2, 785,
                        "outside 0-255"),
    "negative pixel": (HEADER + "\n" + "1,-1" + ",0" * 783, "train", 2, 2, "not an integer"),
    "float pixel": (HEADER + "\n" + "1,0.5" + ",0" * 783, "train", 2, 2, "not an integer"),
    "label 10": (HEADER + "\n" + good_row() + "\n" + good_row(label=10), "train", 3, 1,
                 "outside 0-9"),
    "label a": (HEADER + "\n" + good_row(label="a"), "train", 2, 1, "not an integer label"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_csv_is_located(tmp_path, case):
    content, kind, line, column, words = MALFORMED[case]
    path = write(tmp_path, content)
    loader = load_train_csv if kind == "train" else load_test_csv
    with pytest.raises(InputError) as info:
        loader(path, use_cache=False)
    err = info.value
    assert err.path == str(path)
    assert err.line == line, str(err)
    assert err.column == column, str(err)
    assert words in str(err)
    assert "\n" not in str(err)
    assert not (tmp_path / ("train.csv" + CACHE_SUFFIX)).exists()


def test_binary_and_corrupt_gzip_files(tmp_path):
    (tmp_path / "bin.csv").write_bytes(bytes(range(256)) * 10)
    with pytest.raises(InputError, match="not UTF-8"):
        load_train_csv(tmp_path / "bin.csv")
    (tmp_path / "bad.csv.gz").write_bytes(gzip.compress(b"label,pixel0\n")[:-8] + b"garbage!")
    with pytest.raises(InputError, match="gzip"):
        load_train_csv(tmp_path / "bad.csv.gz")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_train_csv(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="directory"):
        load_train_csv(tmp_path)


def test_submission_round_trip_and_format(tmp_path):
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    path = tmp_path / "submission.csv"
    write_submission(path, labels)
    lines = path.read_text().splitlines()
    assert lines[0] == "ImageId,Label"
    assert lines[1] == "1,3" and lines[-1] == "8,6" and len(lines) == 9
    np.testing.assert_array_equal(read_submission(path), labels)


@pytest.mark.parametrize("content, line, words", [
    ("ImageId,Label\n1,3\n3,4\n", 3, "out of order"),
    ("ImageId,Label\n1,12\n", 2, "not a digit"),
    ("Label,ImageId\n1,1\n", 1, "bad header"),
    ("ImageId,Label\n", 2, "no rows"),
    ("ImageId,Label\n1,3,4\n", 2, "expected 2 values"),
])
def test_bad_submissions_are_located(tmp_path, content, line, words):
    path = write(tmp_path, content, "submission.csv")
    with pytest.raises(InputError) as info:
        read_submission(path)
    assert info.value.line == line and words in str(info.value)


def test_streamed_chunks_equal_the_whole_file(small_demo):
    from digit_recognizer.data import iter_test_chunks

    chunks = list(iter_test_chunks(small_demo.test_csv, block_bytes=64 * 1024))
    assert len(chunks) > 3  # really streamed in pieces
    whole = load_test_csv(small_demo.test_csv, use_cache=False).pixels
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_streamed_bad_row_after_good_chunks_is_located(tmp_path, rng):
    from digit_recognizer.data import iter_test_chunks

    path = tmp_path / "test.csv"
    write_test_csv(path, rng.integers(0, 256, (300, 28, 28), dtype=np.uint8))
    with open(path, "a") as f:
        f.write(",".join(["1"] * 783 + ["x"]) + "\n")
    with pytest.raises(InputError) as info:
        for _ in iter_test_chunks(path, block_bytes=32 * 1024):
            pass
    assert info.value.line == 302 and info.value.column == 784
