"""What follows a decision: sessions, events, actions and the writes an accept asks for.

Owns: turning a verdict into its side effects (DESIGN §3): the SIM's session at an accept (and
its ``Created`` event), an ``imeiLockRejected`` event and its group's actions at a step-6 reject,
activation of a ready/standby SIM, and lock on first connect, whose reply waits until the lock
is durable and is then judged against the table as it stands (of two racing devices, the first
journaled wins; the other is judged against its lock).

Invariants: called from the datagram path, so nothing here blocks or awaits: writes are
submitted to the commit loop and finish in callbacks. The simId, which lives in the SIM's cold
document, is looked up only for rejects and writes, never for an ordinary accept.

Must not: import the wire codec or the web framework.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import structlog

from core.policy.verdict import Effect, Reason, Verdict
from core.service.commit import CommitLoop
from core.service.events import EventHub, imei_lock_rejected
from core.service.sessions import Sessions
from core.store.commands import CommandError, SetLock, SetStatus
from core.store.live import LiveTable
from core.store.records import Status, Subscriber

log = structlog.get_logger("simgate.reactions")

LOCK_REASONS: Final = frozenset(
    {Reason.IMEI_MISMATCH, Reason.IMEI_NOT_REPORTED, Reason.IMEI_INVALID}
)
_SIM_ID_CACHE: Final = 65_536
_new: Final = tuple.__new__


class Reactions:
    def __init__(
        self,
        live: Callable[[], LiveTable],
        commit: CommitLoop,
        sessions: Sessions,
        hub: EventHub,
        clock: Callable[[], float],
    ) -> None:
        self._live = live
        self._commit = commit
        self.sessions = sessions
        self._record = sessions.record
        #: warms what a datagram batch's accepts will write (Pipeline.prefetch)
        self.prefetch = sessions.prefetch
        self.hub = hub
        self._clock = clock  # wall clock (unix seconds) for sessions and events
        self._sim_ids: dict[int, str] = {}  # primary IMSI -> simId, bounded
        self._activating: set[int] = set()
        self._deactivating: set[str] = set()

    # -- called by the pipeline ------------------------------------------------------------

    def accepted(
        self, subscriber: Subscriber, verdict: Verdict, session_id: int, nas: bytes
    ) -> None:
        """Record the SIM's new session; start the activation an accept asks for."""
        primary = subscriber.primary_imsi
        self._record(
            primary,
            session_id,
            subscriber.imsi,
            verdict.reported,
            nas,
            subscriber.framed_ip,
            self._clock(),
        )
        if verdict.effects & Effect.ACTIVATE and primary not in self._activating:
            self._activating.add(primary)
            self._write(
                SetStatus(self.sim_id(subscriber), Status.ACTIVE),
                lambda ok: self._activating.discard(primary),
            )

    def rejected(
        self, subscriber: Subscriber, verdict: Verdict, raw_imeisv: bytes | None, nas: bytes
    ) -> None:
        """Emit imeiLockRejected with the group's actions for a reject at the IMEI lock."""
        if verdict.reason not in LOCK_REASONS:
            return
        live = self._live()
        group = None if subscriber.group >= len(live.groups) else live.groups[subscriber.group]
        event = imei_lock_rejected(
            sim_id=self.sim_id(subscriber),
            primary_imsi=subscriber.primary_imsi,
            reason=verdict.reason.value,
            reported=verdict.reported,
            raw=raw_imeisv,
            lock=subscriber.lock,
            nas=nas,  # raw: formatted when someone reads the event
            time=self._clock(),
        )
        if group is None or not group.on_imei_lock_rejected:
            self.hub.emit(event)
            return
        url = (live.group_document(group.group_id) or {}).get("webhookUrl")
        self.hub.emit(event, group.on_imei_lock_rejected, url)

    def lock_on_first_connect(
        self, subscriber: Subscriber, identity: int, resume: Callable[[], None]
    ) -> None:
        """Lock the SIM to ``identity`` unless it is locked by then, then ``resume()``.

        ``resume`` runs once the lock is durable, or on the next loop turn when the write is
        refused because another device locked the SIM first: either way the request is then
        judged against the table as it stands.
        """
        text = f"{identity:014d}"
        command = SetLock(self.sim_id(subscriber), identity, text, False, if_unlocked=True)
        self._write(command, lambda durable: resume())

    # -- actions ---------------------------------------------------------------------------

    def deactivate(self, sim_id: str) -> None:
        """The ``deactivate`` action: set the SIM inactive (a stolen SIM stops at once)."""
        if sim_id in self._deactivating:
            return
        self._deactivating.add(sim_id)
        self._write(
            SetStatus(sim_id, Status.INACTIVE), lambda ok: self._deactivating.discard(sim_id)
        )

    def sim_id(self, subscriber: Subscriber) -> str:
        primary = subscriber.primary_imsi
        found = self._sim_ids.get(primary)
        if found is None:
            found = self._live().sim_id(subscriber.sim_index)
            if len(self._sim_ids) >= _SIM_ID_CACHE:
                self._sim_ids.clear()
            self._sim_ids[primary] = found
        return found

    def _write(self, command: SetLock | SetStatus, done: Callable[[bool], None]) -> None:
        try:
            future = self._commit.submit(command)
        except Exception:  # noqa: BLE001 - a refused write (SIM gone, already locked) is a no
            log.debug("write_refused", command=type(command).__name__)  # -op, not a failure
            asyncio.get_running_loop().call_soon(done, False)
            return

        def finished(future: asyncio.Future[int]) -> None:
            error = None if future.cancelled() else future.exception()
            if isinstance(error, CommandError):  # refused when its batch formed (a race lost)
                log.debug("write_refused", command=type(command).__name__)
            elif isinstance(error, OSError):  # the journal failed: logged once (writepath),
                log.debug("write_failed", command=type(command).__name__)  # not per request
            elif future.cancelled() or error is not None:
                log.error("write_failed", command=type(command).__name__, error=str(error))
            done(not future.cancelled() and error is None)

        future.add_done_callback(finished)
