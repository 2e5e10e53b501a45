"""Sessions: the latest admitted connection of each SIM, in memory.

Owns: what the admin API needs about a SIM's current session (DESIGN §1, §3): the IMEI it
reported (``set_imei_lock`` without an IMEI locks to it), the IMSI it used, NAS, framed IP, the
session id carried in ``Class``, and whether it is online.

Invariants: keyed by the SIM's primary IMSI (a virtual subscriber's session is its SIM's, as
everywhere else); recording one is a tuple and a dict store, cheap enough for every accept.
Sessions are runtime state, not journaled: after a restart a SIM is offline until its next
session, as on a real packet core after a gateway restart.

Must not: import asyncio, the codec or the admin API.
"""

from __future__ import annotations

import socket
from typing import Any, Final, NamedTuple

_NAS_IP_ADDRESS: Final = 4


class Session(NamedTuple):
    session_id: int  # shown as 16 hex digits, as in Class
    imsi: int  # the IMSI the request used (primary or virtual)
    reported: int  # device identity reported (policy.imei: 0 not reported, -1 invalid)
    nas: bytes  # the NAS attribute as received (describe_nas formats it)
    framed_ip: int
    created: float  # unix time
    online: bool


_new: Final = tuple.__new__


def describe_nas(raw: bytes) -> str | None:
    """Format a NAS attribute kept raw: NAS-IP-Address as dotted quad, NAS-Identifier as text."""
    if len(raw) < 3:
        return None
    if raw[0] == _NAS_IP_ADDRESS and len(raw) == 6:
        return socket.inet_ntoa(raw[2:6])
    return raw[2:].decode("utf-8", "replace")


class Sessions:
    """The latest session of each SIM, by primary IMSI."""

    def __init__(self) -> None:
        # Plain tuples, not Session instances: the garbage collector stops tracking a plain
        # tuple of atomic values, but never a NamedTuple's. With one entry per SIM seen,
        # tracked entries made full collections take 20-100 ms (bench/load.py, p99).
        self.by_sim: dict[int, tuple[Any, ...]] = {}

    def __len__(self) -> int:
        return len(self.by_sim)

    def created(self, primary_imsi: int, session: Session) -> None:
        """Record a new session (it replaces the SIM's previous one)."""
        self.by_sim[primary_imsi] = tuple(session)

    def get(self, primary_imsi: int) -> Session | None:
        found = self.by_sim.get(primary_imsi)
        return None if found is None else Session._make(found)

    def online(self) -> int:
        return sum(1 for session in self.by_sim.values() if session[6])

    def end(self, primary_imsi: int) -> Session | None:
        """Mark the SIM's session offline (disconnect, Accounting-Stop); return it."""
        session = self.get(primary_imsi)
        if session is None or not session.online:
            return None
        ended = session._replace(online=False)
        self.by_sim[primary_imsi] = tuple(ended)
        return ended
