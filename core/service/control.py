"""What the admin API can do, in the service's terms: read SIMs, write through the journal.

Owns: the operations behind ``/v1`` (DESIGN §3, §7): SIM views (document + session), status
changes, ``set_imei_lock`` / ``unset_imei_lock`` with their rules (the IMEI of the online session,
the refusal to lock to an unreported IMEI, the warning), the batch lock, groups, events,
snapshot compaction; and ``Refused``, the answer to a call that cannot be done, with the HTTP
status and the field at fault.

Invariants: every write goes through the commit loop and is answered only once durable; no
secret (CHAP password) leaves this module; views are built from copies.

Must not: import the web framework, the UDP transport or the wire codec.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from core.policy import imei
from core.service.commit import CommitLoop
from core.service.compaction import COMPACTION_FAILURES
from core.service.events import EventStore, SessionCreated
from core.service.sessions import Session, Sessions, describe_nas
from core.store.commands import (
    Command,
    CommandError,
    PutGroup,
    PutSim,
    SetLock,
    SetStatus,
    UnknownSim,
    UnsetLock,
    parse_lock,
)
from core.store.live import LiveTable
from core.store.records import STATUS_BY_LABEL

MAX_PAGE: Final = 1000
#: SIMs of a batch lock written at once, sharing a sync (Control.lock_many)
LOCK_MANY_CHUNK: Final = 32
NOT_REPORTED_WARNING: Final = (
    "the SIM's last session did not report an IMEI (the carrier sent none or 000000000000000); "
    "with allowUnreported off, such sessions will be rejected imei-not-reported"
)


class Refused(Exception):
    """A call that cannot be done: HTTP ``status``, a short ``code``, the ``field`` at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class Control:
    def __init__(
        self,
        live: Callable[[], LiveTable],
        commit: CommitLoop,
        sessions: Sessions,
        events: EventStore,
        compact: Callable[[], Awaitable[tuple[int, Path]]],
    ) -> None:
        self._live = live
        self._commit = commit
        self._sessions = sessions
        self._events = events
        self._compact = compact

    # -- reads -----------------------------------------------------------------------------

    def sim(self, sim_id: str) -> dict[str, Any]:
        live = self._live()
        document = live.sim_document(sim_id)
        if document is None:
            raise Refused(404, "not-found", f"no SIM {sim_id!r}", "simId")
        return self._view(document, live)

    def list_sims(self, offset: int, limit: int) -> dict[str, Any]:
        if offset < 0:
            raise Refused(400, "invalid", "offset: must be 0 or more", "offset")
        if not 1 <= limit <= MAX_PAGE:
            raise Refused(400, "invalid", f"limit: must be 1 to {MAX_PAGE}", "limit")
        live = self._live()
        sims = []
        for sim_id in live.sim_ids(offset, limit):
            document = live.sim_document(sim_id)
            if document is not None:
                sims.append(self._view(document, live))
        return {"sims": sims, "offset": offset, "limit": limit, "total": live.sim_count}

    def group(self, group_id: str) -> dict[str, Any]:
        document = self._live().group_document(group_id)
        if document is None:
            raise Refused(404, "not-found", f"no group {group_id!r}", "groupId")
        return _public_group(document)

    def groups(self) -> dict[str, Any]:
        return {"groups": [_public_group(doc) for doc in self._live().group_documents()]}

    def events(self, sim_id: str, limit: int) -> dict[str, Any]:
        primary = self._primary(sim_id)
        if not 1 <= limit <= MAX_PAGE:
            raise Refused(400, "invalid", f"limit: must be 1 to {MAX_PAGE}", "limit")
        events: list[Any] = list(self._events.list(primary, limit))
        session = self._sessions.get(primary)
        if session is not None:
            # The SIM's current session is its Created event: sessions are recorded per accept
            # in the sessions table, not copied into the event store on the datagram path.
            events.append(
                SessionCreated(
                    sim_id,
                    primary,
                    session.reported,
                    describe_nas(session.nas),
                    session.framed_ip,
                    f"{session.session_id:016x}",
                    session.created,
                )
            )
        events.sort(key=lambda event: event.time, reverse=True)
        listed = []
        for event in events[:limit]:
            body = event.to_json()
            body["simId"] = sim_id
            listed.append(body)
        return {"simId": sim_id, "events": listed}

    def snapshot_path(self) -> Path:
        path = self._live().base.path
        if path is None:
            raise Refused(404, "not-found", "no snapshot yet: import or compact first", None)
        return path

    # -- writes ----------------------------------------------------------------------------

    async def create_sim(self, document: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(document, dict):
            raise Refused(400, "invalid", "the body must be a JSON object", "body")
        await self._write(PutSim(document))
        return self.sim(str(document["simId"]))

    async def set_status(self, sim_id: str, status: str) -> dict[str, Any]:
        self._primary(sim_id)
        await self._write(SetStatus(sim_id, STATUS_BY_LABEL[status]))
        return self.sim(sim_id)

    async def set_lock(
        self, sim_id: str, given: object, allow_unreported: object
    ) -> dict[str, Any]:
        command, warn = self._lock(sim_id, given, allow_unreported)
        await self._write(command)
        view = self.sim(sim_id)
        if warn:
            view["warnings"] = [NOT_REPORTED_WARNING]
        return view

    async def unset_lock(self, sim_id: str) -> dict[str, Any]:
        self._primary(sim_id)
        await self._write(UnsetLock(sim_id))
        return self.sim(sim_id)

    async def lock_many(self, sim_ids: object, allow_unreported: object) -> dict[str, Any]:
        """Lock each SIM to the IMEI of its own online session; report per SIM.

        The SIMs are written LOCK_MANY_CHUNK at a time, each chunk sharing one sync: one by one,
        1,000 SIMs took 1,000 syncs, 11 s (store.sync_interval apart). All at once, their
        commands, checks and answers would hold the loop for tens of milliseconds between two
        datagram batches; a chunk holds it about as long as 32 API clients writing at once.
        """
        if not isinstance(sim_ids, list) or not sim_ids or len(sim_ids) > MAX_PAGE:
            raise Refused(400, "invalid", f"simIds: a list of 1 to {MAX_PAGE} SIM ids", "simIds")
        if not all(isinstance(sim_id, str) for sim_id in sim_ids):
            raise Refused(400, "invalid", "simIds: every SIM id is a string", "simIds")
        if allow_unreported is not None and not isinstance(allow_unreported, bool):
            message = f"allowUnreported: {allow_unreported!r} is not true or false"
            raise Refused(400, "invalid", message, "allowUnreported")
        results: list[dict[str, Any]] = []
        for start in range(0, len(sim_ids), LOCK_MANY_CHUNK):
            chunk: list[tuple[dict[str, Any], SetLock, bool, asyncio.Future[int]]] = []
            for sim_id in sim_ids[start : start + LOCK_MANY_CHUNK]:
                result: dict[str, Any] = {"simId": sim_id, "ok": False}
                results.append(result)
                try:
                    command, warn = self._lock(sim_id, None, allow_unreported)
                except Refused as error:
                    result["error"] = error.message
                    continue
                chunk.append((result, command, warn, self._commit.submit(command)))
            if chunk:
                await asyncio.wait([future for *_, future in chunk])
            for result, command, warn, future in chunk:
                failure = future.exception()
                if isinstance(failure, CommandError | OSError):
                    result["error"] = _refusal(failure).message
                    continue
                if failure is not None:
                    raise failure
                result["ok"] = True
                result["imeiLock"] = {
                    "imei": command.imei,
                    "allowUnreported": command.allow_unreported,
                }
                if warn:
                    result["warnings"] = [NOT_REPORTED_WARNING]
        failed = sum(1 for result in results if not result["ok"])
        return {"results": results, "failed": failed}

    async def put_group(self, group_id: str, document: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(document, dict):
            raise Refused(400, "invalid", "the body must be a JSON object", "body")
        if document.get("groupId", group_id) != group_id:
            raise Refused(400, "invalid", "groupId: differs from the path", "groupId")
        body = {key: value for key, value in document.items() if key != "kind"}
        await self._write(PutGroup({**body, "groupId": group_id}))
        return self.group(group_id)

    async def compact(self) -> dict[str, Any]:
        try:
            seq, path = await self._compact()
        except COMPACTION_FAILURES as error:  # nothing was swapped in
            raise Refused(500, "compaction-failed", f"compaction failed: {error}") from None
        return {"seq": seq, "path": str(path)}

    # -- helpers ---------------------------------------------------------------------------

    async def _write(self, command: Command) -> int:
        try:
            return await self._commit.submit(command)
        except (CommandError, OSError) as error:
            raise _refusal(error) from None

    def _lock(self, sim_id: str, given: object, allow_unreported: object) -> tuple[SetLock, bool]:
        """The SetLock for ``set_imei_lock``, and whether to warn that the SIM's online
        session reported no IMEI (the lock given would reject it)."""
        primary = self._primary(sim_id)
        session = self._sessions.get(primary)
        text = given if given not in (None, "") else self._session_imei(sim_id, session)
        try:
            command = parse_lock(sim_id, text, allow_unreported)
        except CommandError as error:
            raise Refused(400, "invalid", str(error), error.field) from None
        warn = not command.allow_unreported and session is not None and session.reported == 0
        return command, warn

    def _primary(self, sim_id: str) -> int:
        sim = self._live().sim(sim_id)
        if sim is None:
            raise Refused(404, "not-found", f"no SIM {sim_id!r}", "simId")
        return sim.primary_imsi

    def _session_imei(self, sim_id: str, session: Session | None) -> str:
        if session is None or not session.online:
            raise Refused(
                400,
                "no-session",
                f"imei: SIM {sim_id!r} has no online session to take the IMEI from; give the IMEI",
                "imei",
            )
        if session.reported == imei.NOT_REPORTED:
            raise Refused(
                400,
                "imei-not-reported",
                "imei: the SIM's online session did not "
                "report an IMEI (000000000000000); a lock to it would block the SIM "
                "forever. Give the device's IMEI, or allow unreported sessions",
                "imei",
            )
        if session.reported == imei.INVALID:
            raise Refused(
                400,
                "imei-invalid",
                "imei: the SIM's online session reported an invalid IMEI; give the IMEI",
                "imei",
            )
        return imei.format_identity(session.reported)

    def _view(self, document: dict[str, Any], live: LiveTable) -> dict[str, Any]:
        view = dict(document)
        view.pop("kind", None)
        view.setdefault("imeiLock", None)
        sim = live.sim(str(document["simId"]))
        session = None if sim is None else self._sessions.get(sim.primary_imsi)
        view["sessionStatus"] = None if session is None else _session_view(session)
        return view


def _refusal(error: CommandError | OSError) -> Refused:
    """The answer to a write that was not made: 404 for an unknown SIM, 400 for another
    refusal, 503 when the journal failed (nothing can be made durable)."""
    if isinstance(error, UnknownSim):
        return Refused(404, "not-found", str(error.message), "simId")
    if isinstance(error, CommandError):
        return Refused(400, "invalid", str(error), error.field)
    return Refused(
        503,
        "journal-failed",
        f"the journal failed ({error}): no write can be made durable until simgate is "
        "restarted; the write was not made",
    )


def _session_view(session: Session) -> dict[str, Any]:
    reported = session.reported
    return {
        "online": session.online,
        "sessionId": f"{session.session_id:016x}",
        "imsi": f"{session.imsi:015d}",
        "imei": imei.format_identity(reported) if reported > 0 else None,
        "imeiReported": reported > 0,
        "nas": describe_nas(session.nas),
        "ueIpAddress": socket.inet_ntoa(session.framed_ip.to_bytes(4, "big"))
        if session.framed_ip
        else None,
        "createdAt": round(session.created * 1000),
    }


def _public_group(document: dict[str, Any]) -> dict[str, Any]:
    """A group as the API shows it: the CHAP password and the webhook URL's password (sent as
    Basic credentials) are never sent back."""
    shown = {key: value for key, value in document.items() if key != "kind"}
    chap = shown.get("chap")
    if isinstance(chap, dict):
        shown["chap"] = {"username": chap.get("username"), "passwordSet": "password" in chap}
    url = shown.get("webhookUrl")
    if isinstance(url, str):
        shown["webhookUrl"] = _without_password(url)
    return shown


def _without_password(url: str) -> str:
    """Return ``url`` with the password of its user information replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user_info.partition(':')[0]}:***@{host}"))
