"""Provisioning: JSON Lines or CSV subscriber data in, one snapshot file out (DESIGN §6).

Owns: this package's public API (``__all__``), re-exported from the modules that define it:
fields.py (what each field may hold, the format's vocabulary and defaults), reader.py (decoding
JSON Lines and CSV lines), rows.py (SimRow/VirtualRow and writing rows into a snapshot, as bench/
does) and importer.py (import_file: checking lines against each other, errors, framed IPs).

Invariants: every name here is defined in exactly one module of the package. Imports run one
way: reader and rows import fields; importer imports all three; none imports from core.provision.

Must not: define anything itself; import asyncio, the RADIUS codec, the service layer, logging or
metrics (nor may any module of the package).
"""

from core.provision.fields import (
    ACTIONS,
    COVERAGES,
    DEFAULT_COVERAGE,
    DEFAULT_SUBSCRIPTION,
    RENDEZVOUS_POINTS,
    VIRTUAL_STATUSES,
)
from core.provision.importer import (
    MAX_SHOWN,
    POOL_FIRST,
    POOL_LAST,
    ImportResult,
    LineError,
    ProvisionError,
    import_file,
)
from core.provision.reader import Progress
from core.provision.rows import SimRow, VirtualRow, write_snapshot

__all__ = [
    "ACTIONS",
    "COVERAGES",
    "DEFAULT_COVERAGE",
    "DEFAULT_SUBSCRIPTION",
    "MAX_SHOWN",
    "POOL_FIRST",
    "POOL_LAST",
    "RENDEZVOUS_POINTS",
    "VIRTUAL_STATUSES",
    "ImportResult",
    "LineError",
    "Progress",
    "ProvisionError",
    "SimRow",
    "VirtualRow",
    "import_file",
    "write_snapshot",
]
