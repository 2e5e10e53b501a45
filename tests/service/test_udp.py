"""The server over real UDP on 127.0.0.1: pyrad as the reference client, raw sockets for the
packets a well-behaved client would never send."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from time import perf_counter
from typing import Any

import httpx
import pytest
from pyrad import packet as pyrad_packet
from pyrad.client import Client as PyradClient

from core.app import Server
from core.probe import Request, build_access_request, build_status_server
from core.radius import dictionary
from core.radius.auth import Secret, chap_response, sign_request, verify_reply
from core.radius.codes import Code, Drop
from core.radius.dedup import ReplyCache
from core.radius.wire import encode_vsa, iter_attributes
from core.service import udp
from core.service.stats import Stats
from core.service.udp import sweep
from tests.service.conftest import SECRET, ServerFactory
from tests.subscribers import (
    ALLOW_UNREPORTED,
    GARBAGE,
    NO_LOCK,
    OTHER_DEVICE,
    SAME_IMEISV,
    SAME_TBCD,
    STRICT,
    ZEROS_15,
)

pytestmark = pytest.mark.asyncio
HANDLES = dictionary.load().handles
KEY = Secret(SECRET.encode())


async def pyrad_send(
    server: Server,
    pyrad_dictionary: Any,
    imsi: bytes | None,
    imeisv: bytes | None,
    **attributes: Any,
) -> Any:
    client = PyradClient(
        "127.0.0.1",
        authport=server.auth_port,
        secret=SECRET.encode(),
        dict=pyrad_dictionary,
        retries=1,
        timeout=3,
        enforce_ma=True,
    )
    request = client.CreateAuthPacket(code=pyrad_packet.AccessRequest)
    request["NAS-IP-Address"] = "127.0.0.1"
    if imsi is not None:
        request["3GPP-IMSI"] = imsi.decode()
    if imeisv is not None:
        request["3GPP-IMEISV"] = imeisv
    for name, value in attributes.items():
        request[name.replace("_", "-")] = value
    try:
        return await asyncio.to_thread(client.SendPacket, request)
    finally:
        client._CloseSocket()  # pyrad keeps its socket open otherwise


ROWS = [
    (NO_LOCK, SAME_IMEISV, "accept", None),
    (NO_LOCK, OTHER_DEVICE, "accept", None),
    (NO_LOCK, None, "accept", None),
    (ALLOW_UNREPORTED, SAME_IMEISV, "accept", None),
    (ALLOW_UNREPORTED, SAME_TBCD, "accept", None),
    (ALLOW_UNREPORTED, OTHER_DEVICE, "reject", "imei-mismatch"),
    (ALLOW_UNREPORTED, None, "accept", None),
    (ALLOW_UNREPORTED, ZEROS_15, "accept", None),
    (ALLOW_UNREPORTED, GARBAGE, "reject", "imei-invalid"),
    (STRICT, SAME_IMEISV, "accept", None),
    (STRICT, OTHER_DEVICE, "reject", "imei-mismatch"),
    (STRICT, None, "reject", "imei-not-reported"),
    (STRICT, ZEROS_15, "reject", "imei-not-reported"),
    (STRICT, GARBAGE, "reject", "imei-invalid"),
    (b"440109999999999", None, "reject", "unknown-subscriber"),
    (None, SAME_IMEISV, "reject", "imsi-invalid"),
    (b"440100000000006", None, "reject", "sim-not-active"),
    (b"440100000000004", None, "accept", None),  # ready
    (b"999990000000002", None, "reject", "subscriber-terminated"),
    (b"440100000000009", None, "reject", "chap-failed"),
]


@pytest.mark.parametrize(("imsi", "imeisv", "verdict", "reason"), ROWS)
async def test_truth_table_over_udp_with_pyrad(
    server: Server,
    pyrad_dictionary: Any,
    imsi: bytes | None,
    imeisv: bytes | None,
    verdict: str,
    reason: str | None,
) -> None:
    reply = await pyrad_send(server, pyrad_dictionary, imsi, imeisv)
    expected = pyrad_packet.AccessAccept if verdict == "accept" else pyrad_packet.AccessReject
    assert reply.code == expected
    messages = reply.get("Reply-Message") or []
    assert messages == ([] if reason is None else [reason])


async def test_chap_group_accepts_the_group_credentials(
    server: Server, pyrad_dictionary: Any
) -> None:
    client = PyradClient(
        "127.0.0.1",
        authport=server.auth_port,
        secret=SECRET.encode(),
        dict=pyrad_dictionary,
        retries=1,
        timeout=3,
        enforce_ma=True,
    )
    request = client.CreateAuthPacket(code=pyrad_packet.AccessRequest, User_Name="dev")
    request["3GPP-IMSI"] = "440100000000009"
    ident, challenge = 201, os.urandom(16)
    request["CHAP-Challenge"] = challenge
    request["CHAP-Password"] = bytes((ident,)) + chap_response(ident, b"s3cret", challenge)
    try:
        reply = await asyncio.to_thread(client.SendPacket, request)
    finally:
        client._CloseSocket()
    assert reply.code == pyrad_packet.AccessAccept


async def test_accept_carries_ma_first_class_and_framed_ip(server: Server) -> None:
    reply = await exchange(
        server.auth_port, access_request(b"999990000000001", proxy_state=b"hop-1")
    )
    assert reply is not None and reply[0] == Code.ACCESS_ACCEPT
    attributes = iter_attributes(reply)
    assert attributes[0][0] == 80  # Message-Authenticator first (BlastRADIUS)
    values = dict(attributes)
    assert values[25].startswith(b"simgate:440100000000012:")  # the SIM's primary IMSI
    assert len(values[8]) == 4 and values[8] != bytes(4)  # Framed-IP-Address
    assert values[33] == b"hop-1"  # Proxy-State echoed


async def test_retransmission_gets_the_cached_reply_and_no_second_decision(
    server: Server,
) -> None:
    request = access_request(NO_LOCK, SAME_IMEISV)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))  # a retransmission comes from the same address and port
        first = await asyncio.to_thread(_send_receive, sock, server.auth_port, request)
        before = dict(server.stats.decisions)
        second = await asyncio.to_thread(_send_receive, sock, server.auth_port, request)
    assert first == second
    assert dict(server.stats.decisions) == before
    assert server.pipelines[0].clients.entries[0].counters.duplicates == 1


async def test_new_authenticator_on_the_same_identifier_is_a_new_request(server: Server) -> None:
    first = access_request(NO_LOCK, None, identifier=7)
    second = access_request(STRICT, None, identifier=7)
    assert (await exchange(server.auth_port, first) or b"")[0] == Code.ACCESS_ACCEPT
    assert (await exchange(server.auth_port, second) or b"")[0] == Code.ACCESS_REJECT


async def test_unknown_client_is_dropped_and_counted(server: Server) -> None:
    reply = await exchange(
        server.auth_port, access_request(NO_LOCK, None), source="127.0.0.2", wait=0.3
    )
    assert reply is None
    assert await metric(server, 'simgate_radius_dropped_total{reason="unknown-client"}') == 1


async def test_missing_message_authenticator_is_dropped_and_counted(server: Server) -> None:
    request = access_request(NO_LOCK, None, message_authenticator=False)
    assert await exchange(server.auth_port, request, wait=0.3) is None
    name = 'simgate_radius_dropped_total{reason="message-authenticator-missing"}'
    assert await metric(server, name) == 1


async def test_wrong_message_authenticator_is_dropped(server: Server) -> None:
    request = bytearray(access_request(NO_LOCK, None))
    request[25] ^= 0x01  # inside the Message-Authenticator value (first attribute)
    assert await exchange(server.auth_port, bytes(request), wait=0.3) is None
    assert server.stats.drops[Drop.MA_BAD] == 1


async def test_client_without_required_ma_is_answered(start_server: ServerFactory) -> None:
    clients = [
        {
            "name": "legacy",
            "address": "127.0.0.0/8",
            "secret": SECRET,
            "require_message_authenticator": False,
        }
    ]
    server = await start_server(clients=clients)
    reply = await exchange(
        server.auth_port, access_request(NO_LOCK, None, message_authenticator=False)
    )
    assert reply is not None and reply[0] == Code.ACCESS_ACCEPT
    # ... but not with Proxy-State and no MA ("limit Proxy-State", BlastRADIUS)
    request = access_request(NO_LOCK, None, message_authenticator=False, proxy_state=b"x")
    assert await exchange(server.auth_port, request, wait=0.3) is None


@pytest.mark.parametrize(
    "datagram",
    [
        bytes.fromhex("0101"),  # shorter than the header
        bytes.fromhex("01010014") + bytes(12),  # shorter than its Length field
        bytes.fromhex("01010016") + bytes(16) + bytes.fromhex("0101"),  # attribute length 1
        bytes.fromhex("ff010014") + bytes(16),  # unknown code
        bytes.fromhex("02010014") + bytes(16),  # a response sent to a server port
    ],
    ids=["too-short", "truncated", "bad-attribute", "unknown-code", "unexpected-code"],
)
async def test_malformed_datagrams_are_dropped_and_counted(server: Server, datagram: bytes) -> None:
    assert await exchange(server.auth_port, datagram, wait=0.2) is None
    assert sum(server.stats.drops.values()) == 1


@pytest.mark.parametrize(
    ("port", "code"), [("auth", Code.ACCESS_ACCEPT), ("acct", Code.ACCOUNTING_RESPONSE)]
)
async def test_status_server_is_answered_on_both_ports(
    server: Server, port: str, code: Code
) -> None:
    request = build_status_server(9, os.urandom(16), KEY)
    number = server.auth_port if port == "auth" else server.acct_port
    reply = await exchange(number, request)
    assert reply is not None and reply[0] == code
    assert iter_attributes(reply)[0][0] == 80
    assert sum(server.stats.decisions.values()) == 0  # no side effect but counters


async def test_rejects_wait_for_reject_delay_without_holding_up_others(
    start_server: ServerFactory,
) -> None:
    server = await start_server(reject_delay=0.5)
    loop = asyncio.get_running_loop()
    reject = asyncio.ensure_future(exchange(server.auth_port, access_request(STRICT, None)))
    await asyncio.sleep(0.05)
    accept = await exchange(server.auth_port, access_request(NO_LOCK, None))
    assert accept is not None and accept[0] == Code.ACCESS_ACCEPT
    assert not reject.done()  # the accept came back while the reject still waits
    started = loop.time()
    reply = await reject
    assert reply is not None and reply[0] == Code.ACCESS_REJECT
    assert loop.time() - started > 0.2


async def test_metrics_and_health_over_http(server: Server) -> None:
    await exchange(server.auth_port, access_request(STRICT, OTHER_DEVICE))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        text = (await http.get("/metrics")).text
        health = (await http.get("/healthz")).json()
    assert 'simgate_decisions_total{reason="imei-mismatch",result="reject"} 1.0' in text
    assert 'simgate_radius_requests_total{client="radios",code="access_request"} 1.0' in text
    assert 'simgate_request_processing_seconds_bucket{le="1e-05"}' in text
    assert "simgate_table_sims 13.0" in text
    # one datagram, one receive call with the C pump (none counted without it)
    batches = "1.0" if udp.datagrams is not None else "0.0"
    assert f"simgate_radius_batches_total {batches}" in text
    assert health["status"] == "ok" and health["sims"] == 13


async def test_health_says_when_the_cold_section_has_been_checked(server: Server) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        for _ in range(100):  # the check runs in a thread after start-up
            health = (await http.get("/healthz")).json()
            if health["coldSectionVerified"]:
                break
            await asyncio.sleep(0.02)
    assert health["coldSectionVerified"] is True
    assert server.writes is not None and server.writes.live.base.cold_verified


# -- helpers ----------------------------------------------------------------------------------


def access_request(
    imsi: bytes | None,
    imeisv: bytes | None = None,
    *,
    identifier: int = 1,
    message_authenticator: bool = True,
    proxy_state: bytes | None = None,
) -> bytes:
    request = Request(
        imsi=None if imsi is None else imsi.decode(),
        message_authenticator=message_authenticator,
        proxy_state=proxy_state,
    )
    raw = build_access_request(request, identifier, os.urandom(16), KEY, HANDLES)
    if imeisv is None:
        return raw
    return _append(raw, encode_vsa(10415, 20, imeisv))


def _append(raw: bytes, attribute: bytes) -> bytes:
    data = bytearray(raw + attribute)
    data[2:4] = len(data).to_bytes(2, "big")
    sign_request(data, KEY)
    return bytes(data)


async def exchange(
    port: int, datagram: bytes, *, source: str = "127.0.0.1", wait: float = 3.0
) -> bytes | None:
    """Send one datagram from ``source`` and wait for one valid reply (None on timeout)."""
    return await asyncio.to_thread(_exchange, port, datagram, source, wait)


def _exchange(port: int, datagram: bytes, source: str, timeout: float) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        try:
            return _send_receive(sock, port, datagram)
        except TimeoutError:
            return None


def _send_receive(sock: socket.socket, port: int, datagram: bytes) -> bytes:
    if sock.gettimeout() is None:
        sock.settimeout(3.0)
    sock.sendto(datagram, ("127.0.0.1", port))
    reply = sock.recv(4096)
    assert verify_reply(reply, datagram[4:20], KEY)
    return reply


async def metric(server: Server, name: str) -> float:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


async def test_sweep_expires_a_burst_in_chunks_between_other_work() -> None:
    class Holder:
        cache = ReplyCache(ttl=5)
        stats = Stats()

    holder = Holder()
    for identifier in range(10_000):
        holder.cache.store((("192.0.2.1", identifier), 1), b"a" * 16, b"reply", now=-10.0)
    holder.cache.store((("192.0.2.1", 1), 2), b"a" * 16, b"live", now=perf_counter() + 60)
    seen: list[int] = []  # the cache's size each time another callback ran

    async def other_work() -> None:
        while True:
            seen.append(len(holder.cache))
            await asyncio.sleep(0)

    worker = asyncio.create_task(other_work())
    sweeper = asyncio.create_task(sweep([holder], interval=0.01, chunk=1_000))  # type: ignore[list-item]
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(holder.cache) == 1:
            break
    sweeper.cancel()
    worker.cancel()
    assert len(holder.cache) == 1  # every expired entry went, the live one stayed
    # the loop ran other callbacks between chunks: never more than one chunk went unseen
    removed = [before - after for before, after in itertools.pairwise(seen)]
    assert max(removed) == 1_000
