"""The commit loop: writes are durable before they are applied, checked against every earlier
write, and fsynced one by one when asked to."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from core.provision import import_file
from core.service.commit import CommitLoop, sync_executor
from core.store.commands import CommandError, SetLock, SetStatus
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
