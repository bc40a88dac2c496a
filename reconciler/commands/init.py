"""`reconciler init DIR`: write the skeleton of an access repo (config, example policy,
example exports, GitHub Actions workflows) into a new or existing git repository."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from reconciler import yamlio
from reconciler.commands import EXIT_OK
from reconciler.errors import ReconcilerError
from reconciler.files import write_atomic
from reconciler.git import Git
from reconciler.output import emit


@dataclass(frozen=True)
class InitOptions:
    directory: Path


def skeleton_files(root: Traversable, prefix: str = "") -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in root.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            files.update(skeleton_files(entry, f"{name}/"))
        elif entry.is_file():
            files[name] = entry.read_bytes()
    return files


CONFIG_FILE = "reconciler.yaml"
# The skeleton's line that names the main branch; init writes the repository's branch.
_BRANCH_LINE = b"  branch: main\n"
# apply.yml runs on a push to the main branch: the same branch as `forge.branch`.
APPLY_WORKFLOW = ".github/workflows/apply.yml"
_APPLY_BRANCH_LINE = b"      - main\n"
# Characters GitHub reads as a pattern in a branch filter; a backslash makes them literal.
_FILTER_PATTERN = re.compile(r"([*?+!\[\]])")


def _replace_line(content: bytes, line: bytes, new: str, name: str) -> bytes:
    if content.count(line) != 1:
        raise AssertionError(f"the skeleton's {name} has no single {line!r} line")
    return content.replace(line, new.encode("utf-8"))


def with_branch(config: bytes, branch: str) -> bytes:
    """The skeleton's reconciler.yaml with `forge.branch` set to `branch`."""
    # Through the YAML writer: a branch may be named `1.0` or `yes`, which must stay strings.
    line = "  " + yamlio.dump({"branch": branch})
    return _replace_line(config, _BRANCH_LINE, line, CONFIG_FILE)


def apply_workflow_on_branch(workflow: bytes, branch: str) -> bytes:
    """The skeleton's apply.yml, started by a push to `branch` instead of `main`."""
    line = "      " + yamlio.dump([_FILTER_PATTERN.sub(r"\\\1", branch)])
    return _replace_line(workflow, _APPLY_BRANCH_LINE, line, APPLY_WORKFLOW)


def init(options: InitOptions) -> int:
    target = options.directory
    files = skeleton_files(resources.files("reconciler") / "skeleton")
    existing = sorted(name for name in files if (target / name).exists())
    if existing:
        raise ReconcilerError(
            f"{target} already has {', '.join(existing)}; reconciler init never overwrites "
            "files: move them away or edit them by hand"
        )
    fresh = not (target / ".git").exists()
    git = Git.init(target) if fresh else Git.open(target)
    # check and apply refuse to run on any other branch than this one.
    branch = git.current_branch()
    if not branch:
        raise ReconcilerError(
            f"{target} has no branch checked out (detached HEAD); check out the branch "
            "reconciler should import into and merge plans into, then run init again"
        )
    files[CONFIG_FILE] = with_branch(files[CONFIG_FILE], branch)
    files[APPLY_WORKFLOW] = apply_workflow_on_branch(files[APPLY_WORKFLOW], branch)
    for name, content in sorted(files.items()):
        path = target / name
        write_atomic(path, content)
        emit(f"wrote {path}")
    if fresh:
        git.commit_paths(sorted(files), "set up reconciler")
        emit(f"created an access repo in {target} and committed the skeleton")
    else:
        emit(f"review the new files and commit them on branch {branch}")
    emit(
        "next: edit reconciler.yaml and policies/default.yaml, then `reconciler validate` "
        "and `reconciler check`"
    )
    return EXIT_OK
