"""`reconciler validate` and the error boundary, as a user sees them."""

from __future__ import annotations

from click.testing import CliRunner

from reconciler.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def broken_repo(tmp_path):
    assert run("init", str(tmp_path)).exit_code == 0
    (tmp_path / "reconciler.yaml").write_text(
        "version: 1\n"
        "identity_sources:\n"
        "  corp:\n"
        "    type: file\n"
        "    path: exports/corp-identities.csv\n"
        "apps:\n"
        "  Wiki!:\n"
        "    type: scim\n"
        "    url: https://wiki.example.com/scim/v2\n"
        "    token_env: ghp_abcdefghijklmnop1234\n"
        "    timeout: ten\n"
        "    tokn: x\n"
        "    url: https://again.example.com\n"
    )
    return tmp_path


def test_validate_lists_every_problem_with_its_position(tmp_path):
    repo = broken_repo(tmp_path)
    result = run("validate", "--repo", str(repo))
    assert result.exit_code == 1
    assert "reconciler.yaml:13:5: duplicate key 'url'" in result.output


def test_validate_reports_schema_errors_with_positions(tmp_path):
    repo = broken_repo(tmp_path)
    text = (
        (repo / "reconciler.yaml").read_text().replace("    url: https://again.example.com\n", "")
    )
    (repo / "reconciler.yaml").write_text(text)
    result = run("validate", "--repo", str(repo))
    assert result.exit_code == 1
    out = result.output
    assert "reconciler.yaml:7:3:" in out and "Wiki!" in out  # bad app name
    assert "reconciler.yaml:10:" in out and "literal secret" in out
    assert "ghp_abcdefghijklmnop1234" not in out  # never echoed
    assert "reconciler.yaml:11:" in out and "timeout" in out  # wrong type
    assert "reconciler.yaml:12:5:" in out and "tokn" in out  # unknown key
    assert "hint:" in out


def test_other_commands_refuse_an_invalid_repo_with_exit_1(tmp_path):
    repo = broken_repo(tmp_path)
    result = run("check", "--repo", str(repo))
    assert result.exit_code == 1
    assert "reconciler validate" in result.output
    assert "Traceback" not in result.output


def test_not_a_repository_is_a_clear_error(tmp_path):
    result = run("status", "--repo", str(tmp_path))
    assert result.exit_code == 1
    assert "not a git repository" in result.output


def test_usage_error_exits_2():
    assert run("approve", "--app", "x").exit_code == 2
