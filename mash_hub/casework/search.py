"""Person search: the persons a typed-in description most probably means, ranked.

``search_persons`` runs in the caller's unit of work and

1. refuses a role that may read no identity group of any source, and a search without a
   purpose of access (each refusal audited as ``authz.denied``, like the person view);
2. standardises the query as ingestion standardises feed records, and looks candidates up in
   the blind indexes (the linkage candidate indexes, plus nickname, short-form and spelling
   variants of the given name, the day/month-swapped date of birth, the given/family-swapped
   name, and, without a date of birth, the deletion index, where a name one letter
   inserted, dropped, changed or swapped from the record's still meets it), so typos,
   nicknames and swapped fields still find the person, with or without a date of birth;
3. decrypts, per source, only the identity groups the caller may see (``identity``,
   ``identifiers``, ``contact`` ∩ the policy's mask) of only the current records the indexes
   found, and scores query-vs-record with the linkage model (:mod:`mash_hub.matching.scorer`):
   the ranking uses nothing the caller could not see;
4. keeps each person's best-scoring record, drops persons the model scores below
   :data:`MIN_WEIGHT` (the evidence says someone else; :data:`NAMES_ONLY_MIN_WEIGHT` for a
   query of names alone, which one slipped name would otherwise leave empty), ranks by
   match weight;
5. writes one ``person.search`` audit entry before anything is returned: the query only as
   the blind-index values it looked up, field names, the purpose, counts and the result
   person ids. If the append fails, the transaction fails and nothing is returned. (The
   entry comes after ranking, unlike the person view's, because the result ids are only
   known then; what was decrypted to rank never leaves the process unless it commits.)

A reason code's explanation is sealed in ``access_justifications`` as the person view seals
it, keyed by the search id: a search is about no single person, so erasing a person does not
shred the explanations of searches that found them (a gap: the table has no search column).

The query's values never reach a log, an exception message or the audit log.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub import audit as audit_log
from mash_hub.audit import AuditEvent
from mash_hub.authz.policy import AccessPolicy, Caller, Decisions
from mash_hub.authz.policy import current_version as current_policy_version
from mash_hub.authz.vocabulary import SOURCES
from mash_hub.casework.view import (
    PURPOSE_REFERRAL_INVALID,
    Purpose,
    referral_purpose_refusal,
    seal_text,
)
from mash_hub.crypto.blind_index import BlindIndexer, IndexTerm
from mash_hub.feeds import standardise as std
from mash_hub.matching import frequencies as term_frequencies
from mash_hub.matching.features import record_features
from mash_hub.matching.incremental import CANDIDATE_INDEXES
from mash_hub.matching.model import LinkageModel, explain, scored_pair
from mash_hub.matching.scorer import PairScore, PairScorer
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, PersonStore

SEARCH_FIELDS: tuple[str, ...] = (
    "given_name",
    "family_name",
    "date_of_birth",
    "postcode",
    "nhs_number",
    "upn",
    "pnc_id",
)
IDENTIFIER_FIELDS: tuple[str, ...] = ("nhs_number", "upn", "pnc_id")
RANK_GROUPS: frozenset[str] = frozenset({IDENTITY, IDENTIFIERS, CONTACT})
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# More candidate records than this and the query is too broad to rank (nothing is decrypted).
MAX_CANDIDATES = 2_000
# Persons scored below this are left out: agreement on a few fields, outweighed by evidence
# that the record is someone else (a sibling at the same address scores about -23).
MIN_WEIGHT = -5.0
# A query of names alone cannot outweigh the prior (about -14) with one slipped name: the
# right person, same first name and a family name one letter out, scores about -8; a short
# first name one letter out (Ivy/Iy) is "clearly different" to the model, which then
# explains the shared family name by household: about -19. Nothing in such a query can say
# "someone else" beyond the names, and its candidates all come from the name indexes (an
# exact name pair, or one slip in one of the names), so it keeps them down to this floor,
# which two clearly different names (about -23) stay below.
NAMES_ONLY_MIN_WEIGHT = -20.0
FIELD_MAX = 100

# The indexes looked up: those mirroring the prediction blocking rules
# (matching.incremental.CANDIDATE_INDEXES), so a search finds what linkage would compare.
SEARCH_INDEXES: tuple[str, ...] = CANDIDATE_INDEXES
# Without a date of birth, also the deletion index, so one slip in the given or the family
# name still finds the person. With one, the date-of-birth index already brings everyone
# born that day, slipped names included, and the deletion terms (about twice the query's
# other terms) would only add namesakes born on other days to decrypt.
SLIP_INDEXES: tuple[str, ...] = ("name_deletion_pair",)
_DOB_INDEXES = ("dob", "family_phonetic_dob", "dob_postcode_district")
_NAME_INDEXES = ("given_family_token", "family_phonetic_dob", "family_phonetic_birth_year")

_QUERY_MESSAGES: Mapping[str, str] = {
    "unknown_field": f"not a search field; use {', '.join(SEARCH_FIELDS)}",
    "not_text": "must be a string",
    "too_long": f"at most {FIELD_MAX} characters",
    "query_empty": f"give at least one of {', '.join(SEARCH_FIELDS)}",
    "query_too_broad": "give an identifier, or at least two of given_name, family_name, "
    "date_of_birth and postcode",
}


@dataclass(frozen=True)
class QueryFault:
    """One problem with a query: the field (None for the query as a whole), a code and a fixed
    message. Never the value."""

    field: str | None
    code: str
    message: str


class InvalidQueryError(ValueError):
    """The query cannot be searched; ``faults`` says which fields and why (no values)."""

    def __init__(self, faults: list[QueryFault]) -> None:
        self.faults = faults
        super().__init__("; ".join(f"{f.field or 'query'}: {f.code}" for f in faults))


class SearchDeniedError(PermissionError):
    """The search was refused and the refusal audited (``authz.denied``); the owner of the
    unit of work should catch this inside the transaction so the entry commits."""

    def __init__(self, reason: str, audit_seq: int) -> None:
        self.reason = reason
        self.audit_seq = audit_seq
        super().__init__(f"search refused: {reason}")


class QueryTooBroadError(ValueError):
    """More candidates than :data:`MAX_CANDIDATES`; audited, nothing decrypted."""

    def __init__(self, candidates: int, audit_seq: int) -> None:
        self.candidates = candidates
        self.audit_seq = audit_seq
        super().__init__(f"{candidates} candidate records: the query is too broad")


@dataclass(frozen=True)
class SearchQuery:
    """A standardised query: display-form names, ISO date, formatted postcode, valid ids."""

    given_name: str | None = None
    family_name: str | None = None
    date_of_birth: str | None = None
    postcode: str | None = None
    nhs_number: str | None = None
    upn: str | None = None
    pnc_id: str | None = None

    def fields(self) -> list[str]:
        """The names of the fields given (what the audit entry may say about the query)."""
        return [name for name in SEARCH_FIELDS if getattr(self, name) is not None]

    def names_only(self) -> bool:
        """Only names given: no date of birth, postcode or identifier to weigh against."""
        return set(self.fields()) <= {"given_name", "family_name"}

    def groups(self) -> dict[str, dict[str, Any]]:
        """The query shaped like a record's decrypted identity groups."""
        addresses = [{"postcode": self.postcode, "current": True}] if self.postcode else []
        return {
            IDENTITY: {
                "given_names": [self.given_name] if self.given_name else [],
                "family_name": self.family_name,
                "other_names": [],
                "date_of_birth": self.date_of_birth,
                "sex": None,
            },
            IDENTIFIERS: {"nhs_number": self.nhs_number, "upn": self.upn, "pnc_id": self.pnc_id},
            CONTACT: {"addresses": addresses},
        }

    def index_fields(self) -> dict[str, Any]:
        given = []
        if self.given_name:
            given = [
                self.given_name,
                *std.given_name_variants(self.given_name),
                *std.given_name_short_forms(self.given_name),
            ]
        return {
            "given_names": given,
            "family_name": self.family_name,
            "date_of_birth": self.date_of_birth,
            "postcodes": [self.postcode] if self.postcode else [],
            "nhs_number": self.nhs_number,
            "upn": self.upn,
            "pnc_id": self.pnc_id,
        }


_STANDARDISERS: Mapping[str, Any] = {
    "given_name": std.clean_name,
    "family_name": std.clean_name,
    "postcode": std.normalise_postcode,
    "nhs_number": std.validate_nhs_number,
    "upn": std.validate_upn,
    "pnc_id": std.validate_pnc_id,
}


UNKNOWN_FIELD = "<unknown>"


def _fault(name: str | None, code: str) -> QueryFault:
    message = _QUERY_MESSAGES.get(code) or std.REASON_CODES.get(code, "not valid")
    return QueryFault(name, code, message)


def standardise_query(raw: Mapping[str, Any], *, today: dt.date | None = None) -> SearchQuery:
    """The query as feed records are standardised, or :class:`InvalidQueryError` naming every
    bad field. Blank values count as absent."""
    # An unknown field is named generically: its name is the caller's, maybe a name.
    faults = [_fault(UNKNOWN_FIELD, "unknown_field") for name in raw if name not in SEARCH_FIELDS]
    values: dict[str, str] = {}
    for name in SEARCH_FIELDS:
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            faults.append(_fault(name, "not_text"))
            continue
        if len(value) > FIELD_MAX:
            faults.append(_fault(name, "too_long"))
            continue
        if not value.strip():
            continue
        try:
            if name == "date_of_birth":
                parsed = std.parse_date(value, today=today)
                standard = parsed.isoformat() if parsed else None
            else:
                standard = _STANDARDISERS[name](value)
        except std.StandardisationError as exc:
            faults.append(_fault(name, exc.code))
            continue
        if standard:
            values[name] = standard
    if faults:
        raise InvalidQueryError(faults)
    if not values:
        raise InvalidQueryError([_fault(None, "query_empty")])
    if len(values) < 2 and not any(name in values for name in IDENTIFIER_FIELDS):
        raise InvalidQueryError([_fault(None, "query_too_broad")])
    return SearchQuery(**values)


def _swapped_day_month(iso: str) -> str | None:
    day_first = dt.date.fromisoformat(iso)
    if day_first.day == day_first.month or day_first.day > 12:
        return None
    return dt.date(day_first.year, day_first.day, day_first.month).isoformat()


def query_terms(indexer: BlindIndexer, query: SearchQuery) -> list[IndexTerm]:
    """The blind-index terms a query looks up (nothing else about the query is kept)."""
    fields = query.index_fields()
    indexes = SEARCH_INDEXES if query.date_of_birth else (*SEARCH_INDEXES, *SLIP_INDEXES)
    terms = indexer.query_terms(fields, indexes=indexes)
    if query.date_of_birth and (swapped := _swapped_day_month(query.date_of_birth)):
        terms += indexer.query_terms({**fields, "date_of_birth": swapped}, indexes=_DOB_INDEXES)
    if query.given_name and query.family_name:
        reversed_names = {
            **fields,
            "given_names": [query.family_name],
            "family_name": query.given_name,
        }
        terms += indexer.query_terms(reversed_names, indexes=_NAME_INDEXES)
    return list(dict.fromkeys(terms))


@dataclass(frozen=True)
class SearchHit:
    """One person: the best-matching record's score and its identity groups the caller may
    see (masked for that record's source)."""

    person_id: uuid.UUID
    match_weight: float
    match_probability: float
    record_id: uuid.UUID
    source: str
    groups: dict[str, dict[str, Any]]
    explanation: str
    records_matched: int


@dataclass(frozen=True)
class SearchResult:
    search_id: uuid.UUID
    policy_version: int | None
    purpose: dict[str, str]
    audit_seq: int
    candidates: int
    results: list[SearchHit] = field(default_factory=list)


def _deny(
    session: Session,
    caller: Caller,
    reason: str,
    decisions: Decisions,
    extra: dict[str, Any] | None = None,
) -> NoReturn:
    seq = audit_log.record(
        session,
        AuditEvent(
            caller.user_id,
            "authz.denied",
            "person_search",
            None,
            {
                "reason": reason,
                "requested": "person.search",
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
                **(extra or {}),
            },
        ),
    )
    raise SearchDeniedError(reason, seq)


def rank_masks(decisions: Decisions, caller: Caller) -> dict[str, frozenset[str]]:
    """Per source, the identity groups the caller may read (sources with none left out)."""
    masks = {source: decisions.mask(caller, source) & RANK_GROUPS for source in SOURCES}
    return {source: groups for source, groups in masks.items() if groups}


def authorise_search(
    session: Session,
    policy: AccessPolicy,
    caller: Caller,
    purpose: Purpose | None,
    *,
    decisions: Decisions | None = None,
) -> tuple[Decisions, dict[str, frozenset[str]], Purpose]:
    """The decisions, the caller's identity masks per source and the purpose, or an audited
    refusal (:class:`SearchDeniedError`): a role that may read no identity group, no purpose,
    a referral purpose that names no open or recently decided referral. ``decisions``: of
    the version the caller has just read in this transaction."""
    if decisions is None:
        decisions = policy.for_session(session)
    masks = rank_masks(decisions, caller)
    if not masks:
        _deny(session, caller, "role_not_permitted", decisions)
    if purpose is None:
        _deny(session, caller, "purpose_missing", decisions)
    # A search names no person yet: the referral must exist and be open or recently decided.
    refusal = referral_purpose_refusal(session, purpose, None)
    if refusal is not None:
        _deny(session, caller, PURPOSE_REFERRAL_INVALID, decisions, refusal)
    return decisions, masks, purpose


def search_persons(  # noqa: PLR0917 - the unit of work's collaborators
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    caller: Caller,
    query: SearchQuery,
    purpose: Purpose | None,
    model: LinkageModel,
    *,
    limit: int = DEFAULT_LIMIT,
    scorer: PairScorer | None = None,
) -> SearchResult:
    """Rank the persons ``query`` may describe, for ``caller`` (see the module docstring)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1-{MAX_LIMIT}")
    # The policy version and the latest full run (whose name frequencies rank) in one go.
    version, run_id = session.execute(
        select(current_policy_version(), term_frequencies.latest_full_run())
    ).one()
    decisions, masks, purpose = authorise_search(
        session, policy, caller, purpose, decisions=policy.for_version(session, version)
    )
    search_id = uuid.uuid4()
    store.align(session)
    terms = query_terms(store.indexer, query)
    candidates = store.current_candidates(session, terms, masks)
    details: dict[str, Any] = {
        "role": caller.role,
        "agency": caller.agency,
        "policy_version": decisions.version,
        "purpose": purpose.audit_fields(),
        "query": {"fields": query.fields(), "terms": sorted([t[0], t[1]] for t in terms)},
        "candidates": len(candidates),
        "limit": limit,
    }
    if purpose.text is not None:
        details["purpose_text"] = seal_text(session, store, search_id, "search", purpose.text)
    if len(candidates) > MAX_CANDIDATES:
        details |= {"outcome": "too_broad", "count": 0, "results": []}
        seq = _audit(session, caller, search_id, details)
        raise QueryTooBroadError(len(candidates), seq)

    # The latest full run's name frequencies: ranked as linkage would score the pair.
    scorer = scorer or model.scorer(term_frequencies.of_run(session, store.keys, run_id))
    query_row = record_features("query", "search", query.groups())
    best: dict[uuid.UUID, tuple[PairScore, uuid.UUID, str, dict[str, dict[str, Any]]]] = {}
    matched: dict[uuid.UUID, int] = {}
    for source, person, stored in _decrypt(session, store, candidates, masks):
        row = record_features(str(stored.id), stored.feed, stored.groups)
        score = scorer.score(query_row, row)
        matched[person] = matched.get(person, 0) + 1
        current = best.get(person)
        if current is None or (-score.match_weight, str(stored.id)) < (
            -current[0].match_weight,
            str(current[1]),
        ):
            best[person] = (score, stored.id, source, stored.groups)
    floor = NAMES_ONLY_MIN_WEIGHT if query.names_only() else MIN_WEIGHT
    ranked = sorted(
        (item for item in best.items() if item[1][0].match_weight >= floor),
        key=lambda item: (-item[1][0].match_weight, str(item[0])),
    )[:limit]
    hits = [
        SearchHit(
            person_id=person,
            match_weight=round(score.match_weight, 2),
            match_probability=round(score.match_probability, 6),
            record_id=record_id,
            source=source,
            groups=groups,
            explanation=explain(scored_pair(score)),
            records_matched=matched[person],
        )
        for person, (score, record_id, source, groups) in ranked
    ]
    details |= {
        "outcome": "ranked",
        "decrypted": sum(matched.values()),
        "count": len(hits),
        "results": [str(hit.person_id) for hit in hits],
    }
    seq = _audit(session, caller, search_id, details)
    return SearchResult(
        search_id=search_id,
        policy_version=decisions.version,
        purpose=purpose.audit_fields(),
        audit_seq=seq,
        candidates=len(candidates),
        results=hits,
    )


def _decrypt(
    session: Session,
    store: PersonStore,
    candidates: list[tuple[uuid.UUID, uuid.UUID, str]],
    masks: Mapping[str, frozenset[str]],
) -> list[tuple[str, uuid.UUID, Any]]:
    """(source, person, stored record) with only the caller's identity groups decrypted: one
    read per distinct set of groups."""
    by_groups: dict[frozenset[str], list[tuple[uuid.UUID, uuid.UUID, str]]] = {}
    for candidate in candidates:
        by_groups.setdefault(masks[candidate[2]], []).append(candidate)
    out = []
    for groups, members in by_groups.items():
        stored = store.read(session, [rid for rid, _, _ in members], sorted(groups))
        out += [
            (source, person, stored[rid])
            for rid, person, source in members
            if rid in stored and stored[rid].groups
        ]
    return out


def _audit(session: Session, caller: Caller, search_id: uuid.UUID, details: dict[str, Any]) -> int:
    return audit_log.record(
        session,
        AuditEvent(caller.user_id, "person.search", "person_search", str(search_id), details),
    )
