"""The linkage model's comparisons and blocking rules, defined once in code.

Each comparison is a list of levels: an SQL condition over ``<column>_l`` / ``<column>_r``
(DuckDB dialect), a short label, and the phrase an officer reads in a link explanation. The
trained m/u values are data (``linkage/model.json``); :func:`splink_settings` joins the two.
Keeping the SQL here, not in the saved model, is what lets the same trained parameters be
rebuilt for another dialect later (Splink's own JSON embeds dialect-specific SQL).

Household data is the trap: siblings, twins and parents share surname, address and postcode,
and twins share a date of birth too. So:

* when the given names are *clearly different* (no exact, variant, phonetic, fuzzy or swap
  agreement) or the dates of birth are clearly different, agreeing surname and postcode are
  explained by the household and count for nothing (fixed neutral levels);
* same date of birth + same surname + clearly different given name is the twin pattern: a
  fixed, strongly negative level;
* identifier agreement is fixed strong evidence; identifier conflict is handled as a hard
  cannot-link by the clustering (see :mod:`mash_hub.matching.cluster`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# -- shared SQL fragments ------------------------------------------------------------------

GIVEN_BOTH = "given_first_l IS NOT NULL AND given_first_r IS NOT NULL"
SWAPPED = (
    "(given_first_phon_l = family_phon_r AND family_phon_l = given_first_phon_r"
    " AND given_first_l <> given_first_r)"
)
GIVEN_SIMILAR = (
    "(given_first_l = given_first_r"
    " OR list_contains(given_tokens_r, given_first_l)"
    " OR list_contains(given_tokens_l, given_first_r)"
    " OR list_has_any(given_variants_l, given_variants_r)"
    " OR list_has_any(given_phons_l, given_phons_r)"
    " OR jaro_winkler_similarity(given_first_l, given_first_r) >= 0.8"
    f" OR {SWAPPED})"
)
# Given names that no recording error in our experience turns one into the other.
GIVEN_CLEARLY_DIFFERENT = f"({GIVEN_BOTH} AND NOT {GIVEN_SIMILAR})"
# Month and day as one number (03-09 -> 309): a day one out differs by 1, a month by 100.
_MD_DIFF = (
    "abs(try_cast(replace(dob_md_l, '-', '') AS INTEGER)"
    " - try_cast(replace(dob_md_r, '-', '') AS INTEGER))"
)
# Same year, day or month one out (09/10, 29/30: more than one digit apart, so not a typo).
DOB_NEAR = f"(dob_year_l = dob_year_r AND ({_MD_DIFF} <= 1 OR {_MD_DIFF} = 100))"
DOB_CLOSE = (
    "(dob_l = dob_r OR dob_l = dob_dm_swapped_r OR damerau_levenshtein(dob_l, dob_r) <= 1"
    " OR (dob_md_l = dob_md_r AND abs(try_cast(dob_year_l AS INTEGER)"
    f" - try_cast(dob_year_r AS INTEGER)) <= 1) OR {DOB_NEAR})"
)
DOB_CLEARLY_DIFFERENT = f"(dob_l IS NOT NULL AND dob_r IS NOT NULL AND NOT {DOB_CLOSE})"
# Agreement a household explains as well as identity does.
HOUSEHOLD_EXPLAINED = f"({GIVEN_CLEARLY_DIFFERENT} OR {DOB_CLEARLY_DIFFERENT})"
FAMILY_AGREES = (
    "(family_l = family_r OR list_has_any(family_all_l, family_all_r)"
    " OR family_phon_l = family_phon_r OR jaro_winkler_similarity(family_l, family_r) >= 0.88)"
)
POSTCODE_AGREES = "(postcode_l = postcode_r OR list_has_any(postcodes_l, postcodes_r))"
STREET_AGREES = "(street_l = street_r OR jaro_winkler_similarity(street_l, street_r) >= 0.9)"


@dataclass(frozen=True)
class Level:
    """One comparison level. ``fixed`` pins (m, u) to expert values that training never moves."""

    key: str
    sql: str
    explain: str
    is_null: bool = False
    fixed: tuple[float, float] | None = None
    # Interaction levels read other comparisons' columns; Splink's EM skips any comparison
    # that reads a blocking column, so they are left out of the settings used for training.
    interaction: bool = False
    # Term-frequency adjusted (exact levels only): agreeing on a common value (Mohammed,
    # Khan) is weaker evidence than agreeing on a rare one; see matching/frequencies.py.
    tf_column: str | None = None


@dataclass(frozen=True)
class Comparison:
    name: str
    description: str
    levels: tuple[Level, ...] = field(default_factory=tuple)

    def level(self, key: str) -> Level:
        for level in self.levels:
            if level.key == key:
                return level
        raise KeyError(f"{self.name} has no level {key!r}")


def _null(*columns: str) -> Level:
    sql = " OR ".join(f"{c}_l IS NULL OR {c}_r IS NULL" for c in columns)
    return Level("null", sql, ",".join(columns), is_null=True)


def null_columns(comparison: Comparison) -> tuple[str, ...]:
    """Feature columns whose absence on either side makes the comparison null."""
    return tuple(comparison.levels[0].explain.split(","))


def _identifier(column: str, label: str) -> Comparison:
    # P(agree | match): a held identifier is nearly always right; P(agree | non-match): only a
    # check-digit-passing keying error or an id recorded against the wrong person.
    return Comparison(
        column,
        f"{label} exact match",
        (
            _null(column),
            Level("exact", f"{column}_l = {column}_r", f"same {label}", fixed=(0.95, 1e-7)),
            Level("else", "ELSE", f"different {label}", fixed=(0.02, 0.9999999)),
        ),
    )


NEUTRAL = (0.05, 0.05)

COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "given_name",
        "first given name",
        (
            _null("given_first"),
            Level(
                "exact",
                "given_first_l = given_first_r",
                "same first name",
                tf_column="given_first",
            ),
            Level("swapped", SWAPPED, "given and family names swapped"),
            Level(
                "other_given",
                "list_contains(given_tokens_r, given_first_l)"
                " OR list_contains(given_tokens_l, given_first_r)",
                "first name matches another given name",
            ),
            Level(
                "variant",
                "list_has_any(given_variants_l, given_variants_r)",
                "first names are nickname or spelling variants",
            ),
            Level(
                "typo",
                "damerau_levenshtein(given_first_l, given_first_r) <= 1"
                " AND jaro_winkler_similarity(given_first_l, given_first_r) >= 0.88",
                "first names one keying slip apart",
            ),
            Level(
                "phonetic",
                "list_has_any(given_phons_l, given_phons_r)",
                "first names sound alike",
            ),
            Level(
                "fuzzy",
                "jaro_winkler_similarity(given_first_l, given_first_r) >= 0.8",
                "first names similar (possible typo)",
            ),
            Level("else", "ELSE", "first names clearly different"),
        ),
    ),
    Comparison(
        "middle_names",
        "given names after the first, when both records hold some",
        (
            _null("given_middles"),
            Level(
                "agree",
                "list_has_any(given_middles_l, given_tokens_r)"
                " OR list_has_any(given_middles_r, given_tokens_l)",
                "a middle name in common",
            ),
            Level("else", "ELSE", "different middle names"),
        ),
    ),
    Comparison(
        "family_name",
        "family name, previous names and parts of double-barrelled names",
        (
            _null("family"),
            Level(
                "household",
                f"{FAMILY_AGREES} AND {HOUSEHOLD_EXPLAINED}",
                "same family name, explained by household (different person)",
                fixed=NEUTRAL,
                interaction=True,
            ),
            Level(
                "swapped",
                SWAPPED,
                "family name given as first name",
                fixed=NEUTRAL,
                interaction=True,
            ),
            Level("exact", "family_l = family_r", "same family name", tf_column="family"),
            Level(
                "other",
                "list_has_any(family_all_l, family_all_r)",
                "previous or part of a double-barrelled family name",
            ),
            Level("phonetic", "family_phon_l = family_phon_r", "family names sound alike"),
            Level(
                "fuzzy",
                "jaro_winkler_similarity(family_l, family_r) >= 0.88",
                "family names similar (possible typo)",
            ),
            Level("else", "ELSE", "family names different"),
        ),
    ),
    Comparison(
        "date_of_birth",
        "date of birth",
        (
            _null("dob"),
            Level(
                "twin_pattern",
                f"dob_l = dob_r AND {GIVEN_CLEARLY_DIFFERENT} AND {FAMILY_AGREES}",
                "same date of birth and family name, clearly different first name (twins)",
                fixed=(1e-4, 0.5),
                interaction=True,
            ),
            Level("exact", "dob_l = dob_r", "same date of birth"),
            Level("dm_swap", "dob_l = dob_dm_swapped_r", "date of birth day/month swapped"),
            Level(
                "typo",
                "damerau_levenshtein(dob_l, dob_r) <= 1",
                "date of birth one digit different",
            ),
            Level(
                "year_off",
                "dob_md_l = dob_md_r AND abs(try_cast(dob_year_l AS INTEGER)"
                " - try_cast(dob_year_r AS INTEGER)) <= 1",
                "date of birth year one out",
            ),
            Level("near", DOB_NEAR, "date of birth day or month one out"),
            Level("year", "dob_year_l = dob_year_r", "same year of birth only"),
            Level("else", "ELSE", "dates of birth different"),
        ),
    ),
    Comparison(
        "address",
        "postcode and premise number, current and previous addresses",
        (
            _null("postcodes"),
            Level(
                "household",
                f"{POSTCODE_AGREES} AND {HOUSEHOLD_EXPLAINED}",
                "same address, explained by household (different person)",
                fixed=NEUTRAL,
                interaction=True,
            ),
            Level(
                "same_address",
                "postcode_l = postcode_r AND premise_l = premise_r",
                "same address",
            ),
            Level("postcode", "postcode_l = postcode_r", "same postcode"),
            Level(
                "history",
                "list_has_any(postcodes_l, postcodes_r)",
                "postcode shared in address history",
            ),
            Level("district", "district_l = district_r", "same postcode district"),
            Level("area", "area_l = area_r", "same postcode area"),
            Level("else", "ELSE", "different area"),
        ),
    ),
    Comparison(
        "street_address",
        "street, house number and town, where either record has no postcode",
        (
            _null("street"),
            # Both postcoded: the address comparison above weighs the address; counting the
            # street again would count one address twice. Fixed, so left out of training,
            # where every pair then teaches EM what street agreement is worth.
            Level(
                "postcoded",
                "postcode_l IS NOT NULL AND postcode_r IS NOT NULL",
                "address compared by postcode",
                fixed=NEUTRAL,
                interaction=True,
            ),
            Level(
                "household",
                f"{STREET_AGREES} AND {HOUSEHOLD_EXPLAINED}",
                "same street, explained by household (different person)",
                fixed=NEUTRAL,
                interaction=True,
            ),
            Level(
                "same_address",
                f"house_l = house_r AND {STREET_AGREES}",
                "same house number and street",
            ),
            Level("street", STREET_AGREES, "same street"),
            Level("town", "town_l = town_r", "same town"),
            Level("else", "ELSE", "different street and town"),
        ),
    ),
    Comparison(
        "sex",
        "recorded sex (M/F)",
        (
            _null("sex"),
            Level("exact", "sex_l = sex_r", "same sex"),
            # Fixed: the synthetic data never mis-records sex, real data sometimes does.
            Level("else", "ELSE", "different sex", fixed=(0.01, 0.5)),
        ),
    ),
    _identifier("nhs_number", "NHS number"),
    _identifier("upn", "UPN"),
    _identifier("pnc_id", "PNC id"),
)

IDENTIFIER_COLUMNS = ("nhs_number", "upn", "pnc_id")

# Candidate pairs for prediction. None blocks on postcode alone (that is the household).
PREDICTION_BLOCKING: tuple[tuple[str, ...], ...] = (
    ("nhs_number",),
    ("upn",),
    ("pnc_id",),
    ("dob", "family_phon"),
    ("dob", "given_first_phon"),
    ("dob", "district"),
    ("postcode", "given_first_phon"),
    ("dob_year", "given_first", "family"),
    ("dob_md", "given_first_phon", "family_phon"),
    # Same address and birth year: a name recorded differently (swapped, changed, typed
    # wrongly) and a DOB error together. Incremental linkage finds these by postcode.
    ("postcode", "premise", "dob_year"),
    # Without a postcode or a reliable date of birth (missing, or wrong in more than one
    # digit): the dwelling (street and house number) with the first name (never with the
    # family name: that is the household), the date of birth with the street or the town,
    # and names written in either order with the birth year. Each survives a slip in any
    # field it does not name; each names a dwelling, a day or a name pair, so blocks stay
    # small as a hub grows (none is a street or a town alone).
    ("given_first_phon", "street", "house"),
    ("dob", "street"),
    ("dob", "town"),
    ("names_phon_pair", "dob_year"),
)
# Deterministic rules for the prior (share of pairs that are matches), with their recall.
PRIOR_RULES: tuple[tuple[str, ...], ...] = (
    ("nhs_number",),
    ("upn",),
    ("pnc_id",),
    ("dob", "given_first", "family"),
)
PRIOR_RECALL = 0.8
# EM passes: each trains every comparison except those it blocks on. Neither blocks on
# postcode or address, so "same household" is never what EM learns as a match.
EM_BLOCKING: tuple[tuple[str, ...], ...] = (
    ("dob",),
    ("given_first", "family"),
)


# Term-frequency adjustment (Splink's): an exact agreement on a value of frequency f weighs
# its level's weight plus log2(u_exact) - log2(max(f, TF_MINIMUM_U)), where u_exact is the
# level's trained u (the average chance two records agree). The floor caps the bonus a rare
# name earns (a value shared by under 0.1 % of records counts as 0.1 %): a typing error also
# makes a "rare" name, and at a million records a unique name would otherwise add about 11.
TF_MINIMUM_U = 0.001
# Only values at least this many records share are kept in a stored frequency table: a rarer
# name is counted at the floor instead, so the table never singles anybody out.
TF_MINIMUM_COUNT = 10


def block_sql(columns: tuple[str, ...]) -> str:
    return " AND ".join(f"l.{c} = r.{c}" for c in columns)


def definition_hash() -> str:
    """Fingerprint of the comparison definitions: a saved model only loads onto the same ones."""
    payload: list[Any] = [
        [
            c.name,
            [
                [lv.key, lv.sql, lv.is_null, lv.fixed, lv.interaction, lv.tf_column]
                for lv in c.levels
            ],
        ]
        for c in COMPARISONS
    ]
    payload.append(["tf", TF_MINIMUM_U, TF_MINIMUM_COUNT])
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def splink_settings(
    parameters: dict[str, dict[str, dict[str, float]]] | None,
    prior: float,
    *,
    for_training: bool = False,
) -> dict[str, Any]:
    """Splink settings (DuckDB dialect) from the code definitions and trained m/u values.

    ``for_training`` leaves out the interaction levels (fixed anyway) so EM can train each
    comparison on blocks that do not use its own columns, and the term-frequency adjustments
    (they change predictions, not the m/u that training estimates).
    """
    comparisons = []
    for comparison in COMPARISONS:
        trained = (parameters or {}).get(comparison.name, {})
        levels: list[dict[str, Any]] = []
        for level in comparison.levels:
            if for_training and level.interaction:
                continue
            entry: dict[str, Any] = {
                "sql_condition": level.sql,
                "label_for_charts": level.key,
            }
            if level.is_null:
                entry["is_null_level"] = True
            elif level.fixed is not None:
                entry.update(
                    m_probability=level.fixed[0],
                    u_probability=level.fixed[1],
                    fix_m_probability=True,
                    fix_u_probability=True,
                )
            elif level.key in trained:
                entry.update(
                    m_probability=trained[level.key]["m"], u_probability=trained[level.key]["u"]
                )
            if level.tf_column and not for_training:
                entry.update(
                    tf_adjustment_column=level.tf_column,
                    tf_adjustment_weight=1.0,
                    tf_minimum_u_value=TF_MINIMUM_U,
                )
            levels.append(entry)
        comparisons.append(
            {
                "output_column_name": comparison.name,
                "comparison_description": comparison.description,
                "comparison_levels": levels,
            }
        )
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "unique_id",
        "probability_two_random_records_match": prior,
        "comparisons": comparisons,
        "blocking_rules_to_generate_predictions": [
            {"blocking_rule": block_sql(cols), "sql_dialect": "duckdb"}
            for cols in PREDICTION_BLOCKING
        ],
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": True,
        "additional_columns_to_retain": [],
        "max_iterations": 25,
        "em_convergence": 0.0001,
    }
