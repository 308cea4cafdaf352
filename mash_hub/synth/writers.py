"""Each agency's extract in its own native shape, written row by row as households arrive.

Rows pass through a small shuffle buffer so that row order within a file does not mirror the
order people were generated in (which would otherwise leak linkage across files).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from random import Random
from types import TracebackType
from typing import IO, Any, Generic, TypeVar

from mash_hub.synth import identifiers as ids
from mash_hub.synth.errors import ErrorRates, dob_typo, typo
from mash_hub.synth.names import WeightedPool, nicknames, transliterations
from mash_hub.synth.population import Address, Household, Person
from mash_hub.synth.rng import stream

POLICE_COLUMNS = (
    "NOMINAL_ID",
    "SURNAME",
    "FORENAMES",
    "DOB",
    "SEX",
    "PNC_ID",
    "ADDRESS",
    "POSTCODE",
    "WARNING_MARKERS",
    "INCIDENT_REF",
    "INCIDENT_DATE",
    "INCIDENT_TYPE",
    "INCIDENT_NARRATIVE",
)
COUNCIL_COLUMNS = (
    "person_ref",
    "first_name",
    "middle_names",
    "last_name",
    "date_of_birth",
    "gender",
    "upn",
    "school_name",
    "school_urn",
    "year_group",
    "address_line_1",
    "address_line_2",
    "town",
    "postcode",
    "tenancy_ref",
    "tenancy_type",
    "tenancy_start",
    "phone",
    "email",
)
# The truth also carries the attributes the linkage-bias report groups by
# (``mash-hub link evaluate --by``): the person's true age band, sex and naming tradition.
TRUTH_COLUMNS = ("feed", "source_record_id", "person_key", "age_band", "sex", "name_origin")
# Bands that matter to safeguarding: under-5s often lack identifiers, school age, young adults.
AGE_BANDS: tuple[tuple[int, str], ...] = (
    (5, "0-4"),
    (11, "5-10"),
    (18, "11-17"),
    (25, "18-24"),
    (45, "25-44"),
    (65, "45-64"),
)
OLDEST_BAND = "65+"


def age_band(age: int) -> str:
    """The truth file's age band of a person ``age`` years old."""
    return next((band for below, band in AGE_BANDS if age < below), OLDEST_BAND)


def truth_row(feed: str, record_id: str, person: Person) -> tuple[str, ...]:
    """One truth line: the record, its true person, and that person's attributes."""
    return (feed, record_id, person.key, age_band(person.age), person.sex, person.origin.name)


# The extract each feed's definition reads, and the ground truth, in the output folder.
EXTRACT_FILES: Mapping[str, str] = {
    "police": "police.csv",
    "council": "council.csv",
    "social_care": "social_care.json",
}
TRUTH_FILE = "truth.csv"
FEEDS = tuple(EXTRACT_FILES)

_BUFFER = 4096
_FILE_BUFFER = 1 << 20

T = TypeVar("T")


class ShuffleBuffer(Generic[T]):
    """Bounded random-order buffer: each new item evicts a random held item to the sink."""

    def __init__(self, rng: Random, size: int, sink: Any) -> None:
        self.rng = rng
        self.size = size
        self.sink = sink
        self.items: list[T] = []

    def push(self, item: T) -> None:
        items = self.items
        if len(items) < self.size:
            items.append(item)
            return
        i = self.rng.randrange(self.size)
        self.sink(items[i])
        items[i] = item

    def flush(self) -> None:
        self.rng.shuffle(self.items)
        for item in self.items:
            self.sink(item)
        self.items.clear()


class Noisy:
    """One agency's view of a person after recording errors: plain fields, cheap to build."""

    __slots__ = (
        "addresses",
        "d",
        "family",
        "given",
        "ident",
        "m",
        "middles",
        "prev_family",
        "sex",
        "y",
    )

    def __init__(self) -> None:
        self.given = ""
        self.middles: tuple[str, ...] = ()
        self.family = ""
        self.prev_family: str | None = None
        self.sex = "M"
        self.y = self.m = self.d = 0
        self.addresses: list[Address] = []
        self.ident: str | None = None


def _iso(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def _ddmmyyyy(ordinal: int) -> str:
    d = date.fromordinal(ordinal)
    return f"{d.day:02d}/{d.month:02d}/{d.year}"


_MARKERS = WeightedPool(
    [
        "VIOLENT",
        "DRUGS",
        "DOMESTIC_ABUSE_PERP",
        "MENTAL_HEALTH",
        "WEAPONS",
        "SELF_HARM",
        "DOMESTIC_ABUSE_VICTIM",
        "ESCAPE_RISK",
    ],
    [20, 18, 14, 14, 8, 8, 12, 3],
)
_CHILD_MARKERS = WeightedPool(
    ["MENTAL_HEALTH", "SELF_HARM", "DOMESTIC_ABUSE_VICTIM", "ESCAPE_RISK"],
    [4, 4, 6, 2],
)
_ADULT_INCIDENTS = WeightedPool(
    [
        "DOMESTIC ABUSE",
        "ASSAULT",
        "THEFT",
        "PUBLIC ORDER",
        "CRIMINAL DAMAGE",
        "DRUGS POSSESSION",
        "CONCERN FOR WELFARE",
        "ANTI-SOCIAL BEHAVIOUR",
        "BURGLARY",
        "DRINK DRIVING",
    ],
    [22, 14, 12, 8, 8, 9, 10, 9, 5, 3],
)
_CHILD_INCIDENTS = WeightedPool(
    [
        "MISSING PERSON",
        "CONCERN FOR WELFARE",
        "DOMESTIC ABUSE",
        "CHILD PROTECTION",
        "ANTI-SOCIAL BEHAVIOUR",
        "ASSAULT",
        "ONLINE CHILD SEXUAL EXPLOITATION",
    ],
    [22, 22, 18, 14, 10, 10, 4],
)
_ROLES = {
    "DOMESTIC ABUSE": ("SUSPECT", "VICTIM", "WITNESS"),
    "ASSAULT": ("SUSPECT", "VICTIM"),
    "CHILD PROTECTION": ("VICTIM", "SUBJECT"),
    "MISSING PERSON": ("MISSING PERSON",),
    "CONCERN FOR WELFARE": ("SUBJECT",),
    "ONLINE CHILD SEXUAL EXPLOITATION": ("VICTIM",),
}
_OUTCOMES = (
    "NO FURTHER ACTION",
    "WORDS OF ADVICE GIVEN",
    "ARRESTED AND INTERVIEWED",
    "CRIME RECORDED, ENQUIRIES ONGOING",
    "REFERRED TO MASH",
    "VOLUNTARY ATTENDANCE",
    "PARTNER AGENCY REFERRAL SUBMITTED",
)
_TIMES = ("EARLY HOURS", "MORNING", "AFTERNOON", "EVENING", "LATE EVENING")
_NARRATIVES = {
    "DOMESTIC ABUSE": "OFFICERS ATTENDED ADDRESS ON {street} IN THE {time} FOLLOWING A CALL "
    "REPORTING A VERBAL ARGUMENT. NOMINAL RECORDED AS {role}. DASH RISK: {risk}. "
    "CHILDREN PRESENT: {kids}. {outcome}.",
    "MISSING PERSON": "NOMINAL REPORTED MISSING BY CARER IN THE {time}. LOCATED SAFE AFTER "
    "{hours} HOURS NEAR {street}. RETURN HOME INTERVIEW REQUESTED. {outcome}.",
    "CONCERN FOR WELFARE": "CALL FROM MEMBER OF PUBLIC RE CONCERN FOR WELFARE AT {street}. "
    "NOMINAL SEEN AND SPOKEN TO IN THE {time}. {outcome}.",
    "CHILD PROTECTION": "REFERRAL RECEIVED FROM PARTNER AGENCY. NOMINAL RECORDED AS {role}. "
    "JOINT VISIT WITH CHILDRENS SOCIAL CARE TO ADDRESS ON {street}. {outcome}.",
}
_GENERIC_NARRATIVE = (
    "REPORT OF {type} ON {street} IN THE {time}. NOMINAL RECORDED AS {role}. {outcome}."
)
_CP_CATEGORIES = WeightedPool(["NEG", "EMO", "PHY", "SAB", "MUL"], [48, 38, 7, 4, 3])


class Recorder:
    """Turns a household into agency records, applying recording errors independently."""

    def __init__(self, out_dir: Path, seed: int, rates: ErrorRates, as_of: date) -> None:
        self.rates = rates
        self.seed = seed
        self.rng = stream(seed, "records")
        self.err = stream(seed, "errors")
        self.as_of_ord = as_of.toordinal()
        self.nick = nicknames()
        self.translit = transliterations()
        self.counts = dict.fromkeys(FEEDS, 0)
        self.people_in_any = 0
        self.perm = {
            "police": ids.Permutation(stream(seed, "police-ids"), 10**8),
            "council": ids.Permutation(stream(seed, "council-ids"), 10**8),
            "social_care": ids.Permutation(stream(seed, "sc-ids"), 10**7),
        }
        self.incident_perm = ids.Permutation(stream(seed, "incidents"), 10**7)
        self.workers = _worker_names(stream(seed, "workers"))
        self.pnc_perm = ids.Permutation(stream(seed, "pnc"), 10**7)
        self.pnc_count = 0
        self.generated_at = ""
        self.paths = {feed: out_dir / name for feed, name in EXTRACT_FILES.items()}
        self.paths["truth"] = out_dir / TRUTH_FILE
        self._files: list[IO[str]] = []

    # -- file lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Recorder:
        def open_(name: str) -> IO[str]:
            f = self.paths[name].open("w", encoding="utf-8", newline="", buffering=_FILE_BUFFER)
            self._files.append(f)
            return f

        police = csv.writer(open_("police"), lineterminator="\n")
        council = csv.writer(open_("council"), lineterminator="\n")
        self._sc_file = open_("social_care")
        truth = csv.writer(open_("truth"), lineterminator="\n")
        police.writerow(POLICE_COLUMNS)
        council.writerow(COUNCIL_COLUMNS)
        truth.writerow(TRUTH_COLUMNS)
        self._sc_first = True
        self._sc_file.write(
            '{"export": {"system": "Liquidlogic LCS (synthetic)", "generated_at": '
            f"{json.dumps(self.generated_at)}, " + '"records": [\n'
        )
        shuffle_rng = stream(self.seed, "shuffle")
        self.police_out: ShuffleBuffer[list[str]] = ShuffleBuffer(
            shuffle_rng, _BUFFER, police.writerow
        )
        self.council_out: ShuffleBuffer[list[str]] = ShuffleBuffer(
            shuffle_rng, _BUFFER, council.writerow
        )
        self.sc_out: ShuffleBuffer[str] = ShuffleBuffer(shuffle_rng, _BUFFER, self._write_sc)
        self.truth = truth.writerow
        return self

    def _write_sc(self, text: str) -> None:
        if self._sc_first:
            self._sc_first = False
            self._sc_file.write(text)
        else:
            self._sc_file.write(",\n" + text)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.police_out.flush()
                self.council_out.flush()
                self.sc_out.flush()
                self._sc_file.write("\n]}}\n")
        finally:
            for f in self._files:
                f.close()

    # -- record ids -----------------------------------------------------------------------

    def _new_id(self, feed: str) -> str:
        self.counts[feed] += 1
        n = self.perm[feed](self.counts[feed])
        if feed == "police":
            return f"NOM{n:08d}"
        if feed == "council":
            return f"CR{n:08d}"
        return str(10_000_000 + n)

    # -- recording errors -----------------------------------------------------------------

    def _noisy(  # noqa: PLR0912, PLR0915 - the hot path, kept flat for speed
        self, p: Person, hh: Household, ident: str | None, forced: bool = False
    ) -> Noisy:
        r = self.err.random
        err = self.err
        rates = self.rates
        v = Noisy()
        given = p.given
        family = p.family
        prev = p.prev_family
        if prev is not None and r() < rates.surname_change:
            family, prev = prev, None
        variants = self.translit.get(given)
        if variants is not None and r() < rates.transliteration:
            given = variants[err.randrange(len(variants))]
        variants = self.translit.get(family)
        if variants is not None and r() < rates.transliteration:
            family = variants[err.randrange(len(variants))]
        variants = self.nick.get(given)
        if variants is not None and r() < rates.nickname:
            given = variants[err.randrange(len(variants))]
        if r() < rates.given_name_typo:
            given = typo(given, err)
        if r() < rates.family_name_typo:
            family = typo(family, err)
        if r() < rates.name_order_swap * p.origin.order_swap_factor:
            given, family = family, given
        y, m, d = p.y, p.m, p.d
        if r() < rates.dob_day_month_swap and d <= 12 and d != m:
            m, d = d, m
        if r() < rates.dob_typo:
            y, m, d = dob_typo(y, m, d, err)
        addresses = hh.addresses
        if len(addresses) > 1 and r() < rates.stale_address:
            addresses = addresses[: 1 + err.randrange(len(addresses) - 1)]
        if r() < rates.missing_postcode:
            a = addresses[-1]
            addresses = [*addresses[:-1], (a[0], a[1], a[2], "", a[4])]
        if ident is not None:
            if r() < rates.missing_identifier:
                ident = None
            elif r() < rates.mistyped_identifier:
                ident = _mistype(ident, err)
        middles = p.middles
        if forced:
            # A duplicate registration: some small difference from the first record.
            kind = err.randrange(4)
            if kind == 0:
                given = typo(given, err)
            elif kind == 1 and middles:
                middles = ()
            elif kind == 2:
                ident = None
            else:
                y, m, d = dob_typo(y, m, d, err)
        v.given, v.middles, v.family, v.prev_family = given, middles, family, prev
        v.sex = "U" if r() < rates.sex_unknown else p.sex
        v.y, v.m, v.d = y, m, d
        v.addresses = addresses
        v.ident = ident
        return v

    def _copies(self) -> int:
        return 2 if self.err.random() < self.rates.duplicate_record else 1

    # -- households -----------------------------------------------------------------------

    def household(self, hh: Household) -> None:
        rng = self.rng
        r = rng.random
        risk = hh.risk
        has_kids = any(p.age < 18 for p in hh.people)
        for p in hh.people:
            age = p.age
            child = age < 18
            older = age >= 66
            if child:
                police = r() < ((0.002, 0.03, 0.12) if age < 10 else (0.02, 0.1, 0.35))[risk]
                social = r() < (0.03, 0.4, 0.9)[risk]
                council = p.upn is not None or (hh.tenancy is not None and r() < 0.6)
            else:
                police = r() < (0.04 if older else (0.08, 0.35, 0.75)[risk])
                social = r() < (
                    0.08 if older else ((0.01, 0.2, 0.55) if has_kids else (0.01, 0.05, 0.2))[risk]
                )
                council = hh.tenancy is not None or r() < (0.7 if has_kids else 0.1)
            if police or social or council:
                self.people_in_any += 1
            if police:
                self._police(p, hh)
            if council:
                self._council(p, hh)
            if social:
                self._social(p, hh)

    def _police(self, p: Person, hh: Household) -> None:
        rng = self.rng
        r = rng.random
        child = p.age < 18
        if p.pnc is None and p.age >= 12 and r() < (0.2 if child else 0.55):
            first = max(p.y + 12, 1985)
            year = first + rng.randrange(max(1, date.fromordinal(self.as_of_ord).year - first))
            self.pnc_count += 1
            p.pnc = ids.pnc_id(year, self.pnc_perm(self.pnc_count))
        markers = ""
        if r() < (0.15 if child else (0.2, 0.45, 0.7)[hh.risk]):
            pool = _CHILD_MARKERS if child else _MARKERS
            picked = {pool.pick(rng) for _ in range(1 + rng.randrange(3))}
            markers = "|".join(sorted(picked))
        itype = (_CHILD_INCIDENTS if child else _ADULT_INCIDENTS).pick(rng)
        roles = _ROLES.get(itype, ("SUSPECT", "VICTIM", "WITNESS", "INFORMANT"))
        role = roles[rng.randrange(len(roles))]
        inc_ord = self.as_of_ord - rng.randrange(1, 1100)
        inc_year = date.fromordinal(inc_ord).year
        inc_ref = f"{inc_year % 100:02d}/{self.incident_perm(self.counts['police'] + 1):07d}"
        home = hh.addresses[-1]
        street = (home[1] or home[0]).split(" ", 1)[-1].upper()
        narrative = _NARRATIVES.get(itype, _GENERIC_NARRATIVE).format(
            street=street,
            time=_TIMES[rng.randrange(len(_TIMES))],
            role=role,
            risk=("STANDARD", "MEDIUM", "HIGH")[min(2, hh.risk + rng.randrange(2))],
            kids="YES" if any(q.age < 18 for q in hh.people) else "NO",
            outcome=_OUTCOMES[rng.randrange(len(_OUTCOMES))],
            hours=rng.randrange(2, 40),
            type=itype,
        )
        all_forenames = r() < 0.7
        short_pnc = r() < 0.65
        for copy in range(self._copies()):
            v = self._noisy(p, hh, p.pnc, forced=copy > 0)
            rid = self._new_id("police")
            forenames = " ".join((v.given, *v.middles)) if all_forenames else v.given
            a = v.addresses[-1]
            address = ", ".join(x for x in (a[0], a[1], a[2]) if x)
            pnc = v.ident or ""
            if pnc and short_pnc:
                pnc = ids.short_pnc(pnc)
            postcode = a[3]
            if postcode and r() < 0.05:
                postcode = postcode.replace(" ", "")
            self.police_out.push(
                [
                    rid,
                    v.family.upper(),
                    forenames.upper(),
                    f"{v.d:02d}/{v.m:02d}/{v.y}",
                    v.sex,
                    pnc,
                    address.upper(),
                    postcode.upper(),
                    markers,
                    inc_ref,
                    _ddmmyyyy(inc_ord),
                    itype,
                    narrative,
                ]
            )
            self.truth(truth_row("police", rid, p))

    def _council(self, p: Person, hh: Household) -> None:
        r = self.rng.random
        upper_surname = r() < 0.1
        tenancy = hh.tenancy if p.age >= 18 else None
        school = p.school
        phone = _phone(p.phone, self.rng) if p.phone and r() < 0.8 else ""
        email = p.email if p.email and r() < 0.7 else ""
        for copy in range(self._copies()):
            v = self._noisy(p, hh, p.upn, forced=copy > 0)
            rid = self._new_id("council")
            a = v.addresses[-1]
            self.council_out.push(
                [
                    rid,
                    v.given,
                    " ".join(v.middles),
                    v.family.upper() if upper_surname else v.family,
                    f"{v.y:04d}-{v.m:02d}-{v.d:02d}",
                    ("Male" if v.sex == "M" else "Female" if v.sex == "F" else "Unknown"),
                    v.ident or "",
                    school.name if school else "",
                    school.urn if school else "",
                    p.year_group,
                    a[0],
                    a[1],
                    a[2],
                    a[3],
                    tenancy[0] if tenancy else "",
                    tenancy[1] if tenancy else "",
                    _iso(tenancy[2]) if tenancy else "",
                    phone,
                    email,
                ]
            )
            self.truth(truth_row("council", rid, p))

    def _social(self, p: Person, hh: Household) -> None:
        rng = self.rng
        r = rng.random
        child = p.age < 18
        draw = r()
        status = "open" if draw < 0.45 else "closed" if draw < 0.8 else "referral"
        earliest = max(self.as_of_ord - 365 * 6, date(p.y, p.m, p.d).toordinal() + 7)
        opened = earliest + rng.randrange(max(1, self.as_of_ord - earliest))
        closed = None
        if status == "closed":
            closed = opened + rng.randrange(1, max(2, self.as_of_ord - opened))
        cp = _CP_CATEGORIES.pick(rng) if child and status == "open" and r() < 0.35 else None
        worker = None
        if (status == "open" and r() < 0.92) or (status == "referral" and r() < 0.4):
            worker = self.workers[rng.randrange(len(self.workers))]
        spaced = r() < 0.6
        phone = _phone(p.phone, rng) if p.phone and r() < 0.7 else None
        email = p.email if p.email and r() < 0.5 else None
        case = {
            "status": status,
            "cp_category": cp,
            "allocated_worker": worker,
            "opened": _iso(opened),
            "closed": _iso(closed) if closed else None,
        }
        for copy in range(self._copies()):
            v = self._noisy(p, hh, p.nhs, forced=copy > 0)
            rid = self._new_id("social_care")
            history = v.addresses
            last = len(history) - 1
            addresses = [
                {
                    "line1": a[0],
                    "line2": a[1] or None,
                    "town": a[2],
                    "postcode": a[3] or None,
                    "from": _iso(a[4]),
                    "to": None if i == last else _iso(history[i + 1][4] - 1),
                    "current": i == last,
                }
                for i, a in enumerate(history)
            ]
            record = {
                "person_id": rid,
                "name": {
                    "given": [v.given, *v.middles],
                    "family": v.family,
                    "previous_family": [v.prev_family] if v.prev_family else [],
                },
                "birth_date": f"{v.y:04d}-{v.m:02d}-{v.d:02d}",
                "gender": "male" if v.sex == "M" else "female" if v.sex == "F" else "unknown",
                "nhs_number": ids.format_nhs(v.ident, spaced) if v.ident else None,
                "addresses": addresses,
                "case": case,
                "contact": {"phone": phone, "email": email},
            }
            self.sc_out.push(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            self.truth(truth_row("social_care", rid, p))


def _mistype(ident: str, rng: Random) -> str:
    if "/" in ident:  # PNC: YYYY/NNNNNNNC -> a serial digit
        return ids.mistype_digit(ident, rng, range(5, 12))
    if ident[0].isalpha():  # UPN: establishment, year or serial digit
        return ids.mistype_digit(ident, rng, range(4, 13))
    return ids.mistype_digit(ident, rng, range(10))  # NHS: any digit


def _phone(phone: str, rng: Random) -> str:
    """One number, written the ways people actually write it."""
    digits = phone.replace(" ", "")
    style = rng.randrange(4)
    if style == 0:
        return phone
    if style == 1:
        return digits
    if style == 2:
        return f"+44 {digits[1:5]} {digits[5:]}"
    return f"+44{digits[1:]}"


def _worker_names(rng: Random) -> list[str]:
    from mash_hub.synth.names import ORIGINS  # noqa: PLC0415

    out = []
    for _ in range(80):
        origin = ORIGINS[rng.randrange(len(ORIGINS))]
        pool = origin.female_old if rng.random() < 0.75 else origin.male_old
        out.append(f"{pool.pick(rng)} {origin.family.pick(rng)}")
    return out
