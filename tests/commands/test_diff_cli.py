"""`reconciler diff` on a real access repo whose history is built in the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from reconciler import snapshot
from reconciler.cli import main
from reconciler.commands import diff as diff_command
from reconciler.git import Git
from reconciler.model import Account, Identity
from reconciler.output import OutputFormat


class History:
    """An access repo whose snapshots are committed at chosen dates."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.git = Git.init(root)

    def commit(self, when: str, message: str = "import") -> str:
        dates = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        sha = self.git.commit_paths(["state"], message, dates)
        assert sha is not None
        return sha

    def accounts(self, when: str, *accounts: Account, app: str = "wiki") -> str:
        snapshot.write_accounts(self.root, app, accounts)
        return self.commit(when)

    def identities(self, when: str, *identities: Identity) -> str:
        snapshot.write_identities(self.root, "corp", identities)
        return self.commit(when)

    def diff(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["diff", "--repo", str(self.root), *args])


ALICE = Account.build("1", "alice", "alice@x", roles=["viewer"])
BOB = Account.build("2", "bob", "bob@x")
CAROL = Account.build("3", "carol", "carol@x")


@pytest.fixture
def history(tmp_path: Path) -> History:
    repo = History(tmp_path / "access")
    repo.accounts("2026-10-30T12:00:00Z", ALICE, BOB)
    promoted = ALICE._replace(email="alice@new", roles=("admin",))
    repo.accounts("2026-11-01T23:30:00Z", promoted, CAROL)
    repo.accounts("2026-11-02T00:30:00Z", promoted, CAROL._replace(status="disabled"))
    return repo


def test_text_lists_added_removed_and_changed_fields(history: History) -> None:
    result = history.diff("--app", "wiki", "--from", "HEAD~2", "--to", "HEAD~1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "1 added, 1 removed, 1 changed" in lines[0]
    assert "  + carol (3)" in lines
    assert "  - bob (2)" in lines
    assert "  ~ alice (1): email alice@x → alice@new; roles +admin -viewer" in lines


def test_to_defaults_to_head(history: History) -> None:
    result = history.diff("--app", "wiki", "--from", "HEAD~1")
    assert result.exit_code == 0, result.output
    assert "  ~ carol (3): status active → disabled" in result.output.splitlines()


def test_json_carries_schema_version_and_field_changes(history: History) -> None:
    result = history.diff("--app", "wiki", "--from", "HEAD~2", "--format", "json")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert data["schema_version"] == 1
    assert data["app"] == "wiki"
    assert data["to"]["commit"] == history.git.head()
    assert data["counts"] == {"added": 1, "removed": 1, "changed": 1}
    assert [r["id"] for r in data["added"]] == ["3"]
    assert data["added"][0]["status"] == "disabled"
    assert data["changed"] == [
        {
            "id": "1",
            "username": "alice",
            "changes": [
                {"field": "email", "from": "alice@x", "to": "alice@new"},
                {"field": "roles", "added": ["admin"], "removed": ["viewer"]},
            ],
        }
    ]


def test_a_date_is_the_last_commit_on_main_at_or_before_the_end_of_that_day_utc(
    history: History,
) -> None:
    # 2026-11-01 ends after the 23:30 commit and before the 00:30 one.
    result = history.diff("--app", "wiki", "--from", "2026-10-31", "--to", "2026-11-01")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "2026-11-01 (" in out and "1 added, 1 removed, 1 changed" in out
    later = history.diff("--app", "wiki", "--from", "2026-11-01", "--to", "2026-11-02")
    assert "  ~ carol (3): status active → disabled" in later.output.splitlines()


def test_a_date_reads_the_main_branch_not_the_checked_out_one(history: History) -> None:
    history.git.run("checkout", "-q", "-b", "plan/wiki")
    history.accounts("2026-11-05T10:00:00Z", BOB)
    result = history.diff("--app", "wiki", "--from", "2026-11-02", "--to", "2026-11-06")
    assert result.exit_code == 0, result.output
    assert "no changes" in result.output


def test_a_date_before_the_first_commit_is_refused(history: History) -> None:
    result = history.diff("--app", "wiki", "--from", "2026-10-29")
    assert result.exit_code == 1
    assert "no commit on 'main' at or before 2026-10-29" in result.output
    assert "2026-10-30T12:00:00" in result.output  # where the history begins


@pytest.mark.parametrize(
    ("rev", "message"),
    [
        ("no-such-branch", "revision 'no-such-branch' does not exist"),
        ("HEAD~10", "revision 'HEAD~10' does not exist"),
        ("-p", "revision '-p' does not exist"),
        ("2026-02-31", "'2026-02-31' is not a date"),
    ],
)
def test_a_revision_that_does_not_exist_is_refused(
    history: History, rev: str, message: str
) -> None:
    result = history.diff("--app", "wiki", "--from", rev)
    assert result.exit_code == 1
    assert message in result.output


def test_an_unknown_app_is_refused_with_the_apps_that_exist(history: History) -> None:
    result = history.diff("--app", "crm", "--from", "HEAD~1")
    assert result.exit_code == 1
    assert "unknown app 'crm'" in result.output
    assert "snapshots at HEAD: wiki" in result.output


def test_an_app_without_a_snapshot_at_a_revision_says_which(history: History) -> None:
    history.accounts("2026-11-03T10:00:00Z", BOB, app="crm")
    first = history.git.head("HEAD~1")
    assert first is not None
    result = history.diff("--app", "crm", "--from", "HEAD~1")
    assert result.exit_code == 1
    assert f"app 'crm' has no snapshot at HEAD~1 ({first[:12]}" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("--from", "HEAD"),
        ("--app", "wiki", "--identities", "corp", "--from", "HEAD"),
        ("--app", "../../etc", "--from", "HEAD"),
    ],
)
def test_one_well_formed_snapshot_name_is_required(history: History, args: tuple[str]) -> None:
    result = history.diff(*args)
    assert result.exit_code == 1
    assert "error:" in result.output


def test_identities(tmp_path: Path) -> None:
    repo = History(tmp_path / "access")
    repo.identities("2026-10-30T12:00:00Z", Identity.build("i1", "a@x", groups=["eng"]))
    repo.identities(
        "2026-10-31T12:00:00Z",
        Identity.build("i1", "a@x", groups=["ops"], status="suspended"),
        Identity.build("i2", "b@x"),
    )
    result = repo.diff("--identities", "corp", "--from", "HEAD~1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "  + b@x (i2)" in lines
    assert "  ~ a@x (i1): status active → suspended; groups +ops -eng" in lines
    data = orjson.loads(
        repo.diff("--identities", "corp", "--from", "HEAD~1", "--format", "json").output
    )
    assert data["identities"] == "corp"


def many(n: int) -> list[Account]:
    return [Account.build(f"u{i}", f"user{i}", f"user{i}@x") for i in range(n)]


def test_sharded_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "SHARD_ABOVE", 4)
    repo = History(tmp_path / "access")
    accounts = many(12)
    repo.accounts("2026-10-30T12:00:00Z", *accounts)
    assert (repo.root / "state/apps/wiki/accounts/00.yaml").exists()
    changed = [*accounts[1:11], accounts[11]._replace(roles=("admin",)), *many(14)[12:]]
    repo.accounts("2026-10-31T12:00:00Z", *changed)
    result = repo.diff("--app", "wiki", "--from", "HEAD~1", "--format", "json")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert [r["id"] for r in data["added"]] == ["u12", "u13"]
    assert [r["id"] for r in data["removed"]] == ["u0"]
    assert data["changed"][0]["changes"] == [{"field": "roles", "added": ["admin"], "removed": []}]


def test_a_snapshot_that_was_resharded_between_the_revisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = History(tmp_path / "access")
    repo.accounts("2026-10-30T12:00:00Z", *many(3))
    monkeypatch.setattr(snapshot, "SHARD_ABOVE", 4)
    repo.accounts("2026-10-31T12:00:00Z", *many(6))
    assert not (repo.root / "state/apps/wiki/accounts.yaml").exists()
    result = repo.diff("--app", "wiki", "--from", "HEAD~1")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].endswith(": 3 added")
    assert "changed" not in result.output


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda text: text + '- {"id": "9", "status": "active"\n', id="not JSON"),
        pytest.param(
            lambda text: text.replace('"type":"human"', '"type":"robot"'),
            id="a record decoded only when compared",
        ),
    ],
)
def test_a_broken_line_in_history_is_reported_at_its_revision(
    history: History, edit: Callable[[str], str]
) -> None:
    path = history.root / "state/apps/wiki/accounts.yaml"
    path.write_text(edit(path.read_text()))
    history.commit("2026-11-03T10:00:00Z")
    result = history.diff("--app", "wiki", "--from", "HEAD~1")
    assert result.exit_code == 1
    head = history.git.head()
    assert head is not None
    assert f"{head[:12]}:state/apps/wiki/accounts.yaml" in result.output
    assert "reconciler-diff-" not in result.output


HOSTILE = "mallory\x1b[31m\n::error::x\u202e|*@channel*"


def test_hostile_values_are_inert_in_every_format(tmp_path: Path) -> None:
    repo = History(tmp_path / "access")
    repo.accounts("2026-10-30T12:00:00Z", Account.build("1", "eve", roles=["viewer"]))
    repo.accounts(
        "2026-10-31T12:00:00Z",
        Account.build("1", "eve", email=HOSTILE, roles=[HOSTILE]),
        Account.build("2", HOSTILE, HOSTILE),
    )
    text = repo.diff("--app", "wiki", "--from", "HEAD~1").output
    assert "\x1b" not in text and "\u202e" not in text
    assert not any(line.startswith("::") for line in text.splitlines())
    assert "mallory\\u001b[31m\\n::error::x\\u202e" in text
    markdown = repo.diff("--app", "wiki", "--from", "HEAD~1", "--format", "markdown").output
    assert "\x1b" not in markdown and "\u202e" not in markdown
    assert "@channel" not in markdown and "|*" not in markdown
    assert all(
        line.count("|") - line.count("\\|") == 4
        for line in markdown.splitlines()
        if line.startswith("| ")
    )
    data = orjson.loads(repo.diff("--app", "wiki", "--from", "HEAD~1", "--format", "json").output)
    assert data["added"][0]["username"] == HOSTILE
    assert data["changed"][0]["changes"][1] == {
        "field": "roles",
        "added": [HOSTILE],
        "removed": ["viewer"],
    }


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_every_format_is_rendered(history: History, fmt: OutputFormat, capsys) -> None:
    options = diff_command.DiffOptions(history.root, "wiki", None, "HEAD~2", format=fmt)
    assert diff_command.diff(options) == 0
    assert "alice" in capsys.readouterr().out
