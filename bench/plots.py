"""PNG plots of the benchmark results (matplotlib: the ``bench`` dependency group).

- throughput vs window: a ``load.py --sweep`` result (requests/s and p99 per window);
- latency CDF: the recorded latency quantiles of a point (``peer.py`` keeps them), else the
  percentiles p50/p90/p99/p99.9/max that every point has;
- simgate vs FreeRADIUS: requests/s per round of a ``peer.py`` result, with the ratio.

    .venv/bin/python bench/plots.py                       # the latest peer and sweep results
    .venv/bin/python bench/plots.py bench/results/X.json  # those files

Each plot is written beside its JSON file, named after it (``<stem>-<plot>.png``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

RESULTS: Final = Path(__file__).resolve().parent / "results"
COLOURS: Final = {
    "simgate": "#1f77b4",
    "freeradius-threaded": "#d62728",
    "freeradius-single": "#ff7f0e",
}
LABELS: Final = {
    "simgate": "simgate",
    "freeradius-threaded": "FreeRADIUS threaded",
    "freeradius-single": "FreeRADIUS -s",
}
_PERCENTILES: Final = (
    ("p50Microseconds", 0.5),
    ("p90Microseconds", 0.9),
    ("p99Microseconds", 0.99),
    ("p999Microseconds", 0.999),
    ("maxMicroseconds", 1.0),
)


def _subtitle(result: dict[str, Any]) -> str:
    parts = [f"{result.get('sims', 0):,} SIMs", f"commit {result.get('commit', '?')}"]
    if result.get("cpu"):
        parts.append(result["cpu"])
    return ", ".join(parts)


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def throughput_vs_window(sweep: dict[str, Any], out: Path) -> Path:
    """Requests/s (bars' line) and p99 (second axis) per closed-loop window of a sweep."""
    points = sorted(
        (p for p in sweep["points"] if p["mode"] == "closed"), key=lambda p: p["window"]
    )
    windows = [p["window"] for p in points]
    figure, axis = plt.subplots(figsize=(8, 4.8))
    axis.plot(windows, [p["requestsPerSecond"] for p in points], "o-", color=COLOURS["simgate"])
    for point in points:
        axis.annotate(
            f"{point['requestsPerSecond']:,}",
            (point["window"], point["requestsPerSecond"]),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
        )
    axis.set_xscale("log", base=2)
    axis.set_xticks(windows, [str(w) for w in windows])
    axis.set_xlabel("requests outstanding (closed-loop window W)")
    axis.set_ylabel("Access-Requests/s", color=COLOURS["simgate"])
    axis.set_ylim(0, max(p["requestsPerSecond"] for p in points) * 1.18)
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axis.grid(alpha=0.3)
    latency = axis.twinx()
    latency.plot(
        windows, [p["p99Microseconds"] / 1000 for p in points], "s--", color="grey", label="p99"
    )
    latency.plot(
        windows, [p["p50Microseconds"] / 1000 for p in points], "^:", color="grey", label="p50"
    )
    latency.set_ylabel("latency, ms (grey)")
    latency.set_ylim(bottom=0)
    latency.legend(loc="upper left", fontsize=8)
    axis.set_title(f"simgate throughput vs window\n{_subtitle(sweep)}", fontsize=10)
    return _save(figure, out)


def _cdf(
    point: dict[str, Any], fractions: Sequence[float] | None
) -> tuple[list[float], list[float], bool]:
    """(latencies in ms, cumulative fractions, recorded?) of a point."""
    quantiles = point.get("latencyQuantilesMicroseconds")
    if quantiles and fractions is not None and len(fractions) == len(quantiles):
        return [q / 1000 for q in quantiles], list(fractions), True
    pairs = [(point[key] / 1000, fraction) for key, fraction in _PERCENTILES if point.get(key)]
    return [value for value, _ in pairs], [fraction for _, fraction in pairs], False


def latency_cdf(
    series: Sequence[tuple[str, dict[str, Any]]],
    title: str,
    out: Path,
    fractions: Sequence[float] | None = None,
) -> Path:
    """Latency CDF of each (name, point): linear fraction on the left, the tail on the right.

    ``fractions`` are the cumulative fractions of the points' ``latencyQuantilesMicroseconds``.
    """
    figure, (body, tail) = plt.subplots(1, 2, figsize=(11, 4.6))
    any_estimated = False
    for name, point in series:
        latencies, cumulative, recorded = _cdf(point, fractions)
        if not latencies:
            continue
        any_estimated |= not recorded
        style = "-" if recorded else "o--"
        label = f"{LABELS.get(name, name)} ({point['requestsPerSecond']:,}/s)"
        colour = COLOURS.get(name)
        body.plot(latencies, cumulative, style, color=colour, label=label)
        tail_points = [(v, 1 - f) for v, f in zip(latencies, cumulative, strict=True) if f < 1]
        tail.plot(
            [v for v, _ in tail_points],
            [f for _, f in tail_points],
            style,
            color=colour,
            label=label,
        )
    for axis in (body, tail):
        axis.set_xscale("log")
        axis.set_xlabel("latency, ms (log)")
        axis.grid(alpha=0.3, which="both")
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    body.set_ylabel("fraction of replies within")
    body.set_ylim(0, 1.01)
    body.legend(fontsize=8, loc="lower right")
    tail.set_yscale("log")
    tail.set_ylim(1e-4, 1)
    tail.invert_yaxis()
    tail.set_yticks([0.5, 0.1, 0.01, 0.001, 0.0001], ["p50", "p90", "p99", "p99.9", "p99.99"])
    tail.set_ylabel("percentile (tail)")
    note = " (dashed: from percentiles only)" if any_estimated else ""
    figure.suptitle(title + note, fontsize=10)
    return _save(figure, out)


def rounds_bars(peer: dict[str, Any], out: Path) -> Path:
    """Requests/s per round for simgate and both FreeRADIUS modes, with the round's ratio."""
    rounds = peer["rounds"]
    names = [name for name in COLOURS if name in rounds[0]]
    width = 0.8 / len(names)
    figure, axis = plt.subplots(figsize=(max(7, 1.9 * len(rounds) + 2), 4.8))
    top = 0
    for offset, name in enumerate(names):
        xs = [n + (offset - (len(names) - 1) / 2) * width for n in range(len(rounds))]
        values = [row[name]["requestsPerSecond"] for row in rounds]
        top = max(top, *values)
        bars = axis.bar(xs, values, width, color=COLOURS[name], label=LABELS[name])
        axis.bar_label(bars, [f"{v / 1000:.1f}k" for v in values], fontsize=7, padding=2)
    for n, row in enumerate(rounds):
        axis.text(n, top * 1.1, f"x{row['ratio']:.2f}", ha="center", fontsize=10, fontweight="bold")
    axis.set_xticks(
        range(len(rounds)),
        [
            f"round {row['round']}" + ("\n(disturbed)" if row.get("disturbed") else "")
            for row in rounds
        ],
    )
    axis.set_ylabel("Access-Requests/s (one core)")
    axis.set_ylim(0, top * 1.22)
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=len(names))
    axis.set_title(
        f"simgate vs FreeRADIUS {peer['freeradius']['version']}, closed loop W={peer['window']}: "
        f"median ratio x{peer['medianRatio']:.2f} over {peer.get('medianOver', 'the rounds')} "
        f"(target x{peer['target']})\n"
        f"ratio = simgate / the faster FreeRADIUS mode of the round; {_subtitle(peer)}",
        fontsize=9,
    )
    return _save(figure, out)


def _median_point(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The point with the median throughput (the lower middle of an even count).

    Among the undisturbed points when there are any.
    """
    points = [p for p in points if not p.get("disturbed")] or points
    ordered = sorted(points, key=lambda p: p["requestsPerSecond"])
    return ordered[(len(ordered) - 1) // 2]


def _latest(pattern: str) -> Path | None:
    found = sorted(RESULTS.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def plot_all(path: Path) -> list[Path]:
    """Every plot a result file supports; a peer result also gets the latest sweep's."""
    result = json.loads(path.read_text())
    written = []
    stem = path.with_suffix("")
    if result.get("benchmark") == "peer":
        written.append(rounds_bars(result, Path(f"{stem}-rounds.png")))
        series = [
            (name, _median_point([p for p in result["points"] if p.get("server") == name]))
            for name in COLOURS
            if any(p.get("server") == name for p in result["points"])
        ]
        title = (
            f"latency, closed loop W={result['window']}, each server's median undisturbed point; "
            f"{_subtitle(result)}"
        )
        fractions = result.get("latencyQuantileFractions")
        written.append(latency_cdf(series, title, Path(f"{stem}-latency-cdf.png"), fractions))
        sweep = _latest(f"load-{result['size']}-sweep-*.json") or _latest("load-*-sweep-*.json")
        if sweep is not None:
            written.extend(plot_all(sweep))
    elif result.get("benchmark") == "load":
        if result.get("run") == "sweep":
            written.append(throughput_vs_window(result, Path(f"{stem}-throughput-vs-window.png")))
        series = [
            (f"closed W={p['window']}" if p["mode"] == "closed" else "open loop", p)
            for p in result["points"]
        ]
        written.append(
            latency_cdf(series, f"simgate latency; {_subtitle(result)}", Path(f"{stem}-cdf.png"))
        )
    return written


def main(argv: Sequence[str] | None = None) -> int:
    paths = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        paths = [p for p in (_latest("peer-*.json"),) if p is not None]
        sweep = _latest("load-*-sweep-*.json")
        if sweep is not None and not paths:
            paths.append(sweep)
    if not paths:
        print(f"no results in {RESULTS}: run bench/peer.py or bench/load.py --sweep first")
        return 1
    for path in paths:
        for png in plot_all(path):
            print(f"wrote {png}")
    return 0


__all__ = ["latency_cdf", "plot_all", "rounds_bars", "throughput_vs_window"]

if __name__ == "__main__":
    sys.exit(main())
