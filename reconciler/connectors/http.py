"""The HTTP layer every API connector shares (DESIGN §4).

Connectors build an `httpx.Client` with `build_client`, build each `httpx.Request`
themselves, and hand it to `send`, which owns the retry policy: exponential backoff with
full jitter on connection errors, timeouts, 429 and 5xx, honouring `Retry-After` and the
usual rate-limit reset headers. Whatever `send` returns is a response the connector must
interpret (2xx, or a 4xx that retrying cannot fix).

Credentials never leave this module in clear: every message it raises or logs goes
through `redact`, with the bearer token of the request among the secrets.
"""

from __future__ import annotations

import email.utils
import functools
import http
import logging
import random
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from reconciler import __version__
from reconciler.errors import ConfigError, ConnectorError

log = logging.getLogger(__name__)

# What SCIM (RFC 7644 §3.1) and most JSON APIs answer to.
ACCEPT_JSON = "application/scim+json, application/json"

# Called after each page of a pull with the number of records that page held, so the
# CLI can drive a progress bar without the connector knowing about terminals.
PageCallback = Callable[[int], None]

REDACTED = "[REDACTED]"

# How much of a text from a server (an error body, a detail) a message keeps.
SERVER_TEXT_LIMIT = 120

# RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# Statuses that say "not now", as opposed to "never". 501 and 505 are permanent.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524})
# The subset that also means the server did not act on the request, so even a
# non-idempotent request may be repeated (RFC 6585 §4, RFC 9110 §15.6.4).
_NOT_PERFORMED_STATUSES = frozenset({429, 503})

# Failures before a single byte of the request reached the server: always safe to repeat.
_NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# Failures after the request may have been received and performed.
_MAYBE_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)

# An X-RateLimit-Reset above this is a Unix time (GitHub, Okta); below, a number of
# seconds (the IETF RateLimit draft). 10^9 s is 2001, far beyond any sane delay.
_EPOCH_THRESHOLD = 1_000_000_000


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and its URL-encoded form) replaced by a marker.

    Longest secrets first, so that a secret containing another is hidden whole.
    """
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.add(secret)
            forms.add(urllib.parse.quote(secret, safe=""))
            forms.add(urllib.parse.quote(secret))
            forms.add(urllib.parse.quote_plus(secret))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def build_client(
    system: str,
    base_url: str,
    *,
    token: str | None,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An `httpx.Client` for one system: base URL, timeouts, bearer token, headers.

    Relative request URLs are resolved under `base_url` (a trailing slash is implied,
    so `Users` and `/Users` both land under `.../v2/`). Redirects are not followed:
    a bearer token should not be replayed to wherever a server points.
    `transport` lets tests put a fault injector between the client and a real server.
    """
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{system}: url {base_url!r} is not a valid URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"{system}: url {base_url!r} is not an http(s) URL; "
            "write it like https://scim.example.com/v2"
        )
    all_headers = {"User-Agent": f"reconciler/{__version__}", "Accept": ACCEPT_JSON}
    all_headers.update(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(
        base_url=url,
        headers=all_headers,
        timeout=httpx.Timeout(timeout),
        transport=transport,
        follow_redirects=False,
        verify=tls_context(),
    )


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS settings (its CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), built
    once per process: loading the CA bundle takes about 20 ms, which a check of 300 apps
    would otherwise pay 300 times. An SSLContext is safe to share between threads."""
    return httpx.create_ssl_context()


class TokenBucket:
    """Paces the requests to one system: on average at most `rate` a second, with up to
    `burst` at once. One per system, shared by every call to it, from any thread: each
    caller takes a token, and waits (outside the lock) for as long as the tokens taken
    before it have run ahead. `clock` and `sleep` are injectable for tests."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token, waiting until one is due; the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently `send` repeats a request.

    The delay before attempt n+1 is a random value in [0, min(max_delay,
    base_delay·2^(n-1))] ("full jitter"), unless the server said how long to wait,
    in which case that wait is used, capped at `max_delay`. `sleep`, `jitter` (a
    random number in [0, 1)) and `clock` are injectable so tests neither sleep nor depend on chance.
    With `limiter`, every attempt first takes a token from it: the system's rate limit,
    kept by every call that shares this policy.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    limiter: TokenBucket | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, attempt: int) -> float:
        """The jittered delay after failed attempt number `attempt` (1-based)."""
        # Cap the exponent so a large attempt count cannot overflow a float.
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 60))
        return self.jitter() * ceiling

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """The delay before the next attempt: the server's word if it gave one."""
        if response is not None:
            asked = server_delay(response.headers, now=self.clock())
            if asked is not None:
                return min(asked, self.max_delay)
        return self.backoff(attempt)


def http_options(who: str) -> dict[str, Any]:
    """The JSON Schema properties every HTTP connector's options share: how long to wait
    for `who` ("the server", "Okta"), how often to retry, and the pace of requests."""
    return {
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 30,
            "description": f"Seconds to wait for {who} to connect or answer.",
        },
        "max_retries": {
            "type": "integer",
            "minimum": 0,
            "maximum": 10,
            "default": 4,
            "description": "Times a request is repeated after a connection error, "
            "timeout, 429 or 5xx before the pull or action fails.",
        },
        "max_requests_per_second": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Pace every request to this system (pulls, lookups and an "
            "apply's parallel actions alike) to at most this many a second on average. "
            "Default: unpaced; rate-limit answers are waited out either way.",
        },
    }


def retry_policy(
    max_retries: int, max_requests_per_second: float | None = None, **kwargs: Any
) -> RetryPolicy:
    """The RetryPolicy of one system from its options: `max_retries` retries, every
    attempt paced by one TokenBucket when the options set a pace."""
    pace = max_requests_per_second
    limiter = TokenBucket(pace, burst=max(1, int(pace))) if pace else None
    return RetryPolicy(max_attempts=max_retries + 1, limiter=limiter, **kwargs)


def parse_retry_after(value: str, *, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or an HTTP date).

    None when the value is neither; a date in the past gives 0.
    """
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN is not a delay
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as such
        return None
    return max(when.timestamp() - now, 0.0)


def parse_reset(value: str, *, now: float) -> float | None:
    """Seconds to wait from a rate-limit reset header: a Unix time or a delay."""
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if number != number or number < 0:
        return None
    if number >= _EPOCH_THRESHOLD:
        return max(number - now, 0.0)
    return number


def server_delay(headers: httpx.Headers, *, now: float) -> float | None:
    """How long the server asked us to wait, from the first header that says so."""
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        delay = parse_retry_after(retry_after, now=now)
        if delay is not None:
            return delay
    for name in ("RateLimit-Reset", "X-RateLimit-Reset", "X-Rate-Limit-Reset"):
        value = headers.get(name)
        if value is not None:
            delay = parse_reset(value, now=now)
            if delay is not None:
                return delay
    return None


def describe_status(response: httpx.Response) -> str:
    """`503 Service Unavailable`: the status as people know it."""
    phrase = response.reason_phrase
    if not phrase:
        try:
            phrase = http.HTTPStatus(response.status_code).phrase
        except ValueError:
            phrase = ""
    return f"{response.status_code} {phrase}".strip()


def request_secrets(request: httpx.Request) -> tuple[str, ...]:
    """The credentials a request carries, to be hidden from every message about it."""
    found: list[str] = []
    for name in ("Authorization", "Proxy-Authorization"):
        value = request.headers.get(name)
        if value:
            found.append(value)
            _, _, credential = value.partition(" ")
            if credential:
                found.append(credential.strip())
    if request.url.password:
        found.append(request.url.password)
    return tuple(found)


def describe_request(request: httpx.Request) -> str:
    """`GET /v2/Users?startIndex=1`: enough to find the call in a server log."""
    target = request.url.raw_path.decode("ascii", "replace")
    return f"{request.method} {target}"


def send(
    client: httpx.Client,
    request: httpx.Request,
    *,
    system: str,
    retry: RetryPolicy,
    idempotent: bool | None = None,
    secrets: Iterable[str] = (),
) -> httpx.Response:
    """Send `request`, retrying what is worth retrying; return the final response.

    A 2xx, 3xx or non-retryable 4xx is returned for the caller to interpret. A request
    that still fails after `retry.max_attempts` raises `ConnectorError`.

    `idempotent` defaults to what the method promises (GET, PUT, DELETE… yes; POST,
    PATCH no). A non-idempotent request is repeated only when the server cannot have
    acted on it: the connection was never made, or it answered 429 or 503. Pass
    `idempotent=True` for a POST that only reads (SCIM `/.search`) or a PATCH that sets
    a value.
    """
    hidden = (*secrets, *request_secrets(request))
    repeatable = request.method in IDEMPOTENT_METHODS if idempotent is None else idempotent
    what = describe_request(request)
    last = ""
    for attempt in range(1, retry.max_attempts + 1):
        response: httpx.Response | None = None
        if retry.limiter is not None:
            retry.limiter.take()
        try:
            response = client.send(request)
        except _NOT_SENT_ERRORS as exc:
            last = _describe_error(exc)
        except _MAYBE_SENT_ERRORS as exc:
            last = _describe_error(exc)
            if not repeatable:
                message = (
                    f"{what}: {last} after the request was sent; not repeated because "
                    "the server may have performed it. Check the system's state before "
                    "running again"
                )
                raise ConnectorError(system, redact(message, hidden)) from exc
        except httpx.HTTPError as exc:
            # Invalid URL, unsupported protocol, proxy or decoding errors: retrying
            # cannot help.
            message = f"{what}: {_describe_error(exc)}"
            raise ConnectorError(system, redact(message, hidden)) from exc
        else:
            status = response.status_code
            if status not in _RETRY_STATUSES or (
                not repeatable and status not in _NOT_PERFORMED_STATUSES
            ):
                return response
            last = describe_status(response)
            response.close()
        if attempt == retry.max_attempts:
            break
        delay = retry.delay(attempt, response)
        # Info, not warning: a retry that then succeeds is routine; giving up is the error.
        log.info(
            "%s",
            redact(
                f"{system}: {what}: {last}; retrying in {delay:.1f}s "
                f"(attempt {attempt + 1} of {retry.max_attempts})",
                hidden,
            ),
        )
        retry.sleep(delay)
    message = (
        f"{what}: gave up after {retry.max_attempts} attempts (last: {last}); "
        "check the server or raise retries"
    )
    raise ConnectorError(system, redact(message, hidden))


def server_text(text: str, secrets: Iterable[str], *, limit: int = SERVER_TEXT_LIMIT) -> str:
    """Text a server sent, fit to keep in a message: redacted, then cut to `limit`.

    Redacting comes first, on the whole text: cut first, and a secret straddling the
    cut would lose its tail, no longer match, and its head would survive.
    """
    shown = redact(text, secrets)
    if len(shown) > limit:
        shown = shown[:limit] + "…"
    return " ".join(shown.split())


def read_json(response: httpx.Response, *, system: str, secrets: Iterable[str] = ()) -> Any:
    """The JSON body of a response, or ConnectorError saying what came back instead."""
    try:
        return response.json()
    except ValueError as exc:
        hidden = (*secrets, *request_secrets(response.request))
        snippet = server_text(response.text, hidden)
        message = (
            f"{describe_request(response.request)}: answered {describe_status(response)} "
            f"with a body that is not JSON ({snippet!r})"
        )
        raise ConnectorError(system, redact(message, hidden)) from exc


def _describe_error(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
