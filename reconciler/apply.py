"""`reconciler apply`: execute merged, approved plans (DESIGN §9).

For each plan on main: ask the forge for the approval; rebuild the plan from the
snapshots at its base commit under the policy merged now, with the assessment `check`
uses, and refuse unless the reviewed plan is a subset of it and not blocked. Then pull
the identity source live, re-verify each action against the live account and the live
identities, act, read the account back, and record each outcome in the journal as it
happens. Dry run unless confirmed. The snapshot is refreshed and everything is
committed once, authored by whoever ran the apply.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from reconciler import changeindex, disabled, gone, inert, snapshot
from reconciler.actor import Person
from reconciler.clock import read_time, timestamp, utc_now
from reconciler.config import Policy, Settings
from reconciler.connectors.base import Connector, Mode
from reconciler.correlate import correlate, normalise
from reconciler.diff import diff_accounts
from reconciler.errors import ApprovalError, PlanError, ReconcilerError
from reconciler.forge.base import Approval, Forge
from reconciler.git import Git
from reconciler.history import FINAL, Entry, Journal
from reconciler.model import Account, Identity, clean_time
from reconciler.plan import (
    DELETE_AFTER,
    ENABLE,
    RETURNED,
    Action,
    Plan,
    check_subset,
    new_plan,
)
from reconciler.planfile import plan_path, read_plan, report_path
from reconciler.policy import (
    INACTIVE,
    LAST_LOGIN,
    TRIGGERS,
    PullState,
    assess,
    check_approvers,
    exception_for,
    identity_blocks,
    identity_shrink_block,
    idle_since,
    protection,
    still_proposed,
)
from reconciler.progress import NoProgress, Progress
from reconciler.pull import collect, merge_tombstones, pull_identities
from reconciler.systems import ConnectorFactory

VERBS = {
    "disable": "disabled",
    "delete": "deleted",
    "manual": "recorded manual tasks for",
    "remove_roles": "took roles from",
    "enable": "enabled",
}

# The fields that say whose an account is: if either changed since the plan, the
# account may have been renamed and handed to someone else.
OWNER_FIELDS = ("username", "email")


@dataclass(frozen=True)
class AppApply:
    """What apply did (or would do) for one app."""

    app: str
    plan_id: str = ""
    approval: Approval | None = None
    entries: tuple[Entry, ...] = ()
    error: str = ""
    dry_run: bool = True
    commit: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        return bool(self.error) or any(e.outcome == "failed" for e in self.entries)

    @property
    def approved_by(self) -> tuple[str, ...]:
        return self.approval.approvers if self.approval else ()


def merged_plans(git: Git) -> list[str]:
    """Apps with a plan on main."""
    return sorted(Path(p).stem for p in git.ls_tree("HEAD", "plans") if p.endswith(".yaml"))


def load_plan(git: Git, app: str) -> Plan:
    plan = read_plan(git, "HEAD", app)
    if plan is None:
        raise PlanError(f"no merged plan for app {app!r} on main")
    return plan


def approved(forge: Forge, app: str, policy: Policy) -> Approval:
    """The forge's approval of the app's plan on main, held against the policy now."""
    approval = forge.approval(app)
    check_approvers(app, approval.approvers, policy.approvals, policy.source_file, approval.teams)
    return approval


@dataclass(frozen=True)
class Basis:
    """What the plan was computed from, read again from its base commit."""

    plan: Plan  # the plan the tool generates there, under the policy merged now
    identities: Mapping[str, Identity]  # the identity snapshot at the base commit


def rebuild(
    git: Git, plan: Plan, approval: Approval, policy: Policy, modes: frozenset[Mode]
) -> Basis:
    """The plan the tool generates from the snapshots the reviewed plan names, under the
    policy merged now; every claim in the reviewed file about its basis is verified."""
    where = plan_path(plan.app)
    # A commit made on main before the approval; a commit that arrived with the plan's
    # branch could hold any state its author liked.
    if not plan.base_commit or not git.on_first_parent_chain(
        plan.base_commit, f"{approval.commit}^1"
    ):
        raise PlanError(
            f"{where}: base_commit {plan.base_commit[:10]!r} is not a commit of main from "
            "before the approval; the plan was edited or comes from elsewhere. Revert it and "
            "run `reconciler check` again"
        )
    source = policy.identity_source
    policy_then = git.show(plan.base_commit, policy.source_file)
    if policy_then is None or hashlib.sha256(policy_then).hexdigest() != plan.policy_digest:
        raise PlanError(
            f"{where}: its policy_digest does not match {policy.source_file} at commit "
            f"{plan.base_commit[:10]}; the plan was edited. Revert it"
        )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = [f"state/apps/{plan.app}", *snapshot.identity_paths(source)]
        git.extract(plan.base_commit, paths, root)
        digests = {
            f"apps/{plan.app}": snapshot.accounts_digest(root, plan.app),
            f"identities/{source}": snapshot.identities_digest(root, source),
        }
        if digests != dict(plan.snapshot_digests):
            if any(
                isinstance(d, str) and snapshot.is_legacy_digest(d)
                for d in plan.snapshot_digests.values()
            ):
                raise PlanError(
                    f"{where}: its snapshot digests are in the format of an earlier release "
                    "of reconciler, so they cannot show that the snapshots at commit "
                    f"{plan.base_commit[:10]} are the ones the plan was made from. Run "
                    "`reconciler check` to propose the plan again, and have it reviewed"
                )
            raise PlanError(
                f"{where}: its snapshot digests do not match commit "
                f"{plan.base_commit[:10]}; the plan was edited. Revert it"
            )
        accounts = with_claimed_logins(dict(snapshot.read_accounts(root, plan.app) or {}), plan)
        identities = dict(snapshot.read_identities(root, source) or {})
        meta = snapshot.read_meta(snapshot.identities_meta_file(root, source)) or {}
    pull = PullState(
        source, count=meta.get("count") or 0, previous_count=meta.get("previous_count")
    )
    # As of when the plan was made: an exception that ran out since then does not add
    # to what was reviewed.
    made = read_time(plan.created_at)
    if made is None:
        raise PlanError(f"{where}: created_at is not a time; the plan was edited. Revert it")
    # Grace judged on the history the plan was made from, as the check judged it.
    assessment = assess(
        plan.app,
        accounts,
        identities,
        pull,
        policy,
        modes,
        made,
        lambda people: gone.gone_since(git, source, people, plan.base_commit),
        lambda ids: disabled.disabled_since(git, plan.app, ids, plan.base_commit),
    )
    generated = new_plan(
        plan.app,
        assessment.actions,
        assessment.blocked_reasons,
        created_at=plan.created_at,
        base_commit=plan.base_commit,
        snapshot_digests=digests,
        policy_digest=plan.policy_digest,
    )
    return Basis(generated, identities)


def with_claimed_logins(accounts: dict[str, Account], plan: Plan) -> dict[str, Account]:
    """The snapshot's accounts with the last sign-in the reviewed plan records for each
    inactive one: snapshots never hold last logins (live data), so the plan's record is
    all a rebuild has. Only a claim, and verified: apply reads the account's last
    sign-in from the app before acting (`verify_live`), and skips it if it is recent."""
    for action in plan.actions:
        claimed = action.evidence.get(LAST_LOGIN)
        found = accounts.get(action.account_id)
        if action.reason == INACTIVE and isinstance(claimed, str) and found is not None:
            accounts[action.account_id] = found._replace(last_login=clean_time(claimed))
    return accounts


def shows_done(account: Account | None, action: Action) -> bool:
    """Whether the system, read back, shows the action done: the account deprovisioned,
    or (op remove_roles) holding none of the action's roles."""
    if action.takes_roles:
        return account is not None and set(action.roles).isdisjoint(account.roles)
    if action.op == ENABLE:
        return account is not None and account.status == "active"
    if account is None:
        return True
    return action.mode == Mode.DISABLE.value and account.status == "disabled"


def owner_change(action: Action, live: Account) -> str | None:
    """How the live account's owner fields differ from the plan's, or None."""
    changed = []
    for name in OWNER_FIELDS:
        before, now = getattr(action, name), getattr(live, name)
        if normalise(before, {}) != normalise(now, {}):
            changed.append(f"{name} {inert.terminal(before)!r} → {inert.terminal(now)!r}")
    return ", ".join(changed) or None


def verify_live(
    action: Action,
    live: Account | None,
    identities: Mapping[str, Identity],
    policy: Policy,
    app: str,
    now: datetime,
) -> str | None:
    """Why the action must not run now, or None to go ahead. `live` is the account and
    `identities` the identity source as read `now` (tombstones merged in)."""
    return live_verdict(action, live, identities, policy, app, now)[0]


def live_verdict(
    action: Action,
    live: Account | None,
    identities: Mapping[str, Identity],
    policy: Policy,
    app: str,
    now: datetime,
) -> tuple[str | None, Action]:
    """`verify_live`'s answer, with the action as it may run now: a role removal keeps
    only the roles the policy still takes (`roles_to_take`)."""
    if action.takes_roles and live is not None and not owner_change(action, live):
        return _verify_roles(action, live, identities, policy, app, now)
    return _verify(action, live, identities, policy, app, now), action


def _verify(
    action: Action,
    live: Account | None,
    identities: Mapping[str, Identity],
    policy: Policy,
    app: str,
    now: datetime,
) -> str | None:
    if live is None:
        return f"account no longer exists in {app}"
    changed = owner_change(action, live)
    if changed:
        return (
            f"the account changed since the plan ({changed}): it may belong to someone "
            "else now; not acting. The next check proposes it again if it should go"
        )
    if action.mode == Mode.DISABLE.value and live.status == "disabled":
        return f"account is already disabled in {app}"
    if action.reason in (DELETE_AFTER, RETURNED):
        return _verify_graded(action, live, identities, policy, app, now)
    if action.reason == INACTIVE:
        if idle_since(live, policy, now) is None:
            signed_in = inert.terminal(live.last_login) if live.last_login else "unknown now"
            return f"the account is not inactive now: {app} says its last sign-in is {signed_in}"
    else:
        planned = identities.get(action.identity_id)
        if planned is not None and planned.status == "active":
            return f"identity {action.identity_id} is active again in {policy.identity_source}"
    found = still_proposed(live, identities, policy, action.mode, app=app, now=now)
    # For the same kind of reason (the person left, however the source says so now; or
    # the account is unused): an account that is now its returning owner's, and unused,
    # is not deleted as a leaver's.
    if found is None or (found.reason == INACTIVE) != (action.reason == INACTIVE):
        return f"no longer proposed: {_link_now(live, identities, policy, app, now)}"
    return None


def _verify_roles(
    action: Action,
    live: Account,
    identities: Mapping[str, Identity],
    policy: Policy,
    app: str,
    now: datetime,
) -> tuple[str | None, Action]:
    """Why the role removal must not run now, or None: it must still be proposed, for
    roles it still takes (`roles_to_take`); and the removal narrowed to those."""
    if live.status != "active":
        return f"account is {live.status} in {app}; its roles are left as they are", action
    roles = _roles_text(action)
    if set(action.roles).isdisjoint(live.roles):
        return f"the account no longer holds {roles}: taken already", action
    found = still_proposed(live, identities, policy, action.mode, app=app, now=now)
    admitted = f"; allowed_roles in {policy.source_file} admits them to {roles} now"
    if found is None or not found.takes_roles:
        link = _link_now(live, identities, policy, app, now, admitted)
        return f"no longer proposed: {link}", action
    taken = roles_to_take(action, found)
    if not taken:
        return f"no longer proposed{admitted}", action
    return None, replace(action, roles=taken)


def _verify_graded(
    action: Action,
    live: Account,
    identities: Mapping[str, Identity],
    policy: Policy,
    app: str,
    now: datetime,
) -> str | None:
    """Why deleting an account reconciler disabled (its person still gone), or enabling
    it (its person back), must not run now, or None: the account must still be disabled
    and linked to the same person, who must still be gone, or still back."""
    deleting = action.reason == DELETE_AFTER
    if live.status != "disabled":
        return f"account is {live.status} in {app} now" + (
            ": enabled since the plan, so it is not deleted" if deleting else ""
        )
    link = correlate([live], identities.values(), policy.match, policy.domain_aliases)[live.id]
    identity = identities.get(link.identity_id or "")
    if identity is None or identity.id != action.identity_id or protection(live, policy):
        return f"no longer proposed: {_link_now(live, identities, policy, app, now)}"
    gone = identity.status in policy.deprovision_when and identity.status in TRIGGERS
    if gone != deleting:
        return f"identity {identity.id} is {identity.status} in {policy.identity_source} now"
    granted = exception_for(live, identity, policy, app)
    if deleting and granted is not None and now.date() <= granted.until:
        return f"no longer proposed: {_link_now(live, identities, policy, app, now)}"
    return None


def roles_to_take(action: Action, found: Action) -> tuple[str, ...]:
    """The roles of a reviewed removal that the policy still takes now (`found`, what it
    proposes for the live account): never more than the reviewer approved."""
    return tuple(role for role in action.roles if role in found.roles)


def _link_now(
    account: Account,
    identities: Mapping[str, Identity],
    policy: Policy,
    app: str,
    now: datetime,
    admitted: str = "",
) -> str:
    """Why the policy proposes nothing for `account` now; `admitted` ends the sentence
    when nothing else explains it (a role removal whose rule admits the owner now)."""
    protected = protection(account, policy)
    if protected:
        return f"the account is protected now ({protected})"
    link = correlate([account], identities.values(), policy.match, policy.domain_aliases)[
        account.id
    ]
    if link.ambiguous:
        return f"the account matches several identities now ({', '.join(link.candidates)})"
    if link.identity_id is None:
        return "the account matches no identity now"
    identity = identities[link.identity_id]
    granted = exception_for(account, identity, policy, app)
    if granted is not None and now.date() <= granted.until:
        return (
            f"{policy.source_file} grants an exception for {inert.terminal(granted.names)} "
            f"until {granted.until.isoformat()} ({inert.terminal(granted.reason)})"
        )
    return (
        f"the account matches identity {identity.id} ({inert.terminal(identity.email)}), "
        f"which is {identity.status}{admitted if identity.status == 'active' else ''}"
    )


class Applier:
    def __init__(
        self,
        settings: Settings,
        git: Git,
        forge: Forge,
        factory: ConnectorFactory,
        *,
        confirm: bool,
        actor: Person,
        concurrency: int = 4,
        now: Callable[[], datetime] = utc_now,
        progress: Progress | None = None,
    ) -> None:
        self.progress = progress or NoProgress()
        self.settings = settings
        self.git = git
        self.forge = forge
        self.factory = factory
        self.confirm = confirm
        self.actor = actor
        self.concurrency = max(1, concurrency)
        self.now = now
        self._live: dict[str, list[Identity]] = {}

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

    def live_identities(self, policy: Policy, base: Mapping[str, Identity]) -> dict[str, Identity]:
        """The identity source read now, with the base snapshot's identities that are gone
        kept as tombstones; one pull per source per run."""
        source = policy.identity_source
        if source not in self._live:
            connector = self.factory(self.settings.config.identity_sources[source])
            pulled, error = pull_identities(connector, source, self.progress)
            previous = sum(1 for i in base.values() if i.status != "missing")
            state = PullState(source, error=error, count=len(pulled), previous_count=previous)
            problems = identity_blocks(state, policy)
            shrink = identity_shrink_block(state, policy)
            if problems or shrink:
                raise ReconcilerError(
                    f"cannot re-verify against {source} now: {'; '.join(problems) or shrink}"
                )
            self._live[source] = pulled
        return dict(merge_tombstones(base, self._live[source]))

    def apply_app(self, app: str) -> AppApply:
        if app not in self.settings.config.apps:
            raise PlanError(f"plans/{app}.yaml names an app that is not in reconciler.yaml")
        policy = self.settings.policy_for(app)
        plan = load_plan(self.git, app)
        approval = approved(self.forge, app, policy)
        app_conn = self.factory(self.settings.config.apps[app])
        try:
            basis = rebuild(self.git, plan, approval, policy, app_conn.modes)
            try:
                check_subset(plan, basis.plan)
            except PlanError as exc:
                now = (self.settings.root / policy.source_file).read_bytes()
                if hashlib.sha256(now).hexdigest() == plan.policy_digest:
                    raise
                raise PlanError(
                    f"{policy.source_file} changed since plan {plan.id} was made, and "
                    "under it the plan holds actions the tool would not propose now (a new "
                    "exception or protection, say); nothing was applied. Withdraw the "
                    f"approval (`git revert` its commit {approval.commit[:10]}, with `-m 1` "
                    "for a merge): the next check proposes the plan again under the new "
                    "policy, for review"
                ) from exc
            generated = basis.plan
            if generated.blocked_reasons and generated.id not in policy.guards.allow_blocked_plans:
                reasons = "; ".join(generated.blocked_reasons)
                raise PlanError(
                    f"{app}: plan {generated.id} is blocked ({reasons}). To apply it anyway, "
                    f"add {generated.id!r} to guards.allow_blocked_plans in "
                    f"{policy.source_file} and merge that change"
                )
            identities = self.live_identities(policy, basis.identities)
            context = _Context(plan, approval, policy, app_conn, identities)
            if not self.confirm:
                return self.dry_run(context)
            return self.execute(context)
        finally:
            app_conn.close()

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

    def dry_run(self, ctx: _Context) -> AppApply:
        entries = []
        for action in ctx.plan.active_actions:
            try:
                live = read_live(ctx.app_conn, action)
                why = verify_live(
                    action, live, ctx.identities, ctx.policy, ctx.plan.app, self.now()
                )
            except ReconcilerError as exc:
                why = f"cannot verify: {exc}"
            outcome, detail = ("skipped", why) if why else ("pending", f"would {doing(action)}")
            entries.append(self.entry(action, outcome, detail))
        return AppApply(ctx.plan.app, ctx.plan.id, ctx.approval, tuple(entries), dry_run=True)

    def execute(self, ctx: _Context) -> AppApply:
        plan, approval, policy = ctx.plan, ctx.approval, ctx.policy
        header = {
            "plan": plan.id,
            "app": plan.app,
            "approved_by": list(approval.approvers),
            "approval": approval.reference,
            "approved_at": approval.at,
            "approval_verified": dict(approval.verified),
            "base_commit": plan.base_commit,
            "policy": policy.source_file,
            "started_at": self.stamp(),
            "finished_at": None,
        }
        directory = self.settings.root / "history" / plan.app
        date = approval.at[:10]
        journal = Journal.open(directory, date, plan.id, approval.commit, header)
        journal.note_run(str(self.actor), self.stamp())
        task = self.progress.task(f"applying plan {plan.id} to {plan.app}", len(plan.actions))

        def run_and_count(action: Action) -> None:
            self.run_one(ctx, journal, action)
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
        return self.finish(ctx, journal)

    def run_one(self, ctx: _Context, journal: Journal, action: Action) -> None:
        previous = journal.get(action.account_id)
        if previous is not None and previous.outcome in FINAL | {"manual_pending"}:
            return
        mode = action.mode
        try:
            live = read_live(ctx.app_conn, action)
            if previous is not None and previous.outcome == "pending" and shows_done(live, action):
                # The run that recorded `pending` acted before it stopped.
                journal.record(self.entry(action, "done", f"{VERBS[mode]} by an earlier run"))
                return
            why, action = live_verdict(
                action, live, ctx.identities, ctx.policy, ctx.plan.app, self.now()
            )
            if why:
                journal.record(self.entry(action, "skipped", why))
                return
            assert live is not None
            if mode == Mode.MANUAL.value:
                hint = manual_hint(ctx.plan.app, action)
                journal.record(self.entry(action, "manual_pending", hint))
                return
            journal.record(self.entry(action, "pending", "started"))
            if action.takes_roles:
                ctx.app_conn.remove_roles(live, action.roles)
            elif action.op == ENABLE:
                ctx.app_conn.enable(live)
            else:
                ctx.app_conn.deprovision(live, Mode(mode))
            after = read_live(ctx.app_conn, action)
            if shows_done(after, action):
                journal.record(self.entry(action, "done", done_text(action)))
            else:
                journal.record(
                    self.entry(action, "failed", not_done_text(ctx.plan.app, action, after))
                )
        except ReconcilerError as exc:
            journal.record(self.entry(action, "failed", str(exc)))

    def finish(self, ctx: _Context, journal: Journal) -> AppApply:
        app = ctx.plan.app
        notes = []
        index = ""  # of the accounts whose line the refreshed snapshot changes
        if any(e.outcome == "done" for e in journal.entries.values()):
            accounts, error = collect(app, ctx.app_conn.pull_accounts)
            if error:
                notes.append(f"snapshot not refreshed: {error}; the next check will refresh it")
            else:
                previous: Mapping[str, Account] = (
                    snapshot.read_accounts(self.settings.root, app) or {}
                )
                current = snapshot.account_records(accounts)
                index = changeindex.of_account_diff(diff_accounts(previous, current))
                snapshot.save_app(self.settings.root, app, current, None, self.stamp())
        entries, commit = settle(
            self.settings.root, self.git, app, ctx.approval, journal, self.stamp(),
            self.actor, snapshot.app_paths(app), index=index,
        )  # fmt: skip
        if commit:
            outcome = apply_message(app, entries, ctx.approval, True).splitlines()[0]
            journal_path = journal.path.relative_to(self.settings.root).as_posix()
            try:
                self.forge.report_applied(ctx.approval, outcome, journal_path)
            except ReconcilerError as exc:
                # The accounts are deprovisioned and recorded: a lost comment is a note.
                notes.append(f"the outcome was not posted to {ctx.approval.reference}: {exc}")
        return AppApply(
            app,
            ctx.plan.id,
            ctx.approval,
            entries,
            dry_run=False,
            commit=commit,
            notes=tuple(notes),
        )


@dataclass(frozen=True)
class _Context:
    """One app's apply: the reviewed plan and what it was verified against."""

    plan: Plan
    approval: Approval
    policy: Policy
    app_conn: Connector
    identities: Mapping[str, Identity]


def settle(
    root: Path,
    git: Git,
    app: str,
    approval: Approval,
    journal: Journal,
    at: str,
    actor: Person,
    extra_paths: Sequence[str] = (),
    index: str = "",
) -> tuple[tuple[Entry, ...], str | None]:
    """Commit the journal (and `extra_paths`), authored by `actor`; once every action is
    done or skipped, the plan is finished and leaves main. `index`, the index of the
    snapshot records the commit changes (`reconciler.changeindex`), ends the message.
    Returns the entries and the commit."""
    entries = tuple(journal.entries.values())
    complete = all(e.outcome in FINAL for e in entries)
    if complete:
        journal.finish(at)
        for path in (plan_path(app), report_path(app)):
            (root / path).unlink(missing_ok=True)
    message = apply_message(app, entries, approval, complete)
    if index:
        message = changeindex.with_index(message, index)
    paths = [f"history/{app}", *extra_paths, plan_path(app), report_path(app)]
    return entries, git.commit_paths(paths, message, actor.author_env())


def read_live(connector: Connector, action: Action) -> Account | None:
    """The action's account as its app says now; for a role removal, with the roles read
    live through every membership (`lookup_roles`) when the app can take roles."""
    live = connector.lookup_account(action.account_id)
    if live is None or not action.takes_roles or Mode.REMOVE_ROLES not in connector.modes:
        return live
    roles = connector.lookup_roles(action.account_id)
    return None if roles is None else live._replace(roles=roles)


def doing(action: Action) -> str:
    """What the action does, for a dry run: `disable`, `take roles admins`."""
    if action.takes_roles:
        return f"take roles {_roles_text(action)}" + (
            " (by hand)" if action.mode == "manual" else ""
        )
    return action.mode


def done_text(action: Action) -> str:
    return f"took roles {_roles_text(action)}" if action.takes_roles else VERBS[action.mode]


def not_done_text(app: str, action: Action, after: Account | None) -> str:
    """Why an action the app accepted is not done, as read back."""
    if action.op == ENABLE:
        status = after.status if after is not None else "gone"
        return f"{app} accepted enabling the account but shows it {status} when read back"
    if not action.takes_roles:
        status = after.status if after is not None else "gone"
        return (
            f"{app} accepted the {action.mode} but still shows the account {status} when "
            "read back; check the account by hand"
        )
    if after is None:
        return f"{app} no longer shows the account after taking its roles; check it by hand"
    kept = ", ".join(inert.terminal(r) for r in action.roles if r in after.roles)
    return (
        f"{app} accepted the removal but still shows roles {kept} when read back; check "
        "the account by hand"
    )


def _roles_text(action: Action) -> str:
    return ", ".join(inert.terminal(role) for role in action.roles)


def manual_hint(app: str, action: Action) -> str:
    who = inert.terminal(action.username or action.email or action.account_id)
    if action.takes_roles:
        task = f"take roles {_roles_text(action)} from {who} in {app}"
    elif action.op == ENABLE:
        task = f"enable {who} in {app}"
    else:
        task = f"remove {who} from {app}"
    return (
        f"{task} by hand, then run `reconciler apply --app {app} "
        f"--mark-done {inert.terminal(action.account_id)} --as YOU --confirm`"
    )


def apply_message(app: str, entries: Sequence[Entry], approval: Approval, complete: bool) -> str:
    total = len(entries)
    done = [e for e in entries if e.outcome == "done"]
    counts = {
        o: sum(1 for e in entries if e.outcome == o)
        for o in ("skipped", "failed", "manual_pending")
    }
    by_mode = Counter(e.mode for e in done)
    mode = entries[0].mode if entries else "disable"
    verbs = " and ".join(f"{VERBS.get(m, 'removed')} {n}" for m, n in sorted(by_mode.items()))
    subject = f"apply {app}: {verbs or VERBS.get(mode, 'removed') + ' 0'} of {total} accounts"
    extras = [f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n]
    if extras:
        subject += f" ({', '.join(extras)})"
    subject += f", approved by {', '.join(approval.approvers)} in {approval.reference}"
    body = [
        f"{e.outcome}: {inert.commit(e.username or e.email or e.account_id)} — "
        f"{inert.commit(e.detail, max_length=500)}"
        for e in entries
    ]
    if not complete:
        body.append("The plan stays on main until every action is done or skipped.")
    return subject + "\n\n" + "\n".join(body)


def _pending_manual(journal: Journal, wanted: str) -> Entry:
    """The manual task `wanted` names: an account id, or a username or email that names
    exactly one task."""
    pending = [e for e in journal.entries.values() if e.outcome == "manual_pending"]
    by_id = [e for e in pending if e.account_id == wanted]
    if by_id:
        return by_id[0]
    key = normalise(wanted, {})
    named = [
        e for e in pending if key in {normalise(e.username, {}), normalise(e.email, {})} - {""}
    ]
    if len(named) == 1:
        return named[0]
    shown = inert.terminal(wanted)
    if named:
        ids = ", ".join(e.account_id for e in named)
        raise PlanError(f"{shown!r} names several pending manual tasks ({ids}); use the account id")
    raise PlanError(f"{shown!r} names no pending manual task in this plan")


def mark_done(
    settings: Settings,
    git: Git,
    forge: Forge,
    app: str,
    accounts: Sequence[str],
    by: Person,
    at: str,
) -> AppApply:
    """Record manual tasks as done by a person; `accounts` are ids, usernames or emails."""
    policy = settings.policy_for(app)
    plan = load_plan(git, app)
    approval = approved(forge, app, policy)
    directory = settings.root / "history" / app
    journal = Journal.open(directory, approval.at[:10], plan.id, approval.commit, {})
    if not journal.entries:
        raise ApprovalError(
            f"{app}: plan {plan.id} has not been applied yet; run `reconciler apply --app {app} "
            "--confirm` first, which lists the manual tasks"
        )
    for wanted in accounts:
        entry = _pending_manual(journal, wanted)
        journal.mark(entry.account_id, "done", f"removed by hand, marked done by {by.name}", at)
    journal.note_run(str(by), at)
    entries, commit = settle(settings.root, git, app, approval, journal, at, by)
    return AppApply(app, plan.id, approval, entries, dry_run=False, commit=commit)
