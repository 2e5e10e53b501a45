"""The provisioning format's values (DESIGN §6): what each field of a line may hold.

Owns: the check of every field of a "sim" or "group" line (SIM_CHECKS, GROUP_CHECKS: value in,
checked value out), the required fields, the rules across a SIM's fields on virtual subscribers
(DESIGN §4), and the format's vocabulary and defaults (names, coverages, actions, rendezvous
points, the first virtual IMSI).

Invariants:
- A check returns the value in the form the importer stores (IMSI and IPv4 as ints, Status, lock
  identity) or raises InvalidValue; it has no state and no side effect, so a line's checks may
  run in any order.
- simId, groupId and subscription are names ([0-9A-Za-z][0-9A-Za-z._-]{0,63}), so they need no
  escaping in URLs or in the snapshot's JSON.
- InvalidValue.where extends the field's name to a JSON path ("imeiLock.imei",
  "virtualSubscribers[1].imsi"); the importer prepends the field and reports the line.

Must not: read input, know about lines, CSV or the snapshot; import asyncio, the RADIUS codec,
the service layer, logging or metrics.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from core.policy.imei import lock_identity
from core.store.records import STATUS_BY_LABEL, VIRTUAL_CAPABLE_SUBSCRIPTIONS, Status

ACTIONS: Final = ("log", "deactivate", "webhook")
RENDEZVOUS_POINTS: Final = ("tokyo", "oregon", "frankfurt", "sydney")
COVERAGES: Final = ("jp", "global")
VIRTUAL_STATUSES: Final = {"active": False, "terminated": True}  # label -> terminated
DEFAULT_SUBSCRIPTION: Final = "plan01s"
DEFAULT_COVERAGE: Final = "global"
NAME_PATTERN: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")
#: IMSIs from here on (99999...) are virtual: a virtual subscriber's or a standalone virtual SIM's.
FIRST_VIRTUAL_IMSI: Final = 999990000000000

_IMEI_RULE: Final = "is not an IMEI (14 digits, 16, or 15 ending in its Luhn digit or 0)"


class InvalidValue(Exception):
    """A value is wrong; ``where`` extends the field name (".imei", "[2].status")."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


def _name(value: object) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidValue(f"{value!r} is not a name (1-64 letters, digits, '.', '_', '-')")
    return value


def _imsi(value: object) -> int:
    if not isinstance(value, str) or len(value) != 15 or not value.isascii() or not value.isdigit():
        raise InvalidValue(f"{value!r} is not an IMSI (a string of 15 digits)")
    return int(value)


def _status(value: object) -> Status:
    status = STATUS_BY_LABEL.get(value) if isinstance(value, str) else None
    if status is None:
        raise InvalidValue(f"{value!r} is not one of {', '.join(STATUS_BY_LABEL)}")
    return status


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"{value!r} is not true or false")
    return value


def _coverage(value: object) -> str:
    if value not in COVERAGES:
        raise InvalidValue(f"{value!r} is not one of {', '.join(COVERAGES)}")
    return str(value)


def _ipv4(value: object) -> int:
    parts = value.split(".") if isinstance(value, str) else ()
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        raise InvalidValue(f"{value!r} is not a dotted IPv4 address")
    octets = [int(part) for part in parts]
    if max(octets) > 255 or not any(octets):
        raise InvalidValue(f"{value!r} is not a usable IPv4 address")
    return int.from_bytes(bytes(octets), "big")


def _fields(value: object, allowed: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidValue(f"{value!r} is not {what}")
    unknown = sorted(value.keys() - allowed)
    if unknown:
        raise InvalidValue("unknown field", f".{unknown[0]}")
    return value


def _lock(value: object) -> tuple[int, bool, str]:
    """Return (identity, allowUnreported, IMEI as typed) of an imeiLock value."""
    where, allow = "", None
    if isinstance(value, dict):
        lock = _fields(value, frozenset({"imei", "allowUnreported"}), "")
        where, value, allow = ".imei", lock.get("imei"), lock.get("allowUnreported")
        if value is None:
            raise InvalidValue("required", where)
        if not isinstance(value, str):
            raise InvalidValue(f"{value!r} is not a string", where)
        if allow is not None and not isinstance(allow, bool):
            raise InvalidValue(f"{allow!r} is not true or false", ".allowUnreported")
    if not isinstance(value, str):
        raise InvalidValue(f"{value!r} is not {{imei, allowUnreported}} or '<imei>[|ANONYMOUS]'")
    digits, bar, suffix = value.partition("|")
    if bar and suffix != "ANONYMOUS":
        raise InvalidValue(f"{value!r}: only '|ANONYMOUS' may follow the IMEI", where)
    if bar and allow is False:
        raise InvalidValue(f"{value!r} contradicts allowUnreported false", where)
    identity = lock_identity(digits)
    if identity is None:
        raise InvalidValue(f"{digits!r} {_IMEI_RULE}", where)
    return identity, bool(bar) or bool(allow), digits


Virtual = tuple[int, bool, int | None]  # IMSI, terminated, framed IP if given


def _virtuals(value: object) -> list[Virtual]:
    """Return (IMSI, terminated, framed IP or None) per virtual subscriber."""
    if not isinstance(value, list):
        raise InvalidValue(f"{value!r} is not a list")
    subscribers = []
    allowed = frozenset({"imsi", "status", "framedIp"})
    for number, entry in enumerate(value):
        where = f"[{number}]"
        try:
            fields = _fields(entry, allowed, "a virtual subscriber {imsi, status, framedIp}")
            where = f"[{number}].imsi"
            if fields.get("imsi") is None:
                raise InvalidValue("required")
            imsi = _imsi(fields["imsi"])
            if imsi < FIRST_VIRTUAL_IMSI:
                raise InvalidValue(f"'{imsi:015d}' is not a virtual IMSI (it begins 99999)")
            where = f"[{number}].status"
            status = fields.get("status")
            terminated = False if status is None else VIRTUAL_STATUSES.get(status)
            if terminated is None:
                raise InvalidValue(f"{status!r} is not active or terminated")
            where = f"[{number}].framedIp"
            framed = fields.get("framedIp")
            subscribers.append((imsi, terminated, None if framed is None else _ipv4(framed)))
        except InvalidValue as error:
            raise InvalidValue(str(error), where + error.where) from None
    return subscribers


def _chap(value: object) -> tuple[str, str]:
    chap = _fields(value, frozenset({"username", "password"}), "{username, password}")
    for name in ("username", "password"):
        if name not in chap:
            raise InvalidValue("required", f".{name}")
        if not isinstance(chap[name], str) or not chap[name]:
            raise InvalidValue(f"{chap[name]!r} is not a non-empty string", f".{name}")
    return chap["username"], chap["password"]


def _actions(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidValue(f"{value!r} is not a list of {', '.join(ACTIONS)}")
    for number, action in enumerate(value):
        if action not in ACTIONS:
            raise InvalidValue(f"{action!r} is not one of {', '.join(ACTIONS)}", f"[{number}]")
        if action in value[:number]:
            raise InvalidValue(f"{action!r} is repeated", f"[{number}]")
    return tuple(value)


def _url(value: object) -> str:
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
        host = parts.hostname if parts is not None else None
    except ValueError:  # e.g. an unclosed "[" IPv6 literal
        parts = host = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise InvalidValue(f"{value!r} is not an http(s) URL")
    return str(value)


def _rendezvous(value: object) -> str:
    vpg = _fields(value, frozenset({"rendezvousPoint"}), "{rendezvousPoint}")
    point = vpg.get("rendezvousPoint")
    if point not in RENDEZVOUS_POINTS:
        raise InvalidValue(
            f"{point!r} is not one of {', '.join(RENDEZVOUS_POINTS)}", ".rendezvousPoint"
        )
    return str(point)


def _same(value: object) -> object:
    return value


SIM_CHECKS: Final[Mapping[str, Callable[[object], object]]] = {
    "kind": _same,
    "simId": _name,
    "imsi": _imsi,
    "status": _status,
    "subscription": _name,
    "coverage": _coverage,
    "groupId": _name,
    "imeiLock": _lock,
    "lockOnFirstConnect": _boolean,
    "framedIp": _ipv4,
    "virtualSubscribers": _virtuals,
}
GROUP_CHECKS: Final[Mapping[str, Callable[[object], object]]] = {
    "kind": _same,
    "groupId": _name,
    "chap": _chap,
    "lockOnFirstConnect": _boolean,
    "onImeiLockRejected": _actions,
    "webhookUrl": _url,
    "vpg": _rendezvous,
}
REQUIRED: Final = {"sim": ("simId", "imsi"), "group": ("groupId",)}


def virtual_problems(
    imsi: int, status: Status, subscription: str, virtuals: Sequence[Virtual]
) -> list[tuple[str, str]]:
    """Apply DESIGN §4: who may hold virtual subscribers, and a virtual SIM's statuses."""
    problems = []
    if imsi >= FIRST_VIRTUAL_IMSI:
        if status not in (Status.ACTIVE, Status.TERMINATED):
            problems.append(
                ("status", f"a virtual SIM is active or terminated, not {status.label!r}")
            )
        if virtuals:
            problems.append(("virtualSubscribers", "a virtual SIM cannot hold virtual subscribers"))
    elif virtuals and subscription not in VIRTUAL_CAPABLE_SUBSCRIPTIONS:
        plans = ", ".join(sorted(VIRTUAL_CAPABLE_SUBSCRIPTIONS))
        message = f"subscription {subscription!r} cannot hold virtual subscribers (only {plans})"
        problems.append(("virtualSubscribers", message))
    return problems
