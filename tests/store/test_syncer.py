"""core/store/_syncer.c: the journal's writes and fsyncs in a thread without the interpreter
lock (Linux)."""

from __future__ import annotations

import errno
import os
import select
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

syncer_module = pytest.importorskip("core.store._syncer")
Syncer = syncer_module.Syncer


@pytest.fixture
def syncer() -> Iterator[object]:
    made = Syncer()
    yield made
    made.close()


def _wait(syncer: object, limit: float = 5.0) -> bool:
    """Wait for the eventfd, then collect the job."""
    ready, _, _ = select.select([syncer.fileno()], [], [], limit)  # type: ignore[attr-defined]
    assert ready, "the syncer never signalled"
    return bool(syncer.complete())  # type: ignore[attr-defined]


def _task_named(name: str) -> int:
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/comm") as comm:
            if comm.read().strip() == name:
                return int(task)
    raise AssertionError(f"no thread named {name}")


def test_a_job_writes_its_bytes_at_its_offset_and_signals(syncer: object, tmp_path: Path) -> None:
    path = tmp_path / "segment"
    path.write_bytes(bytes(16))
    handle = os.open(path, os.O_WRONLY | os.O_DSYNC)
    try:
        assert syncer.complete() is False  # type: ignore[attr-defined]  # nothing submitted
        syncer.submit(handle, bytearray(b"abcd"), 4, False)  # type: ignore[attr-defined]
        assert _wait(syncer) is True
        assert syncer.busy is False and syncer.jobs == 1  # type: ignore[attr-defined]
        syncer.submit(handle, b"xy", 14, True)  # type: ignore[attr-defined]  # then fsync
        assert _wait(syncer) is True
    finally:
        os.close(handle)
    assert path.read_bytes() == bytes(4) + b"abcd" + bytes(6) + b"xy"


def test_an_appended_file_grows_by_the_job(syncer: object, tmp_path: Path) -> None:
    path = tmp_path / "segment"
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for offset, data in ((0, b"first "), (6, b"second")):
            syncer.submit(handle, data, offset, True)  # type: ignore[attr-defined]
            assert _wait(syncer)
    finally:
        os.close(handle)
    assert path.read_bytes() == b"first second"


def test_a_failed_write_is_reported_with_its_errno(syncer: object, tmp_path: Path) -> None:
    handle = os.open(tmp_path / "read-only", os.O_RDONLY | os.O_CREAT)
    try:
        syncer.submit(handle, b"data", 0, True)  # type: ignore[attr-defined]
        with pytest.raises(OSError) as failed:
            _wait(syncer)
        assert failed.value.errno == errno.EBADF
        assert syncer.busy is False  # type: ignore[attr-defined]  # collected: a next job may go
    finally:
        os.close(handle)


def test_one_job_at_a_time(syncer: object, tmp_path: Path) -> None:
    handle = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        syncer.submit(handle, b"one", 0, False)  # type: ignore[attr-defined]
        with pytest.raises(RuntimeError, match="in flight"):
            syncer.submit(handle, b"two", 3, False)  # type: ignore[attr-defined]
        assert _wait(syncer)
        with pytest.raises(ValueError):
            syncer.submit(-1, b"x", 0, False)  # type: ignore[attr-defined]
    finally:
        os.close(handle)


def test_close_lets_the_job_in_flight_finish(tmp_path: Path) -> None:
    syncer = Syncer()
    path = tmp_path / "f"
    handle = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        syncer.submit(handle, b"x" * (1 << 20), 0, True)
        syncer.close()
        assert syncer.complete() is True  # the result is still there after close()
        with pytest.raises(RuntimeError, match="closed"):
            syncer.submit(handle, b"y", 0, False)
    finally:
        os.close(handle)
    assert path.stat().st_size == 1 << 20


def test_the_job_finishes_while_a_busy_thread_holds_the_interpreter_lock(
    syncer: object, tmp_path: Path
) -> None:
    """A Python thread could not run before this thread gave up the lock (switch interval
    raised to 10 s); the syncer's thread does not need it."""
    handle = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    try:
        syncer.submit(handle, b"durable", 0, True)  # type: ignore[attr-defined]
        deadline = time.perf_counter() + 2.0
        jobs = 0
        while time.perf_counter() < deadline and not jobs:  # pure Python: the lock is kept
            jobs = syncer.jobs  # type: ignore[attr-defined]  # a C getter: no release
        assert jobs == 1
    finally:
        sys.setswitchinterval(interval)
        assert _wait(syncer)
        os.close(handle)


def test_the_thread_is_named_and_pinned_to_the_cpus_asked(tmp_path: Path) -> None:
    cpu = max(os.sched_getaffinity(0))
    syncer = Syncer([cpu])
    try:
        assert os.sched_getaffinity(_task_named("journal-syncer")) == {cpu}
    finally:
        syncer.close()
    with pytest.raises(ValueError, match="no such CPU"):
        Syncer([-1])
    with pytest.raises(OSError):
        Syncer([os.cpu_count() or 1])  # a CPU this machine does not have
