"""Validate reconciler.yaml and policies/*.yaml, reporting every problem at once.

Each problem is a `Diagnostic` naming the file, line and column, written for the admin
who has to fix it: unknown keys with the keys that are allowed, wrong types with what was
expected, literal secrets (never echoed), and cross-file mistakes such as a policy
naming an identity source that does not exist or an app governed by two policies.

The JSON Schemas in `reconciler/schemas/` are the reference for the file formats; the
config schema's list of connector types and their options is filled in from the
connector registry at run time, so a new connector needs no schema edit here.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeGuard

# jsonschema ships no type information; types-jsonschema is not a dependency.
from jsonschema import Draft202012Validator, ValidationError  # type: ignore[import-untyped,unused-ignore]

from reconciler import policy_checks, snapshot, yamlio
from reconciler.config import CONFIG_FILE, POLICY_DIR, Policy, policy_for
from reconciler.diagnostics import Diagnostic, at
from reconciler.errors import ConfigError, ReconcilerError, YamlError

SCHEMA_NAMES = ("config", "policy", "plan", "history", "snapshot")
SYSTEM_SECTIONS = ("apps", "identity_sources")
# The options of `notify.smtp` that name environment variables holding credentials.
SMTP_SECRET_OPTIONS = ("username_env", "password_env")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Keys that would hold a secret itself rather than the name of a variable holding it.
SECRET_KEY = re.compile(r"(^|_)(token|password|passwd|secret|api_?key|private_key)$", re.I)
# scheme://user:password@host
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@", re.I)
_GLOB_CHARS = frozenset("*?[")
_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}
_SECTION_NOUNS = {"apps": "app", "identity_sources": "identity source"}

JsonPath = tuple[str | int, ...]


class ConnectorSchema(Protocol):
    """What validation needs from a registry entry (reconciler.connectors.ConnectorType)."""

    @property
    def options_schema(self) -> Mapping[str, Any]: ...

    @property
    def secret_env_options(self) -> tuple[str, ...]: ...


Registry = Mapping[str, ConnectorSchema]


@dataclass(frozen=True)
class RepoFiles:
    """The configuration files of an access repo as read, and what is wrong with them.

    `config` and `policies` hold the parsed data of every file that could be read (even
    if it has problems); use them only when `diagnostics` is empty.
    """

    config: Mapping[str, Any] | None
    policies: tuple[tuple[str, Mapping[str, Any]], ...]
    diagnostics: tuple[Diagnostic, ...]


@cache
def _schema_text(name: str) -> str:
    file_name = name if name.endswith(".json") else f"{name}.schema.json"
    return (resources.files("reconciler") / "schemas" / file_name).read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """A shipped JSON Schema by name (`config`, `policy`, `plan`, `history`, `snapshot`).

    Returns a fresh copy each time, so callers may change it. The `config` schema
    returned here is the static base; see `config_schema` for the complete one.
    """
    schema: dict[str, Any] = json.loads(_schema_text(name))
    return schema


def config_schema(registry: Registry | None = None) -> dict[str, Any]:
    """The schema of reconciler.yaml with connector types and options from `registry`.

    Each system must have a `type` from the registry; `allOf` holds one if/then per
    type that applies that connector's options schema (plus `type` itself).
    """
    registry = _registry(registry)
    schema = load_schema("config")
    system = schema["$defs"]["system"]
    system["properties"]["type"]["enum"] = sorted(registry)
    system["allOf"] = [
        {
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": _system_schema(name, registry[name]),
        }
        for name in sorted(registry)
    ]
    return schema


def _system_schema(name: str, connector: ConnectorSchema) -> dict[str, Any]:
    schema = copy.deepcopy(dict(connector.options_schema))
    properties = dict(schema.get("properties") or {})
    properties["type"] = {
        "const": name,
        "description": getattr(connector, "description", "") or f"The {name} connector.",
    }
    schema["properties"] = properties
    # Unknown keys are errors everywhere, whether or not the connector says so.
    schema.setdefault("additionalProperties", False)
    # Its own resource, so `#/$defs/...` references inside keep meaning the connector's.
    schema["$id"] = f"urn:reconciler:connector:{name}"
    return schema


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    # Imported when needed: the registry imports every connector and their libraries,
    # which validating a policy or a plan file does not need.
    from reconciler.connectors import CONNECTORS

    return CONNECTORS


def validate_repo(root: Path, registry: Registry | None = None) -> list[Diagnostic]:
    """Every problem in `root/reconciler.yaml` and `root/policies/*.yaml`, sorted by file
    and line, including what the snapshots show to be wrong (a role rule's group that no
    identity holds). An empty list means the configuration is valid."""
    return list(read_repo(root, registry, against_snapshots=True).diagnostics)


def validate_file(path: Path, schema_name: str, *, display: str | None = None) -> list[Diagnostic]:
    """Every problem in one file checked against a shipped schema (e.g. a plan)."""
    display = display or str(path)
    loaded = _load(path, display)
    if isinstance(loaded, Diagnostic):
        return [loaded]
    data, marks = loaded
    return _check_schema(data, marks, load_schema(schema_name), display)


def validate_data(
    data: Any, marks: yamlio.Marks, schema_name: str, display: str
) -> list[Diagnostic]:
    """Every problem in data already read (e.g. from a git revision) against a shipped schema."""
    return _check_schema(data, marks, load_schema(schema_name), display)


def read_repo(
    root: Path, registry: Registry | None = None, *, against_snapshots: bool = False
) -> RepoFiles:
    """Read and check the configuration of the access repo at `root`.

    Continues past every problem, including unreadable files, so that one run reports
    everything that needs fixing. `against_snapshots` holds the policies against the
    identity snapshots too (`reconciler validate`); every other command leaves that out,
    since reading a large snapshot costs each of them, and a check blocks a plan that a
    role rule's unknown group would make anyway (`policy.role_blocks`).
    """
    registry = _registry(registry)
    diagnostics: list[Diagnostic] = []
    config: Mapping[str, Any] | None = None
    config_marks: yamlio.Marks = {}

    config_path = root / CONFIG_FILE
    if not config_path.is_file():
        diagnostics.append(
            Diagnostic(
                CONFIG_FILE,
                1,
                1,
                f"{CONFIG_FILE} not found in {root}",
                f"run `reconciler init {root}` to create one, "
                "or point --repo at your access repository",
            )
        )
    else:
        loaded = _load(config_path, CONFIG_FILE)
        if isinstance(loaded, Diagnostic):
            diagnostics.append(loaded)
        else:
            data, config_marks = loaded
            diagnostics += _check_config(data, config_marks, registry)
            if isinstance(data, Mapping):
                config = data

    policies: list[tuple[str, Mapping[str, Any], yamlio.Marks]] = []
    # A policy that could not be read may select any app: without it, "no policy
    # selects app X" would be a guess.
    policies_complete = True
    policy_dir = root / POLICY_DIR
    for stray in sorted(policy_dir.glob("*.yml")):
        diagnostics.append(
            Diagnostic(
                f"{POLICY_DIR}/{stray.name}",
                1,
                1,
                "policy files must end in .yaml; this file is ignored",
                f"rename it to {stray.stem}.yaml",
            )
        )
    policy_paths = sorted(p for p in policy_dir.glob("*.yaml") if p.is_file())
    for path in policy_paths:
        display = f"{POLICY_DIR}/{path.name}"
        loaded = _load(path, display)
        if isinstance(loaded, Diagnostic):
            diagnostics.append(loaded)
            policies_complete = False
            continue
        data, marks = loaded
        durations, said = policy_checks.check_durations(data, marks, display)
        schema_view = policy_checks.with_dates_as_text(data)
        diagnostics += _check_schema(schema_view, marks, load_schema("policy"), display, skip=said)
        diagnostics += durations + policy_checks.check_exceptions(data, marks, display)
        diagnostics += policy_checks.check_seat_cost(data, marks, display)
        if against_snapshots:
            groups = _groups(root, data)
            diagnostics += policy_checks.check_role_groups(data, marks, display, groups)
        if not isinstance(data, Mapping) or not _string_list(data.get("apps")):
            policies_complete = False
        if isinstance(data, Mapping):
            policies.append((display, data, marks))

    if config is not None:
        diagnostics += _check_cross_file(config, config_marks, policies, policies_complete)

    order = {CONFIG_FILE: 0} | {
        f"{POLICY_DIR}/{path.name}": i + 1 for i, path in enumerate(policy_paths)
    }
    unique = dict.fromkeys(diagnostics)  # the same problem may be found twice
    ordered = sorted(
        unique,
        key=lambda d: (order.get(d.path, len(order)), d.path, d.line, d.column, d.message),
    )
    return RepoFiles(
        config=config,
        policies=tuple((display, data) for display, data, _ in policies),
        diagnostics=tuple(ordered),
    )


def _groups(root: Path, policy: Any) -> frozenset[str] | None:
    """Every group an identity of the policy's identity source holds, as its last
    snapshot says; None when the policy has no role rules or the source no snapshot."""
    source = policy.get("identity_source") if isinstance(policy, Mapping) else None
    if not isinstance(source, str) or not policy.get("allowed_roles"):
        return None
    try:
        identities = snapshot.read_identities(root, source)
    except (OSError, ReconcilerError):
        return None  # an unreadable snapshot fails the check, which says so
    if identities is None:
        return None
    return frozenset(group for i in identities for group in identities[i].groups)


def _load(path: Path, display: str) -> tuple[Any, yamlio.Marks] | Diagnostic:
    try:
        return yamlio.load_with_marks(path)
    except YamlError as exc:
        return Diagnostic(display, exc.line, exc.column, exc.message, exc.hint)
    except OSError as exc:
        return Diagnostic(display, 1, 1, f"cannot read the file: {exc.strerror or exc}")


def _string_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# --- reconciler.yaml -----------------------------------------------------------------


def _check_config(data: Any, marks: yamlio.Marks, registry: Registry) -> list[Diagnostic]:
    diagnostics, handled = _check_secrets(data, marks, registry)
    secret_options = {option for c in registry.values() for option in c.secret_env_options}
    secret_options.update(SMTP_SECRET_OPTIONS)
    diagnostics += _check_schema(
        data,
        marks,
        config_schema(registry),
        CONFIG_FILE,
        skip=handled,
        secret_keys=secret_options,
    )
    return diagnostics


def _systems(data: Any) -> Iterator[tuple[str, str, Mapping[Any, Any]]]:
    """(section, name, options) of every app and identity source that is a mapping."""
    if not isinstance(data, Mapping):
        return
    for section in SYSTEM_SECTIONS:
        systems = data.get(section)
        if isinstance(systems, Mapping):
            for name, system in systems.items():
                if isinstance(system, Mapping):
                    yield section, str(name), system


def _secret_holders(
    data: Any, registry: Registry
) -> Iterator[tuple[JsonPath, str, Mapping[Any, Any], tuple[str, ...]]]:
    """(path, name, options, secret options) of every part of reconciler.yaml that names
    the environment variables holding its credentials: apps, identity sources, notify.smtp."""
    for section, name, system in _systems(data):
        kind = system.get("type")
        connector = registry.get(kind) if isinstance(kind, str) else None
        yield (section, name), name, system, connector.secret_env_options if connector else ()
    notify = data.get("notify") if isinstance(data, Mapping) else None
    smtp = notify.get("smtp") if isinstance(notify, Mapping) else None
    if isinstance(smtp, Mapping):
        yield ("notify", "smtp"), "smtp", smtp, SMTP_SECRET_OPTIONS


def _check_secrets(
    data: Any, marks: yamlio.Marks, registry: Registry
) -> tuple[list[Diagnostic], set[JsonPath]]:
    """Secrets written into reconciler.yaml, and the paths whose schema errors they replace.

    Messages never include the values: they may be live credentials, and diagnostics end
    up in CI logs.
    """
    diagnostics: list[Diagnostic] = []
    handled: set[JsonPath] = set()
    for where, name, system, secret_options in _secret_holders(data, registry):
        for option in secret_options:
            if option not in system:
                continue
            value = system[option]
            if isinstance(value, str) and ENV_NAME.fullmatch(value):
                continue
            path: JsonPath = (*where, option)
            handled.add(path)
            variable = _variable_name(name, option)
            diagnostics.append(
                at(
                    marks,
                    CONFIG_FILE,
                    path,
                    f"{_dotted(path)} looks like a literal secret; put the secret in an "
                    "environment variable and name the variable here",
                    f"for example `{option}: {variable}`, with {variable} set in the "
                    "environment (a CI secret); variable names are upper-case letters, "
                    "digits and '_'. If this was a real secret, revoke it: it is in git now",
                )
            )
        for option, value in system.items():
            path = (*where, option)
            if isinstance(value, str) and URL_PASSWORD.match(value):
                handled.add(path)
                diagnostics.append(
                    at(
                        marks,
                        CONFIG_FILE,
                        path,
                        f"{_dotted(path)} contains a password (user:password@ in the URL)",
                        "remove the credentials from the URL and give them to the connector "
                        "through its `*_env` options; if the password was real, change it",
                    )
                )
    return diagnostics, handled


def _variable_name(system: str, option: str) -> str:
    stem = option.removesuffix("_env")
    return re.sub(r"[^A-Z0-9]+", "_", f"{system}_{stem}".upper()).strip("_") or "SECRET"


# --- schema errors as diagnostics ----------------------------------------------------


def _check_schema(
    data: Any,
    marks: yamlio.Marks,
    schema: Mapping[str, Any],
    display: str,
    *,
    skip: set[JsonPath] | None = None,
    secret_keys: Iterable[str] = (),
) -> list[Diagnostic]:
    """Every schema error in `data`, as diagnostics located with `marks`.

    Errors at or below a path in `skip` are left out (a better message was given);
    values under keys in `secret_keys` or that look like secrets are never shown.
    """
    skip = skip or set()
    hidden = frozenset(secret_keys)
    errors = list(Draft202012Validator(schema).iter_errors(data))
    # A value of the wrong type also fails its enum, const or pattern; one message is enough.
    typed = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    diagnostics: list[Diagnostic] = []
    for error in errors:
        path: JsonPath = tuple(error.absolute_path)
        if any(path[: len(p)] == p for p in skip):
            continue
        if error.validator != "type" and path in typed and not _from_property_names(error):
            continue
        secret = any(isinstance(k, str) and (k in hidden or SECRET_KEY.search(k)) for k in path)
        diagnostics += _describe(error, path, marks, display, secret, skip)
    return sorted(set(diagnostics), key=lambda d: (d.line, d.column, d.message))


def _describe(
    error: ValidationError,
    path: JsonPath,
    marks: yamlio.Marks,
    display: str,
    secret: bool,
    skip: set[JsonPath],
) -> list[Diagnostic]:
    where = _dotted(path)
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    value = "a value (hidden)" if secret else _show(error.instance)
    validator = error.validator

    if _from_property_names(error):
        return [_bad_name(error, path, marks, display)]

    if validator == "additionalProperties" and error.validator_value is False:
        allowed = list(schema.get("properties") or {})
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        out = []
        for key in instance:
            if key in allowed or (*path, key) in skip:
                continue
            out.append(_unknown_key(key, path, allowed, marks, display))
        return out

    if validator == "required":
        properties = schema.get("properties") or {}
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        out = []
        for key in error.validator_value:
            if key in instance:
                continue
            prop = properties.get(key) or {}
            hint = f"add `{key}:`"
            if "enum" in prop:
                hint += f" with one of: {', '.join(str(o) for o in prop['enum'])}"
            if prop.get("description"):
                hint += f" — {prop['description']}"
            place = f"{where}: missing" if path else "missing"
            out.append(at(marks, display, path, f"{place} required key {key!r}", hint))
        return out

    hint = str(schema.get("description", ""))
    if validator == "type":
        expected = _expected(error.validator_value)
        message = f"{where}: expected {expected}, got {value}"
        if not path:
            message = f"the file must hold {expected} at the top level, got {value}"
            if error.instance is None:
                message = f"the file is empty; it must hold {expected}"
        return [at(marks, display, path, message, hint)]

    if validator == "enum":
        options = ", ".join(str(o) for o in error.validator_value)
        if len(path) == 3 and path[0] in SYSTEM_SECTIONS and path[2] == "type":
            message = f"{where}: unknown connector type {value}; use one of: {options}"
            return [at(marks, display, path, message)]
        message = f"{where}: expected one of {options}; got {value}"
        return [at(marks, display, path, message, hint)]

    if validator == "const":
        message = f"{where}: must be {json.dumps(error.validator_value)}, got {value}"
        return [at(marks, display, path, message, hint)]

    limits = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "greater than",
        "exclusiveMaximum": "less than",
    }
    if validator in limits:
        message = f"{where}: must be {limits[validator]} {error.validator_value}, got {value}"
        return [at(marks, display, path, message, hint)]

    if validator in ("minItems", "minLength", "minProperties") and error.validator_value == 1:
        return [at(marks, display, path, f"{where}: must not be empty", hint)]

    if validator == "pattern":
        pattern = _shown_pattern(str(error.validator_value))
        return [at(marks, display, path, f"{where}: {value} does not match {pattern}", hint)]

    if validator == "uniqueItems" and isinstance(error.instance, list):
        repeated = next(
            (item for i, item in enumerate(error.instance) if item in error.instance[:i]), None
        )
        shown = "a value (hidden)" if secret else _show(repeated)
        return [at(marks, display, path, f"{where}: lists {shown} more than once", hint)]

    # Anything rarer: jsonschema's own words, unless they would show a secret.
    message = f"{where}: invalid value (hidden)" if secret else f"{where}: {error.message}"
    return [at(marks, display, path, message, hint)]


def _shown_pattern(pattern: str) -> str:
    # `$(?!\n)` ends patterns that must not accept a final newline; people read `$`.
    return pattern.removeprefix("^").removesuffix("(?!\\n)").removesuffix("$")


def _from_property_names(error: ValidationError) -> bool:
    return "propertyNames" in error.relative_schema_path


def _bad_name(
    error: ValidationError, path: JsonPath, marks: yamlio.Marks, display: str
) -> Diagnostic:
    name = error.instance
    noun = _SECTION_NOUNS.get(str(path[-1]), "key") if path else "key"
    if path and path[-1] == "domain_aliases":
        noun = "domain"
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    hint = str(schema.get("description", ""))
    if not isinstance(name, str):
        message = f"{noun} name {name!r} must be a string"
        return at(marks, display, (*path, name), message, f"quote it: '{name}'")
    pattern = _shown_pattern(str(schema.get("pattern", "")))
    message = f"{noun} name {name!r} must match {pattern}"
    if noun == "domain":
        message = f"{name!r} is not a domain name"
    elif noun != "key":
        hint = f"{hint} The name is used in file paths and branch names.".strip()
    return at(marks, display, (*path, name), message, hint)


def _unknown_key(
    key: Any, path: JsonPath, allowed: Sequence[str], marks: yamlio.Marks, display: str
) -> Diagnostic:
    place = f"in {_dotted(path)}" if path else "at the top level"
    if isinstance(key, str) and SECRET_KEY.search(key):
        env_options = [a for a in allowed if a.endswith("_env")]
        preferred = f"{key}_env" if f"{key}_env" in allowed else None
        if preferred is None and env_options:
            preferred = env_options[0]
        form = f"`{preferred}: VARIABLE_NAME`" if preferred else "a `*_env` option"
        return at(
            marks,
            display,
            (*path, key),
            f"{key!r} {place} would hold a literal secret; secrets must not be written "
            "into the access repo",
            f"put the secret in an environment variable and name the variable with {form}; "
            "if this was a real secret, revoke it: it is in git now",
        )
    listed = ", ".join(allowed) if allowed else "none"
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    hint = f"did you mean {close[0]!r}?" if close else ""
    if key == "seat_cost" and len(path) == 2 and path[0] == "apps":
        # Seat cost was once an app's key here; it is policy now (DESIGN §6).
        hint = (
            f"seat cost is set in the app's policy: move this mapping unchanged into the "
            f"policy under {POLICY_DIR}/ that selects {path[1]}, keyed by the app's name: "
            f"`seat_cost: {{{path[1]}: {{amount: …, currency: …, per: …}}}}`"
        )
    return at(marks, display, (*path, key), f"unknown key {key!r} {place}; allowed: {listed}", hint)


def _expected(types: object) -> str:
    names = [types] if isinstance(types, str) else list(types) if isinstance(types, list) else []
    # `null` is accepted for empty sections; it is not worth suggesting.
    words = [_TYPE_WORDS.get(str(t), str(t)) for t in names if t != "null"] or ["nothing"]
    return " or ".join(words)


def _show(value: object) -> str:
    """A short, readable rendering of a value from a file, for a message."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    # e.g. an unquoted 2024-01-01 that YAML read as a date
    return f"a {type(value).__name__} ({value}; quote it to make it a string)"


def _dotted(path: JsonPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


# --- across files --------------------------------------------------------------------


def _check_cross_file(
    config: Mapping[str, Any],
    config_marks: yamlio.Marks,
    policies: Sequence[tuple[str, Mapping[str, Any], yamlio.Marks]],
    policies_complete: bool,
) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    sources = config.get("identity_sources")
    source_names = sorted(str(n) for n in sources) if isinstance(sources, Mapping) else []
    apps = config.get("apps")
    app_names = [str(n) for n in apps] if isinstance(apps, Mapping) else []

    stubs: list[Policy] = []
    where: dict[str, yamlio.Marks] = {}
    for display, data, marks in policies:
        source = data.get("identity_source")
        if isinstance(source, str) and source not in source_names:
            close = difflib.get_close_matches(source, source_names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            if source_names:
                hint += f"defined identity sources: {', '.join(source_names)}"
            else:
                hint = f"add {source!r} under `identity_sources:` in {CONFIG_FILE}"
            diagnostics.append(
                at(
                    marks,
                    display,
                    ("identity_source",),
                    f"identity_source {source!r} is not defined in {CONFIG_FILE}",
                    hint,
                )
            )
        selected = data.get("apps")
        if not _string_list(selected):
            continue
        for index, entry in enumerate(selected):
            if _is_glob(entry) or entry in app_names:
                continue
            close = difflib.get_close_matches(entry, app_names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            hint += f"configured apps: {', '.join(app_names) or 'none'}"
            diagnostics.append(
                at(
                    marks,
                    display,
                    ("apps", index),
                    f"apps[{index}]: no app named {entry!r} in {CONFIG_FILE}",
                    hint,
                )
            )
        # Only what selection looks at: the identity source may still be invalid here.
        stubs.append(Policy(source_file=display, apps=tuple(selected), identity_source=""))
        where[display] = marks

    for app in app_names:
        try:
            policy_for(app, stubs)
        except ConfigError as exc:
            message, _, hint = str(exc).partition("; ")
            conflict = [p for p in stubs if app in p.apps] or [p for p in stubs if p.selects(app)]
            if not conflict:
                if policies_complete:
                    path: JsonPath = ("apps", app)
                    diagnostics.append(at(config_marks, CONFIG_FILE, path, message, hint))
                continue
            # Point at the last policy that claims the app: usually the one just added.
            last = conflict[-1]
            index = next(
                i
                for i, entry in enumerate(last.apps)
                if entry == app or (app not in last.apps and fnmatch.fnmatchcase(app, entry))
            )
            diagnostics.append(
                at(where[last.source_file], last.source_file, ("apps", index), message, hint)
            )
    diagnostics += _check_seat_cost_apps(policies, stubs, app_names, policies_complete)
    return diagnostics


def _check_seat_cost_apps(
    policies: Sequence[tuple[str, Mapping[str, Any], yamlio.Marks]],
    stubs: Sequence[Policy],
    app_names: Sequence[str],
    policies_complete: bool,
) -> list[Diagnostic]:
    """A seat cost for an app its policy selects by glob but that reconciler.yaml does not
    have, or that another policy governs: its price would never be used. (One for an app
    the policy does not select at all is `policy_checks.check_seat_cost`'s.)"""
    diagnostics: list[Diagnostic] = []
    by_file = {stub.source_file: stub for stub in stubs}
    for display, data, marks in policies:
        stub = by_file.get(display)
        if stub is None:
            continue
        for app in policy_checks.priced_apps(data):
            if not stub.selects(app):
                continue
            path: JsonPath = ("seat_cost", app)
            if app not in app_names:
                close = difflib.get_close_matches(app, app_names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                hint += f"configured apps: {', '.join(app_names) or 'none'}"
                message = f"seat_cost.{app}: no app named {app!r} in {CONFIG_FILE}"
                diagnostics.append(at(marks, display, path, message, hint))
                continue
            if not policies_complete:
                continue
            try:
                governing = policy_for(app, list(stubs))
            except ConfigError:
                continue  # two policies claim it: said above
            if governing.source_file != display:
                diagnostics.append(
                    at(
                        marks,
                        display,
                        path,
                        f"seat_cost.{app}: {app!r} is governed by {governing.source_file}, "
                        "which names it, so this seat cost is never used",
                        f"move it to `seat_cost:` in {governing.source_file}",
                    )
                )
    return diagnostics


def _is_glob(entry: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(entry)
