"""The `file` connector: an app or identity source read from a CSV, YAML or JSON export.

For systems with no API. Someone exports the users to a file in the access repo (or a
path the check can read); the check reads it like any other pull. Deprovisioning is a
manual task: the report lists the accounts, a person removes them in the app, and the
next export shows them gone. The live state of such a system is its latest export, so
`lookup_*` read the file again.

Accepted shapes, for accounts (`path`) and identities (`identities_path`, or `path`):

- CSV with a header row; list columns (roles, entitlements, groups) are split on
  `list_separator`. Header names are matched loosely (`Display Name`, `displayName`).
- JSON or YAML: a list of records, or a mapping whose `accounts` / `identities` /
  `users` key holds that list (so one file can hold both accounts and identities).

A malformed export is a failed pull (`PullError`) naming the file, the row and the fix,
never a partial list: a record silently dropped would read as "this person left".
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import orjson

from reconciler import yamlio
from reconciler.connectors.base import ConnectorContext, ConnectorType, Mode
from reconciler.errors import ConfigError, ConnectorError, PullError, ReconcilerError
from reconciler.model import Account, Identity, Role, clean_text, clean_time, sorted_names

Format = Literal["csv", "yaml", "json"]
FORMATS: tuple[Format, ...] = ("csv", "yaml", "json")
SUFFIXES: Mapping[str, Format] = {".csv": "csv", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
# Well above a 100k-account export with a million entitlements (about 40 MB).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_LIST_SEPARATOR = ";"

T = TypeVar("T")

Kind = Literal["accounts", "identities", "roles"]
# Keys of a JSON/YAML mapping that may hold the records of each kind, in order of preference.
RECORD_KEYS: Mapping[Kind, tuple[str, ...]] = {
    "accounts": ("accounts", "users"),
    "identities": ("identities", "users"),
    "roles": ("roles",),
}
# The option that names each kind's file, for messages that say what to fix.
PATH_OPTIONS: Mapping[Kind, str] = {
    "accounts": "path",
    "identities": "identities_path",
    "roles": "roles_path",
}

OPTIONS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["path"],
    "properties": {
        "path": {
            "type": "string",
            "minLength": 1,
            "description": (
                "The export to read: the app's accounts, or the identities of an identity "
                "source. Relative to the access repo, or absolute."
            ),
        },
        "format": {
            "enum": list(FORMATS),
            "description": (
                "csv, yaml or json. Default: from each file's suffix (.csv, .yaml or .yml, .json)."
            ),
        },
        "identities_path": {
            "type": "string",
            "minLength": 1,
            "description": (
                "A separate export of identities, when this system is both an app and an "
                "identity source. Default: the identities are read from `path`."
            ),
        },
        "roles_path": {
            "type": "string",
            "minLength": 1,
            "description": (
                "An export of the role catalogue (name, description, entitlements). "
                "Default: the distinct roles seen on accounts."
            ),
        },
        "list_separator": {
            "type": "string",
            "minLength": 1,
            "default": DEFAULT_LIST_SEPARATOR,
            "description": "Separates the values of roles, entitlements and groups cells in CSV.",
        },
        "max_bytes": {
            "type": "integer",
            "minimum": 1,
            "default": DEFAULT_MAX_BYTES,
            "description": "Refuse an export larger than this many bytes.",
        },
    },
}

_TRUE = frozenset({"true", "yes", "y", "1", "t", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "f", "off"})
# Common spellings in exports. `name` is left alone: it means a username in one system
# and a display name in the next, and guessing wrong would mis-match people.
_ALIASES = {"user_name": "username", "e_mail": "email", "mail": "email"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@functools.cache
def _field_name(raw: object) -> str:
    """A column or key as the connector knows it: `Display Name`, `displayName` → display_name."""
    name = _CAMEL.sub("_", str(raw).strip()).lower()
    name = re.sub(r"[\s\-]+", "_", name)
    return _ALIASES.get(name, name)


class _Record(NamedTuple):
    """One record of an export and where it is, for messages."""

    prefix: str  # "line" for CSV; for JSON/YAML the key holding the list, or ""
    position: int  # CSV: the line the row starts on; JSON/YAML: the index in the list
    fields: Mapping[str, Any]

    @property
    def where(self) -> str:
        """ "line 4" (CSV) or "accounts[3] (record 4)" (JSON/YAML)."""
        if self.prefix == "line":
            return f"line {self.position}"
        return f"{self.prefix}[{self.position}] (record {self.position + 1})"


@dataclass(frozen=True)
class _Export(Generic[T]):
    """A parsed export and the file version it was parsed from."""

    path: Path
    version: tuple[int, int, int]
    records: list[T]
    by_id: Mapping[str, T]


class _Invalid(Exception):
    """A bad value in a record; turned into a PullError that names file and row."""


def _text(record: _Record, name: str) -> str:
    value = record.fields.get(name)
    if value.__class__ is str:
        return value
    if value is None:
        return ""
    # bool is an int: `id: true` in YAML is a mistake, not the id "True".
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise _Invalid(f"`{name}` must be text, not {type(value).__name__}")


def _names(record: _Record, name: str, separator: str) -> tuple[str, ...]:
    value = record.fields.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(separator) if part.strip())
    if isinstance(value, list):
        if all(item.__class__ is str for item in value):
            return tuple(value)  # the model strips and sorts names
        for item in value:
            if not isinstance(item, str | int) or isinstance(item, bool):
                raise _Invalid(f"`{name}` must be a list of names; found {item!r}")
        return tuple(str(item) for item in value)
    raise _Invalid(f"`{name}` must be a list of names or a {separator!r}-separated string")


def _flag(record: _Record, name: str) -> bool | None:
    value = record.fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Invalid(f"`{name}` is {value!r}; use true or false")


def _status(record: _Record, allowed: Sequence[str], inactive: str) -> str:
    """The record's status from `status`, or from a true/false `active` column.

    No status at all means active: exports of apps often list only live accounts, and
    counting an account as active is the cautious reading (it may be proposed for review,
    never silently ignored).
    """
    status = _text(record, "status").strip().lower()
    active = _flag(record, "active")
    if status and status not in allowed:
        raise _Invalid(f"status {status!r} is not one of: {', '.join(allowed)}")
    if active is not None:
        from_flag = "active" if active else inactive
        if status and (status == "active") != active:
            raise _Invalid(f"status {status!r} contradicts active={str(active).lower()}")
        return status or from_flag
    return status or "active"


_ONLY_STR = {str}


def _is_names(value: object) -> bool:
    return value.__class__ is list and (not value or set(map(type, value)) == _ONLY_STR)


def _account(record: _Record, separator: str) -> Account:
    get = record.fields.get
    status, kind = get("status"), get("type")
    roles, entitlements = get("roles", []), get("entitlements", [])
    id_, username, email, name = (
        get("id"),
        get("username", ""),
        get("email", ""),
        get("display_name", ""),
    )
    if (
        # The shape a JSON export usually has (and the one we write): plain values that
        # need none of the lenient parsing below. About half the cost of a big pull.
        id_.__class__ is str
        and username.__class__ is str
        and email.__class__ is str
        and name.__class__ is str
        and status in ("active", "disabled")
        and kind in ("human", "service")
        and "active" not in record.fields
        and _is_names(roles)
        and _is_names(entitlements)
    ):
        login = _last_login(record) if get("last_login") or get("last_login_at") else ""
        return Account.build(
            id_.strip(), username, email, name, status, kind, roles, entitlements, login
        )
    kind = _text(record, "type").strip().lower() or "human"
    if kind not in ("human", "service"):
        raise _Invalid(f"type {kind!r} is not one of: human, service")
    return Account.build(
        id=_text(record, "id").strip(),
        username=_text(record, "username"),
        email=_text(record, "email"),
        display_name=_text(record, "display_name"),
        status=_status(record, ("active", "disabled"), inactive="disabled"),
        type=kind,
        roles=_names(record, "roles", separator),
        entitlements=_names(record, "entitlements", separator),
        last_login=_last_login(record),
    )


def _identity(record: _Record, separator: str) -> Identity:
    get = record.fields.get
    status, groups = get("status"), get("groups", [])
    id_, email, username, name = (
        get("id"),
        get("email", ""),
        get("username", ""),
        get("display_name", ""),
    )
    if (
        id_.__class__ is str
        and email.__class__ is str
        and username.__class__ is str
        and name.__class__ is str
        and status in ("active", "suspended", "deprovisioned")
        and "active" not in record.fields
        and "department" not in record.fields
        and "title" not in record.fields
        and _is_names(groups)
    ):
        changed = _status_time(record)
        return Identity.build(id_.strip(), email, username, name, status, groups, changed)
    # A false `active` flag says the person cannot sign in, not that they were removed.
    status = _status(record, ("active", "suspended", "deprovisioned"), inactive="suspended")
    return Identity.build(
        id=_text(record, "id").strip(),
        email=_text(record, "email"),
        username=_text(record, "username"),
        display_name=_text(record, "display_name"),
        status=status,
        groups=_names(record, "groups", separator),
        status_changed_at=_status_time(record),
        department=_text(record, "department"),
        title=_text(record, "title"),
    )


# Columns that may hold the source's own time of the status change (the first one given).
STATUS_TIME_COLUMNS = ("status_changed_at", "left_at")


# Columns that may hold when the account last signed in (the first one given).
LAST_LOGIN_COLUMNS = ("last_login", "last_login_at")


def _status_time(record: _Record) -> str:
    """The optional `status_changed_at` (or `left_at`) column as a UTC time; '' if empty."""
    return _time(record, STATUS_TIME_COLUMNS)


def _last_login(record: _Record) -> str:
    """The optional `last_login` (or `last_login_at`) column as a UTC time; '' if empty,
    which means the app does not know (not "never")."""
    return _time(record, LAST_LOGIN_COLUMNS)


def _time(record: _Record, columns: Sequence[str]) -> str:
    """The first non-empty of `columns` as a UTC time; '' if all are empty."""
    for name in columns:
        raw = _text(record, name).strip()
        if raw:
            moment = clean_time(raw)
            if not moment:
                raise _Invalid(
                    f"{name} {raw!r} is not a time: give ISO 8601, e.g. 2026-11-20T09:30:00Z"
                )
            return moment
    return ""


def _role(record: _Record, separator: str) -> Role:
    return Role(
        name=clean_text(_text(record, "name")).strip(),
        description=clean_text(_text(record, "description")),
        entitlements=sorted_names(_names(record, "entitlements", separator)),
    )


class FileConnector:
    """An app or identity source whose state is the latest export in a file."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        identities_path: Path | None = None,
        roles_path: Path | None = None,
        format: Format | None = None,
        list_separator: str = DEFAULT_LIST_SEPARATOR,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.name = name
        # Nobody can be removed through a file: the report becomes a person's task list.
        self.modes = frozenset({Mode.MANUAL})
        self._paths: dict[Kind, Path | None] = {
            "accounts": path,
            "identities": identities_path or path,
            "roles": roles_path,
        }
        self._format = format
        self._separator = list_separator
        self._max_bytes = max_bytes
        self._has_identities_path = identities_path is not None
        # The last parse of each export, so the lookups of an apply do not re-parse an
        # unchanged file; a new export (other inode, mtime or size) is always read.
        self._cache: dict[Kind, _Export[Any]] = {}
        for kind, kind_path in self._paths.items():
            if kind_path is not None:
                self._format_of(kind, kind_path)  # fail at build time on an unknown suffix

    @classmethod
    def from_context(cls, context: ConnectorContext) -> FileConnector:
        """Build from a `type: file` section of reconciler.yaml."""
        options = context.options

        def resolve(option: str) -> Path | None:
            value = options.get(option)
            return context.base_dir / value if value else None  # absolute paths stay absolute

        path = resolve("path")
        if path is None:
            raise ConfigError(f"{context.name}: `path` is required for a file connector")
        return cls(
            context.name,
            path,
            identities_path=resolve("identities_path"),
            roles_path=resolve("roles_path"),
            format=options.get("format"),
            list_separator=options.get("list_separator", DEFAULT_LIST_SEPARATOR),
            max_bytes=options.get("max_bytes", DEFAULT_MAX_BYTES),
        )

    # -- the Connector contract --

    def pull_accounts(self) -> Iterator[Account]:
        """Every account in the export; a bad record fails the whole pull."""
        # Parsed in full before the first account is handed out: a bad row at the end
        # must fail the pull before anything was consumed.
        return iter(self._accounts().records)

    def pull_roles(self) -> list[Role]:
        """The role catalogue from `roles_path`, or the distinct roles seen on accounts."""
        if self._paths["roles"] is not None:
            roles = self._load("roles", _role, lambda r: r.name).records
            return sorted(roles, key=lambda r: r.name)
        seen = {name for account in self._accounts().records for name in account.roles}
        return [Role(name=name) for name in sorted(seen)]

    def pull_identities(self) -> Iterator[Identity]:
        """Every identity in the export; a bad record fails the whole pull."""
        return iter(self._identities().records)

    def lookup_account(self, account_id: str) -> Account | None:
        """The account as the latest export shows it, or None if it is not there."""
        return self._accounts().by_id.get(account_id)

    def lookup_identity(self, identity_id: str) -> Identity | None:
        """The identity as the latest export shows it, or None if it is not there."""
        return self._identities().by_id.get(identity_id)

    def deprovision(self, account: Account, mode: Mode) -> None:
        """Nothing to do for a manual task: a person removes the account in the app."""
        if mode != Mode.MANUAL:
            raise ConnectorError(
                self.name,
                f"cannot {getattr(mode, 'value', mode)} account {account.id!r}: a file "
                "export has no API. Set the mode to `manual` in the policy; the report "
                "then lists the accounts for a person to remove.",
            )

    def lookup_roles(self, account_id: str) -> tuple[str, ...] | None:
        """The account's roles as the latest export shows them, or None."""
        account = self.lookup_account(account_id)
        return None if account is None else account.roles

    def remove_roles(self, account: Account, roles: Collection[str]) -> None:
        """Never: a file export has no API; roles are taken by hand (a manual task)."""
        raise ConnectorError(
            self.name,
            f"cannot take roles from account {account.id!r}: a file export has no API; "
            "the plan lists the role for a person to remove (a manual task)",
        )

    def enable(self, account: Account) -> None:
        """Never: a file export has no API; enabling is a manual task."""
        raise ConnectorError(
            self.name,
            f"cannot enable account {account.id!r}: a file export has no API; the plan "
            "lists it for a person to enable (a manual task)",
        )

    def probe(self, identity_source: bool) -> str:
        """Read the export a pull would read, in full: a bad record fails it here too."""
        if identity_source:
            return f"{len(self._identities().records)} identities in the export"
        return f"{len(self._accounts().records)} accounts in the export"

    def close(self) -> None:
        """Nothing to release."""

    # -- reading exports --

    def _accounts(self) -> _Export[Account]:
        return self._load("accounts", _account, lambda a: a.id)

    def _identities(self) -> _Export[Identity]:
        return self._load("identities", _identity, lambda i: i.id)

    def _format_of(self, kind: Kind, path: Path) -> Format:
        if self._format is not None:
            return self._format
        try:
            return SUFFIXES[path.suffix.lower()]
        except KeyError:
            raise ConfigError(
                f"{self.name}: cannot tell the format of {path} from its suffix; "
                f"name it .csv, .yaml or .json, or set `format: csv|yaml|json` "
                f"(`{PATH_OPTIONS[kind]}`)"
            ) from None

    def _load(
        self,
        kind: Kind,
        build: Callable[[_Record, str], T],
        key_of: Callable[[T], str],
    ) -> _Export[T]:
        path = self._paths[kind]
        assert path is not None, "roles are loaded only when roles_path is set"
        try:
            stat = path.stat()
        except FileNotFoundError:
            option = (
                PATH_OPTIONS[kind] if kind != "identities" or self._has_identities_path else "path"
            )
            raise PullError(
                self.name, f"{path} not found; export it to {path} or fix `{option}`"
            ) from None
        except OSError as exc:
            raise PullError(self.name, f"cannot read {path}: {exc.strerror}") from exc
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(kind)
        if cached is not None and cached.path == path and cached.version == version:
            return cached
        if stat.st_size > self._max_bytes:
            raise PullError(
                self.name,
                f"{path} is {stat.st_size} bytes, more than `max_bytes` ({self._max_bytes}); "
                "raise `max_bytes` if the export is genuine",
            )
        fmt = self._format_of(kind, path)
        raw = self._records_csv(path) if fmt == "csv" else self._records_data(kind, path, fmt)
        key_name = "name" if kind == "roles" else "id"
        by_id: dict[str, T] = {}
        where: dict[str, _Record] = {}
        for record in raw:
            try:
                built = build(record, self._separator)
            except (_Invalid, ValueError) as exc:
                raise self._error(path, record, str(exc)) from None
            key = key_of(built)
            if not key:
                raise self._error(
                    path, record, f"no `{key_name}`; every record needs the system's own {key_name}"
                )
            if key in by_id:
                raise self._error(
                    path,
                    record,
                    f"{key_name} {key!r} repeats the record at {where[key].where}; "
                    f"each {key_name} must appear once (fix the export)",
                )
            by_id[key] = built
            where[key] = record
        export = _Export(path=path, version=version, records=list(by_id.values()), by_id=by_id)
        self._cache[kind] = export
        return export

    def _error(self, path: Path, record: _Record, problem: str) -> PullError:
        return PullError(self.name, f"{path}, {record.where}: {problem}")

    def _records_csv(self, path: Path) -> list[_Record]:
        text = self._read_text(path)
        # newline="" keeps line breaks inside quoted cells, as the csv module requires.
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        records: list[_Record] = []
        try:
            header = next(reader, None)
            if header is None:
                return []  # an empty export: zero records, judged by the check's guards
            columns = [_field_name(column) for column in header]
            duplicates = sorted({c for c in columns if c and columns.count(c) > 1})
            if duplicates:
                raise PullError(
                    self.name,
                    f"{path}, line 1: column {duplicates[0]!r} appears twice in the header",
                )
            first_line = reader.line_num + 1
            for row in reader:
                # A quoted cell may span lines: name the line the row starts on.
                line, first_line = first_line, reader.line_num + 1
                if not any(cell.strip() for cell in row):
                    continue  # blank lines, often at the end of a hand-made export
                if len(row) != len(columns):
                    # A shifted row would put a value under the wrong column: refuse it.
                    raise PullError(
                        self.name,
                        f"{path}, line {line}: {len(row)} cells but the header has "
                        f"{len(columns)}; quote values that contain commas",
                    )
                records.append(_Record("line", line, dict(zip(columns, row, strict=True))))
        except csv.Error as exc:
            raise PullError(
                self.name, f"{path}, line {reader.line_num}: invalid CSV: {exc}"
            ) from exc
        return records

    def _records_data(self, kind: Kind, path: Path, fmt: Format) -> list[_Record]:
        if fmt == "yaml":
            try:
                data = yamlio.load(path, max_bytes=self._max_bytes)
            except ReconcilerError as exc:
                raise PullError(self.name, str(exc)) from exc
            except OSError as exc:
                raise PullError(self.name, f"cannot read {path}: {exc.strerror}") from exc
        else:
            raw = self._read_bytes(path)
            # An empty export is zero records, not a syntax error.
            try:
                data = orjson.loads(raw) if raw.strip() else None
            except orjson.JSONDecodeError as exc:
                raise PullError(
                    self.name, f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
                ) from exc
        return self._records_of(kind, path, data)

    def _records_of(self, kind: Kind, path: Path, data: Any) -> list[_Record]:
        keys = RECORD_KEYS[kind]
        prefix = ""
        if data is None:
            return []
        if isinstance(data, dict):
            found = next((k for k in keys if k in data), None)
            if found is None:
                wanted = " or ".join(f"`{k}`" for k in keys)
                raise PullError(
                    self.name,
                    f"{path}: expected a list of {kind} or a mapping with key {wanted}; "
                    f"found keys: {', '.join(map(str, list(data)[:10])) or 'none'}",
                )
            data, prefix = data[found], str(found)
            if data is None:
                return []
        if not isinstance(data, list):
            raise PullError(
                self.name,
                f"{path}: {prefix or 'the file'} must be a list of {kind}, "
                f"not {type(data).__name__}",
            )
        records: list[_Record] = []
        # Records of one export share their keys: normalise each distinct key set once.
        canonical: dict[tuple[Any, ...], bool] = {}
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                where = _Record(prefix, index, {}).where
                raise PullError(
                    self.name,
                    f"{path}, {where}: expected a mapping of fields, not {type(item).__name__}",
                )
            keys = tuple(item)
            plain = canonical.get(keys)
            if plain is None:
                plain = canonical[keys] = all(_field_name(k) == k for k in keys)
            if plain:
                records.append(_Record(prefix, index, item))
                continue
            fields: dict[str, Any] = {}
            for key, value in item.items():
                name = _field_name(key)
                if name in fields:
                    where = _Record(prefix, index, {}).where
                    raise PullError(self.name, f"{path}, {where}: field {name!r} given twice")
                fields[name] = value
            records.append(_Record(prefix, index, fields))
        return records

    def _read_bytes(self, path: Path) -> bytes:
        try:
            with path.open("rb") as handle:
                # Read one byte more than allowed: the file may have grown since stat().
                data = handle.read(self._max_bytes + 1)
        except OSError as exc:
            raise PullError(self.name, f"cannot read {path}: {exc.strerror}") from exc
        if len(data) > self._max_bytes:
            raise PullError(
                self.name, f"{path} is larger than `max_bytes` ({self._max_bytes} bytes)"
            )
        return data

    def _read_text(self, path: Path) -> str:
        data = self._read_bytes(path)
        try:
            # utf-8-sig: spreadsheet programs put a byte-order mark before the header.
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise PullError(
                self.name,
                f"{path}, line {line}: not valid UTF-8; export the file as UTF-8",
            ) from exc


TYPE = ConnectorType(
    name="file",
    options_schema=OPTIONS_SCHEMA,
    build=FileConnector.from_context,
    description="An app or identity source read from a CSV, YAML or JSON export.",
)
