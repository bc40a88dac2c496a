"""Who is emailed about what after a check: a pure function of the check's outcome, the
owners, the time and what was already sent (DESIGN §8).

An app's owners are emailed when its plan is opened or changed, when the plan is blocked,
and once when a plan is late: open and not approved, or approved and not applied,
`late_after` after it was created. Each (app, plan id, event) is emailed at most once; an
open plan the owners were never told about (its email failed, or notify was configured
after it opened) is announced by the next check.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler import report
from reconciler.clock import read_time
from reconciler.forge.base import Proposal
from reconciler.inert import one_line
from reconciler.notify import message
from reconciler.outcome import AppCheck
from reconciler.plan import Plan


class Event(enum.StrEnum):
    OPENED = "opened"  # a plan was proposed where there was none
    UPDATED = "updated"  # the proposed plan changed
    BLOCKED = "blocked"  # a blocked plan was proposed or changed
    LATE_REVIEW = "late_review"  # an open plan has not been approved in time
    LATE_APPLY = "late_apply"  # an approved plan has not been applied in time

    @property
    def words(self) -> str:
        """The event in a few words, for the check's output."""
        return EVENT_WORDS[self]


EVENT_WORDS = {
    Event.OPENED: "plan opened",
    Event.UPDATED: "plan changed",
    Event.BLOCKED: "plan blocked",
    Event.LATE_REVIEW: "plan late for review",
    Event.LATE_APPLY: "approved plan late for apply",
}


# (app, plan id, event): what is emailed at most once.
NoticeKey = tuple[str, str, str]


@dataclass(frozen=True)
class AppPlans:
    """What the notifier knows about one app after a check."""

    check: AppCheck
    proposal: str  # what the forge did with the check's plan (`CheckRun.proposals`)
    open_plan: Plan | None  # the plan under review after the check
    approved_plan: Plan | None  # an approved plan on the main branch, not applied yet
    link: str  # where to review: a pull request's URL, or the branch
    owners: tuple[str, ...]  # email addresses
    policy_file: str  # the policy that names the owners


@dataclass(frozen=True)
class Notice:
    """One email to an app's owners."""

    app: str
    plan_id: str
    event: Event
    recipients: tuple[str, ...]
    subject: str
    body: str

    @property
    def key(self) -> NoticeKey:
        return (self.app, self.plan_id, self.event.value)


def decide(
    apps: Iterable[AppPlans],
    *,
    now: datetime,
    late_after: timedelta,
    already_sent: Set[NoticeKey],
) -> list[Notice]:
    """The emails to send now, in the order of `apps`."""
    notices = []
    for state in apps:
        if not state.owners:
            continue
        for event, plan in _events(state, now, late_after, already_sent):
            notice = _notice(state, event, plan, now)
            if notice.key not in already_sent:
                notices.append(notice)
    return notices


def _events(
    state: AppPlans, now: datetime, late_after: timedelta, already_sent: Set[NoticeKey]
) -> list[tuple[Event, Plan]]:
    """At most one event per app and check."""
    # While an approved plan waits on main, no other plan is proposed for the app.
    if state.approved_plan is not None:
        if _age(state.approved_plan, now) >= late_after:
            return [(Event.LATE_APPLY, state.approved_plan)]
        return []
    plan = state.check.plan
    if plan is not None and state.proposal in (Proposal.CREATED, Proposal.UPDATED):
        if plan.status == "blocked":
            return [(Event.BLOCKED, plan)]
        return [(Event.OPENED if state.proposal == Proposal.CREATED else Event.UPDATED, plan)]
    opened = state.open_plan
    if opened is None:
        return []
    if not _told(opened, state, already_sent):
        # A plan the owners never heard of: its email failed, or notify is new here.
        return [(Event.BLOCKED if opened.status == "blocked" else Event.OPENED, opened)]
    if _age(opened, now) >= late_after:
        return [(Event.LATE_REVIEW, opened)]
    return []


def _told(plan: Plan, state: AppPlans, already_sent: Set[NoticeKey]) -> bool:
    """Whether the owners were emailed that this plan was proposed."""
    told = (Event.OPENED, Event.UPDATED, Event.BLOCKED)
    return any((state.check.app, plan.id, event.value) in already_sent for event in told)


def _age(plan: Plan, now: datetime) -> timedelta:
    """How long ago the plan was created; zero when its time cannot be read (a plan
    file people may edit is not trusted to make anyone late)."""
    created = read_time(plan.created_at)
    return timedelta(0) if created is None else max(now - created, timedelta(0))


def _notice(state: AppPlans, event: Event, plan: Plan, now: datetime) -> Notice:
    check = state.check
    app = one_line(check.app, max_length=100)
    todo = message.todo(plan.active_actions)
    waited = message.days(_age(plan, now).days)
    if event == Event.LATE_APPLY:
        subject = f"approved plan waiting {waited} to be applied ({todo})"
        intro = (
            f"The approved plan for {app} ({todo}) has not been applied for {waited}. "
            f"Run `reconciler apply --app {app} --confirm`, or revert the approval."
        )
        blocked: tuple[str, ...] = plan.blocked_reasons
    elif event == Event.LATE_REVIEW:
        subject = f"{todo}, waiting {waited} for review"
        intro = (
            f"The plan for {app} ({todo}) has waited {waited} for review. "
            "Approve it, or remove the actions you disagree with."
        )
        blocked = plan.blocked_reasons
    elif event == Event.BLOCKED:
        subject = f"{todo}, plan blocked (admin needed)"
        intro = (
            f"reconciler checked {app} and proposed a plan ({todo}), but a guard blocked "
            "it: nothing will be applied "
            "until an admin allows it or the cause is fixed."
        )
        blocked = report.blocking_reasons(check)
    else:
        changed = "changed its plan" if event == Event.UPDATED else "opened a plan"
        subject = f"{todo} (review needed)"
        if event == Event.UPDATED:
            subject = f"plan changed, {todo} (review needed)"
        intro = f"reconciler checked {app} and {changed} ({todo}). It needs your review."
        blocked = ()
    return Notice(
        app=check.app,
        plan_id=plan.id,
        event=event,
        recipients=state.owners,
        subject=message.subject(check.app, subject),
        body=message.body(
            intro=intro,
            app=check.app,
            plan_id=plan.id,
            created_at=plan.created_at,
            status=plan.status,
            link=state.link,
            summary=report.summary_row(check),
            blocked_reasons=blocked,
            actions=plan.active_actions,
            policy_file=state.policy_file,
        ),
    )
