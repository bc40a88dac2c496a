from __future__ import annotations

import pytest

from reconciler.errors import GitError
from reconciler.git import Git


def test_commit_paths_commits_only_its_paths(tmp_path):
    git = Git.init(tmp_path)
    (tmp_path / "README").write_text("hello\n")
    git.commit_paths(["README"], "first")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "a.yaml").write_text("a\n")
    (tmp_path / "notes.txt").write_text("the user's own work\n")
    git.run("add", "notes.txt")

    sha = git.commit_paths(["state"], "import")
    assert sha is not None
    assert git.run("show", "--name-only", "--format=", sha).split() == ["state/a.yaml"]
    assert git.run("diff", "--cached", "--name-only").split() == ["notes.txt"]  # still staged


def test_commit_paths_without_changes_makes_no_commit(tmp_path):
    git = Git.init(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "a.yaml").write_text("a\n")
    first = git.commit_paths(["state"], "import")
    assert first is not None
    assert git.commit_paths(["state"], "import again") is None
    assert git.head() == first


def test_commit_series_makes_one_commit_per_group_with_changes(tmp_path):
    git = Git.init(tmp_path)
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.yaml").write_text(f"{name}\n")
    git.commit_paths(["a", "b", "c"], "first")
    (tmp_path / "a" / "x.yaml").write_text("a2\n")
    (tmp_path / "c" / "x.yaml").unlink()
    (tmp_path / "c" / "y.yaml").write_text("new\n")
    (tmp_path / "notes.txt").write_text("the user's own work\n")
    git.run("add", "notes.txt")

    shas = git.commit_series([(["a"], "import a"), (["b"], "import b"), (["c"], "import c")])

    assert shas[1] is None  # b did not change
    assert git.run("log", "--format=%s", "-2").split("\n")[:2] == ["import c", "import a"]
    assert git.run("show", "--name-status", "--format=", shas[0]).split() == ["M", "a/x.yaml"]
    assert git.run("show", "--name-status", "--format=", shas[2]).split() == [
        "D", "c/x.yaml", "A", "c/y.yaml",
    ]  # fmt: skip
    assert git.head() == shas[2]
    assert git.commit_info(shas[2]).parents == (shas[0],)
    # The index follows the commits; what someone else staged stays staged.
    assert git.run("diff", "--cached", "--name-only").split() == ["notes.txt"]
    assert git.dirty_paths("a", "b", "c") == []
    assert git.commit_info(shas[0]).author == "reconciler <reconciler@localhost>"


def test_commit_series_with_nothing_changed_makes_no_commit(tmp_path):
    git = Git.init(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.yaml").write_text("a\n")
    first = git.commit_paths(["a"], "first")
    assert git.commit_series([(["a"], "again"), (["missing"], "never there")]) == [None, None]
    assert git.head() == first


def test_commits_are_refused_on_a_branch_another_run_moved(tmp_path):
    """Two copies of the tool: the second to finish must not throw away the first's
    commit."""
    git = Git.init(tmp_path)
    (tmp_path / "a").write_text("1\n")
    start = git.commit_paths(["a"], "first")
    (tmp_path / "a").write_text("2\n")
    moved = git.commit_paths(["a"], "another run")
    assert start is not None and moved is not None
    stale = git._commit("refs/heads/main", "late", {"a": b"3\n"}, start, mark=1)
    with pytest.raises(GitError, match="another run moved the branch"):
        git.fast_import([stale])
    assert git.head() == moved


def test_a_branch_commit_carries_odd_paths_and_leaves_the_checkout_alone(tmp_path):
    git = Git.init(tmp_path)
    (tmp_path / "a").write_text("1\n")
    base = git.commit_paths(["a"], "first")
    assert base is not None
    files = {'plans/we"ird\\name.yaml': b"plan\n", "plans/ space.md": b"report\n"}
    sha = git.commit_files_to_branch("reconciler/x", base, files, "plan x\n\nPlan-Id: 1")
    assert git.head("reconciler/x") == sha
    assert git.show(sha, 'plans/we"ird\\name.yaml') == b"plan\n"
    assert git.show(sha, "plans/ space.md") == b"report\n"
    assert git.commit_info(sha).message == "plan x\n\nPlan-Id: 1"
    # Proposed again from a later main: the branch moves wherever it was.
    (tmp_path / "a").write_text("2\n")
    later = git.commit_paths(["a"], "second")
    assert later is not None
    again = git.commit_files_to_branch("reconciler/x", later, {"plans/x.yaml": b"v2\n"}, "again")
    assert git.commit_info(again).parents == (later,)
    assert git.current_branch() == "main" and git.dirty_paths() == []
