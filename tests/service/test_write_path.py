"""Writes that decisions cause, over real UDP: lock on first connect (and its race), activation,
the imeiLockRejected webhook and the deactivate action."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from core.app import Server
from core.policy.verdict import Effect
from core.radius.codes import Code
from core.radius.wire import iter_attributes
from core.store.records import Status
from tests.service.conftest import ServerFactory
from tests.service.test_udp import _send_receive, access_request, exchange

pytestmark = pytest.mark.asyncio

DEVICE_A = b"3538792342526301"
DEVICE_B = b"4901542032375181"


async def eventually(check: Any, within: float = 5.0) -> None:
    """Wait until ``check()`` is true (a write lands after its fsync, off the reply path)."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def status(server: Server, sim_id: str) -> Status:
    assert server.writes is not None
    sim = server.writes.live.sim(sim_id)
    assert sim is not None
    return sim.status


async def test_two_devices_racing_for_a_first_lock_give_one_lock(
    start_server: ServerFactory,
) -> None:
    server = await start_server()  # SIM 10 is in group "first" (lockOnFirstConnect)
    first = access_request(b"440100000000010", DEVICE_A, identifier=1)
    second = access_request(b"440100000000010", DEVICE_B, identifier=2)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as one,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as two,
    ):
        for sock in (one, two):
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(3.0)
        # both datagrams are in the socket before the first lock can be durable
        one.sendto(first, ("127.0.0.1", server.auth_port))
        two.sendto(second, ("127.0.0.1", server.auth_port))
        replies = await asyncio.gather(
            asyncio.to_thread(one.recv, 4096), asyncio.to_thread(two.recv, 4096)
        )
        codes = sorted(reply[0] for reply in replies)
        assert codes == [Code.ACCESS_ACCEPT, Code.ACCESS_REJECT]
        # both were accepted as first connects, raced for the lock, and were then re-judged
        assert server.stats.effects[Effect.LOCK] == 2
        winner = DEVICE_A if replies[0][0] == Code.ACCESS_ACCEPT else DEVICE_B
        loser_reply = replies[1] if winner == DEVICE_A else replies[0]
        assert dict(iter_attributes(loser_reply))[18] == b"imei-mismatch"
        assert server.writes is not None
        sim = server.writes.live.sim("10")
        assert sim is not None
        assert sim.lock == int(winner[:14])
        # a retransmission of either request gets the same answer as the first time
        again = await asyncio.gather(
            asyncio.to_thread(_send_receive, one, server.auth_port, first),
            asyncio.to_thread(_send_receive, two, server.auth_port, second),
        )
        assert list(again) == list(replies)


async def test_first_connect_lock_then_judges_other_devices(start_server: ServerFactory) -> None:
    server = await start_server()  # SIM 11 has lockOnFirstConnect itself, and is locked; 10 not
    first = await exchange(server.auth_port, access_request(b"440100000000010", DEVICE_A))
    assert first is not None
    assert first[0] == Code.ACCESS_ACCEPT
    other = await exchange(server.auth_port, access_request(b"440100000000010", DEVICE_B))
    assert other is not None
    assert dict(iter_attributes(other))[18] == b"imei-mismatch"
    unreported = await exchange(server.auth_port, access_request(b"440100000000010", None))
    assert unreported is not None
    assert unreported[0] == Code.ACCESS_REJECT  # locked with allowUnreported off


async def test_a_session_that_reports_no_imei_locks_nothing(start_server: ServerFactory) -> None:
    server = await start_server()
    reply = await exchange(server.auth_port, access_request(b"440100000000010", None))
    assert reply is not None
    assert reply[0] == Code.ACCESS_ACCEPT
    assert server.writes is not None
    sim = server.writes.live.sim("10")
    assert sim is not None
    assert sim.lock == 0


async def test_ready_sim_becomes_active_at_its_first_accept(start_server: ServerFactory) -> None:
    server = await start_server()
    assert status(server, "4") == Status.READY
    reply = await exchange(server.auth_port, access_request(b"440100000000004", None))
    assert reply is not None
    assert reply[0] == Code.ACCESS_ACCEPT
    await eventually(lambda: status(server, "4") == Status.ACTIVE)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1 that answers 200 and queues what it got."""
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await got.put(json.loads(await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/hook", got
    server.close()
    await server.wait_closed()


async def test_stolen_sim_fires_the_webhook_and_is_deactivated(
    start_server: ServerFactory, receiver: tuple[str, asyncio.Queue[dict[str, Any]]]
) -> None:
    url, got = receiver
    lines = [
        {
            "kind": "group",
            "groupId": "guarded",
            "onImeiLockRejected": ["webhook", "deactivate"],
            "webhookUrl": url,
        },
        {
            "simId": "s1",
            "imsi": "440100000000100",
            "groupId": "guarded",
            "imeiLock": {"imei": "353879234252633", "allowUnreported": False},
        },
    ]
    server = await start_server(lines)
    stolen = await exchange(server.auth_port, access_request(b"440100000000100", DEVICE_B))
    assert stolen is not None
    assert dict(iter_attributes(stolen))[18] == b"imei-mismatch"
    event = await asyncio.wait_for(got.get(), timeout=5)
    assert event["event"] == "imeiLockRejected"
    assert event["simId"] == "s1"
    assert event["reason"] == "imei-mismatch"
    assert event["reported"] == "490154203237518"
    assert event["locked"] == "353879234252633"
    await eventually(lambda: status(server, "s1") == Status.INACTIVE)
    # the rightful device is stopped too: a stolen SIM stays stopped until an operator acts
    after = await exchange(server.auth_port, access_request(b"440100000000100", DEVICE_A))
    assert after is not None
    assert dict(iter_attributes(after))[18] == b"sim-not-active"
