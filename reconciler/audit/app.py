"""`reconciler audit app`: one app's imports, plans, approvals and applied actions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from reconciler.audit.repository import AuditRepository
from reconciler.audit.timeline import PLAN_ID, Event, app_timeline
from reconciler.config import Settings
from reconciler.errors import ConfigError


def audit_app(
    repo: AuditRepository,
    settings: Settings,
    app: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Event, ...]:
    known = settings.config.apps
    has_history = bool(repo.files(f"history/{app}")) or bool(repo.files(f"state/apps/{app}"))
    if app not in known and not has_history:
        raise ConfigError(
            f"unknown app {app!r}: reconciler.yaml has {', '.join(sorted(known)) or 'none'}, "
            "and the repository holds no snapshot or history of it"
        )
    accounts = [f"state/apps/{app}/accounts.yaml", f"state/apps/{app}/accounts"]
    with ThreadPoolExecutor(2) as pool:  # git walks while messages and journals are parsed
        # Counted from the index of changed records each commit carries (commits
        # without one are diffed), so a year of a big app is read from messages.
        imports = pool.submit(repo.indexed_counts, accounts)
        proposals = pool.submit(
            repo.commits, f"plans/{app}.yaml", extra=["--all", "--no-merges", "--full-history"]
        )
        journals = repo.journals(app)
        plan_commits = []
        for commit, message in proposals.result():
            found = PLAN_ID.search(message)
            if found:
                plan_commits.append((commit, found.group(1)))
        return app_timeline(
            app,
            imports.result(),
            plan_commits,
            journals,
            repo.pending_plans(app),
            since=since,
            until=until,
        )
