"""The one exception type the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations


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
