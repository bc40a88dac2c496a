"""The demo company: a SCIM identity provider and a SCIM app, seeded with a few dozen
people, one service account and one break-glass admin."""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

FIRST = [
    "Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
    "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter",
    "Zoë", "Ana", "Björn", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gustavo", "Hiroshi",
    "Ingrid", "José", "Kwame", "Lucía", "Mateo", "Noor",
]  # fmt: skip
LAST = [
    "Liddell", "Builder", "Danvers", "Brown", "Smith", "Castle", "Hopper", "Klum", "Petrov",
    "Hale", "Stone", "Patel", "Wilde", "Carter", "Giles", "Trelawney", "Reznor", "Frankl",
    "White", "Núñez", "Lima", "Borg", "Dubois", "Ivanov", "Kim", "Haddad", "Silva",
    "Tanaka", "Berg", "García", "Mensah", "Fernández", "Rossi", "Khan",
]  # fmt: skip
DEPARTMENTS = ["engineering", "sales", "finance"]
APP_GROUPS = {"engineering": "editors", "sales": "viewers", "finance": "viewers"}
DOMAIN = "example.com"
# Three people who leave during the demo: two deprovisioned, one deleted from the IdP.
LEAVERS_DEPROVISIONED = ("bob.builder", "judy.hale")
LEAVER_DELETED = "peggy.carter"
# A fourth leaver the demo's policy grants an exception for a few days more.
EXCEPTED_LEAVER = "grace.hopper"
EXCEPTION_DAYS = 10
# Someone in sales who holds the app's admin role, which the demo's policy keeps for
# engineering: the role is taken, the account stays.
ROLE_HOLDER = "erin.smith"
ADMIN_ROLE = "admins"
BREAK_GLASS = "breakglass-admin"
SERVICE_ACCOUNT = "ci-bot"
REVIEWER = "demo-reviewer"


class ForgeType(enum.StrEnum):
    """Where the demo's plan is reviewed: in the access repo, or as a pull request."""

    LOCAL = "local"
    GITHUB = "github"


@dataclass(frozen=True)
class Person:
    username: str
    given: str
    family: str
    department: str

    @property
    def email(self) -> str:
        return f"{self.username}@{DOMAIN}"


def people() -> list[Person]:
    result = []
    for index, (given, family) in enumerate(zip(FIRST, LAST, strict=True)):
        username = f"{ascii_name(given)}.{ascii_name(family)}"
        result.append(Person(username, given, family, DEPARTMENTS[index % len(DEPARTMENTS)]))
    return result


def ascii_name(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return folded.lower().replace(" ", "-")


def scim_user(username: str, email: str, given: str, family: str, **extra: Any) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": username,
        "name": {"givenName": given, "familyName": family, "formatted": f"{given} {family}"},
        "displayName": f"{given} {family}",
        "emails": [{"value": email, "primary": True, "type": "work"}],
        "active": True,
        **extra,
    }


def as_groups(members: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [{"displayName": name, "members": names} for name, names in members.items()]


def idp_seed() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Users of the identity provider, and its groups (members by userName)."""
    users = [scim_user(p.username, p.email, p.given, p.family) for p in people()]
    groups = {d: [p.username for p in people() if p.department == d] for d in DEPARTMENTS}
    return users, as_groups(groups)


def app_seed() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Users of the app: everyone, plus a service account and a break-glass admin."""
    users = [scim_user(p.username, p.email, p.given, p.family) for p in people()]
    users.append(scim_user(SERVICE_ACCOUNT, f"ci@{DOMAIN}", "CI", "Bot", userType="Service"))
    users.append(scim_user(BREAK_GLASS, f"root@{DOMAIN}", "Break", "Glass"))
    groups: dict[str, list[str]] = {ADMIN_ROLE: [BREAK_GLASS, people()[0].username, ROLE_HOLDER]}
    for person in people():
        groups.setdefault(APP_GROUPS[person.department], []).append(person.username)
    groups["editors"].append(SERVICE_ACCOUNT)
    return users, as_groups(groups)


CONFIG = """\
# Which apps and identity sources reconciler reads (the demo's, on local SCIM servers).
version: 1
forge:
  type: local
defaults:
  mode: disable
identity_sources:
  corp:
    type: scim
    url: {idp_url}
    token_env: DEMO_IDP_TOKEN
apps:
  wiki:
    type: scim
    url: {app_url}
    token_env: DEMO_APP_TOKEN
"""

LOCAL_FORGE = "forge:\n  type: local\n"


def github_forge(repository: str, token_env: str, api_url: str) -> str:
    """The `forge:` block for pull requests on `repository` at `api_url`."""
    return (
        "forge:\n"
        "  type: github\n"
        f"  repository: {repository}\n"
        f"  token_env: {token_env}\n"
        f"  api_url: {api_url}\n"
    )


def config(idp_url: str, app_url: str, forge: str = LOCAL_FORGE) -> str:
    """The demo's reconciler.yaml for its SCIM servers, with `forge` as its forge block."""
    return CONFIG.format(idp_url=idp_url, app_url=app_url).replace(LOCAL_FORGE, forge, 1)


POLICY = f"""\
# How the demo's apps are reconciled against the corp identity provider.
description: Demo policy
apps: ["*"]
identity_source: corp
match:
  - account: email
    identity: email
  - account: username
    identity: username
deprovision:
  when: [deprovisioned, suspended, missing]
  mode: disable
protected:
  accounts: ["{BREAK_GLASS}"]
unmatched: report
guards:
  max_per_run: 10
  max_fraction: 0.2
  max_identity_shrink: 0.2
approvals:
  min_approvals: 1
  reviewers: ["{REVIEWER}"]
seat_cost:
  wiki: {{amount: 12.5, currency: EUR, per: month}}
"""


# Who may hold the app's admin role: engineering only.
ROLE_RULES = f"""\
# Roles only some people may hold; anyone else holding one loses it (the account stays).
allowed_roles:
  {ADMIN_ROLE}: {{groups: [engineering]}}
"""


def policy_with_exception(until: date) -> str:
    """The demo's policy, with its role rule and an exception for EXCEPTED_LEAVER until
    `until`."""
    return (
        POLICY
        + ROLE_RULES
        + (
            "# Kept out of plans until the end of `until`, then proposed again.\n"
            "exceptions:\n"
            f"  - person: {EXCEPTED_LEAVER}@{DOMAIN}\n"
            f"    until: {until.isoformat()}\n"
            "    reason: hands over the quarter-end close\n"
            f"    granted_by: {REVIEWER}\n"
        )
    )
