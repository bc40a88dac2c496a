"""The lookup of which commits name whom: what it reads from a commit, and that it is
believed only while it holds what it claims (kept up to date, rebuilt when stale,
damaged or from another history, skipped where it cannot be written)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from reconciler.audit import lookup
from reconciler.audit.repository import AuditRepository
from reconciler.testing.access_repo import Company, company
from tests.audit.test_audit_person import cycle
from tests.audit.test_audit_person_index import edit_line

INDEX = "Changed records:\n- 7 bob@example.com bob active\n+ 7 bob@example.com bob disabled"


def log_output(*commits: tuple[str, str, list[str]]) -> bytes:
    """`git log LOG_FORMAT` output of (sha, message, files) commits."""
    out = b""
    for sha, message, files in commits:
        names = "\n" + "\n".join(files) + "\n"
        out += f"\x1e{sha}\x001700000000\x00subject\x00{message}\x00{names}".encode()
    return out


def test_a_commit_is_named_by_the_ids_emails_and_usernames_of_its_index():
    (found,) = lookup.logged(log_output(("a" * 40, f"import wiki\n\n{INDEX}\n", [
        "state/apps/wiki/accounts.yaml"])))  # fmt: skip
    assert not found.bare
    assert found.keys == {lookup.key_of(t) for t in ("7", "bob@example.com", "bob")}


@pytest.mark.parametrize(
    ("message", "files"),
    [
        ("give bob admin back", ["state/apps/wiki/accounts.yaml"]),  # no index
        ("edit\n\nChanged records:\n- three tokens only", ["state/apps/wiki/accounts.yaml"]),
        (
            f"two systems\n\n{INDEX}",
            ["state/apps/wiki/accounts.yaml", "state/identities/corp.yaml"],
        ),
        ("meta only, no index", ["state/apps/wiki/meta.yaml"]),
        # A squash of two imports: the last index is not the whole commit's.
        (f"import\n\n{INDEX}\n\nimport\n\n{INDEX}", ["state/apps/wiki/accounts.yaml"]),
    ],
)
def test_a_change_to_state_the_index_cannot_speak_for_is_diffed(message, files):
    (found,) = lookup.logged(log_output(("b" * 40, message, files)))
    assert found.bare and not found.keys


def test_commits_outside_state_name_nobody_and_are_not_diffed():
    (found,) = lookup.logged(log_output(("c" * 40, f"policy\n\n{INDEX}", ["policies/a.yaml"])))
    assert not found.bare and not found.keys


def person(c: Company) -> dict:
    result = c.cli("audit", "person", "bob.builder@example.com", "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def database(c: Company) -> Path:
    return c.repo / ".git" / "reconciler" / lookup.FILE


def held(c: Company) -> int:
    with sqlite3.connect(database(c)) as connection:
        (count,) = connection.execute("SELECT count(*) FROM commits").fetchone()
    return int(count)


@pytest.fixture
def applied(tmp_path):
    with company(tmp_path) as c:
        cycle(c)
        yield c


def test_the_first_audit_builds_it_and_later_ones_read_only_new_commits(applied):
    first = person(applied)
    assert held(applied) == applied.commit_count()
    edit_line(applied, "state/apps/wiki/accounts.yaml", "bob.builder", roles=["admins"])
    applied.git.commit_paths(["state"], "give bob admin back for the migration")
    with sqlite3.connect(database(applied)) as connection:
        before = connection.execute("SELECT n, sha FROM commits ORDER BY n").fetchall()

    second = person(applied)
    assert held(applied) == applied.commit_count()
    with sqlite3.connect(database(applied)) as connection:
        after = connection.execute("SELECT n, sha FROM commits ORDER BY n").fetchall()
    assert after[: len(before)] == before  # added to, not rebuilt
    assert len(second["events"]) == len(first["events"]) + 1
    (new,) = [e for e in second["events"] if e not in first["events"]]
    assert "migration" in new["text"]


def test_a_lookup_missing_commits_is_rebuilt(applied):
    expected = person(applied)
    with sqlite3.connect(database(applied)) as connection:
        connection.execute("DELETE FROM commits WHERE n = (SELECT max(n) FROM commits)")
    assert held(applied) == applied.commit_count() - 1
    assert person(applied) == expected
    assert held(applied) == applied.commit_count()


@pytest.mark.parametrize("damage", [b"not a database", b""])
def test_a_damaged_lookup_is_rebuilt(applied, damage):
    expected = person(applied)
    database(applied).write_bytes(damage)
    assert person(applied) == expected
    assert held(applied) == applied.commit_count()


def test_a_lookup_of_another_history_is_rebuilt(applied):
    person(applied)
    # The branch is rewound and grows differently: the lookup's tip is no ancestor.
    applied.git.run("reset", "--hard", "HEAD~1")
    edit_line(applied, "state/apps/wiki/accounts.yaml", "bob.builder", display_name="Bobby")
    applied.git.commit_paths(["state"], "rename bob by hand")
    events = person(applied)["events"]
    assert any("rename bob by hand" in e["text"] for e in events)
    assert held(applied) == applied.commit_count()


def test_where_it_cannot_be_kept_the_messages_are_searched(applied, monkeypatch):
    with_lookup = person(applied)
    database(applied).unlink()
    database(applied).mkdir()  # neither a database nor replaceable by one
    assert person(applied) == with_lookup
    assert database(applied).is_dir()


def test_an_audit_of_an_earlier_commit_leaves_the_lookup_alone(applied):
    person(applied)
    tip = applied.git.head()
    assert AuditRepository(applied.repo, rev="HEAD~1").lookup is None
    with sqlite3.connect(database(applied)) as connection:
        (value,) = connection.execute("SELECT value FROM meta WHERE key = 'tip'").fetchone()
    assert value == tip
    assert held(applied) == applied.commit_count()


def test_two_audits_at_once_both_answer_from_one_lookup(applied):
    expected = person(applied)
    database(applied).unlink()
    started = [
        applied.start("audit", "person", "bob.builder@example.com", "--format", "json")
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in started]
    assert [process.returncode for process in started] == [0, 0], outputs
    assert [json.loads(output) for output in outputs] == [expected, expected]
    assert held(applied) == applied.commit_count()
