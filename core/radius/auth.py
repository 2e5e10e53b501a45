"""Authenticators: Request/Response Authenticator, Message-Authenticator, CHAP.

Owns: every MD5 and HMAC-MD5 computation RADIUS defines (REFERENCE §1.7-1.10), per shared
secret, pre-keyed once (``Secret``) so a packet costs copies of hash states, not key schedules.

Invariants: comparisons of secret-derived values are constant-time (``hmac.compare_digest``),
as the BlastRADIUS draft asks. Message-Authenticator is computed before the Response
Authenticator and placed first in every Access-* reply (RFC 3579 §3.2, BlastRADIUS).
``Secret``, ``verify_message_authenticator`` and ``sign_reply`` are the C versions of
``core.radius._speedups`` when it is built (core/radius/native.py), else the ``*_python``
definitions below, which are the specification both follow.

Must not: import asyncio, socket, time, logging or metrics.
"""

from __future__ import annotations

from hmac import compare_digest
from typing import TYPE_CHECKING, Final

from core.radius.codes import HEADER_LEN
from core.radius.native import speedups

if TYPE_CHECKING:
    from hashlib import md5
else:
    try:  # perf: CPython's own MD5 copies a plain struct; OpenSSL's EVP copy allocates and
        from _md5 import md5  # zeroes a context per digest (bench/micro.py, callgrind)
    except ImportError:  # a CPython built without its MD5 module
        from hashlib import md5

ZERO16: Final = bytes(16)
#: A Message-Authenticator attribute with its value zeroed, as it is while the HMAC is computed.
MA_PLACEHOLDER: Final = b"\x50\x12" + ZERO16
_MA_TYPE: Final = 80


class PythonSecret:
    """A client's shared secret with its HMAC-MD5 inner and outer states computed once.

    HMAC (RFC 2104) of a message is MD5(K^opad || MD5(K^ipad || message)); the two keyed prefix
    states are copied per packet instead of re-keying (bench/micro.py: 0.85 µs against 2 µs).
    """

    __slots__ = ("_inner", "_outer", "value")

    def __init__(self, value: bytes) -> None:
        if not value:
            raise ValueError("a RADIUS shared secret must not be empty (RFC 2865 §3)")
        self.value = value
        key = md5(value).digest() if len(value) > 64 else value
        key = key.ljust(64, b"\x00")
        self._inner = md5(bytes(octet ^ 0x36 for octet in key))
        self._outer = md5(bytes(octet ^ 0x5C for octet in key))

    def hmac_md5(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def verify_message_authenticator_python(
    data: bytes, length: int, ma_offset: int, secret: Secret
) -> bool:
    """Check a request's Message-Authenticator (attribute header at ``ma_offset``).

    The HMAC covers the packet as received with the Message-Authenticator value zeroed
    (RFC 3579 §3.2); for Access-Request and Status-Server the authenticator field is the Request
    Authenticator as sent.
    """
    value = ma_offset + 2
    if data[ma_offset + 1] != 18:
        return False
    message = data[:value] + ZERO16 + data[value + 16 : length]
    return compare_digest(secret.hmac_md5(message), data[value : value + 16])


def verify_accounting_authenticator(data: bytes, length: int, secret: Secret) -> bool:
    """Check an Accounting-Request's Request Authenticator (RFC 2866 §3, RFC 5080 §2.3.3)."""
    expected = md5(data[:4] + ZERO16 + data[HEADER_LEN:length] + secret.value).digest()
    return compare_digest(expected, data[4:HEADER_LEN])


def sign_reply_python(
    code: int,
    identifier: int,
    request_authenticator: bytes,
    attributes: bytes,
    secret: Secret,
    *,
    message_authenticator: bool = True,
) -> bytes:
    """Encode a reply: header, Message-Authenticator first (when asked), then ``attributes``.

    ``attributes`` are the encoded attributes after the Message-Authenticator; the Response
    Authenticator is MD5(Code+ID+Length+RequestAuth+Attributes+Secret) (RFC 2865 §3).
    """
    if message_authenticator:
        length = HEADER_LEN + 18 + len(attributes)
        head = bytes((code, identifier, length >> 8, length & 0xFF))
        mac = secret.hmac_md5(head + request_authenticator + MA_PLACEHOLDER + attributes)
        attributes = b"\x50\x12" + mac + attributes
    else:
        length = HEADER_LEN + len(attributes)
        head = bytes((code, identifier, length >> 8, length & 0xFF))
    response = md5(head + request_authenticator + attributes + secret.value).digest()
    return head + response + attributes


if TYPE_CHECKING or speedups is None:
    Secret = PythonSecret
    verify_message_authenticator = verify_message_authenticator_python
    sign_reply = sign_reply_python
else:
    # perf: the C functions are the module's names themselves, no Python frame around them
    # (bench/micro.py, callgrind). Every Secret is then the C type, which they require.
    Secret = speedups.Secret
    verify_message_authenticator = speedups.verify_message_authenticator
    sign_reply = speedups.sign_reply


def verify_reply(reply: bytes, request_authenticator: bytes, secret: Secret) -> bool:
    """Check a reply's Response Authenticator and, if present, its Message-Authenticator.

    Used by the probe and the benchmarks, which act as clients.
    """
    if len(reply) < HEADER_LEN:
        return False
    length = int.from_bytes(reply[2:4], "big")
    if length < HEADER_LEN or length > len(reply):
        return False
    body = reply[HEADER_LEN:length]
    expected = md5(reply[:4] + request_authenticator + body + secret.value).digest()
    if not compare_digest(expected, reply[4:HEADER_LEN]):
        return False
    position = HEADER_LEN
    while position + 2 <= length:
        kind, size = reply[position], reply[position + 1]
        if size < 2:
            return False
        if kind == _MA_TYPE:
            if size != 18:
                return False
            value = position + 2
            message = reply[:4] + request_authenticator + reply[HEADER_LEN:value] + ZERO16
            message += reply[value + 16 : length]
            return compare_digest(secret.hmac_md5(message), reply[value : value + 16])
        position += size
    return True


def sign_request(data: bytearray, secret: Secret) -> None:
    """Fill in a request's authenticators in place (client side: probe, bench, DAE).

    Access-Request and Status-Server keep their random Request Authenticator and get their
    Message-Authenticator value computed if the attribute is present; Accounting and
    Disconnect/CoA requests get MD5(Code+ID+Length+16 zeros+Attributes+Secret) (RFC 2866 §3,
    RFC 5176 §2.3), with a Message-Authenticator computed over zeros first.
    """
    code = data[0]
    length = int.from_bytes(data[2:4], "big")
    computed_authenticator = code not in (1, 12)
    if computed_authenticator:
        data[4:HEADER_LEN] = ZERO16
    position = HEADER_LEN
    while position + 2 <= length:
        size = data[position + 1]
        if size < 2:
            break
        if data[position] == _MA_TYPE and size == 18:
            data[position + 2 : position + 18] = ZERO16
            data[position + 2 : position + 18] = secret.hmac_md5(bytes(data[:length]))
            break
        position += size
    if computed_authenticator:
        data[4:HEADER_LEN] = md5(bytes(data[:length]) + secret.value).digest()


def chap_response(ident: int, password: bytes, challenge: bytes) -> bytes:
    """Return MD5(CHAP-Ident || password || challenge) (RFC 1994 §4.1, RFC 2865 §2.2)."""
    return md5(bytes((ident,)) + password + challenge).digest()


def verify_chap(chap_password: bytes, password: bytes, challenge: bytes) -> bool:
    """Check a CHAP-Password value (ident octet + 16-octet response) against ``password``.

    The attribute is 19 octets on the wire, so its value is 17 (RFC 2865 §5.3).
    """
    if len(chap_password) != 17:
        return False
    expected = chap_response(chap_password[0], password, challenge)
    return compare_digest(expected, chap_password[1:])


def hide_password(password: bytes, authenticator: bytes, secret: Secret) -> bytes:
    """Hide a User-Password (RFC 2865 §5.2): pad to 16s, XOR with the MD5 chain."""
    padded = password + bytes(-len(password) % 16 or (16 if not password else 0))
    result = bytearray()
    previous = authenticator
    for start in range(0, len(padded), 16):
        key = md5(secret.value + previous).digest()
        block = bytes(a ^ b for a, b in zip(padded[start : start + 16], key, strict=True))
        result += block
        previous = block
    return bytes(result)
