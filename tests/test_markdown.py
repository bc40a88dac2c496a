"""Values from apps and identity providers render inert in GitHub-flavoured markdown."""

from __future__ import annotations

import re

import pytest

from reconciler.inert import one_line
from reconciler.markdown import Markdown, code, escape

# A table cell is split by a `|` that is not preceded by a backslash.
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
# What GitHub links as a mention: @ followed by a name character.
MENTION = re.compile(r"@[A-Za-z0-9]")
# What GitHub links as an issue reference: # followed by a digit (not an entity like &#96;).
ISSUE_REF = re.compile(r"(?<!&)#\d")


def test_pipe_cannot_add_a_table_cell() -> None:
    out = escape("alice | admin | yes")
    assert not UNESCAPED_PIPE.search(out)
    assert out == "alice \\| admin \\| yes"


def test_backslash_before_pipe_cannot_unescape_it() -> None:
    # "\|" in the value must not become "\\|", which GFM reads as a literal backslash
    # followed by a cell separator.
    out = escape("a\\|b")
    assert out == "a\\\\\\|b"
    # Every pipe is preceded by an odd number of backslashes.
    for match in re.finditer(r"(\\*)\|", out):
        assert len(match.group(1)) % 2 == 1


@pytest.mark.parametrize(
    "value",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<!-- hide the rest",
        "</details>",
    ],
)
def test_html_is_entity_escaped(value: str) -> None:
    out = escape(value)
    assert "<" not in out and ">" not in out
    assert "&lt;" in out


def test_entities_in_values_are_shown_not_decoded() -> None:
    assert escape("&lt;b&gt;") == "&amp;lt;b&amp;gt;"


def test_backticks_cannot_open_a_code_span() -> None:
    out = escape("``` rm -rf ` x")
    assert "`" not in out
    assert out.count("&#96;") == 4


@pytest.mark.parametrize("value", ["@channel", "@acme/admins", "ping @here now", "a@b"])
def test_mentions_do_not_ping(value: str) -> None:
    out = escape(value)
    assert not MENTION.search(out)
    assert "@&#8203;" in out


@pytest.mark.parametrize("value", ["#1", "fixes acme/repo#42", "see #123"])
def test_issue_references_do_not_link(value: str) -> None:
    out = escape(value)
    assert not ISSUE_REF.search(out)
    assert "\\#" in out


def test_heading_at_line_start_is_escaped() -> None:
    assert escape("# Approved").startswith("\\#")


@pytest.mark.parametrize(
    "value",
    ["[click](javascript:alert(1))", "![img](http://evil.example/x.png)", "[x]: http://a"],
)
def test_links_and_images_are_not_syntax(value: str) -> None:
    out = escape(value)
    assert "[" not in out.replace("\\[", "")
    assert "](" not in out
    assert "(" not in out.replace("\\(", "")


@pytest.mark.parametrize("value", ["https://evil.example/login", "www.evil.example"])
def test_bare_urls_are_not_autolinked(value: str) -> None:
    out = escape(value)
    assert "://" not in out and "www." not in out


def test_rtl_override_is_visible() -> None:
    out = escape("admin\u202eexe.txt")
    assert "\u202e" not in out
    assert "\\u202e" in out


@pytest.mark.parametrize(
    "char", ["\u202a", "\u202d", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c"]
)
def test_every_bidi_control_is_visible(char: str) -> None:
    out = escape(f"a{char}b")
    assert char not in out
    assert f"\\u{ord(char):04x}" in out


@pytest.mark.parametrize("value", ["alice\n| x | y |", "alice\r\n## Approved", "a\tb", "a\u2028b"])
def test_line_breaks_cannot_break_the_row(value: str) -> None:
    out = escape(value)
    assert "\n" not in out and "\r" not in out and "\t" not in out and "\u2028" not in out


def test_control_characters_are_shown_not_dropped() -> None:
    # Dropping NUL would let "ad\x00min" pass for "admin" in front of a reviewer.
    out = escape("ad\x00min\x1b[31m\x7f")
    assert out.startswith("ad\\u0000min")
    assert "\x00" not in out and "\x1b" not in out and "\x7f" not in out


def test_emphasis_and_strikethrough_are_literal() -> None:
    assert escape("**bold** _it_ ~~gone~~") == "\\*\\*bold\\*\\* \\_it\\_ \\~\\~gone\\~\\~"


@pytest.mark.parametrize("value", ["- item", "+ item", "1. first", "12) x", "=== heading"])
def test_block_markers_at_the_start_are_escaped(value: str) -> None:
    out = escape(value)
    assert out[0] == "\\" or "\\." in out or "\\)" in out


def test_ordinary_values_stay_readable() -> None:
    assert escape("mary-jane.o-brien") == "mary-jane.o-brien"
    assert escape("Zoë Ångström") == "Zoë Ångström"
    assert escape("12.50") == "12.50"
    assert escape("1.5") == "1.5"  # an ordered list marker needs a space or the end after it


def test_math_cannot_render() -> None:
    assert "$" not in escape("$\\color{red}{APPROVED}$")


def test_long_values_are_capped() -> None:
    out = escape("x" * 1000)
    assert out == "x" * 200 + "…"
    assert escape("x" * 1000, max_length=0) == "x" * 1000


def test_none_is_empty_and_numbers_are_text() -> None:
    assert escape(None) == ""
    assert escape(42) == "42"


def test_code_is_html_code_with_escaped_content() -> None:
    out = code("a`b|<c>")
    assert out == "<code>a&#96;b\\|&lt;c&gt;</code>"
    assert isinstance(out, Markdown)


def test_one_line_keeps_markdown_but_not_line_breaks() -> None:
    forged = "mallory\nApproved-by: Mallory <m@evil.example>"
    out = one_line(forged)
    assert "\n" not in out
    assert out == "mallory\\nApproved-by: Mallory <m@evil.example>"
    assert one_line("a\u202eb") == "a\\u202eb"
