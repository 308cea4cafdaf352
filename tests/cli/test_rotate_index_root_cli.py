"""``mash-hub keys rotate-index-root`` as an operator runs it: a subprocess against a fresh
database and keyring, checked in-process against what is on disk afterwards."""

from __future__ import annotations

import json

from sqlalchemy import text

from mash_hub.crypto.keys import LocalKeyringProvider, index_root_fingerprint
from tests.cli.test_keys_and_erase_cli import (
    NHS,
    audit_entries,
    fresh_store,
    hub_database,
    json_output,
    keyring_path,
    prepare_hub,
    refused,
    run_hub,
    seed,
)


def test_rotate_index_root_re_indexes_switches_and_is_audited(hub_env: dict[str, str]) -> None:
    keyring = prepare_hub(hub_env)
    old_root = keyring.index_roots().current
    ids = seed(hub_env, 12)
    before = json_output(run_hub("keys", "status", "--json", env=hub_env))["index_root"]
    assert before["generation"] == 0 and not before["unfinished"]

    report = json_output(
        run_hub("keys", "rotate-index-root", "--batch-size", "5", "--json", env=hub_env)
    )

    roots = LocalKeyringProvider(keyring_path(hub_env)).index_roots()
    assert roots.previous == (old_root,) and roots.pending is None
    assert report["root"] == index_root_fingerprint(roots.current)
    assert report["previous_root"] == index_root_fingerprint(old_root)
    assert report["generation"] == 1 and report["backfilled"] == 12
    assert report["old_rows_deleted"] > 12
    on_disk = json.loads(keyring_path(hub_env).read_text())
    assert "index_root_pending" not in on_disk and len(on_disk["index_root_previous"]) == 1

    store = fresh_store(hub_env)
    with hub_database(hub_env) as db, db.transaction() as session:
        found = store.candidates(session, store.indexer.lookup("nhs_number", NHS))
        stale = session.scalar(text("SELECT count(*) FROM blind_index WHERE index_id < 100"))
    assert found == set(ids) and stale == 0

    starts = audit_entries(hub_env, "keys.rotate_index_root.start")
    finishes = audit_entries(hub_env, "keys.rotate_index_root.finish")
    switches = audit_entries(hub_env, "keys.rotate_index_root.switch")
    batches = audit_entries(hub_env, "keys.rotate_index_root.reindex")
    assert len(starts) == len(finishes) == len(switches) == 1
    assert sum(entry.details["records"] for entry in batches) == 12 and len(batches) == 3
    assert finishes[0].details["generation"] == 1
    raw = json.dumps([e.details for e in (*starts, *finishes, *switches, *batches)])
    assert old_root.hex() not in raw and roots.current.hex() not in raw

    after = json_output(run_hub("keys", "status", "--json", env=hub_env))["index_root"]
    assert after == {
        "current": report["root"],
        "previous_roots": 1,
        "pending": None,
        "database_root": report["root"],
        "database_pending": None,
        "generation": 1,
        "unfinished": False,
    }


def test_rotate_index_root_refuses_keys_from_the_environment(hub_env: dict[str, str]) -> None:
    prepare_hub(hub_env)
    keyring = json.loads(keyring_path(hub_env).read_text())
    primary = keyring["primary"]
    env = {
        **hub_env,
        "MASH_KEKS": f"{primary}:{keyring['keks'][primary]['key']}",
        "MASH_INDEX_ROOT_KEY": keyring["index_root_key"],
    }
    message = " ".join(refused(run_hub("keys", "rotate-index-root", env=env)).split())
    assert "MASH_INDEX_ROOT_KEY" in message and "MASH_KEY_PROVIDER=keyring" in message
    assert keyring["index_root_key"] not in message
