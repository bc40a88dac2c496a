"""A problem in a configuration file, located at its line and column."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler import yamlio
from reconciler.yamlio import JsonPath


@dataclass(frozen=True)
class Diagnostic:
    """One problem in one file, at a 1-based line and column."""

    path: str
    line: int
    column: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}:{self.column}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


def at(
    marks: yamlio.Marks, display: str, path: JsonPath, message: str, hint: str = ""
) -> Diagnostic:
    """A diagnostic at the node for `path`, or its nearest ancestor that has a position."""
    while path and path not in marks:
        path = path[:-1]
    line, column = marks.get(path, (1, 1))
    return Diagnostic(display, line, column, message, hint)
