"""`reconciler validate`: every problem in reconciler.yaml and policies/, with file:line:col."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.commands import EXIT_ERROR, EXIT_OK
from reconciler.output import emit
from reconciler.validate import validate_repo


@dataclass(frozen=True)
class ValidateOptions:
    repo: Path


def validate(options: ValidateOptions) -> int:
    diagnostics = validate_repo(options.repo)
    for diagnostic in diagnostics:
        emit(str(diagnostic))
    if diagnostics:
        emit(f"{len(diagnostics)} problem{'s' if len(diagnostics) != 1 else ''} found")
        return EXIT_ERROR
    emit("reconciler.yaml and policies are valid")
    return EXIT_OK
