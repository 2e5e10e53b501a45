"""The same throughput from 10k to 10M SIMs: simgate's UDP rate at each size, interleaved.

Target (issue 4): requests/s at 10M SIMs within 5% of 10k. Run one after the other, two
servers' figures differ by 10-15% on a shared machine whatever their sizes (the host's other
tenants come and go by the minute), more than the target. So both servers run at once, each
pinned to CPU 0 (one with each subscriber set, a private copy of the scenario's data), and the
client (bench/load.py's closed loop at --window, on CPU 1) drives them in turn, in short
slices ordered A B B A A B ... after one unmeasured slice each (the first requests to a 10M
map fault its pages in): whichever server is not driven sleeps in its event loop, and the
machine's drift falls on both alike. Every reply is verified against the scenario, as
load.py does; a wrong verdict fails the run.

Reported: the rate of each size over all its slices, their ratio (largest size / smallest),
and the median and range of the per-pair ratios.

    .venv/bin/python bench/sizes.py [--sizes 10k,10m] [--slices 16] [--slice 2] [--window 64]

Writes ``bench/results/sizes-<sizes>-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import load
from bench.micro import environment
from bench.scenarios import SIZES, data_dir

RESULTS = ROOT / "bench" / "results"
TARGET = 0.95  # the largest size's rate / the smallest's
SERVER_CPU, CLIENT_CPU = 0, 1

#: one slice against one size: (verified replies, seconds measured, load.py's point)
Slice = Callable[[str], tuple[int, float, dict[str, Any]]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10k,10m", help="two sizes (%(default)s)")
    parser.add_argument("--slices", type=int, default=16, help="pairs of slices (%(default)s)")
    parser.add_argument("--slice", type=float, default=2.0, help="seconds each (%(default)s)")
    parser.add_argument("--window", type=int, default=64, help="closed loop (%(default)s)")
    parser.add_argument("--packets", type=int, default=200_000, help="requests per size")
    parser.add_argument("--no-write", action="store_true", help="write no JSON")
    return parser


def interleave(sizes: list[str], slices: int, measure: Slice) -> dict[str, Any]:
    """Drive the sizes in turn, A B then B A, ``slices`` pairs; the figures."""
    smallest, largest = min(sizes, key=SIZES.__getitem__), max(sizes, key=SIZES.__getitem__)
    replies = dict.fromkeys(sizes, 0)
    seconds = dict.fromkeys(sizes, 0.0)
    pairs: list[float] = []
    for number in range(slices):
        order = sizes if number % 2 == 0 else sizes[::-1]
        rates = {}
        for size in order:
            done, spent, point = measure(size)
            if point.get("wrong") or not done:
                raise SystemExit(f"{size}: wrong or no replies in slice {number + 1}")
            replies[size] += done
            seconds[size] += spent
            rates[size] = done / spent
        pairs.append(rates[largest] / rates[smallest])
        print(
            f"  pair {number + 1:2}: "
            + ", ".join(f"{size} {rates[size]:,.0f}/s" for size in order)
            + f"; {largest}/{smallest} {pairs[-1]:.3f}",
            flush=True,
        )
    rate = {size: replies[size] / seconds[size] for size in sizes}
    return {
        "requestsPerSecond": {size: round(value) for size, value in rate.items()},
        "ratio": round(rate[largest] / rate[smallest], 3),
        "medianPairRatio": round(statistics.median(pairs), 3),
        "pairRatios": [round(ratio, 3) for ratio in pairs],
        "smallest": smallest,
        "largest": largest,
    }


def _servers(sizes: list[str], workdir: Path) -> dict[str, load.ServerUnderTest]:
    servers: dict[str, load.ServerUnderTest] = {}
    try:
        for size in sizes:
            directory = workdir / size
            directory.mkdir()
            servers[size] = load.ServerUnderTest.start(data_dir(size), SERVER_CPU, directory)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = args.sizes.split(",")
    if len(sizes) != 2 or len(set(sizes)) != 2 or any(size not in SIZES for size in sizes):
        raise SystemExit(f"--sizes: two different ones of {', '.join(sorted(SIZES))}")
    if args.slices < 1 or args.slice <= 0:
        raise SystemExit("--slices: at least 1; --slice: more than 0 seconds")
    requests = {size: load.prepare(size, args.packets, 1) for size in sizes}
    cpus = os.sched_getaffinity(0)
    client_cpu = CLIENT_CPU if CLIENT_CPU in cpus else None
    with tempfile.TemporaryDirectory(prefix="sizes-", dir=data_dir(sizes[0]).parent) as scratch:
        servers = _servers(sizes, Path(scratch))
        pools = {size: load.SocketPool(server.address) for size, server in servers.items()}
        try:
            if client_cpu is not None:
                os.sched_setaffinity(0, {client_cpu})  # and the workers forked from here

            def measure(size: str) -> tuple[int, float, dict[str, Any]]:
                load._REQUESTS = requests[size]  # what the forked workers send
                plan = load.Plan(
                    window=args.window,
                    sockets=max(1, min(16, args.window // 4)),
                    processes=1,
                    seconds=args.slice,
                    count=None,
                    warmup=0.3,
                    timeout=1.0,
                    offset=secrets.randbelow(args.packets),
                )
                point = load.run_plan(plan, servers[size], client_cpu, pools[size])
                return point["replies"], point["seconds"], point

            print(
                f"{' and '.join(f'{SIZES[s]:,} SIMs' for s in sizes)}: both servers on CPU "
                f"{SERVER_CPU}, driven in turn from CPU {client_cpu}, {args.slices} pairs of "
                f"{args.slice:g} s at W={args.window}",
                flush=True,
            )
            for size in sizes:  # unmeasured: the requests' pages of each map touched first
                measure(size)
            figures = interleave(sizes, args.slices, measure)
        finally:
            os.sched_setaffinity(0, cpus)
            for pool in pools.values():
                pool.close()
            for server in servers.values():
                server.stop()
    verdict = "met" if figures["ratio"] >= TARGET else "not met"
    rates = figures["requestsPerSecond"]
    print(
        ", ".join(f"{SIZES[size]:,} SIMs {rates[size]:,}/s" for size in sizes)
        + f": {figures['largest']}/{figures['smallest']} {figures['ratio']:.3f} (pairs: median "
        f"{figures['medianPairRatio']:.3f}, {min(figures['pairRatios']):.3f}-"
        f"{max(figures['pairRatios']):.3f}) [target >= {TARGET}: {verdict}]"
    )
    if not args.no_write:
        result = {
            "benchmark": "sizes",
            "sizes": sizes,
            "window": args.window,
            "sliceSeconds": args.slice,
            "slicePairs": args.slices,
            **figures,
            "target": TARGET,
            **environment(),
        }
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"sizes-{'-'.join(sizes)}-{int(time.time())}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
