"""core.radius.wire: the RFC 2865 §7 and 3GPP vectors decoded and re-encoded, and properties.

Each vector is decoded attribute by attribute and rebuilt byte-identical from its attributes
with ``encode_*``; hypothesis checks that ``parse`` only ever returns or raises
``MalformedPacket`` and that encode-then-parse gives every attribute back.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.radius.codes import Code, Drop, MalformedPacket
from core.radius.dictionary import load as load_dictionary
from core.radius.wire import (
    Packet,
    encode_attribute,
    encode_packet,
    encode_vsa,
    iter_attributes,
    parse,
    vendor_key,
)
from tests.vectors.rfc2865 import (
    RFC2865_7_1_ACCESS_ACCEPT,
    RFC2865_7_1_ACCESS_REQUEST,
    RFC2865_7_1_HIDDEN_PASSWORD,
    RFC2865_7_2_ACCESS_ACCEPT,
    RFC2865_7_2_ACCESS_REQUEST,
    THREEGPP_ACCESS_REQUEST_ASCII,
    THREEGPP_ACCESS_REQUEST_TBCD,
    THREEGPP_IMEISV,
    THREEGPP_IMEISV_TBCD,
    THREEGPP_IMSI,
    packet,
)

VENDOR_3GPP = 10415
IMSI_KEY = vendor_key(VENDOR_3GPP, 1)
IMEISV_KEY = vendor_key(VENDOR_3GPP, 20)
RAT_TYPE_KEY = vendor_key(VENDOR_3GPP, 21)

# Attribute types (RFC 2865 §5) named for readability of the expected lists below.
USER_NAME, USER_PASSWORD, CHAP_PASSWORD, NAS_IP_ADDRESS, NAS_PORT = 1, 2, 3, 4, 5
SERVICE_TYPE, FRAMED_PROTOCOL, FRAMED_IP_ADDRESS, FRAMED_ROUTING = 6, 7, 8, 10
FRAMED_MTU, FRAMED_COMPRESSION, LOGIN_IP_HOST, LOGIN_SERVICE = 12, 13, 14, 15
CALLED_STATION_ID, CALLING_STATION_ID, VENDOR_SPECIFIC = 30, 31, 26
PROXY_STATE, MESSAGE_AUTHENTICATOR = 33, 80


def integer(value: int) -> bytes:
    return value.to_bytes(4, "big")


def rebuild(data: bytes) -> bytes:
    """Encode a packet again from its header fields and decoded attributes."""
    parsed = parse(data)
    attributes = b"".join(encode_attribute(kind, value) for kind, value in iter_attributes(data))
    return encode_packet(parsed.code, parsed.identifier, parsed.authenticator, attributes)


# --- RFC 2865 §7.1: PAP -------------------------------------------------------------------


def test_rfc2865_7_1_access_request_decodes() -> None:
    data = packet(RFC2865_7_1_ACCESS_REQUEST)

    parsed = parse(data)

    assert parsed.code == Code.ACCESS_REQUEST
    assert parsed.identifier == 0
    assert parsed.length == 56 == len(data)
    assert parsed.authenticator == bytes.fromhex("0f403f9473978057bd83d5cb98f4227a")
    assert parsed.value(USER_NAME) == b"nemo"
    assert parsed.value(USER_PASSWORD) == bytes.fromhex(RFC2865_7_1_HIDDEN_PASSWORD)
    assert parsed.value(NAS_IP_ADDRESS) == bytes((192, 168, 1, 16))
    assert parsed.value(NAS_PORT) == integer(3)
    assert parsed.value(CHAP_PASSWORD) is None
    assert parsed.message_authenticator == -1
    assert parsed.proxy_state_attributes() == b""
    assert iter_attributes(data) == [
        (USER_NAME, b"nemo"),
        (USER_PASSWORD, bytes.fromhex(RFC2865_7_1_HIDDEN_PASSWORD)),
        (NAS_IP_ADDRESS, bytes((192, 168, 1, 16))),
        (NAS_PORT, integer(3)),
    ]


def test_rfc2865_7_1_access_accept_decodes() -> None:
    data = packet(RFC2865_7_1_ACCESS_ACCEPT)

    parsed = parse(data)

    assert parsed.code == Code.ACCESS_ACCEPT
    assert parsed.identifier == 0
    assert parsed.length == 38
    assert parsed.authenticator == bytes.fromhex("86fe220e7624ba2a1005f6bf9b55e0b2")
    assert iter_attributes(data) == [
        (SERVICE_TYPE, integer(1)),  # Login
        (LOGIN_SERVICE, integer(0)),  # Telnet
        (LOGIN_IP_HOST, bytes((192, 168, 1, 3))),
    ]


# --- RFC 2865 §7.2: CHAP ------------------------------------------------------------------


def test_rfc2865_7_2_access_request_decodes() -> None:
    data = packet(RFC2865_7_2_ACCESS_REQUEST)

    parsed = parse(data)

    assert parsed.code == Code.ACCESS_REQUEST
    assert parsed.identifier == 1
    assert parsed.length == 71
    chap_password = parsed.value(CHAP_PASSWORD)
    assert chap_password is not None
    assert chap_password[0] == 0x16  # CHAP-Ident 22
    assert chap_password[1:] == bytes.fromhex("e97557c316185895f293ff6344077275")
    assert iter_attributes(data) == [
        (USER_NAME, b"flopsy"),
        (CHAP_PASSWORD, chap_password),
        (NAS_IP_ADDRESS, bytes((192, 168, 1, 16))),
        (NAS_PORT, integer(20)),
        (SERVICE_TYPE, integer(2)),  # Framed
        (FRAMED_PROTOCOL, integer(1)),  # PPP
    ]


def test_rfc2865_7_2_access_accept_decodes() -> None:
    data = packet(RFC2865_7_2_ACCESS_ACCEPT)

    parsed = parse(data)

    assert parsed.code == Code.ACCESS_ACCEPT
    assert parsed.identifier == 1
    assert parsed.length == 56
    assert iter_attributes(data) == [
        (SERVICE_TYPE, integer(2)),
        (FRAMED_PROTOCOL, integer(1)),
        (FRAMED_IP_ADDRESS, bytes((255, 255, 255, 254))),
        (FRAMED_ROUTING, integer(2)),
        (FRAMED_COMPRESSION, integer(1)),  # Van Jacobson TCP/IP
        (FRAMED_MTU, integer(1500)),
    ]


@pytest.mark.parametrize(
    "hex_text",
    [
        RFC2865_7_1_ACCESS_REQUEST,
        RFC2865_7_1_ACCESS_ACCEPT,
        RFC2865_7_2_ACCESS_REQUEST,
        RFC2865_7_2_ACCESS_ACCEPT,
        THREEGPP_ACCESS_REQUEST_ASCII,
        THREEGPP_ACCESS_REQUEST_TBCD,
    ],
    ids=["7.1 request", "7.1 accept", "7.2 request", "7.2 accept", "3gpp ascii", "3gpp tbcd"],
)
def test_vector_reencodes_byte_identical(hex_text: str) -> None:
    data = packet(hex_text)

    assert rebuild(data) == data


@pytest.mark.parametrize(
    ("hex_text", "names"),
    [
        (
            RFC2865_7_1_ACCESS_REQUEST,
            ["User-Name", "User-Password", "NAS-IP-Address", "NAS-Port"],
        ),
        (
            RFC2865_7_2_ACCESS_REQUEST,
            [
                "User-Name",
                "CHAP-Password",
                "NAS-IP-Address",
                "NAS-Port",
                "Service-Type",
                "Framed-Protocol",
            ],
        ),
        (
            THREEGPP_ACCESS_REQUEST_ASCII,
            [
                "Message-Authenticator",
                "User-Name",
                "NAS-IP-Address",
                "Service-Type",
                "Framed-Protocol",
                "Called-Station-Id",
                "Calling-Station-Id",
                "3GPP-IMSI",
                "3GPP-IMEISV",
                "3GPP-RAT-Type",
            ],
        ),
    ],
    ids=["7.1 request", "7.2 request", "3gpp ascii"],
)
def test_request_attributes_have_their_dictionary_names(hex_text: str, names: list[str]) -> None:
    dictionary = load_dictionary()
    found = []
    for kind, value in iter_attributes(packet(hex_text)):
        # A 3GPP Vendor-Specific holds one sub-attribute here: vendor id, type, length, value.
        vendor, kind = (int.from_bytes(value[:4], "big"), value[4]) if kind == 26 else (0, kind)
        found.append(dictionary.by_code[(vendor, kind)].name)

    assert found == names


# --- 3GPP TS 29.061 Access-Requests ---------------------------------------------------------


def test_3gpp_access_request_ascii_imeisv_decodes() -> None:
    data = packet(THREEGPP_ACCESS_REQUEST_ASCII)

    parsed = parse(data, VENDOR_3GPP)

    assert parsed.code == Code.ACCESS_REQUEST
    assert parsed.identifier == 42
    assert parsed.message_authenticator == 20  # first attribute, right after the header
    assert parsed.value(IMSI_KEY) == THREEGPP_IMSI
    assert parsed.value(IMEISV_KEY) == THREEGPP_IMEISV
    assert parsed.value(RAT_TYPE_KEY) == b"\x06"  # EUTRAN
    assert parsed.value(USER_NAME) == THREEGPP_IMSI
    assert parsed.value(SERVICE_TYPE) == integer(2)
    assert parsed.value(FRAMED_PROTOCOL) == integer(7)  # GPRS-PDP-Context
    assert parsed.value(CALLED_STATION_ID) == b"iot.example"
    assert parsed.value(CALLING_STATION_ID) == b"819012345678"
    assert [kind for kind, _ in iter_attributes(data)] == [
        MESSAGE_AUTHENTICATOR,
        USER_NAME,
        NAS_IP_ADDRESS,
        SERVICE_TYPE,
        FRAMED_PROTOCOL,
        CALLED_STATION_ID,
        CALLING_STATION_ID,
        VENDOR_SPECIFIC,
        VENDOR_SPECIFIC,
        VENDOR_SPECIFIC,
    ]


def test_3gpp_access_request_tbcd_imeisv_decodes() -> None:
    data = packet(THREEGPP_ACCESS_REQUEST_TBCD)

    parsed = parse(data, VENDOR_3GPP)

    assert parsed.identifier == 43
    assert parsed.value(IMSI_KEY) == THREEGPP_IMSI
    assert parsed.value(IMEISV_KEY) == bytes.fromhex(THREEGPP_IMEISV_TBCD)


def test_3gpp_vsas_rebuild_from_encode_vsa() -> None:
    data = packet(THREEGPP_ACCESS_REQUEST_ASCII)
    vsas = [value for kind, value in iter_attributes(data) if kind == VENDOR_SPECIFIC]

    assert vsas == [
        encode_vsa(VENDOR_3GPP, 1, THREEGPP_IMSI)[2:],
        encode_vsa(VENDOR_3GPP, 20, THREEGPP_IMEISV)[2:],
        encode_vsa(VENDOR_3GPP, 21, b"\x06")[2:],
    ]


def test_vendor_attributes_are_not_indexed_unless_asked() -> None:
    parsed = parse(packet(THREEGPP_ACCESS_REQUEST_ASCII))

    assert parsed.value(IMSI_KEY) is None
    assert parsed.value(IMEISV_KEY) is None
    assert parsed.value(USER_NAME) == THREEGPP_IMSI


def test_vendor_key_packs_vendor_above_type() -> None:
    assert vendor_key(VENDOR_3GPP, 20) == 0x28AF14
    assert vendor_key(VENDOR_3GPP, 1) != vendor_key(VENDOR_3GPP, 20)


# --- attribute order and Proxy-State -------------------------------------------------------


def test_value_returns_the_first_of_repeated_attributes() -> None:
    attributes = encode_attribute(USER_NAME, b"first") + encode_attribute(USER_NAME, b"second")
    data = encode_packet(Code.ACCESS_REQUEST, 7, bytes(16), attributes)

    parsed = parse(data)

    assert parsed.value(USER_NAME) == b"first"
    assert iter_attributes(data) == [(USER_NAME, b"first"), (USER_NAME, b"second")]


def test_first_3gpp_sub_attribute_wins_across_vsas() -> None:
    attributes = encode_vsa(VENDOR_3GPP, 20, b"35921108976543") + encode_vsa(
        VENDOR_3GPP, 20, b"49015420323751"
    )
    data = encode_packet(Code.ACCESS_REQUEST, 7, bytes(16), attributes)

    assert parse(data, VENDOR_3GPP).value(IMEISV_KEY) == b"35921108976543"


def test_several_sub_attributes_in_one_vsa_are_all_indexed() -> None:
    # "Multiple subattributes MAY be encoded within a single Vendor-Specific attribute"
    # (RFC 2865 §5.26).
    inner = b"\x01\x05001" + b"\x14\x1035921108976543"
    vsa = bytes((VENDOR_SPECIFIC, len(inner) + 6)) + VENDOR_3GPP.to_bytes(4, "big") + inner
    data = encode_packet(Code.ACCESS_REQUEST, 7, bytes(16), vsa)

    parsed = parse(data, VENDOR_3GPP)

    assert parsed.value(IMSI_KEY) == b"001"
    assert parsed.value(IMEISV_KEY) == b"35921108976543"


def test_proxy_states_are_echoed_in_order_with_their_headers() -> None:
    attributes = (
        encode_attribute(PROXY_STATE, b"one")
        + encode_attribute(USER_NAME, b"nemo")
        + encode_attribute(PROXY_STATE, b"two")
        + encode_attribute(PROXY_STATE, b"")
    )
    data = encode_packet(Code.ACCESS_REQUEST, 7, bytes(16), attributes)

    parsed = parse(data)

    assert parsed.proxy_state_attributes() == b"\x21\x05one\x21\x05two\x21\x02"


# --- encoders refuse what cannot be encoded -------------------------------------------------


def test_encode_attribute_takes_253_octets_and_no_more() -> None:
    assert encode_attribute(USER_NAME, bytes(253))[:2] == b"\x01\xff"
    with pytest.raises(ValueError, match="253"):
        encode_attribute(USER_NAME, bytes(254))


def test_encode_vsa_takes_247_octets_and_no_more() -> None:
    assert encode_vsa(VENDOR_3GPP, 1, bytes(247))[:2] == b"\x1a\xff"
    with pytest.raises(ValueError, match="too long"):
        encode_vsa(VENDOR_3GPP, 1, bytes(248))


@pytest.mark.parametrize(
    ("identifier", "authenticator", "attributes"),
    [
        (256, bytes(16), b""),
        (-1, bytes(16), b""),
        (0, bytes(15), b""),
        (0, bytes(17), b""),
        (0, bytes(16), bytes(4096 - 20 + 1)),
    ],
    ids=["identifier 256", "identifier -1", "authenticator 15", "authenticator 17", "4097"],
)
def test_encode_packet_refuses_out_of_range_headers(
    identifier: int, authenticator: bytes, attributes: bytes
) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_packet(Code.ACCESS_REQUEST, identifier, authenticator, attributes)


def test_encode_packet_takes_4096_octets() -> None:
    full = b"".join(encode_attribute(200, bytes(253)) for _ in range(15))
    full += encode_attribute(200, bytes(4096 - 20 - len(full) - 2))

    data = encode_packet(Code.ACCESS_REQUEST, 0, bytes(16), full)

    assert len(data) == 4096
    assert parse(data).length == 4096


# --- properties ----------------------------------------------------------------------------

_CODES = st.sampled_from([0, 1, 2, 3, 4, 5, 11, 12, 13, 40, 43, 52, 255])


@st.composite
def _attribute_like(draw: st.DrawFn) -> bytes:
    """An attribute whose length octet may lie, or a 3GPP VSA whose sub-attributes may lie."""
    if draw(st.booleans()):
        value = draw(st.binary(max_size=12))
        size = draw(st.sampled_from([len(value) + 2, 0, 1, len(value) + 3, 255]))
        return bytes((draw(st.integers(0, 255)), size)) + value
    inner = b"".join(
        bytes((draw(st.integers(0, 255)), draw(st.integers(0, 12)))) + draw(st.binary(max_size=10))
        for _ in range(draw(st.integers(0, 3)))
    )
    inner += draw(st.binary(max_size=1))
    vendor = draw(st.sampled_from([VENDOR_3GPP, 9, 0]))
    size = min(255, draw(st.sampled_from([len(inner) + 6, len(inner) + 7, 2, 6])))
    return bytes((VENDOR_SPECIFIC, size)) + vendor.to_bytes(4, "big") + inner


@st.composite
def _near_packets(draw: st.DrawFn) -> bytes:
    """A datagram with a plausible header and attributes that may be broken anywhere."""
    body = b"".join(draw(st.lists(_attribute_like(), max_size=6)))
    length = max(0, 20 + len(body) + draw(st.sampled_from([0, 0, 0, -1, 1, -3, 7])))
    head = bytes((draw(_CODES), draw(st.integers(0, 255)))) + length.to_bytes(2, "big")
    return head + draw(st.binary(min_size=16, max_size=16)) + body + draw(st.binary(max_size=3))


def parse_or_drop(data: bytes, indexed: int | None) -> Packet | Drop:
    try:
        return parse(data, indexed)
    except MalformedPacket as error:
        return error.drop


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=64), _near_packets()),
    indexed=st.sampled_from([None, VENDOR_3GPP, 9]),
)
def test_parse_returns_a_packet_or_raises_malformed_packet(
    data: bytes, indexed: int | None
) -> None:
    parsed = parse_or_drop(data, indexed)

    if isinstance(parsed, Drop):
        return
    assert isinstance(parsed, Packet)
    assert 20 <= parsed.length <= len(data)
    # A packet that parses is exactly filled by its attributes (RFC 6613 §2.6.4).
    attributes = iter_attributes(data)
    assert sum(len(value) + 2 for _, value in attributes) == parsed.length - 20
    for key in parsed.offsets:
        assert parsed.value(key) is not None


_VALUES = st.binary(max_size=253)
# Vendor-Specific and Message-Authenticator have their own rules; Proxy-State is drawn often.
_KINDS = st.one_of(
    st.sampled_from([USER_NAME, PROXY_STATE, PROXY_STATE, 200]),
    st.integers(1, 255).filter(lambda kind: kind not in (VENDOR_SPECIFIC, MESSAGE_AUTHENTICATOR)),
)


@settings(max_examples=150, deadline=None)
@given(
    attributes=st.lists(st.tuples(_KINDS, _VALUES), max_size=12),
    code=st.sampled_from(list(Code)),
    identifier=st.integers(0, 255),
    authenticator=st.binary(min_size=16, max_size=16),
)
def test_encode_then_parse_gives_every_attribute_back(
    attributes: list[tuple[int, bytes]], code: Code, identifier: int, authenticator: bytes
) -> None:
    encoded = [encode_attribute(kind, value) for kind, value in attributes]
    data = encode_packet(code, identifier, authenticator, b"".join(encoded))

    parsed = parse(data)

    assert (parsed.code, parsed.identifier, parsed.authenticator) == (
        code,
        identifier,
        authenticator,
    )
    assert iter_attributes(data) == attributes
    first: dict[int, bytes] = {}
    for kind, value in attributes:
        first.setdefault(kind, value)
    for kind, value in first.items():
        if kind != PROXY_STATE:
            assert parsed.value(kind) == value
    expected_proxy = b"".join(
        item for item, (kind, _) in zip(encoded, attributes, strict=True) if kind == PROXY_STATE
    )
    assert parsed.proxy_state_attributes() == expected_proxy


@settings(max_examples=100, deadline=None)
@given(
    sub_attributes=st.lists(
        st.tuples(st.integers(0, 255), st.binary(max_size=40)), min_size=1, max_size=8
    )
)
def test_encode_vsa_then_parse_indexes_the_first_of_each_vendor_type(
    sub_attributes: list[tuple[int, bytes]],
) -> None:
    body = b"".join(encode_vsa(VENDOR_3GPP, kind, value) for kind, value in sub_attributes)
    data = encode_packet(Code.ACCESS_REQUEST, 0, bytes(16), body)

    parsed = parse(data, VENDOR_3GPP)

    first: dict[int, bytes] = {}
    for kind, value in sub_attributes:
        first.setdefault(kind, value)
    for kind, value in first.items():
        assert parsed.value(vendor_key(VENDOR_3GPP, kind)) == value
