from __future__ import annotations

import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

from reconciler import yamlio
from reconciler.history import Entry
from reconciler.plan import Action, new_plan
from reconciler.snapshot import Meta
from reconciler.testing.schema_fakes import FAKE, REGISTRY
from reconciler.validate import (
    SCHEMA_NAMES,
    Diagnostic,
    config_schema,
    load_schema,
    validate_file,
    validate_repo,
)

CONFIG = """\
version: 1
forge:
  type: local
  branch: main
defaults:
  mode: disable
identity_sources:
  corp:
    type: fake
    url: https://idp.example
    token_env: CORP_TOKEN
apps:
  wiki:
    type: fake
    url: https://wiki.example
    token_env: WIKI_TOKEN
    timeout: 10
  crm:
    type: export
    path: exports/crm.csv
"""

POLICY = """\
description: Everyone
apps: ["*"]
identity_source: corp
match:
  - account: email
    identity: email
  - account: username
normalize:
  domain_aliases:
    acme.io: acme.com
deprovision:
  when: [deprovisioned, suspended, missing]
  mode: delete
protected:
  accounts: [breakglass, "svc-*"]
unmatched: report
guards:
  max_per_run: 10
  max_fraction: 0.2
  max_identity_shrink: 0.1
  allow_blocked_plans: [0123456789ab]
approvals:
  min_approvals: 2
  reviewers: [alice, bob]
"""


def make_repo(tmp_path: Path, config: str | bytes | None = CONFIG, **policies: str | bytes) -> Path:
    """An access repo with reconciler.yaml and policies/<name>.yaml (default: one policy)."""
    if config is not None:
        write(tmp_path / "reconciler.yaml", config)
    (tmp_path / "policies").mkdir(exist_ok=True)
    for name, text in (policies or {"default": POLICY}).items():
        write(tmp_path / "policies" / f"{name}.yaml", text)
    return tmp_path


def write(path: Path, text: str | bytes) -> None:
    if isinstance(text, str):
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    else:
        path.write_bytes(text)


def check(root: Path) -> list[Diagnostic]:
    return validate_repo(root, REGISTRY)


def only(diagnostics: list[Diagnostic]) -> Diagnostic:
    assert len(diagnostics) == 1, "\n".join(map(str, diagnostics))
    return diagnostics[0]


def where(d: Diagnostic) -> tuple[str, int, int]:
    return d.path, d.line, d.column


def test_valid_repo_has_no_diagnostics(tmp_path: Path) -> None:
    assert check(make_repo(tmp_path)) == []


def test_minimal_repo_is_valid(tmp_path: Path) -> None:
    config = "version: 1\nidentity_sources:\n  corp: {type: fake, url: x}\napps:\n"
    policy = "apps: ['*']\nidentity_source: corp\nguards:\nprotected:\n"
    assert check(make_repo(tmp_path, config, default=policy)) == []


def test_diagnostic_text() -> None:
    d = Diagnostic("policies/a.yaml", 3, 5, "something is wrong", "fix it")
    assert str(d) == "policies/a.yaml:3:5: something is wrong\n  hint: fix it"
    assert str(Diagnostic("a", 1, 1, "m")) == "a:1:1: m"


def test_missing_config_file(tmp_path: Path) -> None:
    d = only(check(make_repo(tmp_path, None)))
    assert where(d) == ("reconciler.yaml", 1, 1)
    assert "not found" in d.message
    assert "reconciler init" in d.hint


def test_malformed_yaml_and_the_other_files_are_still_checked(tmp_path: Path) -> None:
    config = CONFIG.replace("    timeout: 10\n", "    timeout: [10\n")
    bad_policy = POLICY.replace("unmatched: report", "unmatched: never")
    diagnostics = check(make_repo(tmp_path, config, default=bad_policy))
    assert [d.path for d in diagnostics] == ["reconciler.yaml", "policies/default.yaml"]
    syntax, enum = diagnostics
    assert syntax.line == 18  # where the parser noticed the missing ']'
    assert "at line 17)" in syntax.message  # and where the unclosed '[' is
    assert syntax.hint
    assert enum.line == 16
    assert enum.message == "unmatched: expected one of report, ignore; got 'never'"


def test_duplicate_key(tmp_path: Path) -> None:
    config = CONFIG.replace("    timeout: 10\n", "    timeout: 10\n    url: https://other\n")
    d = only(check(make_repo(tmp_path, config)))
    assert where(d) == ("reconciler.yaml", 18, 5)
    assert "duplicate key 'url' (first defined at line 15)" in d.message


def test_unknown_key_in_an_app(tmp_path: Path) -> None:
    config = CONFIG.replace("    timeout: 10\n", "    timeout: 10\n    tokn: x\n")
    d = only(check(make_repo(tmp_path, config)))
    assert where(d) == ("reconciler.yaml", 18, 5)
    assert d.message == "unknown key 'tokn' in apps.wiki; allowed: url, token_env, timeout, type"
    assert d.hint == "did you mean 'token_env'?"


def test_unknown_key_at_the_top_and_in_a_policy(tmp_path: Path) -> None:
    config = CONFIG + "extra: 1\n"
    policy = POLICY.replace("guards:\n", "guards:\n  max_per_day: 3\n")
    diagnostics = check(make_repo(tmp_path, config, default=policy))
    assert [(where(d), d.message.split(";")[0]) for d in diagnostics] == [
        (("reconciler.yaml", 21, 1), "unknown key 'extra' at the top level"),
        (("policies/default.yaml", 18, 3), "unknown key 'max_per_day' in guards"),
    ]


def test_unknown_key_when_the_connector_schema_does_not_forbid_them(tmp_path: Path) -> None:
    config = CONFIG.replace("    path: exports/crm.csv\n", "    path: x.csv\n    pth: y\n")
    d = only(check(make_repo(tmp_path, config)))
    assert where(d) == ("reconciler.yaml", 21, 5)
    assert d.message == "unknown key 'pth' in apps.crm; allowed: path, type"


def with_seat_cost(seat_cost: str) -> str:
    """POLICY with `seat_cost: {wiki: SEAT_COST}`: wiki's at line 26."""
    return POLICY + f"seat_cost:\n  wiki: {seat_cost}\n"


def test_seat_cost_in_a_policy_is_valid_for_its_apps_of_any_type(tmp_path: Path) -> None:
    policy = with_seat_cost("{amount: 12.5, currency: EUR, per: month}")
    policy += "  crm:\n    amount: 1200\n    currency: USD\n    per: year\n"
    assert check(make_repo(tmp_path, default=policy)) == []


@pytest.mark.parametrize(
    ("seat_cost", "problem", "what_to_write"),
    [
        (
            "{amount: twelve, currency: EUR, per: month}",
            "seat_cost.wiki.amount: expected a number, got 'twelve'",
            "amount: 12.5",
        ),
        (
            "{amount: -3, currency: EUR, per: month}",
            "seat_cost.wiki.amount: must be at least 0, got -3",
            "amount: 12.5",
        ),
        (
            "{amount: 12.5, currency: euro, per: month}",
            "seat_cost.wiki.currency: 'euro' does not match [A-Z]{3}",
            "three upper-case letters, e.g. `currency: EUR`",
        ),
        (
            "{amount: 12.5, currency: EUR, per: week}",
            "seat_cost.wiki.per: expected one of month, year; got 'week'",
            "`month` or for a `year`",
        ),
        (
            "{amount: 12.5, currency: EUR}",
            "seat_cost.wiki: missing required key 'per'",
            "add `per:` with one of: month, year",
        ),
        ("12.5", "seat_cost.wiki: expected a mapping, got 12.5", "{amount: 12.5, currency: EUR"),
    ],
)
def test_bad_seat_cost_says_where_and_what_to_write(
    tmp_path: Path, seat_cost: str, problem: str, what_to_write: str
) -> None:
    d = only(check(make_repo(tmp_path, default=with_seat_cost(seat_cost))))
    assert (d.path, d.line) == ("policies/default.yaml", 26)
    assert d.message == problem
    assert what_to_write in d.hint


def test_seat_cost_for_an_app_the_policy_does_not_select(tmp_path: Path) -> None:
    wiki = (
        "apps: [wiki]\n"
        "identity_source: corp\n"
        "seat_cost:\n"
        "  wiki: {amount: 12.5, currency: EUR, per: month}\n"
        "  crm: {amount: 1200, currency: USD, per: year}\n"
    )
    rest = "apps: [crm]\nidentity_source: corp\n"
    d = only(check(make_repo(tmp_path, wiki=wiki, rest=rest)))
    assert where(d) == ("policies/wiki.yaml", 5, 3)
    assert "'crm' is not an app this policy selects (wiki)" in d.message
    assert "policy that selects it" in d.hint


def test_seat_cost_for_an_app_reconciler_yaml_does_not_have(tmp_path: Path) -> None:
    # The policy selects every app, so only reconciler.yaml can tell the name is wrong.
    policy = POLICY + "seat_cost:\n  wkii: {amount: 1, currency: EUR, per: month}\n"
    d = only(check(make_repo(tmp_path, default=policy)))
    assert where(d) == ("policies/default.yaml", 26, 3)
    assert "no app named 'wkii' in reconciler.yaml" in d.message
    assert "did you mean 'wiki'?" in d.hint


def test_seat_cost_in_a_glob_policy_for_an_app_another_policy_names(tmp_path: Path) -> None:
    rest = (
        "apps: ['*']\n"
        "identity_source: corp\n"
        "seat_cost:\n"
        "  wiki: {amount: 1, currency: EUR, per: month}\n"
    )
    wiki = "apps: [wiki]\nidentity_source: corp\n"
    d = only(check(make_repo(tmp_path, rest=rest, wiki=wiki)))
    assert where(d) == ("policies/rest.yaml", 4, 3)
    assert "'wiki' is governed by policies/wiki.yaml" in d.message
    assert "never used" in d.message
    assert "`seat_cost:` in policies/wiki.yaml" in d.hint


def test_a_seat_cost_key_is_an_app_name_not_a_glob(tmp_path: Path) -> None:
    policy = POLICY + "seat_cost:\n  'wik*': {amount: 1, currency: EUR, per: month}\n"
    d = only(check(make_repo(tmp_path, default=policy)))
    assert (d.path, d.line) == ("policies/default.yaml", 26)
    assert "'wik*'" in d.message
    assert "not a glob" in d.hint


def test_seat_cost_left_in_reconciler_yaml_says_to_move_it_to_the_policy(
    tmp_path: Path,
) -> None:
    config = CONFIG.replace(
        "    timeout: 10\n",
        "    timeout: 10\n    seat_cost: {amount: 12.5, currency: EUR, per: month}\n",
    )
    d = only(check(make_repo(tmp_path, config)))
    assert where(d) == ("reconciler.yaml", 18, 5)
    assert "unknown key 'seat_cost' in apps.wiki" in d.message
    assert "policies/ that selects wiki" in d.hint
    assert "`seat_cost: {wiki: {amount: …, currency: …, per: …}}`" in d.hint


def test_the_init_policys_seat_cost_example_is_valid_once_uncommented(tmp_path: Path) -> None:
    skeleton = resources.files("reconciler") / "skeleton"
    policy = (skeleton / "policies" / "default.yaml").read_text(encoding="utf-8")
    example = "# seat_cost:\n#   payroll: {amount: 12.5, currency: EUR, per: month}\n"
    assert example in policy
    policy = policy.replace(example, example.replace("# ", ""))
    config = (skeleton / "reconciler.yaml").read_text(encoding="utf-8")
    assert validate_repo(make_repo(tmp_path, config, default=policy)) == []


def test_seat_cost_with_the_real_connectors(tmp_path: Path) -> None:
    config = (
        "version: 1\n"
        "identity_sources:\n"
        "  corp: {type: file, path: corp.csv}\n"
        "apps:\n"
        "  wiki:\n"
        "    type: scim\n"
        "    url: https://wiki.example/scim/v2\n"
        "    token_env: WIKI_TOKEN\n"
        "  crm: {type: file, path: crm.csv, seat_cost: {amount: 1, currency: EUR, per: month}}\n"
    )
    policy = (
        "apps: ['*']\n"
        "identity_source: corp\n"
        "seat_cost:\n"
        "  wiki: {amount: 12.5, currency: EUR, per: month}\n"
    )
    diagnostics = validate_repo(make_repo(tmp_path, config, default=policy))
    assert [(d.path, d.line, d.message.split(";")[0]) for d in diagnostics] == [
        ("reconciler.yaml", 9, "unknown key 'seat_cost' in apps.crm")
    ]
    assert "policies/ that selects crm" in diagnostics[0].hint


def test_wrong_types(tmp_path: Path) -> None:
    config = CONFIG.replace("timeout: 10", "timeout: ten")
    policy = POLICY.replace("max_fraction: 0.2", "max_fraction: lots").replace(
        "reviewers: [alice, bob]", "reviewers: alice"
    )
    diagnostics = check(make_repo(tmp_path, config, default=policy))
    assert [(where(d), d.message) for d in diagnostics] == [
        (("reconciler.yaml", 17, 5), "apps.wiki.timeout: expected an integer, got 'ten'"),
        (
            ("policies/default.yaml", 19, 3),
            "guards.max_fraction: expected a number, got 'lots'",
        ),
        (
            ("policies/default.yaml", 24, 3),
            "approvals.reviewers: expected a list, got 'alice'",
        ),
    ]
    assert diagnostics[0].hint == "Seconds."


def test_out_of_range_and_wrong_version(tmp_path: Path) -> None:
    config = CONFIG.replace("version: 1", "version: 2").replace("timeout: 10", "timeout: 0")
    diagnostics = check(make_repo(tmp_path, config))
    assert [(d.line, d.message) for d in diagnostics] == [
        (1, "version: must be 1, got 2"),
        (17, "apps.wiki.timeout: must be at least 1, got 0"),
    ]


def test_bad_app_name(tmp_path: Path) -> None:
    config = CONFIG.replace("  crm:\n", "  Wiki!:\n")
    d = only(check(make_repo(tmp_path, config)))
    assert where(d) == ("reconciler.yaml", 18, 3)
    assert d.message == "app name 'Wiki!' must match [a-z0-9][a-z0-9_-]*"


def test_bad_identity_source_name(tmp_path: Path) -> None:
    config = CONFIG.replace("  corp:\n", "  Corp:\n")
    policy = POLICY.replace("identity_source: corp", "identity_source: Corp")
    diagnostics = check(make_repo(tmp_path, config, default=policy))
    assert [(where(d), d.message) for d in diagnostics] == [
        (
            ("reconciler.yaml", 8, 3),
            "identity source name 'Corp' must match [a-z0-9][a-z0-9_-]*",
        ),
        (
            ("policies/default.yaml", 3, 1),
            "identity_source: 'Corp' does not match [a-z0-9][a-z0-9_-]*",
        ),
    ]


def test_unknown_connector_type(tmp_path: Path) -> None:
    config = CONFIG.replace("    type: export\n", "    type: ldap\n")
    d = only(check(make_repo(tmp_path, config)))
    assert where(d) == ("reconciler.yaml", 19, 5)
    assert d.message == "apps.crm.type: unknown connector type 'ldap'; use one of: export, fake"


def test_missing_required_key_points_at_the_parent(tmp_path: Path) -> None:
    config = CONFIG.replace("version: 1\n", "").replace("    url: https://wiki.example\n", "")
    policy = POLICY.replace("identity_source: corp\n", "")
    diagnostics = check(make_repo(tmp_path, config, default=policy))
    assert [(where(d), d.message) for d in diagnostics] == [
        (("reconciler.yaml", 1, 1), "missing required key 'version'"),
        (("reconciler.yaml", 12, 3), "apps.wiki: missing required key 'url'"),
        (("policies/default.yaml", 1, 1), "missing required key 'identity_source'"),
    ]
    assert "version: 1" in diagnostics[0].hint


def test_missing_type_lists_the_types(tmp_path: Path) -> None:
    config = CONFIG.replace("    type: export\n", "")
    d = only(check(make_repo(tmp_path, config)))
    assert where(d) == ("reconciler.yaml", 18, 3)
    assert d.message == "apps.crm: missing required key 'type'"
    assert "one of: export, fake" in d.hint


def test_literal_secret_in_an_env_option_is_never_echoed(tmp_path: Path) -> None:
    secret = "ghp_Secret123value"
    config = CONFIG.replace("token_env: WIKI_TOKEN", f"token_env: {secret}")
    d = only(check(make_repo(tmp_path, config)))
    assert where(d) == ("reconciler.yaml", 16, 5)
    assert d.message == (
        "apps.wiki.token_env looks like a literal secret; put the secret in an "
        "environment variable and name the variable here"
    )
    assert "WIKI_TOKEN" in d.hint
    assert secret not in str(d)


def test_literal_secret_of_the_wrong_type_is_not_echoed_either(tmp_path: Path) -> None:
    config = CONFIG.replace("token_env: CORP_TOKEN", "token_env: 123456789")
    d = only(check(make_repo(tmp_path, config)))
    assert d.line == 11
    assert "literal secret" in d.message
    assert "123456789" not in str(d)


@pytest.mark.parametrize("key", ["token", "password", "secret", "api_key", "client_secret"])
def test_literal_secret_keys_get_the_env_hint(tmp_path: Path, key: str) -> None:
    config = CONFIG.replace("    timeout: 10\n", f"    {key}: hunter2-value\n")
    d = only(check(make_repo(tmp_path, config)))
    assert where(d) == ("reconciler.yaml", 17, 5)
    assert d.message.startswith(f"'{key}' in apps.wiki would hold a literal secret")
    assert "token_env: VARIABLE_NAME" in d.hint
    assert "hunter2" not in str(d)


def test_password_in_a_url(tmp_path: Path) -> None:
    config = CONFIG.replace("https://wiki.example", "https://admin:hunter2@wiki.example")
    d = only(check(make_repo(tmp_path, config)))
    assert d.line == 15
    assert "contains a password" in d.message
    assert "hunter2" not in str(d)


def test_billion_laughs_policy(tmp_path: Path) -> None:
    lines = ["lol: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        alias = f"*{chr(ord('a') + level - 1)}"
        lines.append(f"l{level}: &{chr(ord('a') + level)} [{', '.join([alias] * 10)}]")
    diagnostics = check(make_repo(tmp_path, default=POLICY, laughs="\n".join(lines)))
    d = only(diagnostics)
    assert d.path == "policies/laughs.yaml"
    assert "too many aliases" in d.message


def test_oversized_config(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    with (root / "reconciler.yaml").open("r+b") as handle:
        handle.truncate(11 * 1024 * 1024)
    d = only(check(root))
    assert where(d) == ("reconciler.yaml", 1, 1)
    assert "larger than the limit" in d.message


def test_non_utf8_policy(tmp_path: Path) -> None:
    policy = POLICY.replace("Everyone", "Caf\xe9").encode("latin-1")
    d = only(check(make_repo(tmp_path, default=policy)))
    assert where(d) == ("policies/default.yaml", 1, 17)
    assert "UTF-8" in d.message


def test_unknown_identity_source(tmp_path: Path) -> None:
    policy = POLICY.replace("identity_source: corp", "identity_source: crop")
    d = only(check(make_repo(tmp_path, default=policy)))
    assert where(d) == ("policies/default.yaml", 3, 1)
    assert d.message == "identity_source 'crop' is not defined in reconciler.yaml"
    assert d.hint == "did you mean 'corp'? defined identity sources: corp"


def test_app_selected_by_two_exact_policies(tmp_path: Path) -> None:
    one = "apps: [wiki, crm]\nidentity_source: corp\n"
    two = "description: x\napps: [wiki]\nidentity_source: corp\n"
    d = only(check(make_repo(tmp_path, one=one, two=two)))
    assert where(d) == ("policies/two.yaml", 2, 8)
    assert "'wiki' is selected by more than one policy" in d.message
    assert "policies/one.yaml" in d.message
    assert "policies/two.yaml" in d.message


def test_app_selected_by_two_globs(tmp_path: Path) -> None:
    one = "apps: ['*']\nidentity_source: corp\n"
    two = "apps: [crm, 'w*']\nidentity_source: corp\n"
    d = only(check(make_repo(tmp_path, one=one, two=two)))
    assert where(d) == ("policies/two.yaml", 1, 13)
    assert "'wiki' is selected by more than one policy (policies/one.yaml, policies/two.yaml)" in (
        d.message
    )


def test_exact_name_beats_a_glob(tmp_path: Path) -> None:
    one = "apps: ['*']\nidentity_source: corp\n"
    two = "apps: [wiki]\nidentity_source: corp\n"
    assert check(make_repo(tmp_path, one=one, two=two)) == []


def test_app_selected_by_no_policy(tmp_path: Path) -> None:
    policy = "apps: [wiki]\nidentity_source: corp\n"
    d = only(check(make_repo(tmp_path, default=policy)))
    assert where(d) == ("reconciler.yaml", 18, 3)
    assert d.message == "no policy selects app 'crm'"
    assert "policies/" in d.hint


def test_no_selection_errors_while_a_policy_is_unreadable(tmp_path: Path) -> None:
    policy = "apps: [wiki]\nidentity_source: corp\n"
    diagnostics = check(make_repo(tmp_path, default=policy, broken="apps: [crm\n"))
    assert [d.path for d in diagnostics] == ["policies/broken.yaml"]


def test_policy_naming_an_unknown_app(tmp_path: Path) -> None:
    policy = "apps: ['*', wikki]\nidentity_source: corp\n"
    d = only(check(make_repo(tmp_path, default=policy)))
    assert where(d) == ("policies/default.yaml", 1, 13)
    assert d.message == "apps[1]: no app named 'wikki' in reconciler.yaml"
    assert d.hint.startswith("did you mean 'wiki'?")


def test_yml_policy_is_reported_not_ignored(tmp_path: Path) -> None:
    root = make_repo(tmp_path)
    (root / "policies" / "extra.yml").write_text("apps: [wiki]\n", encoding="utf-8")
    d = only(check(root))
    assert d.path == "policies/extra.yml"
    assert "extra.yaml" in d.hint


def test_every_problem_is_reported_in_file_and_line_order(tmp_path: Path) -> None:
    config = (
        CONFIG.replace("type: local", "type: gitlab")
        .replace("timeout: 10", "timeout: ten")
        .replace("  crm:\n", "  CRM:\n")
    )
    one = "apps: [wiki]\nidentity_source: okta\nunmatched: maybe\n"
    two = "apps: [CRM, wiki]\nidentity_source: corp\n"
    diagnostics = check(make_repo(tmp_path, config, one=one, two=two))
    assert [(d.path, d.line) for d in diagnostics] == [
        ("reconciler.yaml", 3),
        ("reconciler.yaml", 17),
        ("reconciler.yaml", 18),
        ("policies/one.yaml", 2),
        ("policies/one.yaml", 3),
        ("policies/two.yaml", 1),  # CRM is not a valid name or glob
        ("policies/two.yaml", 1),  # wiki in two policies
    ]


# --- schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_shipped_schemas_are_valid_draft_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(load_schema(name))


def test_config_schema_types_come_from_the_registry() -> None:
    schema = config_schema(REGISTRY)
    Draft202012Validator.check_schema(schema)
    assert schema["$defs"]["system"]["properties"]["type"]["enum"] == ["export", "fake"]
    # and the registry's options are not changed by building the schema
    assert "type" not in FAKE.options_schema["properties"]


def test_the_real_registry_is_the_default(tmp_path: Path) -> None:
    from reconciler.connectors import CONNECTORS

    assert config_schema()["$defs"]["system"]["properties"]["type"]["enum"] == sorted(CONNECTORS)


def test_load_schema_returns_a_copy() -> None:
    load_schema("policy")["properties"].clear()
    assert "apps" in load_schema("policy")["properties"]


def roundtrip(data: Any) -> Any:
    return yamlio.load_bytes(yamlio.dump(data).encode(), "x")


def test_plan_schema_accepts_what_plan_writes_and_reviewers_may_do(tmp_path: Path) -> None:
    action = Action(
        account_id="42",
        username="bob",
        email="bob@acme.com",
        display_name="Bob",
        mode="delete",
        reason="idp_deprovisioned",
        identity_id="u1",
        evidence={"identity_status": "deprovisioned", "roles": ["admin"]},
    )
    plan = new_plan(
        "wiki",
        [action],
        [],
        created_at="2026-01-02T03:04:05Z",
        base_commit="a" * 40,
        snapshot_digests={"apps/wiki": "sha256:1", "identities/corp": "sha256:2"},
        policy_digest="b" * 64,
    )
    data = roundtrip(plan.to_data())
    path = tmp_path / "wiki.yaml"
    yamlio.write(path, data)
    assert validate_file(path, "plan") == []

    data["actions"][0]["skip"] = True
    yamlio.write(path, data)
    d = only(validate_file(path, "plan", display="plans/wiki.yaml"))
    assert d.message == "actions[0]: missing required key 'skip_reason'"
    assert d.path == "plans/wiki.yaml"

    data["actions"][0]["skip_reason"] = "still needs access"
    data["actions"][0]["mode"] = "nuke"
    yamlio.write(path, data)
    assert only(validate_file(path, "plan")).message.startswith("actions[0].mode: expected one of")


def test_history_schema_accepts_what_apply_writes() -> None:
    entry = Entry("42", "bob", "bob@acme.com", "disable", "idp_suspended", "done", "ok", "t")
    data: dict[str, Any] = {
        "plan": "0123456789ab",
        "app": "wiki",
        "approved_by": ["alice"],
        "approval_commit": "c" * 40,
        "started_at": "2026-01-02T03:04:05Z",
        "finished_at": None,
        "actions": [entry.to_data()],
    }
    validator = Draft202012Validator(load_schema("history"))
    assert list(validator.iter_errors(roundtrip(data))) == []
    data["actions"][0]["outcome"] = "maybe"
    assert [e.validator for e in validator.iter_errors(data)] == ["enum"]


def test_snapshot_schema_accepts_what_snapshots_write() -> None:
    validator = Draft202012Validator(load_schema("snapshot"))
    for kind, name in (("accounts", "wiki"), ("identities", "corp")):
        meta = Meta(name, kind, "2026-01-02T03:04:05Z", 3, "sha256:abc").to_data()
        assert list(validator.iter_errors(roundtrip(meta))) == []
    bad = {"app": "wiki", "source": "corp", "kind": "accounts", "pulled_at": "t"}
    bad["pull_status"] = "complete"
    assert list(validator.iter_errors(bad))  # app and source together


def test_files_that_hold_no_mapping(tmp_path: Path) -> None:
    diagnostics = check(make_repo(tmp_path, "", a="- wiki\n", b="", c=POLICY))
    assert [(d.path, d.line, d.message) for d in diagnostics] == [
        ("reconciler.yaml", 1, "the file is empty; it must hold a mapping"),
        ("policies/a.yaml", 1, "the file must hold a mapping at the top level, got a list"),
        ("policies/b.yaml", 1, "the file is empty; it must hold a mapping"),
    ]
