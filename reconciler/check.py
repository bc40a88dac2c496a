"""`reconciler check`: pull, snapshot, diff, correlate, evaluate, propose (DESIGN §5).

Apps are independent: one app's failure is reported and the others go on.
Identity sources are pulled once per run and shared by the apps that use them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import NamedTuple

from reconciler import changeindex, disabled, gone, report, snapshot
from reconciler.clock import timestamp, utc_now
from reconciler.config import Policy, Settings, SystemConfig
from reconciler.connectors.base import Connector, Mode
from reconciler.correlate import Matcher
from reconciler.diff import AccountDiff, diff_accounts
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.forge.base import IMPORT_BRANCH, Forge, ImportProposal, Proposal
from reconciler.git import Git
from reconciler.identityimport import identity_index, identity_summary
from reconciler.model import Account, Identity, Role
from reconciler.outcome import AppCheck
from reconciler.phases import Phases
from reconciler.plan import Plan, new_plan
from reconciler.planfile import PLAN_DIR, plan_path, plan_text
from reconciler.policy import (
    Assessment,
    PullState,
    app_shrink_block,
    assess,
    identity_blocks,
)
from reconciler.progress import NoProgress, Progress
from reconciler.pull import (
    collect,
    collect_records,
    counted,
    merge_tombstones,
    pull_identities,
)
from reconciler.snapshot import Records
from reconciler.systems import ConnectorFactory

# Where a check's identities come from (`reconciler check --identities`).
PULL = "pull"  # pulled from each identity source, imported, then used
SNAPSHOT = "snapshot"  # the snapshot main holds, pulled by an earlier check
ONLY = "only"  # pulled and imported, and no app is checked


class AppPull(NamedTuple):
    """What one app's pull gave: its accounts, roles and modes, or why it failed."""

    accounts: list[Account]
    roles: list[Role]
    modes: frozenset[Mode]
    error: str


@dataclass(frozen=True)
class IdentityPull:
    source: str
    identities: Mapping[str, Identity]  # the snapshot after this pull, tombstones included
    state: PullState
    commit: str | None = None
    summary: str = ""
    pulled: bool = True  # False: read from the snapshot main holds (`--identities snapshot`)
    message: str = ""  # the import commit's message, until it is committed; "": no change


@dataclass(frozen=True)
class Imported:
    """An app's pull written to its snapshot and waiting for its commit: what the
    assessment needs, or the AppCheck of a pull that failed."""

    app: str
    identity_pull: IdentityPull
    current: Records[Account] = field(default_factory=lambda: snapshot.account_records(()))
    diff: AccountDiff = field(default_factory=AccountDiff)
    modes: frozenset[Mode] = frozenset()
    message: str = ""  # the import commit's message; empty when nothing changed
    failed: AppCheck | None = None


@dataclass(frozen=True)
class CheckRun:
    apps: tuple[AppCheck, ...]
    identity_pulls: tuple[IdentityPull, ...]
    proposals: Mapping[str, str] = field(default_factory=dict)  # app → what the forge did
    commits: tuple[str, ...] = ()
    phases: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # From the first app's pull starting to the last one's ending: with pulls in
    # parallel, about the slowest app's pull (the `pull` phase is only the waiting).
    pull_span: float = 0.0
    # app → why the forge could not propose (or close) its plan, and what to do.
    forge_errors: Mapping[str, str] = field(default_factory=dict)
    # `forge.import_mode: pull-request`: the pull request that brings this check's imports
    # to main (None when there was nothing to import), or why it could not be opened.
    import_request: ImportProposal | None = None
    import_error: str = ""

    @property
    def failed(self) -> bool:
        return (
            any(a.failed for a in self.apps)
            or any(p.state.error or p.state.count == 0 for p in self.identity_pulls)
            or bool(self.forge_errors)
            or bool(self.import_error)
        )

    @property
    def needs_review(self) -> bool:
        """A person is needed: a plan to review, or imports to merge."""
        return self.import_request is not None or any(
            a.plan is not None and a.plan.actions for a in self.apps
        )


def forge_failure(exc: ReconcilerError) -> str:
    """What to tell about a forge that failed for one app: its error, which says what
    went wrong and how to fix it, and what became of the check's work."""
    return (
        f"{exc}; the plan was not proposed and nothing was deprovisioned (the imports are "
        "committed); fix that and run the check again"
    )


def waiting_note(request: ImportProposal | None, error: str) -> str:
    """What a check in `import_mode: pull-request` says of an app whose snapshot (or
    identity snapshot) it imported: no plan until main holds it."""
    if request is not None:
        return (
            f"waiting for the import pull request #{request.number} to be merged: main "
            "does not hold the snapshots just pulled; the next check after the merge "
            "proposes the plan"
        )
    return (
        f"waiting for the imports on {IMPORT_BRANCH}, whose pull request could not be "
        "opened; no plan is proposed until main holds the snapshots just pulled"
    )


class Checker:
    """One run of `check` over an access repo."""

    def __init__(
        self,
        settings: Settings,
        git: Git,
        forge: Forge,
        factory: ConnectorFactory,
        now: Callable[[], datetime] = utc_now,
        phases: Phases | None = None,
        progress: Progress | None = None,
        identities: str = PULL,
    ) -> None:
        self.phases = phases or Phases()
        self.progress = progress or NoProgress()
        self.settings = settings
        self.root = settings.root
        self.git = git
        self.forge = forge
        self.factory = factory
        self.identities = identities  # PULL, SNAPSHOT or ONLY
        self.now = now()
        self.commits: list[str] = []
        # Since when people have been gone, by source and identity id (None: not gone).
        self._gone: dict[str, dict[str, datetime | None]] = {}
        self._matchers: dict[tuple[object, ...], Matcher] = {}
        self._identity_digests: dict[str, str] = {}
        self._pull_starts: list[float] = []  # when each app's pull began and ended
        self._pull_ends: list[float] = []
        self._committing: Future[None] | None = None  # the imports' commits, while they run
        self._git_thread: ThreadPoolExecutor | None = None  # while `check` runs
        self._unstaged: list[str] = []  # paths written and not staged yet (`stage`)
        self._unstaged_lock = threading.Lock()
        self.identity_commits: dict[str, str] = {}  # source → its import commit in this run
        self.base: str | None = None  # main after the imports, the base of every plan
        self.approved: set[str] = set()  # plan files on main: approved, not yet applied
        # `import_mode: pull-request`: imports are committed on main locally as in
        # `commit` mode, then moved to IMPORT_BRANCH, and main goes back to `self.start`,
        # the commit the check began on, which every plan of the run is computed at.
        self.by_pull_request = settings.config.forge.imports_by_pull_request
        self.start = git.head()
        self.imports: list[str] = []  # the import commits' messages, in order
        self.imported: set[str] = set()  # the apps whose snapshot this run imported

    def run(self, apps: Sequence[str]) -> CheckRun:
        if self.by_pull_request:
            self.require_import_branch(apps)
            try:
                return self.check(apps)
            finally:
                # Whatever happened, main ends where it began: the imports are on
                # IMPORT_BRANCH, and nothing is left for a push to main.
                if self.git.head() != self.start and self.start is not None:
                    self.git.run("reset", "-q", "--keep", self.start)
        return self.check(apps)

    def require_import_branch(self, apps: Sequence[str]) -> None:
        forge = self.settings.config.forge
        if self.identities == SNAPSHOT:
            raise ConfigError(
                "`--identities snapshot` reads the identity snapshots on main, and with "
                "`import_mode: pull-request` main holds them only once their pull request "
                "is merged; check with `--identities pull`"
            )
        if forge.type != "github":
            raise ConfigError(
                f"forge {forge.type}: `import_mode: pull-request` needs `forge: {{type: "
                "github}`; remove import_mode from reconciler.yaml"
            )
        if IMPORT_BRANCH.partition("/")[2] in apps:
            raise ConfigError(
                f"an app named {IMPORT_BRANCH.partition('/')[2]!r} would share the branch "
                f"{IMPORT_BRANCH} with the imports (`import_mode: pull-request`); rename it"
            )
        if self.start is None:
            raise ConfigError(f"branch {self.settings.config.main_branch!r} has no commits yet")

    def check(self, apps: Sequence[str]) -> CheckRun:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="git") as git_thread:
            self._git_thread = git_thread
            try:
                return self.check_with(apps)
            finally:
                self._git_thread = None

    def check_with(self, apps: Sequence[str]) -> CheckRun:
        """`check`, with the thread that writes to git (`stage`, `committing`) running."""
        sources = sorted({self.settings.policy_for(app).identity_source for app in apps})
        if self.identities == SNAPSHOT:
            # Main as the forge holds it now: the identity snapshots an earlier check
            # (the workflow's first job) pushed. Before any pull: it may move the files
            # a file app reads.
            self.forge.publish()
        results = []
        proposals: dict[str, str] = {}
        forge_errors: dict[str, str] = {}
        waiting: list[int] = []  # indexes in `results` of apps waiting for the imports
        with self.pulls_ahead(() if self.identities == ONLY else apps) as pulled_apps:
            # The apps' pulls run meanwhile: a check waits for the slower of the two.
            if self.identities == SNAPSHOT:
                pulls = {source: self.committed_identities(source) for source in sources}
            else:
                pulls = {source: self.pull_identities(source) for source in sources}
            staged = [
                self.import_app(app, pulls[self.settings.policy_for(app).identity_source], pulled)
                for app, pulled in pulled_apps
            ]
        with self.committing(list(pulls.values()), staged):
            assessed = [(item, self.assess_app(item)) for item in staged]
        pulls = {s: replace(p, commit=self.identity_commits.get(s)) for s, p in pulls.items()}
        publish_error = "" if self.by_pull_request else self.publish(sources)
        # Every plan of the run rests on main as the imports left it (and the publish
        # rebased them), and main does not move while the plans are proposed.
        self.base = self.git.head()
        self.approved = set(self.git.ls_tree("HEAD", PLAN_DIR)) if self.base else set()
        for item, assessment in assessed:
            app, pull = item.app, item.identity_pull
            result = self.check_app(item, assessment)
            results.append(result)
            imported = app in self.imported or pull.source in self.identity_commits
            if self.by_pull_request and imported and not result.app_error:
                # Main does not hold the snapshots just pulled: a plan computed from them
                # would rest on a commit of the import branch, never on main.
                waiting.append(len(results) - 1)
                continue
            if publish_error:
                forge_errors[app] = publish_error
                proposals[app] = f"FAILED: {publish_error}"
                continue
            try:
                proposals[app] = self.propose(result)
            except ReconcilerError as exc:
                # The forge failed for this app (a push refused, a permission missing, a
                # server down): the other apps are still proposed, and the run fails.
                forge_errors[app] = forge_failure(exc)
                proposals[app] = f"FAILED: {forge_errors[app]}"
        import_request, import_error = None, ""
        if self.by_pull_request:
            import_request, import_error = self.propose_imports()
            for index in waiting:
                result = results[index]
                note = waiting_note(import_request, import_error)
                proposals[result.app] = note
                results[index] = replace(result, plan=None, notes=(*result.notes, note))
        return CheckRun(
            apps=tuple(results),
            identity_pulls=tuple(pulls.values()),
            proposals=proposals,
            commits=tuple(self.commits),
            phases=self.phases.to_data(),
            pull_span=max(self._pull_ends, default=0.0) - min(self._pull_starts, default=0.0),
            forge_errors=forge_errors,
            import_request=import_request,
            import_error=import_error,
        )

    def publish(self, sources: Collection[str]) -> str:
        """Bring the run's imports to the forge's main (`Forge.publish`), before any plan
        is built on them; why that failed, or "". When other checks pushed main meanwhile
        the imports are rebased on theirs: the identity snapshots the apps are assessed
        with must be the ones main now holds."""
        head = self.git.head()
        try:
            with self.phases("commit"):
                rebased = self.forge.publish()
        except ReconcilerError as exc:
            return (
                f"main could not be pushed: {exc}; no plan was proposed (the imports are "
                "committed here); run the check again"
            )
        if not rebased or head is None:
            return ""
        changed = set(self.git.changed_paths(head, "HEAD"))
        moved = [s for s in sources if changed & set(snapshot.identity_paths(s))]
        if moved:
            return (
                f"another check imported identity source {', '.join(moved)} while this one "
                "ran; this check's imports are pushed on top of it, and no plan was "
                "proposed from identities main no longer holds. Run the check again"
            )
        if self.commits:
            ours = self.git.run("rev-list", "--first-parent", f"-{len(self.commits)}", "HEAD")
            self.commits = list(reversed(ours.split()))
        return ""

    def committed_identities(self, source: str) -> IdentityPull:
        """`--identities snapshot`: the identity snapshot main holds, as the check that
        committed it pulled it (a matrix's first job; its meta.yaml holds the counts the
        guards judge), instead of a pull of its own."""
        identities = snapshot.read_identities(self.root, source)
        if identities is None:
            error = (
                "no identity snapshot is committed; run `reconciler check --identities only` "
                "first (the check workflow's first job does)"
            )
            return IdentityPull(source, {}, PullState(source, error=error), pulled=False)
        meta = snapshot.read_meta(snapshot.identities_meta_file(self.root, source)) or {}
        state = PullState.recorded(source, meta)
        return IdentityPull(source, identities, state, pulled=False)

    def propose_imports(self) -> tuple[ImportProposal | None, str]:
        """Move this run's imports from main to IMPORT_BRANCH and propose them; or close
        the import pull request when there is nothing to import. The outcome, or why it
        failed."""
        head = self.git.head()
        try:
            if head is None or head == self.start:
                self.forge.close_imports()
                return None, ""
            with self.phases("commit"):
                return self.forge.propose_imports(head, self.imports), ""
        except ReconcilerError as exc:
            return None, (
                f"the imports could not be proposed on {IMPORT_BRANCH}: {exc}; nothing was "
                "pushed to main; fix that and run the check again"
            )

    def connect(self, system: SystemConfig) -> tuple[Connector | None, str]:
        """The system's connector, or why it could not be built (without the name)."""
        try:
            return self.factory(system), ""
        except ReconcilerError as exc:
            return None, str(exc).removeprefix(f"{system.name}: ")

    # --- identities ---------------------------------------------------------------------

    def pull_identities(self, source: str) -> IdentityPull:
        phase = self.phases
        with phase("read_previous"):
            previous = snapshot.read_identities(self.root, source)
        previous_count = (
            sum(1 for line in previous.lines.values() if b'"status":"missing"' not in line)
            if previous is not None
            else None
        )
        with phase("pull"):
            identities: list[Identity] = []
            connector, error = self.connect(self.settings.config.identity_sources[source])
            if connector is not None:
                identities, error = pull_identities(connector, source, self.progress)
        state = PullState(source, error=error, count=len(identities), previous_count=previous_count)
        if error or not identities:
            # Keep the last good snapshot; a failed or empty pull changes nothing on disk.
            return IdentityPull(source, previous or {}, state)
        with phase("diff"):
            merged = merge_tombstones(previous, identities)
            before = previous or snapshot.identity_records(())
            summary = identity_summary(source, before, merged)
            message = changeindex.with_index(summary, identity_index(before, merged))
        with phase("write"):
            changed = snapshot.write_identities(self.root, source, merged)
            meta_file = snapshot.identities_meta_file(self.root, source)
            if changed or previous is None:
                meta = snapshot.Meta(
                    name=source,
                    kind="identities",
                    pulled_at=timestamp(self.now),
                    count=len(identities),
                    digest=self.identities_digest(source),
                    previous_count=previous_count,
                )
                snapshot.write_meta(meta_file, meta)
            # The guards read the pull that made the snapshot from its meta.yaml, as apply
            # does at the plan's base commit: both must see the same facts.
            state = PullState.recorded(source, snapshot.read_meta(meta_file) or {})
        message = message if changed or previous is None else ""
        if message:
            self.stage(snapshot.identity_paths(source))
        return IdentityPull(source, merged, state, summary=summary, message=message)

    # --- apps ---------------------------------------------------------------------------

    def import_app(self, app: str, identity_pull: IdentityPull, pulled: AppPull) -> Imported:
        """The app's pull (`pulled`, from the edge) checked against the last snapshot,
        diffed and written; committed later with the other apps' (`commit_imports`)."""
        policy = self.settings.policy_for(app)
        with self.phases("read_previous"):
            previous = snapshot.read_accounts(self.root, app)
        accounts, roles, modes, error = pulled
        if not error and not accounts and previous:
            error = (
                f"the pull returned no accounts but the last snapshot has "
                f"{len(previous)}; an empty pull is never imported. Check the credentials "
                "and the app's filter"
            )
        if not error and previous is not None:
            error = app_shrink_block(app, len(previous), len(accounts), policy) or ""
        if error:
            failed = AppCheck(
                app=app,
                identity_source=identity_pull.source,
                app_error=error,
                blocked_reasons=(
                    f"pulling {app} failed: {error}; nothing was imported or proposed",
                ),
            )
            return Imported(app, identity_pull, failed=failed)
        with self.phases("diff"):
            current = snapshot.account_records(accounts)
            diff = diff_accounts(previous or {}, current)
        with self.phases("write"):
            changed = snapshot.save_app(self.root, app, current, roles, timestamp(self.now))
        message = ""
        if changed:
            self.stage(snapshot.app_paths(app))
            with self.phases("commit"):
                message = report.import_commit_message(app, diff)
        return Imported(app, identity_pull, current, diff, modes, message)

    def stage(self, paths: Sequence[str]) -> None:
        """Have git hash and compress a snapshot just written (`Git.stage`) in the git
        thread, on another core, while this one goes on; with whatever else was written
        since that thread last staged, in one `git add`. Only a head start: the commit
        (`commit_imports`) stages its paths again, cheaply, and fails if git does."""
        assert self._git_thread is not None
        with self._unstaged_lock:
            self._unstaged.extend(paths)
        self._git_thread.submit(self.stage_written)

    def stage_written(self) -> None:
        """In the git thread: stage what `stage` was given and no earlier call took."""
        with self._unstaged_lock:
            paths, self._unstaged = self._unstaged, []
        if paths:
            self.git.stage(paths)

    @contextmanager
    def committing(
        self, identity_pulls: Sequence[IdentityPull], imported: Sequence[Imported]
    ) -> Iterator[None]:
        """The imports committed (`commit_imports`) in the git thread, after what it was
        asked to `stage`, while the body runs: git writes the commits while the apps are
        assessed. Reading history waits for them (`history_ready`). The `commit` phase is
        the time spent waiting for them at the end."""
        assert self._git_thread is not None
        self._committing = self._git_thread.submit(self.commit_imports, identity_pulls, imported)
        try:
            yield
            with self.phases("commit"):
                self._committing.result()
        finally:
            self._committing = None

    def history_ready(self) -> None:
        """Wait until this run's imports are committed: history read before would miss
        them."""
        if self._committing is not None:
            self._committing.result()

    def commit_imports(
        self, identity_pulls: Sequence[IdentityPull], imported: Sequence[Imported]
    ) -> None:
        """One commit per identity source, then per app, whose snapshot changed, in the
        order they were checked, all written at once (`Git.commit_series`)."""
        sources = [pull for pull in identity_pulls if pull.message]
        changed = [item for item in imported if item.message]
        series = [(snapshot.identity_paths(pull.source), pull.message) for pull in sources]
        series += [(snapshot.app_paths(item.app), item.message) for item in changed]
        if not series:
            return
        commits = self.git.commit_series(series)
        for pull, commit in zip(sources, commits[: len(sources)], strict=True):
            if commit:
                self.commits.append(commit)
                self.imports.append(pull.summary)
                self.identity_commits[pull.source] = commit
        for item, commit in zip(changed, commits[len(sources) :], strict=True):
            if commit:
                self.commits.append(commit)
                # People read these in the import pull request: no index there.
                self.imports.append(changeindex.without_index(item.message))
                self.imported.add(item.app)

    def assess_app(self, imported: Imported) -> Assessment | None:
        """The assessment of an imported app (None when its pull failed): pure, but for
        the history it may read, once the imports are committed."""
        if imported.failed is not None:
            return None
        app, identity_pull = imported.app, imported.identity_pull
        policy, source = self.settings.policy_for(app), identity_pull.source

        def gone_since(people: Collection[str]) -> Mapping[str, datetime]:
            self.history_ready()
            return self.gone_since(source, people)

        def disabled_since(ids: Collection[str]) -> Mapping[str, datetime]:
            self.history_ready()
            return disabled.disabled_since(self.git, app, ids)

        with self.phases("policy"):
            return assess(
                app,
                imported.current,
                identity_pull.identities,
                identity_pull.state,
                policy,
                imported.modes,
                self.now,
                gone_since,
                disabled_since,
                self.matcher(identity_pull, policy),
            )

    def check_app(self, imported: Imported, assessment: Assessment | None) -> AppCheck:
        """An imported app's check from its assessment (`assess_app`), with its plan."""
        if assessment is None:
            assert imported.failed is not None
            return imported.failed
        app, identity_pull = imported.app, imported.identity_pull
        policy = self.settings.policy_for(app)
        current, diff = imported.current, imported.diff
        untrusted = identity_blocks(identity_pull.state, policy)
        plan = None
        if not untrusted and (assessment.actions or assessment.blocked_reasons):
            plan = self.build_plan(app, policy.source_file, identity_pull.source, assessment)
            if plan.status == "blocked" and plan.id in policy.guards.allow_blocked_plans:
                plan = replace(plan, status="open")
        evaluation = assessment.evaluation
        gone: Mapping[str, datetime] = {}
        if plan is not None and policy.deadline is not None:
            ids = {a.identity_id for a in plan.active_actions if a.identity_id}
            with self.phases("policy"):
                gone = self.gone_since(identity_pull.source, ids)
        return AppCheck(
            app=app,
            identity_source=identity_pull.source,
            diff=diff,
            plan=plan,
            unmatched=evaluation.unmatched,
            ambiguous=evaluation.ambiguous,
            protected=evaluation.protected,
            excepted=evaluation.excepted,
            waiting=evaluation.waiting,
            conflicts=assessment.conflicts,
            blocked_reasons=tuple(untrusted) or assessment.blocked_reasons,
            account_count=len(current),
            seat_cost=policy.seat_cost_for(app),
            deadline=policy.deadline,
            grace=policy.grace,
            checked_at=self.now,
            gone_since=gone,
        )

    def matcher(self, pull: IdentityPull, policy: Policy) -> Matcher:
        """The identities of `pull` indexed for `policy`'s match rules, once per run for
        every app that links the same way."""
        key = (pull.source, policy.match, tuple(sorted(policy.domain_aliases.items())))
        found = self._matchers.get(key)
        if found is None:
            found = Matcher(pull.identities.values(), policy.match, policy.domain_aliases)
            self._matchers[key] = found
        return found

    def gone_since(self, source: str, identity_ids: Collection[str]) -> dict[str, datetime]:
        """Since when each of `identity_ids` has been gone from `source` (`gone.gone_since`),
        each read from the history once per run: the grace and the deadline ask for the
        same people, and every app of the source for its own share of them (the identity
        imports are committed before any app is checked)."""
        known = self._gone.setdefault(source, {})
        missing = set(identity_ids) - known.keys()
        if missing:
            found = gone.gone_since(self.git, source, missing)
            known.update({identity_id: found.get(identity_id) for identity_id in missing})
        return {i: since for i in identity_ids if (since := known[i]) is not None}

    @contextmanager
    def pulls_ahead(self, apps: Sequence[str]) -> Iterator[Iterator[tuple[str, AppPull]]]:
        """Each app's pull, in order, while the next ones run: at most
        `defaults.pull_concurrency` pulls at once, so a check waits about as long as its
        slowest app's pull, not the sum of them. The first pulls start on entering, so
        that they run while the identity sources are pulled too. Only pulls overlap; what
        follows (diff, commit, plan) runs one app at a time in this thread. The `pull`
        phase is the time spent waiting for them."""
        width = self.settings.config.pull_concurrency
        queue = iter(apps)
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="pull") as pool:
            pending = deque((app, pool.submit(self.pull_app, app)) for app in islice(queue, width))

            def in_order() -> Iterator[tuple[str, AppPull]]:
                while pending:
                    app, future = pending.popleft()
                    with self.phases("pull"):
                        pulled = future.result()
                    following = next(queue, None)
                    if following is not None:
                        pending.append((following, pool.submit(self.pull_app, following)))
                    yield app, pulled

            try:
                yield in_order()
            finally:
                for _, future in pending:
                    future.cancel()

    def pull_app(self, app: str) -> AppPull:
        """The app's accounts, roles and modes, or why the pull cannot be trusted. Runs in
        a worker thread (`pulls_ahead`): it touches nothing but the app's own system."""
        self._pull_starts.append(time.perf_counter())
        accounts: list[Account] = []
        roles: list[Role] = []
        modes: frozenset[Mode] = frozenset()
        connector, error = self.connect(self.settings.config.apps[app])
        if connector is not None:
            try:
                task = self.progress.task(f"pulling accounts from {app}")
                counted(connector, task)
                accounts, error = collect_records(app, connector.pull_accounts, "account", task)
                if not error:
                    roles, error = collect(app, connector.pull_roles)
                modes = connector.modes
            finally:
                connector.close()
        self._pull_ends.append(time.perf_counter())
        return AppPull(accounts, roles, modes, error)

    def build_plan(self, app: str, policy_file: str, source: str, assessment: Assessment) -> Plan:
        # With pull-request imports a plan is only built for an app whose snapshots are
        # unchanged since the start, and main's head may be an earlier app's import.
        head = (self.start if self.by_pull_request else self.base) or ""
        policy_bytes = (self.root / policy_file).read_bytes()
        return new_plan(
            app,
            assessment.actions,
            assessment.blocked_reasons,
            created_at=timestamp(self.now),
            base_commit=head,
            snapshot_digests={
                f"apps/{app}": snapshot.accounts_digest(self.root, app),
                f"identities/{source}": self.identities_digest(source),
            },
            policy_digest=hashlib.sha256(policy_bytes).hexdigest(),
        )

    def identities_digest(self, source: str) -> str:
        """The identity snapshot's digest, read once it is written: it does not change
        after the identity pull (`publish` fails the run's plans if a rebase brought
        another in), however many apps' plans and the meta.yaml name it."""
        if source not in self._identity_digests:
            self._identity_digests[source] = snapshot.identities_digest(self.root, source)
        return self._identity_digests[source]

    def templates_dir(self) -> Path | None:
        """An access repo may override the report template in its own templates/."""
        directory = self.root / "templates"
        return directory if (directory / "report.md.j2").exists() else None

    # --- forge --------------------------------------------------------------------------

    def propose(self, result: AppCheck) -> str:
        if plan_path(result.app) in self.approved:
            # An approved plan is on main and not applied yet: apply re-verifies it live.
            return "approved plan waiting for `reconciler apply`; not proposing another"
        if result.plan is None:
            if result.app_error or result.blocked_reasons:
                return "left as it was (the check could not be trusted)"
            return "closed" if self.forge.close(result.app) else "nothing to propose"
        proposed = self.forge.plan_of(result.app)
        if proposed is not None and proposed.id == result.plan.id:
            return Proposal.UNCHANGED.value
        with self.phases("report"):
            plan_yaml = plan_text(result.plan)
            report_md = report.render_report(result, templates_dir=self.templates_dir())
        with self.phases("commit"):
            outcome = self.forge.propose(result.plan, plan_yaml, report_md)
        return outcome.value
