"""The snapshot file: the whole subscriber table at one journal sequence, mappable as its index.

Owns: the on-disk format (DESIGN §6); writing it atomically; mapping and verifying it. "The
snapshot file *is* the index": the server maps it and probes its hash tables in place, so opening
a snapshot costs the same for a thousand SIMs as for ten million, and parses no SIM record.

Layout (integers little-endian; every section starts on a 4096-byte boundary, in this order)::

    0        header   HEADER + HEADER_CRC (196 bytes), zero-padded to 4096
    section  cold         one compact UTF-8 JSON object per SIM (its "simId" included), back to back
    section  records      sim_count x RECORD      "<QQHBBIQ" (32 bytes)
    section  imsi index   imsi_slots x IMSI_SLOT  "<QII"     (16 bytes)
    section  simId index  sim_id_slots x SIM_ID_SLOT "<QQ"   (16 bytes)
    section  groups       one JSON array of group objects, in the provisioning format's names

(In this order so that a writer can stream the cold documents while SIMs are added, and write
each index as soon as it is built: it never holds the cold data or both indexes in memory.)

- header: magic ``SIMGSNAP``, format version, header size, journal sequence, created-at (unix
  seconds, f64), SIM count, IMSI count (primary + virtual), IMSI slots, simId slots, group count,
  reserved; then per section (offset, length, CRC-32, reserved); then the CRC-32 of all of that.
- record: primary IMSI, locked 14-digit device identity (0 = no lock), group index (NO_GROUP =
  none), Status value, flags (ALLOW_UNREPORTED, LOCK_ON_FIRST_CONNECT as set on the SIM itself),
  then the length and offset (from the start of the cold section) of the SIM's cold document.
- imsi index: open addressing with linear probing, slot count a power of two, load <= 0.6. Key =
  the IMSI as an int, 0 = empty slot; home slot = imsi_home(). Value = record index | VIRTUAL
  (bit 31) | TERMINATED (bit 30, a terminated virtual subscriber), then the framed IPv4 (0 = none).
  A virtual IMSI is a key of its own that points at its SIM's record; a standalone virtual SIM's
  own IMSI carries VIRTUAL too (and TERMINATED when the SIM is terminated).
- simId index: the same scheme, key = sim_id_key(simId) (BLAKE2b-64, never 0), home slot = the
  key's top bits, value = record index. Two simIds may share a key: a hit is confirmed against
  the "simId" of the record's cold document.

Invariants:
- A snapshot file never changes once it has its final name: it is written to a temporary file in
  the same directory, fsynced, renamed with os.replace, and the directory is fsynced.
- Mapping checks magic, version, header CRC, the file size the header promises, the layout and
  the CRC-32 of every section, reading the file with readinto through one reused buffer (never
  through the map, so verifying does not add the file to our resident set). Start-up parses only
  the header and the groups; records and cold documents are read on demand.
- The cold section may be verified later (verify_cold=False, then verify_section(COLD)): on a
  10M-SIM file (2.3-2.5 GB, page cache warm, 2-core EPYC guest) checking every section took
  0.83-1.55 s, all but cold 0.31-0.55 s. The hot path never reads cold documents, so the server
  maps without them and checks them off the hot path or before their first use
  (core.store.table.Table.verify_cold).
- Files are created 0600: groups hold CHAP passwords.

Must not: import asyncio, the RADIUS codec, the policy, logging, metrics or time (time is a
parameter), or parse per-SIM data when mapping.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import sys
import tempfile
import zlib
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from io import FileIO
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NamedTuple

from core.store.records import NO_GROUP, Group, Status

MAGIC: Final = b"SIMGSNAP"
FORMAT_VERSION: Final = 1
ALIGN: Final = 4096
SECTION_NAMES: Final = ("cold", "records", "imsi index", "simId index", "groups")
COLD, RECORDS, IMSI_INDEX, SIM_ID_INDEX, GROUPS = range(5)

HEADER: Final = struct.Struct("<8sIIQdQQQQII" + "QQII" * len(SECTION_NAMES))
HEADER_CRC: Final = struct.Struct("<I")
HEADER_SIZE: Final = HEADER.size + HEADER_CRC.size
RECORD: Final = struct.Struct("<QQHBBIQ")
IMSI_SLOT: Final = struct.Struct("<QII")
SIM_ID_SLOT: Final = struct.Struct("<QQ")

#: Record flags.
ALLOW_UNREPORTED: Final = 0x01
LOCK_ON_FIRST_CONNECT: Final = 0x02
#: IMSI slot value bits above the record index.
VIRTUAL: Final = 1 << 31
TERMINATED: Final = 1 << 30
RECORD_INDEX_MASK: Final = TERMINATED - 1

FIBONACCI: Final = 0x9E3779B97F4A7C15
MASK64: Final = (1 << 64) - 1
_CHUNK: Final = 4 << 20  # bytes per readinto while checksumming
_PRIMARY_KEY: Final = struct.Struct("<Q24x")  # the primary IMSI at the head of a RECORD
_VERSION: Final = struct.Struct("<I")


class SnapshotError(Exception):
    """A snapshot file that cannot be used, with the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"snapshot {os.fspath(path)}: {reason}")
        self.path = Path(path)
        self.reason = reason


class Section(NamedTuple):
    offset: int
    length: int
    crc: int


class Header(NamedTuple):
    """The fixed-size header at offset 0, as read."""

    version: int
    seq: int
    created_at: float
    sim_count: int
    imsi_count: int
    imsi_slots: int
    sim_id_slots: int
    group_count: int
    sections: tuple[Section, ...]

    @property
    def file_size(self) -> int:
        last = self.sections[-1]
        return last.offset + last.length


class DuplicateKey(NamedTuple):
    """A key that two records claim: ``first`` holds it, ``second`` repeats it."""

    field: str  # "imsi" (primary or virtual) or "simId"
    value: str
    first: int
    second: int


def slot_bits(count: int) -> int:
    """Return log2 of the slot count that holds ``count`` keys at a load of at most 0.6."""
    bits = 3
    while (1 << bits) * 3 < count * 5:
        bits += 1
    return bits


def imsi_home(imsi: int, bits: int) -> int:
    """Return the home slot of an IMSI in a table of ``2**bits`` slots (Fibonacci hashing)."""
    return ((imsi * FIBONACCI) & MASK64) >> (64 - bits)


def sim_id_key(sim_id: str) -> int:
    """Return the 64-bit key of a simId in the simId index (never 0, the empty slot)."""
    digest = hashlib.blake2b(sim_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def snapshot_path(data_dir: str | os.PathLike[str], seq: int) -> Path:
    """Return where the snapshot at sequence ``seq`` lives under ``data_dir``."""
    return Path(data_dir) / "snapshots" / f"snapshot-{seq:020d}.sgs"


def list_snapshots(data_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Return (sequence, path) of every snapshot file under ``data_dir``, newest first."""
    found: list[tuple[int, Path]] = []
    for path in (Path(data_dir) / "snapshots").glob("snapshot-*.sgs"):
        digits = path.stem.removeprefix("snapshot-")
        if digits.isascii() and digits.isdigit():
            found.append((int(digits), path))
    found.sort(reverse=True)
    return found


def group_document(group: Group, webhook_url: str | None = None) -> dict[str, Any]:
    """Return a group as the groups section (and the provisioning format) spells it."""
    document: dict[str, Any] = {"groupId": group.group_id}
    if group.chap_username is not None and group.chap_password is not None:
        document["chap"] = {
            "username": group.chap_username.decode(),
            "password": group.chap_password.decode(),
        }
    document["lockOnFirstConnect"] = group.lock_on_first_connect
    document["onImeiLockRejected"] = list(group.on_imei_lock_rejected)
    if webhook_url is not None:
        document["webhookUrl"] = webhook_url
    if group.rendezvous_point is not None:
        document["vpg"] = {"rendezvousPoint": group.rendezvous_point}
    return document


def group_from_document(document: Mapping[str, Any]) -> Group:
    """Return the Group a groups-section object describes.

    Raises:
        KeyError, TypeError, AttributeError: the object is not one group_document() writes.
    """
    chap = document.get("chap")
    vpg = document.get("vpg")
    return Group(
        group_id=str(document["groupId"]),
        chap_username=chap["username"].encode() if chap else None,
        chap_password=chap["password"].encode() if chap else None,
        lock_on_first_connect=bool(document.get("lockOnFirstConnect", False)),
        on_imei_lock_rejected=tuple(document.get("onImeiLockRejected", ())),
        rendezvous_point=vpg["rendezvousPoint"] if vpg else None,
    )


def pack_header(header: Header) -> bytes:
    """Return the header bytes, its CRC-32 included."""
    fields: list[Any] = [MAGIC, header.version, HEADER_SIZE, header.seq, header.created_at]
    fields += [header.sim_count, header.imsi_count, header.imsi_slots, header.sim_id_slots]
    fields += [header.group_count, 0]
    for section in header.sections:
        fields += [section.offset, section.length, section.crc, 0]
    body = HEADER.pack(*fields)
    return body + HEADER_CRC.pack(zlib.crc32(body))


def _fill(
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


class SnapshotWriter:
    """Build one snapshot file: add SIMs (streamed to disk), check keys, then commit.

    Use as a context manager: leaving it without commit() removes the temporary file.
    """

    def __init__(self, data_dir: str | os.PathLike[str], seq: int, created_at: float) -> None:
        self.path = snapshot_path(data_dir, seq)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".", suffix=".tmp")
        self._temporary = Path(temporary)
        self._file = os.fdopen(handle, "w+b")
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
        if len(self._cold) >= _CHUNK:
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

    def commit(self, groups: Sequence[Mapping[str, Any]]) -> Path:
        """Write the groups and the header, make the file durable, rename it into place.

        ``groups`` are group_document()-style objects; records refer to them by position.

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
        self._file.close()
        os.replace(self._temporary, self.path)
        _fsync_directory(self.path.parent)
        self._done = True
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
        repeats = _fill(table, bits, FIBONACCI, entries, _always)
        virtuals = zip(self._virtual_imsis, self._virtual_values, strict=True)
        repeats += _fill(table, bits, FIBONACCI, virtuals, _always)
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
        repeats = _fill(table, bits, 1, entries, self._same_sim_id)
        self._sim_keys = array("Q")
        duplicates = [DuplicateKey("simId", self._sim_id(new), old, new) for _, old, new in repeats]
        return table, duplicates

    def _append(self, payload: bytes | bytearray | array[int]) -> Section:
        if isinstance(payload, array) and sys.byteorder == "big":
            payload.byteswap()  # sections are little-endian
        position = self._file.seek(0, os.SEEK_END)
        offset = -(-position // ALIGN) * ALIGN
        self._file.write(bytes(offset - position))
        self._file.write(payload)
        return Section(offset, memoryview(payload).nbytes, zlib.crc32(payload))

    def _write_cold(self) -> None:
        self._cold_crc = zlib.crc32(self._cold, self._cold_crc)
        self._file.write(self._cold)
        self._cold.clear()

    def _sim_id(self, index: int) -> str:
        _, _, _, _, _, length, offset = RECORD.unpack_from(self._records, index * RECORD.size)
        self._write_cold()
        self._file.flush()
        raw = os.pread(self._file.fileno(), length, ALIGN + offset)
        return str(json.loads(raw)["simId"])

    def _same_sim_id(self, old: int, new: int) -> bool:
        return self._sim_id(old) == self._sim_id(new)


def _always(old: int, new: int) -> bool:
    return True


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class MappedSnapshot(NamedTuple):
    """A verified snapshot file, mapped read-only (or the in-memory empty_snapshot())."""

    path: Path | None
    header: Header
    buffer: mmap.mmap | bytes
    groups: tuple[Group, ...]
    group_documents: tuple[dict[str, Any], ...]
    cold_verified: bool

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
    header = _unpack_header(path, raw)
    if size != header.file_size:
        word = "truncated" if size < header.file_size else "too long"
        raise SnapshotError(path, f"{word}: {size} bytes, header says {header.file_size}")
    return header


def _unpack_header(path: Path, raw: bytearray) -> Header:
    fields = HEADER.unpack_from(raw)
    if fields[2] != HEADER_SIZE:
        raise SnapshotError(path, f"header size {fields[2]}, expected {HEADER_SIZE}")
    _, version, _, seq, created_at, sims, imsis, imsi_slots, sim_id_slots, groups, _ = fields[:11]
    flat = fields[11:]
    sections = tuple(Section(*flat[at : at + 3]) for at in range(0, len(flat), 4))
    header = Header(
        version, seq, created_at, sims, imsis, imsi_slots, sim_id_slots, groups, sections
    )
    _check_layout(path, header)
    return header


def _check_layout(path: Path, header: Header) -> None:
    expected = {
        RECORDS: header.sim_count * RECORD.size,
        IMSI_INDEX: header.imsi_slots * IMSI_SLOT.size,
        SIM_ID_INDEX: header.sim_id_slots * SIM_ID_SLOT.size,
    }
    for number, length in expected.items():
        got = header.sections[number].length
        if got != length:
            name = SECTION_NAMES[number]
            raise SnapshotError(path, f"section {name!r} is {got} bytes, expected {length}")
    for slots, keys, name in (
        (header.imsi_slots, header.imsi_count, "imsi index"),
        (header.sim_id_slots, header.sim_count, "simId index"),
    ):
        if slots < 8 or slots & (slots - 1) or keys * 5 > slots * 3:
            raise SnapshotError(path, f"section {name!r}: {slots} slots for {keys} keys")
    position = ALIGN
    for number, section in enumerate(header.sections):
        if section.offset < position or section.offset % ALIGN:
            name = SECTION_NAMES[number]
            raise SnapshotError(path, f"section {name!r} at offset {section.offset} overlaps")
        position = section.offset + section.length


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
