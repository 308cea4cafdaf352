"""UK-shaped places: towns with their local-authority codes and real outward postcodes.

Outward codes and LA numbers are real (so postcode parsers and UPN validators accept them);
house numbers, streets and inward codes are synthetic, so addresses are not real homes.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from mash_hub.synth.names import ORIGIN_INDEX, ORIGINS, WeightedPool


@dataclass(frozen=True, slots=True)
class Area:
    """A town served by one local authority, with the outward codes its postcodes use."""

    town: str
    la_code: int
    weight: float
    outward: tuple[str, ...]
    # Origin weight multipliers reflecting local demography (e.g. Tower Hamlets, Bradford).
    origin_boost: tuple[tuple[str, float], ...] = ()


def _codes(prefix: str, numbers: str) -> tuple[str, ...]:
    return tuple(prefix + n for n in numbers.split())


AREAS: tuple[Area, ...] = (
    Area(
        "Leeds",
        383,
        8.0,
        _codes("LS", "1 2 4 5 6 7 8 9 10 11 12 13 14 15 16 17 25 27 28"),
        (("pakistani", 1.5), ("polish", 1.5), ("west_african", 1.2)),
    ),
    Area(
        "Bradford",
        380,
        5.5,
        _codes("BD", "1 2 3 4 5 6 7 8 9 10 15 18"),
        (("pakistani", 6.0), ("bangladeshi", 2.0), ("indian", 1.5)),
    ),
    Area(
        "Birmingham",
        330,
        11.0,
        _codes("B", "5 6 8 9 10 11 12 13 14 16 19 20 21 23 29 31 36 44"),
        (
            ("pakistani", 3.5),
            ("indian", 2.0),
            ("bangladeshi", 2.0),
            ("caribbean", 2.5),
            ("somali", 2.0),
            ("arabic", 1.5),
        ),
    ),
    Area(
        "Manchester",
        352,
        7.0,
        _codes("M", "8 9 11 12 13 14 15 16 18 19 20 21 22 23 40"),
        (
            ("pakistani", 2.5),
            ("west_african", 2.0),
            ("somali", 2.0),
            ("chinese", 2.0),
            ("irish", 1.5),
            ("arabic", 2.0),
        ),
    ),
    Area(
        "London",
        320,
        5.0,
        _codes("E", "4 10 11 17"),
        (
            ("pakistani", 2.0),
            ("polish", 2.5),
            ("romanian", 3.0),
            ("caribbean", 2.0),
            ("turkish_kurdish", 2.0),
        ),
    ),
    Area(
        "London",
        211,
        4.5,
        _codes("E", "1 2 3 14"),
        (("bangladeshi", 12.0), ("somali", 3.0), ("chinese", 1.5)),
    ),
    Area(
        "London",
        316,
        5.0,
        _codes("E", "6 7 12 13 15 16"),
        (
            ("indian", 3.0),
            ("pakistani", 3.0),
            ("bangladeshi", 4.0),
            ("west_african", 3.0),
            ("romanian", 3.0),
        ),
    ),
    Area(
        "London",
        309,
        4.0,
        _codes("N", "4 15 16 17 22"),
        (
            ("turkish_kurdish", 6.0),
            ("caribbean", 3.0),
            ("west_african", 2.5),
            ("polish", 2.0),
            ("romanian", 2.5),
            ("somali", 2.0),
        ),
    ),
    Area(
        "Sheffield",
        373,
        5.5,
        _codes("S", "2 3 4 5 6 7 8 9 10 11 12 13 14 35"),
        (("pakistani", 1.5), ("somali", 2.5), ("arabic", 2.0)),
    ),
    Area(
        "Liverpool",
        341,
        5.0,
        _codes("L", "4 5 6 7 8 9 11 12 13 14 15 17 18 19 24 25"),
        (("irish", 2.0), ("chinese", 2.0), ("somali", 1.5), ("arabic", 1.5)),
    ),
    Area(
        "Bristol",
        801,
        5.0,
        _codes("BS", "2 3 4 5 6 7 10 13 14 16"),
        (("somali", 3.0), ("caribbean", 2.0), ("polish", 1.5)),
    ),
    Area(
        "Leicester",
        856,
        4.0,
        _codes("LE", "1 2 3 4 5"),
        (("indian", 8.0), ("pakistani", 1.5), ("somali", 3.0), ("polish", 1.5)),
    ),
    Area(
        "Huddersfield",
        382,
        3.0,
        _codes("HD", "1 2 3 4 5 7 8"),
        (("pakistani", 3.0), ("indian", 1.5), ("caribbean", 1.5)),
    ),
    Area(
        "Luton",
        821,
        2.5,
        _codes("LU", "1 2 3 4"),
        (("pakistani", 5.0), ("bangladeshi", 3.0), ("romanian", 2.5), ("polish", 2.0)),
    ),
    Area(
        "Nottingham",
        892,
        3.5,
        _codes("NG", "1 2 3 5 6 7 8 9 11"),
        (("caribbean", 2.0), ("pakistani", 1.5), ("polish", 1.5)),
    ),
    Area("Bolton", 350, 3.0, _codes("BL", "1 2 3 4 5"), (("indian", 2.5), ("pakistani", 1.5))),
    Area("Oldham", 353, 2.5, _codes("OL", "1 4 8 9"), (("pakistani", 3.5), ("bangladeshi", 4.0))),
    Area(
        "Coventry",
        331,
        3.5,
        _codes("CV", "1 2 3 4 5 6"),
        (("indian", 2.0), ("polish", 2.0), ("romanian", 2.0)),
    ),
    Area(
        "Newcastle upon Tyne",
        391,
        3.5,
        _codes("NE", "1 2 3 4 5 6 7 15"),
        (("bangladeshi", 1.5), ("arabic", 1.5)),
    ),
    Area(
        "Kingston upon Hull",
        810,
        3.0,
        _codes("HU", "1 2 3 4 5 6 7 8 9"),
        (("polish", 2.5), ("romanian", 2.0)),
    ),
    Area(
        "Peterborough",
        874,
        2.5,
        _codes("PE", "1 2 3 4 7"),
        (("polish", 3.5), ("romanian", 2.0), ("pakistani", 2.0)),
    ),
    Area(
        "Slough",
        871,
        2.0,
        _codes("SL", "1 2 3"),
        (("indian", 4.0), ("pakistani", 4.0), ("polish", 2.5)),
    ),
    Area(
        "Wolverhampton",
        336,
        3.0,
        _codes("WV", "1 2 3 4 6 10 11 14"),
        (("indian", 4.0), ("caribbean", 2.0), ("polish", 1.5)),
    ),
)

# Letters allowed in the inward part of a UK postcode (C, I, K, M, O and V are never used).
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"

STREETS = WeightedPool.zipf(
    """High Station Church Victoria Park Mill Manor Queens Kings Albert Grange Springfield
    Chapel School Elm Oak Ash Beech Cedar Willow Holly Rosemary Lime Hawthorn Sycamore Chestnut
    Meadow Orchard Green Hill Brook Bridge Castle Abbey Priory Windsor York Clarence Stanley
    Belgrave Cavendish Beaumont Hyde Harehills Roundhay Chapeltown Headingley Moseley Alum
    Sparkbrook Rusholme Whalley Longsight Walthamstow Forest Hoe Leyton Lea Bow
    Mile Stepney Cable Brick Commercial Burdett Barking Romford Plashet Tottenham
    West Lordship Heeley Abbeydale Ecclesall Sharrow Toxteth Smithdown Lodge Picton Stapleton
    Fishponds Easton Lawrence Narborough Belgrave Melton Evington Spinney Lea Bridge Saxon
    Norman Tudor Stuart Hanover Jubilee Coronation Nelson Wellington Trafalgar Balmoral
    Sandringham Marlborough Grosvenor Osborne Ladysmith Kimberley Mafeking Alexandra""",
    0.5,
)
STREET_TYPES = WeightedPool(
    [
        "Road",
        "Street",
        "Avenue",
        "Lane",
        "Close",
        "Terrace",
        "Drive",
        "Grove",
        "Crescent",
        "Way",
        "Place",
        "Gardens",
        "Court",
        "Walk",
    ],
    [30, 25, 12, 8, 7, 6, 5, 4, 4, 3, 2, 2, 1, 1],
)
FLAT_BLOCKS = WeightedPool(
    [
        "Beech Court",
        "Ash House",
        "Victoria Mansions",
        "Jubilee Tower",
        "Park View",
        "Oak House",
        "Priory Court",
        "Kingsway House",
        "Meadow Court",
        "Windsor House",
        "Castle Point",
        "Mill Court",
        "Riverside Court",
    ],
    [5, 4, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1],
)


@dataclass(frozen=True, slots=True)
class School:
    """A synthetic school: name, 6-digit URN and 4-digit DfE establishment number."""

    name: str
    urn: str
    estab: int
    secondary: bool


_SCHOOL_PLACES = [
    "Oakwood",
    "Parkside",
    "Hillcrest",
    "Greenfield",
    "Brookfield",
    "Westfield",
    "Northfield",
    "Meadowbank",
    "Springbank",
    "Ashfield",
    "Fernhill",
    "Highfield",
    "Lakeside",
    "Woodlands",
    "Riverside",
    "Broadway",
    "Kingsmead",
    "Elmhurst",
    "Hollybank",
    "Moorside",
]
_SAINTS = [
    "Mary's",
    "Joseph's",
    "Anne's",
    "John's",
    "Peter's",
    "Paul's",
    "Michael's",
    "Patrick's",
    "Chad's",
    "Aidan's",
]


def build_schools(rng: Random) -> dict[int, tuple[list[School], list[School]]]:
    """Primary and secondary schools for each LA, drawn once per run."""
    schools: dict[int, tuple[list[School], list[School]]] = {}
    urn = 100000 + rng.randrange(20000)
    for area in AREAS:
        if area.la_code in schools:
            continue
        primaries: list[School] = []
        secondaries: list[School] = []
        places = _SCHOOL_PLACES[:]
        rng.shuffle(places)
        for i in range(14):
            urn += 1 + rng.randrange(40)
            if i % 4 == 3:
                name = f"St {_SAINTS[rng.randrange(len(_SAINTS))]} Catholic Primary School"
            else:
                name = f"{places[i % len(places)]} {'Primary School' if i % 2 else 'Primary'}"
            primaries.append(School(name, str(urn), 2000 + rng.randrange(1, 999), False))
        for i in range(5):
            urn += 1 + rng.randrange(40)
            kind = ("Academy", "High School", "Community College", "School")[i % 4]
            name = f"{places[(i + 14) % len(places)]} {kind}"
            secondaries.append(School(name, str(urn), 4000 + rng.randrange(1, 999), True))
        schools[area.la_code] = (primaries, secondaries)
    return schools


def area_origin_pools() -> list[tuple[list[float], float]]:
    """Cumulative origin weights per area (national weights times local boosts)."""
    out: list[tuple[list[float], float]] = []
    for area in AREAS:
        weights = [o.weight for o in ORIGINS]
        for name, factor in area.origin_boost:
            weights[ORIGIN_INDEX[name]] *= factor
        cum: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            cum.append(total)
        out.append((cum, total))
    return out
