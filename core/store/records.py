"""The records the table holds, as the decision reads them.

Owns: SIM statuses, groups, and ``Subscriber`` (one IMSI resolved to its SIM's hot fields).

Invariants:
- Values are immutable; the table hands out tuples, never live views that could change under a
  decision.
- A virtual subscriber's ``Subscriber`` carries its SIM's fields and primary IMSI: everything
  downstream (replies, sessions, events, metrics) identifies it by the primary IMSI (DESIGN §2.7).

Must not: import asyncio, the RADIUS codec, the policy, logging or metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NamedTuple


class Status(IntEnum):
    """SIM status (Soracom's set, REFERENCE §4.3). Stored as one octet."""

    ACTIVE = 1
    READY = 2
    STANDBY = 3
    INACTIVE = 4
    SUSPENDED = 5
    TERMINATED = 6

    @property
    def label(self) -> str:
        return self.name.lower()


STATUS_BY_LABEL: Final = {status.label: status for status in Status}

#: Subscriptions to which a virtual (secondary) subscriber may be added (DESIGN §4).
VIRTUAL_CAPABLE_SUBSCRIPTIONS: Final = frozenset(
    {"plan01s", "plan01s-ldv", "plan-D", "plan-K", "plan-KM1", "plan-DU"}
)
#: Group index meaning "the SIM belongs to no group".
NO_GROUP: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class Group:
    """A SIM group: CHAP credentials, actions and VPG settings shared by its SIMs."""

    group_id: str
    chap_username: bytes | None = None
    chap_password: bytes | None = None
    lock_on_first_connect: bool = False
    on_imei_lock_rejected: tuple[str, ...] = ()
    rendezvous_point: str | None = None


class Subscriber(NamedTuple):
    """One IMSI as the decision sees it: its own facts plus its SIM's.

    ``lock`` is the locked 14-digit device identity, 0 when the SIM is not locked.
    ``framed_ip`` is an IPv4 address as an int, 0 when the subscriber has none.
    """

    imsi: int
    sim_index: int
    virtual: bool
    terminated: bool  # the virtual subscriber's own status; always False for a primary IMSI
    framed_ip: int
    primary_imsi: int
    status: Status
    group: int  # index into the table's groups, NO_GROUP when none
    lock: int
    allow_unreported: bool
    lock_on_first_connect: bool
