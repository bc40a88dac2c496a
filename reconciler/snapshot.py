"""Snapshots on disk: one record per line, canonical, byte-stable (DESIGN §3).

    state/apps/<app>/accounts.yaml        (or accounts/00.yaml … ff.yaml above SHARD_ABOVE)
    state/apps/<app>/roles.yaml
    state/apps/<app>/meta.yaml
    state/identities/<source>.yaml
    state/identities/<source>.meta.yaml

Each record is a YAML sequence item whose value is a JSON flow mapping, so any YAML
parser reads the file while our reader parses each line as JSON. A file that a person
reformatted is still read, through the (slower) YAML path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import (
    Callable,
    Collection,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from reconciler import yamlio
from reconciler.errors import SnapshotError, YamlError
from reconciler.files import write_atomic
from reconciler.model import (
    ACCOUNT_STATUSES,
    ACCOUNT_TYPES,
    IDENTITY_STATUSES,
    Account,
    Identity,
    Role,
)

STATE_DIR = "state"
SHARD_ABOVE = 10_000
MAX_SNAPSHOT_BYTES = 2 * 1024 * 1024 * 1024

# Characters JSON leaves raw that YAML treats as line breaks or refuses as non-printable
# (U+007F-U+009F, U+2028, U+2029, U+FEFF, U+FFFE, U+FFFF), as their UTF-8 bytes.
_YAML_UNSAFE = re.compile(
    rb"\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]|\xef\xbb\xbf|\xef\xbf[\xbe\xbf]"
)

# Every byte but those that begin a match of _YAML_UNSAFE: deleting them leaves nothing
# of a line that holds none.
_NOT_UNSAFE_START = bytes(b for b in range(256) if b not in b"\x7f\xc2\xe2\xef")

R = TypeVar("R")


def app_dir(root: Path, app: str) -> Path:
    return root / STATE_DIR / "apps" / app


def identities_file(root: Path, source: str) -> Path:
    return root / STATE_DIR / "identities" / f"{source}.yaml"


def identities_meta_file(root: Path, source: str) -> Path:
    return root / STATE_DIR / "identities" / f"{source}.meta.yaml"


def app_paths(app: str) -> list[str]:
    """Paths (relative to the repo) a check of `app` may write, for staging."""
    return [f"{STATE_DIR}/apps/{app}"]


def identity_paths(source: str) -> list[str]:
    base = f"{STATE_DIR}/identities/{source}"
    return [f"{base}.yaml", f"{base}.meta.yaml"]


# --- encoding ---------------------------------------------------------------------------


class Record(Protocol):
    def to_record(self) -> dict[str, Any]: ...


def _escape_unsafe(match: re.Match[bytes]) -> bytes:
    return f"\\u{ord(match.group().decode('utf-8')):04x}".encode()


def encode(record: Record) -> bytes:
    """One record as its canonical snapshot line: a YAML sequence item holding a
    one-line JSON flow mapping."""
    line = b"- " + orjson.dumps(record.to_record()) + b"\n"
    # The common cases, told at C speed: DEL is the only ASCII byte unsafe, and other
    # text (names with accents) is safe when no unsafe character's first byte is there.
    if line.isascii():
        if b"\x7f" not in line:
            return line
    elif not line.translate(None, _NOT_UNSAFE_START):
        return line
    if _YAML_UNSAFE.search(line):
        line = _YAML_UNSAFE.sub(_escape_unsafe, line)
    return line


def render(key: str, header: str, lines: Iterable[bytes]) -> bytes:
    body = b"".join(lines)
    return f"# {header}\n{key}:{'' if body else ' []'}\n".encode() + body


def _write_if_changed(path: Path, content: bytes) -> bool:
    try:
        if path.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    write_atomic(path, content)
    return True


# --- records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A snapshot file as read: the line number of each record's id in it."""

    path: Path
    numbers: Mapping[str, int]


def _restore_hint(path: Path) -> str:
    return f"\n  hint: restore the file with `git checkout -- {path}`, or correct that line"


def line_error(path: Path, number: int | None, problem: str) -> SnapshotError:
    """A problem with one line of a snapshot, as FILE:LINE and what to do about it."""
    where = f"{path}:{number}" if number else str(path)
    return SnapshotError(f"{where}: {problem}{_restore_hint(path)}")


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return str(exc)


class Records(Mapping[str, R]):
    """A snapshot's records keyed by id, with each record's canonical line.

    Read from disk, records stay undecoded until asked for: a check compares lines and
    decodes only the records that changed. Built from pulled values, both are at hand.
    `sources` say where each line was read, so that a record that turns out to be
    broken when it is decoded is reported as FILE:LINE.
    """

    def __init__(
        self,
        lines: dict[str, bytes],
        decode: Callable[[bytes], R],
        values: dict[str, R] | None = None,
        sources: Sequence[Source] = (),
    ) -> None:
        self.lines = lines
        self._decode = decode
        self._values = values
        self._sources = tuple(sources)

    @classmethod
    def of(cls, values: Iterable[R], decode: Callable[[bytes], R]) -> Records[R]:
        by_id = {v.id: v for v in values}  # type: ignore[attr-defined]
        lines = {key: encode(value) for key, value in by_id.items()}  # type: ignore[arg-type]
        return cls(lines, decode, by_id)

    def __getitem__(self, key: str) -> R:
        if self._values is not None:
            return self._values[key]
        line = self.lines[key]
        try:
            value = self._decode(line)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._invalid(key, line, _reason(exc)) from exc
        if value.id != key:  # type: ignore[attr-defined]
            # A line that names two ids ({"id":"a",…,"id":"b"}) was hand-made.
            raise self._invalid(key, line, "the record's id is given twice")
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines)

    def keys(self) -> KeysView[str]:
        # The dict's own view: set operations on it (`old.keys() - new.keys()`) run in C,
        # not through a lookup per key.
        return self.lines.keys()

    def items(self) -> ItemsView[str, R]:
        # Built from values: the dict's own view, not a lookup per key.
        return self._values.items() if self._values is not None else super().items()

    def values(self) -> ValuesView[R]:
        return self._values.values() if self._values is not None else super().values()

    def __len__(self) -> int:
        return len(self.lines)

    def __contains__(self, key: object) -> bool:
        return key in self.lines

    def line(self, key: str) -> bytes:
        return self.lines[key]

    def sorted_lines(self) -> list[bytes]:
        return [self.lines[key] for key in sorted(self.lines)]

    def where(self, key: str) -> tuple[Path, int] | None:
        """The file and line number the record `key` was read from, if it was read."""
        for source in self._sources:
            number = source.numbers.get(key)
            if number is not None:
                return source.path, number
        return None

    def _invalid(self, key: str, line: bytes, reason: str) -> SnapshotError:
        where = self.where(key)
        if where is None:  # pragma: no cover - pulled records are never decoded
            return SnapshotError(f"invalid record {line[:80]!r} ({reason})")
        path, number = where
        return line_error(path, number, f"invalid record {line[:80]!r} ({reason})")


def _record_id(record: object) -> str:
    """The id of a parsed record; a ValueError says what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a mapping, not {type(record).__name__}")
    if "id" not in record:
        raise ValueError("missing field 'id'")
    value = record["id"]
    if not isinstance(value, str):
        shown = "null" if value is None else f"{value!r} ({type(value).__name__})"
        raise ValueError(f"the id must be a string, not {shown}")
    return value


def _line_id(body: bytes) -> str:
    # Lines we write start with the id; anything else is parsed the slow way.
    if body.startswith(b'{"id":"'):
        end = body.find(b'"', 7)
        if end > 0 and b"\\" not in body[7:end]:
            return body[7:end].decode("utf-8")
    return _record_id(orjson.loads(body))


def _read_lines(
    path: Path, key: str, decode: Callable[[bytes], R]
) -> tuple[dict[str, bytes], dict[str, int]]:
    """id → canonical line and id → line number; fast per-line path, YAML fallback for
    edited files."""
    if path.stat().st_size > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"{path}: larger than {MAX_SNAPSHOT_BYTES} bytes; refusing to read it")
    lines: dict[str, bytes] = {}
    numbers: dict[str, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.startswith(b"- {"):
                try:
                    line_id = _line_id(raw[2:])
                except orjson.JSONDecodeError:
                    # Not JSON, but perhaps a YAML flow mapping a person wrote.
                    return _read_lines_yaml(path, key, decode)
                except ValueError as exc:
                    raise line_error(path, number, f"invalid record ({exc})") from exc
                first = numbers.setdefault(line_id, number)
                if first != number:
                    raise line_error(
                        path, number, f"duplicate id {line_id!r} (first at line {first})"
                    )
                lines[line_id] = raw if raw.endswith(b"\n") else raw + b"\n"
                continue
            stripped = raw.strip()
            if not stripped or stripped.startswith(b"#"):
                continue
            if stripped in (f"{key}:".encode(), f"{key}: []".encode()):
                continue
            return _read_lines_yaml(path, key, decode)
    return lines, numbers


def _read_lines_yaml(
    path: Path, key: str, decode: Callable[[bytes], R]
) -> tuple[dict[str, bytes], dict[str, int]]:
    """A file a person reformatted: parse it as YAML, validate every record, and
    re-encode each canonically."""
    try:
        data, marks = yamlio.load_with_marks(path, max_bytes=MAX_SNAPSHOT_BYTES)
    except YamlError as exc:
        raise SnapshotError(f"{exc}{_restore_hint(path)}") from exc
    items = data.get(key) if isinstance(data, dict) else None
    if data is not None and not isinstance(items, list) and items is not None:
        raise line_error(path, marks[()][0], f"expected a mapping with a `{key}:` list")
    lines: dict[str, bytes] = {}
    numbers: dict[str, int] = {}
    for index, item in enumerate(items or []):
        number = marks.get((key, index), marks[()])[0]
        try:
            item_id = _record_id(item)
            value = decode(b"- " + orjson.dumps(item))
        except (KeyError, TypeError, ValueError) as exc:
            raise line_error(path, number, f"invalid record ({_reason(exc)})") from exc
        if item_id in lines:
            raise line_error(
                path, number, f"duplicate id {item_id!r} (first at line {numbers[item_id]})"
            )
        lines[item_id] = encode(value)  # type: ignore[arg-type]
        numbers[item_id] = number
    return lines, numbers


def _account_line(line: bytes) -> Account:
    return _account(orjson.loads(line[2:]))


def _identity_line(line: bytes) -> Identity:
    return _identity(orjson.loads(line[2:]))


def _account(record: Mapping[str, Any]) -> Account:
    # The hot path at 100k accounts: trust shapes we wrote, check what could be wrong.
    account_id, status, kind = record["id"], record["status"], record["type"]
    if account_id.__class__ is not str:
        raise ValueError(f"the id must be a string, not {account_id!r}")
    if status not in ACCOUNT_STATUSES or kind not in ACCOUNT_TYPES:
        raise ValueError(f"status {status!r} / type {kind!r}")
    return Account(
        id=account_id,
        username=str(record.get("username", "")),
        email=str(record.get("email", "")),
        display_name=str(record.get("display_name", "")),
        status=status,
        type=kind,
        roles=tuple(sorted(record.get("roles") or ())),
        entitlements=tuple(sorted(record.get("entitlements") or ())),
    )


def _identity(record: Mapping[str, Any]) -> Identity:
    identity_id, status = record["id"], record["status"]
    if identity_id.__class__ is not str:
        raise ValueError(f"the id must be a string, not {identity_id!r}")
    if status not in IDENTITY_STATUSES:
        raise ValueError(f"status {status!r}")
    return Identity(
        id=identity_id,
        email=str(record.get("email", "")),
        username=str(record.get("username", "")),
        display_name=str(record.get("display_name", "")),
        status=status,
        groups=tuple(sorted(record.get("groups") or ())),
        department=str(record.get("department", "")),
        title=str(record.get("title", "")),
    )


decode_account: Callable[[bytes], Account] = _account_line
decode_identity: Callable[[bytes], Identity] = _identity_line


def account_records(accounts: Iterable[Account]) -> Records[Account]:
    return Records.of(accounts, decode_account)


def identity_records(identities: Iterable[Identity]) -> Records[Identity]:
    return Records.of(identities, decode_identity)


# --- accounts ---------------------------------------------------------------------------


def shard_of(account_id: str) -> str:
    return hashlib.sha1(account_id.encode("utf-8")).hexdigest()[:2]


def account_files(names: Collection[str], directory: str | Path) -> list[str]:
    """Which of the files in an app's snapshot directory (`names`, relative to it,
    '/'-separated) hold its accounts, in the order they are read and digested:
    `accounts.yaml`, or the shards `accounts/*.yaml` by name. Both at once is a
    SnapshotError naming `directory`."""
    shards = sorted(
        name
        for name in names
        if name.startswith("accounts/") and name.endswith(".yaml") and name.count("/") == 1
    )
    single = "accounts.yaml" in names
    if single and shards:
        raise SnapshotError(
            f"{directory}: both accounts.yaml and accounts/ exist; remove the stale one"
        )
    return shards or (["accounts.yaml"] if single else [])


def _account_files(directory: Path) -> list[Path]:
    names = [f"accounts/{p.name}" for p in (directory / "accounts").glob("*.yaml")]
    if (directory / "accounts.yaml").exists():
        names.append("accounts.yaml")
    return [directory / name for name in account_files(names, directory)]


def read_accounts(root: Path, app: str) -> Records[Account] | None:
    """The app's last snapshot keyed by id, or None if it was never pulled."""
    files = _account_files(app_dir(root, app))
    if not files:
        return None
    lines: dict[str, bytes] = {}
    sources: list[Source] = []
    for path in files:
        part, numbers = _read_lines(path, "accounts", decode_account)
        for account_id in lines.keys() & part.keys():
            first = Records(lines, decode_account, sources=sources).where(account_id)
            shown = f"{first[0]}:{first[1]}" if first else "another shard"
            raise line_error(
                path, numbers[account_id], f"account id {account_id!r} is also in {shown}"
            )
        lines.update(part)
        sources.append(Source(path, numbers))
    return Records(lines, decode_account, sources=sources)


ACCOUNTS_HEADER = "written by reconciler; one account per line"


def write_accounts(root: Path, app: str, accounts: Records[Account] | Iterable[Account]) -> bool:
    """Write the snapshot; True if any file changed."""
    records = accounts if isinstance(accounts, Records) else account_records(accounts)
    directory = app_dir(root, app)
    changed = False
    if len(records) > SHARD_ABOVE:
        shards: dict[str, list[bytes]] = {f"{i:02x}": [] for i in range(256)}
        for key in sorted(records.lines):
            shards[shard_of(key)].append(records.lines[key])
        for name, part in shards.items():
            content = render("accounts", ACCOUNTS_HEADER, part)
            changed |= _write_if_changed(directory / "accounts" / f"{name}.yaml", content)
        single = directory / "accounts.yaml"
        if single.exists():
            single.unlink()
            changed = True
    else:
        content = render("accounts", ACCOUNTS_HEADER, records.sorted_lines())
        changed |= _write_if_changed(directory / "accounts.yaml", content)
        shard_dir = directory / "accounts"
        if shard_dir.exists():
            for path in shard_dir.glob("*.yaml"):
                path.unlink()
            shard_dir.rmdir()
            changed = True
    return changed


# --- digests ----------------------------------------------------------------------------
#
# A snapshot's digest names each of its files with the id git gives the file's content,
# so that it can be checked from git's trees alone, without reading a single data file:
# `audit verify` holds every snapshot commit of a year to it by reading trees. The blob
# id is what git itself guarantees about a file's content, and what `git ls-tree` shows.

DIGEST_PREFIX = "git-sha1:"
_LEGACY_DIGEST = re.compile(r"[0-9a-f]{64}")


def blob_id(data: bytes) -> str:
    """The id git gives a file holding `data` (a SHA-1 repository, git's default)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def blobs_digest(blobs: Iterable[tuple[str, str]]) -> str:
    """The digest of a snapshot whose files, in their order, are (name, git blob id):
    `git-sha1:` and the SHA-256 of one line `<name> <blob id>\n` per file. Names are
    relative to the snapshot's directory (`accounts.yaml`, `accounts/0f.yaml`,
    `<source>.yaml`)."""
    digest = hashlib.sha256()
    for name, blob in blobs:
        digest.update(f"{name} {blob}\n".encode())
    return DIGEST_PREFIX + digest.hexdigest()


def files_digest(files: Iterable[tuple[str, bytes]]) -> str:
    """The digest of a snapshot whose files, in their order, are (name, content)."""
    return blobs_digest((name, blob_id(data)) for name, data in files)


def is_legacy_digest(value: str) -> bool:
    """Whether `value` is a digest as releases before `git-sha1:` wrote it: the SHA-256
    of the files' bytes in order, as 64 hex digits."""
    return _LEGACY_DIGEST.fullmatch(value) is not None


def legacy_digest(contents: Iterable[bytes]) -> str:
    """A digest in the format of earlier releases, for snapshots they recorded."""
    digest = hashlib.sha256()
    for data in contents:
        digest.update(data)
    return digest.hexdigest()


_BLOB_IDS: dict[tuple[str, int, int, int], str] = {}


def _file_blob_id(path: Path) -> str:
    # Remembered per file version (path, inode, mtime, size): a check asks for a digest
    # twice (meta.yaml, then the plan), and a day's check rewrites a few of 256 shards.
    stat = path.stat()
    key = (str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if key not in _BLOB_IDS:
        _BLOB_IDS[key] = blob_id(path.read_bytes())
    return _BLOB_IDS[key]


def _digest(directory: Path, files: Sequence[Path]) -> str:
    return blobs_digest((p.relative_to(directory).as_posix(), _file_blob_id(p)) for p in files)


def accounts_digest(root: Path, app: str) -> str:
    directory = app_dir(root, app)
    return _digest(directory, _account_files(directory))


def write_roles(root: Path, app: str, roles: Iterable[Role]) -> bool:
    ordered = sorted(roles, key=lambda r: r.name)
    lines = [encode(r) for r in ordered]
    content = render("roles", "written by reconciler; one role per line", lines)
    return _write_if_changed(app_dir(root, app) / "roles.yaml", content)


# --- identities -------------------------------------------------------------------------


def read_identities(root: Path, source: str) -> Records[Identity] | None:
    path = identities_file(root, source)
    if not path.exists():
        return None
    lines, numbers = _read_lines(path, "identities", decode_identity)
    return Records(lines, decode_identity, sources=[Source(path, numbers)])


def write_identities(
    root: Path, source: str, identities: Records[Identity] | Iterable[Identity]
) -> bool:
    records = identities if isinstance(identities, Records) else identity_records(identities)
    header = "written by reconciler; one identity per line"
    content = render("identities", header, records.sorted_lines())
    return _write_if_changed(identities_file(root, source), content)


def identities_digest(root: Path, source: str) -> str:
    path = identities_file(root, source)
    return _digest(path.parent, [path] if path.exists() else [])


# --- meta -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Meta:
    """When the data last changed and how big it is; rewritten only when the data changes."""

    name: str
    kind: str  # accounts | identities
    pulled_at: str
    count: int
    digest: str  # `blobs_digest` of the data files (earlier releases: `legacy_digest`)
    # Identities only: live identities in the snapshot before this pull (the shrink
    # guard compares the two, at check and again at apply).
    previous_count: int | None = None

    def to_data(self) -> dict[str, Any]:
        key = "app" if self.kind == "accounts" else "source"
        data: dict[str, Any] = {
            key: self.name,
            "kind": self.kind,
            "pulled_at": self.pulled_at,
            "count": self.count,
            "digest": self.digest,
            "pull_status": "complete",
        }
        if self.kind == "identities":
            data["previous_count"] = self.previous_count
        return data


def write_meta(path: Path, meta: Meta) -> bool:
    header = "# written by reconciler; pulled_at is the time of the pull that changed the data\n"
    return _write_if_changed(path, (header + yamlio.dump(meta.to_data())).encode("utf-8"))


def read_meta(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data = yamlio.load(path)
    return data if isinstance(data, dict) else None


def save_app(
    root: Path,
    app: str,
    accounts: Records[Account] | Sequence[Account],
    roles: Sequence[Role] | None,
    pulled_at: str,
) -> bool:
    """Write an app's accounts (and roles, when given) and, if anything changed or the
    app is new, its meta.yaml. True if any file changed."""
    directory = app_dir(root, app)
    first = not (directory / "meta.yaml").exists()
    records = accounts if isinstance(accounts, Records) else account_records(accounts)
    changed = write_accounts(root, app, records)
    if roles is not None:
        changed |= write_roles(root, app, roles)
    if changed or first:
        meta = Meta(app, "accounts", pulled_at, len(records), accounts_digest(root, app))
        changed |= write_meta(directory / "meta.yaml", meta)
    return changed
