"""The linkage report for the hub's data lead: one self-contained, offline HTML page.

It shows what the model believes (m and u per comparison level), what it does (the match
weights of every candidate pair; how one pair's weight is built up), what it costs (the review
queue against the review threshold) and whom it fails (the bias report). It holds figures,
level names and ids only, never a name, date, postcode or other value: the figures are
collected here as a plain document first (:func:`report_figures`), and the page is drawn from
that document alone (:func:`render_html`) as inline SVG, with no script and no external
resource, so it opens anywhere and sends nothing anywhere.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.matching import cluster as clustering
from mash_hub.matching import comparisons as comp
from mash_hub.matching.model import LinkageModel, ScoredPair, Thresholds
from mash_hub.matching.models import ReviewTask
from mash_hub.matching.service import cyclic_gc_paused, evaluate_persons
from mash_hub.matching.thresholds import grid, score_hub
from mash_hub.persons.store import PersonStore

QUEUE_STEP = 0.5
QUEUE_SPAN = 12.0


class ReportError(ValueError):
    """A report that cannot be made as asked (the message names the option)."""


def level_table(model: LinkageModel) -> list[dict[str, Any]]:
    """m, u and weight of every non-null level, in the order the model tries them."""
    out = []
    for comparison in comp.COMPARISONS:
        levels = []
        for level in comparison.levels:
            if level.is_null:
                continue
            if level.fixed is not None:
                m, u = level.fixed
            else:
                trained = model.parameters[comparison.name][level.key]
                m, u = trained["m"], trained["u"]
            levels.append(
                {
                    "key": level.key,
                    "label": level.explain,
                    "m": m,
                    "u": u,
                    "weight": round(math.log2(m / u), 3),
                    "fixed": level.fixed is not None,
                }
            )
        out.append(
            {"comparison": comparison.name, "description": comparison.description, "levels": levels}
        )
    return out


def histogram(pairs: Sequence[ScoredPair], width: float = 1.0) -> list[list[float]]:
    """``[bin start, pairs]`` for every candidate pair's match weight."""
    counts = Counter(math.floor(p.match_weight / width) for p in pairs)
    if not counts:
        return []
    return [[k * width, counts.get(k, 0)] for k in range(min(counts), max(counts) + 1)]


def waterfall(pair: ScoredPair, model: LinkageModel) -> list[dict[str, Any]]:
    """How a pair's weight adds up: the prior, then each comparison's level and weight."""
    prior = math.log2(model.prior / (1 - model.prior))
    steps: list[dict[str, Any]] = [
        {
            "comparison": "prior",
            "level": "",
            "label": "two records picked at random",
            "weight": round(prior, 2),
        }
    ]
    for comparison in comp.COMPARISONS:
        key = pair.levels[comparison.name]
        label = "not recorded on both" if key == "null" else comparison.level(key).explain
        if comparison.name in pair.common:
            label += " (a common name: counts for less)"
        steps.append(
            {
                "comparison": comparison.name,
                "level": key,
                "label": label,
                "weight": round(pair.weights[comparison.name], 2),
            }
        )
    return steps


def _chosen_pair(
    session: Session, pairs: Sequence[ScoredPair], queue: Sequence[ScoredPair], task: str | None
) -> tuple[ScoredPair | None, str]:
    if task is not None:
        try:
            task_id = uuid.UUID(task)
        except ValueError as exc:
            raise ReportError("--task must be a review task id (a UUID)") from exc
        found = session.get(ReviewTask, task_id)
        if found is None:
            raise ReportError(f"--task: no review task {task_id}")
        key = clustering.pair_key(str(found.record_id_l), str(found.record_id_r))
        pair = next((p for p in pairs if (p.left, p.right) == key), None)
        if pair is None:
            raise ReportError(f"--task: review task {task_id}'s records are no longer a pair")
        return pair, f"review task {task_id}"
    if queue:
        return queue[0], "the strongest pair in the review queue"
    if pairs:
        return max(pairs, key=lambda p: (p.match_weight, p.left)), "the strongest pair"
    return None, "no candidate pairs"


_DECISIONS = text(
    "SELECT d.decision, d.reason_code, t.kind, t.match_weight FROM link_decisions d"
    " JOIN review_tasks t ON t.id = d.task_id WHERE d.superseded_at IS NULL"
)


def decision_figures(session: Session) -> dict[str, Any]:
    """The reviewers' decisions in force: by reason, by task kind, and by match-weight band
    (how often a pair of that weight was the same person: is the model calibrated?)."""
    by_reason: Counter[tuple[str, str]] = Counter()
    by_kind: Counter[tuple[str, str]] = Counter()
    by_band: Counter[tuple[int, str]] = Counter()
    for decision, reason, kind, weight in session.execute(_DECISIONS):
        by_reason[(decision, reason)] += 1
        by_kind[(kind, decision)] += 1
        by_band[(math.floor(float(weight) / 2) * 2, decision)] += 1
    bands = sorted({band for band, _ in by_band})
    return {
        "decided": sum(by_reason.values()),
        "by_reason": [
            {"decision": d, "reason_code": r, "count": n} for (d, r), n in sorted(by_reason.items())
        ],
        "by_kind": [
            {
                "kind": kind,
                "same": by_kind[(kind, "same")],
                "different": by_kind[(kind, "different")],
            }
            for kind in sorted({k for k, _ in by_kind})
        ],
        "by_band": [
            {
                "from": band,
                "to": band + 2,
                "same": by_band[(band, "same")],
                "different": by_band[(band, "different")],
            }
            for band in bands
        ],
    }


def report_figures(
    session: Session,
    store: PersonStore,
    model: LinkageModel,
    *,
    actor: str,
    truth_csv: Path | None = None,
    by: Sequence[str] = (),
    task: str | None = None,
) -> dict[str, Any]:
    """Every figure of the report, from one scoring of the current records (decrypted in
    memory as ``link run`` does), audited as ``linkage.report``."""
    scores = score_hub(session, store, model, None)
    thresholds = model.thresholds
    reviews = grid(thresholds.auto - QUEUE_SPAN, thresholds.auto, QUEUE_STEP)
    queues = []
    current: list[ScoredPair] = []
    with cyclic_gc_paused():
        for auto in (thresholds.auto - 2, thresholds.auto, thresholds.auto + 2):
            run = clustering.cluster(
                scores.rows,
                scores.pairs,
                Thresholds(auto, min(reviews), thresholds.contradiction),
                scores.constraints,
            )
            points = [
                [bound, sum(1 for p in run.review if p.match_weight >= bound)]
                for bound in reviews
                if bound <= auto
            ]
            queues.append({"auto": auto, "points": points})
            if auto == thresholds.auto:
                current = [p for p in run.review if p.match_weight >= thresholds.review]
    pair, source = _chosen_pair(session, scores.pairs, current, task)
    if truth_csv is not None:
        bias: dict[str, Any] = {
            "kind": "truth",
            "by": list(by),
            **evaluate_persons(session, store, truth_csv, by),
        }
    else:
        bias = {"kind": "decisions", **decision_figures(session)}
    figures = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": {
            "version": model.version,
            "prior": model.prior,
            "thresholds": dict(thresholds.__dict__),
        },
        "records": len(scores.record_ids),
        "candidate_pairs": len(scores.pairs),
        "review_pairs": len(current),
        "levels": level_table(model),
        "histogram": histogram(scores.pairs),
        "waterfall": {
            "source": source,
            "match_weight": round(pair.match_weight, 2) if pair else None,
            "steps": waterfall(pair, model) if pair else [],
        },
        "queue": queues,
        "bias": bias,
    }
    audit(
        session,
        AuditEvent(
            actor=actor,
            action="linkage.report",
            subject_type="linkage_model",
            subject_id=str(model.version),
            details={
                "records": figures["records"],
                "candidate_pairs": figures["candidate_pairs"],
                "truth": truth_csv is not None,
                "by": list(by),
                "task": task,
            },
        ),
    )
    return figures


# -- drawing ----------------------------------------------------------------------------------

_E = html.escape


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _ticks(low: float, high: float, most: int = 16) -> range:
    """Whole-number ticks 1, 2, 5, 10 or 20 apart: at most ``most`` of them."""
    step = next((s for s in (1, 2, 5, 10, 20) if (high - low) / s <= most), 50)
    return range(math.ceil(low / step) * step, math.floor(high) + 1, step)


def _histogram_svg(bins: list[list[float]], thresholds: dict[str, float]) -> str:
    if not bins:
        return "<p>No candidate pairs.</p>"
    width, height, left, bottom = 720, 270, 56, 40
    plot_w, plot_h = width - left - 10, height - bottom - 10
    low, high = bins[0][0], bins[-1][0] + 1
    top = max(math.log10(1 + c) for _, c in bins) or 1.0

    def x(weight: float) -> float:
        return left + (weight - low) / (high - low) * plot_w

    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Histogram of match '
        f'weights of candidate pairs (log scale)">'
    ]
    bar_w = plot_w / len(bins)
    for start, count in bins:
        h = math.log10(1 + count) / top * plot_h
        parts.append(
            f'<rect x="{x(start):.1f}" y="{10 + plot_h - h:.1f}" width="{bar_w - 1:.1f}" '
            f'height="{h:.1f}" class="bar"><title>{_num(start)} to {_num(start + 1)}: '
            f"{int(count):,} pairs</title></rect>"
        )
    for name, anchor, shift in (("review", "end", -3), ("auto", "start", 3)):
        value = thresholds[name]
        if low <= value <= high:
            parts.append(
                f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="10" y2="{10 + plot_h}" '
                f'class="{name}"/><text x="{x(value) + shift:.1f}" y="22" class="{name}" '
                f'text-anchor="{anchor}">{name} {_num(value)}</text>'
            )
    for tick in _ticks(low, high):
        parts.append(
            f'<text x="{x(tick):.1f}" y="{height - 16}" text-anchor="middle">{tick}</text>'
        )
    parts.append(
        f'<text x="4" y="18">pairs</text><text x="{left + plot_w / 2:.0f}" y="{height - 2}" '
        'text-anchor="middle">match weight</text></svg>'
    )
    return "".join(parts)


def _waterfall_svg(steps: list[dict[str, Any]], total: float) -> str:
    width, row = 720, 22
    height = row * (len(steps) + 1) + 30
    running = [0.0]
    for step in steps:
        running.append(running[-1] + step["weight"])
    low, high = min(*running, total, 0.0), max(*running, total, 0.0)
    left, plot_w = 330, width - 390

    def x(weight: float) -> float:
        return left + (weight - low) / ((high - low) or 1) * plot_w

    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="How one pair\'s match '
        'weight adds up">'
    ]
    for i, step in enumerate(steps):
        a, b = running[i], running[i + 1]
        cls = "up" if step["weight"] >= 0 else "down"
        y = 10 + i * row
        label = step["comparison"] + (f": {step['label']}" if step["comparison"] != "prior" else "")
        parts.append(
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{_E(label[:52])}</text>'
            f'<rect x="{x(min(a, b)):.1f}" y="{y + 3}" width="{max(abs(x(b) - x(a)), 1):.1f}" '
            f'height="{row - 6}" class="{cls}"><title>{_E(step["label"])}: '
            f"{step['weight']:+.2f}</title></rect>"
            f'<text x="{x(max(a, b)) + 4:.1f}" y="{y + 15}">{step["weight"]:+.2f}</text>'
        )
    y = 10 + len(steps) * row
    parts.append(
        f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">match weight</text>'
        f'<rect x="{x(min(0.0, total)):.1f}" y="{y + 3}" width="{abs(x(total) - x(0.0)):.1f}" '
        f'height="{row - 6}" class="total"/><text x="{x(max(0.0, total)) + 4:.1f}" '
        f'y="{y + 15}">{total:+.2f}</text>'
        f'<line x1="{x(0.0):.1f}" x2="{x(0.0):.1f}" y1="6" y2="{y + row}" class="axis"/></svg>'
    )
    return "".join(parts)


def _queue_svg(queues: list[dict[str, Any]], thresholds: dict[str, float]) -> str:
    points = [p for q in queues for p in q["points"]]
    if not points:
        return "<p>No review bounds to show.</p>"
    width, height, left, bottom = 720, 290, 64, 40
    plot_w, plot_h = width - left - 110, height - bottom - 10
    low, high = float(min(p[0] for p in points)), float(max(p[0] for p in points))
    top = max(1, *(int(p[1]) for p in points))

    def x(weight: float) -> float:
        return left + (weight - low) / ((high - low) or 1) * plot_w

    def y(count: float) -> float:
        return 10 + plot_h - count / top * plot_h

    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Review queue size '
        'against the review threshold">'
    ]
    for index, queue in enumerate(queues):
        line = " ".join(f"{x(b):.1f},{y(n):.1f}" for b, n in queue["points"])
        if not line:
            continue
        parts.append(
            f'<polyline points="{line}" class="series s{index}"/>'
            f'<text x="{left + plot_w + 12}" y="{24 + index * 16}" class="s{index}">auto '
            f"{_num(queue['auto'])}</text>"
        )
    review = thresholds["review"]
    if low <= review <= high:
        parts.append(
            f'<line x1="{x(review):.1f}" x2="{x(review):.1f}" y1="10" y2="{10 + plot_h}" '
            f'class="review"/><text x="{x(review) + 3:.1f}" y="22" class="review">review '
            f"{_num(review)}</text>"
        )
    for tick in _ticks(low, high):
        parts.append(
            f'<text x="{x(tick):.1f}" y="{height - 16}" text-anchor="middle">{tick}</text>'
        )
    parts.append(
        f'<text x="{left - 6}" y="{y(top) + 4:.1f}" text-anchor="end">{top:,}</text>'
        f'<text x="{left - 6}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>'
        f'<text x="4" y="18">tasks</text><text x="{left + plot_w / 2:.0f}" y="{height - 2}" '
        'text-anchor="middle">review lower bound</text></svg>'
    )
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_E(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_E(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _levels_html(levels: list[dict[str, Any]]) -> str:
    out = []
    for comparison in levels:
        rows = [
            [
                lv["key"],
                lv["label"],
                f"{lv['m']:.4g}",
                f"{lv['u']:.4g}",
                f"{lv['weight']:+.2f}",
                "fixed" if lv["fixed"] else "trained",
            ]
            for lv in comparison["levels"]
        ]
        out.append(
            f"<h3>{_E(comparison['comparison'])}</h3><p>{_E(comparison['description'])}</p>"
            + _table(("level", "meaning", "m", "u", "weight log2(m/u)", "source"), rows)
        )
    return "".join(out)


def _bias_html(bias: dict[str, Any]) -> str:
    if bias["kind"] == "truth":
        cluster = bias["cluster"]
        parts = [
            "<p>Against the truth file (as <code>mash-hub link evaluate</code>): "
            f"{bias['records']:,} records, cluster precision {cluster['precision']:.4f}, "
            f"recall {cluster['recall']:.4f}; {bias['false_merge_people']:,} people in false "
            f"merges, {bias['split_people']:,} split; review queue "
            f"{bias['review_queue_share'] * 100:.2f} % of records.</p>"
        ]
        by_group = bias.get("by_group") or {}
        for attribute, report in by_group.items():
            if attribute == "overall":
                continue
            rows = [
                [
                    group,
                    f"{m['records']:,}",
                    f"{m['true_pairs']:,}",
                    f"{m['precision']:.4f}",
                    f"{m['recall']:.4f}",
                    f"{m['recall_95'][0]:.3f}-{m['recall_95'][1]:.3f}",
                    f"{m['review_share'] * 100:.2f} %",
                ]
                for group, m in report["groups"].items()
            ]
            parts.append(
                f"<h3>By {_E(attribute)} (worst group "
                f"{report['max_recall_gap'] * 100:.2f} points below overall recall)</h3>"
                + _table(
                    (
                        "group",
                        "records",
                        "true pairs",
                        "precision",
                        "recall",
                        "recall 95 %",
                        "review share",
                    ),
                    rows,
                )
            )
        if not by_group:
            parts.append(
                "<p>Give <code>--by</code> (e.g. age_band,sex,name_origin) for the "
                "figures per group.</p>"
            )
        return "".join(parts)
    if not bias["decided"]:
        return "<p>No reviewers' decisions yet, and no truth file given.</p>"
    return (
        f"<p>{bias['decided']:,} reviewers' decisions in force (no truth file given).</p>"
        "<h3>By match-weight band: how often the model's weight was one person</h3>"
        + _table(
            ("weight", "same person", "different people", "share same"),
            [
                [
                    f"{b['from']} to {b['to']}",
                    b["same"],
                    b["different"],
                    f"{b['same'] / (b['same'] + b['different']) * 100:.0f} %",
                ]
                for b in bias["by_band"]
            ],
        )
        + "<h3>By kind of task</h3>"
        + _table(
            ("kind", "same person", "different people"),
            [[k["kind"], k["same"], k["different"]] for k in bias["by_kind"]],
        )
        + "<h3>By reason</h3>"
        + _table(
            ("decision", "reason", "count"),
            [[r["decision"], r["reason_code"], r["count"]] for r in bias["by_reason"]],
        )
    )


_STYLE = """
body{font-family:system-ui,Arial,sans-serif;margin:2rem auto;max-width:60rem;color:#0b0c0c;
line-height:1.4}h1,h2{border-bottom:1px solid #b1b4b6}table{border-collapse:collapse;
margin:.5rem 0 1rem}th,td{border:1px solid #b1b4b6;padding:.2rem .5rem;text-align:right}
th:first-child,td:first-child,td:nth-child(2){text-align:left}svg{width:100%;height:auto;
font-size:11px}.bar{fill:#1d70b8}.up{fill:#00703c}.down{fill:#d4351c}.total{fill:#0b0c0c}
line.auto,line.review,.axis{stroke-width:2}line.auto{stroke:#00703c}line.review{stroke:#f47738}
text.auto{fill:#00703c}text.review{fill:#f47738}.axis{stroke:#505a5f}
.series{fill:none;stroke-width:2}.s0{stroke:#912b88;fill:#912b88}
.s1{stroke:#1d70b8;fill:#1d70b8}.s2{stroke:#505a5f;fill:#505a5f}polyline.series{fill:none}
"""


def render_html(figures: dict[str, Any]) -> str:
    """The page, from the figures alone (every text escaped; no script, no external link)."""
    model = figures["model"]
    thresholds = model["thresholds"]
    water = figures["waterfall"]
    steps = water["steps"]
    body = [
        "<h1>MASH Hub linkage report</h1>",
        f"<p>Model version {model['version']}; thresholds: auto-link at "
        f"{thresholds['auto']:g}, review from {thresholds['review']:g}, contradiction "
        f"{thresholds['contradiction']:g}. {figures['records']:,} current records, "
        f"{figures['candidate_pairs']:,} candidate pairs, {figures['review_pairs']:,} pairs "
        f"for review. Made {_E(figures['generated_at'])}. Figures only: this page holds no "
        "name, date, address or identifier.</p>",
        "<h2>Match weights of candidate pairs</h2>",
        "<p>Pairs per unit of match weight (log scale), with the thresholds.</p>",
        _histogram_svg(figures["histogram"], thresholds),
        "<h2>Review queue against the review threshold</h2>",
        "<p>Review tasks a run would open for each review lower bound, at the current "
        "auto-link threshold and two either side (<code>mash-hub link thresholds</code> "
        "adds precision and recall).</p>",
        _queue_svg(figures["queue"], thresholds),
        f"<h2>How one pair's weight adds up: {_E(water['source'])}</h2>",
        _waterfall_svg(steps, water["match_weight"]) if steps else "<p>No pair.</p>",
        "<h2>Bias report</h2>",
        _bias_html(figures["bias"]),
        "<h2>m and u per comparison level</h2>",
        "<p>m: how often two records of one person agree this way; u: how often two records "
        "of different people do. The weight log2(m/u) is what the level adds.</p>",
        _levels_html(figures["levels"]),
    ]
    return (
        '<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8">'
        "<title>MASH Hub linkage report</title>"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<style>{_STYLE}</style></head><body>" + "".join(body) + "</body></html>\n"
    )
