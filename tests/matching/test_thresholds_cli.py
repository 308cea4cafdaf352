"""``mash-hub link thresholds`` and ``mash-hub link report`` as the data lead runs them
(subprocess, real server, real keys) on a small synthetic hub with a truth file."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from mash_hub.synth import EXTRACT_FILES, generate
from tests.matching.test_link_cli import run_hub


def _audit_details(env: dict[str, str], action: str) -> list[dict[str, Any]]:
    url = make_url(env["MASH_DATABASE_URL"]).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
        rows = conn.execute(
            "SELECT details FROM audit_log WHERE action = %s ORDER BY seq", (action,)
        )
        return [dict(details) for (details,) in rows]


def _ok(*args: str, env: dict[str, str]) -> str:
    result = run_hub(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _linked_hub(env: dict[str, str], root: Path) -> tuple[Path, Path]:
    """A migrated, keyed hub with 300 synthetic people ingested, a model trained, linked."""
    _ok("db", "upgrade", env=env)
    _ok("keys", "init", env=env)
    generate(people=300, seed=5, out_dir=root / "synth")
    for feed, name in EXTRACT_FILES.items():
        _ok("ingest", "--feed", feed, str(root / "synth" / name), "--no-link", env=env)
    model = root / "model.json"
    _ok("link", "train", "--model", str(model), env=env)
    _ok("link", "run", "--model", str(model), env=env)
    return model, root / "synth" / "truth.csv"


def _with_thresholds(model: Path, auto: float, review: float, out: Path) -> Path:
    document = json.loads(model.read_text())
    document["thresholds"] |= {"auto": auto, "review": review}
    out.write_text(json.dumps(document))
    return out


def test_recommended_thresholds_are_what_a_run_gives(
    hub_env: dict[str, str], tmp_path: Path
) -> None:
    model, truth = _linked_hub(hub_env, tmp_path)
    grid = ("--auto-range", "5,11", "--review-range", "0,10", "--step", "1")
    wide = json.loads(
        _ok(
            "link",
            "thresholds",
            "--review-budget",
            "100000",
            "--truth",
            str(truth),
            "--model",
            str(model),
            *grid,
            "--json",
            env=hub_env,
        )
    )
    assert wide["mode"] == "truth" and wide["records"] > 200
    candidates = wide["candidates"]
    assert {(c["auto"], c["review"]) for c in candidates} == {
        (float(a), float(r)) for a in range(5, 12) for r in range(0, 11) if r <= a
    }
    # A lower review bound never shrinks the queue; the auto threshold alone sets the persons.
    for auto in range(5, 12):
        row = sorted((c for c in candidates if c["auto"] == auto), key=lambda c: c["review"])
        assert [c["review_pairs"] for c in row] == sorted(
            (c["review_pairs"] for c in row), reverse=True
        )
        assert len({(c["precision"], c["recall"]) for c in row}) == 1
    sizes = sorted({c["review_pairs"] for c in candidates})
    assert len(sizes) > 2, sizes
    budget = sizes[len(sizes) // 2]

    tight = json.loads(
        _ok(
            "link",
            "thresholds",
            "--review-budget",
            str(budget),
            "--truth",
            str(truth),
            "--model",
            str(model),
            *grid,
            "--json",
            env=hub_env,
        )
    )
    assert tight["candidates"] == candidates
    chosen = tight["recommended"]
    assert chosen is not None and chosen["review_pairs"] <= budget
    fitting = [c for c in candidates if c["review_pairs"] <= budget]
    assert chosen["f1_after_review"] == max(c["f1_after_review"] for c in fitting)
    audited = _audit_details(hub_env, "linkage.thresholds")
    assert audited[-1]["budget"] == budget
    assert audited[-1]["recommended"] == {"auto": chosen["auto"], "review": chosen["review"]}

    # The figures are what `link run` + `link evaluate` give at those thresholds: the
    # recommended pair, and the corner the recommendation is least like.
    corner = next(c for c in candidates if (c["auto"], c["review"]) == (11.0, 0.0))
    for candidate in (chosen, corner):
        at = _with_thresholds(model, candidate["auto"], candidate["review"], tmp_path / "at.json")
        ran = json.loads(_ok("link", "run", "--model", str(at), "--json", env=hub_env))
        assert ran["review_pairs"] == candidate["review_pairs"]
        scored = json.loads(_ok("link", "evaluate", "--truth", str(truth), "--json", env=hub_env))
        assert scored["cluster"]["precision"] == candidate["precision"]
        assert scored["cluster"]["recall"] == candidate["recall"]
        assert scored["review_queue_records"] == candidate["review_records"]

    none_fit = run_hub(
        "link",
        "thresholds",
        "--review-budget",
        "0",
        "--truth",
        str(truth),
        "--model",
        str(model),
        "--auto-range",
        "4,4",
        "--review-range",
        "-2,-2",
        "--json",
        env=hub_env,
    )
    if json.loads(none_fit.stdout)["candidates"][0]["review_pairs"] > 0:
        assert none_fit.returncode == 1 and "no threshold pair" in none_fit.stderr


def test_thresholds_on_reviewers_decisions_and_bad_input(
    hub_env: dict[str, str], tmp_path: Path
) -> None:
    model, _truth = _linked_hub(hub_env, tmp_path)
    helped = _ok("link", "thresholds", "--help", env=hub_env)
    assert "--review-budget" in helped and "--truth" in helped
    bad = run_hub(
        "link",
        "thresholds",
        "--review-budget",
        "5",
        "--auto-range",
        "9",
        "--model",
        str(model),
        env=hub_env,
    )
    assert bad.returncode == 2 and "--auto-range" in bad.stderr
    unlabelled = run_hub(
        "link", "thresholds", "--review-budget", "5", "--model", str(model), env=hub_env
    )
    assert unlabelled.returncode == 2 and "no reviewers' decisions" in unlabelled.stderr

    tasks = json.loads(_ok("link", "review", "list", "--json", env=hub_env))
    plain = [t for t in tasks if t["kind"] == "review"]
    assert plain, tasks
    task = plain[0]
    _ok(
        "link",
        "review",
        "decide",
        task["id"],
        "--decision",
        "same",
        "--reason-code",
        "same_details",
        env=hub_env,
    )
    labelled = json.loads(
        _ok(
            "link",
            "thresholds",
            "--review-budget",
            "1000",
            "--model",
            str(model),
            "--auto-range",
            "2,12",
            "--review-range",
            "0,12",
            "--json",
            env=hub_env,
        )
    )
    assert labelled["mode"] == "reviewed_pairs"
    assert labelled["labelled_pairs"] == {"same": 1, "different": 0}
    # Clustered without the decision: linked directly once auto is at or below its weight,
    # not linked at all when auto is far above it.
    by_auto = {c["auto"]: c for c in labelled["candidates"]}
    assert by_auto[float(int(task["match_weight"]))]["recall"] == 1.0
    assert by_auto[12.0]["recall"] == 0.0
    assert labelled["recommended"]["recall"] == 1.0


def _personal_values(extracts: Path) -> set[str]:
    """Every name, date, postcode, identifier, phone and email in the synthetic extracts."""
    values: set[str] = set()
    personal = {
        "SURNAME",
        "FORENAMES",
        "DOB",
        "PNC_ID",
        "POSTCODE",
        "first_name",
        "middle_names",
        "last_name",
        "date_of_birth",
        "upn",
        "postcode",
        "phone",
        "email",
    }
    for name in ("police.csv", "council.csv"):
        with (extracts / name).open(newline="") as handle:
            for row in csv.DictReader(handle):
                for column in personal & set(row):
                    values.update(v for v in re.split(r"[ ,]+(?=[A-Za-z])", row[column]) if v)
                    values.add(row[column])
    records = json.loads((extracts / "social_care.json").read_text())["export"]["records"]
    for record in records:
        values.update(record["name"]["given"])
        values.add(record["name"]["family"])
        values.update(record["name"]["previous_family"])
        values.update(v for v in (record["birth_date"], record["nhs_number"]) if v)
        values.update(a["postcode"] for a in record["addresses"] if a["postcode"])
        values.update(v for v in record["contact"].values() if v)
    dates = {v for v in values if re.fullmatch(r"\d\d/\d\d/\d{4}", v)}
    values.update(f"{d[6:]}-{d[3:5]}-{d[:2]}" for d in dates)  # as stored: ISO
    values.update(v.replace(" ", "") for v in list(values) if re.search(r"\d", v))
    return {v for v in values if len(v) >= 3}


def test_report_is_offline_and_holds_no_personal_values(
    hub_env: dict[str, str], tmp_path: Path
) -> None:
    model, truth = _linked_hub(hub_env, tmp_path)
    tasks = json.loads(_ok("link", "review", "list", "--json", env=hub_env))
    _ok(
        "link",
        "review",
        "decide",
        tasks[0]["id"],
        "--decision",
        "different",
        "--reason-code",
        "namesake",
        env=hub_env,
    )
    with_truth = tmp_path / "out" / "report.html"
    figures = json.loads(
        _ok(
            "link",
            "report",
            "--out",
            str(with_truth),
            "--truth",
            str(truth),
            "--by",
            "age_band,sex",
            "--task",
            tasks[0]["id"],
            "--model",
            str(model),
            "--json",
            env=hub_env,
        )
    )
    without = tmp_path / "report-decisions.html"
    _ok("link", "report", "--out", str(without), "--model", str(model), env=hub_env)
    scored = json.loads(
        _ok(
            "link", "evaluate", "--truth", str(truth), "--by", "age_band,sex", "--json", env=hub_env
        )
    )
    # The figures drawn are the model's and `link evaluate`'s.
    assert figures["bias"]["cluster"] == scored["cluster"]
    assert figures["bias"]["by_group"] == scored["by_group"]
    assert sum(count for _, count in figures["histogram"]) == figures["candidate_pairs"]
    water = figures["waterfall"]
    assert water["source"] == f"review task {tasks[0]['id']}"
    assert abs(sum(s["weight"] for s in water["steps"]) - water["match_weight"]) < 0.1
    assert abs(water["match_weight"] - tasks[0]["match_weight"]) < 0.01
    values = _personal_values(truth.parent)
    assert len(values) > 500
    for page, expected in (
        (with_truth, "By age_band"),
        (without, "1 reviewers' decisions in force"),
    ):
        html = page.read_text(encoding="utf-8")
        assert expected in html
        assert "<svg" in html and "<script" not in html.lower()
        assert not re.search(r"https?://", html), "the page refers to something online"
        assert not re.search(r"\b(src|href)=", html)
        leaked = [
            v
            for v in values
            if re.search(rf"(?<![\w-]){re.escape(v)}(?![\w-])", html, re.IGNORECASE)
        ]
        assert leaked == [], leaked
    assert [d["truth"] for d in _audit_details(hub_env, "linkage.report")] == [True, False]
