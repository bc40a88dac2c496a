"""`python -m bench run`: the benchmark in one command (see docs/benchmarks.md).

    python -m bench run [--sizes 1000,10000,100000] [--out bench/out]
                        [--newcomer-max-n 100000] [--git-days 30] [--scim-n 10000] [--quick]
    python -m bench report bench/out/results.json   # render a saved run again
    python -m bench year [--apps 50 --app-size 2000 --big 100000 --days 365]

Results go to OUT/results.json and OUT/results.md; the markdown is also printed.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import (
    company,
    generate,
    gitgrowth,
    newcomer,
    pulls,
    report,
    rules,
    runner,
    scimpull,
    year,
    yearaudit,
)

DEFAULT_SIZES = (1000, 10_000, 100_000)
QUICK_SIZES = (1000,)
# The newcomer baseline always runs up to this size, and above it up to --newcomer-max-n.
NEWCOMER_ALWAYS_N = 10_000


@dataclass(frozen=True)
class BenchOptions:
    """What `python -m bench run` measures and where it writes."""

    sizes: tuple[int, ...]
    out: Path
    newcomer_max_n: int
    newcomer_timeout: float
    git_days: int
    scim_n: int
    seed: int
    keep_work: bool


def _progress(message: str) -> None:
    sys.stderr.write(f"[{datetime.now():%H:%M:%S}] {message}\n")
    sys.stderr.flush()


def _machine() -> str:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        ram = f"{memory:.1f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        ram = "RAM unknown"
    git_version = subprocess.run(
        ["git", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores, {ram}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {git_version}"
    )


def _code_version() -> dict[str, Any]:
    """The reconciler commit measured, files changed since it, and a digest of the source
    (the SCIM pull runs the code imported when the run started)."""
    import reconciler

    root = Path(reconciler.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "reconciler").splitlines()
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "changed": [c[3:] for c in changed],
        "code": runner.code_digest(),
    }


def _write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")


def run(options: BenchOptions) -> int:
    """Run every measurement, write the results, print the markdown report."""
    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "machine": _machine(),
            "reconciler": _code_version(),
            "seed": options.seed,
            "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "options": {
                "sizes": list(options.sizes),
                "newcomer_max_n": options.newcomer_max_n,
                "git_days": options.git_days,
                "scim_n": options.scim_n,
            },
        },
        "sizes": [],
    }
    with ExitStack() as stack:
        if options.keep_work:
            work = options.out / "work"
            shutil.rmtree(work, ignore_errors=True)  # the previous run's
            work.mkdir(parents=True)
        else:
            work = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="reconciler-bench-"))
            )
        largest_day1: generate.Day | None = None
        for n in sorted(options.sizes):
            _progress(f"N={n:,}: generating day 1 and day 2")
            day1 = generate.day_one(n, options.seed)
            results["sizes"].append(_measure_size(n, day1, options, work / f"n{n}"))
            # Git growth starts from the largest size's day 1.
            largest_day1 = day1
            _write(results, options.out)
        failed: list[str] = []
        if options.git_days > 0 and largest_day1 is not None:
            n = max(options.sizes)
            _progress(f"git growth at N={n:,} over {options.git_days} days")
            try:
                growth = gitgrowth.measure(
                    n, largest_day1, options.seed, options.git_days, work / "git", _progress
                )
                results["git_growth"] = growth.to_data()
            except runner.BenchError as exc:
                # The SCIM measurement does not depend on it: report and go on.
                _progress(f"git growth failed: {exc}")
                results["git_growth"] = {"n": n, "error": str(exc)}
                failed.append("git growth")
            _write(results, options.out)
        del largest_day1
        if options.scim_n > 0:
            _progress(f"scim pull of {options.scim_n:,} users")
            results["scim"] = scimpull.measure(
                options.scim_n, options.seed, progress=_progress
            ).to_data()
    results["meta"]["elapsed_seconds"] = time.perf_counter() - started
    results["targets"] = report.targets(results)
    _write(results, options.out)
    markdown = report.render(results)
    (options.out / "results.md").write_text(markdown, encoding="utf-8")
    sys.stdout.write(markdown)
    if failed:
        _progress(f"failed: {', '.join(failed)} (see results.json)")
        return 1
    return 0


def _measure_size(n: int, day1: generate.Day, options: BenchOptions, work: Path) -> dict[str, Any]:
    day2 = generate.next_day(day1, options.seed, 2)
    files1 = generate.write_exports(day1, work / "day1")
    files2 = generate.write_exports(day2, work / "day2")
    counts = (len(day2.accounts), len(day2.identities), day2.grants)
    del day2
    _progress(f"N={n:,}: day-1 import and day-2 check")
    size = runner.measure_size(n, files1, files2, work=work / "check", counts=counts)
    data = size.to_data()
    _progress(
        f"N={n:,}: day-2 check {size.day2.wall_seconds:.2f} s, "
        f"{size.day2.max_rss_mib:.0f} MiB; floor {size.floor_seconds:.3f} s"
    )
    if n <= max(options.newcomer_max_n, NEWCOMER_ALWAYS_N):
        _progress(f"N={n:,}: newcomer baseline (limit {options.newcomer_timeout:.0f} s)")
        baseline = newcomer.measure(files1, files2, work / "newcomer", options.newcomer_timeout)
        data["newcomer"] = baseline.to_data()
        if baseline.seconds is not None:
            data["newcomer"]["ratio"] = baseline.seconds / size.day2.wall_seconds
        _progress(f"N={n:,}: newcomer {baseline.status}: {baseline.seconds or baseline.detail}")
    else:
        data["newcomer"] = {"status": "skipped", "detail": "N > --newcomer-max-n"}
    return data


def run_year(args: argparse.Namespace) -> int:
    """Generate (or reuse) the year in OUT/year, time the audit commands over it, write
    OUT/year.json and OUT/year.md, print the markdown."""
    shape = year.Shape(
        apps=args.apps, app_size=args.app_size, big_size=args.big, days=args.days, seed=args.seed
    )
    try:
        made = yearaudit.generated(shape, args.out / "year", _progress)
        results = yearaudit.measure(made, args.out / "year-logs", args.runs, _progress)
    except runner.BenchError as exc:
        _progress(f"benchmark failed: {exc}")
        return 1
    results["meta"] = {"machine": _machine(), "reconciler": _code_version()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "year.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    markdown = yearaudit.render(results)
    (args.out / "year.md").write_text(markdown, encoding="utf-8")
    sys.stdout.write(markdown)
    return 0


def run_rules(args: argparse.Namespace) -> int:
    """Time the day-2 check with and without every policy rule kind; write OUT/rules.json
    and OUT/rules.md, print the markdown."""
    return _measured(
        args.out,
        "rules",
        lambda work: rules.measure(args.n, args.seed, args.runs, work, _progress),
        rules.render,
    )


def run_pulls(args: argparse.Namespace) -> int:
    """Time the pull phase of many slow SCIM apps one at a time and in parallel; write
    OUT/pulls.json and OUT/pulls.md, print the markdown."""
    return _measured(
        args.out,
        "pulls",
        lambda work: pulls.measure(
            args.apps, args.size, args.latency, args.width, work, _progress, args.remember
        ),
        pulls.render,
    )


def run_company(args: argparse.Namespace) -> int:
    """Time the day-2 check of a company of many apps against one app holding the same
    accounts; write OUT/company.json and OUT/company.md, print the markdown."""
    return _measured(
        args.out,
        "company",
        lambda work: company.measure(args.people, args.apps, args.seed, args.runs, work, _progress),
        company.render,
    )


def _measured(
    out: Path,
    name: str,
    measure: Callable[[Path], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
) -> int:
    """Run `measure` in a fresh OUT/NAME-work directory (removed after), then write
    OUT/NAME.json and OUT/NAME.md and print the markdown."""
    work = out / f"{name}-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        results = measure(work)
    except runner.BenchError as exc:
        _progress(f"benchmark failed: {exc}")
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["meta"] = {"machine": _machine(), "reconciler": _code_version()}
    (out / f"{name}.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    markdown = render(results)
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    sys.stdout.write(markdown)
    return 0


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes as 1000,10000,100000") from None
    if not sizes or any(n < 100 for n in sizes):
        raise argparse.ArgumentTypeError("each size must be at least 100")
    return sizes


def _command(commands: Any, name: str, help: str, seed: bool = True) -> argparse.ArgumentParser:
    """A measurement's subcommand with the options every one takes."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help)
    parser.add_argument(
        "--out", type=Path, default=Path("bench/out"), help="where results go (bench/out)"
    )
    if seed:
        parser.add_argument("--seed", type=int, default=1, help="data generator seed (1)")
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the benchmark")
    run_parser.add_argument("--sizes", type=_sizes, help="N values (default 1000,10000,100000)")
    run_parser.add_argument(
        "--out", type=Path, default=Path("bench/out"), help="where results go (bench/out)"
    )
    run_parser.add_argument(
        "--newcomer-max-n",
        type=int,
        help="largest N for the newcomer baseline beyond 10,000 (default 100000)",
    )
    run_parser.add_argument(
        "--newcomer-timeout", type=float, default=newcomer.TIMEOUT_SECONDS, help=argparse.SUPPRESS
    )
    run_parser.add_argument("--git-days", type=int, help="days of churn for git growth (30)")
    run_parser.add_argument("--scim-n", type=int, help="users on the SCIM server (10000)")
    run_parser.add_argument("--seed", type=int, default=1, help="data generator seed (1)")
    run_parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: N=1000, newcomer at 1000, 3 git days, 500 SCIM users",
    )
    run_parser.add_argument(
        "--keep-work", action="store_true", help="keep access repos and logs in OUT/work"
    )
    year_parser = _command(commands, "year", "the audit commands over a generated year of history")
    year_parser.add_argument("--apps", type=int, default=50, help="small apps (50)")
    year_parser.add_argument("--app-size", type=int, default=2000, help="their accounts (2000)")
    year_parser.add_argument(
        "--big", type=int, default=100_000, help="accounts of the big app and identities (100000)"
    )
    year_parser.add_argument("--days", type=int, default=365, help="days of history (365)")
    year_parser.add_argument("--runs", type=int, default=3, help="runs of the quick commands (3)")
    rules_parser = _command(
        commands, "rules", "the day-2 check with and without every policy rule kind"
    )
    rules_parser.add_argument("--n", type=int, default=100_000, help="accounts (100000)")
    rules_parser.add_argument("--runs", type=int, default=3, help="runs of each (3)")
    pulls_parser = _command(
        commands, "pulls", "many slow SCIM apps pulled one at a time and in parallel", seed=False
    )
    pulls_parser.add_argument("--apps", type=int, default=20, help="SCIM apps (20)")
    pulls_parser.add_argument("--size", type=int, default=500, help="users per app (500)")
    pulls_parser.add_argument(
        "--latency", type=float, default=0.1, help="seconds added to every request (0.1)"
    )
    pulls_parser.add_argument("--width", type=int, default=8, help="pull_concurrency (8)")
    pulls_parser.add_argument(
        "--remember",
        action="store_true",
        help="servers answer a GET they answered before from memory, after a warm-up "
        "check: only the latency is waited for",
    )
    company_parser = _command(
        commands, "company", "a company of many apps against one app of the same size"
    )
    company_parser.add_argument("--people", type=int, default=5000, help="identities (5000)")
    company_parser.add_argument("--apps", type=int, default=300, help="apps (300)")
    company_parser.add_argument("--runs", type=int, default=3, help="runs of each (3)")
    report_parser = commands.add_parser("report", help="render a saved results.json again")
    report_parser.add_argument("results", type=Path)
    return parser


def _options(args: argparse.Namespace) -> BenchOptions:
    quick = bool(args.quick)

    def pick(value: Any, normal: Any, fast: Any) -> Any:
        return value if value is not None else (fast if quick else normal)

    return BenchOptions(
        sizes=pick(args.sizes, DEFAULT_SIZES, QUICK_SIZES),
        out=args.out,
        newcomer_max_n=pick(args.newcomer_max_n, 100_000, 1000),
        newcomer_timeout=args.newcomer_timeout,
        git_days=pick(args.git_days, 30, 3),
        scim_n=pick(args.scim_n, 10_000, 500),
        seed=args.seed,
        keep_work=args.keep_work,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "year":
        return run_year(args)
    if args.command == "rules":
        return run_rules(args)
    if args.command == "pulls":
        return run_pulls(args)
    if args.command == "company":
        return run_company(args)
    if args.command == "report":
        results = orjson.loads(args.results.read_bytes())
        sys.stdout.write(report.render(results))
        return 0
    try:
        return run(_options(args))
    except runner.BenchError as exc:
        _progress(f"benchmark failed: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
