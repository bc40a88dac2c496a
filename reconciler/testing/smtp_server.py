"""A real SMTP server (aiosmtpd) on 127.0.0.1 with a random port, for tests.

It can offer STARTTLS with a certificate made at start (with `cryptography`), require
AUTH with one user name and password, and refuse recipients or messages with a 5xx
answer. What it accepted is kept in `received`, parsed.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ipaddress
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    recipients: tuple[str, ...]
    message: EmailMessage
    raw: bytes

    @property
    def subject(self) -> str:
        # A long subject may be folded right after "Subject:"; readers drop that space.
        return str(self.message["Subject"]).strip()

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, "no text/plain part"
        content: str = part.get_content()
        # SMTP ends lines with CRLF; the text as written has LF.
        return content.replace("\r\n", "\n")


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: Path | None  # the certificate to trust for STARTTLS
    username: str | None
    password: str | None
    received: list[Received] = field(default_factory=list)
    # Answers that make the server refuse: a recipient address, or every message.
    refuse_recipients: dict[str, str] = field(default_factory=dict)
    refuse_data: str | None = None
    auth_attempts: int = 0

    def client_tls(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and nothing else)."""
        assert self.ca_file is not None, "the server was started without STARTTLS"
        return ssl.create_default_context(cafile=str(self.ca_file))

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The received messages once there are `count` (the server runs in a thread)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self,
        smtp: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self.server.refuse_recipients.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        if self.server.refuse_data:
            return self.server.refuse_data
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.server.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                recipients=tuple(envelope.rcpt_tos),
                message=message,
                raw=raw,
            )
        )
        return "250 Message accepted for delivery"


class _RandomPortController(Controller):
    """aiosmtpd's controller, listening on a port the system picks (port 0)."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@contextmanager
def start_smtp_server(
    *,
    starttls: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1, stopped on exit.

    `starttls`: offer STARTTLS and require it before MAIL. `username`/`password`: require
    AUTH (PLAIN or LOGIN) with them.
    """
    with tempfile.TemporaryDirectory(prefix="smtp-") as tmp:
        server = SmtpServer(HOST, 0, None, username, password)
        options: dict[str, Any] = {"enable_SMTPUTF8": True}
        if starttls:
            cert, key = make_certificate(Path(tmp), HOST)
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(cert, key)
            server.ca_file = cert
            options.update(tls_context=tls, require_starttls=True)
        if username is not None:

            def authenticate(
                smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
            ) -> AuthResult:
                server.auth_attempts += 1
                ok = (
                    isinstance(data, LoginPassword)
                    and data.login == (username or "").encode()
                    and data.password == (password or "").encode()
                )
                return AuthResult(success=ok, handled=False)

            options.update(
                authenticator=authenticate, auth_required=True, auth_require_tls=starttls
            )
        controller = _RandomPortController(_Handler(server), hostname=HOST, port=0, **options)
        controller.start()
        server.port = controller.port
        try:
            yield server
        finally:
            controller.stop()


def make_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for `host` (an IP address) and its key, as PEM files in
    `directory`; valid for a day. It is its own CA, so a client can trust just it."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    _certificate_with_cryptography(host, cert, key)
    return cert, key


def _certificate_with_cryptography(host: str, cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
