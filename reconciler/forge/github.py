"""The `github` forge: a plan is a pull request from `reconciler/<app>` on GitHub, and
an approval is that pull request's reviews and merge (DESIGN §8).

Proposing pushes the plan branch and opens or updates the one pull request per app,
labels it and requests the policy's reviewers and owners. A pull request closed unmerged by a
person rejects that plan id: the same plan is not proposed again.

Apply asks `approval(app)`: the commit that last changed `plans/<app>.yaml` on main
must be the merge (or squash) commit of that app's merged pull request, change nothing
but the plan and its report, and carry the very plan file of the pull request's final
head; approvers are the users whose latest review that is not a comment is APPROVED on
that head. No outstanding CHANGES_REQUESTED by an allowed reviewer; the author never
counts; team members are counted through the memberships the forge verified.

Requests are built by the `*_request` functions and responses read by the `parse_*`
functions, apart from sending (`GitHubForge._send`), which owns GitHub's rate-limit
rules on top of `http.send`: a 403 that is a rate limit waits and retries, a 403 with
quota left and no rate-limit message is a missing permission and fails at once.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from reconciler import markdown
from reconciler.actor import Person
from reconciler.config import Policy
from reconciler.connectors.http import (
    RetryPolicy,
    build_client,
    describe_request,
    describe_status,
    read_json,
    redact,
    send,
    server_text,
)
from reconciler.errors import ApprovalError, ConfigError, ConnectorError, GitError, PlanError
from reconciler.forge.base import IMPORT_BRANCH, Approval, ImportProposal, OpenPlan, Proposal
from reconciler.forge.local import BRANCH_PREFIX, branch_for, require_plan_only
from reconciler.forge.push import push_rebasing
from reconciler.git import Git, bot_env
from reconciler.plan import Plan, what_it_does
from reconciler.planfile import plan_path, read_plan, report_path
from reconciler.policy import may_approve
from reconciler.report import GITHUB_BODY_LIMIT, render_pr_body

log = logging.getLogger(__name__)

SYSTEM = "github"
DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
GITHUB_JSON = "application/vnd.github+json"
GITHUB_RAW = "application/vnd.github.raw+json"

LABEL = "deprovisioning"
BLOCKED_LABEL = "blocked"
IMPORT_LABEL = "import"
IMPORT_MARKER = "<!-- reconciler imports -->"
# GitHub's limit on a pull request's title.
TITLE_LIMIT = 256
PER_PAGE = 100
# Never follow more pages than this: a server that always answers `next` must not
# keep a run going forever.
MAX_PAGES = 200
# GitHub asks to wait at least a minute after a secondary limit that names no delay.
SECONDARY_LIMIT_WAIT = 60.0

PLAN_MARKER = re.compile(r"<!-- reconciler plan-id: ([0-9a-zA-Z_-]+)( closed: [^>]*)? -->")


def plan_marker(plan_id: str) -> str:
    return f"<!-- reconciler plan-id: {plan_id} -->"


def closed_marker(plan_id: str) -> str:
    return f"<!-- reconciler plan-id: {plan_id} closed: nothing left to deprovision -->"


@dataclass(frozen=True)
class GitHubOptions:
    """The `forge` section of reconciler.yaml for `type: github`."""

    repository: str  # owner/name
    token_env: str
    api_url: str = DEFAULT_API_URL
    remote: str = "origin"
    main: str = "main"
    timeout: float = 30.0
    import_mode: str = "commit"  # `pull-request`: main is never pushed (see propose_imports)

    @property
    def owner(self) -> str:
        return self.repository.partition("/")[0]

    @property
    def name(self) -> str:
        return self.repository.partition("/")[2]


# ---------------------------------------------------------------------------------------
# Requests


def _repo(options: GitHubOptions) -> str:
    return f"/repos/{options.owner}/{options.name}"


def pulls_request(
    client: httpx.Client, options: GitHubOptions, branch: str, state: str
) -> httpx.Request:
    """The pull requests from `branch` in `state` (the `owner:` prefix is required)."""
    params: dict[str, str | int] = {
        "state": state,
        "head": f"{options.owner}:{branch}",
        "per_page": PER_PAGE,
    }
    return client.build_request("GET", f"{_repo(options)}/pulls", params=params)


def open_pulls_request(client: httpx.Client, options: GitHubOptions) -> httpx.Request:
    params: dict[str, str | int] = {"state": "open", "base": options.main, "per_page": PER_PAGE}
    return client.build_request("GET", f"{_repo(options)}/pulls", params=params)


def pull_request(client: httpx.Client, options: GitHubOptions, number: int) -> httpx.Request:
    return client.build_request("GET", f"{_repo(options)}/pulls/{number}")


def merged_request(client: httpx.Client, options: GitHubOptions, number: int) -> httpx.Request:
    """204 when the pull request was merged, 404 when not."""
    return client.build_request("GET", f"{_repo(options)}/pulls/{number}/merge")


def create_request(
    client: httpx.Client, options: GitHubOptions, branch: str, title: str, body: str
) -> httpx.Request:
    payload = {"title": title, "head": branch, "base": options.main, "body": body}
    return client.build_request("POST", f"{_repo(options)}/pulls", json=payload)


def update_request(
    client: httpx.Client, options: GitHubOptions, number: int, fields: Mapping[str, str]
) -> httpx.Request:
    return client.build_request("PATCH", f"{_repo(options)}/pulls/{number}", json=dict(fields))


def labels_request(
    client: httpx.Client, options: GitHubOptions, number: int, labels: Sequence[str]
) -> httpx.Request:
    path = f"{_repo(options)}/issues/{number}/labels"
    return client.build_request("POST", path, json={"labels": list(labels)})


def unlabel_request(
    client: httpx.Client, options: GitHubOptions, number: int, label: str
) -> httpx.Request:
    return client.build_request("DELETE", f"{_repo(options)}/issues/{number}/labels/{label}")


def reviewers_request(
    client: httpx.Client,
    options: GitHubOptions,
    number: int,
    users: Sequence[str],
    teams: Sequence[str],
) -> httpx.Request:
    path = f"{_repo(options)}/pulls/{number}/requested_reviewers"
    payload = {"reviewers": list(users), "team_reviewers": list(teams)}
    return client.build_request("POST", path, json=payload)


def comment_request(
    client: httpx.Client, options: GitHubOptions, number: int, body: str
) -> httpx.Request:
    path = f"{_repo(options)}/issues/{number}/comments"
    return client.build_request("POST", path, json={"body": body})


def delete_branch_request(
    client: httpx.Client, options: GitHubOptions, branch: str
) -> httpx.Request:
    return client.build_request("DELETE", f"{_repo(options)}/git/refs/heads/{branch}")


def reviews_request(client: httpx.Client, options: GitHubOptions, number: int) -> httpx.Request:
    path = f"{_repo(options)}/pulls/{number}/reviews"
    return client.build_request("GET", path, params={"per_page": PER_PAGE})


def contents_request(
    client: httpx.Client, options: GitHubOptions, path: str, ref: str
) -> httpx.Request:
    """A file's raw bytes at `ref` (the raw media type serves files up to 100 MB)."""
    return client.build_request(
        "GET",
        f"{_repo(options)}/contents/{path}",
        params={"ref": ref},
        headers={"Accept": GITHUB_RAW},
    )


def membership_request(client: httpx.Client, org: str, slug: str, user: str) -> httpx.Request:
    return client.build_request("GET", f"/orgs/{org}/teams/{slug}/memberships/{user}")


# ---------------------------------------------------------------------------------------
# Responses


@dataclass(frozen=True)
class PullRequest:
    number: int
    state: str
    title: str
    body: str
    head_ref: str
    head_sha: str
    head_repo: str | None  # owner/name of the head's repository; None when unknown
    base_ref: str
    author: str
    merged_at: str | None
    merge_commit_sha: str | None
    html_url: str
    merged_by: str | None = None

    @property
    def plan_id(self) -> str | None:
        """The plan id the tool wrote into the body, if the body still carries it."""
        found = PLAN_MARKER.search(self.body)
        return found.group(1) if found else None

    @property
    def closed_by_tool(self) -> bool:
        found = PLAN_MARKER.search(self.body)
        return bool(found and found.group(2))


@dataclass(frozen=True)
class Review:
    id: int
    user: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED, PENDING
    commit_id: str
    submitted_at: str


def _login(value: Any) -> str:
    return str(value.get("login") or "") if isinstance(value, dict) else ""


def parse_pull(data: Any) -> PullRequest:
    """A pull request from GitHub's JSON (the list and the single form alike)."""
    if not isinstance(data, dict) or not isinstance(data.get("number"), int):
        raise ConnectorError(SYSTEM, f"a pull request without a number: {str(data)[:80]!r}")
    head = data.get("head") or {}
    base = data.get("base") or {}
    head_repo = head.get("repo")
    return PullRequest(
        number=data["number"],
        state=str(data.get("state") or ""),
        title=str(data.get("title") or ""),
        body=str(data.get("body") or ""),
        head_ref=str(head.get("ref") or ""),
        head_sha=str(head.get("sha") or ""),
        head_repo=str(head_repo["full_name"])
        if isinstance(head_repo, dict) and head_repo.get("full_name")
        else None,
        base_ref=str(base.get("ref") or ""),
        author=_login(data.get("user")),
        merged_at=data.get("merged_at") or None,
        merge_commit_sha=data.get("merge_commit_sha") or None,
        html_url=str(data.get("html_url") or ""),
        merged_by=_login(data.get("merged_by")) or None,
    )


def parse_review(data: Any) -> Review:
    if not isinstance(data, dict):
        raise ConnectorError(SYSTEM, f"a review that is not an object: {str(data)[:80]!r}")
    return Review(
        id=int(data.get("id") or 0),
        user=_login(data.get("user")),
        state=str(data.get("state") or ""),
        commit_id=str(data.get("commit_id") or ""),
        submitted_at=str(data.get("submitted_at") or ""),
    )


def latest_reviews(reviews: Sequence[Review]) -> dict[str, Review]:
    """Each user's effective review: their latest that is not a comment (or pending).
    Reviews come in chronological order; a dismissed review stays DISMISSED."""
    latest: dict[str, Review] = {}
    for review in reviews:
        if review.user and review.state not in ("COMMENTED", "PENDING"):
            latest[review.user] = review
    return latest


@dataclass(frozen=True)
class ReviewVerdict:
    approvals: tuple[Review, ...]  # latest APPROVED on the head, author excluded
    changes_requested: tuple[Review, ...]  # outstanding, by users allowed to approve
    ignored: tuple[str, ...]  # why other reviews do not count, for the message


def judge_reviews(
    reviews: Sequence[Review], head_sha: str, author: str, allowed: Callable[[str], bool]
) -> ReviewVerdict:
    """The approvals that count on `head_sha`, and the outstanding change requests."""
    approvals, blocking, ignored = [], [], []
    for user, review in latest_reviews(reviews).items():
        if user == author:
            ignored.append(f"{user} is the pull request's author")
        elif review.state == "CHANGES_REQUESTED":
            if allowed(user):
                blocking.append(review)
            else:
                ignored.append(f"{user} requested changes but may not approve")
        elif review.state == "DISMISSED":
            ignored.append(f"{user}'s review was dismissed")
        elif review.state != "APPROVED":
            ignored.append(f"{user}'s review is {review.state.lower()}")
        elif review.commit_id != head_sha:
            ignored.append(
                f"{user} approved commit {review.commit_id[:10]}, not the final head "
                f"{head_sha[:10]}"
            )
        else:
            approvals.append(review)
    return ReviewVerdict(tuple(approvals), tuple(blocking), tuple(ignored))


def reviewers_to_request(policy: Policy, author: str) -> tuple[list[str], list[str]]:
    """Users and team slugs to ask for a review of an app's plan: the policy's
    `approvals.reviewers` (entries with a `/` are teams `org/slug`), then its `owners`
    that are forge users or teams; each once, in that order, never the author."""
    entries = [*policy.approvals.reviewers, *policy.owner_users, *policy.owner_teams]
    users: list[str] = []
    teams: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        key = entry.lower()
        if key in seen or key == author.lower():
            continue
        seen.add(key)
        if "/" in entry:
            slug = entry.partition("/")[2]
            if slug not in teams:
                teams.append(slug)
        else:
            users.append(entry)
    return users, teams


def rate_limited(response: httpx.Response) -> bool:
    """Whether a 403 or 429 means "not now" (a primary or secondary rate limit) rather
    than "not allowed"."""
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    if response.headers.get("x-ratelimit-remaining") == "0":
        return True
    if "retry-after" in response.headers:
        return True
    return "rate limit" in _message(response).lower()


def needed_permission(request: httpx.Request) -> str:
    """The permission a GitHub App or fine-grained token needs for `request`."""
    path = request.url.path
    write = request.method != "GET"
    if path.startswith("/orgs/"):
        return "members: read (organization)"
    if "/git/refs/" in path or "/contents/" in path:
        return "contents: write" if write else "contents: read"
    return "pull-requests: write" if write else "pull-requests: read"


def _message(response: httpx.Response) -> str:
    """GitHub's `message`, with the `errors` messages it may add."""
    try:
        data = response.json()
    except ValueError:
        return response.text
    if not isinstance(data, dict):
        return ""
    parts = [str(data.get("message") or "")]
    for error in data.get("errors") or ():
        if isinstance(error, dict) and error.get("message"):
            parts.append(str(error["message"]))
        elif isinstance(error, dict) and error.get("code"):
            parts.append(f"{error.get('field', '')} {error['code']}".strip())
    return ": ".join(p for p in parts if p)


def body_too_long(response: httpx.Response) -> bool:
    return response.status_code == 422 and "too long" in _message(response).lower()


def already_exists(response: httpx.Response) -> bool:
    return response.status_code == 422 and "already exists" in _message(response).lower()


def next_page(response: httpx.Response, base: httpx.URL) -> str | None:
    """The `Link: rel="next"` URL, provided it points at the same API as `base`: the
    token is never sent to a host a response names."""
    url = response.links.get("next", {}).get("url")
    if not url:
        return None
    target = httpx.URL(url)
    if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
        raise ConnectorError(
            SYSTEM, f"a page link points at another host ({target.host}); not followed"
        )
    return url


def pr_title(plan: Plan) -> str:
    blocked = " (blocked)" if plan.status == "blocked" else ""
    does = what_it_does(plan.active_actions)
    return f"{does[0].upper()}{does[1:]} in {plan.app}{blocked}"


def pr_body(report_md: str, app: str, plan_id: str) -> str:
    """The report cut to GitHub's limit, with the plan id the tool finds it by."""
    marker = "\n\n" + plan_marker(plan_id)
    return render_pr_body(report_md, app=app, limit=GITHUB_BODY_LIMIT - len(marker)) + marker


def short_body(app: str, plan_id: str) -> str:
    """What is left when GitHub refuses the report itself."""
    return (
        f"The deprovisioning report for {markdown.code(app)} is too long for a pull "
        f"request body: read {markdown.code(report_path(app))} and "
        f"{markdown.code(plan_path(app))} on this branch.\n\n{plan_marker(plan_id)}"
    )


def import_title(imports: Sequence[str]) -> str:
    """`import: wiki: 3 new; identities corp: 2 updated`, from the import commits'
    subjects, cut to GitHub's title limit."""
    parts = [m.partition("\n")[0].removeprefix("import ").strip() for m in imports]
    title = "import: " + "; ".join(p for p in parts if p)
    return title if len(title) <= TITLE_LIMIT else title[: TITLE_LIMIT - 1] + "…"


def import_body(imports: Sequence[str]) -> str:
    """The import commits' messages as markdown, every line escaped, cut to fit."""
    intro = (
        "`reconciler check` pulled these changes from the apps and identity sources. "
        "Merging brings the snapshots to main; it deprovisions nothing. Until it is "
        "merged, no deprovisioning plan is proposed for the apps they touch. A later "
        "check replaces this branch with what it pulls then.\n"
    )
    sections = []
    for message in imports:
        subject, _, rest = message.partition("\n")
        lines = [f"### {markdown.escape(subject.strip())}", ""]
        for line in rest.strip().splitlines():
            item = line.strip()
            if item.startswith("- "):
                lines.append(f"- {markdown.escape(item[2:])}")
            elif item:
                lines.append(f"\n{markdown.escape(item)}\n")
        sections.append("\n".join(lines))
    body = intro + "\n" + "\n\n".join(sections)
    marker = f"\n\n{IMPORT_MARKER}"
    limit = GITHUB_BODY_LIMIT - len(marker) - 200
    if len(body) > limit:
        cut = body.rfind("\n", 0, limit)
        body = body[: cut if cut > 0 else limit] + (
            f"\n\n… cut to fit GitHub's limit: the commits on {markdown.code(IMPORT_BRANCH)} "
            "list every change."
        )
    return body + marker


# ---------------------------------------------------------------------------------------
# The forge


class GitHubForge:
    """Plans as pull requests on GitHub (see the module docstring)."""

    def __init__(
        self,
        git: Git,
        options: GitHubOptions,
        policy_for: Callable[[str], Policy],
        *,
        token: str,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.git = git
        self.options = options
        self.policy_for = policy_for
        self.token = token
        self.retry = retry or RetryPolicy()
        self._memberships: dict[tuple[str, str], bool] = {}
        self._published: str | None = None  # main's head as `publish` pushed it
        self.client = build_client(
            SYSTEM,
            options.api_url,
            token=token,
            timeout=options.timeout,
            headers={"Accept": GITHUB_JSON, "X-GitHub-Api-Version": API_VERSION},
            transport=transport,
        )

    @classmethod
    def from_options(
        cls,
        git: Git,
        options: GitHubOptions,
        policy_for: Callable[[str], Policy],
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> GitHubForge:
        """The forge with its token read from the environment variable the config names."""
        token = (os.environ if env is None else env).get(options.token_env, "")
        if not token:
            raise ConfigError(
                f"forge github: the environment variable {options.token_env} is not set; "
                "put a GitHub App installation token or a fine-grained token with "
                "`contents: write` and `pull-requests: write` on "
                f"{options.repository} in it"
            )
        return cls(git, options, policy_for, token=token, **kwargs)

    # --- sending ----------------------------------------------------------------------

    def _send(self, request: httpx.Request, *, accept: tuple[int, ...] = ()) -> httpx.Response:
        """Send with retries; a 2xx or a status in `accept` is returned, anything else
        raises ConnectorError saying what to do."""
        for attempt in range(1, self.retry.max_attempts + 1):
            response = send(
                self.client, request, system=SYSTEM, retry=self.retry, secrets=(self.token,)
            )
            if not rate_limited(response) or attempt == self.retry.max_attempts:
                break
            delay = self.retry.delay(attempt, response)
            if "retry-after" not in response.headers and response.status_code == 403:
                delay = max(delay, min(SECONDARY_LIMIT_WAIT, self.retry.max_delay))
            log.info(
                "%s: %s: rate limited (%s); retrying in %.1fs",
                SYSTEM, describe_request(request), describe_status(response), delay,
            )  # fmt: skip
            self.retry.sleep(delay)
        if response.is_success or response.status_code in accept:
            return response
        raise self._error(request, response)

    def _error(self, request: httpx.Request, response: httpx.Response) -> ConnectorError:
        what = describe_request(request)
        said = server_text(_message(response), (self.token,), limit=300)
        status = describe_status(response)
        if response.status_code == 401:
            hint = (
                f"the token in {self.options.token_env} was refused; it may have expired "
                "(installation tokens last one hour) or been revoked"
            )
        elif rate_limited(response):
            hint = (
                f"still rate limited after {self.retry.max_attempts} attempts; "
                "run again later or lower how often reconciler runs"
            )
        elif response.status_code == 403:
            hint = (
                f"the token in {self.options.token_env} lacks the permission "
                f"`{needed_permission(request)}` on {self.options.repository}; grant it to "
                "the GitHub App or fine-grained token (not retried)"
            )
        elif response.status_code == 404:
            hint = (
                f"check forge.repository ({self.options.repository}) and that the token can see it"
            )
        else:
            hint = "see GitHub's message"
        message = f"{what}: {status}: {said!r}; {hint}"
        return ConnectorError(SYSTEM, redact(message, (self.token,)))

    def _json(self, request: httpx.Request) -> Any:
        return read_json(self._send(request), system=SYSTEM, secrets=(self.token,))

    def _pages(self, request: httpx.Request) -> Iterator[Any]:
        """Every item of a paged list, following `Link: rel="next"`."""
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            response = self._send(request)
            data = read_json(response, system=SYSTEM, secrets=(self.token,))
            if not isinstance(data, list):
                raise ConnectorError(
                    SYSTEM, f"{describe_request(request)}: expected a list, got {type(data)}"
                )
            yield from data
            url = next_page(response, self.client.base_url)
            if url is None:
                return
            if url in seen:
                raise ConnectorError(SYSTEM, f"{describe_request(request)}: pages loop")
            seen.add(url)
            request = self.client.build_request("GET", url)
        raise ConnectorError(
            SYSTEM, f"{describe_request(request)}: more than {MAX_PAGES} pages; not followed"
        )

    # --- git --------------------------------------------------------------------------

    def _remote_ref(self, branch: str) -> str:
        return f"refs/remotes/{self.options.remote}/{branch}"

    def _fetch(self) -> None:
        remote = self.options.remote
        spec = f"+refs/heads/{BRANCH_PREFIX}*:refs/remotes/{remote}/{BRANCH_PREFIX}*"
        self._git(lambda: self.git.fetch(remote, spec, prune=True))

    def _git(self, action: Callable[[], None]) -> None:
        try:
            action()
        except GitError as exc:
            # A remote URL may carry the token (https://x-access-token:…@github.com/…).
            raise GitError(redact(str(exc), (self.token,))) from None

    def _edited_by_reviewer(self, ref: str) -> bool:
        bot = bot_env()["GIT_AUTHOR_EMAIL"]
        commits = self.git.log(f"{self.options.main}..{ref}")
        return any(not c.author.endswith(f"<{bot}>") for c in commits)

    # --- pull requests ----------------------------------------------------------------

    def _pulls(self, branch: str, state: str) -> list[PullRequest]:
        request = pulls_request(self.client, self.options, branch, state)
        pulls = [parse_pull(item) for item in self._pages(request)]
        # The head filter is GitHub's; hold each answer to it anyway.
        return [p for p in pulls if p.head_ref == branch]

    def _open_pull(self, branch: str) -> PullRequest | None:
        found = self._pulls(branch, "open")
        return found[0] if found else None

    def review_link(self, app: str) -> str:
        pr = self._open_pull(branch_for(app))
        return pr.html_url if pr else f"branch {branch_for(app)} of {self.options.repository}"

    def rejection(self, app: str) -> str | None:
        closed = self._pulls(branch_for(app), "closed")
        # GitHub lists the newest first: only the last proposal's fate matters.
        last = closed[0] if closed else None
        if last is None or last.merged_at is not None or last.closed_by_tool:
            return None
        plan = f"plan {last.plan_id}" if last.plan_id else "its plan"
        return (
            f"pull request #{last.number} ({last.html_url}) was closed without merging; "
            f"{plan} is not proposed again until what it would remove changes"
        )

    def _rejected(self, branch: str, plan_id: str) -> PullRequest | None:
        for pr in self._pulls(branch, "closed"):
            if pr.merged_at is None and pr.plan_id == plan_id and not pr.closed_by_tool:
                return pr
        return None

    def _write_body(
        self, number: int | None, branch: str, title: str, body: str, short: str
    ) -> PullRequest:
        """Create (number None) or update the pull request; a body GitHub finds too long
        is replaced by a short pointer to the report file."""
        for text in (body, short):
            if number is None:
                request = create_request(self.client, self.options, branch, title, text)
            else:
                fields = {"title": title, "body": text}
                request = update_request(self.client, self.options, number, fields)
            response = self._send(request, accept=(422,))
            if response.is_success:
                return parse_pull(read_json(response, system=SYSTEM, secrets=(self.token,)))
            if already_exists(response) and number is None:
                existing = self._open_pull(branch)
                if existing is not None:
                    number = existing.number
                    continue
            if not body_too_long(response):
                raise self._error(request, response)
        raise ConnectorError(SYSTEM, f"GitHub refused even the short body for {branch}")

    def _label(self, pr: PullRequest, blocked: bool) -> None:
        labels = [LABEL, BLOCKED_LABEL] if blocked else [LABEL]
        self._send(labels_request(self.client, self.options, pr.number, labels))
        if not blocked:
            request = unlabel_request(self.client, self.options, pr.number, BLOCKED_LABEL)
            self._send(request, accept=(404,))

    def _request_reviewers(self, pr: PullRequest, app: str) -> None:
        users, teams = reviewers_to_request(self.policy_for(app), pr.author)
        if not users and not teams:
            return
        request = reviewers_request(self.client, self.options, pr.number, users, teams)
        response = self._send(request, accept=(422,))
        if response.is_success or len(users) + len(teams) == 1:
            if not response.is_success:
                log.warning("%s", self._error(request, response))
            return
        # GitHub refuses the whole request when one of them is not a collaborator: ask
        # each alone, so that the others are still asked. The pull request stands.
        singles: list[tuple[list[str], list[str]]] = [([u], []) for u in users]
        singles += [([], [t]) for t in teams]
        for one_user, one_team in singles:
            request = reviewers_request(self.client, self.options, pr.number, one_user, one_team)
            response = self._send(request, accept=(422,))
            if not response.is_success:
                log.warning("%s", self._error(request, response))

    # --- the contract -----------------------------------------------------------------

    def propose(self, plan: Plan, plan_yaml: str, report_md: str) -> Proposal:
        app, main, remote = plan.app, self.options.main, self.options.remote
        branch = branch_for(app)
        if self._rejected(branch, plan.id) is not None:
            return Proposal.REJECTED
        self._fetch()
        existing = self._open_pull(branch)
        remote_ref = self._remote_ref(branch)
        if existing is not None and self.git.head(remote_ref):
            current = read_plan(self.git, remote_ref, app)
            if current is not None and current.id == plan.id:
                return Proposal.UNCHANGED
            if self._edited_by_reviewer(remote_ref):
                return Proposal.KEPT_REVIEWER_EDITS
        files = {
            plan_path(app): plan_yaml.encode("utf-8"),
            report_path(app): report_md.encode("utf-8"),
        }
        message = f"plan {app}: {pr_title(plan)}\n\nPlan-Id: {plan.id}"
        if self.options.import_mode == "pull-request":
            # Main is never pushed: the plan's base commit must be on the remote's main
            # already, or merging would bring it in from the side.
            self._require_on_remote_main(plan)
            self.git.commit_files_to_branch(branch, plan.base_commit, files, message)
        else:
            base = self.git.head(main)
            if base is None:
                raise PlanError(f"branch {main!r} has no commits yet")
            self.git.commit_files_to_branch(branch, base, files, message)
            # Main first: the plan's base commit (the snapshots it was computed from) must
            # be on main before the pull request, or merging would bring it in from the side.
            # After `publish` it is, and other checks may have pushed on top of it since.
            if base != self._published:
                self._git(lambda: self.git.push(remote, f"refs/heads/{main}:refs/heads/{main}"))
        self._git(
            lambda: self.git.push(remote, f"refs/heads/{branch}:refs/heads/{branch}", force=True)
        )
        body = pr_body(report_md, app, plan.id)
        number = existing.number if existing else None
        pr = self._write_body(number, branch, pr_title(plan), body, short_body(app, plan.id))
        self._label(pr, plan.status == "blocked")
        self._request_reviewers(pr, app)
        return Proposal.UPDATED if existing else Proposal.CREATED

    def _require_on_remote_main(self, plan: Plan) -> None:
        main, remote = self.options.main, self.options.remote
        tracking = f"refs/remotes/{remote}/{main}"
        self._git(lambda: self.git.fetch(remote, f"+refs/heads/{main}:{tracking}"))
        if not plan.base_commit or not self.git.on_first_parent_chain(plan.base_commit, tracking):
            raise PlanError(
                f"the plan for {plan.app} was computed at {plan.base_commit[:10] or 'no commit'}, "
                f"which is not a commit of {main} on {remote}: with `import_mode: "
                f"pull-request` reconciler never pushes {main}. Bring {main} up to date with "
                f"{remote} (pull it; merge local commits through a pull request) and run the "
                "check again"
            )

    def publish(self) -> int:
        if self.options.import_mode == "pull-request":
            return 0
        main, remote = self.options.main, self.options.remote
        rebased = 0

        def push() -> None:
            nonlocal rebased
            rebased = push_rebasing(self.git, remote, main)

        self._git(push)
        self._published = self.git.head(main)
        return rebased

    def propose_imports(self, head: str, imports: Sequence[str]) -> ImportProposal:
        """Force the import branch to `head` and open or update its pull request, labelled
        `import`. A person's commits on the branch are replaced: the branch holds machine
        data, and the next check pulls again anyway."""
        remote = self.options.remote
        self.git.run("update-ref", f"refs/heads/{IMPORT_BRANCH}", head)
        self._git(
            lambda: self.git.push(
                remote, f"refs/heads/{IMPORT_BRANCH}:refs/heads/{IMPORT_BRANCH}", force=True
            )
        )
        existing = self._open_pull(IMPORT_BRANCH)
        body = import_body(imports)
        short = (
            f"The changes are listed in the commits of {markdown.code(IMPORT_BRANCH)}."
            f"\n\n{IMPORT_MARKER}"
        )
        number = existing.number if existing else None
        pr = self._write_body(number, IMPORT_BRANCH, import_title(imports), body, short)
        self._send(labels_request(self.client, self.options, pr.number, [IMPORT_LABEL]))
        outcome = Proposal.UPDATED if existing else Proposal.CREATED
        return ImportProposal(number=pr.number, outcome=outcome, url=pr.html_url)

    def close_imports(self) -> bool:
        """Close the open import pull request, if any, and delete its branch: main
        already holds what the check pulled."""
        pr = self._open_pull(IMPORT_BRANCH)
        if pr is None:
            return False
        comment = (
            "Nothing left to import: the latest `reconciler check` found main holding what "
            "it pulled. Closing this pull request."
        )
        self._send(comment_request(self.client, self.options, pr.number, comment))
        self._send(update_request(self.client, self.options, pr.number, {"state": "closed"}))
        request = delete_branch_request(self.client, self.options, IMPORT_BRANCH)
        self._send(request, accept=(404, 422))
        return True

    def close(self, app: str) -> bool:
        branch = branch_for(app)
        pr = self._open_pull(branch)
        if pr is None:
            return False
        comment = (
            "Nothing left to deprovision: the latest `reconciler check` found no account "
            f"to remove in {markdown.code(app)}. Closing this pull request."
        )
        self._send(comment_request(self.client, self.options, pr.number, comment))
        body = PLAN_MARKER.sub(closed_marker(pr.plan_id or "none"), pr.body)
        fields = {"state": "closed", "body": body}
        self._send(update_request(self.client, self.options, pr.number, fields))
        self._fetch()
        remote_ref = self._remote_ref(branch)
        if self.git.head(remote_ref) and not self._edited_by_reviewer(remote_ref):
            # A reviewer's commits are never thrown away by the tool.
            request = delete_branch_request(self.client, self.options, branch)
            self._send(request, accept=(404, 422))
        return True

    def plan_of(self, app: str) -> Plan | None:
        branch = branch_for(app)
        if self._open_pull(branch) is None:
            return None
        self._fetch()
        remote_ref = self._remote_ref(branch)
        return read_plan(self.git, remote_ref, app) if self.git.head(remote_ref) else None

    def open_plans(self) -> list[OpenPlan]:
        request = open_pulls_request(self.client, self.options)
        pulls = [parse_pull(item) for item in self._pages(request)]
        heads = [
            p.head_ref
            for p in pulls
            if p.head_ref.startswith(BRANCH_PREFIX) and p.head_ref != IMPORT_BRANCH
        ]
        if not heads:
            return []
        self._fetch()
        plans = []
        for branch in sorted(set(heads)):
            app = branch.removeprefix(BRANCH_PREFIX)
            remote_ref = self._remote_ref(branch)
            plan = read_plan(self.git, remote_ref, app) if self.git.head(remote_ref) else None
            if plan is not None:
                plans.append(OpenPlan(app=app, branch=branch, plan=plan))
        return plans

    def approve(self, app: str, approvers: Sequence[str], author: Person) -> str:
        raise PlanError(
            f"forge github: plans are approved on GitHub: reviewers approve the pull "
            f"request from {branch_for(app)} and merge it; then run `reconciler apply`"
        )

    def approval(self, app: str) -> Approval:
        """The merged pull request that brought the app's plan to main, and the reviews
        that approved its final head."""
        path = plan_path(app)
        main = self.options.main
        history = self.git.log("--first-parent", "-1", "HEAD", "--", path)
        if not history:
            raise ApprovalError(f"{path} is not on {main}")
        commit = history[0]
        pr = self._merged_pull(app, commit.sha)
        if pr.base_ref != main or (pr.head_repo and pr.head_repo != self.options.repository):
            raise ApprovalError(
                f"pull request #{pr.number} merged {pr.head_repo}:{pr.head_ref} into "
                f"{pr.base_ref}, not {self.options.repository}:{branch_for(app)} into {main}"
            )
        if not commit.parents:
            raise ApprovalError(f"commit {commit.sha[:10]} has no parent")
        require_plan_only(self.git, app, commit, f"the merge of #{pr.number} ({commit.sha[:10]})")
        on_main = self.git.show("HEAD", path)
        request = contents_request(self.client, self.options, path, pr.head_sha)
        at_head = self._send(request).content
        if on_main != at_head:
            raise ApprovalError(
                f"{path} on {main} differs from the plan at the final head "
                f"{pr.head_sha[:10]} of #{pr.number}: the plan changed on the way to main "
                "(a conflict resolved in the merge?). Revert it and propose the plan again "
                "with `reconciler check`"
            )
        rules = self.policy_for(app).approvals
        listed_teams = [entry for entry in rules.reviewers if "/" in entry]

        def allowed(user: str) -> bool:
            if may_approve(user, rules):
                return True
            found = {t: [user] if self._member(t, user) else [] for t in listed_teams}
            return may_approve(user, rules, found)

        reviews = [
            parse_review(r)
            for r in self._pages(reviews_request(self.client, self.options, pr.number))
        ]
        verdict = judge_reviews(reviews, pr.head_sha, pr.author, allowed)
        if verdict.changes_requested:
            who = ", ".join(r.user for r in verdict.changes_requested)
            raise ApprovalError(
                f"#{pr.number}: {who} requested changes and did not approve since; the plan "
                "is not approved. Ask them to approve a new proposal"
            )
        if not verdict.approvals:
            why = "; ".join(verdict.ignored) or "no reviews"
            raise ApprovalError(
                f"#{pr.number} was merged without an approving review of its final head "
                f"{pr.head_sha[:10]} ({why}); revert the merge and have the plan reviewed"
            )
        approvers = tuple(r.user for r in verdict.approvals)
        # The team memberships that make an approver allowed, verified now, for apply's
        # check_approvers and for the record.
        teams = {
            team: tuple(u for u in approvers if not may_approve(u, rules) and self._member(team, u))
            for team in listed_teams
        }
        return Approval(
            app=app,
            commit=commit.sha,
            approvers=approvers,
            at=pr.merged_at or "",
            reference=f"#{pr.number}",
            verified={
                "forge": "github",
                "repository": self.options.repository,
                "pull_request": pr.number,
                "url": pr.html_url,
                "head_sha": pr.head_sha,
                "merge_commit": commit.sha,
                "merge": "merge commit" if len(commit.parents) == 2 else "squash",
                "merged_at": pr.merged_at,
                "merged_by": pr.merged_by,
                "author": pr.author,
                "plan_equals_head": True,
                "approvals": [
                    {
                        "user": r.user,
                        "review": r.id,
                        "commit": r.commit_id,
                        "submitted_at": r.submitted_at,
                    }
                    for r in verdict.approvals
                ],
                "ignored_reviews": list(verdict.ignored),
                "team_members": {t: list(m) for t, m in teams.items() if m},
            },
            teams=teams,
        )

    def _merged_pull(self, app: str, sha: str) -> PullRequest:
        branch = branch_for(app)
        path = plan_path(app)
        for candidate in self._pulls(branch, "closed"):
            if candidate.merge_commit_sha == sha and candidate.merged_at:
                request = pull_request(self.client, self.options, candidate.number)
                pr = parse_pull(self._json(request))
                merged = self._send(
                    merged_request(self.client, self.options, pr.number), accept=(404,)
                )
                if merged.status_code != 204 or pr.merge_commit_sha != sha:
                    break
                return pr
        raise ApprovalError(
            f"{path} was last changed on {self.options.main} by commit {sha[:10]}, which is "
            f"not the merge of a pull request from {branch}: a plan pushed straight to "
            f"{self.options.main}, or edited after its merge, is not approved. Revert that "
            "change; `reconciler check` proposes the plan again for review"
        )

    def _member(self, team: str, user: str) -> bool:
        """Whether `user` is an active member of `team` (`org/slug`); asked once a run."""
        key = (team, user)
        if key not in self._memberships:
            org, _, slug = team.partition("/")
            request = membership_request(self.client, org, slug, user)
            response = self._send(request, accept=(404,))
            data = (
                read_json(response, system=SYSTEM, secrets=(self.token,))
                if response.status_code == 200
                else {}
            )
            self._memberships[key] = isinstance(data, dict) and data.get("state") == "active"
        return self._memberships[key]

    def report_applied(self, approval: Approval, outcome: str, journal: str) -> None:
        number = approval.verified.get("pull_request")
        if not isinstance(number, int):
            return
        base = self.options.api_url.rstrip("/")
        web = "https://github.com" if base == DEFAULT_API_URL else base.removesuffix("/api/v3")
        link = f"{web}/{self.options.repository}/blob/{self.options.main}/{journal}"
        body = (
            f"**Applied:** {markdown.escape(outcome, max_length=500)}\n\n"
            f"The journal is [{markdown.escape(journal)}]({link})."
        )
        self._send(comment_request(self.client, self.options, number, body))
