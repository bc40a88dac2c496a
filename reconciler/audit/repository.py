"""Reading the audit's facts from the access repository's git history (GitPython):
snapshot line changes (through `audit.changes`), journals, plans and the period's
commits.

Efficiency: nothing here reads every blob of every commit. A person's records are
chosen from commit messages and read whole from their lines at the commits that
changed them; journals are narrowed with `git grep -l` at HEAD before any is parsed,
and many are parsed on every core (`parallel`).
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import git
import orjson

from reconciler import parallel, snapshot, yamlio
from reconciler.audit import indexed
from reconciler.audit.changes import (
    APPS_DIR,
    CHANGED_LINES,
    COMMIT_MARK,
    IDENTITIES_DIR,
    STATE,
    ere_escape,
    indexed_changes,
    indexed_counts,
    parse_log,
    record_of,
    snapshot_of,
)
from reconciler.audit.indexed import LOG_FORMAT, IndexedCommit, Keep
from reconciler.audit.lookup import Lookup, open_lookup
from reconciler.audit.timeline import (
    IDENTITY,
    PLAN_ID,
    Commit,
    Journal,
    JournalAction,
    LineChange,
    PendingPlan,
)
from reconciler.changeindex import HEADER_PATTERN, search_text, tokens_of
from reconciler.clock import read_time
from reconciler.errors import GitError, YamlError
from reconciler.git import Git, batch_contents


def _journal(
    path: str, data: dict[str, Any], added: Commit | None, proposed: Commit | None
) -> Journal:
    """A journal file's facts: `added` the commit that added it, `proposed` the commit
    that proposed its plan (when the plan was written)."""
    app = str(data.get("app") or PurePosixPath(path).parent.name)
    actions = []
    for entry in data.get("actions") or ():
        if not isinstance(entry, dict):
            continue
        account = entry.get("account") or {}
        actions.append(
            JournalAction(
                account_id=str(account.get("id", "")),
                username=str(account.get("username", "")),
                email=str(account.get("email", "")),
                mode=str(entry.get("mode", "")),
                reason=str(entry.get("reason", "")),
                outcome=str(entry.get("outcome", "")),
                detail=str(entry.get("detail") or ""),
                at=read_time(entry.get("at")),
            )
        )
    verified = data.get("approval_verified")
    return Journal(
        app=app,
        plan=str(data.get("plan", "")),
        path=path,
        approved_by=tuple(str(a) for a in data.get("approved_by") or ()),
        approval=str(data.get("approval") or ""),
        approved_at=read_time(data.get("approved_at")),
        approval_verified=verified if isinstance(verified, dict) else {},
        plan_created_at=proposed.at if proposed else None,
        actions=tuple(actions),
        commit=added,
    )


class AuditRepository:
    """The access repository's history, read for an audit."""

    def __init__(self, root: Any, rev: str = "HEAD", until: datetime | None = None) -> None:
        """The history as of `rev` (a commit of main), and of `until` for the plans on
        branches (their last commit at or before it); HEAD and now by default."""
        self.local = Git.open(Path(root))
        self.repo = self.local.history()
        self.git = self.repo.git
        self.rev = rev
        self.until = until
        self._commit_graph()

    def _commit_graph(self) -> None:
        """Bring git's commit-graph, with its changed-path Bloom filters, up to the
        commits there are now (only new commits cost anything). A walk limited to a
        few paths then skips the tree of every commit that did not touch them: over a
        year of history, seconds instead of tens. The file is git's own, derived from
        the commits and checked by git; a repository that cannot be written (read-only,
        or another writer holds the lock) is read without it, only slower."""
        with contextlib.suppress(git.GitCommandError):
            self.git.execute(
                ["git", "commit-graph", "write", "--reachable", "--changed-paths", "--split"]
            )

    @functools.cached_property
    def lookup(self) -> Lookup | None:
        """The lookup of which commits name whom (`audit.lookup`) as of `rev`, opened
        on first use and brought up to date; None where it cannot be kept."""
        try:
            directory = self.local.private_dir()
        except OSError:
            return None
        rev = self._run("rev-parse", "--verify", f"{self.rev}^{{commit}}").decode().strip()
        return open_lookup(self._run, directory, rev)

    def _run(self, *args: str, stdin: bytes | None = None) -> bytes:
        try:
            if stdin is None:
                out = self.git.execute(
                    ["git", *args], stdout_as_string=False, strip_newline_in_stdout=False
                )
            else:
                with tempfile.TemporaryFile() as feed:
                    feed.write(stdin)
                    feed.seek(0)
                    out = self.git.execute(
                        ["git", *args],
                        istream=feed,
                        stdout_as_string=False,
                        strip_newline_in_stdout=False,
                    )
        except git.GitCommandError as exc:
            if exc.status == 1 and args and args[0] == "grep":
                return b""  # grep found nothing
            raise GitError(f"git {' '.join(args[:2])} failed: {exc.stderr.strip()}") from exc
        assert isinstance(out, bytes)
        return out

    def files(self, *paths: str, rev: str | None = None) -> list[str]:
        out = self._run("ls-tree", "-r", "--name-only", rev or self.rev, "--", *paths)
        return out.decode("utf-8", "replace").splitlines()

    def grep(self, keys: Sequence[str], *paths: str, names_only: bool = False) -> list[str]:
        """Lines (`HEAD:path:line`) or file names at HEAD holding any of `keys`, any case."""
        if not keys:
            return []
        args = ["grep", "-I", "-i", "-F", *(["-l"] if names_only else [])]
        for key in keys:
            args += ["-e", key]
        out = self._run(*args, self.rev, "--", *paths)
        return out.decode("utf-8", "replace").splitlines()

    def chosen_line_changes(
        self,
        keys: Sequence[str],
        locate: Callable[[str], tuple[str, str] | None] = snapshot_of,
        fallback: Sequence[str] = (),
    ) -> list[LineChange]:
        """Every change to a snapshot line of a record whose id, email or username is
        one of `keys` (normalised as the index spells them), oldest first, with both
        versions read whole, reading no diff of any commit that carries an index of
        changed records.

        The commits whose index names a key come from the lookup (`audit.lookup`), or
        where it cannot be kept from one `git log --grep` over the messages; the
        records are picked among their entries (a key inside a longer name picks
        nothing), and each record's line is read from the file at the commit and at its
        parent (`locate` says which snapshots count). Commits the index cannot speak
        for (no index, a malformed one, hand edits of `state/`), and in `fallback`
        paths (apps matched on a field the index does not hold) every commit, are
        diffed by pickaxe on `keys` instead.
        """
        needles = sorted({search_text(key) for key in keys if key})
        keep = indexed.naming(tokens_of(keys))
        lookup = self.lookup
        walks: list[tuple[str, ...]] = []
        if lookup is None:
            walks += [
                ("log", self.rev, *LOG_FORMAT, "-F", *(f"--grep={key}" for key in needles)),
                ("log", self.rev, "--format=%H", "--invert-grep", f"--grep={HEADER_PATTERN}",
                 "--", STATE),
            ]  # fmt: skip
        if fallback:
            walks.append(("log", self.rev, "--format=%H", "--", *fallback))
        with ThreadPoolExecutor(max(len(walks), 1)) as pool:
            walked = list(pool.map(lambda args: self._run(*args), walks))
        if lookup is None:
            named, bare, *others = walked
            to_diff = dict.fromkeys(bare.decode().split())
        else:
            chosen = "".join(f"{sha}\n" for sha in lookup.naming(tokens_of(keys)))
            named = self._run("log", "--no-walk=unsorted", "--stdin", *LOG_FORMAT,
                              stdin=chosen.encode()) if chosen else b""  # fmt: skip
            to_diff = dict.fromkeys(lookup.bare())
            others = walked
        found = indexed.parse(named, locate, keep, needles)
        to_diff.update(dict.fromkeys(found.unindexed))
        to_diff.update(dict.fromkeys(others[0].decode().split() if others else ()))
        changes: list[LineChange] = []
        for named_commit in found.commits:
            read = self._read_versions(named_commit)
            if read is None:
                to_diff[named_commit.commit.sha] = None  # a line not where the tool puts it
            else:
                changes += read
        if not to_diff:
            return changes
        diffed = self._pickaxe(list(to_diff), keys, [IDENTITIES_DIR, APPS_DIR, *fallback])
        if not diffed:
            return changes
        done = {c.commit.sha for c in diffed}
        changes = [c for c in changes if c.commit.sha not in done] + diffed
        # One order for both: the history's (commits of one second keep their order).
        if lookup is not None:
            position = lookup.positions(c.commit.sha for c in changes)
        else:
            walk = self._run("log", self.rev, "--format=%H", "--", STATE).decode().split()
            position = {sha: index for index, sha in enumerate(reversed(walk))}
        return sorted(changes, key=lambda c: position.get(c.commit.sha, -1))

    def _pickaxe(
        self, shas: Sequence[str], keys: Sequence[str], paths: Sequence[str]
    ) -> list[LineChange]:
        """The line changes holding one of `keys` (any case) in `paths` of the commits
        `shas`, oldest first."""
        pattern = "|".join(ere_escape(k) for k in sorted(set(keys)))
        out = self._run(
            "log", "--no-walk=unsorted", "--stdin", "-i", f"-G{pattern}", *CHANGED_LINES,
            *paths, stdin="".join(f"{sha}\n" for sha in shas).encode(),
        )  # fmt: skip
        return list(parse_log(out, [k.lower() for k in keys]))[::-1]

    def _read_versions(self, named: IndexedCommit) -> list[LineChange] | None:
        """The records an indexed commit names, each version read whole from its
        snapshot line at the commit and at its parent; None if a version the index
        names is not on a line of its own where the tool writes it."""
        found = []
        for change in named.line_changes():
            versions: list[dict[str, Any] | None] = []
            for rev, named_version in ((f"{named.commit.sha}^", change.before),
                                       (named.commit.sha, change.after)):  # fmt: skip
                record = self._line(rev, named.system, named.kind, change.record_id)
                if (record is None) != (named_version is None):
                    return None
                versions.append(record)
            before, after = versions
            if before != after:
                found.append(replace(change, before=before, after=after))
        return found

    def _line(self, rev: str, system: str, kind: str, record_id: str) -> dict[str, Any] | None:
        """The record `record_id` of a snapshot at `rev`, read from its line (each line
        is `- ` and the record as JSON, its id first); None if no line holds it."""
        if kind == IDENTITY:
            paths = [f"{IDENTITIES_DIR}/{system}.yaml"]
        else:
            shard = snapshot.shard_of(record_id)
            paths = [
                f"{APPS_DIR}/{system}/accounts/{shard}.yaml",
                f"{APPS_DIR}/{system}/accounts.yaml",
            ]
        needle = b'\n- {"id":' + orjson.dumps(record_id) + b","
        for path in paths:
            try:
                _, _, _, data = self.git.get_object_data(f"{rev}:{path}")
            except ValueError:
                continue  # no such file at `rev`
            at = data.find(needle)
            if at < 0:
                continue
            end = data.find(b"\n", at + 1)
            record = record_of(data[at + 1 : end if end >= 0 else len(data)])
            return record if record is not None and record["id"] == record_id else None
        return None

    def indexed_changes(
        self,
        paths: Sequence[str],
        keys: Sequence[str] = (),
        rev: str | None = None,
        keep: Keep | None = None,
    ) -> list[LineChange]:
        """`indexed_changes` over this repository."""
        return indexed_changes(self._run, paths, keys, rev or self.rev, keep)

    def indexed_counts(self, paths: Sequence[str]) -> list[tuple[Commit, dict[str, int]]]:
        """`indexed_counts` over this repository."""
        return indexed_counts(self._run, paths, self.rev)

    def snapshot_commits(self, paths: Sequence[str]) -> list[tuple[Commit, list[LineChange]]]:
        """Every commit that changed `paths`, with every line it changed (an app's
        imports and applies)."""
        out = self._run(
            "log",
            self.rev,
            *CHANGED_LINES,
            *paths,
        )
        commits: dict[str, tuple[Commit, list[LineChange]]] = {}
        for mark in out.split(b"\n"):
            if mark.startswith(COMMIT_MARK):
                _, sha, stamp, subject = mark[len(COMMIT_MARK) - 1 :].split(b"\x00", 3)
                commit = Commit.logged(sha, stamp, subject)
                commits[commit.sha] = (commit, [])
        for change in parse_log(out):
            commits[change.commit.sha][1].append(change)
        return list(commits.values())[::-1]

    def commits(self, *paths: str, extra: Sequence[str] = ()) -> list[tuple[Commit, str]]:
        """(commit, full message) of every commit touching `paths`, newest first."""
        out = self._run(
            "log", self.rev, *extra, "--format=%x00C%x00%H%x00%ct%x00%s%x00%B%x1e", "--", *paths
        )
        found = []
        for entry in out.split(b"\x1e"):
            entry = entry.strip(b"\n")
            if not entry.startswith(COMMIT_MARK):
                continue
            _, sha, stamp, subject, body = entry[len(COMMIT_MARK) - 1 :].split(b"\x00", 4)
            found.append((Commit.logged(sha, stamp, subject), body.decode("utf-8", "replace")))
        return found

    def show(self, rev: str, path: str) -> bytes | None:
        try:
            blob = self.repo.commit(rev).tree / path
        except (KeyError, ValueError, git.BadName):
            return None
        data = blob.data_stream.read()
        assert isinstance(data, bytes)
        return data

    def _yaml(self, rev: str, path: str) -> dict[str, Any] | None:
        raw = self.show(rev, path)
        if raw is None:
            return None
        try:
            data = yamlio.load_bytes(raw, f"{path} at {rev[:10]}")
        except YamlError:
            return None
        return data if isinstance(data, dict) else None

    # --- journals and plans -----------------------------------------------------------

    def journals(self, *apps: str, keys: Sequence[str] | None = None) -> list[Journal]:
        """The apply journals at HEAD (of `apps`, or all), only those mentioning one of
        `keys` when given. A fixed number of git processes however many there are: one
        reads every file, one finds the commit that added each, one the plans' commits;
        each walk limited to the paths that can answer it."""
        with self.journals_reading(*apps, keys=keys) as journals:
            return journals()

    @contextlib.contextmanager
    def journals_reading(
        self, *apps: str, keys: Sequence[str] | None = None, meanwhile: bool = False
    ) -> Iterator[Callable[[], list[Journal]]]:
        """`journals`, started now and collected by calling what it yields: the files
        are parsed (`parallel.reading`, every part in workers when `meanwhile`) and the
        walks run while the caller does other work."""
        where = [f"history/{app}" for app in apps] or ["history"]
        if keys is not None:
            paths = self.grep(keys, *where, names_only=True)
            paths = [p.split(":", 1)[1] for p in paths]
        else:
            paths = self.files(*where)
        paths = sorted(p for p in paths if p.endswith(".yaml"))
        if not paths:
            yield list
            return
        contents = self.blobs(self.rev, paths)
        found = [path for path in paths if path in contents]
        documents = [(contents[path], f"{path} at HEAD") for path in found]
        plan_files = [f"plans/{app}.yaml" for app in apps] or ["plans"]
        with (
            parallel.reading(yamlio.load_bytes, documents, meanwhile=meanwhile) as loaded,
            ThreadPoolExecutor(2) as pool,
        ):
            adding = pool.submit(self.added, paths if keys is not None else where)
            proposing = None if keys is not None else pool.submit(self.plan_commits, plan_files)

            def journals() -> list[Journal]:
                pairs = zip(found, loaded(), strict=True)
                read = {path: data for path, data in pairs if isinstance(data, dict)}
                if proposing is None:  # only the plans of the journals read
                    plans = {str(data.get("plan", "")) for data in read.values()}
                    proposed = self.plan_commits(plan_files, plans)
                else:
                    proposed = proposing.result()
                added = adding.result()
                return [
                    _journal(path, data, added.get(path), proposed.get(str(data.get("plan", ""))))
                    for path, data in read.items()
                ]

            yield journals

    def blobs(self, rev: str, paths: Sequence[str]) -> dict[str, bytes]:
        """The files `paths` at `rev`, read by one `git cat-file --batch`."""
        out = self._run(
            "cat-file", "--batch", stdin="".join(f"{rev}:{p}\n" for p in paths).encode()
        )
        return batch_contents(out, paths)

    def added(self, where: Sequence[str]) -> dict[str, Commit]:
        """The commit that added each file in or under `where` (the last, if added
        again); of given journal files, the lookup answers when it is open."""
        journals = all(path.startswith("history/") and path.endswith(".yaml") for path in where)
        if where and journals and self.lookup is not None:
            return self.lookup.added(where)
        out = self._run(
            "log", self.rev, "--diff-filter=A", "--name-only", "--no-renames",
            "--format=%x1e%H%x00%ct%x00%s", "--", *where,
        )  # fmt: skip
        found: dict[str, Commit] = {}
        for chunk in out.decode("utf-8", "replace").split("\x1e")[1:]:
            head, _, names = chunk.partition("\n")
            sha, stamp, subject = head.split("\x00", 2)
            commit = Commit.logged(sha, stamp, subject)
            for name in names.split("\n"):
                if name:
                    found.setdefault(name, commit)  # newest first: the last addition
        return found

    def plan_commits(
        self, where: Sequence[str] = ("plans",), plans: Iterable[str] | None = None
    ) -> dict[str, Commit]:
        """The first commit that proposed each plan id (its `Plan-Id:` trailer) by
        adding or changing a plan file in or under `where`; only of `plans` when given.

        Only the messages of such commits are read: the applies that remove a plan
        carry the index of changed records, which a `--grep` would read through. Of
        given plans in given files, the lookup answers when it is open."""
        if (
            plans is not None
            and self.lookup is not None
            and all(PurePosixPath(path).suffix == ".yaml" for path in where)
        ):
            return self.lookup.first_proposals(where, plans)
        out = self._run(
            "log", self.rev, "--no-merges", "--full-history", "--diff-filter=AM",
            "--format=%x1e%H%x00%ct%x00%s%x00%B", "--", *where,
        )  # fmt: skip
        wanted = None if plans is None else set(plans)
        found: dict[str, Commit] = {}
        for chunk in out.decode("utf-8", "replace").split("\x1e")[1:]:
            sha, stamp, subject, body = chunk.split("\x00", 3)
            plan = PLAN_ID.search(body)
            if plan and (wanted is None or plan.group(1) in wanted):
                # Newest first: the first proposal wins.
                found[plan.group(1)] = Commit.logged(sha, stamp, subject)
        return found

    def pending_plans(self, app: str | None = None) -> list[PendingPlan]:
        """Plans approved on main and not applied yet, and plans on `reconciler/<app>`
        branches (local or remote-tracking) not merged into main."""
        found = []
        for path in self.files("plans"):
            name = PurePosixPath(path)
            if name.suffix == ".yaml" and (app is None or name.stem == app):
                plan = self._pending(name.stem, self.rev, "approved", "main")
                if plan is not None:
                    found.append(plan)
        refs = self._run(
            "for-each-ref", "--format=%(refname)", "refs/heads/reconciler/", "refs/remotes/"
        )
        seen: set[tuple[str, str]] = set()
        for ref in refs.decode().splitlines():
            parts = ref.split("/")
            if len(parts) < 4 or parts[-2] != "reconciler" or parts[-1] == "import":
                continue
            branch_app = parts[-1]
            if app is not None and branch_app != app:
                continue
            short = ref.removeprefix("refs/heads/").removeprefix("refs/remotes/")
            if self.until is not None:
                stamp = self.until.strftime("%Y-%m-%d %H:%M:%S +0000")
                ref = self._run("rev-list", "-1", f"--before={stamp}", ref).decode().strip()
                if not ref:
                    continue  # proposed after `until`
            if self.repo.is_ancestor(self.repo.commit(ref), self.repo.commit(self.rev)):
                continue
            plan = self._pending(branch_app, ref, "open", short)
            if plan is not None and (plan.app, plan.plan) not in seen:
                seen.add((plan.app, plan.plan))
                found.append(plan)
        for plan_app, commit in self._proposed_then(app).items():
            plan = self._pending(plan_app, commit, "open", f"reconciler/{plan_app}")
            if plan is not None and (plan.app, plan.plan) not in seen:
                seen.add((plan.app, plan.plan))
                found.append(plan)
        return found

    def _proposed_then(self, app: str | None) -> dict[str, str]:
        """As of `until`: the last plan proposed by then for each app that main merged
        only after `rev` (its branch is gone now), by app."""
        if self.until is None or self.rev == "HEAD":
            return {}
        stamp = self.until.strftime("%Y-%m-%d %H:%M:%S +0000")
        out = self._run(
            "log", f"{self.rev}..HEAD", "--no-merges", "--full-history", f"--before={stamp}",
            "--grep=^Plan-Id:", "--format=%x1e%H", "--name-only", "--", "plans",
        )  # fmt: skip
        found: dict[str, str] = {}
        for chunk in out.decode("utf-8", "replace").split("\x1e")[1:]:
            sha, _, names = chunk.partition("\n")
            for name in names.split():
                path = PurePosixPath(name)
                if path.suffix == ".yaml" and (app is None or path.stem == app):
                    found.setdefault(path.stem, sha.strip())  # newest first
        return found

    def _pending(self, app: str, rev: str, state: str, where: str) -> PendingPlan | None:
        data = self._yaml(rev, f"plans/{app}.yaml")
        if data is None:
            return None
        ids = []
        for action in data.get("actions") or ():
            if isinstance(action, dict) and not action.get("skip"):
                ids.append(str((action.get("account") or {}).get("id", "")))
        return PendingPlan(
            app=app,
            plan=str(data.get("plan", "")),
            state=state,
            created_at=read_time(data.get("created_at")),
            where=where,
            account_ids=tuple(ids),
            status=str(data.get("status", "open")),
        )

    # --- a period -----------------------------------------------------------------------

    def last_main_commit(self, at: datetime) -> str | None:
        """Main's last commit (first parents of HEAD) dated at or before `at`."""
        stamp = at.strftime("%Y-%m-%d %H:%M:%S +0000")
        out = self._run("rev-list", "-1", "--first-parent", f"--before={stamp}", "HEAD")
        return out.decode().strip() or None

    def main_commits(self, since: datetime, until: datetime) -> list[Commit]:
        """The commits of the main branch (first parents of HEAD) dated within
        [since, until], oldest first."""
        stamp = "%Y-%m-%d %H:%M:%S +0000"
        out = self._run(
            "log", self.rev, "--first-parent", f"--since={since.strftime(stamp)}",
            f"--until={until.strftime(stamp)}", "--format=%H%x00%ct%x00%s",
        )  # fmt: skip
        found = []
        for line in out.decode("utf-8", "replace").splitlines():
            sha, at, subject = line.split("\x00", 2)
            commit = Commit.logged(sha, at, subject)
            if since <= commit.at <= until:
                found.append(commit)
        return found[::-1]
