"""Writing one snapshot file (format in core.store.format): SnapshotWriter.

Owns: streaming SIMs into a temporary file, building both hash indexes and refusing repeated
keys (or taking every section ready-made: add_sections(), for compaction), the atomic commit,
the temporary files' naming (``.<random>.tmp`` beside the snapshots), and removing the
temporary files that crashed writers left behind.

Invariants:
- A snapshot file never changes once it has its final name: it is written to a temporary file in
  the same directory, fsynced, renamed with os.replace, and the directory is fsynced.
- Files are created 0600 (tempfile.mkstemp): groups hold CHAP passwords.
- A writer holds an exclusive flock on its temporary file from creation until it is renamed or
  removed. The lock dies with the process, so a temporary file nobody locks is a crashed
  writer's: commit() removes those older than its own writer (other writers, in this or another
  process, keep theirs).
- Memory: at most a 4 MiB chunk of cold documents is held, and never both indexes at once; per
  SIM only packed arrays (10M SIMs: ~268 MB per index).

Must not: read or map snapshot files (core.store.snapshot does); import asyncio, the RADIUS codec,
the policy, logging, metrics or time (time is a parameter).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import struct
import sys
import tempfile
import zlib
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from core.store.format import (
    ALIGN,
    FIBONACCI,
    FORMAT_VERSION,
    IMSI_INDEX,
    IMSI_SLOT,
    MASK64,
    RECORD,
    RECORD_INDEX_MASK,
    TERMINATED,
    VIRTUAL,
    DuplicateKey,
    Header,
    Section,
    pack_header,
    sim_id_key,
    slot_bits,
    snapshot_path,
)
from core.store.records import NO_GROUP, Status

TEMPORARY_PREFIX: Final = "."
TEMPORARY_SUFFIX: Final = ".tmp"
_COLD_CHUNK: Final = 4 << 20  # bytes of cold documents buffered before a write
PACE_CHUNK: Final = 1 << 20  # a paced writer's unit: written, then ``pace`` may sleep
FLUSH_EVERY: Final = 32 << 20  # a paced writer fdatasyncs this often
_PRIMARY_KEY: Final = struct.Struct("<Q24x")  # the primary IMSI at the head of a RECORD


class SnapshotWriter:
    """Build one snapshot file: add SIMs (streamed to disk), check keys, then commit.

    Use as a context manager: leaving it without commit() removes the temporary file.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        seq: int,
        created_at: float,
        pace: Callable[[int], None] | None = None,
    ) -> None:
        self.path = snapshot_path(data_dir, seq)
        #: called after every PACE_CHUNK written, with its size: it may sleep (a rate limit);
        #: with it, what is written is also flushed to disk every FLUSH_EVERY octets
        self._pace = pace
        self._unflushed = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=TEMPORARY_PREFIX, suffix=TEMPORARY_SUFFIX
        )
        self._temporary = Path(temporary)
        self._file = os.fdopen(handle, "w+b")
        fcntl.flock(handle, fcntl.LOCK_EX)  # "this writer is alive": see remove_stale()
        self._started_ns = os.fstat(handle).st_mtime_ns  # the file system's clock, not ours
        self._file.write(bytes(ALIGN))
        self._seq = seq
        self._created_at = created_at
        self._cold = bytearray()  # cold documents not yet written to the file
        self._cold_length = 0
        self._cold_crc = 0
        self._records = bytearray()
        self._primary_values = array("Q")  # per record: IMSI slot value | framed IP << 32
        self._sim_keys = array("Q")
        self._sim_count = 0
        self._virtual_imsis = array("Q")
        self._virtual_values = array("Q")
        self._virtual_count = 0
        self._highest_group = -1
        self._sections: list[Section] = []  # cold to simId index, once index() wrote them
        self._slots = (0, 0)  # IMSI slots, simId slots
        self._duplicates: list[DuplicateKey] = []
        self._done = False

    @property
    def sim_count(self) -> int:
        return self._sim_count

    @property
    def imsi_count(self) -> int:
        return self._sim_count + self._virtual_count

    def add_sim(
        self,
        imsi: int,
        sim_id: str,
        document: bytes,
        status: Status = Status.ACTIVE,
        group: int = NO_GROUP,
        lock: int = 0,
        flags: int = 0,
        framed_ip: int = 0,
        virtual: bool = False,
        subscribers: Iterable[tuple[int, bool, int]] = (),
    ) -> int:
        """Append a SIM and return its record index.

        ``document`` is the SIM's cold JSON object, whose "simId" must be ``sim_id``; ``virtual``
        marks a standalone virtual SIM; ``subscribers`` are its virtual subscribers as (IMSI,
        terminated, framed IPv4).
        """
        index = self._sim_count
        if index > RECORD_INDEX_MASK or self._sections:
            raise ValueError(f"SIM {sim_id!r} added after index() or past {index} SIMs")
        self._records += RECORD.pack(
            imsi, lock, group, status, flags, len(document), self._cold_length
        )
        self._cold += document
        self._cold_length += len(document)
        if len(self._cold) >= _COLD_CHUNK:
            self._write_cold()
        reference = index
        if virtual:
            reference |= VIRTUAL | (TERMINATED if status == Status.TERMINATED else 0)
        self._primary_values.append(reference | framed_ip << 32)
        self._sim_keys.append(sim_id_key(sim_id))
        self._sim_count += 1
        if group != NO_GROUP and group > self._highest_group:
            self._highest_group = group
        for sub_imsi, terminated, sub_ip in subscribers:
            self._virtual_count += 1
            self._virtual_imsis.append(sub_imsi)
            value = index | VIRTUAL | (TERMINATED if terminated else 0)
            self._virtual_values.append(value | sub_ip << 32)
        return index

    def primary_imsi(self, index: int) -> int:
        """Return the primary IMSI of the record at ``index``."""
        (imsi,) = _PRIMARY_KEY.unpack_from(self._records, index * RECORD.size)
        return int(imsi)

    def index(self) -> list[DuplicateKey]:
        """Write the cold, records and both index sections (once); return keys added twice."""
        if self._sections:
            return self._duplicates
        self._write_cold()
        self._sections = [Section(ALIGN, self._cold_length, self._cold_crc)]
        self._sections.append(self._append(self._records))
        imsi_table, duplicates = self._imsi_index()
        self._sections.append(self._append(imsi_table))
        del imsi_table  # perf: never hold both indexes (10M SIMs: 268 MB each)
        sim_id_table, repeats = self._sim_id_index()
        self._sections.append(self._append(sim_id_table))
        self._slots = (self._sections[IMSI_INDEX].length // IMSI_SLOT.size, len(sim_id_table) // 2)
        self._duplicates = duplicates + repeats
        return self._duplicates

    def add_sections(
        self,
        cold: Iterable[bytes | bytearray | memoryview],
        records: bytes | bytearray | memoryview,
        imsi_index: array[int],
        sim_id_index: array[int],
        imsi_count: int,
    ) -> None:
        """Take the cold, records and index sections ready-made, in place of add_sim() calls.

        Compaction copies most of a snapshot this way (core.store.compaction): ``cold`` is
        written chunk by chunk as it is iterated; the records' cold references point into it;
        the indexes hold 2 words per slot. The caller answers for their consistency.
        """
        if self._sim_count or self._sections:
            raise ValueError("add_sections() after add_sim() or index()")
        for chunk in cold:
            self._cold_crc = self._write(chunk, self._cold_crc)
            self._cold_length += memoryview(chunk).nbytes
        self._sections = [Section(ALIGN, self._cold_length, self._cold_crc)]
        self._sections.append(self._append(records))
        self._sections.append(self._append(imsi_index))
        self._sections.append(self._append(sim_id_index))
        self._sim_count = memoryview(records).nbytes // RECORD.size
        self._virtual_count = imsi_count - self._sim_count
        self._slots = (len(imsi_index) // 2, len(sim_id_index) // 2)

    def commit(self, groups: Sequence[Mapping[str, Any]]) -> Path:
        """Write the groups and the header, make the file durable, rename it into place.

        ``groups`` are group_document()-style objects; records refer to them by position. Once
        the snapshot is in place, the temporary files of crashed writers are removed.

        Raises:
            ValueError: a key was added twice, or a record names a group not in ``groups``.
        """
        duplicates = self.index()
        if duplicates:
            raise ValueError(f"duplicate keys: {duplicates[:5]}")
        if self._highest_group >= len(groups):
            raise ValueError(f"group index {self._highest_group} given, {len(groups)} groups")
        group_bytes = json.dumps(list(groups), separators=(",", ":")).encode()
        sections = (*self._sections, self._append(group_bytes))
        header = Header(
            FORMAT_VERSION, self._seq, self._created_at, self.sim_count, self.imsi_count,
            *self._slots, len(groups), sections,
        )  # fmt: skip
        self._file.seek(0)
        self._file.write(pack_header(header))
        self._file.flush()
        os.fsync(self._file.fileno())
        os.replace(self._temporary, self.path)  # still open: the lock holds until renamed
        self._file.close()
        _fsync_directory(self.path.parent)
        self._done = True
        remove_stale(self.path.parent, self._started_ns)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (nothing is renamed into place)."""
        if not self._done:
            self._done = True
            self._file.close()
            self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()

    def _imsi_index(self) -> tuple[array[int], list[DuplicateKey]]:
        bits = slot_bits(self.imsi_count)
        table = array("Q", [0]) * (2 << bits)
        primaries = (key for (key,) in _PRIMARY_KEY.iter_unpack(self._records))
        entries = zip(primaries, self._primary_values, strict=True)
        repeats = fill_slots(table, bits, FIBONACCI, entries, _always)
        virtuals = zip(self._virtual_imsis, self._virtual_values, strict=True)
        repeats += fill_slots(table, bits, FIBONACCI, virtuals, _always)
        self._primary_values = self._virtual_imsis = self._virtual_values = array("Q")
        duplicates = [
            DuplicateKey("imsi", f"{key:015d}", old & RECORD_INDEX_MASK, new & RECORD_INDEX_MASK)
            for key, old, new in repeats
        ]
        return table, duplicates

    def _sim_id_index(self) -> tuple[array[int], list[DuplicateKey]]:
        bits = slot_bits(self.sim_count)
        table = array("Q", [0]) * (2 << bits)
        entries = zip(self._sim_keys, range(self.sim_count), strict=True)
        repeats = fill_slots(table, bits, 1, entries, self._same_sim_id)
        self._sim_keys = array("Q")
        duplicates = [DuplicateKey("simId", self._sim_id(new), old, new) for _, old, new in repeats]
        return table, duplicates

    def _append(self, payload: bytes | bytearray | memoryview | array[int]) -> Section:
        if isinstance(payload, array) and sys.byteorder == "big":
            payload.byteswap()  # sections are little-endian
        position = self._file.seek(0, os.SEEK_END)
        offset = -(-position // ALIGN) * ALIGN
        self._file.write(bytes(offset - position))
        crc = self._write(payload, 0)
        return Section(offset, memoryview(payload).nbytes, crc)

    def _write_cold(self) -> None:
        self._cold_crc = self._write(self._cold, self._cold_crc)
        self._cold.clear()

    def _write(self, data: bytes | bytearray | memoryview | array[int], crc: int) -> int:
        """Write ``data``; return the CRC-32 of it continued from ``crc``.

        Paced: in pieces of PACE_CHUNK, each checksummed, written and handed to ``pace``, and
        an fdatasync every FLUSH_EVERY octets, so that a compaction beside a busy server
        spreads its memory traffic and the kernel's writeback over time instead of copying
        and flushing a whole snapshot at once (bench/writes.py).
        """
        if self._pace is None:
            self._file.write(data)
            return zlib.crc32(data, crc)
        with memoryview(data) as whole, whole.cast("B") as octets:
            for at in range(0, len(octets), PACE_CHUNK):
                piece = octets[at : at + PACE_CHUNK]
                crc = zlib.crc32(piece, crc)
                self._file.write(piece)
                self._unflushed += len(piece)
                if self._unflushed >= FLUSH_EVERY:
                    self._file.flush()
                    os.fdatasync(self._file.fileno())
                    self._unflushed = 0
                self._pace(len(piece))
        return crc

    def _sim_id(self, index: int) -> str:
        _, _, _, _, _, length, offset = RECORD.unpack_from(self._records, index * RECORD.size)
        self._write_cold()
        self._file.flush()
        raw = os.pread(self._file.fileno(), length, ALIGN + offset)
        return str(json.loads(raw)["simId"])

    def _same_sim_id(self, old: int, new: int) -> bool:
        return self._sim_id(old) == self._sim_id(new)


def remove_stale(directory: Path, before_ns: int) -> list[Path]:
    """Remove the temporary files of crashed writers last changed before ``before_ns``.

    A file counts as a crashed writer's when no process holds its flock; a writer created after
    ``before_ns`` may not have taken its lock yet, hence the age limit. Returns what was removed;
    files that vanish or cannot be removed meanwhile are skipped.
    """
    removed: list[Path] = []
    for candidate in directory.glob(f"{TEMPORARY_PREFIX}*{TEMPORARY_SUFFIX}"):
        try:
            handle = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # renamed or removed meanwhile, or a symbolic link
        try:
            status = os.fstat(handle)
            if stat.S_ISREG(status.st_mode) and status.st_mtime_ns < before_ns:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a writer lives
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue  # BlockingIOError: a live writer's file; or it went away
        finally:
            os.close(handle)
    return removed


def fill_slots(
    slots: array[int],
    bits: int,
    multiplier: int,
    entries: Iterable[tuple[int, int]],
    same: Callable[[int, int], bool],
) -> list[tuple[int, int, int]]:
    """Insert (key, value) pairs into a table of 2 words per slot; return the refused repeats.

    A key found already in the table is a repeat when ``same(old value, new value)``; otherwise
    (two simIds sharing a key) probing goes on and the pair gets its own slot.
    """
    last = (2 << bits) - 1
    shift = 64 - bits
    repeats: list[tuple[int, int, int]] = []
    for key, value in entries:
        word = (((key * multiplier) & MASK64) >> shift) << 1
        found = slots[word]
        while found:
            if found == key and same(slots[word + 1], value):
                repeats.append((key, slots[word + 1], value))
                break
            word = (word + 2) & last
            found = slots[word]
        else:
            slots[word] = key
            slots[word + 1] = value
    return repeats


def _always(old: int, new: int) -> bool:
    return True


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
