"""What the directory servers the connector tests start share: stopping them, and reading
an entry back as the test's administrator sees it."""

from __future__ import annotations

import subprocess

import ldap3  # type: ignore[import-untyped]


def stop(process: subprocess.Popen[bytes] | None, wait: float) -> None:
    """Ask `process` to stop, give it `wait` seconds, then kill it."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def read_entry(
    conn: ldap3.Connection, dn: str, attributes: tuple[str, ...]
) -> dict[str, list[str]] | None:
    """An entry's `attributes` as `conn` sees them, each as a list of text, or None if the
    entry is gone."""
    try:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes))
    except ldap3.core.exceptions.LDAPNoSuchObjectResult:
        return None
    found = conn.response[0]["attributes"]
    return {k: [str(v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in found.items()}
