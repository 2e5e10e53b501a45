"""Compaction in the background: snapshot + journal -> new snapshot, swapped in atomically.

Owns: when to compact (records or age thresholds, and on demand), running the store's
``compact`` in a child process (so the server's GIL and event loop never carry it), mapping the
result, replaying the records journaled since onto it, swapping the new live table in with one
assignment, and trimming what the new snapshot made obsolete.

Invariants: decisions never stop: until the swap they read the old table, after it the new one,
and both hold every durable write. The swap happens with the commit loop's lock held, so no
write is applied to the old table after its records were read for the new one.

Must not: import the wire codec or the web framework.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

from core.service.commit import CommitLoop
from core.store.commands import from_json
from core.store.format import SnapshotError
from core.store.journal import JournalError, read_journal
from core.store.journal_writer import JournalWriter
from core.store.live import LiveTable
from core.store.recovery import prune_snapshots
from core.store.table import Table

log = structlog.get_logger("simgate.compaction")

#: how much lower the compaction child's priority is than the server's (nice(2)): the lowest,
#: so that on a core the decisions keep busy it gets ~1.5% of the time (10 gave it ~10%, which
#: the decisions lost: bench/writes.py, compaction-same-cpu); on an idle core it runs at will.
#: On Linux the child also runs SCHED_IDLE (``--idle``), below every nice level: at 1,000
#: writes/s on one CPU the decisions kept 0.901 of their read-only rate against 0.872 at nice 19
#: alone, in back-to-back runs of otherwise the same code (200 pairs each; later runs 0.884-0.892).
COMPACTION_NICENESS = 19


#: journal records applied to the fresh table between two turns of the loop (~1 ms of them)
_CATCH_UP_CHUNK = 32


class CompactionError(Exception):
    """The child process could not write the snapshot; the message is what it said."""


#: what a failed compaction raises; nothing is swapped in then, and the table serves on from
#: the snapshot it had (the journal keeps every write)
COMPACTION_FAILURES: Final = (CompactionError, JournalError, SnapshotError, OSError)


class Compactor:
    def __init__(
        self,
        data_dir: Path,
        journal: JournalWriter,
        commit: CommitLoop,
        live: Callable[[], LiveTable],
        swap: Callable[[LiveTable], None],
        *,
        after_records: int,
        after_seconds: float,
        rate_mb: float = 0.0,
        cpus: tuple[int, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.cpus = cpus  # the child's CPUs (store.io_cpus); (): the server's
        self._journal = journal
        self._commit = commit
        self._live = live
        self._swap = swap
        self.after_records = after_records
        self.after_seconds = after_seconds
        self.rate_mb = rate_mb
        self._running = asyncio.Lock()
        self._first_unsnapshotted: float | None = None
        self.compactions = 0
        self.failures = 0  # compactions that raised (/metrics)
        self.last_seconds = 0.0

    def note_write(self) -> None:
        """Called for every applied write: starts the age clock of the oldest unsnapshotted."""
        if self._first_unsnapshotted is None:
            self._first_unsnapshotted = time.monotonic()

    def due(self) -> bool:
        live = self._live()
        pending = live.seq - live.base.seq
        if pending <= 0:
            return False
        if pending >= self.after_records:
            return True
        started = self._first_unsnapshotted
        return started is not None and time.monotonic() - started >= self.after_seconds

    async def watch(self, interval: float = 1.0) -> None:
        """Compact whenever a threshold is passed (cancel to stop)."""
        while True:
            await asyncio.sleep(interval)
            if self.due() and not self._running.locked():
                try:
                    await self.compact()
                except COMPACTION_FAILURES as error:  # counted; the next due() tries again
                    log.error("compaction_failed", detail=str(error))

    async def compact(self) -> tuple[int, Path]:
        """Write a snapshot of every durable write, swap it in, trim; return (seq, path).

        Raises:
            CompactionError: the child process failed.
            SnapshotError: the snapshot it wrote does not open (checksums, format).
            JournalError: the journal's records since the rotation do not read back.
            OSError: the journal could not be rotated or read.
        """
        try:
            return await self._compact()
        except COMPACTION_FAILURES:
            self.failures += 1
            raise

    async def _compact(self) -> tuple[int, Path]:
        async with self._running:
            started = time.monotonic()
            async with self._commit.lock:
                # every record <= upto is durable and applied; the fsync runs off the loop
                upto = await asyncio.to_thread(self._journal.rotate) - 1
            if upto <= self._live().base.seq:
                path = self._live().base.path
                return upto, path if path is not None else self.data_dir
            path = await self._run_child(upto)
            fresh = LiveTable(await asyncio.to_thread(Table.open, path))
            try:
                # The writes made while the child ran: most of them before taking the lock,
                # which stops the commit loop; then, under it, the few synced meanwhile.
                await self._catch_up(fresh, self._journal.durable_seq)
                async with self._commit.lock:
                    await self._catch_up(fresh, None)
                    old = self._live()
                    if fresh.seq != old.seq:  # a failed sync wrote records never applied
                        raise CompactionError(
                            f"the journal ends at {fresh.seq}, the table at {old.seq}"
                        )
                    self._swap(fresh)
            except BaseException:
                fresh.close()
                raise
            self._first_unsnapshotted = None if fresh.seq == upto else time.monotonic()
            old.close()
            trim_upto = await asyncio.to_thread(prune_snapshots, self.data_dir, 2)
            await asyncio.to_thread(self._journal.trim, trim_upto)
            self.compactions += 1
            self.last_seconds = time.monotonic() - started
            log.info(
                "compacted",
                seq=upto,
                snapshot=str(path),
                seconds=round(self.last_seconds, 3),
                replayed=fresh.seq - upto,
            )
            return upto, path

    async def _catch_up(self, fresh: LiveTable, upto: int | None) -> None:
        """Apply the journal's records after ``fresh.seq`` (up to ``upto``) to ``fresh``, a
        chunk at a time.

        perf: in one go, under the commit lock, this stopped the decisions for as long as the
        records since the child began took to apply: ~25 µs each, so 0.65 s for a 10M-SIM
        compaction (26 s at 100 MB/s) at 1,000 writes/s. ``fresh`` is seen by nobody until
        the swap, so the loop's other work may run between chunks.

        Without the commit lock a sync may be writing the journal's end as it is read, so
        ``upto`` must be a sequence already durable (read_journal reads no further than it
        asks for); under the lock nothing is being written, and None reads to the end.
        """
        records, _ = await asyncio.to_thread(
            read_journal, self.data_dir, fresh.seq, upto_seq=upto, repair=False
        )
        for number, (seq, payload) in enumerate(records, 1):
            fresh.apply(seq, from_json(payload))
            if number % _CATCH_UP_CHUNK == 0:
                await asyncio.sleep(0)

    async def _run_child(self, upto: int) -> Path:
        # subprocess, not the event loop's subprocess support: uvloop spawns with fork(), which
        # copies the page tables of the whole server (the mapped snapshot, sessions) while the
        # loop waits: 37-43 ms with 1 GiB touched. subprocess uses vfork(), here in a worker
        # thread: the loop saw at most 0.3-0.9 ms (Popen on the loop's thread: 3-6 ms;
        # bench/spawn.py).
        command = [
            sys.executable,
            "-m",
            "core.store.recovery",
            "compact",
            str(self.data_dir),
            str(upto),
            # Below the server's priority: the child inherits the server's CPU pinning (taskset),
            # and then the decisions must win the CPU (bench/writes.py, compaction-same-cpu).
            f"--nice={COMPACTION_NICENESS}",
            "--idle",
            f"--rate-mb={self.rate_mb}",
        ]
        if self.cpus:
            command.append(f"--cpus={','.join(map(str, self.cpus))}")
        started: list[subprocess.Popen[bytes]] = []

        def run() -> tuple[bytes, bytes, int]:
            process = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            started.append(process)
            out, err = process.communicate()
            return out, err, process.returncode

        try:
            out, err, code = await asyncio.to_thread(run)
        except asyncio.CancelledError:  # the server is stopping: the half-written temp file
            for process in started:  # is never renamed into place, so nothing is lost
                process.kill()
            raise
        if code != 0:
            message = err.decode(errors="replace").strip().splitlines()
            raise CompactionError(message[-1] if message else f"exit {code}")
        return Path(out.decode().strip().splitlines()[-1])
