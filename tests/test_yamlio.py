from __future__ import annotations

import datetime
import enum
import gc
import os
from pathlib import Path

import pytest
import yaml

from reconciler import yamlio
from reconciler.errors import YamlError


def write(tmp_path: Path, text: str | bytes, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def load_error(tmp_path: Path, text: str | bytes, **kwargs: int) -> YamlError:
    path = write(tmp_path, text)
    with pytest.raises(YamlError) as info:
        yamlio.load(path, **kwargs)
    assert info.value.path == str(path)
    return info.value


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: [1, 2.5, true, null, ~, 'x', 0x1f, 1e3]\nc: {d: e}\n",
        "when: 2024-01-02\nat: 2024-01-02T03:04:05Z\nblob: !!binary aGVsbG8=\n",
        "n: !!str 123\nf: !!float 1\nempty:\nlist: []\nmap: {}\n",
        "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n  z: 4\n",
        "l: &l {a: 1}\nm: &m {b: 2, a: 3}\nn:\n  <<: [*l, *m]\n  c: 0\n",
        "a: &a [1, 2]\nb: *a\nc: [*a, *a]\n",
        "- a\n- b: c\n  d: e\n",
        "1: one\nfalse: no\nnull: nothing\n'=': eq\n",
        "plain scalar\n",
        "",
        "# only a comment\n",
    ],
)
def test_values_are_those_of_safe_load(tmp_path: Path, text: str) -> None:
    expected = yaml.safe_load(text)
    data = yamlio.load(write(tmp_path, text))
    assert data == expected
    # Same key order too: snapshots and plans are written in the order they were read.
    if isinstance(expected, dict):
        assert list(data) == list(expected)


def test_load_bytes_names_the_source_in_errors() -> None:
    with pytest.raises(YamlError, match=r"^plans/wiki\.yaml:2:1: duplicate key 'a'"):
        yamlio.load_bytes(b"a: 1\na: 2\n", "plans/wiki.yaml")


def test_duplicate_key_points_at_the_second_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, "apps:\n  wiki:\n    url: x\n    timeout: 3\n    url: y\n")
    assert (error.line, error.column) == (5, 5)
    assert "duplicate key 'url' (first defined at line 3)" in error.message


def test_duplicate_key_that_only_differs_in_spelling_of_the_same_value(tmp_path: Path) -> None:
    # 1 and 0x1 are the same integer key; safe_load would silently keep the last.
    error = load_error(tmp_path, "1: a\n0x1: b\n")
    assert (error.line, error.column) == (2, 1)


def test_syntax_error_has_one_based_position_and_a_hint(tmp_path: Path) -> None:
    error = load_error(tmp_path, "apps:\n  wiki:\n    url: http://x\n   type: scim: x\n")
    assert error.line == 4
    assert error.column > 1
    assert error.hint
    assert str(error).startswith(f"{error.path}:{error.line}:{error.column}: ")


def test_unclosed_flow_sequence(tmp_path: Path) -> None:
    error = load_error(tmp_path, "apps: [a, b\nidentity_source: corp\n")
    assert error.line == 2
    # Where the unclosed '[' is, not only where the parser gave up.
    assert "at line 1)" in error.message
    assert error.hint


def test_tab_indentation_gets_a_tab_hint(tmp_path: Path) -> None:
    error = load_error(tmp_path, "apps:\n\t- wiki\n")
    assert error.line == 2
    assert "tabs" in error.hint


def test_billion_laughs_fails_with_too_many_aliases(tmp_path: Path) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    error = load_error(tmp_path, "\n".join(lines) + "\n")
    assert "too many aliases" in error.message
    # It stops at the alias that crosses the limit, long before the last line.
    assert error.line < len(lines)


def test_billion_laughs_with_marks_fails_too(tmp_path: Path) -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(9)
    )
    with pytest.raises(YamlError, match="too many aliases"):
        yamlio.load_with_marks(write(tmp_path, text))


def test_ordinary_aliases_are_fine(tmp_path: Path) -> None:
    text = "defaults: &d {type: scim, timeout: 5}\napps:\n" + "".join(
        f"  app{i}:\n    <<: *d\n    url: https://{i}\n" for i in range(200)
    )
    data = yamlio.load(write(tmp_path, text))
    assert data["apps"]["app7"] == {"type": "scim", "timeout": 5, "url": "https://7"}


def test_aliased_values_are_copies(tmp_path: Path) -> None:
    data = yamlio.load(write(tmp_path, "a: &a [1]\nb: *a\n"))
    data["a"].append(2)
    assert data["b"] == [1]


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path, "a: &a\n  - x\n  - *a\n")
    assert (error.line, "recursive alias") == (3, error.message[:15])


def test_undefined_alias(tmp_path: Path) -> None:
    error = load_error(tmp_path, "a: 1\nb: *nope\n")
    assert (error.line, error.column) == (2, 4)
    assert "*nope" in error.message


def test_deep_nesting_fails_fast_instead_of_crashing(tmp_path: Path) -> None:
    # libyaml's own composer segfaults on this, and its scanner is quadratic in depth.
    # Whichever limit stops it (ours, or the one newer libyaml releases have), the reader
    # raises our YamlError naming the file and a position near the start.
    depth = 200_000
    path = write(tmp_path, "[" * depth + "]" * depth)
    with pytest.raises(YamlError) as info:
        yamlio.load(path)
    error = info.value
    assert error.path == str(path)
    assert error.line == 1
    assert 1 < error.column < depth // 10  # stopped long before the end
    assert str(error).startswith(f"{path}:1:{error.column}: ")


def test_nesting_beyond_our_limit_is_refused_with_the_limit_named(tmp_path: Path) -> None:
    depth = yamlio.MAX_DEPTH + 20  # deeper than ours, far below any parser's own limit
    text = "".join(f"{'  ' * level}k{level}:\n" for level in range(depth)) + "  " * depth + "x\n"
    error = load_error(tmp_path, text)
    assert f"more than {yamlio.MAX_DEPTH} levels" in error.message
    assert error.line == yamlio.MAX_DEPTH + 1
    assert error.hint


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    error = load_error(tmp_path, "a: " + "x" * 100 + "\n", max_bytes=50)
    assert (error.line, error.column) == (1, 1)
    assert "larger than the limit of 50 bytes" in error.message


def test_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    text = "a: xyz\n"
    assert yamlio.load(write(tmp_path, text), max_bytes=len(text)) == {"a": "xyz"}


def test_huge_file_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(64 * 1024**3)  # sparse: 64 GiB that take no disk
    with pytest.raises(YamlError, match="larger than the limit"):
        yamlio.load(path)


def test_non_utf8_names_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    error = load_error(tmp_path, "a: 1\nb: 2\nname: caf\xe9\n".encode("latin-1"))
    assert (error.line, error.column) == (3, 10)
    assert "not valid UTF-8" in error.message
    assert "UTF-8" in error.hint


def test_non_utf8_on_first_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, b"\xff\xfea: 1\n")
    assert (error.line, error.column) == (1, 1)


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    assert yamlio.load(write(tmp_path, b"\xef\xbb\xbfa: 1\n")) == {"a": 1}


def test_control_characters_are_refused_with_position(tmp_path: Path) -> None:
    error = load_error(tmp_path, "a: 1\nb: x\x07y\n")
    assert (error.line, error.column) == (2, 5)


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system [echo hi]\n",
        "a: !!python/name:os.system\n",
        "a: !custom x\n",
        "a: !!set {x, y}\n",
    ],
)
def test_tags_beyond_plain_data_are_refused(tmp_path: Path, text: str) -> None:
    error = load_error(tmp_path, text)
    assert "unsupported tag" in error.message
    assert error.line == 1


def test_more_than_one_document_is_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path, "a: 1\n---\nb: 2\n")
    assert error.line == 2
    assert "more than one YAML document" in error.message


def test_scalar_that_looks_like_a_date_but_is_not(tmp_path: Path) -> None:
    error = load_error(tmp_path, "a: 1\nwhen: 2024-13-45\n")
    assert (error.line, error.column) == (2, 7)
    assert "quote" in error.hint


def test_complex_keys_are_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path, "a: 1\n? [x, y]\n: z\n")
    assert error.line == 2


def test_gc_is_restored(tmp_path: Path) -> None:
    path = write(tmp_path, "a: 1\n")
    assert gc.isenabled()
    yamlio.load(path)
    assert gc.isenabled()
    with pytest.raises(YamlError):
        yamlio.load(write(tmp_path, "a: [\n", "bad.yaml"))
    assert gc.isenabled()
    gc.disable()
    try:
        yamlio.load(path)
        assert not gc.isenabled()
    finally:
        gc.enable()


# --- load_with_marks -----------------------------------------------------------------


def test_marks_point_at_keys_and_items(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        "apps:\n"
        "  wiki:\n"
        "    type: scim\n"
        "    roles: [admin, dev]\n"
        "    groups:\n"
        "      - name: a\n"
        "      - b\n"
    )
    data, marks = yamlio.load_with_marks(write(tmp_path, text))
    assert data["apps"]["wiki"]["roles"] == ["admin", "dev"]
    assert marks[()] == (1, 1)
    assert marks[("version",)] == (1, 1)
    assert marks[("apps",)] == (2, 1)
    assert marks[("apps", "wiki")] == (3, 3)
    assert marks[("apps", "wiki", "type")] == (4, 5)
    assert marks[("apps", "wiki", "roles", 0)] == (5, 13)
    assert marks[("apps", "wiki", "roles", 1)] == (5, 20)
    assert marks[("apps", "wiki", "groups", 0)] == (7, 9)
    assert marks[("apps", "wiki", "groups", 0, "name")] == (7, 9)
    assert marks[("apps", "wiki", "groups", 1)] == (8, 9)


def test_marks_cover_every_path_of_the_data(tmp_path: Path) -> None:
    text = "a: {b: [1, {c: d}], e: f}\ng: [[h]]\n"
    data, marks = yamlio.load_with_marks(write(tmp_path, text))

    def paths(value: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
        found = [path]
        if isinstance(value, dict):
            for key, child in value.items():
                found += paths(child, (*path, key))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                found += paths(child, (*path, index))
        return found

    assert sorted(map(str, paths(data))) == sorted(map(str, marks))


def test_marks_of_merged_keys_point_at_their_source(tmp_path: Path) -> None:
    text = "base: &b\n  timeout: 5\napp:\n  <<: *b\n  url: x\n"
    data, marks = yamlio.load_with_marks(write(tmp_path, text))
    assert data["app"] == {"timeout": 5, "url": "x"}
    assert marks[("app", "timeout")] == (2, 3)
    assert marks[("app", "url")] == (5, 3)


def test_marks_of_an_empty_file(tmp_path: Path) -> None:
    assert yamlio.load_with_marks(write(tmp_path, "")) == (None, {(): (1, 1)})


# --- writing -------------------------------------------------------------------------


class Colour(enum.StrEnum):
    RED = "red"


def test_dump_is_block_style_in_order_and_unfolded() -> None:
    long = "word " * 100
    text = yamlio.dump({"z": 1, "a": ["x", "y"], "name": "Zoë", "long": long.strip()})
    assert text.splitlines()[:4] == ["z: 1", "a:", "- x", "- y"]
    assert "name: Zoë" in text
    assert text.splitlines()[-1] == f"long: {long.strip()}"  # one line, never folded


def test_dump_quotes_strings_that_would_read_back_as_other_types() -> None:
    data = {"a": "2024-01-01", "b": "yes", "c": "1", "d": "null", "e": None, "f": True}
    assert yamlio.load_bytes(yamlio.dump(data).encode(), "x") == data


def test_dump_writes_tuples_as_lists_and_enums_as_values() -> None:
    assert yamlio.dump({"roles": ("a", "b"), "colour": Colour.RED}) == (
        "roles:\n- a\n- b\ncolour: red\n"
    )


def test_dump_never_writes_python_tags() -> None:
    with pytest.raises(yaml.representer.RepresenterError):
        yamlio.dump({"when": object()})


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    data = {
        "accounts": [{"id": "1", "roles": ["a"], "n": 3, "ok": False, "x": None}],
        "when": datetime.date(2024, 1, 2),
    }
    assert yamlio.load_bytes(yamlio.dump(data).encode(), "x") == data


def test_write_is_atomic_with_header(tmp_path: Path) -> None:
    path = tmp_path / "history" / "wiki" / "plan.yaml"
    yamlio.write(path, {"plan": "abc", "actions": []}, header="written by reconciler\n\nnote")
    assert path.read_text(encoding="utf-8") == (
        "# written by reconciler\n#\n# note\nplan: abc\nactions: []\n"
    )
    assert [p.name for p in path.parent.iterdir()] == ["plan.yaml"]


def test_write_replaces_and_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    yamlio.write(path, {"a": 1})
    yamlio.write(path, {"a": 2})
    assert yamlio.load(path) == {"a": 2}
    with pytest.raises(yaml.representer.RepresenterError):
        yamlio.write(path, {"a": object()})
    assert yamlio.load(path) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["f.yaml"]


def test_written_file_mode_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "f.yaml"
        yamlio.write(path, {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
