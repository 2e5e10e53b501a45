"""core.radius.auth: authenticators, Message-Authenticator, User-Password hiding and CHAP.

The RFC 2865 §7 replies are reproduced byte for byte; everything else is checked against an
independent computation with ``hashlib``/``hmac`` and by flipping every octet of a signed packet.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.radius.auth import (
    MA_PLACEHOLDER,
    Secret,
    chap_response,
    hide_password,
    sign_reply,
    sign_request,
    verify_accounting_authenticator,
    verify_chap,
    verify_message_authenticator,
    verify_reply,
)
from core.radius.codes import Code
from core.radius.wire import encode_attribute, encode_packet, encode_vsa, parse
from tests.vectors.rfc2865 import (
    RFC2865_7_1_ACCESS_ACCEPT,
    RFC2865_7_1_ACCESS_REQUEST,
    RFC2865_7_1_HIDDEN_PASSWORD,
    RFC2865_7_2_ACCESS_ACCEPT,
    RFC2865_7_2_ACCESS_REQUEST,
    SECRET,
    THREEGPP_ACCESS_REQUEST_ASCII,
    THREEGPP_ACCESS_REQUEST_TBCD,
    THREEGPP_IMEISV,
    THREEGPP_IMEISV_TBCD,
    THREEGPP_IMSI,
    packet,
)

RFC_SECRET = Secret(SECRET)
AUTHENTICATOR = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")


def flipped(data: bytes, position: int) -> bytes:
    """Return ``data`` with the low bit of one octet inverted."""
    return data[:position] + bytes((data[position] ^ 0x01,)) + data[position + 1 :]


def integer(value: int) -> bytes:
    return value.to_bytes(4, "big")


def access_request(attributes: bytes, identifier: int = 9) -> bytes:
    """Encode and sign an Access-Request whose attributes hold the MA placeholder somewhere."""
    data = bytearray(encode_packet(Code.ACCESS_REQUEST, identifier, AUTHENTICATOR, attributes))
    sign_request(data, RFC_SECRET)
    return bytes(data)


# --- RFC 2865 §7 -----------------------------------------------------------------------------


def test_rfc2865_7_1_access_accept_is_signed_byte_identical() -> None:
    request = parse(packet(RFC2865_7_1_ACCESS_REQUEST))
    attributes = (
        encode_attribute(6, integer(1))
        + encode_attribute(15, integer(0))
        + encode_attribute(14, bytes((192, 168, 1, 3)))
    )

    reply = sign_reply(
        Code.ACCESS_ACCEPT,
        request.identifier,
        request.authenticator,
        attributes,
        RFC_SECRET,
        message_authenticator=False,
    )

    assert reply == packet(RFC2865_7_1_ACCESS_ACCEPT)


def test_rfc2865_7_2_access_accept_is_signed_byte_identical() -> None:
    request = parse(packet(RFC2865_7_2_ACCESS_REQUEST))
    attributes = (
        encode_attribute(6, integer(2))
        + encode_attribute(7, integer(1))
        + encode_attribute(8, bytes((255, 255, 255, 254)))
        + encode_attribute(10, integer(2))
        + encode_attribute(13, integer(1))
        + encode_attribute(12, integer(1500))
    )

    reply = sign_reply(
        Code.ACCESS_ACCEPT,
        request.identifier,
        request.authenticator,
        attributes,
        RFC_SECRET,
        message_authenticator=False,
    )

    assert reply == packet(RFC2865_7_2_ACCESS_ACCEPT)


def test_rfc2865_7_1_user_password_hides_to_the_rfc_bytes() -> None:
    authenticator = parse(packet(RFC2865_7_1_ACCESS_REQUEST)).authenticator

    hidden = hide_password(b"arctangent", authenticator, RFC_SECRET)

    assert hidden == bytes.fromhex(RFC2865_7_1_HIDDEN_PASSWORD)


def test_rfc2865_7_1_user_password_reveals_arctangent() -> None:
    # Decryption reverses the MD5 chain (RFC 2865 §5.2): one block, so p1 = c1 XOR MD5(S + RA).
    request = parse(packet(RFC2865_7_1_ACCESS_REQUEST))
    hidden = request.value(2)
    assert hidden is not None
    key = hashlib.md5(SECRET + request.authenticator).digest()

    revealed = bytes(a ^ b for a, b in zip(hidden, key, strict=True))

    assert revealed == b"arctangent" + bytes(6)


@pytest.mark.parametrize(
    ("request_hex", "accept_hex"),
    [
        (RFC2865_7_1_ACCESS_REQUEST, RFC2865_7_1_ACCESS_ACCEPT),
        (RFC2865_7_2_ACCESS_REQUEST, RFC2865_7_2_ACCESS_ACCEPT),
    ],
    ids=["7.1", "7.2"],
)
def test_verify_reply_accepts_the_rfc_accept(request_hex: str, accept_hex: str) -> None:
    authenticator = packet(request_hex)[4:20]

    assert verify_reply(packet(accept_hex), authenticator, RFC_SECRET)


@pytest.mark.parametrize(
    ("request_hex", "accept_hex"),
    [
        (RFC2865_7_1_ACCESS_REQUEST, RFC2865_7_1_ACCESS_ACCEPT),
        (RFC2865_7_2_ACCESS_REQUEST, RFC2865_7_2_ACCESS_ACCEPT),
    ],
    ids=["7.1", "7.2"],
)
def test_verify_reply_rejects_the_rfc_accept_with_any_bit_flipped(
    request_hex: str, accept_hex: str
) -> None:
    authenticator = packet(request_hex)[4:20]
    accept = packet(accept_hex)

    for position in range(len(accept)):
        for bit in range(8):
            changed = bytearray(accept)
            changed[position] ^= 1 << bit
            assert not verify_reply(bytes(changed), authenticator, RFC_SECRET), (position, bit)


def test_verify_reply_rejects_another_request_or_secret() -> None:
    accept = packet(RFC2865_7_1_ACCESS_ACCEPT)
    authenticator = packet(RFC2865_7_1_ACCESS_REQUEST)[4:20]

    assert not verify_reply(accept, packet(RFC2865_7_2_ACCESS_REQUEST)[4:20], RFC_SECRET)
    assert not verify_reply(accept, authenticator, Secret(b"xyzzy5462"))
    assert not verify_reply(accept[:19], authenticator, RFC_SECRET)
    assert not verify_reply(accept[:-1], authenticator, RFC_SECRET)


# --- Message-Authenticator on requests ----------------------------------------------------------


@pytest.mark.parametrize(
    "hex_text",
    [THREEGPP_ACCESS_REQUEST_ASCII, THREEGPP_ACCESS_REQUEST_TBCD],
    ids=["ascii", "tbcd"],
)
def test_3gpp_vector_is_signed_byte_identical_and_verifies(hex_text: str) -> None:
    data = packet(hex_text)
    imeisv = THREEGPP_IMEISV if data[1] == 42 else bytes.fromhex(THREEGPP_IMEISV_TBCD)
    attributes = (
        MA_PLACEHOLDER
        + encode_attribute(1, THREEGPP_IMSI)
        + encode_attribute(4, bytes((192, 168, 1, 16)))
        + encode_attribute(6, integer(2))
        + encode_attribute(7, integer(7))
        + encode_attribute(30, b"iot.example")
        + encode_attribute(31, b"819012345678")
        + encode_vsa(10415, 1, THREEGPP_IMSI)
        + encode_vsa(10415, 20, imeisv)
        + encode_vsa(10415, 21, b"\x06")
    )

    assert access_request(attributes, identifier=data[1]) == data
    parsed = parse(data)
    assert verify_message_authenticator(
        data, parsed.length, parsed.message_authenticator, RFC_SECRET
    )


def test_signed_request_message_authenticator_is_hmac_md5_of_the_packet() -> None:
    data = access_request(MA_PLACEHOLDER + encode_attribute(1, b"nemo"))

    zeroed = data[:22] + bytes(16) + data[38:]

    assert data[4:20] == AUTHENTICATOR  # an Access-Request keeps its random authenticator
    assert data[22:38] == hmac.new(SECRET, zeroed, "md5").digest()


@pytest.mark.parametrize(
    "attributes",
    [
        MA_PLACEHOLDER + encode_attribute(1, b"nemo"),
        encode_attribute(1, b"nemo") + MA_PLACEHOLDER + encode_attribute(33, b"state"),
        encode_attribute(1, b"nemo") + encode_attribute(30, b"apn") + MA_PLACEHOLDER,
    ],
    ids=["first", "middle", "last"],
)
def test_message_authenticator_verifies_and_any_flipped_octet_fails(attributes: bytes) -> None:
    data = access_request(attributes)
    parsed = parse(data)
    position = parsed.message_authenticator

    assert verify_message_authenticator(data, parsed.length, position, RFC_SECRET)
    assert not verify_message_authenticator(data, parsed.length, position, Secret(b"other"))
    for index in range(len(data)):
        changed = flipped(data, index)
        assert not verify_message_authenticator(changed, parsed.length, position, RFC_SECRET), index


def test_message_authenticator_of_wrong_length_fails() -> None:
    # The attribute is 18 octets (RFC 3579 §3.2); a 17-octet one is not checked, it fails.
    data = encode_packet(Code.ACCESS_REQUEST, 1, AUTHENTICATOR, b"\x50\x11" + bytes(15))

    assert not verify_message_authenticator(data, len(data), 20, RFC_SECRET)


def test_message_authenticator_of_19_octets_fails_even_with_a_right_hmac() -> None:
    # A 19-octet attribute whose first 16 value octets are the HMAC computed as for an 18-octet
    # one: only the length tells it apart.
    data = bytearray(encode_packet(Code.ACCESS_REQUEST, 1, AUTHENTICATOR, b"\x50\x13" + bytes(17)))
    data[22:38] = hmac.new(SECRET, bytes(data), "md5").digest()

    assert not verify_message_authenticator(bytes(data), len(data), 20, RFC_SECRET)


# --- Message-Authenticator and Response Authenticator on replies --------------------------------


def test_sign_reply_puts_message_authenticator_first() -> None:
    attributes = encode_attribute(18, b"welcome") + encode_attribute(33, b"proxy")

    reply = sign_reply(Code.ACCESS_ACCEPT, 5, AUTHENTICATOR, attributes, RFC_SECRET)

    assert reply[20:22] == b"\x50\x12"  # attribute 80, right after the header
    assert reply[38:] == attributes
    assert int.from_bytes(reply[2:4], "big") == len(reply) == 20 + 18 + len(attributes)
    assert reply[:2] == bytes((Code.ACCESS_ACCEPT, 5))
    assert verify_reply(reply, AUTHENTICATOR, RFC_SECRET)


def test_sign_reply_message_authenticator_uses_the_request_authenticator() -> None:
    # RFC 3579 §3.2: computed over the reply with the Request Authenticator in its header, then
    # covered by the Response Authenticator (RFC 2865 §3).
    reply = sign_reply(Code.ACCESS_REJECT, 5, AUTHENTICATOR, b"", RFC_SECRET)

    expected_mac = hmac.new(SECRET, reply[:4] + AUTHENTICATOR + MA_PLACEHOLDER, "md5").digest()
    assert reply[22:38] == expected_mac
    expected_response = hashlib.md5(reply[:4] + AUTHENTICATOR + reply[20:] + SECRET).digest()
    assert reply[4:20] == expected_response


def test_verify_reply_checks_the_message_authenticator_itself() -> None:
    # A reply whose Response Authenticator is right but whose Message-Authenticator is wrong.
    reply = bytearray(sign_reply(Code.ACCESS_ACCEPT, 5, AUTHENTICATOR, b"", RFC_SECRET))
    reply[30] ^= 0xFF
    reply[4:20] = hashlib.md5(bytes(reply[:4]) + AUTHENTICATOR + reply[20:] + SECRET).digest()

    assert not verify_reply(bytes(reply), AUTHENTICATOR, RFC_SECRET)


def test_signed_reply_with_any_flipped_octet_fails() -> None:
    reply = sign_reply(
        Code.ACCESS_ACCEPT, 5, AUTHENTICATOR, encode_attribute(18, b"ok"), RFC_SECRET
    )

    for index in range(len(reply)):
        assert not verify_reply(flipped(reply, index), AUTHENTICATOR, RFC_SECRET), index


# --- HMAC-MD5 with pre-keyed states ------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    key=st.sampled_from([1, 16, 64, 65, 100]).flatmap(
        lambda size: st.binary(min_size=size, max_size=size)
    ),
    message=st.binary(max_size=300),
)
def test_secret_hmac_md5_equals_hmac_module(key: bytes, message: bytes) -> None:
    assert Secret(key).hmac_md5(message) == hmac.new(key, message, "md5").digest()


def test_secret_hmac_md5_can_be_reused() -> None:
    secret = Secret(b"k")

    assert secret.hmac_md5(b"a") == secret.hmac_md5(b"a") != secret.hmac_md5(b"b")


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        Secret(b"")


# --- Accounting-Request and Disconnect/CoA authenticators ---------------------------------------


def accounting_request() -> bytes:
    attributes = (
        encode_attribute(40, integer(1))  # Acct-Status-Type Start
        + encode_attribute(44, b"session-1")
        + encode_attribute(4, bytes((192, 168, 1, 16)))
    )
    data = bytearray(encode_packet(Code.ACCOUNTING_REQUEST, 3, AUTHENTICATOR, attributes))
    sign_request(data, RFC_SECRET)
    return bytes(data)


def test_accounting_request_authenticator_is_md5_over_zeros() -> None:
    # RFC 2866 §3: MD5(Code + Identifier + Length + 16 zero octets + request attributes + secret).
    data = accounting_request()

    expected = hashlib.md5(data[:4] + bytes(16) + data[20:] + SECRET).digest()

    assert data[4:20] == expected
    assert verify_accounting_authenticator(data, len(data), RFC_SECRET)


def test_accounting_request_with_any_flipped_octet_fails() -> None:
    data = accounting_request()

    for index in range(len(data)):
        assert not verify_accounting_authenticator(flipped(data, index), len(data), RFC_SECRET)


def test_accounting_request_with_zero_or_other_secret_fails() -> None:
    # RFC 5080 §2.3.3: early clients sent all-zero authenticators; they MUST be discarded.
    data = accounting_request()

    assert not verify_accounting_authenticator(
        data[:4] + bytes(16) + data[20:], len(data), RFC_SECRET
    )
    assert not verify_accounting_authenticator(data, len(data), Secret(b"xyzzy5462"))


def test_coa_request_message_authenticator_is_computed_over_a_zero_authenticator() -> None:
    # RFC 5176 §3.4: MA over the packet with Request Authenticator and MA both zero, then the
    # Request Authenticator over the packet with the MA filled in.
    attributes = MA_PLACEHOLDER + encode_attribute(1, b"nemo")
    data = bytearray(encode_packet(Code.COA_REQUEST, 3, AUTHENTICATOR, attributes))

    sign_request(data, RFC_SECRET)

    zeroed = bytes(data[:4]) + bytes(16) + MA_PLACEHOLDER + bytes(data[38:])
    assert data[22:38] == hmac.new(SECRET, zeroed, "md5").digest()
    expected = hashlib.md5(bytes(data[:4]) + bytes(16) + bytes(data[20:]) + SECRET).digest()
    assert data[4:20] == expected


# --- CHAP ---------------------------------------------------------------------------------------


def chap_password(ident: int, password: bytes, challenge: bytes) -> bytes:
    return bytes((ident,)) + chap_response(ident, password, challenge)


def test_chap_response_is_md5_of_ident_password_challenge() -> None:
    expected = hashlib.md5(b"\x16" + b"secret" + AUTHENTICATOR).digest()

    assert chap_response(0x16, b"secret", AUTHENTICATOR) == expected


def test_verify_chap_accepts_the_right_password() -> None:
    assert verify_chap(chap_password(0x16, b"secret", AUTHENTICATOR), b"secret", AUTHENTICATOR)


def test_verify_chap_rejects_a_wrong_password_or_challenge() -> None:
    value = chap_password(0x16, b"secret", AUTHENTICATOR)

    assert not verify_chap(value, b"Secret", AUTHENTICATOR)
    assert not verify_chap(value, b"", AUTHENTICATOR)
    assert not verify_chap(value, b"secret", bytes(16))


@pytest.mark.parametrize("ident", [128, 200, 255])
def test_verify_chap_with_ident_above_127(ident: int) -> None:
    # pyrad PR #86: chr(ident).encode("utf-8") gives two octets above 127; the ident is one raw
    # octet (RFC 1994 §4.1).
    value = chap_password(ident, b"secret", AUTHENTICATOR)

    assert value[1:] == hashlib.md5(bytes((ident,)) + b"secret" + AUTHENTICATOR).digest()
    assert value[1:] != hashlib.md5(chr(ident).encode() + b"secret" + AUTHENTICATOR).digest()
    assert verify_chap(value, b"secret", AUTHENTICATOR)


@pytest.mark.parametrize("size", [0, 1, 16, 18, 19], ids=lambda size: f"{size} octets")
def test_verify_chap_rejects_a_value_of_the_wrong_length(size: int) -> None:
    # The value is CHAP-Ident + 16-octet response = 17 octets (attribute length 19, §5.3).
    value = chap_password(0x16, b"secret", AUTHENTICATOR)
    value = (value + bytes(2))[:size]

    assert not verify_chap(value, b"secret", AUTHENTICATOR)


# --- User-Password hiding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "size"),
    [(b"", 16), (b"a", 16), (bytes(15), 16), (b"x" * 16, 16), (b"x" * 17, 32), (b"y" * 128, 128)],
    ids=["empty", "1", "15", "16", "17", "128"],
)
def test_hide_password_pads_to_16_octet_blocks(password: bytes, size: int) -> None:
    hidden = hide_password(password, AUTHENTICATOR, RFC_SECRET)

    assert len(hidden) == size


def test_hide_password_chains_blocks() -> None:
    # b2 = MD5(S + c1): the second block depends on the first hidden block (RFC 2865 §5.2).
    password = b"0123456789abcdef" + b"ghij"
    hidden = hide_password(password, AUTHENTICATOR, RFC_SECRET)

    first = bytes(
        a ^ b
        for a, b in zip(password[:16], hashlib.md5(SECRET + AUTHENTICATOR).digest(), strict=True)
    )
    second_key = hashlib.md5(SECRET + first).digest()
    second = bytes(a ^ b for a, b in zip(b"ghij" + bytes(12), second_key, strict=True))
    assert hidden == first + second
