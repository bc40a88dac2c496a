"""Extract the GitHub REST response schemas that the organisation fake answers with, from
`@octokit/openapi`'s `generated/api.github.com.deref.json` (GitHub's REST description,
MIT), converted from OpenAPI 3.0 to JSON Schema 2020-12; writes rest.schema.json's text.

    python extract.py package/generated/api.github.com.deref.json > rest.schema.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

KEEP_FORMATS = frozenset({"uri", "date-time"})
DROPPED = frozenset({"example", "examples", "description", "title", "externalDocs", "nullable"})


def convert(schema: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema 2020-12: `nullable` becomes a type union;
    prose, examples and most formats go."""
    if isinstance(schema, list):
        return [convert(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in DROPPED or (key == "format" and value not in KEEP_FORMATS):
            continue
        if key == "properties":
            out[key] = {name: convert(sub) for name, sub in value.items()}
        else:
            out[key] = convert(value)
    if not schema.get("nullable"):
        return out
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [out, {"type": "null"}]}


def main(source: str) -> None:
    raw = Path(source).read_bytes()
    description = json.loads(raw)
    paths = description["paths"]

    def answer(path: str, status: str = "200") -> Any:
        found = paths[path]["get"]["responses"][status]["content"]["application/json"]
        return convert(found["schema"])

    defs = {
        "simple-user-list": answer("/orgs/{org}/members"),
        "outside-collaborator-list": answer("/orgs/{org}/outside_collaborators"),
        "organization-invitation-list": answer("/orgs/{org}/invitations"),
        "team-list": answer("/orgs/{org}/teams"),
        "team-member-list": answer("/orgs/{org}/teams/{team_slug}/members"),
        "org-membership": answer("/orgs/{org}/memberships/{username}"),
        "team-membership": answer("/orgs/{org}/teams/{team_slug}/memberships/{username}"),
        "user": answer("/user/{account_id}"),
        "basic-error": answer("/orgs/{org}/memberships/{username}", "404"),
    }
    defs["simple-user"] = defs["simple-user-list"]["items"]
    defs["organization-invitation"] = defs["organization-invitation-list"]["items"]
    defs["team"] = defs["team-list"]["items"]
    digest = hashlib.sha256(raw).hexdigest()
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:reconciler:vendor:github:rest",
        "title": "GitHub REST answers the organisation fake gives",
        "$comment": (
            f"Extracted by tests/vendor/github/extract.py from @octokit/openapi "
            f"{description['info']['version']} generated/api.github.com.deref.json (sha256 "
            f"{digest}); GitHub's REST description, MIT."
        ),
        "$defs": defs,
    }
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1])
