"""Rate limits shared by every server process, as token buckets in PostgreSQL.

Each key (a principal's id, or a client IP for failed authentication) has a bucket of
``per_minute`` tokens refilled continuously; a request takes one. The buckets live in the
``rate_limit_buckets`` table, so ``serve --workers N`` (or several hosts on one database)
share one limit instead of multiplying it. A take is one atomic upsert in its own short
transaction, committed without waiting for the disk (``synchronous_commit = off``): after a
crash a bucket may forget its last few takes, which only makes the limit briefly kinder.
Keys are stored as SHA-256 digests (an IP address or user id is not needed in clear), and
buckets idle long enough to be full again are deleted now and then.
"""

from __future__ import annotations

import hashlib
import math
import random

from sqlalchemy import text

from mash_hub.db.engine import Database

# Idle buckets older than this are full again (every limit refills within a minute) and are
# deleted on about one take in PRUNE_ONE_IN.
IDLE_SECONDS = 600
PRUNE_ONE_IN = 500

_TAKE = text(
    """
    WITH now AS (SELECT clock_timestamp() AS at)
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

    def take(self, key: str) -> int | None:
        """None when allowed (one token taken); else whole seconds until one is available."""
        digest = hashlib.sha256(f"{self.name}\x00{key}".encode()).digest()
        with self.database.engine.connect() as connection:
            connection.execute(text("SET LOCAL synchronous_commit = off"))
            tokens, granted = connection.execute(
                _TAKE,
                {
                    "limiter": self.name,
                    "key_hash": digest,
                    "capacity": self.capacity,
                    "rate": self.rate,
                },
            ).one()
            if random.randrange(PRUNE_ONE_IN) == 0:  # noqa: S311 (not a secret)
                connection.execute(_PRUNE, {"idle": IDLE_SECONDS})
            connection.commit()
        if granted:
            return None
        return max(1, math.ceil((1.0 - float(tokens)) / self.rate))
