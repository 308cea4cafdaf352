"""Households and the people in them: the ground-truth population, one household at a time.

Nothing here keeps a list of people beyond the household being built, so memory stays flat
however many people are generated.
"""

from __future__ import annotations

from bisect import bisect
from datetime import date

from mash_hub.synth import identifiers as ids
from mash_hub.synth.names import ORIGIN_INDEX, ORIGINS, SIMILAR_TWIN_NAMES, Origin, WeightedPool
from mash_hub.synth.places import (
    AREAS,
    FLAT_BLOCKS,
    INWARD_LETTERS,
    STREET_TYPES,
    STREETS,
    Area,
    School,
    area_origin_pools,
    build_schools,
)
from mash_hub.synth.rng import stream

# line1, line2, town, postcode, date moved in (ordinal)
Address = tuple[str, str, str, str, int]

_YEAR_GROUP_LABELS = ("N", "R", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13")
_BEGUM_ORIGINS = frozenset({ORIGIN_INDEX["bangladeshi"], ORIGIN_INDEX["pakistani"]})
_KEEP_SURNAME_ORIGINS = frozenset(
    {ORIGIN_INDEX["somali"], ORIGIN_INDEX["chinese"], ORIGIN_INDEX["arabic"]}
)
_RECENT_ARRIVAL_ORIGINS = frozenset(
    ORIGIN_INDEX[n] for n in ("polish", "romanian", "somali", "arabic", "west_african")
)
_FEMALE_ONLY_SURNAMES = frozenset({"Begum", "Bibi", "Khatun", "Akter", "Kaur"})
_ANY_ORIGIN = WeightedPool([str(i) for i in range(len(ORIGINS))], [o.weight for o in ORIGINS])
_AREA_POOL = WeightedPool([str(i) for i in range(len(AREAS))], [a.weight for a in AREAS])

# Household shapes, weighted to give an England-like age/household mix.
_HH_TYPES = WeightedPool(
    ["single", "couple", "couple_kids", "single_parent", "older_single", "older_couple", "sharers"],
    [20, 15, 27, 12, 12, 10, 4],
)
_KID_COUNTS = (1, 2, 3, 4, 5)
_KID_CUM = (38, 76, 91, 97, 100)


class Person:
    """One real (synthetic) person: the truth every agency record is a noisy copy of."""

    __slots__ = (
        "age",
        "d",
        "email",
        "family",
        "given",
        "index",
        "key",
        "la_code",
        "m",
        "middles",
        "nhs",
        "origin",
        "phone",
        "pnc",
        "prev_family",
        "school",
        "sex",
        "upn",
        "y",
        "year_group",
    )

    def __init__(  # noqa: PLR0917 - built on the hot path; positional is fastest
        self, index: int, sex: str, age: int, y: int, m: int, d: int, origin: Origin
    ) -> None:
        self.index = index
        self.key = f"P{index:08d}"
        self.sex = sex
        self.age = age
        self.y, self.m, self.d = y, m, d
        self.origin = origin
        self.given = ""
        self.middles: tuple[str, ...] = ()
        self.family = ""
        self.prev_family: str | None = None
        self.nhs: str | None = None
        self.upn: str | None = None
        self.school: School | None = None
        self.la_code = 0
        self.year_group = ""
        self.pnc: str | None = None
        self.phone: str | None = None
        self.email: str | None = None


class Household:
    """People at one address, with the address history that house moves leave behind."""

    __slots__ = ("addresses", "area", "people", "risk", "tenancy")

    def __init__(
        self,
        people: list[Person],
        addresses: list[Address],
        area: int,
        risk: int,
        tenancy: tuple[str, str, int] | None,
    ) -> None:
        self.people = people
        self.addresses = addresses  # oldest first; the last one is current
        self.area = area
        self.risk = risk  # 0 unknown to services, 1 some involvement, 2 high involvement
        self.tenancy = tenancy


class PopulationBuilder:
    """Draws households from one RNG stream; identifiers from collision-free permutations."""

    def __init__(self, seed: int, as_of: date) -> None:
        self.rng = stream(seed, "population")
        self.as_of = as_of
        self.as_of_ord = as_of.toordinal()
        self.acad_start = as_of.year if as_of.month >= 9 else as_of.year - 1
        self.next_index = 1
        self.schools = build_schools(stream(seed, "schools"))
        self.origin_pools = area_origin_pools()
        self.nhs_perm = ids.Permutation(stream(seed, "nhs"), 10**8)
        self.tenancy_perm = ids.Permutation(stream(seed, "tenancy"), 10**7)
        self.tenancy_count = 0
        self.upn_serials: dict[tuple[int, int, int], int] = {}

    # -- people ---------------------------------------------------------------------------

    def _dob(self, age: int) -> tuple[int, int, int]:
        dob = date.fromordinal(self.as_of_ord - int((age + self.rng.random()) * 365.2425))
        return dob.year, dob.month, dob.day

    def _person(self, sex: str, age: int, origin: Origin) -> Person:
        y, m, d = self._dob(age)
        p = Person(self.next_index, sex, age, y, m, d, origin)
        self.next_index += 1
        rng = self.rng
        p.given = self._given(sex, y, origin)
        if rng.random() < origin.middle_rate:
            middles = [self._given(sex, y, origin)]
            if rng.random() < 0.15:
                middles.append(self._given(sex, y, origin))
            p.middles = tuple(n for n in dict.fromkeys(middles) if n != p.given)
        arrival_gap = 0.08 if ORIGIN_INDEX[origin.name] in _RECENT_ARRIVAL_ORIGINS else 0.01
        if rng.random() >= arrival_gap:
            p.nhs = ids.nhs_number(self.nhs_perm(p.index))
        if age >= 16:
            if rng.random() < 0.75:
                p.phone = f"07700 900{rng.randrange(1000):03d}"
            if age >= 18 and rng.random() < 0.45:
                p.email = "pending"  # filled once the final names are known
        return p

    def _given(self, sex: str, birth_year: int, origin: Origin) -> str:
        young = birth_year >= 1990
        if sex == "M":
            pool = origin.male_young if young else origin.male_old
        else:
            pool = origin.female_young if young else origin.female_old
        return pool.pick(self.rng)

    def _origin(self, area: int) -> Origin:
        cum, total = self.origin_pools[area]
        return ORIGINS[bisect(cum, self.rng.random() * total)]

    def _finish_adult(self, p: Person) -> None:
        if p.email == "pending":
            rng = self.rng
            style = rng.randrange(3)
            first = p.given.lower()
            last = p.family.lower().replace("'", "").replace(" ", "")
            local = (
                f"{first}.{last}",
                f"{first}{last}{rng.randrange(1, 99)}",
                f"{first[0]}{last}{rng.randrange(60, 100)}",
            )[style]
            domain = ("example.com", "example.org", "example.net")[rng.randrange(3)]
            p.email = f"{local}@{domain}"

    # -- addresses ------------------------------------------------------------------------

    def _address(self, area_idx: int, moved_in: int) -> Address:
        rng = self.rng
        area = AREAS[area_idx]
        street = f"{STREETS.pick(rng)} {STREET_TYPES.pick(rng)}"
        outward = area.outward[rng.randrange(len(area.outward))]
        inward = (
            f"{rng.randrange(10)}{INWARD_LETTERS[rng.randrange(20)]}"
            f"{INWARD_LETTERS[rng.randrange(20)]}"
        )
        if rng.random() < 0.18:
            line1 = f"Flat {rng.randrange(1, 60)}, {FLAT_BLOCKS.pick(rng)}"
            line2 = f"{rng.randrange(1, 120)} {street}"
        else:
            line1 = f"{rng.randrange(1, 250)} {street}"
            line2 = ""
        return (line1, line2, area.town, f"{outward} {inward}", moved_in)

    def _addresses(self, area_idx: int, origin: Origin) -> list[Address]:
        rng = self.rng
        today = self.as_of_ord
        if rng.random() >= origin.move_rate:
            return [self._address(area_idx, today - rng.randrange(400, 6000))]
        moves = 1 if rng.random() < 0.75 else 2
        current_from = today - rng.randrange(20, 1500)
        out = [self._address(area_idx, current_from)]
        moved_in = current_from
        for _ in range(moves):
            moved_in -= rng.randrange(200, 2500)
            prev_area = area_idx if rng.random() < 0.8 else int(_AREA_POOL.pick(rng))
            out.append(self._address(prev_area, moved_in))
        out.reverse()
        return out

    # -- education ------------------------------------------------------------------------

    def _enrol(self, child: Person, area: Area, primary: School, secondary: School) -> None:
        cohort = child.y if child.m >= 9 else child.y - 1
        yg = self.acad_start - cohort - 5  # 0 = Reception
        if yg < -1 or yg > 13:
            return
        rng = self.rng
        if (yg == -1 and rng.random() >= 0.3) or (yg >= 12 and rng.random() >= 0.7):
            return
        school = primary if yg <= 6 else secondary
        child.school = school
        child.la_code = area.la_code
        child.year_group = _YEAR_GROUP_LABELS[yg + 1]
        issue_year = cohort + (4 if yg == -1 else 5)
        bucket = (area.la_code, primary.estab, issue_year)
        serial = self.upn_serials.get(bucket, rng.randrange(1, 40)) + 1
        self.upn_serials[bucket] = serial
        child.upn = ids.upn(area.la_code, primary.estab, issue_year, serial)

    # -- households -----------------------------------------------------------------------

    def household(self, max_people: int) -> Household:
        """The next household, with at most ``max_people`` members."""
        rng = self.rng
        area_idx = int(_AREA_POOL.pick(rng))
        origin = self._origin(area_idx)
        kind = _HH_TYPES.pick(rng)
        if kind in ("couple", "couple_kids", "older_couple"):
            adults, people = self._couple(kind, origin, area_idx)
        elif kind == "single_parent":
            adults, people = self._single_parent(origin, area_idx)
        elif kind == "sharers":
            adults = self._sharers(origin)
            people = adults
        else:
            adults = [self._single(kind, origin)]
            people = adults
        for a in adults:
            self._finish_adult(a)
        del people[max_people:]
        risk_draw = rng.random()
        has_kids = len(people) > len(adults)
        risk = (
            2
            if risk_draw < (0.12 if has_kids else 0.05)
            else 1
            if risk_draw < (0.35 if has_kids else 0.2)
            else 0
        )
        addresses = self._addresses(area_idx, origin)
        tenancy = None
        if rng.random() < (0.22, 0.45, 0.6)[risk]:
            self.tenancy_count += 1
            ttype = (
                "Secure",
                "Secure",
                "Secure",
                "Introductory",
                "Flexible",
                "Temporary Accommodation",
            )[rng.randrange(6)]
            start = max(addresses[-1][4], self.as_of_ord - rng.randrange(30, 9000))
            tenancy = (f"TEN{self.tenancy_perm(self.tenancy_count):07d}", ttype, start)
        return Household(people, addresses, area_idx, risk, tenancy)

    def _couple(
        self, kind: str, origin: Origin, area_idx: int
    ) -> tuple[list[Person], list[Person]]:
        rng = self.rng
        if kind == "older_couple":
            w_age = 66 + int(rng.random() ** 1.5 * 28)
        elif kind == "couple_kids":
            w_age = 20 + int((rng.random() + rng.random()) * 14)
        else:
            w_age = 20 + int(rng.random() ** 1.2 * 45)
        m_age = max(18, w_age + int(rng.gauss(2.5, 3.5)))
        m_origin = origin if rng.random() < 0.88 else ORIGINS[int(_ANY_ORIGIN.pick(rng))]
        man = self._person("M", m_age, m_origin)
        woman = self._person("F", w_age, origin)
        man.family = m_origin.family.pick(rng)
        while man.family in _FEMALE_ONLY_SURNAMES:
            man.family = m_origin.family.pick(rng)
        maiden = origin.family.pick(rng)
        oi = ORIGIN_INDEX[origin.name]
        married = rng.random() < (0.15 if oi in _KEEP_SURNAME_ORIGINS else 0.62)
        if married and maiden != man.family:
            woman.family, woman.prev_family = man.family, maiden
        elif oi in _BEGUM_ORIGINS and rng.random() < 0.35:
            woman.family = "Begum" if oi == ORIGIN_INDEX["bangladeshi"] else "Bibi"
        else:
            woman.family = maiden
            married = False
        adults = [man, woman]
        if kind == "couple_kids":
            return adults, adults + self._children(woman, man, married, origin, area_idx)
        return adults, list(adults)

    def _single_parent(self, origin: Origin, area_idx: int) -> tuple[list[Person], list[Person]]:
        rng = self.rng
        mother = rng.random() < 0.87
        age = 18 + int((rng.random() + rng.random()) * 16)
        parent = self._person("F" if mother else "M", age, origin)
        parent.family = origin.family.pick(rng)
        if mother and rng.random() < 0.2:
            self._previous_surname(parent)
        return [parent], [parent, *self._children(parent, None, False, origin, area_idx)]

    def _sharers(self, origin: Origin) -> list[Person]:
        rng = self.rng
        adults = []
        for _ in range(2 + rng.randrange(3)):
            o = origin if rng.random() < 0.5 else ORIGINS[int(_ANY_ORIGIN.pick(rng))]
            p = self._person(
                "M" if rng.random() < 0.55 else "F", 18 + int(rng.random() ** 1.5 * 30), o
            )
            p.family = o.family.pick(rng)
            adults.append(p)
        return adults

    def _single(self, kind: str, origin: Origin) -> Person:
        rng = self.rng
        age = (
            66 + int(rng.random() ** 1.5 * 30)
            if kind == "older_single"
            else 18 + int(rng.random() ** 1.3 * 47)
        )
        p = self._person("M" if rng.random() < 0.48 else "F", age, origin)
        p.family = origin.family.pick(rng)
        if p.sex == "F" and age > 25 and rng.random() < 0.3:
            self._previous_surname(p)
        return p

    def _previous_surname(self, p: Person) -> None:
        """A former (e.g. married or maiden) surname that some agencies still hold."""
        prev = p.origin.family.pick(self.rng)
        if prev != p.family:
            p.prev_family = prev

    def _children(
        self, mother: Person, father: Person | None, married: bool, origin: Origin, area_idx: int
    ) -> list[Person]:
        rng = self.rng
        n = _KID_COUNTS[bisect(_KID_CUM, rng.randrange(100))]
        max_age = max(0, min(17, mother.age - 17))
        if father is not None:
            child_surname = father.family
            draw = rng.random()
            if married:
                if draw < 0.07 and mother.prev_family:
                    child_surname = f"{father.family}-{mother.prev_family}"
            elif draw < 0.2:
                child_surname = mother.family
            elif draw < 0.33:
                child_surname = f"{father.family}-{mother.family}"
        else:
            child_surname = mother.family if rng.random() < 0.55 else origin.family.pick(rng)
        child_origin = father.origin if father is not None else origin
        area = AREAS[area_idx]
        primaries, secondaries = self.schools[area.la_code]
        primary = primaries[rng.randrange(len(primaries))]
        secondary = secondaries[rng.randrange(len(secondaries))]
        kids: list[Person] = []
        for _ in range(n):
            kid = self._person(
                "M" if rng.random() < 0.51 else "F", rng.randrange(max_age + 1), child_origin
            )
            kid.family = child_surname
            kids.append(kid)
        if rng.random() < 0.04:
            kids.append(self._twin(kids[0]))
        for kid in kids:
            if rng.random() < 0.06 and father is not None and kid.family != mother.family:
                kid.family = mother.family
            self._enrol(kid, area, primary, secondary)
            if kid.age >= 16:
                self._finish_adult(kid)
        return kids

    def _twin(self, first: Person) -> Person:
        """A co-twin: same DOB, surname and home, and a clearly different given name."""
        rng = self.rng
        sex = first.sex if rng.random() < 0.6 else ("F" if first.sex == "M" else "M")
        twin = Person(self.next_index, sex, first.age, first.y, first.m, first.d, first.origin)
        self.next_index += 1
        twin.family = first.family
        if sex == first.sex and rng.random() < 0.35:
            pairs = SIMILAR_TWIN_NAMES[sex]
            a, b = pairs[rng.randrange(len(pairs))]
            first.given, twin.given = (a, b) if rng.random() < 0.5 else (b, a)
        else:
            for _ in range(20):
                twin.given = self._given(sex, first.y, first.origin)
                if twin.given != first.given:
                    break
            else:
                twin.given = "Noah" if sex == "M" else "Grace"
        if first.middles and rng.random() < 0.5:
            twin.middles = (self._given(sex, first.y, first.origin),)
        if rng.random() >= 0.02:
            twin.nhs = ids.nhs_number(self.nhs_perm(twin.index))
        return twin
