"""Declarative feed definitions: one YAML file per agency extract.

Onboarding a new extract is configuration, not code. A definition names the file format, where
each field of the hub's person schema comes from (column names for CSV, dotted paths for JSON,
including lists such as address history), date formats, value maps, and which source fields are
agency-specific details. Definitions load from the folder shipped with the hub and from any
folder named by ``MASH_FEEDS_DIR`` or ``--feeds-dir``; a later folder overrides a feed of the
same name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SHIPPED_FEEDS_DIR = Path(__file__).resolve().parent / "definitions"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class FeedDefinitionError(ValueError):
    """A feed definition is missing, unreadable or invalid; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileFormat(_Strict):
    """How the file is laid out."""

    type: Literal["csv", "json", "ndjson"]
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    records_path: str | None = Field(
        default=None,
        description="JSON only: dotted path to the array of records; unset for a top-level array.",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs  # noqa: PLC0415

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value


class FieldSpec(_Strict):
    """Where one value comes from and how to read it."""

    path: str | list[str] = Field(
        description="Column name (CSV) or dotted path (JSON); several paths are concatenated."
    )
    split: str | None = Field(default=None, description="Split a text value into a list on this.")
    map: dict[str, str] | None = Field(default=None, description="Value map, e.g. Male: M.")
    date: bool = Field(default=False, description="Parse as a date with the feed's formats.")
    date_formats: list[str] | None = None

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


class AddressSpec(_Strict):
    """Address history: a list in the source (``path``), or one address built from fields."""

    path: str | None = None
    fields: dict[Literal["line1", "line2", "town", "postcode", "from", "to", "current"], FieldSpec]

    @model_validator(mode="after")
    def _needs_postcode_or_line(self) -> AddressSpec:
        if not {"postcode", "line1"} & set(self.fields):
            raise ValueError("an address needs at least `postcode` or `line1`")
        return self


class PersonSpec(_Strict):
    """The hub's person schema: each entry says where the feed keeps that value."""

    given_names: FieldSpec | None = None
    family_name: FieldSpec | None = None
    other_names: FieldSpec | None = None
    full_name: FieldSpec | None = Field(
        default=None, description="For feeds with one name column: split into given and family."
    )
    date_of_birth: FieldSpec | None = None
    sex: FieldSpec | None = None
    nhs_number: FieldSpec | None = None
    upn: FieldSpec | None = None
    pnc_id: FieldSpec | None = None
    phone: FieldSpec | None = None
    email: FieldSpec | None = None
    addresses: AddressSpec | None = None

    @model_validator(mode="after")
    def _has_a_name(self) -> PersonSpec:
        if self.full_name is None and self.family_name is None:
            raise ValueError("a feed must map `family_name` (or `full_name`)")
        return self


class FeedDefinition(_Strict):
    """One agency extract."""

    name: str
    agency: str
    description: str = ""
    format: FileFormat
    record_id: FieldSpec
    date_formats: list[str] = Field(default_factory=list)
    person: PersonSpec
    details: dict[str, dict[str, FieldSpec]] = Field(default_factory=dict)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("name", "agency")
    @classmethod
    def _simple_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower case letters, digits and underscores")
        return value

    @field_validator("details")
    @classmethod
    def _detail_groups(
        cls, value: dict[str, dict[str, FieldSpec]]
    ) -> dict[str, dict[str, FieldSpec]]:
        for group in value:
            if not _NAME.match(group):
                raise ValueError(
                    f"detail group {group!r} must be lower case letters and underscores"
                )
        return value

    @model_validator(mode="after")
    def _json_only_options(self) -> FeedDefinition:
        if self.format.type != "json" and self.format.records_path:
            raise ValueError("format.records_path applies to JSON files only")
        return self

    def columns(self) -> set[str]:
        """Every source column the definition reads (CSV header check)."""
        specs: list[FieldSpec] = [self.record_id]
        specs += [s for s in vars(self.person).values() if isinstance(s, FieldSpec)]
        if self.person.addresses is not None and self.person.addresses.path is None:
            specs += list(self.person.addresses.fields.values())
        for group in self.details.values():
            specs += list(group.values())
        return {path for spec in specs for path in spec.paths}


def load_definition(path: Path) -> FeedDefinition:
    """Read and validate one YAML definition; errors name the file and the key."""
    try:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FeedDefinitionError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise FeedDefinitionError(f"{path}:{where} is not valid YAML") from exc
    if not isinstance(document, Mapping):
        raise FeedDefinitionError(f"{path}: a feed definition must be a YAML mapping")
    try:
        return FeedDefinition.model_validate({**document, "source": path})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise FeedDefinitionError(f"{path}: {problems}") from None


def feed_folders(extra: Iterable[Path | None] = ()) -> list[Path]:
    """The shipped folder first, then operator folders (later ones win)."""
    return [SHIPPED_FEEDS_DIR, *(Path(p) for p in extra if p is not None)]


def load_feeds(folders: Iterable[Path]) -> dict[str, FeedDefinition]:
    """Every definition in ``folders`` by name; a bad file fails loudly rather than vanishing."""
    feeds: dict[str, FeedDefinition] = {}
    for folder in folders:
        if not folder.is_dir():
            raise FeedDefinitionError(f"feeds folder {folder} does not exist")
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            definition = load_definition(path)
            if definition.name != path.stem:
                raise FeedDefinitionError(
                    f"{path}: the feed is named {definition.name!r}; name the file "
                    f"{definition.name}.yaml"
                )
            feeds[definition.name] = definition
    return feeds


def get_feed(name: str, folders: Iterable[Path]) -> FeedDefinition:
    feeds = load_feeds(folders)
    try:
        return feeds[name]
    except KeyError:
        known = ", ".join(sorted(feeds)) or "none"
        raise FeedDefinitionError(f"no feed named {name!r} (known feeds: {known})") from None
