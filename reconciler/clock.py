"""The time, as the access repo writes it (UTC, whole seconds)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def timestamp(moment: datetime) -> str:
    """`2025-01-31T17:05:09Z`: the clock fields of `moment` (callers give UTC)."""
    return moment.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


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
