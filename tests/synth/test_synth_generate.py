"""Structure, identifiers, households, and determinism of the generated extracts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from stdnum.gb import nhs, upn

from mash_hub.synth import ErrorRates, generate
from mash_hub.synth.identifiers import pnc_check_letter, pnc_is_valid
from mash_hub.synth.writers import COUNCIL_COLUMNS, POLICE_COLUMNS
from tests.synth.synth_support import Extracts, read_extracts

NO_ID_ERRORS = ErrorRates(missing_identifier=0.0, mistyped_identifier=0.0)


def _bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = generate(people=600, seed=5, out_dir=tmp_path / "a")
    b = generate(people=600, seed=5, out_dir=tmp_path / "b")
    c = generate(people=600, seed=6, out_dir=tmp_path / "c")
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    assert a.records == b.records
    assert _bytes(tmp_path / "a")["police.csv"] != _bytes(tmp_path / "c")["police.csv"]
    assert set(_bytes(tmp_path / "a")) == {
        "police.csv",
        "council.csv",
        "social_care.json",
        "truth.csv",
    }
    assert c.seed == 6


def test_people_count_is_exact(extracts: Extracts) -> None:
    s = extracts.summary
    assert s.people == 2000
    keys = {t["person_key"] for t in extracts.truth}
    assert len(keys) <= 2000
    assert len(keys) / 2000 == pytest.approx(s.coverage, abs=1e-3)
    assert 0.5 < s.coverage < 1.0
    assert s.households < s.people


def test_columns_exact(extracts: Extracts) -> None:
    assert tuple(extracts.police[0]) == POLICE_COLUMNS
    assert tuple(extracts.council[0]) == COUNCIL_COLUMNS
    header = Path(extracts.summary.files["truth"]).read_text(encoding="utf-8").splitlines()[0]
    assert header == "feed,source_record_id,person_key,age_band,sex,name_origin"


def test_truth_covers_every_record_once(extracts: Extracts) -> None:
    ids = {
        "police": [r["NOMINAL_ID"] for r in extracts.police],
        "council": [r["person_ref"] for r in extracts.council],
        "social_care": [r["person_id"] for r in extracts.social],
    }
    truth = Counter((t["feed"], t["source_record_id"]) for t in extracts.truth)
    assert all(n == 1 for n in truth.values())
    assert len(extracts.truth) == sum(len(v) for v in ids.values())
    for feed, values in ids.items():
        assert len(values) == len(set(values)), feed
        assert set(values) == {rid for f, rid in truth if f == feed}
        assert extracts.summary.records[feed] == len(values)
    assert all(re.fullmatch(r"NOM\d{8}", v) for v in ids["police"])
    assert all(re.fullmatch(r"CR\d{8}", v) for v in ids["council"])
    assert all(re.fullmatch(r"\d{8}", v) for v in ids["social_care"])
    assert all(re.fullmatch(r"P\d{8}", t["person_key"]) for t in extracts.truth)


def test_ids_do_not_reveal_person_order(extracts: Extracts) -> None:
    keys = extracts.key_of("council")
    refs = [r["person_ref"] for r in extracts.council]
    by_key = sorted(refs, key=lambda r: keys[r])
    assert by_key != sorted(refs)


def test_valid_identifiers_validate(tmp_path: Path) -> None:
    ex = read_extracts(generate(people=1500, seed=3, out_dir=tmp_path, rates=NO_ID_ERRORS))
    nhs_numbers = [r["nhs_number"] for r in ex.social if r["nhs_number"]]
    upns = [r["upn"] for r in ex.council if r["upn"]]
    pncs = [r["PNC_ID"] for r in ex.police if r["PNC_ID"]]
    assert nhs_numbers and upns and pncs
    assert all(nhs.is_valid(n) for n in nhs_numbers)
    assert any(" " in n for n in nhs_numbers) and any(" " not in n for n in nhs_numbers)
    assert all(upn.is_valid(u) for u in upns)
    assert all(pnc_is_valid(p) for p in pncs)
    for p in pncs:
        year, rest = p.split("/")
        assert rest[7] == pnc_check_letter(int(year), int(rest[:7]))
    assert any(len(p) == 11 for p in pncs) and any(len(p) == 13 for p in pncs)


def test_pnc_check_letter_known_example() -> None:
    assert pnc_check_letter(2001, 1234567) == "ZABCDEFGHJKLMNPQRTUVWXY"[int("011234567") % 23]


def test_mistyped_identifiers_occur_at_configured_rate(tmp_path: Path) -> None:
    rates = ErrorRates(missing_identifier=0.0, mistyped_identifier=0.3, duplicate_record=0.0)
    ex = read_extracts(generate(people=2000, seed=4, out_dir=tmp_path, rates=rates))
    values = [n for n in (r["nhs_number"] for r in ex.social) if n]
    values_upn = [r["upn"] for r in ex.council if r["upn"]]
    bad = sum(not nhs.is_valid(n) for n in values) + sum(not upn.is_valid(u) for u in values_upn)
    total = len(values) + len(values_upn)
    assert total > 300
    assert 0.22 < bad / total < 0.38


def test_households_twins_and_namesakes(extracts: Extracts) -> None:
    keys = extracts.key_of("council")
    by_home: dict[tuple[str, str], set[str]] = defaultdict(set)
    twins = 0
    by_dob_home: dict[tuple[str, str, str], set[tuple[str, str]]] = defaultdict(set)
    names: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in extracts.council:
        key = keys[r["person_ref"]]
        if r["postcode"]:
            by_home[(r["last_name"].lower(), r["postcode"])].add(key)
            by_dob_home[(r["last_name"].lower(), r["date_of_birth"], r["address_line_1"])].add(
                (key, r["first_name"])
            )
        names[(r["first_name"], r["last_name"])].add(key)
    assert sum(len(v) >= 2 for v in by_home.values()) > 50
    for members in by_dob_home.values():
        people = {k for k, _ in members}
        if len(people) >= 2 and len({g for _, g in members}) >= 2:
            twins += 1
    assert twins >= 1
    assert sum(len(v) >= 2 for v in names.values()) >= 5


def test_police_is_upper_case_with_uk_dates(extracts: Extracts) -> None:
    assert extracts.police
    for r in extracts.police:
        for col in ("SURNAME", "FORENAMES", "ADDRESS", "POSTCODE", "INCIDENT_NARRATIVE"):
            assert r[col] == r[col].upper()
        assert re.fullmatch(r"\d{2}/\d{2}/\d{4}", r["DOB"])
        assert re.fullmatch(r"\d{2}/\d{2}/\d{4}", r["INCIDENT_DATE"])
        assert r["SEX"] in {"M", "F", "U"}
        markers = r["WARNING_MARKERS"]
        assert not markers or all(m.isupper() for m in markers.split("|"))


def test_council_iso_dates_and_codes(extracts: Extracts) -> None:
    iso = re.compile(r"\d{4}-\d{2}-\d{2}")
    for r in extracts.council:
        assert iso.fullmatch(r["date_of_birth"])
        assert not r["tenancy_start"] or iso.fullmatch(r["tenancy_start"])
        assert r["gender"] in {"Male", "Female", "Unknown"}
        assert bool(r["upn"]) <= bool(r["school_name"])
    assert any(r["tenancy_ref"] for r in extracts.council)
    assert any(r["phone"].startswith("+44") for r in extracts.council)
    assert any(r["email"] for r in extracts.council)


def test_social_care_nested_history(extracts: Extracts) -> None:
    doc = extracts.social_doc
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", doc["export"]["generated_at"])
    moved = 0
    for r in extracts.social:
        addrs = r["addresses"]
        assert sum(a["current"] for a in addrs) == 1
        assert addrs[-1]["current"] and addrs[-1]["to"] is None
        moved += len(addrs) > 1
        assert r["gender"] in {"male", "female", "unknown"}
        assert r["case"]["status"] in {"open", "closed", "referral"}
        assert r["case"]["cp_category"] in {None, "NEG", "PHY", "SAB", "EMO", "MUL"}
        assert isinstance(r["name"]["given"], list) and r["name"]["given"]
        assert isinstance(r["name"]["previous_family"], list)
    assert moved > 0


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[int] = []
    generate(people=2500, seed=1, out_dir=tmp_path, progress=seen.append)
    assert seen[0] >= 1000 and seen[-1] == 2500
    assert seen == sorted(seen)


def test_rejects_bad_people(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="people"):
        generate(people=0, seed=1, out_dir=tmp_path)


def test_output_independent_of_hash_seed(tmp_path: Path) -> None:
    """String hashing is randomised per process; the files must not depend on it."""
    script = (
        "import sys; from pathlib import Path; from mash_hub.synth import generate; "
        "generate(people=300, seed=2, out_dir=Path(sys.argv[1]))"
    )
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / hash_seed)], env=env, check=True
        )
    assert _bytes(tmp_path / "1") == _bytes(tmp_path / "2")
