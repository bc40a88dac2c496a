"""`reconciler doctor`: probe every system of reconciler.yaml (or some) and say which
can be reached and read with its credentials, and what to fix in those that cannot."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import assert_never

from reconciler.commands import EXIT_ERROR, EXIT_OK, SCHEMA_VERSION, open_repo
from reconciler.doctor import FAILED, Finding, examine, systems
from reconciler.errors import ConfigError
from reconciler.inert import terminal
from reconciler.markdown import escape
from reconciler.output import OutputFormat, emit, emit_json
from reconciler.systems import default_factory


@dataclass(frozen=True)
class DoctorOptions:
    repo: Path
    only: tuple[str, ...] = ()
    format: OutputFormat = OutputFormat.TEXT


def doctor(options: DoctorOptions) -> int:
    repo = open_repo(options.repo)
    config = repo.settings.config
    chosen = list(systems(config))
    known = {system.name for system, _ in chosen}
    unknown = [name for name in options.only if name not in known]
    if unknown:
        raise ConfigError(
            f"no system named {', '.join(map(repr, unknown))} in reconciler.yaml; it has: "
            f"{', '.join(sorted(known)) or 'none'}"
        )
    if options.only:
        chosen = [(system, idp) for system, idp in chosen if system.name in options.only]
    factory = default_factory(repo.root)
    findings = [examine(system, identity_source, factory) for system, identity_source in chosen]
    match options.format:
        case OutputFormat.TEXT:
            emit("\n".join(text_line(f) for f in findings) or "no systems in reconciler.yaml")
        case OutputFormat.MARKDOWN:
            emit(markdown(findings))
        case OutputFormat.JSON:
            emit_json({"schema_version": SCHEMA_VERSION, "systems": [asdict(f) for f in findings]})
        case _:
            assert_never(options.format)
    return EXIT_ERROR if any(f.status == FAILED for f in findings) else EXIT_OK


def text_line(finding: Finding) -> str:
    return (
        f"{finding.status.upper():<9} {terminal(finding.system)} ({finding.role}, "
        f"{finding.type}, {finding.seconds:.1f}s): {terminal(finding.detail, max_length=1000)}"
    )


def markdown(findings: list[Finding]) -> str:
    lines = ["| System | Role | Type | Status | Detail |", "|---|---|---|---|---|"]
    lines += [
        f"| {escape(f.system)} | {f.role} | {escape(f.type)} | {f.status} | "
        f"{escape(f.detail, max_length=1000)} |"
        for f in findings
    ]
    return "\n".join(lines)
