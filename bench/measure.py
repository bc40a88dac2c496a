"""Run one command in a fresh process and measure its wall time and peak memory.

`resource.getrusage(RUSAGE_CHILDREN)` reports the largest child ever waited for, so it
cannot tell one check from the next. Instead the child is started with `posix_spawn` and
reaped with `os.wait4`, which returns that one process's own resource usage: its
`ru_maxrss` is the peak resident set of the command (and of any child it waited for,
such as git, which is far smaller).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Where `bench` itself lives, so `python -m bench.…` children find it from any directory.
BENCH_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Measured:
    """How a process ended and what it cost."""

    exit_code: int  # negative: killed by that signal
    wall_seconds: float
    max_rss_mib: float
    timed_out: bool
    stdout: bytes
    stderr: bytes


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a Python child that must import `bench` and `reconciler`."""
    env = dict(os.environ)
    paths = [str(BENCH_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra or {})
    return env


def run_measured(
    argv: Sequence[str],
    *,
    output_dir: Path,
    name: str,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Measured:
    """Run `argv` (argv[0] a path) with stdout and stderr in files under `output_dir`.

    With `timeout`, the process is killed once it has run that many seconds and the
    result says `timed_out`.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = output_dir / f"{name}.stdout", output_dir / f"{name}.stderr"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(out_path), flags, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, str(err_path), flags, 0o644),
    ]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], list(argv), dict(env or os.environ), file_actions=actions)
    killed = threading.Event()
    timer: threading.Timer | None = None
    if timeout is not None:

        def kill() -> None:
            killed.set()
            # The child may have ended an instant ago; it is reaped only below.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
    try:
        _, status, usage = os.wait4(pid, 0)
    finally:
        if timer is not None:
            timer.cancel()
    wall = time.perf_counter() - started
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    rss_bytes = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return Measured(
        exit_code=os.waitstatus_to_exitcode(status),
        wall_seconds=wall,
        max_rss_mib=rss_bytes / 2**20,
        timed_out=killed.is_set(),
        stdout=out_path.read_bytes(),
        stderr=err_path.read_bytes(),
    )
