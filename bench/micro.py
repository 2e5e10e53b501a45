"""The hot path in-process: datagram bytes in -> reply bytes out, no sockets.

Times ``Pipeline.handle`` (client lookup, structural check, Message-Authenticator, reply cache,
decision against a mapped snapshot, reply encoding and signing) on pre-built Access-Requests of
the scenario mix, with ``reject_delay = 0``, and checks every verdict against the scenario. Two
figures: bytes in -> bytes out alone, then with the server's bookkeeping (the live table's
overlay, a session recorded at every accept, an event at every IMEI-lock reject).

Requests are fed in batches, as the server's datagram pump hands them over: the batch's IMSIs
are read (``imsi_keys``) and ``Pipeline.prefetch`` warms their table and session slots, then
each is handled. ``--batch 1`` is a server taking one datagram per wake-up; under load at a
window of 64 the pump takes ~30 per call (bench/load.py reports its mean batch).

    .venv/bin/python bench/micro.py [--size 1m] [--packets 100000] [--seconds 5] [--batch 16]

Prints decisions/s and p50/p99 per call for each; writes a JSON result under bench/results/
(``decisionsPerSecond`` is the server's figure, ``decisionOnlyPerSecond`` the other).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scenarios import SECRET, SIZES, build_packets, data_dir
from core.config import Config, from_mapping
from core.policy.admission import TableView
from core.radius import dictionary
from core.service.clients import Clients
from core.service.pipeline import Pipeline
from core.service.stats import Stats
from core.service.udp import datagrams
from core.service.writepath import WritePath
from core.store.journal_writer import JournalWriter
from core.store.live import LiveTable
from core.store.table import Table, load_newest

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="1m")
    parser.add_argument("--packets", type=int, default=100_000, help="distinct requests built")
    parser.add_argument("--seconds", type=float, default=5.0, help="per figure")
    parser.add_argument(
        "--batch", type=int, default=16, help="datagrams per prefetch, as the pump's batches"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()

    handles = dictionary.load().handles
    directory = data_dir(args.size)
    opened = time.perf_counter()
    table, _ = load_newest(directory)
    assert table is not None
    open_seconds = time.perf_counter() - opened
    settings = from_mapping(
        {
            "radius": {
                "reject_delay": 0.0,
                "clients": [{"name": "bench", "address": "127.0.0.1", "secret": SECRET}],
            }
        }
    )
    packets = build_packets(SIZES[args.size], args.packets, handles)
    work = [packet for packet, _ in packets]
    # First bytes in -> bytes out alone (the mapped table, nothing recorded), then the server's
    # whole per-request path: the live table (overlay in front of the map) and the reactions
    # (a session at every accept, an event at every IMEI-lock reject).
    figures = {}
    for name, bookkeeping in (("decision", False), ("server", True)):
        pipeline = make_pipeline(table, handles, settings, bookkeeping)
        check(pipeline, packets)
        figures[name] = run(pipeline, work, args.seconds, args.batch)
    result = {
        "benchmark": "micro",
        "size": args.size,
        "sims": table.sim_count,
        "decisionsPerSecond": round(figures["server"][0]),
        "p50Microseconds": round(figures["server"][1] * 1e6, 2),
        "p99Microseconds": round(figures["server"][2] * 1e6, 2),
        "decisionOnlyPerSecond": round(figures["decision"][0]),
        "decisionOnlyP50Microseconds": round(figures["decision"][1] * 1e6, 2),
        "snapshotOpenSeconds": round(open_seconds, 4),
        "batch": args.batch,
        "prefetch": datagrams is not None,
        **environment(),
    }
    for name, label in (
        ("decision", "bytes in -> bytes out"),
        ("server", "with sessions and events"),
    ):
        rate, p50, p99 = figures[name]
        print(
            f"hot path, {table.sim_count:,} SIMs, {label}: {rate:,.0f} decisions/s on one "
            f"core, p50 {p50 * 1e6:.1f} µs, p99 {p99 * 1e6:.1f} µs"
        )
    print(f"(snapshot opened in {open_seconds * 1000:.1f} ms)")
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"micro-{args.size}-{int(time.time())}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def make_pipeline(
    table: TableView, handles: dictionary.Handles, settings: Config, bookkeeping: bool
) -> Pipeline:
    """A pipeline over ``table``; with ``bookkeeping`` the live table and the reactions too."""
    stats = Stats()
    pipeline = Pipeline(
        port="auth",
        clients=Clients(settings.radius.clients),
        table=table,
        handles=handles,
        settings=settings.radius,
        stats=stats,
    )
    if bookkeeping:
        scratch = Path(tempfile.mkdtemp(prefix="simgate-micro-"))
        journal = JournalWriter(scratch, table.seq + 1)
        assert isinstance(table, Table), "the bookkeeping puts its own live table over a map"
        WritePath(settings, LiveTable(table), journal, stats).attach([pipeline])
    return pipeline


def check(pipeline: Pipeline, packets: list[tuple[bytes, object]]) -> None:
    """Every request gets the verdict its scenario expects: a wrong verdict fails the run."""
    for number, (packet, case) in enumerate(packets):
        reply = pipeline.handle(packet, ("127.0.0.1", 40000 + number % 20000), float(number))
        assert reply is not None, f"packet {number} ({case}) got no reply"
        accept = reply[0] == 2
        if accept != case.accept:  # type: ignore[attr-defined]
            raise SystemExit(f"wrong verdict for {case}: code {reply[0]}")
    pipeline.cache.expire(float("inf"))


def run(
    pipeline: Pipeline, packets: list[bytes], seconds: float, batch: int = 16
) -> tuple[float, float, float]:
    """Feed the packets round after round, ``batch`` at a time as the pump does (their IMSIs
    read and prefetched first, when the C pump is built); return (calls/s, p50 s, p99 s)."""
    handle = pipeline.handle
    prefetch = pipeline.prefetch
    addresses = [("127.0.0.1", 40000 + n % 20000) for n in range(len(packets))]
    work = list(zip(packets, addresses, strict=True))
    batches = [
        (packets[start : start + batch], work[start : start + batch])
        for start in range(0, len(work), max(batch, 1))
    ]
    vsa, user_name = pipeline.imsi_vsa, pipeline.imsi_user_name
    samples: list[float] = []
    clock = time.perf_counter
    calls = 0
    busy = 0.0
    now = 0.0
    gc.disable()
    try:
        while busy < seconds:
            now += 100.0  # past the reply cache's TTL: every request is new, never a duplicate
            begin = clock()
            if datagrams is None:
                for packet, address in work:
                    handle(packet, address, now)
            else:
                imsi_keys = datagrams.imsi_keys
                for datagram_batch, pairs in batches:
                    prefetch(imsi_keys(datagram_batch, vsa, user_name))
                    for packet, address in pairs:
                        handle(packet, address, now)
            busy += clock() - begin
            calls += len(work)
            for packet, address in work[:2000]:  # per-call latency, on a sample
                begin = clock()
                handle(packet, address, now + 50.0)
                samples.append(clock() - begin)
            pipeline.cache.expire(now + 1000.0)
    finally:
        gc.enable()
    samples.sort()
    return calls / busy, samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def environment() -> dict[str, str]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"commit": commit or "uncommitted", "python": platform.python_version(), "cpu": cpu}


if __name__ == "__main__":
    sys.exit(main())
