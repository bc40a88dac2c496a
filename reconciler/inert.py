"""Make values from apps and identity providers inert in plain text: the terminal and
commit messages (DESIGN §9). Markdown has its own escaper, `reconciler.markdown`.

A username is whatever someone typed into a profile page. Printed raw, a newline in it
could start a line `::error::…` that GitHub Actions obeys, or forge an `Approved-by:`
trailer in a commit message; an ESC sequence could rewrite the terminal; a bidi override
could reverse what a reviewer reads. Here every invisible or line-breaking character is
shown as a visible escape instead, so `ad\x00min` cannot pass for `admin` either.
"""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"

# Bidi controls reorder the text around them; shown as `\u202e` a reviewer sees the trick.
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)

_NAMED_CONTROLS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Control (Cc), format (Cf: bidi, zero-width, tag characters), line/paragraph separators
# and lone surrogates are invisible or break lines. They are shown as escapes rather than
# dropped, so "ad\x00min" cannot pass for "admin" in front of a reviewer.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def cap(text: str, max_length: int) -> tuple[str, bool]:
    if max_length > 0 and len(text) > max_length:
        return text[:max_length], True
    return text, False


def as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def visible(char: str) -> str | None:
    """The visible escape of an invisible or line-breaking character, or None if it prints."""
    if char in _NAMED_CONTROLS:
        return _NAMED_CONTROLS[char]
    if char in BIDI_CONTROLS or unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        point = ord(char)
        return f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"
    return None


def one_line(value: object, *, max_length: int = 200) -> str:
    """`value` as one line of plain text: invisible and line-breaking characters shown as
    escapes, capped at `max_length` characters (0: no cap)."""
    text, cut = cap(as_text(value), max_length)
    out = "".join(visible(char) or char for char in text)
    return out + ELLIPSIS if cut else out


def terminal(value: object, *, max_length: int = 500) -> str:
    """A value from a system, for the terminal or a CI log."""
    return one_line(value, max_length=max_length)


def commit(value: object, *, max_length: int = 200) -> str:
    """A value from a system, for a commit message."""
    return one_line(value, max_length=max_length)


def text_block(text: str) -> str:
    """A message of several lines for the terminal (an error and its hint): each line kept
    and made inert, and no line able to pass for a CI workflow command."""
    lines = (one_line(line, max_length=0) for line in text.split("\n"))
    return "\n".join(" " + line if line.startswith("::") else line for line in lines)
