"""The shared HTTP layer: retries, backoff, rate-limit headers, redaction.

httpx.MockTransport is the right tool here: what is under test is how `send` reacts to
what a transport does, not any server's behaviour.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from reconciler.connectors.base import ConnectorContext
from reconciler.connectors.http import (
    REDACTED,
    RetryPolicy,
    TokenBucket,
    build_client,
    parse_reset,
    parse_retry_after,
    read_json,
    redact,
    send,
    server_delay,
    server_text,
)
from reconciler.connectors.scim import TYPE, ScimConnector
from reconciler.errors import ConfigError, ConnectorError

NOW = 1_700_000_000.0  # a fixed clock: 2023-11-14T22:13:20Z
TOKEN = "tok-3x4mple/+secret"


def policy(sleeps: list[float], **kwargs: float) -> RetryPolicy:
    """A policy that records its sleeps, with jitter fixed at its maximum."""
    return RetryPolicy(
        sleep=sleeps.append,
        jitter=lambda: 1.0,
        clock=lambda: NOW,
        **kwargs,  # type: ignore[arg-type]
    )


def client_for(
    answers: Iterator[httpx.Response | Exception], token: str | None = TOKEN
) -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    transport = httpx.MockTransport(handler)
    client = build_client(
        "app", "https://scim.example/v2", token=token, timeout=5, transport=transport
    )
    return client, seen


# -- Parsing what servers say about waiting ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),  # HTTP date, 30 s after NOW
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),  # in the past: go now
        ("soon", None),
        ("", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", 12.0),  # IETF RateLimit draft: seconds from now
        (str(int(NOW) + 42), 42.0),  # GitHub / Okta: a Unix time
        (str(int(NOW) - 5), 0.0),
        ("later", None),
        ("-1", None),
    ],
)
def test_parse_reset(value: str, expected: float | None) -> None:
    assert parse_reset(value, now=NOW) == expected


def test_retry_after_wins_over_rate_limit_headers() -> None:
    headers = httpx.Headers({"Retry-After": "3", "X-RateLimit-Reset": str(int(NOW) + 60)})
    assert server_delay(headers, now=NOW) == 3.0
    assert server_delay(httpx.Headers({"X-Rate-Limit-Reset": str(int(NOW) + 9)}), now=NOW) == 9
    assert server_delay(httpx.Headers({"RateLimit-Reset": "4"}), now=NOW) == 4.0
    assert server_delay(httpx.Headers({"Retry-After": "bogus"}), now=NOW) is None


# -- Backoff ------------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    top = RetryPolicy(base_delay=0.5, max_delay=30, jitter=lambda: 0.999999)
    assert [round(top.backoff(n), 2) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    bottom = RetryPolicy(jitter=lambda: 0.0)
    assert bottom.backoff(5) == 0.0
    assert RetryPolicy(max_delay=30).backoff(10_000) <= 30  # no overflow


def test_a_server_delay_is_capped_at_max_delay() -> None:
    retry = RetryPolicy(max_delay=10, clock=lambda: NOW)
    response = httpx.Response(429, headers={"Retry-After": "3600"})
    assert retry.delay(1, response) == 10


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# -- send ---------------------------------------------------------------------------------


def test_429_and_5xx_are_retried_until_success() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(503),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    client, seen = client_for(answers)
    sleeps: list[float] = []
    response = send(
        client, client.build_request("GET", "Users"), system="app", retry=policy(sleeps)
    )
    assert response.status_code == 200
    assert len(seen) == 3
    assert sleeps == [2.0, 1.0]  # the server's word, then backoff for attempt 2 (0.5·2)


def test_gives_up_after_max_attempts_with_the_last_status() -> None:
    client, seen = client_for(iter([httpx.Response(503)] * 3))
    sleeps: list[float] = []
    with pytest.raises(ConnectorError) as caught:
        send(
            client,
            client.build_request("GET", "Users"),
            system="app",
            retry=policy(sleeps, max_attempts=3),
        )
    assert str(caught.value) == (
        "app: GET /v2/Users: gave up after 3 attempts (last: 503 Service Unavailable); "
        "check the server or raise retries"
    )
    assert len(seen) == 3 and len(sleeps) == 2  # no pointless sleep after the last attempt


@pytest.mark.parametrize("status", [400, 401, 404, 409, 501])
def test_final_statuses_are_returned_without_retry(status: int) -> None:
    client, seen = client_for(iter([httpx.Response(status)]))
    response = send(client, client.build_request("GET", "Users"), system="app", retry=policy([]))
    assert response.status_code == status and len(seen) == 1


def test_connection_errors_and_timeouts_are_retried() -> None:
    answers: Iterator[httpx.Response | Exception] = iter(
        [
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            httpx.ReadError("reset"),
            httpx.Response(200),
        ]
    )
    client, seen = client_for(answers)
    response = send(client, client.build_request("GET", "Users"), system="app", retry=policy([]))
    assert response.status_code == 200 and len(seen) == 4


def test_a_post_is_not_repeated_once_the_server_may_have_performed_it() -> None:
    client, seen = client_for(iter([httpx.ReadError("connection reset"), httpx.Response(201)]))
    request = client.build_request("POST", "Users", json={"userName": "x"})
    with pytest.raises(ConnectorError, match="may have performed it"):
        send(client, request, system="app", retry=policy([]))
    assert len(seen) == 1


def test_a_post_is_repeated_when_it_cannot_have_been_performed() -> None:
    answers: Iterator[httpx.Response | Exception] = iter(
        [
            httpx.ConnectError("refused"),
            httpx.Response(503),
            httpx.Response(429),
            httpx.Response(201),
        ]
    )
    client, seen = client_for(answers)
    request = client.build_request("POST", "Users", json={"userName": "x"})
    assert send(client, request, system="app", retry=policy([])).status_code == 201
    assert len(seen) == 4


def test_a_post_answered_500_is_returned_not_repeated() -> None:
    client, seen = client_for(iter([httpx.Response(500)]))
    request = client.build_request("POST", "Users", json={"userName": "x"})
    assert send(client, request, system="app", retry=policy([])).status_code == 500
    assert len(seen) == 1


def test_an_idempotent_post_may_be_repeated() -> None:
    client, seen = client_for(iter([httpx.ReadError("reset"), httpx.Response(200)]))
    request = client.build_request("POST", "Users/.search", json={})
    response = send(client, request, system="app", retry=policy([]), idempotent=True)
    assert response.status_code == 200 and len(seen) == 2


# -- Clients and credentials --------------------------------------------------------------


def test_build_client_sends_the_token_and_accept_header() -> None:
    client, seen = client_for(iter([httpx.Response(200)]))
    client.send(client.build_request("GET", "/Users"))
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert "application/scim+json" in seen[0].headers["Accept"]
    assert str(seen[0].url) == "https://scim.example/v2/Users"


@pytest.mark.parametrize("url", ["ftp://scim.example/v2", "scim.example/v2", "http://"])
def test_build_client_refuses_a_url_that_is_not_http(url: str) -> None:
    with pytest.raises(ConfigError, match="http"):
        build_client("app", url, token=None, timeout=5)


def test_redact_hides_every_form_of_a_secret() -> None:
    text = f"Bearer {TOKEN} url=?t=tok-3x4mple%2F%2Bsecret other=tok-3x4mple%2F%2Bsecret"
    assert redact(text, [TOKEN]) == f"Bearer {REDACTED} url=?t={REDACTED} other={REDACTED}"
    assert redact("nothing to hide", ["", TOKEN]) == "nothing to hide"
    assert redact("abcd", ["abc", "abcd"]) == REDACTED  # the longer secret is hidden whole


ErrorFactory = Callable[[], Exception]


@pytest.mark.parametrize(
    ("make_error", "retried"),
    [
        (lambda: httpx.ConnectError(f"cannot reach proxy with {TOKEN}"), True),
        (lambda: httpx.ReadError(f"reset (Authorization: Bearer {TOKEN})"), False),
        (lambda: httpx.UnsupportedProtocol(f"bad protocol {TOKEN}"), False),
    ],
)
def test_the_token_never_appears_in_errors_or_logs(
    make_error: ErrorFactory, retried: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client, seen = client_for(iter([make_error() for _ in range(3)]))
    request = client.build_request("POST", "Users", params={"token": TOKEN})
    with pytest.raises(ConnectorError) as caught:
        send(client, request, system="app", retry=policy([], max_attempts=3))
    assert TOKEN not in str(caught.value)
    assert REDACTED in str(caught.value)
    assert len(seen) == (3 if retried else 1)
    assert len(caplog.records) == (2 if retried else 0)  # one line per retry
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


def test_read_json_says_what_came_back_instead() -> None:
    client, _ = client_for(iter([httpx.Response(200, text="<html>login page</html>")]))
    response = client.send(client.build_request("GET", "Users"))
    with pytest.raises(ConnectorError, match=r"not JSON \('<html>login page"):
        read_json(response, system="app")


def _pieces(secret: str, size: int = 6) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


@pytest.mark.parametrize("start", [0, 100, 110, 114])
def test_server_text_redacts_before_it_cuts(start: int) -> None:
    # The token starts at `start`: a cut at 120 first would leave its head behind.
    text = "x" * start + f"{TOKEN} echoed back"
    shown = server_text(text, [TOKEN], limit=120)
    assert not any(piece in shown for piece in _pieces(TOKEN))
    assert len(shown) <= 121  # the limit and a mark that text was cut


def test_server_text_keeps_short_text_on_one_line() -> None:
    assert server_text("bad\n  request\tfor " + TOKEN, [TOKEN]) == f"bad request for {REDACTED}"


def test_read_json_hides_a_token_echoed_across_the_cut() -> None:
    echoed = "<" * 88 + f"Authorization: Bearer {TOKEN} was refused"  # the token at 110
    client, _ = client_for(iter([httpx.Response(200, text=echoed)]))
    response = client.send(client.build_request("GET", "Users"))
    with pytest.raises(ConnectorError) as caught:
        read_json(response, system="app")
    assert not any(piece in str(caught.value) for piece in _pieces(TOKEN))


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_token_bucket_lets_a_burst_through_then_paces_to_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=3, clock=clock, sleep=clock.sleep)
    waits = [bucket.take() for _ in range(7)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert clock.now == pytest.approx(2.0)  # 7 requests: 3 at once, then 2 a second
    clock.now += 10  # idle: the bucket fills up to its burst, no more
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)


def test_threads_sharing_a_bucket_are_paced_together() -> None:
    bucket = TokenBucket(200.0, burst=1)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: bucket.take(), range(41)))
    # 40 requests after the first at 200 a second: 0.2 s however many threads take them.
    assert time.monotonic() - started >= 0.19


def test_send_takes_a_token_before_every_attempt() -> None:
    taken: list[int] = []

    class Counting(TokenBucket):
        def take(self) -> float:
            taken.append(1)
            return 0.0

    answers = iter([503, 503, 200])
    transport = httpx.MockTransport(lambda _: httpx.Response(next(answers)))
    client = httpx.Client(transport=transport, base_url="https://api.example.com")
    retry = RetryPolicy(sleep=lambda _: None, jitter=lambda: 0.0, limiter=Counting(1.0))
    response = send(client, client.build_request("GET", "/users"), system="app", retry=retry)
    assert response.status_code == 200 and len(taken) == 3


def test_a_scim_system_paced_by_its_options_shares_one_bucket() -> None:
    context = ConnectorContext(
        "app", {"url": "https://scim.example.com/v2", "max_requests_per_second": 5}, Path(".")
    )
    made = TYPE.build(context)
    assert isinstance(made, ScimConnector)
    assert made.retry.limiter is not None and made.retry.limiter.rate == 5
    unpaced = TYPE.build(ConnectorContext("app", {"url": "https://scim.example.com/v2"}, Path(".")))
    assert isinstance(unpaced, ScimConnector) and unpaced.retry.limiter is None
