"""bench/sizes.py: two sizes driven in turn (A B B A ...), rates over all slices, the ratio.

The servers and load.py's runs are replaced by recorded slices (their own runs are what bench/
measures); the argument checks run before any server would start."""

from __future__ import annotations

from typing import Any

import pytest

from bench import sizes


def _recorded(slices: list[tuple[str, int, float]]) -> tuple[sizes.Slice, list[str]]:
    pending = iter(slices)
    order: list[str] = []

    def measure(size: str) -> tuple[int, float, dict[str, Any]]:
        expected, replies, seconds = next(pending)
        assert size == expected
        order.append(size)
        return replies, seconds, {"wrong": 0}

    return measure, order


def test_sizes_alternate_and_the_ratio_is_over_all_slices() -> None:
    measure, order = _recorded(
        [
            ("10k", 80_000, 1.0),  # pair 1: 10M at 0.90
            ("10m", 72_000, 1.0),
            ("10m", 140_000, 2.0),  # pair 2, 10M first: 10M at 1.00
            ("10k", 140_000, 2.0),
        ]
    )
    figures = sizes.interleave(["10k", "10m"], 2, measure)
    assert order == ["10k", "10m", "10m", "10k"]
    assert figures["pairRatios"] == [0.9, 1.0]
    assert figures["requestsPerSecond"] == {"10k": 73_333, "10m": 70_667}
    assert figures["ratio"] == round(212_000 / 220_000, 3)  # replies/seconds, not pair means
    assert (figures["smallest"], figures["largest"]) == ("10k", "10m")


def test_the_ratio_is_largest_over_smallest_whatever_the_order_given() -> None:
    measure, _ = _recorded([("10m", 60_000, 1.0), ("1m", 80_000, 1.0)])
    figures = sizes.interleave(["10m", "1m"], 1, measure)
    assert figures["ratio"] == 0.75


def test_a_wrong_verdict_stops_the_run() -> None:
    def measure(size: str) -> tuple[int, float, dict[str, Any]]:
        return 100, 1.0, {"wrong": 1}

    with pytest.raises(SystemExit, match="wrong"):
        sizes.interleave(["10k", "10m"], 1, measure)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--sizes", "10k"],
        ["--sizes", "10k,huge"],
        ["--sizes", "10k,10k"],
        ["--sizes", "10k,1m,10m"],
        ["--slices", "0"],
        ["--slice", "0"],
    ],
)
def test_bad_arguments_stop_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, arguments: list[str]
) -> None:
    def no_requests(*_: object) -> None:
        raise AssertionError("nothing may be prepared for bad arguments")

    monkeypatch.setattr(sizes.load, "prepare", no_requests)
    with pytest.raises(SystemExit):
        sizes.main([*arguments, "--no-write"])
