"""All YAML reading and writing, with one set of options (STYLE §5).

Reading is hardened because the files come from people and from pull requests:

- only the safe loader (libyaml's when available), never Python tags;
- a size limit checked before parsing, reading at most `max_bytes + 1` bytes;
- strict UTF-8;
- duplicate mapping keys are an error, not "last one wins";
- nesting depth is capped (libyaml's own composer recurses in C and crashes the
  interpreter on ~100k nested brackets, and its scanner is quadratic in flow depth);
- alias expansion is capped while the document is composed, so a "billion laughs"
  document fails after a few hundred bytes instead of exhausting memory.

To get all of that, the node tree is composed here from the parser's events and the
data is constructed here from the nodes; scalars still go through the safe
constructor, so values have the same types as `yaml.safe_load` gives.
"""

from __future__ import annotations

import contextlib
import enum
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.errors import YamlError
from reconciler.files import write_atomic

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# Config, policies and snapshots nest five or six levels; anything near this is an attack
# or an accident, and stopping early keeps libyaml's quadratic flow scanner cheap.
MAX_DEPTH = 100
# Nodes that aliases may add to a document. Sharing option blocks between a few dozen
# apps stays far below this; a "billion laughs" passes it within its first few lines.
MAX_ALIAS_NODES = 100_000
# Lines are never folded: a folded value makes every diff of that value noisier.
WIDTH = 2**30

Marks = dict[tuple[str | int, ...], tuple[int, int]]
JsonPath = tuple[str | int, ...]

_LIBYAML = getattr(yaml, "__with_libyaml__", False)
_BaseLoader: type[yaml.SafeLoader] = yaml.CSafeLoader if _LIBYAML else yaml.SafeLoader  # type: ignore[assignment]
_BaseDumper: type[yaml.SafeDumper] = yaml.CSafeDumper if _LIBYAML else yaml.SafeDumper  # type: ignore[assignment]

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
# Scalar tags the safe constructor turns into plain values; anything else (`!!python/...`,
# `!custom`) is refused with the tag named.
_SCALAR_TAGS = frozenset(
    "tag:yaml.org,2002:" + name
    for name in ("null", "bool", "int", "float", "binary", "timestamp", "str")
)

_TAB_HINT = "YAML does not allow tabs for indentation; use spaces"
_SYNTAX_HINTS = (
    ("found character '\\t'", _TAB_HINT),
    (
        "mapping values are not allowed",
        "a value that contains ': ' must be quoted, or the indentation is off",
    ),
    (
        "could not find expected ':'",
        "a key needs ':' after it; check the quotes and indentation here and on the line above",
    ),
    ("undefined alias", "define the anchor (&name) before using the alias (*name)"),
    ("found unknown escape character", "in double quotes a backslash starts an escape; "
     "use single quotes or write \\\\"),
)  # fmt: skip
_DEFAULT_HINT = "check the indentation (spaces only) and the quoting around this position"


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader, used only for its event stream, resolver and scalar constructors."""


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """The safe dumper, plus tuples as lists and enums as their values."""


def _represent_tuple(dumper: yaml.SafeDumper, data: tuple[Any, ...]) -> yaml.Node:
    return dumper.represent_list(list(data))


def _represent_enum(dumper: yaml.SafeDumper, data: enum.Enum) -> yaml.Node:
    return dumper.represent_data(data.value)


_Dumper.add_representer(tuple, _represent_tuple)
_Dumper.add_multi_representer(enum.Enum, _represent_enum)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while PyYAML builds or walks many small objects.

    Every allocation counts towards a GC generation threshold, and full collections over
    millions of fresh, live objects find nothing to free: measured 2.4x faster at 100k
    accounts (shared/LAB-NOTES.md). Left as it was if the caller had already disabled it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Read one YAML document from `path` with the hardened safe loader.

    Raises YamlError (with 1-based line and column) for anything wrong with the file's
    content; OSError (e.g. FileNotFoundError) propagates so callers can tell a missing
    file from a broken one.
    """
    return load_bytes(_read_limited(path, max_bytes), str(path), max_bytes=max_bytes)


def load_bytes(raw: bytes, name: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse YAML held in memory (e.g. a file read from a git revision).

    `name` is only used to say where a problem is.
    """
    data, _ = _parse(raw, str(name), max_bytes, with_marks=False)
    return data


def load_bytes_with_marks(
    raw: bytes, name: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[Any, Marks]:
    """`load_bytes`, and where every value came from (see `load_with_marks`)."""
    return _parse(raw, str(name), max_bytes, with_marks=True)


def load_with_marks(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Any, Marks]:
    """Read `path` like `load`, and also say where every value came from.

    The second value maps a JSON path (the tuple of keys and list indices leading to a
    node; `()` is the document) to the 1-based (line, column) of that node. For a value
    in a mapping the position is that of its key, which is where people look.
    """
    return _parse(_read_limited(path, max_bytes), str(path), max_bytes, with_marks=True)


def dump(data: Any) -> str:
    """YAML text for `data`: block style, keys in the given order, UTF-8, no line folding.

    Only plain data (mappings, lists, tuples, strings, numbers, booleans, None, enums)
    can be written; anything else raises yaml.representer.RepresenterError rather than
    being written with a Python tag.
    """
    with _gc_paused():
        text: str = yaml.dump(
            data,
            Dumper=_Dumper,
            default_flow_style=False,
            sort_keys=False,
            allow_unicode=True,
            width=WIDTH,
        )
    return text


def write(path: Path, data: Any, header: str | None = None) -> None:
    """Write `data` to `path` atomically, after `header` lines as `# ` comments.

    The text goes to a temporary file in the same directory which then replaces `path`,
    so a reader (or a crash) never sees half a file.
    """
    text = dump(data)
    if header:
        comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
        text = comments + text
    write_text(path, text)


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically; create its directory if needed."""
    write_atomic(path, text.encode("utf-8"))


# --- reading -------------------------------------------------------------------------


def _read_limited(path: Path, max_bytes: int) -> bytes:
    with path.open("rb") as handle:
        # One byte more than allowed is enough to know the file is too big.
        return handle.read(max_bytes + 1)


def _parse(raw: bytes, name: str, max_bytes: int, *, with_marks: bool) -> tuple[Any, Marks]:
    if len(raw) > max_bytes:
        raise YamlError(
            name,
            1,
            1,
            f"file is larger than the limit of {max_bytes} bytes",
            "reconciler refuses bigger YAML files to bound memory and time; "
            "split the file or remove what it does not need",
        )
    text = _decode(raw, name)
    marks: Marks | None = {} if with_marks else None
    try:
        with _gc_paused():
            # The pure-Python loader checks the characters as soon as it is built.
            loader = _Loader(text)
            try:
                root = _Composer(loader, name).compose()
                data = None if root is None else _Builder(loader, name, marks).build(root, ())
            finally:
                loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(name, text, exc) from exc
    except yaml.reader.ReaderError as exc:
        line, column = _position(text, raw, exc.position)
        raise YamlError(
            name, line, column, exc.reason, "remove the control character or invalid byte"
        ) from exc
    except RecursionError as exc:  # long chains of merge keys (<<: *a) nest in Python
        raise YamlError(
            name, 1, 1, "the document nests too deeply", "flatten the structure"
        ) from exc
    if marks is None:
        return data, {}
    marks.setdefault((), (1, 1))
    return data, marks


def _decode(raw: bytes, name: str) -> str:
    try:
        # utf-8-sig drops a byte-order mark some editors write; it is not content.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise YamlError(
            name,
            line,
            column,
            f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
            "save the file as UTF-8",
        ) from exc


def _position(text: str, raw: bytes, offset: int) -> tuple[int, int]:
    # libyaml reports a byte offset into the UTF-8 it was given; the pure-Python reader
    # a character offset into the text.
    prefix = raw[:offset].decode("utf-8", "replace") if _LIBYAML else text[:offset]
    return prefix.count("\n") + 1, len(prefix) - (prefix.rfind("\n") + 1) + 1


def _syntax_error(name: str, text: str, exc: yaml.MarkedYAMLError) -> YamlError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        context_mark = exc.context_mark
        where = f" at line {context_mark.line + 1}" if context_mark is not None else ""
        problem = f"{exc.problem} ({exc.context}{where})"
    hint = next((h for needle, h in _SYNTAX_HINTS if needle in problem), _DEFAULT_HINT)
    # libyaml does not name the character it choked on; a tab is by far the usual one.
    lines = text.splitlines()
    if line <= len(lines) and "\t" in lines[line - 1][:column]:
        hint = _TAB_HINT
    return YamlError(name, line, column, problem, hint)


def _error_at(name: str, mark: Any, message: str, hint: str = "") -> YamlError:
    # `mark` is a yaml.Mark, libyaml's equivalent, or None.
    if mark is None:
        return YamlError(name, 1, 1, message, hint)
    return YamlError(name, mark.line + 1, mark.column + 1, message, hint)


class _Frame:
    """A collection being composed, with the size it will have once aliases expand."""

    __slots__ = ("anchor", "key", "node", "size")

    def __init__(self, node: SequenceNode | MappingNode, anchor: str | None) -> None:
        self.node = node
        self.anchor = anchor
        self.size = 1
        self.key: Node | None = None  # a mapping's key whose value is still to come

    def append(self, node: Node) -> None:
        if isinstance(self.node, SequenceNode):
            self.node.value.append(node)
        elif self.key is None:
            self.key = node
        else:
            self.node.value.append((self.key, node))
            self.key = None


class _Composer:
    """Builds the node tree from the parser's events, iteratively.

    Like yaml.composer.Composer, plus: a depth limit, a limit on how many nodes aliases
    add (the expanded size of every anchored node is known when its alias is met, so
    the limit is checked before anything is expanded), and recursive aliases refused.
    """

    def __init__(self, loader: _Loader, name: str) -> None:
        self.loader = loader
        self.name = name
        # Complete anchored nodes and their expanded sizes; `defined` also holds the
        # anchors of collections still open, which an alias may not refer to yet.
        self.anchors: dict[str, tuple[Node, int]] = {}
        self.defined: set[str] = set()
        self.alias_nodes = 0

    def compose(self) -> Node | None:
        loader = self.loader
        loader.get_event()  # StreamStartEvent
        if loader.check_event(StreamEndEvent):
            return None
        start = loader.get_event()
        assert isinstance(start, DocumentStartEvent)
        root = self._document()
        end = loader.get_event()
        assert isinstance(end, DocumentEndEvent)
        if not loader.check_event(StreamEndEvent):
            extra: Any = loader.get_event()
            raise _error_at(
                self.name,
                extra.start_mark,
                "the file holds more than one YAML document",
                "remove the `---` line and everything after it, or merge the documents",
            )
        return root

    def _document(self) -> Node:
        loader = self.loader
        stack: list[_Frame] = []
        while True:
            event = loader.get_event()
            # libyaml's marks are its own class with the same line and column attributes.
            mark: Any = event.start_mark
            node: Node
            size = 1
            if isinstance(event, ScalarEvent):
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(ScalarNode, event.value, event.implicit)
                node = ScalarNode(tag, event.value, mark, event.end_mark, event.style)  # type: ignore[arg-type]
                self._anchor(event.anchor, node, 1, mark)
            elif isinstance(event, AliasEvent):
                node, size = self._alias(event)
            elif isinstance(event, SequenceStartEvent | MappingStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise _error_at(
                        self.name,
                        mark,
                        f"nested more than {MAX_DEPTH} levels deep",
                        "flatten the structure; reconciler files need a handful of levels",
                    )
                tag = event.tag
                collection: SequenceNode | MappingNode
                if isinstance(event, SequenceStartEvent):
                    if tag is None or tag == "!":
                        tag = loader.resolve(SequenceNode, None, event.implicit)
                    collection = SequenceNode(tag, [], mark, None, event.flow_style)
                else:
                    if tag is None or tag == "!":
                        tag = loader.resolve(MappingNode, None, event.implicit)
                    collection = MappingNode(tag, [], mark, None, event.flow_style)
                if event.anchor is not None:
                    self._check_anchor(event.anchor, mark)
                    self.defined.add(event.anchor)
                stack.append(_Frame(collection, event.anchor))
                continue
            elif isinstance(event, SequenceEndEvent | MappingEndEvent):
                frame = stack.pop()
                frame.node.end_mark = event.end_mark
                node, size = frame.node, frame.size
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (node, size)
            else:  # pragma: no cover - the parser only yields the events above here
                raise _error_at(self.name, mark, f"unexpected {event}")
            if not stack:
                return node
            stack[-1].size += size
            stack[-1].append(node)

    def _check_anchor(self, anchor: str, mark: Any) -> None:
        # yaml.SafeLoader refuses a redefined anchor too.
        if anchor in self.defined:
            raise _error_at(
                self.name,
                mark,
                f"anchor &{anchor} is defined twice",
                "give each anchor a distinct name",
            )

    def _anchor(self, anchor: str | None, node: Node, size: int, mark: Any) -> None:
        if anchor is not None:
            self._check_anchor(anchor, mark)
            self.defined.add(anchor)
            self.anchors[anchor] = (node, size)

    def _alias(self, event: AliasEvent) -> tuple[Node, int]:
        anchor = event.anchor
        mark: Any = event.start_mark
        if anchor not in self.anchors:
            if anchor in self.defined:
                raise _error_at(
                    self.name,
                    mark,
                    f"recursive alias *{anchor} (it refers to a node that contains it)",
                    "aliases may only refer to a complete node defined earlier",
                )
            raise _error_at(
                self.name,
                mark,
                f"found undefined alias *{anchor}",
                "define the anchor (&name) before using the alias (*name)",
            )
        node, size = self.anchors[anchor]
        self.alias_nodes += size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise _error_at(
                self.name,
                mark,
                f"too many aliases: expanding them would add more than {MAX_ALIAS_NODES} "
                "values to the document",
                "this looks like a 'billion laughs' document; "
                "write the values out instead of repeating them with *aliases",
            )
        return node, size


class _Builder:
    """Turns nodes into plain data (dict, list, scalars), recording positions if asked."""

    def __init__(self, loader: _Loader, name: str, marks: Marks | None) -> None:
        self.loader = loader
        self.name = name
        self.marks = marks
        constructors: dict[Any, Callable[[Any, Node], Any]] = loader.yaml_constructors
        self.scalars = {tag: constructors[tag] for tag in _SCALAR_TAGS}

    def build(self, node: Node, path: JsonPath) -> Any:
        if self.marks is not None and path not in self.marks:
            self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                raise self._unsupported(node)
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _MAP:
                raise self._unsupported(node)
            return self._mapping(node, path)
        raise self._unsupported(node)  # pragma: no cover - only three node kinds exist

    def _scalar(self, node: ScalarNode) -> Any:
        if node.tag == _STR:
            return node.value  # the hot path: most scalars are strings
        constructor = self.scalars.get(node.tag)
        if constructor is None:
            raise self._unsupported(node)
        try:
            return constructor(self.loader, node)
        except (ValueError, TypeError, OverflowError) as exc:
            # e.g. `2024-13-45` looks like a date but is none; safe_load crashes there.
            raise _error_at(
                self.name,
                node.start_mark,
                f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}: {exc}",
                "quote the value to keep it as a string",
            ) from exc

    def _unsupported(self, node: Node) -> YamlError:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        return _error_at(
            self.name,
            node.start_mark,
            f"unsupported tag {tag}",
            "reconciler files hold plain mappings, lists, strings, numbers and booleans; "
            "remove the tag",
        )

    def _mapping(self, node: MappingNode, path: JsonPath) -> dict[Any, Any]:
        explicit: dict[Any, tuple[ScalarNode, Node]] = {}
        merged: dict[Any, tuple[ScalarNode, Node]] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                for source in self._merge_sources(value_node):
                    # Earlier sources win over later ones, as in yaml.SafeLoader.
                    for key, pair in self._pairs(source).items():
                        merged.setdefault(key, pair)
                continue
            key = self._key(key_node)
            if key in explicit:
                first = explicit[key][0].start_mark
                raise _error_at(
                    self.name,
                    key_node.start_mark,
                    f"duplicate key {key!r} (first defined at line {first.line + 1})",
                    "remove one of them; YAML would silently keep only the last",
                )
            explicit[key] = (key_node, value_node)
        # Merged keys come first and explicit keys override them, as in yaml.SafeLoader.
        winners = {**merged, **explicit} if merged else explicit
        result: dict[Any, Any] = {}
        for key, (key_node, value_node) in winners.items():
            child = (*path, key)
            if self.marks is not None:
                self.marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = self.build(value_node, child)
        return result

    def _pairs(self, node: MappingNode) -> dict[Any, tuple[ScalarNode, Node]]:
        """The (key node, value node) pairs a merge source contributes, its merges resolved."""
        pairs: dict[Any, tuple[ScalarNode, Node]] = {}
        merged: dict[Any, tuple[ScalarNode, Node]] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                for source in self._merge_sources(value_node):
                    for key, pair in self._pairs(source).items():
                        merged.setdefault(key, pair)
            else:
                pairs.setdefault(self._key(key_node), (key_node, value_node))
        return {**merged, **pairs}

    def _merge_sources(self, node: Node) -> list[MappingNode]:
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
            return list(node.value)
        raise _error_at(
            self.name,
            node.start_mark,
            "a merge key (<<) needs a mapping or a list of mappings",
            "write `<<: *anchor` where &anchor names a mapping",
        )

    def _key(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            raise _error_at(
                self.name,
                node.start_mark,
                "a mapping key must be a plain value, not a list or mapping",
                "use a string as the key",
            )
        if node.tag == _VALUE:
            return node.value  # the `=` key, a string as in yaml.SafeLoader
        return self._scalar(node)
