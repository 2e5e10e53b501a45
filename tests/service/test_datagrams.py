"""The batched receiver (core/service/_datagrams.c, core/service/udp.py BatchedPort) and the
young-generation collections, over real sockets on 127.0.0.1 (and ::1 when the host has it)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.app import Server, StartupError
from core.probe import Request, build_access_request
from core.radius import dictionary
from core.radius.auth import Secret, verify_reply
from core.radius.codes import Code, Drop
from core.service import udp
from core.service.stats import DURATION_BOUNDS
from tests.service.conftest import SECRET, ServerFactory
from tests.subscribers import NO_LOCK, STRICT

needs_extension = pytest.mark.skipif(
    udp.datagrams is None, reason="core.service._datagrams is not built (or SIMGATE_PURE_PYTHON)"
)
HANDLES = dictionary.load().handles
KEY = Secret(SECRET.encode())


@pytest.fixture
def server_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def clients(count: int) -> list[socket.socket]:
    made = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        made.append(sock)
    return made


def drain(pump: object, expected: int, seconds: float = 2.0) -> int:
    received = 0
    deadline = time.monotonic() + seconds
    while received < expected and time.monotonic() < deadline:
        received += pump.pump()  # type: ignore[attr-defined]
    return received


@needs_extension
def test_a_burst_is_taken_in_batches_and_every_reply_reaches_its_sender(
    server_socket: socket.socket,
) -> None:
    seen: list[tuple[bytes, tuple[str, int]]] = []

    def handle(data: bytes, address: tuple[str, int], now: float) -> bytes | None:
        seen.append((data, address))
        return b"re:" + data

    assert udp.datagrams is not None
    pump = udp.datagrams.Pump(server_socket.fileno(), handle, DURATION_BOUNDS)
    senders = clients(3)
    target = server_socket.getsockname()
    for n in range(150):  # 50 per sender, all queued before the first pump
        senders[n % 3].sendto(b"%d" % n, target)

    assert pump.pump() == 64  # one call takes a whole batch
    assert drain(pump, 150 - 64) == 150 - 64

    assert sorted(int(data) for data, _ in seen) == list(range(150))
    for data, address in seen:
        assert address == senders[int(data) % 3].getsockname()  # the socket module's form
    for index, sender in enumerate(senders):
        replies = {sender.recv(100) for _ in range(50)}
        assert replies == {b"re:%d" % n for n in range(index, 150, 3)}
    counts, seconds, errors, failed, error, batches = pump.take_counters()
    assert (sum(counts), errors, failed, error, batches) == (150, 0, 0, None, 3)
    assert len(counts) == len(DURATION_BOUNDS) + 1 and seconds > 0
    assert sum(pump.take_counters()[0]) == 0  # taken: counting starts again from zero
    for sender in senders:
        sender.close()


@needs_extension
def test_no_reply_for_none_and_an_exception_costs_only_its_own_datagram(
    server_socket: socket.socket,
) -> None:
    def handle(data: bytes, address: tuple[str, int], now: float) -> bytes | None:
        if data == b"boom":
            raise RuntimeError("handler failed")
        return None if data == b"quiet" else data

    assert udp.datagrams is not None
    pump = udp.datagrams.Pump(server_socket.fileno(), handle, DURATION_BOUNDS)
    (sender,) = clients(1)
    for data in (b"one", b"boom", b"quiet", b"two"):
        sender.sendto(data, server_socket.getsockname())
    assert drain(pump, 4) == 4

    assert [sender.recv(100), sender.recv(100)] == [b"one", b"two"]
    sender.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sender.recv(100)
    counts, _, errors, failed, error, _ = pump.take_counters()
    assert (sum(counts), errors, failed) == (4, 1, 0)
    assert isinstance(error, RuntimeError) and error.__traceback__ is not None
    sender.close()


@needs_extension
def test_processing_time_lands_in_its_histogram_bucket(server_socket: socket.socket) -> None:
    def handle(data: bytes, address: tuple[str, int], now: float) -> bytes | None:
        assert abs(now - time.perf_counter()) < 0.5  # the same clock as time.perf_counter
        time.sleep(0.003)
        return None

    assert udp.datagrams is not None
    pump = udp.datagrams.Pump(server_socket.fileno(), handle, DURATION_BOUNDS)
    (sender,) = clients(1)
    sender.sendto(b"slow", server_socket.getsockname())
    assert drain(pump, 1) == 1
    counts, seconds, *_ = pump.take_counters()
    bucket = counts.index(1)
    assert DURATION_BOUNDS[bucket - 1] < seconds <= DURATION_BOUNDS[bucket]
    assert 0.003 <= seconds < 0.5
    sender.close()


def _access_request(imsi: str | None, user_name: str | None = None) -> bytes:
    request = Request(imsi=imsi, imei="35693803564380", user_name=user_name)
    return build_access_request(request, 1, os.urandom(16), KEY, HANDLES)


@needs_extension
def test_prefetch_gets_the_batch_s_imsis_before_any_of_it_is_handled(
    server_socket: socket.socket,
) -> None:
    order: list[object] = []

    def prefetch(keys: bytes) -> None:
        order.append(("prefetch", list(struct.unpack(f"={len(keys) // 8}Q", keys))))

    def handle(data: bytes, address: tuple[str, int], now: float) -> bytes | None:
        order.append("handle")
        return None

    assert udp.datagrams is not None
    pump = udp.datagrams.Pump(
        server_socket.fileno(),
        handle,
        DURATION_BOUNDS,
        prefetch=prefetch,
        imsi_vsa=HANDLES.imsi_3gpp,
        user_name=HANDLES.user_name,
    )
    (sender,) = clients(1)
    for datagram in (
        _access_request("440101234567890"),
        _access_request(None, user_name="001010000000001"),  # the IMSI in User-Name
        _access_request("99999000000042", user_name="001010000000001"),  # 3GPP-IMSI first
        _access_request("4401012345x7890"),  # not digits: no key
        b"\x01\x01\x00\x14" + bytes(12),  # too short for its header: no key
    ):
        sender.sendto(datagram, server_socket.getsockname())
    time.sleep(0.05)  # all five queued: one batch
    assert drain(pump, 5) == 5

    keys = [440101234567890, 1010000000001, 99999000000042, 0, 0]
    assert order == [("prefetch", keys)] + ["handle"] * 5
    sender.close()


@needs_extension
def test_a_failing_prefetch_is_counted_and_the_batch_still_handled(
    server_socket: socket.socket,
) -> None:
    def prefetch(keys: bytes) -> None:
        raise RuntimeError("prefetch failed")

    assert udp.datagrams is not None
    pump = udp.datagrams.Pump(
        server_socket.fileno(), lambda data, address, now: data, DURATION_BOUNDS, prefetch=prefetch
    )
    (sender,) = clients(1)
    sender.sendto(b"echo", server_socket.getsockname())
    assert drain(pump, 1) == 1
    assert sender.recv(100) == b"echo"
    _, _, errors, _, error, _ = pump.take_counters()
    assert errors == 1 and isinstance(error, RuntimeError)
    sender.close()


@needs_extension
@settings(max_examples=300, deadline=None)
@given(
    imsi=st.text("0123456789", min_size=1, max_size=19),
    user_name=st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=19)),
    in_user_name=st.booleans(),
)
def test_imsi_keys_read_the_imsi_the_pipeline_reads(
    imsi: str, user_name: str | None, in_user_name: bool
) -> None:
    assert udp.datagrams is not None
    if in_user_name:
        datagram = _access_request(None, user_name=imsi)
        expected_with, expected_without = int(imsi), 0
    else:
        datagram = _access_request(imsi, user_name=user_name)
        expected_with = expected_without = int(imsi)
    vsa, name = HANDLES.imsi_3gpp, HANDLES.user_name
    for user_name_type, expected in ((name, expected_with), (0, expected_without)):
        keys = udp.datagrams.imsi_keys([datagram], vsa, user_name_type)
        assert struct.unpack("=Q", keys) == (expected,)


@needs_extension
@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=4),
    st.data(),
)
def test_imsi_keys_never_read_past_a_datagram(datagrams: list[bytes], data: st.DataObject) -> None:
    # random bytes, and real requests cut short or with octets overwritten (lengths that lie)
    real = _access_request("440101234567890", user_name="001010000000001")
    cut = data.draw(st.integers(0, len(real)))
    at = data.draw(st.lists(st.tuples(st.integers(0, len(real) - 1), st.integers(0, 255))))
    mutated = bytearray(real)
    for position, value in at:
        mutated[position] = value
    datagrams += [real[:cut], bytes(mutated)]
    assert udp.datagrams is not None
    keys = udp.datagrams.imsi_keys(datagrams, HANDLES.imsi_3gpp, HANDLES.user_name)
    assert len(keys) == 8 * len(datagrams)
    if not at:
        assert struct.unpack("=Q", keys[-8:]) == (440101234567890,)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@needs_extension
@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 on this host")
def test_ipv6_addresses_have_the_socket_module_form() -> None:
    seen: list[tuple[object, ...]] = []

    def handle(data: bytes, address: tuple[object, ...], now: float) -> bytes | None:
        seen.append(address)
        return data

    with (
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender,
    ):
        server.bind(("::1", 0))
        server.setblocking(False)
        sender.bind(("::1", 0))
        sender.settimeout(2)
        assert udp.datagrams is not None
        pump = udp.datagrams.Pump(server.fileno(), handle, DURATION_BOUNDS)
        sender.sendto(b"six", server.getsockname())
        assert drain(pump, 1) == 1
        assert sender.recv(10) == b"six"
        assert seen == [sender.getsockname()]  # (host, port, flowinfo, scope_id)


@pytest.mark.asyncio
async def test_the_server_uses_the_batched_receiver_when_it_is_built(
    start_server: ServerFactory,
) -> None:
    server: Server = await start_server()
    kinds = {type(port) for port in server._protocols}
    expected = udp.RadiusProtocol if udp.datagrams is None else udp.BatchedPort
    assert kinds == {expected}


@pytest.mark.asyncio
async def test_a_burst_of_access_requests_from_many_sockets_is_answered_in_full(
    start_server: ServerFactory,
) -> None:
    # Queued before the loop runs, so the batched receiver takes them 64 at a time; every
    # reply must verify against its own request and carry the verdict of that request.
    server: Server = await start_server()
    senders = clients(4)
    requests: dict[tuple[int, int], tuple[bytes, int]] = {}
    for n in range(200):
        # STRICT without an IMEI: imei-not-reported
        imsi, expected = (NO_LOCK, Code.ACCESS_ACCEPT) if n % 2 else (STRICT, Code.ACCESS_REJECT)
        authenticator = os.urandom(16)
        request = Request(imsi=imsi.decode(), imei=None)
        packet = build_access_request(request, n % 256, authenticator, KEY, HANDLES)
        index = n % 4
        requests[(index, n % 256)] = (authenticator, expected)
        senders[index].sendto(packet, ("127.0.0.1", server.auth_port))

    def collect() -> list[tuple[int, bytes]]:
        return [
            (index, sender.recv(4096)) for index, sender in enumerate(senders) for _ in range(50)
        ]

    replies = await asyncio.to_thread(collect)
    for index, reply in replies:
        authenticator, expected = requests[(index, reply[1])]
        assert verify_reply(reply, authenticator, KEY)
        assert reply[0] == expected
    server.stats.refresh()  # the pump's own counters, errors of prefetch() among them
    assert server.stats.drops[Drop.INTERNAL_ERROR] == 0
    if udp.datagrams is not None:
        assert 200 / 64 <= server.stats.batches <= 200
    for sender in senders:
        sender.close()


def test_young_collections_run_every_so_many_datagrams() -> None:
    young: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            young.append(info["generation"])

    collections = udp.Collections(every=100, full_every=3600.0)
    gc.callbacks.append(watch)
    gc.disable()  # only the collections Collections runs
    try:
        collections.datagrams(99)
        assert young == []
        collections.datagrams(1)  # the hundredth
        for _ in range(19):
            collections.datagrams(64)
            collections.datagrams(36)
    finally:
        gc.enable()
        gc.callbacks.remove(watch)
    # every tenth is the middle generation; no full one before full_every seconds
    assert young.count(0) == 18 and young.count(1) == 2 and 2 not in young


def test_a_full_collection_waits_for_its_interval() -> None:
    young: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            young.append(info["generation"])

    collections = udp.Collections(every=1, full_every=0.0)
    gc.callbacks.append(watch)
    gc.disable()
    try:
        for _ in range(10):
            collections.datagrams(1)
    finally:
        gc.enable()
        gc.callbacks.remove(watch)
    assert young == [0] * 9 + [2]  # the tenth: due for a full one, so full instead of middle


@pytest.mark.asyncio
async def test_reuse_port_lets_two_servers_share_the_port(start_server: ServerFactory) -> None:
    first: Server = await start_server(reuse_port=True)
    second: Server = await start_server(
        reuse_port=True, auth_port=first.auth_port, acct_port=first.acct_port
    )
    assert (second.auth_port, second.acct_port) == (first.auth_port, first.acct_port)
    senders = clients(32)  # the kernel hashes each source port to one of the two sockets
    for index, sender in enumerate(senders):
        request = Request(imsi=NO_LOCK.decode(), imei=None)
        packet = build_access_request(request, index, os.urandom(16), KEY, HANDLES)
        sender.sendto(packet, ("127.0.0.1", first.auth_port))

    def collect() -> list[bytes]:
        return [sender.recv(4096) for sender in senders]

    replies = await asyncio.to_thread(collect)
    assert all(reply[0] == Code.ACCESS_ACCEPT for reply in replies)
    answered = [sum(server.stats.replies.values()) for server in (first, second)]
    assert sum(answered) == 32 and min(answered) > 0  # both took a share
    for sender in senders:
        sender.close()


@pytest.mark.asyncio
async def test_without_reuse_port_a_second_server_cannot_start(start_server: ServerFactory) -> None:
    first: Server = await start_server()
    with pytest.raises(StartupError, match=r"radius\.auth_port: cannot bind"):
        await start_server(auth_port=first.auth_port)


def test_full_collections_are_taken_from_the_interpreter_and_run_on_a_timer() -> None:
    saved = gc.get_threshold()
    generations: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    collections = udp.Collections(full_every=3600.0)
    try:
        collections.start()
        young, middle, old = gc.get_threshold()
        assert (young, middle) == saved[:2] and old >= 1 << 30  # the count never gets there
        gc.callbacks.append(watch)
        collections.full_if_due()
        assert 2 not in generations  # not due yet
        collections.full_every = 0.0
        collections.full_if_due()
        assert 2 in generations
    finally:
        if watch in gc.callbacks:
            gc.callbacks.remove(watch)
        gc.set_threshold(*saved)
