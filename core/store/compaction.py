"""Compaction: a new snapshot file from a LiveTable, copying what did not change byte for byte.

Owns: write_compacted(): the base snapshot's cold documents, records and both hash indexes
copied in bulk, with the SIMs changed since (LiveTable.changes()) rewritten in place and the new
ones appended; written through SnapshotWriter (temporary file, fsync, rename, directory fsync).

Invariants:
- No unchanged SIM is parsed or even visited one by one in Python: its cold document is copied
  as part of a run of documents, its record as part of the records section, its IMSI and simId
  slots as part of the index sections. Per-SIM work is done by C loops (slices, accumulate).
- Record indexes stay: base SIMs keep theirs, new SIMs follow in creation order; so the new
  table's find() returns exactly what the LiveTable's did, sim_index included.
- Cold documents lie back to back in record order (SnapshotWriter writes them so); a base
  snapshot where they do not is refused, never rewritten wrong.

Must not: read the journal (the caller applies it); import asyncio, the RADIUS codec, the
policy, logging, metrics or time.
"""

from __future__ import annotations

import json
import os
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Final

from core.store.format import (
    ALLOW_UNREPORTED,
    COLD,
    FIBONACCI,
    IMSI_INDEX,
    LOCK_ON_FIRST_CONNECT,
    MASK64,
    RECORD,
    RECORDS,
    SIM_ID_INDEX,
    TERMINATED,
    VIRTUAL,
    SnapshotError,
    sim_id_key,
    slot_bits,
)
from core.store.live import LiveTable, SimChange
from core.store.records import Subscriber
from core.store.snapshot import MappedSnapshot
from core.store.snapshot_writer import SnapshotWriter, fill_slots

_WORDS: Final = RECORD.size // 8  # a record as 8-byte words: the cold offset is the last
_HALVES: Final = RECORD.size // 4  # as 4-byte words: the cold length is the 6th


def write_compacted(
    data_dir: str | os.PathLike[str],
    live: LiveTable,
    created_at: float,
    pace: Callable[[int], None] | None = None,
) -> Path:
    """Write the snapshot of ``live`` at sequence live.seq; return its path.

    ``pace``: SnapshotWriter's rate limit (None: as fast as it goes).

    Raises:
        SnapshotError: the base snapshot's cold documents are not back to back.
        OSError: the file cannot be written.
    """
    if sys.byteorder != "little":
        raise NotImplementedError("compaction copies little-endian sections as native words")
    base = live.base.mapped
    changes = live.changes()
    sim_count = live.sim_count
    documents = {change.sim_index: _cold(change) for change in changes}
    records, runs = _records(base, changes, documents)
    imsi_index = _imsi_index(base, changes, live.imsi_count)
    sim_id_index = _sim_id_index(base, changes, sim_count)
    with SnapshotWriter(data_dir, live.seq, created_at, pace) as writer:
        cold = _cold_chunks(base, runs, documents)
        writer.add_sections(cold, records, imsi_index, sim_id_index, live.imsi_count)
        return writer.commit(live.group_documents())


def _cold(change: SimChange) -> bytes:
    return json.dumps(change.document, separators=(",", ":"), ensure_ascii=False).encode()


def _record(sub: Subscriber, length: int) -> bytes:
    flags = (ALLOW_UNREPORTED if sub.allow_unreported else 0) | (
        LOCK_ON_FIRST_CONNECT if sub.lock_on_first_connect else 0
    )
    return RECORD.pack(sub.imsi, sub.lock, sub.group, sub.status, flags, length, 0)


def _records(
    base: MappedSnapshot, changes: Sequence[SimChange], documents: dict[int, bytes]
) -> tuple[bytearray, list[tuple[int, int]]]:
    """Return the new records section and the runs of base cold bytes to keep, (start, end).

    Changed base records are rewritten in place, new ones appended; then every cold offset is
    recomputed as the running sum of the lengths.
    """
    section = base.header.sections[RECORDS]
    with memoryview(base.buffer) as view:  # one copy: slicing the map would make two
        records = bytearray(view[section.offset : section.offset + section.length])
    count = len(records) // RECORD.size
    halves = memoryview(records).cast("I")
    lengths = halves[_HALVES - 3 :: _HALVES]
    offsets = memoryview(records).cast("Q")[_WORDS - 1 :: _WORDS]
    if count and (
        offsets[0] != 0
        or memoryview(array("Q", accumulate(lengths[:-1], initial=0))) != offsets
        or offsets[-1] + lengths[-1] != base.header.sections[COLD].length
    ):
        raise SnapshotError(base.path or "(memory)", "cold documents are not in record order")
    runs: list[tuple[int, int]] = []
    start = 0
    for change in changes:
        at = change.sim_index
        if at < count:
            runs.append((start, int(offsets[at])))
            start = int(offsets[at]) + int(lengths[at])
            records[at * RECORD.size : (at + 1) * RECORD.size] = _record(
                change.primary, len(documents[at])
            )
    runs.append((start, base.header.sections[COLD].length))
    del halves, lengths, offsets  # release the views: the bytearray grows next
    records += b"".join(
        _record(change.primary, len(documents[change.sim_index]))
        for change in changes
        if change.sim_index >= count
    )
    if records:
        lengths = memoryview(records).cast("I")[_HALVES - 3 :: _HALVES]
        offsets = memoryview(records).cast("Q")[_WORDS - 1 :: _WORDS]
        offsets[:] = array("Q", accumulate(lengths[:-1], initial=0))
        del lengths, offsets
    return records, runs


def _cold_chunks(
    base: MappedSnapshot, runs: Sequence[tuple[int, int]], documents: dict[int, bytes]
) -> Iterator[bytes | memoryview]:
    """Yield the new cold section: base runs around the changed base documents, then new ones.

    ``runs`` has one run more than there are changed base SIMs: each changed document goes
    between two runs.
    """
    cold_at = base.header.sections[COLD].offset
    ordered = [documents[index] for index in sorted(documents)]
    changed, added = ordered[: len(runs) - 1], ordered[len(runs) - 1 :]
    with memoryview(base.buffer) as view:
        for number, (start, end) in enumerate(runs):
            if number:
                yield changed[number - 1]
            if end > start:
                yield view[cold_at + start : cold_at + end]
    yield from added


def _imsi_index(base: MappedSnapshot, changes: Sequence[SimChange], imsi_count: int) -> array[int]:
    """Return the new IMSI index: the base slots, changed values set, new IMSIs inserted."""
    old = _slots(base, IMSI_INDEX)
    count = base.header.sim_count
    updates = [(c.primary.imsi, _imsi_value(c.primary)) for c in changes if c.sim_index < count]
    added = [
        (sub.imsi, _imsi_value(sub))
        for change in changes
        if change.sim_index >= count
        for sub in (change.primary, *change.subscribers)
    ]
    return _grown(old, slot_bits(imsi_count), FIBONACCI, updates, added)


def _sim_id_index(base: MappedSnapshot, changes: Sequence[SimChange], sim_count: int) -> array[int]:
    """Return the new simId index: the base slots with the new SIMs' simIds inserted."""
    old = _slots(base, SIM_ID_INDEX)
    count = base.header.sim_count
    added = [
        (sim_id_key(str(change.document["simId"])), change.sim_index)
        for change in changes
        if change.sim_index >= count
    ]
    return _grown(old, slot_bits(sim_count), 1, [], added)


def _imsi_value(sub: Subscriber) -> int:
    value = sub.sim_index | (VIRTUAL if sub.virtual else 0) | (TERMINATED if sub.terminated else 0)
    return value | sub.framed_ip << 32


def _slots(base: MappedSnapshot, number: int) -> array[int]:
    section = base.header.sections[number]
    slots = array("Q")
    with memoryview(base.buffer) as view:  # one copy: slicing the map would make two
        slots.frombytes(view[section.offset : section.offset + section.length])
    return slots


def _grown(
    old: array[int],
    bits: int,
    multiplier: int,
    updates: Sequence[tuple[int, int]],
    added: Sequence[tuple[int, int]],
) -> array[int]:
    """Return ``old`` (2 words per slot) with values updated and keys added, in 2**bits slots.

    Keys added are new (LiveTable.check() saw to it), so a key already present means a
    different simId sharing a key: probing goes on. At the same size the old slots are kept as
    they lie; a bigger table is filled again from every key.
    """
    if 2 << bits == len(old):
        slots = old
    else:
        slots = array("Q", [0]) * (2 << bits)
        pairs = zip(old[0::2], old[1::2], strict=True)
        fill_slots(slots, bits, multiplier, ((k, v) for k, v in pairs if k), _never)
    last = (2 << bits) - 1
    for key, value in updates:
        word = (((key * multiplier) & MASK64) >> (64 - bits)) << 1
        while slots[word] != key:
            word = (word + 2) & last
        slots[word + 1] = value
    fill_slots(slots, bits, multiplier, added, _never)
    return slots


def _never(old: int, new: int) -> bool:
    return False
