"""The full authorisation matrix through HTTP, generated from the policy.

The same reference as ``test_matrix.py`` (pycasbin's own ``enforce()`` on the baseline files),
but every role x agency, with and without break-glass, asks ``GET /api/v1/persons/{id}`` with
its own hub-issued token (an API key for the partner role): a field group of a source is in
the JSON exactly when the policy allows it, and its synthetic value appears nowhere else.
One person with one record per source; one request per role x agency x break-glass.
Lists assembled from other tables follow the same rule: the person's referrals (reference,
role, status, RAG) appear exactly when ``details.referral`` of referral records is allowed.
"""

from __future__ import annotations

from pathlib import Path

from mash_hub.authz.vocabulary import AGENCIES, ROLES
from mash_hub.db.engine import Database
from mash_hub.persons.store import QUALITY
from tests.authz.conftest import add_referral
from tests.authz.test_matrix import expected, may_break_glass, may_view
from tests.web.test_persons_api import GLASS, PURPOSE, PersonsHub, assert_problem


def test_every_field_group_is_in_the_json_exactly_when_the_policy_allows_it(
    committing_database: Database, tmp_path: Path
) -> None:
    hub = PersonsHub(committing_database, tmp_path)
    household = hub.household
    reference = "MASH/2026/00417"
    with committing_database.transaction() as session:
        add_referral(session, [household.records["referral"]], reference)
    refusals: list[dict[str, object]] = []
    checked = 0
    for role in ROLES:
        for agency in AGENCIES:
            for glass in (False, True):
                response = hub.view(role, agency, GLASS if glass else PURPOSE)
                where = (role, agency, glass)
                allowed = may_view(role, agency) and (not glass or may_break_glass(role, agency))
                if not allowed:
                    body = assert_problem(response, 403)
                    refusals.append({k: v for k, v in body.items() if k != "request_id"})
                    for value in household.values.values():
                        assert value not in response.text, where
                    continue
                assert response.status_code == 200, (where, response.text)
                body = response.json()
                assert body["break_glass"] is glass, where
                allowed_groups = expected(role, agency, glass=glass)
                # The quality group is never decrypted for a view: it is shown as a count.
                want = {source: groups - {QUALITY} for source, groups in allowed_groups.items()}
                shown = {
                    source: {group for record in records for group in record["groups"]}
                    for source, records in body["sources"].items()
                }
                assert shown == want, where
                for source, records in body["sources"].items():
                    counted = QUALITY in allowed_groups[source]
                    assert all((r.get("failed_values") is not None) == counted for r in records), (
                        where
                    )
                sees_referral = "details.referral" in want.get("referral", set())
                listed = [r["reference"] for r in body["referrals"]]
                assert listed == ([reference] if sees_referral else []), where
                assert (reference in response.text) == sees_referral, where
                for source, records in body["sources"].items():
                    assert [r["record_id"] for r in records] == [str(household.records[source])], (
                        where
                    )
                for (source, group), value in household.values.items():
                    allowed_here = group in want.get(source, set())
                    assert (value in response.text) == allowed_here, (where, source, group)
                    if allowed_here:
                        (record,) = body["sources"][source]
                        assert record["groups"][group] == {"value": value}, where
                    checked += 1
    # Every refusal looks the same, whoever asked and why.
    assert refusals
    assert all(r == refusals[0] for r in refusals)
    assert checked > 0
    # One person.view entry per successful request, one authz.denied per refusal.
    views = hub.audit("person.view")
    denied = hub.audit("authz.denied")
    assert len(views) + len(denied) == len(ROLES) * len(AGENCIES) * 2
    assert len(denied) == len(refusals)
