"""The whole cycle with a cloud identity provider as the source of who works here: the
demo's people in an Entra ID tenant (its stateful fake on 127.0.0.1) and its wiki on a
real SCIM server, configured in reconciler.yaml like any other system."""

from __future__ import annotations

import secrets
from pathlib import Path

from click.testing import CliRunner

from reconciler import demo
from reconciler.cli import main
from reconciler.git import Git
from reconciler.testing.entra_fake import FakeGraph, Tenant, graph_user, serve_graph
from reconciler.testing.scim_server import start_scim_server

CONFIG = """\
version: 1
forge:
  type: local
defaults:
  mode: disable
identity_sources:
  corp:
    type: entra
    tenant_id: {tenant}
    client_id: {client}
    client_secret_env: ENTRA_SECRET
    login_url: {graph}
    graph_url: {graph}
apps:
  wiki:
    type: scim
    url: {app}
    token_env: DEMO_APP_TOKEN
"""


def test_a_leaver_disabled_in_entra_loses_the_wiki_account(tmp_path: Path) -> None:
    tenant = Tenant("contoso-tenant", "reconciler-app", secrets.token_hex(12))
    tenant.users = [
        graph_user(p.email, display_name=f"{p.given} {p.family}", mail=p.email)
        for p in demo.people()
    ]
    graph = FakeGraph(tenant)
    app_token = secrets.token_hex(8)
    env = {"ENTRA_SECRET": tenant.client_secret, "DEMO_APP_TOKEN": app_token}
    with serve_graph(graph) as graph_url, start_scim_server(app_token) as app:
        users, groups = demo.app_seed()
        app.seed(users, groups)
        repo = tmp_path / "access"
        git = Git.init(repo)
        (repo / "policies").mkdir()
        config = CONFIG.format(
            tenant=tenant.tenant_id, client=tenant.client_id, graph=graph_url, app=app.url
        )
        (repo / "reconciler.yaml").write_text(config)
        (repo / "policies" / "default.yaml").write_text(demo.POLICY)
        git.commit_paths(["reconciler.yaml", "policies"], "configure reconciler")

        def cli(*args: str):
            return CliRunner().invoke(main, [*args, "--repo", str(repo)], env=env)

        assert cli("doctor").exit_code == 0
        first = cli("check")
        assert first.exit_code == 0, first.output
        leaver = "bob.builder"
        graph.user(f"{leaver}@{demo.DOMAIN}")["accountEnabled"] = False
        second = cli("check", "--detailed-exitcode")
        assert second.exit_code == 4, second.output
        assert cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
        applied = cli("apply", "--confirm")
        assert applied.exit_code == 0, applied.output
        by_name = {u["userName"]: u for u in app.list_users()}
        assert by_name[leaver]["active"] is False
        assert sum(1 for u in by_name.values() if u.get("active", True) is False) == 1
