"""The okta connector against the stateful fake of Okta's management API.

Every answer the fake gives in these tests is validated against Okta's own schemas
(`tests/vendor/okta`, from Okta's OpenAPI description): the fake cannot drift into
payloads Okta never sends, and the connector is tested on the shapes Okta documents.
Time is virtual: the connector's sleeps move the fake's clock, so rate-limit waits
cost nothing.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import json
import re
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jsonschema
import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler import demo
from reconciler.cli import main
from reconciler.connectors.base import ConnectorContext, Mode
from reconciler.connectors.http import RetryPolicy
from reconciler.connectors.okta import (
    EVERY_STATUS_FILTER,
    MAX_RATE_WAIT,
    OPTIONS_SCHEMA,
    OTHER_STATUS_SEARCH,
    STATUSES,
    TYPE,
    OktaConnector,
    OktaOptions,
    build,
    okta_client,
    rate_limit_wait,
)
from reconciler.errors import ConfigError, ConnectorError, PartialPullError, PullError
from reconciler.git import Git
from reconciler.model import Account
from reconciler.pull import merge_tombstones
from reconciler.testing.okta_fake import (
    GROUP_USERS_LIMIT,
    OKTA_STATUSES,
    USERS_LIMIT,
    FakeOkta,
    OktaError,
    parse_filter,
    serve_okta,
)
from reconciler.testing.scim_server import start_scim_server

from .contract import Expect, exercise_connector, exercise_failures

VENDOR = Path(__file__).parents[1] / "vendor" / "okta" / "management-users-groups.yaml"
ORG = "http://acme.okta.test"
TOKEN = "00Okta-T0KEN-for-tests-0123456789"
START = 1_800_000_000.0  # a Unix time, as Okta's X-Rate-Limit-Reset is one

# What each Okta status must become (the module docstring's table).
EXPECTED_STATUS = {
    "STAGED": "active",
    "PROVISIONED": "active",
    "ACTIVE": "active",
    "RECOVERY": "active",
    "LOCKED_OUT": "active",
    "PASSWORD_EXPIRED": "active",
    "SUSPENDED": "suspended",
    "DEPROVISIONED": "deprovisioned",
}


# --- Okta's schemas -----------------------------------------------------------------


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: `nullable: true` becomes "or null"."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _json_schema(value) for key, value in node.items()}
    if converted.pop("nullable", False) is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@functools.cache
def okta_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(VENDOR.read_text(encoding="utf-8"))
    return spec


# The formats Okta's User and Group schemas use, checked without optional packages
# (jsonschema checks date-time only when rfc3339-validator happens to be installed).
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if isinstance(value, str):
        if "T" not in value or not value.endswith(("Z", "+00:00")):
            raise ValueError(f"{value!r} is not an RFC 3339 UTC time")
        datetime.fromisoformat(value)
    return True


@FORMATS.checks("email")
def _email(value: object) -> bool:
    return not isinstance(value, str) or "@" in value


@functools.cache
def validator(schema: str, array: bool) -> jsonschema.Draft7Validator:
    """A validator for one schema of the vendored description (or an array of it)."""
    root = {"components": _json_schema(okta_spec()["components"])}
    target: dict[str, Any] = {"$ref": f"#/components/schemas/{schema}"}
    if array:
        target = {"type": "array", "items": target}
    document = {**root, "definitions": {"target": target}, "$ref": "#/definitions/target"}
    return jsonschema.Draft7Validator(document, format_checker=FORMATS)


def schema_for(path: str, status: int) -> tuple[str, bool] | None:
    """Which of Okta's schemas an answer to `path` with `status` must follow."""
    if status != 200:
        return "Error", False
    if path in ("/api/v1/users",) or re.fullmatch(r"/api/v1/groups/[^/]+/users", path):
        return "User", True
    if re.fullmatch(r"/api/v1/users/[^/]+/groups", path) or path == "/api/v1/groups":
        return "Group", True
    if re.fullmatch(r"/api/v1/users/[^/]+", path):
        return "UserGetSingleton", False
    return None


class Checked(httpx.BaseTransport):
    """The fake in-process, every JSON answer validated against Okta's schemas."""

    def __init__(self, fake: FakeOkta) -> None:
        self.inner = httpx.WSGITransport(app=fake)
        self.statuses: list[int] = []
        self.invalid: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.statuses.append(response.status_code)
        expected = schema_for(request.url.path, response.status_code)
        try:
            body = json.loads(response.content)
        except ValueError:
            return response  # a raw fault body, on purpose
        if expected is not None:
            for error in validator(*expected).iter_errors(body):
                self.invalid.append(f"{request.url.path}: {error.message}")
        return response

    def accept_off_spec(self, fragment: str) -> None:
        """Answers that break Okta's schemas on purpose (a status Okta does not list, a
        null id): they did, and only in the way the test meant."""
        assert self.invalid and all(fragment in problem for problem in self.invalid)
        self.invalid.clear()


# --- virtual time and connectors ------------------------------------------------------


@dataclass
class Clock:
    """Virtual time: the fake's clock, and the connector's sleep moves it on."""

    now: float = START
    slept: list[float] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Org:
    """A fake org, its clock, and a way to build connectors to it."""

    fake: FakeOkta
    clock: Clock
    transport: Checked

    def connector(self, token: str = TOKEN, **options: Any) -> OktaConnector:
        parsed = OktaOptions.from_mapping(
            "okta", {"url": ORG, "token_env": "OKTA_TOKEN", "max_retries": 2, **options}
        )
        client = okta_client("okta", parsed, token, transport=self.transport)
        connector = OktaConnector("okta", client, parsed, secrets=(token,))
        # The connector's own retry policy, on virtual time.
        connector.retry = dataclasses.replace(
            connector.retry, sleep=self.clock.sleep, clock=self.clock.time, jitter=lambda: 0.5
        )
        return connector

    def users_requests(self, kind: str = "filter") -> list[dict[str, list[str]]]:
        """The query of every user listing by `kind` (filter or search) the fake was
        asked for, in order."""
        queries = [
            parse_qs(urlsplit(target.split(" ", 1)[1]).query)
            for target in self.fake.requests
            if target.split("?")[0] == "GET /api/v1/users"
        ]
        return [query for query in queries if kind in query]

    def client(self, token: str = TOKEN) -> httpx.Client:
        """A plain client to the fake, as any program talking to Okta."""
        return httpx.Client(
            transport=self.transport, base_url=ORG, headers={"Authorization": f"SSWS {token}"}
        )


@pytest.fixture
def org() -> Iterator[Org]:
    clock = Clock()
    fake = FakeOkta(token=TOKEN, clock=clock.time)
    transport = Checked(fake)
    yield Org(fake, clock, transport)
    assert not transport.invalid, "the fake answered outside Okta's schemas"


def seed(fake: FakeOkta) -> dict[str, str]:
    """One user in each of Okta's eight statuses and two groups; login → id."""
    ids = {}
    for number, status in enumerate(OKTA_STATUSES):
        login = f"{status.lower()}@acme.example"
        ids[login] = fake.add_user(
            login,
            status=status,
            first_name=status.title(),
            last_name="Person",
            department="Engineering" if number % 2 else None,
            title="Engineer" if number % 2 else None,
            last_login=START - 86_400 * number,
            status_changed=START - 3600 * number,
        )
    fake.add_group("engineers", [ids["active@acme.example"], ids["deprovisioned@acme.example"]])
    fake.add_group("vpn", [ids["active@acme.example"]], type="APP_GROUP")
    return ids


# --- the contract -------------------------------------------------------------------


def test_contract(org: Org) -> None:
    seed(org.fake)
    connector = org.connector(groups=True, page_size=3)
    assert connector.modes == frozenset()
    exercised = exercise_connector(
        connector,
        Expect(
            accounts=8,
            victim="active@acme.example",
            identities=8,
            roles=("Everyone", "engineers", "vpn"),
            account_roles={"active@acme.example": ("Everyone", "engineers", "vpn")},
            identity_groups={
                "active@acme.example": ("Everyone", "engineers", "vpn"),
                "deprovisioned@acme.example": ("Everyone", "engineers"),
                "staged@acme.example": ("Everyone",),
            },
        ),
    )
    statuses = {name: identity.status for name, identity in exercised.identities.items()}
    assert statuses == {f"{s.lower()}@acme.example": EXPECTED_STATUS[s] for s in OKTA_STATUSES}


def test_failures_name_the_system_and_keep_the_token_out(org: Org) -> None:
    seed(org.fake)
    # A bad token (401 E0000011), the bad token echoed by the server in its error.
    org.fake.echo_authorization = True
    exercise_failures(
        org.connector(token="wrong-token-Zq9", groups=True), "wrong-token-Zq9", identities=True
    )
    # A good token, and the server refusing every request with its header echoed (400:
    # not retried, so the error body reaches the message), then failing them (500).
    for status in (400, 500):
        org.fake.faults.clear()
        org.fake.fail_next(status, count=1000)
        exercise_failures(org.connector(groups=True), TOKEN, identities=True)
    # A token whose admin has no admin role: 200 with empty lists.
    org.fake.faults.clear()
    org.fake.tokens["no-admin-token-X"] = False
    exercise_failures(
        org.connector(token="no-admin-token-X", groups=True), "no-admin-token-X", identities=True
    )


def test_failures_with_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = OktaOptions.from_mapping(
        "okta", {"url": f"http://127.0.0.1:{port}", "token_env": "T", "groups": True}
    )
    retry = RetryPolicy(max_attempts=2, sleep=lambda _: None)
    connector = OktaConnector(
        "okta", okta_client("okta", options, TOKEN), options, retry=retry, secrets=(TOKEN,)
    )
    exercise_failures(connector, TOKEN, identities=True)


# --- who is listed, and as what -------------------------------------------------------


@pytest.mark.parametrize("status", OKTA_STATUSES)
def test_each_okta_status_maps_to_ours(org: Org, status: str) -> None:
    user_id = org.fake.add_user(
        "pat@acme.example", status=status, status_changed=START - 7200, last_login=START - 86_400
    )
    connector = org.connector()
    (identity,) = connector.pull_identities()
    (account,) = connector.pull_accounts()
    live = connector.lookup_identity(user_id)
    expected = EXPECTED_STATUS[status]
    assert identity.status == expected == STATUSES[status]
    assert live == identity
    # When they left is kept for leavers only; a last sign-in only on the account.
    left_at = "2027-01-15T06:00:00Z" if expected != "active" else ""
    assert identity.status_changed_at == left_at
    assert account.last_login == "2027-01-14T08:00:00Z"
    assert account.status == ("active" if expected == "active" else "disabled")


def test_a_status_the_filter_does_not_name_is_still_listed(org: Org) -> None:
    ids = seed(org.fake)
    user_id = ids["staged@acme.example"]
    connector = org.connector()
    # ACTIVATING, transitional, which Okta's UserStatus does not list: found by the
    # second listing (a search for every other status) and read as active.
    org.fake.set_status(user_id, "ACTIVATING")
    pulled = {identity.id: identity for identity in connector.pull_identities()}
    assert len(pulled) == 8 and pulled[user_id].status == "active"
    live = connector.lookup_identity(user_id)
    assert live is not None and live.status == "active"
    assert org.users_requests("search") == [{"limit": ["200"], "search": [OTHER_STATUS_SEARCH]}]
    # A status Okta may add one day: never guessed, neither in a pull nor in a lookup,
    # and never dropped (it would read as a person who vanished).
    org.fake.set_status(user_id, "ARCHIVED")
    with pytest.raises(PullError, match=r"staged@acme\.example.*'ARCHIVED'.*does not know"):
        list(connector.pull_identities())
    with pytest.raises(ConnectorError, match="'ARCHIVED'"):
        connector.lookup_identity(user_id)
    org.transport.accept_off_spec("is not one of ['ACTIVE', 'DEPROVISIONED'")


def test_a_leaver_is_listed_as_deprovisioned_never_as_vanished(org: Org) -> None:
    ids = seed(org.fake)
    leaver = ids["active@acme.example"]
    connector = org.connector()
    before = {i.id: i for i in connector.pull_identities()}
    org.clock.now += 3600
    org.fake.set_status(leaver, "DEPROVISIONED")
    after = list(connector.pull_identities())
    merged = merge_tombstones(before, after)
    assert merged[leaver].status == "deprovisioned"
    assert merged[leaver].status_changed_at == "2027-01-15T09:00:00Z"
    assert all(identity.status != "missing" for identity in merged.values())
    assert [query["filter"] for query in org.users_requests()] == [[EVERY_STATUS_FILTER]] * 2
    # Okta's own default listing leaves the leaver out: the connector must not use it.
    listed = {user["id"] for user in org.client().get("/api/v1/users").json()}
    assert leaver not in listed and len(listed) == 6


def test_profile_fields(org: Org) -> None:
    org.fake.add_user(
        "ana@acme.example",
        email="ana.lopez@acme.example",
        first_name="Ana",
        last_name="López",
        department="Finance",
        title="Controller",
    )
    org.fake.add_user("bo@acme.example", display_name="Bo (contractor)", first_name="Bo")
    by_login = {i.username: i for i in org.connector().pull_identities()}
    ana, bo = by_login["ana@acme.example"], by_login["bo@acme.example"]
    assert (ana.email, ana.display_name, ana.department, ana.title) == (
        "ana.lopez@acme.example",
        "Ana López",
        "Finance",
        "Controller",
    )
    assert (bo.display_name, bo.department, bo.title) == ("Bo (contractor)", "", "")
    assert ana.groups == bo.groups == ()


# --- paging ---------------------------------------------------------------------------


def test_paging_follows_the_cursor_of_the_next_link(org: Org) -> None:
    for number in range(7):
        org.fake.add_user(f"user{number}@acme.example")
    pages: list[int] = []
    connector = org.connector(page_size=2)
    connector.on_page = pages.append
    assert len(list(connector.pull_identities())) == 7
    assert pages == [2, 2, 2, 1, 0]  # and the (empty) listing of other statuses
    queries = org.users_requests()
    assert [q.get("limit") for q in queries] == [["2"]] * 4
    assert "after" not in queries[0]
    # Each cursor is the one the previous answer's Link header gave, which is opaque:
    # a cursor computed from the last user's id is refused.
    cursors = [q["after"][0] for q in queries[1:]]
    assert len(set(cursors)) == 3
    assert not any(cursor.startswith("00u") for cursor in cursors)
    plain = org.client()
    first = plain.get("/api/v1/users", params={"limit": 2})
    made_up = plain.get("/api/v1/users", params={"limit": 2, "after": first.json()[-1]["id"]})
    assert made_up.status_code == 400
    assert first.links["next"]["url"].startswith(f"{ORG}/api/v1/users?")


def test_the_fake_pages_as_okta_documents(org: Org) -> None:
    listing = okta_spec()["paths"]["/api/v1/users"]["get"]
    limit = next(p for p in listing["parameters"] if p.get("name") == "limit")
    assert (limit["schema"]["default"], 200) == USERS_LIMIT
    members = okta_spec()["paths"]["/api/v1/groups/{groupId}/users"]["get"]["parameters"]
    member_limit = next(p for p in members if p.get("name") == "limit")
    assert GROUP_USERS_LIMIT[0] == member_limit["schema"]["default"]
    assert "omits users that have a status of `DEPROVISIONED`" in listing["description"]
    for number in range(205):
        org.fake.add_user(f"user{number:03d}@acme.example")
    plain = org.client()
    assert len(plain.get("/api/v1/users").json()) == 200
    assert len(plain.get("/api/v1/users", params={"limit": 500}).json()) == 200
    assert plain.get("/api/v1/users", params={"limit": 0}).status_code == 400


def test_next_links_to_another_host_carry_no_token_there(org: Org) -> None:
    for number in range(5):
        org.fake.add_user(f"user{number}@acme.example")
    org.fake.next_link_origin = "http://collector.evil.test"
    assert len(list(org.connector(page_size=2).pull_identities())) == 5
    assert set(org.fake.hosts) == {ORG}


def test_a_cursor_that_comes_back_fails_the_pull(org: Org) -> None:
    for number in range(5):
        org.fake.add_user(f"user{number}@acme.example")
    org.fake.repeat_cursor = True
    with pytest.raises(PartialPullError, match="cursor already followed"):
        list(org.connector(page_size=2).pull_identities())
    assert len(org.fake.requests) == 2  # the second page gave back its own cursor


def test_a_user_listed_twice_or_without_an_id_fails_the_pull(org: Org) -> None:
    for number in range(3):
        org.fake.add_user(f"user{number}@acme.example")
    org.fake.null_ids.add("user1@acme.example")
    with pytest.raises(PullError, match=r"user1@acme\.example'?: it has no id"):
        list(org.connector().pull_identities())
    org.transport.accept_off_spec("None is not of type 'string'")
    # An answer that is not a list of users (an HTML page from a proxy, say).
    org.fake.null_ids.clear()
    org.fake.fail_next(200, match="/api/v1/users", body=b"<html>Sign in</html>")
    with pytest.raises(PullError, match="not JSON"):
        list(org.connector().pull_identities())


# --- no users, bad tokens ---------------------------------------------------------------


def test_no_users_is_a_failed_pull_about_the_admin_role(org: Org) -> None:
    seed(org.fake)
    org.fake.tokens["no-admin"] = False
    connector = org.connector(token="no-admin")
    for pull in (connector.pull_identities, connector.pull_accounts):
        with pytest.raises(PullError, match=r"no users at all.*admin role") as caught:
            list(pull())
        assert "OKTA_TOKEN" in str(caught.value)
    with pytest.raises(ConnectorError, match="admin role"):
        connector.probe(True)
    # The same token asking for one user: 403 E0000006, named as a missing admin role.
    user_id = next(iter(org.fake.users))
    with pytest.raises(ConnectorError, match=r"403 Forbidden.*E0000006.*admin role"):
        connector.lookup_identity(user_id)


def test_a_bad_token_is_named_and_the_scheme_is_ssws(org: Org) -> None:
    seed(org.fake)
    assert org.connector().probe(True).startswith("the token reads users")
    assert set(org.fake.seen_authorization) == {f"SSWS {TOKEN}"}
    with pytest.raises(PullError) as caught:
        list(org.connector(token="expired-token").pull_identities())
    message = str(caught.value)
    assert "401 Unauthorized" in message and "E0000011" in message
    assert "OKTA_TOKEN" in message and "expired-token" not in message
    # Okta takes no Bearer token.
    bearer = org.client()
    answer = bearer.get("/api/v1/users", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 401 and answer.json()["errorCode"] == "E0000011"


# --- rate limits ----------------------------------------------------------------------


def test_low_remaining_waits_for_the_window_instead_of_hitting_429(org: Org) -> None:
    org.fake.rate_limits["/api/v1/users"] = 5
    for number in range(10):
        org.fake.add_user(f"user{number:02d}@acme.example")
    connector = org.connector(page_size=2, rate_limit_reserve=0.4)
    assert len(list(connector.pull_identities())) == 10
    assert 429 not in org.transport.statuses
    # Three requests fit in a window before the reserve of two: five pages and the
    # listing of other statuses make six requests, one wait, and none after the last.
    assert len(org.transport.statuses) == 6
    assert len(org.clock.slept) == 1 and 0 < org.clock.slept[0] <= MAX_RATE_WAIT
    assert org.clock.now - START == pytest.approx(60, abs=1)
    # Without a reserve, the window is still never overrun: the last request waits.
    org.clock.slept.clear()
    org.transport.statuses.clear()
    assert len(list(org.connector(page_size=2, rate_limit_reserve=0).pull_identities())) == 10
    assert 429 not in org.transport.statuses and len(org.clock.slept) == 1


def test_429_waits_for_the_reset_and_the_pull_completes(org: Org) -> None:
    for number in range(6):
        org.fake.add_user(f"user{number}@acme.example")
    # Another integration used up the window between two pages.
    reset = str(int(START) + 45)
    org.fake.fail_next(
        429, match="after=", headers={"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": reset}
    )
    connector = org.connector(page_size=2, max_retries=3)
    assert len(list(connector.pull_identities())) == 6
    assert org.transport.statuses == [200, 429, 200, 200, 200]
    assert org.clock.slept == [45]


def test_a_rate_limit_that_never_lifts_fails_the_pull(org: Org) -> None:
    org.fake.add_user("pat@acme.example")
    reset = str(int(START) + 30)
    org.fake.fail_next(
        429, count=10, headers={"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": reset}
    )
    with pytest.raises(PullError, match=r"gave up after 3 attempts \(last: 429"):
        list(org.connector().pull_identities())


def test_rate_limit_wait_reads_okta_clock_not_ours() -> None:
    def headers(remaining: int, date: float | None = None) -> httpx.Headers:
        values = {
            "X-Rate-Limit-Limit": "600",
            "X-Rate-Limit-Remaining": str(remaining),
            "X-Rate-Limit-Reset": str(int(START) + 40),
        }
        if date is not None:
            values["Date"] = email.utils.formatdate(date, usegmt=True)
        return httpx.Headers(values)

    assert rate_limit_wait(headers(61), reserve=0.1, now=START) == 0
    assert rate_limit_wait(headers(60), reserve=0.1, now=START) == 40
    # Our clock five minutes fast: Okta's Date says the window still has 40 s to go.
    assert rate_limit_wait(headers(60, date=START), reserve=0.1, now=START + 300) == 40
    # Our clock slow by an hour: never more than one window.
    assert rate_limit_wait(headers(0), reserve=0, now=START - 3600) == MAX_RATE_WAIT
    assert rate_limit_wait(httpx.Headers({}), reserve=0.5, now=START) == 0


def test_server_errors_are_retried(org: Org) -> None:
    org.fake.add_user("pat@acme.example")
    org.fake.fail_next(503, match="/api/v1/users")
    assert len(list(org.connector().pull_identities())) == 1
    assert org.transport.statuses == [503, 200, 200]


# --- groups ---------------------------------------------------------------------------


def test_groups_are_read_per_group_and_only_when_asked(org: Org) -> None:
    ids = seed(org.fake)
    plain = list(org.connector().pull_identities())
    assert all(identity.groups == () for identity in plain)
    assert not any("/groups" in target for target in org.fake.requests)
    assert org.connector().pull_roles() == []

    org.fake.requests.clear()
    grouped = {i.username: i for i in org.connector(groups=True).pull_identities()}
    assert grouped["active@acme.example"].groups == ("Everyone", "engineers", "vpn")
    # Membership costs one listing per group, never one request per user.
    assert not any(re.search(r"/users/[^/?]+/groups", t) for t in org.fake.requests)
    assert sum("/api/v1/groups/" in t for t in org.fake.requests) == 3
    live = org.connector(groups=True).lookup_identity(ids["deprovisioned@acme.example"])
    assert live is not None and live.groups == ("Everyone", "engineers")


def test_a_group_listing_without_everyone_fails(org: Org) -> None:
    seed(org.fake)
    del org.fake.groups[org.fake.everyone]
    with pytest.raises(PullError, match="lacks the built-in group Everyone"):
        list(org.connector(groups=True).pull_identities())


# --- live lookups and what the connector will not do -------------------------------------


def test_lookup_answers_only_for_the_id_asked(org: Org) -> None:
    ids = seed(org.fake)
    connector = org.connector()
    assert connector.lookup_identity("00uNoSuchUser00000g4") is None
    # Okta answers a login (and `me`) with a user: never taken for the id asked.
    org.fake.token_user = ids["active@acme.example"]
    for key in ("active@acme.example", "me"):
        with pytest.raises(ConnectorError, match="another user"):
            connector.lookup_identity(key)
    assert connector.lookup_roles(ids["active@acme.example"]) == ()
    assert connector.lookup_roles("00uNoSuchUser00000g4") is None


def test_the_connector_only_reads(org: Org) -> None:
    seed(org.fake)
    connector = org.connector()
    account = Account.build("00u1", "pat@acme.example")
    for action in (
        lambda: connector.deprovision(account, Mode.DISABLE),
        lambda: connector.remove_roles(account, ["vpn"]),
        lambda: connector.enable(account),
    ):
        with pytest.raises(ConnectorError, match="only reads Okta"):
            action()
    assert all(target.startswith("GET ") for target in org.fake.requests)


# --- options and building -----------------------------------------------------------------


def test_build_over_http_sends_the_token_from_the_environment() -> None:
    fake = FakeOkta(token=TOKEN)
    fake.add_user("pat@acme.example")
    with serve_okta(fake) as url:
        context = ConnectorContext(
            "okta",
            {"url": url, "token_env": "OKTA_TOKEN"},
            base_dir=Path("."),
            env={"OKTA_TOKEN": TOKEN},
        )
        connector = TYPE.build(context)
        try:
            assert [i.username for i in connector.pull_identities()] == ["pat@acme.example"]
            assert TOKEN not in repr(connector)
        finally:
            connector.close()
    # The listing of the statuses Okta documents, and the one of any other status.
    assert fake.seen_authorization == [f"SSWS {TOKEN}"] * 2


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        ({"url": ORG, "token_env": "OKTA_TOKEN"}, {}, "OKTA_TOKEN is not set"),
        ({"url": ORG}, {"OKTA_TOKEN": TOKEN}, "token_env is required"),
        ({"url": f"{ORG}/api/v1", "token_env": "OKTA_TOKEN"}, {"OKTA_TOKEN": TOKEN}, "has a path"),
        (
            {"url": ORG, "token_env": "OKTA_TOKEN", "search": "x"},
            {"OKTA_TOKEN": TOKEN},
            "unknown option",
        ),
    ],
)
def test_bad_options_are_config_errors(
    options: dict[str, Any], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build(ConnectorContext("okta", options, base_dir=Path("."), env=env))


def test_options_schema() -> None:
    check = jsonschema.Draft202012Validator(OPTIONS_SCHEMA)
    assert check.is_valid({"url": ORG, "token_env": "OKTA_TOKEN", "groups": True})
    assert not check.is_valid({"url": ORG})
    assert not check.is_valid({"url": ORG, "token_env": "T", "page_size": 500})
    assert not check.is_valid({"url": ORG, "token_env": "T", "rate_limit_reserve": 1})
    assert TYPE.secret_env_options == ("token_env",)


# --- the fake itself ------------------------------------------------------------------------


def test_the_fakes_errors_are_okta_s(org: Org) -> None:
    examples = okta_spec()["components"]["examples"]
    plain = org.client()
    org.fake.tokens["no-admin"] = False
    user_id = org.fake.add_user("pat@acme.example")
    org.fake.rate_limits["/api/v1/groups"] = 0
    answers = {
        "ErrorInvalidTokenProvided": plain.get("/api/v1/users", headers={"Authorization": ""}),
        "ErrorAccessDenied": org.client("no-admin").get(f"/api/v1/users/{user_id}"),
        "ErrorResourceNotFound": plain.get("/api/v1/users/00uNoSuchUser00000g4"),
        "ErrorTooManyRequests": plain.get("/api/v1/groups"),
    }
    for name, answer in answers.items():
        expected = examples[name]["value"]
        body = answer.json()
        assert set(body) == set(expected), name
        assert body["errorCode"] == body["errorLink"] == expected["errorCode"], name
        if "{0}" not in expected["errorSummary"]:
            assert body["errorSummary"] == expected["errorSummary"], name
        for header in ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"):
            assert header in answer.headers, (name, header)


@pytest.mark.parametrize(
    ("expression", "matches"),
    [
        ('status eq "ACTIVE"', {"a"}),
        ('STATUS eq "ACTIVE"', None),
        ('status EQ "DEPROVISIONED" or profile.login eq "a@x.test"', {"a", "d"}),
        ('(status eq "ACTIVE" or status eq "DEPROVISIONED") and profile.lastName eq "D"', {"d"}),
        ('lastUpdated gt "2000-01-01T00:00:00.000Z"', {"a", "d"}),
        ('status ne "ACTIVE"', None),
        ('status gt "ACTIVE"', None),
        ('profile.department eq "Eng"', None),
        ('status eq "ACTIVE" or', None),
        ("status eq ACTIVE", None),
    ],
)
def test_the_fakes_filter_grammar(expression: str, matches: set[str] | None) -> None:
    fake = FakeOkta()
    a = fake.add_user("a@x.test", last_name="A")
    d = fake.add_user("d@x.test", last_name="D", status="DEPROVISIONED")
    names = {a: "a", d: "d"}
    if matches is None:
        with pytest.raises(OktaError) as caught:
            parse_filter(expression)
        assert (caught.value.status, caught.value.code) == (400, "E0000031")
        return
    test = parse_filter(expression)
    assert {names[u.id] for u in fake.users.values() if test(u)} == matches


def test_the_fakes_state_moves_with_its_clock(org: Org) -> None:
    user_id = org.fake.add_user("pat@acme.example")
    connector = org.connector()
    org.clock.now += 120
    org.fake.set_status(user_id, "SUSPENDED")
    (identity,) = connector.pull_identities()
    assert identity.status_changed_at == "2027-01-15T08:02:00Z"
    org.fake.delete_user(user_id)
    with pytest.raises(PullError, match="no users at all"):
        list(connector.pull_identities())
    assert org.fake.requests[-1].startswith("GET /api/v1/users?")


# --- the whole cycle --------------------------------------------------------------------

CYCLE_CONFIG = """\
version: 1
forge:
  type: local
defaults:
  mode: disable
identity_sources:
  corp:
    type: okta
    url: {okta}
    token_env: OKTA_TOKEN
    groups: true
apps:
  wiki:
    type: scim
    url: {app}
    token_env: DEMO_APP_TOKEN
"""


def test_a_leaver_deactivated_in_okta_loses_the_wiki_account(tmp_path: Path) -> None:
    """The demo's people in an Okta org (the fake on 127.0.0.1) and its wiki on a real
    SCIM server, configured in reconciler.yaml like any other system: a person
    deactivated in Okta loses the wiki account through a reviewed plan; a person locked
    out of Okta keeps theirs."""
    fake = FakeOkta(token=TOKEN)
    for person in demo.people():
        fake.add_user(
            person.email,
            first_name=person.given,
            last_name=person.family,
            department=person.department,
        )
    app_token = secrets.token_hex(8)
    env = {"OKTA_TOKEN": TOKEN, "DEMO_APP_TOKEN": app_token}
    with serve_okta(fake) as okta_url, start_scim_server(app_token) as app:
        app.seed(*demo.app_seed())
        repo = tmp_path / "access"
        git = Git.init(repo)
        (repo / "policies").mkdir()
        (repo / "reconciler.yaml").write_text(CYCLE_CONFIG.format(okta=okta_url, app=app.url))
        (repo / "policies" / "default.yaml").write_text(demo.POLICY)
        git.commit_paths(["reconciler.yaml", "policies"], "configure reconciler")

        def cli(*args: str) -> Result:
            return CliRunner().invoke(main, [*args, "--repo", str(repo)], env=env)

        doctor = cli("doctor")
        assert doctor.exit_code == 0, doctor.output
        first = cli("check")
        assert first.exit_code == 0, first.output
        by_login = {u.profile["login"]: u.id for u in fake.users.values()}
        leaver, locked = "bob.builder", "judy.hale"
        fake.set_status(by_login[f"{leaver}@{demo.DOMAIN}"], "DEPROVISIONED")
        fake.set_status(by_login[f"{locked}@{demo.DOMAIN}"], "LOCKED_OUT")
        second = cli("check", "--detailed-exitcode")
        assert second.exit_code == 4, second.output
        assert cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        applied = cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        inactive = {u["userName"] for u in app.list_users() if u.get("active", True) is False}
    assert inactive == {leaver}
    snapshot = yaml.safe_load((repo / "state" / "identities" / "corp.yaml").read_text())
    people = {record["username"]: record for record in snapshot["identities"]}
    assert people[f"{leaver}@{demo.DOMAIN}"]["status"] == "deprovisioned"
    assert people[f"{leaver}@{demo.DOMAIN}"]["status_changed_at"]
    assert people[f"{locked}@{demo.DOMAIN}"]["status"] == "active"
