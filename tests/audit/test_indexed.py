"""Walking many snapshot paths as their top directories reads the same changes as
walking each path."""

from __future__ import annotations

from reconciler.audit.changes import walk_of
from reconciler.audit.repository import AuditRepository
from reconciler.audit.timeline import ACCOUNT, IDENTITY
from reconciler.testing.access_repo import company
from tests.audit.test_audit_person import cycle


def app_paths(app: str) -> list[str]:
    return [f"state/apps/{app}/accounts.yaml", f"state/apps/{app}/accounts"]


def test_many_paths_are_walked_as_their_directories_and_filtered_after():
    paths = [p for app in ("a", "b", "c") for p in app_paths(app)]
    walked, wanted = walk_of([*paths, "state/identities/corp.yaml"])
    assert walked == ["state/apps", "state/identities"]
    assert wanted("a", ACCOUNT) and wanted("corp", IDENTITY)
    assert not wanted("d", ACCOUNT) and not wanted("hr", IDENTITY)
    assert not wanted("a", IDENTITY)


def test_few_paths_are_walked_as_they_are():
    walked, wanted = walk_of(["state/identities", *app_paths("a")])
    assert walked == ["state/identities", *app_paths("a")]
    assert wanted("any-source", IDENTITY) and wanted("a", ACCOUNT)
    assert not wanted("b", ACCOUNT)


def test_reading_many_apps_gives_each_apps_changes(tmp_path):
    with company(tmp_path) as c:
        cycle(c)
        history = AuditRepository(c.repo)
        alone = history.indexed_changes(app_paths("wiki"))
        assert alone
        others = [p for app in ("crm", "erp", "hr-tool") for p in app_paths(app)]
        assert history.indexed_changes([*others, *app_paths("wiki")]) == alone
        assert history.indexed_counts([*others, *app_paths("wiki")]) == history.indexed_counts(
            app_paths("wiki")
        )
