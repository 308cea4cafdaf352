"""The auditor's pages through real HTTP calls: the log newest first with actors' names,
filters in the query string, paging, one entry, the chain check; every view audited exactly
like the API (one ``audit.query``), and everyone else refused with a page (audited)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from sqlalchemy import func, select

import mash_hub.audit.log as audit_log_module
from mash_hub.audit.checkpointer import create_checkpoint
from mash_hub.audit.models import AuditEntry
from mash_hub.crypto.signing import create_signing_key_file
from mash_hub.db.engine import Database
from mash_hub.users.models import User
from mash_hub.web.pages import audit as audit_pages
from tests.web.test_pages import PURPOSE_FORM, PagesHub

ENTRY_LINK = re.compile(r'href="/audit/entries/(\d+)"')


class AuditPagesHub(PagesHub):
    """A log with a police officer's person view, then an auditor signed in."""

    def settle(self) -> None:
        """Chain every committed entry now (the pages list chained entries, as the API)."""
        audit_log_module.chain_pending(self.database.engine)

    def officer_views_a_person(self) -> None:
        token = self.sign_in("police1", "police_officer", "police")
        page = self.client.post(f"/people/{self.person_id}", data={**PURPOSE_FORM,
                                                                   "csrf_token": token})  # fmt: skip
        assert page.status_code == 200, page.text
        self.client.cookies.clear()

    def actor_id(self, name: str) -> str:
        with self.database.transaction() as session:
            user = session.scalar(select(User).where(User.name == name))
            assert user is not None
            return f"user:{user.id}"


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[AuditPagesHub]:
    hub = AuditPagesHub(committing_database, tmp_path)
    hub.officer_views_a_person()
    hub.sign_in("aud", "auditor", "council")
    hub.settle()
    yield hub


def seqs(html: str) -> list[int]:
    return [int(s) for s in ENTRY_LINK.findall(html)]


def test_the_log_shows_entries_newest_first_with_actors_as_they_were(hub: AuditPagesHub) -> None:
    response = hub.client.get("/audit")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    html = response.text
    assert "<script>" not in html and " style=" not in html
    shown = seqs(html)
    assert shown and shown == sorted(shown, reverse=True)
    assert "police1" in html and "Police officer, Police" in html
    assert "person.view" in html
    queries = hub.entries("audit.query")
    assert len(queries) == 1
    assert queries[0].actor == hub.actor_id("aud")
    assert queries[0].details["rows"] == len(shown)
    assert 'href="/audit"' in hub.client.get("/").text  # the auditor's navigation


def test_filters_live_in_the_query_string_and_are_audited(hub: AuditPagesHub) -> None:
    officer = hub.actor_id("police1")
    by_action = hub.client.get("/audit", params={"action": "person.view"})
    assert by_action.status_code == 200
    views = hub.entries("person.view")
    assert seqs(by_action.text) == [e.seq for e in views]
    by_person = hub.client.get("/audit", params={"person_id": str(hub.person_id)})
    assert set(seqs(by_person.text)) >= {e.seq for e in views}
    assert "auth.signed_in" not in by_person.text
    by_actor = hub.client.get("/audit", params={"actor": officer})
    with hub.database.transaction() as session:
        mine = session.scalars(
            select(AuditEntry.seq)
            .where(AuditEntry.actor == officer)
            .order_by(AuditEntry.seq.desc())
        ).all()
    assert seqs(by_actor.text) == list(mine)
    nobody = hub.client.get("/audit", params={"person_id": str(uuid.uuid4())})
    assert seqs(nobody.text) == [] and "No entries match" in nobody.text
    future = hub.client.get("/audit", params={"since": "2099-01-01", "until": "2099-01-02"})
    assert seqs(future.text) == []
    today = hub.client.get("/audit", params={"action": "person.view", "since": "2000-01-01"})
    assert seqs(today.text) == [e.seq for e in views]
    filters = [e.details["filters"] for e in hub.entries("audit.query")]
    assert filters[0] == {"action": "person.view"}
    assert filters[2] == {"actor": officer}
    assert len(filters) == 6  # one audit.query per page view


def test_bad_filters_get_the_error_summary_and_no_query(hub: AuditPagesHub) -> None:
    response = hub.client.get(
        "/audit",
        params={"person_id": "Bob Kowalsky", "action": "View It", "since": "2026-13-40",
                "actor": "Bob Kowalsky"},
    )  # fmt: skip
    assert response.status_code == 400
    html = unquote(response.text)
    assert "govuk-error-summary" in html and "<title>Error:" in html
    for field in ("person_id", "action", "since", "actor"):
        assert f'href="#{field}"' in html
    assert html.count("Bob Kowalsky") == 2  # only in the two fields being corrected
    assert hub.entries("audit.query") == []
    later = hub.client.get("/audit", params={"since": "2026-12-02", "until": "2026-12-01"})
    assert later.status_code == 400 and 'href="#since"' in later.text
    ancient = hub.client.get("/audit", params={"until": "1969-12-30"})
    assert ancient.status_code == 400 and "Enter dates from 1970 to 9998" in ancient.text
    assert hub.entries("audit.query") == []


def test_the_log_is_paged_newest_first(hub: AuditPagesHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_pages, "PAGE_SIZE", 2)
    with hub.database.transaction() as session:
        chained = session.scalars(
            select(AuditEntry.seq).where(AuditEntry.chain_seq.is_not(None))
        ).all()
    seen: list[int] = []
    path = "/audit?since=2000-01-01"
    for _ in range(len(chained)):
        html = hub.client.get(path).text
        seen += seqs(html)
        match = re.search(r'href="(/audit\?[^"]+)" rel="next"', html)
        if match is None:
            break
        path = match.group(1).replace("&amp;", "&")
        assert "since=2000-01-01" in path
    assert seen == sorted(chained, reverse=True)


def test_an_entry_page_shows_the_entry_and_is_audited(hub: AuditPagesHub) -> None:
    view = hub.entries("person.view")[0]
    response = hub.client.get(f"/audit/entries/{view.seq}")
    assert response.status_code == 200, response.text
    html = response.text
    assert f"Audit entry {view.seq}" in html
    assert "police1" in html and str(hub.person_id) in html
    assert view.entry_hash is not None and view.entry_hash.hex() in html
    queries = hub.entries("audit.query")
    assert len(queries) == 1
    assert queries[0].details["filters"] == {"seq": view.seq}
    assert hub.client.get("/audit/entries/999999999").status_code == 404
    assert hub.client.get("/audit/entries/nine").status_code == 404
    assert len(hub.entries("audit.query")) == 2  # the unknown number was looked for


def test_the_chain_page_checks_since_the_last_checkpoint(hub: AuditPagesHub) -> None:
    response = hub.client.get("/audit/chain")
    assert response.status_code == 200, response.text
    assert "No changes found" in response.text
    assert "No checkpoint has been signed yet" in response.text
    verified = hub.entries("audit.verify")
    assert len(verified) == 1
    assert verified[0].details["scope"] == "since_checkpoint" and verified[0].details["ok"]


def test_the_chain_page_names_the_last_signed_checkpoint(hub: AuditPagesHub) -> None:
    settings = hub.app.state.authenticator.settings
    key = create_signing_key_file(settings.resolved_audit_signing_key_path)
    checkpoint = create_checkpoint(hub.database, key, settings.resolved_audit_checkpoint_dir)
    assert checkpoint is not None
    hub.client.get("/audit")  # one more entry after the checkpoint
    hub.settle()
    html = hub.client.get("/audit/chain").text
    assert "No changes found" in html
    assert f'id="checkpoint-seq">{checkpoint.seq}<' in html
    assert checkpoint.key_id in html
    verified = hub.entries("audit.verify")[0].details
    with hub.database.transaction() as session:
        chained = session.scalar(select(func.count()).where(AuditEntry.chain_seq.is_not(None)))
    assert verified["ok"] and 0 < verified["entries_checked"] < (chained or 0) - 5


@pytest.mark.parametrize("path", ["/audit", "/audit/entries/1", "/audit/chain"])
def test_others_are_refused_with_a_page_and_the_refusal_is_audited(
    hub: AuditPagesHub, path: str
) -> None:
    hub.client.cookies.clear()
    hub.sign_in("police1", "police_officer", "police")
    assert 'href="/audit"' not in hub.client.get("/").text
    response = hub.client.get(path)
    assert response.status_code == 403
    assert "You do not have access to the audit log" in response.text
    assert response.headers["cache-control"] == "no-store"
    denied = hub.entries("authz.denied")
    assert len(denied) == 1
    assert denied[0].actor == hub.actor_id("police1")
    assert denied[0].details["reason"] == "role_not_permitted"
    assert hub.entries("audit.query") == [] and hub.entries("audit.verify") == []


def test_signed_out_visitors_are_asked_to_sign_in(hub: AuditPagesHub) -> None:
    hub.client.cookies.clear()
    assert hub.client.get("/audit").status_code == 401
    assert hub.entries("audit.query") == []
