"""An app without an API: `reconciler init`, then the cycle with manual tasks."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from reconciler.cli import main


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("named", ["p-3", "carol", "Carol@Example.com"])
def test_init_then_manual_deprovisioning(tmp_path, named):
    repo = tmp_path / "access"
    assert cli("init", str(repo)).exit_code == 0
    assert cli("validate", "--repo", str(repo)).exit_code == 0
    assert cli("check", "--repo", str(repo)).exit_code == 0

    idp = repo / "exports/corp-identities.csv"
    idp.write_text(idp.read_text().replace("Carol Danvers,active", "Carol Danvers,suspended"))
    checked = cli("check", "--repo", str(repo), "--detailed-exitcode")
    assert checked.exit_code == 4, checked.output
    approved = cli("approve", "--repo", str(repo), "--app", "payroll", "--as", "alice")
    assert approved.exit_code == 0, approved.output

    applied = cli("apply", "--repo", str(repo), "--confirm", "--format", "json")
    assert applied.exit_code == 0, applied.output
    (action,) = json.loads(applied.output)["apps"][0]["actions"]
    assert action["outcome"] == "manual_pending"
    assert "--mark-done p-3" in action["detail"]
    assert (repo / "plans/payroll.yaml").exists()  # open until the person marks it done

    # Rerunning apply does not create the task twice.
    again = cli("apply", "--repo", str(repo), "--confirm", "--format", "json")
    assert [a["outcome"] for a in json.loads(again.output)["apps"][0]["actions"]] == [
        "manual_pending"
    ]

    unknown = cli(
        "apply", "--repo", str(repo), "--app", "payroll", "--mark-done", "dave",
        "--as", "bob", "--confirm",
    )  # fmt: skip
    assert unknown.exit_code == 1
    assert "names no pending manual task" in unknown.output

    done = cli(
        "apply", "--repo", str(repo), "--app", "payroll", "--mark-done", named,
        "--as", "bob", "--confirm",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert not (repo / "plans/payroll.yaml").exists()
    (history,) = (repo / "history/payroll").glob("*.yaml")
    assert "marked done by bob" in history.read_text()


def test_a_role_removal_in_an_app_without_an_api_is_a_manual_task(tmp_path):
    repo = tmp_path / "access"
    assert cli("init", str(repo)).exit_code == 0
    policy = repo / "policies/default.yaml"
    policy.write_text(
        policy.read_text().replace(
            "# allowed_roles:\n#   admin: {groups: [engineering], people: [carol@example.com]}",
            "allowed_roles:\n  admin: {groups: [engineering]}",
        )
    )
    assert cli("validate", "--repo", str(repo)).exit_code == 0
    subprocess.run(["git", "commit", "-qam", "admins are engineers"], cwd=repo, check=True)
    checked = cli("check", "--repo", str(repo), "--detailed-exitcode")
    assert checked.exit_code == 4, checked.output  # carol (finance) holds admin
    approved = cli("approve", "--repo", str(repo), "--app", "payroll", "--as", "alice")
    assert approved.exit_code == 0, approved.output
    applied = cli("apply", "--repo", str(repo), "--confirm", "--format", "json")
    assert applied.exit_code == 0, applied.output
    (action,) = json.loads(applied.output)["apps"][0]["actions"]
    assert action["outcome"] == "manual_pending"
    assert "take roles admin from carol in payroll by hand" in action["detail"]
    done = cli(
        "apply", "--repo", str(repo), "--app", "payroll", "--mark-done", "carol",
        "--as", "bob", "--confirm",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert not (repo / "plans/payroll.yaml").exists()


def test_init_refuses_to_overwrite(tmp_path):
    (tmp_path / "reconciler.yaml").write_text("version: 1\n")
    result = cli("init", str(tmp_path))
    assert result.exit_code == 1
    assert "never overwrites" in result.output
    assert (tmp_path / "reconciler.yaml").read_text() == "version: 1\n"


def test_a_last_login_that_moves_every_day_changes_no_snapshot(tmp_path):
    repo = tmp_path / "access"
    assert cli("init", str(repo)).exit_code == 0
    export = repo / "exports/payroll-accounts.csv"
    original = export.read_text()

    def signed_in(at: str) -> None:
        lines = original.splitlines()
        rows = [f"{lines[0]},last_login"] + [
            f"{row},{at if row.startswith('p-1,') else ''}" for row in lines[1:]
        ]
        export.write_text("\n".join(rows) + "\n")

    def check() -> bytes:
        checked = cli("check", "--repo", str(repo))
        assert checked.exit_code == 0, checked.output
        return (repo / "state/apps/payroll/accounts.yaml").read_bytes()

    def head() -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    signed_in("2026-11-01T09:00:00Z")
    first = check()
    assert b"last_login" not in first and b"2026-11-01" not in first
    imported = head()
    for day in ("02", "10"):
        signed_in(f"2026-11-{day}T09:00:00Z")
        assert check() == first
        assert head() == imported  # nothing to commit


def test_a_day_of_many_apps_reads_as_a_line_per_app(tmp_path):
    """Five apps: each app that changed gets its own import commit, in the order of
    `apps:`, made after every pull; an app without a change and a day without one make
    none; a leaver's plans are proposed on each app's branch from the day's last
    import."""
    repo = tmp_path / "access"
    assert cli("init", str(repo)).exit_code == 0
    config = repo / "reconciler.yaml"
    export = repo / "exports/payroll-accounts.csv"
    apps = ["payroll", "crm", "wiki", "hr", "vpn"]
    text = config.read_text()
    for name in apps[1:]:
        (repo / f"exports/{name}-accounts.csv").write_text(export.read_text())
        text = text.replace(
            "apps:\n",
            f"apps:\n  {name}:\n    type: file\n    path: exports/{name}-accounts.csv\n",
            1,
        )
    config.write_text(text)
    git(repo, "commit", "-qam", "five apps")
    assert cli("check", "--repo", str(repo)).exit_code == 0
    day1 = git(repo, "rev-parse", "HEAD")

    # crm and vpn gain an account; carol leaves (she has an account in every app).
    for name in ("crm", "vpn"):
        path = repo / f"exports/{name}-accounts.csv"
        path.write_text(
            path.read_text() + f"{name}-9,zed,zed@example.com,Zed,active,human,viewer,\n"
        )
    idp = repo / "exports/corp-identities.csv"
    idp.write_text(idp.read_text().replace("Carol Danvers,active", "Carol Danvers,suspended"))
    checked = cli("check", "--repo", str(repo), "--detailed-exitcode")
    assert checked.exit_code == 4, checked.output

    log = git(repo, "log", "--format=%s", f"{day1}..HEAD").splitlines()
    assert [line.split(":")[0] for line in log] == [
        "import vpn", "import crm", "import identities corp",
    ]  # fmt: skip
    head = git(repo, "rev-parse", "HEAD")
    listed = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/reconciler/")
    assert sorted(listed.split()) == sorted(f"reconciler/{name}" for name in apps)
    for name in apps:
        assert git(repo, "rev-parse", f"reconciler/{name}^") == head
    assert git(repo, "status", "--porcelain", "--", "state") == ""

    assert cli("check", "--repo", str(repo)).exit_code == 0
    assert git(repo, "rev-parse", "HEAD") == head  # a day without a change


def git(repo, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_identities_pulled_once_then_shared_by_app_checks(tmp_path):
    """`--identities only` pulls and imports the identity sources and checks no app;
    `--identities snapshot` checks apps against the snapshot main holds, without a pull
    of its own, and refuses to guess when there is none."""
    repo = tmp_path / "access"
    assert cli("init", str(repo)).exit_code == 0
    fresh = cli("check", "--repo", str(repo), "--identities", "snapshot", "--format", "json")
    assert fresh.exit_code == 1
    assert "--identities only" in fresh.output
    assert git(repo, "branch", "--list", "reconciler/*") == ""  # nothing proposed
    imported = git(repo, "rev-parse", "HEAD")  # the app was imported all the same

    only = cli("check", "--repo", str(repo), "--identities", "only", "--format", "json")
    assert only.exit_code == 0, only.output
    assert json.loads(only.output)["apps"] == []
    assert git(repo, "log", "--format=%s", f"{imported}..HEAD").startswith("import identities corp")

    # Carol leaves; the export the identity source reads is then lost. A shard's check
    # neither sees her leave nor fails: it reads the snapshot.
    idp = repo / "exports/corp-identities.csv"
    left = idp.read_text().replace("Carol Danvers,active", "Carol Danvers,suspended")
    idp.unlink()
    shard = cli("check", "--repo", str(repo), "--identities", "snapshot", "--detailed-exitcode")
    assert shard.exit_code == 0, shard.output

    idp.write_text(left)
    assert cli("check", "--repo", str(repo), "--identities", "only").exit_code == 0
    shard = cli("check", "--repo", str(repo), "--identities", "snapshot", "--detailed-exitcode")
    assert shard.exit_code == 4, shard.output  # carol's plan
    subjects = git(repo, "log", "--format=%s").splitlines()
    assert sum(s.startswith("import identities corp") for s in subjects) == 2


def test_no_plan_rests_on_identities_another_check_pushed_meanwhile(tmp_path, monkeypatch):
    """Pushing its imports, a check finds main moved: another check imported the
    identities while this one ran. Its imports go on top, but its leavers were judged
    against identities main no longer holds: nothing is proposed, and the run fails."""
    from reconciler import snapshot
    from reconciler.forge.local import LocalForge
    from reconciler.git import Git

    repo = tmp_path / "access"
    assert cli("init", str(repo)).exit_code == 0
    assert cli("check", "--repo", str(repo)).exit_code == 0

    def another_check_pushed_first(forge: LocalForge) -> int:
        records = snapshot.read_identities(repo, "corp")
        assert records is not None
        changed = [
            i._replace(status="suspended") if i.username == "dan" else i for i in records.values()
        ]
        snapshot.write_identities(repo, "corp", changed)
        Git(repo).commit_paths(
            snapshot.identity_paths("corp"), "import identities corp: 1 suspended"
        )
        return 1  # rebased on it

    monkeypatch.setattr(LocalForge, "publish", another_check_pushed_first)
    idp = repo / "exports/corp-identities.csv"
    idp.write_text(idp.read_text().replace("Carol Danvers,active", "Carol Danvers,suspended"))
    checked = cli("check", "--repo", str(repo), "--format", "json")
    assert checked.exit_code == 1
    (app,) = json.loads(checked.output)["apps"]
    assert "another check imported identity source corp" in checked.output
    assert git(repo, "branch", "--list", "reconciler/*") == ""
    assert app["app"] == "payroll"
