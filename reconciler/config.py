"""reconciler.yaml and policies/*.yaml as typed values.

Files are validated first (`reconciler.validate`), so the constructors here can trust
shapes and types; they only turn mappings into frozen dataclasses with defaults.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from reconciler.errors import ConfigError
from reconciler.seats import SeatCost

CONFIG_FILE = "reconciler.yaml"
POLICY_DIR = "policies"


@dataclass(frozen=True)
class SystemConfig:
    """An app or identity source: its name, connector type and the connector's options."""

    name: str
    type: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class SmtpSettings:
    """The mail relay owners are emailed through. Credentials come from the environment
    variables named here, never from the file."""

    host: str
    sender: str  # `from:` in reconciler.yaml
    port: int = 587
    starttls: bool = True
    username_env: str | None = None
    password_env: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SmtpSettings:
        return cls(
            host=data["host"],
            sender=data["from"],
            port=data.get("port", cls.port),
            starttls=data.get("starttls", cls.starttls),
            username_env=data.get("username_env"),
            password_env=data.get("password_env"),
            timeout=data.get("timeout", cls.timeout),
        )


@dataclass(frozen=True)
class Notify:
    """Whom `check` emails, and when a plan counts as late (DESIGN §8)."""

    smtp: SmtpSettings | None = None  # None: no email is sent
    late_after_days: int = 3

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Notify:
        smtp = data.get("smtp")
        return cls(
            smtp=SmtpSettings.from_data(smtp) if smtp else None,
            late_after_days=data.get("late_after_days", cls.late_after_days),
        )


@dataclass(frozen=True)
class ForgeConfig:
    """Where plans are proposed: `local`, or `github` with the fields it needs."""

    type: str = "local"
    branch: str = "main"
    repository: str | None = None  # owner/name, for github
    token_env: str | None = None  # the environment variable holding the token, for github
    api_url: str | None = None  # None: $GITHUB_API_URL, else https://api.github.com
    remote: str = "origin"  # the git remote plan branches are pushed to
    # `commit`: check commits imports to main; `pull-request`: to the branch
    # reconciler/import, proposed as one pull request (github only).
    import_mode: str = "commit"

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ForgeConfig:
        return cls(
            type=data.get("type", cls.type),
            branch=data.get("branch", cls.branch),
            repository=data.get("repository"),
            token_env=data.get("token_env"),
            api_url=data.get("api_url"),
            remote=data.get("remote", cls.remote),
            import_mode=data.get("import_mode", cls.import_mode),
        )

    @property
    def imports_by_pull_request(self) -> bool:
        return self.import_mode == "pull-request"


@dataclass(frozen=True)
class Config:
    apps: Mapping[str, SystemConfig]
    identity_sources: Mapping[str, SystemConfig]
    forge: ForgeConfig = ForgeConfig()
    default_mode: str = "disable"
    # How many apps' pulls a check runs at once.
    pull_concurrency: int = 8
    main_branch: str = "main"
    notify: Notify = Notify()

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Config:
        def systems(key: str) -> dict[str, SystemConfig]:
            out = {}
            for name, section in (data.get(key) or {}).items():
                options = {k: v for k, v in section.items() if k != "type"}
                out[name] = SystemConfig(name=name, type=section["type"], options=options)
            return out

        forge = data.get("forge") or {}
        defaults = data.get("defaults") or {}
        return cls(
            apps=systems("apps"),
            identity_sources=systems("identity_sources"),
            forge=ForgeConfig.from_data(forge),
            default_mode=defaults.get("mode", "disable"),
            pull_concurrency=defaults.get("pull_concurrency", 8),
            main_branch=forge.get("branch", "main"),
            notify=Notify.from_data(data.get("notify") or {}),
        )


@dataclass(frozen=True)
class MatchRule:
    """Link an account to an identity when `account_field` equals `identity_field`."""

    account_field: str
    identity_field: str


DEFAULT_MATCH = (MatchRule("email", "email"), MatchRule("username", "username"))
DEFAULT_TRIGGERS = ("deprovisioned", "suspended", "missing")

# The three kinds of app owner, as in policy.schema.json. `$(?!\n)`: a schema pattern is
# searched with `re.search`, where `$` alone would accept a final newline.
OWNER_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$(?!\n)"
)
OWNER_TEAM = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?/[a-z0-9][a-z0-9_-]*$(?!\n)")
OWNER_USER = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?$(?!\n)")


@dataclass(frozen=True)
class Guards:
    max_per_run: int = 25
    max_fraction: float = 0.1
    # Block when the IdP's identity count fell by more than this share since the last pull.
    max_identity_shrink: float = 0.1
    # Refuse to import an app pull that lost more than this share of the app's accounts.
    max_app_shrink: float = 0.25
    # Plan ids an admin has explicitly allowed past a guard.
    allow_blocked_plans: tuple[str, ...] = ()


@dataclass(frozen=True)
class Approvals:
    min_approvals: int = 1
    reviewers: tuple[str, ...] = ()  # empty: anyone may approve


@dataclass(frozen=True)
class PolicyException:
    """An exception a policy grants (`exceptions:`): the accounts it names stay out of
    plans until the end of `until`, then are proposed again with it as their history.
    It names one account (its id, username or email: `account`) or one person (an
    identity's id, email or username: `person`, every account linked to them), in
    every app of the policy or only in `app`."""

    reason: str
    until: date
    granted_by: str
    account: str = ""
    person: str = ""
    app: str = ""

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> PolicyException:
        return cls(
            reason=str(data["reason"]),
            until=_day(data["until"]),
            granted_by=str(data["granted_by"]),
            account=str(data.get("account") or ""),
            person=str(data.get("person") or ""),
            app=str(data.get("app") or ""),
        )

    @property
    def names(self) -> str:
        """What it names, as the report shows it."""
        return f"account {self.account}" if self.account else f"person {self.person}"

    def to_evidence(self) -> dict[str, str]:
        """The exception as a plan records it."""
        found = {"account": self.account} if self.account else {"person": self.person}
        return found | {
            "reason": self.reason,
            "until": self.until.isoformat(),
            "granted_by": self.granted_by,
        }


@dataclass(frozen=True)
class DutySeparation:
    """Roles no one may hold together in one app (`separation_of_duties:`); a holder is
    listed in the report, and blocks the plan when `block` says so."""

    roles: tuple[str, ...]
    block: bool = False
    name: str = ""

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> DutySeparation:
        return cls(
            roles=tuple(sorted(set(data["roles"]))),
            block=bool(data.get("block", False)),
            name=str(data.get("name") or ""),
        )

    @property
    def label(self) -> str:
        return self.name or " + ".join(self.roles)


@dataclass(frozen=True)
class RoleRule:
    """Who may hold one role in the policy's apps (`allowed_roles:`): an identity in one
    of `groups` (as the identity source names them), in one of `departments`, with one
    of `titles` (both any case), or one of `people` (an identity's id, email or
    username). Anyone else holding the role loses it; the account stays."""

    role: str
    groups: tuple[str, ...] = ()
    people: tuple[str, ...] = ()  # casefolded
    departments: tuple[str, ...] = ()  # casefolded
    titles: tuple[str, ...] = ()  # casefolded

    @classmethod
    def from_data(cls, role: str, data: Mapping[str, Any]) -> RoleRule:
        def folded(key: str) -> tuple[str, ...]:
            return tuple(sorted({str(name).strip().casefold() for name in data.get(key) or ()}))

        return cls(
            role=role,
            groups=tuple(sorted(set(data.get("groups") or ()))),
            people=folded("people"),
            departments=folded("departments"),
            titles=folded("titles"),
        )


@dataclass(frozen=True)
class Policy:
    """How one or more apps are reconciled (DESIGN §6)."""

    source_file: str
    apps: tuple[str, ...]
    identity_source: str
    match: tuple[MatchRule, ...] = DEFAULT_MATCH
    domain_aliases: Mapping[str, str] = field(default_factory=dict)
    deprovision_when: tuple[str, ...] = DEFAULT_TRIGGERS
    mode: str = "disable"
    protected: tuple[str, ...] = ()
    unmatched: str = "report"
    guards: Guards = Guards()
    approvals: Approvals = Approvals()
    # Who answers for the apps: forge users (`alice`), teams (`acme/security`), emails.
    owners: tuple[str, ...] = ()
    # How long a leaver's account may stay once the identity source shows them gone.
    deadline: timedelta | None = None
    exceptions: tuple[PolicyException, ...] = ()
    # How long a person must have been gone before their accounts are proposed.
    grace: timedelta | None = None
    # Graded removal: delete an account reconciler disabled once it stayed disabled this long.
    delete_after: timedelta | None = None
    # Propose disabling an account whose last sign-in is older than this.
    inactive_after: timedelta | None = None
    separation_of_duties: tuple[DutySeparation, ...] = ()
    # Who may hold which role, by role name.
    allowed_roles: Mapping[str, RoleRule] = field(default_factory=dict)
    # What one seat costs, by app name (DESIGN §6): what the report says a plan saves.
    seat_cost: Mapping[str, SeatCost] = field(default_factory=dict)

    @classmethod
    def from_data(cls, source_file: str, data: Mapping[str, Any], default_mode: str) -> Policy:
        match = tuple(
            MatchRule(rule["account"], rule.get("identity", rule["account"]))
            for rule in data.get("match") or ()
        )
        deprovision = data.get("deprovision") or {}
        guards = data.get("guards") or {}
        approvals = data.get("approvals") or {}
        protected = data.get("protected") or {}
        return cls(
            source_file=source_file,
            apps=tuple(data["apps"]),
            identity_source=data["identity_source"],
            match=match or DEFAULT_MATCH,
            domain_aliases={
                k.lower(): v.lower()
                for k, v in ((data.get("normalize") or {}).get("domain_aliases") or {}).items()
            },
            deprovision_when=tuple(deprovision.get("when", DEFAULT_TRIGGERS)),
            mode=deprovision.get("mode", default_mode),
            protected=tuple(protected.get("accounts") or ()),
            unmatched=data.get("unmatched", "report"),
            guards=Guards(
                max_per_run=guards.get("max_per_run", Guards.max_per_run),
                max_fraction=guards.get("max_fraction", Guards.max_fraction),
                max_identity_shrink=guards.get("max_identity_shrink", Guards.max_identity_shrink),
                max_app_shrink=guards.get("max_app_shrink", Guards.max_app_shrink),
                allow_blocked_plans=tuple(guards.get("allow_blocked_plans") or ()),
            ),
            approvals=Approvals(
                min_approvals=approvals.get("min_approvals", Approvals.min_approvals),
                reviewers=tuple(approvals.get("reviewers") or ()),
            ),
            owners=tuple(data.get("owners") or ()),
            deadline=parse_deadline(data.get("deadline")),
            grace=parse_deadline(data.get("grace")),
            delete_after=parse_deadline(deprovision.get("delete_after")),
            inactive_after=parse_deadline(data.get("inactive_after")),
            separation_of_duties=tuple(
                DutySeparation.from_data(rule) for rule in data.get("separation_of_duties") or ()
            ),
            allowed_roles={
                role: RoleRule.from_data(role, rule)
                for role, rule in (data.get("allowed_roles") or {}).items()
            },
            exceptions=tuple(
                PolicyException.from_data(entry) for entry in data.get("exceptions") or ()
            ),
            seat_cost={
                app: SeatCost.from_data(cost, f"{source_file}: seat_cost.{app}")
                for app, cost in (data.get("seat_cost") or {}).items()
            },
        )

    def selects(self, app: str) -> bool:
        return any(fnmatch.fnmatchcase(app, pattern) for pattern in self.apps)

    def seat_cost_for(self, app: str) -> SeatCost | None:
        """What one seat of `app` costs, when the policy says; else None."""
        return self.seat_cost.get(app)

    @property
    def owner_users(self) -> tuple[str, ...]:
        """Owners that are forge user names (`alice`)."""
        return tuple(o for o in self.owners if OWNER_USER.fullmatch(o))

    @property
    def owner_teams(self) -> tuple[str, ...]:
        """Owners that are forge teams, as `org/slug`."""
        return tuple(o for o in self.owners if OWNER_TEAM.fullmatch(o))

    @property
    def owner_emails(self) -> tuple[str, ...]:
        """Owners that are email addresses: the ones `check` emails."""
        return tuple(o for o in self.owners if OWNER_EMAIL.fullmatch(o))


def _day(value: object) -> date:
    """A validated policy date (a YAML date or `YYYY-MM-DD` text)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def parse_deadline(value: object) -> timedelta | None:
    """A policy duration (`deadline`, `grace`, `inactive_after`: `24h`, `90d`; validated
    by the schema) as a timedelta."""
    if not isinstance(value, str) or not value:
        return None
    amount, unit = int(value[:-1]), value[-1]
    return timedelta(hours=amount) if unit == "h" else timedelta(days=amount)


def policy_for(app: str, policies: list[Policy]) -> Policy:
    """The one policy that governs `app`: an exact name beats a glob; two of a kind is an error."""
    exact = [p for p in policies if app in p.apps]
    chosen = exact or [p for p in policies if p.selects(app)]
    if not chosen:
        raise ConfigError(
            f"no policy selects app {app!r}; add it to `apps:` in a file under {POLICY_DIR}/"
        )
    if len(chosen) > 1:
        files = ", ".join(p.source_file for p in chosen)
        raise ConfigError(
            f"app {app!r} is selected by more than one policy ({files}); "
            "name it in exactly one, or select it by name in one and by glob in the others"
        )
    return chosen[0]


@dataclass(frozen=True)
class Settings:
    """The whole validated configuration of an access repo."""

    root: Path
    config: Config
    policies: tuple[Policy, ...]

    def policy_for(self, app: str) -> Policy:
        return policy_for(app, list(self.policies))
