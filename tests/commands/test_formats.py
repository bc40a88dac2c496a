"""Every output format is handled by every command that takes --format."""

from __future__ import annotations

import pytest

from reconciler.apply import AppApply
from reconciler.check import CheckRun
from reconciler.commands import apply as apply_command
from reconciler.commands import check as check_command
from reconciler.outcome import AppCheck
from reconciler.output import OutputFormat


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_check_renders_every_format(fmt, capsys):
    check_command.render(CheckRun(apps=(AppCheck("wiki", "corp"),), identity_pulls=()), fmt)
    assert "wiki" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_apply_renders_every_format(fmt, capsys):
    apply_command.render([AppApply("wiki", error="refused")], fmt, confirm=True)
    assert "wiki" in capsys.readouterr().out
