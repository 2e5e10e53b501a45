"""What the admission policy takes and gives: the request's facts, reasons and the verdict.

Owns: ``AdmissionRequest`` (the facts of one Access-Request the policy reads), ``Reason`` (the
machine-readable reject reasons of DESIGN §2, also the metric label and Reply-Message),
``Effect`` flags (writes an accept asks for, which the policy never performs) and ``Verdict``.

Invariants: all are immutable tuples; the reject verdicts that carry no subscriber are built once.

Must not: import anything from core but the store's records.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NamedTuple

from core.store.records import Subscriber


class Reason(StrEnum):
    """Why a request was accepted or rejected (DESIGN §2); the value is the wire/metric label."""

    OK = "ok"
    IMSI_INVALID = "imsi-invalid"
    UNKNOWN_SUBSCRIBER = "unknown-subscriber"
    SIM_NOT_ACTIVE = "sim-not-active"
    SUBSCRIBER_TERMINATED = "subscriber-terminated"
    CHAP_FAILED = "chap-failed"
    IMEI_MISMATCH = "imei-mismatch"
    IMEI_NOT_REPORTED = "imei-not-reported"
    IMEI_INVALID = "imei-invalid"


class Effect:
    """Writes an accept asks for, as bit flags in a plain ``int``; the service performs them.

    Not an IntFlag: enum arithmetic and truth tests run Python code per packet (bench/micro.py).
    """

    NONE: Final = 0
    ACTIVATE: Final = 1  # a ready or standby SIM becomes active at its first accepted session
    LOCK: Final = 2  # lockOnFirstConnect: lock the SIM to the reported device
    NAMES: Final = {1: "activate", 2: "lock", 3: "activate+lock"}


class AdmissionRequest(NamedTuple):
    """The facts of one Access-Request, as raw attribute values (None when absent)."""

    imsi: bytes | None
    imeisv: bytes | None = None
    user_name: bytes | None = None
    chap_password: bytes | None = None
    #: CHAP-Challenge, or the Request Authenticator when the request has none (RFC 2865 §2.2)
    chap_challenge: bytes = b""


class Verdict(NamedTuple):
    accept: bool
    reason: Reason
    effects: int  # Effect flags
    subscriber: Subscriber | None
    #: the reported device identity (policy.imei: 0 not reported, -1 invalid)
    reported: int


REJECT_IMSI_INVALID: Final = Verdict(False, Reason.IMSI_INVALID, Effect.NONE, None, 0)
REJECT_UNKNOWN_SUBSCRIBER: Final = Verdict(False, Reason.UNKNOWN_SUBSCRIBER, Effect.NONE, None, 0)
