"""Group commit: every write is journaled and made durable before anyone is told it happened.

Owns: the order of a write (check -> append to the journal -> fsync -> apply to the live table ->
resolve the caller's future), batching (many writes share one fsync; ``fsync = "always"`` gives
each its own), and the fsync running off the event loop so that decisions never wait on a disk.

Invariants:
- A write is applied to the table the decisions read only after it is durable, so no verdict
  ever depends on a write that a crash could lose (DESIGN §2, §6).
- Writes are applied in sequence order, the order they were journaled.
- Validation happens before the journal (``check``); applying a journaled command never fails,
  so replay after a crash is deterministic.
- A failed sync fails its batch's writes, and the journal fails every later one (what reached
  the file is unknown until recovery reads it): each write submitted afterwards fails at once
  with that error, none waits, and the loop goes on; ``failure`` says why (/healthz).

Must not: import the RADIUS codec or the admin API.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import deque
from collections.abc import Callable, Collection
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Final, Protocol

from core.store.sync_job import SyncJob, run_job


class Command(Protocol):
    def to_json(self) -> bytes: ...


class Journal(Protocol):
    def append(self, payload: bytes) -> int: ...

    def sync(self) -> int: ...

    def begin_sync(self) -> SyncJob | None: ...

    def end_sync(self, job: SyncJob, error: OSError | None) -> int: ...


class Syncer(Protocol):
    """core.store._syncer.Syncer: pwrite (+ fsync) jobs in a thread without the GIL."""

    def submit(self, fd: int, data: bytearray, offset: int, sync: bool, /) -> None: ...

    def complete(self) -> bool: ...

    def close(self) -> None: ...

    def fileno(self) -> int: ...


class Live(Protocol):
    def check(self, command: Any) -> Any: ...

    def apply(self, seq: int, command: Any) -> bool: ...


#: the most writes one sync makes durable: a batch is checked, journaled and then applied
#: between two turns of the loop (~30 µs a write, its caller's continuation not counted), so
#: this bounds how long a burst (a storm of first connects, many API clients) holds the
#: decisions: ~8 ms, and at the default store.sync_interval ~25,000 writes/s still go through
MAX_BATCH: Final = 256


class CommitLoop:
    """Serialises writes through the journal; one task runs ``run()``."""

    def __init__(
        self,
        journal: Journal,
        live: Callable[[], Live],
        *,
        always: bool = False,
        on_applied: Callable[[int, Any, bool], None] | None = None,
        on_failed: Callable[[OSError], None] | None = None,
        executor: Executor | None = None,
        syncer: Syncer | None = None,
        interval: float = 0.0,
        max_batch: int = MAX_BATCH,
        activity: Callable[[], int] | None = None,
    ) -> None:
        self._journal = journal
        self._max_batch = 1 if always else max_batch
        # Where the syncs run: the C syncer's thread, which never takes the interpreter lock;
        # the executor (None: the loop's default one) when there is none, and for the syncs
        # the journal itself must do (begin_sync() says which).
        self._syncer = syncer
        self._syncer_watched = False
        self._synced: asyncio.Future[None] | None = None  # the C syncer's job in flight
        self._job: SyncJob | None = None
        self._executor = executor
        # group commit: the least time between two syncs' starts (store.sync_interval); each
        # sync costs the CPU that runs it ~100-250 µs in the kernel, and each batch costs the
        # decisions ~250 µs of the loop's thread: its wake-ups, and the caches they leave cold
        # for the next millisecond of decisions (bench/writes.py --only hotpath)
        self._interval = 0.0 if always else interval
        self._last_sync = -math.inf
        # The interval protects the decisions; when none were made since the last sync (an API
        # client writing on an idle server), a sync costs nobody anything and starts at once:
        # a server pinned to one CPU (20 ms) gave 32 API clients 1,530 writes/s waiting, less
        # than fsync = "always" (1,948/s). ``activity``: a count that grows with every RADIUS
        # request answered (None: always busy, the interval always applies).
        self._activity = activity
        self._activity_at_sync = -1
        self._live = live  # the current live table (it is swapped by compaction)
        self._on_applied = on_applied
        self._on_failed = on_failed
        self.failure: OSError | None = None  # the journal's, once a sync failed
        self._pending: deque[tuple[Any, asyncio.Future[int]]] = deque()
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()  # a batch's sync and compaction's rotate() never overlap
        self.commits = 0  # fsyncs done
        self.records = 0  # records made durable
        self.last_durable = 0

    def submit(self, command: Any) -> asyncio.Future[int]:
        """Schedule a write; the future resolves with its seq once durable.

        The future fails with ``check``'s error (nothing is journaled then) when its batch is
        formed: against the table as every earlier write left it (e.g. terminate, then activate,
        both in flight). Checking here as well, to refuse the plainly wrong a moment sooner,
        cost each write a second check, ~17 µs in the decisions' thread between datagrams
        (bench/writes.py), for an answer that comes within milliseconds anyway.
        """
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        self._wakeup.set()
        return future

    async def run(self) -> None:
        """Make pending writes durable and apply them, batch after batch (cancel to stop)."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Make every write submitted so far durable and apply it, or fail it (``failure``)."""
        async with self._lock:
            while self._pending:
                wait = self._last_sync + self._interval - time.monotonic()
                if wait > 0 and self._busy():  # more writes may come meanwhile and share it
                    await asyncio.sleep(wait)
                batch = self._form_batch()
                if not batch:
                    continue
                try:
                    await self._sync()
                except OSError as error:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    self._failed(error)
                    continue
                self.commits += 1
                live = self._live()
                for seq, command, future in batch:
                    changed = live.apply(seq, command)
                    self.records += 1
                    self.last_durable = seq
                    if self._on_applied is not None:
                        self._on_applied(seq, command, changed)
                    if not future.done():
                        future.set_result(seq)

    def _busy(self) -> bool:
        """Whether RADIUS requests were answered since the last sync began."""
        return self._activity is None or self._activity() != self._activity_at_sync

    async def _sync(self) -> None:
        """Make everything journaled so far durable, off the event loop's thread."""
        self._last_sync = time.monotonic()
        if self._activity is not None:
            self._activity_at_sync = self._activity()
        loop = asyncio.get_running_loop()
        job = self._journal.begin_sync() if self._syncer is not None else None
        if job is None:
            await loop.run_in_executor(self._executor, self._journal.sync)
            return
        assert self._syncer is not None
        synced: asyncio.Future[None] = loop.create_future()
        try:  # from begin_sync() on, end_sync() must follow whatever happens
            if not self._syncer_watched:
                loop.add_reader(self._syncer.fileno(), self._collect)
                self._syncer_watched = True
            self._syncer.submit(job.handle, job.data, job.offset, job.fsync)
        except (RuntimeError, ValueError, OSError):  # the syncer is closed: a thread runs the job

            def ran(future: asyncio.Future[None]) -> None:
                failure = None if future.cancelled() else future.exception()
                if failure is not None and not isinstance(failure, OSError):
                    failure = OSError(f"journal sync failed: {failure!r}")
                self._finish(job, failure, synced)

            loop.run_in_executor(self._executor, run_job, job).add_done_callback(ran)
        else:
            self._job, self._synced = job, synced
        # A cancelled flush cancels ``synced`` and nothing else: the job runs on, and whatever
        # ran it ends it (_collect or ran: _finish ends the job first and sets ``synced`` only
        # when it is not done). perf: awaited as it is, not through asyncio.shield(), whose
        # outer future and two callbacks were a tenth of a batch's machinery.
        await synced

    def _collect(self) -> None:
        """The syncer's eventfd is readable: end its job (the journal's sync lock with it)."""
        if self._syncer is None:
            return
        error: OSError | None = None
        try:  # reads the eventfd whatever follows: a readable one would call this again
            if not self._syncer.complete():
                return
        except OSError as failed:
            error = failed
        job, synced = self._job, self._synced
        if job is None or synced is None:
            return
        self._job = self._synced = None
        self._finish(job, error, synced)

    def _finish(self, job: SyncJob, error: OSError | None, synced: asyncio.Future[None]) -> None:
        """End a job begin_sync() took (releasing the journal's sync lock), whatever ran it."""
        try:
            self._journal.end_sync(job, error)
        except OSError as failed:
            if not synced.done():
                synced.set_exception(failed)
            return
        if not synced.done():
            synced.set_result(None)

    def close(self) -> None:
        """Stop the C syncer's thread (after a job in flight, whose end is collected)."""
        if self._syncer is None:
            return
        if self._syncer_watched:
            asyncio.get_running_loop().remove_reader(self._syncer.fileno())
            self._syncer_watched = False
        self._syncer.close()
        self._collect()
        self._syncer = None

    def _form_batch(self) -> list[tuple[int, Any, asyncio.Future[int]]]:
        """Check and journal the next writes that can share one fsync.

        Each write is checked against the table as every earlier write left it: a batch holds
        at most one write per SIM (or group), and the next write to it waits for the next
        batch, when the earlier one is applied; at most ``max_batch`` writes (``fsync =
        "always"``: one).
        """
        live = self._live()
        batch: list[tuple[int, Any, asyncio.Future[int]]] = []
        touched: set[str] = set()
        pending = self._pending
        limit = self._max_batch
        while pending and len(batch) < limit:
            command, future = pending[0]
            keys = _keys(command)
            if touched & keys:
                break
            pending.popleft()
            try:
                command = live.check(command)  # the canonical form is what is journaled
            except Exception as error:  # noqa: BLE001 - the caller gets the check's refusal
                if not future.done():
                    future.set_exception(error)
                continue
            try:
                seq = self._journal.append(command.to_json())
            except OSError as error:  # the journal failed earlier: nothing more is durable
                if not future.done():
                    future.set_exception(error)
                self._failed(error)
                continue
            batch.append((seq, command, future))
            touched |= keys
        return batch

    def _failed(self, error: OSError) -> None:
        if self.failure is None:
            self.failure = error
            if self._on_failed is not None:
                self._on_failed(error)

    @property
    def interval(self) -> float:
        """The least time between two syncs' starts (0 with ``fsync = "always"``)."""
        return self._interval

    @property
    def lock(self) -> asyncio.Lock:
        """Held while a batch is synced; compaction takes it to rotate the journal."""
        return self._lock


#: store.sync_interval when it is not set, by where the journal's syncs run (sync_interval())
INTERVAL: Final = 0.010
ONE_CPU_INTERVAL: Final = 0.020


def sync_interval(
    configured: float | None, io_cpus: Collection[int], cpus: Collection[int]
) -> float:
    """Return store.sync_interval as configured, else chosen by where the syncs run.

    ``cpus``: the CPUs the process may use (its affinity at start-up). When that is one CPU
    and store.io_cpus does not move the syncs elsewhere, every sync and every batch runs on
    the decisions' CPU, and halving them pays: at 1,000 writes/s with a compaction, 20 ms
    left the decisions 0.930 and 0.932 of their read-only rate, 10 ms 0.894 and 0.886
    (bench/writes.py, same-cpu mode, in turn). With the syncs on another CPU, 20 ms bought
    only ~1.4% (0.943 against 0.929), not worth twice the wait for writes one at a time.
    """
    if configured is not None:
        return configured
    shared = len(cpus) == 1 and (not io_cpus or set(io_cpus) <= set(cpus))
    return ONE_CPU_INTERVAL if shared else INTERVAL


def process_cpus() -> set[int]:
    """The CPUs this process may run on (all of them where the OS cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def sync_executor(cpus: Collection[int]) -> Executor | None:
    """One thread for the journal's syncs, pinned to ``cpus`` (store.io_cpus); None: no CPUs
    given, the syncs run in the loop's default executor, wherever the server runs.

    Why: a durable write costs the CPU that submits it ~250 µs (bench/writes.py: 180 O_DSYNC
    writes/s from the decisions' CPU took 4.6% of its decisions, from the other CPU none).

    The thread is pinned by its first task, here, so that CPUs the process may not use (a
    cpuset, an offline CPU) stop start-up instead of the first write.

    Raises:
        ValueError: the thread cannot run on ``cpus``; the message names store.io_cpus.
    """
    if not cpus:
        return None
    chosen = set(cpus)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-sync")
    try:  # pid 0: the calling thread, the executor's only worker
        executor.submit(os.sched_setaffinity, 0, chosen).result()
    except OSError as error:
        executor.shutdown(wait=True)
        raise _refused(chosen, error) from None
    return executor


def journal_syncer(cpus: Collection[int]) -> Syncer | None:
    """The C syncer (core/store/_syncer.c), its thread pinned to ``cpus`` (store.io_cpus) when
    given; None without the extension (not built, not Linux, SIMGATE_PURE_PYTHON=1).

    Raises:
        ValueError: the thread cannot run on ``cpus``; the message names store.io_cpus.
    """
    if os.environ.get("SIMGATE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from core.store._syncer import Syncer as CSyncer
    except ImportError:
        return None
    try:
        return CSyncer(sorted(cpus) if cpus else None)
    except OSError as error:
        raise _refused(cpus, error) from None


def _refused(cpus: Collection[int], error: OSError) -> ValueError:
    """The start-up error for CPUs the process may not use, naming the setting."""
    return ValueError(f"store.io_cpus: cannot run on CPUs {sorted(cpus)}: {error}")


def _keys(command: Any) -> set[str]:
    """What a write touches, for keeping two writes to one thing out of one batch."""
    sim_id = getattr(command, "sim_id", None)  # SetLock, UnsetLock, SetStatus
    if isinstance(sim_id, str):
        return {"sim:" + sim_id}
    document = getattr(command, "document", None)
    if isinstance(document, dict):
        if "simId" in document:
            imsis = [document.get("imsi")]
            imsis += [
                sub.get("imsi")
                for sub in document.get("virtualSubscribers") or ()
                if isinstance(sub, dict)
            ]
            return {f"sim:{document['simId']}", *(f"imsi:{imsi}" for imsi in imsis)}
        return {f"group:{document.get('groupId')}"}
    return {f"sim:{sim_id or ''}"}
