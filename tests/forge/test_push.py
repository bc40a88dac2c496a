"""Pushing main while other checks push it too (`reconciler.forge.push`), against a real
bare repository: two clones stand for two shard jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import GitError
from reconciler.forge.push import push_rebasing
from reconciler.git import Git


def clone(bare: Path, where: Path) -> Git:
    Git(bare.parent).run("clone", "-q", str(bare), str(where))
    return Git(where)


def commit(git: Git, path: str, text: str) -> str:
    (git.root / path).parent.mkdir(parents=True, exist_ok=True)
    (git.root / path).write_text(text)
    sha = git.commit_paths([path], f"import {path}")
    assert sha is not None
    return sha


@pytest.fixture
def shards(tmp_path: Path) -> tuple[Git, Git, Git]:
    """A bare origin with one commit on main, and two clones of it."""
    seed = Git.init(tmp_path / "seed")
    commit(seed, "README", "access\n")
    bare = tmp_path / "origin.git"
    seed.run("clone", "-q", "--bare", str(seed.root), str(bare))
    return Git(bare), clone(bare, tmp_path / "one"), clone(bare, tmp_path / "two")


def test_a_push_after_another_shards_is_rebased_on_it(shards: tuple[Git, Git, Git]) -> None:
    origin, one, two = shards
    commit(one, "state/apps/crm/accounts.yaml", "crm\n")
    theirs = commit(two, "state/apps/wiki/accounts.yaml", "wiki\n")
    assert push_rebasing(one, "origin", "main", pause=lambda _: None) == 0
    assert push_rebasing(two, "origin", "main", pause=lambda _: None) == 1

    assert origin.head("main") == two.head()
    subjects = origin.run("log", "--format=%s", "main").splitlines()
    assert subjects == [
        "import state/apps/wiki/accounts.yaml",
        "import state/apps/crm/accounts.yaml",
        "import README",
    ]
    assert two.head() != theirs  # rebased: a new commit with the same change
    assert (two.root / "state/apps/crm/accounts.yaml").read_text() == "crm\n"


def test_two_shards_that_imported_the_same_app_push_nothing_twice(
    shards: tuple[Git, Git, Git],
) -> None:
    origin, one, two = shards
    commit(one, "state/apps/crm/accounts.yaml", "crm as one saw it\n")
    ours = commit(two, "state/apps/crm/accounts.yaml", "crm as two saw it\n")
    push_rebasing(one, "origin", "main", pause=lambda _: None)
    pushed = origin.head("main")
    with pytest.raises(GitError, match=r"state/apps/crm/accounts\.yaml") as raised:
        push_rebasing(two, "origin", "main", pause=lambda _: None)
    assert "another check imported the same app" in str(raised.value)
    assert origin.head("main") == pushed
    assert two.head() == ours and two.current_branch() == "main"  # left as it was
    assert two.dirty_paths() == []


def test_a_main_that_keeps_moving_is_given_up_on_after_the_attempts(
    shards: tuple[Git, Git, Git],
) -> None:
    origin, one, two = shards
    commit(two, "state/apps/wiki/accounts.yaml", "wiki\n")
    pauses: list[float] = []

    def another_shard_pushes(seconds: float) -> None:
        pauses.append(seconds)
        commit(one, f"state/apps/app{len(pauses)}/accounts.yaml", "x\n")
        one.push("origin", "main:main")

    commit(one, "state/apps/app0/accounts.yaml", "x\n")
    one.push("origin", "main:main")
    with pytest.raises(GitError, match="moved on each of 3 pushes"):
        push_rebasing(two, "origin", "main", attempts=3, pause=another_shard_pushes)
    assert len(pauses) == 2 and pauses[1] > pauses[0] * 0.5  # growing, with jitter
    assert origin.head("main") == one.head()


def test_a_push_refused_for_another_reason_is_not_retried(
    shards: tuple[Git, Git, Git],
) -> None:
    origin, one, _ = shards
    hook = origin.root / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    commit(one, "state/apps/crm/accounts.yaml", "crm\n")
    paused: list[float] = []
    with pytest.raises(GitError, match="main is protected"):
        push_rebasing(one, "origin", "main", pause=paused.append)
    assert paused == []


def test_a_remote_that_cannot_be_reached_is_reported_as_the_push_failed(
    shards: tuple[Git, Git, Git], tmp_path: Path
) -> None:
    _, one, _ = shards
    one.run("remote", "set-url", "origin", str(tmp_path / "gone.git"))
    commit(one, "state/apps/crm/accounts.yaml", "crm\n")
    paused: list[float] = []
    with pytest.raises(GitError, match="git push"):
        push_rebasing(one, "origin", "main", pause=paused.append)
    assert paused == []
