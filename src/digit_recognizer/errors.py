"""The one exception type the CLI turns into a one-line message and exit code 2, and the one
warning type it prints as one line."""

from __future__ import annotations

import sys
import warnings

# Exit code of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it): the
# CLI's, and an ensemble member process's.
EXIT_INTERRUPTED = 130


class InputError(ValueError):
    """Bad user input, located as precisely as we can: file, line (1-based), column (1-based)."""

    def __init__(self, path, message: str, line: int | None = None, column: int | None = None,
                 column_name: str | None = None):
        self.path = str(path)
        self.message = message
        self.line = line
        self.column = column
        self.column_name = column_name
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.path]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            name = f" ({self.column_name})" if self.column_name else ""
            where.append(f"column {self.column}{name}")
        return f"{', '.join(where)}: {self.message}"


class DataWarning(UserWarning):
    """Input that is valid but deserves a word (a tiny file, a digit with no rows, evaluating on
    training data). The CLI prints it as one `digits: warning: ...` line."""


def show_warnings_as_lines(stream=None) -> None:
    """Print every DataWarning as one `digits: warning: MESSAGE` line (stderr by default)."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print(f"digits: warning: {message}", file=stream or sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", DataWarning)
