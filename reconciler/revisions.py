"""Snapshots as they were at a point of the access repo's history (`reconciler diff`).

A point is a git revision, or a date meaning the last commit on the main branch at or
before the end of that day (UTC). A snapshot at a revision is read from git's objects,
with no checkout, through the same reader as the working tree's (`reconciler.snapshot`),
so that an edited or sharded file reads the same in history as on disk.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TypeVar

from reconciler import snapshot
from reconciler.errors import GitError, SnapshotError
from reconciler.git import Git

DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
T = TypeVar("T")


class RevisionError(GitError):
    """A revision or date names no commit of the access repo."""


@dataclass(frozen=True)
class Revision:
    """A commit of the access repo, and how the user named it."""

    spec: str
    commit: str
    date: str  # the commit's committer date, ISO 8601

    @property
    def short(self) -> str:
        return self.commit[:12]

    def to_data(self) -> dict[str, str]:
        return {"rev": self.spec, "commit": self.commit, "date": self.date}


def resolve(git: Git, spec: str, main_branch: str = "main") -> Revision:
    """The commit `spec` names: a revision git knows, or a date YYYY-MM-DD."""
    if DATE.fullmatch(spec):
        return _at_date(git, spec, main_branch)
    # A leading dash would be read by git as an option.
    commit = None if spec.startswith("-") or not spec else git.head(spec)
    if commit is None:
        raise RevisionError(
            f"revision {spec!r} does not exist in {git.root}; give a commit, branch or tag "
            "(see `git log`), or a date as YYYY-MM-DD"
        )
    return Revision(spec, commit, _commit_date(git, commit))


def _at_date(git: Git, spec: str, main_branch: str) -> Revision:
    try:
        day = date.fromisoformat(spec)
    except ValueError as exc:
        raise RevisionError(f"{spec!r} is not a date; write it as YYYY-MM-DD") from exc
    branch = f"refs/heads/{main_branch}"
    if git.head(branch) is None:
        raise RevisionError(
            f"branch {main_branch!r} does not exist in {git.root}, so a date cannot be read "
            "on it; give a commit instead"
        )
    end_of_day = f"{day.isoformat()}T23:59:59+00:00"
    found = git.run("rev-list", "-1", "--first-parent", f"--before={end_of_day}", branch)
    commit = found.strip()
    if not commit:
        first = git.run("rev-list", "--first-parent", "--max-parents=0", branch).split()
        since = _commit_date(git, first[-1]) if first else "?"
        raise RevisionError(
            f"no commit on {main_branch!r} at or before {spec} (end of day, UTC): the "
            f"history begins {since}; give a later date"
        )
    return Revision(spec, commit, _commit_date(git, commit))


def _commit_date(git: Git, commit: str) -> str:
    return git.run("log", "-1", "--format=%cI", commit).strip()


# --- snapshot files at a revision -------------------------------------------------------


def files(git: Git, rev: Revision, *paths: str) -> dict[str, str]:
    """Path → blob id of the files under `paths` at `rev`."""
    out = git.run("ls-tree", "-r", "-z", rev.commit, "--", *paths)
    found: dict[str, str] = {}
    for entry in out.split("\0"):
        if entry:
            info, path = entry.split("\t", 1)
            _mode, kind, blob = info.split()
            if kind == "blob":
                found[path] = blob
    return found


def account_files(git: Git, rev: Revision, app: str) -> dict[str, str]:
    """The files of an app's accounts snapshot at `rev` (accounts.yaml or its shards)."""
    base = f"{snapshot.STATE_DIR}/apps/{app}"
    found = files(git, rev, f"{base}/accounts.yaml", f"{base}/accounts")
    return {p: b for p, b in found.items() if p.endswith(".yaml")}


def identity_files(git: Git, rev: Revision, source: str) -> dict[str, str]:
    return files(git, rev, f"{snapshot.STATE_DIR}/identities/{source}.yaml")


def names(git: Git, rev: Revision, kind: str) -> list[str]:
    """Apps (`kind` "apps") or identity sources ("identities") with a snapshot at `rev`."""
    found = files(git, rev, f"{snapshot.STATE_DIR}/{kind}")
    if kind == "apps":
        return sorted({p.split("/")[2] for p in found if "/accounts" in p})
    return sorted(
        p.split("/")[2].removesuffix(".yaml")
        for p in found
        if p.count("/") == 2 and not p.endswith(".meta.yaml")
    )


def read(git: Git, rev: Revision, blobs: Mapping[str, str], reader: Callable[[Path], T]) -> T:
    """Run a snapshot reader over the files `blobs` names (path → blob id) as they are
    at `rev`.

    The files are extracted from `rev` (one `git archive`) into a temporary directory
    laid out like the access repo; a problem in one is reported as `REV:PATH:LINE`.
    """
    with tempfile.TemporaryDirectory(prefix=f"reconciler-diff-{rev.short}-") as tmp:
        root = Path(tmp)
        if blobs:
            git.extract(rev.commit, sorted(blobs), root)
        try:
            return reader(root)
        except SnapshotError as exc:
            raise located(exc) from exc


# A copy made by `read`; its name carries the commit it was read at.
_COPY = re.compile(r"[^\s'\"`]*reconciler-diff-([0-9a-f]{12})-[^/\s]*/")


def located(error: SnapshotError) -> SnapshotError:
    """`error` with the paths of `read`'s temporary copies shown as COMMIT:PATH.

    Records are decoded when a diff first asks for them, after the copy is gone, so the
    caller of a diff translates its errors too. The hint to restore the file with git
    is dropped: a file in history is not restored.
    """
    message = _COPY.sub(r"\1:", str(error)).split("\n  hint:")[0]
    return SnapshotError(message)
