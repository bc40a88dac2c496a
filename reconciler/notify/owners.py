"""After a check: gather what each app's owners need to know, decide, send, remember.

Reading the plans and the record and sending are the edges; the decision in between is
`events.decide`. Nothing here fails the check: a problem is a `Delivery` with a reason,
or a `NotifyError` the command reports as a line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial

from reconciler.check import CheckRun
from reconciler.config import Settings
from reconciler.errors import ReconcilerError
from reconciler.forge.base import Forge
from reconciler.forge.local import branch_for
from reconciler.git import Git
from reconciler.notify import record
from reconciler.notify.events import AppPlans, decide
from reconciler.notify.smtp import Delivery, SmtpSender
from reconciler.plan import Plan
from reconciler.planfile import read_plan

# Where owners review an app's plan; a forge with pull requests passes their URLs.
ReviewLink = Callable[[str], str]


def branch_link(app: str) -> str:
    return f"branch {branch_for(app)}"


def notify_owners(
    settings: Settings,
    git: Git,
    forge: Forge,
    run: CheckRun,
    *,
    now: datetime,
    environ: Mapping[str, str],
    link: ReviewLink = branch_link,
    sender: SmtpSender | None = None,
) -> list[Delivery]:
    """Email the owners of the checked apps what is new for them; what became of each
    email. Nothing is sent unless `notify.smtp` is configured."""
    notify = settings.config.notify
    if notify.smtp is None:
        return []
    on_main = partial(read_plan, git, settings.config.main_branch)
    apps = []
    for check in run.apps:
        policy = settings.policy_for(check.app)
        if not policy.owner_emails:
            continue
        apps.append(
            AppPlans(
                check=check,
                proposal=run.proposals.get(check.app, ""),
                open_plan=_plan(forge.plan_of, check.app),
                approved_plan=_plan(on_main, check.app),
                link=link(check.app),
                owners=policy.owner_emails,
                policy_file=policy.source_file,
            )
        )
    path = git.private_dir() / record.NOTIFIED
    sent = record.read_sent(path)
    notices = decide(
        apps,
        now=now,
        late_after=timedelta(days=notify.late_after_days),
        already_sent=record.keys(sent),
    )
    if not notices:
        return []
    deliveries = (sender or SmtpSender(notify.smtp, environ)).send(notices, now)
    done = [d.notice.key for d in deliveries if d.sent]
    if done:
        record.write_sent(path, record.with_sent(sent, done, now))
    return deliveries


def _plan(read: Callable[[str], Plan | None], app: str) -> Plan | None:
    """A plan read back from git, or None when it cannot be read: a plan file a reviewer
    broke is reported by `apply`, and it makes no one late."""
    try:
        return read(app)
    except ReconcilerError:
        return None
