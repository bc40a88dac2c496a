"""The time, as the access repo writes it (UTC, whole seconds)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def read_time(value: object) -> datetime | None:
    """A time from a file the tool wrote (`…Z` or `…+00:00`), in UTC; None when it is
    absent, not a time, or has no offset (a file people may edit is not trusted to say
    which zone it meant)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else None
