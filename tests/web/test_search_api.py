"""Person search through real HTTP calls: POST and GET, purposes, refusals, validation without
echoing values, route order, OpenAPI, and a real `mash-hub serve` whose logs carry no query
strings."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from mash_hub.casework.search import SEARCH_FIELDS
from mash_hub.db.engine import Database
from tests.persons.conftest import person_record
from tests.serving import free_port, wait_until_ready
from tests.web.test_persons_api import PURPOSE, PURPOSE_TEXT, PersonsHub, assert_problem

ROBERT: dict[str, Any] = {
    "given": "Robert",
    "family": "Kowalski",
    "dob": dt.date(2012, 3, 4),
    "postcode": "LS6 2QT",
    "nhs": "9434765919",
}
QUERY = {"given_name": "Bob", "family_name": "Kowalsky", "date_of_birth": "03/04/2012"}
PLAINTEXT = ("Robert", "Kowalsk", "Bob", "2012-03-04", "LS6", "9434765919", "943 476 5919")


class SearchHub(PersonsHub):
    """The person-view hub plus Robert (police and social care records) and his twin."""

    def __init__(
        self, database: Database, tmp_path: Path, *, published: bool = True, **overrides: Any
    ) -> None:
        super().__init__(database, tmp_path, published=published, **overrides)
        with database.transaction() as session:
            self.robert = self.store.new_person(session)
            self.store.add(
                session,
                [
                    person_record(f"{feed}-1", person_id=self.robert, feed=feed, **ROBERT)
                    for feed in ("police", "social_care")
                ],
            )
            self.twin = self.store.new_person(session)
            twin = {**ROBERT, "given": "Thomas", "nhs": None}
            self.store.add(session, [person_record("police-2", person_id=self.twin, **twin)])

    def post(
        self,
        body: dict[str, Any],
        headers: dict[str, str] | None = PURPOSE,
        role: str = "social_worker",
        agency: str = "social_care",
    ) -> Any:
        return self.client.post(
            "/api/v1/persons/search",
            json=body,
            headers={"Authorization": f"Bearer {self.token(role, agency)}", **(headers or {})},
        )

    def get(
        self,
        params: dict[str, Any],
        headers: dict[str, str] | None = PURPOSE,
        role: str = "social_worker",
        agency: str = "social_care",
    ) -> Any:
        return self.client.get(
            "/api/v1/persons",
            params=params,
            headers={"Authorization": f"Bearer {self.token(role, agency)}", **(headers or {})},
        )


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[SearchHub]:
    yield SearchHub(committing_database, tmp_path)


def test_post_ranks_robert_first_and_audits_without_plaintext(hub: SearchHub) -> None:
    response = hub.post({**QUERY, "limit": 5})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["count"] == len(body["results"]) >= 1
    assert body["limit"] == 5
    assert body["purpose"] == {"code": "mash_triage"}
    best = body["results"][0]
    assert (best["rank"], best["person_id"]) == (1, str(hub.robert))
    assert best["source"] in {"police", "social_care"}
    assert best["groups"]["identity"]["family_name"] == "Kowalski"
    assert set(best["groups"]) == {"identity", "identifiers", "contact"}
    assert best["records_matched"] == 2
    assert 0.5 < best["match_probability"] <= 1
    assert "day/month swapped" in best["explanation"]
    assert str(hub.twin) not in {hit["person_id"] for hit in body["results"]}

    (entry,) = hub.audit("person.search")
    assert entry.seq == body["audit_seq"]
    assert entry.subject_id == body["search_id"]
    assert entry.details["results"] == [hit["person_id"] for hit in body["results"]]
    logged = json.dumps(entry.details)
    for value in (*PLAINTEXT, *QUERY.values(), PURPOSE_TEXT):
        assert value not in logged


def test_get_gives_the_same_answer_as_post(hub: SearchHub) -> None:
    posted = hub.post(QUERY).json()
    got = hub.get(QUERY)
    assert got.status_code == 200, got.text
    strip = ("search_id", "audit_seq")
    assert {k: v for k, v in got.json().items() if k not in strip} == {
        k: v for k, v in posted.items() if k not in strip
    }
    assert len(hub.audit("person.search")) == 2


def test_routes_are_not_shadowed_by_the_person_view(hub: SearchHub) -> None:
    assert hub.post({"nhs_number": "9434765919"}).json()["results"][0]["person_id"] == str(
        hub.robert
    )
    view = hub.client.get(
        f"/api/v1/persons/{hub.robert}",
        headers={"Authorization": f"Bearer {hub.token('social_worker', 'social_care')}", **PURPOSE},
    )
    assert view.status_code == 200, view.text
    assert view.json()["person_id"] == str(hub.robert)
    # GET on the search path is the person view with a malformed id, not a search.
    not_an_id = hub.client.get(
        "/api/v1/persons/search",
        headers={"Authorization": f"Bearer {hub.token('social_worker', 'social_care')}", **PURPOSE},
    )
    assert_problem(not_an_id, 422)
    assert hub.audit("person.search") != []


@pytest.mark.parametrize(
    ("role", "agency"), [("auditor", "council"), ("partner_agency", "police"), ("admin", "council")]
)
def test_roles_without_identity_access_get_403_audited(
    hub: SearchHub, role: str, agency: str
) -> None:
    for response in (
        hub.post(QUERY, role=role, agency=agency),
        hub.get(QUERY, role=role, agency=agency),
    ):
        body = assert_problem(response, 403)
        assert body["code"] == "search_not_permitted"
    denied = hub.audit("authz.denied")
    assert [d.details["requested"] for d in denied] == ["person.search", "person.search"]
    assert {d.details["role"] for d in denied} == {role}
    assert hub.audit("person.search") == []
    # A role refused with a query the service cannot parse is still refused (and audited).
    assert_problem(hub.get({"date_of_birth": "31/02/2012"}, role=role, agency=agency), 403)
    assert len(hub.audit("authz.denied")) == 3


def test_a_purpose_is_required(hub: SearchHub) -> None:
    body = assert_problem(hub.post(QUERY, headers={}), 400)
    assert body["code"] == "purpose_invalid"
    assert body["errors"][0]["loc"] == ["header", "X-Purpose-Code"]
    bad = assert_problem(hub.post(QUERY, headers={"X-Purpose-Referral": "Robert Kowalski"}), 400)
    assert bad["errors"][0]["loc"] == ["header", "X-Purpose-Referral"]
    assert "Robert" not in json.dumps(bad)
    denied = hub.audit("authz.denied")
    assert [d.details["reason"] for d in denied] == ["purpose_missing", "purpose_missing"]
    assert hub.audit("person.search") == []
    hub.referral("REF-2024-0042")
    referral = hub.post(QUERY, headers={"X-Purpose-Referral": "REF-2024-0042"})
    assert referral.status_code == 200
    assert referral.json()["purpose"] == {"referral": "REF-2024-0042"}


def test_a_referral_purpose_must_name_an_open_referral(hub: SearchHub) -> None:
    """A search names no person yet, but its referral must exist and not be long decided."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    hub.referral("REF-2024-0043", status="decided", decided_at=old)
    for reference, problem in (
        ("R-2026-ZZZZZZZZ", "unknown_referral"),
        ("whatever-1", "unknown_referral"),
        ("REF-2024-0043", "referral_closed"),
    ):
        body = assert_problem(hub.post(QUERY, headers={"X-Purpose-Referral": reference}), 403)
        assert body["code"] == "purpose_referral_invalid"
        entry = hub.audit("authz.denied")[-1]
        assert (entry.details["reason"], entry.details["purpose_problem"]) == (
            "purpose_referral_invalid",
            problem,
        )
    assert hub.audit("person.search") == []


@pytest.mark.parametrize(
    ("method", "query", "loc", "kind"),
    [
        ("post", {"family_name": "Kowalski", "date_of_birth": "31/02/2012"},
         ["body", "date_of_birth"], "date_impossible"),
        ("get", {"family_name": "Kowalski", "date_of_birth": "yesterday"},
         ["query", "date_of_birth"], "date_invalid"),
        ("post", {"nhs_number": "943 476 5918"}, ["body", "nhs_number"], "nhs_number_check_digit"),
        ("get", {"pnc_id": "12/0000345Q"}, ["query", "pnc_id"], "pnc_id_check_letter"),
        ("post", {"postcode": "Kowalski Road", "family_name": "Kowalski"},
         ["body", "postcode"], "postcode_invalid"),
        ("post", {"Khan": "Kowalski"}, ["body", "<unknown>"], "extra_forbidden"),
        ("get", {"Khan": "Kowalski", "nhs_number": "9434765919"},
         ["query", "<unknown>"], "unknown_field"),
        ("post", {}, ["body"], "query_empty"),
        ("get", {"given_name": "  "}, ["query"], "query_empty"),
        ("post", {"family_name": "Kowalski"}, ["body"], "query_too_broad"),
        ("post", {"nhs_number": "9434765919", "limit": 101}, ["body", "limit"], "less_than_equal"),
        ("get", {"nhs_number": "9434765919", "limit": 0}, ["query", "limit"], "greater_than_equal"),
        ("post", {"family_name": 7, "nhs_number": "9434765919"}, ["body", "family_name"],
         "string_type"),
    ],
)  # fmt: skip
def test_validation_names_the_field_and_never_the_value(
    hub: SearchHub, method: str, query: dict[str, Any], loc: list[str], kind: str
) -> None:
    response = hub.post(query) if method == "post" else hub.get(query)
    body = assert_problem(response, 422)
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [(loc, kind)]
    for value in query.values():
        if isinstance(value, str) and value.strip():
            assert value not in response.text
    # Nor the name of a field the caller made up (issue #12 item 5).
    for name in query:
        if name not in (*SEARCH_FIELDS, "limit"):
            assert name not in response.text
    assert hub.audit("person.search") == []


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(
        st.sampled_from(SEARCH_FIELDS),
        st.text(min_size=1, max_size=40).map(lambda t: f"Zq{t}qZ"),
        min_size=1,
    ),
    use_get=st.booleans(),
)
def test_no_submitted_value_is_ever_echoed(
    hub: SearchHub, body: dict[str, str], use_get: bool
) -> None:
    response = hub.get(body) if use_get else hub.post(body)
    assert response.status_code in {200, 422}, response.text
    for value in body.values():
        assert value not in response.text
    if response.status_code == 200:
        entry = hub.audit("person.search")[-1]
        assert all(value not in json.dumps(entry.details) for value in body.values())


def test_unpublished_policy_is_503(committing_database: Database, tmp_path: Path) -> None:
    hub = SearchHub(committing_database, tmp_path, published=False)
    assert assert_problem(hub.post(QUERY), 503)["code"] == "policy_not_published"


def test_openapi_prefers_post_and_documents_errors(hub: SearchHub) -> None:
    document = hub.client.get("/openapi.json").json()
    post = document["paths"]["/api/v1/persons/search"]["post"]
    get = document["paths"]["/api/v1/persons"]["get"]
    for operation in (post, get):
        for status in ("200", "400", "401", "403", "422", "503"):
            assert status in operation["responses"], status
        for status in ("400", "403", "422", "503"):
            assert "application/problem+json" in operation["responses"][status]["content"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert {"X-Purpose-Code", "X-Purpose-Referral", "X-Purpose-Text"} <= headers
    assert "preferred" in post["summary"]
    assert "Prefer `POST /api/v1/persons/search`" in get["description"]
    assert {p["name"] for p in get["parameters"] if p["in"] == "query"} == {
        *SEARCH_FIELDS,
        "limit",
    }
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    body = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(body["properties"]) == {*SEARCH_FIELDS, "limit"}
    assert body["additionalProperties"] is False
    assert body["examples"]


def test_serve_logs_requests_without_query_strings(server_dir: Path) -> None:
    """A real `mash-hub serve`: its access log shows the path and status of a search by query
    string, never the query string itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    port = free_port()
    marker = f"Qv{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [sys.executable, "-m", "mash_hub", "serve", "--port", str(port)],
        cwd=server_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until_ready(base, process)
        searched = httpx.get(
            f"{base}/api/v1/persons",
            params={"family_name": marker, "date_of_birth": "04/03/2012"},
            headers={"Authorization": "Bearer not-a-token"},
            timeout=10,
        )
        assert searched.status_code == 401
        assert httpx.get(f"{base}/healthz?postcode={marker}", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    assert '"GET /api/v1/persons HTTP/1.1" 401' in output, output
    assert '"GET /healthz HTTP/1.1" 200' in output, output
    assert marker not in output
    assert "04/03/2012" not in output


def test_a_search_costs_two_transactions_and_seven_statements(hub: SearchHub) -> None:
    """The round trips of one search, counted, so one added by a change shows up here: it
    was 3 transactions on 4 connection checkouts (each a pre-ping) and 16 statements
    through SQLAlchemy (issue 15)."""
    assert hub.post(QUERY).status_code == 200  # policy compiled, root checked, runs read
    seen: dict[str, list[str]] = {"transactions": [], "statements": [], "checkouts": []}

    def began(_connection: Any) -> None:
        seen["transactions"].append("begin")

    def executed(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen["statements"].append(statement.split(maxsplit=1)[0])

    def checked_out(*_args: Any) -> None:
        seen["checkouts"].append("checkout")

    engine = hub.database.engine
    listeners = (("begin", began), ("before_cursor_execute", executed), ("checkout", checked_out))
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        response = hub.post(QUERY)
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)
    assert response.status_code == 200
    assert response.json()["results"][0]["person_id"] == str(hub.robert)
    # Authentication: the user with its revocation check; the rate-limit take.
    # The search: policy version with the latest full run; candidates joined to their
    # records; the purpose text's data key (with its KEK's registration) and its row; the
    # records with their data keys and ciphertexts. (The audit append goes to the driver.)
    assert seen["statements"] == ["SELECT", "WITH", "SELECT", "SELECT", "WITH", "INSERT", "SELECT"]
    assert len(seen["transactions"]) == 2
    assert len(seen["checkouts"]) == 2
