"""The fake GitHub keeps state like GitHub does: real refs, real merges, real errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from reconciler.git import Git
from reconciler.testing.github_fake import BODY_LIMIT, FakeGitHub

TOKEN = "ghs_faketoken123"


@pytest.fixture
def fake(tmp_path: Path) -> FakeGitHub:
    fake = FakeGitHub(tmp_path, token=TOKEN)
    fake.push_to_main({"README.md": "access\n"}, "init")
    return fake


def client(fake: FakeGitHub, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=fake),
        base_url="https://api.github.example",
        headers={"Authorization": f"Bearer {token}"},
    )


def open_pr(fake: FakeGitHub, c: httpx.Client, branch: str = "reconciler/wiki") -> int:
    main = fake.ref("main")
    assert main
    fake._git("update-ref", f"refs/heads/{branch}", main)
    fake.push_to_branch(branch, {"plans/wiki.yaml": "plan: 1\n"}, "plan")
    r = c.post("/repos/acme/access/pulls", json={"title": "t", "head": branch, "base": "main"})
    assert r.status_code == 201, r.text
    return int(r.json()["number"])


def test_a_wrong_or_missing_token_is_refused(fake: FakeGitHub) -> None:
    assert client(fake, "nope").get("/repos/acme/access/pulls").status_code == 401
    bare = httpx.Client(transport=httpx.WSGITransport(app=fake), base_url="https://x")
    answer = bare.get("/repos/acme/access/pulls")
    assert answer.status_code == 401
    assert answer.json()["message"] == "Bad credentials"


def test_one_open_pull_request_per_head_and_a_body_limit(fake: FakeGitHub) -> None:
    c = client(fake)
    number = open_pr(fake, c)
    again = c.post(
        "/repos/acme/access/pulls",
        json={"title": "t", "head": "reconciler/wiki", "base": "main"},
    )
    assert again.status_code == 422
    assert "already exists" in again.json()["errors"][0]["message"]
    long = c.patch(f"/repos/acme/access/pulls/{number}", json={"body": "x" * (BODY_LIMIT + 1)})
    assert long.status_code == 422
    found = c.get("/repos/acme/access/pulls", params={"head": "acme:reconciler/wiki"}).json()
    assert [p["number"] for p in found] == [number]


def test_merge_and_squash_make_real_commits(fake: FakeGitHub, tmp_path: Path) -> None:
    c = client(fake)
    number = open_pr(fake, c)
    head = fake.pull(number).head_sha
    sha = fake.merge(number, "merge")
    clone = Git(tmp_path / "clone")
    Git.init(clone.root)
    clone.run("fetch", "-q", str(fake.bare), "main")
    assert clone.commit_info(sha).parents[1] == head
    assert c.get(f"/repos/acme/access/pulls/{number}/merge").status_code == 204
    pulls = c.get(f"/repos/acme/access/commits/{sha}/pulls").json()
    assert pulls[0]["merge_commit_sha"] == sha
    second = open_pr(fake, c, "reconciler/crm")
    squash = fake.merge(second, "squash")
    clone.run("fetch", "-q", str(fake.bare), "main")
    assert len(clone.commit_info(squash).parents) == 1
    assert c.put(f"/repos/acme/access/pulls/{second}/merge", json={}).status_code == 405


def test_reviews_are_paged_with_link_headers(fake: FakeGitHub) -> None:
    c = client(fake)
    number = open_pr(fake, c)
    for i in range(5):
        fake.review(number, f"user{i}", "COMMENTED")
    first = c.get(f"/repos/acme/access/pulls/{number}/reviews", params={"per_page": 2})
    assert len(first.json()) == 2
    assert first.links["next"]["url"].endswith("page=2")
    last = c.get(first.links["last"]["url"])
    assert len(last.json()) == 1
    assert "next" not in last.links


def test_injected_faults_answer_the_next_matching_requests(fake: FakeGitHub) -> None:
    c = client(fake)
    fake.rate_limit(retry_after=3, match="GET /repos")
    limited = c.get("/repos/acme/access/pulls")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    fake.forbid(match="POST")
    assert c.get("/repos/acme/access/pulls").status_code == 200
    assert c.post("/repos/acme/access/pulls", json={}).status_code == 403
