"""bench/load.py's retransmissions and the scenario's stolen-SIM storm.

The load generator runs against the fake server of tests/bench/fake_server.py (a thread in this
process), whose replies tell a request decided twice from one answered from its reply cache.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from bench import load
from bench.scenarios import (
    IMSI_BASE,
    LOCK_BASE,
    MIX,
    request_for,
    retransmissions,
    storm_sim,
)
from tests.bench.fake_server import FakeServer, run


@pytest.fixture
def requests() -> Iterator[load.Requests]:
    load._REQUESTS = load.prepare("10k", 3000, seed=5, retransmit=20.0)
    yield load._REQUESTS
    load._REQUESTS = None


def _run(server: FakeServer) -> dict[str, Any]:
    plan = load.Plan(
        window=16, sockets=4, processes=1, seconds=0.6, count=None, warmup=0.1, timeout=1.0
    )
    return run(server, plan)


def test_retransmissions_are_answered_from_the_cache_and_counted(
    requests: load.Requests,
) -> None:
    point = _run(FakeServer(requests, cache=True))
    assert point["wrong"] == 0 and point["lost"] == 0, point["problems"]
    assert point["retransmissions"] > 20
    assert point["retransmissionReplies"] == point["retransmissions"]
    assert point["serverDuplicates"] == point["retransmissions"]
    assert point["duplicateCheck"] == "ok"
    assert 0.1 < point["retransmissions"] / point["sent"] < 0.3  # ~20% of the sends
    assert not any("duplicate" in warning for warning in point["warnings"])


def test_a_retransmission_decided_again_is_wrong(requests: load.Requests) -> None:
    point = _run(FakeServer(requests, cache=False))
    assert point["retransmissions"] > 20 and point["lost"] == 0
    # every repeat got a genuine reply to its request, but not the first reply's bytes
    assert point["wrong"] == point["retransmissions"]
    assert point["retransmissionReplies"] == 0
    assert "decided again" in point["problems"][0]
    assert point["duplicateCheck"] != "ok"
    assert any("retransmissions sent" in warning for warning in point["warnings"])


def test_retransmission_marks_are_about_the_share_asked() -> None:
    marks = retransmissions(100_000, 2.0, seed=1)
    repeats = sum(marks)
    assert 0.018 < repeats / (100_000 + repeats) < 0.022
    assert retransmissions(100_000, 2.0, seed=1) == marks  # deterministic
    assert sum(retransmissions(1000, 0.0)) == 0


def test_the_storm_hammers_one_strict_locked_sim_from_many_devices() -> None:
    (storm,) = [case for case in MIX if case.name == "stolen-sim-storm"]
    assert (storm.accept, storm.reason) == (False, "imei-mismatch")
    assert 4 <= 100 * storm.weight / sum(case.weight for case in MIX) <= 6
    count = 10_000
    sim = storm_sim(count)
    assert sim % 20 < 8  # locked, allowUnreported off
    rng = random.Random(3)
    built = [request_for(storm, count, rng) for _ in range(500)]
    assert {request.imsi for request in built} == {str(IMSI_BASE + sim)}
    devices = {request.imei[:14] for request in built if request.imei is not None}
    assert len(devices) == 500 and f"{LOCK_BASE + sim:014d}" not in devices


def test_server_group_sums() -> None:
    first = {"drops": 1.0, "duplicates": 2.0, "replies": 10.0, "rcvbufErrors": 7.0}
    second = {"drops": 3.0, "duplicates": 4.0, "replies": 20.0, "rcvbufErrors": 7.0}
    # the kernel's RcvbufErrors is the host's: every server reports the same figure
    assert load._sum_counters([first, second]) == {
        "drops": 4.0,
        "duplicates": 6.0,
        "replies": 30.0,
        "rcvbufErrors": 7.0,
    }
    assert load._sum_pairs([(1.0, 0.5), (2.0, 0.25)]) == (3.0, 0.75)
    assert load._sum_pairs([(1.0, 0.5), None]) is None
    assert load._sum_rss([(10, 4), (20, 6)]) == (30, 10)
    assert load._sum_rss([(10, 4), (None, None)]) == (None, None)
