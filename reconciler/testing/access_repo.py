"""A demo company on real SCIM servers with an access repo, for tests."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from reconciler import demo
from reconciler.cli import main
from reconciler.git import Git
from reconciler.testing.scim_server import Middleware, ScimServer, SeedResult, start_scim_server


@dataclass
class Company:
    repo: Path
    git: Git
    idp: ScimServer
    app: ScimServer
    idp_ids: SeedResult
    app_ids: SeedResult
    env: dict[str, str]

    def cli(self, *args: str) -> Result:
        """Run `reconciler ARGS --repo REPO` in-process."""
        return CliRunner().invoke(main, [*args, "--repo", str(self.repo)], env=self.env)

    def run(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed `reconciler ARGS --repo REPO` as its own process."""
        return subprocess.run(
            [installed_command(), *args, "--repo", str(self.repo)],
            env={**os.environ, **self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the installed `reconciler ARGS --repo REPO` and return at once."""
        return subprocess.Popen(
            [installed_command(), *args, "--repo", str(self.repo)],
            env={**os.environ, **self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def write_policy(self, text: str) -> None:
        (self.repo / "policies" / "default.yaml").write_text(text, encoding="utf-8")
        self.git.commit_paths(["policies"], "edit policy")

    def commit_count(self) -> int:
        return int(self.git.run("rev-list", "--count", "HEAD").strip())

    def app_user(self, username: str) -> dict[str, Any]:
        return next(u for u in self.app.list_users() if u["userName"] == username)

    def leave(self) -> None:
        """The demo's three people leave: two deprovisioned in the IdP, one deleted."""
        for username in demo.LEAVERS_DEPROVISIONED:
            self.idp.set_active(self.idp_ids.users[username], False)
        self.idp.delete_user(self.idp_ids.users[demo.LEAVER_DELETED])

    def plan_on_branch(self) -> dict[str, Any]:
        """The plan proposed on branch reconciler/wiki."""
        raw = self.git.show("reconciler/wiki", "plans/wiki.yaml")
        assert raw is not None, "no plan on branch reconciler/wiki"
        plan: dict[str, Any] = yaml.safe_load(raw)
        return plan


def installed_command() -> str:
    """The `reconciler` console script of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "reconciler"
    found = str(beside) if beside.exists() else shutil.which("reconciler")
    if not found:
        raise RuntimeError("the `reconciler` command is not installed: pip install -e .")
    return found


@contextmanager
def company(
    tmp: Path,
    *,
    idp_users: Sequence[dict[str, Any]] | None = None,
    app_users: Sequence[dict[str, Any]] | None = None,
    idp_middleware: Middleware | None = None,
    app_middleware: Middleware | None = None,
    policy: str = demo.POLICY,
) -> Iterator[Company]:
    """The demo company (or the given users) seeded on two SCIM servers, and an access
    repo configured for them, with nothing checked yet."""
    idp_token, app_token = secrets.token_hex(8), secrets.token_hex(8)
    with ExitStack() as stack:
        idp = stack.enter_context(start_scim_server(idp_token, middleware=idp_middleware))
        app = stack.enter_context(start_scim_server(app_token, middleware=app_middleware))
        default_idp_users, idp_groups = demo.idp_seed()
        default_app_users, app_groups = demo.app_seed()
        if idp_users is not None:
            idp_groups = []
        if app_users is not None:
            app_groups = []
        idp_ids = idp.seed(idp_users if idp_users is not None else default_idp_users, idp_groups)
        app_ids = app.seed(app_users if app_users is not None else default_app_users, app_groups)
        repo = tmp / "access"
        git = Git.init(repo)
        (repo / "policies").mkdir()
        (repo / "reconciler.yaml").write_text(
            demo.CONFIG.format(idp_url=idp.url, app_url=app.url), encoding="utf-8"
        )
        (repo / "policies" / "default.yaml").write_text(policy, encoding="utf-8")
        git.commit_paths(["reconciler.yaml", "policies"], "configure reconciler")
        env = {"DEMO_IDP_TOKEN": idp_token, "DEMO_APP_TOKEN": app_token}
        yield Company(repo, git, idp, app, idp_ids, app_ids, env)
