"""`reconciler demo`: the whole check → review → apply cycle on local SCIM servers, with
plans reviewed in the access repo itself (`--forge local`) or as pull requests on a fake
GitHub served on 127.0.0.1 (`--forge github`). No network, no credentials."""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, assert_never

from reconciler import demo as company
from reconciler import inert
from reconciler.clock import utc_now
from reconciler.commands import EXIT_ERROR, EXIT_NEEDS_REVIEW
from reconciler.commands.apply import ApplyOptions, apply
from reconciler.commands.approve import ApproveOptions, approve
from reconciler.commands.check import CheckOptions, check
from reconciler.commands.explain import ExplainOptions, explain_command
from reconciler.demo import ForgeType
from reconciler.errors import ReconcilerError
from reconciler.forge.local import branch_for
from reconciler.git import Git
from reconciler.output import emit
from reconciler.planfile import report_path

if TYPE_CHECKING:
    # The servers come with the `demo` extra: imported only when the demo runs.
    from reconciler.testing.github_fake import FakeGitHub

APP = "wiki"
REMOTE = "origin"
GITHUB_TOKEN_ENV = "DEMO_GITHUB_TOKEN"


@dataclass(frozen=True)
class DemoOptions:
    directory: Path | None = None
    forge: ForgeType = ForgeType.LOCAL


class Story:
    """The demo's narration: numbered steps."""

    def __init__(self) -> None:
        self.steps = 0

    def step(self, title: str) -> None:
        self.steps += 1
        emit(f"\n=== {self.steps}. {title} ===")


class DemoForge(Protocol):
    """The part of the demo's story that differs per forge: how the plan reaches its
    reviewer and how the approval comes back."""

    # The `forge:` block of the demo's reconciler.yaml.
    config: str

    # A line for step 1 saying what runs besides the SCIM servers, or "".
    description: str

    def connect(self, git: Git) -> None:
        """Make the new access repo's main what the forge sees."""

    def publish(self, git: Git) -> None:
        """Share what a check or apply committed on main, as the workflows push it."""

    def show(self, git: Git, story: Story) -> None:
        """Print the proposal as a reviewer sees it."""

    def review(self, git: Git, story: Story) -> None:
        """The demo reviewer approves; afterwards local main holds the approved plan."""

    def applied(self, story: Story) -> None:
        """Print what the apply told the reviewers, if it told them anything."""


class LocalDemoForge:
    """Plans on a branch of the access repo, approved with `reconciler approve`."""

    config = company.LOCAL_FORGE
    description = ""

    def connect(self, git: Git) -> None:
        pass

    def publish(self, git: Git) -> None:
        pass

    def show(self, git: Git, story: Story) -> None:
        story.step(f"The report a reviewer reads ({report_path(APP)} on branch {branch_for(APP)})")
        report = git.show(branch_for(APP), report_path(APP)) or b""
        emit(inert.text_block(report.decode("utf-8")))

    def review(self, git: Git, story: Story) -> None:
        story.step(f"Review: {company.REVIEWER} approves")
        approve(ApproveOptions(git.root, APP, (company.REVIEWER,)))

    def applied(self, story: Story) -> None:
        pass


class GitHubDemoForge:
    """Plans as pull requests on a fake GitHub on 127.0.0.1, backed by a real bare repo,
    approved and merged there as a reviewer and a maintainer would."""

    def __init__(self, fake: FakeGitHub, api_url: str) -> None:
        self.fake = fake
        self.config = company.github_forge(fake.full_name, GITHUB_TOKEN_ENV, api_url)
        self.description = f"GitHub (a fake on {api_url}): repository {fake.full_name}"
        self.number: int | None = None

    def connect(self, git: Git) -> None:
        git.run("remote", "add", REMOTE, str(self.fake.bare))
        self.publish(git)
        emit(f"its origin: {self.fake.full_name} on the fake GitHub, main pushed")

    def publish(self, git: Git) -> None:
        git.push(REMOTE, "main")

    def show(self, git: Git, story: Story) -> None:
        pr = self.fake.pr_for(branch_for(APP))
        if pr is None:
            raise ReconcilerError(f"no pull request from {branch_for(APP)} on the fake GitHub")
        self.number = pr.number
        story.step(f"The pull request a reviewer sees on GitHub (#{pr.number})")
        emit(f"#{pr.number} {inert.terminal(pr.title)}")
        emit(f"{self.fake.html_url}/pull/{pr.number}")
        emit(f"{inert.terminal(pr.head)} → {inert.terminal(pr.base)}")
        emit(f"labels: {', '.join(inert.terminal(n) for n in pr.labels) or 'none'}")
        reviewers = [*pr.requested_users, *pr.requested_teams]
        emit(f"requested reviewers: {', '.join(inert.terminal(r) for r in reviewers) or 'none'}")
        emit("")
        emit(inert.text_block(pr.body))

    def review(self, git: Git, story: Story) -> None:
        assert self.number is not None, "show() the pull request first"
        story.step(f"Review: {company.REVIEWER} approves on GitHub, a maintainer merges")
        self.fake.review(self.number, company.REVIEWER, "APPROVED")
        emit(f"{company.REVIEWER} approved #{self.number}")
        self.fake.merge(self.number)
        emit(f"maintainer merged #{self.number} into main")
        git.run("pull", "-q", "--ff-only", REMOTE, "main")
        emit("pulled main")

    def applied(self, story: Story) -> None:
        assert self.number is not None, "show() the pull request first"
        story.step(f"The comment the apply posted on #{self.number}")
        for comment in self.fake.comments.get(self.number, []):
            emit(f"{inert.terminal(comment.user)}:")
            emit(inert.text_block(comment.body))


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in os.environ while the demo's commands run in this process."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def demo_forge(kind: ForgeType, root: Path) -> Iterator[DemoForge]:
    match kind:
        case ForgeType.LOCAL:
            yield LocalDemoForge()
        case ForgeType.GITHUB:
            from reconciler.testing.github_fake import FakeGitHub, serve_github

            token = secrets.token_hex(20)
            fake = FakeGitHub(root / "github", token=token)
            with serve_github(fake) as api_url, environment({GITHUB_TOKEN_ENV: token}):
                yield GitHubDemoForge(fake, api_url)
        case _:
            assert_never(kind)


def demo_root(stack: ExitStack, directory: Path | None) -> Path:
    if directory is None:
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reconciler-demo-")))
    root = directory.resolve()
    if root.exists() and any(root.iterdir()):
        raise ReconcilerError(f"{root} is not empty; pick a new directory for the demo")
    return root


def demo(options: DemoOptions) -> int:
    from reconciler.testing import scim_server

    story = Story()
    with ExitStack() as stack:
        root = demo_root(stack, options.directory)
        repo = root / "access"
        idp_token, app_token = secrets.token_hex(16), secrets.token_hex(16)
        idp = stack.enter_context(scim_server.start_scim_server(token=idp_token))
        app = stack.enter_context(scim_server.start_scim_server(token=app_token))
        tokens = {"DEMO_IDP_TOKEN": idp_token, "DEMO_APP_TOKEN": app_token}
        stack.enter_context(environment(tokens))
        forge = stack.enter_context(demo_forge(options.forge, root))

        story.step("Start an identity provider and an app (SCIM servers on 127.0.0.1)")
        idp_users, idp_groups = company.idp_seed()
        app_users, app_groups = company.app_seed()
        idp_ids = scim_server.seed(idp.url, idp_token, idp_users, idp_groups)
        app_ids = scim_server.seed(app.url, app_token, app_users, app_groups)
        emit(f"identity provider {idp.url}: {len(idp_users)} people")
        emit(
            f"app {APP!r} {app.url}: {len(app_users)} accounts, among them a service account "
            "and a break-glass admin"
        )
        if forge.description:
            emit(forge.description)

        story.step("Create the access repo")
        git = Git.init(repo)
        (repo / "policies").mkdir()
        (repo / "reconciler.yaml").write_text(company.config(idp.url, app.url, forge.config))
        until = utc_now().date() + timedelta(days=company.EXCEPTION_DAYS)
        (repo / "policies" / "default.yaml").write_text(company.policy_with_exception(until))
        git.commit_paths(["reconciler.yaml", "policies"], "configure reconciler for the demo")
        emit(f"access repo: {repo}")
        forge.connect(git)

        story.step("First check: import the app and the identities")
        check(CheckOptions(repo))
        forge.publish(git)

        story.step("Four people leave: three deprovisioned in the IdP, one deleted")
        for username in company.LEAVERS_DEPROVISIONED:
            scim_server.set_active(idp.url, idp_token, idp_ids.users[username], False)
            emit(f"deprovisioned {username}")
        scim_server.delete_user(idp.url, idp_token, idp_ids.users[company.LEAVER_DELETED])
        emit(f"deleted {company.LEAVER_DELETED}")
        excepted = company.EXCEPTED_LEAVER
        scim_server.set_active(idp.url, idp_token, idp_ids.users[excepted], False)
        emit(f"deprovisioned {excepted} (the policy grants an exception until {until})")

        story.step(
            f"Second check: propose removing their accounts, and {company.ROLE_HOLDER}'s "
            f"{company.ADMIN_ROLE} role"
        )
        if check(CheckOptions(repo, detailed_exitcode=True)) != EXIT_NEEDS_REVIEW:
            emit("the check did not propose a plan; see above")
            return EXIT_ERROR
        forge.show(git, story)
        story.step(f"Why: reconciler explain --app {APP} {company.ROLE_HOLDER}")
        explain_command(ExplainOptions(repo, APP, company.ROLE_HOLDER))
        forge.review(git, story)

        story.step("Apply (dry run, then --confirm)")
        apply(ApplyOptions(repo))
        code = apply(ApplyOptions(repo, confirm=True))
        forge.publish(git)

        story.step("The app now")
        leavers = (*company.LEAVERS_DEPROVISIONED, company.LEAVER_DELETED, excepted)
        users = scim_server.list_users(app.url, app_token)
        for user in users:
            if user["userName"] in leavers:
                state = "active" if user.get("active", True) else "disabled"
                emit(f"{user['userName']}: {state}")
        active = sum(1 for u in users if u.get("active", True))
        emit(f"accounts still active in the app: {active} of {len(app_ids.users)}")
        admins = next(
            g
            for g in scim_server.list_groups(app.url, app_token)
            if g["displayName"] == company.ADMIN_ROLE
        )
        names = {user["id"]: user["userName"] for user in users}
        holders = sorted(names.get(m["value"], m["value"]) for m in admins.get("members") or [])
        emit(f"{company.ADMIN_ROLE}: {', '.join(holders)} ({company.ROLE_HOLDER}'s account stays)")
        forge.applied(story)

        story.step("The audit trail: git log --stat")
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
        return code
