"""All YAML reading and writing (placeholder API; hardened loader to follow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import YamlError

DEFAULT_MAX_BYTES = 10 * 1024 * 1024


def load(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    data = path.read_bytes()
    if len(data) > max_bytes:
        raise YamlError(str(path), 1, 1, f"file is larger than {max_bytes} bytes")
    return yaml.safe_load(data)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)
