"""The asyncio adapter around the pipeline: one ``DatagramProtocol`` per RADIUS port.

Owns: sockets (bind, ``SO_RCVBUF``), the per-packet clock and processing-time histogram, the
timer that sends delayed rejects, the reply-cache sweep, and the last-resort error counter.

Invariants: thin. Everything a packet means is decided in ``pipeline.py``; this module only moves
bytes and time. No log call per packet: drops are logged by ``DropLog`` at most once per reason
per interval, from a timer.

Must not: import the policy or the store (it goes through the pipeline).
"""

from __future__ import annotations

import asyncio
import socket
from time import perf_counter
from typing import Any, cast

import structlog

from core.radius.codes import Drop
from core.radius.dedup import Address
from core.service.pipeline import Pipeline

log = structlog.get_logger("simgate.udp")


class RadiusProtocol(asyncio.DatagramProtocol):
    """Feeds datagrams to a ``Pipeline`` and sends what it returns."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.transport: asyncio.DatagramTransport | None = None
        self._handle = pipeline.handle
        self._stats = pipeline.stats
        self._sendto: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The stock loop's datagram transport does not subclass DatagramTransport in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._sendto = self.transport.sendto
        self.pipeline.send = self._sendto  # replies that finish after a durable write
        self.pipeline.wake = self._wake
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
        elif self.pipeline.delayed and self._timer is None:
            self._schedule(start)
        self._stats.observe(perf_counter() - start)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: nothing to do for UDP.
        pass

    def _wake(self) -> None:
        if self._timer is None and self.pipeline.delayed:
            self._schedule(perf_counter())

    def _schedule(self, now: float) -> None:
        delay = max(0.0, self.pipeline.delayed[0].due - now)
        self._timer = self._loop.call_later(delay, self._send_due)

    def _send_due(self) -> None:
        self._timer = None
        now = perf_counter()
        sendto = self._sendto
        for item in self.pipeline.due_rejects(now):
            sendto(item.reply, item.address)
        if self.pipeline.delayed:
            self._schedule(now)

    def close(self) -> None:
        """Send the rejects still waiting for their delay, then close the socket."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            for item in self.pipeline.due_rejects(float("inf")):
                self._sendto(item.reply, item.address)
            self.transport.close()


_last_internal_error = 0.0


def _log_internal_error() -> None:
    global _last_internal_error
    now = perf_counter()
    if now - _last_internal_error >= 10.0:
        _last_internal_error = now
        log.exception("datagram_failed")


def bind(host: str, port: int, receive_buffer: int) -> socket.socket:
    """Create and bind a UDP socket with the configured receive buffer.

    Raises:
        OSError: the address cannot be bound (in use, not local).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # A few MiB absorbs bursts the kernel's ~208 KiB default drops (PERF-NOTES); the kernel
        # caps it at net.core.rmem_max, and /metrics exports its RcvbufErrors.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(pipeline: Pipeline, sock: socket.socket) -> RadiusProtocol:
    """Start receiving on ``sock``; return the protocol (``close()`` stops it)."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(lambda: RadiusProtocol(pipeline), sock=sock)
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
