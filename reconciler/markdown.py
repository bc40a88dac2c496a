"""Make values from apps and identity providers inert in markdown (DESIGN §7).

Every name, email and role a report shows comes from a system someone else controls: a
display name is whatever a user typed into a profile page. Rendered unescaped in a pull
request it could add table cells, inject HTML, ping `@channel`, link `#123` into another
issue, plant a phishing link, or flip the reading order of a row with a right-to-left
override. `escape` turns any value into text that GitHub-flavoured markdown shows
literally, inside a table cell or a list item, on one line.

Plain text (terminal, commit messages) has its own escaper in `reconciler.inert`.
"""

from __future__ import annotations

from reconciler.inert import ELLIPSIS, as_text, cap, visible

# Report cells stay readable and a hostile 1 MB display name cannot bloat the PR body.
DEFAULT_MAX_LENGTH = 200

# A zero-width space breaks GitHub's @mention, #reference and autolink patterns while
# rendering as nothing; Dependabot and Renovate neutralise release notes the same way.
# (`&#64;` alone would not do: entities are decoded before GitHub looks for mentions.)
ZWSP = "&#8203;"

# Characters GFM may read as syntax anywhere in a line: emphasis, links and images,
# strikethrough, table cells, and backslash itself. `#`, `$` and `@` are handled apart.
_BACKSLASHED = frozenset("\\*_[](){}!~|")

# Characters whose safe form is an HTML entity: a backslash cannot stop `<` opening a
# tag or `&` starting an entity, and a code span would swallow the rest of the cell.
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "`": "&#96;", "$": "&#36;"}

# Characters that open a block (list, setext heading) only at the start of a line; a
# value may be placed at the start of a list item, so escape them there.
_BLOCK_START = frozenset("-+=")


class Markdown(str):
    """Text that is already safe markdown: the output of `escape` or of trusted code.

    The report's template engine escapes every value that is not marked this way, so a
    template that forgets `| md` still cannot emit a raw app value.
    """

    __slots__ = ()


def _ends_word(text: str, index: int) -> bool:
    return index >= len(text) or text[index].isspace()


def escape(value: object, *, max_length: int = DEFAULT_MAX_LENGTH) -> Markdown:
    """`value` as inert GitHub-flavoured markdown for a table cell or list item.

    Markdown syntax is backslash-escaped, `<`, `>`, `&`, backticks and `$` become
    entities, `@mentions`, `#123` references and bare URLs are broken with a zero-width
    space, invisible and line-breaking characters are shown as `\\uXXXX` escapes, and the
    text is capped at `max_length` characters (0: no cap) with a trailing "…".
    """
    text, cut = cap(as_text(value), max_length)
    out: list[str] = []
    # Length of the run of digits at the start: "1. " would open an ordered list ("1)" too,
    # but `)` is always escaped).
    leading_digits = len(text) - len(text.lstrip("0123456789"))
    for i, char in enumerate(text):
        # Printable ASCII is never invisible; skip the Unicode lookup for it.
        shown = None if " " <= char <= "~" else visible(char)
        if shown is not None:
            # `\u202e` needs no escaping: a backslash before a letter is literal in markdown.
            out.append(shown)
        elif char in _BACKSLASHED:
            out.append("\\" + char)
        elif char in _ENTITIES:
            out.append(_ENTITIES[char])
        elif char == "@":
            out.append("@" + ZWSP)
        elif char == "#":
            # `\#` stops a heading; the zero-width space stops `#123` and `org/repo#12`.
            out.append("\\#" + ZWSP)
        elif char == ":" and text.startswith("//", i + 1):
            # Bare `https://…` is autolinked by GFM; a clickable name is a phishing link.
            out.append(":" + ZWSP)
        elif char == "." and text[max(0, i - 3) : i].lower() == "www":
            out.append(ZWSP + ".")
        elif i == 0 and char in _BLOCK_START:
            out.append("\\" + char)
        elif char == "." and i == leading_digits and 0 < i < 10 and _ends_word(text, i + 1):
            out.append("\\.")
        else:
            out.append(char)
    if cut:
        out.append(ELLIPSIS)
    return Markdown("".join(out))


def code(value: object, *, max_length: int = DEFAULT_MAX_LENGTH) -> Markdown:
    """`value` in monospace, escaped like `escape`.

    An HTML `<code>` element rather than a backtick code span: inside a code span
    entities are not decoded and a backtick in the value would end it early.
    """
    return Markdown(f"<code>{escape(value, max_length=max_length)}</code>")


__all__ = ["DEFAULT_MAX_LENGTH", "Markdown", "code", "escape"]
