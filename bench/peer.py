"""simgate side by side with FreeRADIUS 3.2: the same IMEI-lock policy on the same data.

Generates, in a temporary directory, a minimal FreeRADIUS configuration (templates in
``bench/freeradius/``): loopback only, one client with the bench secret, no per-request logging,
``reject_delay = 0``, and simgate's admission decision (DESIGN §2) written in unlang over an
rlm_passwd table keyed by 3GPP-IMSI, generated from the same scenario population as simgate's
snapshot. Then:

1. checks that FreeRADIUS gives the same verdicts: edge cases (TBCD, 14/15/16 digits, zeros,
   garbage, CHAP, virtual subscribers) sent to simgate and to FreeRADIUS must get the same code
   and Reply-Message, the mix's cases the scenario's; then a short load.py run over the whole mix
   on each server, whose verification fails the run on a wrong verdict;
2. measures simgate, FreeRADIUS threaded (default) and FreeRADIUS single-threaded (``-s``)
   alternately, round after round, with load.py's closed loop at the same window, each server
   pinned to CPU 0 and the client to CPU 1;
3. reports per round requests/s, p50/p99 and the ratio simgate / the faster FreeRADIUS mode of
   that round, and the median ratio; writes ``bench/results/peer-<size>-<time>.json`` and the
   plots (bench/plots.py).

With ``--rate R`` the rounds run load.py's open loop at R requests/s instead (latency from the
intended send, every server at the same offered load) and the summary compares the servers'
p99s, round by round and their medians: the latency side by side, at a rate both can carry.

    .venv/bin/python bench/peer.py [--size 1m] [--rounds 3] [--seconds 8] [--window 64]
    .venv/bin/python bench/peer.py --rate 18000       # p99 side by side at 18,000/s
    .venv/bin/python bench/peer.py --check-only       # the verdict checks, no measurement
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import load
from bench.load import (
    Plan,
    ServerUnderTest,
    describe,
    machine_pauses,
    prepare,
    run_plan,
    settle,
)
from bench.micro import environment
from bench.scenarios import (
    CHAP_GROUP,
    IMSI_BASE,
    LOCK_BASE,
    MIX,
    SECRET,
    SIZES,
    VIRTUAL_BASE,
    data_dir,
    request_for,
    rows,
)
from core.probe import Request, Result, build_access_request, send
from core.radius import dictionary
from core.radius.auth import Secret
from core.store.records import NO_GROUP, Status

TEMPLATES: Final = Path(__file__).resolve().parent / "freeradius"
RESULTS: Final = load.RESULTS
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
FREERADIUS_DICTIONARY_DIR: Final = Path("/usr/share/freeradius")
#: the two FreeRADIUS modes: threaded (its default) and single server (-s, the same as -ft)
MODES: Final = {"freeradius-threaded": ["-f"], "freeradius-single": ["-s"]}
SERVERS: Final = ("simgate", *MODES)
READY_LINE: Final = "Ready to process requests"
_ADMITTED: Final = {Status.ACTIVE, Status.READY, Status.STANDBY}
_FRAMED_IP: Final = 8
_MESSAGE_AUTHENTICATOR: Final = 80
#: latency quantiles kept per point (for the CDF plot): every 1%, every 0.1% above 99%, p99.99
QUANTILES: Final = (
    [q / 100 for q in range(100)] + [0.99 + q / 1000 for q in range(1, 10)] + [0.9999, 1.0]
)


# --------------------------------------------------------------------------------------------
# FreeRADIUS: the binary, its dictionary, its configuration


def find_freeradius() -> str | None:
    for name in ("freeradius", "radiusd"):
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found:
            return found
    return None


def freeradius_version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"Version (\d+\.\d+\.\d+)", out)
    return found.group(1) if found else "unknown"


def supports_option(binary: str, option: str) -> bool:
    """Whether the server binary knows a configuration item (its name is among its strings)."""
    return option.encode() in Path(binary).resolve().read_bytes()


def dictionary_additions(directory: Path = FREERADIUS_DICTIONARY_DIR) -> tuple[str, list[str]]:
    """What the local dictionary must add for 3GPP-IMSI (10415/1) and 3GPP-IMEISV (10415/20).

    Debian's package ships ``dictionary.3gpp`` with both (as ``string``), included by the main
    dictionary; then nothing is added. Returns (a note for the output, lines to add).
    """
    main, threegpp = directory / "dictionary", directory / "dictionary.3gpp"
    wanted = {"3GPP-IMSI": "1", "3GPP-IMEISV": "20"}
    found: dict[str, str] = {}
    if main.is_file() and threegpp.is_file() and "dictionary.3gpp" in main.read_text():
        vendor = None
        for line in threegpp.read_text(errors="replace").splitlines():
            words = line.split()
            if words[:1] == ["VENDOR"] and words[1:3] != ["3GPP", "10415"]:
                continue
            if words[:1] == ["BEGIN-VENDOR"]:
                vendor = words[1]
            elif (
                words[:1] == ["ATTRIBUTE"]
                and vendor == "3GPP"
                and len(words) >= 4
                and wanted.get(words[1]) == words[2]
                and words[3] == "string"
            ):
                found[words[1]] = words[2]
    if found == wanted:
        return f"{threegpp} defines 3GPP-IMSI (10415/1) and 3GPP-IMEISV (10415/20)", []
    return "the distribution's dictionary lacks them: defined in the local dictionary", [
        "VENDOR\t3GPP\t10415",
        "BEGIN-VENDOR\t3GPP",
        "ATTRIBUTE\t3GPP-IMSI\t1\tstring",
        "ATTRIBUTE\t3GPP-IMEISV\t20\tstring",
        "END-VENDOR\t3GPP",
    ]


def subscriber_lines(count: int) -> tuple[list[str], int]:
    """The rlm_passwd table for the first ``count`` SIMs of the scenario, and its line count.

    One line per IMSI: every SIM's primary IMSI, and every virtual subscriber's IMSI with its
    SIM's lock, flags and group (what simgate resolves through the SIM) plus its own framed
    address and the SIM's primary IMSI. Fields as in radiusd.conf.in's ``format``.
    """
    groups = (CHAP_GROUP,)
    lines = []
    for row in rows(count):
        lock = f"{row.lock:014d}" if row.lock else ""
        allow = "1" if row.lock and row.allow_unreported else ""
        user = password = ""
        if row.group != NO_GROUP and groups[row.group].chap_username is not None:
            group = groups[row.group]
            assert group.chap_username is not None
            assert group.chap_password is not None
            user, password = group.chap_username.decode(), group.chap_password.decode()
        refusal = "" if row.status in _ADMITTED else "sim-not-active"
        common = f"{lock}:{allow}:{user}:{password}"
        lines.append(f"{row.imsi}:{common}:::{refusal}:{_dotted(row.framed_ip)}")
        for virtual in row.subscribers:
            own = "subscriber-terminated" if virtual.terminated else refusal
            lines.append(f"{virtual.imsi}:{common}:{row.imsi}:1:{own}:{_dotted(virtual.framed_ip)}")
    return lines, len(lines)


def _dotted(address: int) -> str:
    if not address:
        return ""
    return socket.inet_ntoa(address.to_bytes(4, "big"))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(
    raddb: Path, port: int, table: Path, table_lines: int, binary: str, extra_dictionary: list[str]
) -> None:
    """A complete raddb in ``raddb``: radiusd.conf, the policy, the dictionary, the table."""
    for sub in ("run", "acct", "mods-config"):
        (raddb / sub).mkdir(parents=True, exist_ok=True)
    require_ma = "yes" if supports_option(binary, "require_message_authenticator") else None
    text = (TEMPLATES / "radiusd.conf.in").read_text()
    if require_ma is None:  # a version without the option: drop the line
        text = "\n".join(line for line in text.splitlines() if "@REQUIRE_MA@" not in line)
    substitutions = {
        "@RADDB@": str(raddb),
        "@PORT@": str(port),
        "@SECRET@": SECRET,
        "@REQUIRE_MA@": require_ma or "",
        "@MAX_REQUESTS@": str(1 << 20),
        "@HASH_SIZE@": str(max(1024, table_lines)),
    }
    for key, value in substitutions.items():
        text = text.replace(key, value)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    leftover = re.findall(r"@[A-Z_]+@", body)
    if leftover:
        raise SystemExit(f"radiusd.conf.in: unknown placeholders {leftover}")
    (raddb / "radiusd.conf").write_text(text)
    shutil.copyfile(TEMPLATES / "imei-lock.unlang", raddb / "imei-lock.unlang")
    (raddb / "dictionary").write_text(
        "# local additions to the distribution's dictionary (bench/peer.py)\n"
        + "".join(line + "\n" for line in extra_dictionary)
    )
    target = raddb / "sims.passwd"
    try:
        os.link(table, target)
    except OSError:
        shutil.copyfile(table, target)


def start_freeradius(
    binary: str, raddb: Path, port: int, mode: str, cpu: int | None, limit: float = 300.0
) -> tuple[ServerUnderTest, float]:
    """Start FreeRADIUS in the foreground in ``mode``; wait for it to be ready.

    Returns the server (stopped with SIGTERM by ``stop()``, like simgate) and its start-up time
    (reading the configuration and loading the table).
    """
    command = [binary, *MODES[mode], "-d", str(raddb)]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    log_path = raddb / "server.log"
    started = time.perf_counter()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = ServerUnderTest(("127.0.0.1", port), process, None, raddb, cpu)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"FreeRADIUS ({mode}) exited with {process.returncode}:\n{server.log()}"
            )
        if READY_LINE in log_path.read_text(errors="replace"):
            return server, time.perf_counter() - started
        time.sleep(0.05)
    server.stop()
    raise SystemExit(f"FreeRADIUS ({mode}) was not ready within {limit:.0f} s:\n{server.log()}")


# --------------------------------------------------------------------------------------------
# Verdict checks


def edge_cases(count: int) -> list[tuple[str, Request]]:
    """Requests beyond the mix: every cell of the lock table and every IMEI form.

    Their verdicts are not written here: simgate's answer is the reference, FreeRADIUS must give
    the same (code, Reply-Message, Framed-IP-Address).
    """
    strict, allow, nolock, chap, virtual = 0, 8, 12, 18, 19
    assert count > 20

    def imsi(i: int) -> str:
        return str(IMSI_BASE + i)

    def lock(i: int, tail: str = "") -> str:
        return f"{LOCK_BASE + i:014d}{tail}"

    cases = [
        ("strict same, 14 digits", Request(imsi(strict), lock(strict))),
        ("strict same, 15 digits", Request(imsi(strict), lock(strict, "0"))),
        ("strict same, 16 digits", Request(imsi(strict), lock(strict, "42"))),
        ("strict same, TBCD 16", Request(imsi(strict), lock(strict, "42"), tbcd=True)),
        ("strict same, TBCD 15 (filler)", Request(imsi(strict), lock(strict, "7"), tbcd=True)),
        ("strict same, TBCD 7 octets", Request(imsi(strict), lock(strict), tbcd=True)),
        ("strict other, TBCD", Request(imsi(strict), lock(strict + 1, "01"), tbcd=True)),
        ("strict other, 16 digits", Request(imsi(strict), lock(strict + 1, "01"))),
        ("strict zeros, ASCII 15", Request(imsi(strict), "0" * 15)),
        ("strict zeros, ASCII 16", Request(imsi(strict), "0" * 16)),
        ("strict zeros, TBCD", Request(imsi(strict), "0" * 16, tbcd=True)),
        ("strict absent", Request(imsi(strict))),
        ("strict garbage, 5 digits", Request(imsi(strict), "12345")),
        ("strict garbage, 17 digits", Request(imsi(strict), lock(strict, "123"))),
        ("strict garbage, letters", Request(imsi(strict), lock(strict, "ab"))),
        ("strict TBCD non-digit", Request(imsi(strict), "3500000000000A01", tbcd=True)),
        ("strict TBCD digit after filler", Request(imsi(strict), lock(strict, "F1"), tbcd=True)),
        ("allow same", Request(imsi(allow), lock(allow, "01"))),
        ("allow other", Request(imsi(allow), lock(allow + 2, "0"))),
        ("allow absent", Request(imsi(allow))),
        ("allow zeros", Request(imsi(allow), "0" * 15)),
        ("allow zeros TBCD", Request(imsi(allow), "0" * 16, tbcd=True)),
        ("allow garbage", Request(imsi(allow), "99")),
        ("no lock, garbage", Request(imsi(nolock), "xyz")),
        ("no lock, TBCD", Request(imsi(nolock), "1234567890123456", tbcd=True)),
        ("no lock, absent", Request(imsi(nolock))),
        ("chap right", Request(imsi(chap), user_name="dev", chap_password="s3cret")),
        ("chap wrong password", Request(imsi(chap), user_name="dev", chap_password="nope")),
        ("chap wrong user", Request(imsi(chap), user_name="eve", chap_password="s3cret")),
        ("chap no user", Request(imsi(chap), chap_password="s3cret")),
        ("chap nothing", Request(imsi(chap))),
        ("chap on a non-CHAP SIM", Request(imsi(nolock), user_name="x", chap_password="y")),
        ("virtual, absent", Request(str(VIRTUAL_BASE + virtual))),
        ("virtual, other IMEI", Request(str(VIRTUAL_BASE + virtual), lock(3, "01"))),
        ("virtual's SIM, same", Request(imsi(virtual), lock(virtual, "01"))),
        ("virtual's SIM, other", Request(imsi(virtual), lock(virtual + 1, "01"))),
        ("virtual's SIM, absent", Request(imsi(virtual))),
        ("unknown IMSI", Request(str(IMSI_BASE + count))),
        ("unknown virtual IMSI", Request(str(VIRTUAL_BASE + 1))),
        ("IMSI of 14 digits", Request(str(IMSI_BASE)[:14])),
        ("IMSI with a letter", Request(str(IMSI_BASE)[:14] + "x")),
        ("no IMSI", Request(None, lock(strict))),
        ("last SIM of the set", Request(imsi(count - 1), lock(count - 1, "01"))),
    ]
    return cases


def _summary(result: Result) -> tuple[str, str | None, str | None]:
    framed = next((value for kind, value in result.attributes if kind == _FRAMED_IP), None)
    return (
        result.verdict,
        result.reason,
        None if framed is None else socket.inet_ntoa(framed),
    )


def check_verdicts(
    servers: dict[str, ServerUnderTest], count: int, per_case: int = 20, seed: int = 7
) -> tuple[list[str], dict[str, bool]]:
    """Send the same requests to every server; return the disagreements (empty: all agree).

    The mix's cases (``per_case`` random SIMs each) must also get the scenario's verdict.
    Also returns, per server, whether its replies carry a Message-Authenticator.
    """
    handles = dictionary.load().handles
    secret = Secret(SECRET.encode())
    rng = random.Random(seed)
    work: list[tuple[str, Request, tuple[str, str | None] | None]] = [
        (name, request, None) for name, request in edge_cases(count)
    ]
    for case in MIX:
        for _ in range(per_case):
            expected = ("accept" if case.accept else "reject", case.reason)
            work.append((f"mix {case.name}", request_for(case, count, rng), expected))
    problems = []
    signed = dict.fromkeys(servers, True)
    for name, request, expected in work:
        answers = {}
        for server_name, server in servers.items():
            packet = build_access_request(
                request, rng.randrange(256), os.urandom(16), secret, handles
            )
            result = send(packet, server.address, secret, timeout=2.0)
            answers[server_name] = _summary(result)
            signed[server_name] &= any(
                kind == _MESSAGE_AUTHENTICATOR for kind, _ in result.attributes
            )
        reference = answers["simgate"]
        if expected is not None and reference[:2] != expected:
            problems.append(f"{name}: simgate {reference}, scenario expects {expected}")
        for server_name, answer in answers.items():
            if answer != reference:
                problems.append(f"{name} {request}: {server_name} {answer}, simgate {reference}")
    print(
        f"verdict check: {len(work)} requests ({len(work) - len(MIX) * per_case} edge cases, "
        f"{per_case} of each of the {len(MIX)} mix cases) to {', '.join(servers)}: "
        + ("all agree" if not problems else f"{len(problems)} DISAGREEMENTS")
    )
    return problems, signed


# --------------------------------------------------------------------------------------------
# Measuring


_POOLS: dict[int, Any] = {}  # load.SocketPool per server, when load.py has them


def run_point(plan: Plan, server: ServerUnderTest, client_cpu: int | None) -> dict[str, Any]:
    """load.run_plan, with the server's socket pool when load.py's run_plan takes one.

    (load.py keeps a point's client sockets open for the reply-cache lifetime after it, so
    that no new socket reuses their ports; one pool per server.)
    """
    if "pool" not in inspect.signature(run_plan).parameters:
        return run_plan(plan, server, client_cpu)  # type: ignore[call-arg]
    pool = _POOLS.get(id(server))
    if pool is None:
        pool = _POOLS[id(server)] = load.SocketPool(server.address)
    return run_plan(plan, server, client_cpu, pool)


def close_pools() -> None:
    for pool in _POOLS.values():
        pool.close()
    _POOLS.clear()


class LatencyTap:
    """Keeps the latencies of the last run_plan (load.py reports percentiles only).

    A thin adapter: wraps load.py's private ``_merge`` (which merges the worker processes'
    outcomes) to see the merged latency array. If load.py changes and the hook is gone, the
    CDF plot falls back to the percentiles.
    """

    def __init__(self) -> None:
        self.latest: array[float] | None = None
        original: Callable[..., Any] | None = getattr(load, "_merge", None)
        self.active = original is not None
        if original is None:
            return

        def merge(outcomes: Any) -> Any:
            merged = original(outcomes)
            self.latest = getattr(merged, "latencies", None)
            return merged

        load._merge = merge

    def quantiles(self) -> list[float] | None:
        """Latency quantiles (µs) at QUANTILES of the last point, then forget it."""
        latencies, self.latest = self.latest, None
        if not latencies:
            return None
        ordered = sorted(latencies)
        last = len(ordered) - 1
        return [round(ordered[min(last, round(q * last))] * 1e6, 1) for q in QUANTILES]


def measure(
    name: str,
    plan: Plan,
    server: ServerUnderTest,
    client_cpu: int | None,
    everyone: set[int],
    tap: LatencyTap,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One point; while other processes disturbed it, again (up to --retries times).

    When every attempt was disturbed, the least disturbed one is kept, marked ``disturbed``.
    """
    attempts: list[dict[str, Any]] = []
    while True:
        if args.settle > 0:
            busy = settle(everyone, args.settle)
            if busy is not None:
                print(f"  WARNING other processes still use {busy:.0f}% of a CPU: measuring")
        steal_before = _steal_ticks()
        started = time.monotonic()
        point = run_point(plan, server, client_cpu)
        elapsed = time.monotonic() - started
        steal_after = _steal_ticks()
        point["latencyQuantilesMicroseconds"] = tap.quantiles()
        point["server"] = name
        # time the hypervisor ran something else on our vCPUs (/proc/stat "steal"), over the
        # whole run_plan call: invisible to every other figure here
        point["stealPercent"] = {
            str(cpu): round(
                100 * (steal_after.get(cpu, 0) - steal_before.get(cpu, 0)) / CLOCK_TICKS / elapsed,
                1,
            )
            for cpu in sorted(steal_after)
        }
        point["disturbed"] = _disturbed(name, point)
        if name == "freeradius-threaded" and not point["disturbed"]:
            # load.py calls any run-queue wait noise; here it is the server's own threads
            point["warnings"] = [w for w in point["warnings"] if not w.startswith("noisy")]
            point["notes"] = [
                f"run-queue wait {point.get('serverWaitPercent', 0):.0f}%: its threads waiting "
                "for each other on its one CPU (not counted as noise)"
            ]
        steal = ", ".join(f"CPU {c} {v:.1f}%" for c, v in point["stealPercent"].items())
        point.setdefault("notes", []).append(f"hypervisor steal {steal}")
        text = describe(point) + "".join(f"\n    NOTE {n}" for n in point["notes"])
        print(f"  {name:<19} " + text.replace("\n", "\n  "), flush=True)
        if point["wrong"] or not point["replies"]:
            raise SystemExit(f"FAILED: {name} gave wrong verdicts or no replies")
        attempts.append(point)
        if not point["disturbed"] or len(attempts) > args.retries:
            break
        print(f"  repeating the point ({len(attempts)}/{args.retries}): it was disturbed")
        plan = Plan(**{**_fields(plan), "offset": secrets.randbelow(args.packets)})
    kept = min(attempts, key=_disturbance)
    others = [attempt for attempt in attempts if attempt is not kept]
    if others:
        kept["otherAttempts"] = [
            {
                k: v
                for k, v in attempt.items()
                if k not in ("problems", "latencyQuantilesMicroseconds")
            }
            for attempt in others
        ]
    if kept["disturbed"]:
        print(f"  {name}: every attempt was disturbed; keeping the least disturbed one")
    return kept


def _steal_ticks() -> dict[int, int]:
    """Per CPU, the steal time of /proc/stat so far (clock ticks)."""
    result = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            fields = line.split()
            if len(fields) > 8:
                result[int(fields[0][3:])] = int(fields[8])
    return result


def _disturbance(point: dict[str, Any]) -> float:
    """How much CPU other processes took from the point (for choosing among disturbed ones)."""
    server_wait = 0.0 if point["server"] == "freeradius-threaded" else point["serverWaitPercent"]
    steal = max(point.get("stealPercent", {}).values(), default=0.0)
    return server_wait + point["clientWaitPercent"] + point["othersCpuPercent"] + steal


def _disturbed(name: str, point: dict[str, Any]) -> bool:
    """Whether other processes (or the hypervisor) took the server's or client's CPU.

    load.py's "noisy" warning counts the server's run-queue wait, which for FreeRADIUS's
    threaded mode is mostly its own threads waiting for each other on the one pinned CPU: that
    part is left out for it (other processes' CPU still counts).
    """
    server_wait = 0.0 if name == "freeradius-threaded" else point.get("serverWaitPercent", 0.0)
    steal = max(point.get("stealPercent", {}).values(), default=0.0)
    return (
        server_wait > 3
        or point["clientWaitPercent"] > 5
        or point["othersCpuPercent"] > 10
        or steal > 5
    )


def _fields(plan: Plan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in Plan.__dataclass_fields__}


def _plan(
    args: argparse.Namespace,
    window: int,
    seconds: float,
    count: int | None,
    rate: float | None = None,
) -> Plan:
    if rate is not None:  # open loop: load.py's 16 sockets, 4096 Identifiers
        sockets = args.sockets or 16
    else:
        sockets = min(args.sockets or min(32, max(4, window // 4)), window)
    return Plan(
        window=window,
        sockets=sockets,
        processes=1,
        seconds=seconds,
        count=count,
        warmup=args.warmup if count is None else 0.0,
        timeout=args.timeout,
        rate=rate,
        offset=secrets.randbelow(args.packets),
    )


def summarise_latency(rounds: list[dict[str, dict[str, Any]]], rate: float) -> dict[str, Any]:
    """Open loop: per round each server's rate reached and p50/p99/p99.9; the median p99s over
    the undisturbed rounds (every round when fewer than 3 are)."""
    table = []
    for number, points in enumerate(rounds, 1):
        row: dict[str, Any] = {"round": number}
        for name in SERVERS:
            row[name] = {
                key: points[name][key]
                for key in (
                    "requestsPerSecond",
                    "p50Microseconds",
                    "p99Microseconds",
                    "p999Microseconds",
                    "serverCpuPercent",
                )
                if key in points[name]
            }
        row["disturbed"] = any(point["disturbed"] for point in points.values())
        table.append(row)
    clean = [row for row in table if not row["disturbed"]]
    used = clean if len(clean) >= 3 else table

    def median_of(name: str, key: str) -> float | None:
        values = [row[name].get(key) for row in used]
        if any(value is None for value in values):  # a lost request: an infinite percentile
            return None
        return round(statistics.median(values), 1)

    return {
        "rate": round(rate),
        "rounds": table,
        "medianOver": (
            "the undisturbed rounds" if used is clean else "all rounds (< 3 undisturbed)"
        ),
        "medianP99Microseconds": {name: median_of(name, "p99Microseconds") for name in SERVERS},
        "medianP999Microseconds": {name: median_of(name, "p999Microseconds") for name in SERVERS},
        "medianServerCpuPercent": {name: median_of(name, "serverCpuPercent") for name in SERVERS},
    }


def print_latency_table(summary: dict[str, Any]) -> None:
    def ms(value: float | None) -> str:
        return "lost" if value is None else f"{value / 1000:.2f}"

    print()
    print(
        f"open loop at {summary['rate']:,}/s | round | "
        + " | ".join(f"{name} req/s, p50/p99/p99.9 ms, CPU" for name in SERVERS)
    )
    for row in summary["rounds"]:
        cells = []
        for name in SERVERS:
            point = row[name]
            cells.append(
                f"{point['requestsPerSecond']:>7,} {ms(point['p50Microseconds'])}/"
                f"{ms(point['p99Microseconds'])}/{ms(point['p999Microseconds'])} "
                f"{point.get('serverCpuPercent', 0):.0f}%"
            )
        mark = "  (disturbed)" if row["disturbed"] else ""
        print(f"{row['round']:>5} | " + " | ".join(cells) + mark)
    print(
        f"median p99 over {summary['medianOver']}: "
        + ", ".join(
            f"{name} {ms(value)} ms" for name, value in summary["medianP99Microseconds"].items()
        )
    )


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per round: the ratio simgate / the faster FreeRADIUS mode of that round; the median.

    The median is over the rounds no other process disturbed, when there are at least 3 of
    them; else over every round (``medianOver`` says which).
    """
    table = []
    for number, points in enumerate(rounds, 1):
        faster = max(MODES, key=lambda mode: points[mode]["requestsPerSecond"])
        row: dict[str, Any] = {"round": number, "fasterFreeradiusMode": faster}
        for name in SERVERS:
            row[name] = {
                key: points[name][key]
                for key in ("requestsPerSecond", "p50Microseconds", "p99Microseconds")
            }
        row["ratio"] = round(
            points["simgate"]["requestsPerSecond"] / points[faster]["requestsPerSecond"], 3
        )
        row["disturbed"] = any(point["disturbed"] for point in points.values())
        table.append(row)
    clean = [row for row in table if not row["disturbed"]]
    used = clean if len(clean) >= 3 else table
    medians = {
        name: statistics.median(row[name]["requestsPerSecond"] for row in used) for name in SERVERS
    }
    faster_mode = max(MODES, key=lambda mode: medians[mode])
    ratios = [row["ratio"] for row in used]
    return {
        "rounds": table,
        "medianOver": (
            "the undisturbed rounds" if used is clean else "all rounds (< 3 undisturbed)"
        ),
        "ratios": ratios,
        "medianRatio": round(statistics.median(ratios), 3),
        "minRatio": min(ratios),
        "maxRatio": max(ratios),
        "medianRequestsPerSecond": {name: round(value) for name, value in medians.items()},
        "fasterFreeradiusModeByMedian": faster_mode,
        "ratioOfMedians": round(medians["simgate"] / medians[faster_mode], 3),
        "target": 1.2,
    }


def print_table(summary: dict[str, Any]) -> None:
    print()
    print(
        "round | simgate req/s (p50/p99 ms) | FR threaded req/s (p50/p99) "
        "| FR -s req/s (p50/p99) | ratio"
    )
    for row in summary["rounds"]:
        cells = [
            f"{row[name]['requestsPerSecond']:>7,} ({row[name]['p50Microseconds'] / 1000:.2f}/"
            f"{row[name]['p99Microseconds'] / 1000:.2f})"
            for name in SERVERS
        ]
        mark = "  (disturbed)" if row["disturbed"] else ""
        print(f"{row['round']:>5} | " + " | ".join(cells) + f" | {row['ratio']:.2f}{mark}")
    verdict = "meets" if summary["medianRatio"] >= summary["target"] else "MISSES"
    print(
        f"median ratio simgate / faster FreeRADIUS mode over {summary['medianOver']}: "
        f"{summary['medianRatio']:.2f} (those rounds: "
        f"{', '.join(f'{r:.2f}' for r in summary['ratios'])}; ratio of medians "
        f"{summary['ratioOfMedians']:.2f}): {verdict} the >= {summary['target']}x target"
    )


# --------------------------------------------------------------------------------------------
# The command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/peer.py", description=(__doc__ or "").splitlines()[0]
    )
    add = parser.add_argument
    add("--size", choices=sorted(SIZES), default="1m", help="subscriber set (%(default)s)")
    add("--rounds", type=int, default=3, help="undisturbed A B A B rounds, >= 3 (%(default)s)")
    add(
        "--extra-rounds",
        type=int,
        default=3,
        help="rounds to add when others disturbed some (%(default)s)",
    )
    add("--window", type=int, default=64, help="closed loop: requests outstanding (%(default)s)")
    add("--rate", type=float, help="open loop at this many requests/s instead: p99 side by side")
    add("--sockets", type=int, help="client sockets (default: window/4, 4 to 32)")
    add("--seconds", type=float, default=8.0, help="measured per point (%(default)s)")
    add("--warmup", type=float, default=1.0, help="unmeasured seconds first (%(default)s)")
    add("--timeout", type=float, default=1.0, help="seconds until a request is lost")
    add("--packets", type=int, default=200_000, help="distinct requests (%(default)s)")
    add("--seed", type=int, default=1, help="scenario seed (%(default)s)")
    add("--server-cpu", type=int, default=0, help="the servers' CPU (%(default)s)")
    add("--client-cpu", type=int, default=1, help="the client's CPU (%(default)s)")
    add("--settle", type=float, default=15.0, help="wait up to this for other work to go")
    add("--retries", type=int, default=2, help="repeat a disturbed point (%(default)s)")
    add("--check-count", type=int, default=20_000, help="requests of the load.py check")
    add("--check-only", action="store_true", help="the verdict checks only, no measurement")
    add("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    add("--no-write", action="store_true", help="no JSON, no plots")
    add("--no-plots", action="store_true", help="no PNG plots")
    return parser


def source_state() -> dict[str, Any]:
    """simgate runs from this working tree: which of its files differ from the commit."""
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "core", "dictionaries"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return {
        "serverCode": "working tree",
        "coreUncommittedChanges": sorted(line[3:] for line in changed if line.strip()),
    }


def _usable(cpu: int) -> int | None:
    if cpu in os.sched_getaffinity(0):
        return cpu
    print(f"WARNING CPU {cpu} is not available: not pinning", file=sys.stderr)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.rounds < 3 and not args.check_only:
        raise SystemExit("--rounds: at least 3 (A B A B A B)")
    binary = find_freeradius()
    if binary is None:
        print(
            "FreeRADIUS is not installed: `make bench-peer` installs it (apt-get install -y "
            "freeradius)",
            file=sys.stderr,
        )
        return 2
    version = freeradius_version(binary)
    dictionary_note, extra_dictionary = dictionary_additions()
    require_ma = supports_option(binary, "require_message_authenticator")
    print(
        f"FreeRADIUS {version} ({binary}); {dictionary_note}; client "
        f"require_message_authenticator {'= yes' if require_ma else 'unsupported: left out'}"
    )
    count = SIZES[args.size]
    client_cpu, server_cpu = _usable(args.client_cpu), _usable(args.server_cpu)
    load_average = os.getloadavg()[0]

    load._REQUESTS = prepare(args.size, args.packets, args.seed)  # what run_plan's workers send
    tap = LatencyTap()
    affinity = os.sched_getaffinity(0)
    data = data_dir(args.size)
    workdir = Path(tempfile.mkdtemp(prefix="peer-", dir=data.parent))  # hard links to the cache
    servers: dict[str, ServerUnderTest] = {}
    startup: dict[str, float] = {}
    rounds: list[dict[str, dict[str, Any]]] = []
    checks: dict[str, Any] = {}
    pauses: dict[str, Any] = {}
    status = 0
    table_lines = 0
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        started = time.perf_counter()
        lines, table_lines = subscriber_lines(count)
        table = workdir / "sims.passwd"
        table.write_text("\n".join(lines) + "\n")
        del lines
        print(
            f"FreeRADIUS table: {table_lines:,} lines ({count:,} SIMs and their virtual "
            f"subscribers), {table.stat().st_size / 2**20:.0f} MiB, written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        (workdir / "simgate").mkdir()
        servers["simgate"] = ServerUnderTest.start(data, server_cpu, workdir / "simgate")
        startup["simgate"] = time.perf_counter() - started
        for mode in MODES:
            raddb, port = workdir / mode, _free_udp_port()
            write_config(raddb, port, table, table_lines, binary, extra_dictionary)
            servers[mode], startup[mode] = start_freeradius(binary, raddb, port, mode, server_cpu)
        for name, server in servers.items():
            print(
                f"{name}: pid {server.pid} on CPU {server_cpu}, 127.0.0.1:{server.address[1]}, "
                f"ready in {startup[name]:.1f} s, RSS {(server.rss_bytes() or 0) / 2**20:.0f} "
                "MiB"
            )

        problems, signed = check_verdicts(servers, count)
        print(
            "replies with a Message-Authenticator: "
            + ", ".join(f"{name} {'yes' if flag else 'no'}" for name, flag in signed.items())
        )
        checks["repliesCarryMessageAuthenticator"] = signed
        for problem in problems[:20]:
            print(f"  DISAGREE {problem}")
        checks["edgeAndMixDisagreements"] = len(problems)
        if problems:
            raise SystemExit("FAILED: FreeRADIUS does not give simgate's verdicts")
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})  # this process and the workers it forks
        everyone = {os.getpid()} | {s.pid for s in servers.values() if s.pid is not None}
        print(
            f"load.py check: {args.check_count:,} requests of the mix to each server, every "
            "reply verified (authenticators, code, Reply-Message)"
        )
        checks["loadCheck"] = {}
        for name, server in servers.items():
            plan = _plan(args, 16, 30.0, args.check_count)
            point = run_point(plan, server, client_cpu)
            tap.quantiles()
            print(
                f"  {name:<19} {point['replies']:,} replies, wrong {point['wrong']}, "
                f"lost {point['lost']}"
            )
            for problem in point["problems"]:
                print(f"    WRONG {problem}")
            checks["loadCheck"][name] = {k: point[k] for k in ("replies", "wrong", "lost")}
            if point["wrong"] or point["replies"] < args.check_count:
                raise SystemExit(f"FAILED: {name} failed the load.py verification")
        if args.check_only:
            return 0

        pauses = machine_pauses(sorted({c for c in (server_cpu, client_cpu) if c is not None}))
        print(
            "machine check: "
            + "; ".join(
                f"CPU {cpu} lost {f['lostPercent']:.1f}%, longest pause "
                f"{f['longestPauseMicroseconds'] / 1000:.1f} ms"
                for cpu, f in pauses.items()
            )
        )
        number = clean = 0
        while clean < args.rounds and number < args.rounds + args.extra_rounds:
            number += 1
            how = f"open loop {args.rate:,.0f}/s" if args.rate else f"closed loop W={args.window}"
            print(f"round {number} ({clean} undisturbed of {args.rounds} so far): {how}")
            points = {}
            for name in SERVERS:
                plan = _plan(args, args.window, args.seconds, None, args.rate)
                points[name] = measure(name, plan, servers[name], client_cpu, everyone, tap, args)
            if args.rate:
                p99s = ", ".join(
                    f"{name} {(points[name]['p99Microseconds'] or float('inf')) / 1000:.2f}"
                    for name in SERVERS
                )
                print(f"  round {number}: p99 ms {p99s}")
            else:
                ratio = points["simgate"]["requestsPerSecond"] / max(
                    points[mode]["requestsPerSecond"] for mode in MODES
                )
                print(f"  round {number}: simgate / faster FreeRADIUS mode = {ratio:.2f}")
            rounds.append(points)
            clean += not any(point["disturbed"] for point in points.values())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        close_pools()
        os.sched_setaffinity(0, affinity)
        for name, server in servers.items():
            code = server.stop()
            if code not in (0, None, -signal.SIGTERM):
                print(f"WARNING {name} exited with {code}:\n{server.log()}")
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if len(rounds) < 3:
        return status or 1
    if args.rate:
        summary = summarise_latency(rounds, args.rate)
        print_latency_table(summary)
    else:
        summary = summarise(rounds)
        print_table(summary)
    if args.no_write:
        return status
    result = {
        "benchmark": "peer",
        "size": args.size,
        "sims": count,
        "freeradiusTableLines": table_lines,
        "freeradius": {
            "version": version,
            "binary": binary,
            "modes": {mode: " ".join(flags) for mode, flags in MODES.items()},
            "requireMessageAuthenticator": require_ma,
            "repliesCarryMessageAuthenticator": all(
                checks["repliesCarryMessageAuthenticator"][mode] for mode in MODES
            ),
            "dictionary": dictionary_note,
        },
        **source_state(),
        "startupSeconds": {name: round(value, 2) for name, value in startup.items()},
        "window": args.window,
        "rate": args.rate,
        "seconds": args.seconds,
        "packets": args.packets,
        "serverCpu": server_cpu,
        "clientCpu": client_cpu,
        "loadAverageBefore": round(load_average, 2),
        "machinePauses": pauses,
        "checks": checks,
        **summary,
        "latencyQuantileFractions": QUANTILES,
        "points": [
            {k: v for k, v in point.items() if k != "problems"}
            for points in rounds
            for point in points.values()
        ],
        **environment(),
    }
    RESULTS.mkdir(exist_ok=True)
    kind = "peer-open" if args.rate else "peer"
    path = RESULTS / f"{kind}-{args.size}-{int(time.time())}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    if not args.no_plots and not args.rate:
        from bench import plots

        for png in plots.plot_all(path):
            print(f"wrote {png}")
    return status


if __name__ == "__main__":
    sys.exit(main())
