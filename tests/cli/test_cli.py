"""The command line as an operator runs it: a real process, real exit codes, real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url


def run_hub(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mash_hub", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_the_commands(hub_env: dict[str, str]) -> None:
    result = run_hub("--help", env=hub_env)
    assert result.returncode == 0
    for command in ("db", "serve", "synth"):
        assert command in result.stdout


def test_db_upgrade_then_status(hub_env: dict[str, str]) -> None:
    first = run_hub("db", "upgrade", "--json", env=hub_env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["before"] is None and report["changed"] is True
    again = json.loads(run_hub("db", "upgrade", "--json", env=hub_env).stdout)
    assert again["changed"] is False
    status = run_hub("db", "status", "--json", env=hub_env)
    assert status.returncode == 0
    assert json.loads(status.stdout)["migrated"] is True


def test_status_exits_3_when_not_migrated(hub_env: dict[str, str]) -> None:
    result = run_hub("db", "status", "--json", env=hub_env)
    assert result.returncode == 3
    assert json.loads(result.stdout)["migrated"] is False


def test_db_url_is_usable_by_libpq_and_hides_the_password(hub_env: dict[str, str]) -> None:
    result = run_hub("db", "url", env=hub_env)
    assert result.returncode == 0
    printed = result.stdout.strip()
    assert printed.startswith("postgresql://")
    expected = make_url(hub_env["MASH_DATABASE_URL"])
    if expected.password:
        assert expected.password not in printed
    else:
        with psycopg.connect(printed) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_unreachable_database_exits_3_without_leaking_the_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    env["MASH_DATABASE_URL"] = "postgresql://hub:s3cret-pw@127.0.0.1:1/none"
    result = run_hub("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert "cannot reach PostgreSQL" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_non_postgres_url_is_refused_with_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    env["MASH_DATABASE_URL"] = "sqlite:///hub.db"
    result = run_hub("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "PostgreSQL" in result.stderr


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    env["MASH_POOL_SIZE"] = "lots"
    result = run_hub("db", "status", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "MASH_POOL_SIZE" in result.stderr


def test_embedded_default_start_url_stop(server_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    started = run_hub("db", "start", "--json", env=env, cwd=server_dir)
    assert started.returncode == 0, started.stderr
    try:
        url = run_hub("db", "url", env=env, cwd=server_dir).stdout.strip()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("mash_hub",)
    finally:
        stopped = run_hub("db", "stop", "--json", env=env, cwd=server_dir)
    assert json.loads(stopped.stdout) == {"was_running": True, "running": False}


def test_erase_reason_must_be_a_short_reference(hub_env: dict[str, str]) -> None:
    person = "00000000-0000-4000-8000-000000000000"
    for reason in ("q", "x" * 201):
        result = run_hub("erase", "--person", person, "--reason", reason, "--yes", env=hub_env)
        assert result.returncode == 2
        assert "3 to 200 characters" in result.stderr
        assert reason not in result.stderr
