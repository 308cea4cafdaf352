"""``policy check`` finds every kind of invalid policy, with file and line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mash_hub.authz.check import check_policy
from mash_hub.authz.files import PolicyTexts
from tests.authz.conftest import BASELINE

HEADER = "# a small policy\n"


def problems(policy: str, model: str = BASELINE.model) -> list[tuple[str, int | None]]:
    return [(p.kind, p.line) for p in check_policy(PolicyTexts(model, policy))]


def test_the_baseline_is_valid() -> None:
    assert check_policy(BASELINE) == []


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("p, wizard, *, *, identity, read, allow", "unknown_role"),
        ("g, wizard, mash_officer, *", "unknown_role"),
        ("g, mash_officer, empty_group, *", "unknown_role"),
        ("p, mash_officer, narnia, *, identity, read, allow", "unknown_agency"),
        ("p, mash_officer, *, health, identity, read, allow", "unknown_source"),
        ("p, mash_officer, *, *, details.shoe_size, read, allow", "unknown_field"),
        ("p, mash_officer, *, *, nothing.*, read, allow", "unknown_field"),
        ("p, auditor, *, *, identity, audit_read, allow", "unknown_field"),
        ("p, mash_officer, *, *, identity, write, allow", "unknown_action"),
        ("p, mash_officer, *, *, identity, read", "syntax"),
        ("p, mash_officer, *, *, identity, read, maybe", "syntax"),
        ("x, mash_officer, *, *, identity, read, allow", "syntax"),
        ("p, mash officer, *, *, identity, read, allow", "syntax"),
        ("p, mash_officer, *, *, det*ils, read, allow", "syntax"),
    ],
)
def test_each_kind_of_problem_is_found_on_its_line(line: str, kind: str) -> None:
    found = problems(HEADER + "p, mash_officer, *, *, identity, read, allow\n" + line + "\n")
    assert found == [(kind, 3)]


def test_conflicting_rules_are_found() -> None:
    policy = (
        "p, social_worker, *, police, details.incidents, read, allow\n"
        "\n"
        "p, social_worker, *, police, details.incidents, read, deny\n"
    )
    (problem,) = check_policy(PolicyTexts(BASELINE.model, policy))
    assert (problem.kind, problem.line) == ("conflict", 3)
    assert "line 1" in problem.message
    # Deny overriding a wider allow is the model working, not a conflict.
    assert (
        problems(
            "p, social_worker, *, police, details.*, read, allow\n"
            "p, social_worker, *, police, details.incidents, read, deny\n"
        )
        == []
    )


def test_model_problems_are_found() -> None:
    assert ("syntax", 3) in problems("", model="[request_definition]\nr = sub\nnot a line\n")
    wrong_request = BASELINE.model.replace("r = sub, dom, src, fld, act", "r = sub, obj, act")
    assert ("model", None) in problems("", model=wrong_request)
    bad_matcher = BASELINE.model.replace("keyMatch(r.fld, p.fld)", "noSuchFunction(r.fld)")
    assert problems("p, mash_officer, *, *, identity, read, allow\n", model=bad_matcher) == [
        ("model", None)
    ]


def test_the_cli_exits_2_on_an_invalid_policy(tmp_path: Path) -> None:
    (tmp_path / "model.conf").write_text(BASELINE.model)
    (tmp_path / "policy.csv").write_text("p, wizard, *, *, identity, read, allow\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    env["MASH_DATA_DIR"] = str(tmp_path / "hub")
    run = subprocess.run(
        [sys.executable, "-m", "mash_hub", "policy", "check", "--dir", str(tmp_path), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    report = json.loads(run.stdout)
    assert report["valid"] is False
    assert report["problems"][0]["kind"] == "unknown_role"
    assert report["problems"][0]["line"] == 1
    human = subprocess.run(
        [sys.executable, "-m", "mash_hub", "policy", "check", "--dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert human.returncode == 2 and "policy.csv:1" in human.stderr
    assert "Traceback" not in human.stderr
