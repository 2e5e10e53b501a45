"""The IMSI lookup over a mapped snapshot: find(imsi) -> Subscriber, in C or in Python.

Owns: the probe of the IMSI index and the read of the record it points at (format in
core.store.format), an overlay consulted first (core.store.live), and the choice between the C
lookup (core/store/_index.c) and its specification here, ``python_finder``
(tests/store/test_index.py compares the two).

Invariants: a Subscriber's lock_on_first_connect is the SIM's own flag only; a virtual IMSI
resolves to its SIM's record and primary IMSI; nothing is copied out of the map per SIM.

Must not: import asyncio, the RADIUS codec, the policy, logging, metrics or time.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Final

from core.store.format import (
    ALLOW_UNREPORTED,
    FIBONACCI,
    IMSI_SLOT,
    LOCK_ON_FIRST_CONNECT,
    MASK64,
    RECORD,
    RECORD_INDEX_MASK,
    TERMINATED,
    VIRTUAL,
)
from core.store.records import Status, Subscriber

#: Status by stored octet. 0 is never written; should it appear it reads as terminated (closed).
_STATUSES: Final = (Status.TERMINATED, *Status)


def _load_index() -> ModuleType | None:
    # the switch of core.radius.native (not imported: the store does not import the codec)
    if os.environ.get("SIMGATE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from core.store import _index as index
    except ImportError:  # built without a C compiler, or a source checkout
        return None
    return index


#: the C lookup, or None (then find() is python_finder's closure)
_index: Final = _load_index()

Finder = Callable[[int], Subscriber | None]


_HOT_RECORD: Final = struct.Struct("<QQHBB")  # RECORD's head: the cold reference is not read


def make_finder(
    buffer: mmap.mmap | bytes,
    index_at: int,
    slots: int,
    records_at: int,
    overlay: dict[int, Subscriber] | None = None,
) -> Finder:
    """Return find(): the C lookup (core/store/_index.c) when it is built, else the Python one.

    ``SIMGATE_PURE_PYTHON=1`` picks the Python one, as for the codec (core.radius.native).
    """
    changed: dict[int, Subscriber] = {} if overlay is None else overlay
    if _index is not None:
        found: Finder = _index.Finder(
            buffer, index_at, slots, records_at, _STATUSES, Subscriber, changed
        )
        return found
    return python_finder(buffer, index_at, slots, records_at, changed)


def python_finder(
    buffer: mmap.mmap | bytes,
    index_at: int,
    slots: int,
    records_at: int,
    overlay: Mapping[int, Subscriber] | None = None,
) -> Finder:
    """Return find() with every constant it needs bound as a closure variable.

    With an ``overlay``, an IMSI it holds is answered from it, without probing the map.
    """
    shift = 65 - slots.bit_length()
    last = slots - 1
    multiplier, mask = FIBONACCI, MASK64
    slot, record = IMSI_SLOT.unpack_from, _HOT_RECORD.unpack_from
    statuses = _STATUSES
    virtual, terminated, sim_mask = VIRTUAL, TERMINATED, RECORD_INDEX_MASK
    allow, first_connect = ALLOW_UNREPORTED, LOCK_ON_FIRST_CONNECT
    make = tuple.__new__
    assert (IMSI_SLOT.size, RECORD.size) == (1 << 4, 1 << 5), "the shifts below"
    changed: Mapping[int, Subscriber] = {} if overlay is None else overlay

    # perf: one probe per call at load <= 0.6; no attribute lookups, one tuple allocated.
    # The overlay check is the only thing a LiveTable adds (bench: docs in core.store.live).
    def find(imsi: int) -> Subscriber | None:
        if imsi in changed:
            return changed[imsi]
        number = ((imsi * multiplier) & mask) >> shift
        while True:
            key, reference, framed_ip = slot(buffer, index_at + (number << 4))
            if not key:
                return None
            if key == imsi:
                break
            number = (number + 1) & last
        sim = reference & sim_mask
        primary, lock, group, status, flags = record(buffer, records_at + (sim << 5))
        return make(
            Subscriber,
            (
                imsi,
                sim,
                reference >= virtual,
                reference & terminated != 0,
                framed_ip,
                primary,
                statuses[status],
                group,
                lock,
                flags & allow != 0,
                flags & first_connect != 0,
            ),
        )

    return find
