"""The journal: framing, durable appends, segments, torn tails cut and corruption refused."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import threading
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.store.journal import (
    HEADER,
    SECTOR,
    JournalError,
    TornTail,
    frame,
    list_segments,
    read_journal,
    segment_path,
    unframe,
)
from core.store.journal_writer import SPARE, JournalWriter

payloads = st.lists(st.binary(max_size=80), max_size=8)
_SEQ_SIZE = 8  # the seq field, and so the bytes the CRC of an empty payload covers


@given(first=st.integers(0, 2**63), items=payloads)
def test_frame_unframe_round_trip(first: int, items: list[bytes]) -> None:
    buffer = b"".join(frame(first + n, payload) for n, payload in enumerate(items))
    found = unframe(buffer)
    assert found.records == [(first + n, payload) for n, payload in enumerate(items)]
    assert (found.good_end, found.torn) == (len(buffer), False)


def _cut_frames(items: list[bytes], data: st.DataObject) -> tuple[bytes, int, list[int], list[int]]:
    """The records of ``items`` back to back, a cut drawn somewhere in them, where each record
    ends, and the indexes of the records that end before the cut."""
    frames = [frame(n + 1, payload) for n, payload in enumerate(items)]
    buffer = b"".join(frames)
    cut = data.draw(st.integers(0, len(buffer)), label="cut")
    ends = [sum(len(f) for f in frames[: n + 1]) for n in range(len(frames))]
    return buffer, cut, ends, [n for n, end in enumerate(ends) if end <= cut]


@given(items=payloads.filter(bool), data=st.data())
def test_a_cut_buffer_keeps_the_whole_records_before_the_cut(
    items: list[bytes], data: st.DataObject
) -> None:
    buffer, cut, ends, whole = _cut_frames(items, data)
    found = unframe(buffer[:cut])
    assert found.records == [(n + 1, items[n]) for n in whole]
    assert found.good_end == (ends[whole[-1]] if whole else 0)
    assert found.torn == (cut != found.good_end)


@given(items=payloads.filter(bool), data=st.data())
def test_a_flipped_bit_stops_unframe_at_its_record(items: list[bytes], data: st.DataObject) -> None:
    frames = [frame(n + 1, payload) for n, payload in enumerate(items)]
    buffer = bytearray(b"".join(frames))
    position = data.draw(st.integers(0, len(buffer) - 1), label="position")
    buffer[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    record = 0
    while sum(len(f) for f in frames[: record + 1]) <= position:
        record += 1
    found = unframe(buffer)
    assert [seq for seq, _ in found.records] == list(range(1, record + 1))
    assert found.torn


def test_frame_layout() -> None:
    record = frame(7, b"abc")
    length, _, seq = HEADER.unpack_from(record)
    assert (length, seq, record[HEADER.size :]) == (3, 7, b"abc")
    assert HEADER.size == 16


def _write(data_dir: Path, payloads: list[bytes], next_seq: int = 1) -> Path:
    with JournalWriter(data_dir, next_seq) as writer:
        for payload in payloads:
            writer.append(payload)
        assert writer.durable_seq == next_seq - 1, "append alone is not durable"
        assert writer.sync() == next_seq - 1 + len(payloads)
        return writer.path


def _two_records_zeroed(data_dir: Path, preallocate: int) -> tuple[Path, int]:
    """Records 1 (appended) and 2 (in a zeroed segment), closed: that segment and the end of
    its records, where the next sync would have written."""
    writer = _zeroed_writer(data_dir, preallocate)
    writer.append(b"two")
    writer.sync()
    path, end = writer.path, writer.written
    writer.close()
    return path, end


def _zeroed_writer(data_dir: Path, preallocate: int = 4096) -> JournalWriter:
    """A writer whose current segment is a zeroed spare, from seq 2 on.

    A writer starts on a segment it appends to; record 1 goes there, and the rotation after it
    takes the spare, once the zeroing thread has it ready.
    """
    writer = JournalWriter(data_dir, 1, preallocate=preallocate)
    assert writer.preallocated == 0, "the first segment is appended to"
    writer.append(b"before the spare")
    assert writer.wait_for_spare(10)
    assert writer.rotate() == 2
    assert writer.preallocated == preallocate
    assert writer.path == segment_path(data_dir, 2)
    assert writer.path.stat().st_size == preallocate
    return writer


def test_writer_appends_and_read_journal_replays(tmp_path: Path) -> None:
    path = _write(tmp_path, [b"a", b"bb", b"ccc"], next_seq=5)
    assert path == segment_path(tmp_path, 5) == tmp_path / "journal" / f"journal-{5:020d}.log"
    assert read_journal(tmp_path, 4) == ([(5, b"a"), (6, b"bb"), (7, b"ccc")], None)
    assert read_journal(tmp_path, 6) == ([(7, b"ccc")], None)
    assert read_journal(tmp_path, 6, upto_seq=6) == ([], None)
    assert read_journal(tmp_path, 4, upto_seq=6) == ([(5, b"a"), (6, b"bb")], None)
    assert read_journal(tmp_path, 7) == ([], None)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_sync_and_segment_creation_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(handle: int) -> None:
        synced.append("directory" if os.path.isdir(f"/proc/self/fd/{handle}") else "file")
        real(handle)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = JournalWriter(tmp_path, 1)
    assert synced == ["directory"]
    writer.append(b"x")
    writer.append(b"y")
    assert synced == ["directory"]
    assert writer.sync() == 2
    assert synced == ["directory", "file"]
    assert writer.sync() == 2, "nothing pending: no fsync"
    assert writer.rotate() == 3
    assert synced == ["directory", "file", "directory"]
    writer.close()


def test_torn_tail_at_every_offset_of_the_last_record_is_cut(tmp_path: Path) -> None:
    path = _write(tmp_path / "source", [b"first", b"second", b"the last record"])
    whole = path.read_bytes()
    start = len(whole) - HEADER.size - len(b"the last record")
    target = segment_path(tmp_path, 1)
    target.parent.mkdir()
    for cut in range(start + 1, len(whole)):
        target.write_bytes(whole[:cut])
        records, torn = read_journal(tmp_path, 0)
        assert records == [(1, b"first"), (2, b"second")]
        assert torn == TornTail(target, start, cut - start)
        assert target.stat().st_size == start, "cut and made durable"
        assert read_journal(tmp_path, 0) == (records, None), "the second start finds it clean"


def test_a_torn_tail_of_garbage_is_cut_and_zeros_end_the_segment(tmp_path: Path) -> None:
    path = _write(tmp_path, [b"one", b"two"])
    size = path.stat().st_size
    torn = None
    for tail in (b"\xff" * 20, frame(9, b"wrong seq")[:-1], frame(3, b"torn")[:-1] + bytes(99)):
        with open(path, "ab") as file:
            file.write(tail)
        records, torn = read_journal(tmp_path, 0)
        assert [seq for seq, _ in records] == [1, 2]
        assert torn is not None and (torn.offset, torn.dropped) == (size, len(tail))
    assert "torn tail cut at offset" in str(torn)
    with open(path, "ab") as file:
        file.write(bytes(4096))
    assert read_journal(tmp_path, 0, repair=False) == ([(1, b"one"), (2, b"two")], None)
    assert path.stat().st_size == size + 4096, "a reader beside a writer leaves zeros alone"
    assert read_journal(tmp_path, 0) == ([(1, b"one"), (2, b"two")], None), "zeros: no tear"
    assert path.stat().st_size == size, "the zeros after the last record are cut all the same"


def test_reading_beside_a_writer_leaves_the_tail_alone(tmp_path: Path) -> None:
    path = _write(tmp_path, [b"one", b"two"])
    with open(path, "ab") as file:
        file.write(frame(3, b"half written")[:10])
    size = path.stat().st_size
    records, torn = read_journal(tmp_path, 0, repair=False)
    assert [seq for seq, _ in records] == [1, 2] and torn is not None
    assert path.stat().st_size == size


def test_corruption_before_the_tail_names_file_and_offset(tmp_path: Path) -> None:
    path = _write(tmp_path, [b"one", b"two", b"three"])
    data = bytearray(path.read_bytes())
    second = HEADER.size + 3
    data[second + HEADER.size] ^= 0x20  # a bit of "two" flips
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError) as caught:
        read_journal(tmp_path, 0)
    assert (caught.value.path, caught.value.offset) == (path, second)
    assert str(caught.value).startswith(f"journal {path} at offset {second}: corrupt record")
    assert path.read_bytes() == data, "nothing is cut"


def test_a_bad_record_in_an_earlier_segment_is_refused(tmp_path: Path) -> None:
    first = _write(tmp_path, [b"one", b"two"])
    _write(tmp_path, [b"three"], next_seq=3)
    with open(first, "r+b") as file:
        file.truncate(first.stat().st_size - 1)
    with pytest.raises(JournalError, match="corrupt record") as caught:
        read_journal(tmp_path, 0)
    assert caught.value.path == first
    assert [seq for seq, _ in read_journal(tmp_path, 2)[0]] == [3], "segment 1 is not needed"


def test_missing_records_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, [b"one", b"two"], next_seq=5)
    with pytest.raises(JournalError, match="records 2-4 are missing"):
        read_journal(tmp_path, 1)
    _write(tmp_path, [b"x"], next_seq=9)
    with pytest.raises(JournalError, match="named for sequence 9, 7 comes next"):
        read_journal(tmp_path, 4)


@pytest.mark.parametrize("preallocate", [0, 4096])
def test_rotate_and_trim(tmp_path: Path, preallocate: int) -> None:
    writer = JournalWriter(tmp_path, 1, preallocate=preallocate)
    assert writer.wait_for_spare(10) == bool(preallocate)
    for n in range(3):
        writer.append(b"%d" % n)
    assert writer.rotate() == 4
    assert writer.preallocated == preallocate, "the spare was ready: the segment is zeroed"
    assert writer.rotate() == 4, "an empty segment is not rotated again"
    writer.append(b"3")
    assert writer.rotate() == 5
    writer.append(b"4")
    writer.sync()
    assert [first for first, _ in list_segments(tmp_path)] == [1, 4, 5]
    assert writer.trim(2) == []
    assert writer.trim(3) == [segment_path(tmp_path, 1)]
    assert writer.trim(100) == [segment_path(tmp_path, 4)], "the current segment stays"
    writer.close()
    assert read_journal(tmp_path, 4) == ([(5, b"4")], None)


def test_a_new_writer_reuses_an_empty_segment_and_refuses_a_full_one(tmp_path: Path) -> None:
    JournalWriter(tmp_path, 1).close()
    JournalWriter(tmp_path, 1).close()
    _write(tmp_path, [b"one"])
    with pytest.raises(JournalError, match="already holds records"):
        JournalWriter(tmp_path, 1)
    with pytest.raises(JournalError, match="begins after sequence 0"):
        JournalWriter(tmp_path, 0)


@pytest.mark.parametrize("preallocate", [0, 4096])
def test_a_failed_sync_fails_every_later_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preallocate: int
) -> None:
    writer = _zeroed_writer(tmp_path, preallocate) if preallocate else JournalWriter(tmp_path, 1)
    writer.append(b"x")

    def broken(*args: object) -> None:
        raise OSError(5, "Input/output error")

    # a zeroed segment's sync is one O_DSYNC pwrite; an appended one's, write then fsync
    monkeypatch.setattr(os, "pwrite" if preallocate else "fsync", broken)
    with pytest.raises(OSError, match="Input/output"):
        writer.sync()
    monkeypatch.undo()
    for call in (writer.sync, lambda: writer.append(b"y")):
        with pytest.raises(OSError, match="Input/output"):
            call()
    writer.close()


@pytest.mark.parametrize("preallocate", [0, 4096])
def test_append_while_another_thread_syncs(tmp_path: Path, preallocate: int) -> None:
    """With 4096 zeroed bytes a segment, the writer also moves to new spares as it goes."""
    writer = _zeroed_writer(tmp_path, preallocate) if preallocate else JournalWriter(tmp_path, 1)
    base = writer.next_seq
    done = threading.Event()

    def sync_until_done() -> None:
        while not done.is_set():
            writer.sync()

    syncer = threading.Thread(target=sync_until_done)
    syncer.start()
    seqs = [writer.append(b"%d" % n) for n in range(2000)]
    done.set()
    syncer.join()
    writer.close()
    assert seqs == list(range(base, base + 2000))
    records, torn = read_journal(tmp_path, base - 1)
    assert torn is None and records == [(base + n, b"%d" % n) for n in range(2000)]
    assert not (tmp_path / "journal" / SPARE).exists(), "close() removes the spare"


# -- zeroed (preallocated) segments ----------------------------------------------------------


def test_an_all_zero_header_is_never_a_record() -> None:
    assert zlib.crc32(bytes(_SEQ_SIZE)) != 0, "the CRC of seq 0 and no payload"
    assert frame(0, b"")[4:8] != bytes(4)
    assert unframe(bytes(4096)) == ([], 0, True)


def test_records_in_a_zeroed_segment_read_back_and_its_zeros_are_no_tear(tmp_path: Path) -> None:
    writer = _zeroed_writer(tmp_path, 4096)
    items = [b"%d" % n * (n + 1) for n in range(20)]
    for payload in items:
        writer.append(payload)
        writer.sync()
    path, written = writer.path, writer.written
    writer.close()
    assert written == sum(HEADER.size + len(payload) for payload in items) < 4096
    data = path.read_bytes()
    assert len(data) == 4096, "the segment keeps its zeroed size"
    assert data[written:] == bytes(4096 - written)
    assert unframe(data[:written]).records == [(n + 2, items[n]) for n in range(20)]
    replayed = [(1, b"before the spare")] + [(n + 2, payload) for n, payload in enumerate(items)]
    assert read_journal(tmp_path, 0, repair=False) == (replayed, None)
    assert path.stat().st_size == 4096, "not repaired: the zeros stay"
    assert read_journal(tmp_path, 0) == (replayed, None), "zeros after the records: no tear"
    assert path.stat().st_size == written, "repaired: the last segment ends at its last record"
    assert not (tmp_path / "journal" / SPARE).exists(), "close() removes the unused spare"


def test_a_zeroed_segment_is_written_with_one_durable_pwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = JournalWriter(tmp_path, 1, preallocate=4096)
    writer.append(b"before the spare")
    assert writer.wait_for_spare(10)
    calls: list[str] = []
    for name in ("write", "pwrite", "fsync", "fdatasync"):
        real = getattr(os, name)

        def spy(*args: object, name: str = name, real: object = real) -> object:
            if threading.current_thread() is threading.main_thread():  # not the zeroing thread
                calls.append(name)
            return real(*args)  # type: ignore[operator]

        monkeypatch.setattr(os, name, spy)
    writer.sync()
    assert calls == ["pwrite", "fsync"], "the first segment is appended to (O_APPEND), fsynced"
    assert not fcntl.fcntl(writer._handle, fcntl.F_GETFL) & os.O_DSYNC
    calls.clear()
    writer.rotate()
    assert calls == ["fsync"], "the directory, after the spare's rename"
    calls.clear()
    writer.append(b"x")
    writer.sync()
    assert calls == ["pwrite"], "one system call: the segment is open with O_DSYNC"
    assert fcntl.fcntl(writer._handle, fcntl.F_GETFL) & os.O_DSYNC
    writer.close()


def test_preallocate_0_keeps_no_spare_and_only_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no zeroing (fdatasync of a spare), and no segment opened O_DSYNC
    monkeypatch.setattr(os, "fdatasync", lambda *args: pytest.fail("not with preallocate=0"))
    before = set(threading.enumerate())
    writer = JournalWriter(tmp_path, 1, preallocate=0)
    assert set(threading.enumerate()) <= before, "no zeroing thread"
    assert not writer.wait_for_spare(0)
    for n in range(3):
        writer.append(b"%d" % n)
        writer.sync()
        assert not fcntl.fcntl(writer._handle, fcntl.F_GETFL) & os.O_DSYNC
    assert writer.rotate() == 4
    assert not fcntl.fcntl(writer._handle, fcntl.F_GETFL) & os.O_DSYNC
    writer.append(b"3")
    writer.close()
    assert sorted(p.name for p in (tmp_path / "journal").iterdir()) == [
        segment_path(tmp_path, 1).name,
        segment_path(tmp_path, 4).name,
    ]
    assert segment_path(tmp_path, 1).stat().st_size == sum(len(frame(n, b"0")) for n in (1, 2, 3))
    with pytest.raises(ValueError, match="preallocate"):
        JournalWriter(tmp_path, 5, preallocate=-1)


def test_a_torn_record_before_the_zeros_is_cut_and_reported(tmp_path: Path) -> None:
    path, end = _two_records_zeroed(tmp_path, 4096)
    with open(path, "r+b") as file:  # what a crash in the middle of a sync can leave
        file.seek(end)
        file.write(frame(3, b"three, torn")[:-4])
    records, torn = read_journal(tmp_path, 0)
    assert records == [(1, b"before the spare"), (2, b"two")]
    assert torn == TornTail(path, end, 4096 - end), "the zeros after the tear go with it"
    assert path.stat().st_size == end
    assert read_journal(tmp_path, 0) == (records, None)


def test_a_bad_record_with_a_good_one_after_it_in_the_zeros_is_refused(tmp_path: Path) -> None:
    path, end = _two_records_zeroed(tmp_path, 4096)
    with open(path, "r+b") as file:
        file.seek(end)
        file.write(b"\xff" * 20 + frame(3, b"three") + frame(4, b"four"))
    with pytest.raises(JournalError, match="corrupt record") as caught:
        read_journal(tmp_path, 0)
    assert (caught.value.path, caught.value.offset) == (path, end)
    assert path.stat().st_size == 4096, "nothing is cut"


@pytest.mark.parametrize(
    "lost",
    ["the sector holding the header", "a whole sector inside the record"],
)
def test_a_sync_that_lost_a_sector_in_place_is_a_torn_tail(tmp_path: Path, lost: str) -> None:
    """Power went part way through a sync into zeroed blocks: a later sector of it reached the
    disk and an earlier one did not, so it still reads as zeros. Nothing of that sync was
    acknowledged: it is cut, records after the hole included, and the journal starts."""
    path, end = _two_records_zeroed(tmp_path, 8192)
    sync = frame(3, b"x" * 1500) + frame(4, b"four") + frame(5, b"five")
    image = bytearray(path.read_bytes())
    image[end : end + len(sync)] = sync
    if lost == "the sector holding the header":
        hole = (end, -(-end // SECTOR) * SECTOR)  # from the record's start to its sector's end
    else:
        start = -(-end // SECTOR) * SECTOR + SECTOR
        hole = (start, start + SECTOR)
    image[hole[0] : hole[1]] = bytes(hole[1] - hole[0])
    assert hole[1] < end + len(sync) - len(frame(4, b"four")), "records 4 and 5 survive it"
    path.write_bytes(image)

    records, torn = read_journal(tmp_path, 0)
    assert [seq for seq, _ in records] == [1, 2]
    assert torn is not None and (torn.path, torn.offset) == (path, end)
    assert path.stat().st_size == end


def test_damage_that_is_not_zeros_before_a_good_record_is_still_refused(tmp_path: Path) -> None:
    path, end = _two_records_zeroed(tmp_path, 8192)
    record = bytearray(frame(3, b"x" * 1500))
    record[700] ^= 0x01  # a flipped bit, not a lost write
    with open(path, "r+b") as file:
        file.seek(end)
        file.write(bytes(record) + frame(4, b"four"))
    with pytest.raises(JournalError, match="corrupt record"):
        read_journal(tmp_path, 0)


def test_zeros_after_the_records_of_an_earlier_segment_are_its_end(tmp_path: Path) -> None:
    writer = _zeroed_writer(tmp_path, 4096)
    writer.append(b"two")
    assert writer.rotate() == 3, "the zeroed segment 2 stays 4096 bytes, its rest zeros"
    writer.append(b"three")
    writer.close()
    assert segment_path(tmp_path, 2).stat().st_size == 4096
    assert [seq for seq, _ in read_journal(tmp_path, 0)[0]] == [1, 2, 3]
    with open(segment_path(tmp_path, 2), "r+b") as file:  # damage there is still damage
        file.seek(HEADER.size + 3)
        file.write(b"\x01")
    with pytest.raises(JournalError, match="corrupt record"):
        read_journal(tmp_path, 0)


def test_a_crash_right_after_a_rotation_restarts(tmp_path: Path) -> None:
    """The rotation renamed the spare: the last segment is all zeros, without any record."""
    live = tmp_path / "live"
    writer = _zeroed_writer(live, 4096)
    for n in range(2, 6):
        writer.append(b"%d" % n)
    assert writer.wait_for_spare(10)
    assert writer.rotate() == 6
    assert writer.preallocated == 4096
    assert writer.wait_for_spare(10), "and the next spare is ready too"
    assert writer.rotate() == 6, "no record yet: the same segment"
    crashed = tmp_path / "crashed"
    shutil.copytree(live, crashed)  # the data directory as SIGKILL would leave it
    writer.close()
    empty = segment_path(crashed, 6)
    assert empty.read_bytes() == bytes(4096)
    assert (crashed / "journal" / SPARE).stat().st_size == 4096, "the next spare, left over"
    with pytest.raises(JournalError, match="already holds records"):
        JournalWriter(crashed, 6, preallocate=4096)  # recovery must come first
    records, torn = read_journal(crashed, 0)
    assert [seq for seq, _ in records] == [1, 2, 3, 4, 5] and torn is None
    assert empty.stat().st_size == 0, "repaired: the segment is empty again"
    with JournalWriter(crashed, 6, preallocate=4096) as restarted:
        assert restarted.path == empty, "the new writer takes the empty segment"
        assert restarted.wait_for_spare(10), "the leftover spare was replaced"
        restarted.append(b"6")
        restarted.sync()
    assert [seq for seq, _ in read_journal(crashed, 0)[0]] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("content", [bytes(4096), b""], ids=["zeros", "empty"])
def test_a_segment_without_records_reads_the_same_zeroed_or_empty(
    tmp_path: Path, content: bytes
) -> None:
    """Between two segments, one without records is only met when a snapshot skipped it (an
    import after a crash right after a rotation); zeroed or empty, it reads the same.
    """
    _write(tmp_path, [b"one", b"two", b"three"])
    (tmp_path / "journal" / segment_path(tmp_path, 4).name).write_bytes(content)
    _write(tmp_path, [b"five"], next_seq=5)
    assert read_journal(tmp_path, 4) == ([(5, b"five")], None), "the snapshot is at 4"
    with pytest.raises(JournalError, match="named for sequence 5, 4 comes next"):
        read_journal(tmp_path, 0)  # record 4 is missing: a gap, zeroed or not
    assert segment_path(tmp_path, 4).read_bytes() == content, "only the last segment is repaired"


def test_records_past_the_zeroed_size_grow_the_segment_then_move_to_a_spare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _zeroed_writer(tmp_path, 4096)
    gate = threading.Event()
    zero_spare = JournalWriter._zero_spare

    def held(self: JournalWriter) -> None:
        gate.wait(10)
        zero_spare(self)

    monkeypatch.setattr(JournalWriter, "_zero_spare", held)
    writer.rotate()  # nothing to rotate: the spare being zeroed (held) is the next one
    payload = b"r" * (200 - HEADER.size)
    seq = writer.next_seq
    while writer.written <= 4096:  # no spare ready: the segment grows past its zeroed size
        assert writer.append(payload) == seq
        writer.sync()
        seq += 1
        assert writer.path == segment_path(tmp_path, 2)
    assert writer.path.stat().st_size == writer.written > 4096
    gate.set()
    assert writer.wait_for_spare(10)
    writer.append(payload)
    assert writer.sync() == seq
    assert writer.path == segment_path(tmp_path, seq), "named for its first record"
    assert writer.preallocated == 4096 and writer.written == 200
    monkeypatch.undo()
    for _ in range(100):  # more segments, each as soon as a spare is ready
        writer.append(payload)
        writer.sync()
    writer.close()
    segments = list_segments(tmp_path)
    records, torn = read_journal(tmp_path, 0)
    assert torn is None and [seq for seq, _ in records] == list(range(1, seq + 101))
    assert all(body == payload for seq, body in records if seq > 1)
    assert len(segments) > 3
    starts = {first for first, _ in segments}
    for first, path in segments[1:-1]:  # the first one was appended to
        assert path.stat().st_size >= 4096, f"{path.name} was zeroed"
        records_in = unframe(path.read_bytes()).records
        assert records_in[0][0] == first and records_in[-1][0] + 1 in starts


def test_a_new_writer_deletes_a_leftover_spare(tmp_path: Path) -> None:
    spare = tmp_path / "journal" / SPARE
    spare.parent.mkdir()
    spare.write_bytes(b"\x00" * 100 + b"half zeroed when the process died")
    writer = JournalWriter(tmp_path, 1, preallocate=4096)
    assert writer.wait_for_spare(10)
    assert spare.read_bytes() == bytes(4096)
    writer.close()
    assert not spare.exists()
    assert [first for first, _ in list_segments(tmp_path)] == [1], "never a segment"


# One operation on the writer: append a payload, sync, rotate, or wait until a spare is ready.
operations = st.lists(
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from(["sync", "rotate", "spare"]),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(preallocate=st.sampled_from([0, 512, 4096]), steps=operations)
def test_whatever_a_writer_did_reads_back_after_close_or_crash(
    preallocate: int, steps: list[bytes | str]
) -> None:
    with tempfile.TemporaryDirectory() as name:
        data_dir = Path(name) / "data"
        writer = JournalWriter(data_dir, 1, preallocate=preallocate)
        appended: list[bytes] = []
        for step in steps:
            if step == "sync":
                writer.sync()
            elif step == "rotate":
                writer.rotate()
            elif step == "spare":
                writer.wait_for_spare(10)
            else:
                assert isinstance(step, bytes)
                writer.append(step)
                appended.append(step)
        durable = writer.sync()
        crashed = Path(name) / "crashed"
        shutil.copytree(data_dir, crashed)
        writer.close()
        expected = [(n + 1, payload) for n, payload in enumerate(appended)]
        assert durable == len(appended)
        for directory in (data_dir, crashed):
            assert read_journal(directory, 0, repair=False) == (expected, None)
            assert read_journal(directory, 0) == (expected, None)
            with JournalWriter(directory, durable + 1, preallocate=preallocate) as restarted:
                restarted.append(b"after")
            assert read_journal(directory, 0) == ([*expected, (durable + 1, b"after")], None)


@given(items=payloads.filter(bool), zeros=st.integers(0, 600), data=st.data())
def test_a_cut_segment_with_zeros_after_the_cut_loses_only_the_cut_record(
    items: list[bytes], zeros: int, data: st.DataObject
) -> None:
    buffer, cut, ends, whole = _cut_frames(items, data)
    with tempfile.TemporaryDirectory() as name:
        path = segment_path(name, 1)
        path.parent.mkdir()
        path.write_bytes(buffer[:cut] + bytes(zeros))
        records, torn = read_journal(name, 0)
        # zeros may complete a record cut in its trailing zero bytes: the same bytes as whole
        assert records[: len(whole)] == [(n + 1, items[n]) for n in whole]
        assert records == [(n + 1, items[n]) for n in range(len(records))]
        assert len(records) <= len(whole) + 1
        end = ends[len(records) - 1] if records else 0
        if any(buffer[end:cut]):
            assert torn == TornTail(path, end, cut - end + zeros)
        else:
            assert torn is None, "only zeros after the last record"
        assert path.stat().st_size == end
