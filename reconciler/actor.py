"""Who runs a command: the author of the commits it makes (DESIGN §8, §9).

The tool is the committer of every commit it makes; the person is the author, so that
`git log` says who approved, applied or marked a task done. A name given with `--as`
wins, then the GitHub Actions actor, then git's configured identity, then the
operating system's user.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.errors import ConfigError
from reconciler.git import Git

# GitHub logins, email addresses and plain names: nothing a shell, a trailer or a
# markdown renderer would read as anything but a name.
NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._@+-]{0,98}[A-Za-z0-9])?")
PLACEHOLDER_DOMAIN = "users.noreply.invalid"


@dataclass(frozen=True)
class Person:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    def author_env(self) -> dict[str, str]:
        return {"GIT_AUTHOR_NAME": self.name, "GIT_AUTHOR_EMAIL": self.email}


def valid_name(name: str, option: str = "--as") -> str:
    """`name` stripped, or ConfigError if it is not a plain name."""
    name = name.strip()
    if not NAME.fullmatch(name):
        raise ConfigError(
            f"{option} {name!r} is not a name: use a login or an email address "
            "(letters, digits, and . _ @ + - inside)"
        )
    return name


def _person(name: str) -> Person:
    email = name if "@" in name else f"{name}@{PLACEHOLDER_DOMAIN}"
    return Person(name, email)


def resolve(git: Git, explicit: str = "", env: Mapping[str, str] | None = None) -> Person:
    """The person running the command."""
    env = os.environ if env is None else env
    if explicit:
        return _person(valid_name(explicit))
    actor = env.get("GITHUB_ACTOR", "").strip()
    if actor:
        return Person(valid_name(actor, "GITHUB_ACTOR"), f"{actor}@users.noreply.github.com")
    name = git.run("config", "user.name", check=False).strip()
    email = git.run("config", "user.email", check=False).strip()
    if name and email:
        return Person(name, email)
    user = getpass.getuser()
    return Person(user, f"{user}@{socket.gethostname()}")
