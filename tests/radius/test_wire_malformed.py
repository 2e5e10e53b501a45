"""core.radius.wire: what must be silently discarded, and what must not (RFC 2865 §3, §5).

One table of datagrams and the ``Drop`` each earns, named like the comments of FreeRADIUS
``src/tests/unit/protocols/radius/errors.txt``; every datagram is parsed with 3GPP sub-attributes
indexed, as simgate does. Then the near misses: padding, unknown attributes and foreign VSAs
are carried, not errors. Every test runs with the pure-Python walk and with the C one
(the ``parse`` fixture, tests/radius/conftest.py).
"""

from __future__ import annotations

import pytest

from core.radius.codes import Drop, MalformedPacket
from core.radius.wire import encode_attribute, encode_packet, iter_attributes, vendor_key
from tests.radius.conftest import Parse
from tests.vectors.rfc2865 import RFC2865_7_1_ACCESS_REQUEST, packet

VENDOR_3GPP = 10415
AUTH = "00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff"
MA_ZERO = "50 12 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"

MALFORMED = [
    pytest.param("", Drop.TOO_SHORT, id="empty datagram"),
    pytest.param("01 00 00 14 00 11 22 33 44", Drop.TOO_SHORT, id="packet is too short"),
    pytest.param(
        "01 00 00 14 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee",
        Drop.TOO_SHORT,
        id="19 octets, one short of a header",
    ),
    pytest.param(f"01 00 00 13 {AUTH}", Drop.BAD_LENGTH, id="length field is smaller than 20"),
    pytest.param(f"01 00 00 00 {AUTH}", Drop.BAD_LENGTH, id="length field is zero"),
    pytest.param(f"01 00 10 01 {AUTH}", Drop.BAD_LENGTH, id="length field is larger than 4096"),
    pytest.param(f"01 00 ff ff {AUTH}", Drop.BAD_LENGTH, id="length field is 65535"),
    pytest.param(
        f"01 00 00 1a {AUTH} 01 06 6e 65", Drop.TRUNCATED, id="packet is shorter than its length"
    ),
    pytest.param(
        f"01 00 00 1a {AUTH} 01 06 6e 65 6d", Drop.TRUNCATED, id="packet is one octet short"
    ),
    pytest.param(f"01 00 00 18 {AUTH} 01 00 6e 65", Drop.BAD_ATTRIBUTE, id="attribute length 0"),
    pytest.param(
        # Read leniently as three attributes of lengths 1, 1 and 2 it would fill the packet.
        f"01 00 00 18 {AUTH} 01 01 01 02",
        Drop.BAD_ATTRIBUTE,
        id="attribute length 1",
    ),
    pytest.param(
        f"01 00 00 18 {AUTH} 01 06 6e 65 6d 6f",
        Drop.BAD_ATTRIBUTE,
        id="attribute overflows the packet (padding does not count)",
    ),
    pytest.param(
        f"01 00 00 18 {AUTH} 01 03 6e 05",
        Drop.BAD_ATTRIBUTE,
        id="one octet left after the last attribute",
    ),
    pytest.param(
        f"01 00 00 38 {AUTH} {MA_ZERO} {MA_ZERO}",
        Drop.MA_DUPLICATE,
        id="two Message-Authenticators",
    ),
    pytest.param(f"00 00 00 14 {AUTH}", Drop.UNKNOWN_CODE, id="code 0"),
    pytest.param(f"06 00 00 14 {AUTH}", Drop.UNKNOWN_CODE, id="code 6 is unassigned"),
    pytest.param(f"ff 00 00 14 {AUTH}", Drop.UNKNOWN_CODE, id="code 255 is reserved"),
    pytest.param(
        f"01 00 00 20 {AUTH} 1a 0c 00 00 28 af 01 10 30 30 31 30",
        Drop.BAD_ATTRIBUTE,
        id="3GPP sub-attribute overflows its Vendor-Specific",
    ),
    pytest.param(
        f"01 00 00 1e {AUTH} 1a 0a 00 00 28 af 01 00 30 30",
        Drop.BAD_ATTRIBUTE,
        id="3GPP sub-attribute length 0 (the pyrad TLV loop)",
    ),
    pytest.param(
        f"01 00 00 1e {AUTH} 1a 0a 00 00 28 af 14 01 01 02",
        Drop.BAD_ATTRIBUTE,
        id="3GPP sub-attribute length 1",
    ),
    pytest.param(
        f"01 00 00 1e {AUTH} 1a 0a 00 00 28 af 15 03 06 ff",
        Drop.BAD_ATTRIBUTE,
        id="one octet left after the last 3GPP sub-attribute",
    ),
    pytest.param(
        f"01 00 00 1e {AUTH} 1a 0a 00 00 28 af 15 03 06 ff 1e 05 61 62 63",
        Drop.BAD_ATTRIBUTE,
        id="one octet left in a 3GPP Vendor-Specific, padding after",
    ),
]


@pytest.mark.parametrize(("hex_text", "drop"), MALFORMED)
def test_malformed_datagram_is_dropped(parse: Parse, hex_text: str, drop: Drop) -> None:
    with pytest.raises(MalformedPacket) as caught:
        parse(bytes.fromhex(hex_text), VENDOR_3GPP)

    assert caught.value.drop is drop
    assert str(caught.value) == drop.value


def test_octets_past_length_are_padding(parse: Parse) -> None:
    # "Octets outside the range of the Length field MUST be treated as padding and ignored on
    # reception." (RFC 2865 §3) The padding here would be a broken attribute if it were read.
    data = packet(RFC2865_7_1_ACCESS_REQUEST)

    parsed = parse(data + b"\x01\x00\xff", VENDOR_3GPP)

    assert parsed.length == len(data)
    assert parsed.value(1) == b"nemo"
    assert iter_attributes(data + b"\x01\x00\xff") == iter_attributes(data)


def test_padding_after_a_4096_octet_packet_is_ignored(parse: Parse) -> None:
    attributes = b"".join(encode_attribute(200, bytes(253)) for _ in range(15))
    attributes += encode_attribute(200, bytes(4096 - 20 - len(attributes) - 2))
    data = encode_packet(1, 0, bytes(16), attributes)

    assert parse(data + bytes(100)).length == 4096


@pytest.mark.parametrize("kind", [17, 21, 192, 241, 255], ids=lambda kind: f"type {kind}")
def test_unknown_attribute_is_carried(parse: Parse, kind: int) -> None:
    # "A RADIUS server MAY ignore Attributes with an unknown Type." (RFC 2865 §5)
    data = bytes.fromhex(f"01 00 00 1d {AUTH} 01 06 6e 65 6d 6f") + bytes((kind, 3, 0x2A))
    data = data[:2] + len(data).to_bytes(2, "big") + data[4:]

    parsed = parse(data, VENDOR_3GPP)

    assert parsed.value(kind) == b"\x2a"
    assert parsed.value(1) == b"nemo"
    assert iter_attributes(data) == [(1, b"nemo"), (kind, b"\x2a")]


@pytest.mark.parametrize(
    "vsa_hex",
    [
        "1a 0a 00 00 00 09 01 00 30 30",  # Cisco (9) with a sub-attribute of length 0
        "1a 09 00 00 00 09 ff ff ff",  # Cisco with a sub-attribute overflowing
        "1a 07 00 00 01 37 01",  # Microsoft (311) with one lone octet
    ],
    ids=["cisco, sub-attribute length 0", "cisco, overflow", "microsoft, lone octet"],
)
def test_garbage_inside_a_foreign_vsa_is_ignored(parse: Parse, vsa_hex: str) -> None:
    # "A server that does not understand a VSA MUST ignore it" (RFC 2865 §5.26, paraphrased in
    # REFERENCE §1.5): only 3GPP's layout is read.
    vsa = bytes.fromhex(vsa_hex)
    data = bytes.fromhex(f"01 00 00 00 {AUTH}") + vsa + bytes.fromhex("01 06 6e 65 6d 6f")
    data = data[:2] + len(data).to_bytes(2, "big") + data[4:]

    parsed = parse(data, VENDOR_3GPP)

    assert parsed.value(1) == b"nemo"
    assert iter_attributes(data) == [(26, vsa[2:]), (1, b"nemo")]
    assert parsed.value(vendor_key(9, 1)) is None


def test_garbage_inside_a_3gpp_vsa_is_ignored_when_3gpp_is_not_indexed(parse: Parse) -> None:
    data = bytes.fromhex(f"01 00 00 1e {AUTH} 1a 0a 00 00 28 af 01 00 30 30")

    parsed = parse(data)

    assert parsed.length == 30
    assert parsed.offsets == {}


@pytest.mark.parametrize(
    ("attributes_hex", "kind"),
    [
        ("1a 03 00   00 28 af 00" + " 00" * 36, 0),
        ("1a 04 00 00   28 af" + " 00" * 173, 40),
        ("1a 05 00 00 28   af 05 01 02 03", 0xAF),
        ("1a 06 00 00 28 af   01 06 6e 65 6d 6f", 1),
    ],
    ids=["length 3", "length 4", "length 5", "length 6"],
)
def test_vsa_too_short_for_sub_attributes_is_carried(
    parse: Parse, attributes_hex: str, kind: int
) -> None:
    # A Vendor-Specific too short to hold a sub-attribute, followed by octets that complete
    # the 3GPP vendor id (00 00 28 af): they belong to the next attribute, not to 3GPP.
    attributes = bytes.fromhex(attributes_hex)
    data = encode_packet(1, 0, bytes(16), attributes)

    parsed = parse(data, VENDOR_3GPP)

    assert parsed.value(kind) == iter_attributes(data)[1][1]
    assert all(key < 256 for key in parsed.offsets)
