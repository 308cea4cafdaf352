"""Ingestion as an operator runs it: real processes, a real kill -9, a feed added by YAML alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from mash_hub.synth import generate
from tests.cli.test_cli import run_hub


def _libpq(env: dict[str, str]) -> str:
    return (
        make_url(env["MASH_DATABASE_URL"])
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def _scalar(env: dict[str, str], sql: str) -> object:
    with psycopg.connect(_libpq(env)) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]


def _rows(env: dict[str, str], sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(_libpq(env)) as conn:
        return conn.execute(sql).fetchall()


def _prepared(env: dict[str, str]) -> None:
    assert run_hub("db", "upgrade", env=env).returncode == 0
    assert run_hub("keys", "init", env=env).returncode == 0


def test_kill_9_mid_batch_leaves_nothing_and_a_rerun_completes(
    hub_env: dict[str, str], tmp_path: Path
) -> None:
    _prepared(hub_env)
    generate(people=20000, seed=21, out_dir=tmp_path / "big")
    extract = tmp_path / "big" / "council.csv"
    rows = sum(1 for _ in extract.open()) - 1
    process = subprocess.Popen(
        [sys.executable, "-m", "mash_hub", "ingest", "--feed", "council", str(extract)],
        env=hub_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Wait until the batch is visibly under way (its transaction holds locks), then kill it.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        active = _scalar(
            hub_env,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mash-hub' "
            "AND state <> 'idle' AND query ILIKE '%COPY%'",
        )
        if active:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    assert process.poll() is None, (
        "the ingest finished before it could be killed; use a bigger file"
    )
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -9
    time.sleep(0.5)
    for table in ("source_records", "feed_batches", "quarantined_rows", "data_keys", "blind_index"):
        assert _scalar(hub_env, f"SELECT count(*) FROM {table}") == 0, table

    rerun = run_hub("ingest", "--feed", "council", str(extract), "--json", env=hub_env)
    assert rerun.returncode == 0, rerun.stderr
    [report] = json.loads(rerun.stdout)["reports"]
    assert report["rows"] == rows
    assert report["accepted"] + report["updated"] + report["quarantined"] == rows
    assert _scalar(hub_env, "SELECT count(*) FROM feed_batches") == 1


def test_a_feed_defined_only_in_yaml_ingests_without_code(
    hub_env: dict[str, str], tmp_path: Path
) -> None:
    _prepared(hub_env)
    feeds_dir = tmp_path / "feeds"
    feeds_dir.mkdir()
    (feeds_dir / "housing_assoc.yaml").write_text(
        """
name: housing_assoc
agency: housing_assoc
description: A housing association's tenant list, semicolon-separated, Latin-1, with a value map.
format: {type: csv, delimiter: ";", encoding: latin-1}
record_id: {path: TenantNo}
date_formats: ["%d.%m.%Y"]
person:
  full_name: {path: Name}
  family_name: {path: Surname}
  date_of_birth: {path: Born, date: true}
  sex: {path: Gender, map: {Mann: M, Frau: F}}
  addresses:
    fields:
      line1: {path: Street}
      postcode: {path: PostCode}
details:
  tenancy:
    arrears: {path: Arrears}
""",
        encoding="utf-8",
    )
    data = tmp_path / "tenants.csv"
    data.write_bytes(
        "TenantNo;Name;Surname;Born;Gender;Street;PostCode;Arrears\n"
        "T1;Zoë Brontë;Brontë;04.03.1990;Frau;3 Mill Lane;bd8 7hx;yes\n"
        "T2;Seán Ó Briain;Ó Briain;12.11.1985;Mann;9 Mill Lane;BD8 7HX;no\n".encode("latin-1")
    )
    env = hub_env | {"MASH_FEEDS_DIR": str(feeds_dir)}
    listed = json.loads(run_hub("feeds", "list", "--json", env=env).stdout)
    assert "housing_assoc" in {feed["name"] for feed in listed}
    assert (
        run_hub("feeds", "validate", str(feeds_dir / "housing_assoc.yaml"), env=env).returncode == 0
    )
    result = run_hub("ingest", "--feed", "housing_assoc", str(data), "--json", env=env)
    assert result.returncode == 0, result.stderr
    [report] = json.loads(result.stdout)["reports"]
    assert (report["accepted"], report["quarantined"]) == (2, 0)


def test_invalid_feed_definition_names_the_key(hub_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nagency: bad\nformat: {type: xml}\nrecord_id: {path: id}\nperson: {family_name: {path: x}}\n"
    )
    result = run_hub("feeds", "validate", str(bad), env=hub_env)
    assert result.returncode == 2
    assert "format.type" in result.stderr


def test_quarantine_list_show_resubmit_and_discard(hub_env: dict[str, str], tmp_path: Path) -> None:
    _prepared(hub_env)
    data = tmp_path / "police.csv"
    header = "NOMINAL_ID,SURNAME,FORENAMES,DOB,SEX,PNC_ID,ADDRESS,POSTCODE,WARNING_MARKERS,INCIDENT_REF,INCIDENT_DATE,INCIDENT_TYPE,INCIDENT_NARRATIVE"
    data.write_text(
        header + "\n"
        ",KHAN,AYESHA,31/02/2011,F,,1 HIGH ST,LS6 2QT,,,,,\n"
        "NOM2,,,04/05/1980,M,,1 HIGH ST,NOT A POSTCODE,,,,,\n"
    )
    result = run_hub("ingest", "--feed", "police", str(data), "--json", env=hub_env)
    [report] = json.loads(result.stdout)["reports"]
    # Only what cannot be a person is held back (no record id, no name); a bad value alone
    # would be indexed and flagged, but on a held-back row every reason is listed.
    assert report["quarantined"] == 2
    assert report["quarantine_reasons"] == {
        "date_impossible": 1,
        "name_empty": 1,
        "postcode_invalid": 1,
        "record_id_missing": 1,
    }
    listed = json.loads(run_hub("quarantine", "list", "--json", env=hub_env).stdout)
    assert len(listed) == 2
    assert "AYESHA" not in json.dumps(listed), "the list must not show personal data"
    by_location = {item["location"]: item["id"] for item in listed}

    assert run_hub("policy", "publish", env=hub_env).returncode == 0
    for name, role, agency in (
        ("dq.police", "police_officer", "police"),
        ("sw.one", "social_worker", "social_care"),
        ("gone", "mash_officer", "council"),
    ):
        added = run_hub("users", "add", name, "--role", role, "--agency", agency, env=hub_env)
        assert added.returncode == 0, added.stderr
    assert run_hub("users", "disable", "gone", env=hub_env).returncode == 0
    line2 = by_location["line 2"]
    needs_user = run_hub("quarantine", "show", line2, env=hub_env)
    assert needs_user.returncode == 2 and "--as" in needs_user.stderr
    for who in ("nobody", "gone"):
        refused = run_hub("quarantine", "show", line2, "--as", who, env=hub_env)
        assert refused.returncode == 2 and "--as" in refused.stderr
    # A social worker may not read police incidents, and the raw row may hold them.
    refused = run_hub("quarantine", "show", line2, "--as", "sw.one", "--json", env=hub_env)
    assert refused.returncode == 1 and "details.incidents" in refused.stderr
    assert refused.stdout == "" and "AYESHA" not in refused.stderr
    shown = json.loads(
        run_hub("quarantine", "show", line2, "--as", "dq.police", "--json", env=hub_env).stdout
    )
    assert shown["raw"]["FORENAMES"] == "AYESHA"
    user_ids = {str(n): str(i) for n, i in _rows(hub_env, "SELECT name, id::text FROM users")}
    views = _rows(
        hub_env,
        "SELECT action, actor, details->>'reason', details->>'source' FROM audit_log"
        " WHERE action IN ('quarantine.view', 'authz.denied') ORDER BY seq",
    )
    assert views == [
        ("authz.denied", f"user:{user_ids['sw.one']}", "role_not_permitted", "police"),
        ("quarantine.view", f"user:{user_ids['dq.police']}", None, "police"),
    ]
    still_bad = run_hub(
        "quarantine", "resubmit", by_location["line 2"], "--set", "DOB=30/02/2011", env=hub_env
    )
    assert still_bad.returncode == 2 and "record_id_missing" in still_bad.stderr
    fixed = run_hub(
        "quarantine",
        "resubmit",
        by_location["line 2"],
        "--set",
        "NOMINAL_ID=NOM1",
        "--set",
        "DOB=28/02/2011",
        "--json",
        env=hub_env,
    )
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout) == {"resubmitted": True, "outcome": "accepted"}
    discarded = run_hub(
        "quarantine", "discard", by_location["line 3"], "--reason", "DQ-42", env=hub_env
    )
    assert discarded.returncode == 0
    assert json.loads(run_hub("quarantine", "list", "--json", env=hub_env).stdout) == []
    assert _scalar(hub_env, "SELECT count(*) FROM source_records") == 1
    actions = _scalar(hub_env, "SELECT string_agg(action, ',' ORDER BY seq) FROM audit_log")
    assert "quarantine.view" in str(actions) and "quarantine.resubmit" in str(actions)
    assert "quarantine.discard" in str(actions)
