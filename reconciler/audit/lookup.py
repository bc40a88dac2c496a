"""Which commits name whom: the history's indexes of changed records, read once per
clone and kept beside git's own derived files.

`audit person` needs the few commits whose index of changed records names one of a
person's ids, emails or usernames. Finding them with `git log --grep` reads every
message of the history on every run (a year: 74,000 commits, 240 MB). This lookup reads
them once, and after that only the commits made since: for each commit, the index
tokens it names, whether it changed `state/` without an index the audit can take at
its word (such a commit is always diffed), the plan ids it proposed and the journals
it added.

It is a cache, not a record: a SQLite file in the git directory
(`reconciler/lookup.sqlite3`), like git's commit-graph derived from the commits alone
and never committed. It is believed only while it covers an ancestor of the commit
audited and holds as many commits as git counts there; otherwise it is built anew. Two
audits may update it at once (SQLite's write lock; a new file replaces the old whole).
Tokens are kept as CRC-32 checksums: a collision makes a lookup read one commit more,
never one less, and the index lines read then decide.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler import changeindex
from reconciler.audit.changes import STATE, snapshot_of
from reconciler.audit.indexed import LOG_FORMAT
from reconciler.audit.timeline import PLAN_ID, Commit
from reconciler.errors import GitError

FILE = "lookup.sqlite3"
# Bumped whenever what is stored, or how it is derived, changes: an older file is rebuilt.
VERSION = "2"
# The plan files' commits, as `AuditRepository.plan_commits` walks them.
PROPOSALS = (
    "--no-merges", "--full-history", "--diff-filter=AM", "--name-only", "--no-renames",
    "--format=%x1e%H%x00%B%x00",
)  # fmt: skip
# The journals' commits, as `AuditRepository.added` walks them.
ADDED = ("--diff-filter=A", "--name-only", "--no-renames", "--format=%x1e%H%x00")
JOURNALS = "history"
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE commits (
    n INTEGER PRIMARY KEY, sha TEXT NOT NULL UNIQUE, stamp INTEGER NOT NULL,
    subject TEXT NOT NULL, bare INTEGER NOT NULL
);
CREATE TABLE names (key INTEGER NOT NULL, n INTEGER NOT NULL);
CREATE TABLE proposals (plan TEXT NOT NULL, path TEXT NOT NULL, n INTEGER NOT NULL);
CREATE TABLE added (path TEXT NOT NULL, n INTEGER NOT NULL);
"""
_INDEXES = (
    "CREATE INDEX names_key ON names (key)",
    "CREATE INDEX proposals_plan ON proposals (plan)",
    "CREATE INDEX added_path ON added (path)",
)

Run = Callable[..., bytes]


def key_of(token: str) -> int:
    """The stored form of an index token."""
    return zlib.crc32(token.encode())


@dataclass(frozen=True, slots=True)
class Logged:
    """One commit as the lookup keeps it."""

    sha: str
    stamp: int
    subject: str
    keys: frozenset[int]  # the tokens of the ids, emails and usernames its index names
    bare: bool  # changed `state/` with no index the audit can take at its word


def logged(output: bytes) -> Iterator[Logged]:
    """The commits of `git log LOG_FORMAT` output, newest first (pure).

    A commit that changed `state/` is bare when its message ends in no index, in a
    malformed one, or its files are not one system's snapshot: what a search of the
    index would not find is found by diffing it."""
    for chunk in output.split(b"\x1e")[1:]:
        sha, stamp, subject, body, names = chunk.split(b"\x00", 4)
        paths = [name for name in names.decode("utf-8", "replace").split("\n") if name]
        keys: set[int] = set()
        bare = False
        if any(path.split("/", 1)[0] == STATE for path in paths):
            systems = {found for path in paths if (found := snapshot_of(path)) is not None}
            try:
                lines = changeindex.lines_of(body.decode("utf-8", "replace"))
            except changeindex.MalformedIndex:
                lines = None
            if lines is None or len(systems) > 1:
                bare = True
            elif systems:
                for line in lines:
                    _, record_id, email, username, _ = line.split(" ")
                    keys.update(key_of(t) for t in (record_id, email, username))
                keys.discard(key_of(changeindex.EMPTY))
        yield Logged(
            sha.decode(), int(stamp), subject.decode("utf-8", "replace"), frozenset(keys), bare
        )


def named_files(output: bytes) -> Iterator[tuple[str, str]]:
    """(sha, path) for each file of `git log ADDED` output (pure)."""
    for chunk in output.split(b"\x1e")[1:]:
        sha, names = chunk.split(b"\x00", 1)
        for name in names.decode("utf-8", "replace").split("\n"):
            if name:
                yield sha.decode(), name


def proposals(output: bytes) -> Iterator[tuple[str, str, str]]:
    """(sha, plan id, path) for each plan file a commit of `git log PROPOSALS` output
    added or changed, newest first (pure)."""
    for chunk in output.split(b"\x1e")[1:]:
        sha, body, names = chunk.split(b"\x00", 2)
        plan = PLAN_ID.search(body.decode("utf-8", "replace"))
        if plan is None:
            continue
        for name in names.decode("utf-8", "replace").split("\n"):
            if name:
                yield sha.decode(), plan.group(1), name


class Lookup:
    """The lookup as of one commit (`open_lookup`)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def close(self) -> None:
        self._db.close()

    def naming(self, tokens: Iterable[str]) -> list[str]:
        """The commits whose index names one of `tokens` (or a token of the same
        checksum), newest first."""
        keys = sorted({key_of(token) for token in tokens})
        if not keys:
            return []
        rows = self._db.execute(
            "SELECT sha FROM commits WHERE n IN "
            f"(SELECT n FROM names WHERE key IN ({','.join('?' * len(keys))})) ORDER BY n DESC",
            keys,
        )
        return [sha for (sha,) in rows]

    def bare(self) -> list[str]:
        """The commits to diff (`Logged.bare`), newest first."""
        rows = self._db.execute("SELECT sha FROM commits WHERE bare ORDER BY n DESC")
        return [sha for (sha,) in rows]

    def positions(self, shas: Iterable[str]) -> dict[str, int]:
        """Each commit's place in the history, oldest first."""
        wanted = list(set(shas))
        found: dict[str, int] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            rows = self._db.execute(
                f"SELECT sha, n FROM commits WHERE sha IN ({','.join('?' * len(part))})", part
            )
            found.update(rows)
        return found

    def first_proposals(self, paths: Sequence[str], plans: Iterable[str]) -> dict[str, Commit]:
        """The first commit that added or changed one of the plan files `paths` with a
        `Plan-Id:` of `plans`, by plan id."""
        wanted = sorted(set(plans))
        if not wanted or not paths:
            return {}
        rows = self._db.execute(
            "SELECT p.plan, c.sha, c.stamp, c.subject, MIN(c.n) FROM proposals p "
            "JOIN commits c ON c.n = p.n "
            f"WHERE p.plan IN ({','.join('?' * len(wanted))}) "
            f"AND p.path IN ({','.join('?' * len(paths))}) GROUP BY p.plan",
            [*wanted, *paths],
        )
        return {
            plan: Commit.logged(sha, str(stamp), subject) for plan, sha, stamp, subject, _ in rows
        }

    def added(self, paths: Sequence[str]) -> dict[str, Commit]:
        """The commit that added each of the journal files `paths` (the last, if added
        again)."""
        found: dict[str, Commit] = {}
        for start in range(0, len(paths), 500):
            part = list(paths[start : start + 500])
            rows = self._db.execute(
                "SELECT a.path, c.sha, c.stamp, c.subject, MAX(c.n) FROM added a "
                f"JOIN commits c ON c.n = a.n WHERE a.path IN ({','.join('?' * len(part))}) "
                "GROUP BY a.path",
                part,
            )
            for path, sha, stamp, subject, _ in rows:
                found[path] = Commit.logged(sha, str(stamp), subject)
        return found


def open_lookup(run: Run, directory: Path, rev: str) -> Lookup | None:
    """The lookup as of commit `rev` (a full sha), brought up to date (only commits new
    since its last update are read) or built; None when it cannot be kept here (a
    repository that cannot be written), or when it holds a later history than `rev`'s
    (an audit of an earlier commit leaves it for the next audit of the branch): the
    caller searches the messages instead."""
    path = directory / FILE
    try:
        connection = _current(run, path, rev)
    except _Behind:
        return None
    except (_Stale, sqlite3.Error, OSError):
        connection = None
    try:
        return Lookup(connection or _built(run, path, rev))
    except (sqlite3.Error, OSError):
        return None


class _Stale(Exception):
    """The file does not hold what it claims: build it anew."""


class _Behind(Exception):
    """The file holds a history that `rev` is an earlier part of."""


def _current(run: Run, path: Path, rev: str) -> sqlite3.Connection | None:
    """The existing file brought up to `rev`; None when there is none."""
    if not path.exists():
        return None
    connection = _connect(path)
    try:
        if _meta(connection, "version") != VERSION:
            raise _Stale
        if _meta(connection, "tip") != rev:
            connection.execute("BEGIN IMMEDIATE")  # one writer at a time
            tip = _meta(connection, "tip")  # another audit may have moved it meanwhile
            if tip is None:
                raise _Stale
            if tip != rev:
                if _is_ancestor(run, rev, tip):
                    raise _Behind
                if not _is_ancestor(run, tip, rev):
                    raise _Stale  # another history: the branch was rewritten
                _add(connection, run, f"{tip}..{rev}")
                _set_meta(connection, tip=rev)
            connection.execute("COMMIT")
        (count,) = connection.execute("SELECT count(*) FROM commits").fetchone()
        if count != int(run("rev-list", "--count", rev)):
            raise _Stale
    except BaseException:
        connection.close()
        raise
    return connection


def _built(run: Run, path: Path, rev: str) -> sqlite3.Connection:
    """A new file for the history up to `rev`, replacing any other whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_name(f"{FILE}.{os.getpid()}.new")
    building.unlink(missing_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(building, isolation_level=None)) as connection:
            connection.executescript(_SCHEMA)
            connection.execute("BEGIN")
            _add(connection, run, rev)
            for statement in _INDEXES:
                connection.execute(statement)
            _set_meta(connection, version=VERSION, tip=rev)
            connection.execute("COMMIT")
        os.replace(building, path)
    finally:
        building.unlink(missing_ok=True)
    return _connect(path)


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to the file, waiting up to a minute for another audit's update; the
    audit's threads may share it (the SQLite library serialises them)."""
    return sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)


def _add(connection: sqlite3.Connection, run: Run, walk: str) -> None:
    """The commits of `walk` (a rev or a range), numbered after those already held."""
    (last,) = connection.execute("SELECT coalesce(max(n), 0) FROM commits").fetchone()
    commits = list(logged(run("log", walk, *LOG_FORMAT)))
    numbers = {c.sha: last + len(commits) - i for i, c in enumerate(commits)}
    connection.executemany(
        "INSERT INTO commits VALUES (?, ?, ?, ?, ?)",
        ((numbers[c.sha], c.sha, c.stamp, c.subject, c.bare) for c in commits),
    )
    connection.executemany(
        "INSERT INTO names VALUES (?, ?)",
        ((key, numbers[c.sha]) for c in commits for key in c.keys),
    )
    plans = run("log", walk, *PROPOSALS, "--", "plans")
    connection.executemany(
        "INSERT INTO proposals VALUES (?, ?, ?)",
        ((plan, name, numbers[sha]) for sha, plan, name in proposals(plans) if sha in numbers),
    )
    journals = run("log", walk, *ADDED, "--", JOURNALS)
    connection.executemany(
        "INSERT INTO added VALUES (?, ?)",
        ((name, numbers[sha]) for sha, name in named_files(journals) if sha in numbers),
    )


def _meta(connection: sqlite3.Connection, key: str) -> str | None:
    row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(connection: sqlite3.Connection, **values: str) -> None:
    connection.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", sorted(values.items()))


def _is_ancestor(run: Run, ancestor: str, descendant: str) -> bool:
    try:
        run("merge-base", "--is-ancestor", ancestor, descendant)
    except GitError:
        return False  # not an ancestor, or no such commit any more
    return True
