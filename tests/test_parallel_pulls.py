"""A check pulls several apps at once (`defaults.pull_concurrency`), on real SCIM servers
that answer slowly: their requests overlap, the results come in the apps' order, and a
failed pull fails only its own app."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import pytest
from click.testing import CliRunner

from reconciler import demo
from reconciler.cli import main
from reconciler.git import Git
from reconciler.testing.scim_server import start_scim_server

APPS = ("crm", "hr", "wiki")
IDENTITY_SOURCE = "corp"


@dataclass
class InFlight:
    """Requests being answered across every app's server, and the most seen at once."""

    now: int = 0
    most: int = 0
    failing: set[str] = field(default_factory=set)  # apps whose /Users answers 500
    lock: threading.Lock = field(default_factory=threading.Lock)
    identities: int = 0  # the identity source's requests being answered
    together: bool = False  # an identity request was answered while an app's was

    def slow(self, app: str) -> Any:
        def wrap(inner: WSGIApplication) -> WSGIApplication:
            def answer(environ: WSGIEnvironment, start: StartResponse) -> Any:
                if app in self.failing and environ["PATH_INFO"].endswith("/Users"):
                    start("500 Internal Server Error", [("Content-Type", "text/plain")])
                    return [b"down"]
                with self.lock:
                    if app == IDENTITY_SOURCE:
                        self.identities += 1
                    else:
                        self.now += 1
                        self.most = max(self.most, self.now)
                    self.together |= self.identities > 0 and self.now > 0
                try:
                    time.sleep(0.05)  # a server with latency: long enough for overlap
                    return list(inner(environ, start))
                finally:
                    with self.lock:
                        if app == IDENTITY_SOURCE:
                            self.identities -= 1
                        else:
                            self.now -= 1

            return answer

        return wrap


@contextmanager
def estate(tmp_path: Path, width: int, seen: InFlight) -> Iterator[tuple[Path, dict[str, str]]]:
    """An IdP and three SCIM apps of the demo company, checked `width` apps at a time."""
    idp_token = secrets.token_hex(8)
    env = {"IDP_TOKEN": idp_token}
    apps = []
    with ExitStack() as stack:
        idp = stack.enter_context(
            start_scim_server(idp_token, middleware=seen.slow(IDENTITY_SOURCE))
        )
        idp.seed(*demo.idp_seed())
        for app in APPS:
            token = secrets.token_hex(8)
            server = stack.enter_context(start_scim_server(token, middleware=seen.slow(app)))
            server.seed(*demo.app_seed())
            env[f"{app.upper()}_TOKEN"] = token
            apps.append(
                f"  {app}:\n    type: scim\n    url: {server.url}\n"
                f"    token_env: {app.upper()}_TOKEN\n    max_retries: 0\n"
            )
        repo = tmp_path / "access"
        git = Git.init(repo)
        (repo / "policies").mkdir()
        config = (
            "version: 1\nforge:\n  type: local\n"
            f"defaults:\n  mode: disable\n  pull_concurrency: {width}\n"
            f"identity_sources:\n  corp:\n    type: scim\n    url: {idp.url}\n"
            "    token_env: IDP_TOKEN\napps:\n" + "".join(apps)
        )
        (repo / "reconciler.yaml").write_text(config)
        (repo / "policies" / "default.yaml").write_text(demo.POLICY)
        git.commit_paths(["reconciler.yaml", "policies"], "configure reconciler")
        yield repo, env


def check(repo: Path, env: dict[str, str]) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["check", "--repo", str(repo), "--format", "json"], env=env)
    assert result.exit_code in (0, 1), result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


@pytest.mark.parametrize(("width", "overlap"), [(3, True), (1, False)])
def test_pulls_overlap_up_to_the_configured_width(tmp_path, width, overlap) -> None:
    seen = InFlight()
    with estate(tmp_path, width, seen) as (repo, env):
        found = check(repo, env)
        assert [a["app"] for a in found["apps"]] == list(APPS)
        assert all(a["error"] is None for a in found["apps"])
        assert (seen.most > 1) is overlap
        # The first apps' pulls start as the identity source's does, whatever the width.
        assert seen.together


def test_a_failed_pull_fails_only_its_own_app(tmp_path) -> None:
    seen = InFlight(failing={"hr"})
    with estate(tmp_path, 3, seen) as (repo, env):
        found = {a["app"]: a for a in check(repo, env)["apps"]}
        assert "500" in found["hr"]["error"]
        assert found["crm"]["error"] is None and found["wiki"]["error"] is None
        assert (repo / "state/apps/crm/accounts.yaml").exists()
        assert (repo / "state/apps/wiki/accounts.yaml").exists()
        assert not (repo / "state/apps/hr").exists()
