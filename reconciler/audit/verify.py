"""`reconciler audit verify`: the integrity of main's history, from the repository alone.

Walking main's first parents, oldest first, it holds every commit to the rules that
apply and check rely on (DESIGN §9, docs/safety.md):

- a plan reaches main only through an approved merge that changes nothing but the plan
  and its report, and leaves main only with the apply that finished it (or a revert of
  its approval);
- every journal in `history/` belongs to such an approval, names its plan, and records
  no account the plan did not hold and no mode wider than the plan's;
- every snapshot in `state/` is what the tool wrote: the digest in its meta file matches
  the data files at that commit, recomputed with `reconciler.snapshot` from the blob
  ids in the commit's tree, so no data file is read.

Only commits that touch `plans/`, `history/` or `state/` are read, trees are compared
by hash so that unchanged directories are skipped, and a digest is recomputed only for
a snapshot that changed. GitPython reads commits, trees and the small files (plans,
journals, meta files) through one long-lived `git cat-file` process. A digest recorded
by an earlier release (`snapshot.legacy_digest`, over the files' bytes) is still
checked, by reading those files. No network: for the github forge, what git holds is
verified (the merge changed only the plan; a journal names it as its approval), not
the reviews on GitHub.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import git as gitpython

from reconciler import snapshot, yamlio
from reconciler.errors import ApprovalError, GitError, PlanError, ReconcilerError
from reconciler.forge.local import parse_approvers, require_plan_only
from reconciler.git import Commit, Git
from reconciler.history import FINAL, Entry
from reconciler.plan import Plan, widens
from reconciler.planfile import PLAN_DIR, parse_plan, plan_path

HISTORY_DIR = "history"
WATCHED = (PLAN_DIR, HISTORY_DIR, snapshot.STATE_DIR)

_PLAN_FILE = re.compile(rf"{PLAN_DIR}/([^/]+)\.(yaml|md)")
_JOURNAL_FILE = re.compile(rf"{HISTORY_DIR}/([^/]+)/([^/]+)\.yaml")
_APP_FILE = re.compile(
    r"state/apps/([^/]+)/(accounts\.yaml|accounts/[0-9a-f]{2}\.yaml|roles\.yaml|meta\.yaml)"
)
_IDENTITY_FILE = re.compile(r"state/identities/([^/]+?)(\.meta)?\.yaml")
_REVERTS = re.compile(r"This reverts commit ([0-9a-f]{40})")

RESTORE = "restore it with `reconciler check`, which pulls the snapshot again"


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one file in one commit, and what to do about it."""

    commit: str  # the full sha of the commit on main
    author: str  # "Name <email>" of that commit's author
    path: str
    problem: str
    fix: str

    def to_data(self) -> dict[str, str]:
        return {
            "commit": self.commit,
            "author": self.author,
            "file": self.path,
            "problem": self.problem,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Checked:
    """What was verified: commits read, plan changes, journal versions, snapshot digests."""

    commits: int = 0
    plans: int = 0
    journals: int = 0
    snapshots: int = 0


@dataclass(frozen=True)
class Verification:
    branch: str
    since: str | None
    checked: Checked
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass(frozen=True)
class Change:
    """A file that differs from the first parent: its blob before and after (None: absent)."""

    path: str
    old: gitpython.Blob | None
    new: gitpython.Blob | None


@dataclass(frozen=True)
class Approved:
    """A commit on main that brought an app's plan there, and whether it is an approval."""

    sha: str
    app: str
    plan: Plan | None
    approvers: tuple[str, ...]
    problem: str = ""  # empty when it is a valid approval


@dataclass
class _Counts:
    commits: int = 0
    plans: int = 0
    journals: int = 0
    snapshots: int = 0
    findings: list[Finding] = field(default_factory=list)


# --- reading git ---------------------------------------------------------------------


def _items(tree: gitpython.Tree | None) -> dict[str, Any]:
    return {item.name: item for item in tree} if tree is not None else {}


def _diff(old: gitpython.Tree | None, new: gitpython.Tree | None, prefix: str) -> Iterator[Change]:
    """Files that differ between two trees; subtrees with the same hash are skipped."""
    before, after = _items(old), _items(new)
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a is not None and b is not None and a.binsha == b.binsha:
            continue
        path = f"{prefix}/{name}"
        a_tree = a if a is not None and a.type == "tree" else None
        b_tree = b if b is not None and b.type == "tree" else None
        if a_tree is not None or b_tree is not None:
            yield from _diff(a_tree, b_tree, path)
        a_blob = a if a is not None and a.type == "blob" else None
        b_blob = b if b is not None and b.type == "blob" else None
        if a_blob is not None or b_blob is not None:
            yield Change(path, a_blob, b_blob)


def _subtree(tree: gitpython.Tree | None, path: str) -> gitpython.Tree | None:
    if tree is None:
        return None
    try:
        item = tree.join(path)
    except KeyError:
        return None
    return item if item.type == "tree" else None


def _blob(tree: gitpython.Tree, path: str) -> gitpython.Blob | None:
    try:
        item = tree.join(path)
    except KeyError:
        return None
    return item if item.type == "blob" else None


def _files(tree: gitpython.Tree, prefix: str) -> Iterator[tuple[str, gitpython.Blob]]:
    for name, item in _items(tree).items():
        if item.type == "tree":
            yield from _files(item, f"{prefix}/{name}")
        elif item.type == "blob":
            yield f"{prefix}/{name}", item


def _read(blob: gitpython.Blob) -> bytes:
    data: bytes = blob.data_stream.read()
    return data


def changes_of(commit: gitpython.Commit) -> dict[str, Change]:
    """The files under plans/, history/ and state/ that the commit changed against its
    first parent (all of them for a root commit)."""
    parent = commit.parents[0].tree if commit.parents else None
    found: dict[str, Change] = {}
    for top in WATCHED:
        for change in _diff(_subtree(parent, top), _subtree(commit.tree, top), top):
            found[change.path] = change
    return found


def author_of(commit: gitpython.Commit) -> str:
    return f"{commit.author.name} <{commit.author.email}>"


# --- the rules -----------------------------------------------------------------------


def journal_beyond_plan(entries: Sequence[Entry], plan: Plan) -> list[str]:
    """What a journal records beyond the plan it belongs to: an account the plan did not
    hold, a mode wider than the plan's, an account acted on that reviewers skipped.

    The journal's side of `plan.check_subset`: reviewers may narrow a plan, and apply may
    only act within what they approved."""
    planned = {a.account_id: a for a in plan.actions}
    problems = []
    seen: set[str] = set()
    for entry in entries:
        who = entry.username or entry.email
        label = f"account {entry.account_id}" + (f" ({who})" if who else "")
        if entry.account_id in seen:
            problems.append(f"{label} is recorded twice")
            continue
        seen.add(entry.account_id)
        action = planned.get(entry.account_id)
        if action is None:
            problems.append(f"{label} is not in plan {plan.id}")
            continue
        if widens(entry.mode, action.mode):
            problems.append(
                f"{label} is recorded with mode {entry.mode}, wider than {action.mode} "
                f"in plan {plan.id}"
            )
        if action.skip and entry.outcome == "done":
            problems.append(f"{label} is recorded done; reviewers marked it `skip: true`")
    return problems


class Verifier:
    """One walk of main's history; `run` returns what it found."""

    def __init__(self, root: Path, main: str = "main", forge: str = "local") -> None:
        self.git = Git.open(root)
        self.repo = self.git.history()
        self.main = main
        self.forge = forge
        self.counts = _Counts()
        self._approvals: dict[tuple[str, str], Approved] = {}
        self._chain: dict[str, int] | None = None
        self._plans: dict[str, Plan | None] = {}

    # --- the walk ----------------------------------------------------------------------

    def run(self, since: str | None = None) -> Verification:
        if (
            self.repo.git.rev_parse(
                "--verify", "-q", f"{self.main}^{{commit}}", with_exceptions=False
            )
            == ""
        ):
            raise GitError(f"branch {self.main!r} does not exist in {self.repo.working_dir}")
        rev = self.main
        if since is not None:
            sha = self._resolve(since)
            if sha is None:
                raise GitError(
                    f"--since {since!r} names no commit; give a commit or tag of {self.main}"
                )
            rev = f"{sha}..{self.main}"
        commits = list(self.repo.iter_commits(rev, first_parent=True, paths=list(WATCHED)))
        commits.reverse()
        for commit in commits:
            self.counts.commits += 1
            changes = changes_of(commit)
            self.check_plans(commit, changes)
            self.check_journals(commit, changes)
            self.check_snapshots(commit, changes)
        if self.forge == "github":
            self.check_github_approvals(commits)
        counts = self.counts
        return Verification(
            branch=self.main,
            since=since,
            checked=Checked(counts.commits, counts.plans, counts.journals, counts.snapshots),
            findings=tuple(counts.findings),
        )

    def find(self, commit: gitpython.Commit, path: str, problem: str, fix: str) -> None:
        self.counts.findings.append(Finding(commit.hexsha, author_of(commit), path, problem, fix))

    def _resolve(self, rev: str) -> str | None:
        try:
            return str(self.repo.commit(rev).hexsha)
        except (gitpython.BadName, gitpython.BadObject, ValueError, gitpython.GitCommandError):
            return None

    def chain(self) -> dict[str, int]:
        """main's first-parent commits, each with its position (0 is the oldest)."""
        if self._chain is None:
            shas = self.repo.git.rev_list("--first-parent", "--reverse", self.main).split()
            self._chain = {sha: i for i, sha in enumerate(shas)}
        return self._chain

    # --- plans -------------------------------------------------------------------------

    def check_plans(self, commit: gitpython.Commit, changes: Mapping[str, Change]) -> None:
        apps: set[str] = set()
        for path in changes:
            if not path.startswith(f"{PLAN_DIR}/"):
                continue
            match = _PLAN_FILE.fullmatch(path)
            if match is None:
                self.find(
                    commit,
                    path,
                    f"{PLAN_DIR}/ holds a file that is neither a plan nor its report",
                    f"move it out of {PLAN_DIR}/, which only `reconciler check` writes",
                )
                continue
            apps.add(match.group(1))
        for app in sorted(apps):
            self.counts.plans += 1
            change = changes.get(plan_path(app))
            if change is not None and change.new is not None:
                approved = self.approval(commit, app)
                if approved.problem:
                    self.find(
                        commit, plan_path(app), approved.problem, self._unapproved_fix(commit)
                    )
            elif change is not None:
                assert change.old is not None
                self.check_removal(commit, app, change.old)
            else:
                self.find(
                    commit,
                    f"{PLAN_DIR}/{app}.md",
                    "the plan's report changed on main without its plan: only an approved "
                    "merge brings a report, and only the apply that finishes it removes it",
                    f"revert the commit (`git revert {commit.hexsha[:10]}`)",
                )

    def _unapproved_fix(self, commit: gitpython.Commit) -> str:
        revert = "git revert -m 1" if len(commit.parents) > 1 else "git revert"
        return (
            f"revert it (`{revert} {commit.hexsha[:10]}`) and propose the plan again with "
            "`reconciler check`, for review"
        )

    def plan_at(self, commit: gitpython.Commit, app: str) -> Plan | None:
        """The app's plan as the commit holds it; PlanError if it is not a valid plan."""
        key = f"{commit.hexsha}:{app}"
        if key not in self._plans:
            blob = _blob(commit.tree, plan_path(app))
            plan = None
            if blob is not None:
                plan = parse_plan(_read(blob), f"{plan_path(app)} at {commit.hexsha[:10]}")
                if plan.app != app:
                    raise PlanError(f"{plan_path(app)} is a plan for app {plan.app!r}")
            self._plans[key] = plan
        return self._plans[key]

    def approval(self, commit: gitpython.Commit, app: str) -> Approved:
        """Whether the commit, which brought plans/<app>.yaml to main, is an approval."""
        key = (commit.hexsha, app)
        if key not in self._approvals:
            self._approvals[key] = self._judge(commit, app)
        return self._approvals[key]

    def _judge(self, commit: gitpython.Commit, app: str) -> Approved:
        approvers = tuple(parse_approvers(str(commit.message)))
        try:
            plan = self.plan_at(commit, app)
        except ReconcilerError as exc:
            return Approved(commit.hexsha, app, None, approvers, f"the plan is not valid: {exc}")
        path = plan_path(app)
        problem = ""
        if self.forge == "github":
            if not commit.parents:
                problem = f"{path} is in the first commit of {self.main}, not in a merge"
        elif len(commit.parents) != 2:
            problem = (
                f"{path} was changed on {self.main} by a commit that is not a merge: the plan "
                "did not come through an approval"
            )
        elif not approvers:
            problem = f"the merge that brought {path} to {self.main} has no Approved-by: trailers"
        if not problem:
            ours = Commit(
                commit.hexsha,
                tuple(p.hexsha for p in commit.parents),
                author_of(commit),
                str(commit.message),
            )
            try:
                require_plan_only(self.git, app, ours, f"the merge {commit.hexsha[:10]}")
            except ApprovalError as exc:
                problem = str(exc).split(". Revert")[0]
        return Approved(commit.hexsha, app, plan, approvers, problem)

    def approval_before(self, commit: gitpython.Commit, app: str) -> gitpython.Commit | None:
        """The last commit before `commit` on main's first parents that changed the plan."""
        if not commit.parents:
            return None
        found = self.repo.iter_commits(
            commit.parents[0], first_parent=True, paths=[plan_path(app)], max_count=1
        )
        return next(iter(found), None)

    def check_removal(self, commit: gitpython.Commit, app: str, old: gitpython.Blob) -> None:
        """A plan leaves main with the apply that finished it, or a revert of its approval."""
        path = plan_path(app)
        arrival = self.approval_before(commit, app)
        try:
            plan = parse_plan(_read(old), f"{path} before {commit.hexsha[:10]}")
        except PlanError:
            return  # the commit that brought it is named already
        if arrival is None:
            return
        reverted = _REVERTS.search(str(commit.message))
        if reverted and reverted.group(1) == arrival.hexsha and len(commit.parents) == 1:
            return  # the approval withdrawn: nothing was acted on by this commit
        journal_path, journal = self.journal_of(commit, app, plan.id, arrival.hexsha)
        if journal is None:
            self.find(
                commit,
                path,
                f"plan {plan.id} (approved in {arrival.hexsha[:10]}) left {self.main} "
                "without a journal of its apply",
                "restore the plan (`git revert` this commit) and run `reconciler apply`; "
                f"to withdraw the approval instead, `git revert -m 1 {arrival.hexsha[:10]}`",
            )
            return
        try:
            entries = _entries(journal)
        except (KeyError, TypeError, AttributeError):
            return  # the commit that wrote the malformed journal is named already
        recorded = {e.account_id for e in entries}
        open_ = [e.account_id for e in entries if e.outcome not in FINAL]
        missing = [a.account_id for a in plan.actions if a.account_id not in recorded]
        if open_ or missing or not journal.get("finished_at"):
            what = []
            if open_:
                what.append(f"not final for {', '.join(open_)}")
            if missing:
                what.append(f"no entry for {', '.join(missing)}")
            detail = "; ".join(what) or "it has no finished_at"
            self.find(
                commit,
                path,
                f"plan {plan.id} left {self.main} before its apply finished ({journal_path}: "
                f"{detail})",
                "restore the plan (`git revert` this commit) and run `reconciler apply` "
                "until every action is done or skipped",
            )

    def journal_of(
        self, commit: gitpython.Commit, app: str, plan_id: str, approval: str
    ) -> tuple[str, Mapping[str, Any] | None]:
        directory = _subtree(commit.tree, f"{HISTORY_DIR}/{app}")
        suffix = f"-{plan_id}-{approval[:12]}.yaml"
        for item in _items(directory).values():
            if item.type == "blob" and item.name.endswith(suffix):
                path = f"{HISTORY_DIR}/{app}/{item.name}"
                try:
                    data = yamlio.load_bytes(_read(item), path)
                except ReconcilerError:
                    return path, None
                return path, data if isinstance(data, dict) else None
        return "", None

    # --- journals ----------------------------------------------------------------------

    def check_journals(self, commit: gitpython.Commit, changes: Mapping[str, Change]) -> None:
        for path, change in changes.items():
            if not path.startswith(f"{HISTORY_DIR}/"):
                continue
            self.counts.journals += 1
            if change.new is None:
                self.find(
                    commit,
                    path,
                    "a journal was deleted; journals are the record of what apply did",
                    f"restore it (`git checkout {commit.hexsha[:10]}^ -- {path}`) and commit",
                )
                continue
            match = _JOURNAL_FILE.fullmatch(path)
            if match is None:
                self.find(
                    commit,
                    path,
                    f"{HISTORY_DIR}/ holds a file that is not a journal "
                    f"({HISTORY_DIR}/<app>/<date>-<plan>-<approval>.yaml)",
                    f"move it out of {HISTORY_DIR}/, which only `reconciler apply` writes",
                )
                continue
            for problem in self.journal_problems(commit, match.group(1), path, change.new):
                self.find(
                    commit,
                    path,
                    problem,
                    f"revert the commit (`git revert {commit.hexsha[:10]}`); only "
                    "`reconciler apply` writes journals",
                )

    def journal_problems(
        self, commit: gitpython.Commit, app: str, path: str, blob: gitpython.Blob
    ) -> list[str]:
        try:
            data = yamlio.load_bytes(_read(blob), path)
        except ReconcilerError as exc:
            return [f"the journal is not valid YAML: {exc}"]
        if not isinstance(data, dict):
            return ["the journal is not a mapping"]
        approval, plan_id = data.get("approval_commit"), data.get("plan")
        if not isinstance(approval, str) or not isinstance(plan_id, str):
            return ["the journal names no approval_commit or no plan"]
        try:
            entries = _entries(data)
        except (KeyError, TypeError, AttributeError) as exc:
            return [f"an action entry is malformed ({exc})"]
        arrival = self._resolve(approval) if re.fullmatch(r"[0-9a-f]{40}", approval) else None
        chain = self.chain()
        if arrival is None or arrival not in chain:
            return [
                f"approval_commit {approval[:12]!r} is not a commit of {self.main}: the journal "
                "belongs to no approval"
            ]
        if chain[arrival] >= chain.get(commit.hexsha, len(chain)):
            return [f"approval_commit {approval[:10]} comes after the journal"]
        arrived = self.repo.commit(arrival)
        if plan_path(app) not in changes_of(arrived) or _blob(arrived.tree, plan_path(app)) is None:
            return [
                f"approval_commit {approval[:10]} did not bring {plan_path(app)} to "
                f"{self.main}: it is not an approval"
            ]
        approved = self.approval(arrived, app)
        if approved.problem or approved.plan is None:
            return [f"approval_commit {approval[:10]} is not an approval: {approved.problem}"]
        plan = approved.plan
        problems = []
        if plan_id != plan.id:
            problems.append(
                f"the journal is for plan {plan_id}, but {approval[:10]} approved plan {plan.id}"
            )
        if not PurePosixPath(path).name.endswith(f"-{plan_id}-{approval[:12]}.yaml"):
            problems.append("the file name does not name the journal's plan and approval")
        verified = data.get("approval_verified") or {}
        if not isinstance(verified, dict):
            verified = {}
        if verified.get("merge_commit") not in (None, approval):
            problems.append("approval_verified names another merge commit than approval_commit")
        if self.forge == "github":
            if verified.get("forge") != "github" or not verified.get("pull_request"):
                problems.append("approval_verified records no pull request of the github forge")
        else:
            named = data.get("approved_by") or []
            names = named if isinstance(named, list) else [named]
            extra = [n for n in names if n not in approved.approvers]
            if extra:
                problems.append(
                    f"approved_by names {', '.join(map(str, extra))}, who are not in the "
                    f"Approved-by: trailers of {approval[:10]}"
                )
        problems += [
            f"{p}: apply acted beyond the approval" for p in journal_beyond_plan(entries, plan)
        ]
        return problems

    def check_github_approvals(self, commits: Sequence[gitpython.Commit]) -> None:
        """Without the network: each merge that brought a plan is named by a journal whose
        approval_verified records its pull request, unless it still waits for apply."""
        walked = {c.hexsha for c in commits}
        tip = self.repo.commit(self.main)
        named: set[str] = set()
        history = _subtree(tip.tree, HISTORY_DIR)
        for directory in _items(history).values():
            if directory.type != "tree":
                continue
            for item in _items(directory).values():
                if item.type != "blob":
                    continue
                try:
                    data = yamlio.load_bytes(_read(item), item.path)
                except ReconcilerError:
                    continue
                if isinstance(data, dict) and (data.get("approval_verified") or {}).get(
                    "pull_request"
                ):
                    named.add(str(data.get("approval_commit")))
        for (sha, app), approved in self._approvals.items():
            if approved.problem or sha in named:
                continue
            waiting = self.approval_before(tip, app)
            if (
                _blob(tip.tree, plan_path(app)) is not None
                and waiting is not None
                and waiting.hexsha == sha
            ):
                continue
            if sha not in walked:
                continue
            commit = self.repo.commit(sha)
            self.find(
                commit,
                plan_path(app),
                "no journal names this merge as the approval of a pull request",
                "find the pull request that merged it; if there is none, revert the merge",
            )

    # --- snapshots ---------------------------------------------------------------------

    def check_snapshots(self, commit: gitpython.Commit, changes: Mapping[str, Change]) -> None:
        apps: dict[str, list[Change]] = {}
        sources: dict[str, list[Change]] = {}
        for path, change in changes.items():
            if not path.startswith(f"{snapshot.STATE_DIR}/"):
                continue
            app_match = _APP_FILE.fullmatch(path)
            source_match = _IDENTITY_FILE.fullmatch(path)
            if app_match:
                apps.setdefault(app_match.group(1), []).append(change)
            elif source_match:
                sources.setdefault(source_match.group(1), []).append(change)
            elif change.new is not None:
                self.find(
                    commit,
                    path,
                    "a file reconciler never writes was added to state/",
                    f"remove it (`git rm {path}`); state/ holds only snapshots",
                )
        for app, app_changes in sorted(apps.items()):
            self.check_app_snapshot(commit, app, app_changes)
        for source, source_changes in sorted(sources.items()):
            self.check_identity_snapshot(commit, source, source_changes)

    def check_app_snapshot(
        self, commit: gitpython.Commit, app: str, changes: Sequence[Change]
    ) -> None:
        directory = f"{snapshot.STATE_DIR}/apps/{app}"
        tree = _subtree(commit.tree, directory)
        if tree is None:
            return  # the app's snapshot was removed with the app
        meta_path = f"{directory}/meta.yaml"
        data_changes = [
            c.path for c in changes if not c.path.endswith(("/meta.yaml", "/roles.yaml"))
        ]
        meta_changed = any(c.path == meta_path for c in changes)
        roles_changed = any(c.path.endswith("/roles.yaml") for c in changes)
        shown = data_changes[0] if data_changes else meta_path
        files = {path.removeprefix(f"{directory}/"): blob for path, blob in _files(tree, directory)}
        try:
            names = snapshot.account_files(files.keys(), directory)
        except ReconcilerError as exc:
            self.find(commit, shown, f"the snapshot is not one reconciler writes: {exc}", RESTORE)
            return
        self.counts.snapshots += 1
        recorded = self._recorded_digest(commit, meta_path)
        actual = _digest(recorded, [(name, files[name]) for name in names])
        if recorded != actual:
            problem = _digest_problem(shown, meta_path, recorded, actual, meta_changed)
            self.find(commit, shown, problem, _hand_edit_fix(commit))
        elif roles_changed and not meta_changed:
            self.find(
                commit,
                f"{directory}/roles.yaml",
                f"roles.yaml changed without {meta_path}: the snapshot was edited by hand",
                _hand_edit_fix(commit),
            )

    def check_identity_snapshot(
        self, commit: gitpython.Commit, source: str, changes: Sequence[Change]
    ) -> None:
        directory = f"{snapshot.STATE_DIR}/identities"
        data_path = f"{directory}/{source}.yaml"
        meta_path = f"{directory}/{source}.meta.yaml"
        blob = _blob(commit.tree, data_path)
        if blob is None and _blob(commit.tree, meta_path) is None:
            return  # the source was removed
        meta_changed = any(c.path == meta_path for c in changes)
        shown = data_path if any(c.path == data_path for c in changes) else meta_path
        self.counts.snapshots += 1
        recorded = self._recorded_digest(commit, meta_path)
        actual = _digest(recorded, [(f"{source}.yaml", blob)] if blob is not None else [])
        if recorded != actual:
            problem = _digest_problem(shown, meta_path, recorded, actual, meta_changed)
            self.find(commit, shown, problem, _hand_edit_fix(commit))

    def _recorded_digest(self, commit: gitpython.Commit, meta_path: str) -> str | None:
        blob = _blob(commit.tree, meta_path)
        if blob is None:
            return None
        try:
            data = yamlio.load_bytes(_read(blob), meta_path)
        except ReconcilerError:
            return None
        digest = data.get("digest") if isinstance(data, dict) else None
        return digest if isinstance(digest, str) else None


def _digest(recorded: str | None, files: Sequence[tuple[str, gitpython.Blob]]) -> str:
    """The snapshot digest of `files` (name in the snapshot, blob), in the format of the
    `recorded` one: from the blob ids in the tree, without reading the files, unless an
    earlier release recorded it over the files' bytes."""
    if recorded is not None and snapshot.is_legacy_digest(recorded):
        return snapshot.legacy_digest(_read(blob) for _, blob in files)
    if any(len(blob.hexsha) != 40 for _, blob in files):
        # A repository of another object format names blobs by another hash: the
        # digest is over git's SHA-1 ids, so compute them from the bytes.
        return snapshot.files_digest((name, _read(blob)) for name, blob in files)
    return snapshot.blobs_digest((name, blob.hexsha) for name, blob in files)


def _entries(journal: Mapping[str, Any]) -> list[Entry]:
    return [Entry.from_data(e) for e in journal.get("actions") or ()]


def _short(digest: str) -> str:
    """A digest as shown in a finding: its format's prefix, if any, and 12 hex digits."""
    prefix, _, value = digest.rpartition(":")
    return f"{prefix}:{value[:12]}" if prefix else value[:12]


def _digest_problem(
    shown: str, meta_path: str, recorded: str | None, actual: str, meta_changed: bool
) -> str:
    if recorded is None:
        return (
            f"{meta_path} is missing or records no digest: the snapshot was not written "
            "by reconciler"
        )
    if shown == meta_path:
        return (
            f"{meta_path} was edited: its digest {_short(recorded)} does not match the data "
            f"({_short(actual)})"
        )
    how = "" if meta_changed else f" without {meta_path}"
    return (
        f"the data changed{how} and no longer matches the digest recorded there "
        f"({_short(recorded)} recorded, {_short(actual)} now): the snapshot was edited by hand"
    )


def _hand_edit_fix(commit: gitpython.Commit) -> str:
    return (
        f"revert the commit (`git revert {commit.hexsha[:10]}`), or run `reconciler check` to "
        "pull the snapshot again; change accounts and identities in their systems, never "
        "in state/"
    )


def verify_history(
    root: Path, main: str = "main", forge: str = "local", since: str | None = None
) -> Verification:
    """Verify main's first-parent history in the repository at `root` (see module doc)."""
    return Verifier(root, main, forge).run(since)
