"""Micro-benchmarks of the standardisation layer (run directly; not collected by pytest).

python benchmarks/bench_standardise.py [--n 20000]

Per-call µs of each function on realistic values, then per-record µs for a full police,
council and social-care record as the synthetic extracts write them.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

from mash_hub.feeds.standardise import (
    clean_name,
    given_name_variants,
    name_key,
    name_order_swapped,
    normalise_email,
    normalise_phone,
    normalise_postcode,
    normalise_sex,
    parse_date,
    split_full_name,
    validate_nhs_number,
    validate_pnc_id,
    validate_upn,
)

POLICE = {
    "SURNAME": "O'NEILL",
    "FORENAMES": "MARY JANE",
    "DOB": "03/10/1980",
    "SEX": "F",
    "PNC_ID": "00/3247337N",
    "POSTCODE": "E6 3GR",
    "INCIDENT_DATE": "31/10/2024",
}
COUNCIL = {
    "first_name": "Willow",
    "middle_names": "Jessica",
    "last_name": "Porter",
    "date_of_birth": "2016-05-17",
    "gender": "Female",
    "upn": "L336292720002",
    "postcode": "WV3 3QT",
    "tenancy_start": "2010-08-04",
    "phone": "+44 7700 900818",
    "email": "mia.halstead@example.org",
}
SOCIAL: dict[str, Any] = {
    "name": {"given": ["Bashir"], "family": "Ali", "previous_family": []},
    "birth_date": "1974-11-20",
    "gender": "male",
    "nhs_number": "480 136 1528",
    "addresses": [
        {"postcode": "E2 1RW", "from": "2021-09-21", "to": "2022-05-07"},
        {"postcode": "E1 4BW", "from": "2022-05-08", "to": None},
    ],
    "case": {"opened": "2019-05-23", "closed": None},
    "contact": {"phone": "+447700900458", "email": None},
}


def police_record(r: dict[str, str]) -> dict[str, object]:
    family = clean_name(r["SURNAME"])
    given = clean_name(r["FORENAMES"]).split()
    return {
        "family": family,
        "given": given,
        "family_key": name_key(family),
        "given_keys": [name_key(g) for g in given],
        "variants": given_name_variants(given[0]),
        "dob": parse_date(r["DOB"]),
        "sex": normalise_sex(r["SEX"]),
        "pnc": validate_pnc_id(r["PNC_ID"]),
        "postcode": normalise_postcode(r["POSTCODE"]),
        "incident": parse_date(r["INCIDENT_DATE"]),
    }


def council_record(r: dict[str, str]) -> dict[str, object]:
    given = clean_name(r["first_name"])
    family = clean_name(r["last_name"])
    return {
        "given": given,
        "middle": clean_name(r["middle_names"]) if r["middle_names"] else None,
        "family": family,
        "keys": (name_key(given), name_key(family)),
        "variants": given_name_variants(given),
        "dob": parse_date(r["date_of_birth"]),
        "sex": normalise_sex(r["gender"]),
        "upn": validate_upn(r["upn"]),
        "postcode": normalise_postcode(r["postcode"]),
        "tenancy_start": parse_date(r["tenancy_start"]),
        "phone": normalise_phone(r["phone"]),
        "email": normalise_email(r["email"]),
    }


def social_record(r: dict[str, Any]) -> dict[str, object]:
    given = [clean_name(g) for g in r["name"]["given"]]
    family = clean_name(r["name"]["family"])
    return {
        "given": given,
        "family": family,
        "keys": ([name_key(g) for g in given], name_key(family)),
        "variants": given_name_variants(given[0]),
        "previous": [name_key(p) for p in r["name"]["previous_family"]],
        "dob": parse_date(r["birth_date"]),
        "sex": normalise_sex(r["gender"]),
        "nhs": validate_nhs_number(r["nhs_number"]),
        "addresses": [
            (normalise_postcode(a["postcode"]), parse_date(a["from"]), parse_date(a["to"]))
            for a in r["addresses"]
        ],
        "opened": parse_date(r["case"]["opened"]),
        "closed": parse_date(r["case"]["closed"]),
        "phone": normalise_phone(r["contact"]["phone"]),
        "email": normalise_email(r["contact"]["email"]),
    }


def _us(label: str, func: Callable[[], object], n: int) -> None:
    best = min(timeit.repeat(func, number=n, repeat=5)) / n
    print(f"{label:<48} {best * 1e6:8.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    n = parser.parse_args().n
    given_name_variants("warm")  # builds the NickNamer once
    cases: list[tuple[str, Callable[[], object]]] = [
        ("clean_name('MARY-JANE O\\'NEILL')", lambda: clean_name("MARY-JANE O'NEILL")),
        ("clean_name('Mary-Jane O\\'Neill')", lambda: clean_name("Mary-Jane O'Neill")),
        ("name_key('Łukasz Wójcik')", lambda: name_key("Łukasz Wójcik")),
        (
            "split_full_name('MR JOHN PAUL SMITH-JONES JR')",
            lambda: split_full_name("MR JOHN PAUL SMITH-JONES JR"),
        ),
        ("split_full_name('SMITH, John Paul')", lambda: split_full_name("SMITH, John Paul")),
        ("given_name_variants('Bob') (cached)", lambda: given_name_variants("Bob")),
        (
            "given_name_variants.__wrapped__('Mohammed')",
            lambda: given_name_variants.__wrapped__("Mohammed"),
        ),
        (
            "name_order_swapped(Wei Wang / Wang Wei)",
            lambda: name_order_swapped("Wei", "Wang", "Wang", "Wei"),
        ),
        ("parse_date('2012-03-04')", lambda: parse_date("2012-03-04")),
        ("parse_date('04/03/2012')", lambda: parse_date("04/03/2012")),
        ("parse_date('4 March 2012')", lambda: parse_date("4 March 2012")),
        ("parse_date('2012-03-04T10:00:00Z')", lambda: parse_date("2012-03-04T10:00:00Z")),
        (
            "parse_date('04/03/2012', ['%d/%m/%Y'])",
            lambda: parse_date("04/03/2012", ["%d/%m/%Y"]),
        ),
        ("normalise_postcode('ls62qt')", lambda: normalise_postcode("ls62qt")),
        ("validate_nhs_number('943 476 5919')", lambda: validate_nhs_number("943 476 5919")),
        ("validate_upn('B801200005001')", lambda: validate_upn("B801200005001")),
        ("validate_pnc_id('00/3247337N')", lambda: validate_pnc_id("00/3247337N")),
        ("validate_pnc_id('2000/3247337N')", lambda: validate_pnc_id("2000/3247337N")),
        (
            "normalise_email('Jane.Doe@Example.COM')",
            lambda: normalise_email("Jane.Doe@Example.COM"),
        ),
        ("normalise_phone('07700 900123')", lambda: normalise_phone("07700 900123")),
        ("normalise_phone('+44 7700 900818')", lambda: normalise_phone("+44 7700 900818")),
        ("normalise_sex('Female')", lambda: normalise_sex("Female")),
    ]
    print(f"per call (best of 5 x {n})")
    for label, func in cases:
        func()  # every example is valid: an error here is a bug
        _us(label, func, n)
    print("per record")
    _us("police record (10 fields)", lambda: police_record(POLICE), n // 4)
    _us("council record (12 fields)", lambda: council_record(COUNCIL), n // 4)
    _us("social care record (nested, 2 addresses)", lambda: social_record(SOCIAL), n // 4)


if __name__ == "__main__":
    main()
