"""bench/peer.py --rate: the open-loop summary, the p99s side by side."""

from __future__ import annotations

from typing import Any

from bench import peer


def _point(p99: float | None, disturbed: bool = False) -> dict[str, Any]:
    return {
        "requestsPerSecond": 18000,
        "p50Microseconds": 60.0,
        "p99Microseconds": p99,
        "p999Microseconds": None if p99 is None else 3 * p99,
        "serverCpuPercent": 70.0,
        "disturbed": disturbed,
    }


def _round(simgate: float | None, threaded: float | None, single: float | None, **kw: Any):
    return {
        "simgate": _point(simgate, **kw),
        "freeradius-threaded": _point(threaded),
        "freeradius-single": _point(single),
    }


def test_the_median_p99s_are_over_the_undisturbed_rounds() -> None:
    rounds = [
        _round(1000.0, 2000.0, 3000.0),
        _round(9000.0, 9000.0, 9000.0, disturbed=True),
        _round(3000.0, 4000.0, 5000.0),
        _round(2000.0, 6000.0, 4000.0),
    ]
    summary = peer.summarise_latency(rounds, 18000.0)
    assert summary["medianOver"] == "the undisturbed rounds"
    assert summary["medianP99Microseconds"] == {
        "simgate": 2000.0,
        "freeradius-threaded": 4000.0,
        "freeradius-single": 4000.0,
    }
    assert [row["disturbed"] for row in summary["rounds"]] == [False, True, False, False]
    assert summary["rate"] == 18000


def test_a_round_with_lost_requests_makes_the_median_lost() -> None:
    rounds = [_round(1000.0, 2000.0, None) for _ in range(3)]
    summary = peer.summarise_latency(rounds, 9000.0)
    assert summary["medianP99Microseconds"]["freeradius-single"] is None
    assert summary["medianP99Microseconds"]["simgate"] == 1000.0
    peer.print_latency_table(summary)  # prints "lost", does not fail on None
