"""The newcomer's baseline: what an obvious implementation of the same check costs.

Snapshots as block-style YAML written with PyYAML's C dumper, read back with its C
loader, a whole-snapshot `DeepDiff(old, new)` of the accounts keyed by id, and the same
correlation as the check's first rule (a dict lookup by lower-cased email). DESIGN §3
and §5 explain why reconciler does none of these; this module measures by how much.

It runs in its own process (`python -m bench.newcomer DAY1 DAY2 WORK`), so the parent
can stop it after a time limit and read its peak memory; it prints its timings as JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.generate import ACCOUNTS_FILE, IDENTITIES_FILE, ExportFiles
from bench.measure import python_env, run_measured

TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class NewcomerResult:
    """The baseline at one size; `status` is `ok`, `timeout` or `error`."""

    status: str
    seconds: float | None = None  # load + diff + correlate: what is compared to the check
    load_seconds: float | None = None
    diff_seconds: float | None = None
    correlate_seconds: float | None = None
    dump_seconds: float | None = None  # writing both days' YAML, reported apart
    max_rss_mib: float | None = None
    timeout_seconds: float | None = None
    detail: str = ""

    def to_data(self) -> dict[str, Any]:
        return asdict(self)


def measure(day1: ExportFiles, day2: ExportFiles, work: Path, timeout: float) -> NewcomerResult:
    """Run the baseline in a fresh process, killed after `timeout` seconds."""
    argv = [
        sys.executable,
        "-m",
        "bench.newcomer",
        str(day1.identities.parent),
        str(day2.identities.parent),
        str(work),
    ]
    measured = run_measured(
        argv, output_dir=work / "logs", name="newcomer", env=python_env(), timeout=timeout
    )
    if measured.timed_out:
        return NewcomerResult(
            status="timeout",
            max_rss_mib=measured.max_rss_mib,
            timeout_seconds=timeout,
            detail=f"did not finish in {timeout / 60:.0f} min"
            if timeout >= 60
            else f"did not finish in {timeout:.0f} s",
        )
    if measured.exit_code != 0:
        tail = measured.stderr.decode("utf-8", "replace")[-1500:]
        return NewcomerResult(
            status="error", timeout_seconds=timeout, detail=f"exit {measured.exit_code}: {tail}"
        )
    figures = orjson.loads(measured.stdout)
    return NewcomerResult(
        status="ok", max_rss_mib=measured.max_rss_mib, timeout_seconds=timeout, **figures
    )


# --- the baseline itself, in the child process -------------------------------------------


def _records(path: Path, key: str) -> list[dict[str, Any]]:
    data = orjson.loads(path.read_bytes())
    records: list[dict[str, Any]] = data[key]
    return records


def _dump(path: Path, key: str, records: Sequence[Mapping[str, Any]]) -> None:
    import yaml

    ordered = sorted(records, key=lambda r: str(r["id"]))
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(
            {key: ordered},
            handle,
            Dumper=yaml.CSafeDumper,
            default_flow_style=False,
            allow_unicode=True,
            sort_keys=False,
        )


def _load(path: Path, key: str) -> dict[str, dict[str, Any]]:
    import yaml

    with path.open("rb") as handle:
        data = yaml.load(handle, Loader=yaml.CSafeLoader)
    return {str(record["id"]): record for record in data[key]}


def baseline(day1_dir: Path, day2_dir: Path, work: Path) -> dict[str, float]:
    """Write both days as YAML snapshots, then time load + diff + correlate."""
    from deepdiff import DeepDiff

    work.mkdir(parents=True, exist_ok=True)
    files = {
        (day, kind): work / f"day{day}-{kind}.yaml"
        for day in (1, 2)
        for kind in ("accounts", "identities")
    }
    started = time.perf_counter()
    for day, directory in ((1, day1_dir), (2, day2_dir)):
        _dump(files[day, "accounts"], "accounts", _records(directory / ACCOUNTS_FILE, "accounts"))
        _dump(
            files[day, "identities"],
            "identities",
            _records(directory / IDENTITIES_FILE, "identities"),
        )
    dump_seconds = time.perf_counter() - started

    started = time.perf_counter()
    old_accounts = _load(files[1, "accounts"], "accounts")
    _load(files[1, "identities"], "identities")  # yesterday's IdP, as a check reads it
    new_accounts = _load(files[2, "accounts"], "accounts")
    new_identities = _load(files[2, "identities"], "identities")
    load_seconds = time.perf_counter() - started

    started = time.perf_counter()
    changes = DeepDiff(old_accounts, new_accounts)
    diff_seconds = time.perf_counter() - started

    started = time.perf_counter()
    by_email = {str(i["email"]).strip().lower(): i for i in new_identities.values()}
    candidates = 0
    for account in new_accounts.values():
        identity = by_email.get(str(account["email"]).strip().lower())
        if identity is None or account["type"] == "service" or account["status"] != "active":
            continue
        if identity["status"] != "active":
            candidates += 1
    correlate_seconds = time.perf_counter() - started

    if not changes or not candidates:
        raise SystemExit("the baseline found no changes or no candidates: wrong input?")
    return {
        "seconds": load_seconds + diff_seconds + correlate_seconds,
        "load_seconds": load_seconds,
        "diff_seconds": diff_seconds,
        "correlate_seconds": correlate_seconds,
        "dump_seconds": dump_seconds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.newcomer", description=__doc__)
    parser.add_argument("day1", type=Path, help="directory with day 1's exports")
    parser.add_argument("day2", type=Path, help="directory with day 2's exports")
    parser.add_argument("work", type=Path, help="where to write the YAML snapshots")
    args = parser.parse_args(argv)
    figures = baseline(args.day1, args.day2, args.work)
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
