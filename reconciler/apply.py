"""`reconciler apply`: execute merged, approved plans (DESIGN §9).

For each plan on main: verify the approval, verify the plan is a subset of what the
tool generates from the state it was computed from, check guards, then re-verify each
action live and act. Dry run unless confirmed. Outcomes go to the journal as they
happen; the snapshot is refreshed and everything is committed once.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from reconciler import snapshot
from reconciler.check import collect, timestamp, utc_now
from reconciler.config import Policy, Settings
from reconciler.connectors.base import Connector, Mode
from reconciler.correlate import correlate
from reconciler.errors import ApprovalError, ConnectorError, PlanError, ReconcilerError
from reconciler.forge.local import parse_approvers, plan_path, read_plan, report_path
from reconciler.git import Git
from reconciler.history import FINAL, Entry, Journal
from reconciler.model import Account, Identity
from reconciler.plan import Action, Plan, check_subset, new_plan
from reconciler.policy import evaluate
from reconciler.progress import NoProgress, Progress
from reconciler.systems import ConnectorFactory, effective_mode

VERBS = {"disable": "disabled", "delete": "deleted", "manual": "recorded manual tasks for"}


@dataclass(frozen=True)
class Approval:
    commit: str
    approvers: tuple[str, ...]
    date: str


@dataclass(frozen=True)
class AppApply:
    """What apply did (or would do) for one app."""

    app: str
    plan_id: str = ""
    approved_by: tuple[str, ...] = ()
    entries: tuple[Entry, ...] = ()
    error: str = ""
    dry_run: bool = True
    commit: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        return bool(self.error) or any(e.outcome == "failed" for e in self.entries)


def merged_plans(git: Git) -> list[str]:
    """Apps with a plan on main."""
    return sorted(Path(p).stem for p in git.ls_tree("HEAD", "plans") if p.endswith(".yaml"))


def load_plan(git: Git, app: str) -> Plan:
    plan = read_plan(git, "HEAD", app)
    if plan is None:
        raise PlanError(f"no merged plan for app {app!r} on main")
    return plan


def verify_approval(git: Git, app: str, policy: Policy) -> Approval:
    """The merge that brought the plan to main must carry enough allowed approvals, and
    the plan must not have changed since."""
    path = plan_path(app)
    history = git.log("--first-parent", "-1", "HEAD", "--", path)
    if not history:
        raise ApprovalError(f"{path} is not on main")
    commit = history[0]
    if len(commit.parents) < 2:
        raise ApprovalError(
            f"{path} was last changed by commit {commit.sha[:10]}, not by an approved merge; "
            f"revert that change or propose the plan again with `reconciler check`"
        )
    approvers = parse_approvers(commit.message)
    rules = policy.approvals
    allowed = [a for a in approvers if not rules.reviewers or a in rules.reviewers]
    refused = [a for a in approvers if a not in allowed]
    if len(allowed) < rules.min_approvals:
        detail = f" ({', '.join(refused)} not in approvals.reviewers)" if refused else ""
        raise ApprovalError(
            f"{app}: plan has {len(allowed)} valid approval(s), {policy.source_file} requires "
            f"{rules.min_approvals}{detail}"
        )
    date = git.run("log", "-1", "--format=%cs", commit.sha).strip()
    return Approval(commit.sha, tuple(allowed), date)


def extract_state(git: Git, rev: str, paths: Sequence[str], into: Path) -> None:
    """Copy `paths` as they were at `rev` into `into`, to read old snapshots."""
    archive = git.run_bytes("archive", "--format=tar", rev, "--", *paths)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def regenerate(git: Git, plan: Plan, policy: Policy, modes: frozenset[Mode]) -> Plan:
    """The plan the tool generates from the snapshots the plan was computed from,
    under the policy merged now."""
    if not plan.base_commit or not git.is_ancestor(plan.base_commit):
        raise PlanError(
            f"{plan_path(plan.app)}: base_commit {plan.base_commit[:10]!r} is not in main's "
            "history; the plan was edited or comes from another repository"
        )
    source = policy.identity_source
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = [f"state/apps/{plan.app}", f"state/identities/{source}.yaml"]
        extract_state(git, plan.base_commit, paths, root)
        digests = {
            f"apps/{plan.app}": snapshot.accounts_digest(root, plan.app),
            f"identities/{source}": snapshot.identities_digest(root, source),
        }
        if digests != dict(plan.snapshot_digests):
            raise PlanError(
                f"{plan_path(plan.app)}: its snapshot digests do not match commit "
                f"{plan.base_commit[:10]}; the plan was edited. Revert it"
            )
        accounts: Mapping[str, Account] = snapshot.read_accounts(root, plan.app) or {}
        identities: Mapping[str, Identity] = snapshot.read_identities(root, source) or {}
    links = correlate(accounts.values(), identities.values(), policy.match, policy.domain_aliases)
    mode = effective_mode(policy.mode, modes) or ""
    evaluation = evaluate(accounts, identities, links, policy, mode)
    return new_plan(
        plan.app,
        evaluation.actions,
        (),
        created_at=plan.created_at,
        base_commit=plan.base_commit,
        snapshot_digests=plan.snapshot_digests,
        policy_digest=plan.policy_digest,
    )


def verify_live(action: Action, app: Connector, idp: Connector) -> str | None:
    """Why the action must not run now, or None to go ahead."""
    account = app.lookup_account(action.account_id)
    if account is None:
        return f"account no longer exists in {app.name}"
    if action.mode == "disable" and account.status == "disabled":
        return f"account is already disabled in {app.name}"
    if action.identity_id:
        identity = idp.lookup_identity(action.identity_id)
        if identity is not None and identity.status == "active":
            return f"identity is active again in {idp.name}"
    return None


class Applier:
    def __init__(
        self,
        settings: Settings,
        git: Git,
        factory: ConnectorFactory,
        *,
        confirm: bool,
        concurrency: int = 4,
        now: Callable[[], datetime] = utc_now,
        progress: Progress | None = None,
    ) -> None:
        self.progress = progress or NoProgress()
        self.settings = settings
        self.git = git
        self.factory = factory
        self.confirm = confirm
        self.concurrency = max(1, concurrency)
        self.now = now

    def stamp(self) -> str:
        return timestamp(self.now())

    def run(self, apps: Sequence[str]) -> list[AppApply]:
        results = []
        for app in apps:
            try:
                results.append(self.apply_app(app))
            except ReconcilerError as exc:
                results.append(AppApply(app=app, error=str(exc), dry_run=not self.confirm))
        return results

    def apply_app(self, app: str) -> AppApply:
        if app not in self.settings.config.apps:
            raise PlanError(f"plans/{app}.yaml names an app that is not in reconciler.yaml")
        policy = self.settings.policy_for(app)
        plan = load_plan(self.git, app)
        approval = verify_approval(self.git, app, policy)
        app_conn = self.factory(self.settings.config.apps[app])
        idp_conn = self.factory(self.settings.config.identity_sources[policy.identity_source])
        try:
            check_subset(plan, regenerate(self.git, plan, policy, app_conn.modes))
            if plan.status == "blocked" and plan.id not in policy.guards.allow_blocked_plans:
                reasons = "; ".join(plan.blocked_reasons)
                raise PlanError(
                    f"{app}: plan {plan.id} is blocked ({reasons}). To apply it anyway, add "
                    f"{plan.id!r} to guards.allow_blocked_plans in {policy.source_file} and "
                    "merge that change"
                )
            if not self.confirm:
                return self.dry_run(plan, approval, app_conn, idp_conn)
            return self.execute(plan, approval, app_conn, idp_conn)
        finally:
            app_conn.close()
            idp_conn.close()

    def dry_run(
        self, plan: Plan, approval: Approval, app_conn: Connector, idp_conn: Connector
    ) -> AppApply:
        entries = []
        for action in plan.active_actions:
            try:
                why = verify_live(action, app_conn, idp_conn)
            except ConnectorError as exc:
                why = f"cannot verify: {exc}"
            outcome, detail = ("skipped", why) if why else ("pending", f"would {action.mode}")
            entries.append(self.entry(action, outcome, detail))
        return AppApply(plan.app, plan.id, approval.approvers, tuple(entries), dry_run=True)

    def entry(self, action: Action, outcome: str, detail: str) -> Entry:
        return Entry(
            account_id=action.account_id,
            username=action.username,
            email=action.email,
            mode=action.mode,
            reason=action.reason,
            outcome=outcome,
            detail=detail,
            at=self.stamp(),
        )

    def execute(
        self, plan: Plan, approval: Approval, app_conn: Connector, idp_conn: Connector
    ) -> AppApply:
        app = plan.app
        root = self.settings.root
        header = {
            "plan": plan.id,
            "app": app,
            "approved_by": list(approval.approvers),
            "approval_commit": approval.commit,
            "started_at": self.stamp(),
            "finished_at": None,
        }
        journal = Journal.open(root / "history" / app, approval.date, plan.id, header)

        def run_one(action: Action) -> None:
            previous = journal.get(action.account_id)
            if previous is not None and previous.outcome in FINAL | {"manual_pending"}:
                return
            try:
                why = verify_live(action, app_conn, idp_conn)
                if why and previous is not None and previous.outcome == "pending":
                    # The run that recorded `pending` acted before it stopped.
                    journal.record(self.entry(action, "done", f"completed earlier ({why})"))
                elif why:
                    journal.record(self.entry(action, "skipped", why))
                elif action.mode == Mode.MANUAL.value:
                    journal.record(self.entry(action, "manual_pending", manual_hint(app, action)))
                else:
                    journal.record(self.entry(action, "pending", "started"))
                    app_conn.deprovision(_account_of(action), Mode(action.mode))
                    journal.record(self.entry(action, "done", VERBS[action.mode]))
            except ReconcilerError as exc:
                journal.record(self.entry(action, "failed", str(exc)))

        task = self.progress.task(f"applying plan {plan.id} to {app}", len(plan.active_actions))

        def run_and_count(action: Action) -> None:
            run_one(action)
            task.advance(1)

        try:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                list(pool.map(run_and_count, plan.active_actions))
        finally:
            task.done()
        for action in plan.actions:
            if action.skip and journal.get(action.account_id) is None:
                reason = action.skip_reason or "skipped by a reviewer"
                journal.record(self.entry(action, "skipped", f"reviewer: {reason}"))
        return self.finish(plan, approval, journal, app_conn)

    def finish(
        self, plan: Plan, approval: Approval, journal: Journal, app_conn: Connector
    ) -> AppApply:
        app = plan.app
        notes = []
        if any(e.outcome == "done" for e in journal.entries.values()):
            accounts, error = collect(app, app_conn.pull_accounts)
            if error:
                notes.append(f"snapshot not refreshed: {error}; the next check will refresh it")
            else:
                snapshot.save_app(self.settings.root, app, accounts, None, self.stamp())
        entries, commit = settle(
            self.settings.root, self.git, app, approval, journal, self.stamp(),
            snapshot.app_paths(app),
        )  # fmt: skip
        return AppApply(
            app,
            plan.id,
            approval.approvers,
            entries,
            dry_run=False,
            commit=commit,
            notes=tuple(notes),
        )


def settle(
    root: Path,
    git: Git,
    app: str,
    approval: Approval,
    journal: Journal,
    at: str,
    extra_paths: Sequence[str] = (),
) -> tuple[tuple[Entry, ...], str | None]:
    """Commit the journal (and `extra_paths`); once every action is done or skipped, the
    plan is finished and leaves main. Returns the entries and the commit."""
    entries = tuple(journal.entries.values())
    complete = all(e.outcome in FINAL for e in entries)
    if complete:
        journal.finish(at)
        for path in (plan_path(app), report_path(app)):
            (root / path).unlink(missing_ok=True)
    message = apply_message(app, entries, approval.approvers, complete)
    paths = [f"history/{app}", *extra_paths, plan_path(app), report_path(app)]
    return entries, git.commit_paths(paths, message)


def _account_of(action: Action) -> Account:
    return Account(
        id=action.account_id,
        username=action.username,
        email=action.email,
        display_name=action.display_name,
    )


def manual_hint(app: str, action: Action) -> str:
    return (
        f"remove {action.username or action.email or action.account_id} from {app} by hand, "
        f"then run `reconciler apply --app {app} --mark-done {action.account_id} "
        "--as YOU --confirm`"
    )


def apply_message(
    app: str, entries: Sequence[Entry], approvers: Sequence[str], complete: bool
) -> str:
    total = len(entries)
    done = [e for e in entries if e.outcome == "done"]
    counts = {
        o: sum(1 for e in entries if e.outcome == o)
        for o in ("skipped", "failed", "manual_pending")
    }
    mode = entries[0].mode if entries else "disable"
    subject = f"apply {app}: {VERBS.get(mode, 'removed')} {len(done)} of {total} accounts"
    extras = [f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n]
    if extras:
        subject += f" ({', '.join(extras)})"
    subject += f", approved by {', '.join(approvers)}"
    body = [f"{e.outcome}: {e.username or e.email or e.account_id} — {e.detail}" for e in entries]
    if not complete:
        body.append("The plan stays on main until every action is done or skipped.")
    clean = [line.replace("\n", " ").replace("\r", " ") for line in body]
    return subject + "\n\n" + "\n".join(clean)


def mark_done(
    settings: Settings, git: Git, app: str, account_ids: Sequence[str], by: str, at: str
) -> AppApply:
    """Record manual tasks as done by a person."""
    policy = settings.policy_for(app)
    plan = load_plan(git, app)
    approval = verify_approval(git, app, policy)
    journal = Journal.open(settings.root / "history" / app, approval.date, plan.id, {})
    for account_id in account_ids:
        entry = journal.get(account_id)
        if entry is None or entry.outcome != "manual_pending":
            raise PlanError(
                f"{app}: account {account_id!r} has no pending manual task in plan {plan.id}"
            )
        journal.mark(account_id, "done", f"removed by hand, marked done by {by}", at)
    entries, commit = settle(settings.root, git, app, approval, journal, at)
    return AppApply(app, plan.id, approval.approvers, entries, dry_run=False, commit=commit)
