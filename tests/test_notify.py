"""Owners are emailed when a plan opens, changes, is blocked or is late: the pure decision
(table-driven), the SMTP edge against a real aiosmtpd server on 127.0.0.1, the record
of what was sent, and `reconciler check` end to end."""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler import demo
from reconciler.check import CheckRun
from reconciler.config import (
    OWNER_EMAIL,
    OWNER_TEAM,
    OWNER_USER,
    Config,
    Policy,
    SmtpSettings,
)
from reconciler.forge.local import LocalForge
from reconciler.notify import record
from reconciler.notify.events import AppPlans, Event, Notice, decide
from reconciler.notify.owners import notify_owners
from reconciler.notify.smtp import SmtpSender
from reconciler.outcome import AppCheck
from reconciler.plan import Action, Plan, new_plan
from reconciler.settings import load_settings
from reconciler.testing.access_repo import Company, company
from reconciler.testing.github_fake import github_company
from reconciler.testing.schema_fakes import REGISTRY
from reconciler.testing.smtp_server import start_smtp_server
from reconciler.validate import load_schema, validate_data, validate_repo

NOW = datetime(2026, 11, 10, 9, 0, 0, tzinfo=UTC)
CREATED = "2026-11-02T06:00:00Z"  # eight days before NOW
DAY = timedelta(days=1)
OWNERS = ("alice@acme.com", "bob@acme.com")
HOSTILE = "evil\r\nBcc: mallory@evil.example\n\u202e\x1b[2Jadmin"
USER, PASSWORD = "reconciler", "s3cret-Pa55word"

# --- builders ------------------------------------------------------------------------


def action(n: int, **fields: object) -> Action:
    base: dict[str, object] = {
        "account_id": str(n),
        "username": f"user{n}",
        "email": f"user{n}@acme.com",
        "display_name": f"User {n}",
        "mode": "disable",
        "reason": "idp_deprovisioned",
        "identity_id": f"i{n}",
    }
    base.update(fields)
    return Action(**base)  # type: ignore[arg-type]


def plan(n: int = 3, blocked: tuple[str, ...] = (), created_at: str = CREATED) -> Plan:
    return new_plan(
        "wiki",
        [action(i) for i in range(n)],
        blocked,
        created_at=created_at,
        base_commit="0" * 40,
        snapshot_digests={},
        policy_digest="p",
    )


def state(
    *,
    checked: Plan | None = None,
    proposal: str = "",
    open_plan: Plan | None = None,
    approved: Plan | None = None,
    owners: tuple[str, ...] = OWNERS,
) -> AppPlans:
    return AppPlans(
        check=AppCheck(app="wiki", identity_source="corp", plan=checked),
        proposal=proposal,
        open_plan=open_plan,
        approved_plan=approved,
        link="branch reconciler/wiki",
        owners=owners,
        policy_file="policies/default.yaml",
    )


def settings(**smtp: object) -> SmtpSettings:
    return replace(SmtpSettings(host="127.0.0.1", sender="reconciler@acme.com"), **smtp)  # type: ignore[arg-type]


def notice(event: Event = Event.OPENED, plan_id: str = "p1") -> Notice:
    return Notice(
        app="wiki",
        plan_id=plan_id,
        event=event,
        recipients=OWNERS,
        subject=f"[reconciler] wiki: {event.words}",
        body="body\n",
    )


# --- owners and configuration --------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "kind"),
    [
        ("alice", "user"),
        ("Alice-B2", "user"),
        ("acme/security", "team"),
        ("acme-corp/sec_ops-1", "team"),
        ("alice@acme.com", "email"),
        ("a.b+reconciler@mail.acme.co.uk", "email"),
        ("-alice", None),
        ("alice-", None),
        ("a" * 40, None),
        ("acme/Security", None),
        ("acme/security/x", None),
        ("alice@acme", None),
        ("alice smith@acme.com", None),
        ("alice@acme.com\n", None),
        ("alice@acme.com\nBcc: x@evil.example", None),
        ("<alice@acme.com>", None),
        ("", None),
    ],
)
def test_owner_kinds_by_pattern_in_policy_and_schema(owner: str, kind: str | None) -> None:
    policy = Policy("policies/p.yaml", ("*",), "corp", owners=(owner,))
    kinds = {
        "user": policy.owner_users,
        "team": policy.owner_teams,
        "email": policy.owner_emails,
    }
    assert [k for k, found in kinds.items() if found] == ([kind] if kind else [])
    data = {"apps": ["*"], "identity_source": "corp", "owners": [owner]}
    problems = validate_data(data, {}, "policy", "policies/p.yaml")
    assert (not problems) == (kind is not None), problems


def test_owner_patterns_are_the_schemas() -> None:
    items = load_schema("policy")["properties"]["owners"]["items"]["anyOf"]
    assert [i["pattern"] for i in items] == [
        OWNER_USER.pattern,
        OWNER_TEAM.pattern,
        OWNER_EMAIL.pattern,
    ]


def test_policy_owners_split_by_kind() -> None:
    data = {"apps": ["*"], "identity_source": "corp", "owners": ["alice", "acme/sec", "a@b.io"]}
    policy = Policy.from_data("policies/p.yaml", data, "disable")
    assert policy.owners == ("alice", "acme/sec", "a@b.io")
    assert (policy.owner_users, policy.owner_teams, policy.owner_emails) == (
        ("alice",),
        ("acme/sec",),
        ("a@b.io",),
    )
    assert Policy.from_data("p", {"apps": ["*"], "identity_source": "c"}, "disable").owners == ()


def test_notify_section_defaults() -> None:
    assert Config.from_data({"version": 1}).notify.smtp is None
    notify = Config.from_data(
        {"version": 1, "notify": {"smtp": {"host": "smtp.acme.com", "from": "r@acme.com"}}}
    ).notify
    assert notify.late_after_days == 3
    assert notify.smtp == SmtpSettings(host="smtp.acme.com", sender="r@acme.com")
    assert (notify.smtp.port, notify.smtp.starttls, notify.smtp.timeout) == (587, True, 30.0)


def write_repo(root: Path, notify: str) -> Path:
    (root / "policies").mkdir(parents=True)
    config = "version: 1\nidentity_sources:\n  corp: {type: export, path: i.csv}\n"
    (root / "reconciler.yaml").write_text(config + textwrap.dedent(notify), encoding="utf-8")
    (root / "policies/default.yaml").write_text(
        'apps: ["*"]\nidentity_source: corp\nowners: [alice@acme.com]\n', encoding="utf-8"
    )
    return root


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        (
            """\
            notify:
              smtp: {host: smtp.acme.com, from: r@acme.com, username_env: SMTP_USER,
                     password_env: SMTP_PASSWORD}
              late_after_days: 5
            """,
            [],
        ),
        (
            """\
            notify:
              smtp: {host: smtp.acme.com, from: r@acme.com, username_env: SMTP_USER,
                     password_env: "hunter2!secret"}
            """,
            ["notify.smtp.password_env looks like a literal secret"],
        ),
        (
            """\
            notify:
              smtp: {host: smtp.acme.com, from: r@acme.com, password: "hunter2!secret"}
            """,
            ["'password' in notify.smtp would hold a literal secret"],
        ),
        (
            """\
            notify:
              smtp: {host: smtp.acme.com, from: r@acme.com, username_env: SMTP_USER}
            """,
            ["password_env"],
        ),
        (
            """\
            notify:
              smtp: {host: smtp.acme.com, from: "r@acme.com\\nBcc: x@evil.example"}
              late_after_days: 0
            """,
            ["notify.smtp.from", "notify.late_after_days: must be at least 1"],
        ),
        ("notify:\n  smtp: {from: r@acme.com}\n", ["missing required key 'host'"]),
    ],
)
def test_notify_section_is_validated(tmp_path: Path, notify: str, expected: list[str]) -> None:
    problems = [str(d) for d in validate_repo(write_repo(tmp_path, notify), REGISTRY)]
    assert len(problems) == len(expected), problems
    for problem, words in zip(problems, expected, strict=True):
        assert words in problem
        assert "hunter2" not in problem


# --- the decision --------------------------------------------------------------------

OPEN = plan()
BLOCKED = plan(blocked=("3 accounts exceed max_per_run 1",))
FRESH = plan(created_at="2026-11-10T08:00:00Z")


@pytest.mark.parametrize(
    ("name", "app", "sent", "expected"),
    [
        ("plan opened", state(checked=OPEN, proposal="created", open_plan=OPEN), (), ["opened"]),
        (
            "plan changed",
            state(checked=FRESH, proposal="updated", open_plan=FRESH),
            (),
            ["updated"],
        ),
        (
            "blocked plan proposed",
            state(checked=BLOCKED, proposal="created", open_plan=BLOCKED),
            (),
            ["blocked"],
        ),
        (
            "unchanged, not late",
            state(checked=FRESH, proposal="unchanged", open_plan=FRESH),
            (("wiki", FRESH.id, "updated"),),
            [],
        ),
        (
            "unchanged, never told (failed email, or notify is new)",
            state(checked=FRESH, proposal="unchanged", open_plan=FRESH),
            (),
            ["opened"],
        ),
        (
            "unchanged, late",
            state(checked=OPEN, proposal="unchanged", open_plan=OPEN),
            (("wiki", OPEN.id, "opened"),),
            ["late_review"],
        ),
        (
            "late reminder sent once",
            state(checked=OPEN, proposal="unchanged", open_plan=OPEN),
            (("wiki", OPEN.id, "opened"), ("wiki", OPEN.id, "late_review")),
            [],
        ),
        (
            "opened already emailed",
            state(checked=FRESH, proposal="created", open_plan=FRESH),
            (("wiki", FRESH.id, "opened"),),
            [],
        ),
        (
            "reviewer edits kept",
            state(checked=FRESH, proposal="kept reviewer edits", open_plan=OPEN),
            (("wiki", OPEN.id, "opened"), ("wiki", OPEN.id, "late_review")),
            [],
        ),
        (
            "approved, waiting",
            state(approved=OPEN, proposal="approved plan waiting"),
            (),
            ["late_apply"],
        ),
        ("approved, not late", state(approved=FRESH, proposal="approved plan waiting"), (), []),
        ("no owner email", state(checked=OPEN, proposal="created", owners=()), (), []),
        ("nothing to propose", state(proposal="nothing to propose"), (), []),
        (
            "unreadable creation time",
            state(open_plan=replace(OPEN, created_at="yesterday"), proposal="unchanged"),
            (("wiki", OPEN.id, "opened"),),
            [],
        ),
    ],
)
def test_who_is_emailed_about_what(
    name: str, app: AppPlans, sent: tuple[tuple[str, str, str], ...], expected: list[str]
) -> None:
    notices = decide([app], now=NOW, late_after=3 * DAY, already_sent=frozenset(sent))
    assert [n.event.value for n in notices] == expected, name
    for n in notices:
        assert n.recipients == OWNERS
        assert n.app == "wiki"


def test_late_means_late_after_days_since_the_plan_was_created() -> None:
    waiting = state(open_plan=OPEN, proposal="unchanged")
    told = frozenset({("wiki", OPEN.id, "opened")})
    created = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    for after, now, late in [(3, 3 * DAY, True), (3, 3 * DAY - timedelta(seconds=1), False)]:
        notices = decide([waiting], now=created + now, late_after=after * DAY, already_sent=told)
        assert bool(notices) == late


def one(app: AppPlans, sent: tuple[tuple[str, str, str], ...] = ()) -> Notice:
    (only,) = decide([app], now=NOW, late_after=3 * DAY, already_sent=frozenset(sent))
    return only


def test_subjects_and_bodies() -> None:
    opened = one(state(checked=FRESH, proposal="created", open_plan=FRESH))
    assert opened.subject == "[reconciler] wiki: 3 accounts to deprovision (review needed)"
    assert "Review: branch reconciler/wiki" in opened.body
    assert f"Plan: {FRESH.id} (open), created 2026-11-10T08:00:00Z" in opened.body
    assert "  To deprovision: 3" in opened.body
    line = "  - user0 (user0@acme.com): deprovisioned in the identity provider; disable"
    assert line in opened.body
    assert "policies/default.yaml names you among the owners of wiki" in opened.body
    assert "Why it is blocked" not in opened.body

    changed = one(state(checked=FRESH, proposal="updated", open_plan=FRESH))
    assert (
        changed.subject
        == "[reconciler] wiki: plan changed, 3 accounts to deprovision (review needed)"
    )

    blocked = one(state(checked=BLOCKED, proposal="updated", open_plan=BLOCKED))
    assert blocked.subject == (
        "[reconciler] wiki: 3 accounts to deprovision, plan blocked (admin needed)"
    )
    assert "Why it is blocked:\n  - 3 accounts exceed max_per_run 1\n" in blocked.body

    late = one(state(open_plan=OPEN, proposal="unchanged"), (("wiki", OPEN.id, "opened"),))
    assert late.subject == "[reconciler] wiki: 3 accounts to deprovision, waiting 8 days for review"

    applied = one(state(approved=OPEN, proposal="approved plan waiting"))
    assert applied.subject == (
        "[reconciler] wiki: approved plan waiting 8 days to be applied (3 accounts to deprovision)"
    )
    assert "reconciler apply --app wiki --confirm" in applied.body


def test_a_plan_never_announced_is_announced_before_it_is_late() -> None:
    never_told = one(state(open_plan=OPEN, proposal="unchanged"))
    assert never_told.event == Event.OPENED
    assert one(state(open_plan=BLOCKED, proposal="unchanged")).event == Event.BLOCKED


def test_a_long_plan_lists_twenty_accounts_and_counts_the_rest() -> None:
    big = plan(n=45)
    body = decide(
        [state(checked=big, proposal="created")], now=NOW, late_after=30 * DAY, already_sent=set()
    )[0].body
    assert body.count("\n  - user") == 20
    assert "... and 25 more (see the plan)" in body


def test_hostile_values_from_systems_are_inert() -> None:
    hostile = new_plan(
        "wiki",
        [action(1, username=HOSTILE, email=HOSTILE, reason=HOSTILE, account_id=HOSTILE)],
        (HOSTILE,),
        created_at=HOSTILE,
        base_commit="0",
        snapshot_digests={},
        policy_digest="p",
    )
    app = replace(
        state(checked=hostile, proposal="created"),
        link=HOSTILE,
        policy_file=HOSTILE,
        check=AppCheck(app="wiki", identity_source="corp", plan=hostile, app_error=""),
    )
    (email,) = decide([app], now=NOW, late_after=30 * DAY, already_sent=frozenset())
    for text in (email.subject, email.body):
        assert "\r" not in text
        assert "\x1b" not in text and "\u202e" not in text
    assert not any(line.startswith("Bcc:") for line in email.body.splitlines())
    assert "evil\\r\\nBcc: mallory@evil.example\\n\\u202e\\u001b[2Jadmin" in email.body


# --- the SMTP edge, against a real server ----------------------------------------------


def hostile_notice() -> Notice:
    hostile = new_plan(
        "wiki",
        [action(1, username=HOSTILE, email=HOSTILE, reason=HOSTILE)],
        (HOSTILE,),
        created_at=HOSTILE,
        base_commit="0",
        snapshot_digests={},
        policy_digest="p",
    )
    app = replace(state(checked=hostile, proposal="created"), link=HOSTILE)
    (only,) = decide([app], now=NOW, late_after=30 * DAY, already_sent=frozenset())
    return only


def test_hostile_values_reach_the_relay_inert() -> None:
    with start_smtp_server() as server:
        (delivery,) = SmtpSender(settings(port=server.port, starttls=False), {}).send(
            [hostile_notice()], NOW
        )
        assert delivery.sent, delivery.error
        (received,) = server.wait_for(1)
    assert received.recipients == OWNERS
    assert received.message["Bcc"] is None
    headers = received.raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "mallory" not in headers and "\x1b" not in headers
    assert "\x1b" not in received.body and "\u202e" not in received.body
    assert not any(line.startswith("Bcc:") for line in received.body.splitlines())
    assert "  - evil\\r\\nBcc: mallory@evil.example" in received.body


def test_plain_relay_receives_the_email(tmp_path: Path) -> None:
    with start_smtp_server() as server:
        sender = SmtpSender(settings(port=server.port, starttls=False), {})
        (delivery,) = sender.send([notice()], NOW)
        assert delivery.sent, delivery.error
        (received,) = server.wait_for(1)
    assert received.recipients == OWNERS
    assert received.mail_from == "reconciler@acme.com"
    assert received.message["To"] == "alice@acme.com, bob@acme.com"
    assert received.message["From"] == "reconciler@acme.com"
    assert received.message["Auto-Submitted"] == "auto-generated"
    assert received.subject == "[reconciler] wiki: plan opened"
    assert received.body == "body\n"


def test_starttls_with_auth() -> None:
    with start_smtp_server(starttls=True, username=USER, password=PASSWORD) as server:
        sender = SmtpSender(
            settings(port=server.port, username_env="U", password_env="P"),
            {"U": USER, "P": PASSWORD},
            tls=server.client_tls(),
        )
        deliveries = sender.send([notice(), notice(Event.LATE_REVIEW, "p2")], NOW)
        assert [d.error for d in deliveries] == ["", ""]
        assert len(server.wait_for(2)) == 2
        assert server.auth_attempts == 1


def test_wrong_credentials_fail_every_email_without_showing_the_password() -> None:
    with start_smtp_server(starttls=True, username=USER, password="other") as server:
        sender = SmtpSender(
            settings(port=server.port, username_env="U", password_env="P"),
            {"U": USER, "P": PASSWORD},
            tls=server.client_tls(),
        )
        deliveries = sender.send([notice(), notice(Event.BLOCKED)], NOW)
        assert server.received == []
    errors = {d.error for d in deliveries}
    assert len(errors) == 1
    (error,) = errors
    assert error.startswith("the relay refused the credentials (535")
    assert PASSWORD not in error


def test_an_untrusted_certificate_is_refused() -> None:
    with start_smtp_server(starttls=True) as server:
        (delivery,) = SmtpSender(settings(port=server.port), {}).send([notice()], NOW)
        assert server.received == []
    assert delivery.error.startswith(f"TLS with the relay 127.0.0.1:{server.port} failed")


def test_a_relay_without_starttls_gets_nothing_while_starttls_is_on() -> None:
    with start_smtp_server() as server:
        (delivery,) = SmtpSender(settings(port=server.port), {}).send([notice()], NOW)
        assert server.received == []
    assert "does not offer STARTTLS" in delivery.error


def test_credentials_are_never_sent_in_clear() -> None:
    with start_smtp_server() as server:
        sender = SmtpSender(
            settings(port=server.port, starttls=False, username_env="U", password_env="P"),
            {"U": USER, "P": PASSWORD},
        )
        (delivery,) = sender.send([notice()], NOW)
        assert server.received == [] and server.auth_attempts == 0
    assert "never sent over an unencrypted connection" in delivery.error


def test_a_missing_credential_variable_is_named() -> None:
    sender = SmtpSender(
        settings(port=1, username_env="U", password_env="SMTP_PASSWORD"), {"U": "x"}
    )
    (delivery,) = sender.send([notice()], NOW)
    assert delivery.error.startswith("environment variable SMTP_PASSWORD is not set")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_server_down() -> None:
    port = free_port()
    (delivery,) = SmtpSender(settings(port=port, starttls=False), {}).send([notice()], NOW)
    assert delivery.error == f"cannot connect to the relay 127.0.0.1:{port}: connection refused"


@contextmanager
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        yield listener.getsockname()[1]


def test_a_relay_that_does_not_answer_times_out() -> None:
    with silent_server() as port:
        sender = SmtpSender(settings(port=port, starttls=False, timeout=0.3), {})
        (delivery,) = sender.send([notice()], NOW)
    assert delivery.error == f"the relay 127.0.0.1:{port} did not answer within 0.3 seconds"


def test_a_refused_message_fails_alone_and_a_refused_recipient_is_named() -> None:
    with start_smtp_server() as server:
        sender = SmtpSender(settings(port=server.port, starttls=False), {})
        server.refuse_data = "554 5.7.1 message rejected"
        (delivery,) = sender.send([notice()], NOW)
        assert delivery.error == "the relay answered 554 5.7.1 message rejected"

        server.refuse_data = None
        server.refuse_recipients["bob@acme.com"] = "550 5.1.1 no such user"
        (partial,) = sender.send([notice()], NOW)
        assert partial.error == "the relay refused recipient(s) bob@acme.com"
        (received,) = server.wait_for(1)
        assert received.recipients == ("alice@acme.com",)


# --- the record, the clock and real git: notify_owners -----------------------------------

NOTIFY = """\
notify:
  smtp:
    host: 127.0.0.1
    port: {port}
    starttls: false
    from: reconciler@acme.com
  late_after_days: 3
"""


def configure(c: Company, port: int, owners: str = "[alice@acme.com, bob@acme.com, alice]") -> None:
    config = (c.repo / "reconciler.yaml").read_text(encoding="utf-8")
    (c.repo / "reconciler.yaml").write_text(config + NOTIFY.format(port=port), encoding="utf-8")
    c.git.commit_paths(["reconciler.yaml"], "notify owners")
    c.write_policy(demo.POLICY + f"owners: {owners}\n")


def tell(c: Company, proposal: str, now: datetime) -> list[tuple[str, str, str]]:
    """notify_owners after a check of wiki that did `proposal`, at `now`: what was sent."""
    run = CheckRun(
        apps=(AppCheck(app="wiki", identity_source="corp"),),
        identity_pulls=(),
        proposals={"wiki": proposal},
    )
    deliveries = notify_owners(
        load_settings(c.repo), c.git, LocalForge(c.git), run, now=now, environ={}
    )
    assert all(d.sent for d in deliveries), deliveries
    return [d.notice.key for d in deliveries]


def test_late_reminders_once_each_with_an_injected_clock(tmp_path: Path) -> None:
    with start_smtp_server() as server, company(tmp_path) as c:
        configure(c, server.port)
        assert c.cli("check").exit_code == 0
        c.leave()
        assert c.cli("check").exit_code == 0
        assert [r.subject for r in server.wait_for(1)] == [
            "[reconciler] wiki: 3 accounts to deprovision (review needed)"
        ]
        opened = c.plan_on_branch()
        plan_id, created = opened["plan"], datetime.fromisoformat(opened["created_at"])

        assert tell(c, "unchanged", created + 2 * DAY) == []
        assert tell(c, "unchanged", created + 3 * DAY) == [("wiki", plan_id, "late_review")]
        assert tell(c, "unchanged", created + 4 * DAY) == []

        assert c.cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        waiting = "approved plan waiting for `reconciler apply`; not proposing another"
        assert tell(c, waiting, created + 5 * DAY) == [("wiki", plan_id, "late_apply")]
        assert tell(c, waiting, created + 6 * DAY) == []

        received = server.wait_for(3)
        assert [r.subject for r in received[1:]] == [
            "[reconciler] wiki: 3 accounts to deprovision, waiting 3 days for review",
            "[reconciler] wiki: approved plan waiting 5 days to be applied "
            "(3 accounts to deprovision)",
        ]
        assert all(r.recipients == ("alice@acme.com", "bob@acme.com") for r in received)
        sent = json.loads((c.git.private_dir() / record.NOTIFIED).read_text())
        assert set(sent["wiki"][plan_id]) == {"opened", "late_review", "late_apply"}


def test_the_record_keeps_the_newest_plans() -> None:
    sent: record.Sent = {}
    for day in range(record.PLANS_KEPT + 5):
        sent = record.with_sent(sent, [("wiki", f"plan{day:03}", "opened")], NOW + day * DAY)
    assert len(sent["wiki"]) == record.PLANS_KEPT
    assert "plan000" not in sent["wiki"] and f"plan{record.PLANS_KEPT + 4:03}" in sent["wiki"]


def test_an_unreadable_record_is_empty(tmp_path: Path) -> None:
    path = tmp_path / record.NOTIFIED
    for content in (b"{", b"[]", b'{"wiki": 3, "crm": {"p": {"opened": 1}}}'):
        path.write_bytes(content)
        assert record.read_sent(path) == {}


# --- end to end: the installed command ----------------------------------------------------


def test_check_emails_the_owners_when_the_plan_opens_and_not_twice(tmp_path: Path) -> None:
    with start_smtp_server() as server, company(tmp_path) as c:
        configure(c, server.port)
        first = c.run("check")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "notify:" not in first.stdout  # nobody left: nothing to tell
        c.leave()
        second = c.run("check", "--detailed-exitcode")
        assert second.returncode == 4, second.stdout + second.stderr
        assert "notify: emailed 2 owners of wiki: plan opened" in second.stdout
        (received,) = server.wait_for(1)
        assert received.recipients == ("alice@acme.com", "bob@acme.com")
        assert received.subject == "[reconciler] wiki: 3 accounts to deprovision (review needed)"
        plan = c.plan_on_branch()
        assert f"Plan: {plan['plan']} (open)" in received.body
        assert "Review: branch reconciler/wiki" in received.body
        for username in (*demo.LEAVERS_DEPROVISIONED, demo.LEAVER_DELETED):
            assert f"  - {username} (" in received.body

        again = c.run("check", "--detailed-exitcode")
        assert again.returncode == 4, again.stdout + again.stderr
        assert "notify:" not in again.stdout
        assert len(server.wait_for(2, timeout=0.5)) == 1


def test_with_the_github_forge_the_email_links_the_pull_request(tmp_path: Path) -> None:
    with start_smtp_server() as server, github_company(tmp_path) as (c, fake):
        configure(c, server.port)
        assert c.run("check").returncode == 0
        c.leave()
        result = c.run("check", "--detailed-exitcode")
        assert result.returncode == 4, result.stdout + result.stderr
        pr = fake.pr_for("reconciler/wiki")
        assert pr is not None
        (received,) = server.wait_for(1)
        assert f"Review: {fake.html_url}/pull/{pr.number}" in received.body


def test_check_with_starttls_and_credentials_from_the_environment(tmp_path: Path) -> None:
    server_options = {"starttls": True, "username": USER, "password": PASSWORD}
    with start_smtp_server(**server_options) as server, company(tmp_path) as c:  # type: ignore[arg-type]
        configure(c, server.port)
        config = (c.repo / "reconciler.yaml").read_text(encoding="utf-8")
        credentials = "    username_env: SMTP_USER\n    password_env: SMTP_PASSWORD\n"
        config = config.replace("    starttls: false\n", "    starttls: true\n" + credentials)
        (c.repo / "reconciler.yaml").write_text(config, encoding="utf-8")
        c.git.commit_paths(["reconciler.yaml"], "relay with STARTTLS")
        assert server.ca_file is not None
        env = {"SMTP_USER": USER, "SMTP_PASSWORD": PASSWORD, "SSL_CERT_FILE": str(server.ca_file)}
        assert c.run("check", env=env).returncode == 0
        c.leave()
        result = c.run("check", "--format", "json", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        json.loads(result.stdout)  # the notify line is not in the JSON document
        assert "notify: emailed 2 owners of wiki: plan opened" in result.stderr
        assert len(server.wait_for(1)) == 1
        assert PASSWORD not in result.stdout + result.stderr


def test_a_failed_email_is_a_line_and_never_changes_the_exit_code(tmp_path: Path) -> None:
    port = free_port()
    with company(tmp_path) as c:
        configure(c, port)
        assert c.run("check").returncode == 0
        c.leave()
        result = c.run("check", "--detailed-exitcode")
        assert result.returncode == 4, result.stdout + result.stderr
        assert (
            f"notify: could not email owners of wiki: cannot connect to the relay "
            f"127.0.0.1:{port}: connection refused"
        ) in result.stdout
        # Not recorded: the next check tries again, and this time the relay is up.
        with start_smtp_server() as server:
            config = (c.repo / "reconciler.yaml").read_text(encoding="utf-8")
            config = config.replace(f"port: {port}", f"port: {server.port}")
            (c.repo / "reconciler.yaml").write_text(config, encoding="utf-8")
            c.git.commit_paths(["reconciler.yaml"], "the relay moved")
            retry = c.run("check", "--detailed-exitcode")
            assert "notify: emailed 2 owners of wiki: plan opened" in retry.stdout, retry.stdout
            assert len(server.wait_for(1)) == 1
