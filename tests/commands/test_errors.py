"""The CLI's error boundary as a user meets it: a wrong --repo, and a bug."""

from __future__ import annotations

import re
import stat
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import EXIT_BUG, main
from reconciler.commands import EXIT_ERROR

# Every command that takes --repo, with the other options it needs.
REPO_COMMANDS = [
    ["check"],
    ["apply"],
    ["apply", "--confirm"],
    ["approve", "--app", "wiki", "--as", "alice"],
    ["status"],
    ["validate"],
]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_not_a_bug(result: Result) -> None:
    assert "internal error" not in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", REPO_COMMANDS, ids=" ".join)
def test_a_repo_that_does_not_exist_is_a_clear_error(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no" / "such" / "repo"
    result = run(*command, "--repo", str(missing))
    assert result.exit_code == EXIT_ERROR, result.output
    assert_not_a_bug(result)
    assert str(missing) in result.output
    assert f"reconciler init {missing}" in result.output  # what to do about it


@pytest.mark.parametrize("command", REPO_COMMANDS, ids=" ".join)
def test_a_repo_that_is_a_file_is_a_clear_error(tmp_path: Path, command: list[str]) -> None:
    a_file = tmp_path / "reconciler.yaml"
    a_file.write_text("version: 1\n")
    result = run(*command, "--repo", str(a_file))
    assert result.exit_code == EXIT_ERROR, result.output
    assert_not_a_bug(result)
    assert str(a_file) in result.output


def test_git_open_says_what_is_wrong_with_the_path(tmp_path: Path) -> None:
    from reconciler.errors import GitError
    from reconciler.git import Git

    a_file = tmp_path / "f"
    a_file.write_text("")
    with pytest.raises(GitError, match="is a file, not a directory; point --repo"):
        Git.open(a_file)
    with pytest.raises(GitError, match="does not exist; point --repo"):
        Git.open(tmp_path / "missing")
    with pytest.raises(GitError, match="not a git repository"):
        Git.open(tmp_path)


def crash() -> Path:
    """Run `status` with its command function raising; the crash log it points at."""
    result = run("status", "--repo", ".")
    assert result.exit_code == EXIT_BUG, result.output
    assert "internal error" in result.output
    logs = [Path(p) for p in re.findall(r"\S+\.log", result.output)]
    assert len(logs) == 1, result.output
    return logs[0]


def test_a_bug_exits_3_with_a_private_crash_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.commands import status

    def broken(options: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(status, "status", broken)
    # The shared temporary directory, kept inside this test's own directory.
    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))

    first, second = crash(), crash()
    for log in (first, second):
        assert log.parent == shared
        assert log.is_file()
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert log.name != "reconciler-crash.log"
        text = log.read_text(encoding="utf-8")
        assert "Traceback" in text and "RuntimeError: a bug" in text
    assert first != second  # two crashes, two logs; neither overwrites the other


def test_a_bug_still_shows_its_traceback_when_no_log_can_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.commands import status

    def broken(options: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(status, "status", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    result = run("status", "--repo", ".")
    assert result.exit_code == EXIT_BUG
    assert "RuntimeError: a bug" in result.output
    assert "internal error" in result.output
