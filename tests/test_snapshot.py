from __future__ import annotations

import yaml

from reconciler import snapshot
from reconciler.model import Account, Identity

HOSTILE = "Zoë \u2028 line\u0085sep \u202e evil | <b> `x` \x7f"


def accounts(n: int) -> list[Account]:
    return [
        Account.build(
            str(i),
            f"user{i}",
            f"user{i}@example.com",
            f"User {i}",
            roles=["b", "a"],
            entitlements=[f"repo:{i % 7}:read"],
        )
        for i in range(n)
    ]


def test_one_record_per_line_and_plain_yaml(tmp_path):
    data = [*accounts(3), Account.build("x", "weird", display_name=HOSTILE)]
    snapshot.write_accounts(tmp_path, "wiki", data)
    path = tmp_path / "state/apps/wiki/accounts.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1] == "accounts:"
    assert len(lines) == 2 + len(data)
    assert lines[2].startswith('- {"id":"0","username":"user0"')
    parsed = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert parsed["accounts"][3]["display_name"] == HOSTILE
    assert snapshot.read_accounts(tmp_path, "wiki") == {a.id: a for a in data}


def test_writing_the_same_data_twice_changes_nothing(tmp_path):
    assert snapshot.write_accounts(tmp_path, "wiki", accounts(5))
    before = (tmp_path / "state/apps/wiki/accounts.yaml").read_bytes()
    assert not snapshot.write_accounts(tmp_path, "wiki", list(reversed(accounts(5))))
    assert (tmp_path / "state/apps/wiki/accounts.yaml").read_bytes() == before


def test_reformatted_file_is_read_through_yaml(tmp_path):
    path = tmp_path / "state/apps/wiki/accounts.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        "accounts:\n"
        "  - id: '7'\n    username: alice\n    email: a@example.com\n    display_name: Alice\n"
        "    status: active\n    type: human\n    roles: [admin]\n    entitlements: []\n"
    )
    assert snapshot.read_accounts(tmp_path, "wiki") == {
        "7": Account.build("7", "alice", "a@example.com", "Alice", roles=["admin"])
    }


def test_big_apps_are_sharded_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "SHARD_ABOVE", 50)
    data = accounts(120)
    snapshot.write_accounts(tmp_path, "wiki", data)
    shard_dir = tmp_path / "state/apps/wiki/accounts"
    assert len(list(shard_dir.glob("*.yaml"))) == 256
    assert not (tmp_path / "state/apps/wiki/accounts.yaml").exists()
    assert snapshot.read_accounts(tmp_path, "wiki") == {a.id: a for a in data}
    # shrinking below the threshold goes back to one file
    snapshot.write_accounts(tmp_path, "wiki", data[:10])
    assert not shard_dir.exists()
    assert len(snapshot.read_accounts(tmp_path, "wiki") or {}) == 10


def test_invalid_record_names_file_and_line(tmp_path):
    path = tmp_path / "state/apps/wiki/accounts.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        'accounts:\n- {"id": "1", "status": "active", "type": "human"}\n'
        '- {"id": "2", "status": "gone", "type": "human"}\n'
    )
    import pytest

    from reconciler.errors import SnapshotError

    records = snapshot.read_accounts(tmp_path, "wiki")
    assert records is not None and records["1"].id == "1"
    # Records are decoded when used; a broken one names its file and the bad value.
    with pytest.raises(SnapshotError, match=r"accounts.yaml.*'gone'"):
        records["2"]


def test_identities_round_trip_with_empty_list(tmp_path):
    assert snapshot.write_identities(tmp_path, "corp", [])
    assert snapshot.read_identities(tmp_path, "corp") == {}
    people = [Identity.build("i1", "a@example.com", "a", groups=["z", "y"])]
    snapshot.write_identities(tmp_path, "corp", people)
    assert snapshot.read_identities(tmp_path, "corp") == {"i1": people[0]}
