from __future__ import annotations

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
