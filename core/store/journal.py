"""The journal (DESIGN §6): every write, framed and sequence-numbered, made durable in order.

Owns: the record framing (sans-IO frame() and unframe()); the segment files and their names;
read_journal(), which replays the records after a sequence number and cuts a torn tail.
core.store.journal_writer writes them.

Format. Files ``<data_dir>/journal/journal-<first seq, 20 digits>.log``, each a run of records,
then possibly zeros up to the end of the file (a segment the writer zeroed beforehand)::

    header  "<IIQ" (16 bytes): payload length, CRC-32 of (seq as 8 octets LE + payload), seq
    payload length octets (a command's JSON, core.store.commands)

The CRC covers the header's seq field and the payload, which lie back to back in the file. An
all-zero header is never a record: sequence numbers start at 1, and the CRC of sequence 0 with
an empty payload is not 0.

Invariants:
- Sequence numbers are contiguous and increase across segments; a segment's name is the seq of
  its first record.
- Zeros after the last good record are the end of a segment, not damage: read_journal() reports
  no torn tail for them, and with ``repair`` it truncates them off the last segment, so that a
  writer starting after a crash (even one right after a rotation, with nothing written yet)
  finds its segment empty. A segment that holds only zeros reads exactly like an empty one.
- The only damage read_journal() repairs is a torn tail: a bad record in the last segment that
  no valid record follows, or that one follows only past a sector still reading as zeros (a
  sync into a zeroed segment that lost power part way: see _lost_write). It truncates the file
  there (and fsyncs it) and reports what it cut. Any other bad record, or a gap in the
  sequence, is a JournalError naming file and offset.

Must not: interpret payloads; import asyncio, the RADIUS codec, the policy, logging, metrics or
time.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Final, NamedTuple

HEADER: Final = struct.Struct("<IIQ")
#: A longer length field is damage, not a record (commands are a few hundred bytes).
MAX_PAYLOAD: Final = 16 << 20
DIRECTORY: Final = "journal"
_SEQ: Final = struct.Struct("<Q")
SECTOR: Final = 512  # the smallest unit a disk writes: a power loss keeps or loses it whole
_SEQ_AT: Final = 8  # the seq field's offset in HEADER: the CRC starts there

Record = tuple[int, bytes]  # (seq, payload)


class JournalError(Exception):
    """A journal that cannot be read or written as it is; names the file and the offset."""

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        super().__init__(f"journal {os.fspath(path)} at offset {offset}: {reason}")
        self.path = Path(path)
        self.offset = offset
        self.reason = reason


class TornTail(NamedTuple):
    """What read_journal() cut off the last segment: from ``offset``, ``dropped`` bytes."""

    path: Path
    offset: int
    dropped: int

    def __str__(self) -> str:
        return f"journal {self.path}: torn tail cut at offset {self.offset} ({self.dropped} bytes)"


class Unframed(NamedTuple):
    records: list[Record]
    good_end: int  # offset just past the last good record
    torn: bool  # something follows good_end that is not a whole good record


def frame(seq: int, payload: bytes) -> bytes:
    """Return one journal record: header then payload."""
    crc = zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq)))
    return HEADER.pack(len(payload), crc, seq) + payload


def unframe(buffer: bytes | bytearray | memoryview) -> Unframed:
    """Split a buffer into records; stop at the first one that runs past it or fails its CRC."""
    view = memoryview(buffer)
    size = len(view)
    records: list[Record] = []
    at = 0
    while at < size:
        end = _record_end(view, at)
        if end < 0:
            return Unframed(records, at, True)
        (seq,) = _SEQ.unpack_from(view, at + _SEQ_AT)
        records.append((seq, bytes(view[at + HEADER.size : end])))
        at = end
    return Unframed(records, at, False)


def _record_end(view: memoryview, at: int) -> int:
    """Return the end of the good record at ``at``, or -1."""
    if len(view) - at < HEADER.size:
        return -1
    length, crc, _ = HEADER.unpack_from(view, at)
    end: int = at + HEADER.size + length
    if length > MAX_PAYLOAD or end > len(view) or zlib.crc32(view[at + _SEQ_AT : end]) != crc:
        return -1
    return end


def segment_path(data_dir: str | os.PathLike[str], first_seq: int) -> Path:
    """Return the path of the segment whose first record is ``first_seq``."""
    return Path(data_dir) / DIRECTORY / f"journal-{first_seq:020d}.log"


def list_segments(data_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Return (first seq, path) of every segment, oldest first."""
    found: list[tuple[int, Path]] = []
    for path in (Path(data_dir) / DIRECTORY).glob("journal-*.log"):
        digits = path.stem.removeprefix("journal-")
        if digits.isascii() and digits.isdigit():
            found.append((int(digits), path))
    found.sort()
    return found


def read_journal(
    data_dir: str | os.PathLike[str],
    after_seq: int,
    *,
    upto_seq: int | None = None,
    repair: bool = True,
) -> tuple[list[Record], TornTail | None]:
    """Return every record with after_seq < seq (<= upto_seq), in order, and the torn tail cut.

    With ``repair`` a torn tail of the last segment is truncated (and fsynced), and so are the
    zeros after its last record (no torn tail: a preallocated segment ends that way); without it
    (a reader beside a live writer, e.g. compaction) both are only left out. Segments whose
    records all come at or before ``after_seq`` are not read.

    Raises:
        JournalError: a bad record before the tail, a sequence out of order, or records
            missing between ``after_seq`` and the first record found.
        OSError: a segment cannot be read or truncated.
    """
    segments = list_segments(data_dir)
    start = 0
    while start + 1 < len(segments) and segments[start + 1][0] <= after_seq + 1:
        start += 1
    records: list[Record] = []
    torn: TornTail | None = None
    expected = segments[start][0] if segments else after_seq + 1
    if expected > after_seq + 1:
        raise JournalError(
            segments[start][1],
            0,
            f"starts at sequence {expected}, but sequence {after_seq + 1} comes next: "
            f"records {after_seq + 1}-{expected - 1} are missing",
        )
    for number in range(start, len(segments)):
        first, path = segments[number]
        data = path.read_bytes()
        found = unframe(data)
        if first != expected and (found.records or number + 1 < len(segments)):
            raise JournalError(path, 0, f"named for sequence {first}, {expected} comes next")
        expected = _take(path, found.records, expected, after_seq, upto_seq, records)
        if upto_seq is not None and expected > upto_seq:
            break  # what follows is not asked for (and may be a live writer's)
        last = number + 1 == len(segments)
        if found.torn and _zeros_from(data, found.good_end):
            if repair and last:
                _truncate(path, found.good_end)  # the writer that starts next finds it empty
        elif found.torn:
            survivor = _survivor(data, found.good_end, expected - 1)
            if not last or (survivor >= 0 and not _lost_write(data, found.good_end, survivor)):
                raise JournalError(path, found.good_end, "corrupt record (not a torn tail)")
            torn = TornTail(path, found.good_end, len(data) - found.good_end)
            if repair:
                _truncate(path, found.good_end)
    return records, torn


def _take(
    path: Path,
    found: list[Record],
    expected: int,
    after_seq: int,
    upto_seq: int | None,
    into: list[Record],
) -> int:
    """Append the records wanted to ``into``; return the seq that comes next."""
    offset = 0
    for seq, payload in found:
        if seq != expected:
            raise JournalError(path, offset, f"sequence {seq}, expected {expected}")
        if seq > after_seq and (upto_seq is None or seq <= upto_seq):
            into.append((seq, payload))
        expected += 1
        offset += HEADER.size + len(payload)
    return expected


def _zeros_from(data: bytes, start: int) -> bool:
    """Return whether every byte from ``start`` on is zero (a preallocated segment's rest)."""
    return data.count(0, start) == len(data) - start


def _survivor(data: bytes, start: int, last_seq: int) -> int:
    """Return where a good record of the next sequence numbers lies past ``start``, or -1."""
    view = memoryview(data)
    for seq in (last_seq + 1, last_seq + 2):
        needle = _SEQ.pack(seq)
        at = data.find(needle, start + _SEQ_AT)
        while at >= 0:
            if _record_end(view, at - _SEQ_AT) >= 0:
                return at - _SEQ_AT
            at = data.find(needle, at + 1)
    return -1


def _lost_write(data: bytes, start: int, end: int) -> bool:
    """Return whether [start, end) holds a sector that reads as never written.

    A sync overwrites a zeroed segment in place, and a power loss part way may keep a later
    sector of it and not an earlier one: the lost one still reads as the zeros it held, from
    ``start`` to its end, or whole. Records are never zero for that long (a header has a
    length, a payload is JSON), and nothing of that sync was acknowledged, so the records
    after it are cut with it. Damage that is not zeros is still corruption.
    """
    boundary = -(-start // SECTOR) * SECTOR
    if start < boundary <= end and data.count(0, start, boundary) == boundary - start:
        return True
    for at in range(boundary, end - SECTOR + 1, SECTOR):
        if data.count(0, at, at + SECTOR) == SECTOR:
            return True
    return False


def _truncate(path: Path, size: int) -> None:
    handle = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(handle, size)
        os.fsync(handle)
    finally:
        os.close(handle)


def fsync_directory(directory: Path) -> None:
    """fsync a directory: a file created, renamed or removed in it is then durable."""
    handle = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
