"""Load the validated configuration of an access repo (reconciler.yaml and policies/)."""

from __future__ import annotations

from pathlib import Path

from reconciler.config import Config, Policy, Settings
from reconciler.errors import ConfigError
from reconciler.validate import Registry, read_repo


def load_settings(root: Path, registry: Registry | None = None) -> Settings:
    """The configuration of the access repo at `root`, checked in full first.

    `registry` is the connector registry the config is validated against; None means
    reconciler.connectors.CONNECTORS. Raises ConfigError listing every problem found.
    """
    files = read_repo(root, registry)
    if files.diagnostics:
        count = len(files.diagnostics)
        listing = "\n".join(str(d) for d in files.diagnostics)
        raise ConfigError(
            f"the configuration in {root} has {count} problem{'s' if count != 1 else ''}:\n"
            f"{listing}\nrun `reconciler validate` for the full list"
        )
    # No diagnostics means reconciler.yaml was read.
    assert files.config is not None
    config = Config.from_data(files.config)
    policies = tuple(
        Policy.from_data(source_file=display, data=data, default_mode=config.default_mode)
        for display, data in files.policies
    )
    return Settings(root=root, config=config, policies=policies)
