"""What the directory servers the connector tests start share: finding their programs,
making their certificates, stopping them, and reading an entry back as the test's
administrator sees it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import ldap3  # type: ignore[import-untyped]


def tool(name: str) -> str | None:
    """A program on PATH, or in the sbin directories Debian puts servers in."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stderr or done.stdout}")


def make_certificates(
    openssl: str, root: Path, address: str, other_cas: Sequence[str] = ()
) -> tuple[Path, Path, Path]:
    """In `root`: a CA (`ca.pem`), a server certificate for IP `address` signed by it,
    and CAs named `other_cas` that sign nothing; (ca, server cert, server key), the key
    readable by its owner only (Samba refuses one that others may read)."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", *other_cas):
        run(
            [openssl, "req", "-x509", *key, "-keyout", str(root / f"{ca}.key"),
             "-out", str(root / f"{ca}.pem"), "-days", "2", "-subj", f"/CN=test {ca}"]
        )  # fmt: skip
    (root / "san.ext").write_text(f"subjectAltName=IP:{address}\n")
    run(
        [openssl, "req", *key, "-keyout", str(root / "server.key"),
         "-out", str(root / "server.csr"), "-subj", f"/CN={address}"]
    )  # fmt: skip
    run(
        [openssl, "x509", "-req", "-in", str(root / "server.csr"), "-CA", str(root / "ca.pem"),
         "-CAkey", str(root / "ca.key"), "-CAcreateserial", "-out", str(root / "server.pem"),
         "-days", "2", "-extfile", str(root / "san.ext")]
    )  # fmt: skip
    (root / "server.key").chmod(0o600)
    return root / "ca.pem", root / "server.pem", root / "server.key"


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
