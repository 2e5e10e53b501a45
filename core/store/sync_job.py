"""One journal sync's write, as a value: what JournalWriter.begin_sync() hands to the thread
that makes it durable (core/store/_syncer.c, or run_job() in a Python thread).

Owns: the job's fields and the Python way of running it.

Must not: import asyncio or anything above core.store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SyncJob:
    """One sync's write: ``data`` at ``offset`` of ``handle``, then fsync() when ``fsync``;
    ``upto`` is durable once it ran."""

    handle: int
    data: bytearray
    offset: int
    fsync: bool
    upto: int


def run_job(job: SyncJob) -> None:
    """Run a SyncJob in this thread (what core.store._syncer does without the GIL).

    Raises:
        OSError: the write or the fsync failed.
    """
    view, at = memoryview(job.data), job.offset
    while view:
        done = os.pwrite(job.handle, view, at)
        view, at = view[done:], at + done
    if job.fsync:
        os.fsync(job.handle)
