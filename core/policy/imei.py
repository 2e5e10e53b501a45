"""Device identities: IMEI, IMEISV and the 14-digit TAC+SNR they share.

Owns: every rule about what an IMEI-like value is (DESIGN §1, REFERENCE §3.4-3.5).

Invariants:
- A device identity is the first 14 digits (TAC 8 + SNR 6) as an ``int``. Two identifiers name the
  same device when their identities are equal: an IMEI locked as 15 digits matches an IMEISV
  reported as 16.
- Identity ``0`` (all zeros) means "not reported": some carriers always send
  ``000000000000000``. ``INVALID`` (-1) means garbage, which is never "not reported".

Must not: import anything outside the standard library (the store, the admin API and the hot path
all use it).
"""

from __future__ import annotations

from typing import Final

NOT_REPORTED: Final = 0
INVALID: Final = -1

_ZERO_14: Final = b"0" * 14


def luhn_digit(fourteen: str) -> int:
    """Return the Luhn check digit of a 14-digit TAC+SNR (TS 23.003 Annex B)."""
    total = 0
    # D1 is the rightmost digit; D1, D3, ..., D13 are doubled.
    for position, char in enumerate(reversed(fourteen)):
        digit = ord(char) - 48
        if position % 2 == 0:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return (10 - total % 10) % 10


def reported_identity(raw: bytes) -> int:
    """Return the identity carried by a 3GPP-IMEISV value, NOT_REPORTED or INVALID.

    Accepts what gateways send (REFERENCE §3.5): 14, 15 or 16 ASCII digits, or 8 octets of TBCD
    (swapped nibbles, 0xF filler). The 15th digit of a network IMEI is a spare 0, not a Luhn digit,
    so it is not checked here.
    """
    size = len(raw)
    if 14 <= size <= 16 and raw.isdigit():  # bytes.isdigit: ASCII 0-9 only
        return int(raw[:14])
    if size == 8:
        return _tbcd_identity(raw)
    return INVALID


def _tbcd_identity(raw: bytes) -> int:
    # TBCD puts the first digit in the low nibble of each octet; the hex of the reversed
    # octets, read backwards, is therefore the digits in order (C-level work only).
    digits = raw[::-1].hex()[::-1].rstrip("f")
    if len(digits) < 14 or not digits.isdigit():
        return INVALID  # a non-digit nibble, a digit after the filler, or too short
    return int(digits[:14])


def lock_identity(text: str) -> int | None:
    """Return the identity of an IMEI an operator typed for a lock, or None if it is not one.

    Operators give 14 digits, 16 (IMEISV), or 15 whose last digit is the Luhn check digit (a
    label) or 0 (as the network reports it). All zeros is refused: a lock to an identity the
    carrier never sends would block the SIM forever.
    """
    if not text.isascii() or not text.isdigit() or len(text) not in (14, 15, 16):
        return None
    head = text[:14]
    if head == "0" * 14:
        return None
    if len(text) == 15 and text[14] != "0" and int(text[14]) != luhn_digit(head):
        return None
    return int(head)


def format_identity(identity: int) -> str:
    """Return the 15-digit IMEI (with its Luhn digit) for a stored 14-digit identity."""
    head = f"{identity:014d}"
    return head + str(luhn_digit(head))


def is_imsi(raw: bytes) -> bool:
    """Return whether ``raw`` is an IMSI as simgate accepts it: exactly 15 ASCII digits."""
    return len(raw) == 15 and raw.isdigit()  # bytes.isdigit: ASCII 0-9 only


def is_virtual_imsi(imsi: str) -> bool:
    """Return whether an IMSI belongs to a virtual subscriber (15 digits beginning 99999)."""
    return len(imsi) == 15 and imsi.isascii() and imsi.isdigit() and imsi.startswith("99999")
