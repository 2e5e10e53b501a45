"""SnapshotWriter's temporary files: a commit removes what crashed writers left, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from core.store.snapshot import list_snapshots, map_snapshot
from core.store.snapshot_writer import SnapshotWriter

OLD = 1_000_000_000.0  # 2001-09-09: before any writer of these tests


def _commit(data_dir: Path, seq: int) -> Path:
    with SnapshotWriter(data_dir, seq, 0.0) as writer:
        writer.add_sim(440100000000001, "a", b'{"simId":"a"}')
        return writer.commit([])


def _leave(path: Path, mtime: float = OLD) -> Path:
    """Leave a file as a crashed writer would (nobody holds its lock), last changed at mtime."""
    path.write_bytes(b"half a snapshot")
    os.utime(path, (mtime, mtime))
    return path


def _temporaries(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "snapshots").glob(".*.tmp"))


def test_commit_removes_crashed_writers_temporary_files(tmp_path: Path) -> None:
    directory = tmp_path / "snapshots"
    directory.mkdir()
    crashed = [_leave(directory / ".a1b2c3d4.tmp"), _leave(directory / ".zz.tmp")]
    path = _commit(tmp_path, 1)
    assert not any(file.exists() for file in crashed)
    assert _temporaries(tmp_path) == []
    map_snapshot(path).close()


def test_commit_keeps_newer_temporary_files_and_everything_else(tmp_path: Path) -> None:
    directory = tmp_path / "snapshots"
    directory.mkdir()
    older = _commit(tmp_path, 1)
    newer = _leave(directory / ".later.tmp", mtime=time.time() + 3600)
    others = [_leave(directory / "notes.tmp"), _leave(directory / ".hidden")]
    folder = directory / ".folder.tmp"
    folder.mkdir()
    os.utime(folder, (OLD, OLD))
    target = _leave(tmp_path / "elsewhere")
    (directory / ".link.tmp").symlink_to(target)
    _commit(tmp_path, 2)
    assert newer.exists() and folder.is_dir() and target.exists()
    assert all(file.exists() for file in others)
    assert (directory / ".link.tmp").is_symlink()
    assert [seq for seq, _ in list_snapshots(tmp_path)] == [2, 1]
    map_snapshot(older).close()


def test_commit_keeps_a_live_writers_temporary_file_however_old(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, 2, 0.0) as live:
        live.add_sim(440100000000002, "b", b'{"simId":"b"}')
        [temporary] = _temporaries(tmp_path)
        os.utime(temporary, (OLD, OLD))  # e.g. busy building a 10M-SIM index: no writes
        _commit(tmp_path, 1)
        assert _temporaries(tmp_path) == [temporary]
        path = live.commit([])
    assert _temporaries(tmp_path) == []
    map_snapshot(path).close()


def test_a_killed_writers_file_is_removed_by_the_next_commit(tmp_path: Path) -> None:
    crash = (
        "import os, sys\n"
        "from core.store.snapshot_writer import SnapshotWriter\n"
        "writer = SnapshotWriter(sys.argv[1], 1, 0.0)\n"
        "writer.add_sim(440100000000001, 'a', b'{\"simId\":\"a\"}')\n"
        "writer.index()\n"
        "os._exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", crash, str(tmp_path)], timeout=60)
    assert result.returncode == 3
    [left] = _temporaries(tmp_path)
    os.utime(left, (OLD, OLD))  # file times are coarse: make "older than the writer" certain
    _commit(tmp_path, 2)
    assert _temporaries(tmp_path) == []
    assert [seq for seq, _ in list_snapshots(tmp_path)] == [2]
