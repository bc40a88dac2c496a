"""A real Active Directory domain controller for tests: Samba (Debian `samba`), provisioned
into a temporary directory and started for one test module.

How it is started, and why:

- `samba-tool domain provision --server-role=dc --dns-backend=NONE --targetdir=DIR`
  writes the whole domain (`RECONCILER.TEST`, base `DC=reconciler,DC=test`) and its own
  smb.conf under DIR; nothing outside DIR is touched (`pid directory` and `log file`
  are moved there too). Provisioning takes a few seconds.
- Samba's LDAP server has no port setting: it listens on 389, 636 (LDAPS) and 3268/3269
  (global catalog), always. So each DC gets a loopback address of its own, 127.x.y.z
  (`interfaces`, `bind interfaces only`), instead of a random port; binding port 389
  needs root. Only the `ldap` service runs (`server services = ldap`): no SMB, Kerberos,
  NetBIOS or RPC ports are opened.
- TLS uses a CA and a server certificate for that address made with openssl (Samba's
  own self-signed certificate names the DC's host name, which does not resolve here).
  `ldap server require strong auth` keeps its default, as on a real DC: a simple bind
  over plain LDAP is refused, so connectors use StartTLS or LDAPS with `ca_file`.
- `samba -i -M single --maximum-runtime=N` stays in the foreground as one process, this
  process's child to stop; should the tests die without stopping it, it stops itself.

Besides Administrator, the domain holds `reader`, an ordinary user with a password: it
may read the directory but not change users or groups.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import ldap3  # type: ignore[import-untyped]

from .servers import make_certificates, read_entry, run, stop, tool

REALM = "RECONCILER.TEST"
DOMAIN = "RECONCILER"
BASE_DN = "DC=reconciler,DC=test"
ADMIN_DN = f"CN=Administrator,CN=Users,{BASE_DN}"
READER = "reader"
READER_DN = f"CN={READER},CN=Users,{BASE_DN}"
INSTALL_HINT = "install Samba: apt-get install samba (samba and samba-tool), and openssl"
# Seconds after which the DC stops itself even if nobody stops it.
MAXIMUM_RUNTIME = 1800

# userAccountControl flags (MS-ADTS 2.2.16).
ACCOUNTDISABLE = 0x2
PASSWD_NOTREQD = 0x20
NORMAL_ACCOUNT = 0x200
DONT_EXPIRE_PASSWORD = 0x10000
WORKSTATION_TRUST_ACCOUNT = 0x1000
# An active user created without a password, which AD accepts only with PASSWD_NOTREQD.
ACTIVE_USER = NORMAL_ACCOUNT | PASSWD_NOTREQD
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def filetime(moment: datetime) -> int:
    """A moment as AD's FILETIME (100 ns ticks since 1601-01-01 UTC)."""
    return int((moment - FILETIME_EPOCH).total_seconds()) * 10**7


def samba_missing() -> str | None:
    """Why no Samba DC can be started here, or None when it can."""
    missing = [name for name in ("samba", "samba-tool", "openssl") if tool(name) is None]
    if missing:
        return f"{' and '.join(missing)} not found; {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "Samba's LDAP server listens on port 389 only, which needs root"
    return None


@dataclass(frozen=True)
class DomainController:
    """A running Samba DC: its address, the CA its certificate chains to, passwords."""

    address: str  # 127.x.y.z, LDAP on 389 (StartTLS) and LDAPS on 636
    ca_file: Path
    admin_password: str
    reader_password: str

    @property
    def url(self) -> str:
        return f"ldap://{self.address}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.address}"

    def admin(self) -> ldap3.Connection:
        """A connection bound as Administrator over LDAPS."""
        tls = ldap3.Tls(ca_certs_file=str(self.ca_file), validate=ssl.CERT_REQUIRED)
        server = ldap3.Server(
            self.address, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5
        )
        return ldap3.Connection(
            server, ADMIN_DN, self.admin_password, auto_bind=True, raise_exceptions=True
        )


def _password() -> str:
    # Meets AD's default complexity rule: three of upper, lower, digit, symbol.
    return f"Aa1-{secrets.token_urlsafe(12)}"


def _free_address() -> str:
    """A loopback address other than 127.0.0.1 (which other servers share) where port
    389 is free."""
    for _attempt in range(20):
        octets = (secrets.randbelow(254) + 1, secrets.randbelow(256), secrets.randbelow(254) + 1)
        address = "127.{}.{}.{}".format(*octets)
        with socket.socket() as probe:
            try:
                probe.bind((address, 389))
            except OSError:
                continue
        return address
    raise RuntimeError(
        "port 389 is taken on every loopback address tried: is an LDAP server listening "
        "on 0.0.0.0:389? Samba's DC cannot use another port"
    )


def _wait_ready(dc: DomainController, process: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(ldap3.core.exceptions.LDAPException):
            dc.admin().unbind()
            return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def start_samba_dc() -> Iterator[DomainController]:
    """Provision a domain, start its DC and add `reader`; stop the DC and remove its
    files on exit."""
    root = Path(tempfile.mkdtemp(prefix="reconciler-samba-"))
    target, log = root / "dc", root / "samba.log"
    samba, samba_tool = tool("samba"), tool("samba-tool")
    assert samba and samba_tool, "samba_missing() is checked first"
    admin_password, reader_password = _password(), _password()
    process: subprocess.Popen[bytes] | None = None
    try:
        address = _free_address()
        openssl = tool("openssl")
        assert openssl, "samba_missing() is checked first"
        ca, cert, key = make_certificates(openssl, root, address)
        settings = {
            "server services": "ldap",
            "interfaces": f"{address}/8",
            "bind interfaces only": "yes",
            "pid directory": str(target / "run"),
            "log file": str(target / "log.%m"),
            "tls certfile": str(cert),
            "tls keyfile": str(key),
            "tls cafile": str(ca),
        }
        run(
            [samba_tool, "domain", "provision", "--server-role=dc", "--dns-backend=NONE",
             f"--realm={REALM}", f"--domain={DOMAIN}", "--host-name=dc1",
             f"--adminpass={admin_password}", f"--targetdir={target}",
             *(f"--option={name} = {value}" for name, value in settings.items())]
        )  # fmt: skip
        (target / "run").mkdir()
        smb_conf = str(target / "etc" / "smb.conf")
        with log.open("wb") as output:
            process = subprocess.Popen(
                [samba, "-i", "-M", "single", "-s", smb_conf,
                 f"--maximum-runtime={MAXIMUM_RUNTIME}"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        dc = DomainController(address, ca, admin_password, reader_password)
        if not _wait_ready(dc, process, time.monotonic() + 60):
            raise RuntimeError(f"samba did not start: {log.read_text(errors='replace')[-2000:]}")
        run([samba_tool, "user", "create", READER, reader_password, "-s", smb_conf])
        yield dc
    finally:
        stop(process, wait=10)
        shutil.rmtree(root, ignore_errors=True)


class OrganizationalUnit:
    """One test's corner of the shared domain: `OU=tXXXX` with `OU=people` and
    `OU=groups` under it, written as Administrator.

    sAMAccountName is unique in the whole domain, so each username gets the unit's tag
    as a suffix: `username("alice")` is what the connector reads as alice's username."""

    def __init__(self, dc: DomainController) -> None:
        self.dc = dc
        self.tag = secrets.token_hex(3)
        self.base = f"OU=t{self.tag},{BASE_DN}"
        self.people = f"OU=people,{self.base}"
        self.groups = f"OU=groups,{self.base}"
        self.conn = dc.admin()
        for dn in (self.base, self.people, self.groups):
            self.conn.add(dn, ["organizationalUnit"])

    def username(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def user(
        self,
        name: str,
        *,
        control: int = ACTIVE_USER,
        expires: int | None = None,
        mail: str | None = None,
        display_name: str | None = None,
        object_class: str = "user",
    ) -> str:
        """Add a user; `control` is its userAccountControl, `expires` accountExpires."""
        dn = f"CN={name},{self.people}"
        attributes: dict[str, object] = {
            "sAMAccountName": self.username(name),
            "userAccountControl": str(control),
        }
        if expires is not None:
            attributes["accountExpires"] = str(expires)
        if mail:
            attributes["mail"] = mail
        if display_name:
            attributes["displayName"] = display_name
        self.conn.add(dn, [object_class], attributes)
        return dn

    def computer(self, name: str) -> str:
        """A computer account: objectClass user too, but not a person."""
        dn = f"CN={name},{self.people}"
        self.conn.add(
            dn,
            ["computer"],
            {
                "sAMAccountName": f"{self.username(name)}$",
                "userAccountControl": str(WORKSTATION_TRUST_ACCOUNT),
            },
        )
        return dn

    def group(self, cn: str, members: list[str], description: str | None = None) -> str:
        attributes: dict[str, object] = {"sAMAccountName": self.username(cn)}
        if members:
            attributes["member"] = members
        if description:
            attributes["description"] = description
        dn = f"CN={cn},{self.groups}"
        self.conn.add(dn, ["group"], attributes)
        return dn

    def read(self, dn: str, *attributes: str) -> dict[str, list[str]] | None:
        """An entry's attributes as Administrator sees them, or None if it is gone.
        `dn` may be `<GUID=...>`, which AD resolves to the entry with that objectGUID."""
        return read_entry(self.conn, dn, attributes)

    def close(self) -> None:
        self.conn.unbind()
