"""From an agency's raw record to the hub's person schema, standardised, or the reasons why not.

The output is already split into the store's field groups (``identity``, ``identifiers``,
``contact``, ``details.<name>``) plus the values to blind-index. Every problem becomes a
machine-readable reason (a code and the schema field), never a message quoting the value.

Only what cannot be a person (no record id, no usable name) holds a row back. Any other bad
value is left out of the indexed values and becomes an :class:`Issue`, its raw value kept in
the record's encrypted ``quality`` group, so the record is indexed on what is valid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mash_hub.feeds import standardise as std
from mash_hub.feeds.definition import AddressSpec, FeedDefinition, FieldSpec
from mash_hub.feeds.reader import RawRecord
from mash_hub.persons.store import CONTACT, DETAILS_PREFIX, IDENTIFIERS, IDENTITY, QUALITY


@dataclass(frozen=True)
class Reason:
    code: str
    field: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field}


@dataclass(frozen=True)
class Issue:
    """A value that failed validation on a record that is indexed all the same: the reason,
    the schema field, and the raw value (kept only inside the record's encrypted ``quality``
    group, for correction)."""

    code: str
    field: str
    raw: str

    @property
    def reason(self) -> Reason:
        return Reason(self.code, self.field)


@dataclass
class MappedRecord:
    """A standardised record, or (when ``reasons`` is not empty) one for the quarantine.

    ``reasons`` are what make a row unusable as a person (no record id, no usable name): only
    they hold a row back. ``issues`` are bad values left out of an indexed record.
    """

    location: str
    source_record_id: str | None
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    index_fields: dict[str, Any] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.reasons

    @property
    def all_reasons(self) -> list[Reason]:
        """Everything wrong with the row, for a quarantined row's reasons."""
        return list(dict.fromkeys([*self.reasons, *(i.reason for i in self.issues)]))


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    if path in data:
        return data[path]
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _values(data: Mapping[str, Any], spec: FieldSpec) -> list[Any]:
    """All non-empty values the spec points at, split and flattened, in order."""
    out: list[Any] = []
    for path in spec.paths:
        value = _lookup(data, path)
        items = value if isinstance(value, list) else [value]
        for item in items:
            value = item.strip() if isinstance(item, str) else item
            if isinstance(value, str) and spec.split is not None:
                out.extend(part.strip() for part in value.split(spec.split) if part.strip())
            elif value is not None and value != "":
                out.append(value)
    return out


def _raw_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _truthy(raw: Any) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() in {"true", "yes", "y", "1", "current"}


class _Mapper:
    def __init__(self, definition: FeedDefinition, data: Mapping[str, Any]) -> None:
        self.definition = definition
        self.data = data
        self.reasons: list[Reason] = []
        self.issues: list[Issue] = []

    def flag(self, exc: std.StandardisationError, name: str, value: Any) -> None:
        self.issues.append(Issue(exc.code, name, _raw_text(value)))

    def values(self, spec: FieldSpec | None) -> list[Any]:
        return [] if spec is None else _values(self.data, spec)

    def first(self, spec: FieldSpec | None) -> Any:
        values = self.values(spec)
        return values[0] if values else None

    def mapped(self, spec: FieldSpec, value: Any) -> Any:
        if spec.map is None or value is None:
            return value
        text = str(value)
        if text in spec.map:
            return spec.map[text]
        folded = {k.casefold(): v for k, v in spec.map.items()}
        return folded.get(text.casefold(), value)

    def date(self, spec: FieldSpec, value: Any, name: str) -> str | None:
        if value is None:
            return None
        formats = spec.date_formats or self.definition.date_formats
        try:
            try:
                parsed = std.parse_date(str(value), formats or None)
            except std.StandardisationError:
                parsed = std.parse_date(str(value), None)
        except std.StandardisationError as exc:
            self.flag(exc, name, value)
            return None
        return parsed.isoformat() if parsed else None

    def name(self, value: Any, name: str) -> str | None:
        """A cleaned name part, or ``None`` with a reason when it has no usable letters."""
        if value is None:
            return None
        try:
            return std.clean_name(str(value))
        except std.StandardisationError as exc:
            self.flag(exc, name, value)
            return None

    def check(self, name: str, function: Any, value: Any, *args: Any) -> Any:
        if value is None:
            return None
        try:
            return function(str(value), *args)
        except std.StandardisationError as exc:
            self.flag(exc, name, value)
            return None

    def detail_value(self, spec: FieldSpec, name: str) -> Any:
        values = [self.mapped(spec, v) for v in self.values(spec)]
        if spec.date:
            values = [self.date(spec, v, name) for v in values]
        if spec.split is not None or len(values) > 1:
            return values
        return values[0] if values else None

    def addresses(self, spec: AddressSpec | None) -> list[dict[str, Any]]:
        if spec is None:
            return []
        if spec.path is None:
            sources: list[Mapping[str, Any]] = [self.data]
        else:
            listed = _lookup(self.data, spec.path)
            if isinstance(listed, Mapping):
                listed = [listed]
            sources = [item for item in (listed or []) if isinstance(item, Mapping)]
        out: list[dict[str, Any]] = []
        for source in sources:
            address: dict[str, Any] = {}
            flagged = len(self.issues)
            for key, fspec in spec.fields.items():
                value = _values(source, fspec)
                raw = value[0] if value else None
                # The index in the stored list, where a correction puts the value back.
                where = f"addresses[{len(out)}].{key}"
                if key == "postcode":
                    # A postcode split over two columns (outward, inward) is joined too.
                    joined = " ".join(str(v) for v in value) if value else None
                    address[key] = self.check(where, std.normalise_postcode, joined)
                elif key in {"from", "to"}:
                    address[key] = self.date(fspec, raw, where)
                elif key == "current":
                    address[key] = _truthy(raw)
                else:
                    # Several paths are joined in order ("109" + "High Street"), so a house
                    # number kept in a column of its own still reaches matching.
                    address[key] = std.clean_address(" ".join(str(v) for v in value))
            # An address whose only value failed validation is kept (empty) for correction.
            if len(self.issues) > flagged or any(
                v not in (None, "") for k, v in address.items() if k != "current"
            ):
                out.append(address)
        if len(out) == 1 and out[0].get("current") is None:
            out[0]["current"] = True
        return out


def map_record(definition: FeedDefinition, raw: RawRecord) -> MappedRecord:
    """Standardise one raw record into the person schema."""
    m = _Mapper(definition, raw.data)
    person = definition.person

    record_id = m.first(definition.record_id)
    record_key = str(record_id).strip() if record_id is not None else None
    if not record_key:
        m.reasons.append(Reason("record_id_missing", "record_id"))

    given_names = [g for v in m.values(person.given_names) if (g := m.name(v, "given_names"))]
    family_raw = m.first(person.family_name)
    family = m.name(family_raw, "family_name")
    if person.full_name is not None and (full := m.first(person.full_name)) is not None:
        try:
            parsed = std.split_full_name(str(full))
        except std.StandardisationError as exc:
            m.flag(exc, "full_name", full)
        else:
            given_names = given_names or list(parsed.given_names)
            family = family or parsed.family_name
    if not family and not given_names:
        # No usable name: this cannot be a person, so the row is held back.
        m.reasons.append(Reason("name_empty", "family_name"))
    other_names = [o for v in m.values(person.other_names) if (o := m.name(v, "other_names"))]

    dob = None
    if person.date_of_birth is not None:
        dob = m.date(person.date_of_birth, m.first(person.date_of_birth), "date_of_birth")
    sex = None
    if person.sex is not None and (raw_sex := m.first(person.sex)) is not None:
        sex = m.check("sex", std.normalise_sex, m.mapped(person.sex, raw_sex))

    nhs = m.check("nhs_number", std.validate_nhs_number, m.first(person.nhs_number))
    upn = m.check("upn", std.validate_upn, m.first(person.upn))
    pnc = m.check("pnc_id", std.validate_pnc_id, m.first(person.pnc_id))
    phone = m.check("phone", std.normalise_phone, m.first(person.phone))
    email = m.check("email", std.normalise_email, m.first(person.email))
    addresses = m.addresses(person.addresses)

    groups: dict[str, dict[str, Any]] = {
        IDENTITY: {
            "given_names": given_names,
            "family_name": family,
            "other_names": other_names,
            "date_of_birth": dob,
            "sex": sex,
        },
        IDENTIFIERS: {"nhs_number": nhs, "upn": upn, "pnc_id": pnc},
        CONTACT: {"addresses": addresses, "phone": phone, "email": email},
    }
    if m.issues:
        groups[QUALITY] = {
            "issues": [{"code": i.code, "field": i.field, "raw": i.raw} for i in m.issues]
        }
    for group, specs in definition.details.items():
        values = {
            name: m.detail_value(spec, f"details.{group}.{name}") for name, spec in specs.items()
        }
        if any(v not in (None, [], "") for v in values.values()):
            groups[DETAILS_PREFIX + group] = values

    index_fields = {
        "given_names": given_names,
        "family_name": family,
        "other_names": other_names,
        "date_of_birth": dt.date.fromisoformat(dob) if dob else None,
        "postcodes": [a["postcode"] for a in addresses if a.get("postcode")],
        "nhs_number": nhs,
        "upn": upn,
        "pnc_id": pnc,
    }
    return MappedRecord(raw.location, record_key or None, groups, index_fields, m.reasons, m.issues)
