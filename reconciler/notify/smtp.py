"""Sending the owners' emails through an SMTP relay (`smtplib`, with a timeout).

Each email's outcome is a value: a relay that is down, refuses the credentials, times
out or answers 5xx makes a `Delivery` with the reason, never an exception, and the check
goes on. Credentials come from the environment variables `notify.smtp` names, are only
sent over TLS, and never appear in a reason: the relay's answers are redacted first.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from reconciler.config import SmtpSettings
from reconciler.connectors.http import redact
from reconciler.inert import one_line
from reconciler.notify.events import Notice


@dataclass(frozen=True)
class Delivery:
    """What became of one email: sent, or why not."""

    notice: Notice
    error: str = ""  # empty: the relay accepted it for every recipient

    @property
    def sent(self) -> bool:
        return not self.error


class DeliveryError(Exception):
    """Why the relay could not be used; the message is safe to print."""


# Builds the SMTP client; tests may hand in another.
ClientFactory = Callable[[str, int, float], smtplib.SMTP]


def _client(host: str, port: int, timeout: float) -> smtplib.SMTP:
    return smtplib.SMTP(host, port, timeout=timeout)


def build_message(notice: Notice, sender: str, now: datetime) -> EmailMessage:
    """The email for `notice`. Its subject and body are already inert (one line each
    header); the default policy also refuses a line break in any header."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = ", ".join(notice.recipients)
    email["Subject"] = notice.subject
    email["Date"] = format_datetime(now)
    email["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    # RFC 3834: no auto-reply loops with out-of-office messages.
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(notice.body)
    return email


class SmtpSender:
    """Sends notices through one relay connection per batch."""

    def __init__(
        self,
        settings: SmtpSettings,
        environ: Mapping[str, str],
        *,
        client: ClientFactory = _client,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.environ = environ
        self.client = client
        self.tls = tls

    def send(self, notices: Sequence[Notice], now: datetime) -> list[Delivery]:
        """Send every notice; one `Delivery` per notice, in order."""
        if not notices:
            return []
        secrets: list[str] = []
        try:
            credentials = self._credentials()
            if credentials:
                secrets = _secret_forms(*credentials)
            return self._send(notices, now, credentials, secrets)
        except DeliveryError as exc:
            reason = str(exc)
        return [Delivery(n, reason) for n in notices]

    def _credentials(self) -> tuple[str, str] | None:
        settings = self.settings
        if not settings.username_env or not settings.password_env:
            return None
        names = (settings.username_env, settings.password_env)
        missing = [name for name in names if name not in self.environ]
        if missing:
            raise DeliveryError(
                f"environment variable {' and '.join(missing)} is not set "
                "(notify.smtp names it for the relay's credentials)"
            )
        if not settings.starttls:
            raise DeliveryError(
                "notify.smtp has credentials but `starttls: false`; the password is never "
                "sent over an unencrypted connection. Turn starttls on"
            )
        return self.environ[settings.username_env], self.environ[settings.password_env]

    def _send(
        self,
        notices: Sequence[Notice],
        now: datetime,
        credentials: tuple[str, str] | None,
        secrets: list[str],
    ) -> list[Delivery]:
        settings = self.settings
        where = f"{one_line(settings.host, max_length=200)}:{settings.port}"
        deliveries: list[Delivery] = []
        try:
            with self.client(settings.host, settings.port, settings.timeout) as client:
                client.ehlo()
                if settings.starttls:
                    if not client.has_extn("starttls"):
                        raise DeliveryError(
                            f"the relay {where} does not offer STARTTLS; nothing is sent in "
                            "clear while `starttls` is on"
                        )
                    client.starttls(context=self.tls or ssl.create_default_context())
                    client.ehlo()
                if credentials:
                    client.login(*credentials)
                for notice in notices:
                    deliveries.append(self._send_one(client, notice, now, secrets))
        except DeliveryError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            # The connection is unusable: this email and the rest were not sent.
            raise DeliveryError(_describe(exc, where, settings.timeout, secrets)) from exc
        return deliveries

    def _send_one(
        self, client: smtplib.SMTP, notice: Notice, now: datetime, secrets: list[str]
    ) -> Delivery:
        email = build_message(notice, self.settings.sender, now)
        try:
            refused = client.send_message(
                email, from_addr=self.settings.sender, to_addrs=list(notice.recipients)
            )
        except (
            smtplib.SMTPRecipientsRefused,
            smtplib.SMTPSenderRefused,
            smtplib.SMTPDataError,
        ) as exc:
            # The relay refused this email; the connection may still carry the next.
            return Delivery(notice, _describe(exc, "", self.settings.timeout, secrets))
        if refused:
            names = ", ".join(sorted(refused))
            return Delivery(notice, f"the relay refused recipient(s) {one_line(names)}")
        return Delivery(notice)


def _secret_forms(username: str, password: str) -> list[str]:
    """The password and the forms AUTH PLAIN and LOGIN send it in, for redaction."""
    forms = [password]
    for raw in (password, f"\0{username}\0{password}"):
        forms.append(base64.b64encode(raw.encode("utf-8")).decode("ascii"))
    return [f for f in forms if f]


def _describe(exc: BaseException, where: str, timeout: float, secrets: Iterable[str]) -> str:
    """A one-line reason for a failed email, with no credential in it."""
    # smtplib reports a read that timed out as a closed connection.
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(
        exc.__context__, TimeoutError
    ):
        exc = exc.__context__
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        text = f"the relay refused the credentials ({_answer(exc)})"
    elif isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = ", ".join(sorted(exc.recipients))
        text = f"the relay refused every recipient ({refused})"
    elif isinstance(exc, smtplib.SMTPResponseException):
        text = f"the relay answered {_answer(exc)}"
    elif isinstance(exc, smtplib.SMTPServerDisconnected):
        text = f"the relay {where} closed the connection ({exc})"
    elif isinstance(exc, TimeoutError):
        text = f"the relay {where} did not answer within {timeout:g} seconds"
    elif isinstance(exc, ConnectionRefusedError):
        text = f"cannot connect to the relay {where}: connection refused"
    elif isinstance(exc, ssl.SSLError):
        text = f"TLS with the relay {where} failed: {exc}"
    elif isinstance(exc, OSError):
        text = f"cannot reach the relay {where}: {exc.strerror or exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return one_line(redact(text, secrets), max_length=500)


def _answer(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    words = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return f"{exc.smtp_code} {words}".strip()
