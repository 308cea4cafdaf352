"""``policy check``: every way a policy can be wrong, with file and line."""

from __future__ import annotations

from collections import defaultdict

from mash_hub.authz.files import POLICY_FILE, PolicyTexts, Problem, Rule, model_syntax, parse_policy
from mash_hub.authz.policy import PolicyError, compile_policy
from mash_hub.authz.vocabulary import (
    AGENCIES,
    FIELD_ACTIONS,
    PERSON_FIELDS,
    RESOURCE_ACTIONS,
    ROLES,
    SOURCES,
)

KINDS = (
    "syntax",
    "model",
    "unknown_role",
    "unknown_agency",
    "unknown_source",
    "unknown_field",
    "unknown_action",
    "conflict",
)


def _matches(pattern: str, names: tuple[str, ...]) -> bool:
    if pattern.endswith("*"):
        return any(name.startswith(pattern[:-1]) for name in names)
    return pattern in names


def check_policy(texts: PolicyTexts) -> list[Problem]:
    """All problems of a policy; an empty list means it may be published."""
    problems = model_syntax(texts.model)
    rules, syntax = parse_policy(texts.policy)
    problems.extend(syntax)
    problems.extend(_check_rules(rules))
    if not problems:
        try:
            compile_policy(texts)
        except PolicyError as exc:
            problems.extend(exc.problems)
    return sorted(problems, key=lambda p: (p.file, p.line or 0, p.kind))


def _check_rules(rules: list[Rule]) -> list[Problem]:
    groups = {rule.values[1] for rule in rules if rule.ptype == "g"}
    subjects = set(ROLES) | groups
    granted = {rule.values[0] for rule in rules if rule.ptype == "p"}
    found: list[tuple[str, Rule, str]] = []
    for rule in rules:
        if rule.ptype == "g":
            found.extend(_check_g(rule, subjects, granted))
        else:
            found.extend(_check_p(rule, subjects))
    found.extend(_conflicts(rules))
    return [Problem(kind, POLICY_FILE, rule.line, message) for kind, rule, message in found]


def _agency(rule: Rule, agency: str) -> list[tuple[str, Rule, str]]:
    if agency == "*" or agency in AGENCIES:
        return []
    return [("unknown_agency", rule, f"agency {agency!r} is not one of {_list(AGENCIES)}")]


def _check_g(rule: Rule, subjects: set[str], granted: set[str]) -> list[tuple[str, Rule, str]]:
    child, parent, agency = rule.values
    out = _agency(rule, agency)
    if child not in subjects:
        out.append(("unknown_role", rule, f"role {child!r} is not a hub role or role group"))
    if parent not in ROLES and parent not in granted:
        out.append(("unknown_role", rule, f"role group {parent!r} has no p rules"))
    return out


def _check_p(rule: Rule, subjects: set[str]) -> list[tuple[str, Rule, str]]:
    role, agency, source, fld, action, _ = rule.values
    out = _agency(rule, agency)
    if role not in subjects:
        out.append(("unknown_role", rule, f"role {role!r} is not a hub role or a role group"))
    if source != "*" and source not in SOURCES:
        out.append(("unknown_source", rule, f"source {source!r} is not one of {_list(SOURCES)}"))
    if action in FIELD_ACTIONS:
        if fld != "*" and not _matches(fld, PERSON_FIELDS):
            message = f"field {fld!r} matches none of {_list(PERSON_FIELDS)}"
            out.append(("unknown_field", rule, message))
    elif action in RESOURCE_ACTIONS:
        resource = RESOURCE_ACTIONS[action]
        if fld not in ("*", resource):
            message = f"action {action!r} applies to {resource!r}, not {fld!r}"
            out.append(("unknown_field", rule, message))
    else:
        known = _list(FIELD_ACTIONS + tuple(RESOURCE_ACTIONS))
        out.append(("unknown_action", rule, f"action {action!r} is not one of {known}"))
    return out


def _conflicts(rules: list[Rule]) -> list[tuple[str, Rule, str]]:
    """The same (role, agency, source, field, action) both allowed and denied."""
    out: list[tuple[str, Rule, str]] = []
    effects: dict[tuple[str, ...], dict[str, int]] = defaultdict(dict)
    for rule in rules:
        if rule.ptype != "p":
            continue
        key, effect = rule.values[:5], rule.values[5]
        other = "deny" if effect == "allow" else "allow"
        if other in effects[key]:
            message = (
                f"{', '.join(key)} is both allowed and denied "
                f"(the other rule is on line {effects[key][other]})"
            )
            out.append(("conflict", rule, message))
        effects[key].setdefault(effect, rule.line)
    return out


def _list(values: tuple[str, ...]) -> str:
    return ", ".join(values)
