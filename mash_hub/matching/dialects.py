"""Splink settings for another SQL dialect, built from the same comparison definitions.

A saved Splink model JSON embeds SQL written for one backend, so it does not load on another
(``jaro_winkler_similarity`` is DuckDB's name; Spark knows Splink's ``jaro_winkler`` UDF). The
hub keeps the level conditions in code (:mod:`mash_hub.matching.comparisons`, DuckDB SQL) and
the trained m/u as data, and :func:`settings_for_dialect` rewrites the SQL of the settings
dict :func:`~mash_hub.matching.comparisons.splink_settings` builds. Nothing else changes: the
levels, labels, m/u, fixed flags and term-frequency entries are copied as they are.

The rewrite knows exactly the DuckDB subset the comparisons use and refuses anything else,
naming it, so a new DuckDB-only function in a level fails the tests instead of reaching a
Spark job as SQL that does not run there or, worse, means something else.

Spark equivalents, checked against Splink 5.0 (``SparkDialect``, ``get_scala_udfs``), the
bundled similarity jar and Spark's documentation:

* ``jaro_winkler_similarity(a, b)`` -> ``jaro_winkler(a, b)``, Splink's UDF (Apache
  commons-text ``JaroWinklerSimilarity``). It returns 0.0, not NULL, when either side is NULL.
  It is not DuckDB's function to the bit: it counts half a transposition where DuckDB
  (rapidfuzz) rounds the halved count down, and boosts from 0.7 inclusive, so "baker" /
  "barker" is 0.876 on Spark and 0.902 on DuckDB. Against commons-text 1.12, 19 of 259,560
  pairs of distinct synthetic given names and 19 of 195,000 family-name pairs fall on the
  other side of 0.8 (0 and 3 of 0.88); at 60,000 synthetic people one blocked pair in 20,715
  took another level (none crossed a threshold). Spark weights are DuckDB's except there.
* ``damerau_levenshtein(a, b)`` -> ``damerau_levenshtein(a, b)``, Splink's UDF (unrestricted
  Damerau-Levenshtein; DuckDB's agrees at the ``<= 1`` the levels use). It returns 100.0, not
  NULL, for a NULL side.
* ``list_has_any(a, b)`` -> ``arrays_overlap(a, b)``: NULL when either array is NULL, as in
  DuckDB; unlike DuckDB, also NULL (not FALSE) when nothing overlaps and an array holds a NULL
  element.
* ``list_contains(a, x)`` -> ``array_contains(a, x)``: NULL for a NULL array or item, as in
  DuckDB; unlike DuckDB, NULL (not FALSE) when ``x`` is missing and ``a`` holds a NULL element.
* ``try_cast(x AS INTEGER)`` -> ``TRY_CAST(x AS INT)`` (Spark 3.2 and later). Not ``CAST``:
  Spark 4 runs in ANSI mode by default, where a bad cast raises instead of giving NULL.
* ``replace``, ``abs``, comparisons, ``AND`` / ``OR`` / ``NOT``, ``IS [NOT] NULL``, ``+``, ``-``:
  the same in both.

The NULL differences only matter where a condition is negated: a level takes its ``CASE WHEN``
branch only when the condition is TRUE, and inside ``AND`` / ``OR`` a FALSE where DuckDB has
NULL cannot turn a TRUE into anything else. The negated parts (clearly different names or
dates of birth) check ``IS NOT NULL`` first, and features never hold empty lists or NULL
elements; ``tests/matching/test_dialects.py`` checks both on synthetic records. No level
parses dates (they are compared as ``YYYY-MM-DD`` strings), so there are no date formats to
translate; ``strptime`` and friends would be refused like any other unknown function.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from mash_hub.matching.comparisons import splink_settings

if TYPE_CHECKING:
    from mash_hub.matching.model import LinkageModel

SUPPORTED_DIALECTS = ("duckdb", "spark")

# Splink's Spark UDF names (``SparkDialect.jaro_winkler_function_name`` etc.); the tests check
# them against the installed Splink.
SPARK_JARO_WINKLER = "jaro_winkler"
SPARK_DAMERAU_LEVENSHTEIN = "damerau_levenshtein"

# DuckDB function name -> (Spark function name, number of arguments).
_RENAMED: Mapping[str, tuple[str, int]] = {
    "jaro_winkler_similarity": (SPARK_JARO_WINKLER, 2),
    "damerau_levenshtein": (SPARK_DAMERAU_LEVENSHTEIN, 2),
    "list_has_any": ("arrays_overlap", 2),
    "list_contains": ("array_contains", 2),
}
# How sqlglot's DuckDB parser represents the renamed functions it knows by name.
_PARSED_AS: Mapping[type[exp.Expr], str] = {
    exp.JarowinklerSimilarity: "jaro_winkler_similarity",
    exp.ArrayOverlaps: "list_has_any",
    exp.ArrayContains: "list_contains",
}
# Nodes written the same way in both dialects (sqlglot prints each for Spark).
_PORTABLE: tuple[type[exp.Expr], ...] = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Paren,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Is,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Add,
    exp.Sub,
    exp.Neg,
    exp.Abs,
    exp.Replace,
)
# Casts: only TRY_CAST, only to these types (same width in both).
_CAST_TYPES = frozenset({exp.DataType.Type.INT, exp.DataType.Type.BIGINT})

# Keys Splink reads that hold no SQL (names, numbers, flags); anything else is refused.
_SETTINGS_KEYS = frozenset(
    {
        "link_type",
        "probability_two_random_records_match",
        "em_convergence",
        "max_iterations",
        "retain_matching_columns",
        "retain_intermediate_calculation_columns",
        "additional_columns_to_retain",
        "unique_id_column_name",
        "source_dataset_column_name",
        "match_weight_column_prefix",
        "term_frequency_adjustment_column_prefix",
        "comparison_vector_value_column_prefix",
        "linker_uid",
        "sql_dialect",
        "comparisons",
        "blocking_rules_to_generate_predictions",
    }
)
_COMPARISON_KEYS = frozenset({"output_column_name", "comparison_description", "comparison_levels"})
_LEVEL_KEYS = frozenset(
    {
        "sql_condition",
        "label_for_charts",
        "is_null_level",
        "m_probability",
        "u_probability",
        "fix_m_probability",
        "fix_u_probability",
        "tf_adjustment_column",
        "tf_adjustment_weight",
        "tf_minimum_u_value",
        "disable_tf_exact_match_detection",
    }
)
_BLOCKING_KEYS = frozenset({"blocking_rule", "sql_dialect", "arrays_to_explode"})


class UntranslatableSqlError(ValueError):
    """A settings SQL string uses something without a known equivalent in the target dialect."""


def settings_for_dialect(settings: Mapping[str, Any], dialect: str) -> dict[str, Any]:
    """The DuckDB settings ``splink_settings`` builds, for ``dialect`` (a new dict).

    ``"duckdb"`` gives a deep copy; ``"spark"`` rewrites every level condition and blocking
    rule and marks the settings and rules ``sql_dialect: spark``.
    """
    if dialect not in SUPPORTED_DIALECTS:
        raise ValueError(
            f"unsupported SQL dialect {dialect!r}: supported are {', '.join(SUPPORTED_DIALECTS)}"
        )
    out = copy.deepcopy(dict(settings))
    if dialect == "duckdb":
        return out
    _check_keys(out, _SETTINGS_KEYS, "settings")
    if out.get("sql_dialect", "duckdb") != "duckdb":
        raise ValueError("the settings to translate must be DuckDB's (sql_dialect: duckdb)")
    for comparison in out.get("comparisons", []):
        name = comparison.get("output_column_name", "?")
        _check_keys(comparison, _COMPARISON_KEYS, f"comparison {name!r}")
        for level in comparison.get("comparison_levels", []):
            where = f"comparison {name!r} level {level.get('label_for_charts', '?')!r}"
            _check_keys(level, _LEVEL_KEYS, where)
            level["sql_condition"] = to_spark_sql(level["sql_condition"], where=where)
    rules = out.get("blocking_rules_to_generate_predictions", [])
    for index, rule in enumerate(rules):
        where = f"blocking rule {index}"
        if isinstance(rule, str):
            rules[index] = to_spark_sql(rule, where=where)
            continue
        _check_keys(rule, _BLOCKING_KEYS, where)
        if rule.get("sql_dialect", "duckdb") != "duckdb":
            raise ValueError(f"{where} is not DuckDB SQL")
        rule["blocking_rule"] = to_spark_sql(rule["blocking_rule"], where=where)
        rule["sql_dialect"] = "spark"
    out["sql_dialect"] = "spark"
    return out


def spark_settings(model: LinkageModel) -> dict[str, Any]:
    """Splink settings for a Spark job from a trained model (prediction, not training)."""
    return settings_for_dialect(splink_settings(model.parameters, model.prior), "spark")


def to_spark_sql(sql: str, *, where: str = "SQL") -> str:
    """One DuckDB condition as Spark SQL (``ELSE``, Splink's last level, stays ``ELSE``)."""
    if sql.strip().upper() == "ELSE":
        return "ELSE"
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except SqlglotError as exc:
        errors = getattr(exc, "errors", None)
        reason = errors[0].get("description") if errors else type(exc).__name__
        raise UntranslatableSqlError(
            f"{where}: sqlglot cannot read it as DuckDB SQL ({reason})"
        ) from exc
    return tree.transform(_to_spark(where)).sql(dialect="spark")


def _to_spark(where: str) -> Callable[[exp.Expr], exp.Expr]:
    def rewrite(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.TryCast):
            to = node.args.get("to")
            if not isinstance(to, exp.DataType) or to.this not in _CAST_TYPES:
                raise UntranslatableSqlError(f"{where}: TRY_CAST to {to} is not supported")
            return node
        if isinstance(node, exp.DataType) and node.this in _CAST_TYPES:
            return node
        duckdb_name = _PARSED_AS.get(type(node))
        if duckdb_name is None and isinstance(node, exp.Anonymous):
            duckdb_name = node.name.lower()
        if duckdb_name is not None:
            if duckdb_name not in _RENAMED:
                raise UntranslatableSqlError(
                    f"{where}: no Spark equivalent known for DuckDB function {duckdb_name!r}"
                )
            spark_name, arity = _RENAMED[duckdb_name]
            args = _arguments(node)
            if len(args) != arity:
                raise UntranslatableSqlError(
                    f"{where}: {duckdb_name} takes {arity} arguments, got {len(args)}"
                )
            # transform() does not descend into a node it replaced: rewrite the arguments here.
            return exp.Anonymous(this=spark_name, expressions=[a.transform(rewrite) for a in args])
        if isinstance(node, _PORTABLE):
            return node
        if isinstance(node, exp.Func):
            what = f"function {node.sql_name().lower()!r}"
        else:
            what = f"construct {node.key.upper()!r}"
        raise UntranslatableSqlError(f"{where}: no Spark equivalent known for DuckDB {what}")

    return rewrite


def _arguments(node: exp.Expr) -> list[exp.Expr]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    return [arg for arg in (node.this, node.args.get("expression")) if arg is not None]


def _check_keys(entry: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(
            f"{where}: cannot translate unknown settings key(s) {', '.join(unknown)} "
            "(they might hold dialect-specific SQL)"
        )
