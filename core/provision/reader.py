"""Reading provisioning input: JSON Lines or CSV, one provisioning object per line, streamed.

Owns: decoding both input formats into provisioning objects with their line numbers; the CSV
columns (the flat names of DESIGN §6) and how a row maps to the JSON object (csv_column() maps
a JSON field path back, for error messages); progress reporting in bytes read.

Invariants:
- Streams: one line (one CSV row) in memory at a time, whatever the file size.
- A line that cannot be decoded is reported through ``report(line, field, message)`` and skipped;
  blank lines are skipped silently. Line numbers are the file's, from 1 (a CSV row spanning
  lines carries its last line's number, as the csv module counts).
- A CSV row becomes exactly the JSON object the same line would be in JSON Lines, so the
  importer checks both alike: empty cells are absent fields.
- ``progress(done, total)`` is called every _PROGRESS_EVERY lines and once at the end with
  done == total.

Must not: check field values (core.provision.fields does) or keep state across lines beyond the
CSV header; import asyncio, the RADIUS codec, the service layer, logging or metrics.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from core.provision.fields import GROUP_CHECKS, SIM_CHECKS

Progress = Callable[[int, int], None]
#: Where decoding errors go: (line, field or None, message).
Report = Callable[[int, str | None, str], None]

#: The column names a CSV header may use: the JSON fields, objects spelled flat.
CSV_COLUMNS: Final = frozenset(
    (SIM_CHECKS.keys() | GROUP_CHECKS.keys()) - {"imeiLock", "chap", "vpg"}
    | {"imei", "allowUnreported", "chapUsername", "chapPassword", "rendezvousPoint"}
)
_PROGRESS_EVERY: Final = 1 << 16
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


_decode: Final = json.JSONDecoder().decode


def read_json_lines(
    path: Path, report: Report, progress: Progress | None
) -> Iterator[tuple[int, object]]:
    """Yield (line number, decoded JSON value) per non-blank line; report lines that are not."""
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
                report(line, None, "not UTF-8")
            except json.JSONDecodeError as error:
                report(line, None, f"not JSON ({error.msg} at column {error.colno})")
            else:
                yield line, item
    if progress is not None:
        progress(total, total)


def read_csv(path: Path, report: Report, progress: Progress | None) -> Iterator[tuple[int, object]]:
    """Yield (line number, provisioning object) per non-blank CSV row; report rows that are not.

    Nothing is yielded when the header line is not one (its errors are reported).
    """
    total = path.stat().st_size
    with open(path, "rb") as binary, io.TextIOWrapper(binary, "utf-8-sig", newline="") as text:
        reader = csv.reader(text)
        try:
            columns = _csv_columns(report, next(reader, []))
            for count, cells in enumerate(reader if columns is not None else (), 1):
                if progress is not None and not count % _PROGRESS_EVERY:
                    progress(binary.tell(), total)
                if any(cell.strip() for cell in cells):
                    item = _csv_item(report, reader.line_num, columns or [], cells)
                    if item is not None:
                        yield reader.line_num, item
        except UnicodeDecodeError:
            report(reader.line_num + 1, None, "not UTF-8")
        except csv.Error as error:
            report(reader.line_num, None, f"not CSV ({error})")
    if progress is not None:
        progress(total, total)


def _csv_columns(report: Report, header: list[str]) -> list[str] | None:
    """Return the column names of a header line, or None (errors reported) if it is not one."""
    columns = [cell.strip() for cell in header]
    valid = bool(columns)
    for number, column in enumerate(columns):
        if column not in CSV_COLUMNS:
            report(1, column, "unknown column")
            valid = False
        elif column in columns[:number]:
            report(1, column, "repeated column")
            valid = False
    if not columns:
        report(1, None, "no header line")
    return columns if valid else None


def _csv_item(
    report: Report, line: int, columns: list[str], cells: list[str]
) -> dict[str, Any] | None:
    """Return the provisioning object a CSV row spells (empty cells are absent), or None."""
    if len(cells) != len(columns):
        report(line, None, f"{len(cells)} cells, the header has {len(columns)} columns")
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


def csv_column(field: str) -> str:
    """Return the CSV column a JSON field path comes from."""
    head = field.split("[", 1)[0]
    if head in ("virtualSubscribers", "onImeiLockRejected"):
        return head
    return _CSV_NAMES.get(field, field)
