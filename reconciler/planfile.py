"""Plan files in the access repo: where they live, and reading one back.

A plan file is input again once a reviewer may have edited it: it is checked against
`plan.schema.json` before anything in it is used, and even then apply trusts nothing
in it but the narrowing a reviewer may do (DESIGN §9).
"""

from __future__ import annotations

import functools

from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

from reconciler import inert, yamlio
from reconciler.errors import PlanError, YamlError
from reconciler.git import Git
from reconciler.plan import Plan, why
from reconciler.validate import load_schema, validate_data

PLAN_DIR = "plans"
PLAN_HEADER = (
    "# Plan written by `reconciler check`. Reviewers may delete an action or set\n"
    "# `skip: true` with a `skip_reason`; any other edit makes `reconciler apply` refuse.\n"
)


def plan_text(plan: Plan) -> str:
    """The plan file: its header, why each action is proposed (one comment line each:
    not part of the plan, whose reasons apply recomputes) and the plan."""
    lines = [
        f"# - {inert.one_line(a.username or a.email or a.account_id, max_length=100)}: "
        f"{inert.one_line(why(a), max_length=400)}\n"
        for a in plan.actions
    ]
    reasons = "# Why each action is proposed:\n" + "".join(lines) if lines else ""
    return PLAN_HEADER + reasons + yamlio.dump(plan.to_data())


def plan_path(app: str) -> str:
    return f"{PLAN_DIR}/{app}.yaml"


def report_path(app: str) -> str:
    return f"{PLAN_DIR}/{app}.md"


def parse_plan(raw: bytes, display: str) -> Plan:
    """A plan file's bytes as a Plan; PlanError naming every problem otherwise.

    A valid plan is read once, without positions; only a plan that breaks its schema
    is read again with them, to say where (a year of history holds 36,000 versions)."""
    hint = "revert the file to what `reconciler check` wrote"
    try:
        data = yamlio.load_bytes(raw, display)
    except YamlError as exc:
        raise PlanError(f"{exc}\n  hint: {hint}") from exc
    if not _plan_schema().is_valid(data):
        data, marks = yamlio.load_bytes_with_marks(raw, display)
        problems = validate_data(data, marks, "plan", display)
        if problems:
            listing = "\n".join(str(p) for p in problems)
            raise PlanError(f"{display} is not a valid plan:\n{listing}\n  hint: {hint}")
    return Plan.from_data(data)


@functools.cache
def _plan_schema() -> Draft202012Validator:
    """`plan.schema.json`, made into a validator once."""
    return Draft202012Validator(load_schema("plan"))


def read_plan(git: Git, rev: str, app: str) -> Plan | None:
    """The app's plan as it is at `rev`, or None if there is none there."""
    raw = git.show(rev, plan_path(app))
    if raw is None:
        return None
    plan = parse_plan(raw, f"{plan_path(app)} at {rev}")
    if plan.app != app:
        raise PlanError(f"{plan_path(app)} at {rev} is a plan for app {plan.app!r}; revert it")
    return plan
