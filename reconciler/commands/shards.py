"""`reconciler shards`: the apps split for a matrix of checks (`reconciler.shards`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from reconciler import snapshot
from reconciler.commands import EXIT_OK, open_repo
from reconciler.output import emit
from reconciler.shards import shard


@dataclass(frozen=True)
class ShardsOptions:
    repo: Path
    count: int = 1
    apps: tuple[str, ...] = ()


def shards(options: ShardsOptions) -> int:
    """Print the shards as a JSON list of lists of app names, on one line; an app never
    checked weighs nothing but its cost as an app."""
    repo = open_repo(options.repo)
    sizes = {}
    for app in repo.select_apps(options.apps):
        meta = snapshot.read_meta(snapshot.app_dir(repo.root, app) / "meta.yaml") or {}
        count = meta.get("count")
        sizes[app] = count if isinstance(count, int) and count >= 0 else 0
    # One line: a workflow step writes it to $GITHUB_OUTPUT as it is.
    emit(orjson.dumps(shard(sizes, options.count)).decode())
    return EXIT_OK
