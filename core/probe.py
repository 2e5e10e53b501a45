"""A minimal RADIUS client that speaks like a test radio or a PGW: for ``simgate probe``, the
benchmarks and the tests.

Owns: building an Access-Request the way a packet gateway does (3GPP-IMSI, 3GPP-IMEISV as ASCII
or TBCD, optional CHAP, Message-Authenticator first), sending it with RFC 5080 retransmissions
(same Identifier and authenticator), and checking the reply's authenticators.

Must not: import the store, the policy or the admin API.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Final

from core.radius.auth import MA_PLACEHOLDER, Secret, chap_response, sign_request, verify_reply
from core.radius.codes import Code, MalformedPacket
from core.radius.dictionary import VENDOR_3GPP, Handles
from core.radius.wire import encode_attribute, encode_packet, encode_vsa, iter_attributes

_SERVICE_TYPE_FRAMED: Final = b"\x06\x06\x00\x00\x00\x02"
_FRAMED_PROTOCOL_GPRS: Final = b"\x07\x06\x00\x00\x00\x07"


@dataclass(frozen=True, slots=True)
class Request:
    """What a test radio puts in an Access-Request."""

    imsi: str | None
    imei: str | None = None  # 14-16 digits; sent as 3GPP-IMEISV
    tbcd: bool = False  # send the IMEI as 8 octets of TBCD, as some gateways do
    user_name: str | None = None
    chap_password: str | None = None  # CHAP with the Request Authenticator as challenge
    message_authenticator: bool = True
    nas_ip: str = "127.0.0.1"
    called_station_id: str = "iot.simgate"
    proxy_state: bytes | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one probe. ``code`` is None when nothing (valid) came back."""

    code: int | None
    reason: str | None
    attributes: tuple[tuple[int, bytes], ...]
    seconds: float
    attempts: int

    @property
    def verdict(self) -> str:
        if self.code == Code.ACCESS_ACCEPT:
            return "accept"
        if self.code == Code.ACCESS_REJECT:
            return "reject"
        return "no-answer" if self.code is None else f"code-{self.code}"


def tbcd(digits: str) -> bytes:
    """Encode digits as TBCD: swapped nibbles, 0xF filler (3GPP TS 29.274 §8.3)."""
    if len(digits) % 2:
        digits += "F"
    return bytes(int(digits[i + 1], 16) << 4 | int(digits[i], 16) for i in range(0, len(digits), 2))


def build_access_request(
    request: Request, identifier: int, authenticator: bytes, secret: Secret, handles: Handles
) -> bytes:
    """Encode and sign one Access-Request."""
    attributes = bytearray(MA_PLACEHOLDER if request.message_authenticator else b"")
    if request.user_name is not None:
        attributes += encode_attribute(handles.user_name, request.user_name.encode())
    if request.chap_password is not None:
        ident = os.urandom(1)[0]
        response = chap_response(ident, request.chap_password.encode(), authenticator)
        attributes += encode_attribute(handles.chap_password, bytes((ident,)) + response)
    attributes += encode_attribute(handles.nas_ip_address, socket.inet_aton(request.nas_ip))
    attributes += _SERVICE_TYPE_FRAMED + _FRAMED_PROTOCOL_GPRS
    attributes += encode_attribute(30, request.called_station_id.encode())
    if request.imsi is not None:
        attributes += encode_vsa(VENDOR_3GPP, handles.imsi_3gpp, request.imsi.encode())
    if request.imei is not None:
        value = tbcd(request.imei) if request.tbcd else request.imei.encode()
        attributes += encode_vsa(VENDOR_3GPP, handles.imeisv_3gpp, value)
    if request.proxy_state is not None:
        attributes += encode_attribute(handles.proxy_state, request.proxy_state)
    packet = bytearray(
        encode_packet(Code.ACCESS_REQUEST, identifier, authenticator, bytes(attributes))
    )
    sign_request(packet, secret)
    return bytes(packet)


def send(
    packet: bytes,
    server: tuple[str, int],
    secret: Secret,
    *,
    timeout: float = 3.0,
    attempts: int = 3,
) -> Result:
    """Send a request, retransmitting it unchanged on timeout; return the checked reply."""
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    authenticator = packet[4:20]
    started = time.perf_counter()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(server)
        for attempt in range(1, attempts + 1):
            sock.send(packet)
            deadline = time.perf_counter() + timeout
            while (left := deadline - time.perf_counter()) > 0:
                sock.settimeout(left)
                try:
                    reply = sock.recv(4096)
                except (TimeoutError, ConnectionRefusedError):
                    break
                if reply[1:2] == packet[1:2] and verify_reply(reply, authenticator, secret):
                    return _result(reply, time.perf_counter() - started, attempt)
    return Result(None, None, (), time.perf_counter() - started, attempts)


def _result(reply: bytes, seconds: float, attempts: int) -> Result:
    try:
        attributes = tuple(iter_attributes(reply))
    except MalformedPacket:
        return Result(None, None, (), seconds, attempts)
    reason = next(
        (value.decode(errors="replace") for kind, value in attributes if kind == 18), None
    )
    return Result(reply[0], reason, attributes, seconds, attempts)


def probe(
    request: Request,
    server: tuple[str, int],
    secret: str,
    handles: Handles,
    *,
    timeout: float = 3.0,
    attempts: int = 3,
) -> Result:
    """Build, send and check one Access-Request."""
    key = Secret(secret.encode())
    packet = build_access_request(request, os.urandom(1)[0], os.urandom(16), key, handles)
    return send(packet, server, key, timeout=timeout, attempts=attempts)


def build_status_server(identifier: int, authenticator: bytes, secret: Secret) -> bytes:
    """Encode a Status-Server (RFC 5997 §3): Message-Authenticator is mandatory."""
    packet = bytearray(encode_packet(Code.STATUS_SERVER, identifier, authenticator, MA_PLACEHOLDER))
    sign_request(packet, secret)
    return bytes(packet)
