"""Unusual-access report: what auditors and information-governance staff should look at.

Computed in SQL over ``audit_log`` (and ``break_glass_views``; the staff check also reads
``source_records`` and ``blind_index``). Nothing is decrypted: the report holds actors, person
ids, reason codes, counts, times and the audit ``seq`` of every entry behind a finding, so an
auditor can drill in with ``mash-hub audit query``. Every finding is a prompt to ask, not a
verdict. Running the report appends one ``audit.report`` entry holding the window, the rules'
parameters and the finding counts only.

Findings (all over ``person.view`` entries with ``since <= occurred_at < until`` unless said):

1. **Volume outliers.** Views are counted per actor per local day (days with no views do not
   count). A day is flagged when it has at least ``volume_threshold`` views (the floor) and
   exceeds the *peer limit* ``max(3 x M, M + 5 x MAD)`` over all actor-days in the window (M
   the median, MAD the median absolute deviation), or the actor's *own limit*, the same
   formula over that actor's own days (only when the actor has at least ``OWN_BASELINE_DAYS``
   days with views in the window).
2. **Out of hours.** Views on Saturdays and Sundays, or on weekdays before
   ``working_hours[0]``:00 or from ``working_hours[1]``:00 local time (``timezone``, daylight
   saving included). Bank holidays are not modelled: a view on one counts as in hours.
3. **Break-glass.** Every break-glass view, with its review state from ``break_glass_views``
   (a break-glass entry with no such row is reported as ``review_row_missing``).
4. **No related referral.** Views whose purpose is not a valid referral, per actor and code:
   a reason code, or a referral reference that names no referral in ``referrals``, whose
   subjects do not include the viewed person, or that was decided ``PURPOSE_WINDOW_DAYS``
   or more days before the view (code null for those). The person view refuses such
   referrals today; this also catches entries written before it did.
5. **Repeated denials.** Actors with at least ``denial_threshold`` ``authz.denied`` entries
   on one local day (possible probing).
6. **Staff viewing people who share their family name or postcode** (optional; see
   :func:`staff_related_views`): needs each actor's blind-index terms, which only someone
   holding the hub's keys can compute. Blind indexes are truncated HMACs (family-name tokens
   16 bits, postcodes 20 bits), so a match is a candidate that the auditor confirms.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mash_hub.audit.log import AuditEvent, record
from mash_hub.crypto.blind_index import BlindIndexer, IndexTerm
from mash_hub.referrals.linked import PURPOSE_WINDOW

PURPOSE_WINDOW_DAYS = PURPOSE_WINDOW.days

__all__ = [
    "BreakGlassUse",
    "DenialBurst",
    "InvalidAuditArgumentError",
    "OutOfHoursView",
    "StaffRelatedView",
    "StaffTerms",
    "UnreferredViews",
    "UnusualAccessReport",
    "VolumeOutlier",
    "audit_time",
    "check_timezone",
    "staff_related_views",
    "staff_terms",
    "unusual_access",
]

# Times an audit query or report may name: the log holds nothing outside them, and a margin
# from Python's and PostgreSQL's limits keeps window arithmetic (e.g. 30 days before
# ``until``) and time-zone conversion from overflowing.
EARLIEST_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST_TIME = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
# A ``chain_seq`` / ``seq`` is a PostgreSQL bigint.
MAX_SEQ = 2**63 - 1


class InvalidAuditArgumentError(ValueError):
    """An argument of an audit query or report that cannot be used; ``field`` names it and
    ``kind`` says how it is wrong (``range``, ``enum``). The message never quotes the value."""

    def __init__(self, field: str, message: str, kind: str) -> None:
        super().__init__(message)
        self.field = field
        self.kind = kind


def audit_time(value: dt.datetime | None, field: str) -> dt.datetime | None:
    """``value`` in UTC (a naive time is read as UTC), or :class:`InvalidAuditArgumentError`
    outside ``EARLIEST_TIME``-``LATEST_TIME`` (including times that overflow in UTC)."""
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    try:
        utc = aware.astimezone(dt.UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_TIME <= utc < LATEST_TIME:
        raise InvalidAuditArgumentError(
            field,
            f"{field} must be from {EARLIEST_TIME.date()} to before {LATEST_TIME.date()} (UTC)",
            "range",
        )
    return utc


def check_timezone(session: Session, timezone: str) -> None:
    """Refuse a time zone that Python's ``zoneinfo`` or PostgreSQL does not know.

    The two disagree: ``zoneinfo`` opens any file of the system's zone database
    (``posixrules``, ``localtime``, ``right/UTC``), which PostgreSQL refuses in ``AT TIME
    ZONE``. So PostgreSQL is asked too, in a savepoint so a refusal leaves the caller's
    transaction usable."""
    message = "not a time zone known to both the hub and its database (an IANA name)"
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidAuditArgumentError("timezone", message, "enum") from None
    try:
        with session.begin_nested():
            session.execute(text("SELECT now() AT TIME ZONE CAST(:tz AS text)"), {"tz": timezone})
    except DBAPIError:
        raise InvalidAuditArgumentError("timezone", message, "enum") from None


DEFAULT_VOLUME_THRESHOLD = 20
DEFAULT_DENIAL_THRESHOLD = 5
OWN_BASELINE_DAYS = 5
PEER_MEDIAN_FACTOR = 3
MAD_FACTOR = 5
# The blind indexes the staff check compares: exact family-name tokens (not the phonetic
# codes, far too coarse) and full postcodes.
FAMILY_INDEX = "family_token"
POSTCODE_INDEX = "postcode"


@dataclass(frozen=True)
class VolumeOutlier:
    actor: str
    day: dt.date
    views: int
    peer_limit: float
    own_limit: float | None  # None: too few days for an own baseline
    own_median: float
    reasons: list[str]  # "peers" and/or "own"
    seqs: list[int]


@dataclass(frozen=True)
class OutOfHoursView:
    seq: int
    actor: str
    person_id: str | None
    local_time: dt.datetime  # naive, in the report's timezone
    why: str  # "weekend", "before_hours" or "after_hours"


@dataclass(frozen=True)
class BreakGlassUse:
    seq: int
    actor: str
    person_id: str | None
    occurred_at: dt.datetime
    view_id: str | None
    review_required: bool
    review_state: str  # "reviewed", "awaiting_review" or "review_row_missing"
    reviewed_by: str | None
    review_outcome: str | None


@dataclass(frozen=True)
class UnreferredViews:
    actor: str
    code: str | None
    views: int
    seqs: list[int]


@dataclass(frozen=True)
class DenialBurst:
    actor: str
    day: dt.date
    denials: int
    reasons: dict[str, int]
    seqs: list[int]


@dataclass(frozen=True)
class StaffRelatedView:
    seq: int
    actor: str
    person_id: str
    matched: list[str]  # "family_name" and/or "postcode"


@dataclass(frozen=True)
class StaffTerms:
    """One member of staff's blind-index terms (held in memory only, never stored)."""

    family_name: tuple[IndexTerm, ...] = ()
    postcode: tuple[IndexTerm, ...] = ()


def staff_terms(
    indexer: BlindIndexer, *, family_name: str | None, postcode: str | None
) -> StaffTerms:
    """The terms a person record would carry for this family name and postcode."""
    return StaffTerms(
        family_name=tuple(indexer.query_terms({"family_name": family_name}, indexes={FAMILY_INDEX}))
        if family_name
        else (),
        postcode=tuple(indexer.query_terms({"postcode": postcode}, indexes={POSTCODE_INDEX}))
        if postcode
        else (),
    )


@dataclass
class UnusualAccessReport:
    since: dt.datetime
    until: dt.datetime
    timezone: str
    working_hours: tuple[int, int]
    volume_threshold: int
    denial_threshold: int
    volume_outliers: list[VolumeOutlier] = field(default_factory=list)
    out_of_hours: list[OutOfHoursView] = field(default_factory=list)
    break_glass: list[BreakGlassUse] = field(default_factory=list)
    unreferred: list[UnreferredViews] = field(default_factory=list)
    denials: list[DenialBurst] = field(default_factory=list)
    staff_related: list[StaffRelatedView] | None = None  # None: no staff directory given
    audit_seq: int | None = None

    def rules(self) -> dict[str, str]:
        start, end = self.working_hours
        return {
            "volume_outliers": (
                f"person views per actor per local day; flagged when >= {self.volume_threshold} "
                f"and above the peer limit max({PEER_MEDIAN_FACTOR} x median, median + "
                f"{MAD_FACTOR} x MAD) of all actor-days in the window, or above the same limit "
                f"over the actor's own days (actors with >= {OWN_BASELINE_DAYS} active days)"
            ),
            "out_of_hours": (
                f"person views at weekends or on weekdays outside {start:02d}:00-{end:02d}:00 "
                f"{self.timezone} local time; bank holidays are not modelled"
            ),
            "break_glass": "every break-glass person view, with its review state",
            "unreferred": (
                "person views whose purpose is a reason code (code given), or a referral "
                "that does not exist, does not name the viewed person among its subjects or "
                f"was decided {PURPOSE_WINDOW_DAYS}+ days before the view (code null)"
            ),
            "denials": f">= {self.denial_threshold} authz.denied entries by one actor in a day",
            "staff_related": (
                "person views by staff of people whose records share the blind-index value of "
                "the staff member's family-name token or postcode (candidates: the indexes are "
                "truncated); only run with a staff directory"
            ),
        }

    def counts(self) -> dict[str, int | None]:
        return {
            "volume_outliers": len(self.volume_outliers),
            "out_of_hours": len(self.out_of_hours),
            "break_glass": len(self.break_glass),
            "break_glass_unreviewed": sum(
                1 for b in self.break_glass if b.review_state != "reviewed"
            ),
            "unreferred": sum(u.views for u in self.unreferred),
            "denials": len(self.denials),
            "staff_related": None if self.staff_related is None else len(self.staff_related),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-compatible form (dates and times as ISO strings)."""
        document: dict[str, Any] = _jsonable(
            {
                "since": self.since,
                "until": self.until,
                "timezone": self.timezone,
                "working_hours": list(self.working_hours),
                "volume_threshold": self.volume_threshold,
                "denial_threshold": self.denial_threshold,
                "rules": self.rules(),
                "counts": self.counts(),
                "audit_seq": self.audit_seq,
                "findings": {
                    "volume_outliers": [asdict(f) for f in self.volume_outliers],
                    "out_of_hours": [asdict(f) for f in self.out_of_hours],
                    "break_glass": [asdict(f) for f in self.break_glass],
                    "unreferred": [asdict(f) for f in self.unreferred],
                    "denials": [asdict(f) for f in self.denials],
                    "staff_related": None
                    if self.staff_related is None
                    else [asdict(f) for f in self.staff_related],
                },
            }
        )
        return document


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def unusual_access(
    session: Session,
    *,
    actor: str,
    since: dt.datetime,
    until: dt.datetime,
    working_hours: tuple[int, int] = (8, 18),
    timezone: str = "Europe/London",
    volume_threshold: int = DEFAULT_VOLUME_THRESHOLD,
    denial_threshold: int = DEFAULT_DENIAL_THRESHOLD,
    staff: Mapping[str, StaffTerms] | None = None,
    audit_action: str = "audit.report",
    audit_context: Mapping[str, Any] | None = None,
) -> UnusualAccessReport:
    """Every finding of the module docstring for ``[since, until)``, audited as ``audit.report``.

    ``actor`` is who runs the report (for its audit entry). ``staff`` (actor -> terms from
    :func:`staff_terms`) enables the staff-related check; it is used in this query only.
    Callers with their own audit vocabulary (the API's ``audit.unusual``) pass
    ``audit_action``, and ``audit_context`` (ids and codes only) to add to the entry's details.
    """
    _check_arguments(
        since=since,
        until=until,
        working_hours=working_hours,
        volume_threshold=volume_threshold,
        denial_threshold=denial_threshold,
    )
    check_timezone(session, timezone)
    window = {"since": since, "until": until, "tz": timezone}
    report = UnusualAccessReport(
        since=since,
        until=until,
        timezone=timezone,
        working_hours=working_hours,
        volume_threshold=volume_threshold,
        denial_threshold=denial_threshold,
    )
    report.volume_outliers = _volume_outliers(session, window, volume_threshold)
    report.out_of_hours = _out_of_hours(session, window, working_hours)
    report.break_glass = _break_glass(session, window)
    report.unreferred = _unreferred(session, window)
    report.denials = _denials(session, window, denial_threshold)
    if staff is not None:
        report.staff_related = staff_related_views(session, staff, since=since, until=until)
    report.audit_seq = record(
        session,
        AuditEvent(
            actor,
            audit_action,
            details={
                **(audit_context or {}),
                "report": "unusual_access",
                "since": since.astimezone(dt.UTC).isoformat(),
                "until": until.astimezone(dt.UTC).isoformat(),
                "timezone": timezone,
                "working_hours": list(working_hours),
                "volume_threshold": volume_threshold,
                "denial_threshold": denial_threshold,
                "staff_directory_entries": None if staff is None else len(staff),
                "counts": report.counts(),
            },
        ),
    )
    return report


def _check_arguments(
    *,
    since: dt.datetime,
    until: dt.datetime,
    working_hours: tuple[int, int],
    volume_threshold: int,
    denial_threshold: int,
) -> None:
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware")
    audit_time(since, "since")
    audit_time(until, "until")
    if since >= until:
        raise InvalidAuditArgumentError("since", "since must be before until", "range")
    start, end = working_hours
    if not 0 <= start < end <= 24:
        raise ValueError("working hours must satisfy 0 <= start < end <= 24")
    if volume_threshold < 1 or denial_threshold < 1:
        raise ValueError("thresholds must be at least 1")


_VIEWS = """
    SELECT seq, actor, subject_id, occurred_at, details,
           (occurred_at AT TIME ZONE CAST(:tz AS text)) AS local_time
    FROM audit_log
    WHERE action = 'person.view' AND occurred_at >= :since AND occurred_at < :until
"""

_VOLUME = f"""
WITH views AS ({_VIEWS}),
days AS (
    SELECT actor, CAST(local_time AS date) AS day, count(*) AS n,
           array_agg(seq ORDER BY seq) AS seqs
    FROM views GROUP BY actor, CAST(local_time AS date)
),
peer AS (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY n) AS med FROM days),
peer_mad AS (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(d.n - p.med)) AS mad
    FROM days d CROSS JOIN peer p
),
own AS (
    SELECT actor, count(*) AS active_days,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY n) AS med
    FROM days GROUP BY actor
),
own_mad AS (
    SELECT d.actor, percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(d.n - o.med)) AS mad
    FROM days d JOIN own o USING (actor) GROUP BY d.actor
),
limits AS (
    SELECT d.actor, d.day, d.n, d.seqs, o.med AS own_med,
           greatest({PEER_MEDIAN_FACTOR} * p.med, p.med + {MAD_FACTOR} * pm.mad) AS peer_limit,
           CASE WHEN o.active_days >= {OWN_BASELINE_DAYS}
                THEN greatest({PEER_MEDIAN_FACTOR} * o.med, o.med + {MAD_FACTOR} * om.mad)
           END AS own_limit
    FROM days d CROSS JOIN peer p CROSS JOIN peer_mad pm
    JOIN own o USING (actor) JOIN own_mad om USING (actor)
)
SELECT actor, day, n, peer_limit, own_limit, own_med, seqs,
       n > peer_limit AS over_peers, coalesce(n > own_limit, false) AS over_own
FROM limits
WHERE n >= :floor AND (n > peer_limit OR coalesce(n > own_limit, false))
ORDER BY day, actor
"""  # noqa: S608 (only module constants are interpolated; values are bound)


def _volume_outliers(session: Session, window: dict[str, Any], floor: int) -> list[VolumeOutlier]:
    rows = session.execute(text(_VOLUME), {**window, "floor": floor})
    return [
        VolumeOutlier(
            actor=r.actor,
            day=r.day,
            views=r.n,
            peer_limit=float(r.peer_limit),
            own_limit=None if r.own_limit is None else float(r.own_limit),
            own_median=float(r.own_med),
            reasons=[name for name, hit in (("peers", r.over_peers), ("own", r.over_own)) if hit],
            seqs=list(r.seqs),
        )
        for r in rows
    ]


_OUT_OF_HOURS = f"""
WITH views AS ({_VIEWS})
SELECT seq, actor, subject_id, local_time,
       CASE WHEN extract(isodow FROM local_time) >= 6 THEN 'weekend'
            WHEN extract(hour FROM local_time) < :start THEN 'before_hours'
            ELSE 'after_hours' END AS why
FROM views
WHERE extract(isodow FROM local_time) >= 6
   OR extract(hour FROM local_time) < :start
   OR extract(hour FROM local_time) >= :end
ORDER BY seq
"""  # noqa: S608


def _out_of_hours(
    session: Session, window: dict[str, Any], working_hours: tuple[int, int]
) -> list[OutOfHoursView]:
    start, end = working_hours
    rows = session.execute(text(_OUT_OF_HOURS), {**window, "start": start, "end": end})
    return [OutOfHoursView(r.seq, r.actor, r.subject_id, r.local_time, r.why) for r in rows]


_BREAK_GLASS = f"""
WITH views AS ({_VIEWS})
SELECT v.seq, v.actor, v.subject_id, v.occurred_at,
       coalesce(CAST(b.id AS text), v.details->>'break_glass_view_id') AS view_id,
       coalesce(v.details->>'review_required', 'false') = 'true' AS review_required,
       CASE WHEN b.id IS NULL THEN 'review_row_missing'
            WHEN b.reviewed_at IS NULL THEN 'awaiting_review'
            ELSE 'reviewed' END AS review_state,
       b.reviewed_by, b.review_outcome
FROM views v LEFT JOIN break_glass_views b ON b.audit_seq = v.seq
WHERE v.details->>'break_glass' = 'true'
ORDER BY v.seq
"""  # noqa: S608


def _break_glass(session: Session, window: dict[str, Any]) -> list[BreakGlassUse]:
    rows = session.execute(text(_BREAK_GLASS), window)
    return [
        BreakGlassUse(
            seq=r.seq,
            actor=r.actor,
            person_id=r.subject_id,
            occurred_at=r.occurred_at,
            view_id=r.view_id,
            review_required=r.review_required,
            review_state=r.review_state,
            reviewed_by=r.reviewed_by,
            review_outcome=r.review_outcome,
        )
        for r in rows
    ]


_UNREFERRED = f"""
WITH views AS ({_VIEWS})
SELECT actor, details->'purpose'->>'code' AS code, count(*) AS n,
       array_agg(seq ORDER BY seq) AS seqs
FROM views
WHERE NOT EXISTS (
    SELECT 1
    FROM referrals r
    JOIN referral_subjects s ON s.referral_id = r.id
    JOIN source_records sr ON sr.id = s.record_id
    WHERE r.reference = views.details->'purpose'->>'referral'
      AND CAST(sr.person_id AS text) = views.subject_id
      AND (r.decided_at IS NULL
           OR views.occurred_at < r.decided_at + make_interval(days => :purpose_days))
)
GROUP BY actor, details->'purpose'->>'code'
ORDER BY actor, code NULLS FIRST
"""  # noqa: S608


def _unreferred(session: Session, window: dict[str, Any]) -> list[UnreferredViews]:
    rows = session.execute(text(_UNREFERRED), {**window, "purpose_days": PURPOSE_WINDOW_DAYS})
    return [UnreferredViews(r.actor, r.code, r.n, list(r.seqs)) for r in rows]


_DENIALS = """
SELECT actor, CAST(occurred_at AT TIME ZONE CAST(:tz AS text) AS date) AS day, count(*) AS n,
       array_agg(coalesce(details->>'reason', '') ORDER BY seq) AS reasons,
       array_agg(seq ORDER BY seq) AS seqs
FROM audit_log
WHERE action = 'authz.denied' AND occurred_at >= :since AND occurred_at < :until
GROUP BY actor, CAST(occurred_at AT TIME ZONE CAST(:tz AS text) AS date)
HAVING count(*) >= :threshold
ORDER BY day, actor
"""


def _denials(session: Session, window: dict[str, Any], threshold: int) -> list[DenialBurst]:
    rows = session.execute(text(_DENIALS), {**window, "threshold": threshold})
    return [DenialBurst(r.actor, r.day, r.n, dict(Counter(r.reasons)), list(r.seqs)) for r in rows]


_STAFF = """
WITH staff AS (
    SELECT * FROM unnest(CAST(:actors AS text[]), CAST(:kinds AS text[]),
                         CAST(:index_ids AS smallint[]), CAST(:values AS bigint[]))
        AS s(actor, kind, index_id, value)
),
views AS (
    SELECT seq, actor,
           CASE WHEN subject_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN CAST(subject_id AS uuid) END AS person_id
    FROM audit_log
    WHERE action = 'person.view' AND occurred_at >= :since AND occurred_at < :until
      AND actor = ANY(CAST(:actors AS text[]))
)
SELECT v.seq, v.actor, CAST(v.person_id AS text) AS person_id,
       array_agg(DISTINCT s.kind ORDER BY s.kind) AS matched
FROM views v
JOIN source_records r ON r.person_id = v.person_id
JOIN staff s ON s.actor = v.actor
JOIN blind_index b ON b.record_id = r.id AND b.index_id = s.index_id AND b.value = s.value
GROUP BY v.seq, v.actor, v.person_id
ORDER BY v.seq
"""


def staff_related_views(
    session: Session,
    staff: Mapping[str, StaffTerms],
    *,
    since: dt.datetime,
    until: dt.datetime,
) -> list[StaffRelatedView]:
    """Views by each actor of persons whose records carry one of that actor's terms.

    Any version of the person's records counts (what the record said when it was viewed may
    have been superseded since). The terms are bound as query parameters and stored nowhere.
    """
    actors: list[str] = []
    kinds: list[str] = []
    index_ids: list[int] = []
    values: list[int] = []
    for who, terms in staff.items():
        for kind, found in (("family_name", terms.family_name), ("postcode", terms.postcode)):
            for term in found:
                actors.append(who)
                kinds.append(kind)
                index_ids.append(term.index_id)
                values.append(term.value)
    if not actors:
        return []
    rows = session.execute(
        text(_STAFF),
        {
            "actors": actors,
            "kinds": kinds,
            "index_ids": index_ids,
            "values": values,
            "since": since,
            "until": until,
        },
    )
    return [StaffRelatedView(r.seq, r.actor, r.person_id, list(r.matched)) for r in rows]
