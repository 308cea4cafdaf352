"""Training, saving and applying the linkage model (Splink 5 on in-memory DuckDB).

Training is deterministic for a given seed and input: u by seeded random sampling, the prior
from deterministic rules, m by EM on blocks that are *not* the household (date of birth;
first name + family name). Identifier, twin and household levels are fixed expert values.
The result is saved as plain data (m/u per level, the prior, thresholds) in
``linkage/model.json``; the SQL stays in :mod:`mash_hub.matching.comparisons`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mash_hub.matching import comparisons as comp
from mash_hub.matching.duck import connect, feature_table
from mash_hub.matching.features import FeatureTable
from mash_hub.matching.frequencies import TF_COLUMNS, TermFrequencies
from mash_hub.matching.scorer import PairScore, PairScorer

# Feature rows as dicts (tests, incremental linkage) or a whole run's compact table.
Rows = list[dict[str, Any]] | FeatureTable

FORMAT = "mash-hub-linkage-model"


def shipped_model_path() -> Path:
    """The reviewed model in the repository's ``linkage/`` (or its copy bundled in the wheel)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "linkage", package / "_bundled" / "linkage"):
        if (candidate / "model.json").is_file():
            return candidate / "model.json"
    return package.parent / "linkage" / "model.json"


def model_path(data_dir: Path, configured: Path | None = None) -> Path:
    """The model to use: the configured one, else one trained here, else the shipped one.

    Training writes to ``<data dir>/linkage-model.json`` (see :func:`trained_model_path`), so
    the reviewed model shipped with the hub is never overwritten by a local training run.
    """
    if configured is not None:
        return configured
    local = trained_model_path(data_dir)
    return local if local.is_file() else shipped_model_path()


def trained_model_path(data_dir: Path, configured: Path | None = None) -> Path:
    return configured if configured is not None else data_dir / "linkage-model.json"


M_FLOOR = 1e-3
U_FLOOR = 1e-7


class ModelMismatchError(ValueError):
    """The saved parameters were trained on different comparison definitions."""


@dataclass
class Thresholds:
    """Match-weight bands: at or above ``auto`` links; ``review`` to ``auto`` is for a person."""

    auto: float = 8.0
    review: float = 2.0
    # A pair whose comparisons alone (the prior left out: it is about -14 and would make
    # every unremarkable pair look like a contradiction) weigh this far below zero is
    # evidence of two people: it stops a merge even when other records would chain them.
    contradiction: float = -6.0


@dataclass
class LinkageModel:
    """Trained parameters as data."""

    version: int
    seed: int
    prior: float
    parameters: dict[str, dict[str, dict[str, float]]]
    thresholds: Thresholds = field(default_factory=Thresholds)
    training: dict[str, Any] = field(default_factory=dict)
    definition: str = field(default_factory=comp.definition_hash)

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "version": self.version,
            "definition": self.definition,
            "seed": self.seed,
            "probability_two_random_records_match": self.prior,
            "thresholds": self.thresholds.__dict__,
            "comparisons": self.parameters,
            "training": self.training,
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> LinkageModel:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT:
            raise ValueError(f"{path} is not a MASH Hub linkage model")
        if doc["definition"] != comp.definition_hash():
            raise ModelMismatchError(
                f"{path} was trained on comparison definitions {doc['definition']}; the code "
                f"has {comp.definition_hash()}: retrain with `mash-hub link train`"
            )
        return cls(
            version=int(doc["version"]),
            seed=int(doc["seed"]),
            prior=float(doc["probability_two_random_records_match"]),
            parameters=doc["comparisons"],
            thresholds=Thresholds(**doc["thresholds"]),
            training=doc.get("training", {}),
            definition=doc["definition"],
        )

    def scorer(self, frequencies: TermFrequencies | None = None) -> PairScorer:
        """A Python scorer with these parameters (cheap: the level SQL is compiled once)."""
        return PairScorer(self.parameters, self.prior, frequencies)

    def weight(self, comparison: str, level: str) -> float:
        """log2(m/u) of one level (fixed levels from the code, trained ones from data)."""
        lv = next(c for c in comp.COMPARISONS if c.name == comparison).level(level)
        m, u = lv.fixed or (
            self.parameters[comparison][level]["m"],
            self.parameters[comparison][level]["u"],
        )
        return math.log2(m / u)


def _quiet_splink() -> None:
    logging.getLogger("splink").setLevel(logging.ERROR)


# The name the records are registered under in DuckDB (a plain word, not an SQL keyword).
RECORDS = "records"


def _arrow(rows: Rows) -> Any:
    return rows.arrow() if isinstance(rows, FeatureTable) else feature_table(rows)


def frequencies_of(rows: Rows) -> TermFrequencies:
    """The term frequencies of ``rows`` (what a full run uses and keeps)."""
    table = _arrow(rows)
    return TermFrequencies.count({c: table.column(c).to_pylist() for c in TF_COLUMNS})


def _linker(
    table: Any, settings: dict[str, Any], con: Any, frequencies: TermFrequencies | None = None
) -> Any:
    """A linker over one Arrow table of feature rows."""
    from splink import DuckDBAPI, Linker  # noqa: PLC0415 - heavy import, only when linking

    api = DuckDBAPI(connection=con)
    sdf = api.register(table, dataset_display_name=RECORDS)
    linker = Linker(sdf, settings, log_level=None)
    if frequencies is not None:
        _register_frequencies(api, linker, frequencies, [table])
    return linker


def _register_frequencies(
    api: Any, linker: Any, frequencies: TermFrequencies, tables: Sequence[Any]
) -> None:
    """Hand Splink our term frequencies for every value in ``tables`` (Arrow), instead of
    letting it count the input: one definition for full runs, incremental runs and the
    Python scorer."""
    import pyarrow as pa  # type: ignore[import-untyped]  # noqa: PLC0415

    for column in TF_COLUMNS:
        values = [v for table in tables for v in table.column(column).to_pylist()]
        lookup = pa.Table.from_pylist(
            frequencies.lookup_rows(column, values),
            schema=pa.schema([(column, pa.string()), (f"tf_{column}", pa.float64())]),
        )
        registered = api.register(lookup, dataset_display_name=f"tf_lookup_{column}")
        linker.table_management.register_term_frequency_lookup(registered, column)


def _sig(value: float | None, floor: float) -> float:
    """Six significant figures, floored: a level EM never saw must not become near-certain
    evidence against a match just because the training data lacked an example."""
    return max(float(f"{float(value or 0.0):.6g}"), floor)


def _trained_parameters(linker: Any) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for comparison, defined in zip(linker._settings_obj.comparisons, comp.COMPARISONS, strict=True):
        levels: dict[str, dict[str, float]] = {}
        trainable = [lv for lv in defined.levels if not lv.interaction]
        for cl, level in zip(comparison.comparison_levels, trainable, strict=True):
            if level.is_null or level.fixed is not None:
                continue
            m, u = cl.m_probability, cl.u_probability
            # A level EM never saw keeps a tiny floor rather than an undefined weight.
            levels[level.key] = {
                "m": _sig(m, M_FLOOR),
                "u": _sig(u, U_FLOOR),
            }
        out[defined.name] = levels
    return out


# Reviewers' "same person" decisions become a third estimate of m (Splink's
# estimate_m_from_pairwise_labels) once there are this many: each level's m is then the
# median of the EM estimates and the labels' one, so a few hard review-band cases (a biased
# sample of matches) can move it only within what EM found.
MIN_LABELS = 50


def train(
    rows: Rows,
    *,
    seed: int = 2026,
    version: int = 1,
    max_pairs: float = 1e6,
    thresholds: Thresholds | None = None,
    same_person: Sequence[tuple[str, str]] = (),
) -> LinkageModel:
    """Estimate the prior, u (random sampling) and m (EM on non-household blocks, plus the
    pairs reviewers decided are one person, ``same_person``, when there are enough)."""
    from splink import block_on  # noqa: PLC0415

    _quiet_splink()
    if len(rows) < 50:
        raise ValueError("too few records to train a linkage model (need at least 50)")
    table = _arrow(rows)
    con = connect(threads=1)  # one thread: the same input gives the same parameters
    linker = _linker(table, comp.splink_settings(None, 1e-4, for_training=True), con)
    training = linker.training
    training.estimate_probability_two_random_records_match(
        [block_on(*cols) for cols in comp.PRIOR_RULES], recall=comp.PRIOR_RECALL
    )
    training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
    for cols in comp.EM_BLOCKING:
        training.estimate_parameters_using_expectation_maximisation(
            block_on(*cols), estimate_without_term_frequencies=True
        )
    labels = _labels(table, same_person)
    if len(labels) >= MIN_LABELS:
        import pyarrow as pa  # noqa: PLC0415

        registered = linker.table_management.register_table(
            pa.table(
                {"unique_id_l": [a for a, _ in labels], "unique_id_r": [b for _, b in labels]}
            ),
            "reviewed_same_person",
        )
        training.estimate_m_from_pairwise_labels(registered)
    prior = float(linker._settings_obj._probability_two_random_records_match)
    parameters = _trained_parameters(linker)
    con.close()
    return LinkageModel(
        version=version,
        seed=seed,
        prior=round(prior, 10),
        parameters=parameters,
        thresholds=thresholds or Thresholds(),
        training={
            "records": len(rows),
            "max_pairs": max_pairs,
            "same_person_labels": len(labels),
            "labels_used_for_m": len(labels) >= MIN_LABELS,
        },
    )


def _labels(table: Any, same_person: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The labelled pairs whose two records are both in the training data, each once."""
    present = set(table.column("unique_id").to_pylist())
    pairs = {
        (a, b) if a < b else (b, a)
        for a, b in same_person
        if a != b and a in present and b in present
    }
    return sorted(pairs)


@dataclass(frozen=True)
class ScoredPair:
    """One candidate pair with its total match weight and the weight of each comparison."""

    left: str
    right: str
    match_weight: float
    levels: dict[str, str]  # comparison -> level key
    weights: dict[str, float]  # comparison -> match weight
    # Comparisons whose exact agreement counted for less because the value is common.
    common: tuple[str, ...] = ()

    @property
    def evidence(self) -> float:
        """What the comparisons say, without the prior: below zero they favour two people."""
        return sum(self.weights.values())


def predict(
    rows: Rows,
    model: LinkageModel,
    *,
    min_weight: float | None = None,
    frequencies: TermFrequencies | None = None,
) -> list[ScoredPair]:
    """Score every candidate pair the blocking rules produce (weights per comparison), with
    names' term frequencies counted over ``rows`` unless given."""
    _quiet_splink()
    if len(rows) < 2:
        return []
    table = _arrow(rows)
    if frequencies is None:
        frequencies = TermFrequencies.count({c: table.column(c).to_pylist() for c in TF_COLUMNS})
    con = connect()
    linker = _linker(table, comp.splink_settings(model.parameters, model.prior), con, frequencies)
    kwargs: dict[str, Any] = {}
    if min_weight is not None:
        kwargs["threshold_match_weight"] = min_weight
    predictions = linker.inference.predict(**kwargs)
    out = _scored(con, predictions.physical_name, model, records=RECORDS)
    con.close()
    return out


def predict_new(
    new: list[dict[str, Any]],
    existing: list[dict[str, Any]],
    model: LinkageModel,
    frequencies: TermFrequencies | None = None,
) -> list[ScoredPair]:
    """Incremental scoring: new records against existing ones and against each other, with
    the same blocking rules and parameters as a full run; pairs among existing records are
    not scored.

    Scored in Python (:mod:`mash_hub.matching.scorer`): the same pairs and weights as
    Splink's ``predict_within`` + ``predict_between`` (:func:`predict_new_splink`, checked
    against each other in the tests) without its ~0.4 s fixed cost per call. Measured faster
    than Splink at every size tried (1 to 178,000 pairs), so there is no size switch.
    ``frequencies``: the term frequencies of the last full run.
    """
    if not new:
        return []
    scorer = model.scorer(frequencies)
    return [scored_pair(score) for score in scorer.predict_new(new, existing)]


def scored_pair(score: PairScore) -> ScoredPair:
    """The stored form of a scored pair (weights per comparison to two decimals)."""
    return ScoredPair(
        score.left,
        score.right,
        score.match_weight,
        dict(score.levels),
        {name: round(weight, 2) for name, weight in score.weights.items()},
        score.common,
    )


def predict_new_splink(
    new: list[dict[str, Any]],
    existing: list[dict[str, Any]],
    model: LinkageModel,
    *,
    digits: int | None = 2,
    frequencies: TermFrequencies | None = None,
) -> list[ScoredPair]:
    """:func:`predict_new` through Splink (``predict_between`` + ``predict_within``): the
    reference the Python scorer is tested and benchmarked against (``digits=None`` keeps
    the weights per comparison unrounded)."""
    _quiet_splink()
    if not new:
        return []
    from splink import DuckDBAPI, Linker  # noqa: PLC0415

    con = connect()
    api = DuckDBAPI(connection=con)
    new_table, old_table = feature_table(new), feature_table(existing)
    new_sdf = api.register(new_table, dataset_display_name="new_records")
    settings = comp.splink_settings(model.parameters, model.prior)
    linker = Linker(new_sdf, settings, log_level=None)
    _register_frequencies(api, linker, frequencies or TermFrequencies(), [new_table, old_table])
    by_id = {str(r["unique_id"]): r for r in [*new, *existing]}
    out: list[ScoredPair] = []
    if len(new) > 1:
        within = linker.inference.predict_within(new_sdf, warning_mode="never")
        out += _scored(con, within.physical_name, model, by_id=by_id, digits=digits)
    if existing:
        old_sdf = api.register(old_table, dataset_display_name="existing_records")
        between = linker.inference.predict_between(new_sdf, old_sdf, warning_mode="never")
        out += _scored(con, between.physical_name, model, by_id=by_id, digits=digits)
    con.close()
    out.sort(key=lambda p: (p.left, p.right))
    return out


def _scored(
    con: Any,
    table: str,
    model: LinkageModel,
    *,
    by_id: Mapping[str, Mapping[str, Any]] | None = None,
    records: str | None = None,
    digits: int | None = 2,
) -> list[ScoredPair]:
    """Splink's predictions as :class:`ScoredPair` s. Which comparisons were null comes from
    the feature rows: looked up in ``by_id``, or (``records``: the DuckDB table of every
    record) joined in DuckDB, which spares a Python lookup per pair and comparison."""
    if (by_id is None) == (records is None):
        raise ValueError("give either by_id or records")
    names = [c.name for c in comp.COMPARISONS]
    # Comparisons with a term-frequency level: Splink reports the adjustment separately.
    adjusted = [c.name for c in comp.COMPARISONS if any(lv.tf_column for lv in c.levels)]
    columns = ["p.unique_id_l", "p.unique_id_r", "p.match_weight"] + [f"p.mw_{n}" for n in names]
    columns += [f"coalesce(p.mw_tf_adj_{n}, 0)" for n in adjusted]
    source = f"{table} p"
    if records is not None:
        columns += [
            "(" + " OR ".join(f"l.{c} IS NULL OR r.{c} IS NULL" for c in comp.null_columns(c)) + ")"
            for c in comp.COMPARISONS
        ]
        source += (
            f" JOIN {records} l ON l.unique_id = p.unique_id_l"
            f" JOIN {records} r ON r.unique_id = p.unique_id_r"
        )
    result = con.execute(f"SELECT {', '.join(columns)} FROM {source}")  # noqa: S608
    levels = _LevelTable(model)
    width = len(names)
    tf_end = 3 + width + len(adjusted)
    # Weights and nulls decide the levels, so pairs alike share one (read-only) levels dict
    # and one weights dict: a relink has a few thousand shapes for ~80,000 pairs.
    shapes: dict[tuple[Any, ...], tuple[dict[str, str], dict[str, float], tuple[str, ...]]] = {}
    out = []
    while chunk := result.fetchmany(10_000):
        for row in chunk:
            left, right = str(row[0]), str(row[1])
            if left > right:
                left, right = right, left
            nulls = (
                tuple(row[tf_end:])
                if by_id is None
                else tuple(levels.nulls(by_id[left], by_id[right]))
            )
            key = (row[3:tf_end], nulls)
            shape = shapes.get(key)
            if shape is None:
                base = {n: float(w) for n, w in zip(names, row[3 : 3 + width], strict=True)}
                weights = dict(base)
                common = []
                for n, adjustment in zip(adjusted, row[3 + width : tf_end], strict=True):
                    weights[n] += float(adjustment)
                    if adjustment < 0:
                        common.append(n)
                shape = (
                    levels.levels(nulls, base),
                    {n: w if digits is None else round(w, digits) for n, w in weights.items()},
                    tuple(common),
                )
                shapes[key] = shape
            out.append(ScoredPair(left, right, float(row[2]), *shape))
    out.sort(key=lambda p: (p.left, p.right))
    return out


class _LevelTable:
    """The level each comparison took, recovered from its weight (Splink 5 keeps no gamma
    columns in predictions); null levels are told apart from neutral ones by the data.

    Each level's weight is computed once per model (recovering levels by calling
    :meth:`LinkageModel.weight` per level per pair cost 2.3 M calls at 173,583 records), and
    each distinct weight Splink returns is matched once: the nearest level, the first of
    equals in definition order, exactly as before.
    """

    def __init__(self, model: LinkageModel) -> None:
        self._plan = [
            (
                comparison.name,
                comp.null_columns(comparison),
                [
                    (lv.key, model.weight(comparison.name, lv.key))
                    for lv in comparison.levels
                    if not lv.is_null
                ],
            )
            for comparison in comp.COMPARISONS
        ]
        self._seen: dict[tuple[str, float], str] = {}

    def nulls(self, left: Mapping[str, Any], right: Mapping[str, Any]) -> list[bool]:
        """Per comparison: is a column it needs absent on either side?"""
        return [
            any(left.get(c) is None or right.get(c) is None for c in null_columns)
            for _, null_columns, _ in self._plan
        ]

    def levels(self, nulls: Sequence[bool], weights: Mapping[str, float]) -> dict[str, str]:
        out = {}
        for (name, _, candidates), null in zip(self._plan, nulls, strict=True):
            if null:
                out[name] = "null"
                continue
            target = weights[name]
            found = self._seen.get((name, target))
            if found is None:
                found = min(candidates, key=lambda kw: abs(kw[1] - target))[0]
                self._seen[(name, target)] = found
            out[name] = found
        return out


_LEVELS = {(c.name, lv.key): lv for c in comp.COMPARISONS for lv in c.levels}


def explain(pair: ScoredPair) -> str:
    """A human-readable explanation: each non-null comparison with its weight, strongest first.

    Names only the kind of agreement, never a value, so it can be stored and shown freely.
    """
    parts = []
    for comparison in comp.COMPARISONS:
        level = _LEVELS[(comparison.name, pair.levels[comparison.name])]
        if level.is_null:
            continue
        text = level.explain
        if comparison.name in pair.common:
            text += " (a common name: counts for less)"
        parts.append((pair.weights[comparison.name], text))
    parts.sort(key=lambda item: -abs(item[0]))
    return ", ".join(f"{text} {weight:+.1f}" for weight, text in parts)
