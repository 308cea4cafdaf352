"""``/metrics``: the scraper's token, route templates as labels, the hub's state from the
database; and JSON log lines."""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.db.engine import Database
from mash_hub.observability import metrics
from mash_hub.observability.logs import JsonFormatter, request_id_var
from tests.web.test_api_basics import SECRET_VALUE, bearer_for, make_app

TOKEN = "scraper-token-for-tests-0001"


def _scrape(client: TestClient, token: str | None = TOKEN) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.text)


def test_metrics_need_the_configured_token(committing_database: Database, tmp_path: Path) -> None:
    app, _ = make_app(committing_database, tmp_path)
    assert TestClient(app).get("/metrics").status_code == 404  # not enabled
    app, _ = make_app(committing_database, tmp_path, metrics_token=TOKEN)
    client = TestClient(app)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")


def test_routes_are_labelled_by_template_never_by_path(
    committing_database: Database, tmp_path: Path
) -> None:
    app, key = make_app(committing_database, tmp_path, metrics_token=TOKEN)
    client = TestClient(app)
    person = uuid.uuid4()
    client.get(f"/api/v1/persons/{person}", headers=bearer_for(committing_database, key))
    client.get("/no/such/page/Smith")
    text = _scrape(client)
    sample = re.search(
        r'mash_hub_http_request_duration_seconds_count\{method="GET",'
        r'route="/api/v1/persons/\{person_id\}",status="\dxx"\} (\d+)',
        text,
    )
    assert sample is not None and int(sample.group(1)) >= 1
    assert str(person) not in text and "Smith" not in text
    assert 'route="unmatched"' in text


def test_the_hub_state_comes_from_the_database(
    committing_database: Database, tmp_path: Path
) -> None:
    app, _ = make_app(committing_database, tmp_path, metrics_token=TOKEN)
    client = TestClient(app)
    before = _scrape(client)
    with committing_database.transaction() as session:
        audit(session, AuditEvent("test", "test.metrics"))
    with committing_database.engine.begin() as connection:  # a batch, as ingestion writes it
        connection.exec_driver_sql(
            "INSERT INTO feed_batches (id, feed, file_name, sha256, size_bytes, ingested_by, "
            "counts) VALUES (gen_random_uuid(), 'police', 'p.csv', repeat('0', 64), 1, 'test', "
            """'{"accepted": 7, "quarantined": 2, "by_reason": {"x": 1}}')"""
        )
    after = _scrape(client)
    assert 'mash_hub_ingested_records_total{feed="police",outcome="accepted"} 7.0' in after
    assert 'outcome="by_reason"' not in after
    assert 'mash_hub_ingest_batches_total{feed="police"} 1.0' in after
    assert "mash_hub_audit_unchained_entries" in after
    assert "mash_hub_db_pool_connections_in_use" in before


def test_json_log_lines_carry_the_request_id_and_no_exception_message() -> None:
    formatter = JsonFormatter()
    token = request_id_var.set("req-123")
    try:
        try:
            raise ValueError(SECRET_VALUE)
        except ValueError:
            record = logging.LogRecord(
                "mash_hub.test", logging.ERROR, __file__, 1, "failed %s", ("here",), None
            )
            record.exc_info = sys.exc_info()
        line = json.loads(formatter.format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "failed here" and line["request_id"] == "req-123"
    assert line["exception"] == "ValueError" and SECRET_VALUE not in json.dumps(line)


def test_the_grafana_dashboard_asks_only_for_metrics_the_hub_exports(
    committing_database: Database, tmp_path: Path
) -> None:
    dashboard = json.loads(
        (Path(__file__).parents[2] / "deploy" / "grafana-dashboard.json").read_text()
    )
    wanted = {
        re.sub(r"_(bucket|count|total)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"mash_hub_\w+", target["expr"])
    }
    families = [
        *metrics.HubStateCollector(committing_database.engine).collect(),
        *metrics.REQUEST_SECONDS.collect(),
        *metrics.POOL_IN_USE.collect(),
        *metrics.POOL_CAPACITY.collect(),
    ]  # every family, with samples or not (an empty one is left out of a scrape)
    exported = {family.name for family in families}
    assert wanted and wanted <= exported, wanted - exported
