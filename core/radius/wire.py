"""RADIUS on the wire, sans-IO: bytes in, ``Packet`` out; attributes in, bytes out.

Owns: the structural check of a datagram (FreeRADIUS ``fr_radius_ok``: one pass over the header
and the attribute headers) and the offsets of the attributes simgate reads, recorded in the same
pass so no value is copied until the caller asks for it.

Invariants:
- ``parse`` returns a ``Packet`` or raises ``MalformedPacket``; no other exception escapes for any
  input (tests/radius/test_wire.py checks this with hypothesis).
- ``parse`` is the C walk of ``core.radius._speedups`` when it is built (core/radius/native.py),
  else ``parse_python``; ``parse_python`` is the specification both follow.
- Values are sliced from the original ``bytes`` only on demand; octets past Length are padding.
- The first occurrence of an attribute is the one ``value`` returns; Proxy-State keeps all of
  them, in order, because they must be echoed (RFC 2865 §5.33).

Must not: import asyncio, socket, time, logging, metrics, the store or the policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

from core.radius.codes import HEADER_LEN, KNOWN_CODES, MAX_LEN, Drop, MalformedPacket
from core.radius.native import extension, speedups

_VSA: Final = 26
_PROXY_STATE: Final = 33
_MESSAGE_AUTHENTICATOR: Final = 80
#: the attribute types the walk treats specially; every other type is only indexed
_SPECIAL: Final = frozenset({_VSA, _PROXY_STATE, _MESSAGE_AUTHENTICATOR})


def vendor_key(vendor: int, vendor_type: int) -> int:
    """Return the key under which ``Packet.offsets`` records a vendor attribute."""
    return (vendor << 8) | vendor_type


class Packet(NamedTuple):
    """A structurally valid packet: header fields plus attribute offsets into ``data``.

    ``offsets`` maps a standard attribute type (or ``vendor_key(vendor, type)`` for the vendor
    the codec was told to index) to the offset of its first occurrence's header. A tuple, so
    that building one per datagram is a single C-level allocation (bench/micro.py).
    """

    code: int
    identifier: int
    length: int
    authenticator: bytes
    offsets: dict[int, int]
    #: offset of the Message-Authenticator attribute header, -1 when absent
    message_authenticator: int
    proxy_states: list[int] | None
    data: bytes

    def value(self, key: int) -> bytes | None:
        """Return the value of the first attribute recorded under ``key``, or None."""
        offset = self.offsets.get(key)
        if offset is None:
            return None
        data = self.data
        return data[offset + 2 : offset + data[offset + 1]]

    def proxy_state_attributes(self) -> bytes:
        """Return every Proxy-State attribute as received, in order, ready to echo."""
        if not self.proxy_states:
            return b""
        data = self.data
        return b"".join(data[at : at + data[at + 1]] for at in self.proxy_states)


_new_packet: Final = tuple.__new__


def parse_python(data: bytes, indexed_vendor: int | None = None) -> Packet:
    """Check a datagram's structure and index its attributes (the pure-Python walk).

    The sub-attributes of ``indexed_vendor`` (3GPP for simgate) are recorded under
    ``vendor_key``; that vendor's data must follow the RFC 2865 §5.26 layout. Other vendors'
    data is carried unread.

    Raises:
        MalformedPacket: the datagram must be silently discarded (RFC 2865 §3), with the reason.
    """
    size = len(data)
    # "The minimum length is 20 and maximum length is 4096." (RFC 2865 §3)
    if size < HEADER_LEN:
        raise MalformedPacket(Drop.TOO_SHORT)
    length = (data[2] << 8) | data[3]
    if length < HEADER_LEN or length > MAX_LEN:
        raise MalformedPacket(Drop.BAD_LENGTH)
    # "If the packet is shorter than the Length field indicates, it MUST be silently discarded."
    # "Octets outside the range of the Length field MUST be treated as padding and ignored."
    if size < length:
        raise MalformedPacket(Drop.TRUNCATED)
    if data[0] not in KNOWN_CODES:
        raise MalformedPacket(Drop.UNKNOWN_CODE)
    offsets: dict[int, int] = {}
    proxy_states: list[int] | None = None
    message_authenticator = -1
    vendor_prefix = None if indexed_vendor is None else indexed_vendor.to_bytes(4, "big")
    base = 0 if indexed_vendor is None else indexed_vendor << 8
    position = HEADER_LEN
    # perf: one flat loop with locals and no slicing; bench/micro.py measures it. An attribute
    # header cut by the end of the datagram shows up as an IndexError.
    try:
        while position < length:
            kind = data[position]
            size = data[position + 1]
            end = position + size
            # An attribute shorter than its own header, or one that overflows the packet,
            # makes the whole packet malformed (RFC 2865 §5, RFC 6613 §2.6.4).
            if size < 2 or end > length:
                raise MalformedPacket(Drop.BAD_ATTRIBUTE)
            if kind not in _SPECIAL:
                if kind not in offsets:
                    offsets[kind] = position
            elif kind == _VSA:
                # "A server that does not understand a VSA MUST ignore it" (RFC 2865 §5.26).
                if vendor_prefix is not None and data.startswith(vendor_prefix, position + 2):
                    sub = position + 6
                    while sub < end:  # the vendor's sub-attributes, same rules
                        sub_size = data[sub + 1]
                        sub_end = sub + sub_size
                        if sub_size < 2 or sub_end > end:
                            raise MalformedPacket(Drop.BAD_ATTRIBUTE)
                        key = base | data[sub]
                        if key not in offsets:
                            offsets[key] = sub
                        sub = sub_end
            elif kind == _PROXY_STATE:
                if proxy_states is None:
                    proxy_states = [position]
                else:
                    proxy_states.append(position)
            else:  # Message-Authenticator
                if message_authenticator >= 0:
                    raise MalformedPacket(Drop.MA_DUPLICATE)
                message_authenticator = position
            position = end
    except IndexError:
        raise MalformedPacket(Drop.BAD_ATTRIBUTE) from None
    return _new_packet(
        Packet,
        (
            data[0],
            data[1],
            length,
            data[4:HEADER_LEN],
            offsets,
            message_authenticator,
            proxy_states,
            data,
        ),
    )


if extension is not None:
    # The C walk raises with these and needs no imports of its own; configured even under
    # SIMGATE_PURE_PYTHON=1, so that tests/radius/test_speedups.py can compare it with ours.
    extension.configure(
        packet=Packet,
        malformed=MalformedPacket,
        fallback=parse_python,
        known_codes=KNOWN_CODES,
        too_short=Drop.TOO_SHORT,
        bad_length=Drop.BAD_LENGTH,
        truncated=Drop.TRUNCATED,
        unknown_code=Drop.UNKNOWN_CODE,
        bad_attribute=Drop.BAD_ATTRIBUTE,
        ma_duplicate=Drop.MA_DUPLICATE,
    )
# mypy reads only the first branch, so ``parse`` keeps parse_python's signature (a ternary
# would make it Any).
if TYPE_CHECKING or speedups is None:  # noqa: SIM108
    parse = parse_python
else:
    # perf: the C walk is the module's ``parse`` itself, with no Python frame around it
    # (bench/micro.py, callgrind); it hands bytearrays and odd vendor ids to parse_python.
    parse = speedups.parse


def encode_attribute(kind: int, value: bytes) -> bytes:
    """Encode one attribute (RFC 2865 §5); values longer than 253 octets are a caller bug.

    Raises:
        ValueError: the value does not fit in one attribute.
    """
    if len(value) > 253:
        raise ValueError(f"attribute {kind}: value of {len(value)} octets exceeds 253")
    return bytes((kind, len(value) + 2)) + value


def encode_vsa(vendor: int, vendor_type: int, value: bytes) -> bytes:
    """Encode one Vendor-Specific attribute holding one sub-attribute (RFC 2865 §5.26).

    Raises:
        ValueError: the value does not fit.
    """
    if len(value) > 247:
        raise ValueError(f"vendor {vendor} attribute {vendor_type}: value too long")
    inner = bytes((vendor_type, len(value) + 2)) + value
    return bytes((_VSA, len(inner) + 6)) + vendor.to_bytes(4, "big") + inner


def encode_packet(code: int, identifier: int, authenticator: bytes, attributes: bytes) -> bytes:
    """Encode a packet from its header fields and already encoded attributes (no signing).

    Raises:
        ValueError: the packet would exceed 4096 octets or a field is out of range.
    """
    length = HEADER_LEN + len(attributes)
    if length > MAX_LEN or len(authenticator) != 16 or not 0 <= identifier <= 255:
        raise ValueError("packet header out of range")
    return bytes((code, identifier, length >> 8, length & 0xFF)) + authenticator + attributes


def iter_attributes(data: bytes) -> list[tuple[int, bytes]]:
    """Return every top-level attribute as (type, value), for tests and the probe's output.

    Raises:
        MalformedPacket: the packet is not structurally valid.
    """
    packet = parse(data)
    result: list[tuple[int, bytes]] = []
    position = HEADER_LEN
    while position < packet.length:
        size = data[position + 1]
        result.append((data[position], data[position + 2 : position + size]))
        position += size
    return result
