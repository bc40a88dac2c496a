"""Stopping the servers the connector tests start."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen[bytes] | None, wait: float) -> None:
    """Ask `process` to stop, give it `wait` seconds, then kill it."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
