"""The snapshot file: layout, atomic writing, verification and falling back to an older file."""

from __future__ import annotations

import os
import stat
import zlib
from pathlib import Path

import pytest

from core.store.records import NO_GROUP, Group, Status
from core.store.snapshot import (
    ALIGN,
    COLD,
    FORMAT_VERSION,
    HEADER,
    HEADER_SIZE,
    RECORDS,
    SECTION_NAMES,
    DuplicateKey,
    SnapshotError,
    SnapshotWriter,
    group_document,
    group_from_document,
    list_snapshots,
    map_snapshot,
    pack_header,
    read_header,
    slot_bits,
    snapshot_path,
    verify_section,
)
from core.store.table import Table, load_newest

GROUPS = [
    Group("plain"),
    Group("chap", b"dev", b"s3cret", True, ("log", "webhook"), "sydney"),
]


def _document(sim_id: str) -> bytes:
    return b'{"simId":"%s"}' % sim_id.encode()


def write(data_dir: Path, seq: int = 1, count: int = 3) -> Path:
    """Write a small snapshot: ``count`` SIMs, the first with two virtual subscribers."""
    with SnapshotWriter(data_dir, seq, created_at=1700000000.5) as writer:
        for n in range(count):
            subscribers = [(999990000000001, False, 0x64400001), (999990000000002, True, 0)]
            writer.add_sim(
                440100000000001 + n,
                f"sim-{n}",
                _document(f"sim-{n}"),
                status=Status.STANDBY if n else Status.ACTIVE,
                group=n % 2 if n < 2 else NO_GROUP,
                lock=35387923425263 if n == 1 else 0,
                flags=3 if n == 1 else 0,
                framed_ip=0x0A000001 if n == 2 else 0,
                subscribers=subscribers if n == 0 else (),
            )
        return writer.commit([group_document(group, "https://hook.example/x") for group in GROUPS])


def test_round_trip_header_and_groups(tmp_path: Path) -> None:
    path = write(tmp_path, seq=7)
    assert path == snapshot_path(tmp_path, 7)
    assert path.name == "snapshot-00000000000000000007.sgs"
    mapped = map_snapshot(path)
    header = mapped.header
    assert (header.version, header.seq, header.created_at) == (FORMAT_VERSION, 7, 1700000000.5)
    assert (header.sim_count, header.imsi_count, header.group_count) == (3, 5, 2)
    assert (header.imsi_slots, header.sim_id_slots) == (16, 8)  # 5 keys: 5/8 > 0.6
    assert header.file_size == path.stat().st_size
    assert all(section.offset % ALIGN == 0 for section in header.sections)
    assert mapped.groups == tuple(GROUPS)
    assert mapped.group_documents[1]["webhookUrl"] == "https://hook.example/x"
    mapped.close()


def test_round_trip_every_field(tmp_path: Path) -> None:
    with Table.open(write(tmp_path)) as table:
        primary = table.find(440100000000001)
        virtual = table.find(999990000000001)
        gone = table.find(999990000000002)
        locked = table.find(440100000000002)
        framed = table.find(440100000000003)
    assert primary is not None and virtual is not None and gone is not None
    assert locked is not None and framed is not None
    assert primary == (440100000000001, 0, False, False, 0, 440100000000001, Status.ACTIVE, 0,
                       0, False, False)  # fmt: skip
    assert virtual == (999990000000001, 0, True, False, 0x64400001, 440100000000001,
                       Status.ACTIVE, 0, 0, False, False)  # fmt: skip
    assert (gone.virtual, gone.terminated, gone.framed_ip, gone.sim_index) == (True, True, 0, 0)
    assert locked.lock == 35387923425263
    assert (locked.allow_unreported, locked.lock_on_first_connect) == (True, True)
    assert (locked.status, locked.group) == (Status.STANDBY, 1)
    assert (framed.framed_ip, framed.group) == (0x0A000001, NO_GROUP)


def test_group_document_round_trip() -> None:
    for group in GROUPS:
        assert group_from_document(group_document(group)) == group


def test_file_is_private_and_no_temporary_is_left(tmp_path: Path) -> None:
    path = write(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, 1, 0.0) as writer:
        writer.add_sim(440100000000001, "a", _document("a"))
    assert list((tmp_path / "snapshots").iterdir()) == []


def test_duplicates_are_reported_and_refused(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, 1, 0.0) as writer:
        writer.add_sim(440100000000001, "a", _document("a"))
        writer.add_sim(
            440100000000002, "b", _document("b"), subscribers=[(999990000000001, False, 0)]
        )
        writer.add_sim(440100000000001, "c", _document("c"))
        writer.add_sim(
            440100000000003, "b", _document("b"), subscribers=[(999990000000001, False, 0)]
        )
        assert sorted(writer.index()) == [
            DuplicateKey("imsi", "440100000000001", 0, 2),
            DuplicateKey("imsi", "999990000000001", 1, 3),
            DuplicateKey("simId", "b", 1, 3),
        ]
        with pytest.raises(ValueError, match="duplicate"):
            writer.commit([])


def test_unknown_group_index_is_refused(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path, 1, 0.0) as writer:
        writer.add_sim(440100000000001, "a", _document("a"), group=1)
        with pytest.raises(ValueError, match="group index 1"):
            writer.commit([group_document(Group("only"))])


def test_slot_count_keeps_load_at_most_six_tenths() -> None:
    assert slot_bits(0) == 3
    for count in (1, 4, 5, 600, 601, 10_000_000):
        slots = 1 << slot_bits(count)
        assert count * 5 <= slots * 3
        assert slots == 8 or count * 5 > slots * 3 // 2


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0x40]))


@pytest.mark.parametrize("number", range(len(SECTION_NAMES)), ids=SECTION_NAMES)
def test_a_flipped_byte_in_each_section_is_named(tmp_path: Path, number: int) -> None:
    path = write(tmp_path)
    section = map_snapshot(path).header.sections[number]
    _flip(path, section.offset + section.length // 2)
    with pytest.raises(SnapshotError, match=f"section '{SECTION_NAMES[number]}' checksum mismatch"):
        map_snapshot(path)


def test_a_flipped_header_byte_fails_the_header_checksum(tmp_path: Path) -> None:
    path = write(tmp_path)
    _flip(path, 24)  # inside the sequence number
    with pytest.raises(SnapshotError, match="header checksum mismatch") as caught:
        map_snapshot(path)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"snapshot {path}: ")


def test_truncation_is_named_with_both_sizes(tmp_path: Path) -> None:
    path = write(tmp_path)
    size = path.stat().st_size
    os.truncate(path, size - 100)
    with pytest.raises(SnapshotError, match=f"truncated: {size - 100} bytes, header says {size}"):
        map_snapshot(path)


@pytest.mark.parametrize("size", [0, 5, HEADER_SIZE - 1])
def test_a_file_shorter_than_a_header_is_truncated(tmp_path: Path, size: int) -> None:
    path = write(tmp_path)
    os.truncate(path, size)
    with pytest.raises(SnapshotError, match=f"truncated: {size} bytes"):
        map_snapshot(path)


def test_trailing_bytes_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path)
    with open(path, "ab") as file:
        file.write(b"\0")
    with pytest.raises(SnapshotError, match="too long"):
        map_snapshot(path)


def test_bad_magic(tmp_path: Path) -> None:
    path = write(tmp_path)
    _flip(path, 0)
    with pytest.raises(SnapshotError, match="not a simgate snapshot"):
        map_snapshot(path)


def test_other_version_is_named_before_the_checksum(tmp_path: Path) -> None:
    path = write(tmp_path)
    with open(path, "r+b", buffering=0) as file:
        header = read_header(path, file)
        file.seek(0)
        file.write(pack_header(header._replace(version=FORMAT_VERSION + 1)))
    with pytest.raises(SnapshotError, match=f"format version {FORMAT_VERSION + 1}, this simgate"):
        map_snapshot(path)


def test_a_header_that_lies_about_the_layout_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path)
    with open(path, "r+b", buffering=0) as file:
        header = read_header(path, file)
        file.seek(0)
        file.write(pack_header(header._replace(sim_count=header.sim_count + 1)))
    with pytest.raises(SnapshotError, match="section 'records' is 96 bytes, expected 128"):
        map_snapshot(path)


def test_header_crc_covers_the_whole_header(tmp_path: Path) -> None:
    raw = write(tmp_path).read_bytes()[:HEADER_SIZE]
    assert zlib.crc32(raw[: HEADER.size]) == int.from_bytes(raw[HEADER.size :], "little")


def test_cold_section_can_be_verified_later(tmp_path: Path) -> None:
    path = write(tmp_path)
    cold = map_snapshot(path).header.sections[COLD]
    _flip(path, cold.offset + 3)
    mapped = map_snapshot(path, verify_cold=False)
    mapped.close()
    with pytest.raises(SnapshotError, match="section 'cold' checksum mismatch"):
        verify_section(path, COLD)


def test_cold_section_is_verified_from_the_mapping_even_after_the_file_is_gone(
    tmp_path: Path,
) -> None:
    # compaction prunes an old snapshot while a table may still map it, cold not yet checked
    path = write(tmp_path)
    mapped = map_snapshot(path, verify_cold=False)
    path.unlink()
    mapped.verify_section(COLD)  # no error: the mapping is intact
    mapped.close()


def test_the_mapping_check_sees_a_corrupt_cold_section(tmp_path: Path) -> None:
    path = write(tmp_path)
    cold = map_snapshot(path).header.sections[COLD]
    _flip(path, cold.offset + 3)
    mapped = map_snapshot(path, verify_cold=False)
    with pytest.raises(SnapshotError, match="section 'cold' checksum mismatch"):
        mapped.verify_section(COLD)
    mapped.close()


def test_list_snapshots_is_newest_first_and_ignores_others(tmp_path: Path) -> None:
    write(tmp_path, seq=2)
    write(tmp_path, seq=10)
    (tmp_path / "snapshots" / ".x.tmp").write_bytes(b"")
    (tmp_path / "snapshots" / "snapshot-abc.sgs").write_bytes(b"")
    assert [seq for seq, _ in list_snapshots(tmp_path)] == [10, 2]
    assert list_snapshots(tmp_path / "missing") == []


def test_load_newest_takes_the_newest(tmp_path: Path) -> None:
    write(tmp_path, seq=1)
    write(tmp_path, seq=2)
    table, skipped = load_newest(tmp_path)
    assert table is not None and table.seq == 2 and skipped == []
    table.close()


def test_load_newest_falls_back_past_a_corrupt_snapshot(tmp_path: Path) -> None:
    write(tmp_path, seq=1)
    newest = write(tmp_path, seq=2)
    _flip(newest, map_snapshot(newest).header.sections[RECORDS].offset)
    table, skipped = load_newest(tmp_path)
    assert table is not None and table.seq == 1
    assert [(error.path, error.reason) for error in skipped] == [
        (newest, "section 'records' checksum mismatch")
    ]
    table.close()


def test_load_newest_refuses_a_file_renamed_to_another_sequence(tmp_path: Path) -> None:
    write(tmp_path, seq=1)
    os.rename(write(tmp_path, seq=2), snapshot_path(tmp_path, 3))
    table, skipped = load_newest(tmp_path)
    assert table is not None and table.seq == 1
    assert [error.reason for error in skipped] == ["header says sequence 2"]
    table.close()


def test_load_newest_with_only_corrupt_snapshots_raises(tmp_path: Path) -> None:
    os.truncate(write(tmp_path, seq=1), 10)
    with pytest.raises(SnapshotError, match="no valid snapshot") as caught:
        load_newest(tmp_path)
    assert "snapshot-00000000000000000001.sgs: truncated" in caught.value.reason


def test_load_newest_without_snapshots(tmp_path: Path) -> None:
    assert load_newest(tmp_path) == (None, [])
