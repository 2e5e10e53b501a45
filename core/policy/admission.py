"""The admission decision for one Access-Request: DESIGN §2, steps 2 to 7.

Owns: the order of the steps, the status rules and the IMEI-lock truth table, each written as a
table so that a reader can check it against DESIGN.md line by line.

Invariants:
- ``decide`` is a pure function of the request's facts and the table: no clock, no I/O, no
  writes. Writes an accept needs (activation, lock on first connect) come back as ``Effect``s.
- A virtual subscriber never reports an IMEI (DESIGN §4): whatever its request carries, it is
  judged as "not reported" against its SIM's lock.

Must not: import asyncio, time, logging, metrics, the journal or the wire codec.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, Protocol

from core.policy import imei
from core.policy.verdict import (
    REJECT_IMSI_INVALID,
    REJECT_UNKNOWN_SUBSCRIBER,
    AdmissionRequest,
    Effect,
    Reason,
    Verdict,
)
from core.radius.auth import verify_chap
from core.store.records import NO_GROUP, Group, Status, Subscriber


class TableView(Protocol):
    """What the policy reads of the table: O(1) lookups in memory."""

    @property
    def groups(self) -> tuple[Group, ...]: ...

    def find(self, imsi: int) -> Subscriber | None: ...


class LockState(IntEnum):
    NONE = 0
    ALLOW_UNREPORTED = 1  # locked, sessions allowed when the carrier does not report the IMEI
    STRICT = 2  # locked, allowUnreported off


class Reported(IntEnum):
    SAME_DEVICE = 0
    OTHER_DEVICE = 1
    NOT_REPORTED = 2
    INVALID = 3  # neither 14-16 ASCII digits nor 8 octets of TBCD


# DESIGN §2 step 6, one line per cell.
LOCK_TABLE: Final[dict[tuple[LockState, Reported], Reason]] = {
    (LockState.NONE, Reported.SAME_DEVICE): Reason.OK,
    (LockState.NONE, Reported.OTHER_DEVICE): Reason.OK,
    (LockState.NONE, Reported.NOT_REPORTED): Reason.OK,
    (LockState.NONE, Reported.INVALID): Reason.OK,
    (LockState.ALLOW_UNREPORTED, Reported.SAME_DEVICE): Reason.OK,
    (LockState.ALLOW_UNREPORTED, Reported.OTHER_DEVICE): Reason.IMEI_MISMATCH,
    (LockState.ALLOW_UNREPORTED, Reported.NOT_REPORTED): Reason.OK,
    (LockState.ALLOW_UNREPORTED, Reported.INVALID): Reason.IMEI_INVALID,
    (LockState.STRICT, Reported.SAME_DEVICE): Reason.OK,
    (LockState.STRICT, Reported.OTHER_DEVICE): Reason.IMEI_MISMATCH,
    (LockState.STRICT, Reported.NOT_REPORTED): Reason.IMEI_NOT_REPORTED,
    (LockState.STRICT, Reported.INVALID): Reason.IMEI_INVALID,
}

# DESIGN §2 step 4: status -> (admitted, effect of an accept).
STATUS_TABLE: Final[dict[Status, tuple[bool, int]]] = {
    Status.ACTIVE: (True, Effect.NONE),
    Status.READY: (True, Effect.ACTIVATE),
    Status.STANDBY: (True, Effect.ACTIVATE),
    Status.INACTIVE: (False, Effect.NONE),
    Status.SUSPENDED: (False, Effect.NONE),
    Status.TERMINATED: (False, Effect.NONE),
}


def lock_state(subscriber: Subscriber) -> LockState:
    if not subscriber.lock:
        return LockState.NONE
    return LockState.ALLOW_UNREPORTED if subscriber.allow_unreported else LockState.STRICT


def classify(identity: int, locked: int) -> Reported:
    """Place a reported identity (``imei.reported_identity``) against the locked one."""
    if identity == imei.NOT_REPORTED:
        return Reported.NOT_REPORTED
    if identity == imei.INVALID:
        return Reported.INVALID
    return Reported.SAME_DEVICE if identity == locked else Reported.OTHER_DEVICE


def chap_ok(request: AdmissionRequest, group: Group) -> bool:
    """DESIGN §2 step 5: User-Name is the group's and CHAP-Password answers its password."""
    if request.user_name != group.chap_username or request.chap_password is None:
        return False
    assert group.chap_password is not None
    return verify_chap(request.chap_password, group.chap_password, request.chap_challenge)


#: perf: builds a Verdict without the NamedTuple's Python-level __new__ (bench/micro.py)
_new: Final = tuple.__new__


def decide(request: AdmissionRequest, table: TableView) -> Verdict:
    """Decide one Access-Request (DESIGN §2 steps 2-7); the first step that decides wins."""
    raw_imsi = request.imsi
    if raw_imsi is None or len(raw_imsi) != 15 or not raw_imsi.isdigit():  # step 2 (is_imsi)
        return REJECT_IMSI_INVALID
    subscriber = table.find(int(raw_imsi))  # step 3
    if subscriber is None:
        return REJECT_UNKNOWN_SUBSCRIBER
    if subscriber.terminated:  # step 4, the virtual subscriber's own status
        return _new(Verdict, (False, Reason.SUBSCRIBER_TERMINATED, Effect.NONE, subscriber, 0))
    admitted, effects = STATUS_TABLE[subscriber.status]
    if not admitted:
        return _new(Verdict, (False, Reason.SIM_NOT_ACTIVE, Effect.NONE, subscriber, 0))
    group = None if subscriber.group == NO_GROUP else table.groups[subscriber.group]
    if group is not None and group.chap_username is not None and not chap_ok(request, group):
        return _new(Verdict, (False, Reason.CHAP_FAILED, Effect.NONE, subscriber, 0))  # step 5
    reported = imei.NOT_REPORTED  # step 6
    if request.imeisv is not None and not subscriber.virtual:
        reported = imei.reported_identity(request.imeisv)
    reason = LOCK_TABLE[lock_state(subscriber), classify(reported, subscriber.lock)]
    if reason is not Reason.OK:
        return _new(Verdict, (False, reason, Effect.NONE, subscriber, reported))
    if (
        not subscriber.lock
        and reported > 0
        and (
            subscriber.lock_on_first_connect or (group is not None and group.lock_on_first_connect)
        )
    ):
        effects |= Effect.LOCK
    # step 7
    return _new(Verdict, (True, Reason.OK, effects, subscriber, reported))
