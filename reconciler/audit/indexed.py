"""Snapshot changes read from commit messages: the index of changed records.

Every snapshot commit the tool makes ends with the index of the records it changed,
each version's id, email, username and status (`reconciler.changeindex`). That is
enough to count an import's new, removed and changed accounts and to follow every
status transition, so `audit app`, `audit evidence` and a check's detection times read
messages instead of having git diff every version of every snapshot.

A commit the index cannot speak for (no index, a malformed one, or files of more than
one snapshot) is returned by sha, for the caller to diff: a hand edit is never skipped.

Pure: parses the output of `git log` with `LOG_FORMAT`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from reconciler import changeindex
from reconciler.audit.timeline import Commit, LineChange
from reconciler.changeindex import AFTER, BEFORE, IndexEntry, MalformedIndex

# `git log` options: per commit, a record separator, its sha, time, subject and message,
# then the files it touched.
LOG_FORMAT = ("--format=%x1e%H%x00%ct%x00%s%x00%B%x00", "--name-only", "--no-renames")


# Whether to keep a record, asked of one of its index lines split into its tokens
# (`-`/`+`, id, email, username, status), still encoded (`changeindex.tokens_of`).
Keep = Callable[[Sequence[str]], bool]


def naming(tokens: frozenset[str]) -> Keep:
    """Keep a record when one of its lines names one of `tokens` (`tokens_of`) as its
    id, email or username exactly (a search key also matches inside longer names)."""

    def keep(line_tokens: Sequence[str]) -> bool:
        return line_tokens[1] in tokens or line_tokens[2] in tokens or line_tokens[3] in tokens

    return keep


@dataclass(frozen=True)
class IndexedCommit:
    """One snapshot commit as its index names it: the versions of the records it
    changed in one system's snapshot, as checked index lines (decoded when asked)."""

    commit: Commit
    system: str
    kind: str
    lines: tuple[str, ...]

    @property
    def entries(self) -> list[IndexEntry]:
        return [changeindex.entry(line) for line in self.lines]

    def line_changes(self) -> list[LineChange]:
        """One line change per record, its before and after versions (partial records)."""
        return changes_of(self.commit, self.system, self.kind, self.entries)

    def counts(self) -> dict[str, int]:
        """How many records the commit added, removed and changed (`count_changes`),
        without decoding them."""
        sides: dict[str, set[str]] = {}
        for line in self.lines:
            sides.setdefault(changeindex.id_token(line), set()).add(line[0])
        counts = {"new": 0, "removed": 0, "changed": 0}
        for found in sides.values():
            counts["changed" if len(found) == 2 else "new" if AFTER in found else "removed"] += 1
        return counts


@dataclass(frozen=True)
class Indexed:
    """What the messages said: the indexed commits in the order they happened, and the
    commits to diff instead."""

    commits: tuple[IndexedCommit, ...]
    unindexed: tuple[str, ...]  # shas, newest first as git walked them


def changes_of(
    commit: Commit, system: str, kind: str, entries: Iterable[IndexEntry]
) -> list[LineChange]:
    """The line changes an index names: one per record, its before and after versions."""
    sides: dict[str, dict[str, IndexEntry]] = {}
    for entry in entries:
        sides.setdefault(entry.id, {})[entry.side] = entry
    found = []
    for record_id in sorted(sides):
        versions = sides[record_id]
        before, after = versions.get(BEFORE), versions.get(AFTER)
        found.append(
            LineChange(
                commit,
                system,
                kind,
                record_id,
                before.record() if before else None,
                after.record() if after else None,
            )
        )
    return found


def parse(
    output: bytes,
    locate: Callable[[str], tuple[str, str] | None],
    keep: Keep | None = None,
    containing: Sequence[str] = (),
) -> Indexed:
    """`git log LOG_FORMAT` output as line changes. `locate` gives a path's snapshot
    (system, kind), None for any other file. With `keep`, only the records one of whose
    lines it keeps (both versions of those), asked with the line's tokens undecoded;
    with `containing` (index tokens), only entries whose line holds one of them are
    read (`changeindex.parse`)."""
    where: dict[str, tuple[str, str] | None] = {}
    found: list[IndexedCommit] = []
    unindexed: list[str] = []
    for chunk in output.split(b"\x1e")[1:]:
        sha_raw, stamp, subject, body, names = chunk.split(b"\x00", 4)
        sha = sha_raw.decode()
        systems: set[tuple[str, str]] = set()
        for name in names.decode("utf-8", "replace").split("\n"):
            if name:
                if name not in where:
                    where[name] = locate(name)
                located = where[name]
                if located is not None:
                    systems.add(located)
        if not systems:
            continue  # only meta or role files: no snapshot lines
        try:
            lines = changeindex.lines_of(body.decode("utf-8", "replace"), containing)
        except MalformedIndex:
            lines = None
        if lines is None or len(systems) != 1:
            unindexed.append(sha)
            continue
        ((system, kind),) = systems
        if keep is not None:
            split = [line.split(" ") for line in lines]
            wanted = {tokens[1] for tokens in split if keep(tokens)}
            if not wanted:
                continue
            lines = [line for line, tokens in zip(lines, split, strict=True) if tokens[1] in wanted]
        found.append(IndexedCommit(Commit.logged(sha, stamp, subject), system, kind, tuple(lines)))
    # git walks newest first; the commits are wanted in the order they happened.
    return Indexed(tuple(reversed(found)), tuple(unindexed))
