"""The live table: the mapped snapshot plus the writes journaled after it (DESIGN §6).

Owns: LiveTable, the view the decision and the admin API read (find(), groups, SIM and group
documents, listing), check() (is a write acceptable now, in which journaled form) and apply()
(make a journaled write visible); SimChange, what compaction needs of every SIM changed or added
since the snapshot.

Invariants:
- find() is the base Table's probe with one dict lookup in front of it (Table.finder): an IMSI
  whose SIM changed or was added is answered from the overlay, every other from the map. The
  overlay holds whole Subscriber tuples, so a decision never sees half a write.
- apply() is deterministic and never raises for a command that check() accepted, whatever was
  applied in between: a write that lost a race (a PutSim whose simId or IMSI was taken meanwhile,
  a SetLock(if_unlocked) on a SIM locked meanwhile) changes nothing and returns False. Replaying
  the journal therefore rebuilds exactly the table that was served.
- SIM indexes are stable: a base SIM keeps its record index, new SIMs follow in creation order,
  group indexes likewise (PutGroup replaces in place or appends). Compaction keeps them all.
- The cold document of a base SIM lists its virtual subscribers (import and compaction write it
  so). A lock or status change does not parse it: the change is kept as a patch of the
  document's top-level fields and the document is built (parsed, patched) only when something
  reads it, an API call or compaction's changes(). Only a document that lists virtual
  subscribers is parsed at the first change, for their IMSIs (Table.document_if_virtual()).

Must not: write files, read the clock; import asyncio, the RADIUS codec, logging or metrics.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, Final, NamedTuple

from core.policy.imei import lock_identity
from core.provision.fields import FIRST_VIRTUAL_IMSI
from core.store.commands import (
    Command,
    CommandError,
    PutGroup,
    PutSim,
    SetLock,
    SetStatus,
    UnknownSim,
    UnsetLock,
)
from core.store.documents import FramedPool, check_group, check_sim, sim_row, subscribers
from core.store.finder import Finder
from core.store.format import group_from_document
from core.store.records import NO_GROUP, Group, Status, Subscriber
from core.store.table import Table

_VIRTUAL_STATUSES: Final = (Status.ACTIVE, Status.TERMINATED)


class SimChange(NamedTuple):
    """A SIM as it stands after the writes since the snapshot (changed or new)."""

    sim_index: int
    primary: Subscriber
    subscribers: tuple[Subscriber, ...]  # its virtual subscribers, in document order
    document: dict[str, Any]


_REMOVED: Final = object()  # a patch's value for a field the write took out of the document


class _Changed:
    """A SIM in the overlay, changed in place by each write to it.

    perf: lock on first connect writes each SIM once, between decisions. Parsing its document
    and building a new SimChange were half of such a write's cost (bench/writes.py), for a
    document nobody may read before the next compaction. ``document`` is None until read;
    ``patch`` holds the top-level fields written since the base document.
    """

    __slots__ = ("document", "index", "patch", "primary", "sim_id", "subscribers")

    def __init__(
        self,
        index: int,
        sim_id: str,
        primary: Subscriber,
        subscribers: tuple[Subscriber, ...],
        document: dict[str, Any] | None,
    ) -> None:
        self.index = index
        self.sim_id = sim_id
        self.primary = primary
        self.subscribers = subscribers
        self.document = document
        self.patch: dict[str, Any] = {}

    def set(self, field: str, value: Any) -> None:
        """Write a top-level field of the document (``_REMOVED``: take it out)."""
        if self.document is None:
            self.patch[field] = value
        elif value is _REMOVED:
            self.document.pop(field, None)
        else:
            self.document[field] = value


class LiveTable:
    """The snapshot ``base`` plus an overlay of the writes applied since (seq > base.seq)."""

    __slots__ = (
        "_changed",
        "_group_documents",
        "_group_index",
        "_ids",
        "_overlay",
        "_pool",
        "base",
        "find",
        "groups",
        "imsi_count",
        "seq",
        "sim_count",
    )

    find: Finder
    """Return the Subscriber an IMSI (as an int) names, or None: overlay first, then the map."""

    def __init__(self, base: Table) -> None:
        self.base = base
        self.seq = base.seq
        self.sim_count = base.sim_count
        self.imsi_count = base.imsi_count
        self.groups: tuple[Group, ...] = base.groups
        self._overlay: dict[int, Subscriber] = {}
        self.find = base.finder(self._overlay)
        self._group_documents = [base.group_document(n) for n in range(len(base.groups))]
        self._group_index = {group.group_id: n for n, group in enumerate(base.groups)}
        self._changed: dict[int, _Changed] = {}  # by SIM index
        self._ids: dict[str, int] = {}  # simId -> index, for the SIMs in _changed
        self._pool: FramedPool | None = None

    # -- reading ---------------------------------------------------------------------------

    def sim_index(self, sim_id: str) -> int | None:
        """Return the index of the SIM ``sim_id``, or None."""
        index = self._ids.get(sim_id)
        return self.base.sim_by_id(sim_id) if index is None else index

    def sim(self, sim_id: str) -> Subscriber | None:
        """Return the SIM's primary Subscriber (status, lock, group as served), or None."""
        index = self.sim_index(sim_id)
        if index is None:
            return None
        change = self._changed.get(index)
        return self.base.sim(index) if change is None else change.primary

    def sim_document(self, sim_id: str) -> dict[str, Any] | None:
        """Return the SIM's current provisioning document (a copy), or None."""
        index = self.sim_index(sim_id)
        return None if index is None else self.document(index)

    def document(self, index: int) -> dict[str, Any]:
        """Return the current document of the SIM at ``index`` (a copy).

        Raises:
            IndexError: no such SIM.
        """
        change = self._changed.get(index)
        if change is not None:
            return copy.deepcopy(self._document(change))
        return self.base.sim_document(index)

    def sim_id(self, index: int) -> str:
        """Return the simId of the SIM at ``index`` (Subscriber.sim_index), from its document.

        Raises:
            IndexError: no such SIM.
        """
        change = self._changed.get(index)
        return self.base.sim_id(index) if change is None else change.sim_id

    def sim_ids(self, offset: int = 0, limit: int | None = None) -> list[str]:
        """Return simIds in index order (the snapshot's, then new ones), from ``offset``."""
        stop = self.sim_count if limit is None else min(self.sim_count, offset + limit)
        return [self.sim_id(index) for index in range(max(offset, 0), stop)]

    def documents(self) -> Iterator[dict[str, Any]]:
        """Yield every SIM's current document, in index order (parses the whole snapshot)."""
        for index in range(self.sim_count):
            yield self.document(index)

    def group_index(self, group_id: str) -> int | None:
        return self._group_index.get(group_id)

    def group_document(self, group_id: str) -> dict[str, Any] | None:
        """Return the group as provisioned (webhookUrl and CHAP included), or None."""
        number = self._group_index.get(group_id)
        return None if number is None else copy.deepcopy(self._group_documents[number])

    def group_documents(self) -> list[dict[str, Any]]:
        """Return every group's document, in index order (what a snapshot's groups section is)."""
        return copy.deepcopy(self._group_documents)

    def changes(self) -> list[SimChange]:
        """Return every SIM changed or added since the snapshot, in index order."""
        return [
            SimChange(index, change.primary, change.subscribers, self._document(change))
            for index, change in sorted(self._changed.items())
        ]

    def close(self) -> None:
        """Unmap the base snapshot; the table must not be used afterwards."""
        self.base.close()

    # -- writing ---------------------------------------------------------------------------

    def check(self, command: Command) -> Command:
        """Judge a write against the table as it is; return the form to journal.

        PutSim and PutGroup come back canonical (defaults, framed IPs filled in: the framed IPs
        stay reserved); other commands come back as they are.

        Raises:
            UnknownSim: the SIM named does not exist (a CommandError on "simId").
            CommandError: the write is not acceptable; names the field at fault.
        """
        return _CHECKS[type(command)](self, command)

    def apply(self, seq: int, command: Command) -> bool:
        """Make a checked, journaled write visible; return False when it changed nothing.

        Raises:
            ValueError: ``seq`` does not come after the last applied one (a bug).
        """
        if seq <= self.seq:
            raise ValueError(f"sequence {seq} applied after {self.seq}")
        self.seq = seq
        return _APPLY[type(command)](self, command)

    def _check_set_lock(self, command: SetLock) -> Command:
        sim = self._require(command.sim_id)
        if command.if_unlocked and sim.lock:
            raise CommandError("imeiLock", f"SIM {command.sim_id!r} is already locked")
        if lock_identity(command.imei) != command.identity:
            raise CommandError("imei", f"{command.imei!r} is not the device {command.identity}")
        return command

    def _check_unset_lock(self, command: UnsetLock) -> Command:
        self._require(command.sim_id)
        return command

    def _check_set_status(self, command: SetStatus) -> Command:
        sim = self._require(command.sim_id)
        if sim.status == Status.TERMINATED and command.status != Status.TERMINATED:
            raise CommandError("status", f"SIM {command.sim_id!r} is terminated for good")
        if sim.imsi >= FIRST_VIRTUAL_IMSI and command.status not in _VIRTUAL_STATUSES:
            label = command.status.label
            raise CommandError("status", f"a virtual SIM is active or terminated, not {label!r}")
        return command

    def _check_put_sim(self, command: PutSim) -> Command:
        document: object = command.document  # from the API: anything JSON
        sim_id = document.get("simId") if isinstance(document, dict) else None
        if isinstance(sim_id, str) and self.sim_index(sim_id) is not None:
            raise CommandError("simId", f"{sim_id!r} already exists")
        _, document = check_sim(command.document, self._group_index, self._taken, self._framed_pool)
        return PutSim(document)

    def _check_put_group(self, command: PutGroup) -> Command:
        group, document = check_group(command.document)
        if group.group_id not in self._group_index and len(self.groups) >= NO_GROUP:
            raise CommandError("groupId", f"no room for more than {NO_GROUP} groups")
        return PutGroup(document)

    def _apply_set_lock(self, command: SetLock) -> bool:
        change = self._change(command.sim_id)
        if change is None or (command.if_unlocked and change.primary.lock):
            return False
        change.set("imeiLock", {"imei": command.imei, "allowUnreported": command.allow_unreported})
        self._update(change, lock=command.identity, allow_unreported=command.allow_unreported)
        return True

    def _apply_unset_lock(self, command: UnsetLock) -> bool:
        change = self._change(command.sim_id)
        if change is None:
            return False
        change.set("imeiLock", _REMOVED)
        self._update(change, lock=0, allow_unreported=False)
        return True

    def _apply_set_status(self, command: SetStatus) -> bool:
        change = self._change(command.sim_id)
        if change is None:
            return False
        change.set("status", command.status.label)
        self._update(change, status=command.status)
        return True

    def _apply_put_sim(self, command: PutSim) -> bool:
        row = sim_row(command.document, self._group_index)
        if row is None or self.sim_index(row.sim_id) is not None:
            return False
        imsis = [row.imsi, *(sub.imsi for sub in row.subscribers)]
        if any(self.find(imsi) is not None for imsi in imsis):
            return False
        index = self.sim_count
        primary, virtual = subscribers(row, index)
        self.sim_count += 1
        self.imsi_count += len(imsis)
        document = copy.deepcopy(command.document)
        self._store(_Changed(index, row.sim_id, primary, virtual, document))
        if self._pool is not None:
            self._pool.used.update(sub.framed_ip for sub in (primary, *virtual) if sub.framed_ip)
        return True

    def _apply_put_group(self, command: PutGroup) -> bool:
        group = group_from_document(command.document)
        number = self._group_index.get(group.group_id)
        if number is None:
            if len(self.groups) >= NO_GROUP:
                return False
            number = self._group_index[group.group_id] = len(self.groups)
            self._group_documents.append({})
        self._group_documents[number] = copy.deepcopy(command.document)
        self.groups = (*self.groups[:number], group, *self.groups[number + 1 :])
        return True

    # -- the overlay -----------------------------------------------------------------------

    def _require(self, sim_id: str) -> Subscriber:
        sim = self.sim(sim_id)
        if sim is None:
            raise UnknownSim(sim_id)
        return sim

    def _change(self, sim_id: str) -> _Changed | None:
        """Return the SIM's overlay entry; a base SIM's first one is stored by _update()."""
        index = self.sim_index(sim_id)
        if index is None:
            return None
        change = self._changed.get(index)
        if change is None:
            document = self.base.document_if_virtual(index)  # None: parsed when read
            listed = () if document is None else document["virtualSubscribers"]
            found = [self.base.find(int(sub["imsi"])) for sub in listed]
            virtual = tuple(sub for sub in found if sub is not None)
            change = _Changed(index, sim_id, self.base.sim(index), virtual, document)
        return change

    def _document(self, change: _Changed) -> dict[str, Any]:
        """The SIM's whole document: the base one parsed and patched on the first read."""
        if change.document is None:
            patch, change.patch = change.patch, {}
            change.document = self.base.sim_document(change.index)
            for field, value in patch.items():
                change.set(field, value)
        return change.document

    def _update(self, change: _Changed, **fields: Any) -> None:
        """Store the SIM with ``fields`` replaced in every Subscriber of it."""
        primary = change.primary._replace(**fields)
        if primary.virtual:  # a standalone virtual SIM: its IMSI's "terminated" is the SIM's
            primary = primary._replace(terminated=primary.status == Status.TERMINATED)
        change.primary = primary
        change.subscribers = tuple(sub._replace(**fields) for sub in change.subscribers)
        self._store(change)

    def _store(self, change: _Changed) -> None:
        self._changed[change.index] = change
        self._ids[change.sim_id] = change.index
        self._overlay[change.primary.imsi] = change.primary
        for sub in change.subscribers:
            self._overlay[sub.imsi] = sub

    def _taken(self, imsi: int) -> bool:
        return self.find(imsi) is not None

    def _framed_pool(self) -> FramedPool:
        if self._pool is None:
            used = self.base.framed_ips()
            for change in self._changed.values():
                used.update(s.framed_ip for s in (change.primary, *change.subscribers))
            used.discard(0)
            self._pool = FramedPool(used)
        return self._pool


_CHECKS: Final[dict[type, Callable[[LiveTable, Any], Command]]] = {
    SetLock: LiveTable._check_set_lock,
    UnsetLock: LiveTable._check_unset_lock,
    SetStatus: LiveTable._check_set_status,
    PutSim: LiveTable._check_put_sim,
    PutGroup: LiveTable._check_put_group,
}
_APPLY: Final[dict[type, Callable[[LiveTable, Any], bool]]] = {
    SetLock: LiveTable._apply_set_lock,
    UnsetLock: LiveTable._apply_unset_lock,
    SetStatus: LiveTable._apply_set_status,
    PutSim: LiveTable._apply_put_sim,
    PutGroup: LiveTable._apply_put_group,
}
