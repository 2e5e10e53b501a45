"""Events and their actions: what happened to a SIM, kept in a bounded store (DESIGN §3).

Owns: the event records (``ImeiLockRejected`` and the session events ``SessionCreated``,
``SessionModified``, ``SessionDeleted``) and their JSON form; ``EventStore``, the bounded store
listed per SIM; ``EventHub.emit``, the hot path's one entry point, which stores an event and
carries out its actions (``log``, ``webhook``, ``deactivate``).

Invariants:
- ``emit`` is synchronous, never waits and never raises: a webhook leaves through a bounded
  queue with ``put_nowait`` (full: drop and count, STYLE §2.3 rule 8), ``deactivate`` calls a
  callback that only schedules the write, and ``log`` is built only when the action is set.
- The store's memory is bounded: at most ``capacity`` events in all and ``per_sim`` per SIM; the
  oldest go first (an event evicted for the per-SIM cap frees its global slot, so one SIM's
  "stolen SIM storm" never pushes the other SIMs' history out).
- Events carry raw values (identities as integers, the NAS as received); ``to_json`` formats
  them (the primary IMSI and IMEIs as 15 digits, the NAS as text) when someone looks.

Must not: import the RADIUS codec or the admission policy (the device identity helpers of
``core.policy.imei`` are stdlib-only and shared by everyone); perform I/O (``core.service.webhook``
sends); read a clock (``time`` is the caller's).
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar, Final, NamedTuple

import structlog

from core.policy.imei import format_identity
from core.service.sessions import describe_nas
from core.service.stats import EventDrop, Stats

log = structlog.get_logger("simgate.events")

#: one stolen SIM reports the same identities over and over: format each once
_formatted: Final = functools.lru_cache(maxsize=4096)(format_identity)
_new: Final = tuple.__new__


class _RejectedFields(NamedTuple):
    sim_id: str
    imsi: int  # the SIM's primary IMSI, also for a virtual subscriber (DESIGN §2.7)
    reason: str  # "imei-mismatch" | "imei-not-reported" | "imei-invalid"
    reported: int  # device identity (policy.imei: 0 not reported, -1 invalid)
    raw: bytes | None  # the 3GPP-IMEISV as received, kept only when it is invalid
    lock: int  # the SIM's 14-digit lock identity
    nas: bytes  # the NAS attribute as received (sessions.describe_nas formats it)
    time: float  # Unix seconds


class ImeiLockRejected(_RejectedFields):
    """An Access-Request rejected at DESIGN §2 step 6 (the IMEI lock).

    A tuple of raw values, like the session events: a stolen SIM's storm builds one per
    request, so the text (IMEIs with their Luhn digit, the NAS) waits for ``to_json``, off the
    datagram path. Numbers and bytes only, so that the store can keep it in a form the garbage
    collector does not track (see ``EventStore``).
    """

    __slots__ = ()
    kind: ClassVar[str] = "imeiLockRejected"
    log_event: ClassVar[str] = "imei_lock_rejected"

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "simId": self.sim_id,
            "imsi": f"{self.imsi:015d}",
            "reason": self.reason,
            "reported": reported_text(self.reported, self.raw),
            "locked": _formatted(self.lock),
            "nas": describe_nas(self.nas),
            "time": self.time,
        }


class _SessionFields(NamedTuple):
    sim_id: str  # "" when recorded on the datagram path; the listing fills it in
    imsi: int  # the SIM's primary IMSI
    reported: int  # device identity (policy.imei: 0 not reported, -1 invalid)
    nas: str | None
    framed_ip: int  # 0: none
    session_id: str
    time: float  # Unix seconds


class SessionEvent(_SessionFields):
    """A session of the SIM was created, modified or deleted (DESIGN §3, §5).

    A tuple of raw values, built for every accept: formatting waits for ``to_json`` (a listing
    or a delivery), off the datagram path.
    """

    __slots__ = ()
    kind: ClassVar[str] = "Session"
    log_event: ClassVar[str] = "session"

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "simId": self.sim_id,
            "imsi": f"{self.imsi:015d}",
            "imei": _formatted(self.reported) if self.reported > 0 else None,
            "nas": self.nas,
            "framedIp": socket.inet_ntoa(self.framed_ip.to_bytes(4, "big"))
            if self.framed_ip
            else None,
            "sessionId": self.session_id,
            "time": self.time,
        }


class SessionCreated(SessionEvent):
    __slots__ = ()
    kind: ClassVar[str] = "Created"
    log_event: ClassVar[str] = "session_created"


class SessionModified(SessionEvent):
    __slots__ = ()
    kind: ClassVar[str] = "Modified"
    log_event: ClassVar[str] = "session_modified"


class SessionDeleted(SessionEvent):
    __slots__ = ()
    kind: ClassVar[str] = "Deleted"
    log_event: ClassVar[str] = "session_deleted"


Event = ImeiLockRejected | SessionEvent
#: what the webhook queue carries: the URL and the event (serialized by the sender, off the hot
#: path)
Delivery = tuple[str, Event]


def imei_lock_rejected(
    *,
    sim_id: str,
    primary_imsi: int,
    reason: str,
    reported: int,
    raw: bytes | None,
    lock: int,
    nas: bytes,
    time: float,
) -> ImeiLockRejected:
    """Build the event of a step-6 reject from the verdict's facts.

    ``reported`` is the verdict's identity (0 not reported, -1 invalid), ``raw`` the
    3GPP-IMEISV value as received (kept only when it is invalid, to be shown as sent), ``lock``
    the SIM's 14-digit lock, ``nas`` the NAS attribute as received (b"" if none).
    """
    kept = raw if reported < 0 else None
    return _new(ImeiLockRejected, (sim_id, primary_imsi, reason, reported, kept, lock, nas, time))


def reported_text(reported: int, raw: bytes | None) -> str | None:
    """The reported identity as an event shows it: 15 digits, None when not reported, and an
    invalid value as it was sent."""
    if reported > 0:
        return _formatted(reported)
    if reported < 0 and raw is not None:
        return describe(raw)
    return None


def describe(raw: bytes) -> str:
    """Return an invalid reported value as text: itself when printable ASCII, else hex."""
    if raw.isascii():
        text = raw.decode("ascii")
        if text.isprintable():
            return text
    return raw.hex()


#: the event classes, by the code the store keeps in place of the class
_KINDS: Final[tuple[type[Event], ...]] = (
    ImeiLockRejected,
    SessionCreated,
    SessionModified,
    SessionDeleted,
)
_KIND_CODES: Final = {kind: code for code, kind in enumerate(_KINDS)}
_SEQ: Final = 8  # octets of a sequence number in a SIM's list


class EventStore:
    """The last events, listed per SIM newest first; bounded in all and per SIM.

    A SIM's events are filed under its primary IMSI (``event.imsi``), which the hot path has at
    hand; the simId lives in the SIM's cold document and is only looked up off the hot path.

    Nothing kept here is tracked by the garbage collector: an event is stored as a plain tuple
    of text, numbers and bytes (its class replaced by a small code), which CPython stops
    tracking, and a SIM's sequence numbers as 8-octet integers in a ``bytearray`` (an
    ``array`` is tracked).
    A store of 100,000 tracked objects made every collection of the old generation take tens of
    milliseconds, all of it on the datagram path (bench/load.py, p99 at half the peak).

    ``_events`` (sequence -> stored event, oldest first) finds the store's oldest in O(1) and
    forgets one evicted for the per-SIM cap in O(1); each SIM's sequence numbers are oldest
    first, so its oldest is at index 0 (removing it moves at most ``per_sim`` numbers).
    """

    def __init__(self, capacity: int = 100_000, per_sim: int = 1_000) -> None:
        if capacity < 1 or per_sim < 1:
            raise ValueError("capacity and per_sim must be at least 1")
        self.capacity = capacity
        self.per_sim = per_sim
        self._per_sim_octets = per_sim * _SEQ
        self._events: OrderedDict[int, tuple[Any, ...]] = OrderedDict()
        self._by_sim: dict[int, bytearray] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._events)

    def append(self, sim_id: int, event: Event) -> None:
        """Store ``event`` under the SIM's primary IMSI, evicting the SIM's or else the store's
        oldest when full."""
        self._seq = seq = self._seq + 1
        sequences = self._by_sim.get(sim_id)
        if sequences is None:
            self._by_sim[sim_id] = sequences = bytearray()
        sequences += seq.to_bytes(_SEQ, "little")
        self._events[seq] = (_KIND_CODES[type(event)], sim_id, *event)
        if len(sequences) > self._per_sim_octets:
            del self._events[int.from_bytes(sequences[:_SEQ], "little")]
            del sequences[:_SEQ]
        elif len(self._events) > self.capacity:
            _, stored = self._events.popitem(last=False)
            oldest_sim = stored[1]
            oldest = self._by_sim[oldest_sim]
            del oldest[:_SEQ]  # a SIM's events leave oldest first, whichever cap removes them
            if not oldest:
                del self._by_sim[oldest_sim]

    def list(self, imsi: int, limit: int = 100) -> list[Event]:
        """Return the last ``limit`` events of the SIM whose primary IMSI is ``imsi``, newest
        first."""
        sequences = self._by_sim.get(imsi)
        if not sequences or limit <= 0:
            return []
        events = self._events
        found: list[Event] = []
        for at in range(len(sequences) - _SEQ, max(-1, len(sequences) - _SEQ * limit - 1), -_SEQ):
            stored = events[int.from_bytes(sequences[at : at + _SEQ], "little")]
            found.append(_KINDS[stored[0]]._make(stored[2:]))
        return found


class EventHub:
    """Stores events and carries out their actions, without ever blocking the caller.

    ``deactivate(sim_id)`` must only schedule the write (e.g. SetStatus(inactive) through the
    commit loop) and return at once. It may be called several times for one SIM in a storm:
    until that write is applied, the SIM's next requests are still judged against its lock.
    """

    def __init__(
        self,
        store: EventStore,
        stats: Stats,
        webhooks: asyncio.Queue[Delivery],
        deactivate: Callable[[str], object],
        logger: Any = None,
    ) -> None:
        self.store = store
        self._dropped = stats.events_dropped
        self._webhooks = webhooks
        self._deactivate = deactivate
        self._log = log if logger is None else logger
        self._next_error_log = float("-inf")

    def emit(
        self, event: Event, actions: tuple[str, ...] = (), webhook_url: str | None = None
    ) -> None:
        """Store ``event`` and start its actions; return at once, never raise."""
        self.store.append(event.imsi, event)
        for action in actions:
            try:
                if action == "webhook":
                    self._webhook(event, webhook_url)
                elif action == "deactivate":
                    self._deactivate(event.sim_id)
                elif action == "log":
                    fields = event.to_json()
                    del fields["event"]  # structlog's own positional name
                    self._log.warning(event.log_event, **fields)
            except Exception:  # noqa: BLE001 - a failing action must not fail the request
                self._dropped[EventDrop.ACTION_FAILED] += 1
                self._log_error(event, action)

    def _webhook(self, event: Event, url: str | None) -> None:
        if url is None:
            self._dropped[EventDrop.WEBHOOK_NO_URL] += 1
            return
        queue = self._webhooks
        if queue.full():  # perf: cheaper than raising QueueFull, and the loop is one thread
            self._dropped[EventDrop.WEBHOOK_QUEUE_FULL] += 1
        else:
            queue.put_nowait((url, event))

    def _log_error(self, event: Event, action: str) -> None:
        # at most one traceback per 10 s of event time: a storm must not become a log storm
        if event.time >= self._next_error_log:
            self._next_error_log = event.time + 10.0
            self._log.exception("event_action_failed", action=action, kind=event.kind)
