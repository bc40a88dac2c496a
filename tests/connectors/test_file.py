"""The file connector: apps and identity sources read from CSV, YAML or JSON exports."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.connectors import CONNECTORS
from reconciler.connectors.base import ConnectorContext, Mode
from reconciler.connectors.file import TYPE, FileConnector
from reconciler.errors import ConfigError, ConnectorError, PullError
from reconciler.model import Account, Identity, Role
from tests.connectors.contract import Expect, exercise_connector, exercise_failures


def build(tmp_path: Path, **options: Any) -> FileConnector:
    jsonschema.validate(options, TYPE.options_schema)
    connector = TYPE.build(ConnectorContext(name="wiki", options=options, base_dir=tmp_path))
    assert isinstance(connector, FileConnector)
    return connector


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


ACCOUNTS_CSV = (
    "\ufeffId,User Name,Email,Display Name,Status,Type,Roles,Entitlements,Last Login\n"
    "1,alice,alice@acme.com,Alice Liddell,active,human,admin;viewer,repo:a:write,2026-01-01\n"
    '2,bob,bob@acme.com,"Bob, Jr.",disabled,human,viewer,,\n'
    "3,ci-bot,,CI,active,service,,, \n"
    "\n"
)


def test_registry_lists_the_file_type() -> None:
    assert CONNECTORS["file"] is TYPE


def test_options_schema_rejects_unknown_keys_and_describes_every_option() -> None:
    schema = TYPE.options_schema
    assert all(prop.get("description") for prop in schema["properties"].values())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"path": "x.csv", "pth": "typo"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"path": "x.csv", "format": "xlsx"}, schema)


def test_csv_accounts(tmp_path: Path) -> None:
    write(tmp_path / "exports/wiki.csv", ACCOUNTS_CSV)
    accounts = list(build(tmp_path, path="exports/wiki.csv").pull_accounts())
    assert accounts == [
        Account.build(
            "1",
            "alice",
            "alice@acme.com",
            "Alice Liddell",
            roles=["admin", "viewer"],
            entitlements=["repo:a:write"],
            last_login="2026-01-01T00:00:00Z",  # `Last Login`, a date: UTC midnight
        ),
        # An empty cell is an unknown last login.
        Account.build("2", "bob", "bob@acme.com", "Bob, Jr.", "disabled", roles=["viewer"]),
        Account.build("3", "ci-bot", "", "CI", type="service"),
    ]


def test_csv_active_column_and_custom_separator(tmp_path: Path) -> None:
    write(
        tmp_path / "wiki.csv",
        "id,username,active,roles\n1,alice,TRUE,a|b\n2,bob,no,\n3,carol,,c\n",
    )
    connector = build(tmp_path, path="wiki.csv", list_separator="|")
    by_id = {a.id: a for a in connector.pull_accounts()}
    assert by_id["1"].status == "active" and by_id["1"].roles == ("a", "b")
    assert by_id["2"].status == "disabled"
    # No status at all reads as active: the cautious reading for a removal tool.
    assert by_id["3"].status == "active"


def test_csv_identities_from_a_separate_file(tmp_path: Path) -> None:
    write(tmp_path / "wiki.csv", ACCOUNTS_CSV)
    write(
        tmp_path / "hr.csv",
        "id,email,username,display_name,status,groups\n"
        "i1,alice@acme.com,alice,Alice,active,eng;admins\n"
        "i2,bob@acme.com,bob,Bob,deprovisioned,\n"
        "i3,carol@acme.com,carol,Carol,Suspended,eng\n",
    )
    connector = build(tmp_path, path="wiki.csv", identities_path="hr.csv")
    identities = list(connector.pull_identities())
    assert [(i.id, i.status, i.groups) for i in identities] == [
        ("i1", "active", ("admins", "eng")),
        ("i2", "deprovisioned", ()),
        ("i3", "suspended", ("eng",)),
    ]
    assert connector.lookup_identity("i2") == identities[1]
    assert connector.lookup_identity("nobody") is None


def test_identities_carry_a_department_and_title_when_the_export_has_them(tmp_path: Path) -> None:
    write(tmp_path / "wiki.csv", ACCOUNTS_CSV)
    write(
        tmp_path / "hr.csv",
        "id,email,status,department,title\n"
        "i1,alice@acme.com,active,Finance,Controller\n"
        "i2,bob@acme.com,active,,\n",
    )
    connector = build(tmp_path, path="wiki.csv", identities_path="hr.csv")
    found = {i.id: (i.department, i.title) for i in connector.pull_identities()}
    assert found == {"i1": ("Finance", "Controller"), "i2": ("", "")}


def test_yaml_file_with_accounts_and_identities(tmp_path: Path) -> None:
    write(
        tmp_path / "crm.yaml",
        """
accounts:
  - {id: "10", username: alice, email: alice@acme.com, roles: [sales, admin]}
  - id: 11
    username: bob
    status: disabled
    entitlements: "export;import"
identities:
  - {id: i1, email: alice@acme.com, status: active, groups: [sales]}
  - {id: i2, email: bob@acme.com, active: false}
""",
    )
    connector = build(tmp_path, path="crm.yaml")
    accounts = list(connector.pull_accounts())
    assert [(a.id, a.roles, a.status, a.entitlements) for a in accounts] == [
        ("10", ("admin", "sales"), "active", ()),
        ("11", (), "disabled", ("export", "import")),
    ]
    identities = list(connector.pull_identities())
    # A false `active` flag means the person cannot sign in: suspended, not removed.
    assert [(i.id, i.status) for i in identities] == [("i1", "active"), ("i2", "suspended")]
    assert connector.pull_roles() == [Role("admin"), Role("sales")]


def test_json_list_of_records(tmp_path: Path) -> None:
    records = [
        {"id": 1, "userName": "alice", "displayName": "Alice", "roles": ["admin"]},
        {"id": "2", "username": "bob", "status": "Disabled", "type": "Service"},
    ]
    write(tmp_path / "export.json", json.dumps(records))
    accounts = list(build(tmp_path, path="export.json").pull_accounts())
    assert accounts == [
        Account.build("1", "alice", display_name="Alice", roles=["admin"]),
        Account.build("2", "bob", status="disabled", type="service"),
    ]


def test_json_users_key_serves_both_kinds(tmp_path: Path) -> None:
    write(tmp_path / "idp.json", json.dumps({"users": [{"id": "i1", "status": "active"}]}))
    connector = build(tmp_path, path="idp.json")
    assert list(connector.pull_identities()) == [Identity.build("i1")]


def test_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    write(tmp_path / "export.txt", "id,username\n1,alice\n")
    connector = build(tmp_path, path="export.txt", format="csv")
    assert [a.username for a in connector.pull_accounts()] == ["alice"]


def test_unknown_suffix_without_format_fails_at_build(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("set `format: csv|yaml|json`")):
        build(tmp_path, path="export.txt")


def test_absolute_path(tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere/wiki.csv", "id\n1\n")
    connector = build(tmp_path / "repo", path=str(path))
    assert [a.id for a in connector.pull_accounts()] == ["1"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a.csv", ""),
        ("a.csv", "id,username\n"),
        ("a.json", ""),
        ("a.json", "[]"),
        ("a.json", '{"accounts": []}'),
        ("a.yaml", ""),
        ("a.yaml", "accounts:\n"),
    ],
)
def test_empty_exports_are_zero_records(tmp_path: Path, name: str, text: str) -> None:
    write(tmp_path / name, text)
    assert list(build(tmp_path, path=name).pull_accounts()) == []


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    connector = build(tmp_path, path="exports/wiki.csv", identities_path="hr.csv")
    expected = f"wiki: {tmp_path}/exports/wiki.csv not found; export it to "
    with pytest.raises(PullError, match="or fix `path`") as info:
        list(connector.pull_accounts())
    assert str(info.value).startswith(expected)
    with pytest.raises(PullError, match="or fix `identities_path`"):
        connector.pull_identities()
    with pytest.raises(PullError, match="not found"):
        connector.lookup_account("1")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("id,username\n1,alice\n,bob\n", r"line 3: no `id`"),
        ("id,username\n1,alice\n2,bob\n1,carol\n", r"line 4: id '1' repeats the record at line 2"),
        ("id,status\n1,active\n2,gone\n", r"line 3: status 'gone' is not one of: active, disabled"),
        ("id,type\n1,robot\n", r"line 2: type 'robot' is not one of: human, service"),
        ("id,active\n1,maybe\n", r"line 2: `active` is 'maybe'; use true or false"),
        ("id,status,active\n1,disabled,true\n", r"line 2: status 'disabled' contradicts active"),
        ("id,username\n1,alice,extra\n", r"line 2: 3 cells but the header has 2"),
        ("id,Email,email\n1,a,b\n", r"line 1: column 'email' appears twice"),
        ('id,name\n1,"multi\nline"\n2,ok\n2,dup\n', r"line 5: id '2' repeats the record at line 4"),
    ],
)
def test_csv_errors_name_the_line(tmp_path: Path, text: str, problem: str) -> None:
    write(tmp_path / "wiki.csv", text)
    connector = build(tmp_path, path="wiki.csv")
    with pytest.raises(PullError, match=rf"^wiki: {tmp_path}/wiki\.csv, {problem}"):
        connector.pull_accounts()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([{"id": "1"}, {"username": "bob"}], r"\[1\] \(record 2\): no `id`"),
        ({"accounts": [{"id": "1"}, {"id": "1"}]}, r"accounts\[1\] \(record 2\): id '1' repeats"),
        ([{"id": "1", "status": "deleted"}], r"\[0\] \(record 1\): status 'deleted'"),
        ([{"id": "1", "roles": {"a": 1}}], r"\[0\] \(record 1\): `roles` must be a list"),
        ([{"id": True}], r"\[0\] \(record 1\): `id` must be text, not bool"),
        (["alice"], r"\[0\] \(record 1\): expected a mapping of fields, not str"),
        (
            {"people": []},
            r"expected a list of accounts or a mapping with key `accounts` or `users`",
        ),
        ({"accounts": {"id": "1"}}, r"accounts must be a list of accounts, not dict"),
    ],
)
def test_json_errors_name_the_record(tmp_path: Path, data: object, problem: str) -> None:
    write(tmp_path / "wiki.json", json.dumps(data))
    with pytest.raises(PullError, match=rf"^wiki: {tmp_path}/wiki\.json(, |: ){problem}"):
        build(tmp_path, path="wiki.json").pull_accounts()


def test_yaml_identity_status_error_names_the_record(tmp_path: Path) -> None:
    write(tmp_path / "hr.yaml", "identities:\n- {id: i1}\n- {id: i2, status: left}\n")
    with pytest.raises(
        PullError,
        match=r"identities\[1\] \(record 2\): status 'left' is not one of: "
        r"active, suspended, deprovisioned",
    ):
        build(tmp_path, path="hr.yaml").pull_identities()


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    write(tmp_path / "wiki.json", '[\n  {"id": "1"},\n  {"id": }\n]')
    with pytest.raises(PullError, match=r"wiki\.json:3:\d+: invalid JSON"):
        build(tmp_path, path="wiki.json").pull_accounts()


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "wiki.csv").write_bytes(b"id,username\n1,alice\n2,b\xe9b\n")
    with pytest.raises(PullError, match=r"line 3: not valid UTF-8"):
        build(tmp_path, path="wiki.csv").pull_accounts()


def test_an_export_over_max_bytes_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "wiki.csv", "id\n" + "1\n" * 100)
    with pytest.raises(PullError, match="raise `max_bytes`"):
        build(tmp_path, path="wiki.csv", max_bytes=50).pull_accounts()


def test_deprovision_is_a_manual_task(tmp_path: Path) -> None:
    path = write(tmp_path / "wiki.csv", ACCOUNTS_CSV)
    connector = build(tmp_path, path="wiki.csv")
    assert connector.modes == frozenset({Mode.MANUAL})
    alice = next(connector.pull_accounts())
    connector.deprovision(alice, Mode.MANUAL)
    assert path.read_text(encoding="utf-8") == ACCOUNTS_CSV  # nothing is touched
    for mode in (Mode.DISABLE, Mode.DELETE):
        with pytest.raises(ConnectorError, match=f"cannot {mode.value} account '1'.*`manual`"):
            connector.deprovision(alice, mode)


def test_lookups_read_the_latest_export(tmp_path: Path) -> None:
    path = write(tmp_path / "wiki.csv", "id,username,status\n1,alice,active\n2,bob,active\n")
    connector = build(tmp_path, path="wiki.csv")
    assert connector.lookup_account("1") == Account.build("1", "alice")
    # The person removed alice and disabled bob, then exported again.
    write(path, "id,username,status\n2,bob,disabled\n")
    os.utime(path, ns=(1, 1))  # a new export, even within the same clock tick
    assert connector.lookup_account("1") is None
    bob = connector.lookup_account("2")
    assert bob is not None and bob.status == "disabled"


def test_roles_from_a_roles_export(tmp_path: Path) -> None:
    write(tmp_path / "wiki.csv", ACCOUNTS_CSV)
    write(
        tmp_path / "roles.csv",
        "name,description,entitlements\n"
        "viewer,Read only,page:read\n"
        "admin,All,page:read;page:write\n",
    )
    connector = build(tmp_path, path="wiki.csv", roles_path="roles.csv")
    assert connector.pull_roles() == [
        Role("admin", "All", ("page:read", "page:write")),
        Role("viewer", "Read only", ("page:read",)),
    ]
    write(tmp_path / "roles.csv", "name,description\nviewer,a\nviewer,b\n")
    with pytest.raises(PullError, match=r"line 3: name 'viewer' repeats"):
        connector.pull_roles()


def test_roles_seen_on_accounts(tmp_path: Path) -> None:
    write(tmp_path / "wiki.csv", ACCOUNTS_CSV)
    assert build(tmp_path, path="wiki.csv").pull_roles() == [Role("admin"), Role("viewer")]


def test_contract(tmp_path: Path) -> None:
    write(tmp_path / "wiki.csv", ACCOUNTS_CSV)
    write(
        tmp_path / "idp.csv",
        "id,username,status,groups\n1,alice,active,eng\n2,bob,active,\n3,ci-bot,active,\n",
    )
    connector = build(tmp_path, path="wiki.csv", identities_path="idp.csv")
    exercise_connector(
        connector,
        Expect(
            accounts=3,
            victim="alice",
            identities=3,
            roles=("admin", "viewer"),
            account_roles={"alice": ("admin", "viewer"), "bob": ("viewer",)},
            identity_groups={"alice": ("eng",)},
        ),
    )


def test_identities_carry_the_sources_own_status_time(tmp_path: Path) -> None:
    write(tmp_path / "wiki.csv", ACCOUNTS_CSV)
    write(
        tmp_path / "hr.csv",
        "id,email,status,left_at\n"
        "i1,alice@acme.com,active,\n"
        "i2,bob@acme.com,deprovisioned,2026-11-20T09:30:00+01:00\n"
        "i3,carol@acme.com,suspended,2026-11-21\n",
    )
    connector = build(tmp_path, path="wiki.csv", identities_path="hr.csv")
    times = {i.id: i.status_changed_at for i in connector.pull_identities()}
    # Written as the access repo writes times: UTC, to the second.
    assert times == {"i1": "", "i2": "2026-11-20T08:30:00Z", "i3": "2026-11-21T00:00:00Z"}
    # The snapshot line holds it after the usual fields; a line without one is as before.
    assert list(Identity.build("i1").to_record()) == [
        "id",
        "email",
        "username",
        "display_name",
        "status",
        "groups",
    ]
    bob = connector.lookup_identity("i2")
    assert bob is not None and bob.to_record()["status_changed_at"] == "2026-11-20T08:30:00Z"


def test_an_unreadable_status_time_names_the_line(tmp_path: Path) -> None:
    write(tmp_path / "wiki.csv", ACCOUNTS_CSV)
    write(tmp_path / "hr.csv", "id,status,status_changed_at\ni1,active,\ni2,suspended,last week\n")
    connector = build(tmp_path, path="wiki.csv", identities_path="hr.csv")
    with pytest.raises(PullError, match=r"line 3: status_changed_at 'last week' is not a time"):
        list(connector.pull_identities())


def test_accounts_carry_the_apps_last_login(tmp_path: Path) -> None:
    export = {
        "accounts": [
            # The plain shape of a JSON export, and one that needs the lenient reading.
            {"id": "1", "username": "alice", "status": "active", "type": "human",
             "last_login": "2026-11-20T10:30:00+01:00"},
            {"id": "2", "username": "bob", "active": True, "last_login_at": "2026-11-21"},
            {"id": "3", "username": "carol", "status": "active", "type": "human",
             "last_login": ""},
            {"id": "4", "username": "dave"},
        ]
    }  # fmt: skip
    write(tmp_path / "wiki.json", json.dumps(export))
    logins = {a.username: a.last_login for a in build(tmp_path, path="wiki.json").pull_accounts()}
    assert logins == {
        "alice": "2026-11-20T09:30:00Z",
        "bob": "2026-11-21T00:00:00Z",
        "carol": "",
        "dave": "",
    }


def test_an_unreadable_last_login_names_the_line(tmp_path: Path) -> None:
    write(tmp_path / "wiki.csv", "id,username,last_login\n1,alice,2026-11-20\n2,bob,recently\n")
    with pytest.raises(PullError, match=r"line 3: last_login 'recently' is not a time"):
        list(build(tmp_path, path="wiki.csv").pull_accounts())


def test_an_export_that_is_gone_fails_every_call(tmp_path: Path) -> None:
    exercise_failures(build(tmp_path, path="gone.csv"), None, identities=True)
