"""The subscriber table the decision reads: a read-only view over a mapped snapshot.

Owns: IMSI -> Subscriber (the probe itself is core.store.finder's) and simId -> SIM lookups in
O(1) on the snapshot's hash indexes (format in core.store.format), the SIMs' cold documents,
the groups, and picking the newest valid snapshot at start-up.

Invariants:
- Opening copies nothing per SIM out of the map: start-up time and memory do not grow with the
  number of SIMs. Pages are read when a probe touches them.
- find() hands out immutable Subscriber tuples. A Subscriber's lock_on_first_connect is the SIM's
  own flag only (the policy ORs in its group's, so that replacing a group takes effect without
  touching its SIMs); a virtual IMSI resolves to its SIM's record and primary IMSI.
- Read-only: changes after the snapshot (journal replay, API writes) live in a layer above this
  one; nothing ever writes through the map.

Must not: import asyncio, the RADIUS codec, the policy, logging, metrics or time.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys
from array import array
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from core.store.finder import Finder, make_finder
from core.store.format import (
    COLD,
    IMSI_INDEX,
    IMSI_SLOT,
    RECORD,
    RECORDS,
    SIM_ID_INDEX,
    SIM_ID_SLOT,
    SnapshotError,
    list_snapshots,
    sim_id_key,
)
from core.store.records import Group, Subscriber
from core.store.snapshot import MappedSnapshot, empty_snapshot, map_snapshot


class Table:
    """The subscribers of one snapshot (or none): what the admission decision reads."""

    __slots__ = (
        "_buffer",
        "_cold_at",
        "_cold_verified",
        "_found_ids",
        "_group_documents",
        "_groups_by_id",
        "_imsi_at",
        "_imsi_slots",
        "_records_at",
        "_sim_id_at",
        "_sim_id_last",
        "_sim_id_shift",
        "created_at",
        "find",
        "groups",
        "imsi_count",
        "mapped",
        "path",
        "seq",
        "sim_count",
    )

    find: Finder
    """Return the Subscriber an IMSI (as an int) names, or None when the IMSI is unknown."""

    def __init__(self, mapped: MappedSnapshot) -> None:
        header = mapped.header
        self.mapped = mapped  # compaction copies sections out of it (core.store.compaction)
        self.path: Path | None = mapped.path
        self.seq = header.seq
        self.created_at = header.created_at
        self.sim_count = header.sim_count
        self.imsi_count = header.imsi_count
        self.groups = mapped.groups
        self._group_documents = mapped.group_documents
        self._groups_by_id = {group.group_id: n for n, group in enumerate(mapped.groups)}
        self._buffer: mmap.mmap | bytes = mapped.buffer
        self._records_at = header.sections[RECORDS].offset
        self._cold_at = header.sections[COLD].offset
        self._cold_verified = mapped.cold_verified
        self._sim_id_at = header.sections[SIM_ID_INDEX].offset
        self._sim_id_last = header.sim_id_slots - 1
        self._sim_id_shift = 65 - header.sim_id_slots.bit_length()
        imsi_at = header.sections[IMSI_INDEX].offset
        self._imsi_at = imsi_at
        self._imsi_slots = header.imsi_slots
        self.find = make_finder(mapped.buffer, imsi_at, header.imsi_slots, self._records_at)
        #: simId -> index found by sim_by_id (the snapshot never changes: always valid); a write
        #: looked the SIM up 2-3 times, each a JSON parse of its cold document (bench/writes.py)
        self._found_ids: dict[str, int] = {}

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify_cold: bool = False) -> Table:
        """Verify and map one snapshot file; the cold section too only with ``verify_cold``.

        Left unverified, the cold section is checked by verify_cold(), or on first use.

        Raises:
            SnapshotError: the file is unreadable, truncated, of another format or corrupt.
        """
        return cls(map_snapshot(path, verify_cold=verify_cold))

    @classmethod
    def empty(cls) -> Table:
        """Return a table with no SIM and no group (a server started before any import)."""
        return cls(empty_snapshot())

    @property
    def cold_verified(self) -> bool:
        """Whether the cold section's checksum has been checked (see verify_cold())."""
        return self._cold_verified

    def verify_cold(self) -> None:
        """Check the cold section's checksum if not done yet (~0.5 s for 10M SIMs).

        Call it off the hot path after start-up; sim_by_id() and sim_document() call it first.

        Raises:
            SnapshotError: the cold section is corrupt or unreadable.
        """
        if not self._cold_verified:
            self.mapped.verify_section(COLD)
        self._cold_verified = True

    def group(self, index: int) -> Group:
        """Return the group at ``index`` (Subscriber.group)."""
        return self.groups[index]

    def group_index(self, group_id: str) -> int | None:
        """Return the index of the group named ``group_id``, or None."""
        return self._groups_by_id.get(group_id)

    def group_document(self, index: int) -> dict[str, Any]:
        """Return the group as provisioned (webhookUrl included)."""
        return dict(self._group_documents[index])

    def sim_by_id(self, sim_id: str) -> int | None:
        """Return the record index of the SIM ``sim_id``, or None.

        Raises:
            SnapshotError: the cold section is corrupt (see verify_cold()).
        """
        known = self._found_ids.get(sim_id)
        if known is not None:
            return known
        self.verify_cold()
        key = sim_id_key(sim_id)
        number = key >> self._sim_id_shift
        while True:
            found, index = SIM_ID_SLOT.unpack_from(self._buffer, self._sim_id_at + (number << 4))
            if not found:
                return None
            if found == key and self._is_sim(index, sim_id):
                index = int(index)
                self._remember(sim_id, index)
                return index
            number = (number + 1) & self._sim_id_last

    def sim(self, index: int) -> Subscriber:
        """Return the SIM at a record index as its primary IMSI's Subscriber.

        Raises:
            IndexError: no such record.
        """
        if not 0 <= index < self.sim_count:
            raise IndexError(f"no SIM record {index}")
        (primary,) = _PRIMARY.unpack_from(self._buffer, self._records_at + index * RECORD.size)
        subscriber = self.find(primary)
        assert subscriber is not None, "every record's primary IMSI is in the index"
        return subscriber

    def sim_document(self, index: int) -> dict[str, Any]:
        """Return the SIM at a record index as provisioned (its cold JSON document).

        The record (find(), sim()) is authoritative for the hot fields: status, lock, group.

        Raises:
            IndexError: no such record.
            SnapshotError: the cold section is corrupt (see verify_cold()).
        """
        self._check_cold(index)
        return self._document(index)

    def sim_id(self, index: int) -> str:
        """Return the simId of the SIM at a record index.

        perf: every imeiLockRejected event names its SIM by simId, and the reactions remember
        only the last 65,536; past them, at 10M SIMs, parsing the whole document cost 4.0 µs
        per reject, reading its head 2.1 µs (random SIMs). The documents simgate writes begin
        with the simId, so the raw bytes up to the closing quote are the answer when no
        backslash (an escape) comes before it; anything else is parsed.

        Raises:
            IndexError: no such record.
            SnapshotError: the cold section is corrupt (see verify_cold()).
        """
        self._check_cold(index)
        found = self._head_sim_id(index)
        sim_id = str(self._document(index)["simId"]) if found is None else found
        # perf: lock on first connect names the SIM it writes by reading its simId here, and
        # checking the write looks the SIM up by that simId: remembered, that probe (~10 µs
        # between decisions, bench/writes.py) is a dict lookup. simIds are unique in a snapshot.
        self._remember(sim_id, index)
        return sim_id

    def document_if_virtual(self, index: int) -> dict[str, Any] | None:
        """Return the SIM's document if it lists virtual subscribers, else None, unparsed.

        perf: a write to a SIM needs its virtual subscribers (they carry its lock and status),
        and most SIMs have none. The documents simgate writes (core.provision.rows, compaction)
        spell the key as it is, never escaped, so a document whose bytes lack it lists none:
        only the others are parsed.

        Raises:
            IndexError: no such record.
            SnapshotError: the cold section is corrupt (see verify_cold()).
        """
        self._check_cold(index)
        start, length = self._cold_span(index)
        if self._buffer.find(_VIRTUAL_KEY, start, start + length) < 0:
            return None
        document = self._document(index)
        return document if document.get("virtualSubscribers") else None

    def finder(self, overlay: dict[int, Subscriber]) -> Finder:
        """Return find() with ``overlay`` (IMSI -> Subscriber) consulted first.

        The overlay is read at every call, so later changes to it are seen; a miss costs one
        dict lookup on top of find() (core.store.live.LiveTable).
        """
        return make_finder(self._buffer, self._imsi_at, self._imsi_slots, self._records_at, overlay)

    def framed_ips(self) -> set[int]:
        """Return every framed IPv4 (as an int) the IMSI index holds, 0 left out."""
        start = self._imsi_at
        words = array("I", self._buffer[start : start + self._imsi_slots * IMSI_SLOT.size])
        if sys.byteorder == "big":
            words.byteswap()  # sections are little-endian
        found = set(words[3::4])  # the last word of each "<QII" slot
        found.discard(0)
        return found

    def close(self) -> None:
        """Unmap the snapshot; the table must not be used afterwards."""
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()

    def __enter__(self) -> Table:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _document(self, index: int) -> dict[str, Any]:
        start, length = self._cold_span(index)
        document: dict[str, Any] = json.loads(self._buffer[start : start + length].decode())
        return document

    def _is_sim(self, index: int, sim_id: str) -> bool:
        """Return whether the SIM at ``index`` is ``sim_id`` (two simIds can share a key).

        perf: a write looks its SIM up by simId; parsing the document for the answer was a
        third of its cost (bench/writes.py). The head of the document answers instead when
        it can (_head_sim_id); otherwise it is parsed.
        """
        found = self._head_sim_id(index)
        if found is None:
            return self._document(index).get("simId") == sim_id
        return found == sim_id

    def _head_sim_id(self, index: int) -> str | None:
        """The simId as the first bytes of the SIM's document spell it, or None.

        The documents simgate writes begin with the simId, so the bytes up to the closing
        quote are it when no backslash (an escape) comes before that quote. None: another
        beginning, an escape, or a simId longer than the head read; parse the document then.
        """
        start, length = self._cold_span(index)
        head = self._buffer[start : start + min(length, _SIM_ID_HEAD)]
        if head.startswith(_SIM_ID_FIRST):
            end = head.find(b'"', _AT_START)
            if end > 0 and head.find(b"\\", _AT_START, end) < 0:
                return head[_AT_START:end].decode()
        return None

    def _remember(self, sim_id: str, index: int) -> None:
        """Keep the index of a simId for sim_by_id() (the last _FOUND_IDS or so)."""
        if len(self._found_ids) >= _FOUND_IDS:
            self._found_ids.clear()
        self._found_ids[sim_id] = index

    def _check_cold(self, index: int) -> None:
        if not 0 <= index < self.sim_count:
            raise IndexError(f"no SIM record {index}")
        self.verify_cold()

    def _cold_span(self, index: int) -> tuple[int, int]:
        """(offset in the map, length) of the SIM's cold document."""
        length, offset = _COLD_SPAN.unpack_from(
            self._buffer, self._records_at + index * RECORD.size + _COLD_SPAN_AT
        )
        return self._cold_at + offset, length


_PRIMARY: Final = struct.Struct("<Q")
_COLD_SPAN: Final = struct.Struct("<IQ")  # a record's last two fields: cold length and offset
_COLD_SPAN_AT: Final = RECORD.size - _COLD_SPAN.size
_VIRTUAL_KEY: Final = b'"virtualSubscribers":'
_SIM_ID_FIRST: Final = b'{"simId":"'  # how the documents simgate writes begin
_AT_START: Final = len(_SIM_ID_FIRST)
_SIM_ID_HEAD: Final = _AT_START + 256  # bytes read by _head_sim_id(); a longer simId is parsed
_FOUND_IDS: Final = 65_536  # simIds remembered by sim_by_id and sim_id


def load_newest(
    data_dir: str | os.PathLike[str], *, verify_cold: bool = False
) -> tuple[Table | None, list[SnapshotError]]:
    """Open the newest valid snapshot under ``data_dir``; also return the corrupt ones skipped.

    Returns (None, []) when there is no snapshot at all (start with Table.empty()). The cold
    sections are verified only with ``verify_cold`` (see Table.open()).

    Raises:
        SnapshotError: snapshots exist but none is valid (the server must not start).
    """
    skipped: list[SnapshotError] = []
    candidates = list_snapshots(data_dir)
    for seq, path in candidates:
        try:
            table = Table.open(path, verify_cold=verify_cold)
        except SnapshotError as error:
            skipped.append(error)
            continue
        if table.seq != seq:
            table.close()
            skipped.append(SnapshotError(path, f"header says sequence {table.seq}"))
            continue
        return table, skipped
    if skipped:
        reasons = "; ".join(f"{error.path.name}: {error.reason}" for error in skipped)
        raise SnapshotError(Path(data_dir) / "snapshots", f"no valid snapshot ({reasons})")
    return None, []
