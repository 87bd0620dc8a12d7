"""Kaggle Digit Recognizer CSV files: strict reading and writing (the demo data: demo.py).

Formats (Kaggle's):
  train.csv  header `label,pixel0,...,pixel783`, labels 0-9, integer pixels 0-255
  test.csv   header `pixel0,...,pixel783`
  submission `ImageId,Label`, ImageId 1-based in test.csv order

Valid files take the fast path (pyarrow's multithreaded parser straight to uint8, which also
range-checks pixels) plus an optional binary cache keyed on the CSV's SHA-256. Anything the
fast path rejects is re-read by a strict line-by-line validator whose only job is to name the
first bad file/line/column in a one-line `InputError`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_path

IMAGE_SIZE = 28
N_CLASSES = 10  # the digits 0-9: Kaggle's labels, and every model's outputs
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
PIXEL_COLUMNS = tuple(f"pixel{i}" for i in range(N_PIXELS))
TRAIN_COLUMNS = ("label", *PIXEL_COLUMNS)
TEST_COLUMNS = PIXEL_COLUMNS
SUBMISSION_COLUMNS = ("ImageId", "Label")

CACHE_SUFFIX = ".digits-cache.npz"
CACHE_VERSION = 1


@dataclass(frozen=True)
class DigitsData:
    """Images read from one CSV file. `labels` is None for an unlabeled (test) file."""

    pixels: np.ndarray  # uint8, shape (n, 28, 28), 0 = background
    labels: np.ndarray | None  # uint8, shape (n,), 0-9
    path: str
    sha256: str

    def __len__(self) -> int:
        return len(self.pixels)


# ---------------------------------------------------------------------------------------------
# Reading


def load_train_csv(path, use_cache: bool = True) -> DigitsData:
    """Read a labeled file in Kaggle's train.csv format (`label,pixel0..pixel783`)."""
    return _load_csv(Path(path), TRAIN_COLUMNS, use_cache)


def load_test_csv(path, use_cache: bool = True) -> DigitsData:
    """Read an unlabeled file in Kaggle's test.csv format (`pixel0..pixel783`)."""
    return _load_csv(Path(path), TEST_COLUMNS, use_cache)


def _open_binary(path: Path):
    """Byte stream of a CSV, decompressed when the name ends in .gz."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _open_text(path: Path):
    """Text stream that accepts .gz, a UTF-8 BOM and any line ending."""
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", newline="")


def _check_csv_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a CSV file")


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _load_csv(path: Path, columns: tuple[str, ...], use_cache: bool) -> DigitsData:
    _check_csv_file(path)
    digest = file_sha256(path)
    cache = path.with_name(path.name + CACHE_SUFFIX)
    if use_cache and (cached := _read_cache(cache, digest, columns)) is not None:
        return DigitsData(*cached, path=str(path), sha256=digest)
    _check_header(path, columns)
    try:
        table = _read_fast(path, columns)
    except Exception as fast_error:  # pyarrow's messages lack line numbers: locate it ourselves
        locate_csv_problem(path, columns)
        raise InputError(path, f"cannot be parsed as CSV: {fast_error}") from fast_error
    if table.num_rows == 0:
        raise InputError(path, "has a header but no rows", line=2)
    values = np.empty((table.num_rows, len(columns)), dtype=np.uint8)
    for j, column in enumerate(table.columns):
        if column.null_count:
            locate_csv_problem(path, columns)
            raise InputError(path, "has an empty cell", column=j + 1, column_name=columns[j])
        values[:, j] = column.to_numpy()
    labels = None
    if columns[0] == "label":
        labels = values[:, 0].copy()
        if labels.max() > 9:
            locate_csv_problem(path, columns)
            raise InputError(path, "has a label outside 0-9", column=1, column_name="label")
        values = values[:, 1:]
    pixels = np.ascontiguousarray(values).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if use_cache:
        _write_cache(cache, digest, pixels, labels)
    return DigitsData(pixels, labels, path=str(path), sha256=digest)


def iter_test_chunks(path, block_bytes: int = 1 << 24):
    """Stream an unlabeled CSV as uint8 pixel chunks (n, 28, 28), ~`block_bytes` of CSV each,
    so a file of any size is predicted in bounded memory. Bad input raises InputError (located
    by the strict reader) even when earlier chunks were fine.

    Whole lines are cut off here and each piece is parsed by pyarrow on its own: pyarrow's own
    streaming reader (`open_csv`) reached ~700 MB peak RSS on a 900 MB file, this stays flat.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    path = Path(path)
    _check_csv_file(path)
    _check_header(path, TEST_COLUMNS)
    read_options = pcsv.ReadOptions(column_names=list(TEST_COLUMNS), block_size=block_bytes + 4096)
    convert_options = pcsv.ConvertOptions(column_types={n: pa.uint8() for n in TEST_COLUMNS})
    rows = 0
    try:
        with _open_binary(path) as f:
            f.readline()  # the header, checked already
            while lines := f.readlines(block_bytes):
                table = pcsv.read_csv(io.BytesIO(b"".join(lines)), read_options=read_options,
                                      convert_options=convert_options)
                chunk = np.empty((table.num_rows, N_PIXELS), dtype=np.uint8)
                for j, column in enumerate(table.columns):
                    if column.null_count:
                        raise ValueError("empty cell")
                    chunk[:, j] = column.to_numpy()
                rows += len(chunk)
                if len(chunk):
                    yield chunk.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    except InputError:
        raise
    except Exception as e:
        locate_csv_problem(path, TEST_COLUMNS)
        raise InputError(path, f"cannot be parsed as CSV: {e}") from e
    if rows == 0:
        raise InputError(path, "has a header but no rows", line=2)


def _read_fast(path: Path, columns: tuple[str, ...]):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    return pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(block_size=1 << 24),
        convert_options=pcsv.ConvertOptions(
            # uint8 makes the parser itself reject negative, >255, float and non-numeric cells.
            column_types={name: pa.uint8() for name in columns},
            include_columns=list(columns),
        ),
    )


def _check_header(path: Path, columns: tuple[str, ...]) -> None:
    try:
        with _open_text(path) as f:
            first = next(csv.reader(f), None)
    except (UnicodeDecodeError, csv.Error, OSError, EOFError, zlib.error) as e:
        raise InputError(path, _describe_unreadable(e), line=1) from e
    if first is None:
        raise InputError(path, "is empty (expected a header line)", line=1)
    header = tuple(cell.strip() for cell in first)
    if header == columns:
        return
    if columns[0] == "label" and header == TEST_COLUMNS:
        raise InputError(path, "has no 'label' column: this looks like a test file, "
                               "but a labeled (train) file was expected", line=1)
    if header == SUBMISSION_COLUMNS:
        raise InputError(path, "holds ImageId,Label (a submission or answer key), not images; "
                               "to evaluate on a test CSV and its answer key: digits evaluate "
                               "RUN test.csv --labels test_labels.csv", line=1)
    if columns[0] != "label" and header == TRAIN_COLUMNS:
        raise InputError(path, "has a 'label' column: this looks like a train file, "
                               "but an unlabeled (test) file was expected", line=1)
    for j, (got, want) in enumerate(zip(header, columns)):
        if got != want:
            raise InputError(path, f"bad header: expected {want!r}, found {got[:40]!r}",
                             line=1, column=j + 1)
    raise InputError(path, f"bad header: expected {len(columns)} columns "
                           f"({columns[0]},...,{columns[-1]}), found {len(header)}", line=1)


def _describe_unreadable(e: Exception) -> str:
    if isinstance(e, UnicodeDecodeError):
        return "is not UTF-8 text (a binary file?)"
    if isinstance(e, (gzip.BadGzipFile, EOFError, zlib.error)):
        return f"is not a valid gzip file ({e})"
    if isinstance(e, csv.Error):
        return f"is not valid CSV ({e})"
    return f"cannot be read ({e})"


def locate_csv_problem(path, columns: tuple[str, ...]) -> None:
    """Re-read `path` strictly and raise an InputError at the first bad line/column.

    Slow (pure Python), so only called once the fast reader has failed. Returns normally when
    it finds nothing wrong, which the caller then reports as a generic parse failure.
    """
    path = Path(path)
    n_cols = len(columns)
    has_label = columns[0] == "label"
    csv.field_size_limit(1 << 30)  # a 10 MB line is reported as a bad line, not a csv.Error
    rows = 0
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            next(reader, None)  # header, checked already
            for row in reader:
                line = reader.line_num
                if not row or row == [""]:
                    continue  # blank lines are skipped, as the fast reader does
                rows += 1
                if len(row) != n_cols:
                    column = min(len(row), n_cols) + 1 if len(row) < n_cols else n_cols + 1
                    raise InputError(path, f"expected {n_cols} values, found {len(row)}",
                                     line=line, column=column)
                if all(row) and "".join(row).isascii() and "".join(row).isdigit():
                    values = np.asarray(row).astype(np.int64)
                    if values[1:].max(initial=0) <= 255 and values[0] <= (9 if has_label else 255):
                        continue
                _raise_bad_cell(path, line, row, columns)
    except (UnicodeDecodeError, csv.Error, OSError, EOFError, zlib.error) as e:
        raise InputError(path, _describe_unreadable(e)) from e
    if rows == 0:
        raise InputError(path, "has a header but no rows", line=2)


def _raise_bad_cell(path, line: int, row: list[str], columns: tuple[str, ...]):
    for j, cell in enumerate(row):
        name = columns[j]
        is_label = name == "label"
        shown = cell if len(cell) <= 20 else cell[:20] + "..."
        if cell.strip() == "":
            problem = "empty cell"
        elif not (cell.isascii() and cell.isdigit()):
            what = "label" if is_label else "pixel"
            problem = f"{shown!r} is not an integer {what} ({'0-9' if is_label else '0-255'})"
        elif is_label and int(cell) > 9:
            problem = f"label {cell} is outside 0-9"
        elif int(cell) > 255:
            problem = f"pixel value {cell} is outside 0-255"
        else:
            continue
        raise InputError(path, problem, line=line, column=j + 1, column_name=name)


def _read_cache(cache: Path, digest: str, columns: tuple[str, ...]):
    try:
        with np.load(cache, allow_pickle=False) as z:  # never unpickle: a cache is user-writable
            if (int(z["version"]) != CACHE_VERSION or str(z["sha256"]) != digest
                    or bool(z["has_labels"]) != (columns[0] == "label")):
                return None
            labels = z["labels"] if bool(z["has_labels"]) else None
            pixels = z["pixels"]
    except Exception:  # missing, stale or damaged: just re-read the CSV
        return None
    if pixels.dtype != np.uint8 or pixels.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        return None
    return pixels, labels


def _write_cache(cache: Path, digest: str, pixels: np.ndarray, labels: np.ndarray | None) -> None:
    try:
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, version=CACHE_VERSION, sha256=digest, pixels=pixels,
                         has_labels=labels is not None,
                         labels=labels if labels is not None else np.zeros(0, np.uint8))
    except OSError:
        pass  # a read-only data directory just means no cache


def to_inputs(pixels: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) -> float32 (n, 28, 28, 1) raw pixels 0-255, every model's input."""
    return np.asarray(pixels, dtype=np.float32).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)


# ---------------------------------------------------------------------------------------------
# Writing


def _write_csv(path, header: tuple[str, ...], values: np.ndarray) -> None:
    """Write integer `values` (n, len(header)) as CSV atomically; .gz names are compressed."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    table = pa.table({name: values[:, j] for j, name in enumerate(header)})
    path = Path(path)
    with atomic_path(path) as tmp:
        sink = gzip.open(tmp, "wb") if path.name.endswith(".gz") else open(tmp, "wb")
        with sink:
            sink.write((",".join(header) + "\n").encode())  # Kaggle's headers are unquoted
            pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False))


def write_train_csv(path, pixels: np.ndarray, labels: np.ndarray) -> None:
    flat = np.asarray(pixels, dtype=np.uint8).reshape(len(pixels), N_PIXELS)
    _write_csv(path, TRAIN_COLUMNS, np.column_stack([np.asarray(labels, np.uint8), flat]))


def write_test_csv(path, pixels: np.ndarray) -> None:
    flat = np.asarray(pixels, dtype=np.uint8).reshape(len(pixels), N_PIXELS)
    _write_csv(path, TEST_COLUMNS, flat)


def write_submission(path, labels: np.ndarray) -> None:
    """Kaggle's submission format: `ImageId,Label`, ImageId from 1, one row per test image."""
    labels = np.asarray(labels).astype(np.int64)
    ids = np.arange(1, len(labels) + 1, dtype=np.int64)
    _write_csv(path, SUBMISSION_COLUMNS, np.column_stack([ids, labels]))


def read_submission(path) -> np.ndarray:
    """Read and check a submission (or answer key) as Kaggle would; return labels by ImageId."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise InputError(path, "is empty (expected header 'ImageId,Label')", line=1)
            if [c.strip() for c in header] != list(SUBMISSION_COLUMNS):
                raise InputError(path, f"bad header: expected 'ImageId,Label', found "
                                       f"{','.join(header)[:60]!r}", line=1)
            labels = []
            for row in reader:
                line = reader.line_num
                if not row or row == [""]:
                    continue
                if len(row) != 2:
                    raise InputError(path, f"expected 2 values, found {len(row)}", line=line,
                                     column=min(len(row), 2) + 1)
                image_id, label = (cell.strip() for cell in row)
                if image_id != str(len(labels) + 1):
                    raise InputError(path, f"ImageId {image_id[:20]!r} out of order: expected "
                                           f"{len(labels) + 1}", line=line, column=1,
                                     column_name="ImageId")
                if len(label) != 1 or not label.isdigit():
                    raise InputError(path, f"label {label[:20]!r} is not a digit 0-9", line=line,
                                     column=2, column_name="Label")
                labels.append(int(label))
    except (UnicodeDecodeError, csv.Error, EOFError, zlib.error) as e:
        raise InputError(path, _describe_unreadable(e)) from e
    if not labels:
        raise InputError(path, "has a header but no rows", line=2)
    return np.asarray(labels, dtype=np.uint8)
