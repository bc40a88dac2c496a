"""Output formats and where output goes."""

from __future__ import annotations

import enum
import os
import sys
from typing import Any

import orjson


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


def emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def emit_json(data: Any) -> None:
    emit(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def step_summary(markdown: str) -> None:
    """Append to the GitHub Actions job summary when running there."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(markdown.rstrip() + "\n\n")


def group(title: str) -> None:
    if os.environ.get("GITHUB_ACTIONS") == "true":
        emit(f"::group::{title}")


def end_group() -> None:
    if os.environ.get("GITHUB_ACTIONS") == "true":
        emit("::endgroup::")
