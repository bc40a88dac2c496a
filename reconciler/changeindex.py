"""The index of changed records that ends every snapshot commit the tool makes.

A commit that changes snapshot lines (an import, an identity import, an apply) ends its
message with one paragraph naming every record whose line it changed, before and after:

    Changed records:
    - 583231 alice@acme.com alice active
    + 583231 alice@acme.com alice disabled
    + 583232 bob@acme.com bob.builder active

One line per distinct version: `-` for the version before the commit, `+` for the one
after (a new record has only `+`, a removed one only `-`), then the record's id, its
email and username normalised as correlation normalises them (case, surrounding space,
Unicode NFKC; no domain aliases) and its status. So the index alone says what kind of
change each record had and every status transition: `audit app` counts imports and
`audit evidence` finds who left and when each account went from messages, without
diffing the snapshots. `reconciler audit person` reads messages, not diffs, to find the few commits
that can hold a person's lines (`git log --grep`), then diffs only those; a year of
history is searched in about a second instead of having git diff every version of
every snapshot (docs/audit.md).

Every value is one token of `A-Z a-z 0-9 . _ @ + -` and `%XX` (each other UTF-8 byte,
upper-case hex); an empty value is `-`. So a name from an app can hold no space, colon,
newline or `#`: it cannot end the index early, start a paragraph of its own, or pass for
an `Approved-by:` trailer, and the paragraph parses one way only. The encoding is the
same character by character, so a search key encoded with `search_text` is a substring
of every token that holds the key.

Pure: no files, no git.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote_to_bytes

from reconciler.correlate import normalise
from reconciler.diff import AccountDiff
from reconciler.inert import commit

HEADER = "Changed records:"
EMPTY = "-"
# The header as a `git log --grep` pattern (basic regex): a line of its own.
HEADER_PATTERN = f"^{HEADER}$"

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@+-")
# An index line, checked as a whole paragraph at once (a year holds millions of lines):
# tokens of safe characters and `%`, every `%` followed by two upper-case hex digits.
_CHARS = r"[A-Za-z0-9._@+\-%]+"
_LINE = rf"[-+] {_CHARS} {_CHARS} {_CHARS} {_CHARS}"
_ENTRY = re.compile(_LINE)
_LINES = re.compile(rf"(?:{_LINE}\n)*{_LINE}")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-F]{2})")
BEFORE, AFTER = "-", "+"


class Versioned(Protocol):
    """A line change: a record's version before and after a commit (None: absent)."""

    @property
    def before(self) -> Mapping[str, Any] | None: ...

    @property
    def after(self) -> Mapping[str, Any] | None: ...


class IndexEntry(NamedTuple):
    """One version of one changed record, as the index names it (a tuple: a year of
    indexes holds millions)."""

    side: str  # BEFORE or AFTER the commit
    id: str
    email: str  # normalised, no domain aliases
    username: str  # normalised, no domain aliases
    status: str

    @classmethod
    def of(cls, record: Mapping[str, Any], side: str) -> IndexEntry:
        return cls(
            side,
            str(record.get("id", "")),
            normalise(str(record.get("email") or ""), {}),
            normalise(str(record.get("username") or ""), {}),
            str(record.get("status") or ""),
        )

    def line(self) -> str:
        fields = (self.id, self.email, self.username, self.status)
        return " ".join([self.side, *(token(f) for f in fields)])

    def record(self) -> dict[str, str]:
        """The version as a partial record: what the index knows of it."""
        return {
            "id": self.id,
            "email": self.email,
            "username": self.username,
            "status": self.status,
        }


def search_text(value: str) -> str:
    """`value` encoded character by character as index tokens are: a key to look for
    in messages (`git log -F -i --grep`)."""
    out = []
    for char in value:
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def token(value: str) -> str:
    """`value` as one index token: `-` when empty, `%2D` for a lone hyphen."""
    if not value:
        return EMPTY
    return "%2D" if value == EMPTY else search_text(value)


class MalformedIndex(ValueError):
    """A message's last paragraph starts with the index header but does not parse."""


def untoken(text: str) -> str:
    """A token's value (`text` as `parse` checked it: `%` is always followed by two
    hex digits)."""
    if text == EMPTY:
        return ""
    if "%" not in text:
        return text  # safe characters only: the value itself
    try:
        return unquote_to_bytes(text).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise MalformedIndex(f"{text!r} is not UTF-8 once decoded") from exc


def paragraph(entries: Iterable[IndexEntry]) -> str:
    """The index paragraph: the header, then one line per entry, sorted."""
    return "\n".join([HEADER, *(e.line() for e in sorted(set(entries)))])


Pair = tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]


def entries_of(pairs: Iterable[Pair]) -> set[IndexEntry]:
    """The entries of changed records' (before, after) versions; None is no version."""
    found = set()
    for before, after in pairs:
        if before is not None:
            found.add(IndexEntry.of(before, BEFORE))
        if after is not None:
            found.add(IndexEntry.of(after, AFTER))
    return found


def of_changes(pairs: Iterable[Pair]) -> str:
    """The index paragraph of changed records' (before, after) versions."""
    return paragraph(entries_of(pairs))


def of_account_diff(diff: AccountDiff) -> str:
    """The index of an account diff: new accounts, removed ones, and both versions of
    each changed one."""
    pairs: list[Pair] = [(None, a.to_record()) for a in diff.added]
    pairs += [(a.to_record(), None) for a in diff.removed]
    pairs += [(c.old.to_record(), c.new.to_record()) for c in diff.changed]
    return of_changes(pairs)


def with_index(message: str, index: str) -> str:
    """`message` with the index paragraph as its last part."""
    return f"{message.rstrip()}\n\n{index}\n"


def without_index(message: str) -> str:
    """`message` without its index paragraph, for where people read it (a pull request
    body lists the import messages)."""
    head, found, _ = _split(message)
    return head + "\n" if found else message


def _split(message: str) -> tuple[str, bool, list[str]]:
    lines = message.rstrip("\n").split("\n")
    for start in range(len(lines) - 1, -1, -1):
        if lines[start] == HEADER and (start == 0 or lines[start - 1] == ""):
            return "\n".join(lines[:start]).rstrip("\n"), True, lines[start + 1 :]
        if lines[start] == "":
            break
    return message, False, []


def parse(message: str, containing: Sequence[str] = ()) -> frozenset[IndexEntry] | None:
    """The index at the end of `message`; None if its last paragraph is no index.
    With `containing` (index tokens), only the entries of lines holding one of them:
    the whole paragraph is still checked.

    Raises MalformedIndex when the last paragraph starts with the header but a line
    after it is not `<-|+> <id> <email> <username> <status>` in index tokens, or when
    the message holds more than one index (a squash of several commits).
    """
    lines = lines_of(message, containing)
    return None if lines is None else frozenset(entry(line) for line in lines)


def lines_of(message: str, containing: Sequence[str] = ()) -> list[str] | None:
    """The lines of `parse`'s index, checked but not decoded (`entry` decodes one)."""
    _, found, lines = _split(message)
    if not found:
        return None
    if message.count(f"\n{HEADER}\n") + message.startswith(f"{HEADER}\n") > 1:
        # Several commits' messages squashed into one: the last index is not the
        # commit's, and the others are not at the end.
        raise MalformedIndex("the message holds more than one index")
    text = "\n".join(lines)
    if _LINES.fullmatch(text) is None or ("%" in text and _BAD_ESCAPE.search(text)):
        for number, line in enumerate(lines, 1):
            if _ENTRY.fullmatch(line) is None or _BAD_ESCAPE.search(line):
                raise MalformedIndex(
                    f"line {number} of the index is not `<-|+> <id> <email> <username> <status>`"
                )
    return _holding(text, containing) if containing else lines


def _holding(text: str, containing: Sequence[str]) -> list[str]:
    """The lines of `text` holding one of `containing`, in order: found by searching
    the whole text for each (an index can hold hundreds of thousands of lines)."""
    spans = set()
    for needle in containing:
        at = text.find(needle)
        while at >= 0:
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            spans.add((start, end))
            at = text.find(needle, end)
    return [text[start:end] for start, end in sorted(spans)]


def entry(line: str) -> IndexEntry:
    """The entry of one index line that `lines_of` checked."""
    side, record_id, email, username, status = line.split(" ")
    return IndexEntry(side, untoken(record_id), untoken(email), untoken(username), untoken(status))


def tokens_of(values: Iterable[str]) -> frozenset[str]:
    """`values` as index tokens, to compare with a line's tokens without decoding it
    (the encoding is one to one); empty values are left out."""
    return frozenset(token(value) for value in values if value)


def id_token(line: str) -> str:
    """The record id of one checked index line, still encoded (the encoding is one to
    one, so equal tokens are equal ids)."""
    return line.split(" ", 2)[1]


def index_matches(message: str, line_changes: Sequence[Versioned]) -> list[str]:
    """What is wrong with `message`'s index against the lines its commit changed
    (`line_changes`: every changed snapshot line of that one commit); empty if it
    names exactly the changed records' versions.

    A version the index leaves out would hide that record's change from `audit person`;
    an entry no changed line holds means the index describes another diff.
    """
    try:
        index = parse(message)
    except MalformedIndex as exc:
        return [f"the index of changed records is malformed: {exc}"]
    if index is None:
        return ["the message ends with no index of changed records"]
    expected = entries_of((change.before, change.after) for change in line_changes)
    problems = [
        f"record {commit(e.id, max_length=100)} ({commit(e.email or e.username, max_length=100)}) "
        "changed but is missing from the index"
        for e in sorted(expected - index)
    ]
    problems += [
        f"the index names record {commit(e.id, max_length=100)} "
        f"({commit(e.email or e.username, max_length=100)}) but no changed line holds it"
        for e in sorted(index - expected)
    ]
    return problems


__all__ = [
    "HEADER",
    "HEADER_PATTERN",
    "IndexEntry",
    "MalformedIndex",
    "entries_of",
    "entry",
    "id_token",
    "index_matches",
    "lines_of",
    "of_account_diff",
    "of_changes",
    "paragraph",
    "parse",
    "search_text",
    "token",
    "tokens_of",
    "with_index",
    "without_index",
]
