"""The snapshot file format (DESIGN §6): layout, structs, header packing, keys and file names.

Owns: every constant and struct of the on-disk layout, the Header/Section tuples and their
packing and unpacking, the hash-table key functions (imsi_home, sim_id_key, slot_bits), the
groups section's JSON (group_document, group_from_document), where snapshot files live and how
they are named, and SnapshotError. core.store.snapshot_writer writes this format and
core.store.snapshot maps and verifies it; both take every layout fact from here.

Layout (integers little-endian; every section starts on a 4096-byte boundary, in this order)::

    0        header   HEADER + HEADER_CRC (196 bytes), zero-padded to 4096
    section  cold         one compact UTF-8 JSON object per SIM (its "simId" included), back to
                          back in record order (compaction copies runs of them as they lie)
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
- A change to any struct, constant or key function here is a change of FORMAT_VERSION: files
  written by another version are refused, never misread.
- unpack_header() accepts only a header whose sections lie in order, aligned, without overlap,
  with the lengths the counts imply and slot counts a power of two at load <= 0.6.

Must not: do any I/O beyond naming and listing files (writing is snapshot_writer's, reading is
snapshot's); import asyncio, the RADIUS codec, the policy, logging, metrics or time.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

from core.store.records import Group

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


def unpack_header(path: Path, raw: bytes | bytearray) -> Header:
    """Return the Header of HEADER bytes whose magic, version and CRC were checked, if sound.

    Raises:
        SnapshotError: the header size or the section layout is not one this format allows.
    """
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
