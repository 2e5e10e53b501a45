"""Start-up and compaction over a data directory: newest valid snapshot + the journal after it.

Owns: open_live() (the LiveTable to serve, the JournalWriter to append with, and what recovery
found); compact() (a new snapshot at a journaled sequence, built from the newest snapshot and the
journal); prune_snapshots() (old snapshots out, and how far the journal may then be trimmed);
the ``python -m core.store.recovery compact DATA_DIR UPTO_SEQ`` entry point, so that the service
runs compaction in a child process and never holds its GIL for it.

Invariants:
- open_live() replays every journaled record after the snapshot's sequence, in order; the
  writer it returns continues the sequence (next_seq = last replayed + 1).
- compact() at upto_seq produces exactly the table open_live() would serve after replaying the
  journal up to upto_seq: same documents, same find() answers, same SIM and group indexes. It
  only reads the journal (never repairs it: the service may be appending to it meanwhile).
- A data directory keeps the newest ``keep`` snapshots and the journal after the oldest of them,
  so that start-up can fall back to an older snapshot when the newest is corrupt (DESIGN §6).

Must not: import asyncio, the RADIUS codec, the policy, logging or metrics; read the clock
except in main(), the process entry point (compact() takes the time as a parameter).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from core.store.commands import from_json
from core.store.compaction import write_compacted
from core.store.format import SnapshotError, list_snapshots
from core.store.journal import DIRECTORY, JournalError, Record, TornTail, read_journal
from core.store.journal_writer import JournalWriter
from core.store.live import LiveTable
from core.store.table import Table, load_newest


class RecoveryReport(NamedTuple):
    """What open_live() started from, for the start-up log line."""

    snapshot: Path | None  # None: no snapshot yet (an empty table)
    snapshot_seq: int
    skipped: tuple[SnapshotError, ...]  # newer snapshots refused as corrupt
    replayed: int  # journal records applied
    torn: TornTail | None  # the torn tail cut off the journal, if any


def open_live(data_dir: str | os.PathLike[str]) -> tuple[LiveTable, JournalWriter, RecoveryReport]:
    """Map the newest valid snapshot, replay the journal after it, open the journal to append.

    Raises:
        SnapshotError: snapshots exist but none is valid.
        JournalError: the journal is damaged before its tail, or records are missing.
        OSError: a file cannot be read or written.
    """
    table, skipped = load_newest(data_dir)
    base = Table.empty() if table is None else table
    try:
        records, torn = read_journal(data_dir, base.seq)
        live = _replayed(data_dir, base, records)
        writer = JournalWriter(data_dir, live.seq + 1)
    except BaseException:
        base.close()
        raise
    report = RecoveryReport(base.path, base.seq, tuple(skipped), len(records), torn)
    return live, writer, report


def compact(
    data_dir: str | os.PathLike[str],
    upto_seq: int,
    created_at: float = 0.0,
    pace: Callable[[int], None] | None = None,
) -> Path:
    """Write the snapshot at ``upto_seq`` (newest snapshot + journal); return its path.

    Unchanged SIMs are copied through without being parsed (core.store.compaction). When the
    newest snapshot is already at ``upto_seq`` it is returned as it is. ``pace`` limits the
    rate of writing (a Pacer).

    Raises:
        ValueError: ``upto_seq`` is older than the newest snapshot.
        JournalError: the journal does not hold every record up to ``upto_seq``.
        SnapshotError: no valid snapshot, or its cold documents are unusable.
        OSError: a file cannot be read or written.
    """
    table, _ = load_newest(data_dir, verify_cold=True)
    base = Table.empty() if table is None else table
    with base:
        if upto_seq < base.seq:
            raise ValueError(f"sequence {upto_seq} is older than the snapshot's {base.seq}")
        if upto_seq == base.seq and base.path is not None:
            return base.path
        records, _ = read_journal(data_dir, base.seq, upto_seq=upto_seq, repair=False)
        if (records[-1][0] if records else base.seq) != upto_seq:
            found = records[-1][0] if records else base.seq
            raise JournalError(
                Path(data_dir) / DIRECTORY, 0, f"sequence {upto_seq} not journaled (last {found})"
            )
        return write_compacted(data_dir, _replayed(data_dir, base, records), created_at, pace)


class Pacer:
    """A rate limit for a background writer: ``pacer(octets)`` after each piece written
    sleeps as long as the octets so far run ahead of ``rate`` per second.

    Why: a compaction copies a whole snapshot (264 MB at 1M SIMs, 2.7 GB at 10M). Unpaced, on
    the server's other core it cost the decisions ~4%, and any busy neighbour core slows this
    machine's (bench/writes.py); paced, the same work is spread thin. The clock and the sleep
    are parameters: only the entry point reads the clock.
    """

    def __init__(
        self, rate: float, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be more than 0, not {rate}")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self._octets = 0
        self.slept = 0.0

    def __call__(self, octets: int) -> None:
        self._octets += octets
        ahead = self._octets / self.rate - (self._clock() - self._start)
        if ahead > 0:
            self._sleep(ahead)
            self.slept += ahead


def prune_snapshots(data_dir: str | os.PathLike[str], keep: int = 2) -> int:
    """Remove all but the newest ``keep`` snapshots; return the sequence the journal may be
    trimmed up to (JournalWriter.trim): the oldest snapshot kept, 0 when there is none.
    """
    snapshots = list_snapshots(data_dir)
    for _, path in snapshots[keep:]:
        path.unlink(missing_ok=True)
    kept = snapshots[:keep]
    return kept[-1][0] if kept else 0


def _replayed(data_dir: str | os.PathLike[str], base: Table, records: list[Record]) -> LiveTable:
    live = LiveTable(base)
    for seq, payload in records:
        try:
            command = from_json(payload)
        except ValueError as error:
            where = Path(data_dir) / DIRECTORY
            raise JournalError(where, 0, f"record {seq} is not a command: {error}") from None
        live.apply(seq, command)
    return live


def main(argv: Sequence[str] | None = None) -> int:
    """``compact DATA_DIR UPTO_SEQ [--created-at UNIX_SECONDS]``: print the snapshot's path."""
    parser = argparse.ArgumentParser(prog="python -m core.store.recovery")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("compact", help="write the snapshot at UPTO_SEQ")
    run.add_argument("data_dir", type=Path)
    run.add_argument("upto_seq", type=int)
    run.add_argument("--created-at", type=float, default=None, help="default: now")
    run.add_argument(
        "--nice", type=int, default=0, help="lower this process's priority by this much first"
    )
    run.add_argument(
        "--idle",
        action="store_true",
        help="run only when the CPU has nothing else to run (Linux's SCHED_IDLE; elsewhere "
        "--nice alone)",
    )
    run.add_argument(
        "--rate-mb", type=float, default=0.0, help="write at most this many MB/s (0: no limit)"
    )
    run.add_argument(
        "--cpus", default="", help="run on these CPUs (comma-separated; default: as started)"
    )
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    if args.idle and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):  # a sandbox that forbids it leaves --nice alone
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    if args.cpus:
        try:
            os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
        except (ValueError, OSError) as error:
            sys.stderr.write(f"compact: --cpus {args.cpus}: {error}\n")
            return 2
    import time  # the entry point is the adapter: only here does the store read the clock

    created_at = time.time() if args.created_at is None else args.created_at
    pace = None
    if args.rate_mb > 0:
        pace = Pacer(args.rate_mb * 1e6, time.monotonic, time.sleep)
    try:
        path = compact(args.data_dir, args.upto_seq, created_at, pace)
    except (ValueError, SnapshotError, JournalError, OSError) as error:
        sys.stderr.write(f"compact: {error}\n")
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
