"""Atomic file writing: a reader (or a crash) sees the old file or the new one, never half of one.
Also the one JSON reader for the run files, and the check that a directory can be written."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from .errors import InputError

TEMP_MARK = ".tmp"  # temporary names are ".<stem>.<random>.tmp<suffix>", ignored by every reader


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    The temporary file lives in the same directory so `os.replace` is a rename on one file
    system (atomic on POSIX), and it keeps `path`'s extension because some writers insist on it
    (Keras saves only to `.keras` names, matplotlib picks the format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=TEMP_MARK + path.suffix,
                               dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result should look like open()'s
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def check_writable(directory) -> None:
    """Fail before training, not after an hour, when the run directory cannot be written."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / ".write-test") as tmp:
            tmp.write_bytes(b"0" * 65536)  # a little data, so a full disk shows up too
        (directory / ".write-test").unlink()
    except OSError as e:
        raise InputError(directory, f"cannot be written ({e.strerror or e})") from e


def read_json(path) -> dict:
    """A run file's JSON; a file that is not valid JSON is an InputError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"is not valid JSON ({e})") from e
