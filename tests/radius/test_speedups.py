"""core.radius._speedups: the C walk and MD5 work give what the pure-Python code gives.

The pure-Python functions in wire.py and auth.py are the specification. Each C function is run
beside its twin on the RFC 2865 vectors and on hypothesis-generated packets and arguments: the
same ``Packet`` (fields, offsets and their order), the same ``Drop``, the same bytes, the same
verdict, or the same exception type. The C ``parse`` must never raise anything but
``MalformedPacket`` for any bytes (the h11 fuzz invariant). Skipped when the extension is not
built; it runs under ``SIMGATE_PURE_PYTHON=1`` too, which only changes what ``wire.parse`` is.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.radius import wire
from core.radius.auth import (
    MA_PLACEHOLDER,
    PythonSecret,
    sign_reply_python,
    sign_request,
    verify_message_authenticator_python,
)
from core.radius.codes import Code, Drop, MalformedPacket
from core.radius.native import extension, speedups
from core.radius.wire import Packet, encode_attribute, encode_packet, encode_vsa, parse_python
from tests.vectors.rfc2865 import (
    RFC2865_7_1_ACCESS_ACCEPT,
    RFC2865_7_1_ACCESS_REQUEST,
    RFC2865_7_2_ACCESS_ACCEPT,
    RFC2865_7_2_ACCESS_REQUEST,
    SECRET,
    THREEGPP_ACCESS_REQUEST_ASCII,
    THREEGPP_ACCESS_REQUEST_TBCD,
    packet,
)

if TYPE_CHECKING:
    from core.radius import _speedups as c
else:
    c = pytest.importorskip("core.radius._speedups", reason="the C extension is not built")

VENDOR_3GPP = 10415
AUTHENTICATOR = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")
VECTORS = {
    "7.1 request": RFC2865_7_1_ACCESS_REQUEST,
    "7.1 accept": RFC2865_7_1_ACCESS_ACCEPT,
    "7.2 request": RFC2865_7_2_ACCESS_REQUEST,
    "7.2 accept": RFC2865_7_2_ACCESS_ACCEPT,
    "3gpp ascii": THREEGPP_ACCESS_REQUEST_ASCII,
    "3gpp tbcd": THREEGPP_ACCESS_REQUEST_TBCD,
}
#: vendor 0 keys its sub-attributes like standard attributes; 2**32 - 1 is the largest id
VENDORS = [None, VENDOR_3GPP, 9, 0, 2**32 - 1]


def outcome(call: Callable[[], object]) -> object:
    """What a call gives, in a form two implementations can be compared by: the value, the
    ``Drop`` of a MalformedPacket, or the type of any other exception (which propagates from
    ``parse`` only where the test says so)."""
    try:
        result = call()
    except MalformedPacket as error:
        return ("drop", error.drop, str(error))
    except (TypeError, ValueError, OverflowError, IndexError, AttributeError) as error:
        return ("error", type(error))
    if isinstance(result, Packet):
        # a tuple compares by items; the offsets' order is compared too
        return ("packet", type(result), tuple(result), list(result.offsets.items()))
    return ("value", result)


def assert_same_parse(data: bytes, vendor: int | None) -> None:
    expected = outcome(lambda: parse_python(data, vendor))
    assert outcome(lambda: c.parse(data, vendor)) == expected


# --- configuration -----------------------------------------------------------------------------


def test_wire_parse_is_the_c_walk_unless_pure_python_is_asked() -> None:
    assert extension is c
    expected = parse_python if speedups is None else c.parse
    assert wire.parse is expected


# --- parse ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", VENDORS, ids=repr)
@pytest.mark.parametrize("hex_text", list(VECTORS.values()), ids=list(VECTORS))
def test_rfc_vectors_parse_identically(hex_text: str, vendor: int | None) -> None:
    data = packet(hex_text)

    parsed = c.parse(data, vendor)

    assert type(parsed) is Packet
    assert parsed.data is data
    assert_same_parse(data, vendor)
    assert_same_parse(data + b"\x01\x00\xff", vendor)  # padding
    for cut in range(len(data)):
        assert_same_parse(data[:cut], vendor)


def test_3gpp_vector_is_indexed_by_vendor_key() -> None:
    parsed = c.parse(packet(THREEGPP_ACCESS_REQUEST_ASCII), VENDOR_3GPP)

    assert parsed.value(wire.vendor_key(VENDOR_3GPP, 1)) == b"001010123456789"
    assert parsed.message_authenticator == 20
    assert parsed.proxy_states is None


_CODES = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 11, 12, 13, 40, 43, 52, 255])


@st.composite
def _attribute_like(draw: st.DrawFn) -> bytes:
    """An attribute, Proxy-State, Message-Authenticator or VSA whose length octets may lie."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        kind = draw(st.sampled_from([1, 2, 33, 33, 80, 80, 79, 200, 255, 0]))
        value = draw(st.binary(max_size=18))
        size = draw(st.sampled_from([len(value) + 2] * 4 + [0, 1, len(value) + 3, 255]))
        return bytes((kind, size)) + value
    if choice == 1:
        return MA_PLACEHOLDER
    inner = b"".join(
        bytes((draw(st.integers(0, 255)), draw(st.integers(0, 12)))) + draw(st.binary(max_size=10))
        for _ in range(draw(st.integers(0, 4)))
    )
    inner += draw(st.binary(max_size=1))
    vendor = draw(st.sampled_from([VENDOR_3GPP, 9, 0, 2**32 - 1]))
    size = min(255, draw(st.sampled_from([len(inner) + 6] * 3 + [len(inner) + 7, 2, 3, 5, 6])))
    return bytes((26, size)) + vendor.to_bytes(4, "big") + inner


@st.composite
def _near_packets(draw: st.DrawFn) -> bytes:
    """A datagram with a plausible header and attributes that may be broken anywhere."""
    body = b"".join(draw(st.lists(_attribute_like(), max_size=8)))
    length = max(0, 20 + len(body) + draw(st.sampled_from([0, 0, 0, -1, 1, -3, 7, 5000])))
    length = min(length, 0xFFFF)
    head = bytes((draw(_CODES), draw(st.integers(0, 255)))) + length.to_bytes(2, "big")
    return head + draw(st.binary(min_size=16, max_size=16)) + body + draw(st.binary(max_size=3))


@settings(max_examples=1000, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=80), _near_packets()),
    vendor=st.sampled_from(VENDORS),
)
def test_parse_gives_the_python_packet_or_drop(data: bytes, vendor: int | None) -> None:
    assert_same_parse(data, vendor)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=600), vendor=st.sampled_from(VENDORS))
def test_parse_of_any_bytes_returns_or_raises_malformed_packet(
    data: bytes, vendor: int | None
) -> None:
    try:
        parsed: Packet | Drop = c.parse(data, vendor)
    except MalformedPacket as error:
        parsed = error.drop
    assert type(parsed) is Packet or isinstance(parsed, Drop)


@settings(max_examples=200, deadline=None)
@given(
    attributes=st.lists(
        st.tuples(st.integers(1, 255), st.binary(max_size=253)), max_size=14
    ).filter(lambda items: sum(len(value) + 2 for _, value in items) <= 4076),
    sub_attributes=st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=6),
)
def test_encoded_packets_parse_identically(
    attributes: list[tuple[int, bytes]], sub_attributes: list[tuple[int, bytes]]
) -> None:
    body = b"".join(encode_attribute(kind, value) for kind, value in attributes if kind != 80)
    vsas = b"".join(encode_vsa(VENDOR_3GPP, kind, value) for kind, value in sub_attributes)
    if len(body) + len(vsas) <= 4076:
        body += vsas
    data = encode_packet(Code.ACCESS_REQUEST, 7, AUTHENTICATOR, body)

    for vendor in VENDORS:
        assert_same_parse(data, vendor)


def test_parse_of_the_largest_packet() -> None:
    attributes = b"".join(encode_attribute(33, bytes(253)) for _ in range(15))
    attributes += encode_attribute(200, bytes(4096 - 20 - len(attributes) - 2))
    data = encode_packet(1, 0, bytes(16), attributes)

    parsed = c.parse(data + bytes(100))

    assert parsed.length == 4096
    assert parsed.proxy_states == [20 + 255 * n for n in range(15)]
    assert_same_parse(data + bytes(100), None)
    assert_same_parse(data[:-1] + b"\x00", None)


@pytest.mark.parametrize(
    "convert", [bytearray, memoryview, lambda data: type("Sub", (bytes,), {})(data)]
)
def test_other_buffers_go_to_the_python_walk(convert: Callable[[bytes], bytes]) -> None:
    for hex_text in VECTORS.values():
        data = convert(packet(hex_text))
        for vendor in VENDORS:
            expected = outcome(lambda: parse_python(data, vendor))  # noqa: B023
            assert outcome(lambda: c.parse(data, vendor)) == expected  # noqa: B023


@pytest.mark.parametrize("vendor", [-1, 2**32, 2**70, True, 1.5, "3gpp"], ids=repr)
def test_odd_vendor_ids_behave_as_in_python(vendor: object) -> None:
    data = packet(THREEGPP_ACCESS_REQUEST_ASCII)
    expected = outcome(lambda: parse_python(data, vendor))  # type: ignore[arg-type]

    assert outcome(lambda: c.parse(data, vendor)) == expected  # type: ignore[arg-type]
    # the header is checked first in both
    assert outcome(lambda: c.parse(b"", vendor)) == ("drop", Drop.TOO_SHORT, "too-short")  # type: ignore[arg-type]


def test_parse_takes_keywords_like_the_python_function() -> None:
    data = packet(THREEGPP_ACCESS_REQUEST_ASCII)
    expected = parse_python(data, VENDOR_3GPP)

    assert c.parse(data=data, indexed_vendor=VENDOR_3GPP) == expected
    assert c.parse(data, indexed_vendor=VENDOR_3GPP) == expected
    assert c.parse(data) == parse_python(data)
    calls: list[Callable[[], object]] = [
        lambda: c.parse(),  # type: ignore[call-arg]
        lambda: c.parse(data, 1, 2),  # type: ignore[call-arg]
        lambda: c.parse(data, vendor=1),  # type: ignore[call-arg]
        lambda: c.parse(data, 1, indexed_vendor=1),  # type: ignore[misc]
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()


# --- MD5 and HMAC-MD5 ----------------------------------------------------------------------------


def test_md5_at_every_block_boundary() -> None:
    for size in range(200):
        data = bytes(range(256))[:size] * 3
        assert c.md5(data) == hashlib.md5(data).digest(), size


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=1000))
def test_md5_equals_hashlib(data: bytes) -> None:
    assert c.md5(data) == hashlib.md5(data).digest()
    assert c.md5(bytearray(data)) == hashlib.md5(data).digest()


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from([1, 9, 16, 63, 64, 65, 100, 300]).flatmap(
        lambda size: st.binary(min_size=size, max_size=size)
    ),
    message=st.binary(max_size=300),
)
def test_secret_hmac_md5_equals_hmac_module(key: bytes, message: bytes) -> None:
    expected = hmac.new(key, message, "md5").digest()

    assert c.Secret(key).hmac_md5(message) == expected
    assert PythonSecret(key).hmac_md5(message) == expected


def test_secret_keeps_its_value_and_refuses_an_empty_one() -> None:
    assert c.Secret(SECRET).value is SECRET
    assert c.Secret(value=bytearray(SECRET)).value == SECRET
    with pytest.raises(ValueError, match="must not be empty") as caught:
        c.Secret(b"")
    with pytest.raises(ValueError, match="must not be empty") as expected:
        PythonSecret(b"")
    assert str(caught.value) == str(expected.value)
    with pytest.raises(TypeError):
        c.Secret("text")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        c.Secret(SECRET).value = b"other"  # type: ignore[misc]
    assert SECRET not in repr(c.Secret(SECRET)).encode()


# --- Message-Authenticator -----------------------------------------------------------------------


def signed(attributes: bytes, identifier: int = 9) -> bytes:
    data = bytearray(encode_packet(Code.ACCESS_REQUEST, identifier, AUTHENTICATOR, attributes))
    sign_request(data, PythonSecret(SECRET))
    return bytes(data)


def same_verdict(data: bytes, length: object, offset: object, key: bytes = SECRET) -> object:
    python = outcome(
        lambda: verify_message_authenticator_python(data, length, offset, PythonSecret(key))  # type: ignore[arg-type]
    )
    assert outcome(lambda: c.verify_message_authenticator(data, length, offset, c.Secret(key))) == (  # type: ignore[arg-type]
        python
    )
    return python


@pytest.mark.parametrize(
    "attributes",
    [
        MA_PLACEHOLDER + encode_attribute(1, b"nemo"),
        encode_attribute(1, b"nemo") + MA_PLACEHOLDER + encode_attribute(33, b"state"),
        encode_attribute(1, b"x" * 200) + encode_attribute(30, b"apn") + MA_PLACEHOLDER,
    ],
    ids=["first", "middle", "last"],
)
def test_message_authenticator_verdicts_are_identical(attributes: bytes) -> None:
    data = signed(attributes)
    parsed = parse_python(data)
    position = parsed.message_authenticator

    assert same_verdict(data, parsed.length, position) == ("value", True)
    assert same_verdict(data, parsed.length, position, b"other") == ("value", False)
    assert c.verify_message_authenticator(bytearray(data), len(data), position, c.Secret(SECRET))
    for index in range(len(data)):
        changed = data[:index] + bytes((data[index] ^ 0x01,)) + data[index + 1 :]
        assert same_verdict(changed, parsed.length, position) == ("value", False), index


@settings(max_examples=300, deadline=None)
@given(
    before=st.binary(max_size=60).map(lambda value: encode_attribute(1, value)),
    after=st.binary(max_size=60).map(lambda value: encode_attribute(26, value)),
    padding=st.binary(max_size=8),
    length_change=st.integers(-40, 40),
    offset_change=st.sampled_from([0, 0, 0, -1, 1, 2, -20, 5000]),
)
def test_message_authenticator_edge_arguments_are_identical(
    before: bytes, after: bytes, padding: bytes, length_change: int, offset_change: int
) -> None:
    data = signed(before + MA_PLACEHOLDER + after) + padding
    offset = 20 + len(before)

    same_verdict(data, len(data) - len(padding) + length_change, offset + offset_change)


@pytest.mark.parametrize("offset", [-1, -2, -(10**30)], ids=repr)
def test_message_authenticator_at_a_negative_offset_is_not_valid(offset: int) -> None:
    # -1 is the codec's "absent"; Python would index from the end, C says False for all.
    data = signed(MA_PLACEHOLDER)

    assert c.verify_message_authenticator(data, len(data), offset, c.Secret(SECRET)) is False


def test_message_authenticator_with_huge_arguments() -> None:
    data = signed(MA_PLACEHOLDER + encode_attribute(1, b"nemo"))

    assert same_verdict(data, 10**30, 20) == ("value", True)
    assert same_verdict(data, -(10**30), 20) == ("value", False)
    assert same_verdict(data, len(data), 10**30) == ("error", IndexError)
    assert same_verdict(data, len(data), len(data) - 1) == ("error", IndexError)


def test_verification_needs_a_c_secret() -> None:
    data = signed(MA_PLACEHOLDER)

    with pytest.raises(TypeError, match="Secret"):
        c.verify_message_authenticator(data, len(data), 20, PythonSecret(SECRET))  # type: ignore[arg-type]


# --- replies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_hex", "reply_hex", "attributes"),
    [
        (
            RFC2865_7_1_ACCESS_REQUEST,
            RFC2865_7_1_ACCESS_ACCEPT,
            "06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03",
        ),
        (
            RFC2865_7_2_ACCESS_REQUEST,
            RFC2865_7_2_ACCESS_ACCEPT,
            "06 06 00 00 00 02 07 06 00 00 00 01 08 06 ff ff ff fe 0a 06 00 00 00 02"
            " 0d 06 00 00 00 01 0c 06 00 00 05 dc",
        ),
    ],
    ids=["7.1", "7.2"],
)
def test_rfc2865_replies_are_signed_byte_identical(
    request_hex: str, reply_hex: str, attributes: str
) -> None:
    request = parse_python(packet(request_hex))

    reply = c.sign_reply(
        Code.ACCESS_ACCEPT,
        request.identifier,
        request.authenticator,
        bytes.fromhex(attributes),
        c.Secret(SECRET),
        message_authenticator=False,
    )

    assert reply == packet(reply_hex)


@settings(max_examples=300, deadline=None)
@given(
    code=st.integers(0, 255),
    identifier=st.integers(0, 255),
    request_authenticator=st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=40)),
    attributes=st.binary(max_size=300),
    key=st.binary(min_size=1, max_size=80),
    with_ma=st.booleans(),
)
def test_sign_reply_equals_python(
    code: int,
    identifier: int,
    request_authenticator: bytes,
    attributes: bytes,
    key: bytes,
    with_ma: bool,
) -> None:
    expected = sign_reply_python(
        code,
        identifier,
        request_authenticator,
        attributes,
        PythonSecret(key),
        message_authenticator=with_ma,
    )

    secret = c.Secret(key)
    assert (
        c.sign_reply(
            code,
            identifier,
            request_authenticator,
            attributes,
            secret,
            message_authenticator=with_ma,
        )
        == expected
    )
    assert (
        c.sign_reply(
            code,
            identifier,
            bytearray(request_authenticator),
            memoryview(attributes),
            secret,
            message_authenticator=with_ma,
        )
        == expected
    )
    if with_ma:
        assert c.sign_reply(code, identifier, request_authenticator, attributes, secret) == expected


@pytest.mark.parametrize(
    ("code", "identifier", "size", "with_ma"),
    [
        (256, 0, 0, True),
        (-1, 0, 0, True),
        (2, 256, 0, True),
        (2, 2**70, 0, False),
        (2, 0, 65535 - 38, True),
        (2, 0, 65535 - 37, True),
        (2, 0, 65535 - 20, False),
        (2, 0, 65535 - 19, False),
    ],
)
def test_sign_reply_refuses_what_python_refuses(
    code: int, identifier: int, size: int, with_ma: bool
) -> None:
    attributes = bytes(size)
    arguments = (code, identifier, AUTHENTICATOR, attributes)
    expected = outcome(
        lambda: sign_reply_python(*arguments, PythonSecret(SECRET), message_authenticator=with_ma)
    )

    assert (
        outcome(lambda: c.sign_reply(*arguments, c.Secret(SECRET), message_authenticator=with_ma))
        == expected
    )


def test_sign_reply_arguments() -> None:
    secret = c.Secret(SECRET)
    expected = c.sign_reply(2, 1, AUTHENTICATOR, b"", secret)

    assert (
        c.sign_reply(
            code=2, identifier=1, request_authenticator=AUTHENTICATOR, attributes=b"", secret=secret
        )
        == expected
    )
    assert c.sign_reply(Code.ACCESS_ACCEPT, 1, AUTHENTICATOR, b"", secret) == expected
    calls: list[Callable[[], object]] = [
        lambda: c.sign_reply(2, 1, AUTHENTICATOR, b"", secret, False),  # type: ignore[call-arg]
        lambda: c.sign_reply(2, 1, AUTHENTICATOR, b""),  # type: ignore[call-arg]
        lambda: c.sign_reply(2, 1, AUTHENTICATOR, b"", secret, ma=False),  # type: ignore[call-arg]
        lambda: c.sign_reply(2, 1, AUTHENTICATOR, b"", PythonSecret(SECRET)),  # type: ignore[arg-type]
        lambda: c.sign_reply(2.0, 1, AUTHENTICATOR, b"", secret),  # type: ignore[arg-type]
        lambda: c.sign_reply(2, 1, "text", b"", secret),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()
