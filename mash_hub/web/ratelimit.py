"""Rate limits shared by every server process, as token buckets in PostgreSQL.

Each key (a principal's id, or a client IP for failed authentication) has a bucket of
``per_minute`` tokens refilled continuously; a request takes one. The buckets live in the
``rate_limit_buckets`` table, so ``serve --workers N`` (or several hosts on one database)
share one limit instead of multiplying it. A take is one atomic upsert, committed without
waiting for the disk (``synchronous_commit = off``, set by the same statement): after a crash
a bucket may forget its last few takes, which only makes the limit briefly kinder.

An API request takes its token inside its short authentication transaction (the caller's
session: one connection, one commit, for the user look-up and the take), never inside the
transaction of the work it asks for: that one may roll back (a failed search, a timeout),
and a take rolled back with it would let failing requests through the limit; it may also
run long, and the bucket's row stays locked until the take commits. Callers without such a
transaction (the pages) take in one of its own.
Keys are stored as SHA-256 digests (an IP address or user id is not needed in clear), and
buckets idle long enough to be full again are deleted now and then.
"""

from __future__ import annotations

import hashlib
import math
import random

from sqlalchemy import text
from sqlalchemy.orm import Session

from mash_hub.db.engine import Database

# Idle buckets older than this are full again (every limit refills within a minute) and are
# deleted on about one take in PRUNE_ONE_IN.
IDLE_SECONDS = 600
PRUNE_ONE_IN = 500

_TAKE = text(
    """
    WITH now AS (
        SELECT clock_timestamp() AS at, set_config('synchronous_commit', 'off', true) AS sync
    )
    INSERT INTO rate_limit_buckets AS b (limiter, key_hash, tokens, refreshed_at, granted)
    SELECT :limiter, :key_hash, :capacity - 1, now.at, true FROM now
    ON CONFLICT (limiter, key_hash) DO UPDATE SET
        tokens = CASE
            WHEN least(:capacity, b.tokens
                       + extract(epoch FROM excluded.refreshed_at - b.refreshed_at) * :rate) >= 1
            THEN least(:capacity, b.tokens
                       + extract(epoch FROM excluded.refreshed_at - b.refreshed_at) * :rate) - 1
            ELSE least(:capacity, b.tokens
                       + extract(epoch FROM excluded.refreshed_at - b.refreshed_at) * :rate)
        END,
        granted = least(:capacity, b.tokens
                        + extract(epoch FROM excluded.refreshed_at - b.refreshed_at) * :rate) >= 1,
        refreshed_at = excluded.refreshed_at
    RETURNING tokens, granted
    """
)
_PRUNE = text(
    "DELETE FROM rate_limit_buckets "
    "WHERE refreshed_at < clock_timestamp() - make_interval(secs => :idle)"
)


class RateLimiter:
    """One named limit (``api`` per principal, ``auth_failures`` per IP) over the shared
    buckets."""

    def __init__(self, database: Database, name: str, per_minute: int) -> None:
        self.database = database
        self.name = name
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)

    def take(self, key: str, session: Session | None = None) -> int | None:
        """None when allowed (one token taken); else whole seconds until one is available.

        With ``session`` the take is made in that (short) transaction and commits with it;
        without, in a transaction of its own."""
        digest = hashlib.sha256(f"{self.name}\x00{key}".encode()).digest()
        params = {
            "limiter": self.name,
            "key_hash": digest,
            "capacity": self.capacity,
            "rate": self.rate,
        }
        prune = random.randrange(PRUNE_ONE_IN) == 0  # noqa: S311 (not a secret)
        if session is not None:
            tokens, granted = session.execute(_TAKE, params).one()
            if prune:
                session.execute(_PRUNE, {"idle": IDLE_SECONDS})
        else:
            with self.database.engine.connect() as connection:
                tokens, granted = connection.execute(_TAKE, params).one()
                if prune:
                    connection.execute(_PRUNE, {"idle": IDLE_SECONDS})
                connection.commit()
        if granted:
            return None
        return max(1, math.ceil((1.0 - float(tokens)) / self.rate))
