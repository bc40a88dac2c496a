"""The whole cycle with a GitHub organisation as the app: its members' emails come from
the organisation's SAML identities (the stateful fake on 127.0.0.1), the people from a
real SCIM identity provider; a person who leaves is removed from the organisation by a
reviewed plan, and nobody else is."""

from __future__ import annotations

import secrets
from pathlib import Path

from click.testing import CliRunner

from reconciler import demo
from reconciler.cli import main
from reconciler.git import Git
from reconciler.testing.github_org_fake import FakeGitHubOrg, acme_org, serve_github_org
from reconciler.testing.scim_server import start_scim_server

CONFIG = """\
version: 1
forge:
  type: local
defaults:
  mode: delete
identity_sources:
  corp:
    type: scim
    url: {idp}
    token_env: IDP_TOKEN
apps:
  github:
    type: github
    org: acme
    token_env: GITHUB_ORG_TOKEN
    api_url: {github}
    graphql_url: {github}/graphql
"""
POLICY = demo.POLICY.replace("  mode: disable\n", "  mode: delete\n").replace(
    "seat_cost:\n  wiki: {amount: 12.5, currency: EUR, per: month}\n", ""
)
PEOPLE = [("olive", "Olive", "Owner"), ("second", "Sam", "Second"), ("alice", "Alice", "L")]


def test_a_leaver_is_removed_from_the_github_organisation(tmp_path: Path) -> None:
    org_token, idp_token = secrets.token_hex(12), secrets.token_hex(8)
    fake = FakeGitHubOrg(org=acme_org(), token=org_token)
    env = {"GITHUB_ORG_TOKEN": org_token, "IDP_TOKEN": idp_token}
    people = [*PEOPLE, ("bob", "Bob", "Builder")]
    users = [demo.scim_user(u, f"{u}@acme.example", g, f) for u, g, f in people]
    with serve_github_org(fake) as github, start_scim_server(idp_token) as idp:
        ids = idp.seed(users)
        repo = tmp_path / "access"
        git = Git.init(repo)
        (repo / "policies").mkdir()
        (repo / "reconciler.yaml").write_text(CONFIG.format(idp=idp.url, github=github))
        (repo / "policies" / "default.yaml").write_text(POLICY)
        git.commit_paths(["reconciler.yaml", "policies"], "configure reconciler")

        def cli(*args: str):
            return CliRunner().invoke(main, [*args, "--repo", str(repo)], env=env)

        doctor = cli("doctor")
        assert doctor.exit_code == 0, doctor.output
        first = cli("check")
        assert first.exit_code == 0, first.output
        idp.set_active(ids.users["bob"], False)
        second = cli("check", "--detailed-exitcode")
        assert second.exit_code == 4, second.output
        plan = (git.show("reconciler/github", "plans/github.yaml") or b"").decode()
        assert "username: bob" in plan and "mode: delete" in plan
        assert cli("approve", "--app", "github", "--as", demo.REVIEWER).exit_code == 0
        applied = cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        assert "bob" not in fake.org.roles
        assert all("bob" not in team.members for team in fake.org.teams.values())
        assert {"octo-owner", "second-owner", "alice"} <= set(fake.org.roles)
