"""The journal: framing, durable appends, segments, torn tails cut and corruption refused."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.store.journal import (
    HEADER,
    JournalError,
    JournalWriter,
    TornTail,
    frame,
    list_segments,
    read_journal,
    segment_path,
    unframe,
)

payloads = st.lists(st.binary(max_size=80), max_size=8)


@given(first=st.integers(0, 2**63), items=payloads)
def test_frame_unframe_round_trip(first: int, items: list[bytes]) -> None:
    buffer = b"".join(frame(first + n, payload) for n, payload in enumerate(items))
    found = unframe(buffer)
    assert found.records == [(first + n, payload) for n, payload in enumerate(items)]
    assert (found.good_end, found.torn) == (len(buffer), False)


@given(items=payloads.filter(bool), data=st.data())
def test_a_cut_buffer_keeps_the_whole_records_before_the_cut(
    items: list[bytes], data: st.DataObject
) -> None:
    frames = [frame(n + 1, payload) for n, payload in enumerate(items)]
    buffer = b"".join(frames)
    cut = data.draw(st.integers(0, len(buffer)), label="cut")
    ends = [sum(len(f) for f in frames[: n + 1]) for n in range(len(frames))]
    whole = [n for n, end in enumerate(ends) if end <= cut]
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


def test_a_torn_tail_of_garbage_or_zeros_is_cut(tmp_path: Path) -> None:
    path = _write(tmp_path, [b"one", b"two"])
    size = path.stat().st_size
    torn = None
    for tail in (bytes(4096), b"\xff" * 20, frame(9, b"wrong seq")[:-1]):
        with open(path, "ab") as file:
            file.write(tail)
        records, torn = read_journal(tmp_path, 0)
        assert [seq for seq, _ in records] == [1, 2]
        assert torn is not None and (torn.offset, torn.dropped) == (size, len(tail))
    assert "torn tail cut at offset" in str(torn)


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


def test_rotate_and_trim(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, 1)
    for n in range(3):
        writer.append(b"%d" % n)
    assert writer.rotate() == 4
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


def test_a_failed_sync_fails_every_later_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = JournalWriter(tmp_path, 1)
    writer.append(b"x")

    def broken(handle: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output"):
        writer.sync()
    monkeypatch.undo()
    for call in (writer.sync, lambda: writer.append(b"y")):
        with pytest.raises(OSError, match="Input/output"):
            call()
    writer.close()


def test_append_while_another_thread_syncs(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, 1)
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
    assert seqs == list(range(1, 2001))
    records, torn = read_journal(tmp_path, 0)
    assert torn is None and records == [(n + 1, b"%d" % n) for n in range(2000)]
