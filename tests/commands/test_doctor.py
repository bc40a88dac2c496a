"""`reconciler doctor`: every system probed quickly, on real SCIM servers and file
exports; a system that cannot be reached or read is named with what to fix, and the
exit code says whether any failed."""

from __future__ import annotations

import json

from click.testing import CliRunner

from reconciler.cli import main
from reconciler.config import SystemConfig
from reconciler.doctor import examine
from reconciler.testing.access_repo import company


def doctor(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["doctor", *args], env=env)


def test_every_system_of_a_new_access_repo_is_checked(tmp_path) -> None:
    repo = tmp_path / "access"
    assert CliRunner().invoke(main, ["init", str(repo)]).exit_code == 0
    result = doctor("--repo", str(repo), "--format", "json")
    assert result.exit_code == 0, result.output
    found = {s["system"]: s for s in json.loads(result.output)["systems"]}
    assert found["corp"]["status"] == "ok" and found["corp"]["role"] == "identity source"
    assert found["payroll"]["detail"] == "5 accounts in the export"


def test_scim_systems_are_probed_and_failures_say_what_to_fix(tmp_path) -> None:
    with company(tmp_path) as c:
        ok = doctor("--repo", str(c.repo), env=c.env)
        assert ok.exit_code == 0, ok.output
        assert "OK        corp (identity source, scim" in ok.output
        assert "users and" in ok.output and "groups visible" in ok.output

        # A missing credential fails that system only, naming the variable.
        missing = doctor("--repo", str(c.repo), env={**c.env, "DEMO_APP_TOKEN": ""})
        assert missing.exit_code == 1
        (line,) = [x for x in missing.output.splitlines() if x.startswith("FAILED")]
        assert "wiki (app, scim" in line and "DEMO_APP_TOKEN" in line
        assert c.env["DEMO_APP_TOKEN"] not in missing.output

        wrong = doctor(
            "--repo", str(c.repo), "--system", "wiki", env={**c.env, "DEMO_APP_TOKEN": "x"}
        )
        assert wrong.exit_code == 1 and "corp" not in wrong.output
        assert "401" in wrong.output and "DEMO_APP_TOKEN" in wrong.output

        unknown = doctor("--repo", str(c.repo), "--system", "crm", env=c.env)
        assert unknown.exit_code == 1 and "no system named 'crm'" in unknown.output


def test_a_token_that_sees_no_users_fails_as_a_pull_would(tmp_path) -> None:
    with company(tmp_path, app_users=[]) as c:
        result = doctor("--repo", str(c.repo), "--system", "wiki", env=c.env)
        assert result.exit_code == 1
        assert "sees no users" in result.output


class Unprobed:
    """A connector without a probe."""

    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_connector_without_a_probe_is_unchecked_not_ok() -> None:
    made = Unprobed()
    finding = examine(SystemConfig("crm", "custom", {}), False, lambda _: made)  # type: ignore[arg-type,return-value]
    assert (finding.status, finding.role) == ("unchecked", "app")
    assert "reconciler check --app crm" in finding.detail
    assert made.closed
