"""A real OpenLDAP `slapd` for tests: a throwaway cn=config loaded with `slapadd`, one
mdb database (`dc=test`) served on 127.0.0.1 at a free port (LAB-NOTES, OpenLDAP).

The database holds three service entries the connector binds as:

- `cn=writer,dc=test`: may write everything, no size limit (the normal deprovisioner);
- `cn=reader,dc=test`: may only read, no size limit;
- `cn=capped,dc=test`: may only read, under the frontend's `olcSizeLimit` of
  `SIZE_LIMIT`, on purpose, to show that a paged search cut short fails the pull.

The memberof overlay is loaded so that tests can cross-check membership against the
`memberOf` the server keeps; the connector does not rely on it. `olcLastBind` makes the
server record each entry's last successful bind in `pwdLastSuccess` (GeneralizedTime), a
last login the connector can be told to read.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ldap3  # type: ignore[import-untyped]

from .servers import make_certificates, read_entry, run, stop, tool

SUFFIX = "dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
WRITER_DN = f"cn=writer,{SUFFIX}"
READER_DN = f"cn=reader,{SUFFIX}"
CAPPED_DN = f"cn=capped,{SUFFIX}"
SIZE_LIMIT = 5
INSTALL_HINT = "install OpenLDAP: apt-get install slapd ldap-utils (slapd and slapadd in /usr/sbin)"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def slapd_missing() -> str | None:
    """Why no slapd can be started here, or None when it can."""
    missing = [name for name in ("slapd", "slapadd") if tool(name) is None]
    if missing:
        return f"{' and '.join(missing)} not found; {INSTALL_HINT}"
    if not Path("/usr/lib/ldap/back_mdb.so").exists() or not Path("/etc/ldap/schema").is_dir():
        return f"the mdb backend or the schemas are missing; {INSTALL_HINT}"
    return None


@dataclass(frozen=True)
class TlsFiles:
    """Where slapd speaks LDAPS, and CA files to trust it with (or not)."""

    ldaps_url: str
    ca_file: Path
    other_ca_file: Path


def _make_certificates(root: Path) -> tuple[Path, Path, Path] | None:
    """A CA, a server certificate for IP 127.0.0.1 signed by it, and a second CA;
    (ca, server cert, server key), or None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    return make_certificates(openssl, root, "127.0.0.1", other_cas=("other-ca",))


@dataclass(frozen=True)
class Directory:
    """A running slapd: where it listens and the passwords of its bind DNs."""

    url: str
    root_password: str
    passwords: dict[str, str]  # bind DN → password
    # ldaps:// at another port, the CA that signed the server's certificate (it names
    # IP 127.0.0.1) and an unrelated CA; None when openssl is missing.
    tls: TlsFiles | None = None

    def admin(self) -> ldap3.Connection:
        """A connection bound as the root DN, which no ACL or limit applies to."""
        server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=5)
        return ldap3.Connection(
            server, ROOT_DN, self.root_password, auto_bind=True, raise_exceptions=True
        )


def _config(root: Path, root_password: str, tls: tuple[Path, Path, Path] | None) -> str:
    tls_settings = ""
    if tls is not None:
        ca, cert, key = tls
        tls_settings = (
            f"olcTLSCACertificateFile: {ca}\nolcTLSCertificateFile: {cert}\n"
            f"olcTLSCertificateKeyFile: {key}\n"
        )
    includes = "\n".join(f"include: file:///etc/ldap/schema/{name}.ldif" for name in SCHEMAS)
    limits = " size=unlimited size.prtotal=unlimited"
    return f"""\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {root}/slapd.pid
{tls_settings}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{includes}

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: {SIZE_LIMIT}

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcRootDN: {ROOT_DN}
olcRootPW: {root_password}
olcDbDirectory: {root}/data
olcDbNoSync: TRUE
olcDbIndex: objectClass eq
olcDbIndex: entryUUID eq
olcLastBind: TRUE
olcLimits: {{0}}dn.exact="{WRITER_DN}"{limits}
olcLimits: {{1}}dn.exact="{READER_DN}"{limits}
olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to * by dn.exact="{WRITER_DN}" write by users read by * none

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {{0}}memberof
"""


def _data(passwords: dict[str, str]) -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: test\no: test\n"
    ]
    for dn, password in passwords.items():
        cn = dn.split(",")[0].removeprefix("cn=")
        entries.append(
            f"dn: {dn}\nobjectClass: person\ncn: {cn}\nsn: {cn}\nuserPassword: {password}\n"
        )
    return "\n".join(entries)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(ldap3.core.exceptions.LDAPException):
            server = ldap3.Server(url, get_info=ldap3.NONE, connect_timeout=1)
            conn = ldap3.Connection(server, raise_exceptions=True)
            conn.open()
            conn.search("", "(objectClass=*)", search_scope=ldap3.BASE)
            conn.unbind()
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def start_slapd() -> Iterator[Directory]:
    """Configure, load and start slapd; stop it and remove its files on exit."""
    root = Path(tempfile.mkdtemp(prefix="reconciler-ldap-"))
    config_dir, data_dir = root / "slapd.d", root / "data"
    config_dir.mkdir()
    data_dir.mkdir()
    root_password = secrets.token_urlsafe(12)
    passwords = {dn: secrets.token_urlsafe(12) for dn in (WRITER_DN, READER_DN, CAPPED_DN)}
    certificates = _make_certificates(root)
    (root / "config.ldif").write_text(_config(root, root_password, certificates))
    (root / "data.ldif").write_text(_data(passwords))
    process: subprocess.Popen[bytes] | None = None
    try:
        slapadd, slapd = tool("slapadd"), tool("slapd")
        assert slapadd and slapd, "slapd_missing() is checked first"
        run([slapadd, "-n", "0", "-F", str(config_dir), "-l", str(root / "config.ldif")])
        run([slapadd, "-n", "1", "-F", str(config_dir), "-l", str(root / "data.ldif"), "-q"])
        for _attempt in range(3):
            url = f"ldap://127.0.0.1:{_free_port()}"
            ldaps_url = f"ldaps://127.0.0.1:{_free_port()}"
            listen = f"{url}/ {ldaps_url}/" if certificates else f"{url}/"
            # `-d 0` keeps slapd in the foreground, so it is this process's child to stop.
            process = subprocess.Popen(
                [slapd, "-d", "0", "-h", listen, "-F", str(config_dir)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if _wait_ready(url, process, time.monotonic() + 10):
                break
            process.kill()
            process.wait()
            process = None  # the port was taken meanwhile, or it failed: try again
        if process is None:
            raise RuntimeError("slapd did not start")
        tls = None
        if certificates is not None:
            tls = TlsFiles(ldaps_url, certificates[0], root / "other-ca.pem")
        yield Directory(url=url, root_password=root_password, passwords=passwords, tls=tls)
    finally:
        stop(process, wait=5)
        shutil.rmtree(root, ignore_errors=True)


class Subtree:
    """One test's corner of the shared directory: `ou=tXXXX,dc=test`, with `ou=people`
    and `ou=groups` under it, written as the root DN."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.base = f"ou=t{secrets.token_hex(4)},{SUFFIX}"
        self.people = f"ou=people,{self.base}"
        self.groups = f"ou=groups,{self.base}"
        self.conn = directory.admin()
        for dn in (self.base, self.people, self.groups):
            self._add(dn, ["organizationalUnit"], {"ou": dn.split(",")[0][3:]})

    def _add(self, dn: str, classes: list[str], attributes: dict[str, object]) -> str:
        self.conn.add(dn, classes, attributes)
        return dn

    def person_dn(self, uid: str) -> str:
        return f"uid={ldap3.utils.dn.escape_rdn(uid)},{self.people}"

    def group_dn(self, cn: str) -> str:
        return f"cn={ldap3.utils.dn.escape_rdn(cn)},{self.groups}"

    def person(self, uid: str, *, mail: str | None = None, **extra: object) -> str:
        attributes: dict[str, object] = {"uid": uid, "cn": uid.title(), "sn": uid, **extra}
        if mail:
            attributes["mail"] = mail
        return self._add(self.person_dn(uid), ["inetOrgPerson"], attributes)

    def group(self, cn: str, members: list[str], description: str | None = None) -> str:
        attributes: dict[str, object] = {"cn": cn, "member": members}
        if description:
            attributes["description"] = description
        return self._add(self.group_dn(cn), ["groupOfNames"], attributes)

    def read(self, dn: str, *attributes: str) -> dict[str, list[str]] | None:
        """An entry's attributes as the root DN sees them, or None if it is gone."""
        return read_entry(self.conn, dn, attributes)

    def close(self) -> None:
        self.conn.unbind()
