"""The google connector against a stateful fake of Google's token endpoint and the
Admin SDK Directory API on 127.0.0.1 (reconciler/testing/google_fake.py), whose answers
are checked against the vendored discovery fragments (tests/vendor/google)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reconciler.connectors.base import ConnectorContext, Mode
from reconciler.connectors.google import (
    OPTIONS_SCHEMA,
    SCOPE,
    TYPE,
    GoogleConnector,
    GoogleOptions,
    assertion_claims,
    identity_from_user,
    last_login,
    organization,
    parse_key,
    parse_token,
    parse_users_page,
    without_reused_addresses,
)
from reconciler.connectors.http import RetryPolicy, build_client
from reconciler.errors import ConfigError, ConnectorError, PartialPullError, PullError
from reconciler.model import Account
from reconciler.testing.google_fake import (
    CUSTOMER_ID,
    NEVER,
    TOKEN_PATH,
    USERS_PATH,
    FakeGoogle,
    serve_google,
    user_record,
)

from .contract import Expect, exercise_connector, exercise_failures

VENDOR = Path(__file__).parents[1] / "vendor" / "google" / "directory_v1.json"
CLIENT_EMAIL = "reconciler@acme-proj.iam.gserviceaccount.com"
ADMIN = "alice@acme.example"
ENV = "GOOGLE_SA_KEY"


def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY = _private_key()
PEM = KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
# What a leak would show: a line from the middle of the key.
KEY_LINE = PEM.splitlines()[5]


def key_json(token_uri: str, *, pem: str = PEM) -> str:
    """A service account key file as Google Cloud downloads it."""
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "acme-proj",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "104000000000000000001",
            "token_uri": token_uri,
        }
    )


class Clock:
    """The time both the fake and the connector read; tests move it. It starts at the
    wall clock's time, which connectors built through the registry read."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def seed(fake: FakeGoogle) -> None:
    """Live users in every state, two deleted users, one under an address reused since."""
    fake.add_user(
        user_record(
            "101",
            ADMIN,
            "Alice Liddell",
            last_login="2026-11-20T08:30:00.000Z",
            department="Engineering",
            title="Staff Engineer",
            is_admin=True,
        )
    )
    fake.add_user(user_record("102", "bob@acme.example", "Bob Builder", suspended=True))
    fake.add_user(user_record("103", "carol@acme.example", "Carol Danvers", archived=True))
    fake.add_user(user_record("104", "dave@acme.example", "Dave Null", delegated_admin=True))
    fake.add_user(user_record("105", "erin@acme.example", "Erin Example", title="Analyst"))
    fake.add_user(user_record("106", "frank@acme.example", "Frank Left"))
    fake.add_user(user_record("107", "grace@acme.example", "Grace Before"))
    fake.delete_user("106", when="2026-11-10T12:00:00.000Z")
    fake.delete_user("107")
    fake.add_user(user_record("108", "grace@acme.example", "Grace Hopper"))
    fake.admins.add(ADMIN)
    fake.register_key(CLIENT_EMAIL, KEY.public_key())


@dataclass
class Site:
    fake: FakeGoogle
    url: str
    clock: Clock

    @property
    def api_url(self) -> str:
        return self.url + "/admin/directory/v1"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def env(self) -> dict[str, str]:
        return {ENV: key_json(self.token_url)}


@pytest.fixture
def site() -> Iterator[Site]:
    clock = Clock()
    fake = FakeGoogle(clock=clock)
    seed(fake)
    with serve_google(fake) as url:
        yield Site(fake, url, clock)


def options(site: Site, **extra: Any) -> dict[str, Any]:
    return {"credentials_env": ENV, "subject": ADMIN, "api_url": site.api_url, **extra}


def built(site: Site, env: dict[str, str] | None = None, **extra: Any) -> GoogleConnector:
    """A connector built the way reconciler.yaml builds it, through the registry entry."""
    opts = options(site, **extra)
    jsonschema.validate(opts, TYPE.options_schema)
    context = ConnectorContext(
        name="workspace", options=opts, base_dir=Path("."), env=site.env() if env is None else env
    )
    made = TYPE.build(context)
    assert isinstance(made, GoogleConnector)
    return made


def connector(
    site: Site,
    *,
    sleeps: list[float] | None = None,
    transport: httpx.BaseTransport | None = None,
    **extra: Any,
) -> GoogleConnector:
    """A connector on the fake sharing its clock, recording its sleeps."""
    opts = GoogleOptions.from_mapping("workspace", options(site, **extra))
    client = build_client(
        "workspace", opts.api_url, token=None, timeout=opts.timeout, transport=transport
    )
    recorded = sleeps if sleeps is not None else []
    retry = RetryPolicy(max_attempts=opts.max_retries + 1, sleep=recorded.append)
    key = parse_key(key_json(site.token_url), variable=ENV)
    return GoogleConnector("workspace", client, opts, key, retry=retry, clock=site.clock)


def vendor_schema(name: str) -> dict[str, Any]:
    """One vendored definition, closed: a field the fake invents beyond what the
    fragment holds is drift too."""
    document = json.loads(VENDOR.read_text())
    defs = {
        key: {**value, "additionalProperties": False} for key, value in document["$defs"].items()
    }
    return {"$schema": document["$schema"], "$ref": f"#/$defs/{name}", "$defs": defs}


def assert_vendor_shapes(fake: FakeGoogle) -> None:
    listing = jsonschema.Draft202012Validator(
        vendor_schema("Users"), format_checker=jsonschema.FormatChecker()
    )
    user = jsonschema.Draft202012Validator(vendor_schema("User"))
    org = jsonschema.Draft202012Validator(vendor_schema("UserOrganization"))
    assert fake.bodies, "the fake answered something to check"
    for body in fake.bodies:
        validator = listing if "kind" in body and body["kind"] == "admin#directory#users" else user
        validator.validate(body)
        for entry in body.get("users", [body]):
            for organization_entry in entry.get("organizations", []):
                org.validate(organization_entry)


# --- The contract --------------------------------------------------------------------


def test_google_meets_the_connector_contract(site: Site) -> None:
    workspace = built(site)
    seen = exercise_connector(
        workspace, Expect(accounts=6, identities=7, victim="erin@acme.example")
    )
    assert workspace.modes == frozenset()
    assert [role.name for role in seen.roles] == ["delegated_admin", "super_admin"]
    assert seen.accounts[ADMIN].roles == ("super_admin",)
    assert_vendor_shapes(site.fake)


def test_the_fakes_answers_match_the_vendored_schema(site: Site) -> None:
    list(connector(site, page_size=3).pull_identities())
    connector(site).lookup_identity("101")
    assert_vendor_shapes(site.fake)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"users": [{"id": 7}]}, vendor_schema("Users"))


def test_a_workspace_that_cannot_be_reached_fails_every_call_without_the_key(
    site: Site,
) -> None:
    unreachable = connector(site, api_url="http://127.0.0.1:9/admin/directory/v1", max_retries=0)
    exercise_failures(unreachable, KEY_LINE, identities=True)
    site.fake.revoke_key(CLIENT_EMAIL)
    revoked = built(site)
    exercise_failures(revoked, KEY_LINE, identities=True)
    alice = Account.build("101", ADMIN)
    with pytest.raises(ConnectorError, match="reads users only"):
        revoked.deprovision(alice, Mode.DISABLE)
    with pytest.raises(ConnectorError, match="reads users only"):
        revoked.remove_roles(alice, ["super_admin"])
    with pytest.raises(ConnectorError, match="reads users only"):
        revoked.enable(alice)


# --- Mapping -------------------------------------------------------------------------


def test_every_status_and_field_maps(site: Site) -> None:
    workspace = connector(site)
    identities = {i.id: i for i in workspace.pull_identities()}
    assert {i: identities[i].status for i in identities} == {
        "101": "active",
        "102": "suspended",
        "103": "deprovisioned",  # archived
        "104": "active",
        "105": "active",
        "106": "deprovisioned",  # deleted
        "108": "active",
    }, "the deleted grace (107) gives way to the live user holding her address now"
    alice = identities["101"]
    assert (alice.email, alice.username, alice.display_name) == (ADMIN, ADMIN, "Alice Liddell")
    assert (alice.department, alice.title) == ("Engineering", "Staff Engineer")
    assert identities["105"].title == "Analyst"
    assert identities["106"].status_changed_at == "2026-11-10T12:00:00Z"
    accounts = {a.id: a for a in workspace.pull_accounts()}
    assert sorted(accounts) == ["101", "102", "103", "104", "105", "108"]
    assert {i for i, a in accounts.items() if a.status == "disabled"} == {"102", "103"}
    assert accounts["101"].last_login == "2026-11-20T08:30:00Z"
    assert accounts["104"].last_login == "", "the epoch means never signed in"
    assert accounts["104"].roles == ("delegated_admin",)


def test_suspended_status_is_configurable(site: Site) -> None:
    workspace = connector(site, suspended_status="deprovisioned")
    assert {i.id: i.status for i in workspace.pull_identities()}["102"] == "deprovisioned"
    assert workspace.lookup_identity("102").status == "deprovisioned"  # type: ignore[union-attr]


def test_a_deleted_user_listed_live_too_is_the_live_one(site: Site) -> None:
    site.fake.deleted["105"] = {**site.fake.users["105"], "deletionTime": "2026-11-02T00:00:00Z"}
    identities = {i.id: i for i in connector(site).pull_identities()}
    assert identities["105"].status == "active"
    assert len(identities) == 7


def test_lookups_read_one_user_live(site: Site) -> None:
    workspace = connector(site)
    assert workspace.lookup_identity("106") is None, "a deleted user is gone"
    assert workspace.lookup_identity("999") is None
    assert workspace.lookup_identity("102").status == "suspended"  # type: ignore[union-attr]
    assert workspace.lookup_roles("101") == ("super_admin",)
    assert workspace.lookup_roles("999") is None
    assert workspace.probe(identity_source=True) == f"users of my_customer readable as {ADMIN}"
    assert any(line.startswith(f"GET {USERS_PATH}/102") for line in site.fake.requests)


def test_customer_option_is_sent(site: Site) -> None:
    assert len(list(connector(site, customer=CUSTOMER_ID).pull_accounts())) == 6
    with pytest.raises(PullError, match="check customer"):
        list(connector(site, customer="C0nobody").pull_accounts())


# --- Paging --------------------------------------------------------------------------


def test_paging_reads_every_user_exactly_once(site: Site) -> None:
    pages: list[int] = []
    workspace = connector(site, page_size=2)
    workspace.on_page = pages.append
    assert sorted(a.id for a in workspace.pull_accounts()) == [
        "101", "102", "103", "104", "105", "108"
    ]  # fmt: skip
    assert pages == [2, 2, 2]
    lists = [line for line in site.fake.requests if line.startswith(f"GET {USERS_PATH}?")]
    assert len(lists) == 3
    assert all("maxResults=2" in line and "customer=my_customer" in line for line in lists)
    assert "pageToken" not in lists[0] and all("pageToken=" in line for line in lists[1:])


def test_a_page_token_that_repeats_fails_the_pull_instead_of_looping(site: Site) -> None:
    site.fake.repeat_token = True
    with pytest.raises(PartialPullError, match="page token it had sent before"):
        list(connector(site, page_size=2).pull_accounts())
    assert len(site.fake.requests) < 10


def test_a_500_on_page_3_of_5_is_a_failed_pull(site: Site) -> None:
    for n in range(9, 13):
        site.fake.add_user(user_record(str(n + 100), f"user{n}@acme.example", f"User {n}"))
    site.fake.fail_pages[3] = 500
    sleeps: list[float] = []
    workspace = connector(site, page_size=2, sleeps=sleeps, max_retries=2)
    with pytest.raises(PartialPullError, match=r"stopped after 4: .*gave up after 3 attempts"):
        list(workspace.pull_identities())
    assert len(sleeps) == 2


def test_a_listing_with_no_users_is_a_failed_pull_about_the_subjects_role(site: Site) -> None:
    site.fake.admins.clear()
    site.fake.empty_for_non_admins = True
    for pull in (connector(site).pull_identities, connector(site).pull_accounts):
        with pytest.raises(PullError, match=f"{ADMIN} may not read users.*admin role"):
            list(pull())
    with pytest.raises(ConnectorError, match="may not read users"):
        connector(site).probe(identity_source=True)


def test_a_subject_without_admin_rights_is_refused_clearly(site: Site) -> None:
    site.fake.admins.clear()
    with pytest.raises(PullError, match=rf"403 Forbidden: forbidden: .*{ADMIN} must hold an admin"):
        list(connector(site).pull_identities())
    with pytest.raises(ConnectorError, match="403"):
        connector(site).lookup_identity("101")


# --- Faults --------------------------------------------------------------------------


def test_a_429_storm_is_retried_as_told_then_fails_clearly(site: Site) -> None:
    site.fake.fail_next(429, match=USERS_PATH, count=100, retry_after="2")
    sleeps: list[float] = []
    with pytest.raises(PullError, match=r"listing users failed: .*gave up after 5 attempts"):
        list(connector(site, sleeps=sleeps).pull_accounts())
    assert sleeps == [2.0, 2.0, 2.0, 2.0]


def test_a_503_with_retry_after_then_success(site: Site) -> None:
    site.fake.fail_next(503, match=USERS_PATH, retry_after="7")
    sleeps: list[float] = []
    assert len(list(connector(site, sleeps=sleeps).pull_accounts())) == 6
    assert sleeps == [7.0]


def test_a_slow_directory_times_out_into_a_failed_pull(site: Site) -> None:
    site.fake.slow = True
    workspace = connector(site, timeout=0.1, max_retries=1)
    with pytest.raises(PullError, match=r"gave up after 2 attempts \(last: ReadTimeout"):
        list(workspace.pull_identities())


def test_empty_pages_that_never_end_fail_the_pull(site: Site) -> None:
    answered: list[int] = []

    def endless(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "ya29.mocked", "expires_in": 3600})
        answered.append(1)
        return httpx.Response(200, json={"nextPageToken": f"page-{len(answered)}"})

    with pytest.raises(PullError, match="3 empty pages in a row"):
        list(connector(site, transport=httpx.MockTransport(endless)).pull_accounts())
    assert len(answered) == 3


def test_a_truncated_body_fails_the_pull(site: Site) -> None:
    site.fake.truncate = True
    with pytest.raises(PullError, match="not a list of users"):
        list(connector(site).pull_accounts())


def test_a_page_that_is_not_a_user_list_fails_the_pull(site: Site) -> None:
    def lie(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return httpx.Response(
                200, json={"access_token": "ya29.mocked-token", "expires_in": 3600}
            )
        return httpx.Response(200, json={"users": [{"primaryEmail": "x@acme.example"}]})

    with pytest.raises(PullError, match=r"'x@acme\.example': it has no id"):
        list(connector(site, transport=httpx.MockTransport(lie)).pull_accounts())


# --- Tokens --------------------------------------------------------------------------


def test_the_assertion_is_signed_and_the_token_cached_until_near_expiry(site: Site) -> None:
    workspace = connector(site)
    list(workspace.pull_accounts())
    list(workspace.pull_identities())
    assert len(site.fake.assertions) == 1, "one token serves both pulls"
    claims = site.fake.assertions[0]
    assert claims["iss"] == CLIENT_EMAIL and claims["sub"] == ADMIN
    assert claims["scope"] == SCOPE and claims["aud"] == site.token_url
    assert 0 < claims["exp"] - claims["iat"] <= 3600
    site.clock.now += 3599 - 60
    workspace.lookup_identity("101")
    assert len(site.fake.assertions) == 2, "a token about to expire is replaced first"


def test_a_revoked_access_token_is_replaced_once(site: Site) -> None:
    workspace = connector(site)
    list(workspace.pull_accounts())
    site.fake.revoke_tokens()
    assert len(list(workspace.pull_accounts())) == 6
    assert len(site.fake.assertions) == 2


def test_an_access_token_refused_twice_names_the_env_var(site: Site) -> None:
    site.fake.fail_next(401, match=USERS_PATH, count=2)
    with pytest.raises(
        PullError, match=f"check the service account key in environment variable {ENV}"
    ):
        list(connector(site).pull_accounts())


def test_a_revoked_key_is_a_clear_error_without_the_key(site: Site) -> None:
    site.fake.revoke_key(CLIENT_EMAIL)
    workspace = built(site)
    with pytest.raises(PullError) as caught:
        list(workspace.pull_identities())
    message = str(caught.value)
    assert f"environment variable {ENV}" in message and CLIENT_EMAIL in message
    chained: BaseException | None = caught.value
    while chained is not None:
        text = f"{chained} {chained!r}"
        assert KEY_LINE not in text and "PRIVATE KEY" not in text
        chained = chained.__cause__ or chained.__context__
    assert KEY_LINE not in repr(workspace) and KEY_LINE not in repr(workspace._key)


def test_a_key_echoed_by_the_token_endpoint_never_reaches_a_message(site: Site) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400,
            json={"error": "invalid_grant", "error_description": f"bad key {KEY_LINE}"},
        )

    workspace = connector(site, transport=httpx.MockTransport(echo))
    with pytest.raises(ConnectorError) as caught:
        workspace.lookup_identity("101")
    assert KEY_LINE not in str(caught.value)
    assert "[REDACTED]" in str(caught.value)


def test_delegation_without_the_scope_points_at_the_admin_console(site: Site) -> None:
    site.fake.delegated_scopes[CLIENT_EMAIL].clear()
    with pytest.raises(PullError, match=f"Domain-wide delegation.*{SCOPE}"):
        list(connector(site).pull_identities())


def test_a_subject_that_is_not_a_user_is_named(site: Site) -> None:
    with pytest.raises(PullError, match=r"check that subject \(ghost@acme\.example\)"):
        list(connector(site, subject="ghost@acme.example").pull_identities())


def test_an_expired_assertion_is_refused_by_the_fake(site: Site) -> None:
    stale = connector(site)
    real_clock = site.clock.now
    stale._clock = lambda: real_clock - 7200  # the connector's clock runs two hours late
    with pytest.raises(PullError, match=r"invalid_grant.*short-lived"):
        list(stale.pull_accounts())


def test_the_key_uri_is_the_default_token_url_and_token_url_overrides_it(site: Site) -> None:
    env = {ENV: key_json("http://127.0.0.1:9/token")}
    with pytest.raises(
        PullError, match=r"access token .*POST /token: .*ConnectError.*check token_url"
    ):
        list(built(site, env, max_retries=0).pull_accounts())
    assert len(list(built(site, env, token_url=site.token_url).pull_accounts())) == 6


# --- Configuration -------------------------------------------------------------------


def test_options_schema_is_valid_and_closed() -> None:
    jsonschema.Draft202012Validator.check_schema(OPTIONS_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"credentials_env": ENV, "token_env": "X"}, OPTIONS_SCHEMA)
    with pytest.raises(ConfigError, match="unknown option"):
        GoogleOptions.from_mapping("workspace", {"credentials_env": ENV, "token": "x"})
    with pytest.raises(ConfigError, match="credentials_env is required"):
        GoogleOptions.from_mapping("workspace", {})


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", f"environment variable {ENV} is not set"),
        ("not json " + KEY_LINE, "does not hold JSON"),
        (json.dumps({"client_email": CLIENT_EMAIL}), "holds no private_key"),
        (
            json.dumps({"client_email": CLIENT_EMAIL, "private_key": "-----BEGIN " + KEY_LINE}),
            "not a PEM private key",
        ),
        (json.dumps({"type": "authorized_user", "client_email": "x", "private_key": PEM}), "type"),
    ],
)
def test_a_bad_key_in_the_environment_is_a_config_error_without_its_content(
    site: Site, value: str, complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        built(site, {ENV: value})
    assert ENV in str(caught.value)
    assert KEY_LINE not in f"{caught.value} {caught.value!r} {caught.value.__cause__!r}"


def test_a_missing_pyjwt_names_the_extra(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(ConfigError, match=r"access-reconciler\[google\]"):
        built(site)


# --- Pure functions ------------------------------------------------------------------


def test_parse_users_page() -> None:
    assert parse_users_page({"kind": "admin#directory#users"}).users == ()
    page = parse_users_page({"users": [{"id": "1"}], "nextPageToken": "n"})
    assert (len(page.users), page.next_token) == (1, "n")
    bad: object
    for bad in ([], {"users": {}}, {"users": ["x"]}, {"nextPageToken": 3}):
        with pytest.raises(ValueError):
            parse_users_page(bad)


def test_last_login_treats_the_epoch_as_unknown() -> None:
    assert last_login({"lastLoginTime": NEVER}) == ""
    assert last_login({}) == ""
    assert last_login({"lastLoginTime": "2026-01-02T03:04:05.000Z"}) == "2026-01-02T03:04:05.000Z"


def test_the_primary_organization_wins() -> None:
    user = {"organizations": [{"title": "first"}, {"title": "main", "primary": True}]}
    assert organization(user)["title"] == "main"
    assert organization({"organizations": [{"title": "only"}]})["title"] == "only"
    assert organization({"organizations": "junk"}) == {}


def test_status_priority_deleted_then_archived_then_suspended() -> None:
    both = {"id": "1", "primaryEmail": "a@x", "suspended": True, "archived": True}
    assert identity_from_user(both).status == "deprovisioned"
    assert identity_from_user({**both, "archived": False}).status == "suspended"
    assert identity_from_user({"id": "1"}, deleted=True).status == "deprovisioned"


def test_without_reused_addresses_keeps_the_latest_deletion() -> None:
    deleted = [
        {"id": "1", "primaryEmail": "a@x", "deletionTime": "2026-01-01T00:00:00.000Z"},
        {"id": "2", "primaryEmail": "A@x", "deletionTime": "2026-02-01T00:00:00.000Z"},
        {"id": "3", "primaryEmail": "b@x"},
    ]
    assert [u["id"] for u in without_reused_addresses(deleted, set())] == ["2", "3"]
    assert [u["id"] for u in without_reused_addresses(deleted, {"b@x"})] == ["2"]


def test_assertion_claims_and_token_parsing() -> None:
    key = parse_key(key_json("https://oauth2.example/token"), variable=ENV)
    claims = assertion_claims(key, subject=None, audience="https://aud", now=1000.5)
    assert claims == {
        "iss": CLIENT_EMAIL,
        "scope": SCOPE,
        "aud": "https://aud",
        "iat": 1000,
        "exp": 4600,
    }
    assert parse_token({"access_token": "a", "expires_in": 60}, now=10).expires_at == 70
    bad: object
    for bad in ({}, {"access_token": ""}, {"access_token": "a", "expires_in": -1}, []):
        with pytest.raises(ValueError):
            parse_token(bad, now=0)
