"""Packet codes, drop reasons and the protocol's fixed sizes.

Owns: the names of everything the codec can say about a packet (RFC 2865 §3-4, RFC 2866,
RFC 5176, RFC 5997). Drop reasons are values, not exceptions: they label the drop counter.

Must not: import anything from core (it is the leaf every other layer reads).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final

HEADER_LEN: Final = 20
#: RFC 2865 §3 and RFC 5176 §2.3 say 4096 (RFC 2866 says 4095; one more octet is harmless).
MAX_LEN: Final = 4096


class Code(IntEnum):
    """RADIUS packet codes (REFERENCE §1.3)."""

    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11
    STATUS_SERVER = 12
    STATUS_CLIENT = 13
    DISCONNECT_REQUEST = 40
    DISCONNECT_ACK = 41
    DISCONNECT_NAK = 42
    COA_REQUEST = 43
    COA_ACK = 44
    COA_NAK = 45
    PROTOCOL_ERROR = 52


KNOWN_CODES: Final = frozenset(int(code) for code in Code)


class Drop(StrEnum):
    """Why a datagram was silently discarded (DESIGN §2 step 1, REFERENCE §1.11)."""

    UNKNOWN_CLIENT = "unknown-client"
    TOO_SHORT = "too-short"
    BAD_LENGTH = "bad-length"
    TRUNCATED = "truncated"
    BAD_ATTRIBUTE = "bad-attribute"
    UNKNOWN_CODE = "unknown-code"
    UNEXPECTED_CODE = "unexpected-code"
    MA_MISSING = "message-authenticator-missing"
    MA_BAD = "message-authenticator-bad"
    MA_DUPLICATE = "message-authenticator-duplicate"
    BAD_AUTHENTICATOR = "bad-authenticator"
    DUPLICATE_IN_PROGRESS = "duplicate-in-progress"
    #: an Accounting-Request simgate could not record, so it must not answer (RFC 2866 §4.1)
    NOT_RECORDED = "not-recorded"
    INTERNAL_ERROR = "internal-error"
    #: the kernel did not take the reply (send buffer full for 10 ms, or the peer unreachable)
    REPLY_NOT_SENT = "reply-not-sent"


class MalformedPacket(Exception):
    """The one error the codec raises for hostile or broken bytes; ``drop`` says which rule."""

    def __init__(self, drop: Drop) -> None:
        super().__init__(drop.value)
        self.drop = drop
