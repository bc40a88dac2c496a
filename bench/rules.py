"""`python -m bench rules`: the day-2 check with every policy rule kind enabled, against
the same check without them, in the same run on the same exports.

Both access repos read the same day-1 and day-2 exports, whose accounts carry a last
sign-in (most recent, one in a thousand older than 90 days); only the policy differs.
The rules policy adds exceptions (one per thousand accounts), `inactive_after: 90d`,
two report-only separation-of-duties sets over the commonest roles, two `allowed_roles`
rules (one taking a role from one account in a thousand), graded removal
(`delete_after: 30d`: the disabled accounts of people gone or back are looked up in the
history), a deadline and a seat cost.
`grace` is left out: by design it holds back the day's leavers, so its run would write
no plan and could not be compared; its own cost is one search of the identity
snapshot's history for the plan's people, the one `deadline` already pays.
"""

from __future__ import annotations

import random
import shutil
import statistics
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench import generate, runner
from bench.generate import ExportFiles

# What the issue allows the rules to add to the day-2 check.
TARGET_RATIO = 1.15
OLD_SHARE = 0.001  # accounts last used before the inactivity limit
EXCEPTION_SHARE = 0.001
ROLE_SHARE = 0.001  # accounts holding a role outside its rule


def with_sign_ins(files: ExportFiles, now: datetime, rng: random.Random) -> None:
    """Give every account of the export a last sign-in."""
    data = orjson.loads(files.accounts.read_bytes())
    for account in data["accounts"]:
        days = rng.randint(91, 400) if rng.random() < OLD_SHARE else rng.randint(0, 30)
        moment = now - timedelta(days=days, seconds=rng.randint(0, 86_399))
        account["last_login"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    files.accounts.write_bytes(orjson.dumps(data))


def rules_policy(
    accounts: list[dict[str, Any]], identities: list[dict[str, Any]], rng: random.Random
) -> str:
    """The benchmark's policy with every rule kind that does not hold leavers back."""
    roles = Counter(role for account in accounts for role in account["roles"])
    common = [role for role, _ in roles.most_common(4)]
    excepted = rng.sample(accounts, max(1, int(len(accounts) * EXCEPTION_SHARE)))
    until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    graded = runner.POLICY.replace("  mode: disable\n", "  mode: disable\n  delete_after: 30d\n", 1)
    lines = [graded.rstrip("\n"), "deadline: 24h", "inactive_after: 90d"]
    lines += ["separation_of_duties:"]
    lines += [
        f"  - {{roles: [{common[0]}, {common[1]}]}}",
        f"  - {{roles: [{common[2]}, {common[3]}]}}",
    ]
    # `owner` for members of any group but the one everyone is in, and for people named
    # so that one account in a thousand holds it outside the rule, like the other rule
    # kinds' share; `auditor` for everyone: the rule's cost alone.
    groups = ", ".join(g for g in generate.GROUPS if g != "everyone")
    outside = owners_outside(accounts, identities)
    named = rng.sample(outside, max(0, len(outside) - int(len(accounts) * ROLE_SHARE)))
    lines += [
        "allowed_roles:",
        f"  owner: {{groups: [{groups}], people: [{', '.join(sorted(named))}]}}",
        "  auditor: {groups: [everyone]}",
    ]
    lines += ["seat_cost:", f"  {runner.APP}: {{amount: 12.5, currency: EUR, per: month}}"]
    lines += ["exceptions:"]
    for account in excepted:
        lines += [
            f"  - account: '{account['id']}'",
            f"    until: {until}",
            "    reason: benchmark",
            "    granted_by: bench",
        ]
    return "\n".join(lines) + "\n"


def owners_outside(accounts: list[dict[str, Any]], identities: list[dict[str, Any]]) -> list[str]:
    """The emails of the people still here whose active account holds `owner` and who
    are in no group but `everyone`."""
    by_email = {i["email"]: i for i in identities if i["status"] == "active"}
    found = []
    for account in accounts:
        identity = by_email.get(account["email"])
        if (
            identity is not None
            and account["status"] == "active"
            and "owner" in account["roles"]
            and set(identity["groups"]) <= {"everyone"}
        ):
            found.append(identity["email"])
    return found


def measure(
    n: int, seed: int, runs: int, work: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Time the day-2 check with and without the rules, alternating, `runs` times."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    day1 = generate.day_one(n, seed)
    day2 = generate.next_day(day1, seed, 1)
    exports = []
    for index, day in enumerate((day1, day2), 1):
        files = generate.write_exports(day, work / f"day{index}")
        with_sign_ins(files, now, rng)
        exports.append(files)
    policy = rules_policy(list(day2.accounts.values()), list(day2.identities.values()), rng)
    seconds: dict[str, list[float]] = {"without": [], "with": []}
    proposed: dict[str, int] = {}
    phases: dict[str, Any] = {}
    for run in range(runs):
        for variant in ("without", "with"):
            progress(f"rules: N={n} run {run + 1}/{runs}, {variant} the rules")
            repo = work / f"{variant}-{run}"
            shutil.rmtree(repo, ignore_errors=True)
            runner.make_access_repo(repo)
            if variant == "with":
                (repo / "policies" / "default.yaml").write_text(policy, encoding="utf-8")
                runner.git(repo, "commit", "-q", "-am", "enable every rule kind")
            logs = work / "logs"
            runner.install_exports(exports[0], repo)
            runner.require_success(runner.run_check(repo, logs, f"{variant}-day1"), "day 1")
            runner.install_exports(exports[1], repo)
            result = runner.run_check(repo, logs, f"{variant}-day2-{run}")
            runner.require_plan(result, f"{variant} day 2")
            seconds[variant].append(result.wall_seconds)
            summary = result.app["summary"]
            proposed[variant] = int(summary["to_deprovision"]) + int(summary["roles_to_remove"])
            phases[variant] = result.phases
            shutil.rmtree(repo, ignore_errors=True)
    without = statistics.median(seconds["without"])
    with_rules = statistics.median(seconds["with"])
    return {
        "n": n,
        "runs": runs,
        "seconds": seconds,
        "median_without": without,
        "median_with": with_rules,
        "ratio": with_rules / without,
        "target_ratio": TARGET_RATIO,
        "met": with_rules / without <= TARGET_RATIO,
        "proposed": proposed,
        "phases": phases,  # of each variant's last run
    }


def render(results: dict[str, Any]) -> str:
    """The results as docs/benchmarks.md shows them."""
    met = "yes" if results["met"] else "**no**"
    return "\n".join(
        [
            "## Policy rules: the day-2 check with and without them",
            "",
            "| N | runs | without the rules | with every rule kind | ratio | target | met |",
            "|---:|---:|---:|---:|---:|---:|---|",
            f"| {results['n']:,} | {results['runs']} | {results['median_without']:.2f} s | "
            f"{results['median_with']:.2f} s | {results['ratio']:.3f} | "
            f"≤ {results['target_ratio']:.2f} | {met} |",
            "",
            f"Accounts proposed: {results['proposed'].get('without', 0):,} without the rules "
            f"(leavers), {results['proposed'].get('with', 0):,} with them (leavers not "
            "excepted, accounts unused for 90 days, and accounts holding a role outside "
            "its rule).",
            "",
        ]
    )
