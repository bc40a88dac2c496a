"""The whole cycle with a cloud identity provider as the source of who works here: the
demo's people in an Entra ID tenant or a Google Workspace (their stateful fakes on
127.0.0.1) and its wiki on a real SCIM server, configured in reconciler.yaml like any
other system."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reconciler import demo
from reconciler.cli import main
from reconciler.git import Git
from reconciler.testing.entra_fake import FakeGraph, Tenant, graph_user, serve_graph
from reconciler.testing.google_fake import TOKEN_PATH, FakeGoogle, serve_google, user_record
from reconciler.testing.scim_server import ScimServer, start_scim_server

SERVICE_ACCOUNT = "reconciler@acme-proj.iam.gserviceaccount.com"

HEAD = """\
version: 1
forge:
  type: local
defaults:
  mode: disable
identity_sources:
  corp:
{source}
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
        source = (
            f"    type: entra\n    tenant_id: {tenant.tenant_id}\n"
            f"    client_id: {tenant.client_id}\n    client_secret_env: ENTRA_SECRET\n"
            f"    login_url: {graph_url}\n    graph_url: {graph_url}"
        )

        def leave(username: str) -> None:
            graph.user(f"{username}@{demo.DOMAIN}")["accountEnabled"] = False

        run_cycle(tmp_path, source, app, env, leave)


def test_a_leaver_suspended_in_google_workspace_loses_the_wiki_account(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    fake = FakeGoogle()
    for n, p in enumerate(demo.people()):
        fake.add_user(user_record(str(1000 + n), p.email, f"{p.given} {p.family}"))
    admin = demo.people()[0].email
    fake.admins.add(admin)
    fake.register_key(SERVICE_ACCOUNT, key.public_key())
    app_token = secrets.token_hex(8)
    with serve_google(fake) as google_url, start_scim_server(app_token) as app:
        users, groups = demo.app_seed()
        app.seed(users, groups)
        credentials = {
            "type": "service_account",
            "private_key": pem,
            "client_email": SERVICE_ACCOUNT,
            "token_uri": google_url + TOKEN_PATH,
        }
        env = {"GOOGLE_SA_KEY": json.dumps(credentials), "DEMO_APP_TOKEN": app_token}
        source = (
            f"    type: google\n    credentials_env: GOOGLE_SA_KEY\n    subject: {admin}\n"
            f"    api_url: {google_url}/admin/directory/v1"
        )
        by_email = {u["primaryEmail"]: u for u in fake.users.values()}

        def leave(username: str) -> None:
            by_email[f"{username}@{demo.DOMAIN}"]["suspended"] = True

        run_cycle(tmp_path, source, app, env, leave)


def run_cycle(
    tmp_path: Path, source: str, app: ScimServer, env: dict[str, str], leave: Callable[[str], None]
) -> None:
    """Configure an access repo for `source` and the wiki, check, let bob.builder
    `leave` the identity provider, and apply the reviewed plan."""
    repo = tmp_path / "access"
    git = Git.init(repo)
    (repo / "policies").mkdir()
    (repo / "reconciler.yaml").write_text(HEAD.format(source=source, app=app.url))
    (repo / "policies" / "default.yaml").write_text(demo.POLICY)
    git.commit_paths(["reconciler.yaml", "policies"], "configure reconciler")

    def cli(*args: str) -> Any:
        return CliRunner().invoke(main, [*args, "--repo", str(repo)], env=env)

    doctor = cli("doctor")
    assert doctor.exit_code == 0, doctor.output
    first = cli("check")
    assert first.exit_code == 0, first.output
    leaver = "bob.builder"
    leave(leaver)
    second = cli("check", "--detailed-exitcode")
    assert second.exit_code == 4, second.output
    assert cli("approve", "--app", "wiki", "--as", demo.REVIEWER).exit_code == 0
    applied = cli("apply", "--confirm")
    assert applied.exit_code == 0, applied.output
    by_name = {u["userName"]: u for u in app.list_users()}
    assert by_name[leaver]["active"] is False
    assert sum(1 for u in by_name.values() if u.get("active", True) is False) == 1
