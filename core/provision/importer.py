"""Provisioning import: a JSON Lines or CSV file in, one snapshot file out (DESIGN §6).

Owns: import_file(); the line-by-line state that checks lines against each other (groups named
before or without their definition, repeated IMSIs, simIds and framed IPs); the framed IPs given
to virtual subscribers; the errors that name the line and the field (LineError, ProvisionError).

Invariants:
- Nothing is written unless every line is valid. Every error is counted; the first MAX_SHOWN in
  line order are shown; the snapshot's temporary file is removed.
- The input is streamed one line at a time. Per SIM, only the snapshot writer's packed arrays and
  a 4-byte line number stay in memory (no dict per SIM); framed IPs are remembered to refuse
  repeats.
- A virtual subscriber (or a standalone virtual SIM) without framedIp gets the next address of
  100.64.0.0/10 not yet used, from 100.64.0.1 in file order (addresses given on later lines are
  not foreseen: a repeat there is reported).
- Errors name JSON paths ("imeiLock.imei", "virtualSubscribers[1].imsi"); in CSV, column names.

Must not: decode input (core.provision.reader does) or judge a single value (core.provision.fields
does); import asyncio, the RADIUS codec, the service layer, logging or metrics.
"""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

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
from core.provision.reader import Progress, csv_column, read_csv, read_json_lines
from core.provision.rows import SimRow, VirtualRow, add_row, dotted
from core.store.format import group_document
from core.store.records import NO_GROUP, Group, Status
from core.store.snapshot_writer import SnapshotWriter

MAX_SHOWN: Final = 50
#: Addresses for virtual subscribers without framedIp: 100.64.0.0/10 (RFC 6598), ends excluded.
POOL_FIRST: Final = (100 << 24) | (64 << 16) | 1
POOL_LAST: Final = (100 << 24) | (127 << 16) | 0xFFFE

_MAX_KEPT: Final = 1000


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
        reader = read_csv if importer.csv_names else read_json_lines
        for line, item in reader(path, importer.error, progress):
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
                field = csv_column(field)
            self.errors.append(LineError(line, field, message))

    def take(self, line: int, item: object) -> None:
        if not isinstance(item, dict):
            self.error(line, None, f"not a JSON object: {item!r:.40}")
            return
        kind = item.get("kind", "sim")
        if kind == "sim":
            values = self._checked(line, item, SIM_CHECKS, kind)
            if values is not None:
                self._sim(line, values)
        elif kind == "group":
            values = self._checked(line, item, GROUP_CHECKS, kind)
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
                except InvalidValue as error:
                    self.error(line, name + error.where, str(error))
        for name in REQUIRED[kind]:
            if item.get(name) is None:
                self.error(line, name, "required")
        return values if self.error_count == count else None

    def _sim(self, line: int, values: dict[str, Any]) -> None:
        imsi: int = values["imsi"]
        status: Status = values.get("status", Status.ACTIVE)
        subscription: str = values.get("subscription", DEFAULT_SUBSCRIPTION)
        virtuals: list[Virtual] = values.get("virtualSubscribers", [])
        problems = virtual_problems(imsi, status, subscription, virtuals)
        for field, message in problems:
            self.error(line, field, message)
        if problems:
            return
        framed: int | None = values.get("framedIp")
        if framed is not None or imsi >= FIRST_VIRTUAL_IMSI:
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
        add_row(self.writer, row, self.group_ids)
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
            self.error(line, name, f"'{dotted(address)}' is also on line {self.framed[address]}")
            return _REFUSED
        self.framed[address] = line
        return address


_VS: Final = "virtualSubscribers"
_NO_LOCK: Final = (0, False, None)
_REFUSED: Final = -1  # a framed IP that could not be given (the error is reported)
