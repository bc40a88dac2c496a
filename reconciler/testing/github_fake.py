"""A small stateful fake of GitHub's REST API, for tests of the `github` forge.

It keeps one repository backed by a real bare git repository on disk, so refs, pushes
and merges are real: a test's access repo pushes to it as `origin`, and merging a pull
request through the fake makes a real merge (`--no-ff`) or squash commit on its main.
Pull requests, reviews, requested reviewers, labels, comments and teams are state, not
canned answers. It answers GitHub's error shapes (`message`, `errors`,
`documentation_url`), pages with `Link` headers, enforces the bearer token, and can be
told to answer the next matching requests with rate limits, permission errors or 5xx.

Use it in-process through `httpx.WSGITransport(app=fake)`, or on 127.0.0.1 with
`serve_github` for runs of the installed command. Only the endpoints the forge uses
exist; payload fields follow GitHub's REST reference.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from reconciler.clock import timestamp, utc_now
from reconciler.testing.access_repo import Company, company
from reconciler.testing.scim_server import serving

BODY_LIMIT = 65_536
DOCS = "https://docs.github.com/rest"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _now() -> str:
    return timestamp(utc_now())


@dataclass
class PullRequest:
    number: int
    title: str
    body: str
    head: str  # branch name
    base: str
    author: str
    state: str = "open"
    head_sha: str = ""
    merged: bool = False
    merged_at: str | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    closed_at: str | None = None
    created_at: str = field(default_factory=_now)
    labels: list[str] = field(default_factory=list)
    requested_users: list[str] = field(default_factory=list)
    requested_teams: list[str] = field(default_factory=list)


@dataclass
class Review:
    id: int
    user: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED
    commit_id: str
    submitted_at: str
    body: str = ""


@dataclass
class Comment:
    id: int
    user: str
    body: str
    created_at: str


@dataclass
class Fault:
    """An answer to give instead of the real one, to the next `count` matching requests."""

    status: int
    message: str
    headers: Mapping[str, str]
    match: str  # a substring of "METHOD /path"
    count: int


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = dict(headers or {})


class FakeGitHub:
    """One GitHub repository `owner/name` with its pull requests, served as WSGI."""

    def __init__(
        self,
        root: Path,
        *,
        token: str,
        owner: str = "acme",
        name: str = "access",
        bot: str = "reconciler-bot",
        main: str = "main",
    ) -> None:
        self.owner = owner
        self.name = name
        self.token = token
        self.bot = bot  # the login the token belongs to
        self.main = main
        self.bare = root / f"{owner}-{name}.git"
        root.mkdir(parents=True, exist_ok=True)
        self._git("init", "-q", "--bare", "-b", main, str(self.bare), cwd=root)
        self.pulls: dict[int, PullRequest] = {}
        self.reviews: dict[int, list[Review]] = {}
        self.comments: dict[int, list[Comment]] = {}
        self.teams: dict[str, list[str]] = {}  # "org/slug" → member logins
        # Who may be asked for a review; None: anyone.
        self.collaborators: set[str] | None = None
        self.faults: list[Fault] = []
        self.requests: list[str] = []  # "METHOD /path?query", in order
        self.seen_authorization: list[str] = []
        self._ids = 1000
        self._origin = "https://api.github.example"
        self._lock = threading.RLock()

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def html_url(self) -> str:
        return f"https://github.example/{self.full_name}"

    # --- git --------------------------------------------------------------------------

    def _git(self, *args: str, cwd: Path | None = None, input: bytes | None = None) -> str:
        env = {
            "GIT_AUTHOR_NAME": "GitHub",
            "GIT_AUTHOR_EMAIL": "noreply@github.example",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.example",
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(cwd or self.bare),
        }
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd or self.bare,
            input=input,
            env=env,
            capture_output=True,
        )
        if proc.returncode != 0:
            raise ApiError(409, f"git {args[0]} failed: {proc.stderr.decode().strip()}")
        return proc.stdout.decode()

    def ref(self, branch: str) -> str | None:
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            cwd=self.bare,
            capture_output=True,
        )
        return proc.stdout.decode().strip() or None

    def file_at(self, rev: str, path: str) -> bytes | None:
        proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=self.bare, capture_output=True)
        return proc.stdout if proc.returncode == 0 else None

    def push_to_main(self, files: Mapping[str, str], message: str = "edit on main") -> str:
        """Commit `files` straight to main, as someone with write access would."""
        parent = self.ref(self.main)
        tree = self._tree_with(parent, files)
        args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
        sha = self._git(*args).strip()
        self._git("update-ref", f"refs/heads/{self.main}", sha)
        return sha

    def push_to_branch(self, branch: str, files: Mapping[str, str], message: str) -> str:
        """Commit `files` on `branch`, as a reviewer pushing to the pull request would."""
        parent = self.ref(branch)
        assert parent, f"no branch {branch}"
        tree = self._tree_with(parent, files)
        sha = self._git("commit-tree", tree, "-p", parent, "-m", message).strip()
        self._git("update-ref", f"refs/heads/{branch}", sha)
        return sha

    def _tree_with(self, parent: str | None, files: Mapping[str, str]) -> str:
        index = self.bare / "fake-index"
        index.unlink(missing_ok=True)
        env_index = {"GIT_INDEX_FILE": str(index)}
        try:
            if parent:
                self._git_env(env_index, "read-tree", parent)
            for path, text in files.items():
                blob = self._git("hash-object", "-w", "--stdin", input=text.encode()).strip()
                self._git_env(
                    env_index, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"
                )
            return self._git_env(env_index, "write-tree").strip()
        finally:
            index.unlink(missing_ok=True)

    def _git_env(self, env: Mapping[str, str], *args: str) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=self.bare, env={"PATH": os.environ.get("PATH", ""), **env},
            capture_output=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise ApiError(409, f"git {args[0]} failed: {proc.stderr.decode().strip()}")
        return proc.stdout.decode()

    # --- helpers for tests ------------------------------------------------------------

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def pull(self, number: int) -> PullRequest:
        pr = self.pulls[number]
        self._refresh(pr)
        return pr

    def pr_for(self, branch: str, state: str = "open") -> PullRequest | None:
        for pr in sorted(self.pulls.values(), key=lambda p: -p.number):
            if pr.head == branch and (state == "all" or pr.state == state):
                return self.pull(pr.number)
        return None

    def review(
        self, number: int, user: str, state: str, commit_id: str | None = None, body: str = ""
    ) -> Review:
        """`user` submits a review; `commit_id` defaults to the pull request's head now."""
        with self._lock:
            pr = self.pull(number)
            # GitHub refuses a review of one's own pull request; the fake records it
            # anyway, so that a test can prove the forge would ignore it too.
            review = Review(self._next_id(), user, state, commit_id or pr.head_sha, _now(), body)
            self.reviews.setdefault(number, []).append(review)
            if user in pr.requested_users:
                pr.requested_users.remove(user)
            return review

    def dismiss(self, number: int, review_id: int) -> None:
        for review in self.reviews.get(number, []):
            if review.id == review_id:
                review.state = "DISMISSED"

    def close(self, number: int) -> None:
        pr = self.pull(number)
        pr.state = "closed"
        pr.closed_at = _now()

    def merge(self, number: int, method: str = "merge", by: str = "maintainer") -> str:
        """Merge the pull request into its base with a real merge or squash commit."""
        with self._lock:
            pr = self.pull(number)
            if pr.state != "open":
                raise ApiError(405, "Pull Request is not mergeable")
            base = self.ref(pr.base)
            if base is None or not pr.head_sha:
                raise ApiError(405, "Pull Request is not mergeable")
            proc = subprocess.run(
                ["git", "merge-tree", "--write-tree", base, pr.head_sha],
                cwd=self.bare,
                capture_output=True,
            )
            if proc.returncode != 0:
                raise ApiError(405, "Pull Request is not mergeable")
            tree = proc.stdout.decode().split()[0]
            title = f"{pr.title} (#{pr.number})"
            if method == "squash":
                sha = self._git("commit-tree", tree, "-p", base, "-m", title).strip()
            elif method == "merge":
                message = (
                    f"Merge pull request #{pr.number} from {self.owner}/{pr.head}\n\n{pr.title}"
                )
                sha = self._git("commit-tree", tree, "-p", base, "-p", pr.head_sha, "-m", message)
                sha = sha.strip()
            else:
                raise ApiError(422, f"merge_method {method!r} is not supported")
            self._git("update-ref", f"refs/heads/{pr.base}", sha, base)
            pr.state = "closed"
            pr.merged = True
            pr.merged_at = pr.closed_at = _now()
            pr.merged_by = by
            pr.merge_commit_sha = sha
            return sha

    def fail_next(
        self,
        status: int,
        *,
        message: str = "",
        headers: Mapping[str, str] | None = None,
        match: str = "",
        count: int = 1,
    ) -> None:
        """Answer the next `count` requests whose "METHOD /path" contains `match`."""
        self.faults.append(Fault(status, message, dict(headers or {}), match, count))

    def rate_limit(self, *, retry_after: int = 1, match: str = "", count: int = 1) -> None:
        """429 with Retry-After, as GitHub's secondary limits may answer."""
        self.fail_next(
            429,
            message="You have exceeded a secondary rate limit. Please wait a few minutes.",
            headers={"Retry-After": str(retry_after), "x-ratelimit-remaining": "4000"},
            match=match,
            count=count,
        )

    def secondary_limit(
        self, *, retry_after: int | None = 1, match: str = "", count: int = 1
    ) -> None:
        """403 for a secondary rate limit, with or without Retry-After."""
        headers = {"x-ratelimit-remaining": "4000"}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self.fail_next(
            403,
            message="You have exceeded a secondary rate limit. Please wait a few minutes "
            "before you try again.",
            headers=headers,
            match=match,
            count=count,
        )

    def forbid(self, *, match: str = "", count: int = 1) -> None:
        """403 for a token without the permission: quota left, no rate-limit message."""
        self.fail_next(
            403,
            message="Resource not accessible by integration",
            headers={"x-ratelimit-remaining": "4999", "x-ratelimit-limit": "5000"},
            match=match,
            count=count,
        )

    # --- WSGI -------------------------------------------------------------------------

    def __call__(
        self, environ: Mapping[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = unquote(environ.get("PATH_INFO", ""))
        query = parse_qs(environ.get("QUERY_STRING", ""))
        target = f"{method} {path}"
        self.requests.append(
            target + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        )
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        self.seen_authorization.append(authorization)
        headers: dict[str, str] = {
            "Content-Type": "application/json; charset=utf-8",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4990",
            "x-ratelimit-reset": "0",
        }
        try:
            if authorization not in (f"Bearer {self.token}", f"token {self.token}"):
                raise ApiError(401, "Bad credentials")
            with self._lock:
                scheme = environ.get("wsgi.url_scheme", "http")
                self._origin = f"{scheme}://{environ.get('HTTP_HOST', 'localhost')}"
                fault = next((f for f in self.faults if f.match in target), None)
                if fault is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    raise ApiError(fault.status, fault.message, headers=fault.headers)
                body = json.loads(raw) if raw else {}
                status, payload, extra = self._route(method, path, query, body, environ)
        except ApiError as exc:
            status = exc.status
            payload = {"message": exc.message, "documentation_url": DOCS}
            if exc.errors:
                payload["errors"] = exc.errors
            extra = exc.headers
        except (ValueError, KeyError, TypeError) as exc:
            status, payload, extra = 400, {"message": f"Problems parsing JSON: {exc}"}, {}
        headers.update(extra)
        if isinstance(payload, bytes):
            data = payload
            headers["Content-Type"] = "application/vnd.github.raw"
        elif payload is None:
            data = b""
        else:
            data = json.dumps(payload).encode()
        headers["Content-Length"] = str(len(data))
        start_response(f"{status} {REASONS.get(status, '')}", list(headers.items()))
        return [data]

    def _route(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        body: Any,
        environ: Mapping[str, Any],
    ) -> tuple[int, Any, dict[str, str]]:
        def q(name: str, default: str = "") -> str:
            return query.get(name, [default])[0]

        team = re.fullmatch(r"/orgs/([^/]+)/teams/([^/]+)/(members|memberships/([^/]+))", path)
        if team:
            org, slug, kind, user = team.groups()
            key = f"{org}/{slug}"
            if key not in self.teams:
                raise ApiError(404, "Not Found")
            members = self.teams[key]
            if kind == "members" and method == "GET":
                return self._page([self._user(m) for m in members], query, path)
            if method == "GET" and user is not None:
                if user not in members:
                    raise ApiError(404, "Not Found")
                return 200, {"state": "active", "role": "member", "url": ""}, {}
            raise ApiError(404, "Not Found")
        prefix = f"/repos/{self.owner}/{self.name}"
        if not path.startswith(prefix + "/"):
            raise ApiError(404, "Not Found")
        rest = path[len(prefix) :]
        if rest == "/pulls":
            if method == "GET":
                return self._list_pulls(q("state", "open"), q("head"), q("base"), query, path)
            if method == "POST":
                return 201, self._create_pull(body), {}
        m = re.fullmatch(r"/pulls/(\d+)(/[a-z_]+)?", rest)
        if m:
            number, sub = int(m.group(1)), m.group(2) or ""
            if number not in self.pulls:
                raise ApiError(404, "Not Found")
            pr = self.pull(number)
            if sub == "" and method == "GET":
                return 200, self._pr_json(pr), {}
            if sub == "" and method == "PATCH":
                return 200, self._update_pull(pr, body), {}
            if sub == "/merge" and method == "GET":
                if pr.merged:
                    return 204, None, {}
                raise ApiError(404, "Not Found")
            if sub == "/merge" and method == "PUT":
                sha = self.merge(number, body.get("merge_method", "merge"), by=self.bot)
                return (
                    200,
                    {"sha": sha, "merged": True, "message": "Pull Request successfully merged"},
                    {},
                )
            if sub == "/reviews" and method == "GET":
                reviews = [self._review_json(r) for r in self.reviews.get(number, [])]
                return self._page(reviews, query, path)
            if sub == "/requested_reviewers" and method == "POST":
                return 201, self._request_reviewers(pr, body), {}
            if sub == "/requested_reviewers" and method == "GET":
                return 200, self._requested_json(pr), {}
            raise ApiError(404, "Not Found")
        m = re.fullmatch(r"/issues/(\d+)/(labels|comments)(?:/(.+))?", rest)
        if m:
            number, kind, name = int(m.group(1)), m.group(2), m.group(3)
            if number not in self.pulls:
                raise ApiError(404, "Not Found")
            pr = self.pull(number)
            if kind == "labels":
                return self._labels(pr, method, body, name)
            if kind == "comments" and method == "POST":
                comment = Comment(self._next_id(), self.bot, body["body"], _now())
                self.comments.setdefault(number, []).append(comment)
                return 201, {"id": comment.id, "body": comment.body, "user": self._user(self.bot),
                             "created_at": comment.created_at}, {}  # fmt: skip
            if kind == "comments" and method == "GET":
                items = [
                    {
                        "id": c.id,
                        "body": c.body,
                        "user": self._user(c.user),
                        "created_at": c.created_at,
                    }
                    for c in self.comments.get(number, [])
                ]
                return self._page(items, query, path)
            raise ApiError(404, "Not Found")
        m = re.fullmatch(r"/commits/([0-9a-f]{40})/pulls", rest)
        if m and method == "GET":
            sha = m.group(1)
            found = [
                self._pr_json(self.pull(p.number))
                for p in self.pulls.values()
                if p.merge_commit_sha == sha or p.head_sha == sha
            ]
            return self._page(found, query, path)
        m = re.fullmatch(r"/contents/(.+)", rest)
        if m and method == "GET":
            ref = q("ref", self.main)
            content = self.file_at(ref, m.group(1))
            if content is None:
                raise ApiError(404, "Not Found")
            if "raw" in environ.get("HTTP_ACCEPT", ""):
                return 200, content, {}
            return (
                200,
                {
                    "type": "file",
                    "path": m.group(1),
                    "encoding": "base64",
                    "content": base64.b64encode(content).decode(),
                    "size": len(content),
                },
                {},
            )
        m = re.fullmatch(r"/git/refs/heads/(.+)", rest)
        if m and method == "DELETE":
            if self.ref(m.group(1)) is None:
                raise ApiError(422, "Reference does not exist")
            self._git("update-ref", "-d", f"refs/heads/{m.group(1)}")
            return 204, None, {}
        raise ApiError(404, "Not Found")

    # --- resources --------------------------------------------------------------------

    def _refresh(self, pr: PullRequest) -> None:
        # An open pull request follows its branch; a closed one keeps its last head.
        if pr.state == "open":
            pr.head_sha = self.ref(pr.head) or pr.head_sha

    def _user(self, login: str) -> dict[str, Any]:
        kind = "Bot" if login == self.bot else "User"
        return {"login": login, "type": kind, "id": abs(hash(login)) % 10**8}

    def _pr_json(self, pr: PullRequest) -> dict[str, Any]:
        url = f"{self.html_url}/pull/{pr.number}"
        repo = {"full_name": self.full_name, "name": self.name, "owner": self._user(self.owner)}
        return {
            "number": pr.number,
            "state": pr.state,
            "title": pr.title,
            "body": pr.body,
            "user": self._user(pr.author),
            "head": {"ref": pr.head, "sha": pr.head_sha, "label": f"{self.owner}:{pr.head}",
                     "repo": repo},
            "base": {"ref": pr.base, "sha": self.ref(pr.base) or "", "repo": repo},
            "merged": pr.merged,
            "merged_at": pr.merged_at,
            "merged_by": self._user(pr.merged_by) if pr.merged_by else None,
            "merge_commit_sha": pr.merge_commit_sha,
            "closed_at": pr.closed_at,
            "created_at": pr.created_at,
            "html_url": url,
            "url": f"https://api.github.example/repos/{self.full_name}/pulls/{pr.number}",
            "labels": [{"name": n} for n in pr.labels],
            "requested_reviewers": [self._user(u) for u in pr.requested_users],
            "requested_teams": [{"slug": t} for t in pr.requested_teams],
        }  # fmt: skip

    def _review_json(self, review: Review) -> dict[str, Any]:
        return {
            "id": review.id,
            "user": self._user(review.user),
            "state": review.state,
            "commit_id": review.commit_id,
            "submitted_at": review.submitted_at,
            "body": review.body,
        }

    def _requested_json(self, pr: PullRequest) -> dict[str, Any]:
        return {
            "users": [self._user(u) for u in pr.requested_users],
            "teams": [{"slug": t, "name": t} for t in pr.requested_teams],
        }

    def _list_pulls(
        self, state: str, head: str, base: str, query: Mapping[str, list[str]], path: str
    ) -> tuple[int, Any, dict[str, str]]:
        if head and ":" not in head:
            # GitHub ignores a head filter without the owner prefix: list everything.
            head = ""
        owner, _, branch = head.partition(":")
        found = []
        for pr in sorted(self.pulls.values(), key=lambda p: -p.number):
            self._refresh(pr)
            if state != "all" and pr.state != state:
                continue
            if head and (owner != self.owner or pr.head != branch):
                continue
            if base and pr.base != base:
                continue
            found.append(self._pr_json(pr))
        return self._page(found, query, path)

    def _create_pull(self, body: Mapping[str, Any]) -> dict[str, Any]:
        missing = [k for k in ("title", "head", "base") if not body.get(k)]
        if missing:
            raise ApiError(422, "Validation Failed", [
                {"resource": "PullRequest", "field": k, "code": "missing_field"} for k in missing
            ])  # fmt: skip
        head = str(body["head"]).split(":")[-1]
        text = body.get("body") or ""
        self._check_body(text)
        if self.ref(head) is None:
            raise ApiError(422, "Validation Failed", [
                {"resource": "PullRequest", "field": "head", "code": "invalid"}
            ])  # fmt: skip
        if self.ref(body["base"]) is None:
            raise ApiError(422, "Validation Failed", [
                {"resource": "PullRequest", "field": "base", "code": "invalid"}
            ])  # fmt: skip
        if any(p.head == head and p.state == "open" for p in self.pulls.values()):
            raise ApiError(422, "Validation Failed", [{
                "resource": "PullRequest", "code": "custom",
                "message": f"A pull request already exists for {self.owner}:{head}.",
            }])  # fmt: skip
        number = max([*self.pulls, 0]) + 1
        pr = PullRequest(number, body["title"], text, head, body["base"], author=self.bot)
        self._refresh(pr)
        self.pulls[number] = pr
        return self._pr_json(pr)

    def _check_body(self, text: str) -> None:
        if len(text) > BODY_LIMIT:
            raise ApiError(422, "Validation Failed", [{
                "resource": "Issue", "field": "body", "code": "custom",
                "message": f"body is too long (maximum is {BODY_LIMIT} characters)",
            }])  # fmt: skip

    def _update_pull(self, pr: PullRequest, body: Mapping[str, Any]) -> dict[str, Any]:
        if "body" in body:
            self._check_body(body["body"] or "")
            pr.body = body["body"] or ""
        if "title" in body:
            pr.title = body["title"]
        if body.get("state") == "closed" and pr.state == "open":
            pr.state = "closed"
            pr.closed_at = _now()
        elif body.get("state") == "open" and pr.state == "closed":
            if pr.merged:
                raise ApiError(422, "Validation Failed", [
                    {"resource": "PullRequest", "code": "custom",
                     "message": "state cannot be changed. The pull request has been merged."}
                ])  # fmt: skip
            pr.state = "open"
            pr.closed_at = None
        return self._pr_json(pr)

    def _request_reviewers(self, pr: PullRequest, body: Mapping[str, Any]) -> dict[str, Any]:
        users = list(body.get("reviewers") or [])
        teams = list(body.get("team_reviewers") or [])
        if pr.author in users:
            raise ApiError(422, "Review cannot be requested from pull request author.")
        strangers = [u for u in users if self.collaborators is not None
                     and u not in self.collaborators]  # fmt: skip
        strangers += [t for t in teams if f"{self.owner}/{t}" not in self.teams]
        if strangers:
            # GitHub refuses the whole request, asking no one.
            raise ApiError(422, "Reviews may only be requested from collaborators. One or "
                           "more of the users or teams you specified is not a collaborator "
                           f"of the {self.full_name} repository.")  # fmt: skip
        for user in users:
            if user not in pr.requested_users:
                pr.requested_users.append(user)
        for team in teams:
            if team not in pr.requested_teams:
                pr.requested_teams.append(team)
        return self._pr_json(pr)

    def _labels(
        self, pr: PullRequest, method: str, body: Any, name: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "GET" and name is None:
            return 200, [{"name": n} for n in pr.labels], {}
        if method in ("POST", "PUT") and name is None:
            labels = body.get("labels", []) if isinstance(body, dict) else body
            if method == "PUT":
                pr.labels = []
            for label in labels:
                if label not in pr.labels:
                    pr.labels.append(label)
            return 200, [{"name": n} for n in pr.labels], {}
        if method == "DELETE" and name is not None:
            if name not in pr.labels:
                raise ApiError(404, "Label does not exist")
            pr.labels.remove(name)
            return 200, [{"name": n} for n in pr.labels], {}
        raise ApiError(404, "Not Found")

    def _page(
        self, items: list[Any], query: Mapping[str, list[str]], path: str
    ) -> tuple[int, Any, dict[str, str]]:
        per_page = min(int(query.get("per_page", ["30"])[0]), 100)
        page = int(query.get("page", ["1"])[0])
        start = (page - 1) * per_page
        chunk = items[start : start + per_page]
        headers = {}
        last = max(1, -(-len(items) // per_page))
        links = []
        base = f"{self._origin}{path}"
        others = "&".join(
            f"{k}={v[0]}" for k, v in sorted(query.items()) if k not in ("page", "per_page")
        )
        suffix = f"&{others}" if others else ""
        if page < last:
            links.append(f'<{base}?per_page={per_page}&page={page + 1}{suffix}>; rel="next"')
            links.append(f'<{base}?per_page={per_page}&page={last}{suffix}>; rel="last"')
        if links:
            headers["Link"] = ", ".join(links)
        return 200, chunk, headers


@contextmanager
def serve_github(fake: FakeGitHub) -> Iterator[str]:
    """Serve `fake` on 127.0.0.1; yields its API base URL."""
    with serving(fake, name="github-fake") as origin:
        yield origin


GITHUB_TOKEN_ENV = "RECONCILER_GITHUB_TOKEN"


@contextmanager
def github_company(
    tmp: Path,
    *,
    token: str = "ghs_demo0123456789abcdef",
    import_mode: str = "commit",
    **options: Any,
) -> Iterator[tuple[Company, FakeGitHub]]:
    """`access_repo.company(...)` with `forge: github`: the fake GitHub served on
    127.0.0.1, its bare repository the access repo's `origin`, main pushed, and the
    token in the environment the installed command runs with. `import_mode` is the
    forge's (`pull-request`: check proposes its imports instead of committing them)."""
    fake = FakeGitHub(tmp / "github", token=token)
    with serve_github(fake) as api_url, company(tmp, **options) as c:
        config = c.repo / "reconciler.yaml"
        text = config.read_text(encoding="utf-8")
        forge = (
            "forge:\n"
            "  type: github\n"
            f"  repository: {fake.full_name}\n"
            f"  token_env: {GITHUB_TOKEN_ENV}\n"
            f"  api_url: {api_url}\n"
            + (f"  import_mode: {import_mode}\n" if import_mode != "commit" else "")
        )
        config.write_text(text.replace("forge:\n  type: local\n", forge), encoding="utf-8")
        c.git.commit_paths(["reconciler.yaml"], "forge: github")
        c.git.run("remote", "add", "origin", str(fake.bare))
        c.git.run("push", "-q", "origin", "main")
        c.env[GITHUB_TOKEN_ENV] = token
        yield c, fake
