"""Match weights in plain Python: the numbers Splink computes, without Splink or DuckDB.

Linking one new record through Splink costs ~0.4 s of fixed cost (a linker, a DuckDB
connection, settings SQL); person search must rank a few dozen candidates in milliseconds.
This module scores record pairs directly from the same two sources of truth Splink uses:

* the level conditions are the SQL strings in :mod:`mash_hub.matching.comparisons`,
  compiled here (once, at import) into Python predicates with SQL's three-valued logic: a
  NULL operand makes a comparison NULL, ``NOT NULL`` is NULL, ``TRUE OR NULL`` is TRUE, and a
  ``CASE WHEN`` only takes a level whose condition is TRUE. The compiler accepts exactly the
  small DuckDB subset the comparisons use and refuses anything else at import time, so a new
  construct in a level cannot silently score differently;
* the m/u values come from the :class:`~mash_hub.matching.model.LinkageModel`, and weights
  are added up as Splink's SQL does (``prior + mw_1 + mw_2 + ...``, m and u clamped at
  1e-300, a null level weighs 0).

DuckDB's ``jaro_winkler_similarity`` (rapidfuzz) adds the Winkler boost with a fused
multiply-add on this platform; :func:`jaro_winkler_similarity` reproduces it bit for bit
(a 1-ulp difference would flip a pair sitting exactly on a 0.8 or 0.88 threshold).
``tests/matching/test_scorer.py`` checks every function against DuckDB and every pair
against Splink's ``predict_new``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import jellyfish

from mash_hub.matching import comparisons as comp
from mash_hub.matching.features import FEATURE_COLUMNS
from mash_hub.matching.frequencies import TermFrequencies

Row = Mapping[str, Any]
Value = Any  # None (SQL NULL), bool, int, float, str or list[str]
Expression = Callable[[Row, Row], Value]

M_U_CLAMP_MIN = 1e-300  # splink.internals.comparison_level.M_U_CLAMP_MIN


class UnsupportedSqlError(ValueError):
    """A level condition uses SQL this compiler does not implement (raised at import)."""


# -- the SQL functions the comparisons call, with DuckDB's NULL handling --------------------


@lru_cache(maxsize=65_536)
def jaro_winkler_similarity(a: str, b: str) -> float:
    """DuckDB's ``jaro_winkler_similarity`` (prefix weight 0.1, boost above 0.7)."""
    len_a, len_b = len(a), len(b)
    if not len_a or not len_b:
        return 0.0
    bound = max(max(len_a, len_b) // 2 - 1, 0)
    taken = [False] * len_b
    matched_a: list[str] = []
    for i, char in enumerate(a):
        for j in range(max(0, i - bound), min(len_b, i + bound + 1)):
            if not taken[j] and b[j] == char:
                taken[j] = True
                matched_a.append(char)
                break
    common = len(matched_a)
    if not common:
        return 0.0
    matched_b = [b[j] for j in range(len_b) if taken[j]]
    transpositions = sum(x != y for x, y in zip(matched_a, matched_b, strict=True)) // 2
    sim = common / len_a
    sim += common / len_b
    sim += (common - transpositions) / common
    sim /= 3.0
    if sim > 0.7:
        prefix = 0
        for x, y in zip(a[:4], b[:4], strict=False):
            if x != y:
                break
            prefix += 1
        # sim + (prefix * 0.1) * (1 - sim), rounded once (a fused multiply-add).
        sim = float(Fraction(sim) + Fraction(prefix * 0.1) * Fraction(1.0 - sim))
    return sim


_INTEGER = re.compile(r"\s*([+-]?\d+)\s*")
_DECIMAL = re.compile(r"\s*([+-]?(?:\d+\.\d*|\.\d+))\s*")
_INT32 = 2**31


def try_cast_integer(value: Value) -> int | None:
    """``try_cast(value AS INTEGER)`` for the values features hold (digit strings)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and (whole := _INTEGER.fullmatch(value)):
        result = int(whole.group(1))
    elif isinstance(value, str) and (decimal := _DECIMAL.fullmatch(value)):
        number = Fraction(decimal.group(1))
        result = int(abs(number) + Fraction(1, 2)) * (1 if number >= 0 else -1)
    else:
        return None
    return result if -_INT32 <= result < _INT32 else None


def _null_propagating(function: Callable[..., Value]) -> Callable[..., Value]:
    def call(*args: Value) -> Value:
        return None if any(a is None for a in args) else function(*args)

    return call


def _list_contains(items: list[Any] | None, item: Value) -> Value:
    """NULL list: NULL; empty list: FALSE (even for a NULL item); NULL item: NULL."""
    if items is None:
        return None
    if not items:
        return False
    return None if item is None else item in items


def _list_has_any(a: list[Any] | None, b: list[Any] | None) -> Value:
    """NULL if either list is NULL; NULL elements never match."""
    if a is None or b is None:
        return None
    return not {x for x in a if x is not None}.isdisjoint(x for x in b if x is not None)


FUNCTIONS: Mapping[str, Callable[..., Value]] = {
    "list_contains": _list_contains,
    "list_has_any": _list_has_any,
    "jaro_winkler_similarity": _null_propagating(jaro_winkler_similarity),
    "damerau_levenshtein": _null_propagating(jellyfish.damerau_levenshtein_distance),
    "abs": _null_propagating(abs),
    "replace": _null_propagating(str.replace),
}

_COMPARE: Mapping[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ARITHMETIC: Mapping[str, Callable[[Any, Any], Any]] = {"+": operator.add, "-": operator.sub}


# -- the compiler ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<string>'(?:[^']|'')*')|(?P<op><>|!=|<=|>=|[=<>(),+-]))"
)
_KEYWORDS = frozenset({"and", "or", "not", "is", "null", "as", "true", "false"})


def _tokens(sql: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    sql = sql.rstrip()
    while position < len(sql):
        match = _TOKEN.match(sql, position)
        if match is None or match.end() == position:
            raise UnsupportedSqlError(f"cannot read the level SQL at character {position}")
        kind = match.lastgroup
        assert kind is not None
        text = match.group(kind)
        if kind == "name" and text.lower() in _KEYWORDS:
            kind, text = "keyword", text.lower()
        out.append((kind, text))
        position = match.end()
    return out


def _and(parts: Sequence[Expression]) -> Expression:
    def evaluate(left: Row, right: Row) -> Value:
        unknown = False
        for part in parts:
            value = part(left, right)
            if value is None:
                unknown = True
            elif not value:
                return False
        return None if unknown else True

    return evaluate


def _or(parts: Sequence[Expression]) -> Expression:
    def evaluate(left: Row, right: Row) -> Value:
        unknown = False
        for part in parts:
            value = part(left, right)
            if value is None:
                unknown = True
            elif value:
                return True
        return None if unknown else False

    return evaluate


def _not(inner: Expression) -> Expression:
    def evaluate(left: Row, right: Row) -> Value:
        value = inner(left, right)
        return None if value is None else not value

    return evaluate


def _is_null(inner: Expression, negate: bool) -> Expression:
    def evaluate(left: Row, right: Row) -> Value:
        return (inner(left, right) is None) != negate

    return evaluate


def _binary(function: Callable[[Any, Any], Any], a: Expression, b: Expression) -> Expression:
    def evaluate(left: Row, right: Row) -> Value:
        x = a(left, right)
        if x is None:
            return None
        y = b(left, right)
        return None if y is None else function(x, y)

    return evaluate


def _call(function: Callable[..., Value], args: Sequence[Expression]) -> Expression:
    def evaluate(left: Row, right: Row) -> Value:
        return function(*(arg(left, right) for arg in args))

    return evaluate


def _column(name: str) -> Expression:
    base, side = name[:-2], name[-1]
    if not name.endswith(("_l", "_r")) or base not in FEATURE_COLUMNS:
        raise UnsupportedSqlError(f"level SQL names an unknown column {name!r}")
    if side == "l":
        return lambda left, right: left.get(base)
    return lambda left, right: right.get(base)


def _constant(value: Value) -> Expression:
    return lambda left, right: value


class _Parser:
    """Recursive descent over: OR < AND < NOT < comparison / IS [NOT] NULL < +,- < atom."""

    def __init__(self, sql: str) -> None:
        self.tokens = _tokens(sql)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token[1] == text and token[0] in ("keyword", "op"):
            self.at += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise UnsupportedSqlError(f"expected {text!r} in level SQL at token {self.at}")

    def parse(self) -> Expression:
        expression = self.disjunction()
        if self.peek() is not None:
            raise UnsupportedSqlError(f"unexpected token {self.at} in level SQL")
        return expression

    def disjunction(self) -> Expression:
        parts = [self.conjunction()]
        while self.accept("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else _or(parts)

    def conjunction(self) -> Expression:
        parts = [self.negation()]
        while self.accept("and"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else _and(parts)

    def negation(self) -> Expression:
        if self.accept("not"):
            return _not(self.negation())
        return self.comparison()

    def comparison(self) -> Expression:
        left = self.additive()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in _COMPARE:
            self.at += 1
            return _binary(_COMPARE[token[1]], left, self.additive())
        if self.accept("is"):
            negate = self.accept("not")
            self.expect("null")
            return _is_null(left, negate)
        return left

    def additive(self) -> Expression:
        expression = self.atom()
        while (token := self.peek()) is not None and token[0] == "op" and token[1] in _ARITHMETIC:
            self.at += 1
            expression = _binary(_ARITHMETIC[token[1]], expression, self.atom())
        return expression

    def atom(self) -> Expression:
        token = self.peek()
        if token is None:
            raise UnsupportedSqlError("level SQL ends early")
        kind, text = token
        self.at += 1
        if text == "(" and kind == "op":
            inner = self.disjunction()
            self.expect(")")
            return inner
        if kind == "number":
            return _constant(float(text) if "." in text else int(text))
        if kind == "string":
            return _constant(text[1:-1].replace("''", "'"))
        if kind == "keyword" and text in ("null", "true", "false"):
            return _constant({"null": None, "true": True, "false": False}[text])
        if kind == "name" and self.accept("("):
            return self.function(text.lower())
        if kind == "name":
            return _column(text)
        raise UnsupportedSqlError(f"unexpected token {self.at - 1} in level SQL")

    def function(self, name: str) -> Expression:
        if name == "try_cast":
            inner = self.disjunction()
            self.expect("as")
            token = self.peek()
            if token is None or token[1].lower() != "integer":
                raise UnsupportedSqlError("try_cast only to INTEGER is supported")
            self.at += 1
            self.expect(")")
            return _call(try_cast_integer, [inner])
        if name not in FUNCTIONS:
            raise UnsupportedSqlError(f"level SQL calls an unsupported function {name!r}")
        args = [self.disjunction()]
        while self.accept(","):
            args.append(self.disjunction())
        self.expect(")")
        return _call(FUNCTIONS[name], args)


def compile_condition(sql: str) -> Expression:
    """A level's SQL condition as a function of (left row, right row) -> TRUE/FALSE/NULL."""
    if sql.strip().upper() == "ELSE":
        return _constant(True)
    return _Parser(sql).parse()


@dataclass(frozen=True)
class CompiledComparison:
    name: str
    levels: tuple[tuple[comp.Level, Expression], ...]

    def level(self, left: Row, right: Row) -> comp.Level:
        """The first level whose condition is TRUE (as ``CASE WHEN`` picks it)."""
        for level, condition in self.levels:
            if condition(left, right) is True:
                return level
        raise AssertionError(f"{self.name} has no ELSE level")  # pragma: no cover


def _compile(comparisons: Iterable[comp.Comparison]) -> tuple[CompiledComparison, ...]:
    out = []
    for comparison in comparisons:
        levels = tuple((lv, compile_condition(lv.sql)) for lv in comparison.levels)
        if levels[-1][0].sql.strip().upper() != "ELSE":
            raise UnsupportedSqlError(f"{comparison.name}: the last level must be ELSE")
        out.append(CompiledComparison(comparison.name, levels))
    return tuple(out)


COMPILED: tuple[CompiledComparison, ...] = _compile(comp.COMPARISONS)


# -- scoring ----------------------------------------------------------------------------------


def match_probability(weight: float) -> float:
    """Splink's probability from a match weight (the form that cannot overflow)."""
    if weight >= 0:
        return 1.0 / (1.0 + math.pow(2.0, -weight))
    return math.pow(2.0, weight) / (1.0 + math.pow(2.0, weight))


@dataclass(frozen=True)
class PairScore:
    """One scored pair, unrounded: total weight, level and weight of each comparison."""

    left: str
    right: str
    match_weight: float
    levels: dict[str, str]
    weights: dict[str, float]
    # Comparisons whose exact agreement counted for less because the value is common.
    common: tuple[str, ...] = ()

    @property
    def match_probability(self) -> float:
        return match_probability(self.match_weight)


class PairScorer:
    """Scores pairs of feature rows with one model's parameters (immutable, thread-safe).

    ``frequencies`` are the term frequencies exact name agreements are adjusted by (Splink's
    term-frequency adjustment; :mod:`mash_hub.matching.frequencies`); none known: every value
    counts at the floor, as Splink does when given the same (empty) table.
    """

    def __init__(
        self,
        parameters: Mapping[str, Mapping[str, Mapping[str, float]]],
        prior: float,
        frequencies: TermFrequencies | None = None,
    ):
        self.prior_weight = math.log2(prior / (1 - prior))
        self.frequencies = frequencies or TermFrequencies()
        self._plan: list[tuple[CompiledComparison, dict[str, float], dict[str, float]]] = []
        for compiled in COMPILED:
            weights: dict[str, float] = {}
            # Level key -> log2(u) of the level's exact-match u, for term-frequency levels.
            tf_log_u: dict[str, float] = {}
            for level, _ in compiled.levels:
                if level.is_null:
                    weights[level.key] = 0.0
                    continue
                if level.fixed is not None:
                    m, u = level.fixed
                else:
                    trained = parameters.get(compiled.name, {}).get(level.key)
                    if trained is None:
                        raise KeyError(f"the model has no m/u for {compiled.name}.{level.key}")
                    m, u = trained["m"], trained["u"]
                weights[level.key] = math.log2(max(m, M_U_CLAMP_MIN) / max(u, M_U_CLAMP_MIN))
                if level.tf_column:
                    tf_log_u[level.key] = math.log2(u)
            self._plan.append((compiled, weights, tf_log_u))

    def _tf_adjustment(self, level: comp.Level, log_u: float, left: Row, right: Row) -> float:
        """Splink's adjustment: log2(u_exact) - log2(greatest(tf_l, tf_r, minimum))."""
        column = str(level.tf_column)
        tf_l = self.frequencies.frequency(column, left.get(column))
        tf_r = self.frequencies.frequency(column, right.get(column))
        if tf_l is None and tf_r is None:
            return 0.0
        tf = max(t for t in (tf_l, tf_r, comp.TF_MINIMUM_U) if t is not None)
        return log_u - math.log2(tf)

    def score(self, left: Row, right: Row) -> PairScore:
        """Score one pair, with no blocking (the caller chose the pair)."""
        total = self.prior_weight
        levels: dict[str, str] = {}
        weights: dict[str, float] = {}
        common: list[str] = []
        for compiled, level_weights, tf_log_u in self._plan:
            level = compiled.level(left, right)
            levels[compiled.name] = level.key
            weight = level_weights[level.key]
            if level.key in tf_log_u:
                adjustment = self._tf_adjustment(level, tf_log_u[level.key], left, right)
                weight += adjustment
                if adjustment < 0:
                    common.append(compiled.name)
            weights[compiled.name] = weight
            total += weight
        a, b = str(left["unique_id"]), str(right["unique_id"])
        if a > b:
            a, b = b, a
        return PairScore(a, b, total, levels, weights, tuple(common))

    def predict_new(self, new: Sequence[Row], existing: Sequence[Row]) -> list[PairScore]:
        """Splink's ``predict_within(new)`` + ``predict_between(new, existing)``: every pair a
        prediction blocking rule admits, new x new and new x existing, scored."""
        return [self.score(a, b) for a, b in blocked_pairs(new, existing)]


def _block_key(row: Row, columns: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The blocking key of a row, or None when any column is NULL (NULL = NULL is not TRUE)."""
    key = tuple(row.get(column) for column in columns)
    return None if any(part is None for part in key) else key


def blocked_pairs(new: Sequence[Row], existing: Sequence[Row]) -> list[tuple[Row, Row]]:
    """Pairs that any prediction blocking rule admits: new x new and new x existing (never
    existing x existing), each pair once, the lower id on the left, sorted."""
    pairs: dict[tuple[str, str], tuple[Row, Row]] = {}

    def add(a: Row, b: Row) -> None:
        x, y = str(a["unique_id"]), str(b["unique_id"])
        if x == y:
            return
        if x > y:
            x, y, a, b = y, x, b, a
        pairs.setdefault((x, y), (a, b))

    for columns in comp.PREDICTION_BLOCKING:
        buckets: dict[tuple[Any, ...], list[Row]] = {}
        for row in new:
            if (key := _block_key(row, columns)) is not None:
                buckets.setdefault(key, []).append(row)
        if not buckets:
            continue
        for bucket in buckets.values():
            for i, a in enumerate(bucket):
                for b in bucket[i + 1 :]:
                    add(a, b)
        for row in existing:
            if (key := _block_key(row, columns)) is not None:
                for a in buckets.get(key, ()):
                    add(a, row)
    return [pairs[ids] for ids in sorted(pairs)]
