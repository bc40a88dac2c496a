"""`reconciler demo`: the whole check → review → apply cycle on local SCIM servers."""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from reconciler import demo as company
from reconciler.commands import EXIT_ERROR, EXIT_OK
from reconciler.commands.apply import ApplyOptions, apply
from reconciler.commands.approve import ApproveOptions, approve
from reconciler.commands.check import CheckOptions, check
from reconciler.errors import ReconcilerError
from reconciler.git import Git
from reconciler.output import emit


@dataclass(frozen=True)
class DemoOptions:
    directory: Path | None = None


def step(title: str) -> None:
    emit(f"\n=== {title} ===")


def demo(options: DemoOptions) -> int:
    from reconciler.testing import scim_server

    with ExitStack() as stack:
        if options.directory is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reconciler-demo-")))
        else:
            root = options.directory.resolve()
            if root.exists() and any(root.iterdir()):
                raise ReconcilerError(f"{root} is not empty; pick a new directory for the demo")
        repo = root / "access"
        idp_token, app_token = secrets.token_hex(16), secrets.token_hex(16)
        idp = stack.enter_context(scim_server.start_scim_server(token=idp_token))
        app = stack.enter_context(scim_server.start_scim_server(token=app_token))
        os.environ["DEMO_IDP_TOKEN"] = idp_token
        os.environ["DEMO_APP_TOKEN"] = app_token

        step("1. Start an identity provider and an app (SCIM servers on 127.0.0.1)")
        idp_users, idp_groups = company.idp_seed()
        app_users, app_groups = company.app_seed()
        idp_ids = scim_server.seed(idp.url, idp_token, idp_users, idp_groups)
        app_ids = scim_server.seed(app.url, app_token, app_users, app_groups)
        emit(f"identity provider {idp.url}: {len(idp_users)} people")
        emit(
            f"app 'wiki' {app.url}: {len(app_users)} accounts, among them a service account "
            "and a break-glass admin"
        )

        step("2. Create the access repo")
        git = Git.init(repo)
        (repo / "policies").mkdir()
        (repo / "reconciler.yaml").write_text(
            company.CONFIG.format(idp_url=idp.url, app_url=app.url)
        )
        (repo / "policies" / "default.yaml").write_text(company.POLICY)
        git.commit_paths(["reconciler.yaml", "policies"], "configure reconciler for the demo")
        emit(f"access repo: {repo}")

        step("3. First check: import the app and the identities")
        check(CheckOptions(repo))

        step("4. Three people leave: two deprovisioned in the IdP, one deleted")
        for username in company.LEAVERS_DEPROVISIONED:
            scim_server.set_active(idp.url, idp_token, idp_ids.users[username], False)
            emit(f"deprovisioned {username}")
        scim_server.delete_user(idp.url, idp_token, idp_ids.users[company.LEAVER_DELETED])
        emit(f"deleted {company.LEAVER_DELETED}")

        step("5. Second check: propose removing their accounts")
        code = check(CheckOptions(repo, detailed_exitcode=True))
        if code != 4:
            emit("the check did not propose a plan; see above")
            return EXIT_ERROR
        report = git.show("reconciler/wiki", "plans/wiki.md") or b""
        step("6. The report a reviewer reads (plans/wiki.md on branch reconciler/wiki)")
        emit(report.decode("utf-8"))

        step(f"7. Review: {company.REVIEWER} approves")
        approve(ApproveOptions(repo, "wiki", (company.REVIEWER,)))

        step("8. Apply (dry run, then --confirm)")
        apply(ApplyOptions(repo))
        code = apply(ApplyOptions(repo, confirm=True))

        step("9. The app now")
        leavers = (*company.LEAVERS_DEPROVISIONED, company.LEAVER_DELETED)
        for user in scim_server.list_users(app.url, app_token):
            if user["userName"] in leavers:
                state = "active" if user.get("active", True) else "disabled"
                emit(f"{user['userName']}: {state}")
        emit(
            f"accounts still active in the app: "
            f"{sum(1 for u in scim_server.list_users(app.url, app_token) if u.get('active', True))}"
            f" of {len(app_ids.users)}"
        )

        step("10. The audit trail: git log --stat")
        log = subprocess.run(
            ["git", "log", "--stat", "--format=%n%h %s%n%b"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
        emit(log.stdout)
        where = "was removed (temporary)" if options.directory is None else f"is kept at {repo}"
        emit(f"The access repo {where}; run `reconciler demo --dir DIR` to keep it.")
        return code if code != EXIT_OK else EXIT_OK
