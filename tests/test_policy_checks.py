"""`validate` on the policy's durations and exceptions: each mistake named at its line,
with what to write instead."""

from __future__ import annotations

import pytest

from tests.test_validate import POLICY, check, make_repo


def problems(tmp_path, extra: str) -> list[str]:
    root = make_repo(tmp_path, default=POLICY + extra)
    return [str(d) for d in check(root)]


@pytest.mark.parametrize("key", ["grace", "deadline"])
@pytest.mark.parametrize("value", ["90", "'90'"])
def test_a_duration_without_a_unit_says_which_to_add(tmp_path, key, value):
    line = POLICY.count("\n") + 1
    (found,) = problems(tmp_path, f"{key}: {value}\n")
    assert found.startswith(f"policies/default.yaml:{line}:")
    assert f"{key}: 90 has no unit" in found and f"`{key}: 90d`" in found


@pytest.mark.parametrize("value", ["24h", "3d", "null"])
def test_a_duration_with_a_unit_is_accepted(tmp_path, value):
    assert problems(tmp_path, f"grace: {value}\ndeadline: {value}\n") == []


def test_a_good_exception_is_accepted_with_a_date_quoted_or_not(tmp_path):
    entry = "    reason: r\n    granted_by: alice\n"
    text = (
        "exceptions:\n"
        f"  - account: bob\n    until: 2026-12-31\n{entry}"
        f"  - person: carol@acme.com\n    app: wiki\n    until: '2027-01-15'\n{entry}"
    )
    assert problems(tmp_path, text) == []


@pytest.mark.parametrize(
    ("entry", "line", "says"),
    [
        ("  - account: bob\n    reason: r\n    granted_by: a\n", 1, "'until'"),
        ("  - account: bob\n    until: 2026-12-31\n    granted_by: a\n", 1, "'reason'"),
        ("  - until: 2026-12-31\n    reason: r\n    granted_by: a\n", 1, "names nobody"),
        (
            "  - account: a\n    person: b\n    until: 2026-12-31\n    reason: r\n"
            "    granted_by: a\n",
            1,
            "both an account and a person",
        ),
        ("  - account: a\n    until: '2026-02-30'\n    reason: r\n    granted_by: a\n", 2,
         "is not a date"),
        ("  - account: a\n    until: 2026-12-31 10:00\n    reason: r\n    granted_by: a\n", 2,
         "until"),
        ("  - account: a\n    until: next week\n    reason: r\n    granted_by: a\n", 2,
         "until"),
        ("  - account: a\n    app: crm2\n    until: 2026-12-31\n    reason: r\n"
         "    granted_by: a\n", 2, "'crm2' is not an app this policy selects"),
        ("  - account: a\n    until: 2026-12-31\n    reason: r\n    granted_by: a\n"
         "    approved: yes\n", 5, "approved"),
    ],
)  # fmt: skip
def test_a_malformed_exception_is_named_at_its_line(tmp_path, entry, line, says):
    first = POLICY.count("\n") + 2
    policy = POLICY.replace('apps: ["*"]', "apps: [wiki, crm]")
    root = make_repo(tmp_path, default=policy + "exceptions:\n" + entry)
    found = [str(d) for d in check(root)]
    assert any(
        text.startswith(f"policies/default.yaml:{first + line - 1}:") and says in text
        for text in found
    ), found
