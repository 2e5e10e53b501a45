"""The datagram pipeline: one request's bytes in, the reply's bytes out (or nothing).

Owns: the order of the hot path (DESIGN §2 step 1, STYLE §2.3): known client -> structure ->
code -> Message-Authenticator -> duplicate -> decide -> encode. Counting happens here in plain
integers (``Stats``); logging and Prometheus never do.

Invariants:
- Synchronous and memory-only: no await, no I/O, no clock (``now`` is a parameter).
- A packet with a bad Message-Authenticator never touches the reply cache (RFC 5080 §2.2.2).
- A retransmission gets the cached bytes and causes no second decision or effect.
- A reject is not sent before ``reject_delay``; it waits in ``delayed`` (FIFO, so ordered by due
  time) for the transport to send, and its duplicates are "in progress" until then.

Must not: import asyncio, structlog or prometheus_client.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import Final, NamedTuple

from core.config import Radius
from core.policy.admission import TableView, decide
from core.policy.verdict import AdmissionRequest, Effect, Reason
from core.radius.auth import (
    sign_reply,
    verify_accounting_authenticator,
    verify_message_authenticator,
)
from core.radius.codes import Code, Drop, MalformedPacket
from core.radius.dedup import IN_PROGRESS, Address, Key, ReplyCache
from core.radius.dictionary import VENDOR_3GPP, Handles
from core.radius.wire import Packet, encode_attribute, parse, vendor_key
from core.service.clients import ClientEntry, Clients
from core.service.reactions import Reactions
from core.service.stats import Stats

_ACCESS_REQUEST: Final = int(Code.ACCESS_REQUEST)
_ACCOUNTING_REQUEST: Final = int(Code.ACCOUNTING_REQUEST)
_STATUS_SERVER: Final = int(Code.STATUS_SERVER)
_ACCEPT: Final = int(Code.ACCESS_ACCEPT)
_REJECT: Final = int(Code.ACCESS_REJECT)
_ACCOUNTING_RESPONSE: Final = int(Code.ACCOUNTING_RESPONSE)


_new: Final = tuple.__new__


class Delayed(NamedTuple):
    """A reject waiting for its ``reject_delay`` to pass."""

    due: float
    address: Address
    key: Key
    authenticator: bytes
    reply: bytes


class Pipeline:
    """The hot path of one receiving socket (``auth`` or ``acct``)."""

    def __init__(
        self,
        *,
        port: str,
        clients: Clients,
        table: TableView,
        handles: Handles,
        settings: Radius,
        stats: Stats,
    ) -> None:
        self.port = port
        self._auth_port = port == "auth"
        self.clients = clients
        #: swapped whole (one assignment) when a new snapshot is mapped
        self.table = table
        self.stats = stats
        self.cache = ReplyCache(ttl=settings.reply_cache_ttl)
        self.delayed: deque[Delayed] = deque()
        self.reject_delay = settings.reject_delay
        self.status_server = settings.status_server
        self.imsi_from_user_name = settings.imsi_from_user_name
        self._handles = handles
        self._imsi = vendor_key(VENDOR_3GPP, handles.imsi_3gpp)
        self._imeisv = vendor_key(VENDOR_3GPP, handles.imeisv_3gpp)
        self._eap = handles.eap_message
        self._user_name = handles.user_name
        self._chap_password = handles.chap_password
        self._chap_challenge = handles.chap_challenge
        self._reject_attributes = {
            reason: encode_attribute(handles.reply_message, reason.value.encode())
            for reason in Reason
        }
        self._framed_ip_header = bytes((handles.framed_ip_address, 6))
        self._class_header = handles.class_
        self._nas_ip = handles.nas_ip_address
        self._nas_identifier = handles.nas_identifier
        #: what a batch's IMSIs are read from (core/service/_datagrams.c imsi_key): the
        #: 3GPP-IMSI vendor type, and User-Name's type when it may carry the IMSI (else 0)
        self.imsi_vsa = handles.imsi_3gpp
        self.imsi_user_name = handles.user_name if settings.imsi_from_user_name else 0
        #: side effects of decisions (sessions, events, writes); None: decide only
        self.reactions: Reactions | None = None
        #: the transport's sendto, for replies that finish after a durable write
        self.send: Callable[[bytes, Address], None] | None = None
        #: asks the transport to schedule the delayed-reject timer
        self.wake: Callable[[], None] | None = None
        self._clock: Callable[[], float] = time.perf_counter
        # Session ids: a random 32-bit boot id, then a counter, so they never repeat across
        # restarts; Class is "simgate:<primary IMSI>:<session id as 16 hex digits>".
        self._sessions = int.from_bytes(os.urandom(4), "big") << 32
        self._class_prefix = bytes((handles.class_, 2 + 40)) + b"simgate:"

    def handle(self, data: bytes, address: Address, now: float) -> bytes | None:
        """Process one datagram; return the reply to send now, or None."""
        client = self.clients.find(address[0])
        if client is None:
            return self._drop(Drop.UNKNOWN_CLIENT)
        try:
            packet = parse(data, VENDOR_3GPP)
        except MalformedPacket as error:
            return self._drop(error.drop)
        code = packet.code
        client.counters.requests[code] += 1
        if code == _ACCESS_REQUEST and self._auth_port:
            return self._access_request(packet, client, address, now)
        if code == _STATUS_SERVER and self.status_server:
            return self._status_server(packet, client)
        if code == _ACCOUNTING_REQUEST and not self._auth_port:
            return self._accounting_request(packet, client)
        return self._drop(Drop.UNEXPECTED_CODE)

    def prefetch(self, keys: bytes) -> None:
        """Warm what a batch's decisions will read: the table's IMSI slots and records, the
        session slots. ``keys`` are the batch's IMSIs (native uint64s, 0: none), from the
        datagram pump. A hint only: nothing is looked up or changed."""
        warm = getattr(self.table.find, "prefetch", None)  # the C finder's; the table is
        if warm is not None:  # swapped whole at compaction, so it is asked each batch
            warm(keys)
        if self.reactions is not None:
            self.reactions.prefetch(keys)

    def _drop(self, reason: Drop) -> bytes | None:
        """Count a silent discard; returns None so callers can ``return self._drop(...)``."""
        self.stats.drops[reason] += 1
        return None

    def _without_ma(self, packet: Packet, client: ClientEntry) -> Drop | None:
        """BlastRADIUS rules for a request without MA, checked before anything else (REFERENCE
        §2.2): dropped when the client requires MA, or when it carries Proxy-State ("limit
        Proxy-State") or EAP-Message (RFC 3579 §3.2)."""
        if client.require_message_authenticator or packet.proxy_states is not None:
            return Drop.MA_MISSING
        if self._eap in packet.offsets:
            return Drop.MA_MISSING
        return None

    def _access_request(
        self, packet: Packet, client: ClientEntry, address: Address, now: float
    ) -> bytes | None:
        data = packet.data
        position = packet.message_authenticator
        if position < 0:
            problem = self._without_ma(packet, client)
            if problem is not None:
                return self._drop(problem)
        elif not verify_message_authenticator(data, packet.length, position, client.secret):
            # before the reply cache: a forged packet must not touch it (RFC 5080 §2.2.2)
            return self._drop(Drop.MA_BAD)
        key = (address, packet.identifier)
        authenticator = packet.authenticator
        # perf: lookup only; the reply (or "in progress") is stored once, below: nothing else
        # runs between the two (bench/micro.py)
        cached = self.cache.lookup(key, authenticator, now)
        if cached is not None:
            client.counters.duplicates += 1
            if cached:
                return cached
            return self._drop(Drop.DUPLICATE_IN_PROGRESS)
        # perf: the attribute values the policy reads, sliced inline (Packet.value per field
        # costs a call each; bench/micro.py).
        get = packet.offsets.get
        at = get(self._imsi)
        imsi = None if at is None else data[at + 2 : at + data[at + 1]]
        at = get(self._imeisv)
        imeisv = None if at is None else data[at + 2 : at + data[at + 1]]
        at = get(self._user_name)
        user_name = None if at is None else data[at + 2 : at + data[at + 1]]
        at = get(self._chap_password)
        chap_password = None if at is None else data[at + 2 : at + data[at + 1]]
        at = get(self._chap_challenge)
        challenge = authenticator if at is None else data[at + 2 : at + data[at + 1]]
        if imsi is None and self.imsi_from_user_name:
            imsi = user_name
        request = _new(AdmissionRequest, (imsi, imeisv, user_name, chap_password, challenge))
        return self._answer(request, packet, client, address, key, now)

    def _answer(
        self,
        request: AdmissionRequest,
        packet: Packet,
        client: ClientEntry,
        address: Address,
        key: Key,
        now: float,
        resumed: bool = False,
    ) -> bytes | None:
        """Decide, react, encode and sign; a reject waits in ``delayed``."""
        verdict = decide(request, self.table)
        stats = self.stats
        stats.decisions[verdict.reason] += 1
        if verdict.effects:
            stats.effects[verdict.effects] += 1
        subscriber = verdict.subscriber
        reactions = self.reactions
        authenticator = packet.authenticator
        if verdict.accept:
            assert subscriber is not None
            if reactions is not None and verdict.effects & Effect.LOCK and not resumed:
                # Lock on first connect: the reply waits until the lock is durable, and is then
                # judged against the table as it stands (DESIGN §3). Until then duplicates of
                # this request are "in progress".
                def resume() -> None:
                    reply = self._answer(
                        request, packet, client, address, key, self._clock(), resumed=True
                    )
                    if reply is not None and self.send is not None:
                        self.send(reply, address)

                self.cache.store(key, authenticator, IN_PROGRESS, now)
                reactions.lock_on_first_connect(subscriber, verdict.reported, resume)
                return None
            self._sessions = session = self._sessions + 1
            # Class identifies the session and the SIM (by its primary IMSI); the NAS echoes it
            # in accounting (RFC 2865 §5.25). Its length is fixed, so its header is prebuilt.
            attributes = self._class_prefix + b"%015d:%016x" % (subscriber.primary_imsi, session)
            if subscriber.framed_ip:
                attributes += self._framed_ip_header + subscriber.framed_ip.to_bytes(4, "big")
            code = _ACCEPT
            if reactions is not None:
                reactions.accepted(subscriber, verdict, session, self._nas(packet))
        else:
            attributes = self._reject_attributes[verdict.reason]
            code = _REJECT
            if reactions is not None and subscriber is not None:
                reactions.rejected(subscriber, verdict, request.imeisv, self._nas(packet))
        if packet.proxy_states is not None:
            attributes += packet.proxy_state_attributes()
        reply = sign_reply(code, packet.identifier, authenticator, attributes, client.secret)
        stats.replies[code] += 1
        if code == _REJECT and self.reject_delay > 0:
            self.cache.store(key, authenticator, IN_PROGRESS, now)
            self.delayed.append(
                Delayed(now + self.reject_delay, address, key, authenticator, reply)
            )
            if resumed and self.wake is not None:
                self.wake()
            return None
        self.cache.store(key, authenticator, reply, now)
        return reply

    def _nas(self, packet: Packet) -> bytes:
        """The NAS attribute as received (NAS-IP-Address, else NAS-Identifier), b"" if none.

        Kept raw: sessions.describe_nas() formats it when someone looks (off the hot path).
        """
        data, offsets = packet.data, packet.offsets
        at = offsets.get(self._nas_ip)
        if at is None:
            at = offsets.get(self._nas_identifier)
            if at is None:
                return b""
        return data[at : at + data[at + 1]]

    def _status_server(self, packet: Packet, client: ClientEntry) -> bytes | None:
        # RFC 5997 §3: Status-Server MUST carry a valid Message-Authenticator; no side effects.
        position = packet.message_authenticator
        if position < 0:
            return self._drop(Drop.MA_MISSING)
        if not verify_message_authenticator(packet.data, packet.length, position, client.secret):
            return self._drop(Drop.MA_BAD)
        code = _ACCEPT if self.port == "auth" else _ACCOUNTING_RESPONSE
        attributes = packet.proxy_state_attributes()
        self.stats.replies[code] += 1
        return sign_reply(code, packet.identifier, packet.authenticator, attributes, client.secret)

    def _accounting_request(self, packet: Packet, client: ClientEntry) -> bytes | None:
        if not verify_accounting_authenticator(packet.data, packet.length, client.secret):
            return self._drop(Drop.BAD_AUTHENTICATOR)
        # Sessions from accounting are not recorded yet; an Accounting-Response may only be
        # sent for a recorded request (RFC 2866 §4.1), so none is sent.
        return self._drop(Drop.NOT_RECORDED)

    def due_rejects(self, now: float) -> list[Delayed]:
        """Take the rejects whose delay has passed, marking them answered in the cache."""
        delayed = self.delayed
        ready: list[Delayed] = []
        while delayed and delayed[0].due <= now:
            item = delayed.popleft()
            self.cache.finish(item.key, item.authenticator, item.reply, now)
            ready.append(item)
        return ready
