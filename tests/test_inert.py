"""Plain-text escaping for the terminal and commit messages."""

from __future__ import annotations

import pytest

from reconciler.inert import commit, terminal, text_block


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("alice", "alice"),
        ("eve\n::error::x", "eve\\n::error::x"),
        ("a\x1b[2Jb", "a\\u001b[2Jb"),
        ("evil\u202etxt", "evil\\u202etxt"),
        ("line\u2028sep", "line\\u2028sep"),
        ("ad\x00min", "ad\\u0000min"),
        (None, ""),
    ],
)
def test_values_are_one_visible_line(value: object, shown: str) -> None:
    assert terminal(value) == shown
    assert commit(value) == shown


def test_long_values_are_cut_with_a_mark() -> None:
    assert terminal("x" * 600) == "x" * 500 + "…"
    assert commit("x" * 600, max_length=10) == "x" * 10 + "…"


def test_a_message_keeps_its_lines_but_no_line_is_a_workflow_command() -> None:
    message = "pulling failed: ::error::pwned\n::warning::x\x1b[31m\n  hint: run again"
    assert text_block(message).splitlines() == [
        "pulling failed: ::error::pwned",
        " ::warning::x\\u001b[31m",
        "  hint: run again",
    ]
