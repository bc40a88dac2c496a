"""The identity snapshot a pull makes: tombstones, and the source's status time kept
only while the status stays the same."""

from __future__ import annotations

from reconciler.model import Identity
from reconciler.pull import merge_tombstones
from reconciler.snapshot import identity_records


def ident(status: str, at: str = "", id: str = "i1") -> Identity:
    return Identity.build(id, f"{id}@acme.com", status=status, status_changed_at=at)


def line(records, key: str = "i1") -> bytes:
    return records.line(key)


def test_a_status_time_is_taken_when_the_status_changes_and_kept_after() -> None:
    first = merge_tombstones(
        identity_records([ident("active")]), [ident("deprovisioned", "2026-11-20T08:00:00Z")]
    )
    assert b'"status_changed_at":"2026-11-20T08:00:00Z"' in line(first)
    # The source edits the leaver again (its modification time moves): the line stays.
    again = merge_tombstones(first, [ident("deprovisioned", "2026-11-22T10:00:00Z")])
    assert line(again) == line(first)
    # A source that stops giving the time does not rewrite the line either.
    assert line(merge_tombstones(first, [ident("deprovisioned")])) == line(first)
    # Back to active: the time of that change, or none when the source gives none.
    back = merge_tombstones(first, [ident("active")])
    assert b"status_changed_at" not in line(back)


def test_lines_without_a_status_time_are_unchanged_and_gone_identities_have_none() -> None:
    previous = identity_records([ident("active"), ident("suspended", "2026-11-01T00:00:00Z", "i2")])
    merged = merge_tombstones(previous, [ident("active")])
    assert line(merged) == line(previous)
    assert merged["i2"].status == "missing"
    assert b"status_changed_at" not in line(merged, "i2")
