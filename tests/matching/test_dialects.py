"""Spark settings from the DuckDB comparison definitions (``mash_hub.matching.dialects``) and
``mash-hub link settings``.

No Spark runs here unless pyspark and java are both present (then the last test compares
Spark's match weights with DuckDB's). Without them, Spark's meaning of the translated SQL is
checked three ways: sqlglot's and Splink's Spark dialect read it back as the DuckDB tree with
only the functions renamed; Splink builds its Spark SQL pipeline from it offline; and DuckDB,
with each Spark function replaced by an expression with that function's NULL behaviour,
picks the same level as the original SQL for every pair of synthetic records.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlglot
import typer
from sqlglot import exp

from mash_hub.cli.link_settings import settings as settings_command
from mash_hub.matching import comparisons as comp
from mash_hub.matching.dialects import (
    SPARK_DAMERAU_LEVENSHTEIN,
    SPARK_JARO_WINKLER,
    UntranslatableSqlError,
    settings_for_dialect,
    spark_settings,
)
from mash_hub.matching.duck import connect, feature_table
from mash_hub.matching.features import FEATURE_COLUMNS, record_features
from mash_hub.matching.model import LinkageModel, shipped_model_path
from tests.clirunner import cli_runner
from tests.matching.extracts import generated_feature_rows

DUCKDB_ONLY = {"jaro_winkler_similarity", "list_has_any", "list_contains"}


@pytest.fixture(scope="module")
def model() -> LinkageModel:
    return LinkageModel.load(shipped_model_path())


@pytest.fixture(scope="module")
def duckdb_settings(model: LinkageModel) -> dict[str, Any]:
    return comp.splink_settings(model.parameters, model.prior)


@pytest.fixture(scope="module")
def spark(model: LinkageModel) -> dict[str, Any]:
    return spark_settings(model)


def conditions(settings: dict[str, Any]) -> list[str]:
    """Every SQL string of the settings: level conditions (not ELSE), then blocking rules."""
    levels = [
        level["sql_condition"]
        for comparison in settings["comparisons"]
        for level in comparison["comparison_levels"]
        if level["sql_condition"] != "ELSE"
    ]
    return levels + [r["blocking_rule"] for r in settings["blocking_rules_to_generate_predictions"]]


def function_names(tree: exp.Expr) -> set[str]:
    return {
        (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
        for node in tree.find_all(exp.Func)
        if not isinstance(node, exp.Connector)
    }


# -- what the Spark settings contain -----------------------------------------------------------


def test_spark_sql_parses_in_sparks_dialect_and_splinks(spark: dict[str, Any]) -> None:
    """SparkAPI sends every statement through sqlglot (spark -> Splink's customspark)."""
    import splink.internals.spark.spark_helpers.custom_spark_dialect  # noqa: F401, PLC0415

    for sql in conditions(spark):
        tree = sqlglot.parse_one(sql, read="spark")
        sent = sqlglot.transpile(sql, read="spark", write="customspark")[0]
        assert sqlglot.parse_one(sent, read="spark") == tree, sql


def test_no_duckdb_only_function_remains(
    duckdb_settings: dict[str, Any], spark: dict[str, Any]
) -> None:
    from splink.internals.dialects import SparkDialect  # noqa: PLC0415

    dialect = SparkDialect()  # type: ignore[no-untyped-call]
    assert dialect.jaro_winkler_function_name == SPARK_JARO_WINKLER
    assert dialect.damerau_levenshtein_function_name == SPARK_DAMERAU_LEVENSHTEIN
    before = set().union(
        *(function_names(sqlglot.parse_one(s, read="duckdb")) for s in conditions(duckdb_settings))
    )
    after = set().union(
        *(function_names(sqlglot.parse_one(s, read="spark")) for s in conditions(spark))
    )
    assert "jarowinkler_similarity" in before, "the comparisons should use Jaro-Winkler"
    assert not after & DUCKDB_ONLY
    assert not any(name in sql.lower() for sql in conditions(spark) for name in DUCKDB_ONLY)
    assert after <= {
        SPARK_JARO_WINKLER,
        SPARK_DAMERAU_LEVENSHTEIN,
        "arrays_overlap",
        "array_contains",
        "abs",
        "replace",
        "try_cast",
    }
    assert {SPARK_JARO_WINKLER, "arrays_overlap", "array_contains"} <= after


def _without_sql(settings: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(settings)
    out.pop("sql_dialect", None)
    for comparison in out["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level["sql_condition"] != "ELSE":
                level["sql_condition"] = "<sql>"
    for rule in out["blocking_rules_to_generate_predictions"]:
        rule["blocking_rule"] = "<sql>"
        rule.pop("sql_dialect")
    return out


def test_levels_labels_and_parameters_are_unchanged(
    duckdb_settings: dict[str, Any], spark: dict[str, Any]
) -> None:
    assert _without_sql(spark) == _without_sql(duckdb_settings)
    assert len(spark["comparisons"]) == len(comp.COMPARISONS)
    for theirs, ours in zip(spark["comparisons"], duckdb_settings["comparisons"], strict=True):
        assert [lv["label_for_charts"] for lv in theirs["comparison_levels"]] == [
            lv["label_for_charts"] for lv in ours["comparison_levels"]
        ]
        for a, b in zip(theirs["comparison_levels"], ours["comparison_levels"], strict=True):
            assert (a.get("m_probability"), a.get("u_probability")) == (
                b.get("m_probability"),
                b.get("u_probability"),
            )
    assert spark["sql_dialect"] == "spark"
    assert {r["sql_dialect"] for r in spark["blocking_rules_to_generate_predictions"]} == {"spark"}
    trained = [
        lv for c in spark["comparisons"] for lv in c["comparison_levels"] if "m_probability" in lv
    ]
    assert trained, "the shipped model should carry m/u values"


SPARK_TO_DUCKDB = {
    SPARK_JARO_WINKLER: "jaro_winkler_similarity",
    SPARK_DAMERAU_LEVENSHTEIN: "damerau_levenshtein",
    "arrays_overlap": "list_has_any",
    "array_contains": "list_contains",
}


def _renamed_back(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.ArrayContains):
        node = exp.Anonymous(this="array_contains", expressions=[node.this, node.expression])
    if isinstance(node, exp.Anonymous) and node.name.lower() in SPARK_TO_DUCKDB:
        args = [arg.transform(_renamed_back) for arg in node.expressions]
        return exp.Anonymous(this=SPARK_TO_DUCKDB[node.name.lower()], expressions=args)
    return node


def test_spark_sql_is_the_duckdb_tree_with_functions_renamed(
    duckdb_settings: dict[str, Any], spark: dict[str, Any]
) -> None:
    """Nothing but the function names changed: no lost parentheses, operators or casts."""
    for original, translated in zip(conditions(duckdb_settings), conditions(spark), strict=True):
        back = sqlglot.parse_one(translated, read="spark").transform(_renamed_back)
        expected = sqlglot.parse_one(original, read="duckdb").sql("duckdb")
        assert sqlglot.parse_one(back.sql("duckdb"), read="duckdb").sql("duckdb") == expected


def test_splink_builds_its_spark_pipeline_from_the_settings_offline(
    spark: dict[str, Any],
) -> None:
    """Splink's own Spark settings object and the SQL it would send (no Spark session: a
    ``Linker`` needs one, through ``SparkAPI``, so it cannot be built here)."""
    import splink.internals.spark.spark_helpers.custom_spark_dialect  # noqa: F401, PLC0415
    from splink.internals.comparison_vector_values import (  # noqa: PLC0415
        compute_comparison_vector_values_sql,
    )
    from splink.internals.predict import (  # noqa: PLC0415
        predict_from_comparison_vectors_sqls_using_settings,
    )
    from splink.internals.settings_creator import SettingsCreator  # noqa: PLC0415

    built = SettingsCreator.from_path_or_dict(spark).get_settings("spark")
    assert [c.output_column_name for c in built.comparisons] == [c.name for c in comp.COMPARISONS]
    assert [br.blocking_rule_sql for br in built._blocking_rules_to_generate_predictions] == [
        r["blocking_rule"] for r in spark["blocking_rules_to_generate_predictions"]
    ]
    gammas = compute_comparison_vector_values_sql(
        built._columns_to_select_for_comparison_vector_values
    )
    statements = [gammas] + [
        s["sql"] for s in predict_from_comparison_vectors_sqls_using_settings(built)
    ]
    for sql in statements:
        sent = sqlglot.transpile(sql, read="spark", write="customspark")[0]
        assert not any(name in sent.lower() for name in DUCKDB_ONLY)
    assert f"{SPARK_JARO_WINKLER}(" in gammas.lower()


# -- Spark's NULL behaviour, emulated in DuckDB -------------------------------------------------

# Each Spark function as a DuckDB expression that returns what Spark returns. The UDFs are
# Splink's jar (uk.gov.moj.dash.linkage: JaroWinklerSimilarity gives 0.0 and
# LevDamerauDistance 100.0 when a side is NULL); arrays_overlap and array_contains as Spark
# documents them (NULL, not FALSE, when there is no match and an array holds a NULL element).
SPARK_NULLS = {
    SPARK_JARO_WINKLER: (
        "(CASE WHEN {0} IS NULL OR {1} IS NULL THEN 0.0 ELSE jaro_winkler_similarity({0}, {1}) END)"
    ),
    SPARK_DAMERAU_LEVENSHTEIN: (
        "(CASE WHEN {0} IS NULL OR {1} IS NULL THEN 100.0 ELSE damerau_levenshtein({0}, {1}) END)"
    ),
    "arrays_overlap": (
        "(CASE WHEN {0} IS NULL OR {1} IS NULL THEN NULL WHEN list_has_any({0}, {1}) THEN TRUE"
        " WHEN len({0}) > 0 AND len({1}) > 0"
        " AND (list_count({0}) < len({0}) OR list_count({1}) < len({1})) THEN NULL ELSE FALSE END)"
    ),
    "array_contains": (
        "(CASE WHEN {0} IS NULL OR {1} IS NULL THEN NULL WHEN list_contains({0}, {1}) THEN TRUE"
        " WHEN list_count({0}) < len({0}) THEN NULL ELSE FALSE END)"
    ),
}


def _with_spark_nulls(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.ArrayContains):
        node = exp.Anonymous(this="array_contains", expressions=[node.this, node.expression])
    if isinstance(node, exp.Anonymous) and node.name.lower() in SPARK_NULLS:
        args = [arg.transform(_with_spark_nulls).sql("duckdb") for arg in node.expressions]
        return sqlglot.parse_one(SPARK_NULLS[node.name.lower()].format(*args), read="duckdb")
    return node


def spark_in_duckdb(spark_sql: str) -> str:
    if spark_sql == "ELSE":
        return spark_sql
    return sqlglot.parse_one(spark_sql, read="spark").transform(_with_spark_nulls).sql("duckdb")


def level_disagreements(
    duck: Any, rows: list[dict[str, Any]], reference: dict[str, Any], emulated: dict[str, Any]
) -> dict[str, int]:
    """Pairs (all of ``rows``) whose level differs between two settings' conditions, per
    comparison (levels taken as Splink's CASE takes them)."""

    def case(levels: list[dict[str, Any]]) -> str:
        whens = " ".join(
            f"WHEN {lv['sql_condition']} THEN {i}"
            for i, lv in enumerate(levels)
            if lv["sql_condition"] != "ELSE"
        )
        return f"CASE {whens} ELSE -99 END"

    duck.register("records", feature_table(rows))
    sides = ", ".join(f"{s}.{c} AS {c}_{s}" for s in "lr" for c in FEATURE_COLUMNS)
    counts = ", ".join(
        f"count(*) FILTER (WHERE ({case(a['comparison_levels'])})"
        f" IS DISTINCT FROM ({case(b['comparison_levels'])}))"
        for a, b in zip(reference["comparisons"], emulated["comparisons"], strict=True)
    )
    try:
        got = duck.execute(
            f"WITH pairs AS (SELECT {sides} FROM records l JOIN records r"
            f" ON l.unique_id < r.unique_id) SELECT {counts}, count(*) FROM pairs"
        ).fetchall()[0]
    finally:
        duck.unregister("records")
    assert got[-1] > 0
    return {c["output_column_name"]: n for c, n in zip(reference["comparisons"], got, strict=False)}


def emulated_settings(spark: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(spark)
    for comparison in out["comparisons"]:
        for level in comparison["comparison_levels"]:
            level["sql_condition"] = spark_in_duckdb(level["sql_condition"])
    return out


@pytest.fixture(scope="module")
def duck() -> Iterator[Any]:
    con = connect()
    yield con
    con.close()


@pytest.fixture(scope="module")
def synthetic_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return generated_feature_rows(tmp_path_factory.mktemp("dialects"), people=250, seed=31)


GIVEN = ["Robert", "Bob", "Rob", "Roberta", "Mohammed", "Muhammad", "Ann", "Anne", "Smith"]
FAMILY = ["Smith", "Smyth", "Smith-Jones", "Jones", "O'Neill", "Oneil", "Khan", "Robert"]
DOBS = ["2012-03-04", "2012-04-03", "2012-03-05", "2013-03-04", "2011-03-04", "1990-12-25"]
POSTCODES = ["LS6 2QT", "LS6 2QU", "LS7 1AA", "M1 1AE"]


def pooled_rows(count: int, seed: int) -> list[dict[str, Any]]:
    """Feature rows from small pools of values, often missing: many near and NULL pairs."""
    rng = random.Random(seed)

    def maybe(values: list[str]) -> str | None:
        return rng.choice([None, *values])

    rows = []
    for i in range(count):
        postcodes = rng.sample(POSTCODES, rng.randint(0, 2))
        groups: dict[str, dict[str, Any]] = {
            "identity": {
                "given_names": rng.sample(GIVEN, rng.randint(0, 2)),
                "family_name": maybe(FAMILY),
                "other_names": rng.sample(FAMILY, rng.randint(0, 1)),
                "date_of_birth": maybe(DOBS),
                "sex": maybe(["M", "F"]),
            },
            "identifiers": {"nhs_number": maybe(["9434765919", "9434765870"])},
            "contact": {
                "addresses": [
                    {
                        "postcode": p,
                        "line1": rng.choice(["1 Oak Road", "Flat 3"]),
                        "current": j == 0,
                    }
                    for j, p in enumerate(postcodes)
                ]
            },
        }
        rows.append(record_features(f"p{i:04d}", "test", groups))
    return rows


def test_features_hold_no_empty_lists_or_null_elements(
    synthetic_rows: list[dict[str, Any]],
) -> None:
    """Where Spark's array functions differ from DuckDB's (an empty array, a NULL element),
    features never go: a list feature is NULL or a list of values."""
    lists = [c for c, kind in FEATURE_COLUMNS.items() if kind == "list"]
    for row in [*synthetic_rows, *pooled_rows(200, seed=3)]:
        for column in lists:
            value = row.get(column)
            assert value is None or (value and None not in value), column


def test_spark_null_behaviour_picks_duckdbs_levels(
    duck: Any,
    synthetic_rows: list[dict[str, Any]],
    duckdb_settings: dict[str, Any],
    spark: dict[str, Any],
) -> None:
    emulated = emulated_settings(spark)
    assert "0.0 ELSE JARO_WINKLER_SIMILARITY" in json.dumps(emulated).upper()
    for rows in (synthetic_rows, pooled_rows(300, seed=8)):
        assert set(level_disagreements(duck, rows, duckdb_settings, emulated).values()) == {0}


def test_the_emulation_notices_an_unguarded_negation(duck: Any) -> None:
    """Control: a level that negates a fuzzy function without checking for NULL first does
    pick another level on Spark (the UDF's 0.0 where DuckDB has NULL)."""
    level = "NOT jaro_winkler_similarity(given_first_l, given_first_r) >= 0.8"
    reference = {
        "comparisons": [
            {
                "output_column_name": "given_name",
                "comparison_levels": [
                    {"sql_condition": level, "label_for_charts": "unguarded"},
                    {"sql_condition": "ELSE", "label_for_charts": "else"},
                ],
            }
        ],
        "blocking_rules_to_generate_predictions": [],
    }
    emulated = emulated_settings(settings_for_dialect(reference, "spark"))
    assert level_disagreements(duck, pooled_rows(60, seed=1), reference, emulated)["given_name"]


# -- refusals -----------------------------------------------------------------------------------


def _with_level_sql(settings: dict[str, Any], sql: str) -> dict[str, Any]:
    out = copy.deepcopy(settings)
    (family,) = [c for c in out["comparisons"] if c["output_column_name"] == "family_name"]
    family["comparison_levels"][2]["sql_condition"] = sql
    return out


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("soundex(family_l) = soundex(family_r)", "soundex"),
        ("levenshtein(family_l, family_r) <= 2", "levenshtein"),
        ("try_strptime(dob_l, '%Y-%m-%d') = try_strptime(dob_r, '%d/%m/%Y')", "try_strptime"),
        ("list_has_all(family_all_l, family_all_r)", "list_has_all"),
        ("regexp_matches(family_l, '^mc')", "regexp"),
        ("family_l LIKE family_r", "LIKE"),
        ("CAST(dob_year_l AS INTEGER) = 1", "cast"),
        ("try_cast(dob_year_l AS DOUBLE) = 1", "DOUBLE"),
        ("jaro_winkler_similarity(family_l) >= 0.8", "cannot read"),
        ("damerau_levenshtein(family_l, family_r, 2) <= 1", "takes 2 arguments"),
    ],
)
def test_sql_without_a_known_spark_equivalent_is_refused(
    duckdb_settings: dict[str, Any], sql: str, named: str
) -> None:
    with pytest.raises(UntranslatableSqlError, match=named) as raised:
        settings_for_dialect(_with_level_sql(duckdb_settings, sql), "spark")
    assert "family_name" in str(raised.value)
    # DuckDB settings are passed through untranslated, so nothing is refused there.
    assert settings_for_dialect(_with_level_sql(duckdb_settings, sql), "duckdb")


def test_blocking_rules_are_checked_too(duckdb_settings: dict[str, Any]) -> None:
    broken = copy.deepcopy(duckdb_settings)
    broken["blocking_rules_to_generate_predictions"][0]["blocking_rule"] = (
        "l.dob = r.dob AND levenshtein(l.family, r.family) <= 1"
    )
    with pytest.raises(UntranslatableSqlError, match=r"blocking rule 0.*levenshtein"):
        settings_for_dialect(broken, "spark")


@pytest.mark.parametrize("where", ["settings", "comparison", "level", "rule"])
def test_an_unknown_settings_key_is_refused(duckdb_settings: dict[str, Any], where: str) -> None:
    """A key this module does not know might hold SQL it would leave in DuckDB's dialect."""
    broken = copy.deepcopy(duckdb_settings)
    target = {
        "settings": broken,
        "comparison": broken["comparisons"][0],
        "level": broken["comparisons"][0]["comparison_levels"][1],
        "rule": broken["blocking_rules_to_generate_predictions"][0],
    }[where]
    target["extra_sql"] = "1 = 1"
    with pytest.raises(ValueError, match="extra_sql"):
        settings_for_dialect(broken, "spark")


def test_unsupported_dialect_names_the_supported_ones(duckdb_settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="duckdb, spark"):
        settings_for_dialect(duckdb_settings, "postgres")


def test_duckdb_gives_an_independent_copy(duckdb_settings: dict[str, Any]) -> None:
    copied = settings_for_dialect(duckdb_settings, "duckdb")
    assert copied == duckdb_settings
    copied["comparisons"][0]["comparison_levels"][1]["sql_condition"] = "changed"
    assert duckdb_settings["comparisons"][0]["comparison_levels"][1]["sql_condition"] != "changed"


def test_training_settings_translate_too() -> None:
    training = comp.splink_settings(None, 1e-4, for_training=True)
    translated = settings_for_dialect(training, "spark")
    assert _without_sql(translated) == _without_sql(training)


# -- the command --------------------------------------------------------------------------------

app = typer.Typer()
app.command("settings")(settings_command)


@app.callback()
def _root() -> None:
    """Force sub-command mode so the tests call ``settings`` by name."""


_runner = cli_runner


def test_command_writes_spark_settings_once(tmp_path: Path, spark: dict[str, Any]) -> None:
    from splink.internals.settings_creator import SettingsCreator  # noqa: PLC0415

    out = tmp_path / "jobs" / "spark-settings.json"
    args = ["settings", "--dialect", "spark", "--model", str(shipped_model_path())]
    result = _runner().invoke(app, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == spark
    summary = json.loads(result.stdout)
    assert summary["dialect"] == "spark" and summary["comparisons"] == len(comp.COMPARISONS)
    assert SettingsCreator.from_path_or_dict(out).get_settings("spark").comparisons

    out.write_text("kept", encoding="utf-8")
    again = _runner().invoke(app, [*args, "--out", str(out)])
    assert again.exit_code == 2
    assert "already exists" in again.stderr
    assert out.read_text(encoding="utf-8") == "kept"


def test_command_prints_settings_without_out(spark: dict[str, Any]) -> None:
    result = _runner().invoke(
        app, ["settings", "--dialect", "spark", "--model", str(shipped_model_path())]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == spark


def test_command_refuses_an_unknown_dialect(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    result = _runner().invoke(
        app,
        [
            "settings",
            "--dialect",
            "bigquery",
            "--model",
            str(shipped_model_path()),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 2
    assert "duckdb, spark" in result.stderr
    assert not out.exists()


def test_command_refuses_a_model_trained_on_other_definitions(tmp_path: Path) -> None:
    stale = tmp_path / "model.json"
    document = json.loads(shipped_model_path().read_text(encoding="utf-8"))
    document["definition"] = "0" * 16
    stale.write_text(json.dumps(document), encoding="utf-8")
    result = _runner().invoke(app, ["settings", "--dialect", "spark", "--model", str(stale)])
    assert result.exit_code == 2
    assert "retrain" in result.stderr
    missing = _runner().invoke(
        app, ["settings", "--dialect", "spark", "--model", str(tmp_path / "none.json")]
    )
    assert missing.exit_code == 2 and "link train" in missing.stderr


# -- the best proof: Spark itself, when it is installed ------------------------------------------


def test_spark_predict_gives_duckdbs_match_weights(
    tmp_path: Path, model: LinkageModel, spark: dict[str, Any]
) -> None:
    pyspark_sql = pytest.importorskip("pyspark.sql")
    if shutil.which("java") is None:
        pytest.skip("java is not installed")
    spark_types = pytest.importorskip("pyspark.sql.types")
    from splink import DuckDBAPI, Linker, SparkAPI  # noqa: PLC0415
    from splink.backends.spark import similarity_jar_location  # noqa: PLC0415

    rows = pooled_rows(24, seed=5)
    duck = connect()
    try:
        linker = Linker(
            DuckDBAPI(connection=duck).register(feature_table(rows), dataset_display_name="recs"),
            comp.splink_settings(model.parameters, model.prior),
        )
        expected = {
            (r["unique_id_l"], r["unique_id_r"]): r["match_weight"]
            for r in linker.inference.predict().as_record_list()
        }
    finally:
        duck.close()
    assert expected, "the pooled rows should give blocked pairs"

    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("mash-hub-dialects")
        .config("spark.jars", similarity_jar_location())
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.warehouse.dir", str(tmp_path / "warehouse"))
        .getOrCreate()
    )
    try:
        session.sparkContext.setCheckpointDir(str(tmp_path / "checkpoints"))
        schema = spark_types.StructType(
            [
                spark_types.StructField(
                    name,
                    spark_types.ArrayType(spark_types.StringType())
                    if kind == "list"
                    else spark_types.StringType(),
                )
                for name, kind in FEATURE_COLUMNS.items()
            ]
        )
        frame = session.createDataFrame(
            [tuple(row.get(name) for name in FEATURE_COLUMNS) for row in rows], schema
        )
        api = SparkAPI(spark_session=session)  # type: ignore[no-untyped-call]
        got = {
            (r["unique_id_l"], r["unique_id_r"]): r["match_weight"]
            for r in Linker(api.register(frame, dataset_display_name="recs"), spark)
            .inference.predict()
            .as_record_list()
        }
    finally:
        session.stop()
    assert got.keys() == expected.keys()
    for pair, weight in expected.items():
        assert got[pair] == pytest.approx(weight, abs=1e-9), pair
