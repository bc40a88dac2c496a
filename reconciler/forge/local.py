"""The local forge: a plan's "pull request" is the branch `reconciler/<app>` in the
access repo itself, and approving merges it into main with `Approved-by:` trailers.
No network.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.actor import NAME, Person
from reconciler.errors import ApprovalError, ConfigError, PlanError
from reconciler.forge.base import Approval, ImportProposal, OpenPlan, Proposal
from reconciler.git import Commit, Git, bot_env
from reconciler.plan import Plan, what_it_does
from reconciler.planfile import plan_path, read_plan, report_path

BRANCH_PREFIX = "reconciler/"


def branch_for(app: str) -> str:
    return f"{BRANCH_PREFIX}{app}"


def approval_trailers(approvers: Sequence[str]) -> str:
    return "\n".join(f"Approved-by: {name}" for name in approvers)


def parse_approvers(message: str) -> list[str]:
    """The names in `Approved-by:` trailers; anything that is not a plain name is ignored."""
    names = []
    for line in message.splitlines():
        if line.startswith("Approved-by:"):
            name = line.removeprefix("Approved-by:").strip()
            if NAME.fullmatch(name) and name not in names:
                names.append(name)
    return names


def outside_plan(app: str, paths: Sequence[str]) -> list[str]:
    """The paths a plan branch may not change: everything but the app's plan and report."""
    allowed = {plan_path(app), report_path(app)}
    return sorted(p for p in paths if p not in allowed)


def require_plan_only(git: Git, app: str, commit: Commit, merge: str) -> None:
    """ApprovalError unless the commit that brought the app's plan to main (`merge`, as
    people know it) changed nothing but the plan and its report."""
    foreign = outside_plan(app, git.changed_paths(commit.parents[0], commit.sha))
    if foreign:
        raise ApprovalError(
            f"{merge} that brought {plan_path(app)} to main also changed "
            f"{', '.join(foreign)}; a plan's branch may change only the plan and its report. "
            "Revert the merge and propose the plan again with `reconciler check`"
        )


class LocalForge:
    def __init__(self, git: Git, main_branch: str = "main") -> None:
        self.git = git
        self.main = main_branch
        # Plan branch → its tip, read once (a check asks for every app) and kept up to
        # date by this forge's own writes. Only to find that an app has no branch: what
        # is written to or deleted from a branch is decided on the branch as it is.
        self._tips: dict[str, str] | None = None

    def _tip(self, branch: str) -> str | None:
        if self._tips is None:
            listed = self.git.refs_with_tips(f"refs/heads/{BRANCH_PREFIX}")
            self._tips = {ref.removeprefix("refs/heads/"): sha for ref, sha in listed.items()}
        return self._tips.get(branch)

    def _moved(self, branch: str, tip: str | None) -> None:
        if self._tips is not None:
            if tip is None:
                self._tips.pop(branch, None)
            else:
                self._tips[branch] = tip

    def _edited_by_reviewer(self, branch: str) -> bool:
        bot = bot_env()["GIT_AUTHOR_EMAIL"]
        commits = self.git.log(f"{self.main}..{branch}")
        return any(not c.author.endswith(f"<{bot}>") for c in commits)

    def propose(self, plan: Plan, plan_yaml: str, report_md: str) -> Proposal:
        branch = branch_for(plan.app)
        # Asked live, not from the list: a branch someone made since must not be
        # overwritten as if it were new.
        existing = self.git.head(branch)
        if existing:
            current = read_plan(self.git, branch, plan.app)
            if current is not None and current.id == plan.id:
                return Proposal.UNCHANGED
            if self._edited_by_reviewer(branch):
                return Proposal.KEPT_REVIEWER_EDITS
        base = self.git.head(self.main)
        if base is None:
            raise PlanError(f"branch {self.main!r} has no commits yet")
        files = {
            plan_path(plan.app): plan_yaml.encode("utf-8"),
            report_path(plan.app): report_md.encode("utf-8"),
        }
        state = " (blocked)" if plan.status == "blocked" else ""
        message = f"plan {plan.app}: {what_it_does(plan.active_actions)}{state}"
        message += f"\n\nPlan-Id: {plan.id}"
        self._moved(branch, self.git.commit_files_to_branch(branch, base, files, message))
        return Proposal.UPDATED if existing else Proposal.CREATED

    def close(self, app: str) -> bool:
        branch = branch_for(app)
        if not self._tip(branch) or not self.git.head(branch):
            return False
        if self._edited_by_reviewer(branch):
            # A reviewer's work is never thrown away by the tool.
            return False
        self.git.delete_branch(branch)
        self._moved(branch, None)
        return True

    def open_plans(self) -> list[OpenPlan]:
        plans = []
        for branch in self.git.branches(f"{BRANCH_PREFIX}*"):
            app = branch.removeprefix(BRANCH_PREFIX)
            plan = read_plan(self.git, branch, app)
            if plan is not None:
                plans.append(OpenPlan(app=app, branch=branch, plan=plan))
        return plans

    def plan_of(self, app: str) -> Plan | None:
        branch = branch_for(app)
        return read_plan(self.git, branch, app) if self._tip(branch) else None

    def review_link(self, app: str) -> str:
        return f"branch {branch_for(app)} of the access repo"

    def rejection(self, app: str) -> str | None:
        # Locally a plan is rejected by deleting its branch, which leaves no trace.
        return None

    def approve(self, app: str, approvers: Sequence[str], author: Person) -> str:
        branch = branch_for(app)
        if not self.git.head(branch):
            raise PlanError(f"no open plan for app {app!r} (branch {branch} does not exist)")
        base = self.git.run("merge-base", self.main, branch).strip()
        foreign = outside_plan(app, self.git.changed_paths(base, branch))
        if foreign:
            raise ApprovalError(
                f"branch {branch} changes {', '.join(foreign)}; a plan branch may change only "
                f"{plan_path(app)} and {report_path(app)}. Remove those commits from the branch"
            )
        if self.git.show("HEAD", plan_path(app)) is not None:
            raise PlanError(
                f"main already holds an approved plan for {app!r} that was not applied; "
                f"run `reconciler apply --app {app} --confirm` first"
            )
        self.git.require_branch(self.main)
        plan = read_plan(self.git, branch, app)
        message = (
            f"approve {app}: {what_it_does(plan.active_actions if plan else ())}\n\n"
            f"Merges {branch}.\n\n{approval_trailers(approvers)}"
        )
        sha = self.git.merge(branch, message, author.author_env())
        self.git.delete_branch(branch)
        self._moved(branch, None)
        return sha

    def propose_imports(self, head: str, imports: Sequence[str]) -> ImportProposal:
        raise ConfigError(
            "forge local: `import_mode: pull-request` needs `forge: {type: github}`; the "
            "local forge commits imports to main. Remove import_mode from reconciler.yaml"
        )

    def publish(self) -> int:
        return 0  # main is this repository's own

    def close_imports(self) -> bool:
        return False  # the local forge never opens one

    def approval(self, app: str) -> Approval:
        """The merge that brought the app's plan to main: its `Approved-by:` trailers,
        provided it changed nothing but the plan and its report."""
        path = plan_path(app)
        history = self.git.log("--first-parent", "-1", "HEAD", "--", path)
        if not history:
            raise ApprovalError(f"{path} is not on {self.main}")
        commit = history[0]
        if len(commit.parents) != 2:
            raise ApprovalError(
                f"{path} was last changed by commit {commit.sha[:10]}, not by an approved "
                "merge; revert that change or propose the plan again with `reconciler check`"
            )
        require_plan_only(self.git, app, commit, f"the merge {commit.sha[:10]}")
        approvers = tuple(parse_approvers(commit.message))
        at = self.git.run("log", "-1", "--format=%cI", commit.sha).strip()
        return Approval(
            app=app,
            commit=commit.sha,
            approvers=approvers,
            at=at,
            reference=f"merge {commit.sha[:10]}",
            verified={
                "forge": "local",
                "merge_commit": commit.sha,
                "merged_into": commit.parents[0],
                "merged_from": commit.parents[1],
                "approvers_from": "Approved-by trailers",
            },
        )

    def report_applied(self, approval: Approval, outcome: str, journal: str) -> None:
        """Nothing to do: the apply's commit on main is the record."""
