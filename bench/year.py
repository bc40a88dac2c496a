"""A year of an access repository, written as the commits the tool makes.

Running 365 real checks over 51 apps would take hours; the audit commands only need the
history those checks leave. So this module keeps the company's data in memory, applies
the benchmark's churn day by day (`generate.next_day` for the big app and the identity
source, the same rates for every small app), and writes each day's commits straight into
`git fast-import`:

1. the identity import, then each app's import, in the order `reconciler check` makes
   them, with the files and messages the check writes (the product's own encoders,
   `diff_accounts`, `import_commit_message`, `identity_import_message`, `assess`, `new_plan`,
   `render_report`);
2. each app's plan on `reconciler/<app>`, based on main's head at that point, as the
   local forge proposes it;
3. with `approve=True`, each plan merged by a reviewer (`Approved-by:` trailer), and
   applied: the accounts disabled in the app, the apply journal, the refreshed snapshot
   and the plan's removal in one commit, as `reconciler apply` makes it.

Only changed records are re-encoded, and only the files they live in are rendered, so a
day costs what changed, not what exists. `tests/test_bench_year.py` checks that
generated days equal what real checks produce on the same exports, and that
`reconciler audit verify` finds nothing to object to in a generated year.
"""

from __future__ import annotations

import hashlib
import os
import queue
import random
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from bench import generate, runner
from reconciler import changeindex, report, snapshot, yamlio
from reconciler.apply import apply_message
from reconciler.clock import timestamp
from reconciler.config import Policy
from reconciler.correlate import correlate, normalise
from reconciler.diff import AccountDiff, diff_accounts
from reconciler.forge.base import Approval
from reconciler.forge.local import approval_trailers, branch_for
from reconciler.history import Entry, Journal
from reconciler.identityimport import identity_import_message
from reconciler.model import Account, Identity, Role
from reconciler.outcome import AppCheck
from reconciler.plan import Plan, new_plan
from reconciler.planfile import PLAN_HEADER, plan_path, report_path
from reconciler.policy import (
    Assessment,
    Evaluation,
    PullState,
    effective_mode,
    evaluate,
    guard_blocks,
)
from reconciler.settings import load_settings
from reconciler.snapshot import Records, decode_account, decode_identity

SOURCE = runner.IDENTITY_SOURCE  # the policy above names it
BIG_APP = "big"
BOT = ("reconciler", "reconciler@localhost")
REVIEWER = ("alice", "alice@users.noreply.invalid")
OPERATOR = ("ops", "ops@users.noreply.invalid")
OPERATOR_NAME = f"{OPERATOR[0]} <{OPERATOR[1]}>"  # as `str(Person)` writes it
IDENTITY_HEADER = "written by reconciler; one identity per line"
ROLES_HEADER = "written by reconciler; one role per line"
META_HEADER = "# written by reconciler; pulled_at is the time of the pull that changed the data\n"
# The check benchmark's policy, with a deadline for the audit's "within deadline".
POLICY = runner.POLICY.replace("Benchmark policy", "Generated year").replace(
    "\nprotected:", "\ndeadline: 24h\nprotected:", 1
)


@dataclass(frozen=True)
class Shape:
    """What to generate."""

    apps: int = 50  # small apps, `app-00` … `app-49`
    app_size: int = 2_000
    big_size: int = 100_000  # the big app, `big`, sharded; also the identity source's size
    days: int = 365
    seed: int = 1
    start: datetime = datetime(2025, 1, 1, 6, 0, tzinfo=UTC)
    # Approve and apply every plan on the day it is proposed (apps behind an API); without
    # it, apps are file exports and plans stay on their branches, as real checks leave them.
    approve: bool = True
    # Approve each day's plans the next morning, before that day's check, rather than the
    # same day; the last day's plans stay waiting for review.
    review_next_morning: bool = False

    @property
    def app_names(self) -> list[str]:
        return sorted([BIG_APP, *(f"app-{i:02d}" for i in range(self.apps))])


def config_yaml(shape: Shape, exports: str = "exports") -> str:
    """reconciler.yaml of the generated repository: API apps when plans are applied,
    file exports (under `exports`) otherwise."""
    lines = runner.config_head("bench/year.py", f"{exports}/identities.json", SOURCE)
    for app in shape.app_names:
        lines.append(f"  {app}:")
        if shape.approve:
            lines += [
                "    type: scim",
                f"    url: https://{app}.example.com/scim/v2",
                "    token_env: APP_SCIM_TOKEN",
            ]
        else:
            lines += ["    type: file", f"    path: {exports}/{app}.json"]
    return "\n".join(lines) + "\n"


def write_config(shape: Shape, root: Path) -> None:
    (root / "policies").mkdir(parents=True, exist_ok=True)
    (root / "reconciler.yaml").write_text(config_yaml(shape), encoding="utf-8")
    (root / "policies" / "default.yaml").write_text(POLICY, encoding="utf-8")
    (root / ".gitignore").write_text("/exports/\n", encoding="utf-8")


# --- the company --------------------------------------------------------------------------


class Company:
    """The apps' and the identity source's data (export records), day by day."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.big = generate.day_one(shape.big_size, shape.seed)
        self.apps: dict[str, dict[str, dict[str, Any]]] = {BIG_APP: self.big.accounts}
        self.next_ids: dict[str, int] = {}
        for index in range(shape.apps):
            name = f"app-{index:02d}"
            self.apps[name] = self._small_app(name)

    @property
    def identities(self) -> dict[str, dict[str, Any]]:
        return self.big.identities

    def _people(self, rng: random.Random, app: str) -> generate.People:
        # A small app's own ids, drawn like the big app's; the people are the company's.
        day = generate.Day(
            identities=self.identities,
            accounts={},
            next_account_id=self.next_ids.get(app, 1_000_000),
            name_counts=self.big.name_counts,
        )
        return generate.People(rng, day)

    def _small_app(self, app: str) -> dict[str, dict[str, Any]]:
        shape = self.shape
        rng = random.Random(f"year:{shape.seed}:{app}:day1")
        people = self._people(rng, app)
        accounts: dict[str, dict[str, Any]] = {}
        services = round(shape.app_size * generate.SERVICE_SHARE)
        unmatched = round(shape.app_size * generate.UNMATCHED_SHARE)
        humans = shape.app_size - services - unmatched
        active = [i for i in self.identities.values() if i["status"] == "active"]
        for identity in rng.sample(active, humans):
            record = people.account(
                identity["display_name"], identity["email"], identity["username"]
            )
            accounts[record["id"]] = record
        for _ in range(unmatched):
            display, local = people.name()
            record = people.account(display, f"{local}@{generate.PARTNER_DOMAIN}", f"ext-{local}")
            accounts[record["id"]] = record
        for index in range(services):
            name = f"svc-{app}-{index}"
            record = people.account(name, f"{name}@{generate.DOMAIN}", name, kind="service")
            accounts[record["id"]] = record
        self.next_ids[app] = people.day.next_account_id
        return accounts

    def next_day(self, index: int) -> None:
        """Day `index` (2, 3, …): the big app and the identity source by
        `generate.next_day`, each small app by the same churn."""
        before = set(self.identities)
        # People who left on an earlier day: their accounts are the first an admin
        # removes (as `generate.next_day` does in the big app); today's leavers keep theirs
        # until the check proposes them.
        gone = {
            i["email"].lower() for i in self.identities.values() if i["status"] == "deprovisioned"
        }
        self.big = generate.next_day(self.big, self.shape.seed, index)
        self.apps[BIG_APP] = self.big.accounts
        hires = [i for i in self.identities if i not in before]
        for app in self.apps:
            if app != BIG_APP:
                self._churn(app, index, hires, gone)

    def _churn(self, app: str, index: int, hires: Sequence[str], gone: set[str]) -> None:
        churn = generate.Churn()
        rng = random.Random(f"year:{self.shape.seed}:{app}:day{index}")
        accounts = self.apps[app]
        n = len(accounts)
        ids = list(accounts)
        to_remove = round(n * churn.removed)
        removed = [a for a in ids if accounts[a]["email"].lower() in gone][:to_remove]
        others = [a for a in ids if a not in set(removed)]
        removed += rng.sample(others, max(0, to_remove - len(removed)))
        for account_id in removed:
            del accounts[account_id]
        for account_id in rng.sample(list(accounts), round(n * churn.changed)):
            record = dict(accounts[account_id])
            what = rng.choice(("roles", "entitlements", "both"))
            if what in ("roles", "both"):
                record["roles"] = generate._changed(
                    rng, record["roles"], generate.ROLES, minimum=1, maximum=5
                )
            if what in ("entitlements", "both"):
                record["entitlements"] = generate._changed(
                    rng, record["entitlements"], generate.ENTITLEMENTS, minimum=0, maximum=20
                )
            accounts[account_id] = record
        people = self._people(rng, app)
        have = {a["email"].lower() for a in accounts.values()}
        candidates = [i for i in hires if self.identities[i]["email"].lower() not in have]
        wanted = round(n * churn.added)
        for identity_id in rng.sample(candidates, min(wanted, len(candidates))):
            identity = self.identities[identity_id]
            record = people.account(
                identity["display_name"], identity["email"], identity["username"]
            )
            accounts[record["id"]] = record
        self.next_ids[app] = people.day.next_account_id

    def disable(self, app: str, account_ids: Sequence[str]) -> None:
        """What an apply did in the app: the accounts are disabled."""
        accounts = self.apps[app]
        for account_id in account_ids:
            if account_id in accounts:
                accounts[account_id] = {**accounts[account_id], "status": "disabled"}

    def write_exports(self, directory: Path) -> None:
        """The day's data as the `file` connector's exports (for real checks)."""
        import orjson

        directory.mkdir(parents=True, exist_ok=True)
        (directory / "identities.json").write_bytes(
            orjson.dumps({"identities": list(self.identities.values())})
        )
        for app, accounts in self.apps.items():
            (directory / f"{app}.json").write_bytes(
                orjson.dumps({"accounts": list(accounts.values())})
            )


# --- fast-import ---------------------------------------------------------------------------


class FastImport:
    """A `git fast-import` process: commits in, commit ids out (`get-mark`).

    A thread feeds the process, so that the next commit's files are computed while git
    compresses the last ones; asking for a commit id waits for the feed to catch up.
    """

    def __init__(self, repo: Path) -> None:
        read, write = os.pipe()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        # Fast zlib: the year is written once and measured by reading, not by size.
        command = ["git", "-c", "pack.compression=1", "fast-import", "--quiet", "--done"]
        self.process = subprocess.Popen(
            [*command, f"--cat-blob-fd={write}"],
            cwd=repo,
            stdin=subprocess.PIPE,
            pass_fds=(write,),
            env=env,
        )
        os.close(write)
        self.answers: IO[bytes] = os.fdopen(read, "rb")
        assert self.process.stdin is not None
        self.out: IO[bytes] = self.process.stdin
        self.queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=64)
        self.feeder = threading.Thread(target=self._feed, daemon=True)
        self.feeder.start()
        self.marks = 0
        self.commits = 0

    def _feed(self) -> None:
        while True:
            chunks = self.queue.get()
            try:
                if chunks is None:
                    return
                for chunk in chunks:
                    self.out.write(chunk)
            finally:
                self.queue.task_done()

    def commit(
        self,
        ref: str,
        message: str,
        at: datetime,
        files: Mapping[str, bytes | None],
        *,
        author: tuple[str, str] = BOT,
        parent: int | None = None,
        merge: int | None = None,
    ) -> int:
        """A commit on `ref` (after `parent` when given, else after the ref's tip); a file
        of None is deleted. Returns the commit's mark."""
        self.marks += 1
        self.commits += 1
        stamp = f"{int(at.timestamp())} +0000"
        raw = message.encode("utf-8")
        out = [
            f"commit {ref}\nmark :{self.marks}\n".encode(),
            f"author {author[0]} <{author[1]}> {stamp}\n".encode(),
            f"committer {BOT[0]} <{BOT[1]}> {stamp}\n".encode(),
            b"data %d\n%s\n" % (len(raw), raw),
        ]
        if parent is not None:
            out.append(f"from :{parent}\n".encode())
        if merge is not None:
            out.append(f"merge :{merge}\n".encode())
        for path, content in sorted(files.items()):
            if content is None:
                out.append(f"D {path}\n".encode())
            else:
                out += [f"M 100644 inline {path}\ndata {len(content)}\n".encode(), content, b"\n"]
        out.append(b"\n")
        self.queue.put(out)
        return self.marks

    def sha(self, mark: int) -> str:
        self.queue.put([f"get-mark :{mark}\n".encode()])
        self.queue.join()
        self.out.flush()
        return self.answers.readline().decode().strip()

    def close(self) -> None:
        self.queue.put([b"done\n"])
        self.queue.put(None)
        self.feeder.join()
        self.out.close()
        self.answers.close()
        if self.process.wait() != 0:
            raise RuntimeError("git fast-import failed")


# --- what the tool writes --------------------------------------------------------------------


def meta_bytes(meta: snapshot.Meta) -> bytes:
    """A snapshot's meta.yaml, as `snapshot.write_meta` writes it."""
    return (META_HEADER + yamlio.dump(meta.to_data())).encode("utf-8")


@dataclass
class AppState:
    """One app's snapshot as committed on main: accounts by id, and its files."""

    name: str
    accounts: dict[str, Account] = field(default_factory=dict)
    lines: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # path in the repo → bytes
    roles: bytes | None = None
    # Normalised email and username → the accounts holding it.
    keys: dict[str, set[str]] = field(default_factory=dict)
    # Account id → (kind, item) of `evaluate`'s verdict on it; kept from day to day.
    verdicts: dict[str, tuple[str, Any]] = field(default_factory=dict)

    @property
    def directory(self) -> str:
        return f"{snapshot.STATE_DIR}/apps/{self.name}"

    def records(self) -> Records[Account]:
        return Records(self.lines, decode_account, self.accounts)

    def update(
        self, accounts: Mapping[str, Account]
    ) -> tuple[dict[str, bytes | None], set[str], AccountDiff]:
        """Take the pulled accounts; the account files that changed, the ids whose
        line changed, and the diff of those (as `diff_accounts` gives it)."""
        old_lines: dict[str, bytes] = {}
        old: dict[str, Account] = {}
        added: set[str] = set()
        for account_id in self.accounts.keys() - accounts.keys():
            old[account_id] = self.accounts.pop(account_id)
            old_lines[account_id] = self.lines.pop(account_id)
            self._unkey(old[account_id])
        for account_id, account in accounts.items():
            known = self.accounts.get(account_id)
            if known is not account and known != account:
                if known is None:
                    added.add(account_id)
                else:
                    old[account_id], old_lines[account_id] = known, self.lines[account_id]
                    self._unkey(known)
                self.accounts[account_id] = account
                self.lines[account_id] = snapshot.encode(account)
                for key in _keys_of(account):
                    self.keys.setdefault(key, set()).add(account_id)
        changed = old.keys() | added
        new = {k: self.accounts[k] for k in changed if k in self.accounts}
        diff = diff_accounts(
            Records(old_lines, decode_account, old),
            Records({k: self.lines[k] for k in new}, decode_account, new),
        )
        return self._render(changed), changed, diff

    def _unkey(self, account: Account) -> None:
        for key in _keys_of(account):
            self.keys.get(key, set()).discard(account.id)

    def holding(self, keys: Iterable[str]) -> set[str]:
        """The accounts whose email or username is one of `keys` (normalised)."""
        found: set[str] = set()
        for key in keys:
            found.update(self.keys.get(key, ()))
        return found

    def _render(self, changed: set[str]) -> dict[str, bytes | None]:
        files: dict[str, bytes | None] = {}
        header = snapshot.ACCOUNTS_HEADER
        if len(self.lines) > snapshot.SHARD_ABOVE:
            single = f"{self.directory}/accounts.yaml"
            if single in self.files:
                del self.files[single]
                files[single] = None
                shards = {f"{i:02x}" for i in range(256)}
            else:
                shards = {snapshot.shard_of(a) for a in changed}
            by_shard: dict[str, list[str]] = {s: [] for s in shards}
            if shards:
                for account_id in self.lines:
                    part = snapshot.shard_of(account_id)
                    if part in by_shard:
                        by_shard[part].append(account_id)
            for part, ids in by_shard.items():
                path = f"{self.directory}/accounts/{part}.yaml"
                content = snapshot.render("accounts", header, [self.lines[i] for i in sorted(ids)])
                if self.files.get(path) != content:
                    self.files[path] = files[path] = content
        else:
            path = f"{self.directory}/accounts.yaml"
            content = snapshot.render(
                "accounts", header, [self.lines[i] for i in sorted(self.lines)]
            )
            if self.files.get(path) != content:
                self.files[path] = files[path] = content
        return files

    def digest(self) -> str:
        paths = sorted(p for p in self.files if p.startswith(f"{self.directory}/accounts"))
        prefix = f"{self.directory}/"
        return snapshot.files_digest([(p.removeprefix(prefix), self.files[p]) for p in paths])


@dataclass
class IdentityState:
    identities: dict[str, Identity] = field(default_factory=dict)
    lines: dict[str, bytes] = field(default_factory=dict)
    content: bytes = b""
    # Normalised email and username → the identities holding it.
    keys: dict[str, set[str]] = field(default_factory=dict)

    def records(self) -> Records[Identity]:
        return Records(self.lines, decode_identity, self.identities)

    def put(self, identity: Identity) -> set[str]:
        """Take a new or changed identity; the keys of its old and new versions."""
        old = self.identities.get(identity.id)
        touched = _keys_of(identity)
        if old is not None:
            for key in _keys_of(old):
                self.keys.get(key, set()).discard(identity.id)
                touched.add(key)
        self.identities[identity.id] = identity
        self.lines[identity.id] = snapshot.encode(identity)
        for key in _keys_of(identity):
            self.keys.setdefault(key, set()).add(identity.id)
        return touched

    def for_accounts(self, accounts: Iterable[Account]) -> dict[str, Identity]:
        """The identities any of `accounts` can match by email or username: all that
        correlation can link them to (the policy has no domain aliases)."""
        ids: set[str] = set()
        for account in accounts:
            for key in _keys_of(account):
                ids.update(self.keys.get(key, ()))
        return {i: self.identities[i] for i in ids}


def _keys_of(record: Account | Identity) -> set[str]:
    return {normalise(record.email, {}), normalise(record.username, {})} - {""}


def judge(
    state: AppState,
    ids: set[str],
    identities: IdentityState,
    policy: Policy,
    mode: str,
    stamp: str,
) -> None:
    """`evaluate` the accounts `ids` again (their record, or an identity they can match,
    changed) and keep each verdict; an account gone from the app has none."""
    for account_id in ids:
        state.verdicts.pop(account_id, None)
    accounts = {i: state.accounts[i] for i in ids if i in state.accounts}
    candidates = identities.for_accounts(accounts.values())
    links = correlate(accounts.values(), candidates.values(), policy.match, policy.domain_aliases)
    now = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    evaluation = evaluate(accounts, candidates, links, policy, mode, app=state.name, now=now)
    for action in evaluation.actions:
        state.verdicts[action.account_id] = ("action", action)
    for kept in evaluation.protected:
        state.verdicts[kept.account.id] = ("protected", kept)
    for account in evaluation.unmatched:
        state.verdicts[account.id] = ("unmatched", account)
    for found in evaluation.ambiguous:
        state.verdicts[found.account.id] = ("ambiguous", found)
    for excepted in evaluation.excepted:
        state.verdicts[excepted.account.id] = ("excepted", excepted)


def assessment_of(
    app: str, state: AppState, pull: PullState, policy: Policy, mode: str | None
) -> Assessment:
    """`policy.assess` from the kept verdicts: the same evaluation, in account id order,
    and the same blocked reasons."""
    lists: dict[str, list[Any]] = {
        kind: [] for kind in ("action", "protected", "unmatched", "ambiguous", "excepted")
    }
    for account_id in sorted(state.verdicts):
        kind, item = state.verdicts[account_id]
        lists[kind].append(item)
    evaluation = Evaluation(
        tuple(lists["action"]),
        tuple(lists["protected"]),
        tuple(lists["unmatched"]),
        tuple(lists["ambiguous"]),
        tuple(lists["excepted"]),
    )
    blocked: list[str] = []
    if mode is None and evaluation.actions:
        blocked.append(
            f"{app} supports none of the policy's mode {policy.mode!r}; "
            "change `deprovision.mode` in the policy"
        )
    active = sum(1 for a in state.accounts.values() if a.status == "active")
    blocked += guard_blocks(pull, policy, len(evaluation.actions), active)
    return Assessment(evaluation, tuple(blocked))


class Models:
    """Models of export records, each built once per record object: unchanged records
    are the same objects from one day to the next. Holds the records it was built from,
    by their id, and only today's."""

    def __init__(self, build: Any) -> None:
        self.build = build
        self.cache: dict[str, tuple[Mapping[str, Any], Any]] = {}

    def of(self, records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        cache = self.cache
        for key, record in records.items():
            hit = cache.get(key)
            if hit is None or hit[0] is not record:
                cache[key] = (record, self.build(record))
        if len(cache) != len(records):
            for key in cache.keys() - records.keys():
                del cache[key]
        return {model.id: model for _, model in cache.values()}


def _roles(accounts: Mapping[str, Account]) -> bytes:
    names = sorted({name for a in accounts.values() for name in a.roles})
    lines = [snapshot.encode(Role(name=name)) for name in names]
    return snapshot.render("roles", ROLES_HEADER, lines)


@dataclass(frozen=True)
class Pending:
    """What one app's check found, before its plan is written."""

    app: str
    assessment: Assessment
    diff: AccountDiff
    base: int  # the mark of main's head when the check assessed the app
    at: datetime  # when the check wrote the plan
    digests: Mapping[str, str]
    account_count: int


@dataclass(frozen=True)
class DayPlan:
    app: str
    plan: Plan
    branch_mark: int
    files: Mapping[str, bytes]  # the plan and its report, as the branch holds them


class YearWriter:
    """Writes the generated days into an access repository."""

    def __init__(self, shape: Shape, repo: Path) -> None:
        self.shape = shape
        self.repo = repo
        self.settings = load_settings(repo)
        self.policy = self.settings.policy_for(BIG_APP)
        self.policy_digest = hashlib.sha256(
            (repo / self.policy.source_file).read_bytes()
        ).hexdigest()
        self.apps = {name: AppState(name) for name in shape.app_names}
        self.idp = IdentityState()
        self.meta_previous: int | None = None
        self.pull = PullState(SOURCE)
        self.accounts = {name: Models(Account.from_record) for name in shape.app_names}
        self.identities = Models(Identity.from_record)
        modes = frozenset({"disable", "delete"}) if shape.approve else frozenset({"manual"})
        self.mode = effective_mode(self.policy.mode, modes)
        self.touched: set[str] = set()  # keys of the identities today's import changed
        self.fast = FastImport(repo)
        self.head: int | None = None  # main's mark
        self.shas: dict[int, str] = {}
        self.plans = 0
        self.applied = 0
        self.leavers: list[str] = []  # emails of people whose accounts were disabled
        self.proposed: list[tuple[int, str, str]] = []  # (day, app, plan id)

    def sha(self, mark: int) -> str:
        if mark not in self.shas:
            self.shas[mark] = self.fast.sha(mark)
        return self.shas[mark]

    def start(self, at: datetime) -> None:
        files = {
            name: (self.repo / name).read_bytes()
            for name in ("reconciler.yaml", "policies/default.yaml", ".gitignore")
        }
        self.head = self.fast.commit(
            "refs/heads/main", "configure reconciler", at, dict(files), author=OPERATOR
        )

    def main_commit(
        self, message: str, at: datetime, files: Mapping[str, bytes | None], **kw: Any
    ) -> int:
        self.head = self.fast.commit("refs/heads/main", message, at, files, parent=self.head, **kw)
        return self.head

    # --- a day ---------------------------------------------------------------------------

    def day(self, company: Company, index: int, clock: Iterator[datetime]) -> list[DayPlan]:
        """The day's check: imports and plans. Returns the plans proposed."""
        now = next(clock)
        pulled_at = timestamp(now)
        self.import_identities(company, pulled_at, clock)
        pending = []
        for app in self.shape.app_names:
            found = self.check_app(app, company, pulled_at, clock)
            if found is not None:
                pending.append(found)
        plans = []
        for each in pending:
            plans.append(self.propose(each, pulled_at))
            self.proposed.append((index, each.app, plans[-1].plan.id))
        return plans

    def import_identities(
        self, company: Company, pulled_at: str, clock: Iterator[datetime]
    ) -> None:
        state = self.idp
        old = Records(dict(state.lines), decode_identity, dict(state.identities))
        current: dict[str, Identity] = self.identities.of(company.identities)
        changed = False
        self.touched = set()
        for identity_id, identity in current.items():
            known = state.identities.get(identity_id)
            if known is not identity and known != identity:
                self.touched |= state.put(identity)
                changed = True
        # Identities never vanish from the generated source; a tombstone would be
        # `merge_tombstones`' job.
        previous_count = len(old) if old.lines else None
        if not changed:
            return
        summary = identity_import_message(SOURCE, old, state.records())
        state.content = snapshot.render(
            "identities", IDENTITY_HEADER, [state.lines[i] for i in sorted(state.lines)]
        )
        meta = snapshot.Meta(
            name=SOURCE,
            kind="identities",
            pulled_at=pulled_at,
            count=len(current),
            digest=snapshot.files_digest([(f"{SOURCE}.yaml", state.content)]),
            previous_count=previous_count,
        )
        base = f"{snapshot.STATE_DIR}/identities/{SOURCE}"
        self.main_commit(
            summary,
            next(clock),
            {f"{base}.yaml": state.content, f"{base}.meta.yaml": meta_bytes(meta)},
        )
        self.pull = PullState.recorded(SOURCE, meta.to_data())

    def check_app(
        self, app: str, company: Company, pulled_at: str, clock: Iterator[datetime]
    ) -> Pending | None:
        state = self.apps[app]
        first = not state.files
        accounts = self.accounts[app].of(company.apps[app])
        files, changed, diff = state.update(accounts)
        roles = _roles(state.accounts)
        if roles != state.roles:
            state.roles = roles
            files[f"{state.directory}/roles.yaml"] = roles
        if files or first:
            meta = snapshot.Meta(app, "accounts", pulled_at, len(state.lines), state.digest())
            files[f"{state.directory}/meta.yaml"] = meta_bytes(meta)
            self.main_commit(report.import_commit_message(app, diff), next(clock), files)
        judge(
            state,
            changed | state.holding(self.touched),
            self.idp,
            self.policy,
            self.mode or "",
            pulled_at,
        )
        assessment = assessment_of(app, state, self.pull, self.policy, self.mode)
        if not (assessment.actions or assessment.blocked_reasons):
            return None
        assert self.head is not None
        digests = {
            f"apps/{app}": state.digest(),
            f"identities/{SOURCE}": snapshot.files_digest([(f"{SOURCE}.yaml", self.idp.content)]),
        }
        # The plan is written once the day's imports are (its base commit's id needs
        # them written), at the time the check would have written it.
        return Pending(app, assessment, diff, self.head, next(clock), digests, len(state.lines))

    def propose(self, pending: Pending, pulled_at: str) -> DayPlan:
        """The plan and its report on `reconciler/<app>`, based on its base commit."""
        app, assessment = pending.app, pending.assessment
        plan = new_plan(
            app,
            assessment.actions,
            assessment.blocked_reasons,
            created_at=pulled_at,
            base_commit=self.sha(pending.base),
            snapshot_digests=pending.digests,
            policy_digest=self.policy_digest,
        )
        evaluation = assessment.evaluation
        result = AppCheck(
            app=app,
            identity_source=SOURCE,
            diff=pending.diff,
            plan=plan,
            unmatched=evaluation.unmatched,
            ambiguous=evaluation.ambiguous,
            protected=evaluation.protected,
            blocked_reasons=assessment.blocked_reasons,
            account_count=pending.account_count,
        )
        plan_yaml = PLAN_HEADER + yamlio.dump(plan.to_data())
        report_md = report.render_report(result)
        count = len(plan.active_actions)
        blocked = " (blocked)" if plan.status == "blocked" else ""
        message = f"plan {app}: deprovision {count} account{'s' if count != 1 else ''}{blocked}"
        plan_files = {plan_path(app): plan_yaml.encode(), report_path(app): report_md.encode()}
        mark = self.fast.commit(
            f"refs/heads/{branch_for(app)}",
            f"{message}\n\nPlan-Id: {plan.id}",
            pending.at,
            dict(plan_files),
            parent=pending.base,
        )
        self.plans += 1
        return DayPlan(app, plan, mark, plan_files)

    def approve_and_apply(
        self, proposed: DayPlan, company: Company, clock: Iterator[datetime]
    ) -> None:
        """A reviewer merges the plan; apply disables its accounts and commits."""
        app, plan = proposed.app, proposed.plan
        count = len(plan.active_actions)
        merged_at = next(clock)
        message = (
            f"approve {app}: deprovision {count} account{'s' if count != 1 else ''}\n\n"
            f"Merges {branch_for(app)}.\n\n{approval_trailers([REVIEWER[0]])}"
        )
        first_parent = self.head
        assert first_parent is not None
        merge = self.main_commit(
            message, merged_at, dict(proposed.files), author=REVIEWER, merge=proposed.branch_mark
        )
        merge_sha = self.sha(merge)
        approval = Approval(
            app=app,
            commit=merge_sha,
            approvers=(REVIEWER[0],),
            at=merged_at.isoformat(),
            reference=f"merge {merge_sha[:10]}",
            verified={
                "forge": "local",
                "merge_commit": merge_sha,
                "merged_into": self.sha(first_parent),
                "merged_from": self.sha(proposed.branch_mark),
                "approvers_from": "Approved-by trailers",
            },
        )
        applied_at = merged_at + timedelta(minutes=10)  # apply follows the merge
        stamp = timestamp(applied_at)
        header: dict[str, Any] = {
            "plan": plan.id,
            "app": app,
            "approved_by": list(approval.approvers),
            "approval": approval.reference,
            "approved_at": approval.at,
            "approval_verified": dict(approval.verified),
            "base_commit": plan.base_commit,
            "policy": self.policy.source_file,
            "started_at": stamp,
            "finished_at": None,
        }
        company.disable(app, [a.account_id for a in plan.active_actions])
        entries = tuple(
            Entry(
                account_id=action.account_id,
                username=action.username,
                email=action.email,
                mode=action.mode,
                reason=action.reason,
                outcome="done",
                detail="disabled",
                at=stamp,
            )
            for action in plan.active_actions
        )
        name = Journal.name(approval.at[:10], plan.id, merge_sha)
        with tempfile.TemporaryDirectory() as tmp:
            # The header in the order `Journal.open`, `note_run` and `finish` give it.
            header |= {"approval_commit": merge_sha, "runs": [{"by": OPERATOR_NAME, "at": stamp}]}
            journal = Journal(Path(tmp) / name, header, entries)
            journal.finish(stamp)
            files: dict[str, bytes | None] = {
                f"history/{app}/{name}": journal.path.read_bytes(),
                plan_path(app): None,
                report_path(app): None,
            }
        state = self.apps[app]
        accounts = self.accounts[app].of(company.apps[app])
        snapshot_files, changed, diff = state.update(accounts)
        judge(state, changed, self.idp, self.policy, self.mode or "", stamp)
        if snapshot_files:
            files.update(snapshot_files)
            meta = snapshot.Meta(app, "accounts", stamp, len(state.lines), state.digest())
            files[f"{state.directory}/meta.yaml"] = meta_bytes(meta)
        message = apply_message(app, entries, approval, True)
        message = changeindex.with_index(message, changeindex.of_account_diff(diff))
        self.main_commit(message, applied_at, files, author=OPERATOR)
        self.applied += 1
        self.leavers += [a.email for a in plan.active_actions]

    def close(self) -> None:
        self.fast.close()


@dataclass(frozen=True)
class Year:
    """What was generated."""

    repo: Path
    days: int
    commits: int
    plans: int
    applied: int
    leavers: tuple[str, ...]  # emails of people whose accounts apply disabled
    proposed: tuple[tuple[int, str, str], ...]  # (day, app, plan id) of every plan
    first_day: datetime
    last_day: datetime


def clock_of(day: datetime) -> Iterator[datetime]:
    """The commits' times on `day`: one second apart, from 06:00."""
    moment = day
    while True:
        yield moment
        moment += timedelta(seconds=1)


def build(shape: Shape, repo: Path, progress: Any = lambda _: None) -> Year:
    """Generate the year into a new access repository at `repo`."""
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    write_config(shape, repo)
    writer = YearWriter(shape, repo)
    company = Company(shape)
    writer.start(shape.start - timedelta(hours=1))
    waiting: list[DayPlan] = []
    try:
        for index in range(1, shape.days + 1):
            day = shape.start + timedelta(days=index - 1)
            clock = clock_of(day)
            if shape.approve and shape.review_next_morning:
                morning = clock_of(day - timedelta(hours=1))
                for proposed in waiting:
                    writer.approve_and_apply(proposed, company, morning)
            if index > 1:
                company.next_day(index)
            plans = writer.day(company, index, clock)
            if shape.approve and shape.review_next_morning:
                waiting = plans
            elif shape.approve:
                # Reviewers get to each plan within the working day, some within the
                # hour, some late in the afternoon; apply follows each merge.
                rng = random.Random(f"year:{shape.seed}:review:{index}")
                hours = sorted((rng.uniform(1, 12), n) for n in range(len(plans)))
                for offset, n in hours:
                    review = clock_of(day + timedelta(hours=offset))
                    writer.approve_and_apply(plans[n], company, review)
            if index % 30 == 0 or index == shape.days:
                progress(f"year: day {index}/{shape.days}, {writer.fast.commits} commits")
    finally:
        writer.close()
    branches = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/heads/reconciler/"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    unreviewed = {branch_for(p.app) for p in waiting}
    if shape.approve:
        for ref in branches:  # approve deletes the branch it merged
            if ref.removeprefix("refs/heads/") not in unreviewed:
                subprocess.run(["git", "update-ref", "-d", ref], cwd=repo, check=True)
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=repo, check=True)
    return Year(
        repo=repo,
        days=shape.days,
        commits=writer.fast.commits,
        plans=writer.plans,
        applied=writer.applied,
        leavers=tuple(writer.leavers),
        proposed=tuple(writer.proposed),
        first_day=shape.start,
        last_day=shape.start + timedelta(days=shape.days - 1),
    )
