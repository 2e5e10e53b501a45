"""Sessions: the latest admitted connection of each SIM, in memory.

Owns: what the admin API needs about a SIM's current session (DESIGN §1, §3): the IMEI it
reported (``set_imei_lock`` without an IMEI locks to it), the IMSI it used, NAS, framed IP, the
session id carried in ``Class``, and whether it is online.

Invariants: keyed by the SIM's primary IMSI (a virtual subscriber's session is its SIM's, as
everywhere else); recording one writes a slot in place (core/service/_sessions.c; a tuple in a
dict without it), cheap enough for every accept. Sessions are runtime state, not journaled:
after a restart a SIM is offline until its next session, as on a real packet core after a
gateway restart.

Must not: import asyncio, the codec or the admin API.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Final, NamedTuple, cast

_NAS_IP_ADDRESS: Final = 4


class Session(NamedTuple):
    session_id: int  # shown as 16 hex digits, as in Class
    imsi: int  # the IMSI the request used (primary or virtual)
    reported: int  # device identity reported (policy.imei: 0 not reported, -1 invalid)
    nas: bytes  # the NAS attribute as received (describe_nas formats it)
    framed_ip: int
    created: float  # unix time
    online: bool


def describe_nas(raw: bytes) -> str | None:
    """Format a NAS attribute kept raw: NAS-IP-Address as dotted quad, NAS-Identifier as text."""
    if len(raw) < 3:
        return None
    if raw[0] == _NAS_IP_ADDRESS and len(raw) == 6:
        return socket.inet_ntoa(raw[2:6])
    return raw[2:].decode("utf-8", "replace")


SessionRow = tuple[int, int, int, bytes, int, float, bool]  # Session's fields, a plain tuple


def _no_prefetch(keys: bytes) -> None:
    """A dict has nothing to warm ahead of its lookups."""


class PythonSessions:
    """The latest session of each SIM as a dict of plain tuples: the specification of the C
    ``SessionTable`` (core/service/_sessions.c), and what runs without it.

    Plain tuples, not Session instances: the garbage collector stops tracking a plain tuple of
    atomic values, but never a NamedTuple's. With one entry per SIM seen, tracked entries made
    full collections take 20-100 ms (bench/load.py, p99).
    """

    def __init__(self, expected: int = 0) -> None:
        self.by_sim: dict[int, SessionRow] = {}

    def __len__(self) -> int:
        return len(self.by_sim)

    def record(
        self,
        primary: int,
        session_id: int,
        imsi: int,
        reported: int,
        nas: bytes,
        framed_ip: int,
        created: float,
    ) -> None:
        """The SIM's new session, online (it replaces the previous one)."""
        self.by_sim[primary] = (session_id, imsi, reported, nas, framed_ip, created, True)

    def get(self, primary: int) -> SessionRow | None:
        return self.by_sim.get(primary)

    def set_online(self, primary: int, online: bool) -> bool:
        """Mark the SIM's session online or not; False when it has none."""
        found = self.by_sim.get(primary)
        if found is None:
            return False
        self.by_sim[primary] = (*found[:6], bool(online))
        return True

    def online(self) -> int:
        return sum(1 for row in self.by_sim.values() if row[6])


def _session_table() -> type[PythonSessions]:
    # the switch of core.radius.native (not imported: this module does not import the codec)
    if os.environ.get("SIMGATE_PURE_PYTHON", "") not in ("", "0"):
        return PythonSessions
    try:
        from core.service._sessions import SessionTable
    except ImportError:  # built without a C compiler, or a source checkout
        return PythonSessions
    return cast("type[PythonSessions]", SessionTable)


#: the C table when it is built, else the Python one (SIMGATE_PURE_PYTHON=1 picks Python)
SessionTable: Final = _session_table()


class Sessions:
    """The latest session of each SIM, by primary IMSI.

    ``record`` is the table's own method, for the datagram path; the rest builds ``Session``
    values for the admin API.
    """

    def __init__(self, expected: int = 0, table: type[PythonSessions] = SessionTable) -> None:
        self.table = table(expected)
        self.record = self.table.record
        #: warm the slots of a datagram batch's IMSIs (native uint64s); the C table's only
        self.prefetch: Callable[[bytes], None] = getattr(self.table, "prefetch", _no_prefetch)

    def __len__(self) -> int:
        return len(self.table)

    def get(self, primary_imsi: int) -> Session | None:
        found = self.table.get(primary_imsi)
        return None if found is None else Session._make(found)

    def online(self) -> int:
        return self.table.online()

    def end(self, primary_imsi: int) -> Session | None:
        """Mark the SIM's session offline (disconnect, Accounting-Stop); return it."""
        session = self.get(primary_imsi)
        if session is None or not session.online:
            return None
        self.table.set_online(primary_imsi, False)
        return session._replace(online=False)
