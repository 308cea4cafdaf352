"""``mash-hub policy`` as an operator runs it: a real process against a real database."""

from __future__ import annotations

import json

from mash_hub.authz.vocabulary import AGENCIES, ROLES, SOURCES
from tests.authz.conftest import BASELINE
from tests.cli.test_cli import run_hub


def test_matrix_json(hub_env: dict[str, str]) -> None:
    result = run_hub("policy", "matrix", "--json", env=hub_env)
    assert result.returncode == 0, result.stderr
    matrix = json.loads(result.stdout)
    assert matrix["sha256"] == BASELINE.sha256 and matrix["version"] is None
    assert set(matrix["roles"]) == set(ROLES)
    assert set(matrix["roles"]["social_worker"]) == set(AGENCIES)
    police = matrix["roles"]["social_worker"]["council"]["sources"]["police"]
    assert police == {
        "read": ["contact", "details.warning_markers", "identifiers", "identity"],
        "break_glass": ["details.incidents", "quality"],
        "subject_access": [],
    }
    auditor = matrix["roles"]["auditor"]["police"]
    none: dict[str, list[str]] = {"read": [], "break_glass": [], "subject_access": []}
    assert all(auditor["sources"][s] == none for s in SOURCES)
    assert auditor["actions"] == ["audit_read"]
    governance = matrix["roles"]["information_governance"]["council"]["sources"]["police"]
    assert governance["read"] == [] and governance["break_glass"] == []
    assert governance["subject_access"] == [
        "contact", "details.incidents", "details.warning_markers", "identifiers", "identity",
        "quality",
    ]  # fmt: skip


def test_matrix_table_and_check(hub_env: dict[str, str]) -> None:
    table = run_hub("policy", "matrix", env={**hub_env, "COLUMNS": "160"})
    assert table.returncode == 0, table.stderr
    assert "social_worker" in table.stdout and "warning_markers" in table.stdout
    check = run_hub("policy", "check", env=hub_env)
    assert check.returncode == 0 and "valid" in check.stderr


def test_publish_then_matrix_of_the_published_version(hub_env: dict[str, str]) -> None:
    not_migrated = run_hub("policy", "publish", "--json", env=hub_env)
    assert not_migrated.returncode == 3, not_migrated.stderr
    assert "db upgrade" in not_migrated.stderr and "Traceback" not in not_migrated.stderr
    assert run_hub("db", "upgrade", env=hub_env).returncode == 0
    first = run_hub("policy", "publish", "--json", env=hub_env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "version": 1,
        "sha256": BASELINE.sha256,
        "previous_version": None,
        "changed": True,
    }
    again = json.loads(run_hub("policy", "publish", "--json", env=hub_env).stdout)
    assert again["changed"] is False and again["version"] == 1
    published = run_hub("policy", "matrix", "--published", "--json", env=hub_env)
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["version"] == 1
