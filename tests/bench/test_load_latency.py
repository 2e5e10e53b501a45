"""bench/load.py's open-loop latencies: where they start and where they end.

A reply's latency ends when the kernel put it on the client's socket (SO_TIMESTAMPNS), read
back into the client's perf_counter clock; the client's own delay in getting to it is reported
beside it, not in it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bench import load
from tests.bench.fake_server import FakeServer, run


def test_a_kernel_arrival_time_falls_between_the_send_and_the_read() -> None:
    offset = load._realtime_offset()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.setsockopt(socket.SOL_SOCKET, load.SO_TIMESTAMPNS, 1)
        # The kernel turns stamping on arrival on a moment later (a deferred static key);
        # until then it stamps a datagram when it is read, so this waits: load.py's warm-up.
        time.sleep(0.1)
        for _ in range(20):
            before = time.perf_counter()
            sender.sendto(b"x", receiver.getsockname())  # loopback: delivered within the call
            sent = time.perf_counter()
            time.sleep(0.002)  # the datagram waits in the socket: the read is later than it
            _, ancillary, _, _ = receiver.recvmsg(64, 64)
            after = time.perf_counter()
            [(level, kind, data)] = ancillary
            assert (level, kind) == (socket.SOL_SOCKET, load.SO_TIMESTAMPNS)
            seconds, nanoseconds = load._TIMESPEC.unpack(data)
            arrived = seconds + nanoseconds * 1e-9 - offset
            assert before - 50e-6 <= arrived <= sent + 50e-6
            assert after - arrived >= 0.002
    finally:
        receiver.close()
        sender.close()


@pytest.fixture
def requests() -> Iterator[load.Requests]:
    load._REQUESTS = load.prepare("10k", 2000, seed=7, retransmit=0.0)
    yield load._REQUESTS
    load._REQUESTS = None


def _open(server: FakeServer, rate: float) -> dict[str, Any]:
    plan = load.Plan(
        window=0,
        sockets=4,
        processes=1,
        seconds=0.5,
        count=None,
        warmup=0.1,
        timeout=1.0,
        rate=rate,
    )
    return run(server, plan)


def test_open_loop_latency_counts_the_servers_delay_from_the_send(
    requests: load.Requests,
) -> None:
    point = _open(FakeServer(requests, cache=True, delay=0.003), rate=100.0)
    assert point["wrong"] == 0 and point["lost"] == 0, point["problems"]
    assert point["replies"] >= 40
    # every reply was held 3 ms: no percentile is below that, and none far above at 100/s
    for key in ("p50Microseconds", "p99ServedMicroseconds"):
        assert 3000 <= point[key] < 20000, (key, point[key])
    # the client reads a reply after it arrived, never before
    assert point["p99Microseconds"] <= point["p99SeenMicroseconds"]
    assert point["p999Microseconds"] <= point["p999SeenMicroseconds"]
