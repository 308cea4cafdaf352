"""Signing checkpoints: on demand (``mash-hub audit checkpoint``) and periodically (``serve``)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from mash_hub.audit import checkpoint as cp_file
from mash_hub.audit.checkpoint import Checkpoint
from mash_hub.audit.log import chain_pending
from mash_hub.audit.models import AuditCheckpoint
from mash_hub.audit.verify import Problem, verify_chain
from mash_hub.crypto.signing import AuditSigningKey
from mash_hub.db.engine import Database

log = logging.getLogger(__name__)


class AuditTamperedError(RuntimeError):
    """The log failed verification, so no checkpoint was signed."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def create_checkpoint(
    db: Database,
    key: AuditSigningKey,
    directory: Path,
    *,
    skip_if_unchanged: bool = False,
) -> Checkpoint | None:
    """Chain what is committed, verify the entries since the newest valid checkpoint, then
    sign and export the head.

    Refuses (:class:`AuditTamperedError`) to sign a head that does not verify, so a checkpoint
    never vouches for a tampered log. Returns None for an empty log, or with
    ``skip_if_unchanged`` when nothing was appended since the newest checkpoint.
    """
    try:
        existing = cp_file.load_checkpoints(db.engine, directory)
    except cp_file.CheckpointFileError as exc:
        raise AuditTamperedError(Problem(None, "checkpoint_file", str(exc))) from None
    start = cp_file.latest(existing)
    chain_pending(db.engine)
    report = verify_chain(db.engine, checkpoints=existing, verify_key=key, start=start)
    if report.problem is not None:
        raise AuditTamperedError(report.problem)
    if report.last_seq is None or report.head_hash is None:
        return None
    if skip_if_unchanged and start is not None and start.seq == report.last_seq:
        return None
    checkpoint = Checkpoint.sign(key, report.last_seq, report.head_hash, dt.datetime.now(dt.UTC))
    cp_file.append_to_file(directory, checkpoint)
    with db.transaction() as session:
        session.add(
            AuditCheckpoint(
                seq=checkpoint.seq,
                signed_at=checkpoint.signed_at,
                head_hash=checkpoint.head_hash,
                key_id=checkpoint.key_id,
                signature=checkpoint.signature,
            )
        )
    return checkpoint


def start_checkpointer(
    db: Database,
    interval_seconds: float,
    *,
    key: AuditSigningKey,
    directory: Path,
    on_tamper: Callable[[AuditTamperedError], None] | None = None,
) -> Callable[[], None]:
    """Sign a checkpoint every ``interval_seconds`` in a daemon thread; returns ``stop()``.

    ``stop()`` signs nothing more and waits for a checkpoint in progress. Failures are logged
    (a tampered log loudly, every time) and the thread carries on.
    """
    stopping = threading.Event()

    def run() -> None:
        while not stopping.wait(interval_seconds):
            try:
                made = create_checkpoint(db, key, directory, skip_if_unchanged=True)
            except AuditTamperedError as exc:
                log.critical("audit log verification failed; no checkpoint signed: %s", exc)
                if on_tamper is not None:
                    on_tamper(exc)
            except Exception as exc:  # the thread must outlive a database restart
                log.error("audit checkpoint failed (%s)", exc.__class__.__name__)
            else:
                if made is not None:
                    log.info("signed audit checkpoint at seq %d", made.seq)

    thread = threading.Thread(target=run, name="mash-hub-audit-checkpointer", daemon=True)
    if interval_seconds > 0:
        thread.start()

    def stop() -> None:
        stopping.set()
        if thread.is_alive():
            thread.join()

    return stop
