"""Apps split into shards of about equal work, for checks that run side by side (a GitHub
Actions matrix, one job per shard).

Pure. An app weighs its accounts plus a fixed cost for being an app at all (a pull's
round trips, a commit, a plan), so that a shard of many small apps does not take as long
as one of a few large ones. Largest first, each app goes to the lightest shard so far
(the greedy longest-processing-time rule: within 4/3 of the best split).
"""

from __future__ import annotations

from collections.abc import Mapping

PER_APP = 500  # accounts' worth of work for being one more app


def shard(sizes: Mapping[str, int], count: int) -> list[list[str]]:
    """The apps of `sizes` (app → accounts) in at most `count` non-empty shards, each
    sorted by name; the same input always gives the same shards."""
    if count < 1:
        raise ValueError("count must be at least 1")
    shards: list[list[str]] = [[] for _ in range(min(count, len(sizes)))]
    loads = [0] * len(shards)
    for app in sorted(sizes, key=lambda a: (-sizes[a], a)):
        lightest = loads.index(min(loads))
        shards[lightest].append(app)
        loads[lightest] += sizes[app] + PER_APP
    return [sorted(apps) for apps in shards]
