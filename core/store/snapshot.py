"""Mapping a snapshot file (format in core.store.format): verify it, then map it read-only.

Owns: map_snapshot() (check the header, the layout and every section's CRC-32, parse the groups,
map the file), verify_section() for a cold section left unchecked, read_header(), and the empty
in-memory snapshot. "The snapshot file *is* the index": the server maps it and probes its hash
tables in place, so opening a snapshot costs the same for a thousand SIMs as for ten million, and
parses no SIM record.

This module also re-exports the names other modules imported from it before the format and the
writer had modules of their own (see __all__); new code imports them from core.store.format and
core.store.snapshot_writer.

Invariants:
- Mapping checks magic, version, header CRC, the file size the header promises, the layout and
  the CRC-32 of every section, reading the file with readinto through one reused buffer (never
  through the map, so verifying does not add the file to our resident set). Start-up parses only
  the header and the groups; records and cold documents are read on demand.
- The cold section may be verified later (verify_cold=False, then verify_section(COLD)): on a
  10M-SIM file (2.3-2.5 GB, page cache warm, 2-core EPYC guest) checking every section took
  0.83-1.55 s, all but cold 0.31-0.55 s. The hot path never reads cold documents, so the server
  maps without them and checks them off the hot path or before their first use
  (core.store.table.Table.verify_cold).
- Nothing is ever written through the map (ACCESS_READ).

Must not: write snapshot files; import asyncio, the RADIUS codec, the policy, logging, metrics or
time; or parse per-SIM data when mapping.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import zlib
from io import FileIO
from pathlib import Path
from typing import Any, Final, NamedTuple

from core.store.format import (
    ALIGN,
    ALLOW_UNREPORTED,
    COLD,
    FIBONACCI,
    FORMAT_VERSION,
    GROUPS,
    HEADER,
    HEADER_CRC,
    HEADER_SIZE,
    IMSI_INDEX,
    IMSI_SLOT,
    LOCK_ON_FIRST_CONNECT,
    MAGIC,
    MASK64,
    RECORD,
    RECORD_INDEX_MASK,
    RECORDS,
    SECTION_NAMES,
    SIM_ID_INDEX,
    SIM_ID_SLOT,
    TERMINATED,
    VIRTUAL,
    DuplicateKey,
    Header,
    Section,
    SnapshotError,
    group_document,
    group_from_document,
    imsi_home,
    list_snapshots,
    pack_header,
    sim_id_key,
    slot_bits,
    snapshot_path,
    unpack_header,
)
from core.store.records import Group
from core.store.snapshot_writer import SnapshotWriter

# Defined here: MappedSnapshot, empty_snapshot, map_snapshot, read_header, verify_section; the
# rest is re-exported from core.store.format and core.store.snapshot_writer.
__all__ = [
    "ALIGN",
    "ALLOW_UNREPORTED",
    "COLD",
    "FIBONACCI",
    "FORMAT_VERSION",
    "GROUPS",
    "HEADER",
    "HEADER_CRC",
    "HEADER_SIZE",
    "IMSI_INDEX",
    "IMSI_SLOT",
    "LOCK_ON_FIRST_CONNECT",
    "MAGIC",
    "MASK64",
    "RECORD",
    "RECORDS",
    "RECORD_INDEX_MASK",
    "SECTION_NAMES",
    "SIM_ID_INDEX",
    "SIM_ID_SLOT",
    "TERMINATED",
    "VIRTUAL",
    "DuplicateKey",
    "Header",
    "MappedSnapshot",
    "Section",
    "SnapshotError",
    "SnapshotWriter",
    "empty_snapshot",
    "group_document",
    "group_from_document",
    "imsi_home",
    "list_snapshots",
    "map_snapshot",
    "pack_header",
    "read_header",
    "sim_id_key",
    "slot_bits",
    "snapshot_path",
    "verify_section",
]

_CHUNK: Final = 4 << 20  # bytes per readinto while checksumming
_VERSION: Final = struct.Struct("<I")


class MappedSnapshot(NamedTuple):
    """A verified snapshot file, mapped read-only (or the in-memory empty_snapshot())."""

    path: Path | None
    header: Header
    buffer: mmap.mmap | bytes
    groups: tuple[Group, ...]
    group_documents: tuple[dict[str, Any], ...]
    cold_verified: bool

    def verify_section(self, number: int) -> None:
        """Check the CRC-32 of one section over the mapping itself (e.g. COLD, after a lazy
        map): what the table reads is what is checked, and it still works after the file was
        unlinked (compaction prunes old snapshots while a table may still map one).

        Raises:
            SnapshotError: the section's checksum does not match.
        """
        section = self.header.sections[number]
        end = section.offset + section.length
        crc = 0
        buffer = self.buffer
        # The map is advised MADV_RANDOM (probes read no pages ahead); a sequential pass over a
        # section that is not in the page cache would then read it 4 KiB at a time.
        advise = isinstance(buffer, mmap.mmap) and hasattr(mmap, "MADV_SEQUENTIAL") and end > 0
        first = section.offset - section.offset % mmap.PAGESIZE
        if advise:
            assert isinstance(buffer, mmap.mmap)
            buffer.madvise(mmap.MADV_SEQUENTIAL, first, end - first)
        try:
            with memoryview(buffer) as view:
                for start in range(section.offset, end, _CHUNK):
                    crc = zlib.crc32(view[start : min(start + _CHUNK, end)], crc)
        finally:
            if advise:
                assert isinstance(buffer, mmap.mmap)
                buffer.madvise(mmap.MADV_RANDOM, first, end - first)
        if crc != section.crc:
            where = self.path if self.path is not None else Path("<memory>")
            raise SnapshotError(where, f"section {SECTION_NAMES[number]!r} checksum mismatch")

    def close(self) -> None:
        """Unmap the file (nothing may read the buffer afterwards)."""
        if isinstance(self.buffer, mmap.mmap):
            self.buffer.close()


def map_snapshot(path: str | os.PathLike[str], *, verify_cold: bool = True) -> MappedSnapshot:
    """Verify a snapshot file and map it.

    With ``verify_cold`` false the cold section's checksum is left to verify_section().

    Raises:
        SnapshotError: the file is unreadable, truncated, of another format or corrupt.
    """
    path = Path(path)
    try:
        with open(path, "rb", buffering=0) as file:
            header = read_header(path, file)
            scratch = bytearray(_CHUNK)
            for number in range(len(SECTION_NAMES)):
                if number != COLD or verify_cold:
                    _verify(path, file, header, number, scratch)
            file.seek(header.sections[GROUPS].offset)
            raw = file.read(header.sections[GROUPS].length)
            groups, documents = _parse_groups(path, raw, header.group_count)
            buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as error:
        raise SnapshotError(path, f"cannot read: {error.strerror or error}") from error
    if hasattr(mmap, "MADV_RANDOM"):
        buffer.madvise(mmap.MADV_RANDOM)  # probes are random: read no pages ahead
    return MappedSnapshot(path, header, buffer, groups, documents, verify_cold)


def empty_snapshot() -> MappedSnapshot:
    """Return an in-memory snapshot with no SIM and no group (nothing was imported yet)."""
    slots = 8
    index = bytes(slots * IMSI_SLOT.size)
    empty = Section(ALIGN, 0, 0)
    sections = (empty, empty, empty, Section(ALIGN, len(index), 0), Section(ALIGN, len(index), 0))
    header = Header(FORMAT_VERSION, 0, 0.0, 0, 0, slots, slots, 0, sections)
    return MappedSnapshot(None, header, bytes(ALIGN) + index, (), (), True)


def verify_section(path: str | os.PathLike[str], number: int) -> None:
    """Check the CRC-32 of one section of a snapshot file (e.g. COLD, after a lazy map).

    Raises:
        SnapshotError: as map_snapshot().
    """
    path = Path(path)
    try:
        with open(path, "rb", buffering=0) as file:
            _verify(path, file, read_header(path, file), number, bytearray(_CHUNK))
    except OSError as error:
        raise SnapshotError(path, f"cannot read: {error.strerror or error}") from error


def read_header(path: Path, file: FileIO) -> Header:
    """Read and check the header of an open snapshot file: format, checksum, layout, size.

    Raises:
        SnapshotError: the header is not one this simgate wrote, or the file's size is wrong.
    """
    size = os.fstat(file.fileno()).st_size
    raw = bytearray(HEADER_SIZE)
    got = file.readinto(raw) or 0
    if got >= len(MAGIC) and raw[: len(MAGIC)] != MAGIC:
        raise SnapshotError(path, f"not a simgate snapshot (magic {bytes(raw[:8])!r})")
    (version,) = _VERSION.unpack_from(raw, len(MAGIC))
    if got >= len(MAGIC) + _VERSION.size and version != FORMAT_VERSION:
        raise SnapshotError(path, f"format version {version}, this simgate reads {FORMAT_VERSION}")
    if got < HEADER_SIZE:
        raise SnapshotError(path, f"truncated: {size} bytes, the header alone is {HEADER_SIZE}")
    (crc,) = HEADER_CRC.unpack_from(raw, HEADER.size)
    if zlib.crc32(memoryview(raw)[: HEADER.size]) != crc:
        raise SnapshotError(path, "header checksum mismatch")
    header = unpack_header(path, raw)
    if size != header.file_size:
        word = "truncated" if size < header.file_size else "too long"
        raise SnapshotError(path, f"{word}: {size} bytes, header says {header.file_size}")
    return header


def _verify(path: Path, file: FileIO, header: Header, number: int, scratch: bytearray) -> None:
    section = header.sections[number]
    view = memoryview(scratch)
    crc = 0
    file.seek(section.offset)
    remaining = section.length
    while remaining:
        got = file.readinto(view[: min(remaining, len(view))])
        if not got:
            raise SnapshotError(path, f"section {SECTION_NAMES[number]!r} cut short")
        crc = zlib.crc32(view[:got], crc)
        remaining -= got
    if crc != section.crc:
        raise SnapshotError(path, f"section {SECTION_NAMES[number]!r} checksum mismatch")


def _parse_groups(
    path: Path, raw: bytes, count: int
) -> tuple[tuple[Group, ...], tuple[dict[str, Any], ...]]:
    try:
        documents = tuple(json.loads(raw))
        groups = tuple(group_from_document(document) for document in documents)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SnapshotError(path, f"section 'groups' is malformed: {error!r}") from error
    if len(groups) != count:
        raise SnapshotError(path, f"section 'groups' has {len(groups)} groups, header says {count}")
    return groups, documents
