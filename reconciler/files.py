"""Writing a file so that no reader, and no crash, ever sees half of it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, content: bytes) -> None:
    """Replace `path` with `content`: written to a temporary file beside it, flushed to
    disk, then renamed over it. Creates the directory if needed.

    The file gets the mode any new file would (the umask decides); tempfile's 0600 would
    leave snapshots unreadable to the rest of a team sharing the checkout.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
