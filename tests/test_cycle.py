"""The whole cycle against real scim2-servers and real git: check → approve → apply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import yaml

from reconciler import demo
from reconciler.testing.access_repo import Company, company
from reconciler.validate import validate_file

LEAVERS = (*demo.LEAVERS_DEPROVISIONED, demo.LEAVER_DELETED)


def proposed(c: Company) -> list[str]:
    """Check, expect a plan, return the usernames it proposes."""
    result = c.cli("check", "--detailed-exitcode")
    assert result.exit_code == 4, result.output
    return sorted(a["account"]["username"] for a in c.plan_on_branch()["actions"])


def test_demo_command_runs_the_whole_cycle():
    from click.testing import CliRunner

    from reconciler.cli import main

    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    for username in LEAVERS:
        assert f"{username}: disabled" in result.output
    assert (
        "apply wiki: disabled 3 and took roles from 1 of 4 accounts, approved by demo-reviewer"
        in result.output
    )
    # The demo explains why a role goes, and takes it on the real SCIM server.
    assert f"reconciler explain --app wiki {demo.ROLE_HOLDER}" in result.output
    assert f"{demo.ROLE_HOLDER}: took roles {demo.ADMIN_ROLE}" in result.output
    # The demo's policy prices the wiki's seats, so its report says what the plan saves.
    assert "## Seats and cost" in result.output
    assert "37.50 EUR per month" in result.output


def test_full_cycle(tmp_path):
    with company(tmp_path) as c:
        first = c.cli("check")
        assert first.exit_code == 0, first.output
        assert (c.repo / "state/apps/wiki/accounts.yaml").exists()
        assert c.git.head("reconciler/wiki") is None  # nobody has left yet

        c.leave()
        assert proposed(c) == sorted(LEAVERS)
        report = c.git.show("reconciler/wiki", "plans/wiki.md").decode()
        assert "| To deprovision | 3 |" in report

        dry = c.cli("apply")
        assert dry.exit_code == 0
        assert "no merged plans" in dry.output

        approved = c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER)
        assert approved.exit_code == 0, approved.output
        message = c.git.commit_info("HEAD").message
        assert f"Approved-by: {demo.REVIEWER}" in message

        dry = c.cli("apply")
        assert dry.exit_code == 0, dry.output
        assert all(c.app_user(u)["active"] for u in LEAVERS)  # a dry run changes nothing

        applied = c.cli("apply", "--confirm", "--format", "json")
        assert applied.exit_code == 0, applied.output
        outcome = json.loads(applied.output)["apps"][0]
        assert sorted(a["outcome"] for a in outcome["actions"]) == ["done"] * 3
        for username in LEAVERS:
            assert c.app_user(username)["active"] is False
        assert not (c.repo / "plans/wiki.yaml").exists()
        (history,) = (c.repo / "history/wiki").glob("*.yaml")
        journal = yaml.safe_load(history.read_text())
        assert journal["approved_by"] == [demo.REVIEWER]
        assert journal["finished_at"]
        assert validate_file(history, "history") == []
        assert c.git.commit_info("HEAD").message.startswith("apply wiki: disabled 3 of 3")
        assert c.git.dirty_paths() == []

        # The refreshed snapshot already shows them disabled: the next check proposes nothing.
        again = c.cli("check", "--detailed-exitcode")
        assert again.exit_code == 0, again.output
        assert c.git.head("reconciler/wiki") is None

        status = c.cli("status", "--format", "json")
        assert json.loads(status.output)["open_plans"] == []


def test_two_checks_without_change_make_one_commit(tmp_path):
    with company(tmp_path) as c:
        before = c.commit_count()
        assert c.cli("check").exit_code == 0
        after_first = c.commit_count()
        assert after_first > before
        snapshot_bytes = (c.repo / "state/apps/wiki/accounts.yaml").read_bytes()
        assert c.cli("check").exit_code == 0
        assert c.commit_count() == after_first
        assert (c.repo / "state/apps/wiki/accounts.yaml").read_bytes() == snapshot_bytes


def test_protected_and_service_accounts_are_never_actions(tmp_path):
    with company(tmp_path) as c:
        assert c.cli("check").exit_code == 0
        # The break-glass admin and the service account have no identity at all, and
        # the service account's email matches a leaver's: still never proposed.
        c.leave()
        names = proposed(c)
        assert demo.BREAK_GLASS not in names and demo.SERVICE_ACCOUNT not in names
        report = c.git.show("reconciler/wiki", "plans/wiki.md").decode()
        assert "service account" in report


class PageBreaker:
    """WSGI middleware: once armed, listing users fails on the second page."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.armed = False

    def __call__(self, app):
        def wrapped(environ, start_response):
            query = environ.get("QUERY_STRING", "")
            is_list = environ["PATH_INFO"].rstrip("/").endswith("/Users")
            if self.armed and is_list and environ["REQUEST_METHOD"] == "GET":
                if self.mode == "down":
                    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                    return [b"maintenance"]
                if self.mode == "partial" and "startIndex=1&" not in query + "&":
                    return self.drop_resources(app, environ, start_response)
            return app(environ, start_response)

        return wrapped

    @staticmethod
    def drop_resources(app, environ, start_response):
        """Forward the request, then return its page with the users taken out: the
        server's totalResults promises more than the pull can get."""
        captured = {}

        def keep(status, headers, exc_info=None):
            captured["status"] = status

        page = json.loads(b"".join(app(environ, keep)))
        page["Resources"] = []
        page["itemsPerPage"] = 0
        body = json.dumps(page).encode()
        start_response(captured["status"], [("Content-Type", "application/scim+json")])
        return [body]


@pytest.mark.parametrize("failure", ["down", "partial", "empty"])
def test_untrustworthy_idp_pull_proposes_nothing(tmp_path, failure):
    breaker = PageBreaker(failure)
    with company(tmp_path, idp_middleware=breaker) as c:
        (c.repo / "reconciler.yaml").write_text(
            (c.repo / "reconciler.yaml").read_text() + "", encoding="utf-8"
        )
        policy = demo.POLICY
        config = (
            (c.repo / "reconciler.yaml")
            .read_text()
            .replace(
                "token_env: DEMO_IDP_TOKEN",
                "token_env: DEMO_IDP_TOKEN\n    page_size: 10\n    max_retries: 1",
            )
        )
        (c.repo / "reconciler.yaml").write_text(config)
        c.git.commit_paths(["reconciler.yaml"], "small pages")
        c.write_policy(policy)
        assert c.cli("check").exit_code == 0
        c.leave()
        if failure == "empty":
            for user in c.idp.list_users():
                c.idp.delete_user(user["id"])
        else:
            breaker.armed = True
        result = c.cli("check", "--format", "markdown")
        assert result.exit_code == 1, result.output
        assert c.git.head("reconciler/wiki") is None
        assert (
            "no deprovisioning" in result.output.lower()
            or "never read as everyone" in result.output
        )
        # The last good identity snapshot is kept, not replaced by an empty one.
        identities = yaml.safe_load((c.repo / "state/identities/corp.yaml").read_text())
        assert len(identities["identities"]) == len(demo.people())


def test_plan_edited_to_add_an_account_is_refused(tmp_path):
    with company(tmp_path) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        proposed(c)
        # A reviewer adds a colleague who did not leave to the plan on the branch.
        c.git.run("checkout", "-q", "reconciler/wiki")
        plan = yaml.safe_load((c.repo / "plans/wiki.yaml").read_text())
        victim = c.app_user("alice.liddell")
        extra = json.loads(json.dumps(plan["actions"][0]))
        extra["account"] = {
            "id": victim["id"],
            "username": "alice.liddell",
            "email": "alice.liddell@example.com",
            "display_name": "Alice Liddell",
        }
        plan["actions"].append(extra)
        (c.repo / "plans/wiki.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
        c.git.run(
            "-c",
            "user.name=Mallory",
            "-c",
            "user.email=m@example.com",
            "commit",
            "-qam",
            "add alice",
            env={"GIT_AUTHOR_NAME": "Mallory", "GIT_AUTHOR_EMAIL": "m@example.com"},
        )
        c.git.run("checkout", "-q", "main")
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        head = c.git.head()
        result = c.cli("apply", "--confirm")
        assert result.exit_code == 1
        assert "was not generated by reconciler" in result.output
        assert victim["id"] in result.output
        assert all(c.app_user(u)["active"] for u in [*LEAVERS, "alice.liddell"])
        assert c.git.head() == head and c.git.dirty_paths() == []


def test_identity_reactivated_after_merge_is_skipped(tmp_path):
    with company(tmp_path) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        proposed(c)
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        back = demo.LEAVERS_DEPROVISIONED[0]
        c.idp.set_active(c.idp_ids.users[back], True)
        result = c.cli("apply", "--confirm", "--format", "json")
        assert result.exit_code == 0, result.output
        outcomes = {
            a["account"]["username"]: a for a in json.loads(result.output)["apps"][0]["actions"]
        }
        assert outcomes[back]["outcome"] == "skipped"
        assert "active again" in outcomes[back]["detail"]
        assert c.app_user(back)["active"] is True
        assert c.app_user(demo.LEAVER_DELETED)["active"] is False


def test_approval_policy_is_enforced(tmp_path):
    with company(tmp_path) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        proposed(c)
        refused = c.cli("approve", "--app", "wiki", "--as", "mallory")
        assert refused.exit_code == 1
        assert "may not approve" in refused.output
        assert c.git.head("reconciler/wiki") is not None


class PatchGate:
    """Counts PATCHes per user; once armed, holds the second PATCH and never performs it."""

    def __init__(self) -> None:
        self.performed: Counter[str] = Counter()
        self.seen = 0
        self.hold = False
        self.release = threading.Event()

    def __call__(self, app):
        def wrapped(environ, start_response):
            if environ["REQUEST_METHOD"] == "PATCH":
                self.seen += 1
                if self.hold and self.seen == 2:
                    self.release.wait(30)
                    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                    return [b"gone"]
                self.performed[environ["PATH_INFO"]] += 1
            return app(environ, start_response)

        return wrapped


def test_apply_killed_mid_plan_acts_once_per_account(tmp_path):
    gate = PatchGate()
    with company(tmp_path, app_middleware=gate) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        proposed(c)
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        gate.hold = True
        env = {**os.environ, **c.env}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reconciler",
                "apply",
                "--confirm",
                "--concurrency",
                "1",
                "--repo",
                str(c.repo),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while gate.seen < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gate.seen == 2, "apply never reached its second action"
        proc.kill()
        proc.wait()
        gate.release.set()
        journal = yaml.safe_load(next((c.repo / "history/wiki").glob("*.yaml")).read_text())
        assert sorted(a["outcome"] for a in journal["actions"]) == ["done", "pending"]

        gate.hold = False
        result = c.cli("apply", "--confirm")
        assert result.exit_code == 0, result.output
        ids = [c.app_ids.users[u] for u in LEAVERS]
        assert {k.rsplit("/", 1)[-1]: v for k, v in gate.performed.items()} == dict.fromkeys(ids, 1)
        # A third run finds nothing left to apply.
        assert "no merged plans" in c.cli("apply", "--confirm").output


def test_hostile_names_are_inert_in_the_report(tmp_path):
    hostile = "Eve | <script>alert(1)</script> `rm -rf` @channel \u202eevil"
    idp_users = [demo.scim_user("eve", "eve@example.com", "Eve", "X", displayName=hostile)]
    idp_users += [demo.scim_user(f"p{i}", f"p{i}@example.com", "P", str(i)) for i in range(20)]
    app_users = [demo.scim_user("eve", "eve@example.com", "Eve", "X", displayName=hostile)]
    app_users += [demo.scim_user(f"p{i}", f"p{i}@example.com", "P", str(i)) for i in range(20)]
    with company(tmp_path, idp_users=idp_users, app_users=app_users) as c:
        assert c.cli("check").exit_code == 0
        c.idp.set_active(c.idp_ids.users["eve"], False)
        assert proposed(c) == ["eve"]
        report = c.git.show("reconciler/wiki", "plans/wiki.md").decode()
        assert "<script>" not in report
        assert "@channel" not in report
        assert "\u202e" not in report
        assert "`rm" not in report
        row = next(line for line in report.splitlines() if "Eve" in line and line.startswith("|"))
        assert row.count("|") - row.count("\\|") == report.splitlines()[
            report.splitlines().index(row) - 2
        ].count("|")


def test_open_plan_is_updated_in_place_and_closed_when_moot(tmp_path):
    with company(tmp_path) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        proposed(c)
        first = c.git.head("reconciler/wiki")
        assert c.cli("check", "--detailed-exitcode").exit_code == 4
        assert c.git.head("reconciler/wiki") == first  # unchanged plan, untouched branch

        c.idp.set_active(c.idp_ids.users["alice.liddell"], False)
        assert proposed(c) == sorted([*LEAVERS, "alice.liddell"])
        assert len(c.git.log("main..reconciler/wiki")) == 1  # still one branch, one commit

        for username in (*demo.LEAVERS_DEPROVISIONED, "alice.liddell"):
            c.idp.set_active(c.idp_ids.users[username], True)
        c.app.delete_user(c.app_ids.users[demo.LEAVER_DELETED])
        result = c.cli("check", "--detailed-exitcode")
        assert result.exit_code == 0, result.output
        assert "closed" in result.output
        assert c.git.head("reconciler/wiki") is None


def test_no_second_plan_while_an_approved_one_waits(tmp_path):
    with company(tmp_path) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        proposed(c)
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        result = c.cli("check")
        assert "waiting for `reconciler apply`" in result.output
        assert c.git.head("reconciler/wiki") is None


def test_blocked_plan_needs_a_merged_override(tmp_path):
    strict = demo.POLICY.replace("max_per_run: 10", "max_per_run: 2")
    with company(tmp_path, policy=strict) as c:
        assert c.cli("check").exit_code == 0
        c.leave()
        proposed(c)
        plan = c.plan_on_branch()
        assert plan["status"] == "blocked"
        assert "max_per_run 2" in plan["blocked_reasons"][0]
        assert "max\\_per\\_run 2" in c.git.show("reconciler/wiki", "plans/wiki.md").decode()
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0

        refused = c.cli("apply", "--confirm")
        assert refused.exit_code == 1
        assert f"add '{plan['plan']}' to guards.allow_blocked_plans" in refused.output
        assert all(c.app_user(u)["active"] for u in LEAVERS)

        c.write_policy(
            strict.replace(
                "max_identity_shrink: 0.2",
                (f'max_identity_shrink: 0.2\n  allow_blocked_plans: ["{plan["plan"]}"]'),
            )
        )
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        assert not any(c.app_user(u)["active"] for u in LEAVERS)
