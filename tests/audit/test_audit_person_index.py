"""`audit person` through the index of changed records: commits without one (hand edits,
earlier releases) and apps matched on a field the index does not name are still
searched line by line."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import pytest

from reconciler import changeindex, demo
from reconciler.audit.person import audit_person
from reconciler.audit.repository import AuditRepository
from reconciler.commands import open_repo
from reconciler.config import MatchRule, Settings
from reconciler.testing.access_repo import Company, company
from tests.audit.test_audit_person import cycle

# Every test runs with the lookup and with a search of the messages.
pytestmark = pytest.mark.usefixtures("lookup_or_messages")


def edit_line(c: Company, path: str, username: str, **fields: object) -> None:
    """Change one account's line by hand, as a person editing the file would."""
    file = c.repo / path
    lines = file.read_bytes().split(b"\n")
    for n, line in enumerate(lines):
        if line.startswith(b"- {") and orjson.loads(line[2:]).get("username") == username:
            lines[n] = b"- " + orjson.dumps({**orjson.loads(line[2:]), **fields})
            break
    else:
        raise AssertionError(f"no line for {username}")
    file.write_bytes(b"\n".join(lines))


def test_every_snapshot_commit_of_a_cycle_carries_its_index(tmp_path):
    with company(tmp_path) as c:
        cycle(c)
        history = AuditRepository(c.repo)
        snapshots = history.snapshot_commits(["state/identities", "state/apps"])
        assert len(snapshots) >= 4  # identity and app imports, a later import, the apply
        for commit, changes in snapshots:
            message = c.git.run("log", "-1", "--format=%B", commit.sha)
            assert changeindex.index_matches(message, changes) == [], commit.subject


def test_a_hand_edit_without_an_index_is_still_searched(tmp_path):
    with company(tmp_path) as c:
        cycle(c)
        edit_line(c, "state/apps/wiki/accounts.yaml", "bob.builder", roles=["admins", "viewers"])
        c.git.commit_paths(["state"], "give bob admin back for the migration")
        assert changeindex.parse(c.git.run("log", "-1", "--format=%B")) is None

        result = c.cli("audit", "person", "bob.builder@example.com", "--format", "json")
        assert result.exit_code == 0, result.output
        events = json.loads(result.output)["events"]
        (edit,) = [e for e in events if "migration" in e["text"]]
        assert "roles +admins" in edit["text"]
        # The indexed commits before it are still found too.
        assert any(e["kind"] == "plan_approved" for e in events)


def test_an_app_matched_on_another_field_is_searched_line_by_line(tmp_path, monkeypatch):
    # Bob's wiki account shares nothing with his identity but his display name, which
    # the index does not name. The policy schema allows only id, email and username
    # today; the audit must stay right for an app linked on any other field.
    users, _ = demo.app_seed()
    users = [u for u in users if u["userName"] != "bob.builder"]
    users.append(demo.scim_user("bb-wiki", "bb@wiki.example", "Bob", "Builder"))
    with company(tmp_path, app_users=users) as c:
        assert c.cli("check").exit_code == 0
        settings = open_repo(c.repo).settings
        by_name = replace(
            settings.policy_for("wiki"), match=(MatchRule("display_name", "display_name"),)
        )
        monkeypatch.setattr(Settings, "policy_for", lambda self, app: by_name)
        history = AuditRepository(c.repo)
        now = datetime.now(UTC)

        timeline = audit_person(history, settings, "bob.builder@example.com", now=now)
        assert [(a.app, a.username) for a in timeline.accounts] == [("wiki", "bb-wiki")]
        assert any("account bb-wiki appeared" in e.text for e in timeline.events)


def test_an_indexed_commit_whose_line_is_not_where_the_tool_writes_it_is_diffed(tmp_path):
    # A commit can carry an index and still have been written by hand: Bob's line
    # reformatted (spaces after the colons) is not found where the tool puts records,
    # so that commit is diffed rather than trusted or skipped.
    with company(tmp_path) as c:
        cycle(c)
        path = c.repo / "state/apps/wiki/accounts.yaml"
        lines = path.read_bytes().split(b"\n")
        for n, line in enumerate(lines):
            if line.startswith(b"- {") and orjson.loads(line[2:])["username"] == "bob.builder":
                before = orjson.loads(line[2:])
                after = {**before, "roles": ["admins", "viewers"]}
                lines[n] = b"- " + json.dumps(after).encode()
        path.write_bytes(b"\n".join(lines))
        index = changeindex.of_changes([(before, after)])
        c.git.commit_paths(["state"], changeindex.with_index("import wiki: by hand", index))
        assert changeindex.parse(c.git.run("log", "-1", "--format=%B")) is not None

        result = c.cli("audit", "person", "bob.builder@example.com", "--format", "json")
        assert result.exit_code == 0, result.output
        (edit,) = [e for e in json.loads(result.output)["events"] if "by hand" in e["text"]]
        assert "roles +admins" in edit["text"]
