"""Who an audit entry's actor was, when they acted: name, role and agency.

Audit entries store a namespaced actor id (``user:<uuid>``, ``client:<uuid>``, ``oidc:<sub>``,
``cli:<login>``) and, for access to personal data, the role and agency in their details.
Auditors need a person's name rather than a uuid, and as it was at the time: a user renamed
or moved to another role since must not rewrite history. Hub users are looked up in
``user_versions``; partner clients by their agency; OIDC and command-line actors keep what
the entry itself recorded.
"""

from __future__ import annotations

import bisect
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.users.models import ApiClient, UserVersion
from mash_hub.users.service import PARTNER_ROLE


@dataclass(frozen=True)
class ActorAtTime:
    """An actor as an auditor reads them. ``name`` is None when the hub does not know one
    (an OIDC subject, a removed client)."""

    kind: str  # hub_user, partner_client, oidc_user, command_line, unknown
    name: str | None
    role: str | None
    agency: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "actor_kind": self.kind,
            "actor_name": self.name,
            "actor_role": self.role,
            "actor_agency": self.agency,
        }


@dataclass(frozen=True)
class AuditedAct:
    """What the resolver needs of an entry: its actor, when, and the details' role/agency."""

    actor: str
    occurred_at: dt.datetime
    details: Mapping[str, Any]


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


class ActorResolver:
    """Describes many entries' actors with one query per kind of actor."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def describe(self, acts: Iterable[AuditedAct]) -> list[ActorAtTime]:
        acts = list(acts)
        user_ids: set[uuid.UUID] = set()
        client_ids: set[uuid.UUID] = set()
        for act in acts:
            kind, _, ident = act.actor.partition(":")
            key = _uuid(ident)
            if key is not None and kind == "user":
                user_ids.add(key)
            elif key is not None and kind == "client":
                client_ids.add(key)
        versions = self._user_versions(user_ids)
        clients = self._client_agencies(client_ids)
        return [self._one(act, versions, clients) for act in acts]

    def _user_versions(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, list[UserVersion]]:
        found: dict[uuid.UUID, list[UserVersion]] = {}
        if not ids:
            return found
        rows = self._session.scalars(
            select(UserVersion)
            .where(UserVersion.user_id.in_(ids))
            .order_by(UserVersion.user_id, UserVersion.valid_from, UserVersion.version)
        )
        for row in rows:
            found.setdefault(row.user_id, []).append(row)
        return found

    def _client_agencies(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not ids:
            return {}
        rows = self._session.execute(
            select(ApiClient.id, ApiClient.agency).where(ApiClient.id.in_(ids))
        )
        return {row.id: row.agency for row in rows}

    @staticmethod
    def _one(
        act: AuditedAct,
        versions: Mapping[uuid.UUID, list[UserVersion]],
        clients: Mapping[uuid.UUID, str],
    ) -> ActorAtTime:
        kind, _, ident = act.actor.partition(":")
        role = act.details.get("role")
        agency = act.details.get("agency")
        recorded_role = role if isinstance(role, str) else None
        recorded_agency = agency if isinstance(agency, str) else None
        key = _uuid(ident)
        if kind == "user" and key is not None and key in versions:
            history = versions[key]
            times = [v.valid_from for v in history]
            index = max(bisect.bisect_right(times, act.occurred_at) - 1, 0)
            then = history[index]
            return ActorAtTime("hub_user", then.name, then.role, then.agency)
        if kind == "client" and key is not None and key in clients:
            return ActorAtTime(
                "partner_client", f"{clients[key]} API client", PARTNER_ROLE, clients[key]
            )
        if kind == "oidc":
            return ActorAtTime("oidc_user", None, recorded_role, recorded_agency)
        if kind == "cli":
            return ActorAtTime("command_line", ident or None, recorded_role, recorded_agency)
        return ActorAtTime("unknown", None, recorded_role, recorded_agency)
