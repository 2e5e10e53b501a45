"""Rows into a snapshot: SimRow/VirtualRow, a SIM's cold document, and write_snapshot().

Owns: the row types the importer builds per line and bench/ generates; how a row becomes a
snapshot record (flags, the virtual bit) and its cold JSON document; write_snapshot() for bulk
rows that need no validation.

Invariants:
- A SIM's cold document is a provisioning line (without "kind") that imports to the same row:
  the format round-trips. It is built by formatting, not json.dumps, which is safe because every
  string in it is a name, digits, a status label or a dotted address (core.provision.fields).
- write_snapshot() still refuses what would make a corrupt or ambiguous snapshot: repeated keys,
  names that are not names, unknown group indexes.

Must not: parse input or report per-line errors (core.provision.importer does); import asyncio,
the RADIUS codec, the service layer, logging or metrics.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, NamedTuple

from core.policy.imei import format_identity
from core.provision.fields import (
    COVERAGES,
    DEFAULT_COVERAGE,
    DEFAULT_SUBSCRIPTION,
    FIRST_VIRTUAL_IMSI,
    NAME_PATTERN,
)
from core.store.format import ALLOW_UNREPORTED, LOCK_ON_FIRST_CONNECT, group_document
from core.store.records import NO_GROUP, VIRTUAL_CAPABLE_SUBSCRIPTIONS, Group, Status
from core.store.snapshot_writer import SnapshotWriter


class VirtualRow(NamedTuple):
    """A virtual subscriber of a SIM: IMSI (99999...), terminated or not, framed IPv4 as an int."""

    imsi: int
    terminated: bool = False
    framed_ip: int = 0


class SimRow(NamedTuple):
    """A SIM ready for the snapshot (what import builds per line, and what bench/ generates).

    ``group`` indexes the groups given beside the rows; ``lock`` is the 14-digit identity (0 = no
    lock); ``imei`` is the lock as typed (None: written from ``lock``).
    """

    sim_id: str
    imsi: int
    status: Status = Status.ACTIVE
    group: int = NO_GROUP
    lock: int = 0
    allow_unreported: bool = False
    lock_on_first_connect: bool = False
    framed_ip: int = 0
    subscription: str = DEFAULT_SUBSCRIPTION
    coverage: str = DEFAULT_COVERAGE
    subscribers: tuple[VirtualRow, ...] = ()
    imei: str | None = None


def write_snapshot(
    data_dir: str | os.PathLike[str],
    rows: Iterable[SimRow],
    groups: Sequence[Group] = (),
    *,
    seq: int = 1,
    created_at: float = 0.0,
) -> Path:
    """Write a snapshot of rows that need no validation (bench data); return its path.

    Raises:
        ValueError: an IMSI or simId repeats, a name is not a name, or a row names a group
            outside ``groups``.
    """
    group_ids = [group.group_id for group in groups]
    checked = {
        (subscription, coverage)
        for subscription in VIRTUAL_CAPABLE_SUBSCRIPTIONS
        for coverage in COVERAGES
    }
    valid_groups = range(len(groups))
    with SnapshotWriter(data_dir, seq, created_at) as writer:
        for row in rows:
            if (row.subscription, row.coverage) not in checked:
                if not NAME_PATTERN.fullmatch(row.subscription) or row.coverage not in COVERAGES:
                    raise ValueError(f"SIM {row.sim_id!r}: bad subscription or coverage")
                checked.add((row.subscription, row.coverage))
            if not NAME_PATTERN.fullmatch(row.sim_id):
                raise ValueError(f"simId {row.sim_id!r} is not a name")
            if row.group != NO_GROUP and row.group not in valid_groups:
                raise ValueError(f"SIM {row.sim_id!r}: no group {row.group}")
            add_row(writer, row, group_ids)
        return writer.commit([group_document(group) for group in groups])


def add_row(writer: SnapshotWriter, row: SimRow, group_ids: Sequence[str]) -> int:
    """Add a row to the snapshot being written; return its record index.

    ``group_ids`` are the group names by index (the cold document names the row's group).
    """
    flags = (ALLOW_UNREPORTED if row.allow_unreported else 0) | (
        LOCK_ON_FIRST_CONNECT if row.lock_on_first_connect else 0
    )
    return writer.add_sim(
        row.imsi,
        row.sim_id,
        cold_document(row, group_ids),
        row.status,
        row.group,
        row.lock,
        flags,
        row.framed_ip,
        row.imsi >= FIRST_VIRTUAL_IMSI,
        row.subscribers,
    )


def cold_document(row: SimRow, group_ids: Sequence[str]) -> bytes:
    """Return the SIM's cold JSON: a provisioning line (without kind). Strings are names/digits."""
    parts = [
        f'{{"simId":"{row.sim_id}","imsi":"{row.imsi:015d}","status":"{_LABELS[row.status]}",'
        f'"subscription":"{row.subscription}","coverage":"{row.coverage}"'
    ]
    if row.group != NO_GROUP:
        parts.append(f',"groupId":"{group_ids[row.group]}"')
    if row.lock:
        imei = row.imei or _formatted(row.lock)
        allow = "true" if row.allow_unreported else "false"
        parts.append(f',"imeiLock":{{"imei":"{imei}","allowUnreported":{allow}}}')
    if row.lock_on_first_connect:
        parts.append(',"lockOnFirstConnect":true')
    if row.framed_ip:
        parts.append(f',"framedIp":"{dotted(row.framed_ip)}"')
    if row.subscribers:
        subscribers = ",".join(
            f'{{"imsi":"{sub.imsi:015d}","status":"{"terminated" if sub.terminated else "active"}"'
            + (f',"framedIp":"{dotted(sub.framed_ip)}"}}' if sub.framed_ip else "}")
            for sub in row.subscribers
        )
        parts.append(f',"virtualSubscribers":[{subscribers}]')
    parts.append("}")
    return "".join(parts).encode()


_LABELS: Final = ("", *(status.label for status in Status))  # by Status value


_formatted: Final = functools.lru_cache(maxsize=1024)(format_identity)


def dotted(address: int) -> str:
    """Return an IPv4 address held as an int in dotted-quad form."""
    return f"{address >> 24}.{(address >> 16) & 255}.{(address >> 8) & 255}.{address & 255}"
