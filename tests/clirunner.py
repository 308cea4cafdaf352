"""A typer test runner that keeps stderr apart from stdout on every click version."""

from __future__ import annotations

from typer.testing import CliRunner


def cli_runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2 always separates stderr
        return CliRunner()
