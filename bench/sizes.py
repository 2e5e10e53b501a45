"""The same throughput from 10k to 10M SIMs: simgate's UDP peak at each size, alternately.

Target (issue 4): requests/s at 10M SIMs within 5% of 10k. One measurement per size is not
enough on a shared machine: back-to-back runs of the same server differ by several percent. So
the sizes are measured in turn (10k, 10M, then 10M, 10k, ...), each a fresh server started by
bench/load.py (closed loop at --window, server pinned to CPU 0, client on CPU 1), and what is
reported is each round's ratio (largest size / smallest) and their median.

    .venv/bin/python bench/sizes.py [--sizes 10k,10m] [--rounds 3] [--seconds 8] [--window 64]

Writes ``bench/results/sizes-<time>.json`` with every run's load.py result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.micro import environment
from bench.scenarios import SIZES

RESULTS = ROOT / "bench" / "results"
TARGET = 0.95  # the largest size's rate / the smallest's


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10k,10m", help="in turn, smallest first (%(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="(%(default)s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per run (%(default)s)")
    parser.add_argument("--window", type=int, default=64, help="closed loop (%(default)s)")
    parser.add_argument("--no-write", action="store_true", help="write no JSON")
    return parser


def measure(size: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """One bench/load.py run at ``size``; its JSON result."""
    output = scratch / f"{size}-{time.monotonic_ns()}.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "load.py"),
        "--size",
        size,
        "--window",
        str(args.window),
        "--seconds",
        str(args.seconds),
        "--pause-check",
        "1",
        "--retries",
        "1",
        "--settle",
        "10",
        "--output",
        str(output),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not output.exists():
        raise SystemExit(
            f"load.py --size {size} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    result: dict[str, Any] = json.loads(output.read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = args.sizes.split(",")
    unknown = [size for size in sizes if size not in SIZES]
    if len(sizes) < 2 or unknown:
        raise SystemExit(f"--sizes: two or more of {', '.join(sorted(SIZES))}")
    if args.rounds < 1:
        raise SystemExit("--rounds: at least 1")
    smallest, largest = min(sizes, key=SIZES.get), max(sizes, key=SIZES.get)
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sizes-") as scratch:
        for number in range(1, args.rounds + 1):
            # A B, B A, A B ...: whatever the order itself does (the second of two runs finds
            # the page cache warmer, say) falls on each size in turn
            order = sizes if number % 2 else sizes[::-1]
            measured = {size: measure(size, args, Path(scratch)) for size in order}
            runs = {size: measured[size] for size in sizes}
            rates = {size: runs[size]["points"][0]["requestsPerSecond"] for size in sizes}
            ratio = rates[largest] / rates[smallest]
            rounds.append({"rates": rates, "ratio": round(ratio, 3), "runs": runs})
            print(
                f"round {number}: "
                + ", ".join(f"{SIZES[size]:,} SIMs {rate:,.0f}/s" for size, rate in rates.items())
                + f"; {largest}/{smallest} {ratio:.3f}",
                flush=True,
            )
    median = statistics.median(round_["ratio"] for round_ in rounds)
    verdict = "met" if median >= TARGET else "not met"
    print(
        f"median {largest}/{smallest} over {len(rounds)} rounds: {median:.3f} "
        f"[target >= {TARGET}: {verdict}]"
    )
    if not args.no_write:
        result = {
            "benchmark": "sizes",
            "sizes": sizes,
            "window": args.window,
            "seconds": args.seconds,
            "ratios": [round_["ratio"] for round_ in rounds],
            "medianRatio": round(median, 3),
            "target": TARGET,
            "rounds": rounds,
            **environment(),
        }
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"sizes-{'-'.join(sizes)}-{int(time.time())}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
