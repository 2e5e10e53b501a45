"""Events and actions (DESIGN §3): the bounded store, the hub's actions and webhook delivery
to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from core.service.events import (
    Delivery,
    EventHub,
    EventStore,
    ImeiLockRejected,
    SessionCreated,
    SessionDeleted,
    SessionModified,
    imei_lock_rejected,
)
from core.service.stats import EventDrop, Stats
from core.service.webhook import Target, WebhookSender, status_code

SIM = "8981100000000000001"
IMSI = 440101234567890
LOCKED = 35387923425263  # 14-digit identity; 15 digits with its Luhn digit: 353879234252633
OTHER = 35000000000001


def primary_imsi(sim_id: str) -> int:
    """Each test SIM's primary IMSI: the store files events under it."""
    return IMSI if sim_id == SIM else 440_100_000_000_000 + zlib.crc32(sim_id.encode()) % 10**9


def key(sim_id: str) -> int:
    return primary_imsi(sim_id)


def file(store: EventStore, event: ImeiLockRejected) -> None:
    """File an event the way the hub does: under its SIM's primary IMSI."""
    store.append(event.imsi, event)


def rejected(sim_id: str = SIM, when: float = 1_700_000_000.0) -> ImeiLockRejected:
    return imei_lock_rejected(
        sim_id=sim_id,
        primary_imsi=primary_imsi(sim_id),
        reason="imei-mismatch",
        reported=OTHER,
        raw=b"3500000000000100",
        lock=LOCKED,
        nas=bytes((4, 6, 10, 0, 0, 1)),  # NAS-IP-Address 10.0.0.1 as received
        time=when,
    )


# -- records --------------------------------------------------------------------------------------


def test_imei_lock_rejected_json() -> None:
    assert rejected().to_json() == {
        "event": "imeiLockRejected",
        "simId": SIM,
        "imsi": "440101234567890",
        "reason": "imei-mismatch",
        "reported": "350000000000014",
        "locked": "353879234252633",
        "nas": "10.0.0.1",
        "time": 1_700_000_000.0,
    }


@pytest.mark.parametrize(
    ("reason", "reported", "raw", "expected"),
    [
        ("imei-not-reported", 0, None, None),
        ("imei-not-reported", 0, b"000000000000000", None),
        ("imei-invalid", -1, b"12345", "12345"),
        ("imei-invalid", -1, b"\x01\x02\xff", "0102ff"),
        ("imei-invalid", -1, b"35\n", "33350a"),
    ],
    ids=["absent", "all-zeros", "printable", "binary", "control-character"],
)
def test_reported_text(reason: str, reported: int, raw: bytes | None, expected: str | None) -> None:
    event = imei_lock_rejected(
        sim_id=SIM,
        primary_imsi=IMSI,
        reason=reason,
        reported=reported,
        raw=raw,
        lock=LOCKED,
        nas=b"",
        time=1.0,
    )
    assert event.to_json()["reported"] == expected
    assert event.to_json()["locked"] == "353879234252633"
    assert event.to_json()["nas"] is None


@pytest.mark.parametrize(
    ("event_type", "name"),
    [(SessionCreated, "Created"), (SessionModified, "Modified"), (SessionDeleted, "Deleted")],
)
def test_session_event_json(
    event_type: type[SessionCreated | SessionModified | SessionDeleted], name: str
) -> None:
    event = event_type(SIM, 440101234567890, 0, "nas-1", 0x0A010203, "s-1", 2.5)
    assert event.to_json() == {
        "event": name,
        "simId": SIM,
        "imsi": "440101234567890",
        "imei": None,
        "nas": "nas-1",
        "framedIp": "10.1.2.3",
        "sessionId": "s-1",
        "time": 2.5,
    }


# -- store ----------------------------------------------------------------------------------------


def test_store_lists_newest_first_with_limit() -> None:
    store = EventStore()
    events = [rejected(when=float(n)) for n in range(5)]
    for event in events:
        file(store, event)
    file(store, rejected("other", 9.0))
    assert store.list(key(SIM), 3) == events[:1:-1]
    assert store.list(key(SIM), 100) == events[::-1]
    assert store.list(key(SIM), 0) == []
    assert store.list(key("unknown"), 10) == []


def test_store_total_capacity_evicts_oldest() -> None:
    store = EventStore(capacity=4, per_sim=10)
    a = [rejected("a", float(n)) for n in range(3)]
    b = [rejected("b", float(n)) for n in range(3, 6)]
    for event in (*a, *b):
        file(store, event)
    assert len(store) == 4
    assert store.list(key("a"), 10) == [a[2]]
    assert store.list(key("b"), 10) == b[::-1]


def test_store_per_sim_cap_frees_global_slots() -> None:
    store = EventStore(capacity=6, per_sim=3)
    quiet = [rejected("quiet", float(n)) for n in range(3)]
    for event in quiet:
        file(store, event)
    storm = [rejected("storm", float(n)) for n in range(10, 1_000)]
    for event in storm:
        file(store, event)
    # the storm keeps its own last 3 events and never pushes the quiet SIM's history out
    assert len(store) == 6
    assert store.list(key("storm"), 10) == storm[:-4:-1]
    assert store.list(key("quiet"), 10) == quiet[::-1]


def test_store_forgets_sims_without_events() -> None:
    store = EventStore(capacity=3, per_sim=3)
    for n in range(1_000):
        file(store, rejected(f"sim-{n}", float(n)))
    assert len(store) == 3
    assert len(store._by_sim) == 3
    assert [event.sim_id for event in store.list(key("sim-999"), 5)] == ["sim-999"]
    assert store.list(key("sim-996"), 5) == []


def test_store_keeps_nothing_the_collector_tracks() -> None:
    # A full collection walks every tracked object: a store of tracked events made it take tens
    # of milliseconds on the datagram path. After one collection nothing stored is tracked.
    store = EventStore(capacity=1_000, per_sim=10)
    for n in range(2_000):
        file(store, rejected(f"sim-{n % 300}", float(n)))
        store.append(primary_imsi("s"), SessionCreated("", 1, 2, "nas", 0, "ab", float(n)))
    gc.collect()
    kept = [*store._events.values(), *store._by_sim.values()]
    assert len(kept) > 1_000
    assert not [value for value in kept if gc.is_tracked(value)]
    assert store.list(primary_imsi("s"), 1)[0] == SessionCreated("", 1, 2, "nas", 0, "ab", 1999.0)


# -- hub ------------------------------------------------------------------------------------------


@dataclass
class Hub:
    hub: EventHub
    stats: Stats
    queue: asyncio.Queue[Delivery]
    deactivated: list[str] = field(default_factory=list)


def make_hub(queue_size: int = 10) -> Hub:
    stats = Stats()
    queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=queue_size)
    deactivated: list[str] = []
    hub = EventHub(EventStore(), stats, queue, deactivated.append)
    return Hub(hub, stats, queue, deactivated)


def test_emit_without_actions_only_stores() -> None:
    made = make_hub()
    event = rejected()
    made.hub.emit(event, (), None)
    assert made.hub.store.list(key(SIM), 10) == [event]
    assert made.queue.empty()
    assert made.deactivated == []


def test_deactivate_action_calls_back_with_sim_id() -> None:
    made = make_hub()
    made.hub.emit(rejected(), ("deactivate",), None)
    assert made.deactivated == [SIM]


def test_log_action_writes_a_structured_line() -> None:
    made = make_hub()
    with capture_logs() as lines:
        made.hub.emit(rejected(), (), None)
        assert lines == []
        made.hub.emit(rejected(), ("log",), None)
    assert lines == [
        {
            "event": "imei_lock_rejected",
            "log_level": "warning",
            "simId": SIM,
            "imsi": "440101234567890",
            "reason": "imei-mismatch",
            "reported": "350000000000014",
            "locked": "353879234252633",
            "nas": "10.0.0.1",
            "time": 1_700_000_000.0,
        }
    ]


def test_webhook_action_queues_the_event() -> None:
    made = make_hub()
    event = rejected()
    made.hub.emit(event, ("webhook",), "http://127.0.0.1:9/hook")
    assert made.queue.get_nowait() == ("http://127.0.0.1:9/hook", event)


def test_webhook_without_url_is_counted() -> None:
    made = make_hub()
    made.hub.emit(rejected(), ("webhook", "deactivate"), None)
    assert made.stats.events_dropped[EventDrop.WEBHOOK_NO_URL] == 1
    assert made.deactivated == [SIM]


def test_full_queue_drops_and_counts_without_waiting() -> None:
    made = make_hub(queue_size=2)
    start = time.perf_counter()
    for n in range(1_000):
        made.hub.emit(rejected(when=float(n)), ("webhook",), "http://127.0.0.1:9/")
    elapsed = time.perf_counter() - start
    assert made.queue.qsize() == 2
    assert made.stats.events_dropped[EventDrop.WEBHOOK_QUEUE_FULL] == 998
    assert len(made.hub.store.list(key(SIM), 2_000)) == 1_000
    assert elapsed < 0.5  # generous: about 2 µs per emit


def test_failing_action_is_counted_and_never_raises() -> None:
    stats = Stats()

    def broken(sim_id: str) -> None:
        raise RuntimeError("bug")

    hub = EventHub(EventStore(), stats, asyncio.Queue(maxsize=1), broken)
    with capture_logs() as lines:
        for n in range(3):
            hub.emit(rejected(when=float(n)), ("deactivate", "webhook"), "http://127.0.0.1:9/")
    assert stats.events_dropped[EventDrop.ACTION_FAILED] == 3
    assert hub._webhooks.qsize() == 1  # the next action still ran
    assert [line["event"] for line in lines] == ["event_action_failed"]  # rate-limited


# -- webhook delivery -----------------------------------------------------------------------------


@dataclass
class Receiver:
    """An HTTP receiver on 127.0.0.1 that answers with the scripted statuses, then 200."""

    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    requests: list[tuple[bytes, dict[str, str], bytes]] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode().split("\r\n")[:-2]
            headers = dict(line.split(": ", 1) for line in header_lines)
            body = await reader.readexactly(int(headers["Content-Length"]))
            self.requests.append((request_line.encode(), headers, body))
            self.received.set()
            if self.hang:
                await self.release.wait()
                return
            status = self.statuses.pop(0) if self.statuses else 200
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % status)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client aborts once it has the status line
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    result = Receiver()
    server = await asyncio.start_server(result.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    result.url = f"http://127.0.0.1:{port}/hooks/simgate?key=1"
    yield result
    result.release.set()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.01)  # let the handlers finish closing their transports


@pytest_asyncio.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    result = WebhookSender(Stats(), workers=2, timeout=0.5, attempts=3, backoff=0.01)
    result.start()
    yield result
    await result.stop()


async def settle(stats: Stats, total: int = 1) -> None:
    """Wait until ``total`` deliveries have ended (delivered or failed)."""
    async with asyncio.timeout(3):
        # ASYNC110: the counters are plain ints (STYLE §2.3 rule 7), there is no event to await
        while stats.webhook_deliveries + stats.webhook_failures < total:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def hub_over(sender: WebhookSender) -> EventHub:
    return EventHub(EventStore(), sender._stats, sender.queue, lambda sim_id: None)


@pytest.mark.asyncio
async def test_webhook_delivers_the_event_as_json(
    receiver: Receiver, sender: WebhookSender
) -> None:
    event = rejected()
    hub_over(sender).emit(event, ("webhook",), receiver.url)
    await settle(sender._stats)
    assert sender._stats.webhook_deliveries == 1
    assert sender._stats.webhook_failures == 0
    [(request_line, headers, body)] = receiver.requests
    assert request_line == b"POST /hooks/simgate?key=1 HTTP/1.1"
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert headers["Host"] == receiver.url.split("/")[2]
    assert json.loads(body) == event.to_json()


@pytest.mark.asyncio
async def test_webhook_retries_server_errors(receiver: Receiver, sender: WebhookSender) -> None:
    receiver.statuses = [500, 503]
    hub_over(sender).emit(rejected(), ("webhook",), receiver.url)
    await settle(sender._stats)
    assert len(receiver.requests) == 3
    assert sender._stats.webhook_deliveries == 1
    assert sender._stats.webhook_failures == 0


@pytest.mark.asyncio
async def test_webhook_gives_up_at_once_on_a_client_error(
    receiver: Receiver, sender: WebhookSender
) -> None:
    receiver.statuses = [404]
    hub_over(sender).emit(rejected(), ("webhook",), receiver.url)
    await settle(sender._stats)
    assert len(receiver.requests) == 1
    assert sender._stats.webhook_failures == 1


@pytest.mark.asyncio
async def test_webhook_to_a_closed_port_fails_after_retries(sender: WebhookSender) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://user:secret@127.0.0.1:{port}/hook"
    with capture_logs() as lines:
        hub_over(sender).emit(rejected(), ("webhook",), url)
        await settle(sender._stats)
    assert sender._stats.webhook_failures == 1
    assert sender._stats.webhook_deliveries == 0
    [line] = lines
    assert line["event"] == "webhook_failed"
    assert "secret" not in repr(line)


@pytest.mark.asyncio
async def test_webhook_times_out_a_silent_receiver(receiver: Receiver) -> None:
    receiver.hang = True
    stats = Stats()
    sender = WebhookSender(stats, workers=1, timeout=0.05, attempts=2, backoff=0.01)
    sender.start()
    try:
        hub_over(sender).emit(rejected(), ("webhook",), receiver.url)
        await settle(stats)
    finally:
        await sender.stop()
    assert stats.webhook_failures == 1
    assert len(receiver.requests) == 2


@pytest.mark.asyncio
async def test_slow_receiver_holds_memory_to_the_queue_bound(receiver: Receiver) -> None:
    receiver.hang = True
    stats = Stats()
    sender = WebhookSender(stats, queue_size=5, workers=2, timeout=10.0, attempts=1)
    sender.start()
    hub = hub_over(sender)
    try:
        for n in range(100):
            hub.emit(rejected(when=float(n)), ("webhook",), receiver.url)
        assert stats.events_dropped[EventDrop.WEBHOOK_QUEUE_FULL] == 95
        async with asyncio.timeout(2):
            while len(receiver.requests) < 2:
                await receiver.received.wait()
                receiver.received.clear()
        await asyncio.sleep(0.05)
        # two deliveries in flight (one per worker), the rest waits: nothing else is held
        assert len(receiver.requests) == 2
        assert sender.queue.qsize() == 3
    finally:
        await sender.stop()  # cancels the two deliveries in flight cleanly
    assert stats.webhook_deliveries == stats.webhook_failures == 0


@pytest.mark.asyncio
async def test_stop_is_idempotent_and_restartable() -> None:
    sender = WebhookSender(Stats(), workers=1)
    await sender.stop()
    sender.start()
    sender.start()
    assert len(sender._tasks) == 1
    await sender.stop()
    await sender.stop()


# -- HTTP pieces ----------------------------------------------------------------------------------


def test_target_parses_url() -> None:
    target = Target.parse("https://u:p%40ss@[::1]:8443/a/b?x=1")
    assert (target.host, target.port, target.tls) == ("::1", 8443, True)
    head = target.head.decode()
    assert head.startswith("POST /a/b?x=1 HTTP/1.1\r\nHost: [::1]:8443\r\n")
    assert "Authorization: Basic dTpwQHNz\r\n" in head  # base64("u:p@ss")
    assert Target.parse("http://example.net").port == 80
    with pytest.raises(ValueError):
        Target.parse("ftp://example.net/")


@pytest.mark.parametrize(
    ("line", "status"),
    [(b"HTTP/1.1 204 No Content\r\n", 204), (b"HTTP/1.0 500\r\n", 500)],
)
def test_status_code(line: bytes, status: int) -> None:
    assert status_code(line) == status


@pytest.mark.parametrize("line", [b"", b"garbage\r\n", b"HTTP/2 200\r\n", b"HTTP/1.1 20 x\r\n"])
def test_status_code_refuses_garbage(line: bytes) -> None:
    with pytest.raises(ValueError):
        status_code(line)
