"""Reports, pull request bodies and import commit messages (DESIGN §7).

The report (`plans/<app>.md`) is rendered from `templates/report.md.j2`, which an access
repo may override. Every value that came from an app or an identity provider is untrusted:
the template escapes it with the `md` filter, and the environment escapes anything a
template prints without marking it safe, so an override that forgets `| md` cannot emit
a raw display name either.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any, Generic, TypeVar

import jinja2
import orjson
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from reconciler.changeindex import of_account_diff, with_index
from reconciler.diff import AccountChange, AccountDiff, describe
from reconciler.errors import ConfigError
from reconciler.inert import commit, terminal
from reconciler.markdown import Markdown, code, escape
from reconciler.model import Account
from reconciler.outcome import AppCheck
from reconciler.plan import DEPROVISION, ENABLE, REASONS, REMOVE_ROLES, Action, why
from reconciler.policy import overdue, span_text
from reconciler.seats import SeatCost, money_text

REPORT_TEMPLATE = "report.md.j2"
# Rows per detailed table; the rest is counted and pointed at, so a report for an app with
# 50k new accounts stays readable and under GitHub's body limit.
DEFAULT_MAX_ROWS = 500
# Summary rows shown only when not 0.
OPTIONAL = frozenset({"roles_to_remove", "to_enable", "excepted", "waiting"})
# Exceptions that run out within this many days are called out in the report.
EXPIRING_DAYS = 14
# Roles, entitlements or evidence entries shown in one table cell.
MAX_ITEMS_PER_CELL = 20
# GitHub refuses an issue or pull request body longer than this many characters.
GITHUB_BODY_LIMIT = 65536
# Usernames listed per category in an import commit message.
COMMIT_NAMES_PER_CATEGORY = 50
# Fields whose names an import commit message counts rather than lists.
COMMIT_COUNTED_FIELDS = frozenset({"entitlements"})

# The summary table, in order: the keys of `summary_row` and their labels.
SUMMARY_LABELS: Mapping[str, str] = {
    "new_users": "New users",
    "removed_users": "Removed users",
    "updated_roles": "Updated roles",
    "to_deprovision": "To deprovision",
    "roles_to_remove": "Roles to remove",
    "to_enable": "To re-enable",
    "unmatched": "Unmatched",
    "protected": "Protected",
    "excepted": "Excepted",
    "waiting": "In grace",
    "blocked": "Blocked",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Section(Generic[T]):
    """One detailed list of a report, cut to the rows it shows."""

    items: tuple[T, ...]
    total: int

    @property
    def more(self) -> int:
        """How many rows were left out."""
        return self.total - len(self.items)

    @classmethod
    def of(cls, items: Sequence[T], max_rows: int) -> Section[T]:
        return cls(items=tuple(items[:max_rows]), total=len(items))


def blocking_reasons(check: AppCheck) -> tuple[str, ...]:
    """Why nothing in this app's plan may be applied, duplicates removed, in order.

    A failed app pull is one: nothing was imported, so no account was judged.
    """
    reasons: list[str] = []
    if check.app_error:
        reasons.append(f"pulling the app failed: {check.app_error}")
    reasons += check.blocked_reasons
    if check.plan is not None:
        reasons += check.plan.blocked_reasons
    return tuple(dict.fromkeys(reasons))


@dataclass(frozen=True)
class LateRemoval:
    """A proposed removal whose person has been gone longer than the policy's deadline
    already when the plan is written."""

    action: Action
    gone_since: datetime  # the import commit that first showed the person gone
    past_by: timedelta  # how far past the deadline, when the check ran

    @property
    def detected(self) -> str:
        return f"{self.gone_since:%Y-%m-%d %H:%M} UTC"

    @property
    def past(self) -> str:
        return span_text(self.past_by)


def late_removals(check: AppCheck) -> tuple[LateRemoval, ...]:
    """The plan's removals already past the policy's deadline, oldest detection first,
    by the same rule `status` uses for a late plan (`policy.overdue`)."""
    if check.plan is None or check.checked_at is None or check.deadline is None:
        return ()
    late = []
    for action in check.plan.active_actions:
        since = check.gone_since.get(action.identity_id)
        past = overdue(since, check.checked_at, check.deadline) if since else None
        if since is not None and past is not None:
            late.append(LateRemoval(action, since, past))
    late.sort(key=lambda x: (x.gone_since, x.action.account_id))
    return tuple(late)


def summary_row(check: AppCheck) -> dict[str, int]:
    """The counts of the report's summary table (also `check --format json`).

    Keys, in order, are those of `SUMMARY_LABELS`; `blocked` is the number of reasons
    blocking the plan (0: not blocked).
    """
    return _summary(check, len(check.diff.role_changes))


def _summary(check: AppCheck, updated_roles: int) -> dict[str, int]:
    # `role_changes` compares every changed record; callers that need the list too
    # compute it once and pass its length.
    return {
        "new_users": len(check.diff.added),
        "removed_users": len(check.diff.removed),
        "updated_roles": updated_roles,
        "to_deprovision": check.to_deprovision,
        "roles_to_remove": check.roles_to_remove,
        "to_enable": check.to_enable,
        "unmatched": len(check.unmatched),
        "protected": len(check.protected),
        "excepted": len(check.excepted),
        "waiting": len(check.waiting),
        "blocked": len(blocking_reasons(check)),
    }


def summary_line(check: AppCheck) -> str:
    """The summary as one line of plain text, for terminal and CI logs.

    `wiki: 3 new users, 1 to deprovision; blocked (2 reasons)`; zero counts are left out.
    """
    app = terminal(check.app, max_length=100)
    if check.app_error:
        return f"{app}: FAILED: {terminal(check.app_error, max_length=500)}"
    counts = summary_row(check)
    blocked = counts.pop("blocked")
    parts = [f"{n} {SUMMARY_LABELS[key].lower()}" for key, n in counts.items() if n]
    line = f"{app}: {', '.join(parts) or 'no changes'}"
    if blocked:
        line += f"; blocked ({blocked} reason{'' if blocked == 1 else 's'})"
    return line


def _status(check: AppCheck, blocked: Sequence[str]) -> str:
    if check.app_error:
        return "app_error"
    if blocked:
        return "blocked"
    proposing = check.to_deprovision or check.roles_to_remove or check.to_enable
    return "proposed" if proposing else "nothing"


def _mode_counts(actions: Iterable[Action]) -> dict[str, int]:
    counts = Counter(a.mode for a in actions if not a.skip)
    # Every known mode present (0 if unused) and in a fixed order, so a template can use
    # `modes.manual` and the "what merging will do" sentence reads the same every time.
    ordered = {mode: counts.pop(mode, 0) for mode in ("disable", "delete", "manual")}
    ordered.update(sorted(counts.items()))
    return ordered


# Template filters. Each returns Markdown: its output is escaped here, not by the template.


def _reason(reason: object) -> Markdown:
    text = str(reason)
    return escape(REASONS.get(text, text))


def _why(action: Action) -> Markdown:
    return escape(why(action))


def _plain_value(value: object) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        return "" if value is None else str(value)
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS).decode()


def _evidence(evidence: Mapping[str, Any]) -> Markdown:
    keys = sorted(evidence, key=str)
    parts = [f"{escape(k)}: {escape(_plain_value(evidence[k]))}" for k in keys]
    return _joined(parts, "; ")


def _joined(parts: Sequence[str], separator: str) -> Markdown:
    shown = list(parts[:MAX_ITEMS_PER_CELL])
    if len(parts) > len(shown):
        shown.append(f"… and {len(parts) - len(shown)} more")
    return Markdown(separator.join(shown))


def _names(values: Iterable[object]) -> Markdown:
    return _joined([escape(v) for v in values], ", ")


def _delta(added: Iterable[object], removed: Iterable[object]) -> Markdown:
    # U+2212 MINUS SIGN rather than "-", which markdown could read as a list marker.
    parts = [f"+{escape(v)}" for v in added] + [f"\u2212{escape(v)}" for v in removed]
    return _joined(parts, ", ")


def _count(number: int, noun: str) -> Markdown:
    # Nouns come from the template, never from an app.
    return Markdown(f"{number} {noun}" if number == 1 else f"{number} {noun}s")


def _money(value: Decimal | float) -> Markdown:
    # Through str: a float from an override template renders as written (12.5 → 12.50).
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    return Markdown(money_text(amount, grouped=True))


def _seats(cost: SeatCost | None, seats: int) -> dict[str, Any]:
    """The template's seat variables: `seats_freed` (the plan's active actions), the app's
    `seat_cost` (None: no "Seats and cost" section) and what the seats cost a month and,
    for a yearly price, a year (`yearly_cost_freed`, else None)."""
    return {
        "seats_freed": seats,
        "seat_cost": cost,
        "monthly_seat_cost": cost.monthly_cost(1) if cost else None,
        "monthly_cost_freed": cost.monthly_cost(seats) if cost else None,
        "yearly_cost_freed": cost.yearly_cost(seats) if cost else None,
    }


def _finalize(value: object) -> object:
    """Escape whatever a template prints unless it is already safe markdown.

    Markup is what Jinja's own `safe` filter returns: a template author's explicit choice.
    """
    if isinstance(value, Markdown | Markup):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return escape(value)


def _package_template(name: str) -> str | None:
    resource = files("reconciler") / "templates" / name
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: str | None) -> jinja2.Environment:
    package = jinja2.FunctionLoader(_package_template)
    loader: jinja2.BaseLoader = package
    if templates_dir is not None:
        # An access repo's own template wins; any template it lacks comes from the package.
        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(templates_dir), package])
    # Sandboxed: an override template lives in the access repo and is data, not code.
    env = SandboxedEnvironment(
        loader=loader,
        autoescape=False,  # HTML escaping is the wrong escaping for markdown
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        md=escape,
        code=code,
        reason=_reason,
        why=_why,
        evidence=_evidence,
        names=_names,
        delta=_delta,
        count=_count,
        money=_money,
    )
    return env


def render_report(
    check: AppCheck, *, templates_dir: Path | None = None, max_rows: int = DEFAULT_MAX_ROWS
) -> str:
    """The markdown report of one app's check (`plans/<app>.md`).

    `templates_dir` is an access repo's `templates/` directory; its `report.md.j2`, if
    any, replaces the packaged one. Each detailed table shows at most `max_rows` rows.
    """
    blocked = blocking_reasons(check)
    plan = check.plan
    everything = plan.actions if plan is not None else ()
    actions = [a for a in everything if a.op == DEPROVISION]
    role_removals = [a for a in everything if a.op == REMOVE_ROLES]
    enables = [a for a in everything if a.op == ENABLE]
    active = [a for a in actions if not a.skip]
    role_changes = check.diff.role_changes
    counts = _summary(check, len(role_changes))
    late = late_removals(check)
    # The check's day; a check without one (a test's) has no exception running out.
    today = check.checked_at.date() if check.checked_at is not None else date.min
    excepted = sorted(check.excepted, key=lambda e: (e.exception.until, e.account.id))
    env = _environment(str(templates_dir) if templates_dir is not None else None)
    try:
        template = env.get_template(REPORT_TEMPLATE)
        text = template.render(
            app=check.app,
            identity_source=check.identity_source,
            status=_status(check, blocked),
            app_error=check.app_error,
            blocked=blocked,
            # Rows for exceptions and grace only where there are some: reports of apps
            # without any read as they always did.
            summary=[(SUMMARY_LABELS[k], n) for k, n in counts.items() if n or k not in OPTIONAL],
            counts=counts,
            plan_id=plan.id if plan is not None else "",
            deprovision=Section.of(actions, max_rows),
            skipped=len(actions) - len(active),
            modes=_mode_counts(actions),
            role_removals=Section.of(role_removals, max_rows),
            roles_skipped=sum(1 for a in role_removals if a.skip),
            all_skipped=sum(1 for a in everything if a.skip),
            role_modes=Counter(a.mode for a in role_removals if not a.skip),
            enables=Section.of(enables, max_rows),
            enable_modes=Counter(a.mode for a in enables if not a.skip),
            new_users=Section.of(check.diff.added, max_rows),
            removed_users=Section.of(check.diff.removed, max_rows),
            role_changes=Section.of(role_changes, max_rows),
            unmatched=Section.of(check.unmatched, max_rows),
            ambiguous=Section.of(check.ambiguous, max_rows),
            protected=Section.of(check.protected, max_rows),
            excepted=Section.of(excepted, max_rows),
            conflicts=Section.of(check.conflicts, max_rows),
            waiting=Section.of(
                sorted(check.waiting, key=lambda w: (w.proposed_from, w.account.id)), max_rows
            ),
            expiring=sum(1 for e in excepted if e.days_left(today) <= EXPIRING_DAYS),
            today=today,
            **_seats(check.seat_cost, len(active)),
            notes=check.notes,
            late=late,
            late_by_account={x.action.account_id: x for x in late},
            deadline=span_text(check.deadline) if check.deadline is not None else "",
            grace=span_text(check.grace) if check.grace is not None else "",
        )
    except jinja2.TemplateError as exc:
        # A broken override is the access repo's to fix; say which file.
        where = templates_dir / REPORT_TEMPLATE if templates_dir else REPORT_TEMPLATE
        raise ConfigError(f"{where}: cannot render the report: {exc}") from exc
    # One final newline however the template ends, so the file diffs cleanly.
    return text.rstrip("\n") + "\n"


_DETAILS_OPEN = re.compile(r"<details\b", re.IGNORECASE)
_DETAILS_CLOSE = re.compile(r"</details\s*>", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


def _closers(prefix: str) -> str:
    """What must follow `prefix` so that no code fence or <details> block is left open."""
    closing = ""
    fence = ""
    for marker in _FENCE.findall(prefix):
        if not fence:
            fence = marker
        elif marker == fence:
            fence = ""  # a ~~~ line inside a ``` block is content, not a closer
    if fence:
        closing += "\n" + fence
    depth = len(_DETAILS_OPEN.findall(prefix)) - len(_DETAILS_CLOSE.findall(prefix))
    closing += "\n\n</details>" * max(depth, 0)
    return closing


def _cut_point(text: str, budget: int) -> int:
    """The end of the longest prefix of `text` up to `budget` that ends a whole line.

    Values are escaped and capped, so lines are short; the fallback for a single line
    longer than the budget still avoids ending inside an HTML tag or entity.
    """
    if budget <= 0:
        return 0
    newline = text.rfind("\n", 0, budget + 1)
    if newline > 0:
        return newline
    cut = budget
    for opener, closer in (("<", ">"), ("&", ";")):
        start = text.rfind(opener, 0, cut)
        if start != -1 and text.find(closer, start, cut) == -1:
            cut = start
    return cut


def render_pr_body(report_md: str, *, app: str, limit: int = GITHUB_BODY_LIMIT) -> str:
    """`report_md` cut to at most `limit` characters for a pull request body.

    A cut report ends at a line boundary, closes any `<details>` block or code fence it
    cut through, and points at the full report file on the branch.
    """
    if len(report_md) <= limit:
        return report_md
    pointer = (
        f"\n\n---\n**This report is cut to fit GitHub's {limit:,}-character limit.** "
        f"The full report is {code(f'plans/{app}.md')} on this branch; the plan is "
        f"{code(f'plans/{app}.yaml')}.\n"
    )
    budget = limit - len(pointer)
    while budget > 0:
        cut = _cut_point(report_md, budget)
        prefix = report_md[:cut].rstrip("\n")
        body = prefix + _closers(prefix) + pointer
        if len(body) <= limit:
            return body
        budget -= len(body) - limit
    # A limit too small for the pointer itself: the pointer alone, cut to the limit.
    return pointer.strip()[:limit]


def _who(account: Account) -> str:
    name = account.username or account.email or account.id
    return commit(name, max_length=100)


def _commit_line_for_change(change: AccountChange) -> str:
    """`bob: roles +admin -viewer; email old → new`, every value inert.

    Entitlements are counted, not listed: one role change can add hundreds of them.
    """
    phrases = describe(change.details, _commit_value, counted=COMMIT_COUNTED_FIELDS)
    return commit(f"{_who(change.new)}: {'; '.join(phrases)}", max_length=300)


def _commit_value(value: object) -> str:
    return commit(value, max_length=100)


def _commit_section(title: str, items: Sequence[T], describe: Callable[[T], str]) -> list[str]:
    if not items:
        return []
    # "- " starts every listed line, so no value can sit at the start of a line where git
    # would read `Token: value` as a trailer.
    shown = items[:COMMIT_NAMES_PER_CATEGORY]
    out = [f"{title} ({len(items)}):", *(f"- {describe(item)}" for item in shown)]
    if len(items) > len(shown):
        out.append(f"- … and {len(items) - len(shown)} more")
    return [*out, ""]


def import_commit_message(app: str, diff: AccountDiff) -> str:
    """The commit message for an automatic import of an app's changes.

    The subject counts what changed (`import wiki: 3 new, 1 removed, 2 role changes`);
    the body lists up to 50 accounts per category, a changed one with what changed
    (`bob: roles +admin -viewer; email old → new`; DeepDiff runs on those 50 only).
    Every value is reduced to one line of visible text, so an account name cannot forge
    an `Approved-by:` trailer. The message ends with the index of every changed record
    (`reconciler.changeindex`).
    """
    role_changes: list[AccountChange] = []
    other_changes: list[AccountChange] = []
    for change in diff.changed:
        fields = change.fields
        (role_changes if "roles" in fields or "entitlements" in fields else other_changes).append(
            change
        )
    counts = [
        (len(diff.added), "new"),
        (len(diff.removed), "removed"),
        (len(role_changes), "role change" if len(role_changes) == 1 else "role changes"),
        (len(other_changes), "updated"),
    ]
    summary = ", ".join(f"{n} {label}" for n, label in counts if n)
    # An unchanged account list can still come with a changed role catalogue.
    subject = f"import {commit(app, max_length=100)}: {summary or 'no account changes'}"
    body = [
        *_commit_section("New", diff.added, _who),
        *_commit_section("Removed", diff.removed, _who),
        *_commit_section("Role changes", role_changes, _commit_line_for_change),
        *_commit_section("Updated", other_changes, _commit_line_for_change),
    ]
    body.append("Imported by reconciler check.")
    # The last paragraph is ours, so git never takes a listed name for a trailer block:
    # the complete index of changed records, which `audit person` searches (no cap).
    return with_index("\n".join([subject, "", *body]), of_account_diff(diff))


__all__ = [
    "DEFAULT_MAX_ROWS",
    "GITHUB_BODY_LIMIT",
    "SUMMARY_LABELS",
    "LateRemoval",
    "Section",
    "blocking_reasons",
    "import_commit_message",
    "late_removals",
    "render_pr_body",
    "render_report",
    "summary_line",
    "summary_row",
]
