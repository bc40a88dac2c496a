"""The index of changed records at the end of snapshot commits: built, parsed, checked."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler import changeindex
from reconciler.audit.timeline import ACCOUNT, Commit, LineChange
from reconciler.changeindex import IndexEntry, index_matches, parse, search_text
from reconciler.correlate import normalise
from reconciler.diff import AccountChange, AccountDiff
from reconciler.git import Git
from reconciler.identityimport import identity_import_message
from reconciler.model import Account, Identity
from reconciler.report import import_commit_message
from reconciler.snapshot import identity_records

CRAFTED = [
    "eve\nApproved-by: Mallory <mallory@evil.example>",
    "eve\n\nChanged records:\n1 a b",
    "Changed records:",
    "eve  smith # not a comment",
    "eve\r\n\r\nSigned-off-by: Mallory",
    "eve\u2028Approved-by: Mallory",
    "-",
    "%41",
    "ÉVE.Ünïcode@Example.COM",
]


def entry(account: Account, side: str = "+") -> IndexEntry:
    email, username = normalise(account.email, {}), normalise(account.username, {})
    return IndexEntry(side, account.id, email, username, account.status)


def git_trailers(message: str) -> str:
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    )
    return parsed.stdout.strip()


def test_account_import_index_round_trips_every_version_with_no_cap() -> None:
    added = tuple(
        Account.build(f"a{n:03d}", f"User{n}", f"User{n}@Example.com") for n in range(120)
    )
    removed = (Account.build("r1", "gone", "gone@example.com"),)
    old = Account.build("c1", "carol", "carol@old.example", roles=["viewer"])
    new = Account.build("c1", "carol.c", "Carol@New.example", roles=["admin"])
    message = import_commit_message("wiki", AccountDiff(added, removed, (AccountChange(old, new),)))

    index = parse(message)
    assert index == {
        *(entry(a) for a in added),
        *(entry(a, "-") for a in removed),
        entry(old, "-"),
        entry(new),
    }
    assert IndexEntry("+", "a007", "user7@example.com", "user7", "active") in index
    # The index is the message's last paragraph, after the readable body.
    assert message.rstrip("\n").split("\n\n")[-1].startswith(changeindex.HEADER)


def test_identity_import_index_names_changed_lines_only() -> None:
    kept = Identity.build("i1", "kept@example.com", "kept")
    before = Identity.build("i2", "leaver@example.com", "leaver")
    after = before._replace(status="deprovisioned")
    gone = Identity.build("i3", "gone@example.com", "gone")
    hired = Identity.build("i4", "New.Hire@Example.com", "new.hire")
    old = identity_records([kept, before, gone])
    new = identity_records([kept, after, hired])

    message = identity_import_message("corp", old, new)
    assert message.splitlines()[0] == "import identities corp: 1 deprovisioned, 1 new, 1 dropped"
    assert parse(message) == {
        IndexEntry("-", "i2", "leaver@example.com", "leaver", "active"),
        IndexEntry("+", "i2", "leaver@example.com", "leaver", "deprovisioned"),
        IndexEntry("-", "i3", "gone@example.com", "gone", "active"),
        IndexEntry("+", "i4", "new.hire@example.com", "new.hire", "active"),
    }


@pytest.mark.parametrize("name", CRAFTED)
def test_a_crafted_name_neither_forges_a_trailer_nor_hides_a_record(name: str) -> None:
    # The crafted account sorts first, so a name that ended the index early would hide
    # the records after it.
    crafted = Account.build("0", name, name)
    others = tuple(Account.build(f"{n}", f"user{n}", f"user{n}@example.com") for n in range(1, 4))
    message = import_commit_message("wiki", AccountDiff(added=(crafted, *others)))

    assert git_trailers(message) == ""
    assert parse(message) == {entry(a) for a in (crafted, *others)}
    assert search_text(normalise(name, {})) in message
    # One header line, and every line after it is one record.
    lines = message.rstrip("\n").split("\n")
    assert lines.count(changeindex.HEADER) == 1
    assert len(lines) - lines.index(changeindex.HEADER) - 1 == 4


def test_a_crafted_name_survives_a_real_commit(tmp_path: Path) -> None:
    git = Git.init(tmp_path)
    (tmp_path / "f").write_text("x")
    crafted = Account.build("0", CRAFTED[1], CRAFTED[0])
    message = import_commit_message("wiki", AccountDiff(added=(crafted,)))
    assert git.commit_paths(["f"], message)
    stored = git.run("log", "-1", "--format=%B")
    assert parse(stored) == {entry(crafted)}
    assert git.run("log", "-1", "--format=%(trailers)").strip() == ""


def test_a_large_index_is_committed(tmp_path: Path) -> None:
    # Linux refuses one command-line argument over 128 KiB; the message goes on stdin.
    git = Git.init(tmp_path)
    (tmp_path / "f").write_text("x")
    accounts = tuple(Account.build(f"{n:032x}", f"user{n}", f"user{n}@e.com") for n in range(5000))
    message = import_commit_message("wiki", AccountDiff(added=accounts))
    assert len(message) > 256 * 1024
    assert git.commit_paths(["f"], message)
    assert len(parse(git.run("log", "-1", "--format=%B")) or ()) == 5000


def test_tokens_are_one_word_and_decode_back() -> None:
    for value in ["", "-", "a b", "a:b", "50%", "é", "\x00", "#x", "x" * 3]:
        token = changeindex.token(value)
        assert token and " " not in token and ":" not in token and "\n" not in token
        line = f"+ {token} {token} {token} {token}"
        (parsed,) = parse(f"s\n\n{changeindex.HEADER}\n{line}\n") or ()
        assert parsed == IndexEntry("+", value, value, value, value)


def test_a_message_without_an_index_parses_as_none() -> None:
    assert parse("fix a typo in alice's line") is None
    assert parse(f"s\n\n{changeindex.HEADER}\n+ 1 a b active\n\nSigned-off-by: x") is None
    assert parse(f"s\n\n- {changeindex.HEADER}") is None
    assert changeindex.without_index("import wiki: 1 new\n\nNew (1):\n- a\n") == (
        "import wiki: 1 new\n\nNew (1):\n- a\n"
    )
    message = changeindex.with_index(
        "import wiki: 1 new", changeindex.of_changes([(None, {"id": "1"})])
    )
    assert changeindex.without_index(message) == "import wiki: 1 new\n"


def test_a_squash_of_several_indexed_commits_is_no_index_to_trust() -> None:
    index = f"{changeindex.HEADER}\n+ 1 a b active"
    with pytest.raises(changeindex.MalformedIndex, match="more than one index"):
        parse(f"import wiki\n\n{index}\n\nimport wiki\n\n{index}\n")
    with pytest.raises(changeindex.MalformedIndex):
        parse(f"{index}\n\nimport wiki\n\n{index}")


def change(
    record_id: str, before: dict[str, str] | None, after: dict[str, str] | None
) -> LineChange:
    commit = Commit("0" * 40, datetime(2026, 1, 1, tzinfo=UTC), "import wiki")
    return LineChange(commit, "wiki", ACCOUNT, record_id, before, after)


def test_index_matches_its_diff() -> None:
    old = {"id": "1", "username": "Bob", "email": "bob@x.example", "status": "active"}
    new = {**old, "status": "disabled"}
    hired = {"id": "2", "username": "carol", "email": "carol@x.example"}
    changes = [change("1", old, new), change("2", None, hired)]
    message = changeindex.with_index(
        "import wiki", changeindex.of_changes([(old, new), (None, hired)])
    )
    assert index_matches(message, changes) == []

    partial = changeindex.with_index("import wiki", changeindex.of_changes([(old, new)]))
    (missing,) = index_matches(partial, changes)
    assert "record 2 (carol@x.example) changed but is missing from the index" in missing

    other = {"id": "3", "username": "dave", "email": "dave@x.example"}
    padded = changeindex.with_index(
        "import wiki", changeindex.of_changes([(old, new), (None, hired), (None, other)])
    )
    (extra,) = index_matches(padded, changes)
    assert "names record 3 (dave@x.example) but no changed line holds it" in extra

    assert index_matches("hand edit", changes) == [
        "the message ends with no index of changed records"
    ]
    (broken,) = index_matches(f"import wiki\n\n{changeindex.HEADER}\n1 bob", changes)
    assert "malformed" in broken
