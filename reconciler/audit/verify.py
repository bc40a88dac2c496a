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

One `git log` gives every first-parent commit and the files it changed against its
first parent, with their blob ids; the walk keeps the blob id of every file under
`plans/`, `history/` and `state/` up to date from it, so no tree is read, and a digest
is recomputed only for a snapshot that changed. The small files it must read (plans,
journals, meta files) come from one `git cat-file --batch`. A digest recorded by an
earlier release (`snapshot.legacy_digest`, over the files' bytes) is still checked, by
reading those files. No network: for the github forge, what git holds is verified (the
merge changed only the plan; a journal names it as its approval), not the reviews on
GitHub.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import git as gitpython

from reconciler import parallel, snapshot, yamlio
from reconciler.errors import ApprovalError, GitError, PlanError, ReconcilerError
from reconciler.forge.local import parse_approvers, require_plan_only
from reconciler.git import Commit, Git, batch_contents
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
    """A file that differs from the first parent: its blob id before and after (None:
    absent, or not a file), and git's status letter (A, D, M, T)."""

    path: str
    old: str | None
    new: str | None
    status: str


@dataclass(frozen=True)
class Step:
    """A commit on main's first parents that touched plans/, history/ or state/."""

    sha: str
    parents: tuple[str, ...]
    # The files under those directories that it changed, in the order a walk of the
    # trees gives them.
    changes: Mapping[str, Change]
    # Every entry it changed against its first parent, anywhere in the tree.
    records: tuple[Record, ...]


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

# main's first parents, oldest first, each as `\x01<sha> <parents>` and then its changes
# against its first parent as raw records with full blob ids
# (`:<mode> <mode> <blob> <blob> <status>\0<path>\0`; -z, so no path is quoted). The
# header holds only hex: names and messages, which whoever committed chose, are read
# apart from it and cannot pass for a record.
WALK = (
    "log",
    "--first-parent",
    "-m",
    "--reverse",
    "--no-show-signature",
    "--format=%x01%H %P",
    "-r",
    "--raw",
    "-z",
    "--root",
    "--no-abbrev",
    "--no-renames",
)
_ABSENT = "000000"
_GITLINK = "160000"  # a submodule's commit: an entry, not a file


class Record(NamedTuple):
    """One raw diff record: a path, its mode and object id before and after."""

    path: str
    old_mode: str
    new_mode: str
    old: str
    new: str
    status: str

    def change(self) -> Change:
        old = None if self.old_mode in (_ABSENT, _GITLINK) else self.old
        new = None if self.new_mode in (_ABSENT, _GITLINK) else self.new
        return Change(self.path, old, new, self.status)


def parse_raw(out: bytes) -> list[tuple[list[str], list[Record]]]:
    """`git log --format=%x01… --raw -z` (or `git diff-tree --raw -z`) output: each
    commit's header fields (none for diff-tree) and its records, in git's order."""
    commits: list[tuple[list[str], list[Record]]] = []
    tokens = out.split(b"\0")
    at = 0
    while at < len(tokens):
        token = tokens[at].lstrip(b"\n")
        at += 1
        if token.startswith(b"\x01"):
            commits.append((token[1:].decode("ascii").split(), []))
        elif token.startswith(b":"):
            if not commits:
                commits.append(([], []))
            old_mode, new_mode, old, new, status = token[1:].decode("ascii").split(" ")
            # git's paths are bytes; as GitPython names tree entries, undecodable bytes
            # are kept as surrogates.
            path = tokens[at].decode("utf-8", "surrogateescape")
            at += 1
            commits[-1][1].append(Record(path, old_mode, new_mode, old, new, status))
        elif token:
            raise GitError(f"unexpected output from git: {token[:60]!r}")
    return commits


def _watched(path: str) -> bool:
    return path.partition("/")[0] in WATCHED


def _tree_order(path: str) -> list[tuple[str, int]]:
    # By name at each level, a directory's files before a file of the same name.
    *directories, name = path.split("/")
    return [(d, 0) for d in directories] + [(name, 1)]


def steps_of(out: bytes) -> list[Step]:
    """The commits of a `WALK` log that touched plans/, history/ or state/."""
    steps = []
    for header, records in parse_raw(out):
        if not any(_watched(r.path) for r in records):
            continue
        changes = sorted(
            (r.change() for r in records if _watched(r.path)),
            key=lambda c: _tree_order(c.path),
        )
        steps.append(
            Step(
                header[0],
                tuple(header[1:]),
                {c.path: c for c in changes if c.old != c.new},
                tuple(records),
            )
        )
    return steps


def read_blobs(git: Git, blobs: Iterable[str]) -> dict[str, bytes]:
    """The contents of `blobs` (ids), read by one `git cat-file --batch`; ids that name
    no blob are left out."""
    ids = list(dict.fromkeys(blobs))
    if not ids:
        return {}
    out = git.run_bytes("cat-file", "--batch", input="".join(f"{b}\n" for b in ids).encode())
    return batch_contents(out, ids)


class Files:
    """The entries under plans/, history/ and state/ at the commit the walk has reached,
    by directory: each commit's changes are applied in turn, so no tree is read."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, str]] = {}  # directory -> name -> blob id
        self._below: dict[str, int] = {}  # directory -> entries anywhere below it

    def put(self, path: str, mode: str, blob: str) -> None:
        directory, _, name = path.rpartition("/")
        entries = self.entries.setdefault(directory, {})
        had = name in entries
        if mode == _ABSENT:
            if had:
                del entries[name]
                self._count(directory, -1)
            return
        entries[name] = "" if mode == _GITLINK else blob
        if not had:
            self._count(directory, 1)

    def _count(self, directory: str, step: int) -> None:
        while directory:
            self._below[directory] = self._below.get(directory, 0) + step
            directory = directory.rpartition("/")[0]

    def blob(self, path: str) -> str | None:
        """The blob id of the file at `path`; None if there is no file there."""
        directory, _, name = path.rpartition("/")
        return self.entries.get(directory, {}).get(name) or None

    def blobs_in(self, directory: str) -> dict[str, str]:
        """The files directly in `directory`: name -> blob id."""
        return {n: b for n, b in self.entries.get(directory, {}).items() if b}

    def holds(self, directory: str) -> bool:
        """Whether `directory` exists: anything is below it."""
        return self._below.get(directory, 0) > 0


class _WalkedGit(Git):
    """The access repository, with what each walked commit changed against its first
    parent already known from the walk's log: `require_plan_only` holds every merge to
    the same rule as approve and apply without one more git process per merge."""

    def __init__(self, root: Path, steps: Mapping[str, Step]) -> None:
        super().__init__(root)
        self.steps = steps

    def changed_paths(self, old: str, new: str) -> list[str]:
        step = self.steps.get(new)
        if step is not None and step.parents[:1] == (old,):
            return [r.path for r in step.records]
        return super().changed_paths(old, new)


# The meta file as `snapshot.write_meta` writes it: comment lines and one `key: value`
# line per field, each key one the tool writes and only once, each value a plain word, a
# number or a single-quoted string with no quote in it, the digest `git-sha1:` and hex.
# The strict YAML reader gives such a file as a mapping whose `digest` is that text; any
# other file is left to the strict reader.
_META_KEYS = frozenset(b"app source kind pulled_at count digest pull_status previous_count".split())
_META_LINE = re.compile(
    rb"#[ -~]*|([a-z_]+): (?:'[ -&(-~]*'|[0-9]+|[A-Za-z][A-Za-z0-9_.-]*"
    rb"|(git-sha1:[0-9a-f]{64}))"
)


def plain_meta_digest(raw: bytes) -> str | None:
    """The digest of a meta file in the plain form the tool writes; None if the file is
    not in that form (then only the strict YAML reader can say what it holds)."""
    if not raw.endswith(b"\n") or len(raw) > yamlio.DEFAULT_MAX_BYTES:
        return None
    keys: set[bytes] = set()
    digest = None
    for line in raw[:-1].split(b"\n"):
        match = _META_LINE.fullmatch(line)
        if match is None:
            return None
        key = match.group(1)
        if key is None:
            continue  # a comment
        if key not in _META_KEYS or key in keys:
            return None
        keys.add(key)
        if key == b"digest":
            if match.group(2) is None:
                return None
            digest = match.group(2).decode("ascii")
    return digest


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
        self.since: str | None = None
        self.counts = _Counts()
        self.files = Files()
        self._steps: dict[str, Step] = {}
        self._position: dict[str, int] = {}  # walked commit -> its place in the walk
        self._plan_changes: dict[str, list[tuple[int, str]]] = {}  # app -> (place, sha)
        self._walked_git = _WalkedGit(self.git.root, self._steps)
        self._small: dict[str, bytes] = {}
        self._yaml: dict[str, Any] = {}  # blob id -> the YAML it holds
        self._plan_files: dict[str, Plan] = {}  # blob id -> the plan it holds
        self._digests: dict[str, str | None] = {}  # meta blob id -> recorded digest
        self._commits: dict[str, gitpython.Commit] = {}
        self._approvals: dict[tuple[str, str], Approved] = {}
        self._chain: dict[str, int] | None = None
        self._plans: dict[str, Plan] = {}

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
            self.since = sha
            self._load_tree(sha)
        steps = steps_of(self.git.run_bytes(*WALK, rev, "--"))
        self._prefetch(steps)
        for place, step in enumerate(steps):
            self._steps[step.sha] = step
            self._position[step.sha] = place
            for record in step.records:
                if _watched(record.path):
                    self.files.put(record.path, record.new_mode, record.new)
            self.counts.commits += 1
            self.check_plans(step)
            self.check_journals(step)
            self.check_snapshots(step)
            for record in step.records:
                match = _PLAN_FILE.fullmatch(record.path)
                if match and match.group(2) == "yaml":
                    self._plan_changes.setdefault(match.group(1), []).append((place, step.sha))
        if self.forge == "github":
            self.check_github_approvals()
        counts = self.counts
        return Verification(
            branch=self.main,
            since=since,
            checked=Checked(counts.commits, counts.plans, counts.journals, counts.snapshots),
            findings=tuple(counts.findings),
        )

    def _load_tree(self, sha: str) -> None:
        """The files as they are at `sha`, where a walk that starts after it begins."""
        out = self.git.run_bytes("ls-tree", "-r", "-z", "--full-tree", sha, "--", *WATCHED)
        for entry in out.split(b"\0"):
            if entry:
                info, _, path = entry.partition(b"\t")
                mode, _, blob = info.decode("ascii").split(" ")
                self.files.put(path.decode("utf-8", "surrogateescape"), mode, blob)

    def _prefetch(self, steps: Sequence[Step]) -> None:
        """Read the plans, journals and meta files the walk will read, all at once."""
        wanted = []
        plans: dict[str, str] = {}  # blob -> path
        journals: dict[str, str] = {}
        for step in steps:
            for path, change in step.changes.items():
                small = path.startswith((f"{PLAN_DIR}/", f"{HISTORY_DIR}/")) or (
                    path.startswith(f"{snapshot.STATE_DIR}/") and path.endswith("meta.yaml")
                )
                if small and change.new is not None:
                    wanted.append(change.new)
                elif small and change.old is not None and path.startswith(f"{PLAN_DIR}/"):
                    wanted.append(change.old)  # a removed plan is parsed
                if not path.endswith(".yaml"):
                    continue
                if path.startswith(f"{PLAN_DIR}/"):
                    plans.update((blob, path) for blob in (change.old, change.new) if blob)
                elif path.startswith(f"{HISTORY_DIR}/") and change.new is not None:
                    journals[change.new] = path
        self._small = read_blobs(self.git, wanted)
        # Parsed on every core now; what fails is parsed again where the walk meets
        # it, so its error names the commit as the walk names it.
        self._read_ahead(plans, parse_plan, self._plan_files)
        self._read_ahead(journals, yamlio.load_bytes, self._yaml)

    def _read_ahead(
        self,
        blobs: Mapping[str, str],
        read: Callable[[bytes, str], Any],
        into: dict[str, Any],
    ) -> None:
        """`read` of each of `blobs` (blob id -> path) that was prefetched, kept in
        `into` by blob id when it succeeds."""
        found = [blob for blob in blobs if blob in self._small]
        results = parallel.read_all(read, [(self._small[blob], blobs[blob]) for blob in found])
        for blob, result in zip(found, results, strict=True):
            if not isinstance(result, ReconcilerError):
                into[blob] = result

    def read(self, blob: str) -> bytes:
        data = self._small.get(blob)
        if data is None:
            # Not read with the others: a data file of a snapshot with an earlier
            # release's digest, or a file from before --since.
            data = self.repo.odb.stream(bytes.fromhex(blob)).read()
        assert isinstance(data, bytes)
        return data

    def load_yaml(self, blob: str, name: str) -> Any:
        """The YAML a blob holds, read with the strict reader (YamlError if it is not
        valid); each blob is parsed once."""
        if blob not in self._yaml:
            self._yaml[blob] = yamlio.load_bytes(self.read(blob), name)
        return self._yaml[blob]

    def commit(self, sha: str) -> gitpython.Commit:
        """The commit `sha` (full, known to exist), read once when first used."""
        if sha not in self._commits:
            self._commits[sha] = gitpython.Commit(self.repo, bytes.fromhex(sha))
        return self._commits[sha]

    def author(self, sha: str) -> str:
        commit = self.commit(sha)
        return f"{commit.author.name} <{commit.author.email}>"

    def message(self, sha: str) -> str:
        return str(self.commit(sha).message)

    def find(self, sha: str, path: str, problem: str, fix: str) -> None:
        self.counts.findings.append(Finding(sha, self.author(sha), path, problem, fix))

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

    def check_plans(self, step: Step) -> None:
        apps: set[str] = set()
        for path in step.changes:
            if not path.startswith(f"{PLAN_DIR}/"):
                continue
            match = _PLAN_FILE.fullmatch(path)
            if match is None:
                self.find(
                    step.sha,
                    path,
                    f"{PLAN_DIR}/ holds a file that is neither a plan nor its report",
                    f"move it out of {PLAN_DIR}/, which only `reconciler check` writes",
                )
                continue
            apps.add(match.group(1))
        for app in sorted(apps):
            self.counts.plans += 1
            change = step.changes.get(plan_path(app))
            if change is not None and change.new is not None:
                approved = self.approval(step.sha, app, change.new)
                if approved.problem:
                    self.find(
                        step.sha, plan_path(app), approved.problem, self._unapproved_fix(step)
                    )
            elif change is not None:
                assert change.old is not None
                self.check_removal(step, app, change.old)
            else:
                self.find(
                    step.sha,
                    f"{PLAN_DIR}/{app}.md",
                    "the plan's report changed on main without its plan: only an approved "
                    "merge brings a report, and only the apply that finishes it removes it",
                    f"revert the commit (`git revert {step.sha[:10]}`)",
                )

    def _unapproved_fix(self, step: Step) -> str:
        revert = "git revert -m 1" if len(step.parents) > 1 else "git revert"
        return (
            f"revert it (`{revert} {step.sha[:10]}`) and propose the plan again with "
            "`reconciler check`, for review"
        )

    def _parse_plan(self, blob: str, display: str) -> Plan:
        """The plan a blob holds (PlanError if it is not a valid plan); each blob is
        parsed once."""
        if blob not in self._plan_files:
            self._plan_files[blob] = parse_plan(self.read(blob), display)
        return self._plan_files[blob]

    def plan_at(self, sha: str, app: str, blob: str) -> Plan:
        """The app's plan as the commit holds it (`blob`); PlanError if it is not a
        valid plan."""
        key = f"{sha}:{app}"
        if key not in self._plans:
            plan = self._parse_plan(blob, f"{plan_path(app)} at {sha[:10]}")
            if plan.app != app:
                raise PlanError(f"{plan_path(app)} is a plan for app {plan.app!r}")
            self._plans[key] = plan
        return self._plans[key]

    def plan_brought(self, sha: str, app: str) -> str | None:
        """The blob of plans/<app>.yaml that the commit brought to main (changed it,
        and holds it); None if it did not."""
        path = plan_path(app)
        step = self._steps.get(sha)
        if step is not None:
            change = step.changes.get(path)
            return change.new if change is not None else None
        # A commit from before --since, or one that touched none of the watched files.
        parents = self.repo.commit(sha).parents
        compared = [parents[0].hexsha, sha] if parents else ["--root", "--no-commit-id", sha]
        out = self.git.run_bytes(
            "diff-tree", "-r", "-z", "--raw", "--no-abbrev", "--no-renames", *compared, "--", path
        )
        for _, records in parse_raw(out):
            for record in records:
                change = record.change()
                if change.path == path and change.old != change.new:
                    return change.new
        return None

    def approval(self, sha: str, app: str, blob: str) -> Approved:
        """Whether the commit, which brought plans/<app>.yaml (`blob`) to main, is an
        approval."""
        key = (sha, app)
        if key not in self._approvals:
            self._approvals[key] = self._judge(sha, app, blob)
        return self._approvals[key]

    def _judge(self, sha: str, app: str, blob: str) -> Approved:
        commit = self.commit(sha)
        message = str(commit.message)
        approvers = tuple(parse_approvers(message))
        try:
            plan = self.plan_at(sha, app, blob)
        except ReconcilerError as exc:
            return Approved(sha, app, None, approvers, f"the plan is not valid: {exc}")
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
            ours = Commit(sha, tuple(p.hexsha for p in commit.parents), self.author(sha), message)
            try:
                require_plan_only(self._walked_git, app, ours, f"the merge {sha[:10]}")
            except ApprovalError as exc:
                problem = str(exc).split(". Revert")[0]
        return Approved(sha, app, plan, approvers, problem)

    def approval_before(self, sha: str, app: str) -> str | None:
        """The last commit before `sha` on main's first parents that changed the plan."""
        place = self._position.get(sha, len(self._position))
        for changed_at, changed in reversed(self._plan_changes.get(app, [])):
            if changed_at < place:
                return changed
        if self.since is None:
            return None  # the walk began with main's first commit: there is none
        parents = self.repo.commit(sha).parents
        if not parents:
            return None
        found = self.repo.iter_commits(
            parents[0], first_parent=True, paths=[plan_path(app)], max_count=1
        )
        before = next(iter(found), None)
        return before.hexsha if before is not None else None

    def check_removal(self, step: Step, app: str, old: str) -> None:
        """A plan leaves main with the apply that finished it, or a revert of its approval."""
        path = plan_path(app)
        arrival = self.approval_before(step.sha, app)
        try:
            plan = self._parse_plan(old, f"{path} before {step.sha[:10]}")
        except PlanError:
            return  # the commit that brought it is named already
        if arrival is None:
            return
        reverted = _REVERTS.search(self.message(step.sha))
        if reverted and reverted.group(1) == arrival and len(step.parents) == 1:
            return  # the approval withdrawn: nothing was acted on by this commit
        journal_path, journal = self.journal_of(app, plan.id, arrival)
        if journal is None:
            self.find(
                step.sha,
                path,
                f"plan {plan.id} (approved in {arrival[:10]}) left {self.main} "
                "without a journal of its apply",
                "restore the plan (`git revert` this commit) and run `reconciler apply`; "
                f"to withdraw the approval instead, `git revert -m 1 {arrival[:10]}`",
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
                step.sha,
                path,
                f"plan {plan.id} left {self.main} before its apply finished ({journal_path}: "
                f"{detail})",
                "restore the plan (`git revert` this commit) and run `reconciler apply` "
                "until every action is done or skipped",
            )

    def journal_of(
        self, app: str, plan_id: str, approval: str
    ) -> tuple[str, Mapping[str, Any] | None]:
        """The journal of the plan's apply in the commit the walk is at."""
        directory = f"{HISTORY_DIR}/{app}"
        suffix = f"-{plan_id}-{approval[:12]}.yaml"
        for name, blob in sorted(self.files.blobs_in(directory).items()):
            if name.endswith(suffix):
                path = f"{directory}/{name}"
                try:
                    data = self.load_yaml(blob, path)
                except ReconcilerError:
                    return path, None
                return path, data if isinstance(data, dict) else None
        return "", None

    # --- journals ----------------------------------------------------------------------

    def check_journals(self, step: Step) -> None:
        for path, change in step.changes.items():
            if not path.startswith(f"{HISTORY_DIR}/"):
                continue
            self.counts.journals += 1
            if change.new is None:
                self.find(
                    step.sha,
                    path,
                    "a journal was deleted; journals are the record of what apply did",
                    f"restore it (`git checkout {step.sha[:10]}^ -- {path}`) and commit",
                )
                continue
            match = _JOURNAL_FILE.fullmatch(path)
            if match is None:
                self.find(
                    step.sha,
                    path,
                    f"{HISTORY_DIR}/ holds a file that is not a journal "
                    f"({HISTORY_DIR}/<app>/<date>-<plan>-<approval>.yaml)",
                    f"move it out of {HISTORY_DIR}/, which only `reconciler apply` writes",
                )
                continue
            for problem in self.journal_problems(step.sha, match.group(1), path, change.new):
                self.find(
                    step.sha,
                    path,
                    problem,
                    f"revert the commit (`git revert {step.sha[:10]}`); only "
                    "`reconciler apply` writes journals",
                )

    def journal_problems(self, sha: str, app: str, path: str, blob: str) -> list[str]:
        try:
            data = self.load_yaml(blob, path)
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
        chain = self.chain()
        arrival = None
        if re.fullmatch(r"[0-9a-f]{40}", approval):
            arrival = approval if approval in chain else self._resolve(approval)
        if arrival is None or arrival not in chain:
            return [
                f"approval_commit {approval[:12]!r} is not a commit of {self.main}: the journal "
                "belongs to no approval"
            ]
        if chain[arrival] >= chain.get(sha, len(chain)):
            return [f"approval_commit {approval[:10]} comes after the journal"]
        brought = self.plan_brought(arrival, app)
        if brought is None:
            return [
                f"approval_commit {approval[:10]} did not bring {plan_path(app)} to "
                f"{self.main}: it is not an approval"
            ]
        approved = self.approval(arrival, app, brought)
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

    def check_github_approvals(self) -> None:
        """Without the network: each merge that brought a plan is named by a journal whose
        approval_verified records its pull request, unless it still waits for apply.
        The walk has reached main's last commit: `files` are those of the tip."""
        tip = self.repo.commit(self.main).hexsha
        named: set[str] = set()
        for directory, entries in self.files.entries.items():
            if directory.partition("/")[0] != HISTORY_DIR or directory.count("/") != 1:
                continue
            for name, blob in entries.items():
                if not blob:
                    continue
                try:
                    data = self.load_yaml(blob, f"{directory}/{name}")
                except ReconcilerError:
                    continue
                if isinstance(data, dict) and (data.get("approval_verified") or {}).get(
                    "pull_request"
                ):
                    named.add(str(data.get("approval_commit")))
        for (sha, app), approved in self._approvals.items():
            if approved.problem or sha in named:
                continue
            if (
                self.files.blob(plan_path(app)) is not None
                and self.approval_before(tip, app) == sha
            ):
                continue
            if sha not in self._steps:
                continue
            self.find(
                sha,
                plan_path(app),
                "no journal names this merge as the approval of a pull request",
                "find the pull request that merged it; if there is none, revert the merge",
            )

    # --- snapshots ---------------------------------------------------------------------

    def check_snapshots(self, step: Step) -> None:
        apps: dict[str, list[Change]] = {}
        sources: dict[str, list[Change]] = {}
        for path, change in step.changes.items():
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
                    step.sha,
                    path,
                    "a file reconciler never writes was added to state/",
                    f"remove it (`git rm {path}`); state/ holds only snapshots",
                )
        for app, app_changes in sorted(apps.items()):
            self.check_app_snapshot(step.sha, app, app_changes)
        for source, source_changes in sorted(sources.items()):
            self.check_identity_snapshot(step.sha, source, source_changes)

    def check_app_snapshot(self, sha: str, app: str, changes: Sequence[Change]) -> None:
        directory = f"{snapshot.STATE_DIR}/apps/{app}"
        if not self.files.holds(directory):
            return  # the app's snapshot was removed with the app
        meta_path = f"{directory}/meta.yaml"
        data_changes = [
            c.path for c in changes if not c.path.endswith(("/meta.yaml", "/roles.yaml"))
        ]
        meta_changed = any(c.path == meta_path for c in changes)
        roles_changed = any(c.path.endswith("/roles.yaml") for c in changes)
        shown = data_changes[0] if data_changes else meta_path
        # Only the files directly in the directory and in accounts/ can be data files.
        files = self.files.blobs_in(directory)
        for name, blob in self.files.blobs_in(f"{directory}/accounts").items():
            files[f"accounts/{name}"] = blob
        try:
            names = snapshot.account_files(files.keys(), directory)
        except ReconcilerError as exc:
            self.find(sha, shown, f"the snapshot is not one reconciler writes: {exc}", RESTORE)
            return
        self.counts.snapshots += 1
        recorded = self._recorded_digest(meta_path)
        actual = self._digest(recorded, [(name, files[name]) for name in names])
        if recorded != actual:
            problem = _digest_problem(shown, meta_path, recorded, actual, meta_changed)
            self.find(sha, shown, problem, _hand_edit_fix(sha))
        elif roles_changed and not meta_changed:
            self.find(
                sha,
                f"{directory}/roles.yaml",
                f"roles.yaml changed without {meta_path}: the snapshot was edited by hand",
                _hand_edit_fix(sha),
            )

    def check_identity_snapshot(self, sha: str, source: str, changes: Sequence[Change]) -> None:
        directory = f"{snapshot.STATE_DIR}/identities"
        data_path = f"{directory}/{source}.yaml"
        meta_path = f"{directory}/{source}.meta.yaml"
        blob = self.files.blob(data_path)
        if blob is None and self.files.blob(meta_path) is None:
            return  # the source was removed
        meta_changed = any(c.path == meta_path for c in changes)
        shown = data_path if any(c.path == data_path for c in changes) else meta_path
        self.counts.snapshots += 1
        recorded = self._recorded_digest(meta_path)
        actual = self._digest(recorded, [(f"{source}.yaml", blob)] if blob is not None else [])
        if recorded != actual:
            problem = _digest_problem(shown, meta_path, recorded, actual, meta_changed)
            self.find(sha, shown, problem, _hand_edit_fix(sha))

    def _recorded_digest(self, meta_path: str) -> str | None:
        blob = self.files.blob(meta_path)
        if blob is None:
            return None
        if blob not in self._digests:
            self._digests[blob] = self._meta_digest(blob, meta_path)
        return self._digests[blob]

    def _meta_digest(self, blob: str, meta_path: str) -> str | None:
        raw = self.read(blob)
        plain = plain_meta_digest(raw)
        if plain is not None:
            return plain
        try:
            data = yamlio.load_bytes(raw, meta_path)
        except ReconcilerError:
            return None
        digest = data.get("digest") if isinstance(data, dict) else None
        return digest if isinstance(digest, str) else None

    def _digest(self, recorded: str | None, files: Sequence[tuple[str, str]]) -> str:
        """The snapshot digest of `files` (name in the snapshot, blob id), in the format
        of the `recorded` one: from the blob ids, without reading the files, unless an
        earlier release recorded it over the files' bytes."""
        if recorded is not None and snapshot.is_legacy_digest(recorded):
            return snapshot.legacy_digest(self.read(blob) for _, blob in files)
        if any(len(blob) != 40 for _, blob in files):
            # A repository of another object format names blobs by another hash: the
            # digest is over git's SHA-1 ids, so compute them from the bytes.
            return snapshot.files_digest((name, self.read(blob)) for name, blob in files)
        return snapshot.blobs_digest(files)


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


def _hand_edit_fix(sha: str) -> str:
    return (
        f"revert the commit (`git revert {sha[:10]}`), or run `reconciler check` to "
        "pull the snapshot again; change accounts and identities in their systems, never "
        "in state/"
    )


def verify_history(
    root: Path, main: str = "main", forge: str = "local", since: str | None = None
) -> Verification:
    """Verify main's first-parent history in the repository at `root` (see module doc)."""
    return Verifier(root, main, forge).run(since)
