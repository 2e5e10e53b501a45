"""core.policy.imei: Luhn, what gateways report, what operators may lock to (REFERENCE §3.4-3.5).

Identities are the 14 digits TAC + SNR as an int; 0 is "not reported", -1 is garbage.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.policy.imei import (
    INVALID,
    NOT_REPORTED,
    format_identity,
    is_imsi,
    is_virtual_imsi,
    lock_identity,
    luhn_digit,
    reported_identity,
)
from core.probe import tbcd

# TS 23.003 Annex B.3 and REFERENCE §3.4.
IMEI_HEAD = "49015420323751"
IMEI_LUHN = "490154203237518"
FULL_WIDTH_HEAD = "".join(chr(0xFF10 + int(digit)) for digit in IMEI_HEAD)

# --- Luhn --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fourteen", "digit"),
    [("26053179311383", 7), ("49015420323751", 8), ("35921108976543", 2)],
    ids=["TS 23.003 B.3", "49015420323751", "35921108976543"],
)
def test_luhn_digit_matches_the_reference_vectors(fourteen: str, digit: int) -> None:
    assert luhn_digit(fourteen) == digit


def test_luhn_digit_of_all_zeros_is_zero() -> None:
    assert luhn_digit("0" * 14) == 0


# --- reported_identity: ASCII ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"49015420323751", b"490154203237510", b"490154203237518", b"4901542032375101"],
    ids=["14 TAC+SNR", "15 spare 0", "15 with Luhn", "16 IMEISV"],
)
def test_ascii_digits_report_the_same_identity(raw: bytes) -> None:
    assert reported_identity(raw) == 49015420323751


@pytest.mark.parametrize(
    "raw", [b"0" * 14, b"0" * 15, b"0" * 16, bytes(8)], ids=["14", "15", "16", "tbcd"]
)
def test_all_zeros_is_not_reported(raw: bytes) -> None:
    # Some carriers always send 000000000000000 (REFERENCE §4.7).
    assert reported_identity(raw) == NOT_REPORTED == 0


def test_leading_zeros_are_kept_in_the_identity() -> None:
    assert reported_identity(b"00000000000012") == 12
    assert reported_identity(b"000000000000120") == 12


# --- reported_identity: TBCD -------------------------------------------------------------------


def test_tbcd_imei_with_filler_reports_the_identity() -> None:
    # 15 digits: the 16th nibble is the 0xF filler (REFERENCE §3.5).
    raw = bytes.fromhex("94 10 45 02 23 73 15 f8")

    assert raw == tbcd(IMEI_LUHN)
    assert reported_identity(raw) == 49015420323751


def test_tbcd_imeisv_reports_the_identity() -> None:
    raw = bytes.fromhex("94 10 45 02 23 73 15 10")

    assert raw == tbcd("4901542032375101")
    assert reported_identity(raw) == 49015420323751


def test_tbcd_of_14_digits_with_two_fillers_reports_the_identity() -> None:
    assert reported_identity(bytes.fromhex("94 10 45 02 23 73 15 ff")) == 49015420323751


# --- reported_identity: garbage ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"4901542032375",  # 13 digits
        b"49015420323751012",  # 17 digits
        b"4901542032375A",  # a letter
        b"49015420323751,01",  # the "IMEI,SV" form is not TS 29.061
        b" 49015420323751",  # a space
        b"49015420323751\x00",  # a NUL
        "4901542032375\u0661".encode(),  # an Arabic-Indic one, 15 octets of UTF-8
        bytes.fromhex("94 10 45 02 23 73 15 a8"),  # TBCD with a non-digit nibble
        bytes.fromhex("94 10 45 02 23 73 f5 18"),  # TBCD with a digit after the filler
        bytes.fromhex("94 10 45 02 23 73 ff ff"),  # TBCD with only 12 digits
        bytes.fromhex("94 10 45 02 23 73 15"),  # 7 octets
        bytes.fromhex("94 10 45 02 23 73 15 10 00"),  # 9 octets
    ],
    ids=[
        "empty",
        "13 digits",
        "17 digits",
        "letter",
        "imei comma sv",
        "space",
        "nul",
        "non-ascii digit",
        "tbcd non-digit nibble",
        "tbcd digit after filler",
        "tbcd 12 digits",
        "7 octets",
        "9 octets",
    ],
)
def test_garbage_is_invalid(raw: bytes) -> None:
    assert reported_identity(raw) == INVALID == -1


# --- lock_identity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["49015420323751", "4901542032375101", "490154203237518", "490154203237510"],
    ids=["14", "16 IMEISV", "15 with Luhn", "15 ending 0"],
)
def test_lock_identity_accepts(text: str) -> None:
    assert lock_identity(text) == 49015420323751


@pytest.mark.parametrize(
    "text",
    [
        "490154203237517",  # wrong check digit
        "490154203237519",  # wrong check digit
        "000000000000000",
        "00000000000000",
        "0000000000000000",
        "4901542032375",  # 13
        "49015420323751012",  # 17
        "",
        "4901542032375A",
        "49015420323751 ",
        "-4901542032375",
        "4901542032375\u0663",  # an Arabic-Indic three: str.isdigit() says yes
        FULL_WIDTH_HEAD,  # str.isdigit() says yes
    ],
    ids=[
        "wrong luhn 7",
        "wrong luhn 9",
        "zeros 15",
        "zeros 14",
        "zeros 16",
        "13 digits",
        "17 digits",
        "empty",
        "letter",
        "trailing space",
        "minus",
        "arabic-indic digit",
        "full-width digits",
    ],
)
def test_lock_identity_refuses(text: str) -> None:
    assert lock_identity(text) is None


def test_format_identity_gives_15_digits_with_luhn() -> None:
    assert format_identity(49015420323751) == IMEI_LUHN
    assert format_identity(12) == "000000000000125"


# --- is_imsi, is_virtual_imsi ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"001010123456789", True),
        (b"00101012345678", False),
        (b"0010101234567890", False),
        (b"00101012345678a", False),
        (b"", False),
    ],
    ids=["15 digits", "14 digits", "16 digits", "letter", "empty"],
)
def test_is_imsi(raw: bytes, expected: bool) -> None:
    assert is_imsi(raw) is expected


@pytest.mark.parametrize(
    ("imsi", "expected"),
    [
        ("999990000000001", True),
        ("001010123456789", False),
        ("99999000000001", False),
        ("99999000000000a", False),
        ("99999" + "\u0663" * 10, False),
    ],
    ids=["virtual", "real", "14 digits", "letter", "non-ascii digits"],
)
def test_is_virtual_imsi(imsi: str, expected: bool) -> None:
    assert is_virtual_imsi(imsi) is expected


# --- properties --------------------------------------------------------------------------------

_FOURTEEN = st.text(alphabet="0123456789", min_size=14, max_size=14)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=20))
def test_reported_identity_of_any_bytes_is_an_identity_or_invalid(raw: bytes) -> None:
    identity = reported_identity(raw)

    assert isinstance(identity, int)
    assert INVALID <= identity < 10**14


@settings(max_examples=200, deadline=None)
@given(raw=st.one_of(st.binary(min_size=8, max_size=8), st.binary(min_size=14, max_size=16)))
def test_reported_identity_of_8_or_14_to_16_octets_never_raises(raw: bytes) -> None:
    assert reported_identity(raw) >= INVALID


@settings(max_examples=200, deadline=None)
@given(fourteen=_FOURTEEN)
def test_every_reported_shape_of_one_device_is_one_identity(fourteen: str) -> None:
    expected = int(fourteen)
    shapes = [
        fourteen.encode(),
        (fourteen + "0").encode(),
        (fourteen + str(luhn_digit(fourteen))).encode(),
        (fourteen + "12").encode(),
        tbcd(fourteen + "0"),
        tbcd(fourteen + str(luhn_digit(fourteen))),
        tbcd(fourteen + "12"),
    ]

    assert [reported_identity(raw) for raw in shapes] == [expected] * len(shapes)


@settings(max_examples=200, deadline=None)
@given(fourteen=_FOURTEEN.filter(lambda text: text != "0" * 14))
def test_lock_and_report_agree(fourteen: str) -> None:
    identity = lock_identity(fourteen)

    assert identity == int(fourteen)
    assert lock_identity(fourteen + str(luhn_digit(fourteen))) == identity
    assert lock_identity(fourteen + "0") == identity
    assert reported_identity(format_identity(identity).encode()) == identity


@settings(max_examples=200, deadline=None)
@given(identity=st.integers(1, 10**14 - 1))
def test_format_identity_round_trips_through_lock_identity(identity: int) -> None:
    text = format_identity(identity)

    assert len(text) == 15
    assert lock_identity(text) == identity


@settings(max_examples=200, deadline=None)
@given(fourteen=_FOURTEEN, wrong=st.integers(1, 9))
def test_lock_identity_refuses_every_wrong_check_digit(fourteen: str, wrong: int) -> None:
    digit = (luhn_digit(fourteen) + wrong) % 10
    if digit == 0:
        return  # a trailing 0 is the network's spare digit, which is accepted
    assert lock_identity(fourteen + str(digit)) is None
