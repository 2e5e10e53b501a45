"""Nothing acknowledged is ever lost: ``simgate serve`` killed with SIGKILL while it writes.

A real server process (ephemeral 127.0.0.1 ports, ``store.fsync = "batch"``, a 200-SIM snapshot)
takes concurrent admin API writes (``set_imei_lock`` with a fresh IMEI each time,
``unset_imei_lock``, status changes) from worker threads, each worker owning its own SIMs so that
a SIM never has two writes in flight. The client records every write, in the order it was sent,
and whether it was acknowledged (HTTP 200). The server is killed at random moments (also while a
compaction child runs, and with a compaction done earlier in the round), restarted on the same
data directory. While it runs, every answer to a write shows the SIM exactly as the client's own
record of that SIM says (one writer per SIM: read-your-writes, across compaction swaps too).
After each restart:

- every SIM's lock and status is the last acknowledged write to it, or one of the writes sent
  after that one and never answered (in flight at the kill): for each SIM and each of the two
  fields, state in {last acknowledged value} | {values of the unanswered writes sent after it};
  the state found becomes the baseline for the next round (a write once seen must stay);
- the restarted server serves exactly what ``open_live()`` (snapshot + journal replay) builds
  in-process from a copy of the data directory taken right after the kill, and, after a clean
  stop at the end, from the data directory itself.

A journal whose last record is torn (by hand: half a record, or garbage) starts, logs
``journal_torn_tail_cut``, and keeps every record before the tear.

The random choices (kill delays, which SIM, which write) come from one seed, printed to stderr
and taken from ``SIMGATE_CRASH_SEED`` when set; thread scheduling still varies between runs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from core.provision import import_file
from core.store.commands import SetLock
from core.store.journal import frame, list_segments, unframe
from core.store.recovery import open_live

ROOT: Final = Path(__file__).resolve().parents[1]
TOKEN: Final = "crash-test-token-0123456789"
SIM_COUNT: Final = 200
WORKERS: Final = 12
STATUSES: Final = {
    "activate": "active",
    "deactivate": "inactive",
    "set_to_standby": "standby",
    "suspend": "suspended",
}
IMEI_BASE: Final = 35_100_000_000_000

Lock = tuple[str, bool] | None  # (the IMEI's 14 digits, allowUnreported), or no lock
Value = Lock | str


def sim_id(number: int) -> str:
    return f"89811{number:014d}"


def provisioning() -> list[dict[str, Any]]:
    """200 SIMs: every third locked, the rest not; all active."""
    lines: list[dict[str, Any]] = []
    for number in range(SIM_COUNT):
        line: dict[str, Any] = {"simId": sim_id(number), "imsi": f"44010{number:010d}"}
        if number % 3 == 0:
            line["imeiLock"] = {"imei": f"{IMEI_BASE - 1 - number:014d}", "allowUnreported": False}
        lines.append(line)
    return lines


# -- the server process ----------------------------------------------------------------------


class ServerProcess:
    """``python -m core.cli serve`` in a session of its own, its log in a file."""

    def __init__(self, directory: Path, number: int) -> None:
        self.log = directory / f"server-{number}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "core.cli", "serve", "--config", str(directory / "c.toml")],
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its process group: orphans can be found and reaped
            )
        self.pid = self.process.pid
        self.ready = self._wait_ready()
        self.url = f"http://127.0.0.1:{self.ready['http_port']}"

    def _wait_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == "ready":
                    return event
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited {self.process.returncode} at start-up:\n{self.text()}"
                )
            time.sleep(0.02)
        raise AssertionError(f"server not ready in 20 s:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue  # a line still being written
        return found

    def kill(self, *, group: bool = True) -> None:
        """SIGKILL the server (and with ``group`` its compaction child too) and reap it."""
        if group:
            os.killpg(self.pid, signal.SIGKILL)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(15) == 0, self.text()

    def reap(self) -> None:
        """Kill whatever is left of the process group (an orphaned compaction child)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def compaction_child(self) -> int | None:
        """Return the pid of the server's ``core.store.recovery compact`` child, if one runs."""
        for task in Path(f"/proc/{self.pid}/task").glob("*/children"):
            try:
                children = task.read_text().split()
            except OSError:
                continue
            for child in children:
                try:
                    command = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"core.store.recovery" in command:
                    return int(child)
        return None


def client(server: ServerProcess, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=timeout
    )


# -- what the client sent and what it was told -----------------------------------------------


@dataclass
class Write:
    sim: str
    field: str  # "lock" or "status"
    value: Value
    path: str
    body: dict[str, Any] | None
    acked: bool = False


@dataclass
class History:
    """Per SIM and field: the writes sent, in order, after the last state known to be durable."""

    writes: dict[tuple[str, str], list[Write]] = field(default_factory=dict)
    baseline: dict[tuple[str, str], Value] = field(default_factory=dict)
    imeis: Iterator[int] = field(default_factory=lambda: itertools.count(1))  # never twice

    def allowed(self, sim: str, name: str) -> list[Value]:
        """{last acknowledged value (or the baseline)} | {unanswered values sent after it}."""
        sent = self.writes.get((sim, name), [])
        last = max((n for n, write in enumerate(sent) if write.acked), default=-1)
        first = self.baseline[sim, name] if last < 0 else sent[last].value
        return [first, *(write.value for write in sent[last + 1 :])]

    def settle(self, state: dict[str, dict[str, Value]]) -> None:
        """The state a restarted server serves is durable: it is the new baseline."""
        for sim, fields in state.items():
            for name, value in fields.items():
                self.baseline[sim, name] = value
        self.writes.clear()


def lock_of(view: dict[str, Any]) -> Lock:
    lock = view.get("imeiLock")
    if lock is None:
        return None
    return (str(lock["imei"])[:14], bool(lock["allowUnreported"]))


def state_of(views: dict[str, dict[str, Any]]) -> dict[str, dict[str, Value]]:
    return {sim: {"lock": lock_of(view), "status": view["status"]} for sim, view in views.items()}


class Writers:
    """WORKERS threads writing until told to stop or until the server stops answering."""

    def __init__(self, server: ServerProcess, history: History, seed: int) -> None:
        self.server = server
        self.history = history
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.acked = 0
        self.unanswered = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(number, seed + number), daemon=True)
            for number in range(WORKERS)
        ]
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(20)
            assert not thread.is_alive(), "a writer hangs"

    def _next_imei(self) -> str:
        with self._lock:
            return f"{IMEI_BASE + next(self.history.imeis):014d}"

    def _choose(self, rng: random.Random, sim: str) -> Write:
        roll = rng.random()
        if roll < 0.5:
            imei, allow = self._next_imei(), rng.random() < 0.5
            body = {"imei": imei, "allowUnreported": allow}
            return Write(sim, "lock", (imei, allow), f"/v1/sims/{sim}/set_imei_lock", body)
        if roll < 0.65:
            return Write(sim, "lock", None, f"/v1/sims/{sim}/unset_imei_lock", None)
        action = rng.choice(sorted(STATUSES))
        return Write(sim, "status", STATUSES[action], f"/v1/sims/{sim}/{action}", None)

    def _work(self, number: int, seed: int) -> None:
        rng = random.Random(seed)
        mine = [sim_id(n) for n in range(number, SIM_COUNT, WORKERS)]
        # Only this thread writes these SIMs, and the round starts from a settled state: what
        # each of them must look like after every acknowledged write is known exactly.
        known = {
            sim: {name: self.history.baseline[sim, name] for name in ("lock", "status")}
            for sim in mine
        }
        with client(self.server) as http:
            while not self.stop.is_set():
                write = self._choose(rng, rng.choice(mine))
                with self._lock:
                    self.history.writes.setdefault((write.sim, write.field), []).append(write)
                try:
                    response = http.post(write.path, json=write.body)
                except httpx.TransportError:
                    with self._lock:
                        self.unanswered += 1
                    return  # the server is gone: this write may or may not be durable
                if response.status_code != 200:
                    with self._lock:
                        self.failures.append(
                            f"{write.path}: {response.status_code} {response.text}"
                        )
                    return
                write.acked = True
                known[write.sim][write.field] = write.value
                (seen,) = state_of({write.sim: response.json()}).values()
                if seen != known[write.sim]:  # read your writes, across compaction swaps too
                    with self._lock:
                        self.failures.append(
                            f"{write.path}: answered {seen}, expected {known[write.sim]}"
                        )
                with self._lock:
                    self.acked += 1


# -- checks ----------------------------------------------------------------------------------


def served_views(server: ServerProcess) -> dict[str, dict[str, Any]]:
    views = {}
    with client(server) as http:
        for number in range(SIM_COUNT):
            response = http.get(f"/v1/sims/{sim_id(number)}")
            assert response.status_code == 200, response.text
            views[sim_id(number)] = response.json()
    return views


def replayed_views(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The documents open_live() (newest snapshot + journal replay) gives, as the API shows them."""
    live, writer, _ = open_live(data_dir)
    try:
        views = {}
        for number in range(SIM_COUNT):
            document = live.sim_document(sim_id(number))
            assert document is not None, sim_id(number)
            document.pop("kind", None)
            document.setdefault("imeiLock", None)
            views[sim_id(number)] = document
        return views
    finally:
        writer.close()
        live.close()


def without_session(views: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        sim: {key: value for key, value in view.items() if key != "sessionStatus"}
        for sim, view in views.items()
    }


def check_nothing_lost(history: History, state: dict[str, dict[str, Value]], seed: int) -> int:
    """Assert the state served is allowed by what was acknowledged; return unanswered found."""
    lost = []
    applied_unanswered = 0
    for sim, fields in state.items():
        for name, value in fields.items():
            allowed = history.allowed(sim, name)
            if value not in allowed:
                lost.append(f"{sim} {name}: serves {value!r}, allowed {allowed!r}")
            elif value != allowed[0]:
                applied_unanswered += 1
    assert not lost, f"seed {seed}: acknowledged writes lost:\n" + "\n".join(lost[:20])
    return applied_unanswered


def snapshot_copy(data_dir: Path, into: Path) -> Path:
    shutil.rmtree(into, ignore_errors=True)
    shutil.copytree(data_dir, into, ignore=shutil.ignore_patterns("*.tmp"))
    return into


# -- the tests -------------------------------------------------------------------------------


@pytest.fixture
def seed() -> int:
    given = os.environ.get("SIMGATE_CRASH_SEED")
    chosen = int(given) if given else random.SystemRandom().randrange(1 << 32)
    sys.stderr.write(f"crash test seed: SIMGATE_CRASH_SEED={chosen}\n")
    return chosen


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A 200-SIM snapshot in tmp_path/data and a config ``c.toml`` for it."""
    source = tmp_path / "sims.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in provisioning()))
    import_file(source, tmp_path / "data", seq=1, now=1_700_000_000.0)
    (tmp_path / "c.toml").write_text(
        f"""
[radius]
listen = "127.0.0.1"
auth_port = 0
acct_port = 0

[store]
data_dir = "{tmp_path / "data"}"
fsync = "batch"
compact_after_records = 400

[http]
port = 0
token = "{TOKEN}"

[log]
format = "json"
"""
    )
    return tmp_path


@pytest.fixture
def servers(workdir: Path) -> Iterator[list[ServerProcess]]:
    """Every server the test starts; whatever is left of them is killed at the end."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.reap()


#: What each round does before its kill: "plain" (writes only), "compacted" (a compaction
#: requested and finished mid-round), "in-compaction" (the kill lands while the compaction
#: child runs; only the server is killed, the child is left to finish on its own).
ROUNDS: Final = ("plain", "compacted", "in-compaction", "plain", "compacted", "in-compaction")


def test_sigkill_at_random_moments_loses_no_acknowledged_write(
    workdir: Path, servers: list[ServerProcess], seed: int
) -> None:
    rng = random.Random(seed)
    data_dir = workdir / "data"
    history = History()
    servers.append(ServerProcess(workdir, 0))
    history.settle(state_of(served_views(servers[-1])))
    totals = {"acked": 0, "unanswered": 0, "applied unanswered": 0, "compactions killed": 0}

    for number, kind in enumerate(ROUNDS, start=1):
        server = servers[-1]
        writers = Writers(server, history, seed * 100 + number * WORKERS)
        time.sleep(rng.uniform(0.2, 0.8))
        if kind == "compacted":
            with client(server, timeout=20) as http:
                response = http.post("/v1/snapshot/compact")
            assert response.status_code == 200, response.text
            time.sleep(rng.uniform(0.0, 0.7))
            server.kill()
        elif kind == "in-compaction":
            totals["compactions killed"] += kill_during_compaction(server, rng)
        else:
            time.sleep(rng.uniform(0.0, 0.7))
            server.kill()
        writers.join()
        assert not writers.failures, f"seed {seed}: {writers.failures[:5]}"
        assert writers.acked > 0, f"seed {seed}: round {number} acknowledged nothing"
        totals["acked"] += writers.acked
        totals["unanswered"] += writers.unanswered

        expected = replayed_views(snapshot_copy(data_dir, workdir / f"copy-{number}"))
        servers.append(ServerProcess(workdir, number))
        views = served_views(servers[-1])
        assert without_session(views) == expected, f"seed {seed}: round {number} ({kind})"
        state = state_of(views)
        totals["applied unanswered"] += check_nothing_lost(history, state, seed)
        history.settle(state)

    # A last round without a kill: every write is acknowledged, then a clean stop and a replay.
    server = servers[-1]
    writers = Writers(server, history, seed * 100 + 99 * WORKERS)
    time.sleep(0.3)
    writers.join()
    assert not writers.failures, f"seed {seed}: {writers.failures[:5]}"
    assert writers.unanswered == 0
    views = served_views(server)
    state = state_of(views)
    for sim, fields in state.items():
        for name, value in fields.items():
            assert history.allowed(sim, name) == [value], f"seed {seed}: {sim} {name}"
    server.stop()
    assert without_session(views) == replayed_views(data_dir), f"seed {seed}: after a clean stop"
    sys.stderr.write(f"crash test seed {seed}: {totals}\n")
    assert totals["compactions killed"] >= 1, f"seed {seed}: no kill landed in a compaction"


def kill_during_compaction(server: ServerProcess, rng: random.Random) -> bool:
    """Ask for a compaction and SIGKILL the server (only) once its child runs.

    Returns whether the kill landed while the child ran. The orphaned child goes on writing its
    snapshot beside the restarted server, as after an OOM kill of the server alone.
    """
    answer: list[int] = []

    def request() -> None:
        try:
            with client(server, timeout=20) as http:
                answer.append(http.post("/v1/snapshot/compact").status_code)
        except httpx.TransportError:
            answer.append(0)

    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    child = None
    while child is None and time.monotonic() < deadline and not answer:
        child = server.compaction_child()
        if child is None:
            time.sleep(0.001)
    if child is not None:
        time.sleep(rng.uniform(0.0, 0.05))  # somewhere in the child's work
    server.kill(group=False)
    thread.join(20)
    return child is not None and Path(f"/proc/{child}").exists()  # it outlived the server


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param("half-record", id="half-a-record"),
        pytest.param("garbage", id="garbage"),
    ],
)
def test_a_torn_journal_tail_is_cut_and_the_records_before_it_kept(
    workdir: Path, servers: list[ServerProcess], tail: str
) -> None:
    data_dir = workdir / "data"
    servers.append(ServerProcess(workdir, 0))
    locks: dict[str, Lock] = {}
    with client(servers[0]) as http:
        for number in range(40):
            sim, imei = sim_id(number), f"{IMEI_BASE + 10_000 + number:014d}"
            response = http.post(f"/v1/sims/{sim}/set_imei_lock", json={"imei": imei})
            assert response.status_code == 200, response.text
            locks[sim] = (imei, False)
    servers[0].kill()

    *_, (_, segment) = list_segments(data_dir)
    records = unframe(segment.read_bytes()).good_end  # zeros may follow (a zeroed segment)
    if tail == "half-record":
        next_seq = servers[0].ready["sequence"] + 41
        record = frame(next_seq, SetLock(sim_id(0), 0, "0" * 14, False).to_json())
        torn = record[: len(record) // 2]
    else:
        torn = b"\x00\xff" * 33
    with segment.open("r+b") as file:  # where the writer would have put it
        file.seek(records)
        file.write(torn)

    servers.append(ServerProcess(workdir, 1))
    cut = [event for event in servers[1].events() if event.get("event") == "journal_torn_tail_cut"]
    assert len(cut) == 1, servers[1].text()
    assert f"at offset {records}" in cut[0]["detail"]
    assert segment.stat().st_size == records
    replayed = [e for e in servers[1].events() if e.get("event") == "journal_replayed"]
    assert replayed, servers[1].text()
    assert replayed[0]["sequence"] == servers[0].ready["sequence"] + 40
    state = state_of(served_views(servers[1]))
    for sim, lock in locks.items():
        assert state[sim]["lock"] == lock
