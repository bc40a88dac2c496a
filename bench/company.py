"""`python -m bench company`: a company of a few thousand people and a few hundred apps,
against one app holding the same accounts, in the same run on the same exports.

The estate: `people` identities in the source `corp` and `apps` file apps of 50 to 2,000
accounts, skewed as SaaS estates are (most apps small, a few large: size = 50 + 1,950·u⁷
for u uniform in [0, 1), about 85,000 accounts for 300 apps). Each account belongs to a
person of the company, but for 2% service accounts and 1% already disabled. Day 2 applies
the usual churn to every account (1% change roles or entitlements, 0.5% are removed),
0.5% of the people are new hires with accounts in apps drawn by size, and 0.3% leave:
their accounts stay, so the check proposes them in every app they had one in.

The baseline is one app whose export is every app's accounts together (account ids are
unique across the estate), read against the same identities. Both checks run as
`python -m reconciler check` in a fresh process on a copy of the repository after day 1.
After the measured day 2, the company repository is checked twice more: on day 2's
exports again (a day with no change must make no commit), then the log of day 2 is kept
to show what a day's history looks like.
"""

from __future__ import annotations

import random
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import generate, runner

TARGET_RATIO = 2.0
LOWEST, HIGHEST = 50, 2000
SKEW = 7.4
SERVICE_SHARE = 0.02
CHANGED, REMOVED, HIRED, LEFT = 0.01, 0.005, 0.005, 0.003
ONE_APP = "everything"


@dataclass
class Estate:
    """One day of the company: its identities and each app's accounts by id."""

    identities: dict[str, dict[str, Any]]
    apps: dict[str, dict[str, dict[str, Any]]]
    next_account_id: int

    @property
    def accounts(self) -> int:
        return sum(len(accounts) for accounts in self.apps.values())


def app_sizes(count: int, rng: random.Random) -> list[int]:
    return [round(LOWEST + (HIGHEST - LOWEST) * rng.random() ** SKEW) for _ in range(count)]


def day_one(people: int, apps: int, seed: int) -> Estate:
    rng = random.Random(f"company:{seed}:day1")
    base = generate.day_one(people, seed)
    drawer = generate.People(rng, base)
    identities = list(base.identities.values())
    estate = Estate(identities=dict(base.identities), apps={}, next_account_id=0)
    for index, drawn in enumerate(app_sizes(apps, rng)):
        size = min(drawn, len(identities))  # a small company's apps hold everyone at most
        accounts: dict[str, dict[str, Any]] = {}
        services = max(1, round(size * SERVICE_SHARE))
        for identity in rng.sample(identities, size - services):
            account = drawer.account(
                identity["display_name"], identity["email"], identity["username"]
            )
            accounts[account["id"]] = account
        for number in range(services):
            name = f"svc-app{index:03d}-{number}"
            account = drawer.account(name, f"{name}@{generate.DOMAIN}", name, kind="service")
            accounts[account["id"]] = account
        estate.apps[f"app{index:03d}"] = accounts
    estate.next_account_id = base.next_account_id
    return estate


def day_two(day: Estate, seed: int) -> Estate:
    """The next day by the usual churn; `day` is not changed."""
    rng = random.Random(f"company:{seed}:day2")
    scratch = generate.Day(
        identities=dict(day.identities),
        accounts={},
        next_account_id=day.next_account_id,
        name_counts={},
    )
    drawer = generate.People(rng, scratch)
    apps: dict[str, dict[str, dict[str, Any]]] = {}
    for name, accounts in day.apps.items():
        kept: dict[str, dict[str, Any]] = {}
        for account_id, account in accounts.items():
            draw = rng.random()
            if draw < REMOVED:
                continue
            if draw < REMOVED + CHANGED:
                account = {**account, "roles": drawer.roles()}
            kept[account_id] = account
        apps[name] = kept
    total = day.accounts
    names = list(apps)
    weights = [len(apps[name]) for name in names]
    per_person = total / len(day.identities)
    for _ in range(round(len(day.identities) * HIRED)):
        display, local = drawer.name()
        identity = drawer.identity(display, local)
        scratch.identities[identity["id"]] = identity
        for name in set(rng.choices(names, weights, k=round(per_person))):
            account = drawer.account(display, identity["email"], local)
            apps[name][account["id"]] = account
    active = [i for i, record in day.identities.items() if record["status"] == "active"]
    for identity_id in rng.sample(active, round(len(day.identities) * LEFT)):
        scratch.identities[identity_id] = {
            **scratch.identities[identity_id],
            "status": "deprovisioned",
        }
    return Estate(scratch.identities, apps, scratch.next_account_id)


def config(apps: list[str]) -> str:
    """reconciler.yaml for the identity source and `apps` file apps in exports/."""
    lines = runner.config_head("bench/company.py", "exports/identities.json")
    for name in apps:
        lines += [f"  {name}:", "    type: file", f"    path: exports/{name}.json"]
    return "\n".join(lines) + "\n"


def write_day(estate: Estate, directory: Path) -> None:
    """The day's exports: identities.json, one file per app, and ONE_APP's file with
    every account."""
    directory.mkdir(parents=True, exist_ok=True)
    identities = {"identities": list(estate.identities.values())}
    (directory / "identities.json").write_bytes(orjson.dumps(identities))
    everything: list[dict[str, Any]] = []
    for name, accounts in estate.apps.items():
        (directory / f"{name}.json").write_bytes(
            orjson.dumps({"accounts": list(accounts.values())})
        )
        everything.extend(accounts.values())
    (directory / f"{ONE_APP}.json").write_bytes(orjson.dumps({"accounts": everything}))


def install(day: Path, repo: Path) -> None:
    for path in day.iterdir():
        shutil.copyfile(path, repo / "exports" / path.name)


def repository(path: Path, apps: list[str], day1: Path, logs: Path) -> Path:
    """An access repo of `apps` after day 1's check."""
    runner.make_access_repo(path)
    (path / "reconciler.yaml").write_text(config(apps), encoding="utf-8")
    runner.git(path, "commit", "-q", "-am", "the estate")
    install(day1, path)
    runner.require_success(runner.run_check(path, logs, f"{path.name}-day1"), f"{path.name} day 1")
    return path


def fresh_copy(prepared: Path, to: Path) -> Path:
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(prepared, to, symlinks=True)
    return to


def oneline(repo: Path, since: str) -> list[str]:
    return runner.git(repo, "log", "--oneline", "--no-decorate", f"{since}..HEAD").splitlines()


def measure(
    people: int, apps: int, seed: int, runs: int, work: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    progress(f"company: generating {people:,} people and {apps} apps, days 1 and 2")
    first = day_one(people, apps, seed)
    second = day_two(first, seed)
    write_day(first, work / "day1")
    write_day(second, work / "day2")
    names = sorted(first.apps)
    logs = work / "logs"
    progress("company: day 1 of both repositories")
    prepared = {
        "company": repository(work / "company", names, work / "day1", logs),
        "one_app": repository(work / "one_app", [ONE_APP], work / "day1", logs),
    }
    seconds: dict[str, list[float]] = {"company": [], "one_app": []}
    phases: dict[str, Any] = {}
    last: dict[str, Path] = {}
    for run in range(runs):
        for variant, start in prepared.items():
            progress(f"company: day 2, run {run + 1}/{runs}, {variant}")
            repo = fresh_copy(start, work / f"{variant}-run")
            install(work / "day2", repo)
            result = runner.run_check(repo, logs, f"{variant}-day2-{run}")
            runner.require_success(result, f"{variant} day 2")
            seconds[variant].append(result.wall_seconds)
            phases[variant] = result.phases
            last[variant] = repo
    company = last["company"]
    day1_head = runner.git(prepared["company"], "rev-parse", "HEAD").strip()
    day2_log = oneline(company, day1_head)
    plans = runner.git(company, "branch", "--list", "reconciler/*").splitlines()
    day2_head = runner.git(company, "rev-parse", "HEAD").strip()
    progress("company: day 3 without a change")
    runner.require_success(runner.run_check(company, logs, "company-day3"), "company day 3")
    unchanged_commits = len(oneline(company, day2_head))
    median_company = statistics.median(seconds["company"])
    median_one = statistics.median(seconds["one_app"])
    sizes = sorted(len(accounts) for accounts in first.apps.values())
    changed_apps = sum(1 for name in names if first.apps[name] != second.apps[name])
    return {
        "people": people,
        "apps": apps,
        "accounts": first.accounts,
        "smallest": sizes[0],
        "median_size": sizes[len(sizes) // 2],
        "largest": sizes[-1],
        "apps_changed": changed_apps,
        "runs": runs,
        "seconds": seconds,
        "median_company": median_company,
        "median_one_app": median_one,
        "ratio": median_company / median_one,
        "target_ratio": TARGET_RATIO,
        "met": median_company / median_one <= TARGET_RATIO,
        "day2_commits": len(day2_log),
        "day2_log": day2_log,
        "plan_branches": len(plans),
        "unchanged_day_commits": unchanged_commits,
        "phases": phases,
    }


def render(results: dict[str, Any]) -> str:
    met = "yes" if results["met"] else "**no**"
    shown = results["day2_log"][:6]
    more = len(results["day2_log"]) - len(shown)
    return "\n".join(
        [
            "## A company of many apps against one app of the same size",
            "",
            "| people | apps (smallest / median / largest) | accounts | 300 apps | one app "
            "| ratio | target | met |",
            "|---:|---|---:|---:|---:|---:|---:|---|",
            f"| {results['people']:,} | {results['apps']} ({results['smallest']} / "
            f"{results['median_size']} / {results['largest']}) | {results['accounts']:,} "
            f"| {results['median_company']:.2f} s | {results['median_one_app']:.2f} s "
            f"| {results['ratio']:.2f} | ≤ {results['target_ratio']:.1f} | {met} |",
            "",
            f"Day 2 changed {results['apps_changed']} apps and proposed "
            f"{results['plan_branches']} plans; it made {results['day2_commits']} commits on "
            f"main, and a day without a change made {results['unchanged_day_commits']}. "
            "`git log --oneline` of day 2:",
            "",
            "```",
            *shown,
            *([f"… {more} more"] if more > 0 else []),
            "```",
            "",
        ]
    )
