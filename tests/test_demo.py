"""`reconciler demo --forge github`: the whole cycle with the plan reviewed as a pull
request on the fake GitHub, approved and merged there, then applied."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler import demo
from reconciler.cli import main
from reconciler.commands.demo import GITHUB_TOKEN_ENV
from reconciler.git import Git
from reconciler.testing import github_fake
from reconciler.testing.github_fake import FakeGitHub

LEAVERS = (*demo.LEAVERS_DEPROVISIONED, demo.LEAVER_DELETED)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[FakeGitHub]:
    """The fake GitHubs the demo serves, to look at after it has run."""
    fakes: list[FakeGitHub] = []
    serve = github_fake.serve_github

    @contextmanager
    def recording(fake: FakeGitHub) -> Iterator[str]:
        fakes.append(fake)
        with serve(fake) as url:
            yield url

    monkeypatch.setattr(github_fake, "serve_github", recording)
    return fakes


def test_the_github_demo_reviews_merges_and_applies_a_pull_request(
    tmp_path: Path, served: list[FakeGitHub]
) -> None:
    result = CliRunner().invoke(main, ["demo", "--forge", "github", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.output

    [fake] = served
    [pr] = fake.pulls.values()
    assert f"#{pr.number} Deprovision 3 accounts and take roles from 1 account in wiki" in out
    assert "labels: deprovisioning" in out
    assert f"requested reviewers: {demo.REVIEWER}" in out
    assert "# Access review: wiki" in out and "| To deprovision | 3 |" in out
    assert "| Roles to remove | 1 |" in out
    # explain says why the role goes, in the words the plan uses.
    assert (
        f"allowed_roles: {demo.ADMIN_ROLE} is for members of engineering: its owner may not" in out
    )

    assert pr.merged and [r.user for r in fake.reviews[pr.number]] == [demo.REVIEWER]
    for username in LEAVERS:
        assert f"{username}: disabled" in out
    # The role went on the real SCIM server; the account stays.
    assert f"{demo.ADMIN_ROLE}: alice.liddell, {demo.BREAK_GLASS} ({demo.ROLE_HOLDER}" in out
    assert f"{demo.ROLE_HOLDER}: took roles {demo.ADMIN_ROLE}" in out
    [comment] = fake.comments[pr.number]
    applied = "disabled 3 and took roles from 1 of 4 accounts"
    assert applied in comment.body
    assert applied in out.split(f"comment the apply posted on #{pr.number}")[1]

    # The access repo is kept, and GitHub's main holds the apply, as the workflow pushes it.
    git = Git(tmp_path / "access")
    assert git.run("remote", "get-url", "origin").strip() == str(fake.bare)
    assert fake.ref("main") == git.head("main")
    assert GITHUB_TOKEN_ENV not in os.environ


def test_the_demo_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    result = CliRunner().invoke(main, ["demo", "--forge", "github", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert not (tmp_path / "github").exists()
