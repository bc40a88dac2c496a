from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from reconciler import demo
from reconciler.config import Guards, MatchRule
from reconciler.errors import ConfigError
from reconciler.seats import SeatCost
from reconciler.settings import load_settings
from reconciler.testing.schema_fakes import REGISTRY

CONFIG = """\
version: 1
defaults:
  mode: delete
identity_sources:
  corp: {type: fake, url: "https://idp"}
apps:
  wiki:
    type: fake
    url: https://wiki
    token_env: WIKI_TOKEN
    timeout: 10
  crm: {type: fake, url: "https://crm"}
"""
WIKI_POLICY = """\
apps: [wiki]
identity_source: corp
match:
  - account: username
normalize:
  domain_aliases: {ACME.io: acme.com}
deprovision:
  mode: disable
guards:
  max_per_run: 3
approvals:
  reviewers: [alice, bob]
"""
REST_POLICY = "apps: ['*']\nidentity_source: corp\n"


def make_repo(root: Path, config: str | None = CONFIG, **policies: str) -> Path:
    if config is not None:
        (root / "reconciler.yaml").write_text(config, encoding="utf-8")
    (root / "policies").mkdir()
    for name, text in policies.items():
        (root / "policies" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return root


def test_valid_repo_becomes_settings(tmp_path: Path) -> None:
    root = make_repo(tmp_path, rest=REST_POLICY, wiki=WIKI_POLICY)
    settings = load_settings(root, REGISTRY)
    assert settings.root == root
    assert list(settings.config.apps) == ["wiki", "crm"]
    assert settings.config.apps["wiki"].options == {
        "url": "https://wiki",
        "token_env": "WIKI_TOKEN",
        "timeout": 10,
    }
    assert settings.config.identity_sources["corp"].type == "fake"
    rest, wiki = settings.policies
    assert (rest.source_file, wiki.source_file) == ("policies/rest.yaml", "policies/wiki.yaml")
    assert settings.policy_for("wiki") is wiki  # a name beats the glob
    assert settings.policy_for("crm") is rest
    assert wiki.match == (MatchRule("username", "username"),)
    assert wiki.domain_aliases == {"acme.io": "acme.com"}
    assert wiki.mode == "disable"
    assert wiki.guards == Guards(max_per_run=3)
    assert wiki.approvals.reviewers == ("alice", "bob")


def test_policy_mode_defaults_to_the_config_default(tmp_path: Path) -> None:
    settings = load_settings(make_repo(tmp_path, rest=REST_POLICY), REGISTRY)
    (policy,) = settings.policies
    assert policy.mode == "delete"
    assert policy.deprovision_when == ("deprovisioned", "suspended", "missing")


def test_invalid_repo_lists_every_problem(tmp_path: Path) -> None:
    config = CONFIG.replace("timeout: 10", "timeout: ten").replace(
        "token_env: WIKI_TOKEN", "token_env: s3cr3t!"
    )
    policy = REST_POLICY.replace("corp", "okta")
    root = make_repo(tmp_path, config, rest=policy)
    with pytest.raises(ConfigError) as info:
        load_settings(root, REGISTRY)
    message = str(info.value)
    assert f"the configuration in {root} has 3 problems:\n" in message
    assert "reconciler.yaml:10:5: apps.wiki.token_env looks like a literal secret" in message
    assert "reconciler.yaml:11:5: apps.wiki.timeout: expected an integer, got 'ten'" in message
    assert "policies/rest.yaml:2:1: identity_source 'okta' is not defined" in message
    assert "s3cr3t" not in message
    assert message.endswith("run `reconciler validate` for the full list")


def test_missing_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"reconciler\.yaml not found"):
        load_settings(make_repo(tmp_path, None, rest=REST_POLICY), REGISTRY)


def test_the_demo_configuration_is_valid_with_the_real_connectors(tmp_path: Path) -> None:
    config = demo.CONFIG.format(idp_url="http://127.0.0.1:1/v2", app_url="http://127.0.0.1:2/v2")
    settings = load_settings(make_repo(tmp_path, config, default=demo.POLICY))
    assert settings.policy_for("wiki").identity_source == "corp"
    assert settings.config.apps["wiki"].type == "scim"


def test_seat_cost_comes_from_the_policy_of_each_app(tmp_path: Path) -> None:
    wiki_policy = WIKI_POLICY + "seat_cost:\n  wiki: {amount: 12.5, currency: EUR, per: month}\n"
    rest_policy = (
        REST_POLICY + "seat_cost:\n  crm:\n    amount: 1200\n    currency: USD\n    per: year\n"
    )
    settings = load_settings(make_repo(tmp_path, rest=rest_policy, wiki=wiki_policy), REGISTRY)
    cost = {app: settings.policy_for(app).seat_cost_for(app) for app in ("wiki", "crm")}
    assert cost == {
        "wiki": SeatCost(Decimal("12.5"), "EUR", "month"),
        "crm": SeatCost(Decimal("1200"), "USD", "year"),
    }
    # The glob's policy prices crm only; wiki's price is its own policy's.
    assert settings.policy_for("crm").seat_cost_for("wiki") is None


def test_an_app_without_seat_cost_has_none(tmp_path: Path) -> None:
    settings = load_settings(make_repo(tmp_path, rest=REST_POLICY), REGISTRY)
    assert all(settings.policy_for(app).seat_cost_for(app) is None for app in ("wiki", "crm"))


def test_a_seat_cost_in_reconciler_yaml_is_refused(tmp_path: Path) -> None:
    config = CONFIG.replace(
        "    timeout: 10\n",
        "    timeout: 10\n    seat_cost: {amount: 12.5, currency: EUR, per: month}\n",
    )
    with pytest.raises(ConfigError, match=r"reconciler\.yaml:12:5: unknown key 'seat_cost'"):
        load_settings(make_repo(tmp_path, config, rest=REST_POLICY), REGISTRY)
