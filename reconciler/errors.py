"""The error tree. Every failure a user can fix is a ReconcilerError whose message says
what happened and what to do about it; anything else is a bug."""

from __future__ import annotations


class ReconcilerError(Exception):
    """A failure the user can fix; the CLI prints it and exits 1."""


class ConfigError(ReconcilerError):
    """reconciler.yaml or a policy file is invalid."""


class YamlError(ReconcilerError):
    """A YAML file could not be read: syntax, size, aliases, duplicate keys."""

    def __init__(self, path: str, line: int, column: int, message: str, hint: str = "") -> None:
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        self.hint = hint
        text = f"{path}:{line}:{column}: {message}"
        super().__init__(f"{text}\n  hint: {hint}" if hint else text)

    def __reduce__(self) -> tuple[type[YamlError], tuple[str, int, int, str, str]]:
        # Rebuilt from its fields, as a worker process sends it back (`parallel`).
        return (type(self), (self.path, self.line, self.column, self.message, self.hint))


class SnapshotError(ReconcilerError):
    """A snapshot file in the access repo is unreadable."""


class GitError(ReconcilerError):
    """A git operation failed, or the access repo is not in a usable state."""


class ConnectorError(ReconcilerError):
    """A system (app or IdP) could not be reached or answered badly."""

    def __init__(self, system: str, message: str) -> None:
        self.system = system
        super().__init__(f"{system}: {message}")


class PullError(ConnectorError):
    """Pulling accounts or identities failed; nothing read may be trusted."""


class PartialPullError(PullError):
    """A pull ended before all pages were read (the server's total was not reached)."""


class PlanError(ReconcilerError):
    """A plan is unreadable, edited beyond what reviewers may do, or not approved."""


class ApprovalError(PlanError):
    """The approvals policy is not met."""
