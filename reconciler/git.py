"""All git, through the git command line.

Commits made by reconciler carry a fixed bot identity, so that a reviewer's own
commits on a plan branch can be told apart from the tool's.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import fastimport
from reconciler.errors import GitError

if TYPE_CHECKING:
    import git as gitpython

BOT_NAME = "reconciler"
BOT_EMAIL = "reconciler@localhost"


def bot_env() -> dict[str, str]:
    name = os.environ.get("RECONCILER_GIT_NAME", BOT_NAME)
    email = os.environ.get("RECONCILER_GIT_EMAIL", BOT_EMAIL)
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def no_git_env() -> dict[str, str]:
    # A hook or a parent git process may export GIT_DIR/GIT_INDEX_FILE; they would make
    # our commands act on another repository (pre-commit's git.py does the same).
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k == "GIT_SSH"}


def _git(
    cwd: Path,
    args: Sequence[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run git with the bot identity and without inherited GIT_* variables."""
    full_env = no_git_env()
    full_env.update(bot_env())
    full_env.update(env or {})
    return subprocess.run(["git", *args], cwd=cwd, input=input, env=full_env, capture_output=True)


@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    author: str
    message: str


class Git:
    """One access repository."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _exec(
        self, args: Sequence[str], input: bytes | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return _git(self.root, args, input=input, env=env)

    def _checked(self, args: Sequence[str], proc: subprocess.CompletedProcess[bytes]) -> bytes:
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise GitError(f"git {' '.join(args[:3])} failed in {self.root}: {err}")
        return proc.stdout

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> str:
        proc = self._exec(args, input=input, env=env)
        out = self._checked(args, proc) if check else proc.stdout
        return out.decode("utf-8", "replace")

    def run_bytes(self, *args: str, input: bytes | None = None) -> bytes:
        return self._checked(args, self._exec(args, input=input))

    # --- repository state -------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Git:
        if not path.is_dir():
            if path.exists():
                raise GitError(
                    f"{path} is a file, not a directory; point --repo at the directory "
                    "of your access repository"
                )
            raise GitError(
                f"{path} does not exist; point --repo at your access repository, "
                f"or create one with `reconciler init {path}`"
            )
        try:
            probe = _git(path, ["rev-parse", "--show-toplevel"])
        except OSError as exc:
            raise GitError(
                f"cannot run git in {path}: {exc.strerror or exc}; check that git is "
                "installed and that you may read the directory"
            ) from exc
        if probe.returncode != 0:
            raise GitError(
                f"{path} is not a git repository; run `reconciler init {path}` "
                "or `git init` there first"
            )
        return cls(Path(probe.stdout.decode().strip()))

    @classmethod
    def init(cls, path: Path, branch: str = "main") -> Git:
        path.mkdir(parents=True, exist_ok=True)
        repo = cls(path)
        repo.run("init", "-q", "-b", branch)
        return repo

    def history(self) -> gitpython.Repo:
        """The repository for reading history with GitPython: commit objects, trailers,
        blobs at revisions. Writing stays on the git command line above (measured
        faster for the check's commits)."""
        import git as gitpython  # only the commands that read history pay for its import

        repo = gitpython.Repo(self.root)
        # As for our own commands: an inherited GIT_DIR or GIT_INDEX_FILE must not point
        # GitPython's git at another repository.
        repo.git.update_environment(**{k: None for k in os.environ if k.startswith("GIT_")})
        return repo

    def private_dir(self) -> Path:
        """A directory inside .git for local state that is never committed."""
        git_dir = Path(self.run("rev-parse", "--git-dir").strip())
        path = (git_dir if git_dir.is_absolute() else self.root / git_dir) / "reconciler"
        path.mkdir(exist_ok=True)
        return path

    def head(self, ref: str = "HEAD") -> str | None:
        out = self.run("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False).strip()
        return out or None

    def current_branch(self) -> str:
        return self.run("symbolic-ref", "--short", "-q", "HEAD", check=False).strip()

    def require_branch(self, branch: str) -> None:
        current = self.current_branch()
        if current != branch:
            raise GitError(
                f"the access repo is on branch {current or '(detached)'!r}; "
                f"run `git checkout {branch}` first"
            )

    def dirty_paths(self, *paths: str) -> list[str]:
        out = self.run("status", "--porcelain", "--untracked-files=all", "--", *paths)
        return [line[3:] for line in out.splitlines() if line]

    def require_clean(self, *paths: str) -> None:
        dirty = self.dirty_paths(*paths)
        if dirty:
            shown = ", ".join(dirty[:5]) + (" …" if len(dirty) > 5 else "")
            raise GitError(
                f"uncommitted changes in {shown}; commit or stash them first: reconciler "
                "commits what it produces only together with the configuration behind it"
            )

    def is_ancestor(self, ancestor: str, descendant: str = "HEAD") -> bool:
        return self._exec(["merge-base", "--is-ancestor", ancestor, descendant]).returncode == 0

    def on_first_parent_chain(self, commit: str, tip: str) -> bool:
        """Whether `commit` is `tip` or reached from it by first parents only: a commit
        made on the branch itself, not one brought in by a merge."""
        full = self.head(commit)
        if full is None:
            return False
        chain = self.run("rev-list", "--first-parent", tip, check=False).split()
        return full in chain

    def changed_paths(self, old: str, new: str) -> list[str]:
        """Paths that differ between two commits."""
        out = self.run("diff", "--name-only", "-z", "--no-renames", old, new)
        return [p for p in out.split("\0") if p]

    def extract(self, rev: str, paths: Sequence[str], into: Path) -> None:
        """Write `paths` (files or directories) as they are at `rev` under `into`, laid
        out as in the repository: one `git archive`, however many files."""
        archive = self.run_bytes("archive", "--format=tar", rev, "--", *paths)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(into, filter="data")

    def show(self, rev: str, path: str) -> bytes | None:
        proc = self._exec(["show", f"{rev}:{path}"])
        return proc.stdout if proc.returncode == 0 else None

    def ls_tree(self, rev: str, path: str) -> list[str]:
        out = self.run("ls-tree", "-r", "--name-only", "-z", rev, "--", path, check=False)
        return [name for name in out.split("\0") if name]

    def branches(self, pattern: str) -> list[str]:
        out = self.run("for-each-ref", "--format=%(refname:short)", f"refs/heads/{pattern}")
        return out.splitlines()

    def commit_info(self, rev: str) -> Commit:
        out = self.run("log", "-1", "--format=%H%x00%P%x00%an <%ae>%x00%B", rev)
        sha, parents, author, message = out.split("\x00", 3)
        return Commit(sha, tuple(parents.split()), author, message.strip())

    def log(self, *args: str) -> list[Commit]:
        out = self.run("log", "--format=%H%x00%P%x00%an <%ae>%x00%B%x1e", *args)
        commits = []
        for entry in out.split("\x1e"):
            entry = entry.strip("\n")
            if entry:
                sha, parents, author, message = entry.split("\x00", 3)
                commits.append(Commit(sha, tuple(parents.split()), author, message.strip()))
        return commits

    # --- writing ----------------------------------------------------------------------

    def commit_paths(
        self, paths: Sequence[str], message: str, author: Mapping[str, str] | None = None
    ) -> str | None:
        """Stage `paths` (additions and deletions) and commit; None if nothing changed.

        `author` (GIT_AUTHOR_NAME/EMAIL) names the person the commit is for; the tool
        stays the committer."""
        self.run("add", "-A", "--", *paths)
        staged = self.run("diff", "--cached", "--name-only", "-z").split("\0")
        ours = self.run("diff", "--cached", "--name-only", "-z", "--", *paths).split("\0")
        if not any(ours):
            return None
        # The message goes on stdin: an import's index of changed records can be
        # megabytes, and Linux refuses a single argument over 128 KiB.
        text = message.encode("utf-8")
        if set(staged) == set(ours):
            # Only our paths are staged: commit the index as it is. A pathspec would make
            # git build a second index and hash every file again (60 MB at 100k accounts).
            self.run("commit", "-q", "--no-verify", "-F", "-", input=text, env=author)
        else:
            # Someone staged other files: leave them staged, commit only ours.
            self.run("commit", "-q", "--no-verify", "-F", "-", "--", *paths, input=text, env=author)
        return self.head()

    def stage(self, paths: Sequence[str]) -> list[str]:
        """Stage the working tree's changes under `paths` (additions, changes,
        deletions); the paths git knows, or holds on disk, which were staged."""
        # `git add` refuses a path that is neither on disk nor tracked.
        gone = [p for p in paths if not (self.root / p).exists()]
        tracked = set(self.run("ls-files", "-z", "--", *gone).split("\0")) if gone else set()
        paths = [p for p in paths if p not in gone or any(_under(t, [p]) for t in tracked)]
        if paths:
            self.run("add", "-A", "--", *paths)
        return paths

    def commit_series(self, series: Sequence[tuple[Sequence[str], str]]) -> list[str | None]:
        """Commit each (paths, message) in turn on the checked-out branch: the working
        tree's changes under those paths (additions, changes, deletions), a commit each;
        each commit's sha, None for one whose paths hold no change. A handful of git
        processes however many commits (`reconciler.fastimport`). The branch moves only if no one
        else moved it meanwhile. Files others staged stay staged."""
        ref = self.run("symbolic-ref", "-q", "HEAD").strip()
        head = self.head()
        paths = self.stage([path for group, _ in series for path in group])
        if not paths:
            return [None] * len(series)
        raw = self.run(
            "diff",
            "--cached",
            "--raw",
            "--no-abbrev",
            "-z",
            "--no-renames",
            head or EMPTY_TREE,
            "--",
            *paths,
        )
        raw_paths = raw.split("\0")[:-1]
        changed: dict[str, str | None] = {}
        for meta, path in zip(raw_paths[::2], raw_paths[1::2], strict=True):
            fields = meta.split()
            changed[path] = None if fields[4] == "D" else fields[3]
        commits: list[fastimport.Commit] = []
        shas: list[str | None] = []
        for group, message in series:
            files = {p: blob for p, blob in changed.items() if _under(p, group)}
            if not files:
                shas.append(None)
                continue
            parent = head if not commits else None
            commits.append(self._commit(ref, message, files, parent, mark=len(commits) + 1))
            shas.append(f":{len(commits)}")
        marks = self.fast_import(commits)
        return [marks[int(sha[1:])] if sha else None for sha in shas]

    def commit_files_to_branch(
        self, branch: str, base: str, files: Mapping[str, bytes], message: str
    ) -> str:
        """Point `branch` at a new commit: `base`'s tree plus `files`, parent `base`,
        wherever the branch was before. The working tree, the index and the checked-out
        branch are untouched (a check running on main proposes a plan on another branch)."""
        commit = self._commit(f"refs/heads/{branch}", message, files, base, mark=1)
        return self.fast_import([commit], force=True)[1]

    def _commit(
        self,
        ref: str,
        message: str,
        files: Mapping[str, bytes | str | None],
        parent: str | None,
        mark: int,
    ) -> fastimport.Commit:
        env = bot_env()
        committer = (env["GIT_COMMITTER_NAME"], env["GIT_COMMITTER_EMAIL"])
        return fastimport.Commit(ref, message, files, committer, parent, mark)

    def fast_import(self, commits: list[fastimport.Commit], force: bool = False) -> dict[int, str]:
        """Write `commits` with one `git fast-import`; mark → sha. Refs move only when
        the whole stream was read; without `force`, only forward."""
        if not commits:
            return {}
        with tempfile.TemporaryDirectory() as tmp:
            marks, errors = Path(tmp) / "marks", Path(tmp) / "errors"
            args = ["fast-import", "--quiet", "--done", "--date-format=now"]
            args += [f"--export-marks={marks}", *(["--force"] if force else [])]
            env = no_git_env()
            with errors.open("wb") as sink:
                process = subprocess.Popen(
                    ["git", *args], cwd=self.root, env=env, stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=sink,
                )  # fmt: skip
                assert process.stdin is not None
                try:
                    for piece in fastimport.stream(commits):
                        process.stdin.write(piece)
                except BrokenPipeError:
                    pass  # git stopped reading: its error says why
                finally:
                    process.stdin.close()
                code = process.wait()
            if code != 0:
                said = errors.read_text("utf-8", "replace").strip()
                moved = " Not updating " in f" {said}"
                hint = "; another run moved the branch meanwhile: run again" if moved else ""
                raise GitError(f"git fast-import failed in {self.root}: {said}{hint}")
            return fastimport.marks(marks.read_text())

    def delete_branch(self, branch: str) -> None:
        self.run("branch", "-q", "-D", branch)

    def merge(self, branch: str, message: str, author: Mapping[str, str] | None = None) -> str:
        self.run("merge", "-q", "--no-ff", "--no-verify", "-m", message, branch, env=author)
        sha = self.head()
        assert sha is not None
        return sha

    # --- remotes ----------------------------------------------------------------------

    def push(self, remote: str, *refspecs: str, force: bool = False) -> None:
        """Push `refspecs` to `remote`; GitError with git's words when it refuses."""
        self.run("push", "-q", *(["--force"] if force else []), remote, *refspecs)

    def fetch(self, remote: str, *refspecs: str, prune: bool = False) -> None:
        """Fetch `refspecs` from `remote` into the remote-tracking refs they name."""
        self.run("fetch", "-q", *(["--prune"] if prune else []), remote, *refspecs)

    def refs_with_tips(self, pattern: str) -> dict[str, str]:
        """The refs matching `pattern` (for-each-ref syntax), full name → commit."""
        out = self.run("for-each-ref", "--format=%(refname) %(objectname)", pattern)
        tips = {}
        for line in out.splitlines():
            ref, _, sha = line.rpartition(" ")
            tips[ref] = sha
        return tips


# The tree of no files: what a branch without commits is compared with.
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def _under(path: str, paths: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in paths)


def batch_contents(out: bytes, names: Sequence[str]) -> dict[str, bytes]:
    """`git cat-file --batch` output for `names` (in the order asked), by name; names
    that are missing or no blob are left out."""
    found: dict[str, bytes] = {}
    at = 0
    for name in names:
        end = out.index(b"\n", at)
        header = out[at:end].split(b" ")
        at = end + 1
        if len(header) != 3:
            continue  # "<name> missing"
        size = int(header[2])
        if header[1] == b"blob":
            found[name] = out[at : at + size]
        at += size + 1
    return found
