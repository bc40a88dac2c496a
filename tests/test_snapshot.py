from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from reconciler import snapshot
from reconciler.errors import SnapshotError
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


def git(repo: Path, *args: str, stdin: bytes = b"") -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, input=stdin, capture_output=True, check=True
    ).stdout.decode()


def committed_blobs(repo: Path, directory: str) -> list[tuple[str, str]]:
    """(path relative to `directory`, blob id) of every file git holds under it at HEAD."""
    rows = [line.split() for line in git(repo, "ls-tree", "-r", "HEAD", directory).splitlines()]
    return [(path.removeprefix(f"{directory}/"), sha) for _mode, _type, sha, path in rows]


@pytest.mark.parametrize("data", [b"", b"accounts: []\n", HOSTILE.encode() * 1000])
def test_blob_id_is_the_id_git_gives_the_file(tmp_path, data):
    assert snapshot.blob_id(data) == git(tmp_path, "hash-object", "--stdin", stdin=data).strip()


def test_digests_are_over_the_blob_ids_git_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "SHARD_ABOVE", 50)
    snapshot.write_accounts(tmp_path, "big", accounts(120))
    snapshot.write_accounts(tmp_path, "wiki", accounts(3))
    snapshot.write_roles(tmp_path, "wiki", [])
    snapshot.write_identities(tmp_path, "corp", [Identity.build("1", "a@example.com")])
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "state")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "state")

    shards = committed_blobs(tmp_path, "state/apps/big")
    assert [name for name, _ in shards] == [f"accounts/{i:02x}.yaml" for i in range(256)]
    assert snapshot.accounts_digest(tmp_path, "big") == snapshot.blobs_digest(shards)
    wiki = [(n, b) for n, b in committed_blobs(tmp_path, "state/apps/wiki") if n != "roles.yaml"]
    assert [name for name, _ in wiki] == ["accounts.yaml"]
    assert snapshot.accounts_digest(tmp_path, "wiki") == snapshot.blobs_digest(wiki)
    corp = committed_blobs(tmp_path, "state/identities")
    assert snapshot.identities_digest(tmp_path, "corp") == snapshot.blobs_digest(corp)

    # The definition, spelled out: SHA-256 over "<name> <blob id>\n" per file, prefixed.
    lines = "".join(f"{name} {sha}\n" for name, sha in shards).encode()
    digest = snapshot.accounts_digest(tmp_path, "big")
    assert digest == "git-sha1:" + hashlib.sha256(lines).hexdigest()
    # The same from the files' bytes, as a generator that holds them in memory would.
    files = [(name, (tmp_path / "state/apps/big" / name).read_bytes()) for name, _ in shards]
    assert snapshot.files_digest(files) == digest
    # A file's name is part of the digest, not only its content.
    assert snapshot.files_digest([("accounts/00.yaml", b"x")]) != snapshot.files_digest(
        [("accounts/01.yaml", b"x")]
    )


def test_the_digest_follows_every_change_of_the_files(tmp_path):
    snapshot.write_accounts(tmp_path, "wiki", accounts(5))
    five = snapshot.accounts_digest(tmp_path, "wiki")
    assert snapshot.accounts_digest(tmp_path, "wiki") == five
    snapshot.write_accounts(tmp_path, "wiki", accounts(6))
    assert snapshot.accounts_digest(tmp_path, "wiki") != five
    snapshot.write_accounts(tmp_path, "wiki", accounts(5))
    assert snapshot.accounts_digest(tmp_path, "wiki") == five


def test_both_digest_formats_are_told_apart():
    legacy = snapshot.legacy_digest([b"accounts: []\n"])
    assert legacy == hashlib.sha256(b"accounts: []\n").hexdigest()
    assert snapshot.is_legacy_digest(legacy)
    current = snapshot.files_digest([("accounts.yaml", b"accounts: []\n")])
    assert current.startswith("git-sha1:") and not snapshot.is_legacy_digest(current)
    assert not snapshot.is_legacy_digest("sha256:" + legacy)


def test_an_app_with_both_forms_of_snapshot_is_refused():
    names = ["accounts.yaml", "accounts/00.yaml"]
    with pytest.raises(SnapshotError, match=re.escape("both accounts.yaml and accounts/ exist")):
        snapshot.account_files(names, "state/apps/wiki")
    assert snapshot.account_files(["accounts/01.yaml", "accounts/00.yaml", "roles.yaml"], "d") == [
        "accounts/00.yaml",
        "accounts/01.yaml",
    ]
    assert snapshot.account_files(["meta.yaml"], "d") == []


def write_snapshot(tmp_path: Path, text: str, name: str = "accounts.yaml") -> Path:
    path = tmp_path / "state/apps/wiki" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def read_all(tmp_path: Path) -> dict[str, Account]:
    """Read the wiki snapshot and decode every record, as a check that uses them would."""
    return dict(snapshot.read_accounts(tmp_path, "wiki") or {})


GOOD = '- {"id":"1","username":"a","status":"active","type":"human"}\n'


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('- {"id":"2","status":"gone","type":"human"}', "'gone'"),
        ('- {"id":"2","status":"active","type":"robot"}', "'robot'"),
        ('- {"id":"2","type":"human"}', "missing field 'status'"),
        ('- {"id":"2","status":"active","type":"human","roles":7}', "invalid record"),
        ('- {"id":"2","status":"active","type":"human"', "invalid record"),  # cut short
        ('- {"id":"2","status":"active","type":"human","id":"3"}', "id is given twice"),
        ('- {"status":"active","type":"human","id":7}', "must be a string"),
        ('- {"id":7,"status":"active","type":"human"}', "must be a string"),
        ('- {"id":null,"status":"active","type":"human"}', "must be a string, not null"),
        ('- {"id":["2"],"status":"active","type":"human"}', "must be a string"),
        ('- {"status":"active","type":"human"}', "missing field 'id'"),
        ('- {"id":"1","status":"active","type":"human"}', "duplicate id '1' (first at line 3)"),
    ],
)
def test_every_bad_line_is_named_by_file_and_line(tmp_path, line, problem):
    path = write_snapshot(tmp_path, f"# header\naccounts:\n{GOOD}{line}\n{GOOD.replace('1', '5')}")
    with pytest.raises(SnapshotError) as info:
        read_all(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: ")
    assert problem in message
    assert f"git checkout -- {path}" in message
    assert "'None'" not in message


def _line(account_id: str) -> str:
    return f'- {{"id":"{account_id}","status":"active","type":"human"}}\n'


@pytest.mark.parametrize(
    "text",
    [
        f"# header\naccounts:\n{_line('a')}{_line('b')}",  # as a check writes it
        f"{_line('a')}{_line('b')}",  # no heading
        f"# header\naccounts:\n{_line('a')}{_line('b')}".rstrip("\n"),  # no last newline
        f"accounts:\n\n# note\n{_line('a')}# between\n\n{_line('b')}",
        f"# h\naccounts:\n{_line('é')}{_line('b')}{_line('q')}",  # an id not in ASCII
        f"# h\naccounts:\n{_line(chr(92) + 'u00e9x')}{_line('b')}",  # an escaped id
        f'# h\naccounts:\n{_line("a")}- {{"status":"active","type":"human","id":"b"}}\n',
    ],
)
def test_every_record_is_read_with_its_line_number_from_any_layout(tmp_path, text):
    path = write_snapshot(tmp_path, text)
    expected = {
        yaml.safe_load(line[2:])["id"]: (path, number)
        for number, line in enumerate(text.split("\n"), start=1)
        if line.startswith("- ")
    }
    records = snapshot.read_accounts(tmp_path, "wiki")
    assert records is not None
    assert {key: records.where(key) for key in records} == expected
    assert {key: records[key].id for key in records} == {key: key for key in expected}
    assert all(line.endswith(b"\n") for line in records.lines.values())


def test_a_broken_record_is_reported_only_when_used(tmp_path):
    path = write_snapshot(
        tmp_path,
        'accounts:\n- {"id": "1", "status": "active", "type": "human"}\n'
        '- {"id": "2", "status": "gone", "type": "human"}\n',
    )
    records = snapshot.read_accounts(tmp_path, "wiki")
    assert records is not None and records["1"].id == "1"
    # Records are decoded when used; a broken one names its file, its line and the value.
    with pytest.raises(SnapshotError, match=rf"^{re.escape(str(path))}:3: .*'gone'"):
        records["2"]


def test_null_id_is_never_read_as_the_id_none(tmp_path):
    write_snapshot(tmp_path, 'accounts:\n- {"id":null,"status":"active","type":"human"}\n')
    with pytest.raises(SnapshotError, match=r"accounts\.yaml:2: .*not null"):
        snapshot.read_accounts(tmp_path, "wiki")


def test_a_bad_identity_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "state/identities/corp.yaml"
    path.parent.mkdir(parents=True)
    path.write_text('identities:\n- {"id":"i1","status":"active"}\n- {"id":"i2","status":"left"}\n')
    records = snapshot.read_identities(tmp_path, "corp")
    assert records is not None
    with pytest.raises(SnapshotError, match=rf"^{re.escape(str(path))}:3: .*'left'"):
        dict(records)


def test_a_bad_line_in_a_shard_names_the_shard(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "SHARD_ABOVE", 50)
    snapshot.write_accounts(tmp_path, "wiki", accounts(120))
    shard = tmp_path / "state/apps/wiki/accounts" / f"{snapshot.shard_of('7')}.yaml"
    text = shard.read_text()
    shard.write_text(text.replace('"status":"active"', '"status":"gone"', 1))
    broken = next(n for n, line in enumerate(text.splitlines(), 1) if '"status"' in line)
    with pytest.raises(SnapshotError, match=rf"^{re.escape(str(shard))}:{broken}: .*'gone'"):
        read_all(tmp_path)


def test_an_id_in_two_shards_names_both_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "SHARD_ABOVE", 50)
    snapshot.write_accounts(tmp_path, "wiki", accounts(120))
    shards = sorted((tmp_path / "state/apps/wiki/accounts").glob("*.yaml"))
    first = next(p for p in shards if p.read_text().count("\n") > 2)
    line = first.read_text().splitlines()[2]
    last = shards[-1] if shards[-1] != first else shards[0]
    with last.open("a") as handle:
        handle.write(line + "\n")
    with pytest.raises(SnapshotError) as info:
        read_all(tmp_path)
    later, earlier = (last, first) if last > first else (first, last)
    assert re.match(
        rf"^{re.escape(str(later))}:\d+: .* is also in {re.escape(str(earlier))}:\d+",
        str(info.value),
    )


REFORMATTED = (
    "accounts:\n"
    "  - id: '7'\n    username: alice\n    status: active\n    type: human\n"
    "  - id: '8'\n    username: bob\n{broken}"
)


@pytest.mark.parametrize(
    ("broken", "line", "problem"),
    [
        ("    status: gone\n    type: human\n", 6, "'gone'"),
        ("    type: human\n", 6, "missing field 'status'"),
        ("    id: 9\n", 8, "duplicate key"),
    ],
)
def test_a_reformatted_file_names_the_line_of_the_bad_item(tmp_path, broken, line, problem):
    path = write_snapshot(tmp_path, REFORMATTED.format(broken=broken))
    with pytest.raises(SnapshotError) as info:
        read_all(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert problem in message
    assert f"git checkout -- {path}" in message


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("  - id: 8\n    status: active\n    type: human\n", "must be a string"),
        ("  - id:\n    status: active\n    type: human\n", "must be a string, not null"),
        ("  - username: x\n    status: active\n    type: human\n", "missing field 'id'"),
        ("  - just a string\n", "expected a mapping"),
        (
            "  - id: '7'\n    status: active\n    type: human\n",
            "duplicate id '7' (first at line 2)",
        ),
    ],
)
def test_a_reformatted_file_names_the_line_of_a_bad_id(tmp_path, item, problem):
    text = "accounts:\n  - id: '7'\n    status: active\n    type: human\n" + item
    path = write_snapshot(tmp_path, text)
    with pytest.raises(SnapshotError) as info:
        read_all(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}:5: "), message
    assert problem in message
    assert f"git checkout -- {path}" in message


def test_identities_round_trip_with_empty_list(tmp_path):
    assert snapshot.write_identities(tmp_path, "corp", [])
    assert snapshot.read_identities(tmp_path, "corp") == {}
    people = [Identity.build("i1", "a@example.com", "a", groups=["z", "y"])]
    snapshot.write_identities(tmp_path, "corp", people)
    assert snapshot.read_identities(tmp_path, "corp") == {"i1": people[0]}
