"""Prometheus metrics at ``/metrics``, for the operator's scraper (``MASH_METRICS_TOKEN``).

Two kinds:

* **per process, as requests happen**: request latency histograms per route *template*
  (``/api/v1/persons/{person_id}``, never a concrete path, so no id or value becomes a label)
  and the connection pool's use. With ``serve --workers N`` each worker writes them to a
  private folder (prometheus-client's multiprocess mode, set up by ``serve``) and a scrape
  of any worker sums all of them;
* **read from the database at scrape time**, so every worker answers the same: records
  ingested per feed and outcome, linkage runs, open review tasks, the audit chain's lag
  (entries committed but not yet chained, age of the newest signed checkpoint), and key
  rotation progress (data keys per KEK, and how many are not yet under the newest KEK).

Everything is a count, a duration or a code: no personal data.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.engine import Engine

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_SECONDS = Histogram(
    "mash_hub_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status class.",
    ["method", "route", "status"],
    buckets=BUCKETS,
)
POOL_IN_USE = Gauge(
    "mash_hub_db_pool_connections_in_use",
    "Database connections checked out of this process's pool.",
    multiprocess_mode="livesum",
)
POOL_CAPACITY = Gauge(
    "mash_hub_db_pool_capacity",
    "Connections this process's pool may hold (size + overflow).",
    multiprocess_mode="livesum",
)


def route_label(scope: Mapping[str, Any]) -> str:
    """The matched route's full template (``/api/v1/persons/{person_id}``), or a fixed word:
    never the request's own path.

    A route of an included router knows only its own part of the template; the part before
    it is the routers' prefixes, which are fixed text, found as the shortest prefix of the
    path after which the route's own pattern matches.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    pattern = getattr(route, "path_regex", None)
    path = scope.get("path", "")
    if isinstance(template, str) and pattern is not None:
        for cut in (i for i, char in enumerate(path) if char == "/"):
            if pattern.match(path[cut:]):
                return str(path[:cut] + template)
        return template
    if path.startswith("/static/"):
        return "/static"
    return "unmatched"


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUEST_SECONDS.labels(method, route, f"{status // 100}xx").observe(seconds)


def observe_pool(engine: Engine) -> None:
    pool: Any = engine.pool
    try:
        POOL_IN_USE.set(pool.checkedout())
        POOL_CAPACITY.set(pool.size() + pool._max_overflow)  # no public getter
    except AttributeError:  # a pool class without these counters (NullPool in tools)
        return


class HubStateCollector(Collector):
    """Figures read from the database at scrape time (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        with self.engine.connect() as connection:
            rows = {name: connection.execute(text(sql)).all() for name, sql in _QUERIES.items()}
        ingested = CounterMetricFamily(
            "mash_hub_ingested_records",
            "Records in ingested batches, by feed and outcome (accepted, updated, unchanged, "
            "quarantined).",
            labels=["feed", "outcome"],
        )
        for feed, outcome, count in rows["ingested"]:
            ingested.add_metric([feed, outcome], float(count))
        yield ingested
        batches = CounterMetricFamily(
            "mash_hub_ingest_batches", "Files ingested, by feed.", labels=["feed"]
        )
        for feed, count in rows["batches"]:
            batches.add_metric([feed], float(count))
        yield batches
        runs = CounterMetricFamily(
            "mash_hub_link_runs", "Linkage runs, by mode (full, incremental).", labels=["mode"]
        )
        for mode, count in rows["runs"]:
            runs.add_metric([mode], float(count))
        yield runs
        tasks = GaugeMetricFamily(
            "mash_hub_review_tasks", "Linkage review tasks, by status.", labels=["status"]
        )
        for status, count in rows["tasks"]:
            tasks.add_metric([status], float(count))
        yield tasks
        ((unchained, oldest_unchained),) = rows["unchained"]
        yield GaugeMetricFamily(
            "mash_hub_audit_unchained_entries",
            "Audit entries committed but not yet linked into the hash chain.",
            value=float(unchained),
        )
        yield GaugeMetricFamily(
            "mash_hub_audit_oldest_unchained_age_seconds",
            "Age of the oldest audit entry not yet chained (0 when none).",
            value=float(oldest_unchained or 0.0),
        )
        ((checkpoint_age,),) = rows["checkpoint"]
        yield GaugeMetricFamily(
            "mash_hub_audit_last_checkpoint_age_seconds",
            "Age of the newest signed audit checkpoint (absent before the first).",
            value=float(checkpoint_age) if checkpoint_age is not None else float("nan"),
        )
        keys = GaugeMetricFamily(
            "mash_hub_data_keys", "Wrapped data keys, by the KEK that wraps them.", labels=["kek"]
        )
        for kek, count in rows["keys"]:
            keys.add_metric([kek], float(count))
        yield keys
        ((pending,),) = rows["rotation"]
        yield GaugeMetricFamily(
            "mash_hub_key_rotation_pending_keys",
            "Data keys not yet re-wrapped under the newest KEK (0 when no rotation is due).",
            value=float(pending or 0),
        )


_QUERIES: dict[str, str] = {
    "ingested": """
        SELECT b.feed, c.key, sum((c.value #>> '{}')::numeric)
        FROM feed_batches b CROSS JOIN LATERAL jsonb_each(b.counts) c
        WHERE jsonb_typeof(c.value) = 'number'
        GROUP BY b.feed, c.key ORDER BY 1, 2""",
    "batches": "SELECT feed, count(*) FROM feed_batches GROUP BY feed ORDER BY 1",
    "runs": "SELECT mode, count(*) FROM link_runs GROUP BY mode ORDER BY 1",
    "tasks": "SELECT status, count(*) FROM review_tasks GROUP BY status ORDER BY 1",
    "unchained": """
        SELECT count(*), extract(epoch FROM now() - min(occurred_at))
        FROM audit_log WHERE chain_seq IS NULL""",
    "checkpoint": "SELECT extract(epoch FROM now() - max(signed_at)) FROM audit_checkpoints",
    "keys": "SELECT kek_id, count(*) FROM data_keys GROUP BY kek_id ORDER BY 1",
    "rotation": """
        SELECT count(*) FROM data_keys d
        WHERE d.kek_id <> (SELECT k.kek_id FROM key_encryption_keys k
                           WHERE k.retired_at IS NULL
                           ORDER BY k.first_used_at DESC LIMIT 1)""",
}


def exposition(engine: Engine) -> tuple[bytes, str]:
    """The text a scrape gets: this process's (or all workers') metrics plus the hub's state."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessMetrics())
    registry.register(HubStateCollector(engine))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _ProcessMetrics(Collector):
    """This process's request and pool metrics (single-process serving)."""

    def collect(self) -> Iterator[Any]:
        for metric in (REQUEST_SECONDS, POOL_IN_USE, POOL_CAPACITY):
            yield from metric.collect()


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time check of the scraper's bearer token."""
    if presented is None or not presented.startswith("Bearer "):
        return False
    return hmac.compare_digest(presented[len("Bearer ") :].encode(), expected.encode())
