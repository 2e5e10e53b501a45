"""bench/sizes.py: sizes measured in turn, one ratio per round, the median against the target.

bench/load.py itself is replaced by recorded rates (its own runs are what bench/ measures)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from bench import sizes


def _fake_runs(monkeypatch: pytest.MonkeyPatch, rates: list[float]) -> list[str]:
    order: list[str] = []
    pending = iter(rates)

    def measure(size: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
        order.append(size)
        return {"size": size, "points": [{"requestsPerSecond": next(pending)}]}

    monkeypatch.setattr(sizes, "measure", measure)
    monkeypatch.setattr(sizes, "RESULTS", Path("/nonexistent"))  # --no-write: never used
    return order


def test_sizes_alternate_and_the_median_round_ratio_decides(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10M at 0.90, 0.97 and 0.96 of 10k: median 0.96, met (round 2 measures 10M first)
    order = _fake_runs(monkeypatch, [80_000, 72_000, 67_900, 70_000, 75_000, 72_000])
    assert sizes.main(["--rounds", "3", "--no-write"]) == 0
    assert order == ["10k", "10m", "10m", "10k", "10k", "10m"]
    out = capsys.readouterr().out
    assert "10m/10k 0.900" in out and "10m/10k 0.970" in out
    assert "median 10m/10k over 3 rounds: 0.960 [target >= 0.95: met]" in out


def test_a_median_below_the_target_is_reported_not_met(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    order = _fake_runs(monkeypatch, [60_000, 80_000])
    monkeypatch.setattr(sizes, "RESULTS", tmp_path)
    assert sizes.main(["--sizes", "10m,1m", "--rounds", "1"]) == 0
    assert order == ["10m", "1m"]  # measured in the order given, compared by SIM count
    assert "[target >= 0.95: not met]" in capsys.readouterr().out
    (written,) = tmp_path.glob("sizes-*.json")
    result = json.loads(written.read_text())
    assert result["ratios"] == [0.75] and result["medianRatio"] == 0.75
    assert result["target"] == 0.95


@pytest.mark.parametrize(
    "arguments", [["--sizes", "10k"], ["--sizes", "10k,huge"], ["--rounds", "0"]]
)
def test_bad_arguments_stop_before_any_run(
    monkeypatch: pytest.MonkeyPatch, arguments: list[str]
) -> None:
    order = _fake_runs(monkeypatch, [])
    with pytest.raises(SystemExit):
        sizes.main([*arguments, "--no-write"])
    assert order == []
