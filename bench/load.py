"""UDP load generator: real Access-Requests over loopback against a running simgate.

Starts ``simgate serve`` itself, pinned to CPU 0, with a generated config (free ports,
``reject_delay = 0``, the scenario's data set) and drives it from CPU 1; or ``--server HOST:PORT``
drives one already running (then no server CPU/RSS figures). ``--workers N`` starts N servers on
the same ports (``reuse_port``, SO_REUSEPORT), pinned to CPUs 0..N-1: the multi-core figure.

Closed loop (default): ``--window`` W requests outstanding over ``--sockets`` S sockets, each socket
its own source port with its own Identifier space. Open loop (``--rate R``): sends at a fixed
rate and measures latency from the *intended* send time, so a stalled server is not hidden
(no coordinated omission). Every reply is checked: Response Authenticator, Message-Authenticator
and the verdict (Access-Accept, or Access-Reject with the expected Reply-Message) against the
scenario; a wrong one fails the run. ``--retransmit`` % of the sends (2 by default) repeat a
request byte for byte right after its reply, on the same socket and Identifier: the reply must be
the first one's bytes (from the server's reply cache), and the server's duplicate counter must
match. Nothing else is retransmitted; unanswered requests are "lost".

    .venv/bin/python bench/load.py [--size 1m] [--window 64] [--seconds 10]
    .venv/bin/python bench/load.py --rate 20000
    .venv/bin/python bench/load.py --sweep            # W = 1, 4, 16, 64, 256
    .venv/bin/python bench/load.py --half             # peak at W=64, then p99 at half of it
    .venv/bin/python bench/load.py --workers 2        # 2 servers sharing the ports

Prints a summary per point and writes one JSON file per run under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import multiprocessing
import os
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.micro import environment
from bench.scenarios import (
    RETRANSMIT_PERCENT,
    SECRET,
    SIZES,
    build_packets,
    data_dir,
    retransmissions,
)
from core.metrics import udp_receive_buffer_errors
from core.radius import dictionary
from core.radius.auth import Secret, verify_reply

RESULTS: Final = Path(__file__).resolve().parent / "results"
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
REPLY_CACHE_TTL: Final = 10.0  # the server's default; a repeat within it would be a cache hit
SCAN_INTERVAL: Final = 0.05  # seconds between two scans for timed-out requests
# Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS): the kernel stamps each datagram with the
# CLOCK_REALTIME time it reached the socket; the socket module does not name it.
SO_TIMESTAMPNS: Final = 35
_TIMESPEC: Final = struct.Struct("@qq")
_ACCEPT: Final = 2
_REJECT: Final = 3
_REPLY_MESSAGE: Final = 18


# --------------------------------------------------------------------------------------------
# What one point of a run is, and what it found


@dataclass(frozen=True, slots=True)
class Plan:
    """One measurement: closed loop (``rate`` None) or open loop at ``rate`` requests/s."""

    window: int
    sockets: int
    processes: int
    seconds: float
    count: int | None
    warmup: float
    timeout: float
    rate: float | None = None
    #: where in the packet list this point's sockets start (random per point; see Worker)
    offset: int = 0

    @property
    def mode(self) -> str:
        return "closed" if self.rate is None else "open"


@dataclass(slots=True)
class Outcome:
    """What the client processes saw for one plan (merged over processes)."""

    completed: int = 0  # replies to requests of the measured window
    window_seconds: float = 0.0
    sent: int = 0
    lost: int = 0
    late: int = 0
    wrong: int = 0
    blocked: int = 0  # open loop: sends delayed because every Identifier of every socket was busy
    retransmissions: int = 0  # repeats sent (included in `sent`)
    retransmission_replies: int = 0  # their replies, each byte for byte the first reply
    problems: list[str] = field(default_factory=list)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    lags: array[float] = field(default_factory=lambda: array("d"))
    # open loop: the same latencies taken when the client got to the reply, not when it arrived
    seen: array[float] = field(default_factory=lambda: array("d"))
    # open loop: from the actual send to the reply's arrival, the client's lateness left out
    served: array[float] = field(default_factory=lambda: array("d"))
    client_cpu_seconds: float = 0.0
    client_wait_seconds: float = 0.0
    client_idle_seconds: float = 0.0  # open loop: spent polling with nothing to do


# --------------------------------------------------------------------------------------------
# The client side: worker processes pinned to the client CPU


@dataclass(frozen=True, slots=True)
class Requests:
    """Pre-built requests and what their replies must be; shared with workers by fork."""

    packets: list[bytes]
    authenticators: list[bytes]
    identifiers: list[int]
    by_identifier: list[list[int]]  # the packets carrying each Identifier, in list order
    codes: list[int]  # expected reply code
    reasons: list[bytes | None]  # expected Reply-Message of a reject
    names: list[str]  # scenario case, for error messages
    #: 1 where the request is sent a second time, byte for byte, right after its reply
    retransmit: bytes = b""


_REQUESTS: Requests | None = None  # set before forking the workers


def prepare(size: str, total: int, seed: int, retransmit: float = RETRANSMIT_PERCENT) -> Requests:
    """Build the requests; ``retransmit`` % of the sends will be byte-for-byte repeats."""
    handles = dictionary.load().handles
    started = time.perf_counter()
    built = build_packets(SIZES[size], total, handles, seed)
    print(f"built {total:,} signed requests in {time.perf_counter() - started:.1f} s")
    by_identifier: list[list[int]] = [[] for _ in range(256)]
    for index, (packet, _) in enumerate(built):
        by_identifier[packet[1]].append(index)
    return Requests(
        packets=[packet for packet, _ in built],
        authenticators=[packet[4:20] for packet, _ in built],
        identifiers=[packet[1] for packet, _ in built],
        by_identifier=by_identifier,
        codes=[_ACCEPT if case.accept else _REJECT for _, case in built],
        reasons=[None if case.reason is None else case.reason.encode() for _, case in built],
        names=[case.name for _, case in built],
        retransmit=retransmissions(total, retransmit, seed),
    )


def _reply_message(reply: bytes) -> bytes | None:
    position, end = 20, min(len(reply), int.from_bytes(reply[2:4], "big"))
    while position + 2 <= end:
        kind, size = reply[position], reply[position + 1]
        if size < 2:
            return None
        if kind == _REPLY_MESSAGE:
            return reply[position + 2 : position + size]
        position += size
    return None


def _realtime_offset(samples: int = 50) -> float:
    """CLOCK_REALTIME minus perf_counter, from the closest of ``samples`` readings.

    Kernel receive timestamps are in real time and the client's schedule in perf_counter time
    (CLOCK_MONOTONIC). NTP slews both alike, so the offset holds for a run unless the clock
    is stepped."""
    best = math.inf
    offset = 0.0
    clock = time.perf_counter
    for _ in range(samples):
        before = clock()
        real = time.time_ns()
        after = clock()
        if after - before < best:
            best = after - before
            offset = real * 1e-9 - (before + after) / 2
    return offset


def _own_times() -> tuple[float, float]:
    """(CPU seconds, run-queue wait seconds) of this process."""
    times = _schedstat("self")
    return times if times is not None else (time.process_time(), 0.0)


class Worker:
    """One client process: its own sockets, a share of the window (or of the rate)."""

    def __init__(
        self,
        plan: Plan,
        sockets: list[socket.socket],
        secret: Secret,
        first_socket: int,
        window: int,
        rate: float | None,
        phase: float,
        progress: Any,
        slot: int,
    ) -> None:
        assert _REQUESTS is not None
        self.plan = plan
        self.requests = _REQUESTS
        self.secret = secret
        self.window = window
        self.rate = rate
        self.phase = phase
        self.progress = progress
        self.slot = slot
        self.sockets = sockets
        socket_count = len(sockets)
        # The server answers a request from its reply cache when its (source address,
        # Identifier) last carried the same authenticator (RFC 5080). So every socket sends,
        # on each Identifier, the packets with that Identifier in turn (~780 of them, from its
        # own offset): two sends in a row on one (socket, Identifier) are never the same
        # request, and one comes back only after all the others. The parent keeps the sockets
        # of a point open for a while after it, so that no new socket gets their ports.
        self.by_identifier = self.requests.by_identifier
        self.cursors = [
            [
                (plan.offset + (first_socket + n) * len(packets) // plan.sockets)
                % max(len(packets), 1)
                for packets in self.by_identifier
            ]
            for n in range(socket_count)
        ]
        self.turns = [0] * socket_count  # the Identifier to try first on each socket
        # In flight, by socket and Identifier: (packet index, sent at); a retransmission is
        # (~index, sent at, the first reply's bytes), ~index < 0.
        self.inflight: list[dict[int, tuple[Any, ...]]] = [{} for _ in range(socket_count)]
        # Retransmissions to send, by socket: Identifier -> (index, the first reply). A request
        # marked in `retransmit` is repeated as the next send on its socket once its reply is
        # in (its Identifier stays free until then: _next never picks it while it waits here).
        self.retransmit = self.requests.retransmit or bytes(len(self.requests.packets))
        self.repeats: list[dict[int, tuple[int, bytes]]] = [{} for _ in range(socket_count)]
        # Requests that timed out, by socket and Identifier, newest last: a late reply is
        # recognised by verifying it against them (it carries no request authenticator).
        self.expired: list[dict[int, list[int]]] = [{} for _ in range(socket_count)]
        self.outcome = Outcome()
        # When each packet last went out (a packet is never in flight twice at once)
        self.sent_at = array("d", bytes(8 * len(self.requests.packets)))
        # Requests sent (open loop: due) in [from, until) are measured; one of them that times
        # out enters the latencies as infinite, so that losses show in the percentiles.
        self.window_from = math.inf
        self.window_until = math.inf

    # -- sending -----------------------------------------------------------------------------

    def _next(self, number: int) -> int | None:
        """The next packet for socket ``number`` on an Identifier free there, or None."""
        inflight = self.inflight[number]
        identifier = self.turns[number]
        for _ in range(256):
            if identifier not in inflight:
                packets = self.by_identifier[identifier]
                if packets:
                    cursors = self.cursors[number]
                    position = cursors[identifier]
                    cursors[identifier] = position + 1 if position + 1 < len(packets) else 0
                    self.turns[number] = (identifier + 1) & 0xFF
                    return packets[position]
            identifier = (identifier + 1) & 0xFF
        return None

    def _send(self, number: int, sent_at: float) -> bool:
        repeats = self.repeats[number]
        if repeats:  # a retransmission first: the same bytes on the same Identifier
            identifier, (index, first_reply) = repeats.popitem()
            self.inflight[number][identifier] = (~index, sent_at, first_reply)
            self.outcome.retransmissions += 1
        else:
            found = self._next(number)
            if found is None:
                return False
            index = found
            self.inflight[number][self.requests.identifiers[index]] = (index, sent_at)
        # A send the kernel refuses is counted lost when it times out, like a dropped datagram.
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            self.sockets[number].send(self.requests.packets[index])
        self.sent_at[index] = time.perf_counter()
        self.outcome.sent += 1
        return True

    # -- receiving ---------------------------------------------------------------------------

    def _check(
        self, number: int, reply: bytes, entry: tuple[Any, ...], repeats: dict[int, Any]
    ) -> bool:
        """Verify a reply to ``entry`` (authenticators, code, reason; a retransmission's must be
        the first reply); return whether it counts. A request marked for retransmission is
        queued in ``repeats``: the next send on this socket and Identifier."""
        index = entry[0]
        if index < 0:  # a retransmission: its reply must be the first one
            return self._repeated(number, reply, entry)
        requests = self.requests
        if not verify_reply(reply, requests.authenticators[index], self.secret):
            self._mismatch(number, reply, entry)
            return False
        code = reply[0]
        if code != requests.codes[index] or (
            code == _REJECT and _reply_message(reply) != requests.reasons[index]
        ):
            self._wrong_verdict(index, reply)
        if self.retransmit[index]:
            repeats[reply[1]] = (index, reply)
        return True

    def _repeated(self, number: int, reply: bytes, entry: tuple[Any, ...]) -> bool:
        """The reply on a retransmission's Identifier: True when it answers the retransmission.

        It must be the first reply, byte for byte (the server's reply cache): an accept decided
        again would carry another Class, so differing bytes are counted wrong.
        """
        index = ~entry[0]
        if reply == entry[2]:
            self.outcome.retransmission_replies += 1
            return True
        if not verify_reply(reply, self.requests.authenticators[index], self.secret):
            self._mismatch(number, reply, entry)
            return False
        self.outcome.wrong += 1
        if len(self.outcome.problems) < 5:
            self.outcome.problems.append(
                f"retransmission of {self.requests.names[index]} (id {reply[1]}): the reply "
                f"differs from the first one (code {reply[0]} reason {_reply_message(reply)!r}, "
                f"first code {entry[2][0]} reason {_reply_message(entry[2])!r}): decided again, "
                "not answered from the reply cache"
            )
        return True

    def _mismatch(self, number: int, reply: bytes, entry: tuple[Any, ...] | None) -> None:
        """A reply that does not verify against the request in flight on its Identifier."""
        identifier = reply[1]
        candidates = self.expired[number].get(identifier, [])
        for position in range(len(candidates) - 1, -1, -1):
            old = candidates[position]
            if verify_reply(reply, self.requests.authenticators[old], self.secret):
                del candidates[position]
                self.outcome.late += 1  # answer to a request already counted lost
                if entry is not None:
                    self.inflight[number][identifier] = entry
                return
        self.outcome.wrong += 1
        if len(self.outcome.problems) < 5:
            if entry is None:
                what = "no request in flight"
            elif entry[0] < 0:
                what = f"retransmission of {self.requests.names[~entry[0]]}"
            else:
                what = self.requests.names[entry[0]]
            self.outcome.problems.append(
                f"reply code {reply[0]} id {identifier} ({what}): bad Response Authenticator "
                "or Message-Authenticator"
            )

    def _wrong_verdict(self, index: int, reply: bytes) -> None:
        self.outcome.wrong += 1
        if len(self.outcome.problems) < 5:
            requests = self.requests
            self.outcome.problems.append(
                f"{requests.names[index]}: expected code {requests.codes[index]} "
                f"reason {requests.reasons[index]!r}, got code {reply[0]} "
                f"reason {_reply_message(reply)!r}"
            )

    def _expire(self, now: float) -> list[int]:
        """Move requests older than the timeout to ``expired``; return their sockets."""
        limit = now - self.plan.timeout
        freed = []
        for number, inflight in enumerate(self.inflight):
            old = [ident for ident, entry in inflight.items() if entry[1] < limit]
            for ident in old:
                index, sent = inflight.pop(ident)[:2]
                # a retransmission's late reply verifies against its request's authenticator
                self.expired[number].setdefault(ident, []).append(index if index >= 0 else ~index)
                self.outcome.lost += 1
                if self.window_from <= sent < self.window_until:
                    self.outcome.latencies.append(math.inf)
                    if self.rate is not None:
                        self.outcome.seen.append(math.inf)
                freed.append(number)
        return freed

    # -- the loops ---------------------------------------------------------------------------

    def run(self, start: float, conn: Connection) -> Outcome:
        gc.disable()
        try:
            if self.rate is None:
                self._closed(start, conn)
            else:
                self._open(start, conn)
        finally:
            gc.enable()
        return self.outcome

    def _closed(self, start: float, conn: Connection) -> None:
        plan = self.plan
        check = self._check
        clock = time.perf_counter
        outcome = self.outcome
        latencies = outcome.latencies
        append = latencies.append
        inflight_of = self.inflight
        poller = select.epoll()
        by_fd = {}
        for number, sock in enumerate(self.sockets):
            poller.register(sock.fileno(), select.EPOLLIN)
            by_fd[sock.fileno()] = (number, sock.recv, inflight_of[number], self.repeats[number])
        while clock() < start:
            time.sleep(min(0.01, max(0.0, start - clock())))
        measure_from = start + plan.warmup
        measure_until = measure_from + plan.seconds
        count = None if plan.count is None else max(1, plan.count * self.window // plan.window)
        hard_stop = measure_until + plan.timeout + 1.0
        per_socket = [self.window // len(self.sockets)] * len(self.sockets)
        for number in range(self.window % len(self.sockets)):
            per_socket[number] += 1
        now = clock()
        for number, share in enumerate(per_socket):
            for _ in range(share):
                self._send(number, clock())
        sending = True
        completed = 0
        cpu_from = cpu_until = _own_times()
        window_end = measure_until
        next_scan = now + SCAN_INTERVAL
        next_progress = now + 0.2
        measuring = False
        send = self._send
        while True:
            events = poller.poll(SCAN_INTERVAL)
            for fd, _ in events:
                number, recv, inflight, repeats = by_fd[fd]
                while True:
                    try:
                        reply = recv(4096)
                    except BlockingIOError:
                        break
                    except ConnectionRefusedError:
                        continue  # ICMP unreachable: the server is gone; requests time out
                    now = clock()
                    entry = inflight.pop(reply[1], None)
                    if entry is None:
                        self._mismatch(number, reply, entry)
                        continue
                    sent_at = entry[1]
                    if not check(number, reply, entry, repeats):
                        continue
                    if measuring:
                        append(now - sent_at)
                        completed += 1
                    elif sending and now >= measure_from:
                        measuring = True
                        cpu_from = _own_times()
                        measure_from = self.window_from = now
                        append(now - sent_at)
                        completed += 1
                    if sending:
                        send(number, now)
            now = clock()
            if sending and (now >= measure_until or (count is not None and completed >= count)):
                sending = False
                measuring = False
                window_end = self.window_until = now
                cpu_until = _own_times()
                conn.send(("measured", self.slot))
            if now >= next_scan:
                next_scan = now + SCAN_INTERVAL
                for number in self._expire(now):
                    if sending:
                        send(number, now)
                if not sending and not any(inflight_of):
                    break
                if now >= hard_stop:
                    self._expire(float("inf"))
                    break
            if now >= next_progress:
                next_progress = now + 0.2
                self.progress[self.slot] = completed
        poller.close()
        outcome.completed = completed
        outcome.window_seconds = max(window_end - measure_from, 1e-9)
        outcome.client_cpu_seconds = cpu_until[0] - cpu_from[0]
        outcome.client_wait_seconds = cpu_until[1] - cpu_from[1]

    def _open(self, start: float, conn: Connection) -> None:
        plan = self.plan
        assert self.rate is not None
        check = self._check
        clock = time.perf_counter
        outcome = self.outcome
        append = outcome.latencies.append
        seen = outcome.seen.append
        served = outcome.served.append
        sent_at = self.sent_at
        lag = outcome.lags.append
        inflight_of = self.inflight
        poller = select.epoll()
        by_fd = {}
        # A reply's latency ends when the kernel put it on the client's socket, not when this
        # client, busy sending or checking other replies, got to it: the client's own queue is
        # not the server's. `seen` keeps the other end point, for comparison. (The kernel starts
        # stamping on arrival a moment after the option is set, well within the warm-up; until
        # then it stamps a datagram when it is read: later, never earlier.)
        for number, sock in enumerate(self.sockets):
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            poller.register(sock.fileno(), select.EPOLLIN)
            by_fd[sock.fileno()] = (number, sock.recvmsg, inflight_of[number], self.repeats[number])
        realtime_offset = _realtime_offset()
        unpack = _TIMESPEC.unpack
        interval = 1.0 / self.rate
        measure_from = start + plan.warmup
        measure_until = measure_from + plan.seconds
        if plan.count is not None:
            measure_until = min(measure_until, measure_from + plan.count / plan.rate)
        hard_stop = measure_until + plan.timeout + 1.0
        self.window_from, self.window_until = measure_from, measure_until
        sockets = len(self.sockets)
        turn = 0
        sequence = 0
        blocked_at = -1
        due = start + self.phase * interval
        sending = True
        completed = 0
        cpu_from = cpu_until = (0.0, 0.0)
        cpu_started = False
        idle = 0.0
        next_scan = start + SCAN_INTERVAL
        next_progress = start + 0.2
        while clock() < start - 0.002:
            time.sleep(0.001)
        while True:
            now = clock()
            # Send everything that is due: latency counts from `due`, the intended time.
            while sending and due <= now:
                if not cpu_started and due >= measure_from:
                    cpu_started = True
                    cpu_from = _own_times()
                if due >= measure_until:
                    sending = False
                    cpu_until = _own_times()
                    conn.send(("measured", self.slot))
                    break
                for attempt in range(sockets):
                    if self._send((turn + attempt) % sockets, due):
                        turn = (turn + attempt + 1) % sockets
                        break
                else:
                    if blocked_at != sequence:
                        blocked_at = sequence
                        outcome.blocked += 1
                    break  # every Identifier busy: retry on the next pass, still from `due`
                if due >= measure_from:
                    lag(clock() - due)
                sequence += 1
                due = start + (sequence + self.phase) * interval
                now = clock()
            wait_for = due - clock() if sending else SCAN_INTERVAL
            # epoll's timeout is in whole milliseconds: sleep only when the next send is far,
            # poll without blocking when it is near (the client CPU is ours alone).
            polled = clock()
            events = poller.poll(wait_for - 0.0012 if wait_for > 0.0015 else 0)
            if not events and cpu_started and sending:
                idle += clock() - polled
            for fd, _ in events:
                number, recvmsg, inflight, repeats = by_fd[fd]
                while True:
                    try:
                        reply, ancillary, _, _ = recvmsg(4096, 64)
                    except BlockingIOError:
                        break
                    except ConnectionRefusedError:
                        continue
                    now = clock()
                    arrived = now
                    for _, kind, data in ancillary:
                        if kind == SO_TIMESTAMPNS:
                            seconds, nanoseconds = unpack(data)
                            arrived = seconds + nanoseconds * 1e-9 - realtime_offset
                    entry = inflight.pop(reply[1], None)
                    if entry is None:
                        self._mismatch(number, reply, entry)
                        continue
                    intended = entry[1]
                    if not check(number, reply, entry, repeats):
                        continue
                    if measure_from <= intended < measure_until:
                        append(arrived - intended)
                        seen(now - intended)
                        served(arrived - sent_at[entry[0] if entry[0] >= 0 else ~entry[0]])
                        completed += 1
                    if sending and now >= due:
                        break  # a send is due: it goes first; epoll reports the rest again
                if sending and now >= due:
                    break
            now = clock()
            if now >= next_scan:
                next_scan = now + SCAN_INTERVAL
                self._expire(now)
                if not sending and not any(inflight_of):
                    break
                if now >= hard_stop:
                    self._expire(float("inf"))
                    break
            if now >= next_progress:
                next_progress = now + 0.2
                self.progress[self.slot] = completed
        poller.close()
        outcome.completed = completed
        outcome.window_seconds = max(measure_until - measure_from, 1e-9)
        outcome.client_idle_seconds = idle
        outcome.client_cpu_seconds = cpu_until[0] - cpu_from[0]
        outcome.client_wait_seconds = cpu_until[1] - cpu_from[1]


def _worker_main(
    conn: Connection,
    cpu: int | None,
    arguments: dict[str, Any],
    start: float,
) -> None:
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run
        worker = Worker(**arguments)
        outcome = worker.run(start, conn)
        conn.send(("done", outcome))
    except Exception:  # noqa: BLE001 - reported to the parent, which fails the run
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# The server side: a subprocess on the server CPU, or one already running


class ServerUnderTest:
    """``simgate serve`` started here (``local``), or an address to drive (no process figures)."""

    def __init__(
        self,
        address: tuple[str, int],
        process: subprocess.Popen[bytes] | None = None,
        metrics_url: str | None = None,
        workdir: Path | None = None,
        cpu: int | None = None,
    ) -> None:
        self.address = address
        self.cpu = cpu
        self.process = process
        self.metrics_url = metrics_url
        self.workdir = workdir

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def members(self) -> list[ServerUnderTest]:
        """The server processes behind the address (one; several for a ServerGroup)."""
        return [self]

    @property
    def pids(self) -> set[int]:
        return {member.pid for member in self.members if member.pid is not None}

    @classmethod
    def start(
        cls,
        data: Path,
        cpu: int | None,
        workdir: Path,
        source: Path | None = None,
        *,
        ports: tuple[int, int] | None = None,
        reuse_port: bool = False,
    ) -> ServerUnderTest:
        """Start ``simgate serve``; from ``source`` (another checkout) instead of this one.

        ``ports`` (auth, acct) instead of free ones, and ``reuse_port`` (SO_REUSEPORT) so that
        several servers share them (ServerGroup); the HTTP port is always the server's own.
        """
        if ports is None:
            auth, acct = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_DGRAM)
        else:
            auth, acct = ports
        http = _free_port(socket.SOCK_STREAM)
        config = workdir / "simgate.toml"
        config.write_text(
            "[radius]\n"
            'listen = "127.0.0.1"\n'
            f"auth_port = {auth}\nacct_port = {acct}\n"
            "reject_delay = 0.0\n"
            + ("reuse_port = true\n" if reuse_port else "")
            + "[[radius.clients]]\n"
            'name = "bench"\naddress = "127.0.0.1"\n'
            f'secret = "{SECRET}"\n'
            "require_message_authenticator = true\n"
            f"[store]\ndata_dir = {json.dumps(str(_private_copy(data, workdir / 'data')))}\n"
            f'[http]\nlisten = "127.0.0.1"\nport = {http}\n'
            '[log]\nlevel = "warning"\nformat = "json"\n'
        )
        script = Path(sys.executable).with_name("simgate")
        environment = dict(os.environ)
        if source is None and script.exists():
            command = [str(script)]
        else:
            command = [
                sys.executable,
                "-c",
                "import sys; from core.cli import main; sys.exit(main())",
            ]
        if source is not None:
            environment["PYTHONPATH"] = str(source)  # ahead of the editable install of this one
        command += ["serve", "--config", str(config)]
        if cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(cpu), *command]
        log = (workdir / "server.log").open("wb")
        process = subprocess.Popen(
            command,
            cwd=source or ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        metrics = f"http://127.0.0.1:{http}/metrics"
        server = cls(("127.0.0.1", auth), process, metrics, workdir, cpu)
        server._wait_healthy(f"http://127.0.0.1:{http}/healthz")
        return server

    def _wait_healthy(self, url: str, limit: float = 120.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310
                    # ready, and done checking the snapshot's cold section in the background
                    # (a second of CPU on 10M SIMs, beside the decisions on the server's CPU)
                    if response.status == 200 and json.load(response).get(
                        "coldSectionVerified", True
                    ):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"the server was not healthy within {limit:.0f} s:\n{self.log()}")

    def log(self) -> str:
        if self.workdir is None:
            return ""
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; return the exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(10.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def cpu_seconds(self) -> tuple[float, float] | None:
        """(CPU seconds, run-queue wait seconds) of the server process so far."""
        if self.pid is None:
            return None
        exact = _schedstat(self.pid)
        if exact is not None:
            return exact
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, 0.0  # utime, stime

    def rss_bytes(self, field: str = "VmRSS") -> int | None:
        """VmRSS (or ``RssAnon``: without the mapped snapshot's file pages) in octets."""
        if self.pid is None:
            return None
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return None

    def counters(self) -> dict[str, float]:
        """Sums of the server's drop, duplicate and kernel counters from /metrics."""
        result: dict[str, float] = {}
        if self.metrics_url is None:
            return result
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5.0) as response:  # noqa: S310
                text = response.read().decode()
        except OSError:
            return result
        wanted = {
            "simgate_radius_dropped_total": "drops",
            "simgate_radius_duplicate_requests_total": "duplicates",
            "simgate_radius_replies_total": "replies",
            "simgate_udp_receive_buffer_errors_total": "rcvbufErrors",
            "simgate_radius_batches_total": "batches",
        }
        for line in text.splitlines():
            if line.startswith("#") or not line:
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in wanted:
                key = wanted[name]
                result[key] = result.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
        return result


class ServerGroup(ServerUnderTest):
    """Several ``simgate serve`` processes on the same RADIUS ports (``reuse_port``).

    The kernel hashes each client socket (source address and port) to one of them
    (SO_REUSEPORT), so a socket always talks to the same server, and its retransmissions find
    that server's reply cache. Each has its own data directory (the snapshot hard-linked), HTTP
    port and CPU. The figures of run_plan are sums over them (CPU, RSS, drops, duplicates), and
    the point lists each one's (``serverProcesses``).
    """

    def __init__(self, servers: list[ServerUnderTest]) -> None:
        super().__init__(servers[0].address)
        self.servers = servers

    @property
    def members(self) -> list[ServerUnderTest]:
        return list(self.servers)

    @property
    def cpus(self) -> list[int | None]:
        return [server.cpu for server in self.servers]

    @classmethod
    def start_group(
        cls,
        data: Path,
        cpus: list[int | None],
        workdir: Path,
        source: Path | None = None,
    ) -> ServerGroup:
        """Start one server per entry of ``cpus`` (pinned there when not None)."""
        ports = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_DGRAM)
        servers: list[ServerUnderTest] = []
        try:
            for number, cpu in enumerate(cpus):
                directory = workdir / f"server-{number}"
                directory.mkdir()
                servers.append(
                    ServerUnderTest.start(
                        data, cpu, directory, source, ports=ports, reuse_port=True
                    )
                )
        except BaseException:
            for server in servers:
                server.stop()
            raise
        return cls(servers)

    def log(self) -> str:
        return "\n".join(
            f"--- server {number} (pid {server.pid}):\n{server.log()}"
            for number, server in enumerate(self.servers)
        )

    def stop(self) -> int | None:
        """Stop every server; return the first non-zero exit status (else 0 or None)."""
        statuses = [server.stop() for server in self.servers]
        return next((status for status in statuses if status not in (0, None)), statuses[0])

    def cpu_seconds(self) -> tuple[float, float] | None:
        return _sum_pairs([server.cpu_seconds() for server in self.servers])

    def rss_bytes(self, field: str = "VmRSS") -> int | None:
        """The sum over the servers (the shared snapshot pages count once per server)."""
        values = [server.rss_bytes(field) for server in self.servers]
        return None if None in values else sum(value or 0 for value in values)

    def counters(self) -> dict[str, float]:
        return _sum_counters([server.counters() for server in self.servers])


def _sum_pairs(pairs: Sequence[tuple[float, float] | None]) -> tuple[float, float] | None:
    if not pairs or any(pair is None for pair in pairs):
        return None
    return sum(p[0] for p in pairs if p), sum(p[1] for p in pairs if p)


def _sum_counters(counters: Sequence[dict[str, float]]) -> dict[str, float]:
    """Sums over servers; the kernel's UDP RcvbufErrors is the host's, so taken once."""
    result: dict[str, float] = {}
    for values in counters:
        for key, value in values.items():
            if key == "rcvbufErrors":
                result.setdefault(key, value)
            else:
                result[key] = result.get(key, 0.0) + value
    return result


def _pauses(cpu: int, seconds: float, conn: Connection) -> None:
    """Spin on ``cpu`` and report the gaps > 50 µs between two clock reads (in seconds)."""
    os.sched_setaffinity(0, {cpu})
    clock = time.perf_counter
    gaps = []
    last = clock()
    end = last + seconds
    while last < end:
        now = clock()
        if now - last > 50e-6:
            gaps.append(now - last)
        last = now
    conn.send(gaps)
    conn.close()


def machine_pauses(cpus: list[int], seconds: float = 2.0) -> dict[str, Any]:
    """How much time a spinning process loses on each CPU with nothing else to run.

    A VM's vCPU is sometimes descheduled by its host, invisibly to the guest: the clock jumps by
    a millisecond or more. Such pauses set a floor under every tail percentile measured here.
    """
    context = multiprocessing.get_context("fork")
    pipes, processes = [], []
    for cpu in cpus:
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_pauses, args=(cpu, seconds, child_end), daemon=True)
        process.start()
        child_end.close()
        pipes.append(parent_end)
        processes.append(process)
    result = {}
    for cpu, pipe, process in zip(cpus, pipes, processes, strict=True):
        gaps: list[float] = pipe.recv() if pipe.poll(seconds + 10) else []
        process.join(5)
        result[str(cpu)] = {
            "lostPercent": round(100 * sum(gaps) / seconds, 2),
            "pausesOver1msPerSecond": round(sum(gap > 1e-3 for gap in gaps) / seconds, 1),
            "longestPauseMicroseconds": round(max(gaps, default=0.0) * 1e6),
        }
    return result


def _private_copy(data: Path, target: Path) -> Path:
    """The server's own data directory: the scenario's snapshots, hard-linked (or copied).

    The server writes its journal (and may compact) there; the cached scenario stays as
    generated, so every run starts from the same table.
    """
    for source in data.rglob("*"):
        if not source.is_file() or "journal" in source.relative_to(data).parts:
            continue
        destination = target / source.relative_to(data)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, destination)  # snapshots are immutable once written
        except OSError:
            shutil.copy2(source, destination)
    return target


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settle(exclude: set[int], limit: float, threshold: float = 15.0) -> float | None:
    """Wait up to ``limit`` s until other processes use < ``threshold`` % of a CPU (over 0.5 s).

    Returns their last figure when they never did, else None. The machine is shared: a test
    suite started by someone else on either CPU changes every figure.
    """
    deadline = time.monotonic() + limit
    waited = False
    while True:
        before = _process_ticks(exclude)
        time.sleep(0.5)
        busy = 100 * _ticks_delta(before, _process_ticks(exclude)) / CLOCK_TICKS / 0.5
        if busy < threshold:
            if waited:
                print("  (the other work is done)")
            return None
        if time.monotonic() >= deadline:
            return busy
        if not waited:
            print(f"  waiting up to {limit:g} s for other processes to finish ({busy:.0f}% CPU)")
            waited = True


def _process_ticks(exclude: set[int]) -> dict[int, int]:
    """utime + stime of every process on the machine but ``exclude`` (and their children).

    Per-process times are exact; /proc/stat's per-CPU jiffies are not on this kind of VM
    (they missed ~40% of the server's time when checked).
    """
    result = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) in exclude:  # ppid: the client workers
            continue
        result[int(entry.name)] = int(fields[11]) + int(fields[12])
    return result


def _ticks_delta(before: dict[int, int], after: dict[int, int]) -> int:
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items())


def _schedstat(pid: int | str) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) summed over the threads."""
    run = wait = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            values = (task / "schedstat").read_text().split()
            run += int(values[0])
            wait += int(values[1])
    except (OSError, IndexError, ValueError):
        return None
    return run / 1e9, wait / 1e9


# --------------------------------------------------------------------------------------------
# Running one plan


class SocketPool:
    """Client sockets, made by the parent before the workers fork (they inherit them).

    After a point the parent keeps its sockets open for the server's reply-cache lifetime, so
    that the kernel gives none of their source ports to a new socket: a request sent from a
    reused port could match a reply still cached for the old socket.
    """

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self._retired: list[tuple[float, list[socket.socket]]] = []

    def take(self, count: int) -> list[socket.socket]:
        now = time.monotonic()
        keep = []
        for retired_at, sockets in self._retired:
            if now - retired_at > REPLY_CACHE_TTL + 1.0:
                for sock in sockets:
                    sock.close()
            else:
                keep.append((retired_at, sockets))
        self._retired = keep
        family = socket.AF_INET6 if ":" in self.server[0] else socket.AF_INET
        sockets = []
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
            sock.connect(self.server)
            sock.setblocking(False)
            sockets.append(sock)
        return sockets

    def retire(self, sockets: list[socket.socket]) -> None:
        self._retired.append((time.monotonic(), sockets))

    def close(self) -> None:
        for _, sockets in self._retired:
            for sock in sockets:
                sock.close()
        self._retired = []


def run_plan(
    plan: Plan, server: ServerUnderTest, client_cpu: int | None, pool: SocketPool
) -> dict[str, Any]:
    """Run one plan with its worker processes; return its point (raises SystemExit on failure)."""
    context = multiprocessing.get_context("fork")
    progress = context.RawArray("q", plan.processes)
    secret = Secret(SECRET.encode())
    start = time.perf_counter() + 0.3 + 0.05 * plan.processes
    pipes: list[Connection] = []
    workers = []
    first = 0
    every_socket = pool.take(plan.sockets)
    for slot in range(plan.processes):
        sockets = plan.sockets // plan.processes + (slot < plan.sockets % plan.processes)
        window = plan.window // plan.processes + (slot < plan.window % plan.processes)
        rate = None if plan.rate is None else plan.rate / plan.processes
        arguments = {
            "plan": plan,
            "sockets": every_socket[first : first + sockets],
            "secret": secret,
            "first_socket": first,
            "window": window,
            "rate": rate,
            "phase": slot / plan.processes,
            "progress": progress,
            "slot": slot,
        }
        first += sockets
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=_worker_main, args=(child_end, client_cpu, arguments, start), daemon=True
        )
        process.start()
        child_end.close()
        pipes.append(parent_end)
        workers.append(process)

    members = server.members  # one server, or the processes of a ServerGroup
    counters_before = [member.counters() for member in members]
    rss_before = [_rss(member) for member in members]
    rcvbuf_before = udp_receive_buffer_errors()
    while time.perf_counter() < start + plan.warmup:
        time.sleep(0.005)
    exclude = {os.getpid()} | server.pids
    cpu_before, others_before, wall_before = (
        [member.cpu_seconds() for member in members],
        _process_ticks(exclude),
        time.time(),
    )

    outcomes: list[Outcome] = []
    errors: list[str] = []
    measured = 0
    cpu_after = others_after = wall_after = None
    deadline = start + plan.warmup + plan.seconds + plan.timeout + 15.0
    terminal = sys.stderr.isatty()
    last_total, last_time = 0, time.perf_counter()
    open_pipes = list(pipes)
    while open_pipes:
        if time.perf_counter() > deadline:
            errors.append("the client processes did not finish in time")
            break
        for ready in wait(open_pipes, timeout=0.5):
            assert isinstance(ready, Connection)
            try:
                kind, value = ready.recv()
            except EOFError:
                open_pipes.remove(ready)
                continue
            if kind == "measured":
                measured += 1
                if measured == plan.processes:
                    cpu_after = [member.cpu_seconds() for member in members]
                    others_after = _process_ticks(exclude)
                    wall_after = time.time()
            elif kind == "done":
                outcomes.append(value)
                open_pipes.remove(ready)
            else:
                errors.append(value)
                open_pipes.remove(ready)
        if terminal:
            total, moment = sum(progress), time.perf_counter()
            elapsed = moment - start - plan.warmup
            rate = (total - last_total) / max(moment - last_time, 1e-9)
            last_total, last_time = total, moment
            phase = (
                "warm-up"
                if elapsed < 0
                else f"{min(elapsed, plan.seconds):5.1f}/{plan.seconds:g} s"
            )
            sys.stderr.write(f"\r  {_label(plan)}: {phase}  {rate:9,.0f} replies/s   ")
            sys.stderr.flush()
    if terminal:
        sys.stderr.write("\r" + " " * 78 + "\r")
    for process in workers:
        process.join(timeout=5.0)
        if process.is_alive():
            process.terminate()
            process.join()
    pool.retire(every_socket)
    if errors:
        raise SystemExit("client failure:\n" + "\n".join(errors))
    if cpu_after is None:
        cpu_after = [member.cpu_seconds() for member in members]
        others_after = _process_ticks(exclude)
        wall_after = time.time()
    counters_after = [member.counters() for member in members]
    rss_after = [_rss(member) for member in members]
    rcvbuf_after = udp_receive_buffer_errors()
    merged = _merge(outcomes)
    wall = wall_after - wall_before
    return _point(
        plan,
        merged,
        server=server,
        cpu=(_sum_pairs(cpu_before), _sum_pairs(cpu_after)),
        others=_ticks_delta(others_before, others_after or {}),
        wall=wall,
        counters=(_sum_counters(counters_before), _sum_counters(counters_after)),
        rss=(*_sum_rss(rss_before), *_sum_rss(rss_after)),
        rcvbuf=(rcvbuf_before, rcvbuf_after),
        client_cpu=client_cpu,
        processes=None
        if len(members) == 1
        else [
            _process_figures(member, *figures, wall=wall)
            for member, *figures in zip(
                members,
                cpu_before,
                cpu_after,
                counters_before,
                counters_after,
                rss_before,
                rss_after,
                strict=True,
            )
        ],
    )


def _rss(server: ServerUnderTest) -> tuple[int | None, int | None]:
    return server.rss_bytes(), server.rss_bytes("RssAnon")


def _sum_rss(values: list[tuple[int | None, int | None]]) -> tuple[int | None, int | None]:
    """(VmRSS, RssAnon) summed over the servers; None when one of them is unknown."""
    vm = [value[0] for value in values]
    anon = [value[1] for value in values]
    return (
        None if None in vm else sum(v for v in vm if v is not None),
        None if None in anon else sum(v for v in anon if v is not None),
    )


def _process_figures(
    server: ServerUnderTest,
    cpu_before: tuple[float, float] | None,
    cpu_after: tuple[float, float] | None,
    counters_before: dict[str, float],
    counters_after: dict[str, float],
    rss_before: tuple[int | None, int | None],
    rss_after: tuple[int | None, int | None],
    *,
    wall: float,
) -> dict[str, Any]:
    """One server process of a ServerGroup over a point (``serverProcesses`` in the JSON)."""
    figures: dict[str, Any] = {"pid": server.pid, "cpu": server.cpu}
    if cpu_before is not None and cpu_after is not None:
        wall = max(wall, 1e-9)
        figures["cpuPercent"] = round(100 * (cpu_after[0] - cpu_before[0]) / wall, 1)
        figures["waitPercent"] = round(100 * (cpu_after[1] - cpu_before[1]) / wall, 1)
    figures["rssBytesBefore"], figures["rssAnonBytesBefore"] = rss_before
    figures["rssBytesAfter"], figures["rssAnonBytesAfter"] = rss_after
    for key in ("replies", "drops", "duplicates"):
        if key in counters_after:
            figures[key] = round(counters_after[key] - counters_before.get(key, 0.0))
    return figures


def _merge(outcomes: list[Outcome]) -> Outcome:
    merged = Outcome()
    for outcome in outcomes:
        merged.completed += outcome.completed
        merged.window_seconds = max(merged.window_seconds, outcome.window_seconds)
        merged.sent += outcome.sent
        merged.lost += outcome.lost
        merged.late += outcome.late
        merged.wrong += outcome.wrong
        merged.blocked += outcome.blocked
        merged.retransmissions += outcome.retransmissions
        merged.retransmission_replies += outcome.retransmission_replies
        merged.problems += outcome.problems
        merged.latencies.extend(outcome.latencies)
        merged.lags.extend(outcome.lags)
        merged.seen.extend(outcome.seen)
        merged.served.extend(outcome.served)
        merged.client_cpu_seconds += outcome.client_cpu_seconds
        merged.client_wait_seconds += outcome.client_wait_seconds
        merged.client_idle_seconds += outcome.client_idle_seconds
    return merged


def _microseconds(seconds: float) -> float | None:
    return round(seconds * 1e6, 1) if math.isfinite(seconds) else None


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _point(
    plan: Plan,
    outcome: Outcome,
    *,
    server: ServerUnderTest,
    cpu: tuple[tuple[float, float] | None, tuple[float, float] | None],
    others: int,
    wall: float,
    counters: tuple[dict[str, float], dict[str, float]],
    rss: tuple[int | None, int | None, int | None, int | None],
    rcvbuf: tuple[int | None, int | None],
    client_cpu: int | None,
    processes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    ordered = sorted(outcome.latencies)
    window = outcome.window_seconds
    point: dict[str, Any] = {
        "mode": plan.mode,
        "window": plan.window if plan.mode == "closed" else None,
        "targetRate": None if plan.rate is None else round(plan.rate),
        "sockets": plan.sockets,
        "processes": plan.processes,
        "seconds": round(window, 3),
        "requestsPerSecond": round(outcome.completed / window),
        "replies": outcome.completed,
        "sent": outcome.sent,
        "retransmissions": outcome.retransmissions,
        "retransmissionReplies": outcome.retransmission_replies,
    }
    if processes is not None:
        point["workers"] = len(processes)
    # A lost request is an infinite latency: null in the JSON, "lost" in the summary.
    for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
        point[f"{name}Microseconds"] = _microseconds(_percentile(ordered, fraction))
    point["maxMicroseconds"] = _microseconds(ordered[-1]) if ordered else None
    if plan.mode == "open":
        # idle is wall time in empty polls: an estimate (it is off when the client was preempted)
        busy = max(0.0, outcome.client_cpu_seconds - outcome.client_idle_seconds)
        point["clientBusyPercent"] = round(100 * busy / window, 1)
        lags = sorted(outcome.lags)
        point["sendLagP99Microseconds"] = _microseconds(_percentile(lags, 0.99)) or 0.0
        point["sendLagP999Microseconds"] = _microseconds(_percentile(lags, 0.999)) or 0.0
        late = sum(1 for lag in lags if lag > 0.001)
        point["sendsLateOver1msPercent"] = round(100 * late / max(1, len(lags)), 3)
        # the same requests' latencies ending when the client read the reply, not when the
        # kernel stamped its arrival
        ordered_seen = sorted(outcome.seen)
        ordered_served = sorted(outcome.served)
        for name, fraction in (("p99", 0.99), ("p999", 0.999)):
            point[f"{name}SeenMicroseconds"] = _microseconds(_percentile(ordered_seen, fraction))
            point[f"{name}ServedMicroseconds"] = _microseconds(
                _percentile(ordered_served, fraction)
            )
        point["blockedSends"] = outcome.blocked
    point["clientCpuPercent"] = round(100 * outcome.client_cpu_seconds / window, 1)
    point["clientWaitPercent"] = round(100 * outcome.client_wait_seconds / window, 1)
    if cpu[0] is not None and cpu[1] is not None:
        wall = max(wall, 1e-9)
        point["serverCpuPercent"] = round(100 * (cpu[1][0] - cpu[0][0]) / wall, 1)
        point["serverWaitPercent"] = round(100 * (cpu[1][1] - cpu[0][1]) / wall, 1)
    if rss[0] is not None:
        point["serverRssBytesBefore"] = rss[0]
        point["serverRssAnonBytesBefore"] = rss[1]
        point["serverRssBytesAfter"] = rss[2]
        point["serverRssAnonBytesAfter"] = rss[3]
    before, after = counters
    for key in ("drops", "duplicates", "rcvbufErrors"):
        if key in after:
            point[f"server{key[0].upper()}{key[1:]}"] = round(after[key] - before.get(key, 0.0))
    batches = after.get("batches", 0.0) - before.get("batches", 0.0)
    if batches > 0:  # datagrams taken per receive call (the C pump's batches)
        taken = sum(after.get(key, 0.0) - before.get(key, 0.0) for key in ("replies", "drops"))
        taken += point.get("serverDuplicates", 0)
        point["serverMeanBatch"] = round(taken / batches, 1)
    if processes is not None:
        point["serverProcesses"] = processes
    if "serverDuplicates" in point:
        point["duplicateCheck"] = _duplicate_check(point["serverDuplicates"], outcome)
    if rcvbuf[0] is not None and rcvbuf[1] is not None:
        point["kernelUdpRcvbufErrors"] = rcvbuf[1] - rcvbuf[0]
    point["lost"] = outcome.lost
    point["late"] = outcome.late
    point["wrong"] = outcome.wrong
    # CPU used by every other process on the machine (other people's tests, say), % of a core;
    # with --server, the server under test is one of them
    point["othersCpuPercent"] = round(100 * others / CLOCK_TICKS / max(wall, 1e-9), 1)
    # The server answers a repeated (source port, Identifier, authenticator) from its reply
    # cache; every socket walks the whole packet list, so a repeat comes after this long:
    per_socket_rate = outcome.completed / window / max(plan.sockets, 1)
    point["packetReuseSeconds"] = round(len(_requests().packets) / max(per_socket_rate, 1e-9), 1)
    point["problems"] = outcome.problems
    point["warnings"] = _warnings(point, server, client_cpu)
    return point


def _requests() -> Requests:
    assert _REQUESTS is not None
    return _REQUESTS


def _duplicate_check(duplicates: int, outcome: Outcome) -> str:
    """Whether the server's reply-cache hits are the retransmissions sent: "ok" or why not.

    Every retransmission answered (byte for byte the first reply) was a hit; one that got no
    reply may or may not have reached the server, so with losses the count may fall between.
    Any other hit is a pre-built request the server took for a retransmission.
    """
    sent, answered = outcome.retransmissions, outcome.retransmission_replies
    if duplicates == sent or (answered <= duplicates <= sent and outcome.lost):
        return "ok"
    return (
        f"the server counted {duplicates:,} duplicate requests (answered from its reply cache) "
        f"for {sent:,} retransmissions sent ({answered:,} answered)"
    )


def _warnings(point: dict[str, Any], server: ServerUnderTest, client_cpu: int | None) -> list[str]:
    warnings = []
    server_cpu = point.get("serverCpuPercent")
    workers = len(server.members)
    if server_cpu is not None:
        server_cpu = round(server_cpu / workers, 1)  # per server process, % of its core
    client = point["clientCpuPercent"]
    if point["mode"] == "closed" and client > 90 and (server_cpu is None or server_cpu < 90):
        warnings.append(
            f"client-bound: the client processes used {client:.0f}% of CPU {client_cpu} "
            f"while the server used {server_cpu}%: this measures the client, not the server"
        )
    if point["mode"] == "open":
        achieved, target = point["requestsPerSecond"], point["targetRate"]
        if achieved < 0.98 * target:
            warnings.append(f"open loop reached {achieved:,} of {target:,} requests/s")
        if point["clientBusyPercent"] > 90:
            warnings.append(
                f"client-bound: the client was busy {point['clientBusyPercent']:.0f}% of the "
                f"time (sends p99 {point['sendLagP99Microseconds']:.0f} µs late; latencies "
                "include it, as they count from the intended send time)"
            )
    # Run-queue wait: time our processes were ready to run but another process had the CPU.
    noisy = []
    # Several servers with the client on their CPUs wait for each other: not noise.
    shared = workers > 1 and _client_shares(server, client_cpu)
    if point.get("serverWaitPercent", 0.0) > 3 * workers and not shared:
        noisy.append(f"the server waited {point['serverWaitPercent']:.0f}% of the time")
    if point["clientWaitPercent"] > 5 and point["processes"] == 1 and not shared:
        # (several client processes wait for each other)
        noisy.append(f"the client waited {point['clientWaitPercent']:.0f}% of the time")
    if point["othersCpuPercent"] > 10 and server.pids:  # else the server is one
        noisy.append(f"other processes used {point['othersCpuPercent']:.0f}% of a CPU")
    if noisy:
        warnings.append(
            "noisy: " + "; ".join(noisy) + " (for a CPU other processes held); repeat the run"
        )
    if point.get("duplicateCheck", "ok") != "ok":
        warnings.append(point["duplicateCheck"])
    if point["packetReuseSeconds"] < REPLY_CACHE_TTL:
        warnings.append(
            f"a packet recurs on its socket after {point['packetReuseSeconds']} s (< the "
            f"{REPLY_CACHE_TTL:g} s reply-cache TTL); raise --packets"
        )
    if point["lost"]:
        warnings.append(f"{point['lost']} requests got no reply within the timeout")
    return warnings


def _client_shares(server: ServerUnderTest, client_cpu: int | None) -> bool:
    """Whether the client may run on a CPU a server is pinned to (or a server is unpinned)."""
    cpus = {member.cpu for member in server.members}
    return client_cpu is None or None in cpus or client_cpu in cpus


# --------------------------------------------------------------------------------------------
# Output


def _label(plan: Plan) -> str:
    if plan.rate is not None:
        return f"open loop {plan.rate:,.0f}/s"
    return f"closed loop W={plan.window}"


def _ms(microseconds: float | None) -> str:
    return "lost" if microseconds is None else f"{microseconds / 1000:.3f}"


def describe(point: dict[str, Any]) -> str:
    if point["mode"] == "closed":
        head = f"closed loop W={point['window']:<3}"
    else:
        head = f"open loop {point['targetRate']:,}/s"
    if point.get("workers"):
        head += f" workers={point['workers']}"
    lines = [
        f"{head} S={point['sockets']} P={point['processes']}: "
        f"{point['requestsPerSecond']:,} requests/s over {point['seconds']:.1f} s; latency ms "
        f"p50 {_ms(point['p50Microseconds'])} p90 {_ms(point['p90Microseconds'])} "
        f"p99 {_ms(point['p99Microseconds'])} p99.9 {_ms(point['p999Microseconds'])}"
    ]
    server = []
    summed = f" (sum of {point['workers']} servers)" if point.get("workers") else ""
    if "serverCpuPercent" in point:
        server.append(f"server CPU {point['serverCpuPercent']:.0f}%{summed}")
    if "serverRssBytesBefore" in point:
        server.append(
            f"RSS{summed} {point['serverRssBytesBefore'] / 2**20:.0f} -> "
            f"{point['serverRssBytesAfter'] / 2**20:.0f} MiB (anonymous "
            f"{point['serverRssAnonBytesBefore'] / 2**20:.0f} -> "
            f"{point['serverRssAnonBytesAfter'] / 2**20:.0f})"
        )
    server.append(f"client CPU {point['clientCpuPercent']:.0f}%")
    waits = [f"{point.get('serverWaitPercent', 0.0):.1f}%", f"{point['clientWaitPercent']:.1f}%"]
    server.append(f"run-queue wait server/client {'/'.join(waits)}")
    server.append(f"other processes {point['othersCpuPercent']:.0f}%")
    if "serverMeanBatch" in point:
        server.append(f"mean batch {point['serverMeanBatch']:g}")
    if "serverDrops" in point:
        server.append(f"server drops {point['serverDrops']}")
    if "kernelUdpRcvbufErrors" in point:
        server.append(f"kernel RcvbufErrors {point['kernelUdpRcvbufErrors']}")
    server.append(f"lost {point['lost']}")
    if point["late"]:
        server.append(f"late {point['late']}")
    server.append(f"wrong {point['wrong']}")
    if "retransmissions" in point:
        repeats = f"retransmissions {point['retransmissions']:,}"
        if point["retransmissionReplies"] != point["retransmissions"]:
            repeats += f" ({point['retransmissionReplies']:,} answered)"
        if "serverDuplicates" in point:
            verdict = "ok" if point.get("duplicateCheck") == "ok" else "MISMATCH"
            repeats += f", server duplicates {point['serverDuplicates']:,} ({verdict})"
        server.append(repeats)
    if point["mode"] == "open":
        server.append(f"client busy {point['clientBusyPercent']:.0f}% (not polling idle)")
        server.append(
            f"send lag p99 {point['sendLagP99Microseconds']:.0f} µs, "
            f"p99.9 {point['sendLagP999Microseconds']:.0f} µs, "
            f"{point['sendsLateOver1msPercent']:.2f}% of sends > 1 ms late"
        )
        if "p99ServedMicroseconds" in point:
            server.append(
                f"from the actual send: p99 {_ms(point['p99ServedMicroseconds'])}, "
                f"p99.9 {_ms(point['p999ServedMicroseconds'])} ms"
            )
        if "p99SeenMicroseconds" in point:
            server.append(
                f"as read by the client: p99 {_ms(point['p99SeenMicroseconds'])}, "
                f"p99.9 {_ms(point['p999SeenMicroseconds'])} ms"
            )
    lines.append("    " + ", ".join(server))
    for number, process in enumerate(point.get("serverProcesses", ())):
        figures = [f"pid {process['pid']} on CPU {process['cpu']}"]
        if "cpuPercent" in process:
            figures.append(
                f"CPU {process['cpuPercent']:.0f}% (run-queue wait {process['waitPercent']:.1f}%)"
            )
        if process["rssBytesAfter"] is not None:
            figures.append(
                f"RSS {(process['rssBytesBefore'] or 0) / 2**20:.0f} -> "
                f"{process['rssBytesAfter'] / 2**20:.0f} MiB (anonymous "
                f"{(process['rssAnonBytesAfter'] or 0) / 2**20:.0f})"
            )
        if "replies" in process:
            total = sum(other.get("replies", 0) for other in point["serverProcesses"])
            share = 100 * process["replies"] / max(total, 1)
            figures.append(f"{process['replies']:,} replies ({share:.0f}%)")
        figures.extend(
            f"{key} {process[key]:,}" for key in ("drops", "duplicates") if key in process
        )
        lines.append(f"    server {number}: " + ", ".join(figures))
    lines.extend(f"    WARNING {warning}" for warning in point["warnings"])
    lines.extend(f"    WRONG {problem}" for problem in point["problems"])
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/load.py", description=(__doc__ or "").splitlines()[0]
    )
    add = parser.add_argument
    add("--size", choices=sorted(SIZES), default="1m", help="subscriber set (%(default)s)")
    what = parser.add_argument_group("what to measure")
    what.add_argument("--window", type=int, default=64, help="closed loop: requests outstanding")
    what.add_argument("--rate", type=float, help="open loop at this many requests/s instead")
    what.add_argument("--sweep", action="store_true", help="closed loop over --windows")
    what.add_argument("--windows", default="1,4,16,64,256", help="for --sweep (%(default)s)")
    what.add_argument(
        "--half",
        action="store_true",
        help="peak (closed loop at --window, or the best of --sweep), then open loop at half it",
    )
    server = parser.add_argument_group("the server")
    server.add_argument("--server", metavar="HOST:PORT", help="drive a running server instead")
    server.add_argument("--metrics", metavar="URL", help="with --server: its /metrics URL")
    server.add_argument("--server-commit", metavar="REV", help="start it from this git commit")
    server.add_argument("--server-source", metavar="DIR", help="start it from this checkout")
    server.add_argument("--server-cpu", type=int, default=0, help="its CPU (%(default)s)")
    server.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the ports (reuse_port), on CPUs --server-cpu and up "
        "(%(default)s)",
    )
    client = parser.add_argument_group("the client")
    client.add_argument(
        "--client-cpu",
        type=int,
        help="its CPU (default 1; with --workers, a CPU no server has, else none: shared)",
    )
    client.add_argument("--processes", type=int, default=1, help="closed loop: processes")
    client.add_argument("--sockets", type=int, help="sockets (default: from window or rate)")
    client.add_argument(
        "--packets", type=int, default=200_000, help="distinct requests (%(default)s)"
    )
    client.add_argument("--seed", type=int, default=1, help="scenario seed (%(default)s)")
    client.add_argument(
        "--retransmit",
        type=float,
        default=RETRANSMIT_PERCENT,
        metavar="PERCENT",
        help="%% of sends that repeat a request byte for byte after its reply; 0: none "
        "(%(default)s)",
    )
    bounds = parser.add_argument_group("bounds and hygiene")
    bounds.add_argument(
        "--seconds", type=float, default=10.0, help="measured per point (%(default)s)"
    )
    bounds.add_argument("--count", type=int, help="or stop a point after this many requests")
    bounds.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured seconds first (%(default)s)"
    )
    bounds.add_argument(
        "--timeout", type=float, default=1.0, help="seconds until lost (%(default)s)"
    )
    bounds.add_argument(
        "--settle",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="before a point, wait up to this long for other processes to go (%(default)s)",
    )
    bounds.add_argument(
        "--retries",
        type=int,
        default=2,
        help="repeat a point other processes disturbed (%(default)s)",
    )
    bounds.add_argument(
        "--pause-check",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="first measure the machine's own pauses on both CPUs; 0 skips (%(default)s)",
    )
    add("--no-write", action="store_true", help="write no JSON under bench/results/")
    return parser


def _sockets(args: argparse.Namespace, window: int, rate: float | None) -> int:
    if args.sockets is not None:
        wanted = args.sockets
    elif rate is not None:
        wanted = 16  # 4096 Identifiers: a server stall of ~4096/rate s before a send waits
    else:
        wanted = min(32, max(4, window // 4))
    if args.sockets is None and args.workers > 1:
        # the kernel hashes each socket to one server: many sockets spread the load evenly
        wanted = max(wanted, 16 * args.workers)
    wanted = max(wanted, args.processes)
    if rate is None:
        if window > 128 * wanted:
            raise SystemExit(f"--window {window} needs at least {math.ceil(window / 128)} sockets")
        wanted = min(wanted, window)
    return wanted


def _plan(args: argparse.Namespace, window: int, rate: float | None = None) -> Plan:
    if window < args.processes and rate is None:
        raise SystemExit("the window must be at least the number of processes")
    return Plan(
        window=window,
        sockets=_sockets(args, window, rate),
        processes=args.processes,
        seconds=args.seconds,
        count=args.count,
        warmup=args.warmup,
        timeout=args.timeout,
        rate=rate,
        offset=secrets.randbelow(args.packets),
    )


def _server_source(args: argparse.Namespace, workdir: Path) -> Path | None:
    """Where the started server's code comes from: this checkout, a directory, or a commit."""
    if args.server_source:
        return Path(args.server_source).resolve()
    if args.server_commit:
        target = workdir / "source"
        target.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.server_commit], cwd=ROOT, capture_output=True, check=False
        )
        if archive.returncode:
            raise SystemExit(f"git archive {args.server_commit}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
        _build_extensions(target)
        return target
    return None


def _build_extensions(source: Path) -> None:
    """Build the commit's optional C extensions in place, as an install would.

    An archive holds their sources only; without them the server would run its pure-Python
    fallback, which is not what that commit ships.
    """
    setup = source / "setup.py"
    if not setup.exists() or "ext_modules" not in setup.read_text():
        return
    started = time.perf_counter()
    built = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    found = _extensions(source)
    if built.returncode or not found:
        print(
            "WARNING the commit's C extension did not build: the server runs its pure-Python "
            f"code\n{built.stderr[-2000:]}"
        )
    else:
        print(f"built {', '.join(found)} in {time.perf_counter() - started:.1f} s")


def _extensions(source: Path) -> list[str]:
    return sorted(str(path.relative_to(source)) for path in source.glob("core/**/*.so"))


def _source_state(args: argparse.Namespace) -> dict[str, Any]:
    """What code the server ran, so a result is never credited to the wrong commit."""
    if args.server:
        return {"serverCode": "external"}
    if args.server_source:
        return {"serverCode": str(Path(args.server_source).resolve())}
    if args.server_commit:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", args.server_commit],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return {"serverCode": f"commit {commit}"}
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "core", "dictionaries"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    modified = sorted(line[3:] for line in changed if line.strip())
    return {"serverCode": "working tree", "coreUncommittedChanges": modified}


def _usable_cpu(cpu: int) -> int | None:
    if cpu in os.sched_getaffinity(0):
        return cpu
    print(f"WARNING CPU {cpu} is not available: not pinning", file=sys.stderr)
    return None


def _client_cpu(args: argparse.Namespace, server_cpus: list[int | None]) -> int | None:
    """--client-cpu; by default CPU 1, or with --workers a CPU no server has (None: any)."""
    if args.client_cpu is not None:
        return _usable_cpu(args.client_cpu)
    if args.workers == 1:
        return _usable_cpu(1)
    free = sorted(os.sched_getaffinity(0) - {cpu for cpu in server_cpus if cpu is not None})
    return free[0] if free else None


def _settle(args: argparse.Namespace, server: ServerUnderTest) -> None:
    if args.settle > 0:
        exclude = {os.getpid()} | server.pids
        busy = settle(exclude, args.settle)
        if busy is not None:
            print(f"  WARNING other processes still use {busy:.0f}% of a CPU: measuring anyway")


def _measure(
    args: argparse.Namespace,
    plan: Plan,
    server: ServerUnderTest,
    client_cpu: int | None,
    pool: SocketPool,
) -> dict[str, Any]:
    """Run a point; while other processes disturbed it, run it again (up to --retries times)."""
    noisy: list[dict[str, Any]] = []
    while True:
        _settle(args, server)
        point = run_plan(plan, server, client_cpu, pool)
        print(describe(point), flush=True)
        disturbed = any(warning.startswith("noisy") for warning in point["warnings"])
        if point["wrong"] or not point["replies"] or not disturbed or len(noisy) >= args.retries:
            break
        noisy.append(point)
        print(f"  repeating the point ({len(noisy)}/{args.retries}): it was disturbed")
        plan = dataclasses.replace(plan, offset=secrets.randbelow(args.packets))
    if noisy:
        point["disturbedAttempts"] = [
            {key: value for key, value in attempt.items() if key != "problems"} for attempt in noisy
        ]
    return point


def main(argv: Sequence[str] | None = None) -> int:
    global _REQUESTS  # shared with the forked workers
    args = _parser().parse_args(argv)
    if args.rate is not None and (args.sweep or args.half):
        raise SystemExit("--rate is a single open-loop point; it does not go with --sweep/--half")
    if args.processes > 1 and (args.rate is not None or args.half):
        # The open loop polls without sleeping to send on time (epoll sleeps in whole ms);
        # two such processes on one CPU would take turns and send late.
        raise SystemExit("the open loop (--rate, --half) runs one client process")
    if args.workers < 1 or (args.workers > 1 and args.server):
        raise SystemExit("--workers: at least 1, and only for a server started here")
    if not 0 <= args.retransmit < 50:
        raise SystemExit("--retransmit: a percentage in [0, 50)")
    if os.cpu_count() == 1:
        print("WARNING one CPU: client and server share it; figures are not comparable")
    server_cpus: list[int | None] = []
    if not args.server:
        server_cpus = [_usable_cpu(args.server_cpu + n) for n in range(args.workers)]
    server_cpu = server_cpus[0] if server_cpus else None
    client_cpu = _client_cpu(args, server_cpus)
    load_average = os.getloadavg()
    if load_average[0] > 0.5:
        print(
            f"WARNING load average {load_average[0]:.2f} before the run: other work is running "
            "on this machine; figures may be noisy"
        )
    source_state = _source_state(args)
    if source_state.get("coreUncommittedChanges"):
        print(
            "NOTE the server runs this working tree, which has uncommitted changes in: "
            + ", ".join(source_state["coreUncommittedChanges"])
            + " (--server-commit HEAD measures the last commit)"
        )
    _REQUESTS = prepare(args.size, args.packets, args.seed, args.retransmit)
    affinity = os.sched_getaffinity(0)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})  # this process too, and the workers it forks

    workdir = None
    if args.server:
        host, _, port = args.server.rpartition(":")
        server = ServerUnderTest((host or "127.0.0.1", int(port)), metrics_url=args.metrics)
    else:
        data = data_dir(args.size)
        # next to the cache, so that the snapshots can be hard-linked (same file system)
        workdir = tempfile.TemporaryDirectory(prefix="load-", dir=data.parent)
        started = time.perf_counter()
        source = _server_source(args, Path(workdir.name))
        # compiled extensions beside the server's code (a stale one in a working tree shows)
        source_state["serverExtensions"] = _extensions(source or ROOT)
        if args.workers == 1:
            server = ServerUnderTest.start(data, server_cpu, Path(workdir.name), source)
            print(
                f"server pid {server.pid} on CPU {server_cpu} ready in "
                f"{time.perf_counter() - started:.1f} s: auth 127.0.0.1:{server.address[1]}, "
                f"{SIZES[args.size]:,} SIMs; client on CPU {client_cpu}"
            )
        else:
            server = ServerGroup.start_group(data, server_cpus, Path(workdir.name), source)
            print(
                f"{args.workers} servers (reuse_port) pids "
                + ", ".join(str(member.pid) for member in server.members)
                + f" on CPUs {', '.join(str(cpu) for cpu in server_cpus)} ready in "
                f"{time.perf_counter() - started:.1f} s: auth 127.0.0.1:{server.address[1]}, "
                f"{SIZES[args.size]:,} SIMs each; client on "
                + ("any CPU" if client_cpu is None else f"CPU {client_cpu}")
            )
            if _client_shares(server, client_cpu):
                print(
                    f"NOTE the client shares the servers' CPUs ({os.cpu_count()} CPUs, "
                    f"{args.workers} servers): the figure is limited by the client and by CPU "
                    "time shared with it, not the servers' capacity on "
                    f"{args.workers} cores; run-queue waits are not counted as noise"
                )
    rss_idle = server.rss_bytes(), server.rss_bytes("RssAnon")
    pauses: dict[str, Any] = {}
    if args.pause_check > 0:
        cpus = sorted({cpu for cpu in (*server_cpus, client_cpu) if cpu is not None})
        _settle(args, server)
        pauses = machine_pauses(cpus, args.pause_check)
        print(
            "machine check, a spinning process with the CPU to itself: "
            + "; ".join(
                f"CPU {cpu} lost {figures['lostPercent']:.1f}% of the time, "
                f"{figures['pausesOver1msPerSecond']:g} pauses > 1 ms/s, longest "
                f"{figures['longestPauseMicroseconds'] / 1000:.1f} ms"
                for cpu, figures in pauses.items()
            )
        )
    points: list[dict[str, Any]] = []
    pool = SocketPool(server.address)
    summary: dict[str, Any] = {}
    status = 0
    try:
        plans: list[Plan] = []
        if args.sweep:
            plans = [_plan(args, int(w)) for w in args.windows.split(",")]
        elif args.rate is not None:
            plans = [_plan(args, 0, args.rate)]
        elif not args.half:
            plans = [_plan(args, args.window)]
        if args.half and not args.sweep:
            plans = [_plan(args, args.window)]
        for plan in plans:
            point = _measure(args, plan, server, client_cpu, pool)
            points.append(point)
            if point["wrong"] or not point["replies"]:
                status = 1
                break
        if args.half and status == 0:
            closed = [p for p in points if p["mode"] == "closed"]
            peak = max(closed, key=lambda p: p["requestsPerSecond"])
            plan = _plan(args, 0, peak["requestsPerSecond"] / 2)
            point = _measure(args, plan, server, client_cpu, pool)
            points.append(point)
            status = 1 if point["wrong"] else 0
            summary = {
                "peakRequestsPerSecond": peak["requestsPerSecond"],
                "peakWindow": peak["window"],
                "peakP50Microseconds": peak["p50Microseconds"],
                "peakP99Microseconds": peak["p99Microseconds"],
                "halfRate": point["targetRate"],
                "halfP99Microseconds": point["p99Microseconds"],
                "serverCpuPercentAtPeak": peak.get("serverCpuPercent"),
                "serverCpuPercentAtHalf": point.get("serverCpuPercent"),
                "serverRssBytesAfter": point.get("serverRssBytesAfter"),
            }
            print(
                f"peak {peak['requestsPerSecond']:,} requests/s (W={peak['window']}, p99 "
                f"{_ms(peak['p99Microseconds'])} ms); at half of it ({point['targetRate']:,}/s) "
                f"p99 {_ms(point['p99Microseconds'])} ms  [targets: >= 30,000/s, p99 < 2 ms]"
            )
    finally:
        pool.close()
        os.sched_setaffinity(0, affinity)  # main() may be called from another command
        exit_status = server.stop() if workdir is not None else None
        if workdir is not None:
            if exit_status not in (0, None):
                print(f"WARNING the server exited with {exit_status}:\n{server.log()}")
            workdir.cleanup()
    if any(p["wrong"] for p in points):
        print("FAILED: wrong replies (see WRONG lines above)")
        status = 1
    if any(not p["replies"] for p in points):
        print(f"FAILED: no replies from {server.address[0]}:{server.address[1]}")
        status = 1
    if points and not args.no_write:
        mode = "sweep" if args.sweep else "half" if args.half else points[0]["mode"]
        result = {
            "benchmark": "load",
            "size": args.size,
            "sims": SIZES[args.size],
            "run": mode,
            "server": "started" if workdir is not None else args.server,
            **source_state,
            "serverCpu": server_cpu,
            "workers": args.workers,
            "serverCpus": server_cpus,
            "clientCpu": client_cpu,
            "retransmitPercent": args.retransmit,
            "serverRssBytesIdle": rss_idle[0],
            "serverRssAnonBytesIdle": rss_idle[1],
            "packets": args.packets,
            "timeoutSeconds": args.timeout,
            "loadAverageBefore": round(load_average[0], 2),
            "machinePauses": pauses,
            **summary,
            "points": points,
            **environment(),
        }
        if args.server_commit:  # "commit" names the code measured; the bench's own is beside it
            result["benchCommit"] = result["commit"]
            result["commit"] = source_state["serverCode"].removeprefix("commit ")
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"load-{args.size}-{mode}-{int(time.time())}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the server was stopped on the way out (main's finally)
        sys.exit(130)
