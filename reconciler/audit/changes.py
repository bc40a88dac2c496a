"""Snapshot line changes read from git: from the index of changed records each
snapshot commit carries (`audit.indexed`), and from diffs where a commit carries none.

Efficiency: nothing here reads every blob of every commit. Messages choose the commits
(`git log --grep`); only commits the index cannot speak for are diffed, and then only
their changed lines (`-G`, `-U0`). A walk over many snapshot paths is a walk over their
top directories, the other systems' snapshots left out after.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import orjson

from reconciler.audit import indexed
from reconciler.audit.indexed import LOG_FORMAT, IndexedCommit, Keep
from reconciler.audit.timeline import ACCOUNT, IDENTITY, Commit, LineChange, count_changes
from reconciler.changeindex import HEADER_PATTERN

STATE = "state"
IDENTITIES_DIR = "state/identities"
APPS_DIR = "state/apps"
COMMIT_MARK = b"\x00C\x00"
# Beyond this many keys, `git log --grep` (which tries each pattern on each message in
# turn) costs more than reading every message of the paths and choosing by `keep`.
GREP_KEYS = 32
_ERE_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\])")


def ere_escape(text: str) -> str:
    """`text` as a POSIX extended regular expression matching it literally."""
    return _ERE_SPECIAL.sub(r"\\\1", text)


def snapshot_of(path: str) -> tuple[str, str] | None:
    """(system, kind) of a snapshot file path, or None for any other file."""
    parts = PurePosixPath(path).parts
    if len(parts) == 3 and parts[:2] == (STATE, "identities") and path.endswith(".yaml"):
        name = parts[2][: -len(".yaml")]
        return None if name.endswith(".meta") else (name, IDENTITY)
    in_app = len(parts) >= 4 and parts[:2] == (STATE, "apps")
    if in_app and (parts[3] == "accounts.yaml" or (len(parts) == 5 and parts[3] == "accounts")):
        return parts[2], ACCOUNT
    return None


def record_of(line: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(line[2:])
    except orjson.JSONDecodeError:
        return None  # a line a person reformatted: not a record we can follow
    return value if isinstance(value, dict) and isinstance(value.get("id"), str) else None


@dataclass
class _Pending:
    commit: Commit
    before: dict[tuple[str, str, str], dict[str, Any]]
    after: dict[tuple[str, str, str], dict[str, Any]]


def parse_log(output: bytes, wanted: Iterable[str] | None = None) -> Iterator[LineChange]:
    """LineChanges from `git log -p -U0` output whose commits are marked
    `\\0C\\0<sha>\\0<unix time>\\0<subject>`. With `wanted` (lowercase substrings), only
    lines holding one of them are decoded."""
    needles = [w.encode() for w in wanted] if wanted is not None else None
    current: _Pending | None = None
    where: tuple[str, str] | None = None

    def flush(pending: _Pending | None) -> Iterator[LineChange]:
        if pending is None:
            return
        for key in sorted(pending.before.keys() | pending.after.keys()):
            before, after = pending.before.get(key), pending.after.get(key)
            if before == after:
                continue
            system, kind, record_id = key
            yield LineChange(pending.commit, system, kind, record_id, before, after)

    for line in output.split(b"\n"):
        if line.startswith(COMMIT_MARK):
            yield from flush(current)
            _, sha, stamp, subject = line[len(COMMIT_MARK) - 1 :].split(b"\x00", 3)
            current = _Pending(Commit.logged(sha, stamp, subject), {}, {})
            where = None
        elif line.startswith(b"diff --git "):
            # "diff --git a/PATH b/PATH": snapshot paths hold no spaces.
            path = line.split(b" ")[-1][2:].decode("utf-8", "replace")
            where = snapshot_of(path)
        elif where is not None and current is not None and line[1:4] == b"- {":
            if needles is not None:
                lowered = line.lower()
                if not any(n in lowered for n in needles):
                    continue
            record = record_of(line[1:])
            if record is None:
                continue
            key = (where[0], where[1], record["id"])
            (current.after if line[:1] == b"+" else current.before)[key] = record
    yield from flush(current)


# `git log` options: each commit's header, then only the lines it changed, as plain text.
CHANGED_LINES = (
    "--format=%x00C%x00%H%x00%ct%x00%s",
    "-p",
    "-U0",
    "--no-color",
    "--no-renames",
    "--no-ext-diff",
    "--",
)


def indexed_changes(
    run: Callable[..., bytes],
    paths: Sequence[str],
    keys: Sequence[str] = (),
    rev: str = "HEAD",
    keep: Keep | None = None,
) -> list[LineChange]:
    """Every change to the snapshot lines in `paths`, oldest first, read from the
    index of changed records (`audit.indexed`: partial records, id, email, username
    and status); commits the index cannot speak for are diffed (full records).

    With `keys` (index tokens, `changeindex.search_text`), only the commits whose
    message names one of them, and every commit with no index (with more than
    GREP_KEYS, every commit: `keep` is then what chooses). With `keep`, only the
    indexed records it keeps (`indexed.parse`). `run(*args, stdin=bytes)` runs git and
    returns its output.
    """
    return [
        change
        for _, changes in _snapshot_commits(run, paths, keys, rev, keep)
        for change in (changes if isinstance(changes, list) else changes.line_changes())
    ]


def indexed_counts(
    run: Callable[..., bytes], paths: Sequence[str], rev: str = "HEAD"
) -> list[tuple[Commit, dict[str, int]]]:
    """Every commit that changed snapshot lines in `paths`, oldest first, with how many
    records it added, removed and changed: counted from the index of changed records
    (no record is built), diffed where a commit carries none."""
    return [
        (commit, count_changes(changes) if isinstance(changes, list) else changes.counts())
        for commit, changes in _snapshot_commits(run, paths, (), rev, None)
        if (changes if isinstance(changes, list) else changes.lines)
    ]


def _snapshot_commits(
    run: Callable[..., bytes],
    paths: Sequence[str],
    keys: Sequence[str],
    rev: str,
    keep: Keep | None,
) -> list[tuple[Commit, IndexedCommit | list[LineChange]]]:
    """The commits `indexed_changes` reads, oldest first: each indexed one as its index
    names it, each other one with the line changes its diff holds."""
    walked, wanted = walk_of(paths)
    if keys and len(set(keys)) <= GREP_KEYS:
        named = [f"--grep={key}" for key in sorted(set(keys))]
        out = run("log", rev, *LOG_FORMAT, "-F", "-i", *named, "--", *walked)
        bare = run(
            "log", rev, "--format=%H", "--invert-grep", f"--grep={HEADER_PATTERN}",
            "--", *walked,
        )  # fmt: skip
    else:
        out, bare = run("log", rev, *LOG_FORMAT, "--", *walked), b""
    found = indexed.parse(out, snapshot_of, keep)
    read: list[tuple[Commit, IndexedCommit | list[LineChange]]] = [
        (named_commit.commit, named_commit)
        for named_commit in found.commits
        if wanted(named_commit.system, named_commit.kind)
    ]
    to_diff = [*found.unindexed, *(s for s in bare.decode().split() if s)]
    if not to_diff:
        return read
    diffed = run(
        "log", "--no-walk=unsorted", "--stdin", *CHANGED_LINES, *paths,
        stdin="".join(f"{sha}\n" for sha in dict.fromkeys(to_diff)).encode(),
    )  # fmt: skip
    by_commit: dict[str, tuple[Commit, list[LineChange]]] = {}
    for change in parse_log(diffed):
        by_commit.setdefault(change.commit.sha, (change.commit, []))[1].append(change)
    read += by_commit.values()
    # One order for both: the walk's (commits of one second keep their order).
    walk = run("log", rev, "--format=%H", "--", *walked).decode().split()
    position = {sha: index for index, sha in enumerate(reversed(walk))}
    return sorted(read, key=lambda item: position.get(item[0].sha, -1))


def walk_of(paths: Sequence[str]) -> tuple[list[str], Callable[[str, str], bool]]:
    """Pathspecs to walk `paths` with, and which (system, kind) snapshots they hold.

    Git compares a few pathspecs quickly and a hundred slowly (a year of every app's
    snapshot paths: 7.3 s, against 2.5 s for `state/apps`), so many snapshot paths are
    walked as their top directories and the snapshots of other systems are left out
    after. A commit that changed snapshots of two systems has no index to trust and
    is diffed on `paths` alone."""
    parts = [PurePosixPath(path).parts for path in paths]
    every = {kind for p in parts if len(p) == 2 for kind in _KINDS.get(p, ())}
    systems = {(p[2], ACCOUNT) for p in parts if p[:2] == (STATE, "apps") and len(p) > 2}
    systems |= {
        (PurePosixPath(p[2]).stem, IDENTITY)
        for p in parts
        if p[:2] == (STATE, "identities") and len(p) == 3
    }

    def wanted(system: str, kind: str) -> bool:
        return kind in every or (system, kind) in systems

    if len(paths) <= _FEW_PATHSPECS:
        return list(paths), wanted
    return sorted({"/".join(p[:2]) for p in parts}), wanted


_FEW_PATHSPECS = 4
_KINDS = {(STATE, "apps"): (ACCOUNT,), (STATE, "identities"): (IDENTITY,)}
