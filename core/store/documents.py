"""SIM and group documents on the write path: checked as import checks them, made canonical.

Owns: check_sim() and check_group() (a provisioning document from the admin API in, a SimRow or
a Group and its canonical document out, or a CommandError naming the field); sim_row() (a
canonical document back to its row, for replay); subscribers() (the Subscribers a row makes);
the framed-IP pool of the live table (FramedPool).

Invariants:
- A document is judged field by field by core.provision.fields, exactly as a line of an import,
  so the API and the import accept the same documents and name the same fields.
- A canonical SIM document is what core.provision.rows.cold_document() writes for its row: a SIM
  created through the API and one imported read back the same; sim_row(canonical) == the row.
- A FramedPool hands out each address once and never one the table holds.

Must not: look at the table beyond what the caller passes (group indexes, a framed-IP set);
import asyncio, the RADIUS codec, logging, metrics or time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from core.provision.fields import (
    DEFAULT_COVERAGE,
    DEFAULT_SUBSCRIPTION,
    FIRST_VIRTUAL_IMSI,
    GROUP_CHECKS,
    REQUIRED,
    SIM_CHECKS,
    InvalidValue,
    Virtual,
    virtual_problems,
)
from core.provision.importer import POOL_FIRST, POOL_LAST
from core.provision.rows import SimRow, VirtualRow, cold_document, dotted
from core.store.commands import CommandError
from core.store.format import group_document
from core.store.records import NO_GROUP, Group, Status, Subscriber

_NO_LOCK: Final = (0, False, None)


class FramedPool:
    """Framed IPv4 addresses in use, and the next free one of 100.64.0.0/10 (as import gives)."""

    def __init__(self, used: set[int]) -> None:
        self.used = used
        self._next = POOL_FIRST

    def take(self, field: str, address: int | None) -> int:
        """Reserve ``address``, or the next free pool address when None; return it.

        Raises:
            CommandError: the address is in use, or the pool is exhausted.
        """
        if address is None:
            while self._next in self.used:
                self._next += 1
            if self._next > POOL_LAST:
                raise CommandError(field, "100.64.0.0/10 has no address left: give framedIp")
            address = self._next
        elif address in self.used:
            raise CommandError(field, f"'{dotted(address)}' is already in use")
        self.used.add(address)
        return address


def check_sim(
    document: object,
    group_index: Mapping[str, int],
    imsi_taken: Callable[[int], bool],
    pool: Callable[[], FramedPool],
) -> tuple[SimRow, dict[str, Any]]:
    """Check a SIM document as import does; return its row and canonical document.

    ``imsi_taken`` says whether an IMSI (primary or virtual) exists; ``pool`` gives the framed
    IPs, reserving the ones the SIM gets. The simId is not checked for being new here.

    Raises:
        CommandError: naming the field ("imsi", "virtualSubscribers[1].imsi", ...).
    """
    values = _checked(document, SIM_CHECKS, "sim")
    imsi: int = values["imsi"]
    status: Status = values.get("status", Status.ACTIVE)
    subscription: str = values.get("subscription", DEFAULT_SUBSCRIPTION)
    virtuals: list[Virtual] = values.get("virtualSubscribers", [])
    for field, message in virtual_problems(imsi, status, subscription, virtuals):
        raise CommandError(field, message)
    group_id = values.get("groupId")
    group = NO_GROUP if group_id is None else group_index.get(group_id)
    if group is None:
        raise CommandError("groupId", f"no group {group_id!r}")
    _check_imsis(imsi, [virtual[0] for virtual in virtuals], imsi_taken)
    framed, addresses = _framed_ips(imsi, values.get("framedIp"), virtuals, pool)
    subscribers = tuple(
        VirtualRow(sub, terminated, address)
        for (sub, terminated, _), address in zip(virtuals, addresses, strict=True)
    )
    identity, allow_unreported, imei = values.get("imeiLock", _NO_LOCK)
    row = SimRow(
        values["simId"], imsi, status, group, identity, allow_unreported,
        values.get("lockOnFirstConnect", False), framed, subscription,
        values.get("coverage", DEFAULT_COVERAGE), subscribers, imei,
    )  # fmt: skip
    return row, canonical_sim(row, group_id)


def canonical_sim(row: SimRow, group_id: str | None) -> dict[str, Any]:
    """Return the canonical document of a row (cold_document's, as a dict)."""
    group_ids = [""] * (row.group + 1) if row.group != NO_GROUP else []
    if group_id is not None:
        group_ids[row.group] = group_id
    document: dict[str, Any] = json.loads(cold_document(row, group_ids))
    return document


def sim_row(document: Mapping[str, Any], group_index: Mapping[str, int]) -> SimRow | None:
    """Return the row of a canonical SIM document (a journaled PutSim), or None.

    None means the document names a group the table no longer resolves (never, when the
    document passed check_sim() against the same table).
    """
    values: dict[str, Any] = {name: SIM_CHECKS[name](value) for name, value in document.items()}
    group_id = values.get("groupId")
    group = NO_GROUP if group_id is None else group_index.get(group_id)
    if group is None:
        return None
    identity, allow_unreported, imei = values.get("imeiLock", _NO_LOCK)
    subscribers = tuple(
        VirtualRow(sub, terminated, framed or 0)
        for sub, terminated, framed in values.get("virtualSubscribers", ())
    )
    return SimRow(
        values["simId"], values["imsi"], values.get("status", Status.ACTIVE), group, identity,
        allow_unreported, values.get("lockOnFirstConnect", False), values.get("framedIp", 0),
        values.get("subscription", DEFAULT_SUBSCRIPTION),
        values.get("coverage", DEFAULT_COVERAGE), subscribers, imei,
    )  # fmt: skip


def subscribers(row: SimRow, index: int) -> tuple[Subscriber, tuple[Subscriber, ...]]:
    """Return the Subscriber of the row's primary IMSI and those of its virtual subscribers."""
    standalone = row.imsi >= FIRST_VIRTUAL_IMSI
    shared = (row.status, row.group, row.lock, row.allow_unreported, row.lock_on_first_connect)
    primary = Subscriber(
        row.imsi,
        index,
        standalone,
        standalone and row.status == Status.TERMINATED,
        row.framed_ip,
        row.imsi,
        *shared,
    )
    virtual = tuple(
        Subscriber(sub.imsi, index, True, sub.terminated, sub.framed_ip, row.imsi, *shared)
        for sub in row.subscribers
    )
    return primary, virtual


def check_group(document: object) -> tuple[Group, dict[str, Any]]:
    """Check a group document as import does; return the Group and its canonical document.

    Raises:
        CommandError: naming the field ("chap.password", "webhookUrl", ...).
    """
    values = _checked(document, GROUP_CHECKS, "group")
    actions: tuple[str, ...] = values.get("onImeiLockRejected", ())
    webhook: str | None = values.get("webhookUrl")
    if "webhook" in actions and webhook is None:
        raise CommandError("webhookUrl", "required when onImeiLockRejected has 'webhook'")
    username, password = values.get("chap", (None, None))
    group = Group(
        values["groupId"],
        None if username is None else username.encode(),
        None if password is None else password.encode(),
        values.get("lockOnFirstConnect", False),
        actions,
        values.get("vpg"),
    )
    return group, group_document(group, webhook)


def _checked(
    document: object, checks: Mapping[str, Callable[[object], object]], kind: str
) -> dict[str, Any]:
    """Return the document's checked values by field (null = absent)."""
    if not isinstance(document, dict):
        raise CommandError("document", f"not a JSON object: {document!r:.40}")
    if document.get("kind", kind) != kind:
        raise CommandError("kind", f"{document['kind']!r} is not {kind!r}")
    values: dict[str, Any] = {}
    for name, value in document.items():
        check = checks.get(name)
        if check is None:
            raise CommandError(name, f"unknown field for a {kind}")
        if value is not None and name != "kind":
            try:
                values[name] = check(value)
            except InvalidValue as error:
                raise CommandError(name + error.where, str(error)) from None
    for name in REQUIRED[kind]:
        if name not in values:
            raise CommandError(name, "required")
    return values


def _framed_ips(
    imsi: int, framed: int | None, virtuals: Sequence[Virtual], pool: Callable[[], FramedPool]
) -> tuple[int, list[int]]:
    """Reserve the SIM's framed IP and its virtual subscribers'; all of them or none."""
    wanted = [(f"virtualSubscribers[{n}].framedIp", ip) for n, (_, _, ip) in enumerate(virtuals)]
    if framed is not None or imsi >= FIRST_VIRTUAL_IMSI:
        wanted.insert(0, ("framedIp", framed))
    if not wanted:
        return 0, []
    taken: list[int] = []
    framed_pool = pool()
    try:
        for field, address in wanted:
            taken.append(framed_pool.take(field, address))
    except CommandError:
        framed_pool.used.difference_update(taken)
        raise
    own = taken.pop(0) if len(taken) > len(virtuals) else 0
    return own, taken


def _check_imsis(imsi: int, virtual: Sequence[int], taken: Callable[[int], bool]) -> None:
    fields = ["imsi", *(f"virtualSubscribers[{n}].imsi" for n in range(len(virtual)))]
    seen: dict[int, str] = {}
    for field, value in zip(fields, [imsi, *virtual], strict=True):
        if value in seen:
            raise CommandError(field, f"'{value:015d}' is also {seen[value]}")
        if taken(value):
            raise CommandError(field, f"'{value:015d}' already belongs to a SIM")
        seen[value] = field
