"""Provisioning import: JSON Lines or CSV subscriber data in, one snapshot file out (DESIGN §6).

Owns: the provisioning format (fields, defaults, what is valid), error messages that name the
line and the field, the framed IPs given to virtual subscribers, and write_snapshot() for bulk
data that needs no validation (bench/).

Invariants:
- Nothing is written unless every line is valid. Every error is counted; the first MAX_SHOWN in
  line order are shown; the snapshot's temporary file is removed.
- The input is streamed one line at a time. Per SIM, only the snapshot writer's packed arrays and
  a 4-byte line number stay in memory (no dict per SIM); framed IPs are remembered to refuse
  repeats.
- A virtual subscriber (or a standalone virtual SIM) without framedIp gets the next address of
  100.64.0.0/10 not yet used, from 100.64.0.1 in file order (addresses given on later lines are
  not foreseen: a repeat there is reported).
- simId, groupId and subscription are names ([0-9A-Za-z][0-9A-Za-z._-]{0,63}), so they need no
  escaping in URLs or in the snapshot's JSON.
- Errors name JSON paths ("imeiLock.imei", "virtualSubscribers[1].imsi"); in CSV, column names.

Must not: import asyncio, the RADIUS codec, the service layer, logging or metrics.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from core.policy.imei import format_identity, lock_identity
from core.store.records import (
    NO_GROUP,
    STATUS_BY_LABEL,
    VIRTUAL_CAPABLE_SUBSCRIPTIONS,
    Group,
    Status,
)
from core.store.snapshot import (
    ALLOW_UNREPORTED,
    LOCK_ON_FIRST_CONNECT,
    SnapshotWriter,
    group_document,
)

MAX_SHOWN: Final = 50
ACTIONS: Final = ("log", "deactivate", "webhook")
RENDEZVOUS_POINTS: Final = ("tokyo", "oregon", "frankfurt", "sydney")
COVERAGES: Final = ("jp", "global")
VIRTUAL_STATUSES: Final = {"active": False, "terminated": True}  # label -> terminated
DEFAULT_SUBSCRIPTION: Final = "plan01s"
DEFAULT_COVERAGE: Final = "global"
#: Addresses for virtual subscribers without framedIp: 100.64.0.0/10 (RFC 6598), ends excluded.
POOL_FIRST: Final = (100 << 24) | (64 << 16) | 1
POOL_LAST: Final = (100 << 24) | (127 << 16) | 0xFFFE

_MAX_KEPT: Final = 1000
_PROGRESS_EVERY: Final = 1 << 16
_NAME: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")
_VIRTUAL_LOW: Final = 999990000000000
_IMEI_RULE: Final = "is not an IMEI (14 digits, 16, or 15 ending in its Luhn digit or 0)"
#: JSON field path -> the CSV column it comes from (the others are spelled alike).
_CSV_NAMES: Final = {
    "imeiLock": "imei",
    "imeiLock.imei": "imei",
    "imeiLock.allowUnreported": "allowUnreported",
    "chap": "chapUsername",
    "chap.username": "chapUsername",
    "chap.password": "chapPassword",
    "vpg": "rendezvousPoint",
    "vpg.rendezvousPoint": "rendezvousPoint",
}
Progress = Callable[[int, int], None]


class LineError(NamedTuple):
    """One problem in the input: its line, the field (None for the whole line) and what is wrong."""

    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f": field {self.field!r}" if self.field else "")
        return f"{where}: {self.message}"


class ProvisionError(Exception):
    """The input has errors; nothing was written."""

    def __init__(
        self, path: str | os.PathLike[str], errors: Iterable[LineError], total: int
    ) -> None:
        self.path = Path(path)
        self.errors = tuple(sorted(errors, key=lambda error: error.line)[:MAX_SHOWN])
        self.total = total
        lines = [f"{os.fspath(path)}: {total} error{'s' if total != 1 else ''}, nothing imported"]
        lines += [str(error) for error in self.errors]
        if total > len(self.errors):
            lines.append(f"... and {total - len(self.errors)} more")
        super().__init__("\n".join(lines))


class ImportResult(NamedTuple):
    sim_count: int
    imsi_count: int
    group_count: int
    snapshot_path: Path
    seconds: float


class VirtualRow(NamedTuple):
    """A virtual subscriber of a SIM: IMSI (99999...), terminated or not, framed IPv4 as an int."""

    imsi: int
    terminated: bool = False
    framed_ip: int = 0


class SimRow(NamedTuple):
    """A SIM ready for the snapshot (what import builds per line, and what bench/ generates).

    ``group`` indexes the groups given beside the rows; ``lock`` is the 14-digit identity (0 = no
    lock); ``imei`` is the lock as typed (None: written from ``lock``).
    """

    sim_id: str
    imsi: int
    status: Status = Status.ACTIVE
    group: int = NO_GROUP
    lock: int = 0
    allow_unreported: bool = False
    lock_on_first_connect: bool = False
    framed_ip: int = 0
    subscription: str = DEFAULT_SUBSCRIPTION
    coverage: str = DEFAULT_COVERAGE
    subscribers: tuple[VirtualRow, ...] = ()
    imei: str | None = None


def import_file(
    path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    seq: int,
    now: float,
    progress: Progress | None = None,
) -> ImportResult:
    """Validate a provisioning file (``.csv``: CSV, else JSON Lines) and write its snapshot.

    ``progress(done, total)`` is called every 65,536 lines with bytes read and the file size,
    and once at the end of the parse with done == total.

    Raises:
        ProvisionError: any line is invalid (nothing is written).
        OSError: the file cannot be read or the snapshot written.
    """
    started = time.perf_counter()
    path = Path(path)
    with SnapshotWriter(data_dir, seq, now) as writer:
        importer = _Importer(writer, csv_names=path.suffix.lower() == ".csv")
        reader = _csv_items if importer.csv_names else _json_items
        for line, item in reader(path, importer, progress):
            importer.take(line, item)
        importer.finish()
        if importer.error_count:
            raise ProvisionError(path, importer.errors, importer.error_count)
        snapshot = writer.commit(importer.group_documents())
        return ImportResult(
            writer.sim_count,
            writer.imsi_count,
            len(importer.group_ids),
            snapshot,
            time.perf_counter() - started,
        )


def write_snapshot(
    data_dir: str | os.PathLike[str],
    rows: Iterable[SimRow],
    groups: Sequence[Group] = (),
    *,
    seq: int = 1,
    created_at: float = 0.0,
) -> Path:
    """Write a snapshot of rows that need no validation (bench data); return its path.

    Raises:
        ValueError: an IMSI or simId repeats, a name is not a name, or a row names a group
            outside ``groups``.
    """
    group_ids = [group.group_id for group in groups]
    checked = {
        (subscription, coverage)
        for subscription in VIRTUAL_CAPABLE_SUBSCRIPTIONS
        for coverage in COVERAGES
    }
    valid_groups = range(len(groups))
    with SnapshotWriter(data_dir, seq, created_at) as writer:
        for row in rows:
            if (row.subscription, row.coverage) not in checked:
                if not _NAME.fullmatch(row.subscription) or row.coverage not in COVERAGES:
                    raise ValueError(f"SIM {row.sim_id!r}: bad subscription or coverage")
                checked.add((row.subscription, row.coverage))
            if not _NAME.fullmatch(row.sim_id):
                raise ValueError(f"simId {row.sim_id!r} is not a name")
            if row.group != NO_GROUP and row.group not in valid_groups:
                raise ValueError(f"SIM {row.sim_id!r}: no group {row.group}")
            _add(writer, row, group_ids)
        return writer.commit([group_document(group) for group in groups])


def _add(writer: SnapshotWriter, row: SimRow, group_ids: Sequence[str]) -> int:
    flags = (ALLOW_UNREPORTED if row.allow_unreported else 0) | (
        LOCK_ON_FIRST_CONNECT if row.lock_on_first_connect else 0
    )
    return writer.add_sim(
        row.imsi,
        row.sim_id,
        _document(row, group_ids),
        row.status,
        row.group,
        row.lock,
        flags,
        row.framed_ip,
        row.imsi >= _VIRTUAL_LOW,
        row.subscribers,
    )


def _document(row: SimRow, group_ids: Sequence[str]) -> bytes:
    """Return the SIM's cold JSON: a provisioning line (without kind). Strings are names/digits."""
    parts = [
        f'{{"simId":"{row.sim_id}","imsi":"{row.imsi:015d}","status":"{_LABELS[row.status]}",'
        f'"subscription":"{row.subscription}","coverage":"{row.coverage}"'
    ]
    if row.group != NO_GROUP:
        parts.append(f',"groupId":"{group_ids[row.group]}"')
    if row.lock:
        imei = row.imei or _formatted(row.lock)
        allow = "true" if row.allow_unreported else "false"
        parts.append(f',"imeiLock":{{"imei":"{imei}","allowUnreported":{allow}}}')
    if row.lock_on_first_connect:
        parts.append(',"lockOnFirstConnect":true')
    if row.framed_ip:
        parts.append(f',"framedIp":"{_dotted(row.framed_ip)}"')
    if row.subscribers:
        subscribers = ",".join(
            f'{{"imsi":"{sub.imsi:015d}","status":"{"terminated" if sub.terminated else "active"}"'
            + (f',"framedIp":"{_dotted(sub.framed_ip)}"}}' if sub.framed_ip else "}")
            for sub in row.subscribers
        )
        parts.append(f',"virtualSubscribers":[{subscribers}]')
    parts.append("}")
    return "".join(parts).encode()


_LABELS: Final = ("", *(status.label for status in Status))  # by Status value


_formatted: Final = functools.lru_cache(maxsize=1024)(format_identity)


def _dotted(address: int) -> str:
    return f"{address >> 24}.{(address >> 16) & 255}.{(address >> 8) & 255}.{address & 255}"


# --- reading the input -----------------------------------------------------------------------


_decode: Final = json.JSONDecoder().decode


def _json_items(
    path: Path, importer: _Importer, progress: Progress | None
) -> Iterator[tuple[int, object]]:
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as file:
        for line, raw in enumerate(file, 1):
            done += len(raw)
            if progress is not None and not line % _PROGRESS_EVERY:
                progress(done, total)
            try:
                text = raw.decode()
                if not text.strip():
                    continue
                item = _decode(text.removeprefix("\ufeff") if line == 1 else text)
            except UnicodeDecodeError:
                importer.error(line, None, "not UTF-8")
            except json.JSONDecodeError as error:
                importer.error(line, None, f"not JSON ({error.msg} at column {error.colno})")
            else:
                yield line, item
    if progress is not None:
        progress(total, total)


def _csv_items(
    path: Path, importer: _Importer, progress: Progress | None
) -> Iterator[tuple[int, object]]:
    total = path.stat().st_size
    with open(path, "rb") as binary, io.TextIOWrapper(binary, "utf-8-sig", newline="") as text:
        reader = csv.reader(text)
        try:
            columns = _csv_columns(importer, next(reader, []))
            for count, cells in enumerate(reader if columns is not None else (), 1):
                if progress is not None and not count % _PROGRESS_EVERY:
                    progress(binary.tell(), total)
                if any(cell.strip() for cell in cells):
                    item = _csv_item(importer, reader.line_num, columns or [], cells)
                    if item is not None:
                        yield reader.line_num, item
        except UnicodeDecodeError:
            importer.error(reader.line_num + 1, None, "not UTF-8")
        except csv.Error as error:
            importer.error(reader.line_num, None, f"not CSV ({error})")
    if progress is not None:
        progress(total, total)


def _csv_columns(importer: _Importer, header: list[str]) -> list[str] | None:
    """Return the column names of a header line, or None (errors reported) if it is not one."""
    columns = [cell.strip() for cell in header]
    problems = importer.error_count
    for number, column in enumerate(columns):
        if column not in _CSV_COLUMNS:
            importer.error(1, column, "unknown column")
        elif column in columns[:number]:
            importer.error(1, column, "repeated column")
    if not columns:
        importer.error(1, None, "no header line")
    return columns if importer.error_count == problems else None


def _csv_item(
    importer: _Importer, line: int, columns: list[str], cells: list[str]
) -> dict[str, Any] | None:
    """Return the provisioning object a CSV row spells (empty cells are absent), or None."""
    if len(cells) != len(columns):
        importer.error(line, None, f"{len(cells)} cells, the header has {len(columns)} columns")
        return None
    item: dict[str, Any] = {}
    lock: dict[str, Any] = {}
    chap: dict[str, Any] = {}
    for column, raw in zip(columns, cells, strict=True):
        cell = raw.strip()
        if not cell:
            continue
        if column in ("lockOnFirstConnect", "allowUnreported"):
            value: Any = _CSV_BOOLEANS.get(cell.lower(), cell)
            (lock if column == "allowUnreported" else item)[column] = value
        elif column == "imei":
            lock["imei"] = cell
        elif column in ("chapUsername", "chapPassword"):
            chap[column[4:].lower()] = cell
        elif column == "rendezvousPoint":
            item["vpg"] = {"rendezvousPoint": cell}
        elif column == "onImeiLockRejected":
            item[column] = [action.strip() for action in cell.split(";")]
        elif column == "virtualSubscribers":
            item[column] = [_csv_virtual(entry) for entry in cell.split(";") if entry.strip()]
        else:
            item[column] = cell
    if lock:
        item["imeiLock"] = lock["imei"] if lock.keys() == {"imei"} else lock
    if chap:
        item["chap"] = chap
    return item


_CSV_BOOLEANS: Final = {
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "1": True,
    "0": False,
}


def _csv_virtual(entry: str) -> object:
    """Return the object an ``IMSI[:status[:framedIp]]`` cell entry spells (or the text)."""
    parts = [part.strip() for part in entry.split(":")]
    if len(parts) > 3:
        return entry.strip()
    names = ("imsi", "status", "framedIp")
    return {name: part for name, part in zip(names, parts, strict=False) if part}


# --- checking values ---------------------------------------------------------------------------


class _Invalid(Exception):
    """A value is wrong; ``where`` extends the field name (".imei", "[2].status")."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


def _name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _Invalid(f"{value!r} is not a name (1-64 letters, digits, '.', '_', '-')")
    return value


def _imsi(value: object) -> int:
    if not isinstance(value, str) or len(value) != 15 or not value.isascii() or not value.isdigit():
        raise _Invalid(f"{value!r} is not an IMSI (a string of 15 digits)")
    return int(value)


def _status(value: object) -> Status:
    status = STATUS_BY_LABEL.get(value) if isinstance(value, str) else None
    if status is None:
        raise _Invalid(f"{value!r} is not one of {', '.join(STATUS_BY_LABEL)}")
    return status


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"{value!r} is not true or false")
    return value


def _coverage(value: object) -> str:
    if value not in COVERAGES:
        raise _Invalid(f"{value!r} is not one of {', '.join(COVERAGES)}")
    return str(value)


def _ipv4(value: object) -> int:
    parts = value.split(".") if isinstance(value, str) else ()
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):
        raise _Invalid(f"{value!r} is not a dotted IPv4 address")
    octets = [int(part) for part in parts]
    if max(octets) > 255 or not any(octets):
        raise _Invalid(f"{value!r} is not a usable IPv4 address")
    return int.from_bytes(bytes(octets), "big")


def _fields(value: object, allowed: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{value!r} is not {what}")
    unknown = sorted(value.keys() - allowed)
    if unknown:
        raise _Invalid("unknown field", f".{unknown[0]}")
    return value


def _lock(value: object) -> tuple[int, bool, str]:
    """Return (identity, allowUnreported, IMEI as typed) of an imeiLock value."""
    where, allow = "", None
    if isinstance(value, dict):
        lock = _fields(value, frozenset({"imei", "allowUnreported"}), "")
        where, value, allow = ".imei", lock.get("imei"), lock.get("allowUnreported")
        if value is None:
            raise _Invalid("required", where)
        if not isinstance(value, str):
            raise _Invalid(f"{value!r} is not a string", where)
        if allow is not None and not isinstance(allow, bool):
            raise _Invalid(f"{allow!r} is not true or false", ".allowUnreported")
    if not isinstance(value, str):
        raise _Invalid(f"{value!r} is not {{imei, allowUnreported}} or '<imei>[|ANONYMOUS]'")
    digits, bar, suffix = value.partition("|")
    if bar and suffix != "ANONYMOUS":
        raise _Invalid(f"{value!r}: only '|ANONYMOUS' may follow the IMEI", where)
    if bar and allow is False:
        raise _Invalid(f"{value!r} contradicts allowUnreported false", where)
    identity = lock_identity(digits)
    if identity is None:
        raise _Invalid(f"{digits!r} {_IMEI_RULE}", where)
    return identity, bool(bar) or bool(allow), digits


_Virtual = tuple[int, bool, int | None]  # IMSI, terminated, framed IP if given


def _virtuals(value: object) -> list[_Virtual]:
    """Return (IMSI, terminated, framed IP or None) per virtual subscriber."""
    if not isinstance(value, list):
        raise _Invalid(f"{value!r} is not a list")
    subscribers = []
    allowed = frozenset({"imsi", "status", "framedIp"})
    for number, entry in enumerate(value):
        where = f"[{number}]"
        try:
            fields = _fields(entry, allowed, "a virtual subscriber {imsi, status, framedIp}")
            where = f"[{number}].imsi"
            if fields.get("imsi") is None:
                raise _Invalid("required")
            imsi = _imsi(fields["imsi"])
            if imsi < _VIRTUAL_LOW:
                raise _Invalid(f"'{imsi:015d}' is not a virtual IMSI (it begins 99999)")
            where = f"[{number}].status"
            status = fields.get("status")
            terminated = False if status is None else VIRTUAL_STATUSES.get(status)
            if terminated is None:
                raise _Invalid(f"{status!r} is not active or terminated")
            where = f"[{number}].framedIp"
            framed = fields.get("framedIp")
            subscribers.append((imsi, terminated, None if framed is None else _ipv4(framed)))
        except _Invalid as error:
            raise _Invalid(str(error), where + error.where) from None
    return subscribers


def _chap(value: object) -> tuple[str, str]:
    chap = _fields(value, frozenset({"username", "password"}), "{username, password}")
    for name in ("username", "password"):
        if name not in chap:
            raise _Invalid("required", f".{name}")
        if not isinstance(chap[name], str) or not chap[name]:
            raise _Invalid(f"{chap[name]!r} is not a non-empty string", f".{name}")
    return chap["username"], chap["password"]


def _actions(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"{value!r} is not a list of {', '.join(ACTIONS)}")
    for number, action in enumerate(value):
        if action not in ACTIONS:
            raise _Invalid(f"{action!r} is not one of {', '.join(ACTIONS)}", f"[{number}]")
        if action in value[:number]:
            raise _Invalid(f"{action!r} is repeated", f"[{number}]")
    return tuple(value)


def _url(value: object) -> str:
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
        host = parts.hostname if parts is not None else None
    except ValueError:  # e.g. an unclosed "[" IPv6 literal
        parts = host = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise _Invalid(f"{value!r} is not an http(s) URL")
    return str(value)


def _rendezvous(value: object) -> str:
    vpg = _fields(value, frozenset({"rendezvousPoint"}), "{rendezvousPoint}")
    point = vpg.get("rendezvousPoint")
    if point not in RENDEZVOUS_POINTS:
        raise _Invalid(
            f"{point!r} is not one of {', '.join(RENDEZVOUS_POINTS)}", ".rendezvousPoint"
        )
    return str(point)


# --- one line at a time ------------------------------------------------------------------------


def _same(value: object) -> object:
    return value


_SIM_CHECKS: Final[Mapping[str, Callable[[object], object]]] = {
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
_GROUP_CHECKS: Final[Mapping[str, Callable[[object], object]]] = {
    "kind": _same,
    "groupId": _name,
    "chap": _chap,
    "lockOnFirstConnect": _boolean,
    "onImeiLockRejected": _actions,
    "webhookUrl": _url,
    "vpg": _rendezvous,
}
_REQUIRED: Final = {"sim": ("simId", "imsi"), "group": ("groupId",)}
_CSV_COLUMNS: Final = frozenset(
    (_SIM_CHECKS.keys() | _GROUP_CHECKS.keys()) - {"imeiLock", "chap", "vpg"}
    | {"imei", "allowUnreported", "chapUsername", "chapPassword", "rendezvousPoint"}
)


class _Importer:
    """Turns checked lines into snapshot records; remembers what later lines are checked against."""

    def __init__(self, writer: SnapshotWriter, *, csv_names: bool) -> None:
        self.writer = writer
        self.csv_names = csv_names
        self.errors: list[LineError] = []
        self.error_count = 0
        self.lines = array("I")  # input line of each SIM record
        self.group_ids: list[str] = []  # by group index
        self.group_numbers: dict[str, int] = {}
        self.groups: list[dict[str, Any] | None] = []  # group documents, None until defined
        self.group_lines: list[int] = []  # defining line, 0 until defined
        self.group_users: dict[int, list[int]] = {}  # lines naming a group not defined yet
        self.framed: dict[int, int] = {}  # framed IP -> line
        self.next_framed = POOL_FIRST

    def error(self, line: int, field: str | None, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < _MAX_KEPT:
            if self.csv_names and field is not None:
                field = _csv_name(field)
            self.errors.append(LineError(line, field, message))

    def take(self, line: int, item: object) -> None:
        if not isinstance(item, dict):
            self.error(line, None, f"not a JSON object: {item!r:.40}")
            return
        kind = item.get("kind", "sim")
        if kind == "sim":
            values = self._checked(line, item, _SIM_CHECKS, kind)
            if values is not None:
                self._sim(line, values)
        elif kind == "group":
            values = self._checked(line, item, _GROUP_CHECKS, kind)
            if values is not None:
                self._group(line, values)
        else:
            self.error(line, "kind", f"{kind!r} is not 'sim' or 'group'")

    def finish(self) -> None:
        """Report groups named but never defined, and IMSIs or simIds given twice."""
        for number, users in self.group_users.items():
            for line in users:
                message = f"group {self.group_ids[number]!r} is not defined in this file"
                self.error(line, "groupId", message)
        for duplicate in self.writer.index():
            first, second = self.lines[duplicate.first], self.lines[duplicate.second]
            record = duplicate.first if first > second else duplicate.second
            field = duplicate.field
            if field == "imsi" and int(duplicate.value) != self.writer.primary_imsi(record):
                field = "virtualSubscribers"
            other = f"line {min(first, second)}" if first != second else "this line"
            self.error(max(first, second), field, f"{duplicate.value!r} is also on {other}")

    def group_documents(self) -> list[dict[str, Any]]:
        return [document for document in self.groups if document is not None]

    def _checked(
        self,
        line: int,
        item: Mapping[str, object],
        checks: Mapping[str, Callable[[object], object]],
        kind: str,
    ) -> dict[str, Any] | None:
        """Return the line's checked values by field (null = absent), or None after errors."""
        values: dict[str, Any] = {}
        count = self.error_count
        for name, value in item.items():
            check = checks.get(name)
            if check is None:
                self.error(line, name, f"unknown field for a {kind}")
            elif value is not None:
                try:
                    values[name] = check(value)
                except _Invalid as error:
                    self.error(line, name + error.where, str(error))
        for name in _REQUIRED[kind]:
            if item.get(name) is None:
                self.error(line, name, "required")
        return values if self.error_count == count else None

    def _sim(self, line: int, values: dict[str, Any]) -> None:
        imsi: int = values["imsi"]
        status: Status = values.get("status", Status.ACTIVE)
        subscription: str = values.get("subscription", DEFAULT_SUBSCRIPTION)
        virtuals: list[_Virtual] = values.get("virtualSubscribers", [])
        problems = _virtual_problems(imsi, status, subscription, virtuals)
        for field, message in problems:
            self.error(line, field, message)
        if problems:
            return
        framed: int | None = values.get("framedIp")
        if framed is not None or imsi >= _VIRTUAL_LOW:
            framed = self._framed_ip(line, "framedIp", framed)
        subscribers = tuple(
            VirtualRow(sub, terminated, self._framed_ip(line, f"{_VS}[{n}].framedIp", ip))
            for n, (sub, terminated, ip) in enumerate(virtuals)
        )
        group_id = values.get("groupId")
        group = NO_GROUP if group_id is None else self._group_number(line, group_id)
        identity, allow_unreported, imei = values.get("imeiLock", _NO_LOCK)
        if framed == _REFUSED or any(sub.framed_ip == _REFUSED for sub in subscribers):
            return
        row = SimRow(
            values["simId"], imsi, status, group, identity, allow_unreported,
            values.get("lockOnFirstConnect", False), framed or 0, subscription,
            values.get("coverage", DEFAULT_COVERAGE), subscribers, imei,
        )  # fmt: skip
        _add(self.writer, row, self.group_ids)
        self.lines.append(line)

    def _group(self, line: int, values: dict[str, Any]) -> None:
        group_id: str = values["groupId"]
        actions: tuple[str, ...] = values.get("onImeiLockRejected", ())
        webhook: str | None = values.get("webhookUrl")
        number = self._group_number(line, group_id, defined=True)
        if "webhook" in actions and webhook is None:
            self.error(line, "webhookUrl", "required when onImeiLockRejected has 'webhook'")
        elif number != NO_GROUP:
            username, password = values.get("chap", (None, None))
            group = Group(
                group_id,
                None if username is None else username.encode(),
                None if password is None else password.encode(),
                values.get("lockOnFirstConnect", False),
                actions,
                values.get("vpg"),
            )
            self.groups[number] = group_document(group, webhook)

    def _group_number(self, line: int, group_id: str, *, defined: bool = False) -> int:
        """Return the group's index (given at first mention), noting definitions and users.

        NO_GROUP means an error was reported.
        """
        number = self.group_numbers.get(group_id)
        if number is None:
            if len(self.group_ids) >= NO_GROUP:
                self.error(line, "groupId", f"more than {NO_GROUP} groups")
                return NO_GROUP
            number = self.group_numbers[group_id] = len(self.group_ids)
            self.group_ids.append(group_id)
            self.groups.append(None)
            self.group_lines.append(0)
        if defined and self.group_lines[number]:
            message = f"{group_id!r} is also defined on line {self.group_lines[number]}"
            self.error(line, "groupId", message)
            return NO_GROUP
        if defined:
            self.group_lines[number] = line
            self.group_users.pop(number, None)
        elif not self.group_lines[number]:
            users = self.group_users.setdefault(number, [])
            if len(users) < _MAX_KEPT:
                users.append(line)
        return number

    def _framed_ip(self, line: int, name: str, address: int | None) -> int:
        """Return ``address`` (or the next free pool address), or _REFUSED after an error."""
        if address is None:
            while self.next_framed in self.framed:
                self.next_framed += 1
            if self.next_framed > POOL_LAST:
                self.error(line, name, "100.64.0.0/10 has no address left: give framedIp")
                return _REFUSED
            address = self.next_framed
            self.next_framed += 1
        elif address in self.framed:
            self.error(line, name, f"'{_dotted(address)}' is also on line {self.framed[address]}")
            return _REFUSED
        self.framed[address] = line
        return address


_VS: Final = "virtualSubscribers"
_NO_LOCK: Final = (0, False, None)
_REFUSED: Final = -1  # a framed IP that could not be given (the error is reported)


def _virtual_problems(
    imsi: int, status: Status, subscription: str, virtuals: Sequence[_Virtual]
) -> list[tuple[str, str]]:
    """Apply DESIGN §4: who may hold virtual subscribers, and a virtual SIM's statuses."""
    problems = []
    if imsi >= _VIRTUAL_LOW:
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


def _csv_name(field: str) -> str:
    """Return the CSV column a JSON field path comes from."""
    head = field.split("[", 1)[0]
    if head in ("virtualSubscribers", "onImeiLockRejected"):
        return head
    return _CSV_NAMES.get(field, field)
