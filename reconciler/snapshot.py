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
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from reconciler import yamlio
from reconciler.errors import SnapshotError, YamlError
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

# Characters JSON leaves raw that YAML treats as line breaks or refuses as non-printable.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")

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


def _escape_unsafe(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def record_line(record: Mapping[str, Any]) -> str:
    """One record as a YAML sequence item holding a JSON flow mapping."""
    text = json.dumps(record, ensure_ascii=False)
    if _YAML_UNSAFE.search(text):
        text = _YAML_UNSAFE.sub(_escape_unsafe, text)
    return f"- {text}\n"


def render(key: str, header: str, records: Iterable[Mapping[str, Any]]) -> bytes:
    lines = [f"# {header}\n", f"{key}:\n"]
    lines.extend(record_line(r) for r in records)
    if len(lines) == 2:
        lines[1] = f"{key}: []\n"
    return "".join(lines).encode("utf-8")


def _write_if_changed(path: Path, content: bytes) -> bool:
    try:
        if path.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    os.replace(tmp, path)
    return True


# --- decoding ---------------------------------------------------------------------------


def _read_records(path: Path, key: str) -> list[tuple[int, Mapping[str, Any]]]:
    """(line number, record) pairs; fast per-line JSON, YAML fallback for edited files."""
    if path.stat().st_size > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"{path}: larger than {MAX_SNAPSHOT_BYTES} bytes; refusing to read it")
    records: list[tuple[int, Mapping[str, Any]]] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.startswith(b"- {"):
                try:
                    records.append((number, orjson.loads(raw[2:])))
                    continue
                except orjson.JSONDecodeError:
                    return _read_records_yaml(path, key)
            stripped = raw.strip()
            if not stripped or stripped.startswith(b"#"):
                continue
            if stripped in (f"{key}:".encode(), f"{key}: []".encode()):
                continue
            return _read_records_yaml(path, key)
    return records


def _read_records_yaml(path: Path, key: str) -> list[tuple[int, Mapping[str, Any]]]:
    try:
        data = yamlio.load(path, max_bytes=MAX_SNAPSHOT_BYTES)
    except YamlError as exc:
        raise SnapshotError(
            f"{exc}\n  hint: restore the file with `git checkout -- {path}`"
        ) from exc
    items = (data or {}).get(key) if isinstance(data, dict) else None
    if data is not None and not isinstance(items, list) and items is not None:
        raise SnapshotError(f"{path}: expected a mapping with a `{key}:` list")
    result: list[tuple[int, Mapping[str, Any]]] = []
    for index, item in enumerate(items or []):
        if not isinstance(item, dict):
            raise SnapshotError(f"{path}: {key}[{index}] is not a mapping")
        result.append((index + 1, item))
    return result


def _build(
    path: Path, key: str, factory: Callable[[Mapping[str, Any]], R], ident: Callable[[R], str]
) -> dict[str, R]:
    out: dict[str, R] = {}
    for number, record in _read_records(path, key):
        try:
            value = factory(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(
                f"{path}:{number}: invalid {key[:-1]} record ({exc}); "
                f"restore it with `git checkout -- {path}`"
            ) from exc
        value_id = ident(value)
        if value_id in out:
            raise SnapshotError(f"{path}:{number}: duplicate id {value_id!r}")
        out[value_id] = value
    return out


def _account(record: Mapping[str, Any]) -> Account:
    # The hot path at 100k accounts: trust shapes we wrote, check what could be wrong.
    status, kind = record["status"], record["type"]
    if status not in ACCOUNT_STATUSES or kind not in ACCOUNT_TYPES:
        raise ValueError(f"status {status!r} / type {kind!r}")
    return Account(
        id=str(record["id"]),
        username=str(record.get("username", "")),
        email=str(record.get("email", "")),
        display_name=str(record.get("display_name", "")),
        status=status,
        type=kind,
        roles=tuple(sorted(map(str, record.get("roles") or ()))),
        entitlements=tuple(sorted(map(str, record.get("entitlements") or ()))),
    )


def _identity(record: Mapping[str, Any]) -> Identity:
    status = record["status"]
    if status not in IDENTITY_STATUSES:
        raise ValueError(f"status {status!r}")
    return Identity(
        id=str(record["id"]),
        email=str(record.get("email", "")),
        username=str(record.get("username", "")),
        display_name=str(record.get("display_name", "")),
        status=status,
        groups=tuple(sorted(map(str, record.get("groups") or ()))),
    )


# --- accounts ---------------------------------------------------------------------------


def shard_of(account_id: str) -> str:
    return hashlib.sha1(account_id.encode("utf-8")).hexdigest()[:2]


def _account_files(directory: Path) -> list[Path]:
    single = directory / "accounts.yaml"
    shards = sorted((directory / "accounts").glob("*.yaml"))
    if single.exists() and shards:
        raise SnapshotError(
            f"{directory}: both accounts.yaml and accounts/ exist; remove the stale one"
        )
    return shards or ([single] if single.exists() else [])


def read_accounts(root: Path, app: str) -> dict[str, Account] | None:
    """The app's last snapshot keyed by id, or None if it was never pulled."""
    files = _account_files(app_dir(root, app))
    if not files:
        return None
    accounts: dict[str, Account] = {}
    for path in files:
        part = _build(path, "accounts", _account, lambda a: a.id)
        if accounts.keys() & part.keys():
            raise SnapshotError(f"{path}: an account id appears in two shards")
        accounts.update(part)
    return accounts


def write_accounts(root: Path, app: str, accounts: Iterable[Account]) -> bool:
    """Write the snapshot; True if any file changed."""
    directory = app_dir(root, app)
    ordered = sorted(accounts, key=lambda a: a.id)
    changed = False
    header = "written by reconciler; one account per line"
    if len(ordered) > SHARD_ABOVE:
        shards: dict[str, list[Account]] = {f"{i:02x}": [] for i in range(256)}
        for account in ordered:
            shards[shard_of(account.id)].append(account)
        for name, part in shards.items():
            content = render("accounts", header, (a.to_record() for a in part))
            changed |= _write_if_changed(directory / "accounts" / f"{name}.yaml", content)
        single = directory / "accounts.yaml"
        if single.exists():
            single.unlink()
            changed = True
    else:
        content = render("accounts", header, (a.to_record() for a in ordered))
        changed |= _write_if_changed(directory / "accounts.yaml", content)
        shard_dir = directory / "accounts"
        if shard_dir.exists():
            for path in shard_dir.glob("*.yaml"):
                path.unlink()
            shard_dir.rmdir()
            changed = True
    return changed


def accounts_digest(root: Path, app: str) -> str:
    digest = hashlib.sha256()
    for path in _account_files(app_dir(root, app)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_roles(root: Path, app: str) -> list[Role]:
    path = app_dir(root, app) / "roles.yaml"
    if not path.exists():
        return []
    return list(_build(path, "roles", Role.from_record, lambda r: r.name).values())


def write_roles(root: Path, app: str, roles: Iterable[Role]) -> bool:
    ordered = sorted(roles, key=lambda r: r.name)
    content = render(
        "roles", "written by reconciler; one role per line", (r.to_record() for r in ordered)
    )
    return _write_if_changed(app_dir(root, app) / "roles.yaml", content)


# --- identities -------------------------------------------------------------------------


def read_identities(root: Path, source: str) -> dict[str, Identity] | None:
    path = identities_file(root, source)
    if not path.exists():
        return None
    return _build(path, "identities", _identity, lambda i: i.id)


def write_identities(root: Path, source: str, identities: Iterable[Identity]) -> bool:
    ordered = sorted(identities, key=lambda i: i.id)
    header = "written by reconciler; one identity per line"
    content = render("identities", header, (i.to_record() for i in ordered))
    return _write_if_changed(identities_file(root, source), content)


def identities_digest(root: Path, source: str) -> str:
    path = identities_file(root, source)
    return hashlib.sha256(path.read_bytes() if path.exists() else b"").hexdigest()


# --- meta -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Meta:
    """When the data last changed and how big it is; rewritten only when the data changes."""

    name: str
    kind: str  # accounts | identities
    pulled_at: str
    count: int
    digest: str

    def to_data(self) -> dict[str, Any]:
        key = "app" if self.kind == "accounts" else "source"
        return {
            key: self.name,
            "kind": self.kind,
            "pulled_at": self.pulled_at,
            "count": self.count,
            "digest": self.digest,
            "pull_status": "complete",
        }


def write_meta(path: Path, meta: Meta) -> bool:
    header = "# written by reconciler; pulled_at is the time of the pull that changed the data\n"
    return _write_if_changed(path, (header + yamlio.dump(meta.to_data())).encode("utf-8"))


def read_meta(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data = yamlio.load(path)
    return data if isinstance(data, dict) else None


def save_app(
    root: Path, app: str, accounts: Sequence[Account], roles: Sequence[Role] | None, pulled_at: str
) -> bool:
    """Write an app's accounts (and roles, when given) and, if anything changed or the
    app is new, its meta.yaml. True if any file changed."""
    directory = app_dir(root, app)
    first = not (directory / "meta.yaml").exists()
    changed = write_accounts(root, app, accounts)
    if roles is not None:
        changed |= write_roles(root, app, roles)
    if changed or first:
        meta = Meta(app, "accounts", pulled_at, len(accounts), accounts_digest(root, app))
        changed |= write_meta(directory / "meta.yaml", meta)
    return changed
