"""`reconciler explain --app APP ACCOUNT`: why one account is or is not proposed, read
from the access repo (its snapshots at HEAD, its policy, its history), with no pulling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

from reconciler import gone, snapshot
from reconciler.clock import utc_now
from reconciler.commands import EXIT_OK, SCHEMA_VERSION, open_repo
from reconciler.errors import ConfigError
from reconciler.explain import Explanation, explain
from reconciler.inert import terminal
from reconciler.markdown import escape
from reconciler.model import Account
from reconciler.output import OutputFormat, emit, emit_json

# Modes assumed for the app: explain reads no connector, so it takes the app to support
# the policy's mode, disabling and taking roles (a plan turns each into a manual task
# where not).
ASSUMED_MODES = ("disable", "delete", "manual", "remove_roles")


@dataclass(frozen=True)
class ExplainOptions:
    repo: Path
    app: str
    account: str
    format: OutputFormat = OutputFormat.TEXT


def explain_command(options: ExplainOptions) -> int:
    repo = open_repo(options.repo)
    settings = repo.settings
    if options.app not in settings.config.apps:
        known = ", ".join(sorted(settings.config.apps)) or "none"
        raise ConfigError(f"unknown app {options.app!r}; reconciler.yaml has: {known}")
    policy = settings.policy_for(options.app)
    accounts = snapshot.read_accounts(settings.root, options.app)
    if accounts is None:
        raise ConfigError(
            f"{options.app} has no snapshot yet; run `reconciler check --app {options.app}` first"
        )
    account = find_account(accounts, options.account, options.app)
    identities = dict(snapshot.read_identities(settings.root, policy.identity_source) or {})
    found = explain(
        options.app,
        account,
        identities,
        policy,
        utc_now(),
        modes=ASSUMED_MODES,
        gone_since=lambda people: gone.gone_since(repo.git, policy.identity_source, people),
    )
    match options.format:
        case OutputFormat.TEXT:
            emit(render_text(found))
        case OutputFormat.MARKDOWN:
            emit(render_markdown(found))
        case OutputFormat.JSON:
            emit_json(to_data(found))
        case _:
            assert_never(options.format)
    return EXIT_OK


def find_account(accounts: snapshot.Records[Account], wanted: str, app: str) -> Account:
    """The account whose id, username or email is `wanted` (any case); a ConfigError
    when none or several are."""
    if wanted in accounts:
        return accounts[wanted]
    folded = wanted.strip().casefold()
    found = [
        account
        for account in (accounts[i] for i in accounts)
        if folded in (account.id.casefold(), account.username.casefold(), account.email.casefold())
    ]
    if not found:
        raise ConfigError(
            f"no account of {app} has the id, username or email {wanted!r} in its snapshot; "
            "check the spelling, or run `reconciler check` if it was added since"
        )
    if len(found) > 1:
        ids = ", ".join(sorted(a.id for a in found))
        raise ConfigError(f"{wanted!r} names {len(found)} accounts of {app} ({ids}); give its id")
    return found[0]


def to_data(found: Explanation) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "app": found.app,
        "account": found.account.to_record(),
        "identity": found.identity.to_record() if found.identity is not None else None,
        "matched_by": found.rule or None,
        "reasons": list(found.reasons),
        "verdict": found.verdict,
        "next_check": found.next_check,
        "action": dict(found.action) or None,
    }


def render_text(found: Explanation) -> str:
    lines = [f"{terminal(found.app)}: {terminal(found.account.username or found.account.id)}"]
    lines += [f"  - {reason}" for reason in found.reasons]
    lines.append(f"next check: {found.next_check}")
    return "\n".join(lines)


def render_markdown(found: Explanation) -> str:
    title = escape(found.account.username or found.account.id)
    lines = [f"## {escape(found.app)}: {title}", ""]
    lines += [f"- {escape(reason)}" for reason in found.reasons]
    lines += ["", f"**Next check:** {escape(found.next_check)}"]
    return "\n".join(lines)
