"""One check or apply at a time per access repository (DESIGN §9).

An operating-system lock on a file inside `.git`: it is released when its holder ends,
however it ends, so a killed run never leaves the repository locked. The second run
waits briefly, then says who holds the lock.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import filelock

from reconciler.clock import timestamp, utc_now
from reconciler.errors import ReconcilerError
from reconciler.git import Git

DEFAULT_WAIT = 10.0
WAIT_ENV = "RECONCILER_LOCK_WAIT"  # seconds; for scripts that prefer to fail fast


class LockedError(ReconcilerError):
    """Another reconciler holds the access repository."""


def _wait() -> float:
    try:
        return max(0.0, float(os.environ.get(WAIT_ENV, DEFAULT_WAIT)))
    except ValueError:
        return DEFAULT_WAIT


@contextmanager
def exclusive(git: Git, command: str) -> Iterator[None]:
    """Hold the access repository for `command` (e.g. "apply --confirm")."""
    directory = git.private_dir()
    holder = directory / "lock.holder"
    lock = filelock.FileLock(directory / "lock", timeout=_wait())
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            who = holder.read_text(encoding="utf-8").strip()
        except OSError:
            who = "another process"
        raise LockedError(
            f"{git.root} is in use by reconciler {who}; only one check or apply runs at a "
            "time in an access repository. Wait for it to finish and run again"
        ) from None
    try:
        since = timestamp(utc_now())
        holder.write_text(
            f"{command} (pid {os.getpid()} on {socket.gethostname()}, since {since})",
            encoding="utf-8",
        )
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()
