"""``mash-hub quality list|show|correct|report`` as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import run_hub
from tests.feeds.test_ingest_cli import _prepared, _rows
from tests.quality.conftest import BAD_PNC

HEADER = (
    "NOMINAL_ID,SURNAME,FORENAMES,DOB,SEX,PNC_ID,ADDRESS,POSTCODE,WARNING_MARKERS,INCIDENT_REF,"
    "INCIDENT_DATE,INCIDENT_TYPE,INCIDENT_NARRATIVE"
)


def test_quality_list_show_correct_and_report(hub_env: dict[str, str], tmp_path: Path) -> None:
    _prepared(hub_env)
    data = tmp_path / "police.csv"
    data.write_text(
        HEADER + "\n"
        f"NOM1,KHAN,AYESHA,31/02/2011,F,{BAD_PNC},109,LS6 2QT,,,,,\n"
        "NOM2,KHAN,IMRAN,04/05/1980,M,,109,LS6 2QT,,,,,\n"
    )
    result = run_hub("ingest", "--feed", "police", str(data), "--json", env=hub_env)
    [report] = json.loads(result.stdout)["reports"]
    assert (report["accepted"], report["quarantined"], report["flagged"]) == (2, 0, 1)
    assert report["quality_issues"] == {"date_impossible": 1, "pnc_id_check_letter": 1}
    listed = json.loads(run_hub("quality", "list", "--json", env=hub_env).stdout)
    assert len(listed) == 2 and "AYESHA" not in json.dumps(listed)
    by_field = {item["field"]: item["id"] for item in listed}

    assert run_hub("policy", "publish", env=hub_env).returncode == 0
    for name, role, agency in (
        ("pc", "police_officer", "police"),
        ("co", "council_officer", "council"),
    ):
        assert (
            run_hub(
                "users", "add", name, "--role", role, "--agency", agency, env=hub_env
            ).returncode
            == 0
        )
    refused = run_hub("quality", "show", by_field["pnc_id"], "--as", "co", env=hub_env)
    assert refused.returncode == 1 and BAD_PNC not in refused.stderr
    shown = run_hub("quality", "show", by_field["pnc_id"], "--as", "pc", "--json", env=hub_env)
    assert json.loads(shown.stdout)["raw"] == BAD_PNC
    still_bad = run_hub(
        "quality",
        "correct",
        by_field["date_of_birth"],
        "--value",
        "30/02/2011",
        "--as",
        "pc",
        env=hub_env,
    )
    assert still_bad.returncode == 2 and "date_impossible" in still_bad.stderr
    fixed = run_hub(
        "quality",
        "correct",
        by_field["date_of_birth"],
        "--value",
        "28/02/2011",
        "--as",
        "pc",
        "--json",
        env=hub_env,
    )
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["open_issues_left"] == 1
    quality = json.loads(
        run_hub("quality", "report", "--feed", "police", "--json", env=hub_env).stdout
    )
    assert quality["rows"] == 2 and quality["by_field"]["date_of_birth"]["issues"] == 1
    assert quality["issues_by_status"] == {"corrected": 1, "open": 1}
    actions = [a for (a,) in _rows(hub_env, "SELECT action FROM audit_log ORDER BY seq")]
    for action in ("authz.denied", "quality.view", "quality.correct", "quality.report"):
        assert action in actions
