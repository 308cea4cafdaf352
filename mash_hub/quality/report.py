"""The data-quality report of one feed: rates by reason, by field and over time.

Built from the batch ledger's counts and ``quality_issues`` (codes, fields, dates): it holds no
personal value, so it can go to the feed's owner to fix what their system records badly.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mash_hub.feeds.models import FeedBatch
from mash_hub.quality.models import QualityIssue

Period = Literal["day", "week", "month"]
_INDEX = re.compile(r"\[\d+\]")


def _rate(count: int, rows: int) -> float:
    return round(count / rows, 6) if rows else 0.0


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def feed_report(session: Session, feed: str, *, period: Period = "day") -> dict[str, Any]:
    """Rows ingested, records flagged and quarantined, issues by reason and by field (rates
    per row ingested), issue statuses, and the same per ``period`` of ingestion."""
    rows = 0
    flagged = 0
    quarantined = 0
    held_back: Counter[str] = Counter()
    over_time: dict[str, dict[str, int]] = defaultdict(Counter)
    bucket = func.date_trunc(period, FeedBatch.ingested_at)
    for when, counts in session.execute(
        select(bucket, FeedBatch.counts).where(FeedBatch.feed == feed).order_by(bucket)
    ):
        key = when.date().isoformat()
        for name in ("rows", "flagged", "quarantined"):
            over_time[key][name] += _int(counts.get(name))
        rows += _int(counts.get("rows"))
        flagged += _int(counts.get("flagged"))
        quarantined += _int(counts.get("quarantined"))
        for code, count in (counts.get("quarantine_reasons") or {}).items():
            held_back[str(code)] += _int(count)

    by_code: Counter[str] = Counter()
    by_field: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    issue_bucket = func.date_trunc(period, QualityIssue.created_at)
    for when, code, field, status, count in session.execute(
        select(
            issue_bucket,
            QualityIssue.code,
            QualityIssue.field,
            QualityIssue.status,
            func.count(),
        )
        .where(QualityIssue.feed == feed)
        .group_by(issue_bucket, QualityIssue.code, QualityIssue.field, QualityIssue.status)
    ):
        n = int(count)
        by_code[code] += n
        by_field[_INDEX.sub("[]", field)] += n
        by_status[status] += n
        over_time[when.date().isoformat()]["issues"] += n

    return {
        "feed": feed,
        "period": period,
        "rows": rows,
        "indexed": rows - quarantined,
        "indexed_rate": _rate(rows - quarantined, rows),
        "flagged": flagged,
        "flagged_rate": _rate(flagged, rows),
        "quarantined": quarantined,
        "quarantined_rate": _rate(quarantined, rows),
        "quarantine_reasons": dict(sorted(held_back.items())),
        "issues": sum(by_code.values()),
        "issues_by_status": dict(sorted(by_status.items())),
        "by_reason": {
            code: {"issues": n, "rate": _rate(n, rows)} for code, n in sorted(by_code.items())
        },
        "by_field": {
            field: {"issues": n, "rate": _rate(n, rows)} for field, n in sorted(by_field.items())
        },
        "over_time": [
            {
                "period_start": key,
                "rows": values.get("rows", 0),
                "flagged": values.get("flagged", 0),
                "quarantined": values.get("quarantined", 0),
                "issues": values.get("issues", 0),
                "flagged_rate": _rate(values.get("flagged", 0), values.get("rows", 0)),
            }
            for key, values in sorted(over_time.items())
        ],
    }
