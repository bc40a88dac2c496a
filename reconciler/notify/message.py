"""The text of the emails sent to app owners: plain text, one escaper for every value.

Everything in a subject or body that came from a system or a file people may edit (app
names, plan ids, account names, the reasons a plan is blocked, a review link) goes
through `reconciler.inert.one_line`: a line break in a username cannot start a new header
or forge a line of the email, and an invisible character is shown, not hidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.inert import one_line
from reconciler.plan import DEPROVISION, ENABLE, REASONS, REMOVE_ROLES, Action, tally
from reconciler.report import OPTIONAL, SUMMARY_LABELS

# Accounts listed in one email; the rest are counted and the plan has them all.
MAX_ACCOUNTS = 20
SUBJECT_PREFIX = "[reconciler]"


def accounts(n: int) -> str:
    return f"{n} account{'' if n == 1 else 's'}"


def todo(actions: Sequence[Action]) -> str:
    """What a plan's actions do, for a subject line: `3 accounts to deprovision`, with
    `and roles to remove from 1 account` when it takes roles."""
    counts = tally(actions)
    removing, taking, enabling = counts[DEPROVISION], counts[REMOVE_ROLES], counts[ENABLE]
    parts = [f"{accounts(removing)} to deprovision"] if removing or not (taking or enabling) else []
    if taking:
        parts.append(f"roles to remove from {accounts(taking)}")
    if enabling:
        parts.append(f"{accounts(enabling)} to re-enable")
    return " and ".join(parts)


def days(n: int) -> str:
    return f"{n} day{'' if n == 1 else 's'}"


def subject(app: str, text: str) -> str:
    """`[reconciler] wiki: TEXT`, one line, capped."""
    return one_line(f"{SUBJECT_PREFIX} {one_line(app, max_length=100)}: {text}", max_length=250)


def body(
    *,
    intro: str,
    app: str,
    plan_id: str,
    created_at: str,
    status: str,
    link: str,
    summary: Mapping[str, int],
    blocked_reasons: Sequence[str],
    actions: Sequence[Action],
    policy_file: str,
) -> str:
    """The email's body. `intro` is the tool's own sentence; every other argument is
    escaped here."""
    lines = [
        intro,
        "",
        f"Review: {one_line(link, max_length=500)}",
        f"Plan: {one_line(plan_id, max_length=80)} ({one_line(status, max_length=20)}), "
        f"created {one_line(created_at, max_length=40)}",
        "",
        "Latest check:",
    ]
    # As in the report: rows that only some policies use are shown when not 0.
    rows = [
        (SUMMARY_LABELS[key], int(count))
        for key, count in summary.items()
        if key in SUMMARY_LABELS and (count or key not in OPTIONAL)
    ]
    width = max((len(label) for label, _ in rows), default=0)
    lines += [f"  {label + ':':<{width + 1}} {count}" for label, count in rows]
    if blocked_reasons:
        lines += ["", "Why it is blocked:"]
        lines += [f"  - {one_line(reason, max_length=500)}" for reason in blocked_reasons]
    if actions:
        lines += [
            "",
            "Proposed actions:"
            if any(a.takes_roles for a in actions)
            else "Accounts to deprovision:",
        ]
        for action in actions[:MAX_ACCOUNTS]:
            who = one_line(action.username or action.account_id, max_length=100)
            email = f" ({one_line(action.email, max_length=100)})" if action.email else ""
            why = one_line(REASONS.get(action.reason, action.reason), max_length=100)
            does = one_line(action.mode, max_length=20)
            if action.takes_roles:
                does = f"take roles {one_line(', '.join(action.roles), max_length=200)}"
            lines.append(f"  - {who}{email}: {why}; {does}")
        if len(actions) > MAX_ACCOUNTS:
            lines.append(f"  ... and {len(actions) - MAX_ACCOUNTS} more (see the plan)")
    lines += [
        "",
        f"You get this email because {one_line(policy_file, max_length=200)} names you among "
        f"the owners of {one_line(app, max_length=100)}.",
    ]
    return "\n".join(lines) + "\n"
