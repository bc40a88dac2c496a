"""Commits as a `git fast-import` stream: many commits, on one branch or several, written
by one git process instead of half a dozen per commit.

A check of a few hundred apps makes an import commit per changed app and a plan branch
per plan; through the porcelain each costs `add`, two `diff --cached`, `commit` and
`rev-parse` (or `read-tree`, `hash-object`, `update-index`, `write-tree`, `commit-tree`
and `update-ref` for a branch), and process start-up dominated the whole check. git's own
bulk importer takes the series in one stream, writes the objects, and moves each branch
once at the end, refusing to move one that is not an ancestor of the new commits (another
run moved it meanwhile) unless told to.

Pure: the stream is built here; `Git.fast_import` runs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

FILE_MODE = b"100644"


@dataclass(frozen=True)
class Commit:
    """One commit of a stream: on `ref`, child of `parent` (a sha, or None: the commit
    before it on the same ref in the stream), with `files`: a path's new content (bytes),
    the sha of a blob git already holds (str), or None to delete the path."""

    ref: str
    message: str
    files: Mapping[str, bytes | str | None]
    committer: tuple[str, str]  # (name, email); also the author
    parent: str | None = None
    mark: int = 0


def quote(path: str) -> bytes:
    """A path as fast-import reads it: C-style quoted when it holds a character that
    would end or reshape the line."""
    if not any(c in path for c in '"\\\n') and not path.startswith(" "):
        return path.encode("utf-8")
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return b'"' + escaped.encode("utf-8") + b'"'


def person(who: tuple[str, str]) -> bytes:
    name, email = who
    for value in who:
        if any(c in value for c in "<>\n"):
            raise ValueError(f"{value!r} cannot name a git author or committer")
    return f"{name} <{email}> now".encode()


def data(payload: bytes) -> bytes:
    return b"data %d\n" % len(payload) + payload + b"\n"


def stream(commits: list[Commit]) -> Iterator[bytes]:
    """The stream of `commits`, in order, as pieces to write (file contents are not
    copied into one buffer: a snapshot can be tens of megabytes)."""
    for commit in commits:
        header = b"commit " + commit.ref.encode() + b"\n"
        header += b"mark :%d\n" % commit.mark
        header += b"committer " + person(commit.committer) + b"\n"
        header += data(commit.message.encode("utf-8"))
        if commit.parent is not None:
            header += b"from " + commit.parent.encode() + b"\n"
        yield header
        for path, content in sorted(commit.files.items()):
            if content is None:
                yield b"D " + quote(path) + b"\n"
            elif isinstance(content, str):
                yield b"M " + FILE_MODE + b" " + content.encode() + b" " + quote(path) + b"\n"
            else:
                yield b"M " + FILE_MODE + b" inline " + quote(path) + b"\n"
                yield b"data %d\n" % len(content)
                yield content
                yield b"\n"
        yield b"\n"
    yield b"done\n"


def marks(text: str) -> dict[int, str]:
    """An `--export-marks` file: mark number → commit sha."""
    found = {}
    for line in text.splitlines():
        mark, _, sha = line.partition(" ")
        if mark.startswith(":") and sha:
            found[int(mark[1:])] = sha
    return found
