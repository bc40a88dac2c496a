"""One module per command: thin functions that take frozen options and return an exit code."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.config import CONFIG_FILE, POLICY_DIR, Settings
from reconciler.errors import ConfigError
from reconciler.forge.base import Forge
from reconciler.forge.local import LocalForge
from reconciler.git import Git
from reconciler.settings import load_settings

if TYPE_CHECKING:
    from reconciler.forge.github import GitHubForge

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NEEDS_REVIEW = 4

# The version of every command's JSON output; raised when a field changes meaning.
SCHEMA_VERSION = 1

# The configuration and the plans: committed before check, approve or apply runs, so
# that history holds what produced every snapshot, plan and apply.
CONFIGURATION = (CONFIG_FILE, POLICY_DIR, "templates", "plans")


@dataclass(frozen=True)
class Repo:
    git: Git
    settings: Settings

    @property
    def root(self) -> Path:
        return self.git.root

    def require_committed(self, *paths: str) -> None:
        """Refuse to run while the configuration (or `paths`) has uncommitted changes."""
        self.git.require_clean(*CONFIGURATION, *paths)

    def forge(self) -> Forge:
        config = self.settings.config
        match config.forge.type:
            case "local":
                return LocalForge(self.git, config.main_branch)
            case "github":
                return github_forge(self.git, self.settings)
            case other:
                raise ConfigError(
                    f"forge {other!r} is not available in this version; "
                    "use `forge: {type: local}` or `forge: {type: github}` in reconciler.yaml"
                )

    def select_apps(self, wanted: tuple[str, ...]) -> list[str]:
        known = self.settings.config.apps
        unknown = [a for a in wanted if a not in known]
        if unknown:
            raise ConfigError(
                f"unknown app(s): {', '.join(unknown)}; reconciler.yaml has: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        return list(wanted) if wanted else sorted(known)


def github_forge(git: Git, settings: Settings) -> GitHubForge:
    """The github forge as reconciler.yaml configures it, its token from the environment
    (imported here: the commands that read only the repository start faster)."""
    from reconciler.forge.github import DEFAULT_API_URL, GitHubForge, GitHubOptions

    forge = settings.config.forge
    if not forge.repository or not forge.token_env:
        raise ConfigError("forge github needs `repository` and `token_env` in reconciler.yaml")
    options = GitHubOptions(
        repository=forge.repository,
        token_env=forge.token_env,
        api_url=forge.api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL,
        remote=forge.remote,
        main=settings.config.main_branch,
        import_mode=forge.import_mode,
    )
    return GitHubForge.from_options(git, options, settings.policy_for)


def open_repo(path: Path) -> Repo:
    git = Git.open(path)
    return Repo(git, load_settings(git.root))
