"""The asyncio adapter around the pipeline: one receiver per RADIUS port.

Owns: sockets (bind, ``SO_RCVBUF``), the per-packet clock and processing-time histogram, the
timer that sends delayed rejects, the reply-cache sweep, and the last-resort error counter.

Two receivers, the same behaviour: ``BatchedPort`` (Linux, with the C extension
``core.service._datagrams``) takes the datagrams waiting in the socket with one ``recvmmsg``
and sends their replies with one ``sendmmsg``, from a reader callback on the event loop;
``RadiusProtocol`` is the event loop's own datagram transport, one system call per datagram
each way, used elsewhere and with ``SIMGATE_PURE_PYTHON=1``.

Invariants: thin. Everything a packet means is decided in ``pipeline.py``; this module only moves
bytes and time. No log call per packet: drops are logged by ``DropLog`` at most once per reason
per interval, from a timer.

Must not: import the policy or the store (it goes through the pipeline).
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from collections.abc import Callable
from time import monotonic, perf_counter
from types import ModuleType
from typing import Any, Final, cast

import structlog

from core.radius.codes import Drop
from core.radius.dedup import Address
from core.radius.native import PURE_PYTHON_ENV
from core.service.pipeline import Pipeline
from core.service.stats import DURATION_BOUNDS

log = structlog.get_logger("simgate.udp")


def _load_datagrams() -> ModuleType | None:
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None
    try:
        from core.service import _datagrams
    except ImportError:  # not Linux, or built without a C compiler
        return None
    return _datagrams


#: the batched receiver's extension, or None (then every port is a ``RadiusProtocol``)
datagrams: Final = _load_datagrams()
#: batches taken per readiness callback before the loop's other work gets a turn
_BATCHES_PER_TURN: Final = 8
#: an old-generation threshold the count never reaches: full collections only by Collections
_NEVER: Final = 1 << 30


class Collections:
    """Runs the garbage collector's young generations between datagrams, every ``every``.

    CPython starts a young collection when allocations minus deallocations pass a threshold.
    On the datagram path each request frees about as many old objects (the session and reply
    cache entries it replaces) as it allocates, so the young generation grew to thousands of
    objects before a collection started, which then walked them with cold caches: 0.5-11 ms,
    and a few older-generation collections of 10-20 ms (bench/load.py: p99 2-3 ms at half the
    peak, 0.6-0.8 ms with this; the peak 56-61k -> 62k/s). Counting datagrams instead keeps each
    collection small (~0.1 ms), and it runs between batches, never inside one. Every tenth is
    of the middle generation.

    A full collection walks every object the collector tracks, the overlay of writes since the
    last snapshot among them (a few per written SIM), so it runs only every ``full_every``
    seconds: run from here every 128,000 datagrams it cost the decisions 13-20% while writes
    ran (bench/writes.py). Compaction empties the overlay, and reference counting frees it.
    ``start()`` takes full collections away from the interpreter's own trigger; its young and
    middle thresholds stay as a safety net for allocations elsewhere.
    """

    __slots__ = ("_count", "_last_full", "_pending", "every", "full_every")

    def __init__(self, every: int = 128, full_every: float = 600.0) -> None:
        self.every = every
        self.full_every = full_every
        self._pending = 0
        self._count = 0
        self._last_full = monotonic()

    def start(self) -> None:
        """Take the full collections over from the interpreter: its trigger fires on bursts of
        allocation (an API call, a write) whenever enough objects reached the old generation,
        and then walks all of them on the datagram path."""
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, _NEVER)

    def full_if_due(self) -> None:
        """A full collection if ``full_every`` has passed (a timer calls it: no traffic needed)."""
        if monotonic() - self._last_full >= self.full_every:
            self._last_full = monotonic()
            gc.collect(2)

    async def run(self, interval: float = 60.0) -> None:
        """Call full_if_due() forever (cancel to stop)."""
        while True:
            await asyncio.sleep(interval)
            self.full_if_due()

    def datagrams(self, count: int) -> None:
        self._pending += count
        if self._pending >= self.every:
            self._pending = 0
            self._count = number = self._count + 1
            if number % 10:
                gc.collect(0)
            elif monotonic() - self._last_full < self.full_every:
                gc.collect(1)
            else:
                self._last_full = monotonic()
                gc.collect(2)


class DelayedRejects:
    """The timer that sends a pipeline's rejects once their ``reject_delay`` has passed.

    Both receivers use it: ``due()`` after handling datagrams (one timer at a time, set for the
    oldest), ``wake()`` for a reject that finished outside a datagram (after a durable write),
    ``flush()`` at shutdown (everything still waiting goes out at once).
    """

    def __init__(self, pipeline: Pipeline, send: Callable[[bytes, Address], object]) -> None:
        self._pipeline = pipeline
        self._send = send
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None

    def due(self, now: float) -> None:
        if self._timer is None and self._pipeline.delayed:
            delay = max(0.0, self._pipeline.delayed[0].due - now)
            self._timer = self._loop.call_later(delay, self._fire)

    def wake(self) -> None:
        self.due(perf_counter())

    def _fire(self) -> None:
        self._timer = None
        now = perf_counter()
        send = self._send
        for item in self._pipeline.due_rejects(now):
            send(item.reply, item.address)
        self.due(now)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for item in self._pipeline.due_rejects(float("inf")):
            self._send(item.reply, item.address)


class RadiusProtocol(asyncio.DatagramProtocol):
    """Feeds datagrams to a ``Pipeline`` and sends what it returns."""

    def __init__(self, pipeline: Pipeline, collections: Collections) -> None:
        self.pipeline = pipeline
        self._collections = collections
        self.transport: asyncio.DatagramTransport | None = None
        self._handle = pipeline.handle
        self._stats = pipeline.stats
        self._sendto: Any = None
        self._rejects: DelayedRejects | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The stock loop's datagram transport does not subclass DatagramTransport in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._sendto = self.transport.sendto
        self.pipeline.send = self._sendto  # replies that finish after a durable write
        self._rejects = DelayedRejects(self.pipeline, self._sendto)
        self.pipeline.wake = self._rejects.wake
        if hasattr(transport, "max_size"):
            # perf: the stock loop receives into a fresh 256 KiB buffer per datagram; RADIUS
            # packets are at most 4096 octets (PERF-NOTES: 3-4x throughput).
            transport.max_size = 4096

    def datagram_received(self, data: bytes, addr: Address) -> None:
        start = perf_counter()
        try:
            reply = self._handle(data, addr, start)
        except Exception:  # noqa: BLE001 - last resort: count, log (rate-limited), keep serving
            self._stats.drops[Drop.INTERNAL_ERROR] += 1
            _log_internal_error()
            return
        if reply is not None:
            self._sendto(reply, addr)
        elif self.pipeline.delayed and self._rejects is not None:
            self._rejects.due(start)
        self._stats.observe(perf_counter() - start)
        self._collections.datagrams(1)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: nothing to do for UDP.
        pass

    def close(self) -> None:
        """Send the rejects still waiting for their delay, then close the socket."""
        if self._rejects is not None:
            self._rejects.flush()
        if self.transport is not None:
            self.transport.close()


class BatchedPort:
    """Receives, decides and answers in batches (``core/service/_datagrams.c``).

    The C pump calls ``pipeline.handle`` for every datagram, as ``RadiusProtocol`` does, and
    counts processing time and exceptions in C; ``take_counters`` moves them into ``Stats``
    (the collector calls it before a scrape, the sweep every 0.1 s).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        sock: socket.socket,
        module: ModuleType,
        collections: Collections,
    ) -> None:
        self.pipeline = pipeline
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._pump = module.Pump(
            sock.fileno(),
            pipeline.handle,
            DURATION_BOUNDS,
            prefetch=pipeline.prefetch,
            imsi_vsa=pipeline.imsi_vsa,
            user_name=pipeline.imsi_user_name,
        )
        self._batch = 64
        self._collections = collections
        self._rejects = DelayedRejects(pipeline, self._send)
        pipeline.send = self._send
        pipeline.wake = self._rejects.wake
        pipeline.stats.refreshers.append(self.take_counters)
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        pump = self._pump.pump
        batch = self._batch
        received = 0
        try:
            for _ in range(_BATCHES_PER_TURN):
                count = pump()
                received += count
                if count < batch:
                    break
        except OSError as error:  # the socket itself failed: count, log (rate-limited), go on
            self.pipeline.stats.drops[Drop.INTERNAL_ERROR] += 1
            _log_internal_error(error)
        self._collections.datagrams(received)
        if self.pipeline.delayed:
            self._rejects.due(perf_counter())

    def _send(self, reply: bytes, address: Address) -> None:
        """Send one reply outside a batch (after a durable write, or a reject's delay)."""
        try:
            self._sock.sendto(reply, address)
        except OSError:  # send buffer full or the peer unreachable: the client retransmits
            self.pipeline.stats.drops[Drop.REPLY_NOT_SENT] += 1

    def take_counters(self) -> None:
        counts, seconds, errors, send_failed, error, batches = self._pump.take_counters()
        stats = self.pipeline.stats
        stats.batches += batches
        buckets = stats.duration_buckets
        for index, count in enumerate(counts):
            if count:
                buckets[index] += count
        stats.duration_sum += seconds
        if errors:
            stats.drops[Drop.INTERNAL_ERROR] += errors
            _log_internal_error(error)
        stats.drops[Drop.REPLY_NOT_SENT] += send_failed

    def close(self) -> None:
        """Send the rejects still waiting for their delay, then close the socket."""
        self._loop.remove_reader(self._sock.fileno())
        self._rejects.flush()
        self.take_counters()
        self.pipeline.stats.refreshers.remove(self.take_counters)
        self._sock.close()


_last_internal_error = 0.0


def _log_internal_error(error: BaseException | None = None) -> None:
    global _last_internal_error
    now = perf_counter()
    if now - _last_internal_error >= 10.0:
        _last_internal_error = now
        if error is None:
            log.exception("datagram_failed")
        else:
            log.error("datagram_failed", exc_info=error)


def bind(host: str, port: int, receive_buffer: int, *, reuse_port: bool = False) -> socket.socket:
    """Create and bind a UDP socket with the configured receive buffer.

    With ``reuse_port``, other processes may bind the same port (SO_REUSEPORT); the kernel
    hashes each client address and port to one of them.

    Raises:
        OSError: the address cannot be bound (in use, not local).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # A few MiB absorbs bursts the kernel's ~208 KiB default drops (PERF-NOTES); the kernel
        # caps it at net.core.rmem_max, and /metrics exports its RcvbufErrors.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


Port = RadiusProtocol | BatchedPort


async def serve(
    pipeline: Pipeline,
    sock: socket.socket,
    collections: Collections | None = None,
    *,
    batched: bool = True,
) -> Port:
    """Start receiving on ``sock``; return the receiver (``close()`` stops it).

    Batched when the extension is there (and ``batched``), else the event loop's transport.
    """
    if collections is None:
        collections = Collections()
    if batched and datagrams is not None:
        return BatchedPort(pipeline, sock, datagrams, collections)
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: RadiusProtocol(pipeline, collections), sock=sock
    )
    return protocol


async def sweep(pipelines: list[Pipeline], interval: float = 0.1, chunk: int = 2048) -> None:
    """Expire reply-cache entries forever (cancel to stop).

    In chunks, with the loop's other work between them: a second's worth of entries removed in
    one go took ~9 ms at 17,000 requests/s, which every request waiting behind it paid
    (bench/load.py, p99).
    """
    while True:
        await asyncio.sleep(interval)
        for pipeline in pipelines:
            pipeline.stats.refresh()
            while pipeline.cache.expire(perf_counter(), chunk) == chunk:  # noqa: ASYNC110
                await asyncio.sleep(0)  # a turn of the loop between chunks, not a wait


class DropLog:
    """Logs drops, at most one line per reason per interval (STYLE §2.3 rule 6)."""

    def __init__(self, pipelines: list[Pipeline], interval: float) -> None:
        self._stats = {id(p.stats): p.stats for p in pipelines}
        self._interval = interval
        self._seen: dict[Drop, int] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.report()

    def report(self) -> None:
        for reason in Drop:
            total = sum(stats.drops[reason] for stats in self._stats.values())
            new = total - self._seen.get(reason, 0)
            if new:
                self._seen[reason] = total
                log.warning("packets_dropped", reason=reason.value, count=new, total=total)
