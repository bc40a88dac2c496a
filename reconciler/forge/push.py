"""Pushing main when other jobs push it too.

Checks that run side by side (a GitHub Actions matrix over apps, one job per shard) each
commit their own apps' imports on their copy of main. The first to push wins; each of
the others finds the remote's main moved, rebases its commits on it, and tries again,
a bounded number of times with growing pauses. The jobs change different files (each
its own apps' snapshots), so the rebase never meets a conflict unless two jobs imported
the same app; then nothing is pushed and the error says so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from reconciler.errors import GitError
from reconciler.git import Git

ATTEMPTS = 6
FIRST_PAUSE = 0.5  # seconds; doubled after each refused push, up to MAX_PAUSE
MAX_PAUSE = 8.0


def push_rebasing(
    git: Git,
    remote: str,
    branch: str,
    *,
    attempts: int = ATTEMPTS,
    pause: Callable[[float], None] = time.sleep,
) -> int:
    """Push `branch` (checked out) to `remote`; how many times it was rebased first.
    GitError when the rebase conflicts (the branch is left as it was) or the remote
    still moved after `attempts` pushes."""
    tracking = f"refs/remotes/{remote}/{branch}"
    for attempt in range(attempts):
        try:
            git.push(remote, f"refs/heads/{branch}:refs/heads/{branch}")
            return attempt
        except GitError as refused:
            if not moved(git, remote, branch, tracking):
                raise refused from None  # git's own reason stands (a hook, a token)
        rebase(git, tracking, remote, branch)
        if attempt + 1 < attempts:
            delay = min(MAX_PAUSE, FIRST_PAUSE * 2**attempt)
            pause(delay * random.uniform(0.5, 1.5))
    raise GitError(
        f"{remote}'s {branch} moved on each of {attempts} pushes (other checks pushing at "
        f"the same time); the imports are committed here but not pushed. Run the check "
        "again, or run fewer checks at once"
    )


def moved(git: Git, remote: str, branch: str, tracking: str) -> bool:
    """Whether the remote's branch holds commits ours does not: the reason a push is
    refused when another job pushed first. False when it cannot even be fetched."""
    try:
        git.fetch(remote, f"+refs/heads/{branch}:{tracking}")
    except GitError:
        return False
    return not git.is_ancestor(tracking, f"refs/heads/{branch}")


def rebase(git: Git, onto: str, remote: str, branch: str) -> None:
    """Put the branch's own commits on top of `onto`; on a conflict, leave it as it was."""
    try:
        git.run("rebase", "-q", "--no-autosquash", onto)
    except GitError:
        git.run("rebase", "--abort", check=False)
        ours = f"refs/heads/{branch}"
        base = git.run("merge-base", onto, ours).strip()
        both = set(git.changed_paths(base, ours)) & set(git.changed_paths(base, onto))
        shown = ", ".join(sorted(both)[:5]) or "the same files"
        raise GitError(
            f"{remote}'s {branch} changed files this check committed ({shown}): "
            "another check imported the same app at the same time. Nothing was pushed; "
            "run the check again"
        ) from None
