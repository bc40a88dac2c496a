"""One module per command: thin functions that take frozen options and return an exit code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.config import CONFIG_FILE, POLICY_DIR, Settings
from reconciler.errors import ConfigError
from reconciler.forge.base import Forge
from reconciler.forge.local import LocalForge
from reconciler.git import Git
from reconciler.settings import load_settings

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
        if self.settings.config.forge != "local":
            raise ConfigError(
                f"forge {self.settings.config.forge!r} is not available in this version; "
                "use `forge: {type: local}` in reconciler.yaml"
            )
        return LocalForge(self.git, self.settings.config.main_branch)

    def select_apps(self, wanted: tuple[str, ...]) -> list[str]:
        known = self.settings.config.apps
        unknown = [a for a in wanted if a not in known]
        if unknown:
            raise ConfigError(
                f"unknown app(s): {', '.join(unknown)}; reconciler.yaml has: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        return list(wanted) if wanted else sorted(known)


def open_repo(path: Path) -> Repo:
    git = Git.open(path)
    return Repo(git, load_settings(git.root))
