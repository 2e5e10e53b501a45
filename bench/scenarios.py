"""Benchmark scenarios: generated subscriber sets and the request mix that exercises every path.

Owns: deterministic data (SIM ``i`` always has the same IMSI, lock and group, so a request can be
built for it and its expected verdict known without reading the table), cached under
``bench/.cache/`` between runs. Data is generated, never downloaded.

The population, by ``i % 20``:
    0-7   locked, allowUnreported off (strict)       identity LOCK_BASE + i
    8-11  locked, allowUnreported on                 identity LOCK_BASE + i
    12-17 no lock
    18    in the CHAP group "bench-chap" (user "dev", password "s3cret"), no lock
    19    plan01s with one virtual subscriber (VIRTUAL_BASE + i), locked with allowUnreported on

The request mix (``MIX``, by weight) covers every path of the decision, plus a "stolen SIM
storm": one strict-locked SIM (``storm_sim``) hammered from many devices, each request with
another random IMEISV (``imei-mismatch``). Retransmissions are not a case of their own:
``retransmissions()`` marks ~2% of the pre-built requests, which the load generator sends a
second time, byte for byte, on the same socket and Identifier right after the first reply (the
server answers them from its RFC 5080 reply cache, with the first reply's bytes).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.probe import Request, build_access_request
from core.provision import SimRow, VirtualRow, write_snapshot
from core.radius.auth import Secret
from core.radius.dictionary import Handles
from core.store.records import NO_GROUP, Group
from core.store.snapshot import list_snapshots

CACHE: Final = Path(__file__).resolve().parent / ".cache"
IMSI_BASE: Final = 440_100_000_000_000
VIRTUAL_BASE: Final = 999_990_000_000_000
LOCK_BASE: Final = 35_000_000_000_000
SECRET: Final = "bench-secret-0123456789abcdef"
CHAP_GROUP: Final = Group("bench-chap", chap_username=b"dev", chap_password=b"s3cret")
SIZES: Final = {"10k": 10_000, "1m": 1_000_000, "10m": 10_000_000}
#: share of all sends that are a byte-for-byte retransmission (bench/load.py --retransmit)
RETRANSMIT_PERCENT: Final = 2.0


def rows(count: int) -> Iterator[SimRow]:
    for i in range(count):
        kind = i % 20
        imsi = IMSI_BASE + i
        sim_id = f"89811{i:014d}"
        if kind < 8:
            yield SimRow(sim_id, imsi, lock=LOCK_BASE + i)
        elif kind < 12:
            yield SimRow(sim_id, imsi, lock=LOCK_BASE + i, allow_unreported=True)
        elif kind < 18:
            yield SimRow(sim_id, imsi)
        elif kind == 18:
            yield SimRow(sim_id, imsi, group=0)
        else:
            virtual = VirtualRow(VIRTUAL_BASE + i, framed_ip=0x64400000 + i)
            yield SimRow(
                sim_id,
                imsi,
                lock=LOCK_BASE + i,
                allow_unreported=True,
                subscription="plan01s",
                subscribers=(virtual,),
            )


def data_dir(size: str) -> Path:
    """Return a data directory holding the snapshot for ``size``, generating it once."""
    directory = CACHE / f"data-{size}"
    if list_snapshots(directory):
        return directory
    started = time.perf_counter()
    print(f"generating {size} SIMs into {directory} ...", file=sys.stderr, flush=True)
    write_snapshot(directory, rows(SIZES[size]), (CHAP_GROUP,), seq=1, created_at=time.time())
    print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return directory


@dataclass(frozen=True, slots=True)
class Case:
    """One kind of request in the mix, with the verdict it must get."""

    name: str
    weight: int
    accept: bool
    reason: str | None


MIX: Final = (
    Case("locked-same-imeisv", 30, True, None),
    Case("locked-other-device", 10, False, "imei-mismatch"),
    Case("not-reported-allowed", 10, True, None),
    Case("not-reported-strict", 5, False, "imei-not-reported"),
    Case("no-lock", 25, True, None),
    Case("unknown-imsi", 5, False, "unknown-subscriber"),
    Case("virtual-subscriber", 5, True, None),
    Case("chap-group", 10, True, None),
    Case("stolen-sim-storm", 5, False, "imei-mismatch"),
)


def storm_sim(count: int) -> int:
    """The one SIM of the "stolen-sim-storm" case: locked, allowUnreported off (``i % 20 == 0``)."""
    return count // 2 // 20 * 20


def request_for(case: Case, count: int, rng: random.Random) -> Request:
    """Build a request of ``case`` for a random SIM of a ``count``-SIM population."""

    def pick(kinds: range) -> int:
        while True:
            i = rng.randrange(count)
            if i % 20 in kinds:
                return i

    if case.name == "locked-same-imeisv":
        i = pick(range(12))
        return Request(imsi=str(IMSI_BASE + i), imei=f"{LOCK_BASE + i:014d}01")
    if case.name == "locked-other-device":
        i = pick(range(12))
        return Request(imsi=str(IMSI_BASE + i), imei=f"{LOCK_BASE + i + 1:014d}0")
    if case.name == "not-reported-allowed":
        return Request(imsi=str(IMSI_BASE + pick(range(8, 12))), imei="000000000000000")
    if case.name == "not-reported-strict":
        return Request(imsi=str(IMSI_BASE + pick(range(8))))
    if case.name == "no-lock":
        i = pick(range(12, 18))
        return Request(imsi=str(IMSI_BASE + i), imei=f"{rng.randrange(10**14):014d}0", tbcd=True)
    if case.name == "unknown-imsi":
        return Request(imsi=str(IMSI_BASE + count + rng.randrange(10**6)))
    if case.name == "stolen-sim-storm":
        # Each request from another device: reporting body 35 (most real IMEIs), 12 random
        # digits. (A random TAC could start "0387": as TBCD, octets "0x" first, which
        # FreeRADIUS 3.2.1 reads as hex, rejecting imei-invalid; bench/peer.py compares.)
        i = storm_sim(count)
        device = 35 * 10**12 + rng.randrange(10**12)
        while device == LOCK_BASE + i:  # not the device the SIM is locked to
            device = 35 * 10**12 + rng.randrange(10**12)
        imeisv = f"{device:014d}{rng.randrange(100):02d}"
        return Request(imsi=str(IMSI_BASE + i), imei=imeisv, tbcd=rng.random() < 0.5)
    if case.name == "virtual-subscriber":
        return Request(imsi=str(VIRTUAL_BASE + pick(range(19, 20))))
    i = pick(range(18, 19))
    return Request(imsi=str(IMSI_BASE + i), user_name="dev", chap_password="s3cret")


def build_packets(
    count: int,
    total: int,
    handles: Handles,
    seed: int = 1,
) -> list[tuple[bytes, Case]]:
    """Pre-build ``total`` signed Access-Requests of the mix, each with its expected verdict.

    Identifiers cycle 0..255 and every packet has its own random authenticator, so that a
    server sees each one as a new request, never a retransmission (bench/load.py adds those,
    see ``retransmissions``).
    """
    rng = random.Random(seed)
    secret = Secret(SECRET.encode())
    weighted = [case for case in MIX for _ in range(case.weight)]
    packets = []
    for n in range(total):
        case = rng.choice(weighted)
        request = request_for(case, count, rng)
        packets.append(
            (build_access_request(request, n & 0xFF, os.urandom(16), secret, handles), case)
        )
    return packets


def retransmissions(total: int, percent: float = RETRANSMIT_PERCENT, seed: int = 1) -> bytes:
    """Which of ``total`` pre-built requests (``build_packets``) are retransmitted: 1, else 0.

    A marked request is sent once more, byte for byte (same socket, Identifier and
    authenticator), right after its reply came back: the server answers it from its reply
    cache, with the first reply's bytes. Of every sent request, ~``percent`` % are such repeats.
    """
    if percent <= 0:
        return bytes(total)
    if percent >= 50:
        raise ValueError("at most one retransmission per request: percent < 50")
    probability = percent / (100.0 - percent)  # per original request
    rng = random.Random(f"retransmissions-{seed}")
    return bytes(rng.random() < probability for _ in range(total))


__all__ = [
    "MIX",
    "NO_GROUP",
    "RETRANSMIT_PERCENT",
    "SECRET",
    "SIZES",
    "Case",
    "build_packets",
    "data_dir",
    "retransmissions",
    "rows",
    "storm_sim",
]
