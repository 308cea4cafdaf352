"""``mash-hub demo`` as a newcomer runs it: no configuration, set-up, then the hub serving."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from mash_hub.users.service import USER_ROLES
from tests.serving import free_port, wait_until_ready

PEOPLE = "300"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    return {**env, **extra}


def _demo(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mash_hub", "demo", "--people", PEOPLE, *args],
        cwd=folder,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_demo_sets_up_once_then_reuses_its_data_with_fresh_credentials(server_dir: Path) -> None:
    first = _demo(server_dir, "--no-serve", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["reused_existing_demo_data"] is False
    assert report["records"] > 200
    assert 0 < report["persons"] < report["records"]
    assert {a["role"] for a in report["accounts"]} == set(USER_ROLES)
    partner = next(a for a in report["accounts"] if a["role"] == "partner_agency")
    assert partner["agency"] == "education" and "/sign-in?token=" in partner["sign_in_link"]
    assert report["partner"]["api_key"].startswith("mash_pk_")
    credentials = Path(report["credentials_file"])
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
    assert json.loads(credentials.read_text())["partner"] == report["partner"]

    second = _demo(server_dir, "--no-serve", "--json")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["reused_existing_demo_data"] is True
    assert again["records"] == report["records"]
    assert again["persons"] == report["persons"]
    assert again["partner"]["api_key"] != report["partner"]["api_key"]
    # The earlier key stops working: said on stderr and in the report, not silently.
    assert again["revoked_partner_clients"] == [report["partner"]["client_id"]]
    assert "revoked 1 earlier demo partner API key" in " ".join(second.stderr.split())
    assert report["partner"]["client_id"] in second.stderr.replace("\n", "")
    assert {a["user"] for a in again["accounts"]} == {a["user"] for a in report["accounts"]}


def test_demo_refuses_an_external_database(server_dir: Path) -> None:
    result = _demo(
        server_dir, "--no-serve", MASH_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"
    )
    assert result.returncode == 2
    assert "embedded default" in result.stderr
    assert not (server_dir / ".mash-hub" / "demo").exists()


def test_demo_serves_and_every_printed_credential_works(server_dir: Path) -> None:
    port = free_port()
    metrics_token = "test-scraper-token-0123456789"
    output = server_dir / "demo-output.log"  # a file, not a pipe: nothing blocks on a full pipe
    with output.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mash_hub", "demo", "--people", PEOPLE, "--port", str(port)],
            cwd=server_dir,
            env=_env(MASH_LOG_FORMAT="json", MASH_METRICS_TOKEN=metrics_token),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = wait_until_ready(base, process, timeout=120)
        assert ready, output.read_text() if process.poll() is not None else "not ready"
        document = json.loads((server_dir / ".mash-hub/demo/credentials.json").read_text())
        for account in document["accounts"]:
            headers = {"Authorization": f"Bearer {account['token']}"}
            me = httpx.get(f"{base}/api/v1/me", headers=headers, timeout=10).json()
            assert (me["role"], me["agency"]) == (account["role"], account["agency"])
        partner = {"X-API-Key": document["partner"]["api_key"]}
        me = httpx.get(f"{base}/api/v1/me", headers=partner, timeout=10).json()
        assert (me["kind"], me["agency"]) == ("partner", document["partner"]["agency"])
        _newcomer_flows(base, document, server_dir / ".mash-hub/demo/extracts")
        _scrape_metrics(base, metrics_token)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0
    logs = output.read_text()
    json_lines = [line for line in logs.splitlines() if line.startswith("{")]
    assert any('"logger": "uvicorn.access"' in line for line in json_lines)
    assert all("request_id" in json.loads(line) for line in json_lines if "uvicorn.access" in line)
    names, codes = _personal_values(server_dir / ".mash-hub/demo/extracts")
    assert names & set(re.findall(r"[A-Za-z'-]+", logs)) == set()
    assert [code for code in codes if code in logs] == []


def _scrape_metrics(base: str, token: str) -> None:
    """Prometheus scrapes with the token; the route is labelled by its template only."""
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
    scraped = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert scraped.status_code == 200, scraped.text
    text = scraped.text
    assert 'route="/api/v1/persons/{person_id}"' in text
    assert "mash_hub_ingested_records" in text and "mash_hub_audit_unchained_entries" in text
    assert "mash_hub_db_pool_connections_in_use" in text
    assert not re.search(r"/api/v1/persons/[0-9a-f]{8}-", text)  # never a concrete path


def _personal_values(extracts: Path) -> tuple[set[str], set[str]]:
    """Family names, and postcodes and identifiers, of the demo's synthetic people as the
    extracts write them (names under five letters left out: as often ordinary words)."""
    names: set[str] = set()
    codes: set[str] = set()
    with (extracts / "council.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            names |= {row["last_name"], row["last_name"].upper()}
            codes |= {row["upn"], row["postcode"]}
    with (extracts / "police.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            names.add(row["SURNAME"])
            codes |= {row["PNC_ID"], row["POSTCODE"]}
    return {n for n in names if len(n) >= 5}, {c for c in codes if len(c) >= 5}


def _newcomer_flows(base: str, credentials: dict[str, Any], extracts: Path) -> None:
    """What the README walks a newcomer through: an officer searches (with a nickname-like
    name and day/month swapped), a partner refers that child and reads the status, the
    officer triages it, and an auditor finds every step in the verified log."""
    token = {a["role"]: {"Authorization": f"Bearer {a['token']}"} for a in credentials["accounts"]}
    officer, auditor = token["mash_officer"], token["auditor"]
    partner = {"X-API-Key": credentials["partner"]["api_key"]}
    with (extracts / "council.csv").open(newline="", encoding="utf-8") as handle:
        row = next(
            r
            for r in csv.DictReader(handle)
            if r["postcode"] and 1 <= int(r["date_of_birth"][8:]) <= 12
        )
    swapped = f"{row['date_of_birth'][:4]}-{row['date_of_birth'][8:]}-{row['date_of_birth'][5:7]}"
    purpose = {"X-Purpose-Code": "mash_triage", "X-Purpose-Text": "Checking a school referral"}
    with httpx.Client(base_url=f"{base}/api/v1", timeout=30) as api:
        query = {"given_name": row["first_name"], "family_name": row["last_name"],
                 "date_of_birth": swapped}  # fmt: skip
        found = api.post("/persons/search", json=query, headers={**officer, **purpose})
        assert found.status_code == 200, found.text
        person_id = found.json()["results"][0]["person_id"]

        referral = {
            "subjects": [{
                "role": "child", "given_names": [row["first_name"]],
                "family_name": row["last_name"], "date_of_birth": row["date_of_birth"],
                "addresses": [{"line1": row["address_line_1"], "town": row["town"],
                               "postcode": row["postcode"]}],
            }],
            "concerns": "Synthetic: arrived at school with bruising; afraid to go home.",
            "source": "2A", "primary_need": "N1", "factors": ["18C"],
            "referrer": {"name": "A. Teacher", "job_title": "Designated safeguarding lead",
                         "organisation": "Example Primary School",
                         "email": "dsl@school.example.org"},
            "consent": {"state": "given"},
        }  # fmt: skip
        retry = {**partner, "Idempotency-Key": "demo-test-0001"}
        submitted = api.post("/referrals", json=referral, headers=retry)
        assert submitted.status_code == 201, submitted.text
        again = api.post("/referrals", json=referral, headers=retry)
        assert again.json()["reference"] == submitted.json()["reference"]
        reference = submitted.json()["reference"]

        triage = api.get(f"/referrals/{reference}", headers=officer).json()
        (child,) = triage["subjects"]
        assert child["matched_existing"] and child["person_id"] == person_id
        decision = {"decision": "s17_assessment", "reasons": ["child_in_need"]}
        decided = api.post(f"/referrals/{reference}/decision", json=decision, headers=officer)
        assert decided.status_code in (200, 201), decided.text
        feedback = {"text": "Thank you; a social worker will contact the family."}
        given = api.post(f"/referrals/{reference}/feedback", json=feedback, headers=officer)
        assert given.status_code in (200, 201), given.text
        status = api.get(f"/referrals/{reference}/status", headers=partner).json()
        assert status["status"] == "decided"
        assert [f["text"] for f in status["feedback"]] == [feedback["text"]]

        view = api.get(
            f"/persons/{person_id}", headers={**officer, "X-Purpose-Referral": reference}
        )
        assert reference in [r["reference"] for r in view.json()["referrals"]]

        actions = set()
        for _ in range(50):  # entries are chained moments after commit
            page = api.get("/audit/entries", params={"limit": 1000}, headers=auditor).json()
            actions = {e["action"] for e in page["entries"]}
            if {"person.search", "referral.submit", "person.view"} <= actions:
                break
            time.sleep(0.1)
        assert {"person.search", "referral.submit", "referral.status", "person.view"} <= actions
        verified = api.post("/audit/verify", json={}, headers=auditor).json()
        assert verified["ok"] is True, verified
        refused = api.get(f"/persons/{person_id}", headers={**auditor, **purpose})
        assert refused.status_code == 403
