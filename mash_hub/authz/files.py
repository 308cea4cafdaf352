"""Finding, reading and parsing the policy files (``model.conf`` and ``policy.csv``)."""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"

_VALUE = re.compile(r"^[A-Za-z0-9_.*]{1,64}$")


def policies_dir(override: Path | None = None) -> Path:
    """The policy folder: ``override`` (or MASH_POLICY_DIR), else the repository's
    ``policies/`` in a checkout, else the copy bundled into the wheel."""
    if override is None:
        from mash_hub.settings import get_settings  # noqa: PLC0415 (settings only when needed)

        override = get_settings().policy_dir
    if override is not None:
        return override
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "policies", package / "_bundled" / "policies"):
        if (candidate / MODEL_FILE).is_file():
            return candidate
    raise FileNotFoundError("the hub's policies folder (model.conf, policy.csv) was not found")


@dataclass(frozen=True)
class PolicyTexts:
    """The two texts that make one policy; ``sha256`` identifies the pair."""

    model: str
    policy: str

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for name, text in ((MODEL_FILE, self.model), (POLICY_FILE, self.policy)):
            body = text.encode("utf-8")
            digest.update(f"{name}\0{len(body)}\0".encode())
            digest.update(body)
        return digest.hexdigest()

    @classmethod
    def read(cls, folder: Path | None = None) -> PolicyTexts:
        root = policies_dir(folder)
        return cls(
            model=(root / MODEL_FILE).read_text(encoding="utf-8"),
            policy=(root / POLICY_FILE).read_text(encoding="utf-8"),
        )


@dataclass(frozen=True)
class Rule:
    """One line of ``policy.csv``: ``p`` (6 values) or ``g`` (3 values)."""

    line: int
    ptype: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Problem:
    """Something wrong with a policy; ``line`` is 1-based within ``file``."""

    kind: str
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.kind}: {self.message}"


_SHAPES = {
    "p": (6, "p, role, agency, source, field, action, allow|deny"),
    "g": (3, "g, role, inherited role, agency"),
}


def parse_policy(text: str) -> tuple[list[Rule], list[Problem]]:
    """Rules of ``policy.csv`` and its syntax problems (comments start with ``#``)."""
    rules: list[Rule] = []
    problems: list[Problem] = []

    def bad(number: int, message: str) -> None:
        problems.append(Problem("syntax", POLICY_FILE, number, message))

    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            cells = [cell.strip() for cell in next(csv.reader([stripped], skipinitialspace=True))]
        except csv.Error as exc:
            bad(number, f"not a CSV line ({exc})")
            continue
        ptype, values = cells[0], tuple(cells[1:])
        shape = _SHAPES.get(ptype)
        if shape is None:
            bad(number, f"line type {ptype!r} is not 'p' or 'g'")
            continue
        count, form = shape
        if len(values) != count:
            bad(number, f"expected '{form}' ({count} values after {ptype}), got {len(values)}")
            continue
        invalid = [v for v in values if not _VALUE.match(v)]
        if invalid:
            bad(number, f"values must be 1-64 of A-Z a-z 0-9 _ . * (got {invalid[0]!r})")
            continue
        starred = [v for v in values if "*" in v and not v.endswith("*")]
        if starred:
            bad(number, f"'*' may only end a value (got {starred[0]!r})")
            continue
        if ptype == "p" and values[5] not in ("allow", "deny"):
            bad(number, f"effect must be 'allow' or 'deny' (got {values[5]!r})")
            continue
        rules.append(Rule(number, ptype, values))
    return rules, problems


def model_syntax(text: str) -> list[Problem]:
    """Line-level syntax of ``model.conf``: sections and ``key = value`` lines."""
    problems: list[Problem] = []
    section = None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]") or len(stripped) < 3:
                problems.append(Problem("syntax", MODEL_FILE, number, "malformed section header"))
            section = stripped
            continue
        if section is None:
            problems.append(Problem("syntax", MODEL_FILE, number, "line before any [section]"))
        elif "=" not in stripped or not stripped.split("=", 1)[0].strip():
            problems.append(Problem("syntax", MODEL_FILE, number, "expected 'key = value'"))
    return problems
