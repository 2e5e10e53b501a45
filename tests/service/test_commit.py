"""The commit loop: writes are durable before they are applied, checked against every earlier
write, and fsynced one by one when asked to."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core.provision import import_file
from core.service.commit import (
    INTERVAL,
    ONE_CPU_INTERVAL,
    CommitLoop,
    journal_syncer,
    sync_executor,
    sync_interval,
)
from core.store.commands import CommandError, SetLock, SetStatus, UnknownSim
from core.store.journal import read_journal
from core.store.journal_writer import JournalWriter
from core.store.live import LiveTable
from core.store.records import Status
from core.store.recovery import open_live

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[LiveTable, JournalWriter, Path]]:
    lines = [{"simId": str(n), "imsi": f"44010000000000{n}"} for n in range(1, 4)]
    source = tmp_path / "p.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    import_file(source, tmp_path / "data", seq=1, now=0.0)
    live, journal, _ = open_live(tmp_path / "data")
    yield live, journal, tmp_path / "data"
    journal.close()
    live.close()


async def test_a_write_is_checked_against_the_writes_before_it(
    opened: tuple[LiveTable, JournalWriter, Path],
) -> None:
    live, journal, _ = opened
    commit = CommitLoop(journal, lambda: live)
    terminate = commit.submit(SetStatus("1", Status.TERMINATED))
    revive = commit.submit(SetStatus("1", Status.ACTIVE))  # both in flight at once
    await commit.flush()
    assert await terminate > 0
    with pytest.raises(CommandError, match="terminated"):
        await revive
    sim = live.sim("1")
    assert sim is not None
    assert sim.status == Status.TERMINATED  # terminated for good


async def test_writes_to_different_sims_share_one_fsync(
    opened: tuple[LiveTable, JournalWriter, Path],
) -> None:
    live, journal, _ = opened
    commit = CommitLoop(journal, lambda: live)
    futures = [commit.submit(SetStatus(str(n), Status.SUSPENDED)) for n in range(1, 4)]
    await commit.flush()
    assert [await future for future in futures] == [2, 3, 4]
    assert commit.commits == 1


async def test_a_burst_is_made_durable_in_batches_of_at_most_max_batch(
    opened: tuple[LiveTable, JournalWriter, Path],
) -> None:
    live, journal, data = opened
    commit = CommitLoop(journal, lambda: live, max_batch=2)
    futures = [commit.submit(SetStatus(str(n), Status.SUSPENDED)) for n in range(1, 4)]
    await commit.flush()
    assert [await future for future in futures] == [2, 3, 4]
    assert commit.commits == 2
    records, _ = read_journal(data, 1, repair=False)
    assert [seq for seq, _ in records] == [2, 3, 4]


async def test_fsync_always_gives_every_write_its_own_fsync(
    opened: tuple[LiveTable, JournalWriter, Path],
) -> None:
    live, journal, data = opened
    commit = CommitLoop(journal, lambda: live, always=True)
    futures = [commit.submit(SetStatus(str(n), Status.SUSPENDED)) for n in range(1, 4)]
    await commit.flush()
    await asyncio.gather(*futures)
    assert commit.commits == 3
    records, _ = read_journal(data, 1, repair=False)
    assert [seq for seq, _ in records] == [2, 3, 4]


async def test_a_lost_first_connect_race_fails_the_second_lock(
    opened: tuple[LiveTable, JournalWriter, Path],
) -> None:
    live, journal, _ = opened
    commit = CommitLoop(journal, lambda: live)
    first = commit.submit(SetLock("2", 35387923425263, "35387923425263", False, if_unlocked=True))
    second = commit.submit(SetLock("2", 49015420323751, "49015420323751", False, if_unlocked=True))
    await commit.flush()
    await first
    with pytest.raises(CommandError):
        await second
    sim = live.sim("2")
    assert sim is not None
    assert sim.lock == 35387923425263


async def test_a_sync_executor_runs_the_syncs_on_its_cpus(
    opened: tuple[LiveTable, JournalWriter, Path],
) -> None:
    live, journal, data = opened
    cpu = max(os.sched_getaffinity(0))
    executor = sync_executor([cpu])
    assert executor is not None and sync_executor([]) is None
    seen: list[set[int]] = []
    sync = journal.sync

    def watched_sync() -> int:
        seen.append(os.sched_getaffinity(0))  # pid 0: the thread running the sync
        return sync()

    journal.sync = watched_sync  # type: ignore[method-assign]
    try:
        commit = CommitLoop(journal, lambda: live, executor=executor)
        written = commit.submit(SetStatus("1", Status.SUSPENDED))
        await commit.flush()
        assert await written == 2
    finally:
        executor.shutdown(wait=True)
    assert seen == [{cpu}]
    records, _ = read_journal(data, 1, repair=False)
    assert [seq for seq, _ in records] == [2]


async def test_cpus_the_process_may_not_use_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(pid: int, cpus: set[int]) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)  # as for a CPU outside the cpuset
    with pytest.raises(ValueError, match=r"^store\.io_cpus: cannot run on CPUs \[1\]"):
        sync_executor([1])
    assert not [t for t in threading.enumerate() if t.name.startswith("journal-sync")]


@pytest.fixture
def c_syncer() -> Iterator[Any]:
    syncer = journal_syncer([])
    if syncer is None:
        pytest.skip("the C syncer is not built (or SIMGATE_PURE_PYTHON=1)")
    yield syncer
    syncer.close()


async def test_the_c_syncer_makes_each_batch_durable_before_it_is_applied(
    opened: tuple[LiveTable, JournalWriter, Path], c_syncer: Any
) -> None:
    live, journal, data = opened
    commit = CommitLoop(journal, lambda: live, syncer=c_syncer)
    assert journal.wait_for_spare(10)
    # the first segment (appended, fsynced) by the C thread; then the move to the zeroed spare
    # (a rename and directory fsyncs) in a Python thread; then O_DSYNC writes by the C thread
    for round_, jobs in enumerate((1, 1, 2)):
        futures = [commit.submit(SetStatus(str(n), Status.SUSPENDED)) for n in range(1, 4)]
        await commit.flush()
        await asyncio.gather(*futures)
        assert (commit.commits, c_syncer.jobs) == (round_ + 1, jobs)
    assert journal.preallocated > 0
    records, _ = read_journal(data, 1, repair=False)
    assert [seq for seq, _ in records] == list(range(2, 11))
    assert journal.durable_seq == 10
    commit.close()


async def test_a_failed_c_sync_fails_its_writes_and_the_journal(
    opened: tuple[LiveTable, JournalWriter, Path], c_syncer: Any, tmp_path: Path
) -> None:
    live, journal, _ = opened
    commit = CommitLoop(journal, lambda: live, syncer=c_syncer)
    good = journal._handle
    journal._handle = os.open(tmp_path / "read-only", os.O_RDONLY | os.O_CREAT)  # EBADF on write
    try:
        written = commit.submit(SetStatus("1", Status.SUSPENDED))
        await commit.flush()  # fails the batch, not the caller of flush (stop() is one)
        with pytest.raises(OSError):
            await written
        assert isinstance(commit.failure, OSError)
        with pytest.raises(OSError):  # failed for good: what reached the file is unknown
            journal.append(b"{}")
        later = commit.submit(SetStatus("2", Status.SUSPENDED))
        await asyncio.wait_for(commit.flush(), 5.0)
        with pytest.raises(OSError):  # at once, with the same error: nothing waits for a sync
            await later
        assert live.sim("1").status == Status.ACTIVE  # type: ignore[union-attr]  # not applied
        assert live.sim("2").status == Status.ACTIVE  # type: ignore[union-attr]
    finally:
        os.close(journal._handle)
        journal._handle = good
    commit.close()


async def test_a_flush_cancelled_during_a_c_job_leaves_the_job_to_end(
    opened: tuple[LiveTable, JournalWriter, Path], c_syncer: Any
) -> None:
    live, journal, data = opened
    commit = CommitLoop(journal, lambda: live, syncer=c_syncer)
    commit.submit(SetStatus("1", Status.SUSPENDED))
    flushing = asyncio.create_task(commit.flush())
    while commit._job is None:  # noqa: ASYNC110 - no event says the job was handed over
        await asyncio.sleep(0)  # (to the C thread; only this loop can collect it)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    for _ in range(500):  # the loop collects the job from the eventfd
        if journal.durable_seq == 2:
            break
        await asyncio.sleep(0.01)
    assert journal.durable_seq == 2 and commit._job is None
    later = commit.submit(SetStatus("2", Status.SUSPENDED))  # the journal's lock was released
    await asyncio.wait_for(commit.flush(), 5.0)
    assert await later == 3
    records, _ = read_journal(data, 1, repair=False)
    assert [seq for seq, _ in records] == [2, 3]
    commit.close()


async def test_a_busy_journal_lock_sends_the_sync_to_the_thread_path(
    opened: tuple[LiveTable, JournalWriter, Path], c_syncer: Any
) -> None:
    """trim() in another thread holds the journal's sync lock: the sync waits in a thread
    instead of the event loop."""
    live, journal, data = opened
    commit = CommitLoop(journal, lambda: live, syncer=c_syncer)
    journal._sync_lock.acquire()
    threading.Timer(0.05, journal._sync_lock.release).start()
    written = commit.submit(SetStatus("1", Status.SUSPENDED))
    await commit.flush()
    assert await written == 2
    assert c_syncer.jobs == 0 and commit.commits == 1
    records, _ = read_journal(data, 1, repair=False)
    assert [seq for seq, _ in records] == [2]
    commit.close()


async def test_writes_within_the_sync_interval_share_the_next_sync(
    opened: tuple[LiveTable, JournalWriter, Path],
) -> None:
    live, journal, _ = opened
    commit = CommitLoop(journal, lambda: live, interval=0.3)
    runner = asyncio.create_task(commit.run())
    try:
        began = time.monotonic()
        assert await commit.submit(SetStatus("1", Status.SUSPENDED)) == 2
        assert time.monotonic() - began < 0.25  # a lone write waits for no interval
        synced = time.monotonic()
        second = commit.submit(SetStatus("2", Status.SUSPENDED))
        await asyncio.sleep(0.05)
        third = commit.submit(SetStatus("3", Status.SUSPENDED))
        assert await asyncio.gather(second, third) == [3, 4]
        assert time.monotonic() - synced >= 0.25  # they waited out the interval ...
        assert commit.commits == 2  # ... and shared one sync
    finally:
        runner.cancel()


async def test_with_no_decisions_since_the_last_sync_the_next_one_starts_at_once(
    opened: tuple[LiveTable, JournalWriter, Path],
) -> None:
    live, journal, _ = opened
    answered = [0]  # RADIUS requests answered, as the server counts its replies
    commit = CommitLoop(journal, lambda: live, interval=5.0, activity=lambda: answered[0])
    runner = asyncio.create_task(commit.run())
    try:
        assert await commit.submit(SetStatus("1", Status.SUSPENDED)) == 2
        # an idle server: the next write does not wait out the interval
        assert await asyncio.wait_for(commit.submit(SetStatus("2", Status.SUSPENDED)), 2.0) == 3
        answered[0] += 1  # a request was decided: the interval protects the decisions again
        third = commit.submit(SetStatus("3", Status.SUSPENDED))
        await asyncio.sleep(0.3)
        assert not third.done() and commit.commits == 2
    finally:
        runner.cancel()


async def test_fsync_always_ignores_the_sync_interval(
    opened: tuple[LiveTable, JournalWriter, Path],
) -> None:
    live, journal, _ = opened
    commit = CommitLoop(journal, lambda: live, always=True, interval=5.0)
    futures = [commit.submit(SetStatus(str(n), Status.SUSPENDED)) for n in range(1, 4)]
    await asyncio.wait_for(commit.flush(), 2.0)
    assert [await future for future in futures] == [2, 3, 4]
    assert commit.commits == 3


async def test_a_refused_write_fails_its_future_and_is_not_journaled(
    opened: tuple[LiveTable, JournalWriter, Path],
) -> None:
    live, journal, data = opened
    commit = CommitLoop(journal, lambda: live)
    unknown = commit.submit(SetStatus("no-such-sim", Status.SUSPENDED))  # no error yet
    fine = commit.submit(SetStatus("1", Status.SUSPENDED))
    await commit.flush()
    with pytest.raises(UnknownSim):
        await unknown
    assert await fine == 2
    records, _ = read_journal(data, 1, repair=False)
    assert [seq for seq, _ in records] == [2]


async def test_a_job_the_c_syncer_refuses_is_made_durable_by_a_thread(
    opened: tuple[LiveTable, JournalWriter, Path], c_syncer: Any
) -> None:
    """A closed syncer (shutting down) refuses the job begin_sync() took: the records must
    still reach the disk before the write is acknowledged, not be counted durable unwritten."""
    live, journal, data = opened
    commit = CommitLoop(journal, lambda: live, syncer=c_syncer)
    c_syncer.close()
    written = commit.submit(SetStatus("1", Status.SUSPENDED))
    await commit.flush()
    assert await written == 2
    assert journal.durable_seq == 2 and c_syncer.jobs == 0
    records, _ = read_journal(data, 1, repair=False)
    assert [seq for seq, _ in records] == [2]


@pytest.mark.parametrize(
    ("configured", "io_cpus", "cpus", "chosen"),
    [
        (None, (), {0, 1}, INTERVAL),  # syncs may run beside the decisions
        (None, (1,), {0, 1}, INTERVAL),
        (None, (), {0}, ONE_CPU_INTERVAL),  # pinned to one CPU: syncs share it
        (None, (0,), {0}, ONE_CPU_INTERVAL),
        (None, (1,), {0}, INTERVAL),  # io_cpus moves them off it
        (0.003, (), {0}, 0.003),  # a configured interval is kept
        (0.0, (1,), {0, 1}, 0.0),
    ],
)
async def test_the_sync_interval_follows_where_the_syncs_run(
    configured: float | None, io_cpus: tuple[int, ...], cpus: set[int], chosen: float
) -> None:
    assert sync_interval(configured, io_cpus, cpus) == chosen
