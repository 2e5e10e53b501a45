"""The CLI's admin commands: ``sims``, ``lock``, ``groups``, ``events``, ``snapshot``.

Owns: turning command lines into admin API calls and answers into human tables (default) or
JSON (``--json``). Exit codes: 0 done, 1 the API refused (4xx), 3 the server could not be
reached (or 5xx), 4 no such SIM or group.

Must not: import the web framework or any server module (it only talks HTTP, so it works against
a remote simgate too).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from core.admin.client import AdminClient, ApiError

#: SIM ids per POST /v1/sims/set_imei_lock (the API's limit, core.service.control.MAX_PAGE)
BATCH_PAGE: Final = 1000

STATUS_ACTIONS = {
    "activate": "activate",
    "deactivate": "deactivate",
    "standby": "set_to_standby",
    "suspend": "suspend",
    "terminate": "terminate",
}


def add_commands(commands: Any, config_default: str) -> None:
    """Register the admin subcommands on the top-level subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", help="admin API base URL (default: from --config [http])")
    common.add_argument("--token", help="bearer token (default: $SIMGATE_TOKEN or the config's)")
    common.add_argument("--config", default=config_default, help="TOML file (%(default)s)")
    common.add_argument("--json", action="store_true", help="print the API's JSON")

    sims = commands.add_parser("sims", help="list, show, create SIMs and change their status")
    sims_commands = sims.add_subparsers(dest="action", required=True)
    listing = sims_commands.add_parser("list", parents=[common], help="list SIMs")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--offset", type=int, default=0)
    listing.set_defaults(run=_sims_list)
    show = sims_commands.add_parser("get", parents=[common], help="show one SIM")
    show.add_argument("sim_id")
    show.set_defaults(run=_sims_get)
    create = sims_commands.add_parser("create", parents=[common], help="provision one SIM")
    create.add_argument("document", help="a provisioning JSON object, or @FILE")
    create.set_defaults(run=_sims_create)
    for action in STATUS_ACTIONS:
        change = sims_commands.add_parser(action, parents=[common], help=f"{action} a SIM")
        change.add_argument("sim_id")
        change.set_defaults(run=_sims_status, status_action=STATUS_ACTIONS[action])

    lock = commands.add_parser("lock", help="set or unset IMEI locks")
    lock_commands = lock.add_subparsers(dest="action", required=True)
    set_lock = lock_commands.add_parser("set", parents=[common], help="lock a SIM to an IMEI")
    set_lock.add_argument("sim_id")
    set_lock.add_argument("imei", nargs="?", help="omit: the IMEI of the SIM's online session")
    set_lock.add_argument(
        "--allow-unreported",
        action="store_true",
        help="admit sessions whose carrier reports no IMEI",
    )
    set_lock.set_defaults(run=_lock_set)
    unset = lock_commands.add_parser("unset", parents=[common], help="remove a SIM's lock")
    unset.add_argument("sim_id")
    unset.set_defaults(run=_lock_unset)
    batch = lock_commands.add_parser(
        "batch", parents=[common], help="lock SIMs, each to its own online session's IMEI"
    )
    batch.add_argument("sim_ids", nargs="*", help="SIM ids (and/or --file)")
    batch.add_argument(
        "--file", help="read SIM ids from FILE, one per line ('-': stdin; lines from # skipped)"
    )
    batch.add_argument("--allow-unreported", action="store_true")
    batch.set_defaults(run=_lock_batch)

    groups = commands.add_parser("groups", help="show or replace SIM groups")
    groups_commands = groups.add_subparsers(dest="action", required=True)
    group_get = groups_commands.add_parser("get", parents=[common], help="show a group")
    group_get.add_argument("group_id")
    group_get.set_defaults(run=_groups_get)
    group_put = groups_commands.add_parser("put", parents=[common], help="create/replace")
    group_put.add_argument("group_id")
    group_put.add_argument("document", help="the group as JSON (provisioning fields), or @FILE")
    group_put.set_defaults(run=_groups_put)

    events = commands.add_parser("events", parents=[common], help="a SIM's events, newest first")
    events.add_argument("sim_id")
    events.add_argument("--limit", type=int, default=50)
    events.set_defaults(run=_events)

    snapshot = commands.add_parser("snapshot", help="compact or download the snapshot")
    snapshot_commands = snapshot.add_subparsers(dest="action", required=True)
    compact = snapshot_commands.add_parser("compact", parents=[common], help="compact now")
    compact.set_defaults(run=_snapshot_compact)
    download = snapshot_commands.add_parser("download", parents=[common], help="save a copy")
    download.add_argument("output", type=Path)
    download.set_defaults(run=_snapshot_download)


def _client(args: argparse.Namespace) -> AdminClient:
    url, token = args.api, args.token or os.environ.get("SIMGATE_TOKEN")
    if url is None or token is None:
        from core import config

        try:
            settings = config.load(args.config)
        except config.ConfigError as error:
            raise ApiError(f"config: {error}", 2) from None
        url = url or f"http://{settings.http.listen}:{settings.http.port}"
        token = token if token is not None else settings.http.token
    return AdminClient(url, token)


def run(handler: Any, args: argparse.Namespace) -> int:
    """Run one admin command; print API errors on stderr and return the exit code."""
    try:
        result: int = handler(args, _client(args))
    except ApiError as error:
        print(f"simgate: {error}", file=sys.stderr)
        return error.exit_code
    return result


def _segment(name: str) -> str:
    """A SIM or group id as one path segment: "a#b" must not become the SIM "a"."""
    return quote(name, safe="")


def _document(text: str) -> Any:
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
    except OSError as error:  # a missing or unreadable @FILE is a usage error, not a refusal
        raise ApiError(f"{text[1:]}: {error.strerror or error}", 2) from None
    try:
        return json.loads(raw)
    except ValueError as error:
        raise ApiError(f"not JSON: {error}", 2) from None


def _print(
    args: argparse.Namespace, body: Any, table: Sequence[tuple[str, ...]] | None = None
) -> int:
    if args.json or table is None:
        print(json.dumps(body, indent=2, sort_keys=True))
        return 0
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    for warning in body.get("warnings", []) if isinstance(body, dict) else []:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _sim_rows(sims: list[dict[str, Any]]) -> Sequence[tuple[str, ...]]:
    rows = [("SIM ID", "IMSI", "STATUS", "GROUP", "IMEI LOCK", "SESSION")]
    for sim in sims:
        lock = sim.get("imeiLock") or {}
        lock_text = ""
        if lock:
            lock_text = lock["imei"] + (
                " (allow unreported)" if lock.get("allowUnreported") else ""
            )
        session = sim.get("sessionStatus") or {}
        rows.append(
            (
                sim["simId"],
                sim["imsi"],
                sim["status"],
                sim.get("groupId") or "",
                lock_text,
                "online" if session.get("online") else "offline",
            )
        )
    return rows


def _sims_list(args: argparse.Namespace, api: AdminClient) -> int:
    body = api.get(f"/v1/sims?limit={args.limit}&offset={args.offset}").body
    return _print(args, body, _sim_rows(body["sims"]))


def _sims_get(args: argparse.Namespace, api: AdminClient) -> int:
    body = api.get(f"/v1/sims/{_segment(args.sim_id)}").body
    return _print(args, body, _sim_rows([body]))


def _sims_create(args: argparse.Namespace, api: AdminClient) -> int:
    body = api.post("/v1/sims", _document(args.document)).body
    return _print(args, body, _sim_rows([body]))


def _sims_status(args: argparse.Namespace, api: AdminClient) -> int:
    body = api.post(f"/v1/sims/{_segment(args.sim_id)}/{args.status_action}").body
    return _print(args, body, _sim_rows([body]))


def _lock_set(args: argparse.Namespace, api: AdminClient) -> int:
    # without --allow-unreported, say nothing: "<imei>|ANONYMOUS" alone must mean true
    request: dict[str, Any] = {"allowUnreported": True} if args.allow_unreported else {}
    if args.imei is not None:
        request["imei"] = args.imei
    body = api.post(f"/v1/sims/{_segment(args.sim_id)}/set_imei_lock", request).body
    return _print(args, body, _sim_rows([body]))


def _lock_unset(args: argparse.Namespace, api: AdminClient) -> int:
    body = api.post(f"/v1/sims/{_segment(args.sim_id)}/unset_imei_lock").body
    return _print(args, body, _sim_rows([body]))


def _lock_batch(args: argparse.Namespace, api: AdminClient) -> int:
    """Lock the SIMs BATCH_PAGE at a time (the API takes at most that many per call)."""
    sim_ids = [*args.sim_ids, *([] if args.file is None else _sim_ids_in(args.file))]
    if not sim_ids:
        raise ApiError("lock batch: no SIM ids given (as arguments or with --file)", 2)
    results: list[dict[str, Any]] = []
    for start in range(0, len(sim_ids), BATCH_PAGE):
        request = {
            "simIds": sim_ids[start : start + BATCH_PAGE],
            "allowUnreported": args.allow_unreported,
        }
        try:
            results += api.post("/v1/sims/set_imei_lock", request).body["results"]
        except ApiError as error:  # the pages before were written: say so, then fail
            if results:
                _print_batch(args, results)
            error.args = (f"{error} (after {start} of {len(sim_ids)} SIMs)",)
            raise
    return _print_batch(args, results)


def _print_batch(args: argparse.Namespace, results: list[dict[str, Any]]) -> int:
    failed = sum(1 for item in results if not item.get("ok"))
    rows = [("SIM ID", "RESULT", "IMEI LOCK / ERROR")]
    for item in results:
        detail = item["imeiLock"]["imei"] if item.get("ok") else item.get("error", "")
        rows.append((item["simId"], "locked" if item.get("ok") else "refused", detail))
    _print(args, {"results": results, "failed": failed}, rows)
    return 0 if failed == 0 else 1


def _sim_ids_in(name: str) -> list[str]:
    """SIM ids one per line, spaces trimmed; blank lines and lines starting with ``#`` skipped
    (a ``#`` inside a line is part of the id: simIds may hold one)."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as error:
        raise ApiError(f"{name}: {error.strerror or error}", 2) from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _groups_get(args: argparse.Namespace, api: AdminClient) -> int:
    return _print(args, api.get(f"/v1/groups/{_segment(args.group_id)}").body)


def _groups_put(args: argparse.Namespace, api: AdminClient) -> int:
    return _print(
        args, api.put(f"/v1/groups/{_segment(args.group_id)}", _document(args.document)).body
    )


def _events(args: argparse.Namespace, api: AdminClient) -> int:
    body = api.get(f"/v1/sims/{_segment(args.sim_id)}/events?limit={args.limit}").body
    rows = [("TIME", "EVENT", "DETAIL")]
    for event in body["events"]:
        detail = {k: v for k, v in event.items() if k not in ("time", "event", "simId")}
        rows.append((_when(event.get("time")), event["event"], json.dumps(detail, sort_keys=True)))
    return _print(args, body, rows)


def _when(seconds: object) -> str:
    """Unix seconds as an ISO 8601 UTC time, for the human table."""
    if not isinstance(seconds, int | float):
        return str(seconds)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: the answer comes when the compaction is done: paced (store.compaction_rate_mb), a 10M-SIM
#: snapshot takes ~2 min at the default rate, longer at a lower one
COMPACT_TIMEOUT: Final = 3600.0


def _snapshot_compact(args: argparse.Namespace, api: AdminClient) -> int:
    body = api.post("/v1/snapshot/compact", timeout=COMPACT_TIMEOUT).body
    return _print(args, body, [("SEQUENCE", "SNAPSHOT"), (str(body["seq"]), body["path"])])


def _snapshot_download(args: argparse.Namespace, api: AdminClient) -> int:
    answer = api.get("/v1/snapshot")
    args.output.write_bytes(answer.raw)
    print(f"wrote {len(answer.raw)} octets to {args.output}")
    return 0
