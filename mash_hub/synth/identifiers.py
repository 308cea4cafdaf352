"""NHS numbers, UPNs and PNC ids with correct check characters, allocated without collisions.

Numbers come from an affine permutation of a running counter rather than random draws, so a
million people never share an identifier by accident (a shared NHS number must only ever be a
deliberate error) and no set of issued numbers has to be kept in memory.
"""

from __future__ import annotations

from random import Random

_NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_UPN_ALPHABET = "ABCDEFGHJKLMNPQRTUVWXYZ0123456789"
PNC_LETTERS = "ZABCDEFGHJKLMNPQRTUVWXY"


class Permutation:
    """Maps 0..modulus-1 onto itself in a scrambled order: i -> (a*i + b) mod modulus."""

    __slots__ = ("add", "modulus", "mul")

    def __init__(self, rng: Random, modulus: int) -> None:
        self.modulus = modulus
        # Multiplier coprime with any power of ten: odd and not a multiple of 5.
        mul = rng.randrange(modulus // 3, modulus) | 1
        if mul % 5 == 0:
            mul += 2
        self.mul = mul
        self.add = rng.randrange(modulus)

    def __call__(self, i: int) -> int:
        return (self.mul * i + self.add) % self.modulus


def nhs_check_digit(nine: str) -> int:
    """Modulus-11 check digit; 10 means no valid number has these nine digits."""
    total = sum(int(c) * w for c, w in zip(nine, _NHS_WEIGHTS, strict=True))
    check = 11 - total % 11
    return 0 if check == 11 else check


def nhs_number(serial: int) -> str:
    """A valid NHS number for an 8-digit serial (unique per serial).

    The leading digit is 4; where that would need check digit 10 the leading 6 is used
    instead, which always moves the check digit off 10, so numbers stay unique.
    """
    body = f"4{serial:08d}"
    check = nhs_check_digit(body)
    if check == 10:
        body = f"6{serial:08d}"
        check = nhs_check_digit(body)
    return body + str(check)


def format_nhs(number: str, spaced: bool) -> str:
    return f"{number[:3]} {number[3:6]} {number[6:]}" if spaced else number


def upn_check_letter(last12: str) -> str:
    total = sum(i * _UPN_ALPHABET.index(c) for i, c in enumerate(last12, 2))
    return _UPN_ALPHABET[total % 23]


def upn(la_code: int, estab: int, issue_year: int, serial: int) -> str:
    """UPN = check letter + LA (3) + establishment (4) + issue year (2) + serial (3)."""
    last12 = f"{la_code:03d}{estab:04d}{issue_year % 100:02d}{serial % 1000:03d}"
    return upn_check_letter(last12) + last12


def pnc_check_letter(year: int, serial: int) -> str:
    return PNC_LETTERS[int(f"{year % 100:02d}{serial:07d}") % 23]


def pnc_id(year: int, serial: int) -> str:
    """Canonical PNC id ``YYYY/NNNNNNNC``."""
    return f"{year:04d}/{serial:07d}{pnc_check_letter(year, serial)}"


def pnc_is_valid(value: str) -> bool:
    """True for a well-formed PNC id (``YYYY/`` or ``YY/`` form) with the right check letter."""
    year, sep, rest = value.partition("/")
    if not sep or len(year) not in (2, 4) or not year.isdigit():
        return False
    if len(rest) != 8 or not rest[:7].isdigit():
        return False
    return rest[7] == pnc_check_letter(int(year), int(rest[:7]))


def short_pnc(canonical: str) -> str:
    """The ``YY/NNNNNNNC`` form police extracts often use."""
    return canonical[2:]


def mistype_digit(value: str, rng: Random, positions: range) -> str:
    """Change one digit at one of ``positions``; every scheme here then fails its check."""
    digit_positions = [p for p in positions if value[p].isdigit()]
    pos = digit_positions[rng.randrange(len(digit_positions))]
    old = int(value[pos])
    new = (old + 1 + rng.randrange(9)) % 10
    return value[:pos] + str(new) + value[pos + 1 :]
