"""`reconciler audit verify` on a real history (check, leave, check, approve, apply),
then on copies of it tampered with in each way verify names."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler import demo, snapshot, yamlio
from reconciler.audit.verify import journal_beyond_plan, plain_meta_digest, verify_history
from reconciler.cli import main
from reconciler.commands.audit_verify import VerifyOptions, to_data, verify
from reconciler.git import Git
from reconciler.history import Entry
from reconciler.output import OutputFormat
from reconciler.planfile import parse_plan
from reconciler.testing.access_repo import company
from reconciler.testing.github_fake import github_company

MALLORY = {"GIT_AUTHOR_NAME": "Mallory", "GIT_AUTHOR_EMAIL": "mallory@example.com"}


@dataclass(frozen=True)
class Cycle:
    """A copy of the access repo after one whole cycle, and its landmarks."""

    repo: Path
    git: Git
    approval: str  # the merge that approved the plan
    base: str  # the check commit the plan was computed from
    journal: str  # the journal's path

    def verify(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["audit", "verify", "--repo", str(self.repo), *args])

    def findings(self, since: str | None = None) -> list[dict]:
        """The findings as `--format json` gives them."""
        return self.findings_as(since=since)

    def findings_as(self, since: str | None = None, forge: str = "local") -> list[dict]:
        data = to_data(verify_history(self.repo, "main", forge, since))
        assert data["ok"] == (not data["findings"])
        return list(data["findings"])

    def commit_by_hand(self, files: dict[str, str], message: str = "fix by hand") -> str:
        """Commit `files` on main as a person would."""
        for name, text in files.items():
            (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
            (self.repo / name).write_text(text, encoding="utf-8")
        self.git.run("add", *files)
        self.git.run("commit", "-qm", message, env=MALLORY)
        head = self.git.head()
        assert head is not None
        return head

    def read(self, name: str) -> str:
        return (self.repo / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An access repo after check, leave, check, approve and apply --confirm."""
    tmp = tmp_path_factory.mktemp("cycle")
    with company(tmp) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check", "--detailed-exitcode").exit_code == 4
        approved = c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER)
        assert approved.exit_code == 0, approved.output
        result = c.cli("apply", "--confirm")
        assert result.exit_code == 0, result.output
        yield c.repo


@pytest.fixture
def cycle(applied: Path, tmp_path: Path) -> Cycle:
    repo = tmp_path / "access"
    shutil.copytree(applied, repo)
    git = Git(repo)
    (journal,) = git.ls_tree("HEAD", "history")
    data = yaml.safe_load(git.show("HEAD", journal) or b"")
    return Cycle(repo, git, data["approval_commit"], data["base_commit"], journal)


def only(findings: list[dict]) -> dict:
    assert len(findings) == 1, findings
    return findings[0]


def test_a_real_cycle_verifies_clean(cycle: Cycle) -> None:
    result = cycle.verify()
    assert result.exit_code == 0, result.output
    # Two identity imports, one app import, the approval, the apply.
    assert "5 commits, 2 plan changes, 1 journal versions, 4 snapshots" in result.output
    assert "no findings" in result.output
    data = json.loads(cycle.verify("--format", "json").output)
    assert data["schema_version"] == 1
    assert data["ok"] is True and data["findings"] == []
    assert data["checked"] == {"commits": 5, "plans": 2, "journals": 1, "snapshots": 4}


def test_a_plan_committed_straight_to_main_is_named(cycle: Cycle) -> None:
    plan = cycle.git.show(cycle.approval, "plans/wiki.yaml")
    assert plan is not None
    sha = cycle.commit_by_hand({"plans/wiki.yaml": plan.decode()}, "plan wiki")
    finding = only(cycle.findings())
    assert finding["commit"] == sha
    assert finding["author"] == "Mallory <mallory@example.com>"
    assert finding["file"] == "plans/wiki.yaml"
    assert "not a merge" in finding["problem"]
    assert "git revert" in finding["fix"]
    result = cycle.verify()
    assert result.exit_code == 1
    assert f"{sha[:10]} Mallory <mallory@example.com> plans/wiki.yaml: " in result.output
    assert "1 finding" in result.output


def test_a_merge_whose_branch_also_changed_state_is_named(cycle: Cycle) -> None:
    plan = cycle.git.show(cycle.approval, "plans/wiki.yaml")
    assert plan is not None
    cycle.git.run("checkout", "-q", "-b", "reconciler/wiki")
    accounts = cycle.read("state/apps/wiki/accounts.yaml").replace("alice.liddell", "alice.l", 1)
    cycle.commit_by_hand(
        {"plans/wiki.yaml": plan.decode(), "state/apps/wiki/accounts.yaml": accounts}
    )
    cycle.git.run("checkout", "-q", "main")
    message = f"merge\n\nApproved-by: {demo.REVIEWER}"
    cycle.git.run("merge", "-q", "--no-ff", "-m", message, "reconciler/wiki", env=MALLORY)
    merge = cycle.git.head()
    findings = cycle.findings()
    assert {f["commit"] for f in findings} == {merge}
    by_file = {f["file"]: f for f in findings}
    assert "state/apps/wiki/accounts.yaml" in by_file["plans/wiki.yaml"]["problem"]
    assert "may change only the plan" in by_file["plans/wiki.yaml"]["problem"]
    assert "git revert -m 1" in by_file["plans/wiki.yaml"]["fix"]
    # The state it brought no longer matches its meta.yaml either.
    assert "digest" in by_file["state/apps/wiki/accounts.yaml"]["problem"]


def test_a_journal_that_adds_an_account_is_named(cycle: Cycle) -> None:
    journal = yaml.safe_load(cycle.read(cycle.journal))
    extra = json.loads(json.dumps(journal["actions"][0]))
    extra["account"] = {"id": "not-in-the-plan", "username": "alice.liddell", "email": ""}
    journal["actions"].append(extra)
    sha = cycle.commit_by_hand({cycle.journal: yaml.safe_dump(journal, sort_keys=False)})
    finding = only(cycle.findings())
    assert (finding["commit"], finding["file"]) == (sha, cycle.journal)
    assert "not-in-the-plan" in finding["problem"]
    assert "beyond the approval" in finding["problem"]


def test_a_journal_pointing_at_a_commit_that_is_not_an_approval_is_named(cycle: Cycle) -> None:
    journal = yaml.safe_load(cycle.read(cycle.journal))
    journal["approval_commit"] = cycle.base
    sha = cycle.commit_by_hand({cycle.journal: yaml.safe_dump(journal, sort_keys=False)})
    finding = only(cycle.findings())
    assert (finding["commit"], finding["file"]) == (sha, cycle.journal)
    assert "not an approval" in finding["problem"]
    assert cycle.base[:10] in finding["problem"]


def test_a_hand_edit_of_an_app_snapshot_is_named(cycle: Cycle) -> None:
    path = "state/apps/wiki/accounts.yaml"
    accounts = cycle.read(path).replace("alice.liddell", "alice.l", 1)
    sha = cycle.commit_by_hand({path: accounts})
    finding = only(cycle.findings())
    assert finding == {
        "commit": sha,
        "author": "Mallory <mallory@example.com>",
        "file": path,
        "problem": finding["problem"],
        "fix": finding["fix"],
    }
    assert "without state/apps/wiki/meta.yaml" in finding["problem"]
    assert "edited by hand" in finding["problem"]
    assert f"git revert {sha[:10]}" in finding["fix"]
    assert "reconciler check" in finding["fix"]


def test_a_meta_edited_to_match_nothing_is_named(cycle: Cycle) -> None:
    path = "state/apps/wiki/meta.yaml"
    meta = cycle.read(path)
    digest = yaml.safe_load(meta)["digest"]
    sha = cycle.commit_by_hand({path: meta.replace(digest, "0" * 64)})
    finding = only(cycle.findings())
    assert (finding["commit"], finding["file"]) == (sha, path)


def test_a_hand_edit_of_an_identity_snapshot_is_named(cycle: Cycle) -> None:
    path = "state/identities/corp.yaml"
    text = cycle.read(path)
    # A leaver made active again by hand: the next check would not propose them.
    edited = text.replace('"status":"deprovisioned"', '"status":"active"', 1)
    assert edited != text
    sha = cycle.commit_by_hand({path: edited})
    finding = only(cycle.findings())
    assert (finding["commit"], finding["file"]) == (sha, path)
    assert finding["author"] == "Mallory <mallory@example.com>"
    assert "state/identities/corp.meta.yaml" in finding["problem"]


def test_since_checks_only_later_commits(cycle: Cycle) -> None:
    path = "state/apps/wiki/accounts.yaml"
    bad = cycle.commit_by_hand({path: cycle.read(path).replace("alice.liddell", "alice.l", 1)})
    assert only(cycle.findings(f"{bad}^"))["commit"] == bad
    assert cycle.findings(bad) == []
    clean = cycle.verify("--since", bad)
    assert clean.exit_code == 0
    assert f"since {bad}: 0 commits" in clean.output
    # Journals checked after --since still find their approval before it.
    journal = yaml.safe_load(cycle.read(cycle.journal))
    journal["actions"][0]["mode"] = "delete"
    widened = cycle.commit_by_hand({cycle.journal: yaml.safe_dump(journal, sort_keys=False)})
    finding = only(cycle.findings(bad))
    assert finding["commit"] == widened
    assert "mode delete, wider than disable" in finding["problem"]
    unknown = cycle.verify("--since", "no-such-revision")
    assert unknown.exit_code == 1
    assert "no-such-revision" in unknown.output


def test_a_plan_removed_without_its_apply_is_named(cycle: Cycle) -> None:
    # Approve the same plan again, then take it off main by hand.
    plan = cycle.git.show(cycle.approval, "plans/wiki.yaml")
    report = cycle.git.show(cycle.approval, "plans/wiki.md")
    assert plan is not None and report is not None
    cycle.git.run("checkout", "-q", "-b", "reconciler/wiki")
    cycle.commit_by_hand({"plans/wiki.yaml": plan.decode(), "plans/wiki.md": report.decode()})
    cycle.git.run("checkout", "-q", "main")
    message = f"approve\n\nApproved-by: {demo.REVIEWER}"
    cycle.git.run("merge", "-q", "--no-ff", "-m", message, "reconciler/wiki")
    assert cycle.findings() == []
    merge = cycle.git.head()
    cycle.git.run("rm", "-q", "plans/wiki.yaml", "plans/wiki.md")
    cycle.git.run("commit", "-qm", "drop plan", env=MALLORY)
    finding = only(cycle.findings())
    assert finding["file"] == "plans/wiki.yaml"
    assert "without a journal" in finding["problem"]
    # Withdrawing the approval with a revert of its merge is not a finding.
    cycle.git.run("reset", "-q", "--hard", "HEAD^")
    cycle.git.run("revert", "--no-edit", "-m", "1", str(merge))
    assert cycle.findings() == []


def test_journal_beyond_plan_names_added_widened_and_skipped_actions(cycle: Cycle) -> None:
    raw = cycle.git.show(cycle.approval, "plans/wiki.yaml")
    assert raw is not None
    plan = parse_plan(raw, "plans/wiki.yaml")
    first, second = plan.actions[0], plan.actions[1]

    def entry(account: str, mode: str, outcome: str = "done") -> Entry:
        return Entry(account, "", "", mode, "idp_missing", outcome)

    assert journal_beyond_plan([entry(first.account_id, "disable")], plan) == []
    assert journal_beyond_plan([entry(first.account_id, "manual")], plan) == []
    problems = journal_beyond_plan(
        [entry("other", "disable"), entry(second.account_id, "delete")], plan
    )
    assert len(problems) == 2
    assert "not in plan" in problems[0] and "wider than disable" in problems[1]
    skipped = replace(plan, actions=(replace(first, skip=True),))
    assert journal_beyond_plan([entry(first.account_id, "disable")], skipped)
    assert journal_beyond_plan([entry(first.account_id, "disable", "skipped")], skipped) == []


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_every_output_format_renders(cycle: Cycle, fmt: OutputFormat, capsys) -> None:
    path = "state/apps/wiki/accounts.yaml"
    cycle.commit_by_hand({path: cycle.read(path).replace("alice.liddell", "alice.l", 1)})
    assert verify(VerifyOptions(cycle.repo, None, fmt)) == 1
    assert path.split("/")[-1] in capsys.readouterr().out


def test_a_github_forge_history_verifies_from_git_alone(tmp_path: Path) -> None:
    with github_company(tmp_path) as (c, fake):
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check", "--detailed-exitcode").exit_code == 4
        pr = fake.pr_for("reconciler/wiki")
        assert pr is not None
        fake.review(pr.number, demo.REVIEWER, "APPROVED")
        fake.merge(pr.number, "squash")
        c.git.run("pull", "-q", "--ff-only", "origin", "main")
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        repo = c.repo
    # No network from here: the fake GitHub is gone.
    cycle = Cycle(repo, Git(repo), "", "", next(iter(Git(repo).ls_tree("HEAD", "history"))))
    result = cycle.verify()
    assert result.exit_code == 0, result.output
    assert "2 plan changes, 1 journal versions" in result.output
    journal = yaml.safe_load(cycle.read(cycle.journal))
    del journal["approval_verified"]["pull_request"]
    sha = cycle.commit_by_hand({cycle.journal: yaml.safe_dump(journal, sort_keys=False)})
    by_file = {f["file"]: f for f in cycle.findings_as(forge="github")}
    assert by_file.keys() == {cycle.journal, "plans/wiki.yaml"}
    assert by_file[cycle.journal]["commit"] == sha
    assert "no pull request" in by_file[cycle.journal]["problem"]
    # And the squash merge is no longer named by any journal as a pull request's.
    assert "no journal names this merge" in by_file["plans/wiki.yaml"]["problem"]


def test_a_plan_removed_before_its_apply_finished_is_named(cycle: Cycle) -> None:
    plan = cycle.git.show(cycle.approval, "plans/wiki.yaml")
    assert plan is not None
    cycle.git.run("checkout", "-q", "-b", "reconciler/wiki")
    cycle.commit_by_hand({"plans/wiki.yaml": plan.decode()})
    cycle.git.run("checkout", "-q", "main")
    message = f"approve\n\nApproved-by: {demo.REVIEWER}"
    cycle.git.run("merge", "-q", "--no-ff", "-m", message, "reconciler/wiki")
    merge = cycle.git.head()
    assert merge is not None
    # A journal of this approval with an action still pending, and the plan gone.
    journal = yaml.safe_load(cycle.read(cycle.journal))
    journal["approval_commit"] = journal["approval_verified"]["merge_commit"] = merge
    journal["finished_at"] = None
    journal["actions"][0]["outcome"] = "pending"
    name = cycle.journal.replace(cycle.approval[:12], merge[:12])
    cycle.git.run("rm", "-q", "plans/wiki.yaml")
    sha = cycle.commit_by_hand({name: yaml.safe_dump(journal, sort_keys=False)}, "apply")
    finding = only(cycle.findings())
    assert (finding["commit"], finding["file"]) == (sha, "plans/wiki.yaml")
    assert "before its apply finished" in finding["problem"]
    assert journal["actions"][0]["account"]["id"] in finding["problem"]


def test_snapshot_digests_are_over_the_blob_ids_in_the_tree(cycle: Cycle) -> None:
    for directory, meta in (
        ("state/apps/wiki", "state/apps/wiki/meta.yaml"),
        ("state/identities", "state/identities/corp.meta.yaml"),
    ):
        recorded = yaml.safe_load(cycle.read(meta))["digest"]
        listing = cycle.git.run("ls-tree", "-r", "HEAD", f"{directory}/").splitlines()
        blobs = [line.split()[2:4] for line in listing]
        data = [
            (path.removeprefix(f"{directory}/"), sha)
            for sha, path in blobs
            if path.endswith(("/accounts.yaml", "/corp.yaml"))
        ]
        assert len(data) == 1
        assert recorded == snapshot.blobs_digest(data)
        assert recorded.startswith("git-sha1:")


def _legacy_digest(directory: Path, files: Sequence[Path]) -> str:
    """The digest as releases before `git-sha1:` digests computed it."""
    return snapshot.legacy_digest(path.read_bytes() for path in files)


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A whole cycle written with the digests of an earlier release (meta files and
    plan), then one identity import by this release."""
    tmp = tmp_path_factory.mktemp("legacy")
    with company(tmp) as c:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(snapshot, "_digest", _legacy_digest)
            assert c.cli("check").exit_code == 0
            c.leave()
            assert c.cli("check", "--detailed-exitcode").exit_code == 4
            assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
            applied = c.cli("apply", "--confirm")
            assert applied.exit_code == 0, applied.output
        meta = yaml.safe_load((c.repo / "state/apps/wiki/meta.yaml").read_text())
        assert snapshot.is_legacy_digest(meta["digest"])
        c.idp.set_active(c.idp_ids.users["alice.liddell"], False)
        assert c.cli("check").exit_code in (0, 4)
        yield c.repo


def test_a_history_with_digests_of_an_earlier_release_verifies_clean(
    legacy: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "access"
    shutil.copytree(legacy, repo)
    cycle = Cycle(repo, Git(repo), "", "", "")
    identities = yaml.safe_load(cycle.read("state/identities/corp.meta.yaml"))
    accounts = yaml.safe_load(cycle.read("state/apps/wiki/meta.yaml"))
    assert identities["digest"].startswith("git-sha1:")  # this release's import
    assert snapshot.is_legacy_digest(accounts["digest"])
    result = cycle.verify()
    assert result.exit_code == 0, result.output
    assert "no findings" in result.output

    # A hand edit of a snapshot whose meta holds an earlier release's digest is named.
    path = "state/apps/wiki/accounts.yaml"
    sha = cycle.commit_by_hand({path: cycle.read(path).replace("alice.liddell", "alice.l", 1)})
    finding = only(cycle.findings())
    assert (finding["commit"], finding["file"]) == (sha, path)
    assert "edited by hand" in finding["problem"]


def test_meta_files_in_the_tools_plain_form_give_the_strict_readers_digest(
    cycle: Cycle,
) -> None:
    for name in ("state/apps/wiki/meta.yaml", "state/identities/corp.meta.yaml"):
        raw = (cycle.repo / name).read_bytes()
        assert plain_meta_digest(raw) == yamlio.load_bytes(raw, name)["digest"]
    raw = (cycle.repo / "state/apps/wiki/meta.yaml").read_bytes()
    digest = yaml.safe_load(raw)["digest"]
    # Anything but the plain form is left to the strict reader.
    for variant in (
        raw.replace(f"digest: {digest}".encode(), f"digest: '{digest}'".encode()),
        raw + f"digest: {digest}\n".encode(),  # a duplicate key
        raw + b"owner: mallory\n",
        raw.rstrip(b"\n"),
        b"--- \n" + raw,
    ):
        assert plain_meta_digest(variant) is None


def test_a_meta_with_its_digest_twice_is_named(cycle: Cycle) -> None:
    path = "state/apps/wiki/meta.yaml"
    meta = cycle.read(path)
    digest_line = next(line for line in meta.splitlines() if line.startswith("digest:"))
    sha = cycle.commit_by_hand({path: f"{meta}{digest_line}\n"})
    finding = only(cycle.findings())
    assert (finding["commit"], finding["file"]) == (sha, path)
    assert "records no digest" in finding["problem"]


def _by_hand_in_shards(cycle: Cycle, edit: bool) -> str:
    """Split wiki's snapshot into shards by hand, with the meta digest the tool would
    write for them; with `edit`, change one shard after it was digested."""
    directory = cycle.repo / "state/apps/wiki"
    text = (directory / "accounts.yaml").read_bytes()
    shards = {"accounts/00.yaml": text, "accounts/01.yaml": b"accounts: []\n"}
    digest = snapshot.files_digest(sorted(shards.items()))
    meta = (directory / "meta.yaml").read_text(encoding="utf-8")
    recorded = yaml.safe_load(meta)["digest"]
    if edit:
        shards["accounts/00.yaml"] = text.replace(b"alice.liddell", b"alice.l", 1)
    cycle.git.run("rm", "-q", "state/apps/wiki/accounts.yaml")
    files = {f"state/apps/wiki/{name}": data.decode() for name, data in shards.items()}
    files["state/apps/wiki/meta.yaml"] = meta.replace(recorded, digest)
    return cycle.commit_by_hand(files)


def test_a_snapshot_in_shards_is_held_to_the_digest_of_every_shard(cycle: Cycle) -> None:
    _by_hand_in_shards(cycle, edit=False)
    assert cycle.findings() == []
    cycle.git.run("reset", "-q", "--hard", "HEAD^")
    sha = _by_hand_in_shards(cycle, edit=True)
    finding = only(cycle.findings())
    assert (finding["commit"], finding["file"]) == (sha, "state/apps/wiki/accounts/00.yaml")
    assert "edited by hand" in finding["problem"]


def test_the_git_processes_verify_starts_do_not_grow_with_the_history(
    cycle: Cycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[list[str]] = []
    popen = subprocess.Popen.__init__

    def count(self: subprocess.Popen, args: list[str], *rest: object, **kw: object) -> None:
        started.append(list(args))
        popen(self, args, *rest, **kw)  # type: ignore[arg-type]

    def processes() -> int:
        started.clear()
        with monkeypatch.context() as patch:
            patch.setattr(subprocess.Popen, "__init__", count)
            assert cycle.findings() == []
        return len(started)

    plan = cycle.git.show(cycle.approval, "plans/wiki.yaml")
    report = cycle.git.show(cycle.approval, "plans/wiki.md")
    assert plan is not None and report is not None

    def more_history(times: int) -> None:
        # Each time: an import that changed the data, then a plan approved and the
        # approval withdrawn.
        for _ in range(times):
            path = "state/apps/wiki/accounts.yaml"
            text = cycle.read(path).replace("alice", "alice-x", 1)
            meta = cycle.read("state/apps/wiki/meta.yaml")
            recorded = yaml.safe_load(meta)["digest"]
            digest = snapshot.files_digest([("accounts.yaml", text.encode())])
            cycle.commit_by_hand(
                {path: text, "state/apps/wiki/meta.yaml": meta.replace(recorded, digest)}
            )
            cycle.git.run("checkout", "-q", "-b", "reconciler/wiki")
            cycle.commit_by_hand(
                {"plans/wiki.yaml": plan.decode(), "plans/wiki.md": report.decode()}
            )
            cycle.git.run("checkout", "-q", "main")
            message = f"approve\n\nApproved-by: {demo.REVIEWER}"
            cycle.git.run("merge", "-q", "--no-ff", "-m", message, "reconciler/wiki")
            cycle.git.run("revert", "--no-edit", "-m", "1", "HEAD")
            cycle.git.run("branch", "-q", "-D", "reconciler/wiki")

    more_history(2)
    few = processes()
    more_history(10)
    assert processes() == few
