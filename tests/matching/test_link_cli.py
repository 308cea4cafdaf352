"""``mash-hub link train / run / evaluate / review / new`` and ``ingest --link`` as an operator
runs them (subprocess, real server)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from mash_hub.synth import EXTRACT_FILES, generate


def _audit(env: dict[str, str]) -> list[tuple[str, str | None]]:
    """(action, the actor's role as audited) of every entry, in order."""
    url = make_url(env["MASH_DATABASE_URL"]).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
        rows = conn.execute("SELECT action, details->>'role' FROM audit_log ORDER BY seq")
        return [(str(action), role) for action, role in rows]


def run_hub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mash_hub", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_train_run_evaluate_from_the_command_line(hub_env: dict[str, str], tmp_path: Path) -> None:
    assert run_hub("db", "upgrade", env=hub_env).returncode == 0
    assert run_hub("keys", "init", env=hub_env).returncode == 0
    generate(people=300, seed=5, out_dir=tmp_path / "synth")
    for feed, name in EXTRACT_FILES.items():
        result = run_hub("ingest", "--feed", feed, str(tmp_path / "synth" / name), env=hub_env)
        assert result.returncode == 0, result.stderr
    model = tmp_path / "model.json"
    missing = run_hub("link", "run", "--model", str(model), env=hub_env)
    assert missing.returncode == 2 and "link train" in missing.stderr
    trained = run_hub("link", "train", "--model", str(model), "--json", env=hub_env)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(model.read_text())["version"] == 1
    ran = run_hub("link", "run", "--model", str(model), "--json", env=hub_env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["records"] > 200
    scored = run_hub(
        "link", "evaluate", "--truth", str(tmp_path / "synth" / "truth.csv"), "--json", env=hub_env
    )
    assert scored.returncode == 0, scored.stderr
    metrics = json.loads(scored.stdout)
    assert metrics["false_merge_people"] == 0
    assert metrics["cluster"]["recall"] > 0.9
    truth = str(tmp_path / "synth" / "truth.csv")
    bias = run_hub("link", "evaluate", "--truth", truth, "--by", "age_band,sex", "--json",
                   env=hub_env)  # fmt: skip
    assert bias.returncode == 0, bias.stderr
    by_group = json.loads(bias.stdout)["by_group"]
    assert {"F", "M"} <= set(by_group["sex"]["groups"])
    assert sum(g["records"] for g in by_group["age_band"]["groups"].values()) == metrics["records"]
    shown = run_hub("link", "evaluate", "--truth", truth, "--by", "name_origin", env=hub_env)
    assert shown.returncode == 0 and "by name_origin" in shown.stderr, shown.stderr
    unknown = run_hub("link", "evaluate", "--truth", truth, "--by", "shoe_size", env=hub_env)
    assert unknown.returncode == 2 and "no column shoe_size" in unknown.stderr

    # The review queue: list (no personal data), show (audited), decide.
    listed = run_hub("link", "review", "list", "--json", env=hub_env)
    assert listed.returncode == 0, listed.stderr
    tasks = json.loads(listed.stdout)
    assert tasks and {"id", "explanation", "match_weight"} <= set(tasks[0])
    # Showing a task decrypts records: it acts for a member of staff, through the policy.
    assert run_hub("policy", "publish", env=hub_env).returncode == 0
    for name, role, agency in (("mash.one", "mash_officer", "council"),
                               ("pc.one", "police_officer", "police")):  # fmt: skip
        added = run_hub("users", "add", name, "--role", role, "--agency", agency, env=hub_env)
        assert added.returncode == 0, added.stderr
    anonymous = run_hub("link", "review", "show", tasks[0]["id"], env=hub_env)
    assert anonymous.returncode == 2 and "--as" in anonymous.stderr
    refused = run_hub("link", "review", "show", tasks[0]["id"], "--as", "pc.one", env=hub_env)
    assert refused.returncode == 1 and "may not review" in refused.stderr
    shown = run_hub(
        "link", "review", "show", tasks[0]["id"], "--as", "mash.one", "--json", env=hub_env
    )
    assert shown.returncode == 0, shown.stderr
    records = json.loads(shown.stdout)["records"]
    assert len(records) == 2
    for record in records:
        assert {"identity", "identifiers"} <= set(record)
        assert not any(key.startswith("details.") for key in record)
    actions = _audit(hub_env)
    assert [a for a in actions if a[0] in ("linkage.review.show", "authz.denied")] == [
        ("authz.denied", "police_officer"),
        ("linkage.review.show", "mash_officer"),
    ]
    bad = run_hub(
        "link",
        "review",
        "decide",
        tasks[0]["id"],
        "--decision",
        "maybe",
        "--reason-code",
        "x",
        env=hub_env,
    )
    assert bad.returncode == 2
    decided = run_hub(
        "link",
        "review",
        "decide",
        tasks[0]["id"],
        "--decision",
        "different",
        "--reason-code",
        "twin",
        "--reason",
        "checked with school",
        "--json",
        env=hub_env,
    )
    assert decided.returncode == 0, decided.stderr
    assert json.loads(decided.stdout)["decision"] == "different"
    # A later police extract re-sends three known people under new agency ids: ingest links
    # them into the existing persons by default (a model and a full run exist).
    with (tmp_path / "synth" / "police.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)[:3]
    later = tmp_path / "police_later.csv"
    with later.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "NOMINAL_ID": "NEW" + row["NOMINAL_ID"]})
    ingested = run_hub(
        "ingest", "--feed", "police", str(later), "--json", "--link-model", str(model), env=hub_env
    )
    assert ingested.returncode == 0, ingested.stderr
    linkage = json.loads(ingested.stdout)["linkage"]
    assert linkage["linked"] is True
    assert linkage["batches"][0]["records"] == 3
    assert linkage["batches"][0]["joined_existing"] == 3
    batch = json.loads(ingested.stdout)["reports"][0]["batch_id"]
    again = run_hub("link", "new", "--batch", batch, "--model", str(model), "--json", env=hub_env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["records"] == 0  # already linked
