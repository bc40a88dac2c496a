"""Checks of a policy file that its JSON Schema cannot express, each a diagnostic at the
line to fix: an exception's date, what it names and where it applies; the apps a seat
cost prices; the groups a role rule names."""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Collection, Mapping
from datetime import date
from typing import Any

from reconciler import yamlio
from reconciler.diagnostics import Diagnostic, at


def with_dates_as_text(data: Any) -> Any:
    """The policy as its schema reads it: a date YAML read from an unquoted `2026-12-31`
    (an exception's `until`) as that text."""
    if isinstance(data, Mapping):
        return {key: with_dates_as_text(value) for key, value in data.items()}
    if isinstance(data, list):
        return [with_dates_as_text(item) for item in data]
    if isinstance(data, date):
        return data.isoformat()
    return data


def check_exceptions(data: Any, marks: yamlio.Marks, display: str) -> list[Diagnostic]:
    """Each exception names exactly one account or person, until a real date, in an
    app the policy selects."""
    if not isinstance(data, Mapping) or not isinstance(data.get("exceptions"), list):
        return []
    apps = _selected_apps(data)
    found = []
    for number, entry in enumerate(data["exceptions"]):
        if not isinstance(entry, Mapping):
            continue  # the schema says what it must be
        where: yamlio.JsonPath = ("exceptions", number)
        names = [key for key in ("account", "person") if key in entry]
        if len(names) != 1:
            found.append(
                at(
                    marks,
                    display,
                    where,
                    f"exceptions[{number}]: "
                    + ("names both an account and a person" if names else "names nobody"),
                    "give exactly one of `account:` (an account's id, username or email) "
                    "and `person:` (an identity's id, email or username)",
                )
            )
        until = entry.get("until")
        if isinstance(until, str) and parse_day(until) is None:
            found.append(
                at(
                    marks,
                    display,
                    (*where, "until"),
                    f"exceptions[{number}].until: {until!r} is not a date",
                    "write the last day the exception holds as YYYY-MM-DD, e.g. 2026-12-31",
                )
            )
        app = entry.get("app")
        if isinstance(app, str) and not _selects(apps, app):
            found.append(
                at(
                    marks,
                    display,
                    (*where, "app"),
                    f"exceptions[{number}].app: {app!r} is not an app this policy selects "
                    f"({', '.join(apps)})",
                    "name one of the policy's apps, or leave `app:` out for all of them",
                )
            )
    return found


# An app's name, as in the schemas: a seat cost prices apps by name, never by glob.
APP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def check_seat_cost(data: Any, marks: yamlio.Marks, display: str) -> list[Diagnostic]:
    """Each app a seat cost is given for is one the policy selects: a price for any other
    app would never be used."""
    apps = _selected_apps(data) if isinstance(data, Mapping) else []
    return [
        at(
            marks,
            display,
            ("seat_cost", app),
            f"seat_cost.{app}: {app!r} is not an app this policy selects ({', '.join(apps)})",
            "give seat costs only for the policy's apps: add it to `apps:`, or move its "
            "seat cost to the policy that selects it",
        )
        for app in priced_apps(data)
        if not _selects(apps, app)
    ]


def priced_apps(data: Any) -> list[str]:
    """The apps a policy's `seat_cost:` prices, leaving out names that are no app name
    (the schema reports those)."""
    prices = data.get("seat_cost") if isinstance(data, Mapping) else None
    if not isinstance(prices, Mapping):
        return []
    return [app for app in prices if isinstance(app, str) and APP_NAME.fullmatch(app)]


def _selected_apps(data: Mapping[str, Any]) -> list[str]:
    """The policy's `apps:` entries (names and globs) that are text."""
    selected = data.get("apps")
    return [a for a in selected if isinstance(a, str)] if isinstance(selected, list) else []


def _selects(apps: list[str], app: str) -> bool:
    """Whether `apps` (a policy's names and globs) select `app`; with none readable, the
    schema reports `apps:` and this says yes, to add no guess of its own."""
    return not apps or any(fnmatch.fnmatchcase(app, pattern) for pattern in apps)


# The policy's durations, by path: hours or days, e.g. `24h`, `30d`.
DURATIONS: tuple[yamlio.JsonPath, ...] = (
    ("deadline",),
    ("grace",),
    ("inactive_after",),
    ("deprovision", "delete_after"),
)


def check_durations(
    data: Any, marks: yamlio.Marks, display: str
) -> tuple[list[Diagnostic], set[yamlio.JsonPath]]:
    """A duration given as a bare number (`grace: 90`), with what to write instead; and
    the paths of those, whose schema errors say less."""
    if not isinstance(data, Mapping):
        return [], set()
    found: list[Diagnostic] = []
    paths: set[yamlio.JsonPath] = set()
    for path in DURATIONS:
        value: Any = data
        for step in path:
            value = value.get(step) if isinstance(value, Mapping) else None
        if (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.strip().isdigit()
        ):
            key = ".".join(map(str, path))
            paths.add(path)
            found.append(
                at(
                    marks,
                    display,
                    path,
                    f"{key}: {value} has no unit",
                    f"write hours or days: `{path[-1]}: {value}h` or `{path[-1]}: {value}d`",
                )
            )
    deprovision = data.get("deprovision")
    if (
        isinstance(deprovision, Mapping)
        and deprovision.get("delete_after") is not None
        and deprovision.get("mode") == "delete"
    ):
        found.append(
            at(
                marks,
                display,
                ("deprovision", "delete_after"),
                "deprovision.delete_after: accounts are deleted at once with `mode: delete`, "
                "so there is nothing to delete after",
                "use `mode: disable` with delete_after for graded removal, or remove it",
            )
        )
    return found, paths


def parse_day(value: object) -> date | None:
    """A day as a policy writes it (a YAML date, or `YYYY-MM-DD` text); None if it is no
    real day."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)) if len(str(value)) == 10 else None
    except ValueError:
        return None


def check_role_groups(
    data: Any, marks: yamlio.Marks, display: str, groups: Collection[str] | None
) -> list[Diagnostic]:
    """Each group an `allowed_roles` rule names is one that some identity of the policy's
    identity source holds, as its last snapshot says (`groups`; None when there is no
    snapshot yet, and nothing to hold the names against). A misspelt group would take
    the role from everyone."""
    rules = data.get("allowed_roles") if isinstance(data, Mapping) else None
    if groups is None or not isinstance(rules, Mapping):
        return []
    source = data.get("identity_source")
    found = []
    for role, rule in rules.items():
        named = rule.get("groups") if isinstance(rule, Mapping) else None
        if not isinstance(named, list):
            continue  # the schema says what it must be
        for index, group in enumerate(named):
            if not isinstance(group, str) or group in groups:
                continue
            close = difflib.get_close_matches(group, sorted(groups), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            found.append(
                at(
                    marks,
                    display,
                    ("allowed_roles", role, "groups", index),
                    f"allowed_roles.{role}.groups[{index}]: no identity in {source} holds "
                    f"group {group!r} (its last snapshot)",
                    hint + "name a group as the identity source spells it; until then, "
                    "plans that would take this role are blocked",
                )
            )
    return found
