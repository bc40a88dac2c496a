"""Roles a person should not hold (`allowed_roles`): the pure rule, table-driven; the
plan's second kind of action and what a reviewer may do to it; and the whole cycle on a
real SCIM server, where the role goes and the account stays."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
import yaml

from reconciler import demo
from reconciler.config import Guards, Policy, PolicyException, RoleRule
from reconciler.connectors.scim import identity_from_user
from reconciler.correlate import correlate
from reconciler.errors import PlanError
from reconciler.model import Account, Identity
from reconciler.plan import REMOVE_ROLES, Action, check_subset, new_plan, why
from reconciler.planfile import parse_plan, plan_text
from reconciler.policy import PullState, assess, evaluate
from reconciler.snapshot import decode_identity, encode
from reconciler.testing.access_repo import Company, company
from reconciler.testing.scim_server import set_attribute

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ADMINS = RoleRule("admins", groups=("it",), people=("root@acme.com",))
POLICY = Policy(
    source_file="policies/default.yaml",
    apps=("*",),
    identity_source="corp",
    allowed_roles={"admins": ADMINS},
)
BOB = Account.build("a1", "bob", "bob@acme.com", roles=["admins", "editors"])
IN_IT = Identity.build("i1", "bob@acme.com", "bob", groups=["it"])
IN_SALES = IN_IT._replace(groups=("sales",))


def proposed(
    account: Account, identity: Identity, policy: Policy = POLICY, role_mode: str = "remove_roles"
) -> tuple[Action, ...]:
    links = correlate([account], [identity], policy.match, policy.domain_aliases)
    found = evaluate(
        {account.id: account},
        {identity.id: identity},
        links,
        policy,
        "disable",
        app="wiki",
        now=NOW,
        idle_mode="disable",
        role_mode=role_mode,
    )
    return found.actions


@pytest.mark.parametrize(
    ("account", "identity", "expected"),
    [
        (BOB, IN_IT, None),  # a member of the group the rule names
        (BOB, IN_SALES, ("remove_roles", ("admins",))),  # editors has no rule: anyone's
        (BOB, IN_SALES._replace(email="ROOT@Acme.com"), None),  # listed by name, any case
        (BOB._replace(roles=("editors",)), IN_SALES, None),
        (BOB._replace(status="disabled"), IN_SALES, None),
        (BOB._replace(type="service"), IN_SALES, None),  # protected
        # Someone who left loses the account, not a role.
        (BOB, IN_SALES._replace(status="deprovisioned"), ("disable", ())),
    ],
)
def test_a_role_held_outside_its_rule_is_taken(account, identity, expected) -> None:
    found = proposed(account, identity)
    if expected is None:
        assert found == ()
    else:
        (action,) = found
        assert (action.mode, action.roles) == expected


def test_a_role_action_says_what_it_takes_and_why() -> None:
    (action,) = proposed(BOB, IN_SALES)
    assert action.op == REMOVE_ROLES and action.takes_roles
    assert action.reason == "role_not_allowed"
    assert action.evidence["identity_groups"] == ["sales"]
    assert action.evidence["roles"] == ["admins", "editors"]
    assert action.to_data()["roles"] == ["admins"]
    line = why(action)
    assert "holds admins" in line and "groups: sales" in line and "account stays" in line
    # A deprovisioning action's data is as before: no `roles` key, so plan ids hold.
    (leaver,) = proposed(BOB, IN_SALES._replace(status="deprovisioned"))
    assert "roles" not in leaver.to_data()


def test_an_app_without_an_api_gets_a_manual_task_and_one_without_either_nothing() -> None:
    (task,) = proposed(BOB, IN_SALES, role_mode="manual")
    assert task.mode == "manual" and task.roles == ("admins",)
    assert proposed(BOB, IN_SALES, role_mode="") == ()


def test_an_exception_keeps_a_role_as_it_keeps_an_account() -> None:
    granted = PolicyException("migration", date(2026, 12, 31), "ciso", person="bob@acme.com")
    assert proposed(BOB, IN_SALES, replace(POLICY, exceptions=(granted,))) == ()


def run_assess(accounts, identities, policy=POLICY, modes=("disable", "remove_roles")):
    pull = PullState("corp", count=len(identities), previous_count=len(identities))
    return assess(
        "wiki",
        {a.id: a for a in accounts},
        {i.id: i for i in identities},
        pull,
        policy,
        modes,
        NOW,
    )


def test_a_group_no_identity_holds_blocks_a_plan_that_would_take_its_role() -> None:
    typo = replace(POLICY, allowed_roles={"admins": RoleRule("admins", groups=("it", "itt"))})
    found = run_assess([BOB], [IN_SALES], typo)
    assert len(found.actions) == 1
    assert any("itt" in r and "no identity in corp holds" in r for r in found.blocked_reasons)
    # Nobody loses the role: nothing to block.
    assert run_assess([BOB], [IN_IT], typo).blocked_reasons == ()


def test_an_app_that_cannot_take_roles_blocks_a_policy_with_role_rules() -> None:
    (reason,) = run_assess([BOB], [IN_IT], modes=("disable",)).blocked_reasons
    assert "can take roles neither through its API nor as manual tasks" in reason


def test_role_removals_count_toward_the_guards() -> None:
    others = [Account.build(f"a{n}", f"u{n}", f"u{n}@acme.com", roles=["admins"]) for n in (2, 3)]
    people = [Identity.build(f"i{n}", f"u{n}@acme.com", f"u{n}") for n in (2, 3)]
    policy = replace(POLICY, guards=Guards(max_per_run=1, max_fraction=1.0))
    found = run_assess([BOB, *others], [IN_SALES, *people], policy)
    assert len(found.actions) == 3
    assert any("max_per_run 1" in reason for reason in found.blocked_reasons)


# -- What a reviewer may do ---------------------------------------------------------------

TAKES = replace(proposed(BOB._replace(roles=("admins", "billing")), IN_SALES)[0])


def plan_of(*actions: Action):
    return new_plan(
        "wiki",
        actions,
        (),
        created_at="2026-11-26T09:00:00Z",
        base_commit="",
        snapshot_digests={},
        policy_digest="",
    )


BILLING_POLICY = replace(
    POLICY, allowed_roles={**POLICY.allowed_roles, "billing": RoleRule("billing", groups=("it",))}
)
GENERATED = plan_of(
    proposed(BOB._replace(roles=("admins", "billing")), IN_SALES, BILLING_POLICY)[0]
)


@pytest.mark.parametrize(
    ("edit", "refused"),
    [
        ({}, None),
        ({"roles": ("admins",)}, None),  # narrowed to one role
        ({"mode": "manual"}, None),  # narrowed to a person's task
        ({"skip": True}, None),
        ({"roles": ("admins", "billing", "editors")}, "never add roles"),
        ({"roles": ()}, "never add roles"),
        ({"op": "deprovision", "mode": "disable", "roles": ()}, "differs from what"),
        ({"mode": "disable"}, "cannot have"),
        ({"mode": "delete"}, "cannot have"),
        ({"reason": "idp_deprovisioned"}, "differs from what reconciler generated"),
    ],
)
def test_a_reviewer_may_narrow_a_role_removal_never_widen_it(edit, refused) -> None:
    (generated,) = GENERATED.actions
    assert generated.roles == ("admins", "billing")
    reviewed = plan_of(replace(generated, **edit))
    if refused is None:
        check_subset(reviewed, GENERATED)
    else:
        with pytest.raises(PlanError, match=refused):
            check_subset(reviewed, GENERATED)


def test_a_manual_task_cannot_be_widened_to_the_api() -> None:
    manual = plan_of(replace(GENERATED.actions[0], mode="manual"))
    widened = plan_of(GENERATED.actions[0])
    with pytest.raises(PlanError, match="widened"):
        check_subset(widened, manual)


def test_the_plan_file_says_why_in_one_comment_line_per_action() -> None:
    hostile = replace(GENERATED.actions[0], username="bob\n- op: deprovision")
    plan = plan_of(hostile)
    text = plan_text(plan)
    comments = [line for line in text.splitlines() if line.startswith("# - ")]
    assert len(comments) == 1 and "holds admins, billing" in comments[0]
    assert parse_plan(text.encode(), "plans/wiki.yaml") == plan


# -- The whole cycle on a real SCIM server -------------------------------------------------

RULED = demo.POLICY + demo.ROLE_RULES


def admins(c: Company) -> list[str]:
    return c.app.members(c.app_ids.groups[demo.ADMIN_ROLE])


def role_actions(c: Company) -> list[dict]:
    return [a for a in c.plan_on_branch()["actions"] if a.get("op") == REMOVE_ROLES]


def test_a_role_held_outside_its_rule_is_taken_and_the_account_stays(tmp_path) -> None:
    with company(tmp_path, policy=RULED) as c:
        holder = c.app_ids.users[demo.ROLE_HOLDER]
        result = c.cli("check")
        assert result.exit_code == 0, result.output
        (action,) = role_actions(c)
        assert action["account"]["id"] == holder
        assert (action["mode"], action["roles"]) == ("remove_roles", [demo.ADMIN_ROLE])
        report = (c.git.show("reconciler/wiki", "plans/wiki.md") or b"").decode()
        assert "Updated roles: to remove (1)" in report and "| Roles to remove | 1 |" in report
        raw = (c.git.show("reconciler/wiki", "plans/wiki.yaml") or b"").decode()
        assert f"# - {demo.ROLE_HOLDER}: holds {demo.ADMIN_ROLE}" in raw

        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        assert f"{demo.ROLE_HOLDER}: took roles {demo.ADMIN_ROLE}" in applied.output
        assert holder not in admins(c)
        assert c.app_ids.users["alice.liddell"] in admins(c)  # engineering keeps it
        assert c.app_user(demo.ROLE_HOLDER)["active"] is True
        (journal,) = (c.repo / "history" / "wiki").glob("*.yaml")
        (entry,) = yaml.safe_load(journal.read_text())["actions"]
        assert (entry["mode"], entry["outcome"]) == ("remove_roles", "done")
        snapshot = (c.repo / "state/apps/wiki/accounts.yaml").read_text()
        line = next(x for x in snapshot.splitlines() if holder in x)
        assert demo.ADMIN_ROLE not in line and "active" in line

        # The audit shows the role taken as an event, never as the account removed.
        audited = c.cli("audit", "person", f"{demo.ROLE_HOLDER}@{demo.DOMAIN}", "--format", "json")
        assert audited.exit_code == 0, audited.output
        person = json.loads(audited.output)
        assert person["removals"] == []
        assert f"took roles {demo.ADMIN_ROLE}" in audited.output

        # Nothing left to propose: the next check closes the branch.
        again = c.cli("check")
        assert again.exit_code == 0, again.output
        assert c.git.show("reconciler/wiki", "plans/wiki.yaml") is None


def test_someone_who_joined_the_rule_s_group_since_the_plan_keeps_the_role(tmp_path) -> None:
    with company(tmp_path, policy=RULED) as c:
        assert c.cli("check").exit_code == 0
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        # Moved to engineering in the IdP before the apply.
        engineering = c.idp_ids.groups["engineering"]
        c.idp.add_member(engineering, c.idp_ids.users[demo.ROLE_HOLDER])
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        assert "admits them to admins now" in applied.output
        assert c.app_ids.users[demo.ROLE_HOLDER] in admins(c)


def test_a_role_added_to_the_plan_is_refused_and_nothing_is_taken(tmp_path) -> None:
    with company(tmp_path, policy=RULED) as c:
        assert c.cli("check").exit_code == 0
        # A reviewer adds a role on the plan's branch, then it is approved and merged.
        plan_file = c.repo / "plans" / "wiki.yaml"
        c.git.run("checkout", "-q", "reconciler/wiki")
        plan = yaml.safe_load(plan_file.read_text())
        (action,) = [a for a in plan["actions"] if a.get("op") == REMOVE_ROLES]
        action["roles"].append("viewers")
        plan_file.write_text(yaml.safe_dump(plan))
        c.git.commit_paths(["plans/wiki.yaml"], "take viewers too")
        c.git.run("checkout", "-q", "main")
        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        applied = c.cli("apply", "--confirm")
        assert applied.exit_code != 0
        assert "never add roles" in applied.output
        assert c.app_ids.users[demo.ROLE_HOLDER] in admins(c)


def test_a_misspelt_group_is_named_by_validate_and_blocks_the_plan(tmp_path) -> None:
    with company(tmp_path, policy=demo.POLICY) as c:
        assert c.cli("check").exit_code == 0  # the identity snapshot validate reads
        typo = demo.ROLE_RULES.replace("[engineering]", "[enginering]")
        c.write_policy(demo.POLICY + typo)
        line = (
            (demo.POLICY + typo)
            .splitlines()
            .index(f"  {demo.ADMIN_ROLE}: {{groups: [enginering]}}")
        )
        result = c.cli("validate")
        assert result.exit_code != 0
        assert f"policies/default.yaml:{line + 1}:" in result.output
        assert "no identity in corp holds group 'enginering'" in result.output
        assert "did you mean 'engineering'?" in result.output


# -- Departments and titles ----------------------------------------------------------------

BY_JOB = RoleRule("admins", departments=("finance",), titles=("it manager",))


@pytest.mark.parametrize(
    ("department", "title", "admitted"),
    [
        ("Finance", "", True),  # any case
        ("", "IT Manager", True),
        ("Sales", "Account Executive", False),
        ("", "", False),  # the source does not say: not admitted
        ("Finance Ops", "", False),  # a name, not a prefix
    ],
)
def test_a_rule_admits_by_department_or_title(department, title, admitted) -> None:
    policy = replace(POLICY, allowed_roles={"admins": BY_JOB})
    identity = IN_SALES._replace(department=department, title=title)
    assert (proposed(BOB, identity, policy) == ()) is admitted


def test_department_and_title_reach_the_snapshot_only_when_the_source_gives_them() -> None:
    plain = Identity.build("i1", "bob@acme.com", "bob")
    assert "department" not in plain.to_record() and "title" not in plain.to_record()
    job = Identity.build("i1", "bob@acme.com", "bob", department=" Finance ", title="Controller")
    record = job.to_record()
    assert (record["department"], record["title"]) == ("Finance", "Controller")
    assert Identity.from_record(record) == job
    assert decode_identity(encode(job)) == job


def test_scim_gives_the_enterprise_department_and_the_core_title() -> None:
    user = {
        "id": "u1",
        "userName": "bob",
        "title": "Controller",
        ENTERPRISE: {"department": "Finance"},
    }
    found = identity_from_user(user)
    assert (found.department, found.title) == ("Finance", "Controller")
    assert identity_from_user({"id": "u2", "userName": "eve", "title": 7}).title == ""


def test_a_title_the_idp_gives_keeps_the_role_on_the_real_scim_servers(tmp_path) -> None:
    rule = "allowed_roles:\n  admins: {groups: [engineering], titles: [IT Manager]}\n"
    with company(tmp_path, policy=demo.POLICY + rule) as c:
        holder = c.idp_ids.users[demo.ROLE_HOLDER]
        set_attribute(c.idp.url, c.idp.token, holder, "title", "IT Manager")
        assert c.cli("check").exit_code == 0
        assert c.git.show("reconciler/wiki", "plans/wiki.yaml") is None
        identities = (c.repo / "state/identities/corp.yaml").read_text()
        assert '"title":"IT Manager"' in identities
        set_attribute(c.idp.url, c.idp.token, holder, "title", "Account Executive")
        assert c.cli("check").exit_code == 0
        (action,) = role_actions(c)
        assert action["evidence"]["identity_title"] == "Account Executive"
