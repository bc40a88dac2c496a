"""A second, independently written SCIM server (django-scim2) on 127.0.0.1, for tests.

    with start_django_scim_server(token="s3cret") as server:
        ids = server.seed(users=[{"userName": "alice"}], groups=[
            {"displayName": "admins", "members": ["alice"]},
        ])
        ...  # point a connector at server.url

django-scim2 is a Django app, not a server: this module is the smallest Django project
around it (one app, one user and one group model, SQLite in a temporary directory),
served like `scim_server.start_scim_server` from a thread on a random port, with the same
`middleware` hook and the same data helpers, so a test can run against either server.

What it does differently from scim2-server, which is why tests run against both:
- users and groups are rows of two tables numbered 1, 2, 3… each: user 1 and group 1
  both exist, and a group's members carry `$ref` but no `type`;
- it keeps userName, name.givenName/familyName, one email, active and externalId, and
  drops displayName, userType, roles and entitlements; `User.groups` is filled in;
- a group holds users only (no nested groups), set by PATCH, not on POST;
- a filter on an attribute it cannot map answers 200 with no results;
- PATCH answers 200 with the resource; there is no `/Bulk`.

Django's settings are global to a process, so a process holds one Django project: a
server started after another one stopped gets an emptied database (ids start at 1
again); starting a second one while the first runs raises ReconcilerError.
"""

from __future__ import annotations

import atexit
import functools
import hmac
import json
import logging
import shutil
import tempfile
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import httpx

from reconciler.connectors.http import request_secrets, server_text
from reconciler.errors import ReconcilerError
from reconciler.testing.scim_server import (
    GROUP_SCHEMA,
    PATCH_OP,
    SCIM_JSON,
    USER_SCHEMA,
    Middleware,
    ScimServer,
    SeedResult,
    serving,
)

# Where the SCIM endpoints live in the project's URL space.
BASE_PATH = "/scim/v2"

# The WSGI environ key through which a server tells the Django middleware its token; a
# client cannot set it (request headers arrive as HTTP_* keys).
_TOKEN_KEY = "reconciler.bearer_token"

# The Django models, defined once Django is set up (see `_setup`), and named in the
# SCIM_SERVICE_PROVIDER settings by these module attributes.
ScimUser: Any = None
ScimGroup: Any = None

_running = threading.Lock()


@dataclass
class DjangoScimServer(ScimServer):
    """A running django-scim2 project: its base URL (ending in /scim/v2) and token."""

    implementation: ClassVar[str] = "django-scim2"

    def seed(
        self, users: Sequence[Mapping[str, Any]], groups: Sequence[Mapping[str, Any]] = ()
    ) -> SeedResult:
        """Create users then groups one by one (django-scim2 has no /Bulk).

        As with `scim_server.seed`, a group's `members` may be userNames of users seeded
        in the same call, or member dicts sent as they are; django-scim2 has no nested
        groups, so naming a group as a member raises ReconcilerError.
        """
        return seed(self.url, self.token, users, groups)


@contextmanager
def start_django_scim_server(
    token: str | None = None, *, middleware: Middleware | None = None
) -> Iterator[DjangoScimServer]:
    """Serve an empty django-scim2 project on 127.0.0.1 until the block ends.

    With `token`, every request must carry `Authorization: Bearer <token>`; without
    one, every request is accepted. `middleware` wraps the WSGI application (tests use
    it to inject faults).
    """
    if not _running.acquire(blocking=False):
        raise ReconcilerError(
            "a django-scim2 server is already running in this process; Django's settings "
            "are global, so stop it before starting another"
        )
    try:
        django_app = _setup()
        _empty_database()
        app = _with_token(django_app, token)
        with serving(app, name="django-scim2", middleware=middleware) as origin:
            yield DjangoScimServer(url=f"{origin}{BASE_PATH}", token=token)
    finally:
        _running.release()


def _with_token(app: WSGIApplication, token: str | None) -> WSGIApplication:
    if token is None:
        return app

    def with_token(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        environ[_TOKEN_KEY] = token
        return app(environ, start_response)

    return with_token


@functools.cache
def _setup() -> WSGIApplication:
    """Configure and set up Django once per process; its WSGI application."""
    try:
        import django
        from django.conf import settings
    except ImportError as exc:
        raise ReconcilerError(
            "the django-scim2 test server needs the django-scim2 package; "
            "install it with: pip install 'access-reconciler[test]'"
        ) from exc
    if settings.configured:
        raise ReconcilerError("Django is already configured in this process by someone else")
    directory = Path(tempfile.mkdtemp(prefix="reconciler-django-scim2-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    urlconf = types.ModuleType(f"{__name__}.urls")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="reconciler-testing-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        INSTALLED_APPS=["django_scim"],
        MIDDLEWARE=[f"{__name__}.BearerTokenMiddleware"],
        ROOT_URLCONF=urlconf,
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(directory / "scim.sqlite3"),
                # Request threads write one at a time; wait for the lock, do not fail.
                "OPTIONS": {"timeout": 30, "init_command": "PRAGMA synchronous=OFF"},
            }
        },
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        # Leave the host process's logging alone.
        LOGGING_CONFIG=None,
        SCIM_SERVICE_PROVIDER={
            "USER_MODEL_GETTER": f"{__name__}._user_model",
            "GROUP_MODEL": f"{__name__}.ScimGroup",
            "BASE_LOCATION_GETTER": f"{__name__}._base_location",
            "NETLOC": "127.0.0.1",  # required by django-scim2, unused with our getter
            "AUTHENTICATION_SCHEMES": [
                {
                    "type": "oauthbearertoken",
                    "name": "OAuth Bearer Token",
                    "description": "Authentication with a bearer token",
                }
            ],
        },
    )
    django.setup()
    # django.request warns of every 4xx; with no handler of its own, Python's last-resort
    # handler would print each one. Records still propagate to the host's handlers.
    logging.getLogger("django").addHandler(logging.NullHandler())
    _define_models()

    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.db import connections
    from django.urls import include, path

    urlconf.urlpatterns = [  # type: ignore[attr-defined]
        path(BASE_PATH.strip("/") + "/", include("django_scim.urls", namespace="scim"))
    ]
    # django_scim has no migrations of its own: its tables are made from the models.
    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False, skip_checks=True)
    connections.close_all()
    handler: WSGIApplication = WSGIHandler()
    return handler


def _define_models() -> None:
    """The user and group models django-scim2's adapters expect (AbstractUser's fields
    it reads, without django.contrib.auth)."""
    global ScimUser, ScimGroup
    from django.db import models
    from django.utils import timezone
    from django_scim.models import AbstractSCIMGroupMixin, AbstractSCIMUserMixin

    class Group(AbstractSCIMGroupMixin):  # type: ignore[misc]
        name = models.CharField(max_length=150, unique=True)

        class Meta:
            app_label = "django_scim"

    class User(AbstractSCIMUserMixin):  # type: ignore[misc]
        username = models.CharField(max_length=150, unique=True)
        first_name = models.CharField(max_length=150, blank=True)
        last_name = models.CharField(max_length=150, blank=True)
        email = models.EmailField(blank=True)
        is_active = models.BooleanField(default=True)
        date_joined = models.DateTimeField(default=timezone.now)
        scim_groups = models.ManyToManyField(Group, related_name="user_set")

        class Meta:
            app_label = "django_scim"

    ScimUser, ScimGroup = User, Group


def _user_model() -> Any:
    return ScimUser


def _base_location(request: Any = None, *args: Any, **kwargs: Any) -> str:
    # Resource locations and member `$ref`s point at the address the client used.
    if request is None:
        return "http://127.0.0.1"
    return f"{request.scheme}://{request.get_host()}"


class _Client:
    # What django-scim2's auth check asks of `request.user`.
    is_authenticated = True


class BearerTokenMiddleware:
    """Authenticates a request whose bearer token is the server's, or any request when
    the server has none; django-scim2 then answers 401 to the rest."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        expected = request.META.get(_TOKEN_KEY)
        given = request.META.get("HTTP_AUTHORIZATION", "")
        if expected is None or hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            request.user = _Client()
        return self.get_response(request)


def _empty_database() -> None:
    """Delete every row and restart the ids at 1, as a new server would."""
    from django.core.management import call_command
    from django.db import connections

    call_command("flush", verbosity=0, interactive=False)
    connections.close_all()


# ---------------------------------------------------------------------------------------
# Data helpers: plain HTTP, like scim_server's (set_active, delete_user and list_users
# there work against this server as they are).


def seed(
    server_url: str,
    token: str | None,
    users: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]] = (),
) -> SeedResult:
    """Create `users` (POST /Users), then `groups` (POST /Groups, then PATCH to add
    their members, which django-scim2 ignores on POST); return their ids."""
    user_ids: dict[str, str] = {}
    group_ids: dict[str, str] = {}
    with _client(server_url, token) as client:
        for index, user in enumerate(users):
            if not user.get("userName"):
                raise ReconcilerError(f"seed: user number {index + 1} has no userName")
            created = _create(client, "Users", {"schemas": [USER_SCHEMA], **user})
            user_ids[str(user["userName"])] = created
        for index, group in enumerate(groups):
            if not group.get("displayName"):
                raise ReconcilerError(f"seed: group number {index + 1} has no displayName")
            name = str(group["displayName"])
            members: list[dict[str, Any]] = []
            for member in group.get("members") or ():
                if not isinstance(member, str):
                    members.append(dict(member))
                elif member in user_ids:
                    members.append({"value": user_ids[member]})
                elif member in group_ids:
                    raise ReconcilerError(
                        f"seed: group {name!r} lists group {member!r}: django-scim2 groups "
                        "hold users only"
                    )
                else:
                    raise ReconcilerError(f"seed: group {name!r} lists unknown member {member!r}")
            data = {k: v for k, v in group.items() if k != "members"}
            group_ids[name] = _create(client, "Groups", {"schemas": [GROUP_SCHEMA], **data})
            if members:
                body = {
                    "schemas": [PATCH_OP],
                    "Operations": [{"op": "add", "path": "members", "value": members}],
                }
                response = client.patch(
                    f"Groups/{quote(group_ids[name], safe='')}", content=json.dumps(body)
                )
                _check(response, 200, 204)
    return SeedResult(users=user_ids, groups=group_ids)


def _client(url: str, token: str | None) -> httpx.Client:
    headers = {"Accept": SCIM_JSON, "Content-Type": SCIM_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=url.rstrip("/") + "/", headers=headers, timeout=120)


def _create(client: httpx.Client, endpoint: str, data: Mapping[str, Any]) -> str:
    response = client.post(endpoint, content=json.dumps(data))
    _check(response, 201)
    return str(response.json()["id"])


def _check(response: httpx.Response, *expected: int) -> None:
    if response.status_code not in expected:
        body = server_text(response.text, request_secrets(response.request), limit=300)
        raise ReconcilerError(
            f"django-scim2 at {response.request.url}: {response.request.method} answered "
            f"{response.status_code}: {body}"
        )
