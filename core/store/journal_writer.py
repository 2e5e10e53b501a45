"""Writing the journal (format in core.store.journal): JournalWriter.

Owns: appending records to the newest segment and making them durable (sync), rotating to a new
segment, trimming the segments a snapshot covers, and the spare segment kept zeroed for the
next rotation.

Why zeros. A sync after an append changes the file's size, which the file system must commit
through its own journal: on ext4 that made ~72 µs of CPU per one-record sync, against ~50 µs
when the record overwrites blocks already written and only data has to reach the disk (the
segment is opened O_DSYNC: one pwrite per sync, durable when it returns). So a segment is
first written full of zeros (real zeros, not fallocate(): an unwritten extent needs metadata on
its first write) and made durable; records then overwrite the zeros in place. Zeroing 16 MiB is
slow, so it never happens on the caller's path: a daemon thread prepares ONE spare file,
``journal/spare.tmp`` (not a segment name), and a rotation renames it to the new segment's
name. Without a ready spare a segment is created empty and appended to with os.fsync(), as with
``preallocate=0``; so is the first segment a writer starts (start-up does not wait for zeros,
and a spare left by a crash is deleted, not trusted: it may be short or not durable). The
first sync that finds a spare ready moves to it, from an appended segment that holds records,
or from a zeroed one that is full (which grows meanwhile: correct, only slower).

Invariants:
- A segment is only ever written by one JournalWriter, from its start onward without gaps, and
  never again once the writer rotated past it.
- sync() returns only once the records are durable: an O_DSYNC pwrite (os.fsync() after the
  write for an appended segment); a new segment's directory entry is fsynced before records go
  into it, and the directory again after trim() removes segments. A spare is fdatasynced full
  of zeros before it becomes one.

Must not: interpret payloads; import asyncio, the RADIUS codec, the policy, logging, metrics or
time. JournalWriter is not an asyncio object: the service may call sync() in a worker thread
while it goes on calling append() (one sync(), rotate(), trim() or close() at a time). The
zeroing thread touches only the spare file, and hands it over by an Event, under the sync lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Final

from core.store.journal import (
    DIRECTORY,
    JournalError,
    frame,
    fsync_directory,
    list_segments,
    segment_path,
)
from core.store.sync_job import SyncJob, run_job

#: The zeroed file the next segment is made of (list_segments() never lists it).
SPARE: Final = "spare.tmp"
_ZEROS: Final = bytes(1 << 20)  # written 1 MiB at a time: the zeroing thread stops in between


class JournalWriter:
    """Append records to the journal's newest segment and make them durable.

    ``next_seq`` is the sequence the first append() gets: the last record recovered plus one.
    The writer starts a segment of its own named for it. After a failed sync() every call
    raises: what reached the file is unknown, and recovery (read_journal) sorts it out.

    ``preallocate``: the size of the zeroed segments a rotation moves to (the module's docstring);
    0 keeps no spare, and every segment is appended to and fsynced.
    """

    def __init__(
        self, data_dir: str | os.PathLike[str], next_seq: int, *, preallocate: int = 16 << 20
    ) -> None:
        if preallocate < 0:
            raise ValueError(f"preallocate must be 0 or more, not {preallocate}")
        self.data_dir = Path(data_dir)
        self.directory = self.data_dir / DIRECTORY
        self.directory.mkdir(parents=True, exist_ok=True)
        for first, path in list_segments(self.data_dir):
            if first > next_seq:
                raise JournalError(path, 0, f"begins after sequence {next_seq}, the next to write")
        self.preallocate = preallocate
        self._lock = threading.Lock()  # guards _pending and _next_seq (append vs sync)
        self._sync_lock = threading.Lock()  # one sync, rotate, trim or close at a time
        self._pending = bytearray()
        self._next_seq = next_seq
        self._durable_seq = next_seq - 1
        self._failed: OSError | None = None
        self.written = 0  # bytes of records synced into the current segment
        self._zeroed = 0  # the current segment's preallocated size; 0: it is appended to
        self._spare = self.directory / SPARE
        self._spare_ready = threading.Event()  # set by the zeroing thread once the spare is durable
        self._stopping = threading.Event()  # close(): the zeroing thread gives up
        self._zeroing: threading.Thread | None = None
        self._spare.unlink(missing_ok=True)  # a crash's leftover: maybe short, maybe not durable
        self.first_seq = next_seq
        self.path = segment_path(self.data_dir, next_seq)
        self._handle = self._create(self.path)
        self._prepare_spare()

    @property
    def next_seq(self) -> int:
        """The sequence number the next append() gets."""
        return self._next_seq

    @property
    def durable_seq(self) -> int:
        """The last sequence number made durable (next_seq - 1 at start)."""
        return self._durable_seq

    @property
    def preallocated(self) -> int:
        """The current segment's zeroed size: 0 when it is appended to."""
        return self._zeroed

    def wait_for_spare(self, timeout: float | None = None) -> bool:
        """Wait until a zeroed spare is ready for the next rotation; return whether it is."""
        return self.preallocate > 0 and self._spare_ready.wait(timeout)

    def append(self, payload: bytes) -> int:
        """Frame a payload after the last record and return its seq; durable after sync()."""
        if self._failed is not None:
            raise self._failed
        with self._lock:
            seq = self._next_seq
            self._pending += frame(seq, payload)
            self._next_seq = seq + 1
        return seq

    def sync(self) -> int:
        """Write what was appended and make it durable; return the last durable seq.

        Raises:
            OSError: the write or the fdatasync (fsync) failed, or the directory entry of a
                segment the writer moved to could not be fsynced (and every later call raises
                it again).
        """
        with self._sync_lock:
            return self._sync()

    def begin_sync(self) -> SyncJob | None:
        """Take what was appended as a job for another thread to write (core.store._syncer),
        and hold the sync lock until end_sync(); None: call sync() instead, in a thread.

        None when the lock is busy (rotate, trim or close in another thread), when the
        segment first gives way to the spare (a rename and directory fsyncs, which sync()
        does), or when nothing is pending. The caller must call end_sync() once the job ran,
        whatever happened to it.

        Raises:
            OSError: an earlier sync failed (as sync()).
        """
        if self._failed is not None:
            raise self._failed
        if not self._sync_lock.acquire(blocking=False):
            return None
        try:
            if self._failed is not None:
                raise self._failed
            job = None if self._spare_due() else self._take()
        except BaseException:
            self._sync_lock.release()
            raise
        if job is None:
            self._sync_lock.release()
        return job

    def end_sync(self, job: SyncJob, error: OSError | None) -> int:
        """Record how begin_sync()'s job ended and release the sync lock; return the last
        durable seq.

        Raises:
            OSError: ``error``, which fails the writer (every later call raises it).
        """
        try:
            if error is not None:
                self._failed = error
                raise error
            self._synced(job)
            return self._durable_seq
        finally:
            self._sync_lock.release()

    def rotate(self) -> int:
        """Sync, then start a new segment; return its first seq (compact up to that minus 1).

        Raises:
            OSError: as sync(), or the new segment cannot be created.
        """
        with self._sync_lock:
            self._sync()
            first = self._durable_seq + 1
            path = segment_path(self.data_dir, first)
            if path != self.path:
                handle = self._adopt_spare(path)
                if handle is None:
                    self._switch(first, path, self._create(path), 0)
                else:
                    self._switch(first, path, handle, self.preallocate)
            return first

    def trim(self, upto_seq: int) -> list[Path]:
        """Remove the segments whose records all have seq <= ``upto_seq``; return them.

        The current segment is never removed.
        """
        with self._sync_lock:
            segments = list_segments(self.data_dir)
            removed = [
                path
                for (_, path), (following, _) in pairwise(segments)
                if following <= upto_seq + 1 and path != self.path
            ]
            for path in removed:
                path.unlink()
            if removed:
                fsync_directory(self.directory)
            return removed

    def close(self) -> None:
        """Sync what is pending (unless a sync failed), close the segment, drop the spare."""
        with self._sync_lock:
            if self._handle < 0:
                return
            try:
                if self._failed is None:
                    self._sync()
            finally:
                os.close(self._handle)
                self._handle = -1
                self._stopping.set()
                if self._zeroing is not None:
                    self._zeroing.join()
                self._spare.unlink(missing_ok=True)

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _sync(self) -> int:
        if self._failed is not None:
            raise self._failed
        if self._spare_due():
            self._move_to_spare()  # off an appended segment, or a full zeroed one
        job = self._take()
        if job is not None:
            try:
                run_job(job)
            except OSError as error:
                self._failed = error
                raise
            self._synced(job)
        return self._durable_seq

    def _spare_due(self) -> bool:
        return bool(
            self._pending
            and self.written
            and (not self._zeroed or self._zeroed <= self.written)
            and self._spare_ready.is_set()
        )

    def _take(self) -> SyncJob | None:
        """What was appended, as a write after the last synced byte; None when nothing was."""
        with self._lock:
            data, self._pending = self._pending, bytearray()
            upto = self._next_seq - 1
        if not data:
            return None
        # a zeroed segment is opened O_DSYNC: its pwrite returns durable, one system call (and,
        # in a Python thread, one wait for the interpreter lock afterwards) instead of two; an
        # appended one (O_APPEND: the offset is its size) needs fsync() for the new size
        return SyncJob(self._handle, data, self.written, not self._zeroed, upto)

    def _synced(self, job: SyncJob) -> None:
        self.written += len(job.data)
        self._durable_seq = job.upto

    def _move_to_spare(self) -> None:
        """The full preallocated segment gives way to the spare before the next records."""
        first = self._durable_seq + 1
        path = segment_path(self.data_dir, first)
        try:
            handle = self._adopt_spare(path)
        except OSError:
            if self._failed is not None:
                raise
            return  # nothing changed: the records go on growing the current segment
        if handle is not None:
            self._switch(first, path, handle, self.preallocate)

    def _switch(self, first: int, path: Path, handle: int, zeroed: int) -> None:
        os.close(self._handle)
        self._handle, self.path, self.first_seq = handle, path, first
        self.written, self._zeroed = 0, zeroed
        self._prepare_spare()

    def _adopt_spare(self, path: Path) -> int | None:
        """Rename the ready spare to ``path`` and return it opened; None when none is ready.

        Raises:
            OSError: before the rename, nothing changed; after it (the directory's fsync
                failed) the writer has failed, as after a failed sync.
        """
        if not self._spare_ready.is_set():
            return None
        if self._zeroing is not None:
            self._zeroing.join()  # it set the Event last: this returns at once
        directory = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            handle = os.open(self._spare, os.O_WRONLY | os.O_DSYNC | os.O_CLOEXEC)
            try:
                if os.path.lexists(path):  # rename() would replace it
                    raise FileExistsError(errno.EEXIST, "segment exists", os.fspath(path))
                os.rename(self._spare, path)
            except BaseException:
                os.close(handle)
                raise
            self._spare_ready.clear()
            try:
                os.fsync(directory)
            except OSError as error:
                os.close(handle)
                self._failed = error
                raise
            return handle
        finally:
            os.close(directory)

    def _prepare_spare(self) -> None:
        """Start zeroing a spare unless one is ready, being zeroed, or not wanted."""
        if not self.preallocate or self._stopping.is_set() or self._spare_ready.is_set():
            return
        if self._zeroing is not None and self._zeroing.is_alive():
            return
        self._zeroing = threading.Thread(target=self._zero_spare, name="journal-spare", daemon=True)
        self._zeroing.start()

    def _zero_spare(self) -> None:
        """(The zeroing thread.) Fill a new spare with zeros, make it durable, set the Event.

        On failure or close() the spare is removed and the Event stays clear: segments are
        appended to meanwhile, and the next rotation starts another thread.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            handle = os.open(self._spare, flags, 0o600)
        except OSError:
            return  # it exists (then it is not ours to remove) or cannot be created
        done = False
        try:
            left = self.preallocate
            while left and not self._stopping.is_set():
                left -= os.write(handle, memoryview(_ZEROS)[: min(left, len(_ZEROS))])
            if not left:
                os.fdatasync(handle)  # the size too: fdatasync() covers what reading needs
                done = True
        except OSError:
            done = False
        finally:
            os.close(handle)
        if done:
            self._spare_ready.set()
        else:
            with contextlib.suppress(OSError):
                self._spare.unlink(missing_ok=True)

    def _create(self, path: Path) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        handle = os.open(path, flags, 0o600)
        if os.fstat(handle).st_size:
            os.close(handle)
            raise JournalError(path, 0, "already holds records: the journal was not replayed")
        fsync_directory(path.parent)
        return handle
