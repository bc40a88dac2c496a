"""A fault-injecting proxy in front of a real SCIM server, for adversarial tests.

`Faults` is WSGI middleware (pass it as `middleware=` to `start_scim_server`): every
request reaches the real server unless a fault is armed, so the server's own behaviour
stays real while a test makes it slow, lying, leaky or short. It counts the writes the
server actually performed, per user, which is what "acted twice" is measured by.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

WRITE_METHODS = ("PATCH", "PUT", "DELETE")


@dataclass
class Faults:
    # Writes the server performed, by user id.
    performed: Counter[str] = field(default_factory=Counter)
    # Hold every write until `release` is set; `holding` is set while one waits.
    hold_writes: bool = False
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    # Answer writes 204 without performing them: a server that lies.
    swallow_writes: bool = False
    # User ids whose writes fail with 500.
    failing_users: set[str] = field(default_factory=set)
    # Error bodies echo the request's Authorization header (a debugging proxy does).
    echo_authorization: bool = False
    # List responses leave out totalResults.
    drop_total: bool = False
    # List pages after the first come back empty (the last page is lost).
    lose_later_pages: bool = False
    # Users (by userName) listed with a null id, as rows made before a SCIM layer was added.
    null_ids: set[str] = field(default_factory=set)

    def __call__(self, app: WSGIApplication) -> WSGIApplication:
        def proxy(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            method = environ["REQUEST_METHOD"]
            path = environ.get("PATH_INFO", "").rstrip("/")
            user_id = _user_id(path)
            if method in WRITE_METHODS and user_id is not None:
                return self._write(app, environ, start_response, user_id)
            if method == "GET" and path.endswith("/Users") and self._touches_lists():
                return self._list(app, environ, start_response)
            return app(environ, start_response)

        return proxy

    def _touches_lists(self) -> bool:
        return self.drop_total or self.lose_later_pages or bool(self.null_ids)

    def _write(
        self,
        app: WSGIApplication,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        user_id: str,
    ) -> Iterable[bytes]:
        if self.hold_writes:
            self.holding.set()
            self.release.wait(60)
        if self.swallow_writes:
            start_response("204 No Content", [])
            return [b""]
        if user_id in self.failing_users:
            body = "internal error"
            if self.echo_authorization:
                body += f"; request headers: Authorization: {environ.get('HTTP_AUTHORIZATION')}"
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [body.encode()]
        self.performed[user_id] += 1
        return app(environ, start_response)

    def _list(
        self, app: WSGIApplication, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = status
            return lambda data: None

        body = b"".join(app(environ, keep))
        page = json.loads(body)
        start = int(parse_qs(environ.get("QUERY_STRING", "")).get("startIndex", ["1"])[0])
        if self.drop_total:
            page.pop("totalResults", None)
        for user in page.get("Resources", []):
            if user.get("userName") in self.null_ids:
                user["id"] = None
        if self.lose_later_pages and start > 1:
            page["Resources"] = []
            page["itemsPerPage"] = 0
        start_response(captured["status"], [("Content-Type", "application/scim+json")])
        return [json.dumps(page).encode()]


def _user_id(path: str) -> str | None:
    head, _, tail = path.rpartition("/")
    return tail if head.endswith("/Users") and tail else None
