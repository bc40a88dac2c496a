"""What was already emailed: `.git/reconciler/notified.json`, local state beside
`last-check.json`, so that a check with nothing new emails no one again.

{"wiki": {"1a2b3c4d5e6f": {"opened": "2024-05-01T10:00:00Z"}}}: app, plan id, event, and
when the email went out. Only emails the relay accepted are recorded; a failed one is
tried again by the next check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

import orjson

from reconciler.clock import timestamp
from reconciler.files import write_atomic
from reconciler.notify.events import NoticeKey

NOTIFIED = "notified.json"
# Plans remembered per app: far more than can be open or late at once.
PLANS_KEPT = 50

Sent = dict[str, dict[str, dict[str, str]]]


def read_sent(path: Path) -> Sent:
    """The record at `path`; empty if there is none or it cannot be read (at worst an
    email is sent twice)."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    sent: Sent = {}
    for app, plans in data.items():
        if not isinstance(plans, dict):
            continue
        for plan_id, events in plans.items():
            if not isinstance(events, dict):
                continue
            for event, at in events.items():
                if isinstance(at, str):
                    sent.setdefault(app, {}).setdefault(plan_id, {})[event] = at
    return sent


def keys(sent: Mapping[str, Mapping[str, Mapping[str, str]]]) -> frozenset[NoticeKey]:
    return frozenset(
        (app, plan_id, event)
        for app, plans in sent.items()
        for plan_id, events in plans.items()
        for event in events
    )


def with_sent(sent: Sent, done: Iterable[NoticeKey], at: datetime) -> Sent:
    """`sent` plus `done`, keeping the `PLANS_KEPT` most recently emailed plans per app."""
    out: Sent = {app: {p: dict(e) for p, e in plans.items()} for app, plans in sent.items()}
    for app, plan_id, event in done:
        out.setdefault(app, {}).setdefault(plan_id, {})[event] = timestamp(at)
    for app, plans in out.items():
        if len(plans) > PLANS_KEPT:
            newest = sorted(plans, key=lambda p: max(plans[p].values()), reverse=True)
            out[app] = {p: plans[p] for p in newest[:PLANS_KEPT]}
    return out


def write_sent(path: Path, sent: Sent) -> None:
    write_atomic(path, orjson.dumps(sent, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
