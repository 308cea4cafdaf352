"""The one decision point: which field groups of which source a caller may see.

Casbin is the policy language, not the request-time evaluator. :func:`compile_policy` asks
pycasbin's ``enforce()`` every question the hub can ask (role x agency x source x field x
action, over the vocabulary) once per policy version, under a process-wide lock (``enforce()``
is slow, about 0.1-2 ms, and not safe to call concurrently on CPython 3.11), and keeps the
answers as frozen mask tables. At request time a decision is a dict lookup.

:meth:`AccessPolicy.for_session` is called once per unit of work: one cheap query reads the
current published version from ``access_policy_versions``; if this process has not compiled it
yet, it compiles it (from the texts stored with the version) before answering. A policy
published by any process therefore takes effect in every process at its next unit of work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import casbin
from casbin.util import key_match
from casbin.util.log import disabled_logging
from sqlalchemy import ScalarSelect, select
from sqlalchemy.orm import Session

from mash_hub.authz.files import MODEL_FILE, PolicyTexts, Problem, Rule, parse_policy
from mash_hub.authz.models import AccessPolicyVersion
from mash_hub.authz.vocabulary import (
    AGENCIES,
    FIELD_ACTIONS,
    READ,
    READ_BREAK_GLASS,
    RESOURCE_ACTIONS,
    ROLES,
    SOURCES,
    source_fields,
)

EMPTY: frozenset[str] = frozenset()

# pycasbin parses the matcher on every enforce() call; on CPython 3.11 concurrent calls can
# fail ("AST constructor recursion depth mismatch"). Every enforce() in the process holds this.
ENFORCE_LOCK = threading.Lock()

REQUEST_TOKENS = ("r_sub", "r_dom", "r_src", "r_fld", "r_act")
POLICY_TOKENS = ("p_sub", "p_dom", "p_src", "p_fld", "p_act", "p_eft")

# How many compiled versions a process keeps (transactions that began before a publish may
# still ask for the previous version).
_KEEP_VERSIONS = 4


class PolicyError(Exception):
    """A policy that cannot be compiled; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems[:5]))


class PolicyNotPublishedError(RuntimeError):
    """No policy version has been published in this database: everything is denied."""

    def __init__(self) -> None:
        super().__init__("no access policy is published; run `mash-hub policy publish`")


class PolicyIntegrityError(RuntimeError):
    """A stored policy version's texts do not match its recorded SHA-256."""


@dataclass(frozen=True)
class Caller:
    """Who is asking: a member of staff (or partner client) with one role in one agency."""

    user_id: str
    role: str
    agency: str


MaskKey = tuple[str, str, str]  # (role, agency, source)


@dataclass(frozen=True)
class Decisions:
    """One compiled policy version. Immutable, so any number of threads may read it."""

    version: int | None
    sha256: str
    read: Mapping[MaskKey, frozenset[str]]
    break_glass: Mapping[MaskKey, frozenset[str]]  # read plus read_break_glass
    break_glass_callers: frozenset[tuple[str, str]]  # (role, agency) with any read_break_glass
    actions: Mapping[tuple[str, str], frozenset[str]]  # (role, agency) -> resource actions
    compile_seconds: float = field(default=0.0, compare=False)
    # Each field action's own mask (read, read_break_glass, subject_access, ...), by action.
    field_actions: Mapping[str, Mapping[MaskKey, frozenset[str]]] = field(default_factory=dict)

    def mask(self, caller: Caller, source: str, *, break_glass: bool = False) -> frozenset[str]:
        """The field groups of ``source`` records the caller may see; empty if unknown."""
        table = self.break_glass if break_glass else self.read
        return table.get((caller.role, caller.agency, source), EMPTY)

    def action_mask(self, caller: Caller, source: str, action: str) -> frozenset[str]:
        """The groups of ``source`` records the caller may use for one field ``action`` alone
        (e.g. ``subject_access``); unlike :meth:`mask`, break-glass is not added to read."""
        return self.field_actions.get(action, {}).get((caller.role, caller.agency, source), EMPTY)

    def may_break_glass(self, caller: Caller) -> bool:
        return (caller.role, caller.agency) in self.break_glass_callers

    def may_view_persons(self, caller: Caller) -> bool:
        """Whether the role may see any person field group at all (with or without break-glass)."""
        return self.may_break_glass(caller) or any(
            self.read.get((caller.role, caller.agency, source)) for source in SOURCES
        )

    def allows(self, caller: Caller, action: str) -> bool:
        """A non-person action (``audit_read``, ``referral_submit``, ``policy_publish`` ...)."""
        return action in self.actions.get((caller.role, caller.agency), EMPTY)


def build_enforcer(texts: PolicyTexts) -> tuple[Any, list[Rule]]:
    """A pycasbin enforcer loaded with the policy; raises :class:`PolicyError` if malformed."""
    rules, problems = parse_policy(texts.policy)
    if problems:
        raise PolicyError(problems)
    model = casbin.Model()
    try:
        model.load_model_from_text(texts.model)
    except Exception as exc:  # pycasbin raises bare RuntimeError/KeyError on bad models
        raise PolicyError([Problem("syntax", MODEL_FILE, None, str(exc))]) from None
    shape = [
        (section, key, expected)
        for section, key, expected in (("r", "r", REQUEST_TOKENS), ("p", "p", POLICY_TOKENS))
        if tuple(getattr(model.model.get(section, {}).get(key), "tokens", ())) != expected
    ]
    missing = [s for s in ("e", "m", "g") if s not in model.model]
    if shape or missing:
        message = (
            "the model must define r = sub, dom, src, fld, act; p = sub, dom, src, fld, act, "
            "eft; a role definition g; a policy effect e and a matcher m"
        )
        raise PolicyError([Problem("model", MODEL_FILE, None, message)])
    disabled_logging()  # pycasbin logs the model at INFO while constructing, before its own switch
    enforcer = casbin.Enforcer(model)
    enforcer.add_named_domain_matching_func("g", key_match)
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for rule in rules:
        if (rule.ptype, rule.values) in seen:
            continue
        seen.add((rule.ptype, rule.values))
        if rule.ptype == "p":
            enforcer.add_policy(*rule.values)
        else:
            enforcer.add_grouping_policy(*rule.values)
    return enforcer, rules


def enforce(enforcer: Any, *request: str) -> bool:
    """One pycasbin decision, serialised with every other in the process."""
    with ENFORCE_LOCK:
        try:
            return bool(enforcer.enforce(*request))
        except Exception as exc:  # a matcher that does not evaluate
            problem = Problem("model", MODEL_FILE, None, f"the matcher failed: {exc}")
            raise PolicyError([problem]) from None


def compile_policy(texts: PolicyTexts, version: int | None = None) -> Decisions:
    """Ask every question once and freeze the answers (see the module docstring)."""
    started = time.perf_counter()
    enforcer, _ = build_enforcer(texts)
    read: dict[MaskKey, frozenset[str]] = {}
    glass: dict[MaskKey, frozenset[str]] = {}
    glass_callers: set[tuple[str, str]] = set()
    actions: dict[tuple[str, str], frozenset[str]] = {}
    per_action: dict[str, dict[MaskKey, frozenset[str]]] = {a: {} for a in FIELD_ACTIONS}
    with ENFORCE_LOCK:  # held once for the whole compilation (re-entrancy not needed)
        decide = enforcer.enforce
        try:
            for role in ROLES:
                for agency in AGENCIES:
                    for source in SOURCES:
                        fields = source_fields(source)  # only the groups this source supplies
                        key = (role, agency, source)
                        for action, masks in per_action.items():
                            masks[key] = frozenset(
                                f for f in fields if decide(role, agency, source, f, action)
                            )
                        allowed = per_action[READ][key]
                        extra = per_action[READ_BREAK_GLASS][key]
                        read[(role, agency, source)] = allowed
                        glass[(role, agency, source)] = allowed | extra
                        if extra:
                            glass_callers.add((role, agency))
                    actions[(role, agency)] = frozenset(
                        action
                        for action, resource in RESOURCE_ACTIONS.items()
                        if decide(role, agency, "*", resource, action)
                    )
        except Exception as exc:
            problem = Problem("model", MODEL_FILE, None, f"the matcher failed: {exc}")
            raise PolicyError([problem]) from None
    return Decisions(
        version=version,
        sha256=texts.sha256,
        read=read,
        break_glass=glass,
        break_glass_callers=frozenset(glass_callers),
        actions=actions,
        compile_seconds=time.perf_counter() - started,
        field_actions=per_action,
    )


def current_version() -> ScalarSelect[int]:
    """The published version current in the transaction, as a scalar subquery."""
    return (
        select(AccessPolicyVersion.version)
        .order_by(AccessPolicyVersion.version.desc())
        .limit(1)
        .scalar_subquery()
    )


class AccessPolicy:
    """The process's access policy: compiled versions, refreshed from the database.

    One instance per process (the app factory or CLI builds it); thread-safe. Request paths
    call :meth:`for_session` once per unit of work and ask the returned :class:`Decisions`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[int, Decisions] = {}
        self._latest: Decisions | None = None
        self.compilations = 0

    def for_session(self, session: Session) -> Decisions:
        """The decisions of the version current in this transaction (compiled if new)."""
        return self.for_version(session, session.scalar(select(current_version())))

    def for_version(self, session: Session, version: int | None) -> Decisions:
        """The decisions of ``version``, which the caller read in this transaction with
        :func:`current_version` (alongside what else it needed: one round trip fewer)."""
        if version is None:
            raise PolicyNotPublishedError
        found = self._versions.get(version)
        if found is not None:
            return found
        with self._lock:
            found = self._versions.get(version)
            if found is not None:
                return found
            row = session.execute(
                select(
                    AccessPolicyVersion.model_text,
                    AccessPolicyVersion.policy_text,
                    AccessPolicyVersion.sha256,
                ).where(AccessPolicyVersion.version == version)
            ).one()
            texts = PolicyTexts(model=row.model_text, policy=row.policy_text)
            if texts.sha256 != row.sha256:
                raise PolicyIntegrityError(
                    f"access policy version {version} does not match its recorded SHA-256"
                )
            decisions = compile_policy(texts, version=version)
            self.compilations += 1
            versions = dict(self._versions)
            versions[version] = decisions
            for old in sorted(versions)[:-_KEEP_VERSIONS]:
                del versions[old]
            self._versions = versions  # replaced whole: readers never see a half-built dict
            if self._latest is None or (self._latest.version or 0) < version:
                self._latest = decisions
            return decisions

    def mask(self, caller: Caller, source: str, *, break_glass: bool = False) -> frozenset[str]:
        """The latest version this process has compiled (empty before the first unit of work).

        Request paths should use ``for_session(session).mask(...)``, which checks the version.
        """
        latest = self._latest
        if latest is None:
            return EMPTY
        return latest.mask(caller, source, break_glass=break_glass)
