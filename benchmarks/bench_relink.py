"""A full relink against bare Splink on the same plaintext, in the same run (issue #5 item 7).

    nice -n 10 python benchmarks/bench_relink.py --data-dir DIR [--json] [--profile]
        [--incremental 500] [--repeat 1] [--migrate]
    nice -n 10 python benchmarks/bench_relink.py --people 200000 [--data-dir DIR] [--json]

The 1M-record case (builds its own hub once, about 1,000,000 records; later runs reuse it):

    nice -n 10 python benchmarks/bench_relink.py --people 1150000 \\
        --data-dir /tmp/benchload/relink-1150000 --incremental 500 --json

Set-up: ``--data-dir`` with a hub in it (e.g. one made by ``mash-hub demo --no-serve``) is
reused as it is; otherwise (or with no hub there yet) the script builds one: the seeded
synthetic extracts, ingested with worker processes (as ``mash-hub demo`` does, with no cap on
``--people``), then a first full run so the measured one is a relink. Without ``--data-dir``
it builds in a temporary directory deleted at the end.

Each measured phase runs in a fresh child process, so its peak RSS (``wait4``) is that
phase's own: the Python process with its in-process DuckDB, not the PostgreSQL server.

* ``ours``: ``run_linkage`` end to end (decrypt, features, predict, guarded clustering, write
  persons, links, review tasks, events and audit) in one transaction; its own phase timings.
* ``bare``: Splink as a user would run it on plaintext features: a default in-memory DuckDB,
  the same settings (``splink_settings(model.parameters, model.prior)``), ``predict`` at the
  model's review weight, ``cluster_pairwise_predictions_at_threshold`` at its auto weight,
  then the cluster ids COPYed into a PostgreSQL table (a scratch database on the same server,
  dropped at the end), so both sides write an index. Its input is exported by a third child
  (the hub's own decryption and features, timed, audited) and handed over through a pipe as
  an Arrow stream: bare Splink would need the plaintext at rest; here it never touches disk.

Ratios are ours / bare, overall and per comparable phase, plus ours / (bare + our feature
building), the fairer figure when bare Splink would have to standardise too. With a
``truth.csv`` found (or ``--truth``) both sides are scored against ground truth.
``--profile`` runs one more relink under cProfile and lists the top costs; ``--incremental N``
times linking N sampled records again (ours: ``link_records`` in a transaction rolled back;
bare: ``predict_between`` + ``predict_within`` on a warm linker, scoring only).
Timings are wall-clock on a shared machine: noisy. Not part of the test run.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import os
import pstats
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, create_engine, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ACTOR = "bench:relink"
MARKER = "bench-relink.json"
EXTRACTS = "bench-extracts"
BARE_URL_VARIABLE = "BENCH_RELINK_BARE_URL"
SAMPLE_SEED = 7
SINGLES = 20


def _mb(kilobytes: float) -> float:
    return round(kilobytes / 1024, 1)


def _self_rss_mb() -> float:
    return _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _emit(report_fd: int, document: dict[str, Any]) -> None:
    with os.fdopen(report_fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle)


def _load_model(path: Path | None) -> Any:
    from mash_hub.matching.model import LinkageModel, model_path  # noqa: PLC0415
    from mash_hub.settings import get_settings  # noqa: PLC0415

    cfg = get_settings()
    return LinkageModel.load(path or model_path(cfg.data_dir, cfg.linkage_model))


@contextmanager
def _hub() -> Iterator[tuple[Any, Any]]:
    """The data dir's database and a store with its keys (one per child)."""
    from mash_hub.crypto.keystore import load_key_provider  # noqa: PLC0415
    from mash_hub.db.engine import database  # noqa: PLC0415
    from mash_hub.persons.store import PersonStore  # noqa: PLC0415
    from mash_hub.settings import get_settings  # noqa: PLC0415

    # Every model module, so the ORM can resolve foreign keys (the CLI imports them all too).
    importlib.import_module("mash_hub.db.models")
    cfg = get_settings()
    with database(cfg) as db:
        yield db, PersonStore.from_provider(load_key_provider(cfg, create_dev_keys=False))


# -- children ------------------------------------------------------------------------------


def child_ours(args: argparse.Namespace) -> dict[str, Any]:
    """One full run, exactly as ``mash-hub link run`` does it."""
    from mash_hub.matching.service import run_linkage  # noqa: PLC0415

    model = _load_model(args.model)
    _preimport()
    with _hub() as (db, store):
        rss_ready = _self_rss_mb()
        report = run_linkage(db, store, model, actor=ACTOR)
    return {"report": report.as_dict(), "rss_ready_mb": rss_ready}


def _preimport() -> None:
    """Import what the run imports lazily, so neither side's clock includes imports (the
    bare child imports Splink before its clock starts too)."""
    for module in ("duckdb", "pyarrow", "splink"):
        importlib.import_module(module)


def child_profile(args: argparse.Namespace) -> dict[str, Any]:
    """One full run under cProfile: the functions that cost most (names only)."""
    from mash_hub.matching.service import run_linkage  # noqa: PLC0415

    model = _load_model(args.model)
    _preimport()
    profiler = cProfile.Profile()
    with _hub() as (db, store):
        profiler.enable()
        report = run_linkage(db, store, model, actor=ACTOR)
        profiler.disable()
    profile = pstats.Stats(profiler).get_stats_profile()
    rows: list[dict[str, Any]] = [
        {
            "function": f"{Path(p.file_name).parent.name}/{Path(p.file_name).name}:"
            f"{p.line_number}({name})",
            "calls": p.ncalls,
            "own_s": round(p.tottime, 2),
            "cumulative_s": round(p.cumtime, 2),
        }
        for name, p in profile.func_profiles.items()
    ]
    top = args.profile_top
    return {
        "report": report.as_dict(),
        "by_own_time": sorted(rows, key=lambda r: float(r["own_s"]), reverse=True)[:top],
        "by_cumulative_time": sorted(rows, key=lambda r: float(r["cumulative_s"]), reverse=True)[
            :top
        ],
    }


def child_export(args: argparse.Namespace) -> dict[str, Any]:
    """Decrypt every current record and build its features as the full run does (the same
    stream and feature builder), streaming them as Arrow record batches to stdout (a pipe to
    the bare child); audited like any read."""
    import pyarrow as pa  # type: ignore[import-untyped]  # noqa: PLC0415

    from mash_hub.audit import AuditEvent  # noqa: PLC0415
    from mash_hub.audit import record as audit  # noqa: PLC0415
    from mash_hub.matching.duck import feature_table  # noqa: PLC0415
    from mash_hub.matching.features import FeatureBuilder  # noqa: PLC0415
    from mash_hub.matching.service import GROUPS, READ_BATCH  # noqa: PLC0415
    from mash_hub.persons.models import SourceRecord  # noqa: PLC0415

    # The stream owns the real stdout; anything else printed goes to stderr.
    stream = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    seconds = {"list": 0.0, "decrypt": 0.0, "features": 0.0, "send": 0.0}
    records = 0
    with _hub() as (db, store), db.transaction() as session:
        began = time.perf_counter()
        current = session.scalar(
            select(func.count()).where(
                SourceRecord.is_current.is_(True), SourceRecord.erased_at.is_(None)
            )
        )
        audit(
            session,
            AuditEvent(
                actor=ACTOR,
                action="linkage.benchmark_export",
                subject_type="link_benchmark",
                subject_id=str(uuid.uuid4()),
                details={"records": current, "groups": list(GROUPS), "to": "pipe"},
            ),
        )
        seconds["list"] = time.perf_counter() - began
        writer: Any = None
        builder = FeatureBuilder()
        batches = store.stream_groups(session, GROUPS, batch_size=READ_BATCH)
        while True:
            mark = time.perf_counter()
            batch = next(batches, None)
            seconds["decrypt"] += time.perf_counter() - mark
            if batch is None:
                break
            mark = time.perf_counter()
            rows = [builder.row(str(r.id), r.feed, r.groups) for r in batch if r.groups]
            seconds["features"] += time.perf_counter() - mark
            mark = time.perf_counter()
            table = feature_table(rows)
            if writer is None:
                writer = pa.ipc.new_stream(stream, table.schema)
            writer.write_table(table)
            records += len(rows)
            seconds["send"] += time.perf_counter() - mark
        if writer is not None:
            writer.close()
        stream.close()
    return {"records": records, "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def _sample(ids: list[str], n: int) -> list[str]:
    """The records both incremental measurements unlink: the same on both sides."""
    return random.Random(SAMPLE_SEED).sample(sorted(ids), min(n, len(ids)))


def child_bare(args: argparse.Namespace) -> dict[str, Any]:
    """Bare Splink on the plaintext features read from stdin: predict, cluster, COPY."""
    import duckdb  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415
    from splink import DuckDBAPI, Linker  # noqa: PLC0415

    from mash_hub.matching import comparisons as comp  # noqa: PLC0415

    model = _load_model(args.model)
    table = pa.ipc.open_stream(sys.stdin.buffer).read_all()
    rss_loaded = _self_rss_mb()
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    con = duckdb.connect(":memory:")  # Splink's default: in memory, may spill to a temp dir
    api = DuckDBAPI(connection=con)
    sdf = api.register(table, dataset_display_name="records")
    linker = Linker(sdf, comp.splink_settings(model.parameters, model.prior), log_level=None)
    seconds["load"] = time.perf_counter() - began
    mark = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_weight=model.thresholds.review)
    seconds["predict"] = time.perf_counter() - mark
    mark = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_weight=model.thresholds.auto
    )
    seconds["cluster"] = time.perf_counter() - mark
    mark = time.perf_counter()
    written = _copy_clusters(con, clusters.physical_name, os.environ[BARE_URL_VARIABLE])
    seconds["write"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - began
    pairs = con.execute(f"SELECT count(*) FROM {predictions.physical_name}").fetchall()
    result: dict[str, Any] = {
        "records": table.num_rows,
        "pairs_at_or_above_review": int(pairs[0][0]),
        "clusters_written": written,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "rss_loaded_mb": rss_loaded,
        "peak_rss_mb": _self_rss_mb(),  # before the incremental part below
    }
    if args.incremental:
        result["incremental"] = _bare_incremental(api, linker, table, args.incremental)
    return result


def _copy_clusters(con: Any, physical_name: str, url: str) -> int:
    """Write ``record id -> cluster id`` to PostgreSQL with COPY, in one transaction."""
    engine = create_engine(url)
    raw: Any = engine.raw_connection()
    written = 0
    try:
        cursor = raw.driver_connection.cursor()
        cursor.execute("DROP TABLE IF EXISTS bare_cluster_index")
        cursor.execute(
            "CREATE TABLE bare_cluster_index (record_id uuid PRIMARY KEY, cluster_id uuid NOT NULL)"
        )
        result = con.execute(f"SELECT unique_id, cluster_id FROM {physical_name}")
        with cursor.copy("COPY bare_cluster_index (record_id, cluster_id) FROM STDIN") as copy:
            while chunk := result.fetchmany(50_000):
                for row in chunk:
                    copy.write_row(row)
                written += len(chunk)
        raw.driver_connection.commit()
    finally:
        raw.close()
        engine.dispose()
    return written


def _bare_incremental(api: Any, linker: Any, table: Any, n: int) -> dict[str, Any]:
    """New records scored against the rest on a warm linker (no clustering, no writing)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # type: ignore[import-untyped]  # noqa: PLC0415

    chosen = _sample(table["unique_id"].to_pylist(), n)
    mask = pc.is_in(table["unique_id"], value_set=pa.array(chosen))
    existing = api.register(table.filter(pc.invert(mask)), dataset_display_name="existing")
    new = table.filter(mask)
    by_id = {row["unique_id"]: i for i, row in enumerate(new.select(["unique_id"]).to_pylist())}
    singles = []
    for i, rid in enumerate(chosen[:SINGLES]):
        began = time.perf_counter()
        one = api.register(new.slice(by_id[rid], 1), dataset_display_name=f"single_{i}")
        linker.inference.predict_between(one, existing, warning_mode="never").as_record_list()
        singles.append(time.perf_counter() - began)
    rest = new.filter(pc.invert(pc.is_in(new["unique_id"], value_set=pa.array(chosen[:SINGLES]))))
    began = time.perf_counter()
    batch = api.register(rest, dataset_display_name="batch")
    within = linker.inference.predict_within(batch, warning_mode="never")
    between = linker.inference.predict_between(batch, existing, warning_mode="never")
    pairs = len(within.as_record_list()) + len(between.as_record_list())
    batch_seconds = time.perf_counter() - began
    singles.sort()
    return {
        "records": len(chosen),
        "single_record_ms_median": round(singles[len(singles) // 2] * 1000, 1),
        "single_record_ms_max": round(singles[-1] * 1000, 1),
        "batch_records": rest.num_rows,
        "batch_seconds": round(batch_seconds, 2),
        "batch_ms_per_record": round(batch_seconds * 1000 / max(rest.num_rows, 1), 1),
        "batch_pairs_scored": pairs,
    }


def child_incremental(args: argparse.Namespace) -> dict[str, Any]:
    """Unlink the sampled records in a transaction rolled back at the end and link them again
    with ``link_records``: ``SINGLES`` one at a time, the rest as one batch."""
    from mash_hub.matching.incremental import link_records  # noqa: PLC0415
    from mash_hub.persons.models import SourceRecord  # noqa: PLC0415

    model = _load_model(args.model)
    with _hub() as (db, store), Session(db.engine) as session:
        current = dict(
            session.execute(
                select(SourceRecord.id, SourceRecord.person_id).where(
                    SourceRecord.is_current.is_(True), SourceRecord.erased_at.is_(None)
                )
            ).all()
        )
        chosen = [uuid.UUID(r) for r in _sample([str(r) for r in current], args.incremental)]
        session.execute(update(SourceRecord), [{"id": r, "person_id": None} for r in chosen])
        singles = []
        for rid in chosen[:SINGLES]:
            began = time.perf_counter()
            link_records(session, store, model, [rid], actor=ACTOR)
            singles.append(time.perf_counter() - began)
        began = time.perf_counter()
        batch = link_records(session, store, model, chosen[SINGLES:], actor=ACTOR)
        batch_seconds = time.perf_counter() - began
        after = dict(
            session.execute(
                select(SourceRecord.id, SourceRecord.person_id).where(SourceRecord.id.in_(chosen))
            ).all()
        )
        session.rollback()
    singles.sort()
    kept = {p for rid, p in current.items() if rid not in set(chosen)}
    agree = sum(1 for rid in chosen if (after[rid] == current[rid]) == (current[rid] in kept))
    return {
        "records": len(chosen),
        "single_record_ms_median": round(singles[len(singles) // 2] * 1000, 1),
        "single_record_ms_max": round(singles[-1] * 1000, 1),
        "batch_records": len(chosen) - SINGLES,
        "batch_seconds": round(batch_seconds, 2),
        "batch_ms_per_record": round(batch_seconds * 1000 / max(len(chosen) - SINGLES, 1), 1),
        "batch_phases": batch.seconds,
        "batch_candidate_records": batch.candidate_records,
        "agrees_with_full_run": round(agree / max(len(chosen), 1), 4),
    }


CHILDREN = {
    "ours": child_ours,
    "profile": child_profile,
    "export": child_export,
    "bare": child_bare,
    "incremental": child_incremental,
}


# -- the parent ----------------------------------------------------------------------------


class Child:
    """A child process of this script; its report comes back on a pipe, its peak RSS from
    ``wait4`` (so it is measured from outside, up to its exit)."""

    def __init__(
        self,
        kind: str,
        args: argparse.Namespace,
        *,
        stdin: IO[bytes] | int | None = None,
        stdout: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        read_fd, write_fd = os.pipe()
        command = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
        command += ["--report-fd", str(write_fd), "--incremental", str(args.incremental)]
        command += ["--profile-top", str(args.profile_top)]
        if args.model:
            command += ["--model", str(args.model)]
        self.kind = kind
        self.began = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdin=stdin, stdout=stdout, pass_fds=(write_fd,), env=env
        )
        os.close(write_fd)
        self._report = os.fdopen(read_fd, "r", encoding="utf-8")

    def finish(self) -> dict[str, Any]:
        text_ = self._report.read()
        self._report.close()
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        if self.process.returncode != 0 or not text_:
            raise SystemExit(f"the {self.kind} child failed (exit {self.process.returncode})")
        report: dict[str, Any] = json.loads(text_)
        report["wall_seconds"] = round(time.perf_counter() - self.began, 2)
        report["peak_rss_mb_at_exit"] = _mb(usage.ru_maxrss)
        # A child that measures more after its main phase reports that phase's peak itself.
        report.setdefault("peak_rss_mb", report["peak_rss_mb_at_exit"])
        return report


def run_bare(args: argparse.Namespace, bare_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The export child feeds the bare child through a pipe; the bare child's clock starts
    once it holds the whole input."""
    export = Child("export", args, stdout=subprocess.PIPE)
    assert export.process.stdout is not None
    env = {**os.environ, BARE_URL_VARIABLE: bare_url}
    bare = Child("bare", args, stdin=export.process.stdout, env=env)
    export.process.stdout.close()
    return export.finish(), bare.finish()


def _ratio(ours: float, bare: float) -> float | None:
    return round(ours / bare, 2) if bare > 0 else None


def ratios(ours: dict[str, Any], export: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    """ours / bare per comparable phase, and against bare plus our feature building."""
    mine, theirs = ours["report"]["seconds"], bare["seconds"]
    return {
        "time_total": _ratio(mine["total"], theirs["total"]),
        "time_total_vs_bare_plus_features": _ratio(
            mine["total"], theirs["total"] + export["seconds"]["features"]
        ),
        "predict": _ratio(mine["predict"], theirs["predict"]),
        "cluster": _ratio(mine["cluster"], theirs["cluster"]),
        "write": _ratio(mine["write"], theirs["write"]),
        "peak_rss": _ratio(ours["peak_rss_mb"], bare["peak_rss_mb"]),
    }


def _plain_engine(db: Any, database_name: str | None = None) -> Engine:
    """An engine on the hub's server as the connecting user (not the app role)."""
    url = db.engine.url if database_name is None else db.engine.url.set(database=database_name)
    return create_engine(url, isolation_level="AUTOCOMMIT")


@contextmanager
def scratch_database(db: Any) -> Iterator[str]:
    """A database for bare Splink's index next to the hub's, dropped afterwards."""
    name = f"bench_relink_bare_{uuid.uuid4().hex[:8]}"
    admin = _plain_engine(db)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield db.engine.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def build_hub(data_dir: Path, people: int, seed: int) -> dict[str, Any]:
    """Generate the extracts and ingest them with worker processes (as ``mash-hub demo``)."""
    from mash_hub.crypto.keystore import load_key_provider  # noqa: PLC0415
    from mash_hub.db import migrate  # noqa: PLC0415
    from mash_hub.db.engine import database  # noqa: PLC0415
    from mash_hub.feeds.definition import feed_folders, get_feed  # noqa: PLC0415
    from mash_hub.feeds.ingest import PreparePool, ingest_file  # noqa: PLC0415
    from mash_hub.persons.store import PersonStore  # noqa: PLC0415
    from mash_hub.settings import get_settings  # noqa: PLC0415
    from mash_hub.synth import EXTRACT_FILES, generate  # noqa: PLC0415

    cfg = get_settings()
    extracts = data_dir / EXTRACTS
    extracts.mkdir(mode=0o700, parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    mark = time.perf_counter()
    summary = generate(people=people, seed=seed, out_dir=extracts)
    seconds["synth"] = round(time.perf_counter() - mark, 1)
    store = PersonStore.from_provider(load_key_provider(cfg, create_dev_keys=True))
    folders = feed_folders([cfg.feeds_dir])
    workers = max(1, min(os.cpu_count() or 1, 4))
    quarantined = 0
    with database(cfg) as db:
        migrate.upgrade(db.engine)
        for feed, name in EXTRACT_FILES.items():
            mark = time.perf_counter()
            definition = get_feed(feed, folders)
            with PreparePool(store, definition, workers) as pool:
                report = ingest_file(db, store, definition, extracts / name, actor=ACTOR, pool=pool)
            quarantined += report.quarantined
            seconds[f"ingest_{feed}"] = round(time.perf_counter() - mark, 1)
    marker = {"people": people, "seed": seed, "records_in_extracts": sum(summary.records.values())}
    (data_dir / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    return {**marker, "quarantined": quarantined, "seconds": seconds}


def _has_hub(data_dir: Path) -> bool:
    return (data_dir / "keyring.json").is_file() and (data_dir / "postgres").is_dir()


def _truth(data_dir: Path, configured: Path | None) -> Path | None:
    for candidate in (
        configured,
        data_dir / EXTRACTS / "truth.csv",
        data_dir / "demo" / "extracts" / "truth.csv",
    ):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _check_schema(db: Any, migrate_ok: bool) -> None:
    from mash_hub.db import migrate  # noqa: PLC0415

    with db.engine.connect() as connection:
        current = migrate.current_revision(connection)
    head = migrate.head_revision()
    if current == head:
        return
    if not migrate_ok:
        raise SystemExit(
            f"the hub's database is at revision {current}, the code at {head}: pass --migrate "
            "to upgrade it (as any mash-hub command on the embedded default would)"
        )
    migrate.upgrade(db.engine)


def evaluate_both(db: Any, truth_csv: Path, bare_url: str) -> dict[str, Any]:
    """Both indexes against ground truth (record ids mapped through keyed source keys)."""
    from mash_hub.crypto.keystore import load_key_provider  # noqa: PLC0415
    from mash_hub.matching.evaluate import evaluate  # noqa: PLC0415
    from mash_hub.matching.service import evaluate_current, truth_by_record  # noqa: PLC0415
    from mash_hub.persons.store import PersonStore  # noqa: PLC0415
    from mash_hub.settings import get_settings  # noqa: PLC0415

    store = PersonStore.from_provider(load_key_provider(get_settings(), create_dev_keys=False))
    ours = evaluate_current(db, store, truth_csv)
    with db.transaction() as session:
        truth = truth_by_record(session, store, truth_csv)
    engine = create_engine(make_url(bare_url))
    with engine.connect() as connection:
        bare_index = {
            str(rid): str(cluster)
            for rid, cluster in connection.execute(
                text("SELECT record_id, cluster_id FROM bare_cluster_index")
            )
        }
    engine.dispose()
    keep = ("cluster", "false_merge_people", "split_people", "predicted_people", "true_people")
    bare = evaluate(bare_index, truth)
    return {
        "ours": {k: ours[k] for k in (*keep, "review_queue_share")},
        "bare": {k: bare[k] for k in keep},
    }


def _best(runs: list[dict[str, Any]], key: Any) -> dict[str, Any]:
    return min(runs, key=key)


def measure(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    from mash_hub.db.engine import database  # noqa: PLC0415
    from mash_hub.persons.models import SourceRecord  # noqa: PLC0415
    from mash_hub.settings import get_settings  # noqa: PLC0415

    result: dict[str, Any] = {"data_dir": str(data_dir)}
    if not _has_hub(data_dir):
        if not args.people:
            raise SystemExit(f"no hub in {data_dir}: pass --people N to build one")
        result["built"] = build_hub(data_dir, args.people, args.seed)
    # The parent holds the embedded server for the whole run, so no child pays its start.
    with database(get_settings()) as db:
        _check_schema(db, args.migrate or "built" in result)
        with Session(db.engine) as session:
            current = SourceRecord.is_current.is_(True) & SourceRecord.erased_at.is_(None)
            result["records"] = session.scalar(select(func.count()).where(current))
            unlinked = session.scalar(
                select(func.count()).where(current, SourceRecord.person_id.is_(None))
            )
        if unlinked:
            _say(args, f"first full run ({unlinked:,} records without a person) ...")
            result["first_run"] = Child("ours", args).finish()
        ours_runs, export_runs, bare_runs = [], [], []
        with scratch_database(db) as bare_url:
            for i in range(args.repeat):
                _say(args, f"[{i + 1}/{args.repeat}] export + bare Splink ...")
                export, bare = run_bare(args, bare_url)
                export_runs.append(export)
                bare_runs.append(bare)
                _say(args, f"[{i + 1}/{args.repeat}] ours (run_linkage) ...")
                ours_runs.append(Child("ours", args).finish())
            truth_csv = _truth(data_dir, args.truth)
            if truth_csv is not None and not args.no_evaluate:
                _say(args, "evaluating both against truth ...")
                result["evaluation"] = evaluate_both(db, truth_csv, bare_url)
        result["ours"] = ours_runs
        result["export"] = export_runs
        result["bare"] = bare_runs
        best_ours = _best(ours_runs, lambda r: r["report"]["seconds"]["total"])
        best_bare = _best(bare_runs, lambda r: r["seconds"]["total"])
        best_export = _best(export_runs, lambda r: r["seconds"]["features"])
        result["ratios_best_of_runs"] = ratios(best_ours, best_export, best_bare)
        if args.incremental:
            _say(args, f"incremental: {args.incremental} records ...")
            result["incremental_ours"] = Child("incremental", args).finish()
        if args.profile:
            _say(args, "profiled relink ...")
            result["profile"] = Child("profile", args).finish()
    return result


def _say(args: argparse.Namespace, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def summary_lines(result: dict[str, Any]) -> list[str]:
    ours = min(result["ours"], key=lambda r: r["report"]["seconds"]["total"])
    bare = min(result["bare"], key=lambda r: r["seconds"]["total"])
    export = min(result["export"], key=lambda r: r["seconds"]["features"])
    mine, theirs = ours["report"]["seconds"], bare["seconds"]
    ratio = result["ratios_best_of_runs"]
    lines = [
        f"records: {result['records']:,}  (data dir {result['data_dir']})",
        f"{'phase':<22}{'ours s':>10}{'bare s':>10}{'ours/bare':>11}",
        f"{'decrypt + features':<22}{mine['read_and_features']:>10}{'-':>10}{'':>11}",
        f"{'  of which features':<22}{export['seconds']['features']:>10}{'-':>10}{'':>11}",
        f"{'load into DuckDB':<22}{'-':>10}{theirs['load']:>10}{'':>11}",
        f"{'predict':<22}{mine['predict']:>10}{theirs['predict']:>10}{ratio['predict']!s:>11}",
        f"{'cluster':<22}{mine['cluster']:>10}{theirs['cluster']:>10}{ratio['cluster']!s:>11}",
        f"{'write':<22}{mine['write']:>10}{theirs['write']:>10}{ratio['write']!s:>11}",
        f"{'total':<22}{mine['total']:>10}{theirs['total']:>10}{ratio['time_total']!s:>11}",
        f"{'peak RSS MB':<22}{ours['peak_rss_mb']:>10}{bare['peak_rss_mb']:>10}"
        f"{ratio['peak_rss']!s:>11}",
        f"ours / (bare + features): {ratio['time_total_vs_bare_plus_features']}",
        f"export (decrypt {export['seconds']['decrypt']} s, features "
        f"{export['seconds']['features']} s), peak RSS {export['peak_rss_mb']} MB",
    ]
    for side in ("ours", "bare"):
        if "evaluation" in result:
            e = result["evaluation"][side]
            lines.append(
                f"{side} vs truth: P/R/F1 {e['cluster']['precision']}/{e['cluster']['recall']}/"
                f"{e['cluster']['f1']}, false-merge people {e['false_merge_people']}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse (or build) a hub here")
    parser.add_argument("--people", type=int, default=0, help="build a hub of N people if none")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--model", type=Path, default=None, help="default: the hub's model")
    parser.add_argument("--truth", type=Path, default=None, help="default: found in the data dir")
    parser.add_argument("--repeat", type=int, default=1, help="measure both sides N times")
    parser.add_argument("--incremental", type=int, default=0, help="also time N records")
    parser.add_argument("--profile", action="store_true", help="one more relink, profiled")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--migrate", action="store_true", help="upgrade an older hub's schema")
    parser.add_argument("--no-evaluate", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--report-fd", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _emit(args.report_fd, CHILDREN[args.child](args))
        return
    if args.data_dir is None and not args.people:
        parser.error("give --data-dir (a hub to reuse) or --people (to build one)")
    temporary = None
    data_dir = args.data_dir
    if data_dir is None:
        temporary = Path(tempfile.mkdtemp(prefix="mash-bench-relink-"))
        data_dir = temporary
    data_dir = data_dir.resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["MASH_DATA_DIR"] = str(data_dir)
    try:
        result = measure(args, data_dir)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(summary_lines(result)))


if __name__ == "__main__":
    main()
