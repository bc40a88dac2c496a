"""`reconciler init DIR`: write the skeleton of an access repo (config, example policy,
example exports) into a new or existing git repository."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from reconciler.commands import EXIT_OK
from reconciler.errors import ReconcilerError
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
    for name, content in sorted(files.items()):
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        emit(f"wrote {path}")
    if fresh:
        git.commit_paths(sorted(files), "set up reconciler")
        emit(f"created an access repo in {target} and committed the skeleton")
    else:
        emit("review the new files and commit them")
    emit(
        "next: edit reconciler.yaml and policies/default.yaml, then `reconciler validate` "
        "and `reconciler check`"
    )
    return EXIT_OK
