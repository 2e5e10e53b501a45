"""The subscriber store: the records, the snapshot file and the read-only table over it.

Owns: this package's public API (``__all__``), re-exported from the modules that define it:
records.py (Status, Group, Subscriber), format.py (the snapshot file format, its file names and
SnapshotError), snapshot_writer.py (SnapshotWriter), snapshot.py (verifying and mapping a
snapshot) and table.py (Table, load_newest).

The write path is imported by module path, not from here: commands.py (the writes and their
journal JSON), journal.py (framing, read_journal), journal_writer.py (JournalWriter),
documents.py (SIM and group documents checked as import checks them), live.py (LiveTable:
snapshot + overlay), compaction.py (a new snapshot copied from the old one) and recovery.py
(open_live, compact, prune_snapshots; ``python -m core.store.recovery compact``). Most of them
check values with core.provision.fields, which imports this package: re-exporting them here
would make importing core.provision first a circular import.

Invariants: every name here is defined in exactly one module of the package; importing the
package imports no module outside it and the standard library.

Must not: define anything itself; import asyncio, the RADIUS codec, the policy (but for the
stdlib-only core.policy.imei, as core.provision does), logging, metrics or time (nor may any
module of the package; recovery.main(), the compaction child's entry point, reads the clock).
"""

from core.store.format import (
    DuplicateKey,
    SnapshotError,
    group_document,
    group_from_document,
    list_snapshots,
    snapshot_path,
)
from core.store.records import (
    NO_GROUP,
    STATUS_BY_LABEL,
    VIRTUAL_CAPABLE_SUBSCRIPTIONS,
    Group,
    Status,
    Subscriber,
)
from core.store.snapshot import MappedSnapshot, empty_snapshot, map_snapshot, verify_section
from core.store.snapshot_writer import SnapshotWriter
from core.store.table import Table, load_newest

__all__ = [
    "NO_GROUP",
    "STATUS_BY_LABEL",
    "VIRTUAL_CAPABLE_SUBSCRIPTIONS",
    "DuplicateKey",
    "Group",
    "MappedSnapshot",
    "SnapshotError",
    "SnapshotWriter",
    "Status",
    "Subscriber",
    "Table",
    "empty_snapshot",
    "group_document",
    "group_from_document",
    "list_snapshots",
    "load_newest",
    "map_snapshot",
    "snapshot_path",
    "verify_section",
]
